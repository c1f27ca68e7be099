"""A sweep's report: the Pareto front of emotion accuracy (max) against leakage (min).

Two pages under the sweep URL drawn from `trials.parquet` and `pareto.json` (which the
sweep's recorder keeps current, `avdis.results`): `pareto.png` (matplotlib, for papers) and
`pareto.html` (one self-contained page, plotly's JS inlined, works offline). `write_pages`
only reads those files; `write_report` (`avdis report`) first rebuilds pareto.json from
the table where it is not that table's summary (a table no sweep summarized). The page embeds its data as
JSON (`<script id="avdis-data">`) and tags every plotted point with its trial
(`data-trial-id`, `data-trace`) so browsers and tests can find each trial.

Rows missing emotion_acc or leakage cannot be placed and are counted in the header;
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

import errno
import html
import io
import json
import logging
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from avdis import results, storage
from avdis.config import METHODS, S3Config
from avdis.errors import UsageError
from avdis.numbers import finite, json_safe
from avdis.results import ResultsError

log = logging.getLogger(__name__)

WAITING = "waiting for the first result"
CONFIRMING = "waiting for the confirming seeds: a configuration joins the front once all its seeds have ended"
UNTRAINED = "no trial has trained all its epochs yet: one stopped early at a rung is on no front"
UNMEASURED = ("no trial that trained all its epochs has both emotion_acc and leakage (their rows in trials.parquet "
              "hold none)")
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


def _step_counts(step: dict[str, Any]) -> str:
    """A step's counts on hover; none for a step written before `stopped` (its `completed` counted both)."""
    if step.get("stopped") is None:
        return ""
    return f" ({step['completed']} completed, {step['stopped']} stopped at a rung)"


def no_front(summary: dict[str, Any]) -> str:
    """Why the front is empty, as the front table and pareto.png say it: a confirmed front's seeds still running, no
    trial trained all its epochs (those finished were stopped at a rung), those that did have no validation numbers to
    choose on (`results.unvalidated`) or no metrics to place (a probe whose chance was 1 gives no leakage; said to be
    untrained, they were not), or no trial finished at all. A summary written before `n_stopped` counted the stopped
    trials as completed: its completed ones are not told."""
    if from_seed_means(summary):
        return CONFIRMING
    if not finished(summary):
        return waiting(summary)
    if summary.get("n_stopped") is None or not summary.get("n_completed"):
        return UNTRAINED
    return UNVALIDATED if summary.get("unvalidated") else UNMEASURED


PAPER_DISENTANGLEMENT = 0.13  # the paper's operating point: 13% less leakage at equal accuracy
PAPER_LABEL = "paper: 13% disentanglement at equal accuracy"
HTML, PNG = "pareto.html", "pareto.png"
FRONT_COLUMNS = ["trial_id", "method", "weight", "n", "emotion_acc", "emotion_acc_ci95", "emotion_uar", "leakage",
                 "leakage_ci95", "disentanglement", "val_emotion_acc", "val_leakage", "epochs"]
TABLE_HEADERS = {"n": "seeds", "emotion_acc_ci95": "± 95%", "leakage_ci95": "± 95%",
                 "val_emotion_acc": "val emotion_acc", "val_leakage": "val leakage",
                 "trials": "seeds' trials"}
SEARCH_TRIAL = "search trial"  # trial_id's header on a confirmed front: the configuration's, in no mean drawn
CHOSEN_ON = {"val": tuple(results.SELECTED), "test": tuple(results.OBJECTIVES)}  # by pareto.json's selected_on
TABLE_FORMATS = {"trial_id": "{}", "method": "{}", "weight": "{:g}", "n": "{:.0f}", "epochs": "{:.0f}"}  # others: 3 decimals

# Okabe-Ito colours, one per method in `METHODS` order: distinguishable with colour-vision
# deficiency and in greyscale print.
PALETTE = ("#7F7F7F", "#0072B2", "#D55E00", "#CC79A7", "#009E73", "#E69F00")
COLORS = dict(zip(METHODS, PALETTE))
OTHER_COLOR = "#444444"
TARGET_COLOR = "#56B4E9"
X_LABEL = "identity leakage (normalised probe accuracy, lower is better)"
Y_LABEL = "emotion accuracy (test)"


# ------------------------------------------------------------------ data


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
    df = trials[trials["status"] != "ERROR"].dropna(subset=["emotion_acc", "leakage"]).copy()  # a failed trial's
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
    front = pd.DataFrame(summary.get("front_points") or [], columns=results.POINT_COLUMNS)
    return front.sort_values(["leakage", "emotion_acc"], kind="stable")


