"""The replay benchmark (bench/sweep_replay.py) on tiny deterministic curves: it drives the sweep's real objects.

Checked against what the objects themselves hold: MO-ASHA's stop decisions equal the
non-dominated-rank / crowding rule recomputed from the values each rung had received; the
Optuna study behind the searcher holds every ended trial with the values it was told (or
PRUNED for a stopped trial when `sweep.scheduler.stopped_as=pruned`); simulated workers never
exceed `sweep.max_concurrent`; simulated time adds up; a seed replays the same sweep.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from ray.tune.schedulers import TrialScheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import sweep_replay as R  # noqa: E402

from avdis.results import pareto  # noqa: E402
from avdis.tune.schedulers import crowding_distance  # noqa: E402

EPOCHS = 9
STARTUP = 3.0


def tiny_curve(params: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A curve set by the parameters plus the seeded rng's noise: accuracy rises with lr, leakage falls with weight."""
    lr_u = (math.log(params["train.lr"]) - math.log(1e-3)) / math.log(10)
    w = next((v for k, v in params.items() if k.startswith("weight_")), 0.0)
    e = np.arange(1, EPOCHS + 1) / EPOCHS
    acc = 0.3 + 0.6 * lr_u * e + rng.normal(0, 0.02, EPOCHS)
    leak = 0.9 - 0.5 * min(float(w), 3.0) / 3.0 * e + rng.normal(0, 0.02, EPOCHS)
    return np.clip(np.column_stack([acc, leak]), 0, 1), 0.5 + rng.random(EPOCHS)


def run(setup: str = "tpe/mo_asha", trials: int = 24, seed: int = 0, extra: list[str] | None = None) -> R.Replay:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = R.setup_config(setup, trials, seed, ["sweep.scheduler.grace_epochs=1", "sweep.scheduler.eta=3",
                                               "sweep.scheduler.stopped_as=complete", *(extra or [])])
    return R.replay(cfg, tiny_curve, STARTUP, seed)


def rule(rung: dict[str, tuple[float, float]], tid: str, eta: int, margin: float) -> bool:
    """MO-ASHA's rule from the rung's values: on the rung's front, or in the top ceil(n/eta) by (rank, crowding),
    or beaten by no other trial there by `margin` in both objectives."""
    ids = list(rung)
    pts = np.array([rung[t] for t in ids])
    rank = pareto.ranks(pts[:, 0], pts[:, 1])
    crowd = np.zeros(len(ids))
    for r in np.unique(rank):
        crowd[rank == r] = crowding_distance(pts[rank == r])
    order = sorted(range(len(ids)), key=lambda i: (rank[i], -crowd[i], i))
    acc, leak = rung[tid]
    beaten = any(a >= acc + margin and lk <= leak - margin for t, (a, lk) in rung.items() if t != tid)
    return rank[ids.index(tid)] == 1 or tid in {ids[i] for i in order[: math.ceil(len(ids) / eta)]} or not beaten


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_mo_asha_stops_in_replay_follow_the_rung_rule(margin):
    rep = run(extra=[f"sweep.scheduler.margin={margin}"])
    rungs = {1: {}, 3: {}}
    stops = kept_by_margin = 0
    for _, tid, epoch, decision in rep.log:
        if epoch in rungs:
            acc, leak = rep.curves[tid][epoch - 1]
            rungs[epoch][tid] = (float(acc), float(leak))
            expected = TrialScheduler.CONTINUE if rule(rungs[epoch], tid, 3, margin) else TrialScheduler.STOP
            assert decision == expected, (tid, epoch)
            stops += decision == TrialScheduler.STOP
            kept_by_margin += decision == TrialScheduler.CONTINUE and not rule(rungs[epoch], tid, 3, 0.0)
        else:
            assert decision == TrialScheduler.CONTINUE
    assert (kept_by_margin > 0) == (margin > 0)  # the margin's clause decided some trials
    assert stops > 0 and rep.scheduler.stopped == {t: f[2] for t, f in rep.finals.items() if f[2] < EPOCHS}
    assert {m: set(r) for m, r in rep.scheduler.core.rungs.items()} == {m: set(r) for m, r in rungs.items()}
    # the front after each ended trial is that of the trials that ran every epoch (results.trained_longest), also
    # before the first did: the stopped ones' rung values were the replay's early front
    first_full = next(i for i, c in enumerate(rep.completions) if rep.finals[c.trial_id][2] == EPOCHS)
    assert all(c.hypervolume == 0.0 for c in rep.completions[:first_full])  # margin 0: one stopped at epoch 3 ends first


