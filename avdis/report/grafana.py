"""The Grafana dashboard for sweeps: a JSON model built here, exported or pushed.

It reads the gauges `avdis.report.metrics` publishes (as Ray exports them, `ray_`
prefixed) from the Prometheus datasource with uid `avdis-prometheus` (provisioned by
infra/grafana). Its trial panels plot the chosen sweep's emotion metric (variable `emotion`, acc or
uar, read from the sweep's `avdis_sweep_emotion_metric`), the one its front and hypervolume are on. Every query
selects the chosen sweep's series of that metric (`_chosen`): a sweep name used again under the other metric offers
both, each with its own trials (the panels drew both sweeps' trials under one axis title).
`export` writes the file checked in under infra/grafana/dashboards; `push` uploads it through
Grafana's HTTP API with a token read only from the environment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from avdis.errors import AvdisError, UsageError
from avdis.storage import NotWritableError
from avdis.report import metrics

UID = "avdis-pareto"
SCHEMA_VERSION = 39  # Grafana 10.3-11.0 JSON model; newer Grafanas migrate it on load
DATASOURCE = {"type": "prometheus", "uid": "avdis-prometheus"}
EMOTION = metrics.RAY_PREFIX + metrics.EMOTION_PREFIX + "$emotion"  # the sweep's: ..._acc or ..._uar
EMOTION_METRIC = metrics.RAY_PREFIX + metrics.EMOTION_METRIC
LEAKAGE = metrics.RAY_PREFIX + metrics.LEAKAGE
HYPERVOLUME = metrics.RAY_PREFIX + metrics.HYPERVOLUME
FAILED = metrics.RAY_PREFIX + metrics.FAILED
STOPPED = metrics.RAY_PREFIX + metrics.STOPPED
RUNNING = metrics.RAY_PREFIX + metrics.RUNNING
PROBED_EPOCH = metrics.RAY_PREFIX + metrics.PROBED_EPOCH
STOPPED_COLUMN = "stopped at a rung"
RUNNING_COLUMN = "running"
FAILED_COUNT = "failed or lost"
EPOCH_COLUMN = "values of epoch"  # a running trial's are of its last probe, not of the epoch it trains
TAGGED = '{sweep="$sweep",metric="$emotion"}'  # the chosen sweep's series on the chosen metric
UNTAGGED = '{sweep="$sweep",metric=""}'  # its series as an avdis before the `metric` tag published them


def _instant(ref: str, expr: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "expr": expr, "instant": True, "range": False, "format": "table"}


def _organize(rename: dict[str, str], exclude: list[str], order: list[str] | None = None) -> dict[str, Any]:
    return {"id": "organize", "options": {
        "excludeByName": {name: True for name in exclude},
        "renameByName": rename,
        "indexByName": {name: i for i, name in enumerate(order or [])},
    }}


def _chosen(metric: str, of: Callable[[str], str] = str) -> str:
    """`of` the chosen sweep's series of `metric` on the chosen emotion metric, or of its series without the `metric`
    tag where it has no tagged one in the time range (an avdis before the tag published the sweep). Not both: a sweep
    name used by such an avdis and again under the other metric by this one drew the first sweep's trials and
    hypervolume beside the second's, as `metric=~"$emotion|"` did. `@ end()` judges the whole range in a range
    query (the hypervolume panel's) too (Prometheus 2.33 or later)."""
    tagged = f"{metric}{TAGGED}"
    return f"({of(tagged)} or ({of(metric + UNTAGGED)} unless on () last_over_time({tagged}[$__range] @ end())))"


def _sweep(metric: str, by: str) -> str:
    return f"max by ({by}) ({_chosen(metric)})"


def _placed(selected: str) -> str:
    """When `selected`'s series last had a sample in the time range, to one step (`_newest`)."""
    placed = f"timestamp(last_over_time({selected}[$__interval]))"
    return f"({placed} or max_over_time({placed}[$__range:$__interval]))"


def _newest(metric: str, by: str) -> str:
    """Each trial's last value in the dashboard's time range, from the driver that published it last.

    A plain instant query sees only series scraped in the last 5 minutes (Prometheus's
    lookback), and a sweep's gauges go stale as soon as its Ray exits: the trial panels
    would go blank when the sweep ends. `last_over_time` over `$__range` keeps them. A
    resumed sweep's new driver publishes every trial again as new series (Ray labels each
    with its own WorkerId and SessionName), so a trial has one series per driver in range:
    only the one whose last sample is newest counts (a `max` over them showed a value from
    before the restart, such as a running trial's mid-training leakage, where it was larger).

    A series' last sample is placed to one step, Grafana's `$__interval` (the range over the
    panel's width in pixels, at least the scrape interval: about 20s over 6 hours, 10m over 7
    days): `timestamp(last_over_time(...[$__interval]))` is the end of each step holding a sample,
    taken now and at every step in range. Range selectors skip staleness markers, so a series
    of a driver that has exited, even one that lived less than a step, is placed too. The
    subquery's default step, Prometheus's evaluation interval (5 s), cost one evaluation per 5 s
    in range per series (121k over 7 days, each panel refresh); this costs about one per pixel.
    The window it leaves: two drivers' series whose last samples fall in one step tie, and
    the panel shows the larger of their values. So a resumed sweep's new driver shows from one
    step after the old driver's last scrape on (never, if it too stopped within that step).
    """
    seen = _chosen(metric, _placed)
    newest = f"({seen} == on (trial) group_left () max by (trial) ({seen}))"
    return f"max by ({by}) ({_chosen(metric, lambda selected: f'last_over_time({selected}[$__range])')} and {newest})"


def _latest(metric: str, by: str) -> str:
    """A trial panel's query: `_newest`, less the trials whose newest `avdis_trial_failed` is 1 (Ray exports no
    sample for the NaN their gauges are set to, so their last values in range are from before they failed)."""
    return f"{_newest(metric, by)} unless on (trial) ({_newest(FAILED, 'trial')} > 0)"


def _drawn(metric: str) -> str:
    """The Pareto chart's query: `_latest`, less the trials whose newest `avdis_trial_stopped` or
    `avdis_trial_running` is 1. A trial stopped at a rung holds values of fewer epochs, a running one mid-training
    values, both on no front; drawn like a finished trial, such an early point could stand beyond every finished one
    (the pages draw them apart, as crosses and hollow; an XY chart draws every point alike)."""
    left_out = " or ".join(f"{_newest(gauge, 'trial')} > 0" for gauge in (STOPPED, RUNNING))
    return f"{_latest(metric, 'trial')} unless on (trial) ({left_out})"


def _count(trials: str) -> str:
    """How many trials the instant vector `trials` (one series per trial) holds; 0 where it holds none (`count` of
    nothing is no result, and a stat panel would say "No data" where a sweep has no failed trial)."""
    return f"count({trials}) or vector(0)"


def _flagged(gauge: str) -> str:
    """The trials whose newest value of the 0/1 `gauge` is 1."""
    return f"{_newest(gauge, 'trial')} > 0"


def _emotion_variable() -> dict[str, Any]:
    """The sweep's emotion metric, for the trial panels' queries and labels: the `metric` tag of its
    `avdis_sweep_emotion_metric` in the time range, acc where it has none (a sweep published by an avdis before the
    gauge: accuracy was all it chose on). A `query_result` variable: `label_values` has no fallback, and an empty
    variable left the panels' gauge name unfinished. Refreshed on a time range change, as `$__range` needs. A sweep
    name used under both metrics offers both: the panels show the trials of the one chosen (`_chosen`)."""
    published = f'max by (metric) (last_over_time({EMOTION_METRIC}{{sweep="$sweep"}}[$__range]))'
    query = f'query_result({published} or on () label_replace(vector(1), "metric", "acc", "", ""))'
    return {
        "name": "emotion", "label": "emotion metric", "type": "query", "datasource": DATASOURCE,
        "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "sort": 0, "multi": False, "includeAll": False, "hide": 0, "regex": '/metric="(acc|uar)"/',
        "current": {}, "options": [], "skipUrlSync": False,
    }


def _pareto_panel() -> dict[str, Any]:
    """XY chart: one point per finished trial not stopped at a rung, leakage (x) against the sweep's emotion metric
    (y), joined on `trial`."""
    return {
        "id": 1, "type": "xychart",
        "title": "Pareto: emotion $emotion vs identity leakage (one point per finished trial, less those stopped at a "
                 "rung)",
        "description": "A trial MO-ASHA stopped at a rung is left out: its values are of fewer epochs, on no front; so "
                       "is a running trial: its values are mid-training. The Trials table lists both "
                       f"({STOPPED_COLUMN}: yes, {RUNNING_COLUMN}: yes).",
        "datasource": DATASOURCE, "gridPos": {"h": 12, "w": 14, "x": 0, "y": 4},
        "targets": [_instant("A", _drawn(LEAKAGE)), _instant("B", _drawn(EMOTION))],
        "transformations": [
            {"id": "joinByField", "options": {"byField": "trial", "mode": "inner"}},
            _organize({"Value #A": "leakage", "Value #B": "emotion"}, ["Time", "Time 1", "Time 2"]),
        ],
        "fieldConfig": {
            "defaults": {"max": 1, "unit": "percentunit", "custom": {
                "show": "points", "pointSize": {"fixed": 8}, "axisPlacement": "auto",
                "hideFrom": {"legend": False, "tooltip": False, "viz": False},
            }},
            "overrides": [
                # no floor on leakage: a probe below its label-only chance reads below 0, and a trial there
                # must not fall off the chart
                {"matcher": {"id": "byName", "options": "leakage"},
                 "properties": [{"id": "custom.axisLabel", "value": "identity leakage (lower is better)"}]},
                {"matcher": {"id": "byName", "options": "emotion"},
                 "properties": [{"id": "custom.axisLabel", "value": "emotion $emotion"}, {"id": "min", "value": 0}]},
            ],
        },
        "options": {
            "seriesMapping": "manual",
            "dims": {"frame": 0, "x": "leakage", "exclude": []},
            "series": [{"name": "trials", "x": "leakage", "y": "emotion", "show": "points",
                        "pointColor": {"fixed": "blue"}, "pointSize": {"fixed": 8, "min": 4, "max": 16}}],
            "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }


def _hypervolume_panel() -> dict[str, Any]:
    return {
        "id": 2, "type": "timeseries", "title": "Hypervolume of the Pareto front (emotion $emotion)",
        "datasource": DATASOURCE, "gridPos": {"h": 12, "w": 10, "x": 14, "y": 4},
        "targets": [{"refId": "A", "datasource": DATASOURCE, "expr": _sweep(HYPERVOLUME, "sweep"),
                     "range": True, "instant": False, "legendFormat": "{{sweep}}"}],
        "fieldConfig": {"defaults": {"min": 0, "unit": "none", "custom": {"drawStyle": "line", "lineInterpolation": "stepAfter",
                                                                        "showPoints": "auto"}}, "overrides": []},
        "options": {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": ["lastNotNull"]},
                    "tooltip": {"mode": "single", "sort": "none"}},
    }


def _trials_panel() -> dict[str, Any]:
    """Table of trials: leakage and the sweep's emotion metric (its column named `emotion_acc` or `emotion_uar`), the
    epoch they are of and whether the trial was stopped at a rung or is running merged into one row per (trial,
    method). A running trial's values are of its last probed epoch; without that column they read as the newest
    epoch's. A sweep published before the gauge leaves the column empty."""
    stopped = [{"type": "value", "options": {"0": {"text": "no", "index": 0},
                                             "1": {"text": "yes (on no front)", "index": 1}}}]
    running = [{"type": "value", "options": {"0": {"text": "no", "index": 0},
                                             "1": {"text": "yes (mid-training values)", "index": 1}}}]
    return {
        "id": 3, "type": "table", "title": "Trials", "datasource": DATASOURCE,
        "gridPos": {"h": 10, "w": 24, "x": 0, "y": 16},
        "targets": [_instant("A", _latest(LEAKAGE, "trial, method")), _instant("B", _latest(EMOTION, "trial, method")),
                    _instant("C", _latest(STOPPED, "trial, method")), _instant("D", _latest(RUNNING, "trial, method")),
                    _instant("E", _latest(PROBED_EPOCH, "trial, method"))],
        "transformations": [
            {"id": "merge", "options": {}},
            _organize({"Value #A": "leakage", "Value #B": "emotion", "Value #C": STOPPED_COLUMN,
                       "Value #D": RUNNING_COLUMN, "Value #E": EPOCH_COLUMN}, ["Time"],
                      ["trial", "method", "emotion", "leakage", EPOCH_COLUMN, STOPPED_COLUMN, RUNNING_COLUMN]),
        ],
        "fieldConfig": {"defaults": {"decimals": 3, "custom": {"align": "auto"}}, "overrides": [
            # a display name expands dashboard variables; the organize transformation's names do not
            {"matcher": {"id": "byName", "options": "emotion"}, "properties": [{"id": "displayName",
                                                                                "value": "emotion_$emotion"}]},
            {"matcher": {"id": "byName", "options": EPOCH_COLUMN}, "properties": [{"id": "decimals", "value": 0}]},
            {"matcher": {"id": "byName", "options": STOPPED_COLUMN}, "properties": [{"id": "mappings", "value": stopped}]},
            {"matcher": {"id": "byName", "options": RUNNING_COLUMN}, "properties": [{"id": "mappings", "value": running}]},
        ]},
        "options": {"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "leakage", "desc": False}],
                    "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
    }


def _counts_panel() -> dict[str, Any]:
    """Stat: the sweep's trials by state, from each trial's newest flags (`_newest`, a resumed sweep's trial counted
    once). The trial panels leave failed trials out, so without it a sweep where half the trials failed looked like a
    smaller healthy one, and one where every trial failed like one with none yet. FAILED is 1 for a trial lost to a
    killed driver too (the pages count those apart: no gauge tells them apart here)."""
    states = [("trials", _newest(FAILED, "trial")),  # every trial published has the flag, 0 or 1
              ("completed", f"{_newest(FAILED, 'trial')} == 0 unless on (trial) "
                           f"({_flagged(STOPPED)} or {_flagged(RUNNING)})"),
              (STOPPED_COLUMN, _flagged(STOPPED)), (RUNNING_COLUMN, _flagged(RUNNING)),
              (FAILED_COUNT, _flagged(FAILED))]
    alarm = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}
    return {
        "id": 4, "type": "stat", "title": "Trials by state", "datasource": DATASOURCE,
        "description": f"{FAILED_COUNT}: trials that ended in an error or were lost to a killed driver "
                       f"({FAILED} 1); the other panels leave them out. completed: trained all "
                       f"their epochs; {STOPPED_COLUMN}: stopped by MO-ASHA (on no front).",
        "gridPos": {"h": 4, "w": 24, "x": 0, "y": 0},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": _count(trials), "instant": True,
                     "range": False, "format": "time_series", "legendFormat": name}
                    for i, (name, trials) in enumerate(states)],
        "fieldConfig": {"defaults": {"decimals": 0, "unit": "none", "color": {"mode": "thresholds"},
                                     "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]}},
                        "overrides": [{"matcher": {"id": "byName", "options": FAILED_COUNT},
                                       "properties": [{"id": "thresholds", "value": alarm}]}]},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "vertical", "textMode": "value_and_name", "colorMode": "value",
                    "graphMode": "none", "justifyMode": "auto"},
    }


def dashboard_json() -> dict[str, Any]:
    """The dashboard in Grafana's classic JSON model (schemaVersion pinned)."""
    # every sweep that published: its hypervolume is set at each publish (0 before a front), where a trial's leakage
    # is not before its first probe, nor for a failed one (NaN): a starting sweep, and one whose every trial failed,
    # were not offered
    variable_query = f"label_values({HYPERVOLUME}, sweep)"
    return {
        "id": None, "uid": UID, "title": "avdis: Pareto front of emotion accuracy or UAR vs identity leakage",
        "description": "Ray Tune sweeps of avdis disentanglement methods (gauges from avdis.report.metrics).",
        "tags": ["avdis", "ray", "pareto"], "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
        "timezone": "browser", "refresh": "10s", "time": {"from": "now-6h", "to": "now"},
        "graphTooltip": 0, "fiscalYearStartMonth": 0, "liveNow": False, "links": [],
        "annotations": {"list": []},
        "templating": {"list": [{
            "name": "sweep", "label": "sweep", "type": "query", "datasource": DATASOURCE,
            "definition": variable_query, "query": {"query": variable_query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "sort": 1, "multi": False, "includeAll": False, "hide": 0, "regex": "",
            "current": {}, "options": [], "skipUrlSync": False,
        }, _emotion_variable()]},
        "panels": [_counts_panel(), _pareto_panel(), _hypervolume_panel(), _trials_panel()],
    }


def render() -> str:
    """The dashboard file's exact text: sorted keys, indent 2, trailing newline."""
    return json.dumps(dashboard_json(), sort_keys=True, indent=2) + "\n"


def export(path: str | os.PathLike[str]) -> str:
    """Write the dashboard file to `path` (the checked-in copy is infra/grafana/dashboards/avdis-pareto.json)."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render())
    except OSError as exc:  # a folder given for the file, a file where a folder should be, no permission
        raise NotWritableError(f"{out}: not writable ({exc.strerror or exc}); give a file path you can write to, "
                               "e.g. avdis-pareto.json") from None
    return str(out)


def push(url: str, folder_uid: str | None = None, overwrite: bool = False, token_env: str = "GRAFANA_TOKEN") -> dict[str, Any]:
    """Upload the dashboard (POST /api/dashboards/db) after checking GET /api/health; return Grafana's answer."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException, TokenAuth

    where = urlsplit(url)
    if where.scheme not in ("http", "https") or not where.hostname:  # "localhost:3000" was asked for as
        # localhost://None/3000api/health, and said "No connection adapters were found"
        raise UsageError(f"--url {url!r} is not a Grafana URL; give its base URL with the scheme, e.g. "
                         "http://localhost:3000 (or https://host/grafana where it is served under a path)")
    token = os.environ.get(token_env)
    if not token:
        raise UsageError(f"environment variable {token_env} is not set; put a Grafana service-account token "
                         f"(Editor role) in it, e.g. `export {token_env}=...`")
    # one "/" after the path: grafana_client puts "api" right after it, so a Grafana served under a path
    # (http://host/grafana, behind a proxy) was asked for /grafanaapi/health
    api = GrafanaApi.from_url(url.rstrip("/") + "/", credential=TokenAuth(token), timeout=15.0)
    try:
        health = api.client.GET("/health")
        if not isinstance(health, dict) or health.get("database") != "ok":
            raise AvdisError(f"Grafana at {url} is not healthy (GET /api/health answered {health!r})")
        return api.dashboard.update_dashboard({"dashboard": dashboard_json(), "folderUid": folder_uid, "overwrite": overwrite})
    except GrafanaClientError as exc:
        if exc.status_code in (401, 403):
            raise AvdisError(f"Grafana at {url} refused the token in ${token_env} (HTTP {exc.status_code}); "
                             "use a service-account token with the Editor role") from None
        if exc.status_code == 412:  # Grafana's documented reasons: the uid's dashboard changed since
            # (version-mismatch), or one of this title in the folder, of this uid or another (name-exists)
            reply = exc.response if isinstance(exc.response, dict) else {}
            if reply.get("status") == "name-exists":
                raise AvdisError(f"Grafana at {url} kept its dashboard: {reply.get('message')}; pass --overwrite to "
                                 f"replace it (one of another uid than {UID!r} too, a copy imported by hand), or "
                                 "--folder-uid to push into another folder") from None
            said = f" ({reply['message']})" if reply.get("message") else ""
            raise AvdisError(f"Grafana at {url} already has a dashboard with uid {UID!r}{said}; "
                             "pass --overwrite to replace it") from None
        raise AvdisError(f"Grafana at {url} rejected the dashboard (HTTP {exc.status_code}: {exc.message})") from None
    except (GrafanaException, OSError) as exc:
        raise AvdisError(f"cannot reach Grafana at {url} ({type(exc).__name__}: {exc}); check the URL") from None
