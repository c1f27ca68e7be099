"""What a sweep's report draws, in both its pictures (`avdis.report.image`: pareto.png; `avdis.report.webpage`:
pareto.html): which trials are placed and how each is marked, the front line and its label, the paper's target, the
axes and the colours, and the words that stand where no front or no result does.

The emotion axis is the one pareto.json's `objectives` name (`emotion_acc`, or `emotion_uar` for a sweep on
`sweep.emotion_metric: uar`: `emotion`). Rows missing it or leakage cannot be placed and are counted in the header;
running trials (no completion `order` yet) are drawn hollow, at their last probed epoch's values and labelled with
it (`probed_epoch`: they train on between MO-ASHA's rungs, where no probe runs), trials MO-ASHA stopped at a rung as
crosses (their metrics are of fewer epochs: on no front, `results.trained_longest`), finished trials without the
validation numbers a front is chosen on (pareto.json's `unvalidated`) as hollow squares. Every trial is drawn, each
seed of a confirmed configuration too; the front line runs through `front_points` of
pareto.json: single trials, or, once the sweep confirmed its front with more seeds, seed
means with error bars of the 95% Student-t interval of the mean (`results.SPREAD`). An
unreadable trials.parquet (mid-upload by a foreign writer) renders as "waiting for the first
result" with the reason shown, since the next rewrite fixes it.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from avdis import results, storage
from avdis.config import EMOTION_WORDS, METHODS, S3Config
from avdis.numbers import finite
from avdis.results import ResultsError

WAITING = "waiting for the first result"
CONFIRMING = "waiting for the confirming seeds: a configuration joins the front once all its seeds have ended"
UNCONFIRMED = ("no confirmed configuration: one joins the front once all its confirming seeds have ended, with those "
               "that finished, and none is running now (where every seed failed, each one's row of trials.parquet "
               "holds its error; a sweep stopped between seeds trains the rest when run again)")
UNTRAINED = "no trial has trained all its epochs yet: one stopped early at a rung is on no front"
UNMEASURED = ("no trial that trained all its epochs has both its emotion metric and leakage (their rows in "
              "trials.parquet hold none)")
UNVALIDATED = ("no trial that trained all its epochs has validation numbers, which the front is chosen on (see the "
               "note on the trials without them)")
STOPPED_LABEL = "stopped at a rung (on no front)"
UNVALIDATED_LABEL = "no validation numbers: kept off the front"
HISTORY_X = "finished trials (stopped early too)"  # a step per trial with a result, as in the search


def finished(summary: dict[str, Any]) -> int:
    """How many trials pareto.json counts as finished: completed or stopped at a rung. One written before
    `n_stopped` counted the stopped trials in `n_completed`, so the sum holds for both."""
    return (summary.get("n_completed") or 0) + (summary.get("n_stopped") or 0)


def waiting(summary: dict[str, Any]) -> str:
    """What stands where no trial has finished: a wait, or (none running, some failed) that none ever will."""
    failed, running = summary.get("n_failed", 0), summary.get("n_running", 0)
    if failed and not running:
        return f"no trial finished: {failed} failed (each row of trials.parquet holds its error)"
    return WAITING


def finished_so_far(step: dict[str, Any]) -> int:
    """A hypervolume history step's place on HISTORY_X: the trials finished by then, completed or stopped at a rung.
    A step written before `stopped` counted both in `completed`, so the sum holds for both."""
    return step["completed"] + (step.get("stopped") or 0)


def no_front(summary: dict[str, Any]) -> str:
    """Why the front is empty, as the front table and pareto.png say it: a confirmed front's seeds still running (or,
    none running and some failed, failed or not started), no
    trial trained all its epochs (those finished were stopped at a rung), those that did have no validation numbers to
    choose on (`results.unvalidated`) or no metrics to place (a probe whose chance was 1 gives no leakage; said to be
    untrained, they were not), or no trial finished at all. A summary written before `n_stopped` counted the stopped
    trials as completed: its completed ones are not told."""
    if from_seed_means(summary):
        return UNCONFIRMED if summary.get("n_failed") and not summary.get("n_running") else CONFIRMING
    if not finished(summary):
        return waiting(summary)
    if summary.get("n_stopped") is None or not summary.get("n_completed"):
        return UNTRAINED
    return UNVALIDATED if summary.get("unvalidated") else UNMEASURED


PAPER_DISENTANGLEMENT = 0.13  # the paper's operating point: 13% less leakage than multitask at equal accuracy


# Okabe-Ito colours, one per method in `METHODS` order: distinguishable with colour-vision
# deficiency and in greyscale print.
PALETTE = ("#7F7F7F", "#0072B2", "#D55E00", "#CC79A7", "#009E73", "#E69F00")
COLORS = dict(zip(METHODS, PALETTE))
OTHER_COLOR = "#444444"
TARGET_COLOR = "#56B4E9"
X_LABEL = "identity leakage (normalised probe accuracy, lower is better)"


def emotion(summary: dict[str, Any]) -> str:
    """The column on the emotion axis: the emotion metric pareto.json's `objectives` name."""
    return results.summary_axes(summary).emotion


