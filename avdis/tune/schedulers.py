"""Multi-objective asynchronous successive halving (MO-ASHA, Schmucker et al., arXiv 2106.12639).

Ray's schedulers rank trials on one metric; here trials are ranked on two, the sweep's
selection objectives (`avdis.config.selection`: the emotion metric of `sweep.emotion_metric`,
accuracy or UAR, max, and leakage min, on validation clips). Rungs sit at `grace * eta^k`
epochs (below the last epoch). When a trial reaches a rung, it is ranked among every trial recorded at that rung so far by
non-dominated rank, ties broken by crowding distance (NSGA-II selection: boundary
points and sparse regions of the front first); it continues if it is in the top
ceil(n / eta), or if nothing recorded at the rung dominates it, or if nothing there beats
it by `margin` in both objectives. Asynchronous: decisions use what has arrived and never
wait for a full rung; the second clause keeps a trial that is Pareto-optimal at its rung
from being stopped only because it arrived while the rung held few trials (a strict
top-1/eta cut of three front points keeps one).

The margin is the rung's noise: an early epoch's values move by about 0.1 before the last
epoch, differently per trial (bench/sweep_record.py's curves: the spread of final minus
epoch-2 values is 0.12-0.18), so a trial beaten by less than that is as likely to end
ahead. Once a sweep's searcher has found the good region, the rung fills with trials that
differ by noise alone; a rank cut there stops good trials at random (the replay benchmark
measured it), the margin stops only the clearly worse.

`AtMost`, under MO-ASHA and under every other experiment of a sweep (`sweep.scheduler.type=none`, the
confirmation), holds to `sweep.max_concurrent` the trials Tune runs at once, restored ones too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from avdis import storage
from avdis.config import SELECTION, S3Config
from avdis.errors import UsageError
from avdis.results import pareto


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of points on one front (inf at the extremes)."""
    n = len(points)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(points.shape[1]):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / span
    return dist


@dataclass
class MOSuccessiveHalving:
    """The rung bookkeeping and decisions, without Tune (unit-testable on made-up curves)."""

    max_epochs: int
    grace: int = 1
    eta: int = 3
    margin: float = 0.0
    rungs: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        milestones, r = [], self.grace
        while r < self.max_epochs:
            milestones.append(r)
            r *= self.eta
        self.rungs = {m: self.rungs.get(m, {}) for m in milestones}

    def decide(self, trial_id: str, epoch: int, emotion: float, leakage: float) -> bool:
        """Record the trial at the rung it just reached, by its validation `emotion` metric (the sweep's: accuracy or
        UAR) and leakage; True = continue, False = stop."""
        if epoch not in self.rungs or trial_id in self.rungs[epoch]:
            return True
        if not (math.isfinite(emotion) and math.isfinite(leakage)):
            return True  # nothing to judge on
        rung = self.rungs[epoch]
        rung[trial_id] = (emotion, leakage)
        ids = list(rung)
        pts = pareto.points(*np.array([rung[t] for t in ids]).T)  # as the front sees them: leakage below 0 is 0
        rank = pareto.ranks(pts[:, 0], pts[:, 1])
        crowd = np.zeros(len(ids))
        for r in np.unique(rank):
            members = rank == r
            crowd[members] = crowding_distance(pts[members])
        if rank[ids.index(trial_id)] == 1:
            return True
        order = sorted(range(len(ids)), key=lambda i: (rank[i], -crowd[i], i))
        if trial_id in {ids[i] for i in order[: math.ceil(len(ids) / self.eta)]}:
            return True
        mine = ids.index(trial_id)
        others = pts[np.arange(len(ids)) != mine]
        beaten = (others[:, 0] >= pts[mine, 0] + self.margin) & (others[:, 1] <= pts[mine, 1] - self.margin)
        return not beaten.any()


def read_state(url: str,
               s3: S3Config | None = None) -> tuple[dict[int, dict[str, tuple[float, float]]], dict[str, int]]:
    """The rungs and the stops a sweep's MO-ASHA wrote at `url` (none where it wrote nothing yet), or a UsageError
    naming the file: a damaged one (cut short by a copy, edited) ended a resumed sweep inside Tune at its first
    result (JSONDecodeError, KeyError), so the sweep's driver checks it before Ray starts. Read without asking first
    whether it exists: one deleted between the two (by hand, to resume with empty rungs) ended the sweep's driver in a
    FileNotFoundError traceback, where one deleted before reads as none."""
    try:
        state = json.loads(storage.read_bytes(url, s3))
        rungs = {int(epoch): {str(tid): (float(acc), float(leak)) for tid, (acc, leak) in rung.items()}
                 for epoch, rung in state["rungs"].items()}
        stopped = {str(tid): int(epoch) for tid, epoch in state["stopped"].items()}
    except FileNotFoundError:
        return {}, {}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(
            f"{url}: not MO-ASHA's rungs as a sweep writes them ({type(exc).__name__}: {exc}); it was cut short or "
            "edited. Restore it from a copy, or delete it to resume with empty rungs (MO-ASHA then judges on the "
            "results still to come, so a trial it would have stopped may run to the end), or start a new sweep "
            "(sweep.name=...)") from None
    return rungs, stopped


