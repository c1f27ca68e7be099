"""Replay benchmark: the sweep's own searcher and scheduler driven over recorded learning curves, in simulated time.

    .venv/bin/python bench/sweep_replay.py                 # ~20 min per corpus on 2 cores (60 seeds)
    .venv/bin/python bench/sweep_replay.py --seeds 5 --trials 64 --out /tmp/look --setups tpe/none tpe/mo_asha
        # a quick look; its --out keeps it beside the committed results, not over them

What Syne Tune's simulator backend does, for avdis: the curves of bench/sweep_record.py
(bench/results/sweep_curves.csv: every method's weight and `train.lr` over their ranges, 2 seeds
each, every epoch with the probe) stand in for training. A configuration the searcher suggests is
answered by a surrogate fitted to them: per method, a Gaussian process over the normalised
(log-)parameters gives the mean curve (emotion_acc and leakage at every epoch), and one recorded
seed-to-seed difference of that method (scaled to one seed's deviation, random sign) is added, so
trials are as noisy as real ones, correlated across epochs as real ones are. Its held-out quality
(a configuration left out of one seed's fit, scored on its other seed) is reported beside the
seed-to-seed difference.

The objects are the sweep's: `avdis.tune.sweep.searcher(cfg)` and `scheduler(cfg)` for the config
`jobs/configs/local.yaml` + each setup's overrides, called in Ray Tune 2.60's order (its
TuneController): per result, the scheduler first; the searcher's `on_trial_result` only when the
trial goes on; on STOP or the last epoch the scheduler's `on_trial_complete`, then the searcher's
`on_trial_complete` with the last result. An event loop keeps `max_concurrent` simulated workers
busy (the ConcurrencyLimiter's job in a real sweep) until the searcher says FINISHED (a space of choices only, each
configuration tried: none of the setups' spaces, whose `train.lr` is a range); a trial takes the per-trial start-up cost,
then its epochs' recorded seconds. The recordings hold the test clips' numbers only; a replayed trial
reports them as its validation numbers too (what the sweep's searcher, MO-ASHA and front choose on,
`avdis.config.SELECTION`), so the replay compares search setups on one set of numbers and says
nothing of the gap between validation and test.

Setups: random, TPE and NSGA-II with and without MO-ASHA (the config's defaults), the defaults
before (COMPARED) and a hindsight reference for early stopping (tpe/oracle: FrontOracle below), at every size;
section 2's candidates (CANDIDATES) at the smallest. Warm starts (WARM, only when named with --setups, from
--warm-from's recording) give the default's searcher an earlier sweep's trials first. The start-up cost is
bench/results/trial_overhead.json's `startup_s` (or --startup-s); a few setups are replayed again at today's
TorchTrainer start-up for their wall times.
Reported per setup and sweep size (trials), over seeds: hypervolume
(avdis.results.pareto, chance = 1/emotions, the generated corpus's share of each emotion; a sweep's
results.summarize puts the box's corner at its test clips' majority rate, emotion_chance, at or above that: 5/18 on
the smoke corpus's test clips) against trial-epochs and
simulated wall time with 95% intervals, and the trial-epochs and wall time to reach 95% of the
reference hypervolume (the front of every recorded trial's last epoch). Writes
bench/results/sweep_replay.json and sweep_replay.png.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from avdis import config as C  # noqa: E402
from avdis.errors import UsageError  # noqa: E402
from avdis.results import pareto  # noqa: E402

CONFIG = ROOT / "jobs" / "configs" / "local.yaml"
CURVES = ROOT / "bench" / "results" / "sweep_curves.csv"
OVERHEAD = ROOT / "bench" / "results" / "trial_overhead.json"
OUT = ROOT / "bench" / "results"
TODAY_STARTUP_S = 14.5  # README: median seconds per demo trial outside its epochs (TorchTrainer trials)
OBJECTIVES = list(pareto.OBJECTIVES)
BASE_SETUPS = [f"{s}/{k}" for s in ("random", "tpe", "nsga2") for k in ("none", "mo_asha")]


def knobs(grace: int, eta: int, stopped_as: str, startup: int, margin: float) -> list[str]:
    """A scheduler and sampler variant as config overrides (explicit, so it does not move with the defaults)."""
    return [f"sweep.scheduler.grace_epochs={grace}", f"sweep.scheduler.eta={eta}",
            f"sweep.scheduler.stopped_as={stopped_as}", f"sweep.startup_trials={startup}",
            f"sweep.scheduler.margin={margin}"]


# A setup is "search/scheduler" (the config's defaults) or "search/scheduler:variant" with these overrides;
# "search/oracle" is a hindsight reference for early stopping (FrontOracle), not a sweep setting.
# Compared at every size: the default before this benchmark, and the one before the margin.
COMPARED: dict[str, list[str]] = {"tpe/mo_asha:before": knobs(1, 3, "complete", 6, 0.0),
                                  "tpe/mo_asha:no_margin": knobs(2, 2, "pruned", 6, 0.0)}
# Section 2's candidates, at the smallest size only (what was tried on the way to the default).
CANDIDATES: dict[str, list[str]] = {
    f"tpe/mo_asha:g{g}e{e}_{how}_s{k}_m{m:g}": knobs(g, e, how, k, m)
    for g, e, how, k, m in [
        (1, 3, "pruned", 6, 0), (2, 3, "complete", 6, 0), (3, 3, "complete", 6, 0), (3, 3, "pruned", 6, 0),
        (2, 2, "complete", 6, 0), (2, 2, "pruned", 3, 0), (2, 2, "complete", 3, 0), (1, 2, "pruned", 3, 0),
        (2, 3, "pruned", 3, 0), (3, 2, "pruned", 3, 0), (3, 3, "pruned", 10, 0),
        (1, 2, "pruned", 6, 0.05), (2, 2, "pruned", 6, 0.05), (2, 3, "pruned", 6, 0.05),
        (1, 2, "pruned", 6, 0.1), (2, 3, "pruned", 6, 0.1), (2, 2, "complete", 6, 0.1), (3, 3, "pruned", 6, 0.1),
        (1, 2, "pruned", 6, 0.15), (2, 2, "pruned", 6, 0.15), (2, 3, "pruned", 6, 0.15), (1, 2, "pruned", 6, 0.2)]
}
# Warm starts (issue 15 section 2, transfer across sweeps): the default, its searcher first given an earlier
# sweep's trials, taken from --warm-from (another corpus's recordings, or this one's other seed): (how, N) with N
# of them drawn per seed (None: every one). How: "told", each told to Optuna as a COMPLETE trial with its last
# epoch's values; "front", the configurations of their front enqueued as the first suggestions; "below", told as
# "told" but moved below every value a trial of this sweep can have (accuracy - 1, leakage + 1), so among
# themselves they keep their order while TPE's better group fills with this sweep's trials as they finish.
WARM: dict[str, tuple[str, int | None]] = {
    f"tpe/mo_asha:warm_{how}_{'all' if n is None else n}": (how, n)
    for how, n in [("told", None), ("told", 64), ("told", 32), ("front", None), ("front", 64),
                   ("below", None), ("below", 64)]}
EXTRA = {**COMPARED, **CANDIDATES, **{s: [] for s in WARM}}
ORACLE = "tpe/oracle"


# ---------------------------------------------------------------------------------------------- recordings

@dataclass(frozen=True)
class Recordings:
    """One row per trial: its method, normalised parameters, (epochs, 2) curve and epoch seconds."""

    methods: np.ndarray  # (n,) str
    config_ids: np.ndarray  # (n,) str
    seeds: np.ndarray  # (n,) int
    x: list[np.ndarray]  # per trial: normalised parameters (weight if any, lr) in [0, 1]
    curves: np.ndarray  # (n, epochs, 2): emotion_acc, leakage
    epoch_s: np.ndarray  # (n, epochs)

    @property
    def epochs(self) -> int:
        return self.curves.shape[1]


def _unit(value: float, r: C.Range) -> float:
    """A parameter's position in its range, on the scale the sampler draws it (log where the space says)."""
    if r.log:
        return (math.log(value) - math.log(r.low)) / (math.log(r.high) - math.log(r.low))
    return (value - r.low) / (r.high - r.low)


