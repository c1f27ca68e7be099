"""Sweep pieces without training: MO-ASHA decisions, the search space, the Pareto front, refusals."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import optuna
import pandas as pd
import pyarrow as pa
import pytest
from ray.tune import Callback

from conftest import TINY, free_port, s3_denied, saved_tune_state, shutdown_ray, stop_process, wait_for_port

from avdis import config as C
from avdis import storage
from avdis.errors import UsageError
from avdis import results
from avdis.results import pareto
from avdis.tune.schedulers import MOSuccessiveHalving, crowding_distance
from avdis.tune.space import DefineByRun, to_overrides
from avdis.tune.records import config_id
from avdis.tune.confirmation import FixedPoints, confirm_points
from avdis.tune.failures import TrialsFailed, failures
from avdis.tune.preflight import check_space, trial_sizes
from avdis.tune.resume import check_experiments, close_lost_trials
from avdis.tune.spec import check_spec, record_spec
from avdis.tune.sweep import TrialResources, reuse_processes, scheduler_plan, searcher, trial_resources


def test_rungs_sit_at_grace_times_eta_powers():
    assert list(MOSuccessiveHalving(max_epochs=27, grace=1, eta=3).rungs) == [1, 3, 9]
    assert list(MOSuccessiveHalving(max_epochs=8, grace=2, eta=2).rungs) == [2, 4]


def test_the_sweep_says_where_mo_asha_judges_and_when_it_never_will():
    """A 2-epoch sweep under the default grace (2) has no rung: its first line said scheduler=mo_asha all the same."""
    assert scheduler_plan(C.load(None, ["train.epochs=9"])) == "mo_asha (rungs at epochs 2, 4, 8)"
    assert scheduler_plan(C.load(None, ["train.epochs=3"])) == "mo_asha (rungs at epoch 2)"
    assert scheduler_plan(C.load(None, ["train.epochs=2"])).startswith(
        "mo_asha with no rung below train.epochs=2, so it stops no trial (lower sweep.scheduler.grace_epochs=2")
    assert scheduler_plan(C.load(None, ["sweep.scheduler.type=none"])) == "none"


def test_dominated_trials_stop_front_trials_continue():
    sched = MOSuccessiveHalving(max_epochs=9, grace=1, eta=3)
    # nine trials reach rung 1; curves: (emotion_acc, leakage)
    front = {"a": (0.90, 0.80), "b": (0.70, 0.20), "c": (0.80, 0.50)}
    dominated = {f"d{i}": (0.60 - 0.02 * i, 0.85 + 0.01 * i) for i in range(6)}
    decisions = {}
    for tid, (acc, leak) in {**front, **dominated}.items():
        decisions[tid] = sched.decide(tid, 1, acc, leak)
    assert all(decisions[t] for t in front)  # the rung's front continues, whatever the arrival order
    assert not any(decisions[t] for t in dominated)  # the top ceil(9/3) = 3 are the front
    # asynchronous: a trial arriving later that dominates the front is promoted; one that is dominated is not
    assert sched.decide("late_good", 1, 0.95, 0.10) is True
    assert sched.decide("late_bad", 1, 0.50, 0.95) is False
    # epochs between rungs never stop anything; a trial is judged once per rung
    assert sched.decide("d3", 2, 0.0, 1.0) is True
    assert sched.decide("a", 1, 0.0, 1.0) is True


def test_ties_within_a_rank_break_by_crowding_distance():
    sched = MOSuccessiveHalving(max_epochs=9, grace=1, eta=2)
    sched.decide("top", 1, 0.99, 0.0)  # dominates every later point: they all share rank 2
    sched.decide("q0", 1, 0.5, 0.1)
    sched.decide("q1", 1, 0.9, 0.9)
    # 4 recorded, keep 2: "top", then rank 2 by crowding; a point between q0 and q1 is crowded
    assert sched.decide("mid", 1, 0.7, 0.5) is False
    # 5 recorded, keep 3: a new extreme of rank 2 has infinite crowding distance and continues
    assert sched.decide("edge", 1, 0.95, 0.95) is True
    d = crowding_distance(np.array([(0.5, 0.1), (0.7, 0.5), (0.9, 0.9)]))
    assert np.isinf(d[0]) and np.isinf(d[-1]) and np.isfinite(d[1])


def test_a_margin_stops_only_trials_clearly_beaten_at_their_rung():
    """Outside the top 1/eta, a trial is stopped only if one at its rung is better by the margin in both objectives."""
    for margin, stops in ((0.0, True), (0.1, False)):
        sched = MOSuccessiveHalving(max_epochs=9, grace=1, eta=3, margin=margin)
        for i, point in enumerate([(0.80, 0.30), (0.78, 0.33), (0.79, 0.31)]):
            sched.decide(f"t{i}", 1, *point)
        assert sched.decide("close", 1, 0.75, 0.35) is not stops  # beaten by 0.05 / 0.05: noise at a margin of 0.1
    assert sched.decide("far", 1, 0.60, 0.45) is False  # beaten by more than 0.1 in both
    assert sched.decide("far_in_one", 1, 0.60, 0.32) is True  # beaten by 0.2 in accuracy, 0.02 in leakage


def test_a_margin_reads_leakage_below_zero_as_zero_as_the_front_does():
    """Leakage below 0 is a probe doing worse than the label-only guess, by noise; the front counts it as 0. The
    margin read it as it was, so -0.3 beat -0.05 by 0.25 there, and a trial leaking nothing was stopped for it."""
    sched = MOSuccessiveHalving(max_epochs=9, grace=1, eta=3, margin=0.1)
    for i, leak in enumerate((-0.30, -0.35, -0.25)):
        sched.decide(f"t{i}", 1, 0.90, leak)
    assert sched.decide("no_leak", 1, 0.70, -0.05) is True  # beaten by 0.2 in accuracy, by nothing in leakage
    assert sched.decide("leaks", 1, 0.70, 0.20) is False  # beaten by 0.2 in both


def test_missing_objectives_never_stop_a_trial():
    sched = MOSuccessiveHalving(max_epochs=9, grace=1, eta=3)
    for i in range(5):
        sched.decide(f"t{i}", 1, 0.9, 0.1 * i)
    assert sched.decide("blind", 1, float("nan"), 0.5) is True


def test_define_by_run_draws_weights_only_for_weighted_methods():
    space = C.load(None).sweep.space
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        DefineByRun(space)(trial)
        params = trial.params
        method = params["method"]
        seen.add(method)
        weight_keys = [k for k in params if k.startswith("weight_")]
        assert weight_keys == ([f"weight_{method}"] if method in C.WEIGHT_RANGES else [])
        over = to_overrides(params)
        cfg = C.with_overrides(C.load(None), over)  # every draw is a valid config
        assert cfg.method.name == method
        study.tell(trial, [0.5, 0.5])
    assert seen == set(C.METHODS)


@pytest.mark.parametrize("every_weight", [False, True])
def test_nsga2_breeds_the_method_weights(every_weight):
    """NSGA-II breeds only the parameters every trial holds: a weight drawn for its own method alone was drawn at
    random in every NSGA-II trial (its weights matched random search's). Under it each trial draws every weight."""
    cfg = C.load(None, ["sweep.search=nsga2"])
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=8))
    space = DefineByRun(cfg.sweep.space, every_weight=every_weight)
    for i in range(24):
        trial = study.ask()
        space(trial)
        assert to_overrides(trial.params)["method.weight"] == trial.params.get(f"weight_{trial.params['method']}")
        study.tell(trial, [0.5 + 0.01 * (i % 5), 0.5 - 0.01 * (i % 3)])
    bred = study.sampler.infer_relative_search_space(study, study.ask())
    weights = {f"weight_{m}" for m in cfg.sweep.space.methods if m in cfg.sweep.space.weights}
    assert weights <= set(bred) if every_weight else not weights & set(bred)
    assert searcher(cfg)._space.every_weight and not searcher(C.load(None))._space.every_weight


def test_front_and_hypervolume_of_a_known_table():
    df = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d", "e"], "emotion_acc": [0.9, 0.8, 0.7, 0.6, 0.85],
        "leakage": [0.9, 0.5, 0.2, 0.6, 0.95], "order": [1, 2, 3, 4, 5],
    })
    front = pareto.front_of(df, chance_acc=0.5)
    assert set(front.trial_ids) == {"a", "b", "c"}
    # staircase area above chance 0.5 and below leakage 1: (0.2->0.5)*0.2 + (0.5->0.9)*0.3 + (0.9->1)*0.4
    assert front.hypervolume == pytest.approx(0.3 * 0.2 + 0.4 * 0.3 + 0.1 * 0.4)
    assert [h["hypervolume"] for h in front.history] == sorted(h["hypervolume"] for h in front.history)


@pytest.mark.parametrize("seed", range(4))
def test_the_history_grown_a_trial_at_a_time_is_the_front_of_every_prefix(seed):
    """The history is built from the front so far and one trial more (it chose a front from every prefix, n^2: 5 s a
    summary at 5,000 trials); it must be the same front and hypervolume at each step, with ties, duplicates,
    negative leakage, rows outside `counted`, and a front chosen on validation numbers."""
    rng = np.random.default_rng(seed)
    n = 150
    grid = lambda: rng.integers(-2, 11, n) / 10  # noqa: E731 - coarse: ties and duplicates on both axes
    df = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "order": rng.permutation(n) + 1,
                       "emotion_acc": grid().clip(0, 1), "leakage": grid(),
                       "val_emotion_acc": grid().clip(0, 1), "val_leakage": grid()})
    counted = pd.Series(rng.random(n) < 0.8, index=df.index)
    on = ("val_emotion_acc", "val_leakage")
    got = pareto.front_of(df, 0.3, counted=counted, on=on)
    done = df.sort_values("order", kind="stable")
    keep = counted.reindex(done.index).to_numpy()
    for i in range(1, n + 1):
        rows = np.flatnonzero(keep[:i])
        mask = pareto.nondominated(done[on[0]].to_numpy()[rows], done[on[1]].to_numpy()[rows])
        chosen = done.iloc[rows[mask]]
        volume = pareto.hypervolume(chosen["emotion_acc"].to_numpy(), chosen["leakage"].to_numpy(), 0.3)
        assert got.history[i - 1] == {"trial_id": done["trial_id"].iloc[i - 1], "completed": i, "stopped": 0,
                                      "hypervolume": volume}
    assert got.trial_ids == list(chosen["trial_id"]) and got.hypervolume == volume


def test_a_uar_front_is_chosen_on_validation_uar_and_measured_from_uar_chance():
    """Under sweep.emotion_metric=uar the front is chosen on val_emotion_uar and val_leakage, drawn at the test UAR,
    and its hypervolume's box starts at UAR's chance (1 / emotions: a model naming every clip one emotion), not at
    the majority rate: on a neutral-heavy corpus a model that names most clips neutral led the accuracy front."""
    def row(tid, acc, uar, leak, order, method="adversarial"):
        return {"trial_id": tid, "method": method, "status": "TERMINATED", "epochs": 4, "order": order, "seed": 0,
                "emotion_chance": 0.7, "emotion_uar_chance": 0.25, "role": "search", "config_id": tid,
                "val_emotion_acc": acc, "val_emotion_uar": uar, "val_leakage": leak,
                "emotion_acc": acc - 0.05, "emotion_uar": uar - 0.05, "leakage": leak + 0.05}
    df = results.to_table([row("majority", 0.90, 0.35, 0.20, 1), row("balanced", 0.75, 0.70, 0.20, 2),
                           row("base", 0.80, 0.60, 0.50, 3, "multitask")]).to_pandas()
    acc = results.summarize(df, "s")
    assert acc["front"] == ["majority"] and acc["reference"] == {"emotion_acc": 0.7, "leakage": 1.0}
    uar = results.summarize(df, "s", pareto.axes("uar"))
    assert uar["front"] == ["balanced"] and uar["selected_on"] == "val"
    assert uar["objectives"] == {"emotion_uar": "max", "leakage": "min"}
    assert uar["reference"] == {"emotion_uar": 0.25, "leakage": 1.0}
    assert uar["hypervolume"] == pytest.approx((0.65 - 0.25) * (1 - 0.25))
    assert uar["hypervolume_history"][-1]["hypervolume"] == uar["hypervolume"]
    assert uar["baseline"]["emotion_uar"] == pytest.approx(0.55) and "emotion_acc" not in uar["baseline"]
    assert uar["front_points"][0]["val_emotion_uar"] == 0.70
    # confirmed: the confirming seed re-trains the UAR front's configuration, and its mean is drawn at test UAR
    assert list(results.search_front(df, pareto.axes("uar"))["trial_id"]) == ["balanced"]
    confirm = {**row("balanced-1", 0.74, 0.66, 0.22, 4), "role": "confirm", "config_id": "balanced", "seed": 1,
               "config": json.dumps({"sweep": {"confirm_seeds": 1}})}
    confirmed = results.summarize(pd.concat([df, results.to_table([confirm]).to_pandas()], ignore_index=True), "s",
                                  pareto.axes("uar"))
    assert confirmed["front_basis"] == "seed_mean" and confirmed["front"] == ["balanced"]
    assert confirmed["hypervolume"] == pytest.approx((0.61 - 0.25) * (1 - 0.27))


def test_equal_numbers_worked_out_in_another_order_tie_on_the_front():
    """Two seed means of 0.5 leakage, one summed to 0.4999999999999999: the other was dropped from the front."""
    acc, leak = np.array([0.45833, 0.45833]), np.array([0.5, (0.19999999999999984 + 0.7999999999999999) / 2])
    assert leak[0] != leak[1] and pareto.nondominated(acc, leak).all()


def test_the_front_is_chosen_on_validation_numbers_and_measured_on_test_ones():
    """A sweep chooses its front on the validation clips (config.SELECTION) and reports the chosen trials' test
    numbers: chosen on test, trial "lucky" (best on test only, by the test clips' noise) stood on the front and
    inflated the hypervolume. A table recorded before val columns existed is chosen on test, and says so."""
    def row(tid, val, test, order, method="multitask", seed=0):
        params = {"method": method, "train.seed": seed, "id": tid}
        return {"trial_id": tid, "method": method, "status": "TERMINATED", "epochs": 4, "order": order, "seed": seed,
                "emotion_chance": 0.25, "role": "search", "config_id": config_id(params),
                "val_emotion_acc": val[0], "val_leakage": val[1], "emotion_acc": test[0], "leakage": test[1]}
    rows = [row("steady", (0.80, 0.30), (0.75, 0.35), 1), row("lucky", (0.60, 0.50), (0.95, 0.05), 2),
            row("cheap", (0.70, 0.10), (0.65, 0.20), 3)]
    summary = results.summarize(results.to_table(rows).to_pandas(), "s")
    assert summary["selected_on"] == "val" and summary["front"] == ["steady", "cheap"]
    measured = pareto.hypervolume(np.array([0.75, 0.65]), np.array([0.35, 0.20]), 0.25)
    assert summary["hypervolume"] == pytest.approx(measured)
    assert summary["hypervolume_history"][-1]["hypervolume"] == pytest.approx(measured)
    points = {p["trial_id"]: p for p in summary["front_points"]}
    assert (points["cheap"]["emotion_acc"], points["cheap"]["val_emotion_acc"]) == (0.65, 0.70)
    old = [{k: v for k, v in r.items() if not k.startswith("val_")} for r in rows]
    before = results.summarize(results.to_table(old).to_pandas(), "s")
    assert before["selected_on"] == "test" and before["front"] == ["lucky"]

    # confirmed: the confirming seeds' validation means choose, their test means are drawn
    confirm = [row("steady-1", (0.78, 0.30), (0.70, 0.30), 4, seed=1), row("cheap-1", (0.70, 0.12), (0.72, 0.25), 5, seed=1)]
    for r, searched in zip(confirm, ("steady", "cheap")):
        r.update(role="confirm", config_id=next(x["config_id"] for x in rows if x["trial_id"] == searched))
    summary = results.summarize(results.to_table(rows + confirm).to_pandas(), "s")
    assert summary["front_basis"] == "seed_mean" and summary["front"] == ["steady", "cheap"]
    assert summary["hypervolume"] == pytest.approx(
        pareto.hypervolume(np.array([0.70, 0.72]), np.array([0.30, 0.25]), 0.25))  # "steady" dominated on test, drawn