def from_seed_means(summary: dict[str, Any]) -> bool:
    """Whether the front is drawn from seed means (the sweep confirmed it), so error bars belong on it."""
    return summary.get("front_basis") == "seed_mean"


def _bars(ci95: pd.Series) -> list[float | None]:
    """Error-bar half-widths; a point of one seed has none (null: no bar; a bar of zero read as a sure point)."""
    return [None if pd.isna(v) else float(v) for v in ci95.astype(float)]


def front_label(summary: dict[str, Any]) -> str:
    """Names what the line is: chosen on validation clips, drawn at its test numbers (a point can then sit below
    another: the front was not chosen on what is drawn)."""
    chosen = ", chosen on validation" if summary.get("selected_on") == "val" else ""
    return f"Pareto front{chosen} (seed means ± 95% CI)" if from_seed_means(summary) else f"Pareto front{chosen}"


def history_title(summary: dict[str, Any]) -> str:
    """The history follows the search's single trials, which is no longer the drawn front once it is confirmed."""
    return "hypervolume of the search's front" if from_seed_means(summary) else "hypervolume of the front"


def _drawable(base: dict[str, Any] | None) -> bool:
    return bool(base) and finite(base.get("leakage")) is not None and finite(base.get("emotion_acc")) is not None


def target_point(summary: dict[str, Any]) -> tuple[float, float] | None:
    """(leakage, emotion_acc) of the paper's operating point relative to the multitask baseline; none where that
    baseline leaks nothing (at or below 0, as for disentanglement): 13% less of it would be drawn at more leakage."""
    base = summary.get("baseline")
    if not _drawable(base) or base["leakage"] <= 0:
        return None
    return (1.0 - PAPER_DISENTANGLEMENT) * base["leakage"], base["emotion_acc"]


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


def _color(method: str) -> str:
    return COLORS.get(method, OTHER_COLOR)


def _methods(points: pd.DataFrame) -> list[str]:
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


def _counts(trials: pd.DataFrame, points: pd.DataFrame) -> dict[str, int]:
    status = trials["status"].fillna("")
    return {
        "trials": len(trials),
        "completed": int(results.completed(trials).sum()),  # trained all their epochs
        "stopped": int(results.stopped(trials).sum()),
        "running": int((status == "RUNNING").sum()),
        "errors": int(results.failed(trials).sum()),
        "lost": int((trials["error"] == results.LOST).sum()),
        "unplaced": int((status != "ERROR").sum()) - len(points),  # failed trials are counted as failed only
        # of those, the finished ones: they will not get both metrics, as a running one will
        "unplaced_finished": int((trials["order"].notna() & (status != "ERROR")).sum())
        - int((~points["running"]).sum()),
    }


# ------------------------------------------------------------------ PNG (matplotlib)


@rc_context({"text.parse_math": False})
def render_png(trials: pd.DataFrame, summary: dict[str, Any]) -> bytes:
    """The Pareto scatter and the hypervolume history as a 160-dpi PNG. Text is drawn as written: matplotlib read
    what lay between two `$` of a sweep (folder) or method name as TeX, and raised ValueError where it did not parse."""
    buf = io.BytesIO()
    png_figure(trials, summary).savefig(buf, format="png")
    return buf.getvalue()


