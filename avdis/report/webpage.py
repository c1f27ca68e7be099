"""pareto.html: one self-contained page (plotly's JS inlined, works offline) of a header, the Pareto scatter, the
hypervolume history and the front table; what is drawn, and how each trial is marked, is `avdis.report.view`'s, as in
pareto.png. The page embeds its data as JSON (`<script id="avdis-data">`) and tags every plotted point with its trial
(`data-trial-id`, `data-trace`) so browsers and tests can find each trial. The live dashboard's page also polls
pareto.json and reloads when it changes."""

from __future__ import annotations

import html
import json
import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from matplotlib.ticker import MaxNLocator

from avdis import results
from avdis.errors import counted
from avdis.numbers import finite, json_safe
from avdis.report.view import (HISTORY_X, OTHER_COLOR, STOPPED_LABEL, TARGET_COLOR, UNVALIDATED_LABEL,
                               X_LABEL, drawable, emotion, emotion_words, finished, finished_so_far, from_seed_means,
                               front_frame, front_label, history_title, last_result, leakage_range, method_color,
                               methods_in, no_front, paper_label, paper_text, plotted, target_point, utc, waiting,
                               y_label)

TABLE_HEADERS = {"emotion_acc_ci95": "± 95%", "emotion_uar_ci95": "± 95%", "leakage_ci95": "± 95%",
                 "val_emotion_acc": "val emotion_acc", "val_emotion_uar": "val emotion_uar",
                 "val_leakage": "val leakage", "trials": "seeds' trials"}
SEARCH_TRIAL = "search trial"  # trial_id's header on a confirmed front: the configuration's, in no mean drawn
TABLE_FORMATS = {"trial_id": "{}", "method": "{}", "weight": "{:g}", "n": "{:.0f}", "epochs": "{:.0f}"}  # others: 3 decimals


def front_columns(summary: dict[str, Any]) -> list[str]:
    """The front table's columns: how many seeds (`n`) and which (`seeds`: the count alone, headed "seeds", read as a
    seed: a configuration confirmed at seed 2 alone, whose space sampled seeds 0 and 1, showed "seeds 1"), the emotion
    axis's metric with its spread, the other emotion metric beside it, and the validation numbers the front was
    chosen on."""
    axes = results.summary_axes(summary)
    other = [m for m in ("emotion_acc", "emotion_uar") if m != axes.emotion]
    return ["trial_id", "method", "weight", "n", "seeds", axes.emotion, f"{axes.emotion}_ci95", *other, "leakage",
            "leakage_ci95", "disentanglement", *axes.chosen, "epochs"]


def _step_counts(step: dict[str, Any]) -> str:
    """A step's counts on hover; none for a step written before `stopped` (its `completed` counted both)."""
    if step.get("stopped") is None:
        return ""
    return f" ({step['completed']} completed, {step['stopped']} stopped at a rung)"


def _bars(ci95: pd.Series) -> list[float | None]:
    """Error-bar half-widths; a point of one seed has none (null: no bar; a bar of zero read as a sure point)."""
    return [None if pd.isna(v) else float(v) for v in ci95.astype(float)]


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


def _trials(value: Any) -> str:
    """A seed mean's trials (pareto.json's front_points[].trials), as the page lists them."""
    return ", ".join(str(t) for t in value) if isinstance(value, list) and value else "—"


def _seeds(value: Any) -> str:
    """A front point's seeds (pareto.json's front_points[].seeds: its train.seed values), as the page lists them."""
    known = [s for s in value if s is not None and not pd.isna(s)] if isinstance(value, list) else []
    return ", ".join(f"{s:.0f}" if isinstance(s, (int, float)) else str(s) for s in known) or "—"


def _cell(column: str, value: Any) -> str:
    """A front table cell: lists of trials and seeds joined, numbers in their column's format."""
    if column == "trials":
        return _trials(value)
    if column == "seeds":
        return _seeds(value)
    return _fmt(value, TABLE_FORMATS.get(column, "{:.3f}"))