def test_storage_used_by_another_sweep_is_refused(tmp_path):
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    assert check_spec(url, cfg) is None
    record_spec(url, cfg, "0" * 16)
    moved = ["data.src=/elsewhere/corpus", "data.shards=/elsewhere/shards", "train.storage=/elsewhere/train",
             "train.name=mine"]  # a config file shared with `avdis train` may name its runs; a sweep's trials ignore it
    assert check_spec(url, C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", *moved])) is not None  # a new copy
    for restored in ("sweep.num_samples=99", "sweep.max_concurrent=7"):  # Tune restores these: a change is refused
        with pytest.raises(UsageError, match=rf"differs in: {restored.split('=')[0]}\)"):
            check_spec(url, C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", restored]))
    other = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", "sweep.space.methods=[multitask]"])
    with pytest.raises(UsageError, match=r"differs in: sweep\.space\.methods.*Pick a new name"):
        check_spec(url, other)


def test_a_new_sweep_into_a_folder_holding_results_without_its_spec_is_refused(tmp_path):
    """A folder holding trials.parquet but no sweep.json (results copied in to report on) was taken for a new sweep,
    whose recorder took up the rows: its table and front held another sweep's trials beside its own, exit 0."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    results.write_trials(url, [{"trial_id": "a", "sweep": "old", "method": "multitask", "status": "TERMINATED",
                                "order": 1, "epochs": 2, "emotion_acc": 0.8, "leakage": 0.5}])
    with pytest.raises(UsageError, match=rf"{url} holds trials.parquet but no sweep.json: .*another name"):
        check_spec(url, cfg)
    record_spec(url, cfg, "0" * 16)  # the sweep's own, started here: a resume
    assert check_spec(url, cfg) is not None


@pytest.mark.parametrize("text", ['{"spec": {"sw', "[1, 2]", '{"selection": ["val_emotion_acc", "val_leakage"]}'])
def test_a_damaged_sweep_json_is_refused_naming_it_not_a_traceback(tmp_path, text):
    """Cut short or edited, sweep.json ended the sweep's rerun in a JSONDecodeError, AttributeError or KeyError."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "sweep.json").write_text(text)
    with pytest.raises(UsageError, match=rf"{tmp_path}/s1/sweep.json: .*cut short or edited.*start a new sweep"):
        check_spec(f"{tmp_path}/s1", cfg)


def test_a_sweep_resumes_on_a_resized_cluster_but_not_with_what_changes_its_trials(tmp_path):
    """A plain `avdis train` resumes with other worker CPUs, placement, max_failures or max_skip_rate
    (`checkpoint.MAY_CHANGE`); a sweep was refused for each ("started with other settings"), sweep.trial_cpus alone
    let through. What a trial learns (epochs, the device, the learning rate) still may not change."""
    started = [f"sweep.storage={tmp_path}", "sweep.name=s1"]
    record_spec(f"{tmp_path}/s1", C.load(None, started), "0" * 16)
    resized = ["train.cpus_per_worker=3", "train.placement_strategy=SPREAD", "train.max_failures=2",
               "data.loader.max_skip_rate=0.2", "sweep.trial_cpus=0.5"]
    assert check_spec(f"{tmp_path}/s1", C.load(None, [*started, *resized])) is not None
    for changed in ("train.epochs=9", "train.gpus_per_worker=1", "train.lr=0.5"):
        with pytest.raises(UsageError, match=rf"started with other settings \(differs in: {changed.split('=')[0]}\)"):
            check_spec(f"{tmp_path}/s1", C.load(None, [*started, *resized, changed]))


def test_a_resumed_sweep_with_a_damaged_mo_asha_json_is_refused_before_ray_starts(tmp_path):
    """Its scheduler reads mo_asha.json inside Tune, at the resumed sweep's first result: damaged, the sweep ended
    there in a traceback after Ray had started and the trials had been set up."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", "train.epochs=8"])
    record_spec(f"{tmp_path}/s1", sweep.as_made(sweep.probing(cfg)), "0" * 16)
    (tmp_path / "s1" / "mo_asha.json").write_text('{"rungs": {"2": {"a": [0.9, 0.')
    with pytest.raises(UsageError, match=rf"{tmp_path}/s1/mo_asha.json: not MO-ASHA's rungs .*cut short or edited"):
        sweep.run(cfg)


@pytest.mark.parametrize("corpus", ["ravdess", "cremad"])
def test_a_sweep_on_shards_only_preprocess_makes_never_made_is_refused_before_ray_starts(tmp_path, corpus):
    """A RAVDESS or CREMA-D sweep whose data.shards had no manifest and no build under way started Ray (~20 s and
    its log lines) before it was told to run `avdis preprocess` first. The same refusal, now before Ray starts."""
    import ray

    from avdis.data.shards import PreprocessError
    from avdis.tune import sweep

    shards = tmp_path / "shards"
    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s1", f"data.corpus={corpus}",
                        f"data.src={tmp_path}", f"data.shards={shards}"])
    with pytest.raises(PreprocessError, match=rf"{shards}: no manifest; run `avdis preprocess --corpus {corpus} "
                                              rf"--src <folder> --out {shards}` first"):
        sweep.run(cfg)
    assert not ray.is_initialized() and not shards.exists()


@pytest.mark.parametrize("variable", ["TUNE_RESULT_DIR", "RAY_AIR_LOCAL_CACHE_DIR"])
def test_a_sweep_whose_environment_holds_a_variable_tune_refuses_is_refused_before_ray_starts(tmp_path, monkeypatch,
                                                                                              variable):
    """Ray Tune 2.60 raises DeprecationWarning in `tune.run` where TUNE_RESULT_DIR or RAY_AIR_LOCAL_CACHE_DIR is set
    (a shell set up for an older Ray): the sweep ended in that traceback, exit 1, once its corpus and shards were made
    and Ray had started. Refused first, naming the variable and where the sweep writes (here before the missing
    RAVDESS manifest, which the old code refused instead)."""
    import ray

    from avdis.tune import sweep

    monkeypatch.setenv(variable, str(tmp_path / "ray_results"))
    shards = tmp_path / "shards"
    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s1", "data.corpus=ravdess",
                        f"data.src={tmp_path}", f"data.shards={shards}"])
    with pytest.raises(UsageError, match=rf"^{variable}={tmp_path}/ray_results in this process's environment: Ray "
                                         rf"Tune 2.60 no longer reads it, .* under sweep.storage/sweep.name "
                                         rf"\({tmp_path}/sweeps/s1;.* unset {variable} "):
        sweep.run(cfg)
    assert not ray.is_initialized() and not (tmp_path / "sweeps").exists()


def test_a_sweep_through_ray_client_is_not_refused_for_a_variable_tune_never_sees(tmp_path, monkeypatch):
    """Under Ray Client (`ray://`) the Tuner is an actor on the cluster's head and `tune.run` checks the cluster's
    environment there, which the driver's variables do not reach: a sweep refused for TUNE_RESULT_DIR in the
    driver's shell would have run. A driver that runs Tune itself (a GCS address, a local Ray) is still refused."""
    from avdis.tune import sweep

    monkeypatch.setenv("TUNE_RESULT_DIR", str(tmp_path / "ray_results"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    given = [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s1"]
    sweep.check_tune_environment(C.load(None, [*given, "ray.address=ray://127.0.0.1:10001"]))
    for address in ("", "auto"):  # Ray Client named by RAY_ADDRESS, with no ray.address or with `auto`
        monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:10001")
        sweep.check_tune_environment(C.load(None, [*given, *([f"ray.address={address}"] if address else [])]))
    for address in ("127.0.0.1:6379", "local"):  # Tune runs in this process
        with pytest.raises(UsageError, match=r"^TUNE_RESULT_DIR=.* in this process's environment"):
            sweep.check_tune_environment(C.load(None, [*given, f"ray.address={address}"]))
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(UsageError, match=r"^TUNE_RESULT_DIR=.* in this process's environment"):
        sweep.check_tune_environment(C.load(None, given))


def test_a_synthetic_sweep_on_a_folder_the_generator_may_not_write_into_is_refused_before_ray_starts(tmp_path):
    """data.src holding RAVDESS files, with data.corpus left at synthetic: the sweep started Ray (~14 s) before it
    refused to generate there, and said to add a ground_truth.csv where the files are RAVDESS's."""
    import ray

    from corpus_trees import ravdess_tree
    from avdis.tune import sweep

    src, shards = tmp_path / "rav", tmp_path / "shards"
    ravdess_tree(src)
    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s1", f"data.src={src}",
                        f"data.shards={shards}"])
    with pytest.raises(UsageError, match=r"holds files but no ground_truth.csv, read as data.corpus=synthetic; these "
                                         r"are RAVDESS files: preprocess them with --corpus ravdess"):
        sweep.run(cfg)
    assert not ray.is_initialized() and not shards.exists()


CHURN = """
import os, sys
from avdis import storage
print("churning", flush=True)
while True:
    storage.write_bytes(sys.argv[1], b'{"rungs": {"2": {"t1": [0.5, 0.1]}}, "stopped": {}}')
    os.unlink(sys.argv[1])
"""


def test_mo_asha_json_deleted_as_it_is_read_is_read_as_none_not_a_traceback(tmp_path):
    """read_state asked whether mo_asha.json exists, then read it: deleted between the two (by hand, to resume with
    empty rungs, as the sweep's checks ran or Tune's first result came), the sweep's driver ended in a
    FileNotFoundError traceback (here 1 read in about 800 did). A process writes and deletes it over and over."""
    from avdis.tune.schedulers import read_state

    url = str(tmp_path / "mo_asha.json")
    churn = subprocess.Popen([sys.executable, "-c", CHURN, url], stdout=subprocess.PIPE, text=True)
    try:
        assert churn.stdout.readline() == "churning\n"
        seen, end = set(), time.monotonic() + 2
        while time.monotonic() < end:
            seen.add(json.dumps(read_state(url)))
    finally:
        churn.kill()
        churn.wait(30)
    assert seen == {json.dumps(({}, {})), json.dumps(({2: {"t1": (0.5, 0.1)}}, {}))}


def test_a_resumed_sweep_whose_storage_now_refuses_deletes_is_refused_before_ray_starts(s3_bucket, tmp_path):
    """A resumed sweep ran no write check (a new one did): where its bucket or role had since lost s3:DeleteObject,
    it started Ray and its trials, to fail at the first checkpoint pruned. moto enforces the bucket policy's Deny."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={s3_bucket}/sweeps", "sweep.name=s1", "train.epochs=8",
                        f"data.shards={tmp_path / 'shards'}"])
    record_spec(f"{s3_bucket}/sweeps/s1", sweep.as_made(sweep.probing(cfg)), "0" * 16)
    with s3_denied(s3_bucket, "s3:DeleteObject"):
        with pytest.raises(storage.NotWritableError, match=rf"{s3_bucket}/sweeps/s1: written, but not deletable .*"
                                                           r"s3:DeleteObject"):
            sweep.run(cfg)
    import ray

    assert not ray.is_initialized()


def test_a_sweep_whose_shards_to_make_go_where_deletes_are_refused_is_refused_before_ray_starts(s3_bucket, tmp_path):
    """The write check ran on the sweep's own outputs only: shards still to make into a read-only or delete-refusing
    data.shards were found out once Ray had started and the corpus was generated. moto enforces the Deny."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s1", "sweep.num_samples=1",
                        "train.epochs=1", f"data.src={tmp_path / 'src'}", f"data.shards={s3_bucket}/shards",
                        "data.synth={speakers: 4, emotions: 2, clips_per_speaker: 4, duration_s: 0.5}"])
    with s3_denied(s3_bucket, "s3:DeleteObject"):
        with pytest.raises(storage.NotWritableError, match=rf"{s3_bucket}/shards: written, but not deletable .*"
                                                           r"s3:DeleteObject"):
            sweep.run(cfg)
    import ray

    assert not ray.is_initialized() and not (tmp_path / "src").exists()


def test_a_sweep_folder_moved_elsewhere_is_refused_naming_where_it_started(tmp_path):
    """Tune restores a sweep's experiment with the callbacks pickled at its start, which record trials and draw the
    report in the folder they were made for: a folder moved and resumed failed on "/old/s1: no such sweep folder"
    once Tune ran (and a copy left in place would have taken the resumed trials' results)."""
    started = C.load(None, [f"sweep.storage={tmp_path / 'a'}", "sweep.name=s1"])
    record_spec(f"{tmp_path}/a/s1", started, "0" * 16)
    (tmp_path / "a").rename(tmp_path / "b")
    with pytest.raises(UsageError, match=rf"{tmp_path / 'b' / 's1'}: this sweep was started under "
                                         rf"sweep.storage={tmp_path / 'a'}.*move the folder back to "
                                         rf"{tmp_path / 'a' / 's1'}\), or start a new sweep"):
        check_spec(f"{tmp_path}/b/s1", C.load(None, [f"sweep.storage={tmp_path / 'b'}", "sweep.name=s1"]))


def test_an_s3_endpoint_the_restored_callbacks_would_not_reach_is_refused(s3_server, s3_bucket, tmp_path,
                                                                           monkeypatch):
    """The callbacks Tune restores keep the s3 settings the sweep started with, while its trials get this run's: a
    sweep started with s3.endpoint_url in its config and resumed with another (the port of a new port-forward, here
    a second moto server holding a copy of the sweep) would record its trials at the old endpoint and train them at
    the new one. Settings left unset reach the endpoint in AWS_ENDPOINT_URL, read afresh by both."""
    import boto3

    url = f"{s3_bucket}/sweeps/s1"
    record_spec(url, C.load(None, [f"sweep.storage={s3_bucket}/sweeps", "sweep.name=s1"]), "0" * 16)
    assert check_spec(url, C.load(None, [f"sweep.storage={s3_bucket}/sweeps", "sweep.name=s1"])) is not None
    with pytest.raises(UsageError, match=r"started with s3.endpoint_url=None.*its trials http://localhost:"):
        check_spec(url, C.load(None, [f"sweep.storage={s3_bucket}/sweeps", "sweep.name=s1",
                                      f"s3.endpoint_url={s3_server.replace('127.0.0.1', 'localhost')}"]))

    started = [f"sweep.storage={s3_bucket}/sweeps", "sweep.name=s2", f"s3.endpoint_url={s3_server}"]
    record_spec(f"{s3_bucket}/sweeps/s2", C.load(None, started), "0" * 16)
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    moved = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, moved)
        there, bucket = f"http://127.0.0.1:{port}", s3_bucket.removeprefix("s3://")
        boto3.client("s3", endpoint_url=there).create_bucket(Bucket=bucket)
        spec = boto3.client("s3", endpoint_url=s3_server).get_object(Bucket=bucket, Key="sweeps/s2/sweep.json")
        boto3.client("s3", endpoint_url=there).put_object(Bucket=bucket, Key="sweeps/s2/sweep.json",
                                                          Body=spec["Body"].read())
        with pytest.raises(UsageError, match=rf"started with s3.endpoint_url={s3_server}, .*here they reach "
                                             rf"{s3_server} \(us-east-1\), its trials {there} \(us-east-1\)"):
            check_spec(f"{s3_bucket}/sweeps/s2", C.load(None, [*started, f"s3.endpoint_url={there}"]))
    finally:
        stop_process(moved)
        log.close()
    assert check_spec(f"{s3_bucket}/sweeps/s2", C.load(None, started)) is not None


