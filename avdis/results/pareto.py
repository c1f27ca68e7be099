"""The Pareto front of emotion accuracy (max) against leakage (min), and its hypervolume.

Non-dominated sorting and hypervolume come from moocore. The hypervolume's reference
point is the worst useful model: emotion accuracy at chance and leakage 1, so a point
below chance or above full leakage adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import moocore
import numpy as np
import pandas as pd

from avdis.config import OBJECTIVES as GOALS

OBJECTIVES = tuple(GOALS)
MAXIMISE = tuple(mode == "max" for mode in GOALS.values())


def _points(acc: np.ndarray, leakage: np.ndarray) -> np.ndarray:
    """(acc, leakage) rows; leakage below 0 (a probe doing worse than the label-only guess, by noise) counts as 0,
    the box's edge: no point earns area, or dominates another, for its probe's bad luck."""
    return np.column_stack([np.asarray(acc, float), np.maximum(np.asarray(leakage, float), 0.0)])


def nondominated(acc: np.ndarray, leakage: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats on both objectives (ties all kept)."""
    if len(acc) == 0:
        return np.zeros(0, bool)
    return moocore.is_nondominated(_points(acc, leakage), maximise=list(MAXIMISE), keep_weakly=True)


def ranks(acc: np.ndarray, leakage: np.ndarray) -> np.ndarray:
    """Non-dominated rank per point (1 = on the front, 2 = front once rank 1 is removed, ...)."""
    if len(acc) == 0:
        return np.zeros(0, int)
    return moocore.pareto_rank(_points(acc, leakage), maximise=list(MAXIMISE)) + 1  # moocore counts from 0


def hypervolume(acc: np.ndarray, leakage: np.ndarray, chance_acc: float) -> float:
    """Area dominated by the points inside the box [chance_acc, 1] x [0, 1] of (acc, leakage)."""
    pts = _points(acc, leakage)
    pts = pts[(pts[:, 0] > chance_acc) & (pts[:, 1] < 1.0)] if len(pts) else pts
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=[chance_acc, 1.0], maximise=list(MAXIMISE)))


@dataclass(frozen=True)
class Front:
    trial_ids: list[str]
    hypervolume: float
    history: list[dict]  # hypervolume after each completed trial, in completion order


def front_of(trials: pd.DataFrame, chance_acc: float, counted: pd.Series | None = None) -> Front:
    """Front and hypervolume history from a trials table.

    Uses rows with both objectives present; `order` (completion order) sorts the history, which has a step per
    row. With `counted` (a boolean per row) only those rows can be on the front or add to the hypervolume.
    """
    done = trials.dropna(subset=list(OBJECTIVES))
    keep = np.ones(len(done), bool) if counted is None else counted.reindex(done.index).to_numpy(bool)
    if "order" in done:
        order = np.argsort(done["order"].to_numpy(), kind="stable")
        done, keep = done.iloc[order], keep[order]
    acc, leak = done["emotion_acc"].to_numpy(), done["leakage"].to_numpy()
    mask = np.zeros(len(done), bool)
    mask[keep] = nondominated(acc[keep], leak[keep])
    history = [
        {"trial_id": str(tid), "completed": i + 1,
         "hypervolume": hypervolume(acc[: i + 1][keep[: i + 1]], leak[: i + 1][keep[: i + 1]], chance_acc)}
        for i, tid in enumerate(done["trial_id"])
    ]
    return Front(
        trial_ids=[str(t) for t in done["trial_id"][mask]],
        hypervolume=hypervolume(acc[keep], leak[keep], chance_acc),
        history=history,
    )