@pytest.mark.parametrize("stopped_as", ["complete", "pruned"])
def test_the_study_holds_every_ended_trial_as_told(stopped_as):
    rep = run(extra=[f"sweep.scheduler.stopped_as={stopped_as}"])
    study = rep.searcher._ot_study
    by_number = {t.number: t for t in study.trials}
    assert len(study.trials) == len(rep.finals) == 24
    for tid, (acc, leak, epochs) in rep.finals.items():
        told = by_number[rep.searcher._ot_trials[tid].number]
        if epochs < EPOCHS and stopped_as == "pruned":
            assert told.state == optuna.trial.TrialState.PRUNED and told.values is None
        else:
            assert told.state == optuna.trial.TrialState.COMPLETE and told.values == [acc, max(leak, 0.0)]
        params = {k: v for k, v in told.params.items()}
        assert params == rep.params[tid]  # what the sampler drew is what the trial trained
    assert any(f[2] < EPOCHS for f in rep.finals.values())


def test_workers_and_simulated_time_add_up():
    rep = run("random/none", trials=10)
    assert rep.max_running == 2  # local.yaml: max_concurrent 2
    for tid, (_, _, epochs) in rep.finals.items():
        assert rep.ends[tid] == pytest.approx(rep.starts[tid] + STARTUP + rep.epoch_s[tid][:epochs].sum())
    moments = sorted({*rep.starts.values(), *rep.ends.values()})
    for t in moments:  # never more trials running than workers
        assert sum(rep.starts[k] <= t < rep.ends[k] for k in rep.finals) <= 2
    last = rep.completions[-1]
    assert last.wall_s == max(rep.ends.values())
    assert last.trial_epochs == sum(f[2] for f in rep.finals.values()) == 10 * EPOCHS
    accs, leaks = zip(*[f[:2] for f in rep.finals.values()])
    assert last.hypervolume == pareto.hypervolume(np.array(accs), np.array(leaks), 0.25)


def test_a_seed_replays_the_same_sweep():
    a, b, c = run(seed=3), run(seed=3), run(seed=4)
    assert a.completions == b.completions and a.params == b.params
    assert a.params != c.params


def test_the_surrogate_beats_the_method_mean_on_held_out_configurations():
    space = R.C.load(R.CONFIG, []).sweep.space
    rng = np.random.default_rng(0)
    methods, ids, seeds, xs, curves = [], [], [], [], []
    for method in space.methods:
        for i in range(12):
            params = {"method": method, "train.lr": float(np.exp(rng.uniform(np.log(1e-3), np.log(1e-2))))}
            if method in space.weights:
                r = space.weights[method]
                params[f"weight_{method}"] = float(np.exp(rng.uniform(np.log(r.low), np.log(r.high)))) if r.log \
                    else float(rng.integers(int(r.low), int(r.high) + 1))
            for seed in range(2):
                curve, _ = tiny_curve(params, np.random.default_rng([i, seed]))
                methods.append(method), ids.append(f"{method}-{i}"), seeds.append(seed), curves.append(curve)
                xs.append(R.unit_params(space, method, params.get(f"weight_{method}"), params["train.lr"]))
    rec = R.Recordings(np.array(methods), np.array(ids), np.array(seeds), xs, np.stack(curves),
                       np.full((len(ids), EPOCHS), 0.5))
    q = R.fit_surrogate(rec, space).quality
    for key in ("emotion_acc_last_epoch", "leakage_all_epochs"):
        assert q["surrogate_vs_other_seed_rmse"][key] < q["method_mean_vs_other_seed_rmse"][key]


def test_the_oracle_bound_stops_at_epoch_1_exactly_the_trials_whose_end_joins_no_front():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = R.setup_config(R.ORACLE, 24, 0, ["sweep.scheduler.stopped_as=pruned"])
    rep = R.replay(cfg, tiny_curve, STARTUP, 0, oracle=True)
    assert isinstance(rep.scheduler, R.FrontOracle) and rep.scheduler.stopped
    for tid, (_, _, ran) in rep.finals.items():
        end = rep.curves[tid][-1]
        first = rep.starts[tid] + STARTUP + rep.epoch_s[tid][0]  # when its epoch-1 result arrived
        done = [rep.curves[t][-1] for t, (_, _, r) in rep.finals.items() if r == EPOCHS and rep.ends[t] < first]
        dominated = any(e[0] >= end[0] and e[1] <= end[1] for e in done)
        assert ran == (1 if dominated else EPOCHS), tid
    assert set(rep.scheduler.stopped) == {t for t, f in rep.finals.items() if f[2] == 1}


def test_a_targets_share_interval_covers_the_seed_noise_and_says_never_when_the_default_never_reaches():
    rng = np.random.default_rng(0)
    other = rng.normal(300.0, 40.0, 60)
    half = R.share_interval(other / 2, other, 2304.0, np.random.default_rng(1))
    assert half["lo"] < 0.5 < half["hi"] and half["hi"] - half["lo"] < 0.25  # the same seeds, halved
    same = R.share_interval(rng.normal(300.0, 40.0, 60), other, 2304.0, np.random.default_rng(1))
    assert same["lo"] < 1.0 < same["hi"]
    never = R.share_interval(np.full(60, np.inf), other, 2304.0, np.random.default_rng(1))
    assert never == {"lo": None, "hi": None}
    censored = R.share_interval(other, np.full(60, np.inf), 2304.0, np.random.default_rng(1))  # other never reached
    assert censored["hi"] <= 400 / 2304.0  # the share against its whole budget: an upper bound


