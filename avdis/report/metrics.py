"""Publish a sweep's results as Ray metrics, which Prometheus scrapes and Grafana shows.

Ray exports a gauge made through `ray.util.metrics` named `avdis_trial_leakage` as
`ray_avdis_trial_leakage`; `avdis.report.grafana` queries those exported names.
Gauges are created once per process (Ray refuses a second registration with other
tags). Trials without a value are skipped, and the count is returned. A trial that ended in an error has
`avdis_trial_failed` 1 (0 for every other trial), a lost one too (`results.LOST`: its values are mid-training, no
result either; at 0 Grafana drew them as a finished trial's), and the dashboard's trial panels leave
out the trials whose latest value of it is 1: its accuracy and leakage gauges are set to NaN,
but Ray 2.60 exports no sample for a NaN gauge, so Prometheus kept the value it reported while
running, and the panels (which read each series' last value in range) showed it as its result. A trial MO-ASHA
stopped at a rung has `avdis_trial_stopped` 1 (0 for every other trial): its values are of fewer epochs, on no
front, so the dashboard's Pareto chart leaves it out and its table says so (the pages draw it apart). It stood on
the chart like a finished trial, its early-epoch point often beyond every finished one. A running trial has
`avdis_trial_running` 1 (0 once it has ended): its values are mid-training, of its last probed epoch, and the chart
leaves it out too while its table says so (the pages draw it hollow, on no front). `avdis_trial_probed_epoch` is
the epoch a trial's accuracy and leakage are of, its last that ran the leakage probe (`probed_epoch` of
trials.parquet): a running trial trains on between MO-ASHA's rungs, where none runs, so its values are of an earlier
epoch than it has trained, and the table says which. Each trial has both emotion metrics, `avdis_trial_emotion_acc`
and `avdis_trial_emotion_uar`; `avdis_sweep_emotion_metric` (1, tagged `metric` acc or uar) says which of them the
sweep's front and hypervolume are on (`sweep.emotion_metric`, named by pareto.json's objectives), so the dashboard
plots that one: it plotted accuracy beside a UAR sweep's hypervolume, which is UAR's. Every trial gauge and the
hypervolume are tagged `metric` with it too: a sweep name used again under the other metric (a second sweep of that
name, or one run again into another storage) published its trials under the same tags, and the dashboard, whichever
metric was chosen, drew both sweeps' trials under one axis title.

Ray 2.60 stops exporting a gauge about 20 s after it was last set (measured at export intervals of 1 s and 10 s),
while the process lives. A sweep's results come once per trial epoch, minutes apart on real data, so its series
left Prometheus between results (the hypervolume panel drew a stub after each). So `publish` keeps setting each
sweep's latest values every KEEP_S seconds, in a daemon thread, until `forget` (the sweep's end) or the process
exits; then they go stale within that time.

Ray's driver hands its gauges to its node's exporter every `metrics_report_interval_ms` (10 s by default), and
Prometheus takes them from there at its scrape interval (5 s in infra/prometheus/prometheus.yml). A sweep's last result
is its end, and its process exited within a second of it: the exporter never held its last values, and Prometheus kept
those of 10-15 s before (the trials that ended last stood as running, off the Pareto chart, for ever after; the trials
that started and ended in that time were never there, and the hypervolume was an older front's). `settle` holds a
sweep's last values until its node's exporter holds them and for a scrape interval more; the sweep's entry point calls
it once the sweep has run (some seconds more at its end; not on Ctrl-C, which ends it at once).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import urllib.request
from typing import Any

import pandas as pd

from avdis.config import EMOTION_METRICS
from avdis.numbers import finite
from avdis.results import pareto

EMOTION_PREFIX = "avdis_trial_emotion_"  # then the metric: the dashboard names the gauge of its sweep's
EMOTION_ACC = EMOTION_PREFIX + "acc"
EMOTION_UAR = EMOTION_PREFIX + "uar"
EMOTION_METRIC = "avdis_sweep_emotion_metric"
LEAKAGE = "avdis_trial_leakage"
HYPERVOLUME = "avdis_sweep_hypervolume"
FAILED = "avdis_trial_failed"
STOPPED = "avdis_trial_stopped"
RUNNING = "avdis_trial_running"
PROBED_EPOCH = "avdis_trial_probed_epoch"
SWEEP_TAGS = ("sweep", "metric")  # metric: the sweep's emotion metric, acc or uar, which tells two sweeps of one name
TRIAL_TAGS = (*SWEEP_TAGS, "trial", "method")
RAY_PREFIX = "ray_"  # what Ray's Prometheus exporter puts before each name

log = logging.getLogger(__name__)

KEEP_S = 5.0  # well inside the ~20 s a gauge stays exported after it was set

# a trial's values are of its last probed epoch: called final, a running trial's mid-training ones read as its result
# (the gauges named as Prometheus shows them)
OF_EPOCH = (f" at its {RAY_PREFIX + PROBED_EPOCH}: mid-training while {RAY_PREFIX + RUNNING} is 1, of fewer epochs "
            f"where {RAY_PREFIX + STOPPED} is 1, final once it completed")

_gauges: dict[str, Any] = {}
_kept: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}  # sweep -> its latest results, set again every KEEP_S
_lock = threading.Lock()  # one setter at a time: the keeper never sets older values over newer ones
_keeper: threading.Thread | None = None


def _gauge(name: str, description: str, tags: tuple[str, ...]) -> Any:
    if name not in _gauges:
        from ray.util.metrics import Gauge

        _gauges[name] = Gauge(name, description=description, tag_keys=tags)
    return _gauges[name]


def publish(sweep: str, trials: pd.DataFrame, summary: dict[str, Any]) -> int:
    """Set the per-trial and per-sweep gauges, and keep them set until `forget`; return how many values were
    skipped as missing."""
    global _keeper
    with _lock:
        _kept[sweep] = (trials, summary)
        if _keeper is None:
            _keeper = threading.Thread(target=_keep, name="avdis-gauges", daemon=True)
            _keeper.start()
        return _set(sweep, trials, summary)


def forget(sweep: str) -> None:
    """Stop setting the sweep's gauges again: Ray stops exporting them, as when the process exits."""
    with _lock:
        _kept.pop(sweep, None)


