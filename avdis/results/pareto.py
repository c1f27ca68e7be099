"""The Pareto front of an emotion metric (max) against leakage (min), and its hypervolume.

The emotion metric is accuracy or UAR (`Axes`, from `sweep.emotion_metric`). Non-dominated
sorting and hypervolume come from moocore. The hypervolume's reference point is the worst
useful model: the emotion metric at chance (accuracy's: the majority rate; UAR's: 1 over the
emotions present, what naming every clip one emotion scores) and leakage 1, so a point below
chance or above full leakage adds nothing. A front is chosen on one pair of columns (a
sweep's: the validation clips', `Axes.chosen`) and measured on another (the test clips',
`Axes.measured`): its hypervolume is that of the chosen trials' test values, which a trial
chosen for its lucky validation numbers does not inflate.
"""

from __future__ import annotations

from dataclasses import dataclass

import moocore
import numpy as np
import pandas as pd

from avdis.config import EmotionMetric, objectives, selection

MAXIMISE = (True, False)  # the emotion metric's, then leakage's (`config.objectives`)


@dataclass(frozen=True)
class Axes:
    """A front's two columns on the test clips (`measured`: what the report gives), on the validation clips
    (`chosen`: what a sweep chooses on), and the column of the emotion metric's chance (the box's corner)."""

    measured: tuple[str, str]
    chosen: tuple[str, str]
    chance: str

    @property
    def emotion(self) -> str:
        """The emotion metric's test column (`emotion_acc`, `emotion_uar`)."""
        return self.measured[0]


def axes(emotion: EmotionMetric = "acc") -> Axes:
    """The axes of a sweep whose `sweep.emotion_metric` is `emotion`."""
    return Axes(measured=tuple(objectives(emotion)), chosen=tuple(selection(emotion)),
                chance={"acc": "emotion_chance", "uar": "emotion_uar_chance"}[emotion])


ACC = axes("acc")
OBJECTIVES, SELECTED = ACC.measured, ACC.chosen  # the default's


def points(acc: np.ndarray, leakage: np.ndarray) -> np.ndarray:
    """(acc, leakage) rows; leakage below 0 (a probe doing worse than the label-only guess, by noise) counts as 0,
    the box's edge: no point earns area, or dominates another, for its probe's bad luck. Rounded to 12 places: the
    numbers are ratios of clip counts, and two equal ones worked out in another order (0.5 and 0.4999999999999999)
    must tie, not dominate."""
    pts = np.column_stack([np.asarray(acc, float), np.maximum(np.asarray(leakage, float), 0.0)])
    return np.round(pts, 12)


def nondominated(acc: np.ndarray, leakage: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats on both objectives (ties all kept)."""
    if len(acc) == 0:
        return np.zeros(0, bool)
    return moocore.is_nondominated(points(acc, leakage), maximise=list(MAXIMISE), keep_weakly=True)


def ranks(acc: np.ndarray, leakage: np.ndarray) -> np.ndarray:
    """Non-dominated rank per point (1 = on the front, 2 = front once rank 1 is removed, ...)."""
    if len(acc) == 0:
        return np.zeros(0, int)
    return moocore.pareto_rank(points(acc, leakage), maximise=list(MAXIMISE)) + 1  # moocore counts from 0


def hypervolume(acc: np.ndarray, leakage: np.ndarray, chance_acc: float) -> float:
    """Area dominated by the points inside the box [chance_acc, 1] x [0, 1] of (acc, leakage). The box's corner is
    rounded as the points are: a trial at chance (5/18) is the corner, where its point rounded up past the unrounded
    corner earned 1.6e-13 of area."""
    pts, ref = points(acc, leakage), points(np.array([chance_acc]), np.array([1.0]))[0]
    pts = pts[(pts[:, 0] > ref[0]) & (pts[:, 1] < ref[1])] if len(pts) else pts
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref, maximise=list(MAXIMISE)))


@dataclass(frozen=True)
class Front:
    trial_ids: list[str]
    hypervolume: float
    history: list[dict]  # hypervolume after each finished trial, in completion order, with the completed and the
    # stopped trials so far (`front_of`)


def chosen(select: pd.DataFrame, on: tuple[str, ...]) -> np.ndarray:
    """Mask of the rows on the front of the `on` columns (emotion accuracy's, then leakage's)."""
    return nondominated(select[on[0]].to_numpy(float), select[on[1]].to_numpy(float))


def front_of(trials: pd.DataFrame, chance_acc: float, counted: pd.Series | None = None,
             on: tuple[str, ...] = OBJECTIVES, stopped: pd.Series | None = None,
             measured: tuple[str, ...] = OBJECTIVES) -> Front:
    """Front chosen on the `on` columns, hypervolume of its `measured` values (the emotion metric's, whose chance is
    `chance_acc`, and leakage), and its history, from a trials table.

    Uses rows with those values present; `order` (completion order) sorts the history, which has a step per row: the
    hypervolume of the front chosen from the rows so far (with `on` other than the measured ones it can fall, when a
    trial better on `on` displaces one better on test). Only rows with `on` values, and with `counted` (a boolean per row)
    only those rows too, can be on the front; the others are steps all the same (a trial without validation numbers
    finished all the same). Each step counts the rows so far: `stopped` (a boolean per row: stopped at a rung) apart
    from the others, `completed`; their sum is the step's place.
    """
    done = trials.dropna(subset=list(measured))
    keep = done[list(on)].notna().all(axis=1).to_numpy()
    if counted is not None:
        keep = keep & counted.reindex(done.index).to_numpy(bool)
    halted = np.zeros(len(done), bool) if stopped is None else stopped.reindex(done.index).to_numpy(bool)
    if "order" in done:
        order = np.argsort(done["order"].to_numpy(), kind="stable")
        done, keep, halted = done.iloc[order], keep[order], halted[order]
    acc, leak = (done[name].to_numpy() for name in measured)
    by = done[list(on)].to_numpy(float)
    # The front of each prefix, grown a row at a time: a row off the front so far is beaten by a row on it, so the
    # front of the prefix and one row more is the front of the two. Chosen from each whole prefix, the history cost
    # n^2 (5 s at 5,000 trials, after every result of a sweep).
    rows = np.zeros(0, int)
    history, volume, halted_so_far = [], 0.0, np.cumsum(halted)
    for i, tid in enumerate(done["trial_id"]):
        if keep[i]:
            grown = np.append(rows, i)
            grown = grown[nondominated(by[grown, 0], by[grown, 1])]
            if not np.array_equal(grown, rows):
                rows, volume = grown, hypervolume(acc[grown], leak[grown], chance_acc)
        history.append({"trial_id": str(tid), "completed": i + 1 - int(halted_so_far[i]),
                        "stopped": int(halted_so_far[i]), "hypervolume": volume})
    return Front(trial_ids=[str(t) for t in done["trial_id"].to_numpy()[rows]], hypervolume=volume, history=history)