@rc_context({"text.parse_math": False})
def png_figure(trials: pd.DataFrame, summary: dict[str, Any]) -> Figure:
    """`render_png`'s figure: the scatter's axes first, then the hypervolume history's."""
    points = plotted(trials, summary)
    fig = Figure(figsize=(12, 5.2), dpi=160, layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_hv = fig.subplots(1, 2, width_ratios=[2.2, 1])
    ax.set_xlabel(X_LABEL, fontsize=12)
    ax.set_ylabel(Y_LABEL, fontsize=12)
    ax.set_title(f"{summary.get('sweep', '')}: emotion accuracy vs identity leakage", fontsize=13)
    ax.set_xlim(*leakage_range(points, summary))
    ax.grid(alpha=0.3)
    for method in _methods(points):
        rows, color = points[points["method"] == method], _color(method)
        ax.scatter([], [], s=42, color=color, label=method)  # its legend entry: a finished trial's marker
        for sub, style in ((rows[~rows["running"] & ~rows["stopped"] & ~rows["unvalidated"]],
                            {"facecolors": color, "edgecolors": color}),
                           (rows[rows["running"]], {"facecolors": "none", "edgecolors": color}),
                           (rows[rows["stopped"]], {"marker": "x", "color": color}),
                           (rows[rows["unvalidated"]], {"marker": "s", "facecolors": "none", "edgecolors": color})):
            if len(sub):
                ax.scatter(sub["leakage"], sub["emotion_acc"], s=42, linewidths=1.4, zorder=3, **style)
    if points["stopped"].any():
        ax.scatter([], [], s=42, marker="x", color=OTHER_COLOR, linewidths=1.4, label=STOPPED_LABEL)
    if points["unvalidated"].any():  # drawn filled, they read as finished trials the front had passed over
        ax.scatter([], [], s=42, marker="s", facecolors="none", edgecolors=OTHER_COLOR, linewidths=1.4,
                   label=UNVALIDATED_LABEL)
    front = front_frame(summary)
    if len(front):
        ax.step(front["leakage"], front["emotion_acc"], where="post", color="black", lw=1.6, zorder=2,
                label=front_label(summary))
        ax.scatter(front["leakage"], front["emotion_acc"], s=150, facecolors="none", edgecolors="black", linewidths=1.6, zorder=4)
        spread = front[front["leakage_ci95"].notna() & front["emotion_acc_ci95"].notna()]
        if from_seed_means(summary) and len(spread):
            ax.errorbar(spread["leakage"], spread["emotion_acc"], xerr=spread["leakage_ci95"].astype(float),
                        yerr=spread["emotion_acc_ci95"].astype(float), fmt="none", ecolor="black", elinewidth=1.2,
                        capsize=4, zorder=4)
        for point in front[front["n"].fillna(1) < 2].itertuples() if from_seed_means(summary) else ():
            ax.annotate("1 seed", (point.leakage, point.emotion_acc), textcoords="offset points", xytext=(8, -12),
                        fontsize=8)
    base, target = summary.get("baseline"), target_point(summary)
    if _drawable(base):
        ax.scatter([base["leakage"]], [base["emotion_acc"]], marker="*", s=260, color=_color("multitask"),
                   edgecolors="black", zorder=5, label="multitask baseline (mean)")
    if target is not None:
        ax.scatter([target[0]], [target[1]], marker="D", s=70, color=TARGET_COLOR, edgecolors="black", zorder=5, label=PAPER_LABEL)
        ax.annotate("", xy=target, xytext=(base["leakage"], base["emotion_acc"]),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2, "linestyle": "--"})
        ax.annotate("paper: -13% leakage", xy=target, xytext=(0, 10), textcoords="offset points", ha="center", fontsize=10)
    if not finished(summary):
        ax.text(0.5, 0.5, textwrap.fill(waiting(summary), 45), transform=ax.transAxes, ha="center", va="center",
                fontsize=14, color="#555555")  # wrapped: a sweep of failures is said in a line wider than the axes
    elif not len(front):  # trials are drawn, no line: say why, as the page's front table does, in the corner of
        # most leakage and least accuracy, where trials are fewest
        ax.text(0.99, 0.02, textwrap.fill(no_front(summary), 50), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=11, color="#555555", zorder=6, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    if ax.get_legend_handles_labels()[0]:
        _legend(fig, ax)
    running = points[points["running"]]
    for point in running.dropna(subset=["probed_epoch"]).itertuples():  # values of its last probe, not of now
        ax.annotate(f"epoch {point.probed_epoch:.0f}", (point.leakage, point.emotion_acc), textcoords="offset points",
                    xytext=(6, 4), fontsize=7, color="#555555")
    if len(running):
        labelled = ", at the epoch beside each (its last probe)" if running["probed_epoch"].notna().any() else ""
        ax.text(0.01, 0.99, f"hollow circles: {len(running)} running{labelled}", transform=ax.transAxes, ha="left",
                va="top", fontsize=9)

    history = summary.get("hypervolume_history") or []
    ax_hv.set_xlabel(HISTORY_X, fontsize=12)
    ax_hv.set_ylabel("hypervolume", fontsize=12)
    ax_hv.set_title(history_title(summary), fontsize=13)
    ax_hv.grid(alpha=0.3)
    if history:
        ax_hv.step([finished_so_far(h) for h in history], [h["hypervolume"] for h in history], where="post",
                   color="black", marker="o", ms=4)
        ax_hv.xaxis.set_major_locator(MaxNLocator(integer=True))  # a count of trials: no 1.2
    else:
        ax_hv.text(0.5, 0.5, textwrap.fill(waiting(summary), 30), transform=ax_hv.transAxes, ha="center", va="center",
                   fontsize=11, color="#555555")
    return fig


def _legend(fig: Figure, ax: Any) -> None:
    """The scatter's legend below both axes, in as many columns (five at most) as fit the figure's width: five columns
    of the long labels (a confirmed front's, the paper target's) ran past its edges, cut off in the PNG."""
    handles, labels = ax.get_legend_handles_labels()
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(5, len(labels)), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=10, frameon=False)
        if ncols == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return
        legend.remove()