def emotion_words(summary: dict[str, Any]) -> str:
    """The emotion axis in words, for titles and labels."""
    return f"emotion {EMOTION_WORDS[emotion(summary).removeprefix('emotion_')]}"


def paper_label(summary: dict[str, Any]) -> str:
    """The paper target's legend label, at the emotion axis's metric: its point keeps the baseline's (`target_point`).
    It says what the point compares, in words: it read '13% disentanglement at equal accuracy', this project's word
    (1 - leakage / the multitask baseline's) for 13% less leakage than multitask, which a reader of the figure need
    not know."""
    metric = emotion_words(summary).removeprefix("emotion ")
    return f"paper: {PAPER_DISENTANGLEMENT:.0%} less leakage than multitask, equal {metric}"


def paper_text() -> str:
    """The words beside the paper target's point, at the end of the arrow from the baseline's star (against which it
    is; the legend, `paper_label`, says so in words). They read 'paper: -13% leakage': a leakage of -13%, or 13
    points less? The point is at 0.87 of the baseline's leakage."""
    return f"paper: {PAPER_DISENTANGLEMENT:.0%} less leakage"


def y_label(summary: dict[str, Any]) -> str:
    return f"{emotion_words(summary)} (test)"


def load_trials(sweep_url: str, s3: S3Config | None = None) -> tuple[pd.DataFrame, str | None]:
    """The trials table and, when trials.parquet is unreadable, why (then the table is empty; the caller says it
    once, on its page and in its log or error).

    A missing sweep folder still raises ResultsError: that is a wrong path, not a wait.
    """
    try:
        return results.read_trials(sweep_url, s3), None
    except ResultsError as exc:
        if not storage.exists(storage.join(sweep_url, results.TRIALS), s3):
            raise
        return results.empty_trials(), str(exc)


def sweep_name(trials: pd.DataFrame, sweep_url: str) -> str:
    names = trials["sweep"].dropna()
    return str(names.iloc[0]) if len(names) else sweep_url.rstrip("/").rsplit("/", 1)[-1]


def plotted(trials: pd.DataFrame, summary: dict[str, Any]) -> pd.DataFrame:
    """Rows with both objectives of trials that did not fail, flagged `running`, `stopped` (at a rung),
    `unvalidated` (trained all its epochs, kept off the front for want of validation numbers; missing in a
    pareto.json of before them: none) and `on_front`: the trial is a point of the drawn front, or a seed of a seed
    mean that is. Not the search trial standing for a confirmed configuration (pareto.json's `front`): its seed is in
    no mean drawn."""
    df = trials[trials["status"] != "ERROR"].dropna(subset=[emotion(summary), "leakage"]).copy()  # a failed trial's
    df["running"] = df["order"].isna()  # last metrics are no result: it is counted as failed, not drawn
    df["stopped"] = df["status"] == "STOPPED"
    unvalidated = df["trial_id"].astype(str).isin(set(summary.get("unvalidated") or []))
    df["unvalidated"] = unvalidated & ~df["running"] & ~df["stopped"]  # a stopped one is a cross: on no front anyway
    front = set(summary.get("front") or [])
    if from_seed_means(summary):
        front = {str(t) for point in summary.get("front_points") or [] for t in point.get("trials") or []}
    df["on_front"] = df["trial_id"].astype(str).isin(front)
    return df