def _front_points(front: pd.DataFrame, summary: dict[str, Any]) -> dict[str, Any]:
    """The front trace's data: each point tagged with the trial standing for it, error bars for seed means. A seed
    mean's hover names the seeds' trials too: the search trial standing for its configuration is in no mean drawn."""
    means, e = from_seed_means(summary), emotion(summary)
    who = "%{customdata[0]} (search trial), seeds' trials %{customdata[5]}" if means else "%{customdata[0]}"
    out = {
        "x": front["leakage"].tolist(), "y": front[e].tolist(),
        "customdata": [[str(r.trial_id), _fmt(r.weight, "{:g}"), _fmt(r.n, "{:.0f}"), _fmt(getattr(r, f"{e}_ci95")),
                        _fmt(r.leakage_ci95), _trials(r.trials), _seeds(r.seeds)] for r in front.itertuples()],
        "hovertemplate": who + "<br>weight %{customdata[1]}, %{customdata[2]} seed(s) (%{customdata[6]})"
                         f"<br>leakage %{{x:.3f}} ± %{{customdata[4]}}<br>{e} %{{y:.3f}} ± %{{customdata[3]}}"
                         "<extra>%{fullData.name}</extra>",
    }
    if means:
        out["error_x"] = {"type": "data", "array": _bars(front["leakage_ci95"]), "visible": True, "color": "black"}
        out["error_y"] = {"type": "data", "array": _bars(front[f"{e}_ci95"]), "visible": True, "color": "black"}
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


def _trace_points(rows: pd.DataFrame, e: str) -> dict[str, Any]:
    """A method's trials, at (leakage, `e`: the emotion axis's column)."""
    return {
        "x": rows["leakage"].tolist(), "y": rows[e].tolist(),
        "customdata": [[str(r.trial_id), _fmt(r.weight, "{:g}"), _status(r)] for r in rows.itertuples()],
        "hovertemplate": "%{customdata[0]}<br>weight %{customdata[1]} (%{customdata[2]})"
                         f"<br>leakage %{{x:.3f}}<br>{e} %{{y:.3f}}<extra>%{{fullData.name}}</extra>",
    }


LAST_IN_LEGEND = 1001  # a legendrank past plotly's default (1000): listed after every trace of the default rank