def test_a_replay_of_one_seed_draws_its_curves_without_nan():
    """`--seeds 1` (a quick look): the band had a NaN interval (std of one value), written into the JSON as NaN and
    refused by the plot's axis limits after every sweep had run."""
    rep = run("random/none", trials=4)
    band = R.curve_band([rep.completions], "trial_epochs", np.array([1.0, 9.0, 36.0]))
    assert band["lo"] == band["mean"] == band["hi"] and all(map(math.isfinite, band["mean"]))


def earlier_sweep(n: int = 12) -> pd.DataFrame:
    """An earlier sweep's finished trials, as bench/sweep_replay.earlier_trials gives them: tiny_curve's last epoch
    over a spread of methods and parameters (one leakage below 0, told as 0 as the sweep tells it)."""
    space = R.setup_config("tpe/mo_asha", 1, 0).sweep.space
    rng = np.random.default_rng(11)
    rows = []
    for i in range(n):
        method = space.methods[i % len(space.methods)]
        r = space.weights.get(method)
        inside = None if r is None else r.low + (r.high - r.low) * i / n
        weight = float(round(inside)) if r is not None and r.int else inside
        lr = float(10 ** rng.uniform(-3, -2))
        acc, leak = tiny_curve({"method": method, "train.lr": lr, "weight_x": weight or 0.0}, rng)[0][-1]
        rows.append({"method": method, "weight": weight, "lr": lr, "emotion_acc": acc,
                     "leakage": -0.05 if i == 3 else leak})
    return pd.DataFrame(rows)


def warm_run(how: str, earlier: pd.DataFrame) -> R.Replay:
    """A 10-trial sweep of the default, its searcher warm-started from `earlier` as `how` says."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = R.setup_config(f"tpe/mo_asha:warm_{how}_all", 10, 0)
    return R.replay(cfg, tiny_curve, STARTUP, 0, prepare=R.warm_start(cfg.sweep.space, earlier, how))


@pytest.mark.parametrize("how", ["told", "below"])
def test_a_warm_start_tells_the_study_the_earlier_trials_before_the_sweeps_own(how):
    earlier = earlier_sweep()
    rep = warm_run(how, earlier)
    study = rep.searcher._ot_study
    shift = (-1.0, 1.0) if how == "below" else (0.0, 0.0)
    old = study.trials[: len(earlier)]
    for t, row in zip(old, earlier.itertuples()):
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.params["method"] == row.method and t.params["train.lr"] == row.lr
        assert t.params.get(f"weight_{row.method}") == (None if pd.isna(row.weight) else row.weight)
        assert t.values == pytest.approx([row.emotion_acc + shift[0], max(row.leakage, 0.0) + shift[1]])
    assert len(study.trials) == len(earlier) + 10 and len(rep.finals) == 10  # the sweep's own trials all ran
    assert {rep.searcher._ot_trials[t].number for t in rep.finals} == set(range(len(earlier), len(earlier) + 10))


def test_a_warm_start_from_the_front_suggests_its_configurations_first():
    earlier = earlier_sweep()
    pts = pareto.points(earlier["emotion_acc"].to_numpy(float), earlier["leakage"].to_numpy(float))
    front = list(np.flatnonzero(pareto.nondominated(pts[:, 0], pts[:, 1])))
    assert 0 < len(front) < len(earlier)
    rep = warm_run("front", earlier)
    firsts = [rep.params[t] for t in sorted(rep.params)[: len(front)]]
    for params, i in zip(firsts, front):
        row = earlier.iloc[i]
        assert params["method"] == row.method and params["train.lr"] == row.lr
        assert params.get(f"weight_{row.method}") == (None if pd.isna(row.weight) else row.weight)
    assert len(rep.searcher._ot_study.trials) == len(rep.finals) == 10  # nothing told, only enqueued


def test_a_replay_of_a_space_of_choices_ends_when_each_configuration_ran_once():
    """The replay drives the sweep's searcher, which ends the search once a space of choices is spent: 2 methods
    without a weight at 2 learning rates are 4 configurations, trained once each of 10 trials asked for."""
    rep = run("tpe/none", trials=10, extra=["sweep.space.methods=[multitask, single_task]",
                                            "sweep.space.params.train.lr=[0.001, 0.01]"])
    assert len(rep.finals) == 4 == len({(p["method"], p["train.lr"]) for p in rep.params.values()})
    assert len(rep.completions) == 4