def test_a_tune_experiment_where_none_should_be_or_none_where_one_should_be_is_refused(tmp_path):
    """sweep.checkpoints is shared by sweep name: a second sweep of the name (or one started again after its results
    were deleted) would have written its state beside the first one's and resumed from the newer; a sweep whose
    experiment a lifecycle rule expired would have started its trials over beside the recorded ones."""
    cfg = C.load(None, [f"sweep.storage={tmp_path / 'a'}", f"sweep.checkpoints={tmp_path / 'ck'}", "sweep.name=s1"])
    url = f"{tmp_path}/a/s1"
    check_experiments(url, cfg, resume=False)  # nothing there yet
    state = tmp_path / "ck" / "s1" / "s1-search" / "tuner.pkl"  # what Tune restores an experiment from
    state.parent.mkdir(parents=True)
    state.write_bytes(b"")
    other = C.load(None, [f"sweep.storage={tmp_path / 'b'}", f"sweep.checkpoints={tmp_path / 'ck'}", "sweep.name=s1"])
    with pytest.raises(UsageError, match=rf"{tmp_path / 'ck' / 's1'} holds a Tune experiment \(s1-search\) but "
                                         rf"{tmp_path / 'b' / 's1'} no sweep"):
        check_experiments(f"{tmp_path}/b/s1", other, resume=False)
    results.write_trials(url, [{"trial_id": "t", "sweep": "s1", "method": "multitask", "status": "TERMINATED",
                                "emotion_acc": 0.8, "leakage": 0.5, "order": 1, "epochs": 2}])
    (state.parent / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")  # and the state Tune saved of it
    check_experiments(url, cfg, resume=True)  # its experiment is there: it resumes
    state.unlink()
    with pytest.raises(UsageError, match=r"its Tune experiment s1-search is gone from .*`avdis report"):
        check_experiments(url, cfg, resume=True)
    results.write_trials(url, [{"trial_id": "t", "sweep": "s1", "method": "multitask", "status": "RUNNING"}])
    check_experiments(url, cfg, resume=True)  # killed before Tune saved anything: nothing finished, it starts anew


def test_a_sweep_whose_driver_died_before_tune_saved_any_state_starts_its_experiment_anew(tmp_path, capsys):
    """A driver that died between making its Tuner (tuner.pkl) and Tune's first saved state (killed as Tune began, or
    failing in `tune.run`: TUNE_RESULT_DIR set, seen by hT2) left tuner.pkl alone. The rerun restored it: Tune found
    no state and started the experiment over with one sample (Ray 2.60's `Tuner.restore` passes no num_samples), so
    it ran one of the sweep's trials and said the sweep was interrupted, and every rerun after it ran none. Its
    experiment is made anew, of all sweep.num_samples trials (real Tuners; no Ray needed to make them)."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", "sweep.num_samples=3"])
    url = sweep.url_of(cfg)
    sweep._tuner(cfg, url, False, sweep.Views(), False)  # the first driver's, which died before `fit` saved a state
    capsys.readouterr()
    rerun = sweep._tuner(cfg, url, True, sweep.Views(), False)._local_tuner
    assert "resuming" not in capsys.readouterr().out
    assert rerun._resume_config is None and rerun._tune_config.num_samples == 3
    assert not sweep.restorable(cfg, results.SEARCH)
    check_experiments(url, cfg, resume=True)  # nothing recorded as finished: nothing to refuse
    with pytest.raises(UsageError, match=r"holds a Tune experiment \(s1-search\)"):  # a new sweep of the name: as ever
        check_experiments(str(tmp_path / "other" / "s1"), cfg, resume=False)


def test_a_sweep_started_by_an_older_avdis_is_refused_naming_the_settings_it_lacked(tmp_path):
    """No value of a setting the old version lacked can match its spec: the message must not say 'rerun'."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    spec = json.loads((tmp_path / "s1" / results.SPEC).read_text())
    del spec["spec"]["sweep"]["scheduler"]["margin"]  # as written before the margin existed
    (tmp_path / "s1" / results.SPEC).write_text(json.dumps(spec))
    with pytest.raises(UsageError, match=r"older avdis, which had no sweep\.scheduler\.margin: resume it with that "
                                         r"version") as err:
        check_spec(url, cfg)
    assert "rerun with the original config" not in str(err.value)


def test_pareto_json_is_strict_json_with_nan_metrics(tmp_path):
    rows = [{"trial_id": "a", "method": "multitask", "emotion_acc": 0.8, "leakage": float("nan"), "order": 1}]
    results.write_pareto(str(tmp_path), results.summarize(results.to_table(rows).to_pandas(), "s"))
    def refuse(token: str) -> None:  # json.loads accepts NaN/Infinity unless told not to
        raise AssertionError(f"pareto.json holds the non-JSON token {token}")

    summary = json.loads((tmp_path / "pareto.json").read_text(), parse_constant=refuse)
    assert summary["front"] == []  # a trial without a finite leakage is on no front


def test_trial_resources_follow_the_worker_count():
    single = C.load(None, ["train.strategy=single", "train.zero_stage=0", "train.workers=1",
                           "train.cpus_per_worker=2", "train.gpus_per_worker=1"])
    assert trial_resources(single) == {"cpu": 2, "gpu": 1}  # the trial trains itself: its worker's bundle
    one_deepspeed = C.load(None, ["train.strategy=deepspeed", "train.zero_stage=2", "train.workers=1",
                                  "train.cpus_per_worker=0.9", "sweep.trial_cpus=0.1"])
    assert trial_resources(one_deepspeed) == {"cpu": 0.9}  # any strategy: one worker trains in the trial
    distributed = C.load(None, ["train.strategy=ddp", "train.zero_stage=0", "train.workers=2",
                                "train.gpus_per_worker=1", "sweep.trial_cpus=0.5"])
    assert trial_resources(distributed) == {"cpu": 0.5}  # its TorchTrainer workers ask for their own


def test_each_trial_is_sized_from_its_own_config():
    """A space sampling train.workers: sized from the sweep's config (1 worker), a trial drawn with 2 reserved one
    in-process bundle, then asked for 2 more workers' CPUs and waited for them for ever on 2 cores."""
    cfg = C.load(None, ["train.strategy=ddp", "train.zero_stage=0", "train.workers=1", "train.cpus_per_worker=0.9",
                        "sweep.trial_cpus=0.1", "sweep.space.methods=[multitask]",
                        "sweep.space.params={train.workers: [1, 2]}"])
    size = TrialResources(cfg.model_dump(mode="json"))
    assert size({"method": "multitask", "train.workers": 1}).bundles == [{"CPU": 0.9}]  # trains in the trial
    assert size({"method": "multitask", "train.workers": 2}).bundles == [{"CPU": 0.1}]  # drives its TorchTrainer
    assert sorted(trial.train.workers for trial in trial_sizes(check_space(cfg))) == [1, 2]  # each size checked


def test_trial_processes_are_reused_only_where_every_trial_trains_in_its_own():
    """A stopped multi-worker trial on a process Tune kept for reuse was told nothing (Ray 2.60's
    `TuneController._schedule_trial_stop` caches the actor and returns): its TorchTrainer, fitting in a helper thread,
    trained on and held its workers. Such a sweep has Tune end each trial's process instead."""
    ddp = ["train.strategy=ddp", "train.zero_stage=0"]
    assert reuse_processes(check_space(C.load(None, ["train.workers=1"])))
    assert not reuse_processes(check_space(C.load(None, [*ddp, "train.workers=2"])))
    assert not reuse_processes(check_space(C.load(None, [*ddp, "train.workers=1", "sweep.space.methods=[multitask]",
                                                          "sweep.space.params={train.workers: [1, 2]}"])))


def test_config_id_groups_seeds_of_one_configuration():
    params = {"method": "adversarial", "weight_adversarial": 0.5, "train.lr": 0.003}
    assert config_id({**params, "train.seed": 7}) == config_id(params) == config_id(dict(reversed(params.items())))
    assert config_id({**params, "weight_adversarial": 0.6}) != config_id(params)


def test_a_configuration_drawn_twice_under_nsga2_is_confirmed_once():
    """Under NSGA-II every trial draws every method's weight and uses its own method's: two single_task trials that
    differ only in the adversarial weight they do not use are one configuration, trained alike (same seed, same
    numbers). They were two, both on the front (a tie), so each was re-trained with the same seeds, and the confirmed
    front showed the one configuration twice."""
    first = {"method": "single_task", "weight_adversarial": 0.3, "train.lr": 0.003}
    again = {**first, "weight_adversarial": 0.9}
    assert config_id(first) == config_id(again)
    assert config_id({**first, "method": "adversarial"}) != config_id({**again, "method": "adversarial"})
    table = results.to_table([
        {"trial_id": tid, "method": "single_task", "emotion_acc": 0.8, "leakage": 0.7, "epochs": 4, "order": order,
         "seed": 0, "params": json.dumps(params), "config_id": config_id(params), "role": "search"}
        for tid, params, order in (("s1", first, 1), ("s2", again, 2))]).to_pandas()
    assert confirm_points(table, 2) == [{**first, "train.seed": 1}, {**first, "train.seed": 2}]


def test_confirmation_retrains_the_full_length_front_with_more_seeds():
    def row(tid, params, acc, leak, epochs, order, seed=0):
        return {"trial_id": tid, "method": params["method"], "emotion_acc": acc, "leakage": leak, "epochs": epochs,
                "order": order, "seed": seed, "params": json.dumps(params), "config_id": config_id(params),
                "role": "search"}
    a = {"method": "adversarial", "weight_adversarial": 0.5, "train.lr": 0.003}
    b = {"method": "orthogonal", "weight_orthogonal": 3.0, "train.lr": 0.004}
    dominated = {"method": "multitask", "train.lr": 0.005}
    early = {"method": "confusion", "weight_confusion": 0.1, "train.lr": 0.002}
    table = results.to_table([
        row("a", a, 0.80, 0.30, 4, 1, seed=5), row("b", b, 0.70, 0.25, 4, 2), row("m", dominated, 0.60, 0.60, 4, 3),
        row("e", early, 0.50, 0.02, 1, 4),  # stopped at epoch 1: on a single-trial front, but not at full length
        {**row("r", a, None, None, 2, None), "status": "RUNNING"},
    ]).to_pandas()
    points = confirm_points(table, 2)
    assert points == [{**a, "train.seed": 6}, {**b, "train.seed": 1}, {**a, "train.seed": 7}, {**b, "train.seed": 2}]
    assert {config_id(p) for p in points} == {config_id(a), config_id(b)}
    assert confirm_points(results.empty_trials(), 2) == []


def test_a_confirmation_trains_no_seed_the_search_trained_of_that_configuration():
    """Where the space samples train.seed the search can train a configuration at seed 1 beside seed 0: confirmed
    with seeds 0 + 1..2, seed 1 was trained again, a bitwise copy of that search trial spent as a confirming seed.
    The confirming seeds are the next its search trials did not train (found by hS)."""
    a = {"method": "multitask", "train.lr": 0.003}
    b = {"method": "single_task", "train.lr": 0.003}

    def row(tid, params, acc, leak, order, seed):
        return {"trial_id": tid, "method": params["method"], "emotion_acc": acc, "leakage": leak, "epochs": 4,
                "order": order, "seed": seed, "params": json.dumps({**params, "train.seed": seed}),
                "config_id": config_id(params), "role": "search"}
    table = results.to_table([row("a0", a, 0.80, 0.30, 1, 0), row("a1", a, 0.50, 0.60, 2, 1),
                              row("a3", a, 0.40, 0.70, 3, 3), row("b1", b, 0.70, 0.20, 4, 1),
                              row("b2", b, 0.60, 0.65, 5, 2)]).to_pandas()
    points = confirm_points(table, 2)  # the front: a0 and b1
    assert [(p["method"], p["train.seed"]) for p in points] == [("multitask", 2), ("single_task", 3),
                                                                 ("multitask", 4), ("single_task", 4)]


def test_a_configuration_at_the_last_seed_is_confirmed_with_seeds_from_0():
    """train.seed takes 0 to 2**31 - 1: a front configuration at 2147483647 (the config's seed, or drawn from a space
    over every seed) was confirmed at 2147483648, which every confirming trial refused (found by hU4). The seeds
    after the last go on from 0, passing over those the search trained."""
    a = {"method": "multitask", "train.lr": 0.003}
    table = results.to_table([
        {"trial_id": tid, "method": "multitask", "emotion_acc": acc, "leakage": leak, "epochs": 4, "order": order,
         "seed": seed, "params": json.dumps({**a, "train.seed": seed}), "config_id": config_id(a), "role": "search"}
        for tid, acc, leak, order, seed in (("top", 0.8, 0.3, 1, 2**31 - 1), ("zero", 0.5, 0.6, 2, 0))]).to_pandas()
    points = confirm_points(table, 2)
    assert [p["train.seed"] for p in points] == [1, 2]
    for point in points:
        C.with_overrides(C.Config(), {"train.seed": point["train.seed"]})  # a seed a trial takes


def test_the_confirmation_says_its_counts_in_the_right_number(tmp_path, monkeypatch, capsys):
    """A front of one configuration confirmed with one seed said "1 configurations x 1 more seeds"."""
    from avdis.tune import sweep

    params = {"method": "multitask", "train.lr": 0.003}
    monkeypatch.setattr(sweep, "_experiment", lambda *args, **kwargs: None)  # Tune's part is the e2e tests'
    monkeypatch.setattr(sweep, "fit", lambda *args: None)
    for seeds, epochs, said in ((1, 1, "1 configuration x 1 more seed, full 1 epoch"),
                                (2, 3, "1 configuration x 2 more seeds, full 3 epochs")):
        results.write_trials(str(tmp_path), [  # one trial of the full length: the front to confirm
            {"trial_id": "a", "sweep": "s", "method": "multitask", "status": "TERMINATED", "emotion_acc": 0.8,
             "leakage": 0.3, "epochs": epochs, "order": 1, "seed": 0, "params": json.dumps(params),
             "config_id": config_id(params), "role": "search"}])
        cfg = C.load(None, ["sweep.name=s", f"sweep.confirm_seeds={seeds}", f"train.epochs={epochs}"])
        sweep.confirm(cfg, str(tmp_path), False, sweep.Views(), True)
        assert f"confirming the front: {said}" in capsys.readouterr().out


def test_the_sweeps_first_line_says_its_counts_in_the_right_number():
    """A sweep of one trial began "avdis sweep s: 1 trials, ..."."""
    from avdis.tune.sweep import plan

    one = plan(C.load(None, ["sweep.name=s", "sweep.num_samples=1", "train.workers=1"]), "local", "/x/s")
    assert one.startswith("avdis sweep s: 1 trial, search=") and "each trial 1 x " in one and " worker (" in one
    two = plan(C.load(None, ["sweep.name=s", "sweep.num_samples=2", "train.workers=2", "train.strategy=ddp"]), "local",
               "/x/s")
    assert two.startswith("avdis sweep s: 2 trials, ") and "each trial 2 x ddp workers (" in two


def test_fixed_points_suggests_each_point_once_across_a_restore(tmp_path):
    points = [{"method": "multitask", "train.seed": 1}, {"method": "multitask", "train.seed": 2}]
    searcher = FixedPoints(points)
    assert searcher.suggest("t1") == points[0]
    searcher.save(str(tmp_path / "state.json"))
    restored = FixedPoints([])
    restored.restore(str(tmp_path / "state.json"))
    assert restored.suggest("t2") == points[1]
    assert restored.suggest("t3") == FixedPoints.FINISHED


def test_fixed_points_restored_pass_over_the_points_confirmed_after_tunes_last_save(tmp_path):
    """A killed driver's confirming trials that started after Tune's last save (which holds the place after them) and
    ended before the kill are in trials.parquet alone: the restored FixedPoints suggested their points again, each
    trained again, a bitwise copy. It passes over those ended (finished or failed), not one lost or still running, and
    not a search trial of the same configuration and seed; the pickled object (as Tune keeps it) carries the sweep's
    folder. The table is written through the recorder's writer."""
    import pickle

    from avdis.tune.records import config_id

    points = [{"method": "multitask", "train.seed": s} for s in (1, 2, 3, 4, 5)]
    url = str(tmp_path)
    searcher = pickle.loads(pickle.dumps(FixedPoints(points, (url, None))))
    assert searcher.suggest("t1") == points[0]
    searcher.save(str(tmp_path / "state.json"))  # Tune's last save; the killed driver ran on
    row = {"sweep": "s", "method": "multitask", "role": results.CONFIRM, "epochs": 2,
           "config_id": config_id(points[0])}
    results.write_trials(url, [
        {**row, "trial_id": "t1", "seed": 1, "status": "TERMINATED", "order": 1},
        {**row, "trial_id": "t2", "seed": 2, "status": "TERMINATED", "order": 2},
        {**row, "trial_id": "t3", "seed": 3, "status": "ERROR", "error": results.LOST},
        {**row, "trial_id": "t4", "seed": 4, "status": "ERROR", "error": "Traceback ...\nValueError: no"},
        {**row, "trial_id": "s5", "seed": 5, "status": "TERMINATED", "order": 3, "role": results.SEARCH}])
    restored = pickle.loads(pickle.dumps(FixedPoints(points, (url, None))))
    restored.restore(str(tmp_path / "state.json"))
    assert [restored.suggest(f"u{i}") for i in range(3)] == [points[2], points[4], FixedPoints.FINISHED]


def test_confirm_seeds_is_bounded():
    assert C.load(None, ["sweep.confirm_seeds=3"]).sweep.confirm_seeds == 3
    for bad in ("-1", "21"):
        with pytest.raises(C.ConfigError, match="confirm_seeds"):
            C.load(None, [f"sweep.confirm_seeds={bad}"])


def test_recorder_rows_carry_their_role_and_configuration(tmp_path):
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    cfg = C.load(None)
    recorder = TrialRecorder(str(tmp_path), cfg, role="confirm")
    recorder.setup()
    for seed in (1, 2):
        trial = Trial("trainable", config={"method": "multitask", "train.seed": seed}, trial_id=f"s{seed}", stub=True)
        recorder.on_trial_start(0, [], trial)
        recorder.on_trial_result(1, [], trial, {"epoch": cfg.train.epochs, "emotion_acc": 0.6, "leakage": 0.3})
        recorder.on_trial_complete(2, [], trial)
    table = results.read_trials(str(tmp_path))
    assert list(table["role"]) == ["confirm", "confirm"] and list(table["seed"]) == [1, 2]
    assert table["config_id"].nunique() == 1 and table["config_id"][0] == config_id({"method": "multitask"})


@pytest.mark.parametrize("epochs, grace, eta", [(9, 2, 2), (9, 1, 3), (20, 3, 2), (5, 4, 2)])
def test_a_sweep_under_mo_asha_probes_its_trials_at_every_rung_and_no_epoch_between(epochs, grace, eta):
    from avdis.train.loop import probed
    from avdis.tune.schedulers import MOSuccessiveHalving
    from avdis.tune.sweep import probing

    given = C.load(Path(__file__).resolve().parents[1] / "jobs" / "configs" / "local.yaml",
                   [f"train.epochs={epochs}", f"sweep.scheduler.grace_epochs={grace}", f"sweep.scheduler.eta={eta}",
                    "train.probe_every=5"])  # a user's value: not what MO-ASHA needs
    cfg = probing(given)
    rungs = list(MOSuccessiveHalving(epochs, grace, eta).rungs)
    probes = [e for e in range(1, epochs + 1) if probed(cfg, e)]
    assert set(rungs) | {epochs} <= set(probes)
    assert probes == sorted({*range(grace, epochs + 1, grace), epochs})  # between rungs only grace's multiples
    if (epochs, grace, eta) == (9, 2, 2):  # the embedded default: 5 probes, where every epoch probed before
        assert rungs == [2, 4, 8] and probes == [2, 4, 6, 8, 9]
    assert probing(C.with_overrides(given, {"sweep.scheduler.type": "none"})).train.probe_every == 5  # the user's


def test_tune_takes_the_result_of_an_epoch_between_rungs(tmp_path, monkeypatch):
    """Under MO-ASHA an epoch between rungs measures no val_leakage: Tune checks each result for its searcher's metrics
    and raised a TuneError on the demo's first epoch (grace_epochs 2), which ended the sweep. The sweep's own Tuner,
    Tune's own check (in whichever process runs Tune's controller: under Ray Client, an actor on the cluster), on the
    result as a trial reports it; the recorder takes it as not measured, not as a broken objective."""
    from types import SimpleNamespace

    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial
    from ray.tune.search.search_generator import SearchGenerator

    from avdis.train.loop import tune_result
    from avdis.tune import sweep
    from avdis.tune.records import TrialRecorder

    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0")  # Tune's default; put back after the test
    cfg = sweep.probing(C.load(Path(__file__).resolve().parents[1] / "jobs" / "configs" / "local.yaml",
                               [f"sweep.storage={tmp_path}"]))
    tune_config = sweep._tuner(cfg, sweep.url_of(cfg), False, sweep.Views(), True)._local_tuner._tune_config
    controller = SimpleNamespace(_metric=tune_config.metric, _scheduler_alg=tune_config.scheduler,
                                 _search_alg=SearchGenerator(tune_config.search_alg))
    between = tune_result({"epoch": 1, "emotion_acc": 0.5, "val_emotion_acc": 0.5}, cfg.sweep.emotion_metric)
    TuneController._validate_result_metrics(controller, {**between, "training_iteration": 1})
    recorder = TrialRecorder(str(tmp_path), cfg)
    recorder.setup()
    trial = Trial("trainable", config={"method": "multitask"}, trial_id="t", stub=True)
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(1, [], trial, between)
    (row,) = results.read_trials(str(tmp_path)).to_dict("records")
    assert pd.isna(row["error"]) and row["status"] == "RUNNING"


def test_a_running_trials_row_holds_one_probed_epochs_values(tmp_path):
    """Under MO-ASHA a trial probes only at its rungs: an epoch between them reports emotion accuracy and no leakage,
    and the row paired that accuracy with the last rung's leakage (a point of neither epoch on the live page)."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    cfg = C.load(None, ["train.epochs=3"])
    recorder = TrialRecorder(str(tmp_path), cfg)
    recorder.setup()
    trial = Trial("trainable", config={"method": "multitask"}, trial_id="t", stub=True)
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(1, [], trial, {"epoch": 2, "emotion_acc": 0.5, "val_emotion_acc": 0.45,
                                            "val_emotion_uar": 0.3, "leakage": 0.4, "val_leakage": 0.35,
                                            "manifest_hash": "m"})
    recorder.on_trial_result(2, [], trial, {"epoch": 3, "emotion_acc": 0.7, "val_emotion_acc": 0.65,
                                            "manifest_hash": "m"})
    (row,) = results.read_trials(str(tmp_path)).to_dict("records")
    assert row["epochs"] == 3 and row["best_emotion_acc"] == 0.7
    assert (row["emotion_acc"], row["val_emotion_acc"], row["leakage"], row["val_leakage"]) == (0.5, 0.45, 0.4, 0.35)
    assert row["probed_epoch"] == 2  # the epoch they are of: `epochs` ran on past it
    assert row["val_emotion_uar"] == 0.3


def test_a_uar_sweeps_row_records_the_best_uar_named_by_it_and_an_older_table_reads_without_it(tmp_path):
    """Each trial row kept `best_emotion_acc` and `best_leakage` only: a sweep choosing on UAR (sweep.emotion_metric:
    uar) recorded the best accuracy of its trials and never the best of the metric it chooses on. Each emotion
    metric's best is recorded, named by it; a table written before `best_emotion_uar` reads with it empty, and a
    trial of it resumed goes on from its own best accuracy, its best UAR unknown (begun at the resume, it was the best of
    the epochs after it: 0.42 here, where the trial's best was 0.5)."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    cfg = C.load(None, ["train.epochs=3", "sweep.emotion_metric=uar"])
    recorder = TrialRecorder(str(tmp_path), cfg)
    recorder.setup()
    trial = Trial("trainable", config={"method": "multitask"}, trial_id="u", stub=True)
    recorder.on_trial_start(0, [], trial)
    for epoch, (acc, uar, leak) in enumerate(((0.5, 0.45, 0.4), (0.6, 0.4, 0.3), (0.55, 0.5, 0.35)), 1):
        recorder.on_trial_result(epoch, [], trial, {"epoch": epoch, "emotion_acc": acc, "emotion_uar": uar,
                                                    "leakage": leak, "manifest_hash": "m"})
    (row,) = results.read_trials(str(tmp_path)).to_dict("records")
    assert (row["best_emotion_uar"], row["best_emotion_acc"], row["best_leakage"]) == (0.5, 0.6, 0.3)

    older = results.read_trials(str(tmp_path)).drop(columns=["best_emotion_uar"])  # as an earlier avdis wrote it
    storage.write_parquet(storage.join(str(tmp_path), results.TRIALS),
                          pa.Table.from_pandas(older, preserve_index=False))
    (row,) = results.read_trials(str(tmp_path)).to_dict("records")
    assert pd.isna(row["best_emotion_uar"]) and row["best_emotion_acc"] == 0.6
    resumed = TrialRecorder(str(tmp_path), cfg)
    resumed.setup()
    resumed.on_trial_result(4, [], trial, {"epoch": 3, "emotion_acc": 0.58, "emotion_uar": 0.42, "leakage": 0.33})
    (row,) = results.read_trials(str(tmp_path)).to_dict("records")
    assert pd.isna(row["best_emotion_uar"]) and (row["best_emotion_acc"], row["best_leakage"]) == (0.6, 0.3)


def test_a_rows_updated_at_is_the_time_of_its_own_last_change(tmp_path):
    """Every write stamped every row with its time: a trial finished long before read as changed at each later
    result of any other trial, and `updated_at` ("the row's last change") told nothing."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    cfg = C.load(None)
    recorder = TrialRecorder(str(tmp_path), cfg)
    recorder.setup()
    done, running = (Trial("trainable", config={"method": "multitask", "train.seed": seed}, trial_id=tid, stub=True)
                     for seed, tid in ((0, "done"), (1, "running")))
    for trial in (done, running):
        recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(1, [], done, {"epoch": cfg.train.epochs, "emotion_acc": 0.6, "leakage": 0.3})
    recorder.on_trial_complete(2, [], done)
    finished = results.read_trials(str(tmp_path)).set_index("trial_id")["updated_at"]
    recorder.on_trial_result(3, [], running, {"epoch": 1, "emotion_acc": 0.5, "leakage": 0.4})
    later = results.read_trials(str(tmp_path)).set_index("trial_id")["updated_at"]
    assert later["done"] == finished["done"] and later["running"] > finished["done"]


def test_a_trial_config_the_space_made_invalid_fails_that_trial_not_the_recorder(tmp_path):
    """Its config was built in the driver's on_trial_start callback, whose error stopped the whole sweep."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    cfg = C.load(None, ["model.emb_dim=4"])
    recorder = TrialRecorder(str(tmp_path), cfg)
    recorder.setup()
    trial = Trial("trainable", config={"method": "nullspace", "weight_nullspace": 9}, trial_id="n9", stub=True)
    recorder.on_trial_start(0, [], trial)
    (row,) = results.read_trials(str(tmp_path)).to_dict("records")
    assert (row["trial_id"], row["method"], row["weight"], row["status"]) == ("n9", "nullspace", 9.0, "RUNNING")


def test_recorder_writes_the_summary_and_hands_both_files_to_its_listeners(tmp_path):
    """The results floor writes trials.parquet and pareto.json per result; views above only receive them."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    seen = []

    def broken(trials, summary):
        raise RuntimeError("gauges down")

    cfg = C.load(None)
    recorder = TrialRecorder(str(tmp_path), cfg, listeners=[broken, lambda t, s: seen.append((t, s))])
    recorder.setup()
    trial = Trial("trainable", config={"method": "multitask", "train.seed": 0}, trial_id="m0", stub=True)
    recorder.on_trial_start(0, [], trial)
    recorder.on_trial_result(1, [], trial, {"epoch": cfg.train.epochs, "emotion_acc": 0.6, "leakage": 0.3})
    recorder.on_trial_complete(2, [], trial)
    summary = results.read_pareto(str(tmp_path))
    assert summary["front"] == ["m0"] and summary["n_completed"] == 1
    assert len(seen) == 3, "one call per write, a broken listener before it notwithstanding"
    trials, last = seen[-1]
    assert (last["front"], last["updated_at"]) == (summary["front"], summary["updated_at"])  # the summary written
    assert list(trials["trial_id"]) == ["m0"]
    assert trials["disentanglement"].tolist() == [0.0]  # built once, by the recorder's write


def test_a_trial_resumed_by_a_new_driver_counts_each_epoch_once_and_goes_on_from_its_wall_time(tmp_path):
    """A killed driver's trial resumes from its last checkpoint and runs the epochs after it again: the row counts
    each epoch's time once (the results carry the run's sums), and its empty cells (NaN read back) poison nothing."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    def result(epoch: int, train_s: float, epoch_s: float, sums: tuple[float, float], **objectives: float) -> dict:
        return {"epoch": epoch, "emotion_acc": 0.5, "leakage": 0.4, "train_s": train_s, "epoch_s": epoch_s,
                "train_s_sum": sums[0], "epoch_s_sum": sums[1], **objectives}

    cfg = C.load(None)
    trial = Trial("trainable", config={"method": "multitask", "train.seed": 0}, trial_id="r0", stub=True)
    first = TrialRecorder(str(tmp_path), cfg)
    first.setup()
    first.on_trial_start(0, [], trial)  # killed before any result: the row has empty cells
    second = TrialRecorder(str(tmp_path), cfg)
    second.setup()
    second.on_trial_start(0, [], trial)
    second.on_trial_result(1, [], trial, result(1, 0.2, 0.3, (0.2, 0.3)))
    second.on_trial_result(2, [], trial, result(2, 0.25, 0.35, (0.45, 0.65)))
    table = results.read_trials(str(tmp_path))  # killed again, 100 s in, before Tune saved epoch 2's checkpoint
    table.loc[table["trial_id"] == "r0", "wall_s"] = 100.0
    results.write_trials(str(tmp_path), table.to_dict("records"))
    third = TrialRecorder(str(tmp_path), cfg)
    third.setup()
    third.on_trial_start(0, [], trial)
    third.on_trial_result(1, [], trial, result(2, 0.3, 0.4, (0.5, 0.7)))  # epoch 2 again, from epoch 1's checkpoint
    third.on_trial_result(2, [], trial, result(cfg.train.epochs, 0.5, 0.8, (1.0, 1.5), emotion_acc=0.6, leakage=0.3))
    third.on_trial_complete(3, [], trial)
    row = results.read_trials(str(tmp_path)).set_index("trial_id").loc["r0"]
    assert (row["train_s"], row["work_s"]) == pytest.approx((1.0, 1.5))  # not 1.25 and 1.85: epoch 2 once
    assert (row["best_emotion_acc"], row["best_leakage"]) == (0.6, 0.3)
    assert row["status"] == "TERMINATED" and 100.0 <= row["wall_s"] < 150.0  # from the row's 100 s, not from 0 or twice


def test_a_finished_trial_that_fails_when_run_again_after_a_resume_keeps_its_result(tmp_path):
    """A driver killed after the recorder wrote a trial's end but before Tune saved it: the resumed Tune runs the
    trial again, and where that run failed (its storage read, its node) the finished row became ERROR, off the
    front and named as a failed trial."""
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    cfg = C.load(None)
    trial = Trial("trainable", config={"method": "multitask", "train.seed": 0}, trial_id="r0", stub=True)
    first = TrialRecorder(str(tmp_path), cfg)
    first.setup()
    first.on_trial_start(0, [], trial)
    first.on_trial_result(1, [], trial, {"epoch": cfg.train.epochs, "emotion_acc": 0.7, "leakage": 0.2,
                                         "val_emotion_acc": 0.7, "val_leakage": 0.2})
    first.on_trial_complete(2, [], trial)
    resumed = TrialRecorder(str(tmp_path), cfg)
    resumed.setup()
    resumed.on_trial_start(0, [], trial)
    trial.set_status(Trial.ERROR)
    resumed.on_trial_error(1, [], trial)
    row = results.read_trials(str(tmp_path)).set_index("trial_id").loc["r0"]
    assert (row["status"], row["order"], row["emotion_acc"]) == ("TERMINATED", 1, 0.7)


def test_a_trial_left_running_by_a_killed_driver_is_closed_saying_why(tmp_path):
    sweep = str(tmp_path / "s")
    done = {"trial_id": "a", "sweep": "s", "method": "multitask", "status": "TERMINATED", "stop_reason": "completed",
            "emotion_acc": 0.8, "leakage": 0.5, "order": 1, "epochs": 2}
    ghost = {"trial_id": "b", "sweep": "s", "method": "nullspace", "status": "RUNNING", "updated_at": 1000.0}
    done["updated_at"] = 2000.0
    results.write_trials(sweep, [done, ghost])
    before = time.time()
    shown = []  # the gauges: they kept the lost trial's mid-training values on Grafana's front
    closed = close_lost_trials(sweep, C.load(None, []), results.SEARCH,
                               [lambda frame, summary: shown.append((frame, summary))])
    again = results.read_trials(sweep).set_index("trial_id")
    assert list(closed["status"]) == list(again["status"]) == list(shown[0][0]["status"]) == ["TERMINATED", "ERROR"]
    assert shown[0][1]["n_lost"] == 1 and len(shown) == 1
    assert "driver was killed" in again.loc["b", "error"] and pd.isna(again.loc["a", "error"])
    assert again.loc["a", "leakage"] == 0.5  # the finished trial is kept as it was
    assert again.loc["b", "updated_at"] >= before and again.loc["a", "updated_at"] == 2000.0  # closing is a change
    assert failures(sweep, C.load(None, [])) is None  # a lost trial is no failure: Tune drew another in its place


def test_search_trials_lost_by_a_killed_driver_are_closed_before_the_confirmation_not_its_own(tmp_path):
    """The search's lost rows stayed RUNNING through the whole confirmation (its report and gauges showed trials
    running that no one runs), closed only at the end. The confirmation's own RUNNING rows are not closed with them:
    a restored confirm experiment resumes those."""
    sweep, cfg = str(tmp_path / "s"), C.load(None, [])
    rows = [{"trial_id": "a", "sweep": "s", "method": "multitask", "status": "RUNNING", "role": results.SEARCH},
            {"trial_id": "b", "sweep": "s", "method": "multitask", "status": "RUNNING"},  # an older table: no role
            {"trial_id": "c", "sweep": "s", "method": "multitask", "status": "RUNNING", "role": results.CONFIRM}]
    results.write_trials(sweep, rows)
    after_search = close_lost_trials(sweep, cfg, results.SEARCH).set_index("trial_id")
    assert list(after_search["status"]) == ["ERROR", "ERROR", "RUNNING"]
    assert (after_search.loc[["a", "b"], "error"] == results.LOST).all() and pd.isna(after_search.loc["c", "error"])
    after_confirm = close_lost_trials(sweep, cfg, results.CONFIRM).set_index("trial_id")
    assert list(after_confirm["status"]) == ["ERROR"] * 3 and after_confirm.loc["c", "error"] == results.LOST


def one_report(config: dict) -> None:
    """A Tune trainable of one result: the experiment a sweep's Tune saves."""
    from ray import tune

    tune.report({"epoch": 1})


def saved_search_experiment(cfg: C.Config) -> str:
    """Run a Tune experiment of one trial where `cfg`'s sweep keeps its search's (its state, as a sweep's Tune saves
    it); returns its name."""
    import shutil
    import tempfile

    import ray
    import ray.cloudpickle as cloudpickle
    from ray import tune

    from avdis.tune import sweep

    fs, storage_path, name = sweep.experiment_of(cfg, results.SEARCH)
    temp = tempfile.mkdtemp(prefix="avl-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        tune.Tuner(one_report, run_config=tune.RunConfig(name=name, storage_path=storage_path,
                                                         storage_filesystem=fs, verbose=0)).fit()
    finally:
        shutdown_ray()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        shutil.rmtree(temp, ignore_errors=True)
    return name