def front_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """The front's points (trials, or seed means) by increasing leakage (the order the step line runs in)."""
    columns = results.point_columns(results.summary_axes(summary))
    front = pd.DataFrame(summary.get("front_points") or [], columns=columns)
    return front.sort_values(["leakage", emotion(summary)], kind="stable")


def from_seed_means(summary: dict[str, Any]) -> bool:
    """Whether the front is drawn from seed means (the sweep confirmed it), so error bars belong on it."""
    return summary.get("front_basis") == "seed_mean"


def front_label(summary: dict[str, Any]) -> str:
    """Names what the line is: chosen on validation clips, drawn at its test numbers (a point can then sit below
    another: the front was not chosen on what is drawn)."""
    chosen = ", chosen on validation" if summary.get("selected_on") == "val" else ""
    return f"Pareto front{chosen} (seed means ± 95% CI)" if from_seed_means(summary) else f"Pareto front{chosen}"


def history_title(summary: dict[str, Any]) -> str:
    """The history follows the search's single trials, which is no longer the drawn front once it is confirmed."""
    return "hypervolume of the search's front" if from_seed_means(summary) else "hypervolume of the front"


def drawable(base: dict[str, Any] | None, summary: dict[str, Any]) -> bool:
    return bool(base) and finite(base.get("leakage")) is not None and finite(base.get(emotion(summary))) is not None


def target_point(summary: dict[str, Any]) -> tuple[float, float] | None:
    """(leakage, emotion metric) of the paper's operating point relative to the multitask baseline; none where that
    baseline leaks nothing (at or below 0, as for disentanglement): 13% less of it would be drawn at more leakage."""
    base = summary.get("baseline")
    if not drawable(base, summary) or base["leakage"] <= 0:
        return None
    return (1.0 - PAPER_DISENTANGLEMENT) * base["leakage"], base[emotion(summary)]


def leakage_range(points: pd.DataFrame, summary: dict[str, Any]) -> list[float]:
    """The x axis: [0, 1] with a margin, reaching left to a probe below chance (negative leakage) when there is one,
    and out to both ends of a seed mean's error bar: the axis cut a wide one (two seeds' t is 12.7) at its edge,
    where it read as an interval ending there."""
    drawn = [points["leakage"]]
    if from_seed_means(summary):
        front = front_frame(summary)
        bars = front["leakage_ci95"].astype(float)
        drawn += [front["leakage"] - bars, front["leakage"] + bars]
    ends = pd.concat(drawn).astype(float).dropna()
    low, high = (float(ends.min()), float(ends.max())) if len(ends) else (0.0, 1.0)
    return [min(-0.02, low - 0.03), max(1.02, high + 0.02)]


def method_color(method: str) -> str:
    return COLORS.get(method, OTHER_COLOR)


def methods_in(points: pd.DataFrame) -> list[str]:
    present = set(points["method"].dropna().astype(str))
    return [m for m in COLORS if m in present] + sorted(present - set(COLORS))


def utc(unix_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_s))


def last_result(trials: pd.DataFrame) -> float | None:
    """When the table last changed, while it holds RUNNING trials (None otherwise, or without times): it cannot tell
    a live sweep from one whose driver stopped (its trials stay RUNNING until the sweep runs again), so the page and
    `avdis report` say when the last result came."""
    if not (trials["status"] == "RUNNING").any():
        return None
    last = trials["updated_at"].max()
    return None if pd.isna(last) else float(last)