# ------------------------------------------------------------------ HTML (plotly)


def _trials(value: Any) -> str:
    """A seed mean's trials (pareto.json's front_points[].trials), as the page lists them."""
    return ", ".join(str(t) for t in value) if isinstance(value, list) and value else "—"


def _front_points(front: pd.DataFrame, summary: dict[str, Any]) -> dict[str, Any]:
    """The front trace's data: each point tagged with the trial standing for it, error bars for seed means. A seed
    mean's hover names the seeds' trials too: the search trial standing for its configuration is in no mean drawn."""
    means = from_seed_means(summary)
    who = "%{customdata[0]} (search trial), seeds' trials %{customdata[5]}" if means else "%{customdata[0]}"
    out = {
        "x": front["leakage"].tolist(), "y": front["emotion_acc"].tolist(),
        "customdata": [[str(r.trial_id), _fmt(r.weight, "{:g}"), _fmt(r.n, "{:.0f}"), _fmt(r.emotion_acc_ci95),
                        _fmt(r.leakage_ci95), _trials(r.trials)] for r in front.itertuples()],
        "hovertemplate": who + "<br>weight %{customdata[1]}, %{customdata[2]} seed(s)"
                         "<br>leakage %{x:.3f} ± %{customdata[4]}<br>emotion_acc %{y:.3f} ± %{customdata[3]}"
                         "<extra>%{fullData.name}</extra>",
    }
    if means:
        out["error_x"] = {"type": "data", "array": _bars(front["leakage_ci95"]), "visible": True, "color": "black"}
        out["error_y"] = {"type": "data", "array": _bars(front["emotion_acc_ci95"]), "visible": True, "color": "black"}
    return out


def _status(row: Any) -> str:
    """A trial's status on hover; a stopped one's says when, and that it is on no front; a running one's which epoch
    its values are of (it trains on past its last probe, and `epochs` alone paired them with the epoch trained)."""
    if row.stopped:
        return f"STOPPED at epoch {_fmt(row.epochs, '{:.0f}')}: on no front"
    if row.unvalidated:
        return f"{row.status}, {UNVALIDATED_LABEL}"
    if row.running and not pd.isna(row.probed_epoch):
        return f"RUNNING: values of epoch {row.probed_epoch:.0f}, trained {_fmt(row.epochs, '{:.0f}')}"
    return str(row.status or "")


def _trace_points(rows: pd.DataFrame) -> dict[str, Any]:
    return {
        "x": rows["leakage"].tolist(), "y": rows["emotion_acc"].tolist(),
        "customdata": [[str(r.trial_id), _fmt(r.weight, "{:g}"), _status(r)] for r in rows.itertuples()],
        "hovertemplate": "%{customdata[0]}<br>weight %{customdata[1]} (%{customdata[2]})"
                         "<br>leakage %{x:.3f}<br>emotion_acc %{y:.3f}<extra>%{fullData.name}</extra>",
    }