def test_the_trials_that_ended_after_tunes_last_save_are_counted_apart_from_its_experiment(tmp_path):
    """A killed driver's trials that started after Tune's last save and ended before the kill are recorded but not in
    Tune's saved experiment: the resumed searcher learns them (`SweepSearch.learn_recorded`) and Tune never counts
    them, so a resumed sweep of a space the searcher spends ends with Tune's trials short by them, which `fit` took
    for an interrupted sweep. Those are the ones counted apart: not the trials Tune lists, not a lost one (running or
    closed as lost: drawn again), not the confirmation's. A real saved Tune experiment."""
    from avdis.tune import resume, sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    saved_search_experiment(cfg)
    (known,) = resume.saved_experiment(cfg, results.SEARCH).known
    row = {"sweep": "s", "method": "multitask", "role": results.SEARCH, "epochs": 2}
    results.write_trials(url, [
        {**row, "trial_id": known, "status": "TERMINATED", "order": 1},
        {**row, "trial_id": "late", "status": "STOPPED", "order": 2},
        {**row, "trial_id": "late_failed", "status": "ERROR", "error": "Traceback ...\nValueError: no"},
        {**row, "trial_id": "lost", "status": "ERROR", "error": results.LOST},
        {**row, "trial_id": "running", "status": "RUNNING"},
        {**row, "trial_id": "confirming", "status": "TERMINATED", "order": 3, "role": results.CONFIRM}])
    assert resume.ended_apart(url, cfg, results.SEARCH) == {"late", "late_failed"}