def pareto_figure(points: pd.DataFrame, summary: dict[str, Any]) -> go.Figure:
    """Scatter of every placed trial (one trace per method), the front as its own trace. The multitask baseline's star
    and the paper target's diamond are drawn first, under the trials (plotly draws traces in order), and listed last
    (`legendrank`): drawn last, the star hid a trial at the baseline's values, as a method at a small weight is."""
    fig, e = go.Figure(), emotion(summary)
    base, target = summary.get("baseline"), target_point(summary)
    if drawable(base, summary):
        fig.add_trace(go.Scatter(
            uid="baseline", name="multitask baseline (mean)", mode="markers", x=[base["leakage"]], y=[base[e]],
            marker={"symbol": "star", "size": 18, "color": method_color("multitask"), "line": {"width": 1, "color": "black"}},
            legendrank=LAST_IN_LEGEND,
        ))
    if target is not None:
        fig.add_trace(go.Scatter(
            uid="paper-target", name=paper_label(summary), mode="markers+text", x=[target[0]], y=[target[1]],
            text=[paper_text()], textposition="top center",
            marker={"symbol": "diamond", "size": 12, "color": TARGET_COLOR, "line": {"width": 1, "color": "black"}},
            legendrank=LAST_IN_LEGEND + 1,
        ))
    for method in methods_in(points):
        rows = points[points["method"] == method]
        fig.add_trace(go.Scatter(
            uid=f"method-{method}", name=method, mode="markers", **_trace_points(rows, e),
            marker={"color": method_color(method), "size": 10, "line": {"width": 1.5, "color": method_color(method)},
                    "symbol": ["circle-open" if r else "x" if st else "square-open" if u else "circle"
                               for r, st, u in zip(rows["running"], rows["stopped"], rows["unvalidated"])]},
            legendgroup=method, showlegend=False,
        ))
        # its legend entry apart, a filled circle: plotly draws an entry with the trace's first point's symbol, so a
        # method whose trials were all stopped was listed as a cross, the sign of a stopped trial
        fig.add_trace(go.Scatter(uid=f"legend-{method}", name=method, mode="markers", x=[None], y=[None],
                                 marker={"color": method_color(method), "size": 10, "symbol": "circle"},
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
    if target is not None:
        fig.add_annotation(x=target[0], y=target[1], ax=base["leakage"], ay=base[e], xref="x", yref="y",
                           axref="x", ayref="y", showarrow=True, arrowhead=2, arrowwidth=1.5, text="")
    fig.update_layout(
        template="plotly_white", height=560, margin={"l": 70, "r": 20, "t": 50, "b": 60},
        title=f"{summary.get('sweep', '')}: {emotion_words(summary)} vs identity leakage (hollow circles: running)",
        xaxis={"title": X_LABEL, "range": leakage_range(points, summary)},
        # one point's axis ran to -0.75; a seed mean's error bar may reach below 0 and is drawn whole (`leakage_range`)
        yaxis={"title": y_label(summary), "rangemode": "normal" if from_seed_means(summary) else "nonnegative"},
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
                      xaxis={"title": HISTORY_X, "tickvals": _counts_ticks(history)},
                      yaxis={"title": "hypervolume", "rangemode": "nonnegative"},  # one step's ran to -1
                      font={"size": 14},
                      margin={"l": 70, "r": 20, "t": 50, "b": 60})
    return fig


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "—" if value is None or pd.isna(value) else pattern.format(value)


def front_table(summary: dict[str, Any]) -> str:
    """The front's points as a table: one row per trial, or per configuration with its seed count and spread, its
    search trial and the seeds' trials whose mean it is (the search trial alone read as one of the seeds)."""
    axes = results.summary_axes(summary)
    chosen = {"val": axes.chosen, "test": axes.measured}.get(summary.get("selected_on", "test"), ())  # pareto.json
    # before it said: chosen on test
    means, shown = from_seed_means(summary), front_columns(summary)
    columns = [*shown[:2], "trials", *shown[2:]] if means else shown
    headers = {**TABLE_HEADERS, "trial_id": SEARCH_TRIAL} if means else TABLE_HEADERS
    head = "".join(f"<th>{headers.get(c, c)}{' (chosen on)' if c in chosen else ''}</th>" for c in columns)
    body = "".join(
        f'<tr data-trial-id="{html.escape(str(r["trial_id"]))}">'
        + "".join(f"<td>{html.escape(_cell(c, r[c]))}</td>" for c in columns)
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
    points, e = plotted(trials, summary), emotion(summary)
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
         e: getattr(r, e), "leakage": r.leakage, "seed": r.seed, "role": r.role or results.SEARCH, "config_id": r.config_id,
         "epochs": r.epochs, "probed_epoch": r.probed_epoch, "running": bool(r.running), "stopped": bool(r.stopped),
         "unvalidated": bool(r.unvalidated), "on_front": bool(r.on_front)}
        for r in points.itertuples()
    ])}
    blob = json.dumps(data).replace("<", "\\u003c")  # no "</script>" or "<!--" can end or bend the data block
    finished = counts["completed"] + counts["stopped"]
    wait = f'<p class="waiting">{html.escape(waiting(summary))}</p>' if not finished else ""
    note_html = "".join(f'<p class="note">{html.escape(said)}</p>'
                        for said in (note, results.unvalidated_said(summary.get("unvalidated") or [],
                                                                 results.summary_axes(summary))) if said)
    poll = f"<script>{POLL_JS % (json.dumps(summary.get('updated_at')), int(refresh_s * 1000))}</script>" if refresh_s else ""
    stopped = f" · {counts['stopped']} stopped at a rung" if counts["stopped"] else ""  # "completed" read as trained
    waiting_for = counts["unplaced"] - counts["unplaced_finished"]
    unplaced = f" · {waiting_for} without both metrics yet" if waiting_for else ""
    unplaced += f" · {counts['unplaced_finished']} finished without both" if counts["unplaced_finished"] else ""
    unplaced += f" · {counts['lost']} lost to a killed driver (drawn again)" if counts["lost"] else ""
    last = last_result(trials)
    last_shown = f" (last result {utc(last)})" if last is not None else ""
    n_front = len(summary.get("front") or [])
    front_note = (f"front: {counted(n_front, 'configuration')}, seed means ({html.escape(summary.get('spread') or '')})"
                  if from_seed_means(summary) else f"front: {counted(n_front, 'trial')}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>avdis · {sweep} · Pareto front</title>
<style>{STYLE}</style><script>{TAG_JS}</script></head>
<body>
<h1>avdis sweep <code>{sweep}</code>: {emotion_words(summary)} vs identity leakage</h1>
<p class="meta" id="counts">{counted(counts['trials'], 'trial')} · {counts['completed']} completed{stopped} · {counts['running']} running{last_shown} · {counts['errors']} failed{unplaced}</p>
<p class="meta">hypervolume <b id="hypervolume">{_shown(summary.get('hypervolume'), 4)}</b>
 (reference: {e} = chance {_shown((summary.get('reference') or {}).get(e), 3)}, leakage = 1) ·
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
