"""The Pareto report: pareto.json / pareto.html / pareto.png from a hand-made trials table.

The table's front and hypervolume are worked out by hand below, so a wrong front,
a wrong reference point or a running trial leaking into the front all fail here.
"""

from __future__ import annotations

import html
import json
import math
import pickle
import re
import struct
import threading
import time
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conftest import s3_denied, shutdown_ray

from avdis import results, storage
from avdis.report import files, image, view, webpage
from avdis.numbers import json_safe
from avdis.report.callback import ReportCallback
from avdis.results import ResultsError, pareto

CHANCE = 0.25
# trial_id, method, weight, emotion_acc, leakage, order (None: running), seed
TRIALS = [
    ("t1", "multitask", None, 0.70, 0.60, 1, 0),
    ("t2", "multitask", None, 0.66, 0.64, 2, 1),
    ("t3", "adversarial", 0.5, 0.68, 0.30, 3, 0),
    ("t4", "orthogonal", 3.0, 0.60, 0.10, 4, 0),
    ("t5", "confusion", 1.0, 0.72, 0.50, 5, 0),
    ("t6", "single_task", None, 0.65, 0.70, 6, 0),
    ("t7", "nullspace", 8.0, 0.50, 0.05, 7, 0),
    ("t8", "adversarial", 2.0, 0.55, 0.40, 8, 0),
    ("t9", "confusion", 0.2, 0.80, 0.02, None, 0),  # running: would dominate everything, must stay off the front
    ("t10", "orthogonal", 9.0, None, None, None, 0),  # failed before any result
]
FRONT = {"t3", "t4", "t5", "t7"}
# Area dominated inside [chance, 1] x [0, 1], by leakage intervals of the front
# t7 (0.05, 0.50), t4 (0.10, 0.60), t3 (0.30, 0.68), t5 (0.50, 0.72):
HYPERVOLUME = 0.05 * 0.25 + 0.20 * 0.35 + 0.20 * 0.43 + 0.50 * 0.47  # = 0.4035
FIRST_HYPERVOLUME = (0.70 - CHANCE) * (1 - 0.60)  # t1 alone


def rows(trials=TRIALS, sweep: str = "demo") -> list[dict]:
    out = []
    for tid, method, weight, acc, leak, order, seed in trials:
        status = "ERROR" if acc is None else ("RUNNING" if order is None else "TERMINATED")
        out.append({
            "trial_id": tid, "sweep": sweep, "method": method, "weight": weight, "status": status,
            "emotion_acc": acc, "emotion_uar": None if acc is None else acc - 0.02, "leakage": leak,
            "emotion_chance": CHANCE, "epochs": 4, "order": order, "seed": seed, "updated_at": time.time(),
        })
    return out


def png_info(data: bytes) -> tuple[int, int, float]:
    """(width, height, dpi) read from a PNG's IHDR and pHYs chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos = data.find(b"pHYs")
    dpi = struct.unpack(">I", data[pos + 4:pos + 8])[0] * 0.0254 if pos > 0 else 0.0
    return width, height, dpi


def data_blob(page: str) -> dict:
    start = page.index('<script id="avdis-data" type="application/json">') + len('<script id="avdis-data" type="application/json">')
    return json.loads(page[start:page.index("</script>", start)])


@pytest.fixture
def sweep(tmp_path: Path) -> str:
    url = str(tmp_path / "sweeps" / "demo")
    results.record(url, rows(), "demo")  # as the sweep's recorder writes it: trials.parquet and pareto.json
    return url


def test_front_and_hypervolume_match_hand_computed(sweep: str) -> None:
    written = files.write_report(sweep).written
    assert set(written) == {"pareto.json", "pareto.html", "pareto.png"}
    assert all(Path(u).is_file() for u in written.values())
    summary = json.loads(Path(written["pareto.json"]).read_text())
    assert set(summary["front"]) == FRONT
    assert summary["hypervolume"] == pytest.approx(HYPERVOLUME, abs=1e-12)
    history = summary["hypervolume_history"]
    assert [h["trial_id"] for h in history] == [f"t{i}" for i in range(1, 9)]
    assert history[0]["hypervolume"] == pytest.approx(FIRST_HYPERVOLUME)
    assert history[-1]["hypervolume"] == pytest.approx(HYPERVOLUME)
    assert (summary["n_trials"], summary["n_completed"]) == (10, 8)
    assert summary["baseline"]["emotion_acc"] == pytest.approx(0.68)
    assert summary["baseline"]["leakage"] == pytest.approx(0.62)


def test_a_trial_at_chance_adds_no_hypervolume() -> None:
    """A point's accuracy is rounded to 12 places (ties must tie), the box's corner was not: a trial at chance, 5/18
    of 18 test clips, rounded up past it and gave the first step of a sweep's hypervolume_history 1.6e-13, not 0."""
    from avdis.results import pareto

    chance = 5 / 18
    assert pareto.hypervolume(np.array([5 / 18]), np.array([0.3]), chance) == 0.0
    assert pareto.hypervolume(np.array([5 / 18, 7 / 18]), np.array([0.3, 0.4]), chance) == pytest.approx(
        (7 / 18 - chance) * 0.6, abs=1e-12)


def test_baseline_is_the_multitask_trials_trained_longest(tmp_path: Path) -> None:
    early = rows() + [{**rows()[0], "trial_id": "t11", "emotion_acc": 0.40, "leakage": 0.90, "epochs": 1, "order": 9}]
    summary = results.summarize(results.to_table(early).to_pandas(), "demo")
    assert summary["baseline"]["trials"] == ["t1", "t2"]  # t11 was stopped after one epoch
    assert summary["baseline"]["emotion_acc"] == pytest.approx(0.68)


def test_disentanglement_is_measured_against_that_baseline_too(tmp_path: Path) -> None:
    """Not against a multitask trial stopped early (it leaks less because it learned less) or still running."""
    stopped = {**rows()[0], "trial_id": "t11", "leakage": 0.30, "epochs": 1, "order": 9}
    running = {**rows()[0], "trial_id": "t12", "leakage": 0.10, "epochs": 2, "order": None, "status": "RUNNING"}
    table = results.write_trials(str(tmp_path), rows() + [stopped, running]).set_index("trial_id")["disentanglement"]
    assert table["t3"] == pytest.approx(1 - 0.30 / 0.60)  # t1 alone is seed 0's baseline
    assert table["t1"] == pytest.approx(0.0)


def test_no_baseline_where_every_multitask_trial_was_stopped_before_the_others_ended(tmp_path: Path) -> None:
    """MO-ASHA stopped both multitask trials at epoch 2 (leakage 0.30 then) and the methods trained 4 epochs. The
    epoch-2 trials were the baseline: adversarial at 0.30 read 0% disentangled and confusion -67%, against a model
    that had learned less, and the page drew that star. Without a full-length multitask trial there is no baseline."""
    stopped = [{**r, "epochs": 2, "leakage": 0.30, "status": "STOPPED"} if r["method"] == "multitask" else r
               for r in rows()]
    table = results.write_trials(str(tmp_path), stopped)
    assert table["disentanglement"].isna().all()
    assert results.summarize(table, "demo")["baseline"] is None
    full = results.write_trials(str(tmp_path), rows()).set_index("trial_id")["disentanglement"]
    assert full["t3"] == pytest.approx(1 - 0.30 / 0.60)  # with full-length multitask trials, as before


def test_a_trial_stopped_at_a_rung_is_on_no_front_before_any_trial_trained_all_epochs() -> None:
    """Early in a sweep MO-ASHA had stopped t3 and the multitask t1 at epoch 2 while the others still trained: the
    longest finished trials were those two, so their epoch-2 values were the front (hypervolume 0.309), t1 the
    baseline, and the live page, pareto.json and the gauges showed them until a trial first ran all its epochs."""
    stopped = {"t1", "t3"}
    early = [{**r, "epochs": 2, "status": "STOPPED"} if r["trial_id"] in stopped else
             {**r, "order": None, "status": "RUNNING", "epochs": 3} if r["status"] == "TERMINATED" else r
             for r in rows()]
    summary = results.summarize(results.to_table(early).to_pandas(), "demo")
    assert (summary["front"], summary["hypervolume"], summary["baseline"]) == ([], 0.0, None)
    assert (summary["n_completed"], summary["n_stopped"]) == (0, 2)  # stopped is not completed: fewer epochs
    older = {k: v for k, v in summary.items() if k != "n_stopped"} | {"n_completed": 2}  # counted them as completed
    for shown in (summary, older):
        table = webpage.front_table(shown)
        assert "no trial has trained all its epochs yet" in table and "waiting for the first result" not in table
        trials = results.to_table(early).to_pandas()
        notes = [a.text for a in webpage.pareto_figure(view.plotted(trials, shown), shown).layout.annotations]
        assert view.WAITING not in notes  # two trials are drawn, as crosses


def test_finished_trials_without_leakage_are_not_said_to_be_untrained(tmp_path: Path) -> None:
    """Every trial trained all its epochs but reported no leakage (a probe whose chance was 1 gives none): the front's
    table and pareto.png said no trial had trained all its epochs yet, the header that 3 were without both metrics
    'yet', as if they would come."""
    url = str(tmp_path / "demo")
    results.write_trials(url, [{**r, "leakage": None} for r in rows() if r["status"] == "TERMINATED"][:3])
    written = files.write_report(url).written
    page = Path(written["pareto.html"]).read_text()
    assert view.UNTRAINED not in page and "without both metrics yet" not in page
    assert view.UNMEASURED in page and "3 finished without both" in page
    trials = results.read_trials(url)
    summary = results.read_pareto(url)
    texts = [t.get_text().replace("\n", " ") for t in image.png_figure(trials, summary).axes[0].texts]
    assert view.UNMEASURED in texts


def test_pareto_png_says_why_its_front_is_empty() -> None:
    """pareto.png drew the trials and no front line with no word of why, where the page's front table said it: every
    finished trial stopped at a rung (none trained all its epochs), or a confirmed front whose seeds still run."""
    early = [{**r, "epochs": 2, "status": "STOPPED"} if r["trial_id"] in ("t1", "t3") else
             {**r, "order": None, "status": "RUNNING", "epochs": 3} if r["status"] == "TERMINATED" else r
             for r in rows()]
    confirming = [dict(r, status="RUNNING", order=None) if r["trial_id"] in ("a2", "b2") else r
                  for r in confirmed_rows()]
    for table, why in ((early, view.UNTRAINED), (confirming, view.CONFIRMING)):
        trials = results.to_table(table).to_pandas()
        summary = results.summarize(trials, "demo")
        assert summary["front"] == [] and view.finished(summary)
        texts = [t.get_text().replace("\n", " ") for t in image.png_figure(trials, summary).axes[0].texts]
        assert why in texts and view.WAITING not in texts
        assert why in webpage.front_table(summary)
    trials = results.to_table(rows()).to_pandas()  # a front drawn: no word in its place
    figure = image.png_figure(trials, results.summarize(trials, "demo"))
    texts = [t.get_text().replace("\n", " ") for t in figure.axes[0].texts]
    assert view.UNTRAINED not in texts and view.CONFIRMING not in texts


@pytest.mark.parametrize("failed", [0, 10, 1000])
def test_pareto_png_says_a_sweep_without_results_within_its_axes(failed: int) -> None:
    """A sweep whose every trial failed: pareto.png said 'no trial finished: 10 failed (each row of trials.parquet
    holds its error)' on one line, wider than either axes: over the y axis's label and ticks on the left, past the
    figure's edge on the right (cut off from 100 failures on)."""
    table = [{**r, "trial_id": f"t{i}", "status": "ERROR", "error": "boom", "order": None}
             for i, r in enumerate((rows() * 100)[:failed])]
    trials = results.to_table(table).to_pandas() if table else results.empty_trials()
    summary = results.summarize(trials, "demo")
    figure = image.png_figure(trials, summary)
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        (text,) = [t for t in ax.texts if t.get_text().replace("\n", " ") == view.waiting(summary)]
        box, inside = text.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, (text.get_text(), box, inside)


def test_pareto_json_and_the_page_count_completed_and_stopped_trials_alike() -> None:
    """pareto.json's n_completed counted the trials MO-ASHA stopped at a rung (8 here) while the page's header said
    "6 completed · 2 stopped at a rung": the same sweep read 8 or 6 completed trials depending on where one looked."""
    early = [{**r, "epochs": 2, "status": "STOPPED"} if r["trial_id"] in ("t1", "t3") else r for r in rows()]
    trials = results.to_table(early).to_pandas()
    summary = results.summarize(trials, "demo")
    counts = data_blob(webpage.render_html(trials, summary))["counts"]
    assert (summary["n_completed"], summary["n_stopped"]) == (counts["completed"], counts["stopped"]) == (6, 2)
    assert (summary["n_running"], summary["n_failed"], summary["n_trials"]) == (counts["running"], counts["errors"],
                                                                                counts["trials"]) == (1, 1, 10)