def test_a_resumed_sweep_opens_each_saved_tune_experiment_once(tmp_path):
    """On resume the saved Tune experiment of a role was opened (`ExperimentAnalysis`: on S3 a listing and a read of
    its state) by the checks before Ray starts (`check_trial_runs`, the checkpoints its trials restore from) and again
    by `ended_apart` (the trials it lists), both before it runs. The resume reads it once (`read_saved`) and both use
    that: here the experiment is moved away after the checks, and the trials counted apart are still those of what
    they read. A real saved Tune experiment of one trial, which reported no checkpoint."""
    from ray.tune import ExperimentAnalysis

    from avdis.tune import resume, sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    name = saved_search_experiment(cfg)
    fs, storage_path, _ = sweep.experiment_of(cfg, results.SEARCH)
    (known,) = (t.trial_id for t in ExperimentAnalysis(f"{storage_path}/{name}", storage_filesystem=fs).trials)
    row = {"sweep": "s", "method": "multitask", "role": results.SEARCH, "epochs": 2}
    results.write_trials(url, [
        {**row, "trial_id": known, "status": "TERMINATED", "order": 1},
        {**row, "trial_id": "late", "status": "STOPPED", "order": 2},
        {**row, "trial_id": "running", "status": "RUNNING"}])  # resumed: its checkpoint is looked for in the state
    saved: dict[str, resume.SavedExperiment] = {}
    assert resume.check_trial_runs(url, cfg, saved) == []
    assert saved == {results.SEARCH: resume.SavedExperiment(frozenset({known}), {}, {known: "TERMINATED"})}
    Path(storage_path, name).rename(tmp_path / "aside")
    assert resume.ended_apart(url, cfg, results.SEARCH, saved) == {"late"}  # as read before: not opened again
    assert resume.ended_apart(url, cfg, results.SEARCH) == {known, "late"}  # opened anew: no experiment there now


def test_retry_failed_leaves_the_search_closed_once_its_confirmation_has_begun(tmp_path):
    """--retry-failed ran every failed trial again; a search trial retried after the front's confirmation had begun
    could change the front, while the restored confirmation re-trains the front it began on with as many trials: its
    count read as a sweep interrupted (exit 130) at every rerun. Once the confirmation's experiment was saved the
    search's failed trials are closed (said), the confirmation's still retried. The saved experiments are given as
    `read_saved` holds them; the record is a real trials.parquet."""
    from avdis.tune import resume, sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "error": "boom"}
    results.write_trials(url, [{**row, "trial_id": "search_failed", "role": results.SEARCH},
                               {**row, "trial_id": "confirm_failed", "role": results.CONFIRM},
                               {**row, "trial_id": "never_saved", "role": results.SEARCH}])
    search = resume.SavedExperiment(frozenset({"search_failed"}), {}, {"search_failed": "ERROR"})
    confirm = resume.SavedExperiment(frozenset({"confirm_failed"}), {}, {"confirm_failed": "ERROR"})
    begun = resume.retried_trials(url, cfg, {results.SEARCH: search, results.CONFIRM: confirm})
    assert begun.run == {results.SEARCH: set(), results.CONFIRM: {"confirm_failed"}}
    assert begun.closed == {"search_failed"} and begun.cannot == {"never_saved"}
    unsaved = resume.SavedExperiment(frozenset(), {}, exists=False)
    before = resume.retried_trials(url, cfg, {results.SEARCH: search, results.CONFIRM: unsaved})
    assert before.run == {results.SEARCH: {"search_failed"}, results.CONFIRM: set()} and not before.closed


def spanned(config: dict, log: str, fails: int = 1) -> None:
    """A Tune trainable of 3 epochs that writes its trial's span (id, start, end) to `log` as it ends: the first
    `fails` trials of the experiment fail at their second epoch (writing their ids beside `log`, in `failed`, a line
    each), and run again each runs 4 s, long enough for a trial started beside it to start; the others run 0.3 s."""
    from ray import tune

    trial, start = tune.get_context().get_trial_id(), time.time()
    marker = Path(log).with_name("failed")
    failed = marker.read_text().splitlines() if marker.exists() else []
    retried = trial in failed
    for epoch in range(1, 4):
        time.sleep(4 / 3 if retried else 0.1)
        if epoch == 2 and not retried and len(failed) < fails:
            marker.write_text("\n".join([*failed, trial]))
            raise RuntimeError("out of memory")
        tune.report({"epoch": epoch, "val_emotion_acc": 0.5, "val_leakage": 0.2})
    with open(log, "a") as out:  # one write a line
        out.write(json.dumps([trial, start, time.time()]) + "\n")


class InterruptOnError(Callback):
    """Interrupts the driver (SIGINT: Tune saves its state and returns) once `fails` trials have failed: a sweep's
    driver stopped before its search suggested the next trial."""

    def __init__(self, fails: int = 1):
        self.fails = fails

    def on_trial_error(self, iteration, trials, trial, **info):
        self.fails -= 1
        if self.fails == 0:
            os.kill(os.getpid(), signal.SIGINT)


@contextmanager
def failed_first_search(tmp_path: Path, fails: int = 1,
                        scheduler: bool = False) -> Iterator[tuple[C.Config, Any]]:
    """A sweep's search of 3 trials, one at a time (sweep.max_concurrent=1), as a real Tune experiment of the sweep's
    searcher behind its limiter, where the sweep keeps it, on a local Ray of 2 CPUs (a trial takes 1): its first
    `fails` trials failed, and its driver was interrupted then. With `scheduler`, under the sweep's scheduler
    (`sweep.scheduler`, type none), else under none, as Tune restores an experiment begun before the sweep gave one.
    Yields the sweep's config and the trainable (`spanned`, its spans in `spans.jsonl`) with Ray still up, for a
    rerun to restore the experiment."""
    import shutil
    import tempfile

    import ray
    import ray.cloudpickle as cloudpickle
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s", "train.epochs=3", "sweep.num_samples=3",
                        "sweep.max_concurrent=1", "sweep.search=random", "sweep.scheduler.type=none",
                        "sweep.space.methods=[single_task, multitask, nullspace]"])
    fs, storage_path, name = sweep.experiment_of(cfg, results.SEARCH)
    temp = tempfile.mkdtemp(prefix="avl-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        trainable = tune.with_resources(
            tune.with_parameters(spanned, log=str(tmp_path / "spans.jsonl"), fails=fails), {"cpu": 1})
        search = ConcurrencyLimiter(sweep.searcher(cfg, sweep.url_of(cfg)), max_concurrent=cfg.sweep.max_concurrent)
        tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=search, num_samples=cfg.sweep.num_samples,
                                                          scheduler=sweep.scheduler(cfg) if scheduler else None),
                   run_config=tune.RunConfig(name=name, storage_path=storage_path, storage_filesystem=fs, verbose=0,
                                             callbacks=[InterruptOnError(fails)])).fit()
        yield cfg, trainable
    finally:
        shutdown_ray()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        shutil.rmtree(temp, ignore_errors=True)


def spans(tmp_path: Path) -> list[list]:
    """The spans (trial id, start, end) of the trials `failed_first_search` ran to their end, by start."""
    return sorted((json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()),
                  key=lambda span: span[1])


@pytest.mark.ray
def test_a_retried_trial_counts_against_max_concurrent(tmp_path):
    """`--retry-failed` with sweep.max_concurrent=1: Tune starts a restored trial without asking its searcher, and
    Tune's ConcurrencyLimiter had let the failed trial go at its failure, so it suggested a new trial as the retried
    one started, and the two ran together (on a GPU box sized for one trial, out of memory: the very failure retried).
    The restore (`sweep.restored`) counts the retried trial in the limiter's saved state: no two trials' spans
    overlap. The retried trial's end reaches the searcher, as any trial's the limiter counts."""
    from avdis.tune import resume, sweep

    with failed_first_search(tmp_path) as (cfg, trainable):
        failed = (tmp_path / "failed").read_text()
        assert resume.saved_experiment(cfg, results.SEARCH).status == {failed: "ERROR"}  # no trial suggested after
        grid = sweep.restored(cfg, results.SEARCH, trainable, retry=True).fit()
    ran = spans(tmp_path)
    assert len(ran) == 3 and failed in {trial for trial, _, _ in ran} and not grid.errors
    assert all(later[1] >= earlier[2] for earlier, later in zip(ran, ran[1:])), ran
    fs, storage_path, name = sweep.experiment_of(cfg, results.SEARCH)
    learned = sweep.searcher(cfg)  # as Tune saved it at the end
    learned.restore(str(max(Path(storage_path, name).glob("searcher-state-*.pkl"))))
    assert [state for state, _ in learned._told.values()] == [optuna.trial.TrialState.COMPLETE] * 3


@pytest.mark.ray
@pytest.mark.parametrize("scheduler", [False, True], ids=["begun_without_one", "the_sweeps"])
def test_retried_trials_past_max_concurrent_run_one_at_a_time(tmp_path, scheduler):
    """`--retry-failed` with two failed trials and sweep.max_concurrent=1: the limiter counted both retried trials
    (no new suggestion while they ran), but Tune starts every trial a restore resumes as it adds it, so the two ran
    side by side (on a GPU box sized for one trial, out of memory: the very failure retried). The sweep's scheduler
    (`schedulers.AtMost`, given the limit by `sweep.restored` where the experiment was begun without it) holds the
    second back until the first ends: no two trials' spans overlap, the search's third trial after them."""
    from avdis.tune import resume, sweep

    with failed_first_search(tmp_path, fails=2, scheduler=scheduler) as (cfg, trainable):
        failed = (tmp_path / "failed").read_text().splitlines()
        assert resume.saved_experiment(cfg, results.SEARCH).status == dict.fromkeys(failed, "ERROR")
        grid = sweep.restored(cfg, results.SEARCH, trainable, retry=True).fit()
    ran = spans(tmp_path)
    assert len(ran) == 3 and set(failed) == {trial for trial, _, _ in ran[:2]} and not grid.errors
    assert all(later[1] >= earlier[2] for earlier, later in zip(ran, ran[1:])), ran


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_a_failed_trial_a_plain_rerun_leaves_failed_takes_no_place_of_max_concurrent(tmp_path):
    """A trial that failed after Tune last saved its state, before its driver was killed, was saved running, and so
    counted by Tune's ConcurrencyLimiter (`live_trials`). `mark_failed_trials` makes it failed in the saved
    experiment, which a rerun without --retry-failed does not run: with sweep.max_concurrent=1 the limiter suggested
    nothing more for ever, and the rerun hung with no trial running (seen: past a SIGINT, until killed). The restore
    counts the trials Tune runs alone: the search's 2 other trials run, one at a time. The saved limiter's count is
    set here as that kill leaves it."""
    import ray.cloudpickle as cloudpickle

    from avdis.tune import resume, sweep

    with failed_first_search(tmp_path) as (cfg, trainable):
        failed = (tmp_path / "failed").read_text()
        fs, storage_path, name = sweep.experiment_of(cfg, results.SEARCH)
        (state_file,) = Path(storage_path, name).glob("search_gen_state-*.json")
        state = cloudpickle.loads(state_file.read_bytes())
        state[resume.LIMITER].update(live_trials={failed}, num_unfinished_live_trials=1)
        state_file.write_bytes(cloudpickle.dumps(state))
        grid = sweep.restored(cfg, results.SEARCH, trainable).fit()
    ran = spans(tmp_path)
    assert len(ran) == 2 and failed not in {trial for trial, _, _ in ran} and len(grid.errors) == 1
    assert ran[1][1] >= ran[0][2], ran


def test_a_sweeps_last_words_say_its_search_trials_are_not_retried_once_its_confirmation_has_begun(tmp_path):
    """Once the front's confirmation has begun --retry-failed leaves the search's failed trials failed
    (`test_retry_failed_leaves_the_search_closed_once_its_confirmation_has_begun`), but the sweep's last words told
    to rerun with --retry-failed, 'each failed trial is run again', at every rerun: a sweep with sweep.confirm_seeds
    that reached its end had begun it. They say which are run again and which not, and why. The record is a real
    trials.parquet, the experiments Tune's saved states where Tune looks for them."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s", "sweep.confirm_seeds=1"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "error": "boom"}
    search = [{**row, "trial_id": "s1", "role": results.SEARCH}, {**row, "trial_id": "s2", "role": results.SEARCH}]
    results.write_trials(url, search)
    saved_tune_state(cfg, results.SEARCH, {"s1": "ERROR", "s2": "ERROR"})
    retried = "Rerun the same command with --retry-failed once the cause is fixed: each failed trial is run again"
    assert retried in str(failures(url, cfg))  # the confirmation not begun: the search's are retried
    saved_tune_state(cfg, results.CONFIRM, {})
    said = str(failures(url, cfg))
    assert "--retry-failed" not in said.replace("--retry-failed or not", "") and said.endswith(
        "They are not run again, --retry-failed or not: the confirmation of the search's front has begun, and "
        "re-trains the front it began on, which a retried search trial could change (a new sweep.name runs them in "
        "a new sweep)."), said
    results.write_trials(url, [*search, {**row, "trial_id": "c1", "role": results.CONFIRM}])
    saved_tune_state(cfg, results.CONFIRM, {"c1": "ERROR"})
    said = str(failures(url, cfg))
    assert ("each failed confirming trial is run again from its last checkpoint (rerun without it, they stay "
            "failed); the search's failed trials (s1, s2) not: the confirmation of the search's front has begun") \
        in said, said


def test_a_sweeps_last_words_do_not_send_a_trial_of_a_non_finite_objective_to_retry_failed(tmp_path):
    """A trial that reported a non-finite objective is an error in the record but a finish to Tune, so --retry-failed
    cannot run it again (`resume.retried_trials`), and a rerun from its checkpoint would meet the same: the last words
    told to rerun with --retry-failed for it, and the flag said it could not, at every rerun (found by hR71). They
    name it as not run again; the other failed trials are still sent to the flag. Tune's saved state holds it as
    finished, the other as failed."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "role": results.SEARCH}
    nan = {**row, "trial_id": "nan", "error": "non-finite objectives {'val_leakage': nan} at epoch 2: a result no "
                                              "front can use"}
    results.write_trials(url, [nan])
    saved_tune_state(cfg, results.SEARCH, {"nan": "TERMINATED", "oom": "ERROR"})
    said = str(failures(url, cfg))
    assert "--retry-failed once" not in said and said.endswith(
        "They are not run again, --retry-failed or not: trial (nan) reported a non-finite objective, which Tune took "
        "for the trial's end (run again, it would meet the same from its last checkpoint): not run again."), said
    results.write_trials(url, [nan, {**row, "trial_id": "oom", "error": "boom"}])
    said = str(failures(url, cfg))
    assert said.endswith("Rerun the same command with --retry-failed once the cause is fixed: trial (oom) is run "
                         "again from its last checkpoint (rerun without it, they stay failed); trial (nan) reported "
                         "a non-finite objective, which Tune took for the trial's end (run again, it would meet the "
                         "same from its last checkpoint): not run again."), said


def test_a_sweeps_last_words_do_not_send_a_trial_tunes_saved_state_never_held_to_retry_failed(tmp_path):
    """A trial a killed driver started after Tune last saved its state, and that failed before the kill, is in the
    record but not in Tune's saved experiment, and no rerun saves it there: --retry-failed cannot run it again
    (`resume.retried_trials`: cannot), yet the sweep's last words sent it to the flag, which then said it could not,
    at every rerun. They name it as not run again, saying what runs it (`avdis train`, a new sweep); the failed trial
    the state holds, as unfinished (its process died: `resume.mark_failed_trials` marks it), is still sent to the
    flag. A real trials.parquet, Tune's saved state of real Tune trials where Tune looks for it."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "role": results.SEARCH,
           "error": "boom"}
    results.write_trials(url, [{**row, "trial_id": "died"}, {**row, "trial_id": "late"},
                               {**row, "trial_id": "done", "status": "TERMINATED", "order": 1, "error": None}])
    saved_tune_state(cfg, results.SEARCH, {"died": "RUNNING", "done": "TERMINATED"})
    said = str(failures(url, cfg))
    assert said.endswith(
        "Rerun the same command with --retry-failed once the cause is fixed: trial (died) is run again from its last "
        "checkpoint (rerun without it, they stay failed); trial (late) started after Tune last saved its experiment "
        "and failed before the driver was killed, so Tune does not hold it: not run again in this sweep (`avdis "
        "train` with its settings above trains it alone, a new sweep.name in a new sweep)."), said
    results.write_trials(url, [{**row, "trial_id": "late"}])
    said = str(failures(url, cfg))
    assert "--retry-failed once" not in said and "They are not run again, --retry-failed or not: trial (late)" in said


def test_retry_failed_says_why_each_trial_it_cannot_run_cannot_be(tmp_path):
    """--retry-failed's line gave every failed trial it cannot run one reason, "it ended after Tune last saved its
    state, or reported a non-finite objective": the user could not tell which, nor what runs the first kind. It says
    each trial's own (`resume.Retries.finished`: held as finished), as the sweep's last words do. A real
    trials.parquet, Tune's saved state of real Tune trials where Tune looks for it."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "role": results.SEARCH, "error": "boom"}
    results.write_trials(url, [{**row, "trial_id": t} for t in ("raised", "late", "nan")])
    saved_tune_state(cfg, results.SEARCH, {"raised": "ERROR", "nan": "TERMINATED"})
    run, said = sweep._retried(url, cfg, {})
    assert run[results.SEARCH] == {"raised"}
    assert said == (
        "retrying 1 failed trial (1 search), each from its last checkpoint (from its start where it has none); 1 "
        "failed trial (late) cannot be: Tune's saved experiment does not hold it (it started after Tune last saved its "
        "state and failed before the driver was killed; `avdis train` with its settings trains it alone, a new "
        "sweep.name in a new sweep); 1 failed trial (nan) cannot be: Tune's saved experiment holds it as finished (it "
        "reported a non-finite objective, which Tune took for its end)"), said