def unit_params(space: C.SearchSpace, method: str, weight: float | None, lr: float) -> np.ndarray:
    """The surrogate's input: the method's weight (if it has one) and train.lr, each in [0, 1]."""
    lr_unit = _unit(lr, space.params["train.lr"])
    return np.array([_unit(weight, space.weights[method]), lr_unit] if method in space.weights else [lr_unit])


def load_curves(path: Path, space: C.SearchSpace) -> Recordings:
    """The recorded trials that ran every epoch (a trial still being recorded is left out)."""
    if not path.exists():
        raise UsageError(f"{path}: no recorded curves; run bench/sweep_record.py first")
    df = pd.read_csv(path)
    missing = {"config_id", "method", "weight", "lr", "seed", "epoch", *OBJECTIVES, "epoch_s"} - set(df.columns)
    if missing:
        raise UsageError(f"{path}: columns {sorted(missing)} missing; it is not a bench/sweep_record.py recording")
    epochs = int(df["epoch"].max())
    trials = [g.sort_values("epoch") for _, g in df.groupby(["config_id", "seed"], sort=True)]
    trials = [g for g in trials if len(g) == epochs and g[OBJECTIVES].notna().all().all()]
    first = [g.iloc[0] for g in trials]
    return Recordings(
        methods=np.array([r.method for r in first]), config_ids=np.array([r.config_id for r in first]),
        seeds=np.array([int(r.seed) for r in first]),
        x=[unit_params(space, r.method, None if pd.isna(r.weight) else float(r.weight), float(r.lr)) for r in first],
        curves=np.stack([g[OBJECTIVES].to_numpy(float) for g in trials]),
        epoch_s=np.stack([g["epoch_s"].to_numpy(float) for g in trials]),
    )


def rank_agreement(rec: Recordings) -> dict[str, dict[str, float]]:
    """Spearman correlation of each early epoch's values with the last epoch's, over the recorded trials:
    how much a rung at that epoch knows of where a trial ends."""
    from scipy.stats import spearmanr

    return {str(epoch + 1): {m: round(float(spearmanr(rec.curves[:, epoch, k], rec.curves[:, -1, k])[0]), 3)
                             for k, m in enumerate(OBJECTIVES)}
            for epoch in range(rec.epochs - 1)}


def reference_hypervolume(rec: Recordings, chance: float) -> float:
    """The front of every recorded trial's last epoch: what a sweep can at best find."""
    return pareto.hypervolume(rec.curves[:, -1, 0], rec.curves[:, -1, 1], chance)


# ---------------------------------------------------------------------------------------------- surrogate

LENGTHSCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
NOISE_RATIOS = (0.01, 0.03, 0.1, 0.3, 1.0)


def _kernel(a: np.ndarray, b: np.ndarray, lengthscale: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / lengthscale**2)


def _loo_errors(x: np.ndarray, y: np.ndarray, lengthscale: float, noise: float) -> np.ndarray:
    """Closed-form leave-one-out residuals of a GP posterior mean (Rasmussen & Williams eq. 5.12)."""
    inv = np.linalg.inv(_kernel(x, x, lengthscale) + noise * np.eye(len(x)))
    return (inv @ y) / np.diag(inv)[:, None]