def test_a_trial_stopped_at_a_rung_is_drawn_apart_and_the_legend_says_why() -> None:
    """t11, stopped by MO-ASHA at epoch 2, sits beyond the front (less leakage, as much accuracy: it learned less).
    It was drawn filled like a finished trial, on both pages, and only its hover said STOPPED."""
    stopped = {**rows()[2], "trial_id": "t11", "emotion_acc": 0.75, "leakage": 0.04, "epochs": 2, "order": 9,
               "status": "STOPPED"}
    trials = results.to_table([*rows(), stopped]).to_pandas()
    summary = results.summarize(trials, "demo")
    assert set(summary["front"]) == FRONT
    figure = webpage.pareto_figure(view.plotted(trials, summary), summary)
    traces = {t.uid: t for t in figure.data}
    adversarial = traces["method-adversarial"]
    symbols = dict(zip((c[0] for c in adversarial.customdata), adversarial.marker.symbol))
    assert symbols == {"t3": "circle", "t8": "circle", "t11": "x"}
    assert traces["stopped"].name == view.STOPPED_LABEL == "stopped at a rung (on no front)"
    hover = next(c[2] for c in adversarial.customdata if c[0] == "t11")
    assert hover == "STOPPED at epoch 2: on no front"
    points = {p["trial_id"]: p for p in data_blob(webpage.render_html(trials, summary))["points"]}
    assert (points["t11"]["stopped"], points["t11"]["on_front"], points["t3"]["stopped"]) == (True, False, False)
    finished = trials.assign(status=trials["status"].replace("STOPPED", "TERMINATED"))
    assert image.render_png(trials, summary) != image.render_png(finished, summary)  # a cross, and its legend entry
    assert "stopped" not in {t.uid for t in webpage.pareto_figure(view.plotted(finished, summary), summary).data}
    # a method whose trials were all stopped is listed with a filled circle: plotly drew its entry as a cross
    all_stopped = trials.assign(status=trials["status"].where(trials["method"] != "adversarial", "STOPPED"))
    figure = webpage.pareto_figure(view.plotted(all_stopped, summary), summary)
    listed = {t.name: t.marker.symbol for t in figure.data if t.showlegend is not False and t.uid != "stopped"}
    assert listed["adversarial"] == "circle"


def test_the_header_counts_one_trial_and_one_front_point_in_the_singular() -> None:
    """A sweep of one trial, or a front of one point, was '1 trials' and 'front: 1 trials' (or '1 configurations'),
    found by hU3."""
    one = results.to_table(rows(TRIALS[:1])).to_pandas()
    page = webpage.render_html(one, results.summarize(one, "demo"))
    assert "1 trial · 1 completed" in page and "front: 1 trial · " in page
    two = results.to_table(rows(TRIALS[:2])).to_pandas()
    assert "2 trials · 2 completed" in webpage.render_html(two, results.summarize(two, "demo"))


def test_the_header_and_the_hypervolume_axis_say_which_trials_were_stopped_early() -> None:
    """Under MO-ASHA most trials stop at a rung: the header counted t1 and t3, stopped at epoch 2, among "8
    completed", and the hypervolume chart's axis said "completed trials" while it stepped at every stopped one."""
    early = [{**r, "epochs": 2, "status": "STOPPED"} if r["trial_id"] in ("t1", "t3") else r for r in rows()]
    trials = results.to_table(early).to_pandas()
    summary = results.summarize(trials, "demo")
    page = webpage.render_html(trials, summary)
    assert "10 trials · 6 completed · 2 stopped at a rung · 1 running" in page
    assert (data_blob(page)["counts"]["completed"], data_blob(page)["counts"]["stopped"]) == (6, 2)
    assert len(summary["hypervolume_history"]) == 8  # a step at each finished trial, stopped ones too
    axis = webpage.hypervolume_figure(summary).layout.xaxis.title.text
    assert axis == view.HISTORY_X == "finished trials (stopped early too)"


def test_the_hypervolume_history_counts_completed_and_stopped_trials_apart(tmp_path: Path) -> None:
    """A history step's `completed` counted the trials stopped at a rung too (t1 and t3 here: 8 at the last step)
    while pareto.json's n_completed (6) does not: Grafana and readers of pareto.json read 8 completed trials. Each
    step counts them apart, the pages step at their sum (the axis says finished trials), and a pareto.json written
    before `stopped` (its `completed` counting both) still draws at the same places."""
    early = [{**r, "epochs": 2, "status": "STOPPED"} if r["trial_id"] in ("t1", "t3") else r for r in rows()]
    trials = results.to_table(early).to_pandas()
    summary = results.summarize(trials, "demo")
    history = summary["hypervolume_history"]
    assert [(h["trial_id"], h["completed"], h["stopped"]) for h in history] == [
        ("t1", 0, 1), ("t2", 1, 1), ("t3", 1, 2), ("t4", 2, 2), ("t5", 3, 2), ("t6", 4, 2), ("t7", 5, 2), ("t8", 6, 2)]
    assert (history[-1]["completed"], history[-1]["stopped"]) == (summary["n_completed"], summary["n_stopped"])
    older = {**summary, "hypervolume_history": [{"trial_id": h["trial_id"], "completed": i + 1,
                                                 "hypervolume": h["hypervolume"]} for i, h in enumerate(history)]}
    for shown in (summary, older):
        results.write_pareto(str(tmp_path), shown)
        shown = results.read_pareto(str(tmp_path))  # as the pages read it
        assert list(webpage.hypervolume_figure(shown).data[0].x) == list(range(1, 9))
        png = image.png_figure(trials, shown).axes[1].lines[0].get_xdata()
        assert list(png) == list(range(1, 9))
    hover = webpage.hypervolume_figure(summary).data[0].customdata[-1]
    assert list(hover) == ["t8", " (6 completed, 2 stopped at a rung)"]
    assert list(webpage.hypervolume_figure(older).data[0].customdata[-1]) == ["t8", ""]  # its count was of both


def test_the_pages_hypervolume_axis_counts_trials_in_whole_numbers(sweep: str) -> None:
    """Plotly's own ticks, at the page's width, marked 1.5 and 2.5 finished trials on a sweep of three; pareto.png's
    marked 0.945, 0.960, ... 1.050 after the first (matplotlib's integer locator, on the span of one point)."""
    summary = results.read_pareto(sweep)
    trials = results.read_trials(sweep)
    for n in (1, 3, len(summary["hypervolume_history"])):
        history = summary["hypervolume_history"][:n]
        ticks = webpage.hypervolume_figure({**summary, "hypervolume_history": history}).layout.xaxis.tickvals
        assert set(range(1, n + 1)) <= set(ticks) and all(float(t).is_integer() for t in ticks)
        ax = image.png_figure(trials, {**summary, "hypervolume_history": history}).axes[1]
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if low <= t <= high]
        assert set(range(1, n + 1)) <= set(shown) and all(float(t).is_integer() for t in shown), shown


def test_a_running_trials_values_are_shown_with_the_epoch_they_are_of(tmp_path: Path) -> None:
    """A running trial probes only at MO-ASHA's rungs and its last epoch, and trains on between them: t9's row said
    epochs 4 while its values were its epoch-2 probe's, and trials.parquet, the pages and Grafana's table paired them
    with epoch 4. `probed_epoch` says which epoch they are of, and each view shows it. A table of an earlier avdis
    (no such column) still reads: a finished trial's values are of its last epoch, a running one's epoch unknown."""
    url = str(tmp_path / "demo")
    results.record(url, [{**r, "probed_epoch": 2} if r["trial_id"] == "t9" else r for r in rows()], "demo")
    trials = results.read_trials(url)
    summary = results.summarize(trials, "demo")
    unknown = pytest.approx(np.nan, nan_ok=True)
    assert trials.set_index("trial_id")["probed_epoch"].to_dict() == {**{f"t{i}": 4 for i in range(1, 9)}, "t9": 2,
                                                                      "t10": unknown}
    confusion = next(t for t in webpage.pareto_figure(view.plotted(trials, summary), summary).data
                     if t.uid == "method-confusion")
    hover = {c[0]: c[2] for c in confusion.customdata}
    assert hover == {"t5": "TERMINATED", "t9": "RUNNING: values of epoch 2, trained 4"}
    points = {p["trial_id"]: p for p in data_blob(webpage.render_html(trials, summary))["points"]}
    assert (points["t9"]["probed_epoch"], points["t9"]["epochs"], points["t1"]["probed_epoch"]) == (2, 4, 4)
    texts = [t.get_text() for t in image.png_figure(trials, summary).axes[0].texts]
    assert "epoch 2" in texts and "hollow circles: 1 running, at the epoch beside each (its last probe)" in texts

    older = results.to_table(rows()).to_pandas().drop(columns="probed_epoch")
    older.to_parquet(Path(url) / results.TRIALS)
    trials = results.read_trials(url)
    assert trials.set_index("trial_id")["probed_epoch"].to_dict() == {**{f"t{i}": 4 for i in range(1, 9)},
                                                                      "t9": unknown, "t10": unknown}
    confusion = next(t for t in webpage.pareto_figure(view.plotted(trials, summary), summary).data
                     if t.uid == "method-confusion")
    assert {c[0]: c[2] for c in confusion.customdata}["t9"] == "RUNNING"  # no epoch claimed
    texts = [t.get_text() for t in image.png_figure(trials, summary).axes[0].texts]
    assert "hollow circles: 1 running" in texts and not any(t.startswith("epoch ") for t in texts)
    assert Path(files.write_pages(url)["pareto.png"]).stat().st_size > 0


def test_disentanglement_compares_a_trial_with_the_multitask_trials_of_its_own_split(tmp_path: Path) -> None:
    """A sampled data.split.fold: a trial on fold 1 was measured against fold 3's multitask trial, whose leakage is
    another probe's on other speakers (and came out at -0.5)."""
    multitask, adversarial = rows()[0], rows()[2]

    def on(row: dict, fold: int, tid: str) -> dict:
        return {**row, "trial_id": tid, "split_id": f"speaker_disjoint/fold{fold}of4"}

    table = results.write_trials(str(tmp_path), [on(multitask, 3, "m3"), on(adversarial, 1, "a1"),
                                                 on(adversarial, 3, "a3")]).set_index("trial_id")["disentanglement"]
    assert np.isnan(table["a1"])  # no multitask trial on its fold
    assert table["a3"] == pytest.approx(1 - 0.30 / 0.60)


def test_png_is_a_paper_figure(sweep: str) -> None:
    trials = results.read_trials(sweep)
    png = image.render_png(trials, results.summarize(trials, "demo"))
    width, height, dpi = png_info(png)
    assert width >= 1500 and 600 <= height < width
    assert dpi >= 150
    assert len(png) > 50_000  # points, lines, text: not a blank canvas


def test_the_paper_targets_label_says_what_it_compares_with(sweep: str) -> None:
    """The diamond's words read 'paper: -13% leakage' (a leakage of -13%, or 13 points less?) and its legend '13%
    disentanglement', a word of this project: the point is the multitask baseline's accuracy at 13% less of its
    leakage, and both now say so, on the page and in the PNG."""
    files.write_report(sweep)
    page = Path(sweep, "pareto.html").read_text()
    summary = json.loads(Path(sweep, "pareto.json").read_text())
    figure = webpage.pareto_figure(view.plotted(results.read_trials(sweep), summary), summary)
    target = next(t for t in figure.data if t.uid == "paper-target")
    assert target.name == "paper: 13% less leakage than multitask, equal accuracy" and target.name in page
    assert list(target.text) == ["paper: 13% less leakage"]
    assert target.x[0] == pytest.approx(0.87 * summary["baseline"]["leakage"])
    assert "-13%" not in page and "13% disentanglement" not in page
    ax = image.png_figure(results.read_trials(sweep), summary).axes[0]
    assert [t.get_text() for t in ax.texts if "paper" in t.get_text()] == ["paper: 13% less leakage"]
    assert "paper: 13% less leakage than multitask, equal accuracy" in ax.get_legend_handles_labels()[1]


def test_a_trial_at_the_baselines_values_is_drawn_over_its_star(tmp_path: Path) -> None:
    """An orthogonal trial at a small weight sits where the multitask trials' mean does: the baseline's star (and the
    paper target's diamond) were drawn over the trials, on the page and in the PNG, and hid it. They are drawn under
    them now (the PNG's artists in zorder, the page's traces in order) and still listed after the methods."""
    trials = [("m1", "multitask", None, 0.70, 0.60, 1, 0), ("m2", "multitask", None, 0.66, 0.64, 2, 1),
              ("o1", "orthogonal", 0.1, 0.68, 0.62, 3, 0), ("o2", "orthogonal", 0.2, 0.68, 0.5394, 4, 0)]
    url = str(tmp_path / "demo")
    results.record(url, rows(trials), "demo")
    table = results.read_trials(url)
    summary = results.summarize(table, "demo")
    assert (summary["baseline"]["leakage"], summary["baseline"]["emotion_acc"]) == pytest.approx((0.62, 0.68))

    ax = image.png_figure(table, summary).axes[0]
    drawn = sorted(ax.get_children(), key=lambda artist: artist.get_zorder())  # as Axes.draw orders them: stably
    label = {a: a.get_label() for a in ax.collections}
    star = next(a for a in ax.collections if label[a] == "multitask baseline (mean)")
    diamond = next(a for a in ax.collections if label[a].startswith("paper: "))
    at = {trial: next(a for a in ax.collections if a not in (star, diamond) and any(
        np.allclose(xy, point) for xy in a.get_offsets())) for trial, point in (("o1", (0.62, 0.68)),
                                                                              ("o2", (0.5394, 0.68)))}
    for trial in at.values():
        assert drawn.index(trial) > drawn.index(star) and drawn.index(trial) > drawn.index(diamond)
    labels = ax.get_legend_handles_labels()[1]
    assert labels.index("orthogonal") < labels.index("multitask baseline (mean)") < labels.index(diamond.get_label())

    figure = webpage.pareto_figure(view.plotted(table, summary), summary)
    order = [trace.uid for trace in figure.data]
    assert order.index("baseline") < order.index("method-orthogonal")
    assert order.index("paper-target") < order.index("method-orthogonal")
    rank = {trace.uid: trace.legendrank or 1000 for trace in figure.data}  # plotly's default rank: 1000
    assert rank["legend-orthogonal"] < rank["baseline"] < rank["paper-target"]


