"""pareto.png: the Pareto scatter and the hypervolume history, drawn with matplotlib (for papers); what is drawn,
and how each trial is marked, is `avdis.report.view`'s, as on the page."""

from __future__ import annotations

import io
import textwrap
from typing import Any

import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from avdis.report.view import (HISTORY_X, OTHER_COLOR, STOPPED_LABEL, TARGET_COLOR, UNVALIDATED_LABEL,
                               X_LABEL, drawable, emotion, emotion_words, finished, finished_so_far, from_seed_means,
                               front_frame, front_label, history_title, leakage_range, method_color, methods_in,
                               no_front, paper_label, paper_text, plotted, target_point, waiting, y_label)

TRIAL_Z = 3  # the trials' markers
REFERENCE_Z = 2.5  # the multitask baseline's star and the paper target's diamond: over the front's line, under trials


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
    points, e = plotted(trials, summary), emotion(summary)  # e: the emotion axis's column
    fig = Figure(figsize=(12, 5.2), dpi=160, layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_hv = fig.subplots(1, 2, width_ratios=[2.2, 1])
    ax.set_xlabel(X_LABEL, fontsize=12)
    ax.set_ylabel(y_label(summary), fontsize=12)
    ax.set_title(f"{summary.get('sweep', '')}: {emotion_words(summary)} vs identity leakage", fontsize=13)
    ax.set_xlim(*leakage_range(points, summary))
    ax.grid(alpha=0.3)
    for method in methods_in(points):
        rows, color = points[points["method"] == method], method_color(method)
        ax.scatter([], [], s=42, color=color, label=method)  # its legend entry: a finished trial's marker
        for sub, style in ((rows[~rows["running"] & ~rows["stopped"] & ~rows["unvalidated"]],
                            {"facecolors": color, "edgecolors": color}),
                           (rows[rows["running"]], {"facecolors": "none", "edgecolors": color}),
                           (rows[rows["stopped"]], {"marker": "x", "color": color}),
                           (rows[rows["unvalidated"]], {"marker": "s", "facecolors": "none", "edgecolors": color})):
            if len(sub):
                ax.scatter(sub["leakage"], sub[e], s=42, linewidths=1.4, zorder=TRIAL_Z, **style)
    if points["stopped"].any():
        ax.scatter([], [], s=42, marker="x", color=OTHER_COLOR, linewidths=1.4, label=STOPPED_LABEL)
    if points["unvalidated"].any():  # drawn filled, they read as finished trials the front had passed over
        ax.scatter([], [], s=42, marker="s", facecolors="none", edgecolors=OTHER_COLOR, linewidths=1.4,
                   label=UNVALIDATED_LABEL)
    front = front_frame(summary)
    if len(front):
        ax.step(front["leakage"], front[e], where="post", color="black", lw=1.6, zorder=2,
                label=front_label(summary))
        ax.scatter(front["leakage"], front[e], s=150, facecolors="none", edgecolors="black", linewidths=1.6, zorder=4)
        spread = front[front["leakage_ci95"].notna() & front[f"{e}_ci95"].notna()]
        if from_seed_means(summary) and len(spread):
            ax.errorbar(spread["leakage"], spread[e], xerr=spread["leakage_ci95"].astype(float),
                        yerr=spread[f"{e}_ci95"].astype(float), fmt="none", ecolor="black", elinewidth=1.2,
                        capsize=4, zorder=4)
        for point in front[front["n"].fillna(1) < 2].itertuples() if from_seed_means(summary) else ():
            ax.annotate("1 seed", (point.leakage, getattr(point, e)), textcoords="offset points", xytext=(8, -12),
                        fontsize=8)
    base, target = summary.get("baseline"), target_point(summary)
    # the star and the diamond under the trials (REFERENCE_Z): above them, the star hid a trial at the baseline's values
    if drawable(base, summary):
        ax.scatter([base["leakage"]], [base[e]], marker="*", s=260, color=method_color("multitask"),
                   edgecolors="black", zorder=REFERENCE_Z, label="multitask baseline (mean)")
    if target is not None:
        ax.scatter([target[0]], [target[1]], marker="D", s=70, color=TARGET_COLOR, edgecolors="black",
                   zorder=REFERENCE_Z, label=paper_label(summary))
        ax.annotate("", xy=target, xytext=(base["leakage"], base[e]),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2, "linestyle": "--"})
        ax.annotate(paper_text(), xy=target, xytext=(0, 10), textcoords="offset points", ha="center", fontsize=10)
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
        ax.annotate(f"epoch {point.probed_epoch:.0f}", (point.leakage, getattr(point, e)), textcoords="offset points",
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
        counts = [finished_so_far(h) for h in history]
        ax_hv.step(counts, [h["hypervolume"] for h in history], where="post", color="black", marker="o", ms=4)
        if len(set(counts)) == 1:  # one step: its count (the locator, on the span of one point, marked 0.945..1.050)
            ax_hv.set_xticks(counts[:1])
        else:
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