@dataclass(frozen=True)
class MethodGP:
    """A GP posterior mean over one method's configurations: its mean curve (epochs x objectives, flattened)."""

    x: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    lengthscale: float
    noise: float
    alpha: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.mean + self.scale * (_kernel(np.atleast_2d(x), self.x, self.lengthscale) @ self.alpha)[0]


def fit_method(x: np.ndarray, y: np.ndarray) -> tuple[MethodGP, np.ndarray]:
    """Pick (lengthscale, noise) on the grid by leave-one-out error; returns the GP and its LOO predictions."""
    mean, scale = y.mean(0), y.std(0) + 1e-9
    z = (y - mean) / scale
    _, ls, nr = min((float((_loo_errors(x, z, ls, nr) ** 2).mean()), ls, nr)
                    for ls in LENGTHSCALES for nr in NOISE_RATIOS)
    alpha = np.linalg.solve(_kernel(x, x, ls) + nr * np.eye(len(x)), z)
    return MethodGP(x, mean, scale, ls, nr, alpha), y - scale * _loo_errors(x, z, ls, nr)


@dataclass
class Surrogate:
    """Per method: a GP for the mean curve, the recorded seed-to-seed differences, the recorded epoch seconds."""

    space: C.SearchSpace
    epochs: int
    gps: dict[str, MethodGP]
    noise: dict[str, np.ndarray]  # (pairs, epochs, 2): one seed's deviation from its configuration's mean
    epoch_s: dict[str, np.ndarray]  # (trials, epochs)
    quality: dict[str, Any]

    def curve(self, params: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One simulated trial for Tune's trial parameters: its (epochs, 2) curve and its epoch seconds."""
        method = params["method"]
        x = unit_params(self.space, method, params.get(f"weight_{method}"), params["train.lr"])
        mean = self.gps[method].predict(x).reshape(self.epochs, 2)
        dev = self.noise[method][rng.integers(len(self.noise[method]))] * rng.choice((-1.0, 1.0))
        secs = self.epoch_s[method][rng.integers(len(self.epoch_s[method]))]
        return np.clip(mean + dev, 0.0, 1.0), secs


def _config_means(rec: Recordings, rows: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = sorted(set(rec.config_ids[rows]))
    x = np.stack([rec.x[rows[rec.config_ids[rows] == c][0]] for c in ids])
    y = np.stack([rec.curves[rows[rec.config_ids[rows] == c]].mean(0).ravel() for c in ids])
    return ids, x, y


def _rmse(a: np.ndarray) -> dict[str, float]:
    """Root mean square over trials of curve errors (n, epochs, 2): every epoch and the last, per objective."""
    return {f"{obj}_{part}": float(np.sqrt((sel[..., j] ** 2).mean()))
            for j, obj in enumerate(OBJECTIVES) for part, sel in (("all_epochs", a), ("last_epoch", a[:, -1:]))}


MIN_PAIRS = 5  # a method with fewer configurations recorded at two seeds borrows every method's seed differences


def _held_out(rec: Recordings, rows: np.ndarray, ids: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Errors of a GP fitted on one seed's curves, each configuration left out, against its other seed's curve.

    Trials of one seed share their initialisation and data order, so neighbouring configurations of
    the same seed move together: the check fits one seed and scores the other. Beside it, the
    method's mean curve (of the other configurations, same seed) as the baseline to beat.
    """
    both = [c for c in ids if (rec.config_ids[rows] == c).sum() >= 2]
    curves = {c: rec.curves[rows[rec.config_ids[rows] == c][:2]] for c in both}
    x = np.stack([rec.x[rows[rec.config_ids[rows] == c][0]] for c in both])
    pred_err, const_err = [], []
    for s in (0, 1):
        y = np.stack([curves[c][s].ravel() for c in both])
        loo = fit_method(x, y)[1].reshape(len(both), rec.epochs, 2)
        const = ((y.sum(0) - y) / (len(both) - 1)).reshape(len(both), rec.epochs, 2)
        for i, c in enumerate(both):
            pred_err.append(loo[i] - curves[c][1 - s])
            const_err.append(const[i] - curves[c][1 - s])
    return pred_err, const_err


def fit_surrogate(rec: Recordings, space: C.SearchSpace) -> Surrogate:
    """Fit every method's GP on its configurations' seed-mean curves; measure it on held-out configurations."""
    gps, diffs, secs, per_method = {}, {}, {}, {}
    pred_err, const_err = [], []
    for method in space.methods:
        rows = np.flatnonzero(rec.methods == method)
        ids, x, y = _config_means(rec, rows)
        if len(ids) < 3:
            raise UsageError(f"{CURVES}: method {method} has {len(ids)} recorded configurations; the surrogate "
                             "needs >= 3: let bench/sweep_record.py record more")
        gps[method] = fit_method(x, y)[0]
        pairs = [p[:2] for p in (rows[rec.config_ids[rows] == c] for c in ids) if len(p) >= 2]
        diffs[method] = np.array([rec.curves[a] - rec.curves[b] for a, b in pairs]).reshape(-1, rec.epochs, 2)
        secs[method] = rec.epoch_s[rows]
        if len(pairs) >= 3:
            p, c = _held_out(rec, rows, ids)
            pred_err += p
            const_err += c
        per_method[method] = {"configs": len(ids), "seed_pairs": len(pairs), "lengthscale": gps[method].lengthscale,
                              "noise_ratio": gps[method].noise}
    pooled = np.concatenate(list(diffs.values()))
    if not len(pooled) or not pred_err:
        raise UsageError(f"{CURVES}: too few configurations are recorded at two seeds; the surrogate's seed noise "
                         "and its check need some: let bench/sweep_record.py record more")
    for method, pm in per_method.items():
        pm["noise_from"] = "own" if pm["seed_pairs"] >= MIN_PAIRS else "all methods"
    noise = {m: (d if len(d) >= MIN_PAIRS else pooled) / math.sqrt(2.0) for m, d in diffs.items()}
    quality = {
        "held_out": ("per method, a GP fitted on one seed's curves with the configuration left out (closed-form "
                     "LOO, hyperparameters chosen by LOO) predicts it; scored against the other seed's curve"),
        "surrogate_vs_other_seed_rmse": _rmse(np.stack(pred_err)),
        "method_mean_vs_other_seed_rmse": _rmse(np.stack(const_err)),
        "seed_to_seed_rmse": _rmse(pooled),
        "seed_pairs": int(len(pooled)),
        "note": ("seed_to_seed is what one seed's curve misses the other by (a perfect mean curve would miss by "
                 "seed_to_seed / sqrt(2)); the seed noise added in replay is one recorded seed difference / "
                 f"sqrt(2), of the method's own when it has >= {MIN_PAIRS} pairs, else of all methods"),
        "methods": per_method,
    }
    return Surrogate(space, rec.epochs, gps, noise, secs, quality)


# ---------------------------------------------------------------------------------------------- replay

@dataclass(frozen=True)
class SimTrial:
    """What the scheduler reads of a Tune trial."""

    trial_id: str


@dataclass
class Completion:
    """The sweep after a trial ended: trial-epochs and simulated seconds used so far, the hypervolume."""

    trial_id: str
    trial_epochs: int
    wall_s: float
    hypervolume: float


@dataclass
class Replay:
    """One simulated sweep: its completions in order, and what a test checks it against."""

    searcher: Any
    scheduler: Any
    completions: list[Completion] = field(default_factory=list)
    log: list[tuple[float, str, int, str]] = field(default_factory=list)  # (time, trial id, epoch, decision)
    finals: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # id -> (acc, leakage, epochs run)
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # trial id -> (epochs, 2)
    epoch_s: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    starts: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    max_running: int = 0


class FrontOracle:
    """A hindsight reference for early stopping, not a method: it knows each trial's last-epoch point (the replay's
    curve) and stops at the first epoch every trial whose end would not join the front of the trials ended so far.

    A trial that helps the front runs every epoch and one that does not costs one, so it shows roughly what a
    stopping rule that never misjudged could spend on the searcher's suggestions (told to it as the config says,
    like a rung's stops). Not a strict bound: a trial that joins the front and is dominated later still runs every
    epoch, and the stops it tells the searcher change what it suggests next.
    """

    def __init__(self, curves: dict[str, np.ndarray], epochs: int) -> None:
        self.curves, self.epochs = curves, epochs
        self.ends: list[np.ndarray] = []
        self.stopped: dict[str, int] = {}

    def on_trial_result(self, controller: Any, trial: SimTrial, result: dict) -> str:
        from ray.tune.schedulers import TrialScheduler

        end = self.curves[trial.trial_id][-1]
        if result["epoch"] == 1 and any(e[0] >= end[0] and e[1] <= end[1] for e in self.ends):
            self.stopped[trial.trial_id] = 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, controller: Any, trial: SimTrial, result: dict) -> None:
        if result["epoch"] == self.epochs:
            self.ends.append(self.curves[trial.trial_id][-1])


def setup_config(setup: str, trials: int, seed: int, extra: list[str] | None = None) -> C.Config:
    """local.yaml with the setup's search and scheduler, the sweep's size and the searcher's seed."""
    search, sched = setup.split(":")[0].split("/")
    sched = "none" if sched == "oracle" else sched  # the oracle replaces the scheduler in replay()
    return C.load(CONFIG, [f"sweep.search={search}", f"sweep.scheduler.type={sched}", f"sweep.num_samples={trials}",
                           f"sweep.seed={seed}", *EXTRA.get(setup, []), *(extra or [])])


def check_setup(setup: str) -> str | None:
    """Why the replay cannot run `setup` as named, or None. A variant it does not define ran the config's defaults
    under that name, and 'oracle' with another search ran that search with no scheduler under it."""
    head, _, variant = setup.partition(":")
    if head.count("/") != 1:
        return "not search/scheduler[:variant]"
    if head.endswith("/oracle") and setup != ORACLE:
        return f"the oracle is replayed only as {ORACLE}"
    if variant and setup not in EXTRA:
        return f"no variant {variant!r} is defined; the variants: {', '.join(EXTRA)}"
    try:
        setup_config(setup, 1, 0)
    except C.ConfigError as exc:
        return str(exc)
    return None


def replay(cfg: C.Config, trial_curve, startup_s: float, seed: int, oracle: bool = False,
           prepare: Callable[[Any], None] | None = None) -> Replay:
    """Run one sweep of cfg's searcher and scheduler (or the FrontOracle) in simulated time.

    `trial_curve(params, rng)` answers a suggested configuration with its (epochs, 2) curve and
    epoch seconds; the rng is seeded by (seed, trial number) so every setup sees the same noise.
    `prepare(searcher)`, if given, runs before the first suggestion (a warm start).
    """
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from avdis.tune.sweep import scheduler, searcher

    total, workers, epochs = cfg.sweep.num_samples, cfg.sweep.max_concurrent, cfg.train.epochs
    out = Replay(searcher(cfg), None)
    search, sched = out.searcher, FrontOracle(out.curves, epochs) if oracle else scheduler(cfg)
    out.scheduler = sched
    if prepare:
        prepare(search)
    chance = 1.0 / cfg.data.synth.emotions
    events: list[tuple[float, int, str, int]] = []
    used, running = 0, 0

    def start(now: float) -> None:
        nonlocal running, total
        tid = f"trial_{len(out.params):04d}"
        params = search.suggest(tid)
        if params == Searcher.FINISHED:  # every configuration of a space of choices was tried: the search ends
            total = len(out.params)
            return
        curve, secs = trial_curve(params, np.random.default_rng([seed, len(out.params)]))
        out.params[tid], out.curves[tid], out.epoch_s[tid], out.starts[tid] = params, curve, secs, now
        running += 1
        out.max_running = max(out.max_running, running)
        heapq.heappush(events, (now + startup_s + secs[0], len(out.params), tid, 1))

    while len(out.params) < min(workers, total):
        start(0.0)
    while events:
        now, order, tid, epoch = heapq.heappop(events)
        used += 1
        acc, leak = out.curves[tid][epoch - 1]
        result = {"epoch": epoch, "training_iteration": epoch, "emotion_acc": float(acc), "leakage": float(leak),
                  **dict(zip(C.SELECTION, (float(acc), float(leak)))), "trial_id": tid, "done": epoch == epochs}
        decision = sched.on_trial_result(None, SimTrial(tid), result)
        out.log.append((now, tid, epoch, decision))
        if decision != TrialScheduler.STOP:
            search.on_trial_result(tid, result)
        if decision == TrialScheduler.STOP or epoch == epochs:
            sched.on_trial_complete(None, SimTrial(tid), result)
            search.on_trial_complete(tid, result=result)
            running -= 1
            out.finals[tid], out.ends[tid] = (float(acc), float(leak), epoch), now
            # as results.trained_longest: a trial stopped at a rung adds nothing, also before any trial ran every epoch
            pts = np.array([f[:2] for f in out.finals.values() if f[2] == epochs]).reshape(-1, 2)
            out.completions.append(Completion(tid, used, now, pareto.hypervolume(pts[:, 0], pts[:, 1], chance)))
            if len(out.params) < total:
                start(now)
        else:
            heapq.heappush(events, (now + out.epoch_s[tid][epoch], order, tid, epoch + 1))
    return out


# ---------------------------------------------------------------------------------------------- statistics

def _ci_mean(values: np.ndarray) -> dict[str, float]:
    """Mean with a normal 95% interval over seeds."""
    m, se = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return {"mean": m, "lo": m - 1.96 * se, "hi": m + 1.96 * se}


def _finite(value: float) -> float | None:
    """JSON's null for a value that never came (inf) or has no meaning (nan)."""
    return float(value) if np.isfinite(value) else None


def _boot_medians(values: np.ndarray, rng: np.random.Generator, boot: int = 2000) -> np.ndarray:
    """The medians of `boot` resamples of the seeds' values."""
    return np.median(rng.choice(values, (boot, len(values))), axis=1)


def _ci_median(values: np.ndarray, rng: np.random.Generator) -> dict[str, float | None]:
    """Median with a bootstrap 95% interval over seeds; seeds that never reached count as infinite (null)."""
    meds = _boot_medians(values, rng)
    return {"median": _finite(np.median(values)), "lo": _finite(np.percentile(meds, 2.5)),
            "hi": _finite(np.percentile(meds, 97.5))}


def hv_at(comps: list[Completion], axis: str, grid: np.ndarray) -> np.ndarray:
    """The sweep's hypervolume at each grid value of trial-epochs or wall seconds (a step function)."""
    xs = np.array([getattr(c, axis) for c in comps])
    hv = np.array([c.hypervolume for c in comps])
    idx = np.searchsorted(xs, grid, side="right") - 1
    return np.where(idx >= 0, hv[np.clip(idx, 0, None)], 0.0)


def first_reach(comps: list[Completion], target: float) -> tuple[float, float]:
    """Trial-epochs and wall seconds when the hypervolume first reached target (inf: never)."""
    for c in comps:
        if c.hypervolume >= target:
            return float(c.trial_epochs), c.wall_s
    return math.inf, math.inf


# ---------------------------------------------------------------------------------------------- warm starts

def earlier_trials(path: Path, seed: int | None = None) -> pd.DataFrame:
    """An earlier sweep's finished trials from a recording: one row per trial with Tune's trial parameters (method,
    weight_<method>, train.lr) and its last epoch's values; `seed` keeps only that recorded seed's trials."""
    if not path.exists():
        raise UsageError(f"{path}: no recorded curves to warm-start from (--warm-from)")
    df = pd.read_csv(path)
    last = df[df["epoch"] == df["epoch"].max()].dropna(subset=OBJECTIVES)
    if seed is not None:
        last = last[last["seed"] == seed]
    if last.empty:
        raise UsageError(f"{path}: no trial ran every epoch{'' if seed is None else f' at seed {seed}'}")
    return last.reset_index(drop=True)


def _trial_params(space: C.SearchSpace, row: pd.Series) -> dict[str, Any]:
    from avdis.tune.space import weight_key

    params: dict[str, Any] = {"method": row.method, "train.lr": float(row.lr)}
    if row.method in space.weights:
        r = space.weights[row.method]
        params[weight_key(row.method)] = int(round(row.weight)) if r.int else float(row.weight)
    return params


def warm_start(space: C.SearchSpace, trials: pd.DataFrame, how: str) -> Callable[[Any], None]:
    """A `prepare` for replay(): the searcher's Optuna study given `trials` as `how` says (see WARM)."""
    import optuna

    def prepare(search: Any) -> None:
        study = search._ot_study
        pts = pareto.points(trials["emotion_acc"].to_numpy(float), trials["leakage"].to_numpy(float))
        if how == "front":
            for i in np.flatnonzero(pareto.nondominated(pts[:, 0], pts[:, 1])):
                study.enqueue_trial(_trial_params(space, trials.iloc[i]))
            return
        shift = np.array([-1.0, 1.0]) if how == "below" else np.zeros(2)
        scratch = optuna.create_study(directions=study.directions)  # the distributions the space draws with
        for i in range(len(trials)):
            params = _trial_params(space, trials.iloc[i])
            scratch.enqueue_trial(params)
            t = scratch.ask()
            search._space(t)
            study.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                      values=(pts[i] + shift).tolist()))
    return prepare