def test_a_sweeps_last_words_say_of_each_failed_trial_what_retry_failed_does_with_it(tmp_path):
    """The last words had a rule of their own beside the flag's (`resume.retries_of`), by the record's error: a
    search trial of a non-finite objective, which Tune holds as finished, was said closed by
    the confirmation (the flag: cannot, as finished); one Tune holds as finished whose error is another was sent to
    the flag, which said it could not. The words now say what the flag does, which is checked beside them: also of
    a trial of a non-finite objective that Tune's saved state holds as unfinished (the driver killed after the
    recorder wrote it, before Tune saved it finished), which `resume.mark_failed_trials` marks finished. A real
    trials.parquet, Tune's saved states of real Tune trials where Tune looks for them."""
    from avdis.tune import resume, sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s", "sweep.confirm_seeds=1"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "role": results.SEARCH}
    nan = {**row, "trial_id": "nan", "error": "non-finite objectives {'val_leakage': nan} at epoch 2: a result no "
                                              "front can use"}
    results.write_trials(url, [nan])
    not_run = ("They are not run again, --retry-failed or not: trial (nan) reported a non-finite objective, which "
               "Tune took for the trial's end (run again, it would meet the same from its last checkpoint): not run "
               "again.")
    saved_tune_state(cfg, results.SEARCH, {"nan": "RUNNING"})  # as the killed driver's Tune saved it
    assert str(failures(url, cfg)).endswith(not_run), str(failures(url, cfg))
    resume.mark_failed_trials(url, cfg)  # the rerun's, before Tune restores the state: it marks it finished
    assert str(failures(url, cfg)).endswith(not_run)
    assert resume.retried_trials(url, cfg, {}) == (
        {results.SEARCH: set(), results.CONFIRM: set()}, {"nan"}, set(), {"nan"})

    saved_tune_state(cfg, results.SEARCH, {"nan": "TERMINATED"})
    saved_tune_state(cfg, results.CONFIRM, {})  # the front's confirmation has begun
    said = str(failures(url, cfg))
    assert said.endswith(not_run), said
    assert resume.retried_trials(url, cfg, {}) == (
        {results.SEARCH: set(), results.CONFIRM: set()}, {"nan"}, set(), {"nan"})

    confirming = {**row, "error": "boom", "role": results.CONFIRM}
    results.write_trials(url, [{**row, "trial_id": "s1", "error": "boom"}, {**confirming, "trial_id": "c1"},
                               {**confirming, "trial_id": "held"}])
    saved_tune_state(cfg, results.SEARCH, {"s1": "ERROR"})
    saved_tune_state(cfg, results.CONFIRM, {"c1": "PAUSED", "held": "TERMINATED"})
    said = str(failures(url, cfg))
    assert said.endswith(
        "Rerun the same command with --retry-failed once the cause is fixed: trial (c1) is run again from its last "
        f"checkpoint (rerun without it, they stay failed); the search's failed trial (s1) not: {resume.CLOSED_WHY}; "
        "Tune's saved experiment holds trial (held) as finished, so Tune does not run it again: not run again."), said
    resume.mark_failed_trials(url, cfg)
    assert resume.retried_trials(url, cfg, {}) == (
        {results.SEARCH: set(), results.CONFIRM: {"c1"}}, {"held"}, {"s1"}, {"held"})


def test_a_sweeps_last_words_go_by_each_trials_error_where_tunes_saved_state_cannot_be_read(tmp_path):
    """Where the saved Tune experiment of a failed trial's role cannot be read (here its state file is not JSON),
    the last words cannot say what the flag does with it, which says what it finds: they go by the trial's error,
    one of a non-finite objective not run again, the others sent to the flag. A real trials.parquet."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "epochs": 2, "status": "ERROR", "role": results.SEARCH}
    results.write_trials(url, [{**row, "trial_id": "oom", "error": "boom"},
                               {**row, "trial_id": "nan", "error": "non-finite objectives {'val_leakage': nan}"}])
    saved_tune_state(cfg, results.SEARCH, {"nan": "ERROR"}).write_text("{not json")
    said = str(failures(url, cfg))
    assert said.endswith("Rerun the same command with --retry-failed once the cause is fixed: trial (oom) is run "
                         "again from its last checkpoint (rerun without it, they stay failed); trial (nan) reported "
                         "a non-finite objective, which Tune took for the trial's end (run again, it would meet the "
                         "same from its last checkpoint): not run again."), said


def test_a_confirmation_that_ends_short_says_it_was_confirming(tmp_path):
    """A sweep stopped while confirming its front said 'interrupted before its 2 trials ended', counting the
    confirming trials alone as the sweep's trials, after a search of many: it names them as confirming trials. A real
    Tune experiment of one trial, fitted where its sweep counted two."""
    import shutil
    import tempfile

    import ray
    import ray.cloudpickle as cloudpickle
    from ray import tune

    from avdis.tune import sweep

    temp = tempfile.mkdtemp(prefix="avl-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        for noun, said in (("confirming trial", "2 confirming trials"), ("trial", "2 trials")):
            tuner = tune.Tuner(one_report, run_config=tune.RunConfig(name=noun.replace(" ", "-"), verbose=0,
                                                                     storage_path=str(tmp_path)))
            with pytest.raises(sweep.SweepInterrupted, match=rf"s1: interrupted before its {said} ended; Tune saved"):
                sweep.fit(tuner, 2, "s1", *([noun] if noun != "trial" else []))
    finally:
        shutdown_ray()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        shutil.rmtree(temp, ignore_errors=True)


def test_a_lost_trials_checkpoints_storage_refuses_to_delete_are_kept_saying_so_and_deleted_by_a_rerun(
        tmp_path, s3_bucket, capsys):
    """Deleting a lost trial's checkpoints once the experiment ended, a refusal of storage (a transient S3 error, a
    denied delete) ended the sweep in it, after its row was closed: no rerun tried again, as the row was no longer
    RUNNING. Now the sweep goes on, warning with the folder; a rerun deletes a lost trial's folders still there."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", f"sweep.checkpoints={s3_bucket}/ck", "sweep.name=s"])
    url, name = sweep.url_of(cfg), saved_search_experiment(cfg)
    base = sweep.checkpoints_of(cfg)
    kept = {"earlier": [f"{base}/{name}/run_trial_earlier_00001_1_x/checkpoint_000001",  # its own process's
                        f"{base}/trials/earlier/checkpoint_epoch_0001"],  # closed by a rerun before: still there
            "now": [f"{base}/trials/now/checkpoint_2026-12-04_13-37-00.123456"]}  # a multi-worker trial's
    for folder in (f for folders in kept.values() for f in folders):
        storage.write_bytes(f"{folder}/state.json", b'{"epoch": 1}')
    storage.write_bytes(f"{base}/trials/now/metrics.json", b'{"history": []}')
    row = {"sweep": "s", "method": "multitask", "role": results.SEARCH}
    results.write_trials(url, [{**row, "trial_id": "earlier", "status": "ERROR", "error": results.LOST},
                               {**row, "trial_id": "now", "status": "RUNNING"}])
    with s3_denied(s3_bucket, "s3:DeleteObject"):
        closed = close_lost_trials(url, cfg, results.SEARCH).set_index("trial_id")
    assert list(closed["status"]) == ["ERROR", "ERROR"] and closed.loc["now", "error"] == results.LOST
    warned = capsys.readouterr().err
    for folder in (f for folders in kept.values() for f in folders):
        assert storage.exists(f"{folder}/state.json")
        trial_folder = folder.rsplit("/", 1)[0]  # its Tune trial folder or Ray Train run
        assert f"warning: {trial_folder}: the checkpoints of a lost trial could not be deleted" in warned
    assert "delete it by hand" in warned
    close_lost_trials(url, cfg, results.SEARCH)  # the rerun's
    for folder in (f for folders in kept.values() for f in folders):
        assert not storage.exists(folder)
    assert storage.exists(f"{base}/trials/now/metrics.json")  # the trial's history stays


def test_lost_trials_whose_checkpoints_cannot_be_looked_for_are_named_and_no_folder_is_given_to_delete(
        tmp_path, s3_bucket, capsys):
    """Where storage refused the look-up (Tune's saved state unread, the folders unlisted), the warning named the
    sweep's whole checkpoints folder and said to delete its checkpoint_* folders by hand: those of every trial that
    resumes too. It names the lost trials and leaves the deletion to the rerun."""
    from avdis.tune import sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path}", f"sweep.checkpoints={s3_bucket}/ck", "sweep.name=s"])
    url = sweep.url_of(cfg)
    saved_search_experiment(cfg)  # the state, which knows no trial `gone`
    lost = f"{sweep.checkpoints_of(cfg)}/trials/gone/checkpoint_epoch_0001"
    storage.write_bytes(f"{lost}/state.json", b'{"epoch": 1}')
    results.write_trials(url, [{"sweep": "s", "method": "multitask", "role": results.SEARCH, "trial_id": "gone",
                                "status": "RUNNING"}])
    with s3_denied(s3_bucket, "s3:GetObject"):
        close_lost_trials(url, cfg, results.SEARCH)
    warned = capsys.readouterr().err
    assert "warning: the checkpoints of lost trial gone could not be looked for" in warned, warned
    assert "by hand" not in warned and "its rerun tries again" in warned
    assert storage.exists(f"{lost}/state.json")
    close_lost_trials(url, cfg, results.SEARCH)  # the rerun's
    assert not storage.exists(lost)


def test_a_sweep_with_a_failed_trial_says_which_and_exits_non_zero(tmp_path):
    sweep = str(tmp_path / "s")
    done = {"trial_id": "a", "sweep": "s", "method": "multitask", "status": "TERMINATED", "order": 1, "epochs": 2}
    failed = {"trial_id": "b", "sweep": "s", "method": "nullspace", "status": "ERROR",
              "params": json.dumps({"method": "nullspace", "weight_nullspace": 8, "weight_adversarial": 0.5,
                                    "train.lr": 0.003}),  # NSGA-II draws every method's weight
              "error": "Traceback ...\nNonFiniteError: epoch 2: loss is nan at step 7"}
    silent = {"trial_id": "c", "sweep": "s", "method": "adversarial", "status": "ERROR", "error": ""}  # RuntimeError()
    lost = {"trial_id": "d", "sweep": "s", "method": "multitask", "status": "ERROR", "error": results.LOST}  # Tune drew another
    results.write_trials(sweep, [done, failed, silent, lost])
    err = failures(sweep, C.load(None, []))
    assert isinstance(err, TrialsFailed) and err.exit_code != 0
    assert "2 of 3 trials failed" in str(err)
    assert "b (method.name=nullspace method.weight=8 train.lr=0.003): NonFiniteError: epoch 2" in str(err)
    assert "c (adversarial): no message" in str(err) and "a (multitask)" not in str(err)
    assert "stand on the trials that finished" in str(err)
    results.write_trials(sweep, [failed, silent, lost])  # every trial failed: no front stands on any
    assert str(failures(sweep, C.load(None, []))).startswith(
        "2 of 2 trials failed; no trial finished, so the front and report are")
    results.write_trials(sweep, [failed])  # a sweep of one trial
    assert str(failures(sweep, C.load(None, []))).startswith("1 of 1 trial failed; no trial finished")


def test_a_sweep_whose_trials_failed_on_a_damaged_shard_says_what_to_do_once(tmp_path):
    """Every trial of a sweep on a shard truncated on S3 failed on the same long line, which ends with what to do; the
    sweep's last words cut each at 300 characters, so that four times over they read "...; make the shards again with
    `avdis" and never said how."""
    shard = "s3://b/shards/smoke/shards/shard-000002.tar"
    last = (f"avdis.data.stream.SkipRateExceeded: 9/42 clips of split 'train' did not arrive (1 bad shard, 0 bad "
            f"samples; data.loader.max_skip_rate=0.01); first problems: shard {shard}: size mismatch: manifest says "
            f"1064960 bytes, read 532480; make the shards again with `avdis preprocess --out s3://b/shards/smoke "
            "--force` (without --force a rerun checks only their sizes and keeps a shard damaged in place), or raise "
            "data.loader.max_skip_rate to train without those clips")
    assert len(last) > 300
    rows = [{"trial_id": t, "sweep": "s", "method": "multitask", "status": "ERROR", "error": f"Traceback ...\n{last}"}
            for t in ("a", "b", "c")]
    rows.append({"trial_id": "d", "sweep": "s", "method": "multitask", "status": "ERROR", "error": "x" * 5000})
    results.write_trials(str(tmp_path / "s"), rows)
    said = str(failures(str(tmp_path / "s"), C.load(None, [])))
    assert f"  a (multitask): {last}\n" in said, said  # whole, with what to do
    assert "  b (multitask): the same error as a\n" in said and "  c (multitask): the same error as a\n" in said
    assert said.count(last) == 1
    assert re.search(r"\n  d \(multitask\): x{1000,4000}\.\.\. \(the rest in its row\)\n", said)  # a line past all use


def test_a_sweep_whose_trials_went_without_clips_of_a_damaged_shard_says_so_at_its_end(tmp_path, capsys, monkeypatch):
    """With a shard truncated on S3 and data.loader.max_skip_rate raised past its clips, every trial trained without 9
    of its 42 train clips and was measured without 16 of its 72: its epoch lines said so in its own log, while the
    sweep's last words said "done." and neither trials.parquet, its report nor `avdis report` said anything. The
    recorder keeps the counts Tune's results carry; the sweep's end warns, as `avdis report` notes."""
    from ray.tune.experiment import Trial

    from avdis.cli import main
    from avdis.tune import sweep
    from avdis.tune.records import TrialRecorder

    def run(cfg, views, names, short=True, retry_failed=False):
        # the sweep's record, as its recorder keeps it from Tune's results
        Path(sweep.url_of(cfg)).mkdir()
        recorder = TrialRecorder(sweep.url_of(cfg), cfg)
        recorder.setup()
        for tid in ("a", "b"):
            trial = Trial("trainable", config={"method": "multitask"}, trial_id=tid, stub=True)
            recorder.on_trial_start(0, [], trial)
            for epoch, skipped in ((1, 9 if short else 0), (2, 5 if short and tid == "a" else 0)):
                recorder.on_trial_result(epoch, [], trial, {
                    "epoch": epoch, "emotion_acc": 0.6, "leakage": 0.3, "val_emotion_acc": 0.5, "val_leakage": 0.4,
                    "skipped_samples": skipped, "eval_skipped_samples": 16 if short and epoch == 2 else 0})
            recorder.on_trial_complete(3, [], trial)

    for short in (True, False):
        monkeypatch.setattr(sweep, "run", functools.partial(run, short=short))
        assert main(["sweep", f"--storage={tmp_path}", f"--name=s{short}", "train.epochs=2"]) == 0
        out, err = capsys.readouterr()
        table = results.read_trials(str(tmp_path / f"s{short}")).set_index("trial_id")
        assert list(table["skipped_clips"]) == ([9, 9] if short else [0, 0])  # the most an epoch went without
        assert list(table["eval_skipped_clips"]) == ([16, 16] if short else [0, 0])  # its metrics' epoch
        said = ("avdis sweep: warning: 2 trials went without clips of damaged or unreadable shards, as "
                "data.loader.max_skip_rate let them: up to 9 train clips an epoch, and 16 missing from the metrics "
                "and the probe")
        assert (said in err) == short, err
        assert main(["report", str(tmp_path / f"s{short}")]) == 0
        assert ("avdis report: note: 2 trials went without clips" in capsys.readouterr().err) == short