def pareto_figure(points: pd.DataFrame, summary: dict[str, Any]) -> go.Figure:
    """Scatter of every placed trial (one trace per method), the front as its own trace."""
    fig = go.Figure()
    for method in _methods(points):
        rows = points[points["method"] == method]
        fig.add_trace(go.Scatter(
            uid=f"method-{method}", name=method, mode="markers", **_trace_points(rows),
            marker={"color": _color(method), "size": 10, "line": {"width": 1.5, "color": _color(method)},
                    "symbol": ["circle-open" if r else "x" if st else "square-open" if u else "circle"
                               for r, st, u in zip(rows["running"], rows["stopped"], rows["unvalidated"])]},
            legendgroup=method, showlegend=False,
        ))
        # its legend entry apart, a filled circle: plotly draws an entry with the trace's first point's symbol, so a
        # method whose trials were all stopped was listed as a cross, the sign of a stopped trial
        fig.add_trace(go.Scatter(uid=f"legend-{method}", name=method, mode="markers", x=[None], y=[None],
                                 marker={"color": _color(method), "size": 10, "symbol": "circle"},
                                 legendgroup=method, hoverinfo="skip"))
    if points["stopped"].any():  # its legend entry: the crosses' meaning (a hover alone said STOPPED)
        fig.add_trace(go.Scatter(uid="stopped", name=STOPPED_LABEL, mode="markers", x=[None], y=[None],
                                 marker={"symbol": "x", "size": 10, "color": OTHER_COLOR}, hoverinfo="skip"))
    if points["unvalidated"].any():  # their legend entry: the hollow squares' meaning
        fig.add_trace(go.Scatter(uid="unvalidated", name=UNVALIDATED_LABEL, mode="markers", x=[None], y=[None],
                                 marker={"symbol": "square-open", "size": 10, "color": OTHER_COLOR}, hoverinfo="skip"))
    front = front_frame(summary)
    if len(front):
        fig.add_trace(go.Scatter(
            uid="front", name=front_label(summary), mode="lines+markers", line={"shape": "hv", "color": "black", "width": 2},
            marker={"size": 17, "symbol": "circle-open", "color": "black", "line": {"width": 2}},
            **_front_points(front, summary),
        ))
    base, target = summary.get("baseline"), target_point(summary)
    if _drawable(base):
        fig.add_trace(go.Scatter(
            uid="baseline", name="multitask baseline (mean)", mode="markers", x=[base["leakage"]], y=[base["emotion_acc"]],
            marker={"symbol": "star", "size": 18, "color": _color("multitask"), "line": {"width": 1, "color": "black"}},
        ))
    if target is not None:
        fig.add_trace(go.Scatter(
            uid="paper-target", name=PAPER_LABEL, mode="markers+text", x=[target[0]], y=[target[1]],
            text=["paper: -13% leakage"], textposition="top center",
            marker={"symbol": "diamond", "size": 12, "color": TARGET_COLOR, "line": {"width": 1, "color": "black"}},
        ))
        fig.add_annotation(x=target[0], y=target[1], ax=base["leakage"], ay=base["emotion_acc"], xref="x", yref="y",
                           axref="x", ayref="y", showarrow=True, arrowhead=2, arrowwidth=1.5, text="")
    fig.update_layout(
        template="plotly_white", height=560, margin={"l": 70, "r": 20, "t": 50, "b": 60},
        title=f"{summary.get('sweep', '')}: emotion accuracy vs identity leakage (hollow circles: running)",
        xaxis={"title": X_LABEL, "range": leakage_range(points, summary)}, yaxis={"title": Y_LABEL},
        legend={"x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top", "tracegroupgap": 0},  # methods in groups
        font={"size": 14},
    )
    if not finished(summary):
        fig.add_annotation(text=waiting(summary), xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 18})
    return fig


def _counts_ticks(history: list[dict[str, Any]]) -> list[float] | None:
    """Whole numbers for an axis of trial counts, as pareto.png's (plotly's own, at a page's width, marked 1.5 and 2.5
    finished trials on a sweep of fewer than about 15); None (plotly's) where nothing is drawn."""
    if not history:
        return None
    counts = [finished_so_far(h) for h in history]
    low, high = min(counts), max(counts)
    if low == high:  # one step: its count (the locator spread ten ticks within 1e-13 of it)
        return [low]
    return MaxNLocator(integer=True).tick_values(low, high).tolist()


def hypervolume_figure(summary: dict[str, Any]) -> go.Figure:
    history = summary.get("hypervolume_history") or []
    fig = go.Figure(go.Scatter(
        uid="hypervolume", name="hypervolume", mode="lines+markers", line={"shape": "hv", "color": "black"},
        x=[finished_so_far(h) for h in history], y=[h["hypervolume"] for h in history],
        customdata=[[h["trial_id"], _step_counts(h)] for h in history],
        hovertemplate="after %{customdata[0]}%{customdata[1]}: %{y:.4f}<extra></extra>",
    ))
    fig.update_layout(template="plotly_white", height=360, title=f"{history_title(summary)} over finished trials",
                      xaxis={"title": HISTORY_X, "tickvals": _counts_ticks(history)}, yaxis={"title": "hypervolume"},
                      font={"size": 14},
                      margin={"l": 70, "r": 20, "t": 50, "b": 60})
    return fig


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "—" if value is None or pd.isna(value) else pattern.format(value)


def front_table(summary: dict[str, Any]) -> str:
    """The front's points as a table: one row per trial, or per configuration with its seed count and spread, its
    search trial and the seeds' trials whose mean it is (the search trial alone read as one of the seeds)."""
    chosen = CHOSEN_ON.get(summary.get("selected_on", "test"), ())  # pareto.json before it said: chosen on test
    means = from_seed_means(summary)
    columns = [*FRONT_COLUMNS[:2], "trials", *FRONT_COLUMNS[2:]] if means else FRONT_COLUMNS
    headers = {**TABLE_HEADERS, "trial_id": SEARCH_TRIAL} if means else TABLE_HEADERS
    head = "".join(f"<th>{headers.get(c, c)}{' (chosen on)' if c in chosen else ''}</th>" for c in columns)
    body = "".join(
        f'<tr data-trial-id="{html.escape(str(r["trial_id"]))}">'
        + "".join(f"<td>{html.escape(_trials(r[c]) if c == 'trials' else _fmt(r[c], TABLE_FORMATS.get(c, '{:.3f}')))}</td>"
                  for c in columns)
        + "</tr>"
        for _, r in front_frame(summary).iterrows()
    )
    if not body:  # a confirmed front is empty while no configuration's confirming seeds have all ended
        body = f'<tr><td colspan="{len(columns)}">{html.escape(no_front(summary))}</td></tr>'
    return f'<table id="front-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# Runs after each plot draws: tag plotly's SVG points with the trial they show.