def warm_sample(trials: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """The earlier sweep a seed's sweep starts from: n of the trials drawn without replacement (None: all)."""
    if n is None or n >= len(trials):
        return trials
    rng = np.random.default_rng([seed, 1_000_003])
    return trials.iloc[np.sort(rng.choice(len(trials), n, replace=False))]


# ---------------------------------------------------------------------------------------------- the benchmark

_SURROGATE: Surrogate | None = None
_WARM: pd.DataFrame | None = None


def _init(surrogate: Surrogate, warm: pd.DataFrame | None = None) -> None:
    global _SURROGATE, _WARM
    _SURROGATE, _WARM = surrogate, warm
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _job(job: tuple[str, int, int, tuple[float, ...]]) -> tuple[str, int, list[list[Completion]]]:
    """One setup, size and seed, replayed once per start-up cost (the order of events depends on it)."""
    setup, trials, seed, startups = job
    assert _SURROGATE is not None
    cfg = setup_config(setup, trials, seed)
    oracle = setup == ORACLE
    prepare = None
    if setup in WARM:
        assert _WARM is not None
        how, n = WARM[setup]
        prepare = warm_start(cfg.sweep.space, warm_sample(_WARM, n, seed), how)
    return setup, trials, [replay(cfg, _SURROGATE.curve, s, seed, oracle, prepare).completions for s in startups]


def summarize(runs: list[list[Completion]], reach: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One setup at one size over its seeds (`reach`: each seed's `first_reach` of 95% of the reference): the
    issue's fields, plus the means of what the sweeps used."""
    return {
        "seeds": len(runs), "reached_95": float(np.isfinite(reach[:, 0]).mean()),
        "trial_epochs_to_95": _ci_median(reach[:, 0], rng), "wall_s_to_95": _ci_median(reach[:, 1], rng),
        "final_hypervolume": _ci_mean(np.array([r[-1].hypervolume for r in runs])),
        "trial_epochs": float(np.mean([r[-1].trial_epochs for r in runs])),
        "wall_s": float(np.mean([r[-1].wall_s for r in runs])),
    }


def curve_band(runs: list[list[Completion]], axis: str, grid: np.ndarray) -> dict[str, list[float]]:
    """Mean hypervolume over seeds at each grid value, with a normal 95% interval (none for one seed, as `_ci_mean`:
    a sample std of one seed is NaN, which left NaN in the JSON and stopped the plot)."""
    hv = np.stack([hv_at(r, axis, grid) for r in runs])
    m = hv.mean(0)
    se = hv.std(0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(m)
    return {"x": grid.tolist(), "mean": m.tolist(), "lo": (m - 1.96 * se).tolist(), "hi": (m + 1.96 * se).tolist()}


def at_equal_wall(runs: dict[str, list[list[Completion]]], default: str) -> dict[str, Any]:
    """Every setup's hypervolume when the default's sweep ends (its median wall time): which is best there (of the
    setups a sweep can run: the oracle knows the future)."""
    t = float(np.median([r[-1].wall_s for r in runs[default]]))
    hv = {s: _ci_mean(np.array([hv_at(r, "wall_s", np.array([t]))[0] for r in rs])) for s, rs in runs.items()}
    best = max((s for s in hv if s != ORACLE), key=lambda s: hv[s]["mean"])
    return {"wall_s": t, "best": best, "hypervolume": hv,
            "default_within_best_interval": hv[default]["mean"] >= hv[best]["lo"]}


def share_interval(mine: np.ndarray, other: np.ndarray, other_budget: float,
                   rng: np.random.Generator) -> dict[str, float | None]:
    """A 95% interval of median(mine) / median(other) over seeds (each side resampled on its own): how far a met
    or missed target is from the seed noise. A median that did not reach 95% is mine's inf, other's budget."""
    a, b = _boot_medians(mine, rng), _boot_medians(other, rng)
    shares = a / np.where(np.isfinite(b), b, other_budget)
    return {"lo": _finite(np.percentile(shares, 2.5)), "hi": _finite(np.percentile(shares, 97.5))}


def targets(rows: dict[str, dict[str, Any]], reach: dict[str, np.ndarray], default: str) -> dict[str, Any]:
    """The issue's targets at one size: the default's trial-epochs to 95% against random's and TPE-alone's.

    A setup that did not reach 95% in half its seeds has a median beyond its budget (its trial-epochs): the
    ratio is then an upper bound, and the target is met if the default's median <= 1/3 (1/2) of that budget.
    `reach` holds each setup's trial-epochs to 95% per seed, for the share's interval.
    """
    def need(setup: str) -> float:
        med = rows[setup]["trial_epochs_to_95"]["median"]
        return med if med is not None else rows[setup]["trial_epochs"]

    rng = np.random.default_rng(0)
    mine = rows[default]["trial_epochs_to_95"]["median"]
    out = {}
    for other, share in (("random/none", 1 / 3), ("tpe/none", 1 / 2)):
        censored = rows[other]["trial_epochs_to_95"]["median"] is None
        out[f"vs_{other}"] = {
            "default_median": mine, "other_median": need(other), "other_censored": censored, "share_needed": share,
            "share": None if mine is None else mine / need(other),
            "share_95": share_interval(reach[default], reach[other], rows[other]["trial_epochs"], rng),
            "met": mine is not None and mine <= share * need(other)}
    if ORACLE in rows:  # roughly what a stopping rule that never misjudged would spend on TPE's suggestions
        bound = rows[ORACLE]["trial_epochs_to_95"]["median"]
        out["oracle_reference"] = {
            "oracle_median": bound, "share_of_random": None if bound is None else bound / need("random/none"),
            "share_of_tpe_alone": None if bound is None else bound / need("tpe/none"),
            "share_of_tpe_alone_95": share_interval(reach[ORACLE], reach["tpe/none"], rows["tpe/none"]["trial_epochs"],
                                                    rng)}
    return out


def plot(bands: dict[str, dict[str, Any]], reference: float, trials: int, startup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, axis, label in ((axes[0], "trial_epochs", "trial-epochs"),
                            (axes[1], "wall_s", f"simulated wall seconds (start-up {startup_s:g} s per trial)")):
        for setup, band in bands.items():
            b = band[axis]
            line, = ax.plot(b["x"], b["mean"], label=setup, lw=2 if "mo_asha" in setup else 1.2,
                            ls="-" if setup.startswith("tpe") else ("--" if setup.startswith("nsga2") else ":"))
            ax.fill_between(b["x"], b["lo"], b["hi"], color=line.get_color(), alpha=0.15)
        ax.axhline(0.95 * reference, color="k", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("hypervolume")
        ax.set_xscale("log")
        ax.set_ylim(0.5 * reference, 1.02 * max(max(b[axis]["hi"]) for b in bands.values()))
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{trials}-trial sweeps replayed (mean, 95% interval over seeds); dashed: 95% of the reference")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def startup_seconds(flag: float | None) -> tuple[float, str]:
    """The per-trial start-up cost: the flag, else trial_overhead.json's in-process figure, else today's."""
    if flag is not None:
        return flag, "--startup-s"
    if OVERHEAD.exists():
        data = json.loads(OVERHEAD.read_text())
        if "startup_s" not in data:
            raise UsageError(f"{OVERHEAD}: no 'startup_s' key; pass --startup-s SECONDS instead")
        return float(data["startup_s"]), str(OVERHEAD.relative_to(ROOT))
    return TODAY_STARTUP_S, "README (median outside epochs per demo trial)"


def _rows(runs: dict[tuple[str, int], list[list[Completion]]], default: str,
          reference: float) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, Any]]:
    """Each setup and size's summary, and the issue's targets at each size where the setups compared were run."""
    rng = np.random.default_rng(0)
    reach = {key: np.array([first_reach(r, 0.95 * reference) for r in rs]) for key, rs in runs.items()}
    rows = {key: summarize(rs, reach[key], rng)
            for key, rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0]))}
    share_rng = np.random.default_rng(0)  # its own, so the intervals above stay as they were
    for (s, n), row in rows.items():  # every setup against TPE alone, as the 1/2 target reads
        other = rows.get(("tpe/none", n))
        if other and s != "tpe/none" and row["trial_epochs_to_95"]["median"] is not None:
            need = other["trial_epochs_to_95"]["median"] or other["trial_epochs"]
            row["share_of_tpe_alone"] = {"share": row["trial_epochs_to_95"]["median"] / need, **share_interval(
                reach[(s, n)][:, 0], reach[("tpe/none", n)][:, 0], other["trial_epochs"], share_rng)}
    verdict = {}
    for n in sorted({n for _, n in runs}):
        here = {s: runs[(s, m)] for s, m in runs if m == n}
        if {default, "random/none", "tpe/none"} <= set(here):
            verdict[str(n)] = {**targets({s: rows[(s, n)] for s in here}, {s: reach[(s, n)][:, 0] for s in here},
                                         default),
                               "equal_wall_time": at_equal_wall(here, default)}
    return rows, verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", nargs="+", default=None,
                    help="search/scheduler[:variant], each at every size (default: the base setups and the compared "
                         "ones at every size, the candidates at the smallest)")
    ap.add_argument("--trials", nargs="+", type=int, default=[64, 128, 256])
    ap.add_argument("--seeds", type=int, default=60)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--today-setups", nargs="*", default=None,
                    help=f"setups also replayed at the {TODAY_STARTUP_S} s start-up of TorchTrainer trials (default: "
                         "random/none, tpe/none, the default and tpe/mo_asha:before, the default before this benchmark)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--startup-s", type=float, default=None,
                    help=f"per-trial start-up seconds (default: {OVERHEAD.name}'s startup_s, else {TODAY_STARTUP_S})")
    ap.add_argument("--curves", type=Path, default=CURVES)
    ap.add_argument("--warm-from", type=Path, default=None,
                    help="the recording a warm-start setup (tpe/mo_asha:warm_*) takes its earlier sweep's trials from")
    ap.add_argument("--warm-seed", type=int, default=None,
                    help="only that recorded seed's trials of --warm-from (the same corpus's other seed)")
    ap.add_argument("--out", type=Path, default=OUT,
                    help="where sweep_replay.json and .png go (sweep_replay_<corpus>.* for sweep_curves_<corpus>.csv)")
    args = ap.parse_args()
    for setup in [*(args.setups or []), *(args.today_setups or [])]:
        why = check_setup(setup)
        if why:
            ap.error(f"setup {setup!r}: {why}")
        if setup in WARM and args.warm_from is None:
            ap.error(f"setup {setup!r}: it starts from an earlier sweep; name its recording with --warm-from")
    warm = earlier_trials(args.warm_from, args.warm_seed) if args.warm_from else None

    base = C.load(CONFIG, [])
    default = f"{base.sweep.search}/{base.sweep.scheduler.type}"
    setups = args.setups or [*BASE_SETUPS, *COMPARED, ORACLE]
    candidates = [] if args.setups else list(CANDIDATES)
    startup_s, startup_from = startup_seconds(args.startup_s)
    today_setups = args.today_setups if args.today_setups is not None else [
        "random/none", "tpe/none", default, "tpe/mo_asha:before"]
    today_setups = [] if startup_s == TODAY_STARTUP_S else [s for s in setups if s in today_setups]
    rec = load_curves(args.curves, base.sweep.space)
    chance = 1.0 / base.data.synth.emotions
    reference = reference_hypervolume(rec, chance)
    surrogate = fit_surrogate(rec, base.sweep.space)
    print(f"sweep_replay: {len(rec.methods)} recorded trials, reference hypervolume {reference:.4f}; "
          f"{len(setups)} setups x {args.trials} trials x {args.seeds} seeds, start-up {startup_s} s "
          f"({TODAY_STARTUP_S} s too for {today_setups})", flush=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    sized = [(s, n) for n in args.trials for s in setups] + [(s, min(args.trials)) for s in candidates]
    jobs = [(s, n, k, (startup_s, TODAY_STARTUP_S) if s in today_setups else (startup_s,))
            for s, n in sized for k in seeds]
    runs: list[dict[tuple[str, int], list[list[Completion]]]] = [{}, {}]
    with get_context("spawn").Pool(args.jobs, initializer=_init, initargs=(surrogate, warm)) as pool:
        for i, (setup, n, per_startup) in enumerate(pool.imap_unordered(_job, jobs), 1):
            for by, comps in zip(runs, per_startup):
                by.setdefault((setup, n), []).append(comps)
            if i % 50 == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} sweeps replayed", flush=True)
    rows, verdict = _rows(runs[0], default, reference)
    if today_setups:  # wall times at today's start-up cost beside the new one's
        today, _ = _rows(runs[1], default, reference)
        for key, row in today.items():
            rows[key]["at_today_startup"] = {k: row[k] for k in ("wall_s_to_95", "wall_s", "final_hypervolume")}
        if default in today_setups:
            for n, v in verdict.items():
                v["equal_wall_time_at_today_startup"] = at_equal_wall(
                    {s: runs[1][(s, int(n))] for s in today_setups}, default)
    largest = max(args.trials)
    epochs_grid = np.unique(np.geomspace(2, rec.epochs * largest, 60).astype(int)).astype(float)
    bands = {}
    for s in setups:
        rs = runs[0][(s, largest)]
        wall_grid = np.geomspace(10, max(r[-1].wall_s for r in rs), 60)
        bands[s] = {"trial_epochs": curve_band(rs, "trial_epochs", epochs_grid),
                    "wall_s": curve_band(rs, "wall_s", wall_grid)}
    counts = pd.Series(rec.config_ids).value_counts()
    payload = {
        "recorded": {"trials": int(len(rec.methods)), "configs": int(len(counts)),
                     "seeds_per_config": int(counts.min()), "seeds_per_config_max": int(counts.max()),
                     "epochs": rec.epochs, "file": f"bench/results/{args.curves.name}"},
        "reference_hypervolume": reference, "chance_acc": chance,
        "default": {"search": base.sweep.search, "scheduler": base.sweep.scheduler.type,
                    "eta": base.sweep.scheduler.eta, "grace_epochs": base.sweep.scheduler.grace_epochs,
                    "stopped_as": base.sweep.scheduler.stopped_as, "margin": base.sweep.scheduler.margin,
                    "startup_trials": base.sweep.startup_trials},
        "tried": ("variants of the default (search/scheduler:variant, overrides listed per setup): MO-ASHA's first "
                  "rung (grace 1-3) and eta (2-3), a stopped trial told to Optuna as COMPLETE with its rung values "
                  "or as PRUNED, TPE's random start-up trials (3, 6, 10), the margin by which a trial must be beaten "
                  "at its rung to be stopped (0-0.2); candidates at the smallest size. Prototypes replayed outside this file "
                  "(README): a margin learned per rung, Optuna's GP sampler, a BOHB-style searcher (TPE fitted at the "
                  "highest rung with enough results), start-up trials that cover every method once"),
        "oracle": (f"{ORACLE}: TPE with the FrontOracle, which knows each trial's last epoch and stops at epoch 1 "
                   "every trial that would not join the front so far: roughly what a stopping rule that never "
                   "misjudged would spend on TPE's suggestions (a reference, not a strict bound)"),
        "rank_agreement_with_last_epoch": rank_agreement(rec),
        "startup_s": startup_s, "startup_from": startup_from, "today_startup_s": TODAY_STARTUP_S,
        "max_concurrent": base.sweep.max_concurrent,
        "warm_from": None if warm is None else {
            "file": str(args.warm_from), "seed": args.warm_seed, "trials": len(warm),
            "setups": {w: {"how": how, "trials": n or len(warm)} for w, (how, n) in WARM.items() if w in setups}},
        "surrogate": surrogate.quality,
        "setups": [{"search": s.split(":")[0].split("/")[0], "scheduler": s.split(":")[0].split("/")[1],
                    "setup": s, "overrides": EXTRA.get(s, []), "trials": n, **row} for (s, n), row in rows.items()],
        "targets": verdict,
        "curves": {"trials": largest, "setups": bands},
    }
    stem = "sweep_replay" + args.curves.stem.removeprefix("sweep_curves")
    __import__("machine").write(args.out / f"{stem}.json", payload)
    plot(bands, reference, largest, startup_s, args.out / f"{stem}.png")
    for (s, n), row in rows.items():
        print(f"{s:28s} {n:4d}  reached {row['reached_95']:.2f}  epochs->95 {row['trial_epochs_to_95']['median']}  "
              f"wall->95 {row['wall_s_to_95']['median']}  final HV {row['final_hypervolume']['mean']:.4f}  "
              f"epochs {row['trial_epochs']:.0f}  wall {row['wall_s']:.0f}")
    print(json.dumps(verdict, indent=1))


if __name__ == "__main__":
    main()