def test_a_sweep_on_a_shard_cut_short_is_refused_before_ray_starts(tiny_corpus, tiny_shards, tmp_path, capsys):
    """With one shard of data.shards truncated on S3 (a real sweep: ray job submit on a local Ray, moto) every trial
    failed its first epoch on it, one after another, and the sweep's name was spent on failed trials, which a resume
    does not retry. Refused before Ray starts, naming the shard; where data.loader.max_skip_rate lets its clips go, a
    warning says how many every trial will go without."""
    import shutil

    from avdis.cli import main
    from avdis.tune import preflight

    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    cut = shards / "shards" / "shard-000001.tar"
    cut.write_bytes(cut.read_bytes()[:1000])
    smoke = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "smoke.yaml"
    given = ["--config", str(smoke), f"data.src={tiny_corpus}", f"data.shards={shards}",
             f"sweep.storage={tmp_path / 'sweeps'}"]
    assert main(["sweep", *given]) == 2
    err = capsys.readouterr().err
    assert f"{shards}: 1 shard missing or cut short ({cut}: has 1000 bytes, the manifest says" in err, err
    assert "every trial would fail its first epoch" in err and f"`avdis preprocess --out {shards}`" in err
    assert not (tmp_path / "sweeps" / "smoke" / "checkpoints").exists()  # no trial, no experiment
    (shards / "shards" / "shard-000002.tar").unlink()
    preflight.check_shards_whole(C.load(smoke, given[2:] + ["data.loader.max_skip_rate=0.9"]))
    assert re.search(rf"warning: {shards}: 2 shards missing or cut short \(.*shard-000002.tar: missing\): trials "
                     r"will train and be measured without 32 of its 72 clips", capsys.readouterr().err)


def test_a_sweep_and_its_report_say_failed_trials_in_one_wording(tmp_path, capsys):
    """The sweep's error and `avdis report`'s note were two copies of one count, worded apart ("the front and report
    are empty" beside "the front is empty")."""
    from avdis.cli import main

    sweep = str(tmp_path / "s")
    done = {"trial_id": "a", "sweep": "s", "method": "multitask", "status": "TERMINATED", "order": 1, "epochs": 2,
            "emotion_acc": 0.8, "leakage": 0.5}
    for rows in ([done, {"trial_id": "b", "sweep": "s", "method": "adversarial", "status": "ERROR", "error": "x"}],
                 [{"trial_id": "b", "sweep": "s", "method": "adversarial", "status": "ERROR", "error": "x"}]):
        results.write_trials(sweep, rows)
        err = failures(sweep, C.load(None, []))
        assert main(["report", sweep]) == 0
        said = str(err).splitlines()[0]
        assert said == results.failures_said(results.read_trials(sweep), sweep)
        assert f"avdis report: note: {said}" in capsys.readouterr().err.splitlines()


def test_a_sweep_with_failed_trials_never_says_done(tmp_path, capsys, monkeypatch):
    """`avdis sweep` printed "done." and then its error that trials failed: success, then failure. The sweep's run is
    its table here (Ray's part is the e2e tests'); the pages and the ending are the command's own."""
    from avdis.cli import main
    from avdis.tune import sweep

    row = {"sweep": "s", "method": "multitask", "status": "TERMINATED", "order": 1, "epochs": 2, "emotion_acc": 0.8,
           "leakage": 0.5}
    for rows, code, ended in (([{**row, "trial_id": "a"}], 0, "done."),
                              ([{**row, "trial_id": "a"}, {**row, "trial_id": "b", "status": "ERROR", "order": None,
                                                          "error": "boom"}], 1, "ended with failed trials")):
        monkeypatch.setattr(sweep, "run", lambda cfg, views, names, rows=rows, retry_failed=False: results.record(
            sweep.url_of(cfg), rows, cfg.sweep.name))
        assert main(["sweep", f"--storage={tmp_path}", f"--name=s{code}"]) == code
        out, err = capsys.readouterr()
        assert f"avdis sweep s{code}: {ended}" in out and ("done" in out) == (code == 0)
        assert ("1 of 2 trials failed" in err) == bool(code)


def test_a_sampled_setting_added_on_resume_is_a_change_and_a_removed_setting_is_none(tmp_path):
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    more = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", "sweep.space.params.train.lr=[0.01, 0.1]"])
    with pytest.raises(UsageError, match=r"differs in: sweep\.space\.params\.train\.lr\). Pick a new name"):
        check_spec(url, more)  # not "an older avdis had no ...": the user added it
    spec = json.loads((tmp_path / "s1" / results.SPEC).read_text())
    spec["spec"]["sweep"].update(metrics=["emotion_acc", "leakage"], modes=["max", "min"])  # settings since removed
    (tmp_path / "s1" / results.SPEC).write_text(json.dumps(spec))
    assert check_spec(url, cfg) is not None


def test_a_sweep_recorded_with_the_default_data_synth_resumes_with_its_shards_settings(tmp_path):
    """A sweep started before `as_made` recorded the default data.synth where its config left it out; resumed now,
    its config carries the settings of the shards' corpus, and the resume was refused as another sweep. The data is
    held by the manifest hash (`check_data`), and a data.synth given is checked against the shards."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    assert check_spec(url, C.with_overrides(cfg, {"data.synth.speakers": 6})) is not None


def own_corpus_sweep(tmp_path: Path, src: Path) -> C.Config:
    """A sweep's config (named `own`) on shards, made here, of a corpus of one's own at `src`: 6 audio clips of 2
    speakers listed in its ground_truth.csv, none generated by avdis."""
    from corpus_trees import SR, clip_media
    from avdis.data import prepare
    from avdis.data.media import write_clip

    rows = ["file,clip_id,speaker,emotion"]
    for s in range(2):
        for c in range(3):
            write_clip(src / f"s{s}_{c}.wav", None, 12, clip_media(3 * s + c)[1], SR)
            rows.append(f"s{s}_{c}.wav,s{s}c{c},s{s},{['happy', 'sad'][c % 2]}")
    (src / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=own", f"data.src={src}",
                        f"data.shards={tmp_path / 'shards'}", "data.modality=audio", "model.modality=audio"])
    prepare.ensure_shards(cfg)
    return cfg


def test_a_sweep_on_a_corpus_of_ones_own_records_no_data_synth_and_one_recorded_with_it_resumes(tmp_path, tiny_shards):
    """sweep.json and each trial's config recorded the default data.synth for a sweep on shards of a corpus of one's
    own (real files and their ground_truth.csv): nothing computes with it, and its reader saw the settings of a
    generated corpus that never was. It is null there; shards of a generated corpus keep theirs; and a sweep recorded
    with the defaults before resumes (data.synth is not compared)."""
    from ray.tune.experiment import Trial

    from avdis.data.shards import manifest_hash
    from avdis.tune import sweep
    from avdis.tune.records import TrialRecorder
    from avdis.tune.spec import record_spec

    own = own_corpus_sweep(tmp_path, tmp_path / "own")
    made = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=made", f"data.shards={tiny_shards}"])
    for cfg, synth in ((own, None), (made, TINY)):
        cfg = sweep.as_made(sweep.probing(cfg))  # as the sweep's driver records it
        url = sweep.url_of(cfg)
        record_spec(url, cfg, manifest_hash(cfg.data.shards))
        spec = json.loads((Path(url) / results.SPEC).read_text())["spec"]
        recorder = TrialRecorder(url, cfg)
        recorder.setup()
        recorder.on_trial_start(0, [], Trial("trainable", config={"method": "multitask"}, trial_id="t", stub=True))
        (row,) = results.read_trials(url).to_dict("records")
        for data in (spec["data"], json.loads(row["config"])["data"]):
            assert (data["synth"] if synth is None else {k: data["synth"][k] for k in synth}) == synth
        assert check_spec(url, cfg) is not None
    spec = json.loads((tmp_path / "own" / results.SPEC).read_text())  # as an avdis before recorded it
    spec["spec"]["data"]["synth"] = C.SynthConfig().model_dump(mode="json")
    (tmp_path / "own" / results.SPEC).write_text(json.dumps(spec))
    assert check_spec(str(tmp_path / "own"), sweep.as_made(sweep.probing(own))) is not None


def test_a_trial_row_records_the_shards_data_synth_read_at_set_up_not_its_manifest_of_the_moment(tmp_path):
    """Each trial's row read the shards' manifest when the trial started, in Tune's loop on the driver, to know
    whether to record data.synth. A corpus of one's own whose manifest was being rebuilt (a build removes it first)
    recorded the default generated corpus's settings for a trial started then, and a manifest it could not read
    (damaged, S3 unreachable) raised out of the callback, which stops the sweep. It is read once, at set-up; the
    trials record what their shards are."""
    from ray.tune.experiment import Trial

    from avdis.data.shards import MANIFEST
    from avdis.tune import sweep
    from avdis.tune.records import TrialRecorder

    cfg = own_corpus_sweep(tmp_path, tmp_path / "corpus")
    cfg = sweep.as_made(sweep.probing(cfg))
    url = sweep.url_of(cfg)
    Path(url).mkdir()
    recorder = TrialRecorder(url, cfg)
    recorder.setup()
    manifest = tmp_path / "shards" / MANIFEST
    held = manifest.read_bytes()
    manifest.unlink()  # being rebuilt
    recorder.on_trial_start(0, [], Trial("trainable", config={"method": "multitask"}, trial_id="t0", stub=True))
    manifest.write_bytes(held[: len(held) // 2])  # cut short
    recorder.on_trial_start(0, [], Trial("trainable", config={"method": "single_task"}, trial_id="t1", stub=True))
    configs = results.read_trials(url).set_index("trial_id")["config"].map(json.loads)
    assert [config["data"]["synth"] for config in configs] == [None, None]
    assert {config["method"]["name"] for config in configs} == {"multitask", "single_task"}


def test_a_resume_on_other_data_is_refused_by_its_manifest_hash(tiny_shards, tmp_path):
    from avdis.data.shards import manifest_hash
    from avdis.tune.spec import check_data

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", f"data.shards={tiny_shards}"])
    url = f"{tmp_path}/s1"
    ours = manifest_hash(tiny_shards)
    record_spec(url, cfg, ours)
    record = check_spec(url, cfg)
    check_data(url, cfg, record)  # the same data, wherever it lies; no trial has recorded any yet
    results.write_trials(url, [{"trial_id": "a", "method": "multitask", "manifest_hash": ours}])
    check_data(url, cfg, record)
    for started, trained in (("0123456789abcdef", ours), (ours, "0123456789abcdef")):
        record_spec(url, cfg, started)  # the data it started on, or the data a trial trained on, differs
        results.write_trials(url, [{"trial_id": "a", "method": "multitask", "manifest_hash": trained}])
        with pytest.raises(UsageError, match=rf"manifest hash 0123456789abcdef, but {tiny_shards} holds {ours}"):
            check_data(url, cfg, check_spec(url, cfg))


def test_a_sweep_started_when_avdis_chose_on_test_clips_is_not_resumed(tmp_path):
    """Its searcher (unpickled by Tune with its old metric names) and MO-ASHA's rungs hold test numbers, and its
    finished trials have no validation ones: resumed, the new trials would be chosen on test too, with no word."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    assert check_spec(url, cfg) is not None
    spec = json.loads((tmp_path / "s1" / results.SPEC).read_text())
    for before in ({k: v for k, v in spec.items() if k != "selection"},  # what every sweep.json held before
                   {"digest": "0123456789abcdef", "spec": spec["spec"]}):  # and the oldest form of it
        (tmp_path / "s1" / results.SPEC).write_text(json.dumps(before))
        with pytest.raises(UsageError, match=r"chose its trials, rungs and front on test clips, not on "
                                             r"val_emotion_acc, val_leakage.*Start a new sweep under a new name"):
            check_spec(url, cfg)


@pytest.mark.parametrize("chose", [["val_emotion_f1", "val_leakage"], "val_emotion_uar"])
def test_a_sweep_json_choosing_on_what_this_avdis_does_not_know_is_not_told_it_chose_on_test(tmp_path, chose):
    """A `selection` this avdis knows no metric of is a newer avdis's (a metric added since) or an edit; only a
    sweep.json without one was written when avdis chose on test clips. It was told "started by an avdis that chose
    its trials, rungs and front on test clips", sending the user to start over instead of resuming with the avdis that
    started it."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    spec = json.loads((tmp_path / "s1" / results.SPEC).read_text())
    (tmp_path / "s1" / results.SPEC).write_text(json.dumps({**spec, "selection": chose}))
    with pytest.raises(UsageError) as refused:
        check_spec(url, cfg)
    said = str(refused.value)
    assert "test clips" not in said, said
    assert f"{url}/sweep.json: its selection {chose!r} is of no emotion metric this avdis knows" in said, said
    assert "Resume it with the newer avdis that started it" in said and "restore it from a copy" in said, said


def test_a_sweep_is_not_resumed_choosing_on_another_emotion_metric(tmp_path):
    """Its searcher and MO-ASHA's rungs hold the numbers of the metric it started on: resumed on the other, its old
    trials and its new ones would be chosen on two metrics. sweep.json records what it chooses on."""
    for started, then in (("uar", "acc"), ("acc", "uar")):
        cfg = C.load(None, [f"sweep.storage={tmp_path}", f"sweep.name={started}", f"sweep.emotion_metric={started}"])
        url = f"{tmp_path}/{started}"
        record_spec(url, cfg, "0" * 16)
        assert json.loads((tmp_path / started / results.SPEC).read_text())["selection"] == [
            f"val_emotion_{started}", "val_leakage"]
        assert check_spec(url, cfg) is not None
        with pytest.raises(UsageError, match=rf"chose its trials, rungs and front on val_emotion_{started}, "
                                             rf"val_leakage, and this run would choose on val_emotion_{then}, "
                                             rf"val_leakage: .*sweep.emotion_metric={started}"):
            check_spec(url, cfg.model_copy(update={"sweep": cfg.sweep.model_copy(update={"emotion_metric": then})}))


def test_a_trial_reports_the_selection_metrics_of_its_sweeps_emotion_metric():
    """Tune checks each result for its searcher's metrics: a trial pre-fills them (None: not measured this epoch).
    It pre-filled accuracy's under uar too, a val_emotion_acc of None beside the val_emotion_uar Tune checks."""
    from avdis.train.loop import tune_result

    for emotion in C.EMOTION_METRICS:
        between = tune_result({"epoch": 1, f"val_emotion_{emotion}": 0.5}, emotion)
        assert between == {"epoch": 1, f"val_emotion_{emotion}": 0.5, "val_leakage": None}
        assert set(between) - {"epoch"} == set(C.selection(emotion))


def test_a_sweep_started_before_sweep_emotion_metric_resumes_on_accuracy_alone(tmp_path):
    """Its sweep.json's spec has no sweep.emotion_metric: it chose on accuracy, as the default does, and was refused
    under every value as one started by an avdis without the setting. Under uar it is still refused, naming acc."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    spec = json.loads((tmp_path / "s1" / results.SPEC).read_text())
    del spec["spec"]["sweep"]["emotion_metric"]  # as every sweep.json held before the setting
    (tmp_path / "s1" / results.SPEC).write_text(json.dumps(spec))
    assert check_spec(url, cfg) is not None
    del spec["spec"]["data"]["features"]["f_max"]  # nor did data.features.f_max refuse it (`config.ADDED`)
    (tmp_path / "s1" / results.SPEC).write_text(json.dumps(spec))
    assert check_spec(url, cfg) is not None
    with pytest.raises(UsageError, match=r"differs in: data.features.f_max"):
        check_spec(url, C.with_overrides(cfg, {"data.features.f_max": 4000}))
    with pytest.raises(UsageError, match=r"chose its trials, rungs and front on val_emotion_acc, val_leakage, .*"
                                         r"Resume it with sweep.emotion_metric=acc"):
        check_spec(url, C.with_overrides(cfg, {"sweep.emotion_metric": "uar"}))


def test_a_sweep_whose_trials_were_measured_otherwise_is_not_resumed(tmp_path):
    """Before 2026-12-04 the leakage probe read z_emo alone and `orthogonal` penalised per-coordinate correlation:
    resumed, such a sweep's old trials and its new ones would have shared one front on two measures, with no word."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    assert check_spec(url, cfg) is not None
    spec = json.loads((tmp_path / "s1" / results.SPEC).read_text())
    before = {k: v for k, v in spec.items() if k != "measures"}  # what every sweep.json held before
    other = {**spec, "measures": {**spec["measures"], "leakage": "another probe"}}
    for record, said in ((before, r"leakage: .*\(this sweep's: not recorded, so the one before\); orthogonal: "),
                         (other, r"leakage: .*\(this sweep's: another probe\)\)")):
        (tmp_path / "s1" / results.SPEC).write_text(json.dumps(record))
        with pytest.raises(UsageError, match=rf"measured otherwise than this avdis measures them \({said}.*"
                                             r"Start a new sweep under a new name"):
            check_spec(url, cfg)