def settle(sweep: str, scrape_s: float) -> bool:
    """Return once this driver's node exports the sweep's last published values (each trial's `avdis_trial_running`
    and the hypervolume) and has for `scrape_s` (Prometheus's scrape interval: `sweep.prometheus_scrape_s`), so
    Prometheus's last scrape of them is the sweep's end, not values of a report interval before. At once for a
    `scrape_s` of 0 (no Prometheus scrapes: nothing to wait for). False at once under Ray Client (this process is no
    node's: no endpoint of it to watch), and where the exporter was not seen to hold them within Ray's report
    interval and a margin, after waiting that long."""
    import ray
    from ray._raylet import Config

    from avdis.runtime import is_ray_client

    with _lock:
        kept = _kept.get(sweep)
    if kept is None or not ray.is_initialized() or not scrape_s:
        return True
    if is_ray_client():
        return False
    trials, summary = kept
    metric = _emotion_metric(summary) or "acc"
    want = {str(row.trial_id): 1.0 if row.status == "RUNNING" else 0.0 for row in trials.itertuples()}
    hv = finite(summary.get("hypervolume"))
    deadline = time.monotonic() + Config.metrics_report_interval_ms() / 1000 + 2 * KEEP_S
    endpoint = _endpoint()
    while time.monotonic() < deadline:
        seen = None if endpoint is None else _exported(endpoint, sweep, metric)
        if (seen is not None and all(seen[0].get(trial) == flag for trial, flag in want.items())
                and (hv is None or (seen[1] is not None and math.isclose(seen[1], hv)))):
            time.sleep(scrape_s)
            return True
        time.sleep(0.5)
    log.warning("the last values of sweep %s were not seen exported by Ray (%s); Prometheus may hold older ones",
                sweep, endpoint or "no metrics endpoint of this driver's node found")
    return False


def _endpoint() -> str | None:
    """The metrics URL of this driver's node, the one its gauges are exported at; None where Ray names none."""
    import ray

    try:
        me = ray.get_runtime_context().get_node_id()
        node = next(n for n in ray.nodes() if n["NodeID"] == me)
        return f"http://{node['NodeManagerAddress']}:{int(node['MetricsExportPort'])}/metrics"
    except Exception:  # noqa: BLE001 - a node Ray does not list (gone): settle waits its time, then says so
        return None