def test_html_is_self_contained_with_every_trial(sweep: str) -> None:
    from plotly.offline import get_plotlyjs

    files.write_report(sweep)
    page = Path(sweep, "pareto.html").read_text()
    assert not re.search(r"""<(script|link|img)[^>]*(src|href)\s*=\s*["']?(https?:)?//""", page, re.I), "no remote resources"
    assert get_plotlyjs()[-2000:] in page, "plotly.js must be inlined, not loaded from a CDN"
    assert "fetch('pareto.json'" not in page, "the file report must not poll"

    blob = data_blob(page)
    points = {p["trial_id"]: p for p in blob["points"]}
    assert set(points) == {f"t{i}" for i in range(1, 10)}  # t10 has no metrics: counted, not placed
    assert {t for t, p in points.items() if p["on_front"]} == FRONT
    assert [t for t, p in points.items() if p["running"]] == ["t9"]
    assert blob["counts"] == {"trials": 10, "completed": 8, "stopped": 0, "running": 1, "errors": 1, "lost": 0,
                              "unplaced": 0, "unplaced_finished": 0}  # t10: as failed

    assert "demo" in page and "0.4035" in page and "waiting for the first result" not in page
    table = page[page.index('<table id="front-table">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr data-trial-id=") == len(FRONT)
    t3 = table[table.index('<tr data-trial-id="t3">'):]
    # disentanglement of t3 = 1 - 0.30 / leakage(multitask, seed 0) = 1 - 0.30 / 0.60
    assert "<td>0.500</td>" in t3[:t3.index("</tr>")]


def test_the_front_table_scrolls_in_its_own_box(sweep: str) -> None:
    """A confirmed front's table has 14 columns, about 1,400 px: the whole page scrolled sideways in a window narrower
    than that (1,386 px of 1,100 in Chromium), plots and header with it."""
    page = webpage.render_html(results.read_trials(sweep), results.read_pareto(sweep))
    assert '<div class="scroll"><table id="front-table">' in page and ".scroll { overflow-x: auto; }" in page


def test_the_front_table_marks_the_columns_the_front_was_chosen_on(sweep: str) -> None:
    """A sweep's front is chosen on its validation numbers; a table recorded before them was chosen on test, and
    its page must not say otherwise (its val columns are empty)."""
    summary = results.summarize(results.read_trials(sweep), "demo")
    assert summary["selected_on"] == "test"  # these rows have no validation numbers
    old = webpage.front_table(summary)
    assert "<th>emotion_acc (chosen on)</th>" in old and "<th>val emotion_acc</th>" in old
    new = webpage.front_table({**summary, "selected_on": "val"})
    assert "<th>val emotion_acc (chosen on)</th>" in new and "<th>emotion_acc</th>" in new


def test_a_sweep_with_no_finished_trial_is_not_said_to_choose_on_test() -> None:
    """Before a trial finished (every sweep's first minutes) and where every trial failed, pareto.json said
    selected_on "test" and the page's front table marked the test columns as those the front is chosen on, of a
    sweep whose trials carry validation numbers and that chooses on them."""
    starting = [{**r, "status": "RUNNING", "order": None, "val_emotion_acc": 0.6, "val_leakage": 0.4} for r in rows()]
    failed = [{**r, "status": "ERROR", "error": "boom"} for r in starting]
    for table in (starting, failed):
        summary = results.summarize(results.to_table(table).to_pandas(), "demo")
        assert (summary["selected_on"], summary["front"]) == ("val", [])
        assert "<th>val emotion_acc (chosen on)</th>" in webpage.front_table(summary)


def test_a_trial_without_validation_numbers_is_named_and_left_off_a_front_chosen_on_the_others(
        tmp_path: Path, capsys) -> None:
    """A table holding rows of an avdis before validation selection beside today's (put together by hand: no sweep
    records one, its recorder ends a trial with non-finite validation numbers in ERROR): one row without
    val_emotion_acc or val_leakage chose the whole front on test numbers, t3 (best on test only) on it. Now the front
    is chosen on the others' validation numbers, and the rows without are named in pareto.json, on the page and in
    the report's note, and are still steps of the history."""
    from avdis.cli import main

    val = {"t1": (0.70, 0.60), "t2": (0.66, 0.64), "t3": (0.50, 0.90), "t4": (0.60, 0.10), "t5": (0.72, 0.50),
           "t6": (0.65, 0.70), "t7": (0.50, 0.05)}  # t8 and the running t9 have none; t3 looks worse on val
    table = [{**r, "val_emotion_acc": val.get(r["trial_id"], (None,))[0],
              "val_leakage": val.get(r["trial_id"], (None, None))[1]} for r in rows()]
    url = str(tmp_path / "demo")
    results.record(url, table, "demo")
    summary = results.read_pareto(url)
    assert summary["selected_on"] == "val" and set(summary["front"]) == {"t4", "t5", "t7"}
    assert summary["unvalidated"] == ["t8"]
    assert [h["trial_id"] for h in summary["hypervolume_history"]] == [f"t{i}" for i in range(1, 9)]
    trials = results.read_trials(url)
    assert set(results.search_front(trials)["trial_id"]) == set(summary["front"])  # what confirm_seeds re-trains
    assert main(["report", url]) == 0
    said = results.unvalidated_said(["t8"])
    assert said.startswith("1 finished trial has no validation numbers") and said.endswith(": t8")
    assert f"avdis report: note: {said}" in capsys.readouterr().err
    assert html.escape(said) in Path(url, "pareto.html").read_text()

    none = [{**r, "val_emotion_acc": None, "val_leakage": None} for r in table]  # a table wholly of before: on test
    summary = results.summarize(results.to_table(none).to_pandas(), "demo")
    assert summary["selected_on"] == "test" and set(summary["front"]) == FRONT and summary["unvalidated"] == []

    only_old_full = [{**r, "epochs": 2, "status": "STOPPED"} if r["trial_id"] in val else r for r in table]
    summary = results.summarize(results.to_table(only_old_full).to_pandas(), "demo")  # no full-length trial has val
    assert summary["front"] == [] and view.no_front(summary) == view.UNVALIDATED


def test_a_trial_stopped_at_a_rung_without_validation_numbers_is_not_named_as_kept_off_for_want_of_them(
        tmp_path: Path, capsys) -> None:
    """t6 was stopped at a rung (MO-ASHA) and has no validation numbers: it is on no front for its fewer epochs, so
    it is not one the front was chosen without. Named with t8, `avdis report`'s note and pareto.json said it was kept
    off the front for want of validation numbers."""
    from avdis.cli import main

    table = [{**r, "val_emotion_acc": None if r["trial_id"] in ("t6", "t8") else r["emotion_acc"],
              "val_leakage": None if r["trial_id"] in ("t6", "t8") else r["leakage"],
              **({"status": "STOPPED", "epochs": 2} if r["trial_id"] == "t6" else {})} for r in rows()]
    url = str(tmp_path / "demo")
    results.record(url, table, "demo")
    assert results.unvalidated(results.read_trials(url)) == ["t8"]
    assert results.read_pareto(url)["unvalidated"] == ["t8"]
    assert main(["report", url]) == 0
    assert f"note: {results.unvalidated_said(['t8'])}" in capsys.readouterr().err


def test_a_trial_kept_off_the_front_for_want_of_validation_numbers_is_drawn_apart_and_the_legend_says_why() -> None:
    """t8 has no validation numbers (a row of an avdis before validation selection beside today's): the front is
    chosen without it, but pareto.png and the page drew it filled like any finished trial the front passed over. Now it
    is a hollow square, with a legend entry saying why; a pareto.json of before `unvalidated` flags none."""
    from matplotlib.markers import MarkerStyle

    table = [{**r, "val_emotion_acc": None if r["trial_id"] == "t8" else r["emotion_acc"],
              "val_leakage": None if r["trial_id"] == "t8" else r["leakage"]} for r in rows()]
    trials = results.to_table(table).to_pandas()
    summary = results.summarize(trials, "demo")
    assert summary["unvalidated"] == ["t8"] and set(summary["front"]) == FRONT - {"t8"}
    figure = image.png_figure(trials, summary)
    assert view.UNVALIDATED_LABEL in [t.get_text() for t in figure.legends[0].get_texts()]
    at_t8 = [c for c in figure.axes[0].collections if [0.40, 0.55] in c.get_offsets().tolist()]
    assert len(at_t8) == 1 and at_t8[0].get_facecolors().size == 0  # hollow
    square = MarkerStyle("s")
    assert at_t8[0].get_paths()[0].vertices.tolist() == square.get_path().transformed(
        square.get_transform()).vertices.tolist()
    page = webpage.pareto_figure(view.plotted(trials, summary), summary)
    traces = {t.uid: t for t in page.data}
    adversarial = traces["method-adversarial"]
    assert dict(zip((c[0] for c in adversarial.customdata), adversarial.marker.symbol)) == {
        "t3": "circle", "t8": "square-open"}
    assert next(c[2] for c in adversarial.customdata if c[0] == "t8") == f"TERMINATED, {view.UNVALIDATED_LABEL}"
    assert traces["unvalidated"].name == view.UNVALIDATED_LABEL
    older = {k: v for k, v in summary.items() if k != "unvalidated"}
    assert not view.plotted(trials, older)["unvalidated"].any()
    assert "unvalidated" not in {t.uid for t in webpage.pareto_figure(view.plotted(trials, older), older).data}


@pytest.mark.parametrize("case", ["no rows", "half-written", "only running"])  # no file: refused (test_cli_inputs)
def test_waiting_for_the_first_result(tmp_path: Path, case: str) -> None:
    url = str(tmp_path / "demo")
    Path(url).mkdir()
    if case == "no rows":
        results.write_trials(url, [])
    elif case == "half-written":
        results.write_trials(url, rows())
        data = Path(url, "trials.parquet").read_bytes()
        Path(url, "trials.parquet").write_bytes(data[: len(data) // 2])
    elif case == "only running":
        results.write_trials(url, rows([t for t in TRIALS if t[5] is None]))
    if case == "half-written":  # the pages say why; a good pareto.json is not replaced by a summary of nothing
        Path(url, "pareto.json").write_text('{"front": ["t3"]}')
        with pytest.raises(ResultsError, match="not a readable trials table.*pareto.json was left as it was"):
            files.write_report(url)
        written = {name: str(Path(url, name)) for name in ("pareto.html", "pareto.png")}
        assert "not a readable trials table" in Path(written["pareto.html"]).read_text()
        assert json.loads(Path(url, "pareto.json").read_text()) == {"front": ["t3"]}
    else:
        written = files.write_report(url).written
        summary = json.loads(Path(written["pareto.json"]).read_text())
        assert summary["front"] == [] and summary["hypervolume"] == 0.0
    page = Path(written["pareto.html"]).read_text()
    assert "waiting for the first result" in page
    width, height, _ = png_info(Path(written["pareto.png"]).read_bytes())
    assert width > 1000 and height > 500


def test_missing_sweep_raises_and_writes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "sweeps" / "nope"
    with pytest.raises(ResultsError, match="no such sweep folder") as caught:
        files.write_report(str(missing))
    assert not missing.exists()
    assert caught.value.exit_code == 2  # bad input, as a folder that holds no sweep (exit 1 before)


def test_a_sweep_without_results_yet_is_not_called_a_wrong_path(s3_bucket: str, capsys) -> None:
    """A sweep in its first seconds (sweep.json, no trials.parquet yet) was answered "pass <storage>/<sweep name> of a
    sweep with results", as if the path were wrong."""
    from avdis.cli import main

    url = f"{s3_bucket}/sweeps/young"
    storage.write_bytes(f"{url}/sweep.json", b"{}")
    assert main(["report", url]) == 2
    err = capsys.readouterr().err
    assert "the sweep has started (sweep.json) but has no results yet" in err and "run this again after" in err, err
    storage.write_bytes(f"{url}/pareto.json", b"{}")  # it had results once: its table is missing, not yet to come
    assert main(["report", url]) == 2
    assert "no results yet" not in capsys.readouterr().err


def test_the_storage_of_two_sweeps_given_for_a_sweep_names_them(s3_bucket: str, capsys) -> None:
    """Two sweeps on one storage, and `avdis report` or `avdis dashboard` given the storage (sweep.storage, not
    <storage>/<name>): told only that it held no sweep, with no word of the sweeps there. On S3, the storage's name
    with a space and a non-ASCII letter."""
    from avdis.cli import main

    where = f"{s3_bucket}/runs é/sweeps"
    results.record(f"{where}/first", rows(), "first")
    storage.write_bytes(f"{where}/second/sweep.json", b"{}")  # started, no result yet
    storage.write_bytes(f"{where}/notes/readme.txt", b"no sweep")
    for command in (["report"], ["dashboard", "--port", "0"]):
        assert main([command[0], where, *command[1:]]) == 2
        err = capsys.readouterr().err
        assert f"it holds the sweeps first, second: pass one of them, e.g. {where}/first" in err, err


def test_a_storage_of_many_sweeps_given_for_a_sweep_names_a_few_and_says_it_stopped_short(tmp_path: Path,
                                                                                            capsys) -> None:
    """Naming the sweeps of a storage asks for each folder's files (two requests each on S3): it stops at the first
    eight sweeps found and says how many folders it did not look in."""
    from avdis.cli import main

    for i in range(11):
        storage.write_bytes(str(tmp_path / f"s{i:02d}" / "sweep.json"), b"{}")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    named = ", ".join(f"s{i:02d}" for i in range(8))
    assert f"it holds the sweeps {named} (of its first 8 folders; 3 more not looked in): pass one" in err, err


def test_a_truncated_trials_table_says_what_to_do(sweep: str, capsys, caplog) -> None:
    """A trials.parquet cut short (a copy interrupted) was named, with no word on what to do about it."""
    from avdis.cli import main

    table = Path(sweep, "trials.parquet")
    table.write_bytes(table.read_bytes()[:1000])
    assert main(["report", sweep]) == 1
    err = capsys.readouterr().err
    assert "trials.parquet: not a readable trials table" in err and "copy it again whole" in err, err
    # said once, as the error: it was logged first too (Python prints an unconfigured warning on stderr)
    assert "not a readable trials table" not in caplog.text, caplog.text


def test_report_on_s3(s3_bucket: str) -> None:
    url = f"{s3_bucket}/sweeps/demo"
    results.write_trials(url, rows())
    written = files.write_report(url).written
    assert written["pareto.html"] == f"{url}/pareto.html"
    summary = json.loads(storage.read_bytes(written["pareto.json"]))
    assert set(summary["front"]) == FRONT
    assert summary["hypervolume"] == pytest.approx(HYPERVOLUME)
    assert png_info(storage.read_bytes(written["pareto.png"]))[2] >= 150
    assert "Pareto front" in storage.read_bytes(written["pareto.html"]).decode()


def test_a_table_given_for_its_s3_sweep_folder_is_named_as_a_file(s3_bucket: str, capsys) -> None:
    """`avdis report s3://.../demo/trials.parquet` said 's3://.../demo/trials.parquet: no trials.parquet found, so there
    is nothing to report' (a local path was already named as a file, not a sweep folder); the dashboard too."""
    from avdis.cli import main

    url = f"{s3_bucket}/sweeps/demo"
    results.record(url, rows(), "demo")
    for command in (["report"], ["dashboard", "--port", "0"]):
        assert main([command[0], f"{url}/trials.parquet", *command[1:]]) == 2
        err = capsys.readouterr().err
        assert f"{url}/trials.parquet: a file, not a sweep folder; pass <storage>/<sweep name>" in err, err


def test_a_report_into_storage_it_may_only_read_says_the_dashboard_needs_no_write(s3_bucket: str, capsys) -> None:
    """A sweep's bucket this user may only read: `avdis report` said 'cannot write (PermissionError: Forbidden);
    access denied', with no word of `avdis dashboard`, which serves the same pages without writing."""
    from avdis.cli import main

    url = f"{s3_bucket}/sweeps/demo"
    results.record(url, rows(), "demo")
    before = storage.read_bytes(f"{url}/pareto.json")
    with s3_denied(s3_bucket, "s3:PutObject"):
        assert main(["report", url]) == 2  # the output given cannot be written: bad input, as NotWritableError is
    err = capsys.readouterr().err
    assert f"{url}/pareto.html: cannot write" in err and "access denied" in err, err  # pareto.json is the table's
    assert f"where you may only read it, `avdis dashboard {url}` serves the same pages without writing" in err, err
    assert storage.read_bytes(f"{url}/pareto.json") == before


def test_a_missing_bucket_is_named_as_one(s3_server: str, capsys) -> None:
    """A sweep URL in a bucket that does not exist said "no such sweep folder", sending the user to look for a folder
    in a bucket that was never there; it names the bucket and how to make it, for the report and the dashboard."""
    from avdis.cli import main

    for command in (["report"], ["dashboard", "--port", "0"]):
        assert main([*command, "s3://avdis-no-such-bucket-x/sweeps/demo"]) == 2
        err = capsys.readouterr().err
        assert "bucket 'avdis-no-such-bucket-x' does not exist" in err, err
        assert "create_bucket.py avdis-no-such-bucket-x" in err and "no such sweep folder" not in err


def test_callback_throttles_and_draws_a_change_it_held_back_at_a_later_step(sweep: str) -> None:
    cb = ReportCallback(sweep, every_s=3600)
    cb.on_trial_result(1, [], None, {})
    cb.wait()  # renders run in the report thread
    assert cb.renders == 1
    first = json.loads(Path(sweep, "pareto.json").read_text())
    cb.on_trial_result(2, [], None, {})
    results.record(sweep, rows([*TRIALS[:-2], ("t9", "confusion", 0.2, 0.80, 0.02, 9, 0)]), "demo")
    cb.on_trial_complete(3, [], None)
    cb.on_step_end(3, [])
    cb.wait()
    assert cb.renders == 1, "results and trial ends within every_s must not re-render (a render costs the trials CPU)"

    cb.last_render -= 3600  # every_s has passed: Tune's next loop step draws the trial that ended, with no result
    cb.on_step_end(4, [])
    cb.wait()
    summary = json.loads(Path(sweep, "pareto.json").read_text())
    assert cb.renders == 2 and summary["updated_at"] > first["updated_at"]
    assert summary["front"] == ["t9"]  # completed now, it dominates every other trial
    assert "t9" in Path(sweep, "pareto.html").read_text()
    cb.on_step_end(5, [])
    cb.wait()
    assert cb.renders == 2, "nothing changed since"
    cb.on_trial_error(6, [], None)
    cb.wait()
    cb.on_experiment_end([])  # waits for its render
    assert (cb.renders, cb.failures) == (4, 0)


def test_a_callback_an_earlier_avdis_pickled_resumes_its_sweep(sweep: str) -> None:
    """A resumed sweep runs the callback its Tune experiment pickled: one pickled before `pending` existed has no
    such attribute, and Tune's first loop step (`on_step_end`) ended the resumed sweep with an AttributeError."""
    cb = ReportCallback(sweep, every_s=3600)
    del cb.__dict__["pending"]  # as an earlier avdis pickled it: without the report thread's attributes too
    assert not {"_renderer", "_last"} & set(cb.__dict__)
    old = pickle.loads(pickle.dumps(cb))
    old.on_step_end(1, [])
    old.on_trial_result(2, [], None, {})
    old.wait()
    assert old.renders == 1


def test_a_render_under_way_holds_up_no_tune_callback(s3_bucket: str) -> None:
    """The callback drew pareto.html/png inside Tune's callback, on the driver's loop: results and trial starts waited
    for each render (about a second here, more under load or on S3), and Ray warned "The `callbacks.on_trial_result`
    operation took 0.8 s, which may be a performance bottleneck" every 30 s. Renders run in the report thread: here
    one waits at its first S3 call (the test holds the lock each takes to find its filesystem), and the callback has
    returned while it waits."""
    url = f"{s3_bucket}/sweeps/demo"
    results.record(url, rows(), "demo")
    returned, released = threading.Event(), threading.Event()

    def release() -> None:
        returned.wait(timeout=10)  # a callback that draws in Tune's thread returns only once this lets it on
        released.set()
        storage._S3_LOCK.release()

    cb = ReportCallback(url, every_s=3600)
    storage._S3_LOCK.acquire()
    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    cb.on_trial_result(1, [], None, {})
    was_released = released.is_set()
    render = getattr(cb, "_last", None)
    under_way = render is not None and not render.done()
    saved = pickle.dumps(cb)  # Tune saves its experiment, callbacks and all, while a render is under way
    returned.set()
    releaser.join(timeout=60)
    assert not was_released and under_way, "Tune's callback waited for the render"
    resumed = pickle.loads(saved)  # without the thread: it makes its own
    assert resumed._renderer is None and resumed.refresh(force=True) and resumed._renderer is not None
    resumed.close()
    cb.on_step_end(1, [])
    cb.on_trial_result(2, [], None, {})  # within every_s: pending, for a later step
    cb.wait()
    assert (cb.renders, cb.failures, cb.pending) == (1, 0, True)
    assert storage.exists(f"{url}/pareto.png")
    cb.on_experiment_end([])  # draws the files the sweep ended with, and returns once it has
    assert (cb.renders, cb.failures) == (2, 0) and cb._renderer is None


def test_a_render_reads_the_table_and_summary_of_one_write(sweep: str) -> None:
    """In the report thread a render reads trials.parquet and then pareto.json while the recorder, in Tune's thread,
    may be between writing the one and the other: the page drew the table of one write with the front of the one
    before (a completed trial's point beside a front it would head). `results.record` holds `results.RECORDING` while
    it writes both; a render reads both under it. Here the test holds it as the recorder does, between the writes."""
    cb = ReportCallback(sweep, every_s=0)
    newer = rows([*TRIALS[:-2], ("t9", "confusion", 0.2, 0.80, 0.02, 9, 0)])  # t9 completed: the front is t9 alone
    with results.RECORDING:
        frame = results.write_trials(sweep, newer)
        render = cb.schedule()
        drawn_between, _ = wait([render], timeout=3)  # a render that need not wait has drawn by now
        results.write_pareto(sweep, results.summarize(frame, "demo"))
    assert not drawn_between and render.result(timeout=60)
    drawn = data_blob(Path(sweep, "pareto.html").read_text())
    t9 = next(p for p in drawn["points"] if p["trial_id"] == "t9")
    assert drawn["summary"]["front"] == ["t9"] and not t9["running"], "the table of one write, the front of another"
    cb.close()


def test_callback_survives_a_missing_sweep(tmp_path: Path) -> None:
    cb = ReportCallback(str(tmp_path / "nope"), every_s=0)
    cb.on_trial_complete(1, [], None)
    cb.wait()
    assert (cb.renders, cb.failures) == (0, 1)


def test_a_sweep_ended_before_any_result_is_no_report_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C before any trial reported ends the experiment with sweep.json alone: the callback's forced render said
    'report for ... not refreshed (1 failures so far): ... has no results yet', though nothing had gone wrong."""
    url = str(tmp_path / "sweeps" / "demo")
    Path(url).mkdir(parents=True)
    Path(url, results.SPEC).write_text("{}")
    cb = ReportCallback(url, every_s=0)
    with caplog.at_level("INFO", logger="avdis.report.callback"):
        cb.on_experiment_end([])
    assert (cb.renders, cb.failures) == (0, 0) and not caplog.records
    assert not Path(url, "pareto.html").exists()


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_metrics_publish_skips_missing_values_and_clears_failed_trials(sweep: str) -> None:
    import ray

    from avdis.report import metrics

    trials = results.read_trials(sweep)
    summary = results.summarize(trials, "demo")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        running = trials[trials["trial_id"] == "t9"].assign(status="RUNNING")
        assert metrics.publish("demo", running, summary) == 0
        assert metrics.publish("demo", trials, summary) == 0  # t10 failed: set to NaN, not skipped as missing
        unfinished = trials.assign(leakage=trials["leakage"].where(trials["trial_id"] != "t1"))
        assert metrics.publish("demo", unfinished, {**summary, "hypervolume": math.nan}) == 2  # t1's leakage, the HV
        assert set(metrics._gauges) == {metrics.EMOTION_ACC, metrics.EMOTION_UAR, metrics.LEAKAGE, metrics.HYPERVOLUME,
                                        metrics.FAILED, metrics.STOPPED, metrics.RUNNING, metrics.PROBED_EPOCH,
                                        metrics.EMOTION_METRIC}
        # both emotion metrics per trial, and the one the sweep's front is on (pareto.json's objectives name it) as
        # a tag Grafana's `emotion` variable reads
        metrics.forget("demo")
        emotions = []
        for name in (metrics.EMOTION_UAR, metrics.EMOTION_METRIC):
            gauge = metrics._gauges[name]
            gauge.set = lambda value, tags=None, name=name, real=gauge.set: (emotions.append((name, tags, value)),
                                                                              real(value, tags))
        uar = results.summarize(trials, "demo", pareto.axes("uar"))
        assert metrics.publish("demo", trials, summary) == metrics.publish("demo", trials, uar) == 0
        assert {(tags["sweep"], tags["metric"], value) for name, tags, value in emotions
                if name == metrics.EMOTION_METRIC} == {("demo", "acc", 1.0), ("demo", "uar", 1.0)}
        published = {tags["trial"]: value for name, tags, value in emotions if name == metrics.EMOTION_UAR}
        assert math.isnan(published.pop("t10"))  # failed: NaN, as its accuracy
        assert published == {t: pytest.approx(v) for t, v in zip(trials["trial_id"], trials["emotion_uar"]) if t != "t10"}
        assert metrics.publish("demo", trials, {k: v for k, v in summary.items() if k != "objectives"}) == 1
        # the epoch a trial's values are of: a running one's last probe, which the table of trials shows
        epochs, real = [], metrics._gauges[metrics.PROBED_EPOCH].set
        metrics._gauges[metrics.PROBED_EPOCH].set = lambda value, tags=None: (epochs.append((tags["trial"], value)),
                                                                               real(value, tags))
        metrics.forget("demo")
        metrics.publish("demo", trials.assign(probed_epoch=trials["probed_epoch"].where(trials["trial_id"] != "t9",
                                                                                         2)), summary)
        assert dict(epochs) == {**{f"t{i}": 4 for i in range(1, 9)}, "t9": 2}  # t10 failed: none
        # t9 reported 0.80 while running, then failed: its gauges must not keep that value as its result
        sets = []
        metrics.forget("demo")  # the keeper sets kept values again: only this publish's may be seen below
        for gauge in (metrics._gauges[metrics.EMOTION_ACC], metrics._gauges[metrics.LEAKAGE]):
            real = gauge.set
            gauge.set = lambda value, tags=None, real=real: (
                tags["sweep"] == "demo" and sets.append((value, tags["trial"])), real(value, tags))
        metrics.publish("demo", running.assign(status="ERROR"), summary)
        assert len(sets) >= 2 and all(math.isnan(v) and trial == "t9" for v, trial in sets)
        # a trial lost to a killed driver: no failure of its own (the counts say so), but its values are no result
        # either, and at 0 Grafana's panels kept its running values as a finished trial's
        metrics.forget("demo")  # no kept value of t9's failed gauge set again before the lost trial's
        flags, real = [], metrics._gauges[metrics.FAILED].set
        metrics._gauges[metrics.FAILED].set = lambda value, tags=None: (flags.append(value), real(value, tags))
        metrics.publish("demo", running.assign(status="ERROR", error=results.LOST), summary)
        metrics.publish("demo", running, summary)
        assert flags[:1] == [1.0] and 0.0 in flags
        # sweep.prometheus_scrape_s=0, where no Prometheus scrapes: the sweep's end waits for no export (7-15 s a
        # sweep before the setting), its node's metrics endpoint never asked
        asked = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(metrics, "_endpoint", lambda: asked.append(1))
            assert metrics.settle("demo", 0) and not asked
    finally:
        metrics.forget("demo")
        shutdown_ray()


# A sweep that confirmed its front with 2 more seeds. On single seeds A and B are both on the
# front (A the more accurate); on the confirming seeds' means B dominates A. C is dominated; D was stopped at
# epoch 1 with low leakage: on no front (trained shorter), not confirmed.
# trial_id, config, method, weight, emotion_acc, leakage, epochs, seed, role
CONFIRMED = [
    ("a0", "A", "adversarial", 0.5, 0.80, 0.30, 4, 0, "search"),
    ("b0", "B", "orthogonal", 3.0, 0.70, 0.25, 4, 0, "search"),
    ("c0", "C", "multitask", None, 0.60, 0.60, 4, 0, "search"),
    ("d0", "D", "confusion", 1.0, 0.50, 0.02, 1, 0, "search"),
    ("a1", "A", "adversarial", 0.5, 0.66, 0.44, 4, 1, "confirm"),
    ("b1", "B", "orthogonal", 3.0, 0.73, 0.24, 4, 1, "confirm"),
    ("a2", "A", "adversarial", 0.5, 0.64, 0.46, 4, 2, "confirm"),
    ("b2", "B", "orthogonal", 3.0, 0.71, 0.23, 4, 2, "confirm"),
]
T95_1DF = 12.706204736174698  # Student t, 0.975 quantile, 1 degree of freedom


def confirmed_rows(roles: tuple[str, ...] = ("search", "confirm")) -> list[dict]:
    return [{"trial_id": tid, "sweep": "demo", "method": method, "weight": weight, "status": "TERMINATED",
             "emotion_acc": acc, "emotion_uar": acc - 0.02, "leakage": leak, "emotion_chance": CHANCE,
             "epochs": epochs, "order": i + 1, "seed": seed, "config_id": config, "role": role}
            for i, (tid, config, method, weight, acc, leak, epochs, seed, role) in enumerate(CONFIRMED) if role in roles]


def test_confirmed_front_comes_from_seed_means_with_their_spread() -> None:
    summary = results.summarize(results.to_table(confirmed_rows()).to_pandas(), "demo")
    assert summary["front_basis"] == "seed_mean"
    assert summary["front"] == ["b0"]  # A's lucky first seed put it on the front; its mean is dominated by B's
    (b,) = summary["front_points"]
    # the confirming seeds only: b0 is on the search's front partly by its seed's luck (the winner's curse)
    assert (b["config_id"], b["n"], sorted(b["seeds"]), sorted(b["trials"])) == ("B", 2, [1, 2], ["b1", "b2"])
    assert b["emotion_acc"] == pytest.approx(0.72) and b["leakage"] == pytest.approx(0.235)
    assert b["emotion_acc_std"] == pytest.approx(math.sqrt(0.0002)) and b["leakage_std"] == pytest.approx(math.sqrt(0.00005))
    assert b["emotion_acc_ci95"] == pytest.approx(T95_1DF * math.sqrt(0.0002) / math.sqrt(2))  # t * std / sqrt(2)
    assert b["leakage_ci95"] == pytest.approx(T95_1DF * math.sqrt(0.00005) / math.sqrt(2))
    assert summary["hypervolume"] == pytest.approx((0.72 - CHANCE) * (1 - 0.235))
    # the history follows the search: its single trials in completion order
    assert [h["trial_id"] for h in summary["hypervolume_history"]] == ["a0", "b0", "c0", "d0"]
    assert summary["n_confirm"] == 4 and "95%" in summary["spread"]


def test_a_configuration_waits_off_the_front_until_its_confirmations_have_ended() -> None:
    """B's second confirming seed is running (or, after an interrupt, never started): its one lucky seed put it on
    the front alone, pushing A, confirmed at both seeds, off it. A failed seed ends its confirmation: B comes back
    with the seed it has."""
    lucky = [dict(r, emotion_acc=0.95, leakage=0.05) if r["trial_id"] == "b1" else r for r in confirmed_rows()]

    def front(table: list[dict]) -> list[tuple[str, int]]:
        summary = results.summarize(results.to_table(table).to_pandas(), "demo")
        return [(p["config_id"], p["n"]) for p in summary["front_points"]]

    running = [dict(r, status="RUNNING", order=None, emotion_acc=None, leakage=None) if r["trial_id"] == "b2" else r
               for r in lucky]
    assert front(running) == [("A", 2)]
    assert front([r for r in lucky if r["trial_id"] != "b2"]) == [("A", 2)]  # b2 not started when the sweep stopped
    failed = [dict(r, status="ERROR") if r["trial_id"] == "b2" else r for r in running]
    assert front(failed) == [("B", 1)]


def test_a_sweep_interrupted_between_confirming_seeds_waits_for_the_seeds_it_asked_for() -> None:
    """sweep.confirm_seeds=2 runs seed by seed across configurations: stopped when A and B had each ended their first
    confirming seed and none had started its second, every configuration had as many seeds as any, so all counted as
    ended and the front showed one-seed means (B's lucky one alone) as the confirmed front, for good."""
    asked = json.dumps({"sweep": {"confirm_seeds": 2}})
    lucky = [dict(r, config=asked, **({"emotion_acc": 0.95, "leakage": 0.05} if r["trial_id"] == "b1" else {}))
             for r in confirmed_rows() if r["trial_id"] not in ("a2", "b2")]
    summary = results.summarize(results.to_table(lucky).to_pandas(), "demo")
    assert (summary["front_basis"], summary["front"]) == ("seed_mean", [])
    assert "waiting for the confirming seeds" in webpage.front_table(summary)
    failed = {**confirmed_rows()[7], "config": asked, "status": "ERROR", "order": None, "emotion_acc": None,
              "leakage": None}  # a failed seed ends B's confirmation: B stands on the seed it has
    summary = results.summarize(results.to_table([*lucky, failed]).to_pandas(), "demo")
    assert [(p["config_id"], p["n"]) for p in summary["front_points"]] == [("B", 1)]


def test_a_confirming_seed_started_again_after_a_killed_driver_is_one_seed() -> None:
    """a1 was started just before the driver was killed, after Tune's last save: the resumed sweep started seed 1
    again (a1 below) and closed the first start's row as lost. A's three rows counted as three seeds, so B, with
    its two, waited for a third for ever and left the front to A, which B's mean dominates."""
    lost = {**confirmed_rows()[4], "trial_id": "a1-lost", "status": "ERROR", "order": None, "emotion_acc": None,
            "leakage": None, "error": "started when the driver was killed"}
    summary = results.summarize(results.to_table([*confirmed_rows(), lost]).to_pandas(), "demo")
    assert summary["front"] == ["b0"]


def test_a_confirmed_front_waiting_for_its_seeds_does_not_say_it_waits_for_the_first_result() -> None:
    """While every configuration has a confirming seed running, the confirmed front is empty; its table said "waiting
    for the first result" above six completed trials."""
    running = [dict(r, status="RUNNING", order=None) if r["trial_id"] in ("a2", "b2") else r for r in confirmed_rows()]
    trials = results.to_table(running).to_pandas()
    summary = results.summarize(trials, "demo")
    assert summary["front_basis"] == "seed_mean" and summary["front"] == [] and summary["n_completed"] == 6
    table = webpage.front_table(summary)
    assert "waiting for the confirming seeds" in table and "waiting for the first result" not in table


def test_the_search_front_is_no_confirmed_front_before_a_confirming_seed_finished() -> None:
    """The front became seed means at the first confirming seed that finished: while every seed ran (the
    confirmation's first minutes, or a driver killed then) and once every seed had failed, the front was the search's
    single trials, a0 and b0 (front_basis "trial", hypervolume of their lucky seeds), where each configuration waits
    off it; one confirmed seed of A took B off the front it had stood on alone."""
    running = [dict(r, status="RUNNING", order=None) if r["role"] == "confirm" else r for r in confirmed_rows()]
    failed = [dict(r, status="ERROR", error="boom") for r in running]
    summaries = [results.summarize(results.to_table(table).to_pandas(), "demo") for table in (running, failed)]
    for summary in summaries:
        assert (summary["front_basis"], summary["front"], summary["hypervolume"]) == ("seed_mean", [], 0.0)
    for summary, why in zip(summaries, (view.CONFIRMING, view.UNCONFIRMED)):  # none left to wait for: said so
        assert html.escape(why) in webpage.front_table(summary)
    # one configuration confirmed, the other's seeds all failed: the front is the first's mean alone, as it was
    a_done = [dict(r, status="TERMINATED", order=9 + i) if r["trial_id"] in ("a1", "a2") else r
              for i, r in enumerate(failed)]
    summary = results.summarize(results.to_table(a_done).to_pandas(), "demo")
    assert [(p["config_id"], p["n"]) for p in summary["front_points"]] == [("A", 2)]


def test_a_confirmed_points_disentanglement_does_not_hang_on_a_confirmed_multitask(tmp_path: Path) -> None:
    """Confirming seeds were measured against a multitask of their own seed, which exists only when a multitask
    configuration made the front (the one that leaked least); else against the search's. Now always the search's."""
    def disentanglement(with_multitask: bool) -> float:
        rows = confirmed_rows()
        if with_multitask:
            rows += [{**rows[2], "trial_id": f"c{k}", "role": "confirm", "seed": k, "leakage": 0.3, "order": 8 + k}
                     for k in (1, 2)]
        url = str(tmp_path / str(with_multitask))
        results.write_trials(url, rows)
        return float(results.read_trials(url).set_index("trial_id").loc["b1", "disentanglement"])

    assert disentanglement(True) == disentanglement(False) == pytest.approx(1 - 0.24 / 0.60)


def test_the_sweeps_own_summary_measures_a_confirming_seed_as_the_report_does(tmp_path: Path) -> None:
    """A space that samples train.seed holds a multitask search trial of seed 1 (leakage 0.30): the recorder's
    write measured confirming seed b1 against it, the read against its split's (0.60, 0.45 mean), so the sweep's
    pareto.json, its page and gauges gave B's point another disentanglement than `avdis report` rebuilt."""
    rows = confirmed_rows()
    rows.append({**rows[2], "trial_id": "c1", "seed": 1, "leakage": 0.30, "order": len(rows) + 1})
    url = str(tmp_path / "demo")
    written, summary = results.record(url, rows, "demo")
    read = results.read_trials(url)
    assert written.set_index("trial_id").loc["b1", "disentanglement"] == pytest.approx(1 - 0.24 / 0.45)
    assert read.set_index("trial_id").loc["b1", "disentanglement"] == pytest.approx(1 - 0.24 / 0.45)
    rebuilt = results.summarize(read, "demo")
    assert [p["disentanglement"] for p in summary["front_points"]] == pytest.approx(
        [p["disentanglement"] for p in rebuilt["front_points"]])


def test_without_confirmation_the_front_is_single_trials_of_one_seed() -> None:
    summary = results.summarize(results.to_table(confirmed_rows(("search",))).to_pandas(), "demo")
    assert summary["front_basis"] == "trial"
    # d0, stopped at epoch 1 at leakage 0.02, stood on the front for a trade-off its configuration does not give at
    # full length, and added to the hypervolume
    assert summary["front"] == ["a0", "b0"]
    assert [p["n"] for p in summary["front_points"]] == [1, 1]
    assert all(p["emotion_acc_std"] is None and p["leakage_ci95"] is None for p in summary["front_points"])
    assert "seeds' trials" not in webpage.front_table(summary)  # a single trial is its own point
    two = (0.80 - CHANCE) * (1 - 0.30) + (0.70 - CHANCE) * (0.30 - 0.25)
    assert summary["hypervolume"] == pytest.approx(two)
    assert [h["hypervolume"] for h in summary["hypervolume_history"]] == pytest.approx(
        [(0.80 - CHANCE) * (1 - 0.30), two, two, two])  # a step per completed trial; c0 and d0 add nothing


def test_the_front_table_lists_a_points_seeds_beside_their_count() -> None:
    """hU4's sweep sampled train.seed [0, 1] and confirmed its front with more seeds, which skip the searched ones:
    a point of seeds 2 and 3 read "seeds 2" in the table (the count under that header), which the reader takes for
    seed 2, one of them, and a point confirmed at seed 2 alone "seeds 1", a seed the search trained."""
    rows = [{**r, "seed": {"b1": 2, "b2": 3}.get(r["trial_id"], r["seed"])} for r in confirmed_rows()]
    trials = results.to_table(rows).to_pandas()
    summary = results.summarize(trials, "demo")
    (b,) = summary["front_points"]
    assert (b["trial_id"], b["n"], sorted(b["seeds"])) == ("b0", 2, [2, 3])
    table = webpage.front_table(summary)
    heads = re.findall(r"<th>([^<]*)</th>", table)
    cells = dict(zip(heads, re.findall(r"<td>([^<]*)</td>", table[table.index('<tr data-trial-id="b0">'):])))
    assert cells["n"] == "2" and cells["seeds"] == "2, 3"
    singles = results.summarize(results.to_table(confirmed_rows(("search",))).to_pandas(), "demo")
    table = webpage.front_table(singles)
    cells = re.findall(r"<td>([^<]*)</td>", table[table.index('<tr data-trial-id="a0">'):])
    assert dict(zip(re.findall(r"<th>([^<]*)</th>", table), cells))["seeds"] == "0"  # a single trial's own seed
    front = next(t for t in webpage.pareto_figure(view.plotted(trials, summary), summary).data
                 if t.uid == "front")
    assert front.customdata[0][6] == "2, 3" and "seed(s) (%{customdata[6]})" in front.hovertemplate


def test_page_and_png_show_the_spread_of_seed_means(tmp_path: Path) -> None:
    url = str(tmp_path / "demo")
    results.write_trials(url, confirmed_rows())
    written = files.write_report(url).written
    page = Path(written["pareto.html"]).read_text()
    assert "seed means" in page and "95%" in page
    table = page[page.index('<table id="front-table">'):]
    row = table[table.index('<tr data-trial-id="b0">'):]
    row = row[:row.index("</tr>")]
    acc_ci95, leakage_ci95 = T95_1DF * math.sqrt(0.0002 / 2), T95_1DF * math.sqrt(0.00005 / 2)
    assert "<td>2</td>" in row and f"<td>{acc_ci95:.3f}</td>" in row  # seeds and the interval
    # b0 stands for B but is in no mean drawn: the row named it alone, read as one of the seeds
    assert "<th>search trial</th>" in table and "<th>seeds' trials</th>" in table and "<td>b1, b2</td>" in row
    blob = data_blob(page)
    assert {p["trial_id"] for p in blob["points"]} == {t[0] for t in CONFIRMED}  # every seed drawn
    assert {p["trial_id"]: p["role"] for p in blob["points"]}["b2"] == "confirm"
    # the front's point is B's mean of b1 and b2; b0, the search trial standing for B, was flagged on it instead
    assert blob["summary"]["front"] == ["b0"] and {p["trial_id"] for p in blob["points"] if p["on_front"]} == {"b1", "b2"}
    trials = results.read_trials(url)
    summary = results.summarize(trials, "demo")
    front = next(t for t in webpage.pareto_figure(view.plotted(trials, summary), summary).data if t.uid == "front")
    assert front.error_y.array == pytest.approx([acc_ci95])
    assert front.error_x.array == pytest.approx([leakage_ci95])
    assert front.customdata[0][0] == "b0" and front.customdata[0][5] == "b1, b2"  # hover: b0 (search trial), b1, b2
    assert "(search trial), seeds' trials %{customdata[5]}" in front.hovertemplate
    no_spread = {**summary, "front_points": [{**p, "emotion_acc_ci95": None, "leakage_ci95": None}
                                             for p in summary["front_points"]]}
    assert image.render_png(trials, summary) != image.render_png(trials, no_spread)  # the error bars are drawn
    assert png_info(Path(written["pareto.png"]).read_bytes())[2] >= 150


def test_a_probe_below_chance_stays_on_the_chart() -> None:
    # negative leakage (the probe scored below chance) is a real value: the axis reaches it, on the page and the PNG
    below = [{**r, "leakage": -0.2} if r["trial_id"] == "t3" else r for r in rows()]
    trials = results.to_table(below).to_pandas()
    points = view.plotted(trials, results.summarize(trials, "demo"))
    low, high = view.leakage_range(points, results.summarize(trials, "demo"))
    assert low < -0.2 and high > 1.0
    figure = webpage.pareto_figure(points, results.summarize(trials, "demo"))
    assert figure.layout.xaxis.range[0] < -0.2


def test_a_failed_trial_is_counted_not_drawn_and_a_sweep_of_failures_says_so(tmp_path: Path) -> None:
    """A trial that failed after reporting kept its last metrics and was drawn hollow, as if still running."""
    failed = [{**r, "status": "ERROR", "order": None} if r["trial_id"] == "t5" else r for r in rows()]
    trials = results.to_table(failed).to_pandas()
    summary = results.summarize(trials, "demo")
    points = view.plotted(trials, summary)
    assert "t5" not in set(points["trial_id"]) and summary["n_failed"] == 2
    url = str(tmp_path / "allfailed")
    results.write_trials(url, [{**r, "status": "ERROR", "order": None} for r in rows()[:3]])
    page = Path(files.write_report(url).written["pareto.html"]).read_text()
    assert "no trial finished: 3 failed" in page and "waiting for the first result" not in page


def test_a_trial_lost_to_a_killed_driver_is_counted_apart_from_failed_ones(tmp_path: Path) -> None:
    """A trial the killed driver started after Tune's last save is closed as ERROR when the sweep ends; the sweep
    does not count it as failed (Tune drew another in its place), but the page and pareto.json did."""
    lost = [{**r, "status": "ERROR", "order": None, "error": results.LOST} if r["trial_id"] == "t5" else r
            for r in rows()]  # beside the one failed trial rows() holds
    url = str(tmp_path / "lost")
    results.write_trials(url, lost)
    written, trials, *_ = files.write_report(url)
    summary = results.summarize(trials, "demo")
    assert (summary["n_failed"], summary["n_lost"]) == (1, 1)
    page = Path(written["pareto.html"]).read_text()
    assert " · 1 failed · 1 lost to a killed driver (drawn again)" in page


def test_a_corrupt_pareto_json_is_a_named_error_and_never_stops_the_callback(tmp_path: Path) -> None:
    url = str(tmp_path / "demo")
    results.write_trials(url, rows())
    Path(url, "pareto.json").write_text('{"front": [')
    with pytest.raises(ResultsError, match=r"pareto.json: not readable JSON .*avdis report"):
        results.read_pareto(url)
    assert ReportCallback(url).refresh(force=True) is False  # a Tune callback that raised would end the sweep


@pytest.mark.parametrize("body", ["[1, 2]", "null", '"front"', "3"])
def test_a_pareto_json_that_is_no_object_is_a_named_error(tmp_path: Path, capsys, body: str) -> None:
    """Valid JSON that is no summary (a list, a string) passed the JSON check; the dashboard, the sweep's report
    callback (which would end the sweep) and `avdis report`'s pages then failed on it with an AttributeError."""
    from avdis.cli import main
    from avdis.report import dashboard

    url = str(tmp_path / "demo")
    results.record(url, rows(), "demo")
    Path(url, "pareto.json").write_text(body)
    with pytest.raises(ResultsError, match=r"pareto.json: holds a JSON \w+, not a sweep summary .*avdis report"):
        results.read_pareto(url)
    assert ReportCallback(url).refresh(force=True) is False
    live = dashboard.LiveReport(url, None, refresh_s=60)  # the dashboard summarizes the table and says why
    assert live.snapshot.summary["sweep"] == "demo" and b"not a sweep summary" in live.snapshot.html
    assert main(["report", url]) == 0  # the report rebuilds it from the table
    assert json.loads(Path(url, "pareto.json").read_text())["sweep"] == "demo"


WRONG_FIELDS = [  # (field as the error names it, its path, a value of the wrong type)
    ("front", ("front",), "t3"),
    ("front_points.0", ("front_points",), [1]),
    ("front_points.0.emotion_acc", ("front_points", 0, "emotion_acc"), "0.68"),
    ("front_points.0.weight", ("front_points", 0, "weight"), "heavy"),
    ("hypervolume", ("hypervolume",), "0.4"),
    ("hypervolume_history.0.completed", ("hypervolume_history", 0), {"trial_id": "t1", "hypervolume": 0.1}),
    ("n_trials", ("n_trials",), "10"),
    ("baseline.leakage", ("baseline", "leakage"), "0.62"),
    ("reference", ("reference",), [0.25, 1]),
    ("updated_at", ("updated_at",), "yesterday"),
]


@pytest.mark.parametrize(("field", "path", "value"), WRONG_FIELDS, ids=[f for f, _, _ in WRONG_FIELDS])
def test_a_pareto_json_field_of_another_type_is_a_named_error(tmp_path: Path, field: str, path: tuple,
                                                                value: object) -> None:
    """An object passed as a summary whatever its fields held: a point's emotion_acc as text, a baseline leakage as
    text, a history step without `completed`, updated_at as text crashed the pages (the dashboard's, the callback's,
    `avdis report`'s) with a traceback; a front as a string was counted by its letters."""
    from avdis.cli import main
    from avdis.report import dashboard

    url = str(tmp_path / "demo")
    _, summary = results.record(url, rows(), "demo")
    edited = json.loads(json.dumps(json_safe(summary)))
    *parents, last = path
    target = edited
    for key in parents:
        target = target[key]
    target[last] = value
    Path(url, "pareto.json").write_text(json.dumps(edited))
    with pytest.raises(ResultsError, match=rf"pareto.json: {re.escape(field)}: .*not a sweep summary as avdis writes "
                                           r"it, rebuild it from trials.parquet with `avdis report "):
        results.read_pareto(url)
    assert ReportCallback(url).refresh(force=True) is False
    live = dashboard.LiveReport(url, None, refresh_s=60)  # the dashboard summarizes the table and says why
    assert live.snapshot.summary["sweep"] == "demo" and f"pareto.json: {field}: ".encode() in live.snapshot.html
    assert main(["report", url]) == 0  # the report rebuilds it from the table
    assert results.read_pareto(url)["front"] == summary["front"]


def test_a_report_that_rebuilds_a_damaged_pareto_json_says_which_field_and_from_what(tmp_path: Path) -> None:
    """`avdis report` replaced a damaged pareto.json (one edited by hand, a field another tool wrote) silently, where
    the README says it rebuilds it: the note names the file and field and that it was rebuilt from trials.parquet.
    A sound one is not said to be rebuilt."""
    url = str(tmp_path / "demo")
    _, summary = results.record(url, rows(), "demo")
    assert files.write_report(url).rebuilt is None
    Path(url, "pareto.json").write_text(json.dumps({**json_safe(summary), "front": "t3"}))
    said = files.write_report(url).rebuilt
    assert said is not None and said.startswith(f"{Path(url, 'pareto.json')}: front: ")
    assert said.endswith("; rebuilt it from trials.parquet") and "rebuild it" not in said
    assert results.read_pareto(url)["front"] == summary["front"]


def test_a_pareto_json_of_an_earlier_avdis_still_reads(tmp_path: Path) -> None:
    """Keys added since (selected_on, n_running, front_basis, unvalidated) may be missing, and a null where the pages
    draw none."""
    url = str(tmp_path / "demo")
    _, summary = results.record(url, rows(), "demo")
    older = {k: v for k, v in json_safe(summary).items() if k not in ("selected_on", "n_running", "front_basis",
                                                                    "unvalidated")}
    Path(url, "pareto.json").write_text(json.dumps({**older, "hypervolume": None, "baseline": None}))
    assert results.read_pareto(url)["front"] == summary["front"]
    assert "hypervolume <b id=\"hypervolume\">-</b>" in Path(files.write_pages(url)["pareto.html"]).read_text()


@pytest.mark.parametrize("column", ["epochs", "order"])
def test_a_finished_trial_without_epochs_or_order_is_a_named_error(tmp_path: Path, capsys, column: str) -> None:
    """A table without `epochs` (or `order`) for its finished trials gave an empty front, no baseline and hypervolume
    0 with exit 0 (no trial counted as trained longest), or "waiting for the first result" for a finished sweep."""
    from avdis.cli import main

    url = tmp_path / "demo"
    url.mkdir()
    results.to_table(rows()).to_pandas().drop(columns=[column]).to_parquet(url / "trials.parquet")
    assert main(["report", str(url)]) == 1
    err = capsys.readouterr().err
    but = {"order": "the trial finished", "epochs": "the trial has a result and an order"}[column]
    assert f"trials.parquet: {column} of trial t1 is empty, but {but} (status TERMINATED)" in err, err
    assert f"fill in {column}" in err
    assert not (url / "pareto.json").exists()


@pytest.mark.parametrize("column", ["leakage", "val_leakage"])
def test_a_leakage_in_percent_is_a_named_error(tmp_path: Path, capsys, column: str) -> None:
    """Accuracies in percent were refused, leakage in percent was not: the report exited 0 with every point drawn
    off the page's leakage axis (which ends at 1.02) and a hypervolume of 0."""
    from avdis.cli import main

    url = tmp_path / "demo"
    table = results.to_table(rows()).to_pandas()
    table = table.assign(val_emotion_acc=table["emotion_acc"], val_leakage=table["leakage"])
    results.write_trials(str(url), table.assign(**{column: table[column] * 100}).to_dict("records"))
    assert main(["report", str(url)]) == 1
    err = capsys.readouterr().err
    assert f"trials.parquet: {column} of trial t1 is 60.0, above 1" in err and "not a percentage" in err, err


@pytest.mark.parametrize("column", ["best_emotion_acc", "best_emotion_uar"])
def test_a_best_emotion_metric_in_percent_is_a_named_error(tmp_path: Path, capsys, column: str) -> None:
    """best_leakage above 1 was refused as a percentage, a best emotion metric in percent was read as it was: the one
    column of a trial's bests left unchecked (best_emotion_uar too, since it was added)."""
    from avdis.cli import main

    url = tmp_path / "demo"
    table = results.to_table(rows()).to_pandas()
    results.write_trials(str(url), table.assign(**{column: table["emotion_acc"] * 100}).to_dict("records"))
    assert main(["report", str(url)]) == 1
    err = capsys.readouterr().err
    assert f"trials.parquet: {column} of trial t1 is 70.0, outside [0, 1] (a share, not a percentage)" in err, err


def test_a_leakage_of_minus_infinity_is_a_named_error(tmp_path: Path, capsys) -> None:
    """-inf (a leakage worked out where the label-only chance was 1) passed the check, which bounds only the top: it
    counted as leakage 0 on the front, and `avdis report` ended in matplotlib's "Axis limits cannot be NaN or Inf"
    traceback. avdis's own recorder writes no infinities (`to_table`): this is a table written elsewhere."""
    import pyarrow.parquet as pq

    from avdis.cli import main

    url = tmp_path / "demo"
    table = results.to_table(rows()).to_pandas()
    table.loc[table["trial_id"] == "t3", "leakage"] = -math.inf
    url.mkdir()
    pq.write_table(pa.Table.from_pandas(table, schema=results.SCHEMA, preserve_index=False), url / "trials.parquet")
    assert main(["report", str(url)]) == 1
    err = capsys.readouterr().err
    assert "trials.parquet: leakage of trial t3 is -inf" in err and "Traceback" not in err, err


def test_no_trial_id_can_end_or_bend_the_pages_data_block() -> None:
    odd = [{**r, "trial_id": "x<!--<script>" if r["trial_id"] == "t1" else r["trial_id"]} for r in rows()]
    trials = results.to_table(odd).to_pandas()
    page = webpage.render_html(trials, results.summarize(trials, "demo"))
    block = re.search(r'<script id="avdis-data" type="application/json">(.*?)</script>', page, re.S)
    assert block and "<" not in block.group(1)
    assert "x<!--<script>" in {p["trial_id"] for p in json.loads(block.group(1))["points"]}


def test_leakage_below_zero_earns_no_area_beyond_the_box() -> None:
    from avdis.results import pareto

    assert pareto.hypervolume([0.5], [-0.2], CHANCE) == pytest.approx((0.5 - CHANCE) * 1.0)  # at most the box


def test_a_failed_trial_with_metrics_is_not_also_counted_as_unplaced() -> None:
    failed = [{**r, "status": "ERROR", "order": None} if r["trial_id"] == "t5" else r for r in rows()]
    trials = results.to_table(failed).to_pandas()
    page = webpage.render_html(trials, results.summarize(trials, "demo"))
    assert "2 failed" in page and "without both metrics" not in page


def test_a_trials_table_read_back_is_checked(tmp_path: Path) -> None:
    """A foreign table, accuracy as text or in percent, a trial twice: each gave a wrong front with exit 0 (or a
    traceback after pareto.json was rewritten). An integer trial_id is read as the text it stands for."""
    url = tmp_path / "demo"
    url.mkdir()
    good = results.to_table(rows()).to_pandas()

    def write(frame: pd.DataFrame) -> None:
        frame.to_parquet(url / results.TRIALS)

    write(pd.DataFrame({"clip_id": ["a"], "split": ["train"]}))
    with pytest.raises(ResultsError, match=r"trials.parquet: not a trials table \(no column trial_id, method"):
        results.read_trials(str(url))
    write(good.assign(emotion_acc=good["emotion_acc"].map(lambda v: f"{v:.0%}")))
    with pytest.raises(ResultsError, match="column emotion_acc is (large_)?string, not double"):
        results.read_trials(str(url))
    write(good.assign(emotion_acc=good["emotion_acc"].map(str)))  # numbers as text are the numbers
    assert results.read_trials(str(url))["emotion_acc"].tolist()[:2] == [0.70, 0.66]
    write(good.assign(emotion_acc=good["emotion_acc"] * 100))
    with pytest.raises(ResultsError, match=r"emotion_acc of trial t1 is 70.0, outside \[0, 1\] \(a share"):
        results.read_trials(str(url))
    write(pd.concat([good, good.iloc[:2]]))
    with pytest.raises(ResultsError, match="trial_id t1, t2 on more than one row"):
        results.read_trials(str(url))
    numbered = good.assign(trial_id=range(len(good)))
    write(numbered)
    assert results.read_trials(str(url))["trial_id"].tolist() == [str(i) for i in range(len(good))]


def test_disentanglement_is_worked_out_again_from_the_table_read(tmp_path: Path) -> None:
    """`avdis report` on a table whose multitask rows changed (a broken baseline removed) kept the stale column."""
    url = str(tmp_path / "demo")
    frame = results.write_trials(url, rows())
    assert frame.set_index("trial_id").loc["t3", "disentanglement"] == pytest.approx(1 - 0.30 / 0.60)
    edited = frame[frame["trial_id"] != "t1"].assign(seed=0)  # t2 (leakage 0.64) is now seed 0's baseline
    edited.to_parquet(Path(url) / results.TRIALS)
    read = results.read_trials(url).set_index("trial_id")
    assert read.loc["t3", "disentanglement"] == pytest.approx(1 - 0.30 / 0.64)


def test_a_configuration_drawn_twice_with_one_seed_is_one_seed() -> None:
    """The search drew multitask (no parameters) three times with seed 0: identical runs, counted as n = 5 with
    an interval half as wide as the 3 seeds give."""
    search = [("m0", "M", "multitask", None, 0.70, 0.60, 4, 0, "search")] * 3
    confirm = [("m1", "M", "multitask", None, 0.72, 0.62, 4, 1, "confirm"),
               ("m1b", "M", "multitask", None, 0.72, 0.62, 4, 1, "confirm"),
               ("m2", "M", "multitask", None, 0.74, 0.66, 4, 2, "confirm")]
    table = pd.DataFrame([{"config_id": c, "trial_id": f"{t}-{i}", "method": m, "weight": w, "emotion_acc": a,
                           "leakage": l, "emotion_uar": a, "disentanglement": None, "epochs": e, "seed": sd, "role": r}
                          for i, (t, c, m, w, a, l, e, sd, r) in enumerate(search + confirm)])
    (point,) = results.seed_means(table, table.iloc[:1]).to_dict("records")
    assert (point["n"], sorted(point["seeds"])) == (3, [0, 1, 2])
    assert point["emotion_acc"] == pytest.approx(0.72)


def test_the_paper_target_needs_a_baseline_that_leaks() -> None:
    """With the baseline's probe below chance (leakage -0.2), 13% less leakage was drawn at -0.174: more."""
    summary = {"baseline": {"emotion_acc": 0.7, "leakage": -0.2, "trials": ["t1"]}}
    assert view.target_point(summary) is None
    assert view.target_point({"baseline": {"emotion_acc": 0.7, "leakage": 0.5, "trials": ["t1"]}}) == (
        pytest.approx(0.435), 0.7)


def test_a_confirmed_point_of_one_seed_has_no_error_bar() -> None:
    """Its only other seed failed: a bar of zero length read as a sure point under 'seed means ± 95% CI'."""
    assert webpage._bars(pd.Series([0.02, None, np.nan])) == [0.02, None, None]


def test_a_seed_means_error_bar_is_drawn_whole_on_the_page_and_the_png() -> None:
    """B's two confirming seeds leak 0.05 and 0.30: its 95% interval (t = 12.7 at one degree of freedom) runs from
    -1.4 to 1.8. Both charts' x axes ended at -0.02 and 1.02, so the bar was cut at the axis, read as ending there."""
    wide = [{**r, "leakage": {"b1": 0.05, "b2": 0.30}[r["trial_id"]]} if r["trial_id"] in ("b1", "b2") else r
            for r in confirmed_rows()]
    trials = results.to_table(wide).to_pandas()
    summary = results.summarize(trials, "demo")
    (b,) = summary["front_points"]
    low, high = b["leakage"] - b["leakage_ci95"], b["leakage"] + b["leakage_ci95"]
    assert low < -1 and high > 1.5
    page_low, page_high = webpage.pareto_figure(view.plotted(trials, summary), summary).layout.xaxis.range
    png_low, png_high = image.png_figure(trials, summary).axes[0].get_xlim()
    assert page_low < low and page_high > high and png_low < low and png_high > high


def test_the_pngs_legend_fits_its_width() -> None:
    """A confirmed front chosen on validation clips, with a baseline, the paper's target and a trial stopped at a rung:
    five columns of their labels were wider than the figure, and the PNG cut the legend off at both edges."""
    chosen = [{**r, "val_emotion_acc": r["emotion_acc"], "val_leakage": r["leakage"]} for r in confirmed_rows()]
    chosen = [{**r, "status": "STOPPED"} if r["trial_id"] == "d0" else r for r in chosen]
    trials = results.to_table(chosen).to_pandas()
    summary = results.summarize(trials, "demo")
    fig = image.png_figure(trials, summary)
    fig.canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert len(legend.get_texts()) >= 8 and box.x0 >= 0 and box.x1 <= fig.bbox.width


def test_a_pareto_json_without_numbers_still_renders(tmp_path: Path) -> None:
    """A pareto.json edited to hold "hypervolume": null crashed the page (and the dashboard at start) on a TypeError."""
    trials = results.to_table(rows()).to_pandas()
    summary = {**results.summarize(trials, "demo"), "hypervolume": None, "reference": None}
    page = webpage.render_html(trials, summary)
    assert '<b id="hypervolume">-</b>' in page and "emotion_acc = chance -" in page
    seed_means = {**summary, "front_basis": "seed_mean", "spread": None}  # read_pareto lets it through
    assert "seed means ()" in webpage.render_html(trials, seed_means)


def test_a_report_on_running_trials_says_when_the_last_result_came(tmp_path: Path, capsys) -> None:
    """A sweep whose driver was stopped leaves its trials RUNNING in the table; the report gave no sign of that, so a
    report of a dead sweep read as a live one. It now names the running trials and the last result's time."""
    from avdis.cli import main

    url = str(tmp_path / "demo")
    hour_ago = [{**row, "updated_at": time.time() - 3600} for row in rows()]
    results.write_trials(url, hour_ago)
    assert main(["report", url]) == 0
    err = capsys.readouterr().err
    assert "1 trial is RUNNING; the sweep's last result came 60 min ago" in err, err
    last = time.strftime("%Y-%m-%d %H:%M", time.gmtime(max(r["updated_at"] for r in hour_ago)))
    assert f"1 running (last result {last}" in Path(url, "pareto.html").read_text()  # the page says it too
    assert "run again with the same config, which resumes them" in err
    # a result seconds old read '0 min ago', one of a driver stopped days before '2880 min ago'
    for age, said in ((20, r"(2\d|3\d) s"), (5 * 3600, r"5\.0 h"), (2 * 86400, r"2\.0 days")):  # the report's own time
        results.write_trials(url, [{**row, "updated_at": time.time() - age} for row in rows()])
        assert main(["report", url]) == 0
        err = capsys.readouterr().err
        assert re.search(f"the sweep's last result came {said} ago \\(", err), err
    results.write_trials(url, [r for r in rows() if r["status"] != "RUNNING"])
    assert main(["report", url]) == 0 and "RUNNING" not in capsys.readouterr().err


def test_a_report_on_a_sweep_with_failed_trials_says_so(tmp_path: Path, capsys) -> None:
    """Only the page's header counted failed trials: `avdis report` ended as if every trial had finished."""
    from avdis.cli import main

    url = str(tmp_path / "demo")
    results.write_trials(url, rows())
    assert main(["report", url]) == 0  # the report is written: the front stands on the trials that finished
    n = len(rows())
    assert (f"avdis report: note: 1 of {n} trials failed; the front and report stand on the trials that finished. Each "
            f"row of {url}/trials.parquet holds its error.") in capsys.readouterr().err
    lost = [{**r, "error": results.LOST} if r["status"] == "ERROR" else r for r in rows()]
    results.write_trials(url, lost)  # a lost trial is no failure: Tune drew another in its place
    assert main(["report", url]) == 0 and "failed" not in capsys.readouterr().err
    results.write_trials(url, [{**r, "status": "ERROR", "error": "boom"} for r in rows()])
    assert main(["report", url]) == 0
    assert f"{n} of {n} trials failed; no trial finished, so the front and report are empty." in capsys.readouterr().err
    live = [{**r, "status": "RUNNING", "order": None} for r in rows()]  # a live sweep: one failed, none finished yet
    results.write_trials(url, [{**live[0], "status": "ERROR", "error": "boom"}, *live[1:]])
    assert main(["report", url]) == 0
    assert f"1 of {n} trials failed; no trial finished, so the front and report are empty." in capsys.readouterr().err


def test_a_report_tells_of_the_trials_its_pages_were_drawn_from(tmp_path: Path, capsys, monkeypatch) -> None:
    """`avdis report` read trials.parquet a second time for its note on running trials; a running sweep's recorder
    that replaced the file in between made the note contradict the pages (a trial RUNNING on the page, none in the
    note). Here the recorder writes the finished trial right after the report's first read: the report is drawn
    again from the newer table (`test_a_report_never_writes_an_older_summary_over_the_sweeps_newer_one`), and the
    note tells of that table too."""
    from avdis import storage
    from avdis.cli import main

    url = str(tmp_path / "demo")
    results.write_trials(url, rows())
    finished = [{**r, "status": "TERMINATED", "order": 12} if r["status"] == "RUNNING" else r for r in rows()]
    real_read, writes = storage.read_parquet, []

    def read_then_record(read_url: str, s3=None):
        table = real_read(read_url, s3)
        if read_url.endswith(results.TRIALS) and not writes:
            writes.append(read_url)
            results.write_trials(url, finished)  # the sweep's next result lands
        return table

    monkeypatch.setattr(storage, "read_parquet", read_then_record)
    assert main(["report", url]) == 0
    assert writes
    assert "· 0 running ·" in Path(url, "pareto.html").read_text()
    assert "RUNNING" not in capsys.readouterr().err


def test_a_report_never_writes_an_older_summary_over_the_sweeps_newer_one(tmp_path: Path, monkeypatch) -> None:
    """`avdis report` beside a live sweep: its recorder wrote the next result (trials.parquet and pareto.json) while
    the report summarized the table it had read, and the report then wrote its older pareto.json and pages over
    them, there until the sweep's next result (1 trial running in both, the table none). Now a file is written only
    while the table is the one read, and the report is drawn again from the newer one; a sweep that replaces it at
    every try is said, its own pareto.json left standing (`test_a_report_beside_a_sweep_that_outruns_it_...`)."""
    url = str(tmp_path / "demo")
    results.record(url, rows(), "demo")
    newer = [{**r, "status": "TERMINATED", "order": 12} if r["status"] == "RUNNING" else r for r in rows()]
    real, recorded = results.summarize, []

    def summarize_then_record(trials: pd.DataFrame, sweep: str, axes: pareto.Axes, every: bool = False) -> dict:
        summary = real(trials, sweep, axes)
        if every or not recorded:  # the sweep's recorder: its next result lands
            stamped = [{**r, "updated_at": 1e9 + len(recorded)} for r in newer]  # each write a newer table
            recorded.append(real(results.write_trials(url, stamped), "demo"))
            results.write_pareto(url, recorded[-1])
        return summary

    monkeypatch.setattr(results, "summarize", summarize_then_record)
    written, trials, *_ = files.write_report(url)
    assert json.loads(Path(written["pareto.json"]).read_text())["n_running"] == 0  # the table's: none
    assert data_blob(Path(written["pareto.html"]).read_text())["counts"]["running"] == 0
    assert len(recorded) == 1 and not (trials["status"] == "RUNNING").any()

    monkeypatch.setattr(results, "summarize",
                        lambda trials, sweep, axes: summarize_then_record(trials, sweep, axes, every=True))
    assert files.write_report(url).outrun == files.outrun(url)
    assert json.loads(Path(url, "pareto.json").read_text())["updated_at"] == recorded[-1]["updated_at"]


# A busy sweep's recorder: trials.parquet and its pareto.json rewritten as fast as it can, each table newer and its
# running trial (t9) finished in every other one, so each summary differs from the last; stopped between two records.
BUSY_RECORDER = """
import itertools, json, signal, sys, time
from avdis import results
url, table = sys.argv[1], json.loads(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
for i in itertools.takewhile(lambda _: not stop, itertools.count()):
    done = {"status": "TERMINATED", "order": 12} if i % 2 else {}
    results.record(url, [{**row, **(done if row["order"] is None and row["emotion_acc"] else {}),
                          "updated_at": time.time()} for row in table], "demo")
"""


def test_a_report_beside_a_sweep_that_outruns_it_leaves_the_sweeps_own_report_and_ends_well(
        tmp_path: Path, capsys, monkeypatch) -> None:
    """`avdis report` beside a sweep whose results come faster than a report is drawn (a second or two) found
    trials.parquet replaced at each of its `REDRAWS` tries and ended in an error (exit 1), though nothing was wrong.
    Now it says that the sweep's report stands and ends with 0; pareto.json is the recorder's summary of the table,
    not an older one of the report's. The recorder is a real process here."""
    import subprocess
    import sys

    from avdis.cli import main

    url = str(tmp_path / "demo")
    monkeypatch.setattr(files, "REDRAWS", 2)  # each try is outrun alike; two keep the test short
    drawn = files._pages

    def outrun_while_drawn(trials, *args):  # a draw the recorder outruns for certain, however loaded the machine
        pages, deadline = drawn(trials, *args), time.monotonic() + 60
        while files._still_read(url, trials, None) and time.monotonic() < deadline:
            time.sleep(0.02)
        return pages

    monkeypatch.setattr(files, "_pages", outrun_while_drawn)
    recorder = subprocess.Popen([sys.executable, "-c", BUSY_RECORDER, url, json.dumps(rows())])
    try:
        deadline = time.monotonic() + 30
        while not Path(url, "pareto.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert main(["report", url]) == 0
    finally:
        recorder.terminate()
        recorder.wait(timeout=30)
    assert f"avdis report: note: {files.outrun(url)}" in capsys.readouterr().err
    kept = results.read_pareto(url)
    assert {**kept, "updated_at": None} == {**json.loads(json.dumps(json_safe(results.summarize(
        results.read_trials(url), "demo")))), "updated_at": None}


def test_a_png_draws_dollar_signs_in_names_as_written(tmp_path: Path) -> None:
    """matplotlib read what lay between two `$` of the sweep's name (a folder's, for a table no sweep wrote) or a
    method's as TeX: `avdis report` of such a folder ended in a ValueError traceback."""
    url = str(tmp_path / "cost$5_per_$run")
    results.write_trials(url, [{**r, "sweep": None, "method": "m$_$" if r["method"] == "orthogonal" else r["method"]}
                               for r in rows()])
    written = files.write_report(url).written
    assert png_info(Path(written["pareto.png"]).read_bytes())[2] >= 150


def test_a_uar_sweeps_report_draws_uar_on_the_emotion_axis(tmp_path: Path) -> None:
    """A sweep on sweep.emotion_metric=uar: `avdis report` reads the metric from its sweep.json and its pareto.json,
    page, front table and png give UAR on the emotion axis, with UAR's chance as the box's corner (every label said
    accuracy, and the box started at the majority rate)."""
    from avdis import config as C
    from avdis.tune.spec import record_spec

    url = str(tmp_path / "demo")
    record_spec(url, C.load(None, ["sweep.emotion_metric=uar"]), "0" * 16)
    table = [{**r, "emotion_uar_chance": 0.25, "val_emotion_uar": r["emotion_uar"], "val_leakage": r["leakage"]}
             for r in rows()]
    results.write_trials(url, table)
    written, trials, *_ = files.write_report(url)
    summary = json.loads(Path(written["pareto.json"]).read_text())
    assert summary["objectives"] == {"emotion_uar": "max", "leakage": "min"} and summary["selected_on"] == "val"
    assert summary["reference"] == {"emotion_uar": 0.25, "leakage": 1.0}
    page = Path(written["pareto.html"]).read_text()
    assert "emotion UAR vs identity leakage" in page and "reference: emotion_uar = chance 0.250" in page
    assert "emotion accuracy" not in page
    assert "paper: 13% less leakage than multitask, equal UAR" in page and "equal accuracy" not in page  # target's label
    assert "<th>val emotion_uar (chosen on)</th>" in webpage.front_table(summary)
    assert image.png_figure(trials, summary).axes[0].get_ylabel() == "emotion UAR (test)"


def test_a_uar_sweeps_results_copied_without_its_sweep_json_are_reported_on_uar(tmp_path: Path) -> None:
    """trials.parquet and pareto.json copied without sweep.json (which `avdis report` still reads): the sweep's own
    pareto.json names UAR, and the report redrew it on accuracy, with no word, a front the sweep never chose."""
    url = str(tmp_path / "demo")
    table = [{**r, "emotion_uar_chance": 0.25, "val_emotion_uar": r["emotion_uar"], "val_leakage": r["leakage"]}
             for r in rows()]
    results.record(url, table, "demo", emotion="uar")  # as the sweep's recorder writes them
    assert results.axes_of(url) == pareto.axes("uar")
    written, *_ = files.write_report(url)
    summary = json.loads(Path(written["pareto.json"]).read_text())
    assert summary["objectives"] == {"emotion_uar": "max", "leakage": "min"}
    assert summary["reference"] == {"emotion_uar": 0.25, "leakage": 1.0}
    assert "emotion UAR vs identity leakage" in Path(written["pareto.html"]).read_text()
    (tmp_path / "demo" / results.PARETO).unlink()  # nothing names the metric: accuracy's, as before the setting
    assert results.axes_of(url) == pareto.ACC


DAMAGED_SPECS = {  # what `avdis report` and the page read sweep.json's emotion metric from, damaged
    "cut short": ('{"spec": {"sweep": ', "not readable JSON"),
    "no object": ('["val_emotion_uar", "val_leakage"]', "no sweep record"),
    "no spec": ('{"selection": ["val_emotion_uar", "val_leakage"]}', "no sweep record"),
    "selection of a wrong type": ('{"spec": {}, "selection": "val_emotion_uar"}', "selection 'val_emotion_uar'"),
    "a newer avdis's metric": ('{"spec": {}, "selection": ["val_emotion_f1", "val_leakage"]}',
                               "selection ['val_emotion_f1', 'val_leakage']"),
}


@pytest.mark.parametrize("text, said", DAMAGED_SPECS.values(), ids=DAMAGED_SPECS)
def test_a_damaged_sweep_json_is_refused_naming_it_and_its_pareto_json_kept(tmp_path: Path, capsys, text: str,
                                                                          said: str) -> None:
    """A UAR sweep whose sweep.json is not an object, has no spec, or whose selection is of a wrong type or names a
    metric this avdis does not know (a newer avdis's) was reported on accuracy without a word: `avdis report` exited
    0 and wrote an accuracy pareto.json over the sweep's own UAR one. It now refuses (exit 1), naming the file, what
    is wrong and what to do, and leaves pareto.json as it was."""
    from avdis.cli import main

    url = str(tmp_path / "demo")
    table = [{**r, "emotion_uar_chance": 0.25, "val_emotion_uar": r["emotion_uar"], "val_leakage": r["leakage"]}
             for r in rows()]
    results.record(url, table, "demo", emotion="uar")  # as the sweep's recorder writes them
    kept = (tmp_path / "demo" / results.PARETO).read_bytes()
    (tmp_path / "demo" / results.SPEC).write_text(text)
    assert main(["report", url]) == 1
    err = capsys.readouterr().err
    assert f"avdis report: error: {url}/sweep.json: " in err and said in err, err
    assert "restore it from a copy" in err, err  # and, for a newer avdis's, to report it with that one
    assert (tmp_path / "demo" / results.PARETO).read_bytes() == kept
    assert not (tmp_path / "demo" / files.HTML).exists()


def test_a_sweep_json_of_an_avdis_before_the_emotion_metric_is_reported_on_accuracy(tmp_path: Path) -> None:
    """One written before `selection` (no such key) chose on accuracy: it is no damage."""
    url = str(tmp_path / "demo")
    results.write_trials(url, rows())
    (tmp_path / "demo" / results.SPEC).write_text('{"spec": {"sweep": {"name": "demo"}}}')
    assert results.axes_of(url) == pareto.ACC
    summary = json.loads(Path(files.write_report(url).written["pareto.json"]).read_text())
    assert summary["objectives"] == {"emotion_acc": "max", "leakage": "min"}