def test_a_sweep_records_and_is_checked_on_the_measures_of_the_methods_in_its_space(tmp_path):
    """sweep.json held every measure, so a change to orthogonal's penalty refused the resume of a sweep that never
    sampled orthogonal. A sweep recorded with them all (before this change) resumes, checked on its space's."""
    for methods, refused in ((["multitask", "adversarial"], False), (["multitask", "orthogonal"], True)):
        name = "-".join(methods)
        cfg = C.load(None, [f"sweep.storage={tmp_path}", f"sweep.name={name}",
                            f"sweep.space.methods=[{', '.join(methods)}]"])
        url = f"{tmp_path}/{name}"
        record_spec(url, cfg, "0" * 16)
        spec = json.loads((tmp_path / name / results.SPEC).read_text())
        assert set(spec["measures"]) == {"leakage", *(set(methods) & {"orthogonal"})}
        for measures in (C.MEASURES, {**C.MEASURES, "orthogonal": "another penalty"}):  # all, as recorded before
            (tmp_path / name / results.SPEC).write_text(json.dumps({**spec, "measures": measures}))
            if refused and measures is not C.MEASURES:
                with pytest.raises(UsageError, match=r"measured otherwise .*\(orthogonal: .*this sweep's: another "
                                                     r"penalty\)\)"):
                    check_spec(url, cfg)
            else:
                assert check_spec(url, cfg) is not None


def test_a_speaker_disjoint_sweep_probed_as_before_is_not_resumed_and_a_within_speaker_one_is(tmp_path):
    """Since 2026-12-05 the probes of a speaker_disjoint sweep judge a held-out fold's validation clips beside its test
    clips: resumed, its old trials and new ones would share one front on two measures. A within_speaker sweep's
    numbers did not change: it records no such measure and is not checked on it."""
    for scheme in ("within_speaker", "speaker_disjoint"):
        cfg = C.load(None, [f"sweep.storage={tmp_path}", f"sweep.name={scheme}", f"data.split.scheme={scheme}"])
        url = f"{tmp_path}/{scheme}"
        record_spec(url, cfg, "0" * 16)
        spec = json.loads((tmp_path / scheme / results.SPEC).read_text())
        assert ("speaker_disjoint" in spec["measures"]) == (scheme == "speaker_disjoint")
        before = {k: v for k, v in spec["measures"].items() if k != "speaker_disjoint"}
        (tmp_path / scheme / results.SPEC).write_text(json.dumps({**spec, "measures": before}))
        if scheme == "within_speaker":
            assert check_spec(url, cfg) is not None
        else:
            with pytest.raises(UsageError, match=r"measured otherwise .*\(speaker_disjoint: the probes of a held-out "
                                                 r"fold judge every clip .*this sweep's: not recorded"):
                check_spec(url, cfg)


def test_a_sweep_resumed_with_a_method_its_space_did_not_hold_is_told_its_space_differs_not_its_measures(tmp_path):
    """Its sweep.json records the measures of the methods it ran, so orthogonal added to sweep.space.methods was
    refused as a sweep whose trials were measured otherwise than this avdis measures them ("not recorded, so the one
    before"), saying to start a new sweep: none of its trials ran orthogonal, and it resumes with its own space."""
    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1", "sweep.space.methods=[multitask, adversarial]"])
    url = f"{tmp_path}/s1"
    record_spec(url, cfg, "0" * 16)
    wider = C.with_overrides(cfg, {"sweep.space.methods": ["multitask", "adversarial", "orthogonal"]})
    with pytest.raises(UsageError, match=r"started with other settings \(differs in: sweep.space.methods\)"):
        check_spec(url, wider)
    assert check_spec(url, cfg) is not None


def test_a_sweep_on_data_without_validation_clips_is_refused_before_any_trial(tmp_path):
    """The searcher, MO-ASHA and the front choose on validation clips. A user's corpus with 2 clips per speaker has
    none (one goes to train, one to test), and every trial would end in error after its epochs. So would a
    speaker_disjoint fold of one speaker: leakage tells a held-out fold's speakers apart."""
    import csv

    from avdis.data import shards as shardlib, synth
    from avdis.tune.preflight import check_validation

    def shards(clips: int, folds: int = 4) -> C.Config:
        src, out = tmp_path / f"src{clips}", tmp_path / f"shards{clips}_{folds}"
        if not src.exists():
            synth.generate(C.SynthConfig(speakers=8, emotions=2, clips_per_speaker=3, duration_s=0.5, seed=1), src)
            (src / synth.SETTINGS).unlink()  # the user's own corpus now: read as its ground_truth.csv lists it
            with open(src / "ground_truth.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            kept = [r for r in rows if sum(o["speaker"] == r["speaker"] for o in rows[: rows.index(r)]) < clips]
            for r in rows:
                if r not in kept:
                    (src / r["file"]).unlink()
            with open(src / "ground_truth.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)
        cfg = C.load(None, [f"data.src={src}", f"data.shards={out}", "data.shard_size=8", f"data.split.folds={folds}"])
        shardlib.build_shards(cfg.data, cfg.s3)
        return cfg

    two, three = shards(2), shards(3)
    with pytest.raises(UsageError, match=r"shards2_4: no validation clips under data.split.scheme=within_speaker "
                                         r"\(0 for emotion accuracy, 0 for the leakage probe\)"):
        check_validation(two)
    with pytest.raises(UsageError, match=r"\(0 for emotion UAR, 0 for the leakage probe\)"):  # the sweep's metric
        check_validation(C.with_overrides(two, {"sweep.emotion_metric": "uar"}))
    check_validation(three)

    def disjoint(cfg: C.Config, fold: int) -> C.Config:
        return C.load(None, [f"data.src={cfg.data.src}", f"data.shards={cfg.data.shards}", "data.shard_size=8",
                             f"data.split.folds={cfg.data.split.folds}", "data.split.scheme=speaker_disjoint",
                             f"data.split.fold={fold}"])

    check_validation(disjoint(three, 1))
    for fold in (0, 2, 3):  # 2 speakers a fold, one clip each to fit on and one to judge: the emotion names them
        with pytest.raises(UsageError, match=r"shards3_4: the emotion label alone names the speaker of every "
                                             r"(test|val) clip the leakage probe judges"):
            check_validation(disjoint(three, fold))
    with pytest.raises(UsageError, match=r"no validation clips under data.split.scheme=speaker_disjoint, fold 0 "
                                         r"\(4 for emotion accuracy, 0 for the leakage probe\)"):
        check_validation(disjoint(two, 0))
    five = shards(3, folds=5)  # 8 speakers in 5 folds: three folds of one
    with pytest.raises(UsageError, match=r"shards3_5: the test fold of data.split.scheme=speaker_disjoint, fold "
                                         r"3, holds 1 speaker; .* Preprocess again with data.split.folds <= 4 \(this corpus has 8"):
        check_validation(disjoint(five, 3))  # speakers dealt round-robin: folds 3 and 4 hold one each


def test_a_speaker_disjoint_fold_whose_speakers_share_no_emotion_is_told_which_folds_measure_leakage(tmp_path):
    """A corpus of one's own (8 speakers, 4 folds of 2) where every speaker shows both emotions but for the two of
    one fold, who show one each: on that fold the label alone names each judged clip's speaker. The refusal said
    'use a corpus whose speakers share emotions (a generated one: data.synth.entanglement below 1, ...)', of a corpus
    whose other folds measure leakage; it now names the fold's speakers and the folds to pick instead: for a sweep
    (test fold k and validation fold k + 1) those whose two folds are measured, for `avdis train` (test alone) those
    whose test fold is."""
    import csv

    from avdis.data import shards as shardlib, synth
    from avdis.data.splits import speaker_folds
    from avdis.data.stream import open_dataset
    from avdis.train.evaluate import check_leakage_defined
    from avdis.tune.preflight import check_validation

    src, out = tmp_path / "src", tmp_path / "shards"
    synth.generate(C.SynthConfig(speakers=8, emotions=2, clips_per_speaker=4, duration_s=0.5, seed=1), src)
    (src / synth.SETTINGS).unlink()  # the user's own corpus now: read as its ground_truth.csv lists it
    with open(src / "ground_truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = sorted({r["speaker"] for r in rows})
    fold_of = dict(zip(names, speaker_folds(names, C.SplitConfig(folds=4))))
    apart = sorted(s for s in names if fold_of[s] == 3)  # the fold whose two speakers share no emotion
    for i, r in enumerate(rows):
        r["emotion"] = ("calm" if r["speaker"] == apart[0] else "tense" if r["speaker"] == apart[1] else
                        ("calm", "tense")[i % 2])
    with open(src / "ground_truth.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def disjoint(fold: int) -> C.Config:
        return C.load(None, [f"data.src={src}", f"data.shards={out}", "data.shard_size=8", "data.split.folds=4",
                             "data.split.scheme=speaker_disjoint", f"data.split.fold={fold}"])

    shardlib.build_shards(disjoint(0).data, disjoint(0).s3)
    check_validation(disjoint(0))
    check_validation(disjoint(1))
    told = rf"under data.split.scheme=speaker_disjoint the probe reads the (test|val) fold's speakers alone \(fold 3: " \
           rf"{apart[0]}, {apart[1]}\): pick data.split.fold="
    for fold in (2, 3):  # fold 3 tested, or the validation fold of fold 2
        with pytest.raises(UsageError, match=r"the emotion label alone names the speaker of every (test|val) clip the "
                                             r"leakage probe judges \(no emotion of theirs is shown by two of their "
                                             r"speakers\), so leakage is undefined there and training would stop at "
                                             rf"its first probe; {told}0 or 1, whose test and validation folds it can "
                                             r"measure, or preprocess again with fewer data.split.folds \(more "
                                             r"speakers a fold; 4 now\)$"):
            check_validation(disjoint(fold))
    cfg = disjoint(3)
    check_leakage_defined(open_dataset(disjoint(2).data, cfg.s3), disjoint(2))  # avdis train: fold 2's test fold
    with pytest.raises(UsageError, match=rf"{told}0 or 1 or 2, whose test fold it can measure"):
        check_leakage_defined(open_dataset(cfg.data, cfg.s3), cfg)


def test_a_grad_accum_some_sampled_trial_cannot_take_is_refused_before_any_trial(tiny_shards):
    """`avdis train` refuses a train.grad_accum that does not divide an epoch's steps before Ray starts; a sweep ran
    every trial into it (each failed once started, exit 1, the sweep's name spent). Every value the space gives the
    batch size is tried: 8 and 12 divide into pairs of steps on these shards (6 and 4), 9 does not (5)."""
    from avdis.tune.preflight import check_accumulation

    def cfg(*extra: str) -> C.Config:
        return C.load(None, [f"data.shards={tiny_shards}", *extra])

    with pytest.raises(UsageError, match=r"^train.grad_accum=2 does not divide the 3 steps of epoch 1 \(batches of 16"):
        check_accumulation(cfg("train.batch_size=16", "train.grad_accum=2"))
    with pytest.raises(UsageError, match=r"^sweep.space samples trials no run could take: at train.batch_size=9: train.grad_accum=2 "
                                         r"does not divide the 5 steps of epoch 1 .*; narrow sweep.space"):
        check_accumulation(cfg("train.grad_accum=2", "sweep.space.params.train.batch_size={low: 8, high: 12, int: true}"))
    check_accumulation(cfg("train.grad_accum=2", "sweep.space.params.train.batch_size=[8, 12]"))
    check_accumulation(cfg("data.shards=/nonexistent", "sweep.space.params.train.batch_size=[9, 16]"))  # no accumulation


def test_a_sweep_whose_trials_wait_for_cpus_another_job_holds_says_why():
    """A sweep started while another job held the cluster's CPUs waited without a word: Tune warns only of a trial the
    cluster could never hold, and its status line ('Logical resource usage: 0/2 CPUs', its own trials alone) read as
    the CPUs free (seen by hT2 on a `ray start --head --num-cpus=2` beside an actor of 2 CPUs: 2 minutes of '2
    PENDING'). The sweep's own Tuner's callbacks, in a real Tune loop whose one CPU an actor holds for its first
    seconds, say what a trial asks for and what is free; the trial then runs."""
    import contextlib
    import io
    import shutil
    import tempfile
    import threading

    import ray
    import ray.cloudpickle as cloudpickle
    from ray import tune

    from avdis.tune import sweep

    tmp = Path(tempfile.mkdtemp(prefix="avw-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    cfg = C.load(None, [f"sweep.storage={tmp / 'sweeps'}", "sweep.name=s1"])
    made = sweep._tuner(cfg, sweep.url_of(cfg), False, sweep.Views(), False)._local_tuner._run_config.callbacks
    said = [c for c in made if hasattr(c, "on_step_begin") and hasattr(c, "after_s")]
    assert said, f"no callback of the sweep's Tuner says why its trials wait: {made}"
    said[0].after_s = 2.0
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    out = []
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp))

        @ray.remote(num_cpus=1)
        class Hog:
            def ping(self) -> int:
                return 1

        hog = Hog.remote()
        ray.get(hog.ping.remote())
        threading.Timer(8.0, ray.kill, [hog]).start()  # the other job ends
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            grid = tune.Tuner(tune.with_resources(one_report, {"cpu": 1}), run_config=tune.RunConfig(
                name="wait", storage_path=str(tmp / "tune"), verbose=0, callbacks=said[:1])).fit()
        out = printed.getvalue()
    finally:
        shutdown_ray()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        shutil.rmtree(tmp, ignore_errors=True)
    assert grid.num_terminated == 1
    assert re.search(r"avdis sweep s1: no trial has run for \d+ s: each asks for 1 CPU .* and the cluster has 0 of 1 "
                     r"CPU free: other work holds the rest", out), out


def test_a_wait_says_every_size_the_waiting_trials_ask_for_and_judges_the_nodes_on_the_smallest():
    """A space that samples train.workers gives its trials several sizes: the wait named the first waiting trial's
    alone ('each asks for 4 CPU'), and judged on it that the nodes could hold none, though they hold the 2 CPU the
    others ask for. Now it says each size the waiting trials ask for, smallest first, with how many ask for it, and
    that the nodes cannot hold one only where they cannot hold the smallest. Trials as Tune's controller hands them to
    the callback (a status, a real PlacementGroupFactory), a held one (PAUSED, `schedulers.AtMost`) not waiting; a
    real local Ray of 2 CPUs."""
    import contextlib
    import io
    import shutil
    import tempfile
    from types import SimpleNamespace

    import ray
    from ray.tune import PlacementGroupFactory
    from ray.tune.experiment import Trial

    from avdis.tune.sweep import WaitSaid

    def trial(status: str, cpus: float) -> SimpleNamespace:
        return SimpleNamespace(status=status, placement_group_factory=PlacementGroupFactory([{"CPU": cpus}]))

    def said(trials: list[SimpleNamespace]) -> str:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            WaitSaid("s1", after_s=0.0).on_step_begin(0, trials)
        return printed.getvalue()

    temp = tempfile.mkdtemp(prefix="avw-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        several = said([trial(Trial.PENDING, 4), *[trial(Trial.PENDING, 2)] * 3, trial(Trial.PAUSED, 8)])
        beyond = said([trial(Trial.PENDING, 4), trial(Trial.PENDING, 3)])
        one = said([trial(Trial.PENDING, 3)] * 2)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert re.fullmatch(r"avdis sweep s1: no trial has run for 0 s: trials ask for 2 CPU \(3 trials\) or 4 CPU \(1 "
                        r"trial\), each by its own sampled settings \(train.workers x .*\), and the cluster has 2 of 2 "
                        r"CPU free: other work holds the rest .*\n", several), several
    assert re.search(r": trials ask for 3 CPU \(1 trial\) or 4 CPU \(1 trial\), .* the nodes it has now cannot hold "
                     r"one: the sweep waits for the nodes an autoscaler adds", beyond), beyond
    assert re.search(r": each asks for 3 CPU \(train.workers x .*\), and the cluster has 2 of 2 CPU free: the nodes it "
                     r"has now cannot hold one", one), one


def test_a_restored_sweep_says_why_its_trials_wait_though_begun_before_it_could(tmp_path):
    """Tune restores an experiment's callbacks as they were pickled when it began (its tuner.pkl; Ray 2.60's
    `Tuner.restore` takes none): a sweep begun before `WaitSaid` resumed without it, and waited without a word. The
    restore (`sweep.restored`) gives it one, beside the callbacks it was begun with, and one in place of one it was
    begun with. Real Tuners: one's tuner.pkl where the sweep keeps its search, restored by Tune."""
    from ray import tune

    from avdis.tune import sweep
    from avdis.tune.records import TrialRecorder

    cfg = C.load(None, [f"sweep.storage={tmp_path}", "sweep.name=s1"])
    fs, storage_path, name = sweep.experiment_of(cfg, results.SEARCH)
    saved_tune_state(cfg, results.SEARCH, {"t1": "RUNNING"})  # restorable: a saved state beside the tuner.pkl

    def begun(*callbacks: Callback) -> list[Callback]:
        """The callbacks of the sweep's search, begun with `callbacks` and restored."""
        tune.Tuner(one_report, run_config=tune.RunConfig(name=name, storage_path=storage_path, storage_filesystem=fs,
                                                         callbacks=list(callbacks)))
        return sweep.restored(cfg, results.SEARCH, one_report)._local_tuner._run_config.callbacks

    recorder = TrialRecorder(sweep.url_of(cfg), cfg, results.SEARCH)
    before = begun(recorder)  # an avdis before WaitSaid
    assert [type(c) for c in before] == [TrialRecorder, sweep.WaitSaid], before
    assert (before[1].name, before[1].after_s) == ("s1", 60.0)
    again = begun(recorder, sweep.WaitSaid("s1", after_s=5.0))
    assert [type(c) for c in again] == [TrialRecorder, sweep.WaitSaid] and again[1].after_s == 60.0, again