def _exported(endpoint: str, sweep: str, metric: str) -> tuple[dict[str, float], float | None] | None:
    """What the endpoint exports now of this driver's gauges of the sweep: each trial's running flag, and the
    hypervolume (None for none); None where it cannot be read."""
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(endpoint, timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    # avdis's lines alone: a cluster head exports Ray's own metrics of every worker beside them, polled every 0.5 s
    text = "\n".join(line for line in text.splitlines() if RAY_PREFIX + "avdis_" in line) + "\n"
    worker = ray.get_runtime_context().get_worker_id()
    running: dict[str, float] = {}
    hv = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            tags = sample.labels
            if tags.get("sweep") != sweep or tags.get("metric") != metric or tags.get("WorkerId") != worker:
                continue
            if sample.name == RAY_PREFIX + RUNNING:
                running[tags.get("trial", "")] = sample.value
            elif sample.name == RAY_PREFIX + HYPERVOLUME:
                hv = sample.value
    return running, hv


def _keep() -> None:
    while True:
        time.sleep(KEEP_S)
        with _lock:
            for sweep, (trials, summary) in list(_kept.items()):
                try:
                    _set(sweep, trials, summary)
                except Exception as exc:  # noqa: BLE001 - gauges are a view: said once, the sweep goes on
                    log.warning("gauges of sweep %s no longer kept set: %s", sweep, exc)
                    del _kept[sweep]


def _emotion_metric(summary: dict[str, Any]) -> str | None:
    """The emotion metric (acc, uar) whose test column pareto.json's `objectives` name; None in a summary without."""
    named = summary.get("objectives") or {}
    return next((m for m in EMOTION_METRICS if pareto.axes(m).emotion in named), None)


def _set(sweep: str, trials: pd.DataFrame, summary: dict[str, Any]) -> int:
    acc = _gauge(EMOTION_ACC, f"emotion accuracy of a trial (test split){OF_EPOCH}", TRIAL_TAGS)
    uar = _gauge(EMOTION_UAR, f"emotion unweighted average recall of a trial (test split){OF_EPOCH}", TRIAL_TAGS)
    leak = _gauge(LEAKAGE, f"identity leakage of a trial's z_emo (normalised probe accuracy, test split){OF_EPOCH}",
                  TRIAL_TAGS)
    hv = _gauge(HYPERVOLUME, "hypervolume of the sweep's Pareto front (its emotion metric max, leakage min; test "
                "split, the front chosen on validation clips)", SWEEP_TAGS)
    chosen = _gauge(EMOTION_METRIC, "1, tagged with the emotion metric (acc, uar) the sweep's front and hypervolume "
                    "are on (sweep.emotion_metric)", SWEEP_TAGS)
    failed = _gauge(FAILED, "1 for a trial that ended in an error, its own or lost to a killed driver (its accuracy "
                    "and leakage are no result), else 0", TRIAL_TAGS)
    stopped = _gauge(STOPPED, "1 for a trial the scheduler stopped at a rung (its accuracy and leakage are of fewer "
                     "epochs: on no front), else 0", TRIAL_TAGS)
    running = _gauge(RUNNING, "1 for a running trial (its accuracy and leakage are mid-training: on no front), else 0",
                     TRIAL_TAGS)
    probed = _gauge(PROBED_EPOCH, "the epoch a trial's accuracy and leakage are of: its last that ran the leakage "
                    "probe (a running trial trains on past it)", TRIAL_TAGS)
    metric = _emotion_metric(summary)
    on = {"sweep": sweep, "metric": metric or "acc"}  # accuracy where pareto.json names none, as summary_axes reads it
    skipped = 0
    for row in trials.itertuples():
        tags = {**on, "trial": str(row.trial_id), "method": str(row.method or "")}
        failed.set(1.0 if row.status == "ERROR" else 0.0, tags=tags)
        stopped.set(1.0 if row.status == "STOPPED" else 0.0, tags=tags)
        running.set(1.0 if row.status == "RUNNING" else 0.0, tags=tags)
        if row.status == "ERROR":  # its values (a non-finite objective's partner, or mid-training) are no result:
            for gauge in (acc, uar, leak):  # NaN, not its last value, which Grafana's front drew as a trial's
                gauge.set(math.nan, tags=tags)
            continue
        epoch = finite(getattr(row, "probed_epoch", None))  # unknown in a table written before it: no value
        if epoch is not None:
            probed.set(epoch, tags=tags)
        # emotion_uar: absent from a table made by hand without it (trials.parquet always has the column)
        for gauge, value in ((acc, row.emotion_acc), (uar, getattr(row, "emotion_uar", None)), (leak, row.leakage)):
            v = finite(value)
            if v is None:
                skipped += 1
            else:
                gauge.set(v, tags=tags)
    if metric is None:
        skipped += 1
    else:
        chosen.set(1.0, tags=on)
    v = finite(summary.get("hypervolume"))
    if v is None:
        skipped += 1
    else:
        hv.set(v, tags=on)
    return skipped