TAG_JS = """
function avdisTag(gd) {
  gd.querySelectorAll('.scatterlayer .trace').forEach(function (g) {
    var cd = g.__data__, tr = cd && cd[0] && cd[0].trace;
    if (!tr) return;
    g.setAttribute('data-trace', tr.uid);
    g.querySelectorAll('path.point').forEach(function (p, k) {
      var i = (p.__data__ && p.__data__.i !== undefined) ? p.__data__.i : k;
      p.setAttribute('data-trace', tr.uid);
      if (tr.customdata && tr.customdata[i]) p.setAttribute('data-trial-id', tr.customdata[i][0]);
    });
  });
  document.body.setAttribute('data-rendered', String(Number(document.body.getAttribute('data-rendered') || 0) + 1));
}
"""

# `seen` is null where pareto.json has no updated_at (Summary lets it be missing); the fetched summary lacks the key
# then, and undefined !== null reloaded the page at every poll.
POLL_JS = """
(function () {
  var seen = %s;
  setInterval(function () {
    fetch('pareto.json', {cache: 'no-store'}).then(function (r) { return r.json(); })
      .then(function (s) { if ((s.updated_at ?? null) !== seen) location.reload(); }).catch(function () {});
  }, %d);
})();
"""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: 4px; } .meta { color: #555; margin: 2px 0; }
.waiting { font-size: 1.2rem; color: #b35900; } .note { color: #a00; }
table { border-collapse: collapse; margin-top: 8px; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; } th { background: #f4f4f4; }
td:nth-child(-n+2), th:nth-child(-n+2) { text-align: left; }
"""


def _shown(value: Any, digits: int) -> str:
    """A number of pareto.json for the page; "-" where it holds none (edited by hand, null crashed the page)."""
    v = finite(value)
    return "-" if v is None else f"{v:.{digits}f}"


def render_html(trials: pd.DataFrame, summary: dict[str, Any], *, note: str | None = None,
                refresh_s: float | None = None) -> str:
    """One self-contained page: header, Pareto scatter, hypervolume, front table.

    `refresh_s` adds polling of `pareto.json` next to the page (the live dashboard);
    a page opened from a file has none. `note` is shown in the header (e.g. an unreadable table).
    """
    points = plotted(trials, summary)
    counts = _counts(trials, points)
    config = {"displaylogo": False, "responsive": True}
    post = "avdisTag(document.getElementById('{plot_id}')); document.getElementById('{plot_id}').on('plotly_afterplot', function () { avdisTag(document.getElementById('{plot_id}')); });"
    pareto_div = pareto_figure(points, summary).to_html(full_html=False, include_plotlyjs=True, div_id="pareto-plot",
                                                        config=config, post_script=post)
    hv_div = hypervolume_figure(summary).to_html(full_html=False, include_plotlyjs=False, div_id="hypervolume-plot",
                                                  config=config, post_script=post)
    updated = utc(summary.get("updated_at") or time.time())
    sweep = html.escape(str(summary.get("sweep", "")))
    data = {"summary": json_safe(summary), "counts": counts, "points": json_safe([
        {"trial_id": str(r.trial_id), "method": r.method, "weight": r.weight, "emotion_acc": r.emotion_acc,
         "leakage": r.leakage, "seed": r.seed, "role": r.role or results.SEARCH, "config_id": r.config_id,
         "epochs": r.epochs, "probed_epoch": r.probed_epoch, "running": bool(r.running), "stopped": bool(r.stopped),
         "unvalidated": bool(r.unvalidated), "on_front": bool(r.on_front)}
        for r in points.itertuples()
    ])}
    blob = json.dumps(data).replace("<", "\\u003c")  # no "</script>" or "<!--" can end or bend the data block
    finished = counts["completed"] + counts["stopped"]
    wait = f'<p class="waiting">{html.escape(waiting(summary))}</p>' if not finished else ""
    note_html = "".join(f'<p class="note">{html.escape(said)}</p>'
                        for said in (note, results.unvalidated_said(summary.get("unvalidated") or [])) if said)
    poll = f"<script>{POLL_JS % (json.dumps(summary.get('updated_at')), int(refresh_s * 1000))}</script>" if refresh_s else ""
    stopped = f" · {counts['stopped']} stopped at a rung" if counts["stopped"] else ""  # "completed" read as trained
    waiting_for = counts["unplaced"] - counts["unplaced_finished"]
    unplaced = f" · {waiting_for} without both metrics yet" if waiting_for else ""
    unplaced += f" · {counts['unplaced_finished']} finished without both" if counts["unplaced_finished"] else ""
    unplaced += f" · {counts['lost']} lost to a killed driver (drawn again)" if counts["lost"] else ""
    last = last_result(trials)
    last_shown = f" (last result {utc(last)})" if last is not None else ""
    n_front = len(summary.get("front") or [])
    front_note = (f"front: {n_front} configurations, seed means ({html.escape(summary.get('spread') or '')})"
                  if from_seed_means(summary) else f"front: {n_front} trials")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>avdis · {sweep} · Pareto front</title>
<style>{STYLE}</style><script>{TAG_JS}</script></head>
<body>
<h1>avdis sweep <code>{sweep}</code>: emotion accuracy vs identity leakage</h1>
<p class="meta" id="counts">{counts['trials']} trials · {counts['completed']} completed{stopped} · {counts['running']} running{last_shown} · {counts['errors']} failed{unplaced}</p>
<p class="meta">hypervolume <b id="hypervolume">{_shown(summary.get('hypervolume'), 4)}</b>
 (reference: emotion_acc = chance {_shown((summary.get('reference') or {}).get('emotion_acc'), 3)}, leakage = 1) ·
 {front_note} · updated <span id="updated">{updated}</span></p>
{wait}{note_html}
{pareto_div}
{hv_div}
<h2>Pareto front</h2>
<div class="scroll">{front_table(summary)}</div>
<script id="avdis-data" type="application/json">{blob}</script>
{poll}
</body></html>
"""


# ------------------------------------------------------------------ files


def _check_has_trials(sweep_url: str, s3: S3Config | None) -> None:
    """A folder without trials.parquet has nothing to report; empty reports would look like a sweep that found nothing."""
    results.check_folder(sweep_url, s3)
    if not storage.exists(storage.join(sweep_url, results.TRIALS), s3):
        started = storage.exists(storage.join(sweep_url, results.SPEC), s3)
        if started and not storage.exists(storage.join(sweep_url, results.PARETO), s3):  # in its first seconds
            raise UsageError(f"{sweep_url}: the sweep has started ({results.SPEC}) but has no results yet (no "
                             f"{results.TRIALS}); run this again after its first trial reports, or follow it live "
                             f"with `avdis dashboard {sweep_url}`")
        raise UsageError(f"{sweep_url}: no {results.TRIALS} found, so there is nothing to report; "
                         "pass <storage>/<sweep name> of a sweep with results")


def _pages(trials: pd.DataFrame, summary: dict[str, Any], note: str | None) -> dict[str, bytes]:
    """pareto.html and pareto.png, drawn (about a second, the PNG most of it) before either is written."""
    return {HTML: render_html(trials, summary, note=note).encode(), PNG: render_png(trials, summary)}


def _write_pages(sweep_url: str, pages: dict[str, bytes], s3: S3Config | None) -> dict[str, str]:
    """Write the drawn pages; return the URLs of pareto.json and of both pages."""
    for name, body in pages.items():
        storage.write_bytes(storage.join(sweep_url, name), body, s3)
    return _urls(sweep_url)


def _urls(sweep_url: str) -> dict[str, str]:
    """The URLs of a report's three files."""
    return {name: storage.join(sweep_url, name) for name in (results.PARETO, HTML, PNG)}


def write_pages(sweep_url: str, s3: S3Config | None = None) -> dict[str, str]:
    """Redraw pareto.html and pareto.png from trials.parquet and pareto.json as they are; return the three URLs."""
    _check_has_trials(sweep_url, s3)
    trials, note = load_trials(sweep_url, s3)
    if note is not None:
        log.warning("%s", note)
    summary = results.read_pareto(sweep_url, s3)
    if summary is None:
        raise UsageError(f"{sweep_url}: no {results.PARETO} next to {results.TRIALS}; run `avdis report {sweep_url}`")
    return _write_pages(sweep_url, _pages(trials, summary, note), s3)


@contextmanager
def _read_only_said(sweep_url: str) -> Iterator[None]:
    """A write refused where the sweep's storage is read-only to this user (an S3 grant to read, a read-only mount)
    names the folder and what shows the report without writing: the refusal alone gave no way on."""
    try:
        yield
    except storage.StorageError as exc:
        cause = exc.__cause__
        if not (isinstance(cause, PermissionError) or (isinstance(cause, OSError) and cause.errno == errno.EROFS)):
            raise
        raise storage.NotWritableError(
            f"{exc}. `avdis report` writes {results.PARETO}, {HTML} and {PNG} into {sweep_url}; where you may only "
            f"read it, `avdis dashboard {sweep_url}` serves the same pages without writing") from None


REDRAWS = 5  # tries of `write_report` at a table no sweep replaces while it is summarized and drawn


def outrun(sweep_url: str) -> str:
    """What `avdis report` says where a running sweep replaced trials.parquet at each of its tries: the sweep's own
    report is the one to read (an error there ended a report beside a busy sweep, where nothing was wrong)."""
    return (f"{storage.join(sweep_url, results.TRIALS)} changed at each of {REDRAWS} tries to draw the report from "
            f"it: a running sweep replaces it, with its {results.PARETO}, after every result, and redraws its {HTML} "
            f"and {PNG} within 30 s. That report, newer than this one would be, is left to stand; follow it live with "
            f"`avdis dashboard {sweep_url}`")


class Report(NamedTuple):
    """What `write_report` leaves: the URLs of pareto.json and both pages, the trials they were drawn from (the last
    table read, where it was outrun), and `outrun`'s words where the running sweep's own report stands instead."""

    written: dict[str, str]
    trials: pd.DataFrame
    outrun: str | None = None


def _still_read(sweep_url: str, trials: pd.DataFrame, s3: S3Config | None) -> bool:
    """Whether trials.parquet still holds `trials`: a running sweep's recorder replaces it, and its summary with it,
    after every result."""
    try:
        return results.read_trials(sweep_url, s3).equals(trials)
    except ResultsError:  # being replaced by a foreign writer: not the table read
        return False


def _kept(sweep_url: str, summary: dict[str, Any], s3: S3Config | None) -> dict[str, Any] | None:
    """pareto.json where it already summarizes the table as `summary` does (the recorder's, for a table a sweep
    wrote), else None, and only then is it written: beside a sweep the report writes none, so none of its own can land
    over the recorder's newer one."""
    try:
        kept = results.read_pareto(sweep_url, s3)
    except ResultsError:  # damaged: rebuilt
        return None
    drawn = json.loads(json.dumps(json_safe(summary)))
    return kept if kept is not None and {**kept, "updated_at": None} == {**drawn, "updated_at": None} else None


def write_report(sweep_url: str, s3: S3Config | None = None) -> Report:
    """Rebuild pareto.json from trials.parquet where it is not that table's summary, then the pages.

    The trials returned are those drawn from (read once: a running sweep replaces the file, so a second read could
    tell of other trials). Each file is written only while trials.parquet still holds the table read, and drawn again
    from the new one where it does not: run beside a live sweep, a report summarized and drawn (a second or two) from
    a table the sweep's recorder then replaced wrote its older pareto.json and pages over the recorder's newer ones,
    which stood until the sweep's next result. A sweep's pareto.json already summarizes its table and is not written.
    After `REDRAWS` tries outrun by a sweep that replaces the table faster than a report is drawn, nothing more is
    written and the sweep's own report stands (`outrun`): what was needed is there, newer than this one would be.

    An unreadable trials.parquet leaves pareto.json as it was (a summary of nothing would replace a good one): the
    pages say why, and ResultsError then says so too."""
    _check_has_trials(sweep_url, s3)
    with _read_only_said(sweep_url):
        for _ in range(REDRAWS):
            trials, note = load_trials(sweep_url, s3)
            summary = results.summarize(trials, sweep_name(trials, sweep_url))
            if note is not None:  # the pages show the summary kept, and why it was kept
                _write_pages(sweep_url, _pages(trials, results.read_pareto(sweep_url, s3) or summary, note), s3)
                raise ResultsError(f"{note}; {results.PARETO} was left as it was, the pages say why")
            kept = _kept(sweep_url, summary, s3)
            if not _still_read(sweep_url, trials, s3):
                continue
            if kept is None:
                results.write_pareto(sweep_url, summary, s3)
                if not _still_read(sweep_url, trials, s3):  # replaced as ours was written, which may have landed
                    # after the recorder's newer summary: summarize the newer table and write again, at once
                    continue
            pages = _pages(trials, kept or summary, note)
            if _still_read(sweep_url, trials, s3):
                written = _write_pages(sweep_url, pages, s3)
                if _still_read(sweep_url, trials, s3):
                    return Report(written, trials)
    return Report(_urls(sweep_url), trials, outrun(sweep_url))