class AtMost(FIFOScheduler):
    """Tune's FIFO scheduling with no more than `max_concurrent` trials (`sweep.max_concurrent`) running at once.

    Tune's ConcurrencyLimiter holds back only its searcher's suggestions, and Tune starts the trials a restore
    resumes (unfinished, and failed ones under `--retry-failed`: `resume_errored`) without asking it, each as soon
    as it is added: with two failed trials and sweep.max_concurrent=1 both retried trials ran side by side (on a GPU
    box sized for one trial, out of memory: the very failure retried). A trial added while `max_concurrent` others
    take a place (running, or pending: starting) is held PAUSED (`on_trial_add`, before Tune files it by its
    status: Ray 2.60's TuneController starts every pending trial, whatever its scheduler chooses), and started when
    a place frees (`choose_trial_to_run`, which Tune asks at each step), first added first. A held trial keeps its
    place in the limiter (`resume.count_restored_trials` counts it), so nothing new is suggested before it runs.
    `max_concurrent` None holds nothing back (a scheduler pickled with a sweep's experiment before it had one;
    `sweep.restored` sets it)."""

    max_concurrent: int | None = None

    def __init__(self, max_concurrent: int | None = None):
        super().__init__()
        self.max_concurrent = max_concurrent

    def _places(self, tune_controller, but: Any = None) -> int:
        """The trials that take a place: running or starting (pending), `but` aside."""
        return sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in tune_controller.get_trials() if t is not but)

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if (self.max_concurrent and trial.status == Trial.PENDING
                and self._places(tune_controller, but=trial) >= self.max_concurrent):
            trial.set_status(Trial.PAUSED)

    def choose_trial_to_run(self, tune_controller):
        trials = tune_controller.get_trials()
        pending = next((t for t in trials if t.status == Trial.PENDING), None)
        if pending is not None or (self.max_concurrent and self._places(tune_controller) >= self.max_concurrent):
            return pending
        return next((t for t in trials if t.status == Trial.PAUSED), None)

    def debug_string(self) -> str:
        return f"FIFO, at most {self.max_concurrent} trials at once" if self.max_concurrent else super().debug_string()


class MOASHAScheduler(AtMost):
    """Tune adapter: stops a trial at a rung when `MOSuccessiveHalving` says so; no more than `max_concurrent`
    trials run at once (`AtMost`). Its own decisions are CONTINUE or STOP, never PAUSE: a trial PAUSED under it is one
    `AtMost` holds until a place frees, never one it judged.

    With `state_url` its rungs are written there at every rung result and read back by the copy `Tuner.restore`
    unpickles: Ray Tune 2.60 restores a sweep's searcher but never its scheduler's state, so a resumed sweep began
    with empty rungs and let run to the end trials the uninterrupted one would have stopped.
    """

    def __init__(self, max_epochs: int, grace: int = 1, eta: int = 3, margin: float = 0.0, time_attr: str = "epoch",
                 state_url: str | None = None, s3: S3Config | None = None, on: tuple[str, ...] = tuple(SELECTION),
                 max_concurrent: int | None = None):
        super().__init__(max_concurrent)
        self.on = on  # the result keys ranked on: the emotion metric's (max), then leakage's (min)
        self.core = MOSuccessiveHalving(max_epochs, grace, eta, margin)
        self.time_attr = time_attr
        self.stopped: dict[str, int] = {}  # trial id -> epoch it was stopped at
        self.state_url, self.s3 = state_url, s3
        self._read = True  # a new scheduler starts empty; an unpickled one reads the state its sweep wrote

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_read": False}

    def _read_state(self) -> None:
        self._read = True
        if self.state_url is None:
            return
        rungs, stopped = read_state(self.state_url, self.s3)
        for epoch, rung in rungs.items():
            if epoch in self.core.rungs:
                self.core.rungs[epoch].update(rung)
        self.stopped.update(stopped)

    def _write_state(self) -> None:
        state = {"rungs": {str(m): {tid: list(p) for tid, p in rung.items()} for m, rung in self.core.rungs.items()},
                 "stopped": self.stopped}
        storage.write_bytes(self.state_url, json.dumps(state).encode(), self.s3)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if not self._read:
            self._read_state()
        epoch = result.get(self.time_attr)
        acc, leak = (result.get(k) for k in self.on)  # the rule's max and min
        if epoch is None or acc is None or leak is None:
            return TrialScheduler.CONTINUE
        if self.stopped.get(trial.trial_id) == int(epoch):
            # stopped here before the driver died, and run again from an earlier checkpoint after the resume: the
            # rung holds it already, which `decide` lets through
            return TrialScheduler.STOP
        before = sum(map(len, self.core.rungs.values()))
        go_on = self.core.decide(trial.trial_id, int(epoch), float(acc), float(leak))
        if not go_on:
            self.stopped[trial.trial_id] = int(epoch)
        if self.state_url is not None and sum(map(len, self.core.rungs.values())) > before:
            self._write_state()
        return TrialScheduler.CONTINUE if go_on else TrialScheduler.STOP

    def debug_string(self) -> str:
        sizes = {m: len(r) for m, r in self.core.rungs.items()}
        return f"MO-ASHA (eta={self.core.eta}, margin={self.core.margin}) trials per rung: {sizes}"
