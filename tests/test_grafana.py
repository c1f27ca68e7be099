"""The Grafana dashboard JSON, the provisioning files, and `push`.

No Grafana server can be installed here (it is not packaged in Debian, PyPI or npm),
so `push` is tested against a stdlib HTTP server in a thread that implements
Grafana's documented HTTP contract for the two calls it makes: `GET /api/health` and
`POST /api/dashboards/db` (Bearer token, body `{"dashboard", "folderUid",
"overwrite"}`, 200 with id/uid/url/status/version, 412 for an existing uid without
overwrite (version-mismatch) or another uid's dashboard of the same title in the folder (name-exists),
401 for a bad token, 403 for a token without write rights). The panels' queries, and the `emotion` variable's
`query_result` as Grafana's Prometheus datasource documents it, are run against a real Prometheus. Whether
Grafana draws the panels as intended is not tested here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import ROOT, free_port, refused_port, shutdown_ray
from avdis.errors import AvdisError, UsageError
from avdis import cli
from avdis.report import grafana, metrics

CHECKED_IN = ROOT / "infra" / "grafana" / "dashboards" / "avdis-pareto.json"
TOKEN = "glsa_test_token_0123456789"
VIEWER_TOKEN = "glsa_viewer_only"


def test_export_equals_the_checked_in_file(tmp_path: Path) -> None:
    out = grafana.export(tmp_path / "sub" / "avdis-pareto.json")
    assert Path(out).read_bytes() == CHECKED_IN.read_bytes(), \
        "regenerate: avdis grafana export --out infra/grafana/dashboards/avdis-pareto.json"
    assert CHECKED_IN.read_text().endswith("}\n")


def test_export_to_a_folder_or_under_a_file_is_refused_naming_it(tmp_path: Path, capsys) -> None:
    """Both ended in a traceback (IsADirectoryError, FileExistsError)."""
    (tmp_path / "a-file").write_text("")
    for out in (tmp_path, tmp_path / "a-file" / "x.json"):
        assert cli.main(["grafana", "export", "--out", str(out)]) == 2
        assert f"avdis grafana: error: {out}: not writable" in capsys.readouterr().err


def test_export_without_out_prints_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written relative to the working directory
    assert cli.main(["grafana", "export"]) == 0
    assert capsys.readouterr().out == CHECKED_IN.read_text()
    assert list(tmp_path.iterdir()) == []


def test_dashboard_model() -> None:
    board = json.loads(CHECKED_IN.read_text())
    assert board["id"] is None and board["uid"]  # a fixed uid, no id: a push overwrites the same dashboard
    panels = {p["type"]: p for p in board["panels"]}
    assert sorted(panels) == ["stat", "table", "timeseries", "xychart"]
    assert len({p["id"] for p in board["panels"]}) == 4

    var, emotion = board["templating"]["list"]
    assert var["name"] == "sweep" and var["query"]["query"] == "label_values(ray_avdis_sweep_hypervolume, sweep)"
    # the sweep's emotion metric (sweep.emotion_metric): a query variable on the chosen sweep's tag, acc where the
    # sweep published none (an avdis before the gauge); refreshed on a time range change, as $__range needs
    assert emotion["name"] == "emotion" and emotion["type"] == "query" and emotion["refresh"] == 2
    assert emotion["query"]["query"].startswith("query_result(") and emotion["definition"] == emotion["query"]["query"]
    assert 'ray_avdis_sweep_emotion_metric{sweep="$sweep"}' in emotion["query"]["query"]
    assert emotion["regex"] == '/metric="(acc|uar)"/'

    targets = [t for p in board["panels"] for t in p["targets"]]
    assert all(t["datasource"] == grafana.DATASOURCE for t in targets)  # the one provisioned datasource
    # the chosen sweep's series of the chosen metric: a name used again under the other metric holds other trials;
    # untagged ones (an avdis before the tag) only where it has none
    assert all('{sweep="$sweep",metric="$emotion"}' in t["expr"] and '{sweep="$sweep",metric=""}' in t["expr"]
               and 'metric=~' not in t["expr"] for t in targets)
    for kind in ("xychart", "table"):
        exprs = [t["expr"] for t in panels[kind]["targets"]]
        assert all(t["instant"] and t["format"] == "table" for t in panels[kind]["targets"])
        # a sweep's gauges go stale when its Ray exits; the trial panels keep each series' last value in range
        assert all("last_over_time(" in e and "[$__range]" in e for e in exprs)
        # a subquery's default step is Prometheus's evaluation interval: one evaluation per 5 s in range per series
        assert all(":]" not in e and "[$__range:$__interval]" in e for e in exprs)
        # the emotion axis is the sweep's metric: ray_avdis_trial_emotion_acc or ray_avdis_trial_emotion_uar
        assert any("ray_avdis_trial_leakage" in e for e in exprs)
        assert any('ray_avdis_trial_emotion_$emotion{sweep="$sweep",' in e for e in exprs)
        assert not any("ray_avdis_trial_emotion_acc" in e for e in exprs)
    assert panels["xychart"]["transformations"][0] == {"id": "joinByField", "options": {"byField": "trial", "mode": "inner"}}
    assert panels["xychart"]["options"]["series"][0]["x"] == "leakage"
    assert panels["xychart"]["options"]["series"][0]["y"] == "emotion"
    assert "$emotion" in panels["xychart"]["title"]  # Grafana interpolates variables in panel titles
    field = panels["xychart"]["fieldConfig"]
    floors = {o["matcher"]["options"]: [p["value"] for p in o["properties"] if p["id"] == "min"] for o in field["overrides"]}
    assert "min" not in field["defaults"] and floors == {"leakage": [], "emotion": [0]}  # leakage can be negative
    labels = {o["matcher"]["options"]: p["value"] for o in field["overrides"] for p in o["properties"]
              if p["id"] == "custom.axisLabel"}
    assert "$emotion" in labels["emotion"]
    # the table's emotion column is named after the sweep's metric (displayName expands variables)
    shown = {o["matcher"]["options"]: p["value"] for o in panels["table"]["fieldConfig"]["overrides"]
             for p in o["properties"] if p["id"] == "displayName"}
    assert shown == {"emotion": "emotion_$emotion"}
    assert panels["table"]["transformations"][0]["id"] == "merge"
    assert "by (trial, method)" in panels["table"]["targets"][0]["expr"]
    # a trial stopped at a rung is on no front, a running one's values are mid-training (the pages draw them as
    # crosses and hollow): the XY chart leaves both out, the table says which they are
    assert all("ray_avdis_trial_stopped" in t["expr"] and "ray_avdis_trial_running" in t["expr"]
               for t in panels["xychart"]["targets"])
    table_exprs = [t["expr"] for t in panels["table"]["targets"]]
    assert [("ray_avdis_trial_stopped" in e) for e in table_exprs] == [False, False, True, False, False]
    assert [("ray_avdis_trial_running" in e) for e in table_exprs] == [False, False, False, True, False]
    # a running trial's values are of its last probed epoch, not of the epoch it trains: the table says which
    assert [("ray_avdis_trial_probed_epoch" in e) for e in table_exprs] == [False, False, False, False, True]
    rename = panels["table"]["transformations"][1]["options"]["renameByName"]
    assert (rename["Value #C"], rename["Value #D"], rename["Value #E"]) == (grafana.STOPPED_COLUMN,
                                                                           grafana.RUNNING_COLUMN, grafana.EPOCH_COLUMN)
    mapped = {o["matcher"]["options"]: o["properties"][0]["value"][0]["options"]["1"]["text"]
              for o in panels["table"]["fieldConfig"]["overrides"] if o["properties"][0]["id"] == "mappings"}
    assert mapped == {grafana.STOPPED_COLUMN: "yes (on no front)", grafana.RUNNING_COLUMN: "yes (mid-training values)"}
    # the trials by state, failed ones too (the trial panels leave them out): 0 where a state has none, not no data
    legends = [t["legendFormat"] for t in panels["stat"]["targets"]]
    assert legends == ["trials", "completed", grafana.STOPPED_COLUMN, grafana.RUNNING_COLUMN, grafana.FAILED_COUNT]
    assert all(t["instant"] and t["expr"].endswith(" or vector(0)") for t in panels["stat"]["targets"])
    assert "ray_avdis_sweep_hypervolume" in panels["timeseries"]["targets"][0]["expr"]
    assert not panels["timeseries"]["targets"][0]["instant"]


def test_metric_names_match_what_ray_exports() -> None:
    # Ray 2.60 exports ray.util.metrics.Gauge(name) as f"{NAMESPACE}_{name}" (private module, pinned Ray)
    from ray._private.telemetry.open_telemetry_metric_recorder import NAMESPACE

    queries = json.dumps([t["expr"] for p in grafana.dashboard_json()["panels"] for t in p["targets"]])
    queries += json.dumps([v["query"]["query"] for v in grafana.dashboard_json()["templating"]["list"]])
    for gauge in (metrics.LEAKAGE, metrics.HYPERVOLUME, metrics.FAILED, metrics.STOPPED, metrics.RUNNING,
                  metrics.PROBED_EPOCH, metrics.EMOTION_METRIC):
        assert f"{NAMESPACE}_{gauge}" in queries, gauge
    for metric in ("acc", "uar"):  # the emotion gauges, named through $emotion
        gauge = {"acc": metrics.EMOTION_ACC, "uar": metrics.EMOTION_UAR}[metric]
        assert f"{NAMESPACE}_{gauge}" in queries.replace("$emotion", metric), gauge


def test_provisioning_files() -> None:
    prov = ROOT / "infra" / "grafana" / "provisioning"
    (ds,) = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert {"uid": ds["uid"], "type": ds["type"]} == grafana.DATASOURCE  # the datasource the panels query
    assert ds["url"] == "$PROMETHEUS_URL"
    (provider,) = yaml.safe_load((prov / "dashboards" / "avdis.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_prometheus_config() -> None:
    from ray._private.ray_constants import PROMETHEUS_SERVICE_DISCOVERY_FILE  # what each Ray head writes

    path = ROOT / "infra" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == [f"/tmp/ray/{PROMETHEUS_SERVICE_DISCOVERY_FILE}"]
    assert all(r.get("target_label") not in ("__address__", "instance") for r in job["relabel_configs"]), \
        "the relabel must not rewrite targets (it would break a cluster)"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
    check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


# ------------------------------------------------------------------ push


class FakeGrafana:
    """Grafana's documented /api/health and /api/dashboards/db behaviour, in memory."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix  # the path Grafana is served under (root_url behind a proxy), "" at the root
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.payloads: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(("GET", self.path, self.headers.get("Authorization")))
                if self.path == fake.prefix + "/api/health":
                    self._reply(200, {"commit": "test", "database": "ok", "version": "10.4.0"})
                else:
                    self._reply(404, {"message": "Not found"})

            def do_POST(self) -> None:  # noqa: N802
                auth = self.headers.get("Authorization")
                fake.requests.append(("POST", self.path, auth))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != fake.prefix + "/api/dashboards/db":
                    return self._reply(404, {"message": "Not found"})
                if auth == f"Bearer {VIEWER_TOKEN}":
                    return self._reply(403, {"message": "Access denied"})
                if auth != f"Bearer {TOKEN}":
                    return self._reply(401, {"message": "Unauthorized"})
                try:
                    payload = json.loads(body)
                    board, folder, overwrite = payload["dashboard"], payload["folderUid"], payload["overwrite"]
                    assert isinstance(board, dict) and board["uid"] and board["title"]
                    assert folder is None or isinstance(folder, str)
                    assert isinstance(overwrite, bool)
                except (ValueError, KeyError, AssertionError):
                    return self._reply(400, {"message": "bad request data"})
                fake.payloads.append(payload)
                with fake.lock:
                    uid = board["uid"]
                    titled = [other for other, held in fake.dashboards.items() if other != uid and held["folderUid"]
                              == folder and held["dashboard"]["title"] == board["title"]]
                    if titled and not overwrite:
                        return self._reply(412, {"message": "A dashboard with the same name in the folder already "
                                                 "exists", "status": "name-exists"})
                    if uid in fake.dashboards and not overwrite:
                        return self._reply(412, {"message": "The dashboard has been changed by someone else",
                                                 "status": "version-mismatch"})
                    version = fake.dashboards.get(uid, {}).get("version", 0) + 1
                    fake.dashboards[uid] = {"dashboard": board, "folderUid": folder, "version": version}
                self._reply(200, {"id": 1, "uid": uid, "url": f"/d/{uid}/avdis", "status": "success",
                                  "version": version, "slug": "avdis"})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


@contextmanager
def serving_grafana(prefix: str = "") -> Iterator[tuple[str, FakeGrafana]]:
    fake = FakeGrafana(prefix)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-grafana", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}", fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def fake_grafana() -> Iterator[tuple[str, FakeGrafana]]:
    with serving_grafana() as served:
        yield served


def test_push_creates_refuses_then_overwrites(fake_grafana, monkeypatch) -> None:
    url, fake = fake_grafana
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    first = grafana.push(url)
    assert first["status"] == "success" and first["uid"] == grafana.UID and first["version"] == 1
    assert fake.requests[:2] == [("GET", "/api/health", f"Bearer {TOKEN}"), ("POST", "/api/dashboards/db", f"Bearer {TOKEN}")]
    payload = fake.payloads[0]
    assert payload == {"dashboard": grafana.dashboard_json(), "folderUid": None, "overwrite": False}

    with pytest.raises(AvdisError, match="--overwrite"):
        grafana.push(url)
    again = grafana.push(url + "/", folder_uid="sweeps", overwrite=True)
    assert again["version"] == 2 and fake.dashboards[grafana.UID]["folderUid"] == "sweeps"


def test_push_where_a_copy_of_another_uid_holds_the_title_says_so(fake_grafana, monkeypatch) -> None:
    """A copy imported by hand under another uid holds the title in the folder: Grafana refuses with name-exists, and
    push said it had a dashboard with uid avdis-pareto, which it had not (--overwrite replaces the copy)."""
    url, fake = fake_grafana
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    fake.dashboards["imported"] = {"dashboard": {**grafana.dashboard_json(), "uid": "imported"}, "folderUid": None,
                                   "version": 1}
    with pytest.raises(AvdisError) as err:
        grafana.push(url)
    said = str(err.value)
    assert "same name in the folder" in said and "--overwrite" in said and "--folder-uid" in said
    assert "with uid 'avdis-pareto'" not in said
    grafana.push(url, folder_uid="sweeps")  # no copy there
    refused = "with uid 'avdis-pareto' \\(The dashboard has been changed by someone else\\); pass --overwrite"
    with pytest.raises(AvdisError, match=refused):
        grafana.push(url, folder_uid="sweeps")


@pytest.mark.parametrize("slash", ["", "/"])
def test_push_to_a_grafana_served_under_a_path(monkeypatch, slash: str) -> None:
    """Behind a proxy Grafana is served under a path (root_url http://host/grafana/): push asked for
    /grafanaapi/health, with the URL's slash or without it."""
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    with serving_grafana("/grafana") as (url, fake):
        assert grafana.push(url + slash)["status"] == "success"
    assert [path for _, path, _ in fake.requests] == ["/grafana/api/health", "/grafana/api/dashboards/db"]


@pytest.mark.parametrize("token, status", [("wrong-token", 401), (VIEWER_TOKEN, 403)])
def test_push_with_a_refused_token(fake_grafana, monkeypatch, token: str, status: int) -> None:
    url, fake = fake_grafana
    monkeypatch.setenv("AVDIS_GRAFANA", token)
    with pytest.raises(AvdisError, match=f"refused the token in \\$AVDIS_GRAFANA \\(HTTP {status}\\)") as err:
        grafana.push(url, token_env="AVDIS_GRAFANA")
    assert token not in str(err.value)
    assert not fake.dashboards


def test_push_needs_the_token_variable(fake_grafana, monkeypatch) -> None:
    url, fake = fake_grafana
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    with pytest.raises(UsageError, match="GRAFANA_TOKEN"):
        grafana.push(url)
    assert fake.requests == [], "nothing may be sent without a token"


@pytest.mark.parametrize("url", ["localhost:3000", "grafana.example.com", "ftp://grafana.example.com", "http://"])
def test_push_to_a_url_that_is_no_grafana_url_is_refused_naming_the_form(monkeypatch, url: str) -> None:
    """"localhost:3000" was asked for as localhost://None/3000api/health ("No connection adapters were found")."""
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    with pytest.raises(UsageError, match="give its base URL with the scheme, e.g. http://localhost:3000"):
        grafana.push(url)


def test_push_to_nothing_listening(monkeypatch) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    with refused_port() as port, pytest.raises(AvdisError, match="cannot reach Grafana") as err:
        grafana.push(f"http://127.0.0.1:{port}")
    assert TOKEN not in str(err.value)


# ------------------------------------------------------------------ the panels' queries against a real scrape


@contextmanager
def prometheus(tmp_path: Path, config: dict[str, Any], *flags: str) -> Iterator[int]:
    """Prometheus with `config`, its TSDB in tmp_path/tsdb, ready to query; yields its port."""
    import urllib.error
    import urllib.request

    from conftest import stop_process, wait_for_port

    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is not installed (make test installs it)")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             *flags], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, prom)
        deadline = time.monotonic() + 60
        while True:  # listening before its TSDB is loaded, answering 503 until then
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        stop_process(prom)
        log.close()


@contextmanager
def prometheus_for_ray(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """Prometheus with infra/prometheus/prometheus.yml, pointed at a Ray temp dir of its own; yields (port, temp dir)."""
    import tempfile

    temp = tempfile.mkdtemp(prefix="avdis-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cfg = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    cfg["scrape_configs"][0]["file_sd_configs"][0]["files"] = [f"{temp}/prom_metrics_service_discovery.json"]
    cfg["global"]["scrape_interval"] = "1s"
    cfg["scrape_configs"][0]["file_sd_configs"][0]["refresh_interval"] = "1s"
    try:
        with prometheus(tmp_path, cfg) as port:
            yield port, temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def instant(port: int, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Prometheus's answer to an instant query (GET /api/v1/query), as Grafana asks it: its result's series."""
    import urllib.error
    import urllib.parse
    import urllib.request

    query = {"query": expr, **({} if at is None else {"time": at})}
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(query)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # Prometheus's refusal, e.g. too many samples
        body = json.load(exc)
    assert body["status"] == "success", body
    return body["data"]["result"]


def emotion_options(port: int, sweep: str, range_: str = "10m", at: float | None = None) -> list[str]:
    """The `emotion` variable's options for `sweep`, as Grafana's Prometheus datasource works them out for a
    `query_result(QUERY)` variable (its documented templating contract; no Grafana runs here): QUERY, its variables
    interpolated, asked as an instant query at the range's end, each series written `name{k="v",...} value ms`,
    the variable's regex's first group taken from each, in order, once each."""
    import re

    (emotion,) = [v for v in grafana.dashboard_json()["templating"]["list"] if v["name"] == "emotion"]
    query = re.fullmatch(r"query_result\((.+)\)\s*", emotion["query"]["query"]).group(1)
    texts = []
    for r in instant(port, query.replace("$sweep", sweep).replace("$__range", range_), at):
        labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
        texts.append(r["metric"].get("__name__", "") + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items())
                     + "}" + f" {r['value'][1]} {int(float(r['value'][0]) * 1000)}")
    found = (re.search(emotion["regex"].strip("/"), text) for text in texts)
    return list(dict.fromkeys(m.group(1) for m in found if m))


def panels(port: int, sweep: str, range_: str = "10m", step: str = "15s", at: float | None = None,
           emotion: str | None = None) -> dict[str, dict[str, float]]:
    """The trial panels' queries as Grafana sends them (`range_` in range, $__interval `step`, evaluated at `at`, else
    now; $emotion `emotion`, else the variable's first option for the sweep): panel+refId -> {trial: value}."""
    emotion = emotion or emotion_options(port, sweep, range_, at)[0]
    out = {}
    for p in grafana.dashboard_json()["panels"]:
        for t in p["targets"]:
            if t.get("instant") and p["type"] != "stat":
                out[f"{p['type']} {t['refId']}"] = {r["metric"]["trial"]: float(r["value"][1]) for r in instant(
                    port, expanded(t["expr"], sweep, emotion, range_, step), at)}
    return out


def expanded(expr: str, sweep: str, emotion: str, range_: str, step: str) -> str:
    """`expr` with the dashboard's variables as Grafana interpolates them."""
    return (expr.replace("$sweep", sweep).replace("$emotion", emotion).replace("$__range", range_)
            .replace("$__interval", step))


def counts(port: int, sweep: str, range_: str = "10m", step: str = "15s") -> dict[str, float]:
    """The stat panel's values as Grafana shows them (its targets' queries as it sends them, each value under its
    legend; the sweep's `emotion` its first option): legend -> value, one value each."""
    (stat,) = [p for p in grafana.dashboard_json()["panels"] if p["type"] == "stat"]
    emotion = emotion_options(port, sweep, range_)[0]
    out = {}
    for t in stat["targets"]:
        (r,) = instant(port, expanded(t["expr"], sweep, emotion, range_, step))
        out[t["legendFormat"]] = float(r["value"][1])
    return out


class Backfill:
    """Gauges' samples at known times, written into Prometheus's TSDB as promtool backfills them (no Ray, no scrape
    timing): what a sweep's drivers exported, for the panels' queries to read back as Grafana sends them."""

    def __init__(self, times: range) -> None:
        self.times = times
        self.lines: dict[str, list[str]] = {}

    def gauge(self, name: str, labels: dict[str, str], value: float, times: range | None = None) -> None:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        self.lines.setdefault(name, []).extend(f"{name}{{{text}}} {value} {ts}" for ts in (self.times if times is None else times))

    def trial(self, tags: dict[str, str], acc: float, uar: float | None, times: range | None = None) -> None:
        """A trial's gauges as the report's metrics publish them: leakage 0.3, probed at epoch 4, neither failed,
        stopped nor running; its UAR only where it has one (an avdis before UAR published none)."""
        self.gauge(grafana.LEAKAGE, tags, 0.3, times)
        self.gauge(metrics.RAY_PREFIX + metrics.EMOTION_ACC, tags, acc, times)
        if uar is not None:
            self.gauge(metrics.RAY_PREFIX + metrics.EMOTION_UAR, tags, uar, times)
        for flag in (grafana.FAILED, grafana.STOPPED, grafana.RUNNING):
            self.gauge(flag, tags, 0, times)
        self.gauge(grafana.PROBED_EPOCH, tags, 4, times)

    def write(self, tmp_path: Path, *flags: str) -> None:
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
        text = "".join(f"# TYPE {name} gauge\n" + "\n".join(samples) + "\n" for name, samples in self.lines.items())
        (tmp_path / "sweeps.om").write_text(text + "# EOF\n")
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", *flags, str(tmp_path / "sweeps.om"),
                        str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=120)


def test_a_uar_sweeps_trial_panels_plot_its_uar_and_an_accuracy_sweeps_its_accuracy(tmp_path: Path) -> None:
    """The dashboard plotted `avdis_trial_emotion_acc` for every sweep, though a sweep under `sweep.emotion_metric:
    uar` chooses its front on UAR and its hypervolume gauge is UAR's. Gauges as Ray exports them written into
    Prometheus's TSDB at known times: a UAR sweep (its `avdis_sweep_emotion_metric` tagged uar), an accuracy sweep,
    and an accuracy sweep published by an avdis before that gauge. The `emotion` variable's query (as Grafana's
    datasource runs it) names each sweep's metric, and the trial panels' queries return that metric's values."""
    at = int(time.time()) // 60 * 60
    samples = Backfill(range(at - 300, at + 1, 15))
    acc, uar = {"a": 0.8, "b": 0.6}, {"a": 0.55, "b": 0.58}  # accuracy and UAR disagree on which is better
    for sweep, metric in (("uar-sweep", "uar"), ("acc-sweep", "acc"), ("old-sweep", None)):
        for trial in ("a", "b"):
            tags = {"sweep": sweep, "trial": trial, "method": "adversarial", "SessionName": "s"}
            samples.trial(tags, acc[trial], None if metric is None else uar[trial])
        if metric is not None:
            samples.gauge(grafana.EMOTION_METRIC, {"sweep": sweep, "metric": metric, "SessionName": "s"}, 1)
    samples.write(tmp_path)
    with prometheus(tmp_path, {"global": {"evaluation_interval": "5s"}, "scrape_configs": []}) as port:
        options = {sweep: emotion_options(port, sweep, at=at) for sweep in ("uar-sweep", "acc-sweep", "old-sweep")}
        seen = {sweep: panels(port, sweep, at=at) for sweep in options}
    assert options == {"uar-sweep": ["uar"], "acc-sweep": ["acc"], "old-sweep": ["acc"]}
    assert seen["uar-sweep"]["xychart B"] == seen["uar-sweep"]["table B"] == pytest.approx(uar)
    for sweep in ("acc-sweep", "old-sweep"):
        assert seen[sweep]["xychart B"] == seen[sweep]["table B"] == pytest.approx(acc)
    assert all(seen[sweep]["xychart A"] == {"a": pytest.approx(0.3), "b": pytest.approx(0.3)} for sweep in seen)


def test_the_trial_panels_over_a_week_hold_a_point_per_step_and_still_find_the_newest_driver(tmp_path: Path) -> None:
    """The panels found each series' last sample with a subquery at Prometheus's default step, its evaluation
    interval (5 s): over a 7-day range that is 121k evaluations, and points held, per series, each refresh. Two
    drivers' gauges written into Prometheus's TSDB at known times (no Ray, no scrape timing), queried at a 7-day
    range with the $__interval Grafana gives it (10m), under `--query.max-samples` set to what the range stores:
    the panels must answer, with the newest driver's value for `x` (its driver lived 2 minutes, between two steps,
    and ended more than the 5-minute lookback before the next: the step's instant lookup would miss it) and the
    last value of `y`, whose series went stale 3 days before."""
    at = int(time.time()) // 600 * 600  # on the 10m grid the subquery's steps fall on
    hour, samples = 3600, Backfill(range(0))

    def driver(trial: str, session: str, start: int, end: int, leakage: float) -> None:
        tags = {"sweep": "week", "trial": trial, "method": "adversarial", "SessionName": session}
        samples.gauge(grafana.LEAKAGE, tags, leakage, range(start, end + 1, 60))

    driver("x", "old", at - 168 * hour + 60, at - 2 * hour - 7, 0.9)  # the max, before the resume
    driver("x", "new", at - 2 * hour + 60, at - 2 * hour + 180, 0.3)
    driver("y", "old", at - 168 * hour + 60, at - 72 * hour, 0.5)
    samples.write(tmp_path, "--max-block-duration=170h")
    config = {"global": {"evaluation_interval": "5s"}, "scrape_configs": []}
    with prometheus(tmp_path, config, f"--query.max-samples={len(samples.lines[grafana.LEAKAGE])}") as port:
        seen = panels(port, "week", range_="7d", step="10m", at=at)
    assert seen["xychart A"] == {"x": pytest.approx(0.3), "y": pytest.approx(0.5)}
    assert seen["table A"] == seen["xychart A"]


def wait_for_panels(port: int, sweep: str, check, what: str, tmp_path: Path) -> dict[str, dict[str, float]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = panels(port, sweep)
        if check(seen):
            return seen
        time.sleep(1)
    raise AssertionError(f"{what}: {seen}; {(tmp_path / 'prometheus.log').read_text()[-1500:]}")


def live(port: int, sweep: str) -> bool:
    """Whether Prometheus has a sample, not gone stale, of the sweep's leakage gauge now."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"query": f'{grafana.LEAKAGE}{{sweep="{sweep}"}}'})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=10) as resp:
        return bool(json.load(resp)["data"]["result"])


def trial_row(trial: str, status: str, acc: float, leakage: float, order: int | None,
              error: str | None = None) -> dict[str, Any]:
    return {"trial_id": trial, "method": "adversarial", "status": status, "emotion_acc": acc, "leakage": leakage,
            "order": order, "error": error}


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_a_failed_trial_leaves_the_trial_panels_and_a_stopped_or_running_one_the_pareto_chart(tmp_path: Path) -> None:
    """A trial that reported while running, then failed: its gauges were set to NaN, but Ray exports no sample for a
    NaN gauge, so Prometheus kept its running values and the panels' `last_over_time` showed them as its result.
    A trial MO-ASHA stopped at a rung stood on the Pareto chart like a finished one, its early-epoch point beyond
    every finished trial (the pages draw it apart, on no front): it leaves the chart, and the table says it was
    stopped. So did a running trial, at its mid-training values (the pages draw it hollow): it leaves the chart
    while it runs, and the table says it is running. A trial lost to a killed driver (closed as ERROR, `results.LOST`)
    kept its running values on both panels, as a finished trial's: its failed gauge was 0. Real Ray (its metrics agent), real Prometheus with
    infra/prometheus/prometheus.yml, the panels' own queries."""
    import pandas as pd
    import ray

    from avdis import results

    with prometheus_for_ray(tmp_path) as (port, temp):
        try:
            ray.init(address="local", num_cpus=1, log_to_driver=False, _temp_dir=temp, dashboard_port=free_port(),
                     _metrics_export_port=free_port())
            summary = {"hypervolume": 0.1}
            running = pd.DataFrame([trial_row("ok", "TERMINATED", 0.7, 0.4, 1), trial_row("bad", "RUNNING", 0.9, 0.05, None),
                                    trial_row("early", "RUNNING", 0.8, 0.02, None),
                                    trial_row("lost", "RUNNING", 0.85, 0.03, None)]).assign(
                                        probed_epoch=[4, 2, 2, 2])  # the running trials train on past epoch 2
            everyone = {"ok", "bad", "early", "lost"}
            metrics.publish("gone", running, summary)
            seen = wait_for_panels(port, "gone", lambda seen: all(set(seen[f"table {ref}"]) == everyone
                                                                  for ref in "ABCDE"),
                                   "the trials never showed", tmp_path)
            assert seen["xychart A"] == {"ok": pytest.approx(0.4)} and seen["xychart B"] == {"ok": pytest.approx(0.7)}
            assert seen["table D"] == {"ok": 0, "bad": 1, "early": 1, "lost": 1}
            # the epoch each trial's values are of: a running one's last probe, while it trains on
            assert seen["table E"] == {"ok": 4, "bad": 2, "early": 2, "lost": 2}
            metrics.publish("gone", running.assign(status=["TERMINATED", "ERROR", "STOPPED", "ERROR"],
                                                   order=[1, None, 2, None], error=[None, "boom", None, results.LOST]),
                            summary)
            seen = wait_for_panels(port, "gone", lambda seen: set(seen["table A"]) == {"ok", "early"}
                                   and seen.get("table C", {}).get("early") == 1,
                                   "the failed trial still stands on the panels, or the stopped one is not said to be",
                                   tmp_path)
            assert seen["xychart A"] == {"ok": pytest.approx(0.4)} and seen["xychart B"] == {"ok": pytest.approx(0.7)}
            assert seen["table A"] == {"ok": pytest.approx(0.4), "early": pytest.approx(0.02)}
            assert seen["table C"] == {"ok": 0, "early": 1} and seen["table D"] == {"ok": 0, "early": 0}
            assert seen["table E"] == {"ok": 4, "early": 2}
        finally:
            metrics.forget("gone")
            shutdown_ray()


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_the_trial_counts_panel_says_how_many_trials_failed(tmp_path: Path) -> None:
    """Every trial panel leaves failed trials out and none counted them: a sweep where half the trials failed looked
    like a smaller healthy sweep, and one where every trial failed like one with no trial yet (an empty table). The
    stat panel's queries count the sweep's trials by their newest flags, 0 (not "No data") where a state has none.
    Real Ray (export interval 1 s), real Prometheus with infra/prometheus/prometheus.yml; Grafana itself is not run
    here (the stat panel's legend per target is its documented JSON model)."""
    import pandas as pd
    import ray

    from avdis import results

    sweeps = {
        "healthy": [trial_row("a", "TERMINATED", 0.7, 0.4, 1), trial_row("b", "RUNNING", 0.6, 0.3, None)],
        "half": [trial_row("c", "TERMINATED", 0.7, 0.4, 1), trial_row("d", "STOPPED", 0.5, 0.5, 2),
                 trial_row("e", "ERROR", 0.9, 0.1, None, "boom"),
                 trial_row("f", "ERROR", 0.8, 0.2, None, results.LOST)],
        "all-failed": [trial_row("g", "ERROR", 0.9, 0.1, None, "boom"),
                       trial_row("h", "ERROR", None, None, None, "oom")],
    }
    with prometheus_for_ray(tmp_path) as (port, temp):
        try:
            ray.init(address="local", num_cpus=1, log_to_driver=False, _temp_dir=temp, dashboard_port=free_port(),
                     _metrics_export_port=free_port(), _system_config={"metrics_report_interval_ms": 1000})
            for sweep, rows in sweeps.items():
                metrics.publish(sweep, pd.DataFrame(rows), {"hypervolume": 0.1})
            states = ["trials", "completed", grafana.STOPPED_COLUMN, grafana.RUNNING_COLUMN, grafana.FAILED_COUNT]
            want = {"healthy": dict(zip(states, [2, 1, 0, 1, 0])), "half": dict(zip(states, [4, 1, 1, 0, 2])),
                    "all-failed": dict(zip(states, [2, 0, 0, 0, 2]))}
            deadline = time.monotonic() + 60
            while (seen := {sweep: counts(port, sweep) for sweep in sweeps}) != want:
                assert time.monotonic() < deadline, f"{seen}; {(tmp_path / 'prometheus.log').read_text()[-1500:]}"
                time.sleep(1)
            every = panels(port, "all-failed")
        finally:
            for sweep in sweeps:
                metrics.forget(sweep)
            shutdown_ray()
    assert every["table A"] == {} and every["xychart A"] == {}  # all the trial panels show of it: nothing


# a driver script's start of its local Ray (its `temp` dir, dashboard port `dash`)
RAY_UP = """
for attempt in range(2):  # a local Ray's start can time out on 2 loaded cores ("GCS has become overloaded"): once more
    try:
        ray.init(address="local", num_cpus=1, log_to_driver=False, include_dashboard=True, _temp_dir=temp,
                 dashboard_port=dash)
        break
    except Exception as exc:
        if attempt or "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
"""

DRIVER = """
import sys, time, pandas as pd, ray
from avdis.report import metrics
temp, leakage, status, order, dash = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4]) or None, int(sys.argv[5])
""" + RAY_UP + """metrics.publish("resumed", pd.DataFrame([{"trial_id": "x", "method": "adversarial", "status": status,
                                          "emotion_acc": 0.5, "leakage": leakage, "order": order}]), {})
print("published", flush=True)
sys.stdin.read()  # until the test has seen it scraped
ray.shutdown()
"""


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_trial_panels_show_the_newest_driver_values_after_a_resume(tmp_path: Path) -> None:
    """A sweep resumed by a new driver publishes each trial again as new series (Ray labels them with the new
    driver's WorkerId and SessionName); the panels took the max over the old and new series in range, so a trial
    that was running at leakage 0.9 when the first driver died showed 0.9, not the 0.3 it finished at. (Series are
    placed to a step, 15s here: the new value shows once the old driver's last scrape is a step old.)"""
    import os
    import sys

    with prometheus_for_ray(tmp_path) as (port, temp):
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        for leakage, status, order in ((0.9, "RUNNING", 0), (0.3, "TERMINATED", 1)):
            driver = subprocess.Popen([sys.executable, "-c", DRIVER, temp, str(leakage), status, str(order), str(free_port())], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
            try:
                assert "published" in driver.stdout.readline()  # the Pareto chart leaves a running trial out
                wait_for_panels(port, "resumed", lambda seen: seen["table A"] == {"x": pytest.approx(leakage)}
                                and seen["xychart A"] == ({} if status == "RUNNING" else {"x": pytest.approx(leakage)}),
                                f"the panels never showed the newest driver's leakage {leakage}", tmp_path)
            finally:
                driver.communicate("", timeout=60)
        # the sweep has ended: its series go stale, and the panels keep the newest driver's value
        wait_for_panels(port, "resumed", lambda seen: not live(port, "resumed"), "the series never went stale",
                        tmp_path)
        assert panels(port, "resumed")["xychart A"] == {"x": pytest.approx(0.3)}


def sweep_options(port: int) -> list[str]:
    """The `sweep` variable's options, as Grafana's Prometheus datasource works out `label_values(METRIC, LABEL)` (its
    documented templating contract; no Grafana runs here): the label's values of METRIC's series (GET
    /api/v1/label/LABEL/values with match[]=METRIC)."""
    import re
    import urllib.parse
    import urllib.request

    (sweep,) = [v for v in grafana.dashboard_json()["templating"]["list"] if v["name"] == "sweep"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", sweep["query"]["query"]).groups()
    url = f"http://127.0.0.1:{port}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": metric})
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)["data"]


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_the_sweep_variable_offers_a_sweep_before_its_first_leakage_and_one_whose_every_trial_failed(
        tmp_path: Path) -> None:
    """The `sweep` variable listed the sweeps of `avdis_trial_leakage`, which a trial has only from its first probe
    on (none while a sweep's first trials train up to it: minutes of epochs on real data) and never once it failed
    (NaN, which Ray does not export): a sweep just started, or one whose every trial failed, was not offered, so its
    running trials and hypervolume could not be shown. Real Ray (export interval 1 s), real Prometheus."""
    import pandas as pd
    import ray

    with prometheus_for_ray(tmp_path) as (port, temp):
        try:
            ray.init(address="local", num_cpus=1, log_to_driver=False, _temp_dir=temp, dashboard_port=free_port(),
                     _metrics_export_port=free_port(), _system_config={"metrics_report_interval_ms": 1000})
            metrics.publish("starting", pd.DataFrame([trial_row("a", "RUNNING", 0.4, None, None)]),
                            {"hypervolume": 0.0})
            metrics.publish("failing", pd.DataFrame([trial_row("b", "ERROR", None, None, None, "boom")]),
                            {"hypervolume": 0.0})
            metrics.publish("probed", pd.DataFrame([trial_row("c", "TERMINATED", 0.7, 0.4, 1)]), {"hypervolume": 0.1})
            deadline = time.monotonic() + 60
            while not live(port, "probed"):
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-1500:]
                time.sleep(0.5)
            time.sleep(3)  # a few scrapes more: all three sweeps' gauges were set at once
            assert sorted(sweep_options(port)) == ["failing", "probed", "starting"]
        finally:
            for name in ("starting", "failing", "probed"):
                metrics.forget(name)
            ray.shutdown()


ENDING = """
import sys, pandas as pd, ray
from avdis.report import metrics
temp, dash = sys.argv[1], int(sys.argv[2])
""" + RAY_UP + """row = dict(method="adversarial", emotion_acc=0.5, probed_epoch=4, error=None)
metrics.publish("ending", pd.DataFrame([dict(row, trial_id="x", status="RUNNING", leakage=0.9, order=None)]),
                {"hypervolume": 0.1})
print("published", flush=True)
sys.stdin.readline()  # until the test has seen it scraped: the sweep's last results come
metrics.publish("ending", pd.DataFrame([dict(row, trial_id="x", status="TERMINATED", leakage=0.3, order=1),
                                        dict(row, trial_id="y", status="TERMINATED", leakage=0.2, order=2)]),
                {"hypervolume": 0.25})
metrics.settle("ending", 5.0)  # as `avdis sweep` does once the sweep has run (sweep.prometheus_scrape_s: 5)
metrics.forget("ending")
ray.shutdown()  # the sweep's process exits
"""


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_panels_hold_a_sweeps_end_after_its_process_exits(tmp_path: Path) -> None:
    """A sweep's last result is its end, and its process exited within a second of it, while Ray's driver hands its
    gauges to the node's exporter only every 10 s (Ray's default report interval): Prometheus's last scrape held
    values of 10-15 s before the end. A real smoke sweep's dashboard showed its last two trials running for ever (off
    the Pareto chart), left out the two that started and ended in those seconds, and an older hypervolume (0.022 where
    pareto.json said 0.056). `metrics.settle`, which `avdis sweep` calls once the sweep has run, holds the last
    values until they are exported and scraped. Real Ray at its default report interval, real Prometheus."""
    import os
    import sys

    with prometheus_for_ray(tmp_path) as (port, temp):
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        driver = subprocess.Popen([sys.executable, "-c", ENDING, temp, str(free_port())], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert "published" in driver.stdout.readline()
            wait_for_panels(port, "ending", lambda seen: seen["table D"] == {"x": 1}, "the running trial never showed",
                            tmp_path)
        finally:
            driver.communicate("\n", timeout=120)
        assert driver.returncode == 0
        seen = panels(port, "ending")
        assert seen["table D"] == {"x": 0, "y": 0}, "a trial that ended stands as running, or one is missing"
        assert seen["xychart A"] == {"x": pytest.approx(0.3), "y": pytest.approx(0.2)}
        (hv,) = instant(port, f'last_over_time({grafana.HYPERVOLUME}{{sweep="ending"}}[10m])')
        assert float(hv["value"][1]) == pytest.approx(0.25)


def exported_lines(temp: str, gauge: str, sweep: str) -> list[str]:
    """The samples of `gauge` (its exported name) of `sweep` that Ray's metrics endpoints (every node's) export now."""
    import urllib.request

    targets = json.loads(Path(temp, "prom_metrics_service_discovery.json").read_text())[0]["targets"]
    found = []
    for target in targets:
        try:
            body = urllib.request.urlopen(f"http://{target}/metrics", timeout=10).read().decode()
        except OSError:  # an endpoint not up yet
            continue
        found += [line for line in body.splitlines() if line.startswith(gauge + "{") and f'sweep="{sweep}"' in line]
    return found


def help_lines(temp: str, gauge: str) -> set[str]:
    """The `# HELP` lines of `gauge` (its exported name) that Ray's metrics endpoints (every node's) export now."""
    import urllib.request

    targets = json.loads(Path(temp, "prom_metrics_service_discovery.json").read_text())[0]["targets"]
    found = set()
    for target in targets:
        try:
            body = urllib.request.urlopen(f"http://{target}/metrics", timeout=10).read().decode()
        except OSError:  # an endpoint not up yet
            continue
        found |= {line for line in body.splitlines() if line.startswith(f"# HELP {gauge} ")}
    return found


def exported(temp: str, sweep: str) -> set[str]:
    """The trials whose `avdis_trial_leakage` of `sweep` Ray's metrics endpoints export now."""
    import re

    return {re.search(r'trial="([^"]*)"', line).group(1) for line in exported_lines(temp, grafana.LEAKAGE, sweep)}


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_a_sweeps_gauges_stay_exported_between_its_results_until_it_ends(tmp_path: Path) -> None:
    """Ray 2.60 stops exporting a gauge about 20 s after it was last set: between a sweep's results (an epoch
    apart, minutes on real data) its series left Prometheus, and the hypervolume panel drew a stub after each
    result. Real Ray, its metrics endpoints read as Prometheus scrapes them (export interval 1 s)."""
    import tempfile

    import pandas as pd
    import ray

    temp = tempfile.mkdtemp(prefix="avdis-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        ray.init(address="local", num_cpus=1, log_to_driver=False, _temp_dir=temp, dashboard_port=free_port(),
                 _metrics_export_port=free_port(), _system_config={"metrics_report_interval_ms": 1000})
        metrics.publish("kept", pd.DataFrame([trial_row("x", "TERMINATED", 0.7, 0.4, 1)]), {"hypervolume": 0.1})
        deadline = time.monotonic() + 60
        while not exported(temp, "kept"):
            assert time.monotonic() < deadline, "the gauge was never exported"
            time.sleep(0.5)
        time.sleep(30)  # no new result for 30 s
        assert exported(temp, "kept") == {"x"}, "the gauge left the export between two results"
        metrics.forget("kept")  # the sweep has ended
        deadline = time.monotonic() + 60
        while exported(temp, "kept"):
            assert time.monotonic() < deadline, "an ended sweep's gauges are still exported"
            time.sleep(1)
    finally:
        metrics.forget("kept")
        shutdown_ray()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_a_uar_sweep_exports_its_trials_uar_and_its_emotion_metric(tmp_path: Path) -> None:
    """Only `avdis_trial_emotion_acc` was published, so no dashboard could plot a UAR sweep's front on its axis, nor
    tell which metric a sweep chose on; and its trials and hypervolume were tagged by sweep name alone, so a name used
    under both metrics mixed their trials. Real Ray, its metrics endpoints read as Prometheus scrapes them."""
    import re
    import tempfile

    import pandas as pd
    import ray

    temp = tempfile.mkdtemp(prefix="avdis-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        ray.init(address="local", num_cpus=1, log_to_driver=False, _temp_dir=temp, dashboard_port=free_port(),
                 _metrics_export_port=free_port(), _system_config={"metrics_report_interval_ms": 1000})
        trials = pd.DataFrame([trial_row("x", "TERMINATED", 0.7, 0.4, 1), trial_row("y", "TERMINATED", 0.6, 0.2, 2)])
        summary = {"hypervolume": 0.1, "objectives": {"emotion_uar": "max", "leakage": "min"}}
        metrics.publish("uar", trials.assign(emotion_uar=[0.55, 0.58]), summary)
        uar, chosen = metrics.RAY_PREFIX + metrics.EMOTION_UAR, metrics.RAY_PREFIX + metrics.EMOTION_METRIC
        deadline = time.monotonic() + 60
        while not all(exported_lines(temp, gauge, "uar") for gauge in (uar, chosen, grafana.HYPERVOLUME)):
            assert time.monotonic() < deadline, "the UAR gauges were never exported"
            time.sleep(0.5)
        values = {re.search(r'trial="([^"]*)"', line).group(1): float(line.rsplit(" ", 1)[1])
                  for line in exported_lines(temp, uar, "uar")}
        assert values == {"x": pytest.approx(0.55), "y": pytest.approx(0.58)}
        (line,) = exported_lines(temp, chosen, "uar")
        assert 'metric="uar"' in line and float(line.rsplit(" ", 1)[1]) == 1.0
        tagged = [line for gauge in (uar, grafana.LEAKAGE, grafana.FAILED, grafana.HYPERVOLUME)
                  for line in exported_lines(temp, gauge, "uar")]
        assert len(tagged) == 7 and all('metric="uar"' in line for line in tagged), tagged
        # a running trial's values are mid-training: their help said "final emotion accuracy of a trial"
        for gauge in (uar, metrics.RAY_PREFIX + metrics.EMOTION_ACC, grafana.LEAKAGE):
            (said,) = help_lines(temp, gauge)
            assert "final emotion" not in said, said
            assert f"at its {grafana.PROBED_EPOCH}: mid-training while {grafana.RUNNING} is 1" in said, said
    finally:
        metrics.forget("uar")
        shutdown_ray()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_sweep_name_reused_under_acc_and_uar_keeps_each_ones_trials_apart(tmp_path: Path) -> None:
    """Two sweeps of one name, one on `sweep.emotion_metric: acc` and one on uar (run again under the other metric
    into another storage, on one cluster): the `emotion` variable offered both, but every trial gauge was tagged by
    sweep name alone, so whichever was chosen the panels drew both sweeps' trials, each sweep's accuracy (or UAR)
    under one axis title, and the hypervolume panel the larger of two fronts' hypervolumes. Gauges written as
    `metrics` tags them (its TRIAL_TAGS) into Prometheus's TSDB at known times; the panels' queries, as Grafana sends
    them for each option, return that metric's sweep alone."""
    at = int(time.time()) // 60 * 60
    samples = Backfill(range(at - 300, at + 1, 15))
    runs = {"acc": ({"a": (0.8, 0.5), "b": (0.6, 0.7)}, 0.30), "uar": ({"c": (0.4, 0.55), "d": (0.9, 0.58)}, 0.20)}
    for metric, (trials, hypervolume) in runs.items():  # each trial: (accuracy, UAR); both published, as _set does
        sweep = {"sweep": "reused", "metric": metric, "SessionName": f"driver-{metric}"}
        for trial, pair in trials.items():
            values = {"sweep": "reused", "metric": metric, "trial": trial, "method": "adversarial"}
            samples.trial({**{k: values[k] for k in metrics.TRIAL_TAGS}, "SessionName": sweep["SessionName"]}, *pair)
        samples.gauge(grafana.HYPERVOLUME, sweep, hypervolume)
        samples.gauge(grafana.EMOTION_METRIC, sweep, 1)
    samples.write(tmp_path)
    (hv_panel,) = [p for p in grafana.dashboard_json()["panels"] if p["type"] == "timeseries"]
    with prometheus(tmp_path, {"global": {"evaluation_interval": "5s"}, "scrape_configs": []}) as port:
        options = emotion_options(port, "reused", at=at)
        seen = {metric: panels(port, "reused", at=at, emotion=metric) for metric in runs}
        hv = {metric: instant(port, hv_panel["targets"][0]["expr"].replace("$sweep", "reused")
                              .replace("$emotion", metric).replace("$__range", "10m"), at) for metric in runs}
    assert sorted(options) == ["acc", "uar"]
    for metric, (trials, hypervolume) in runs.items():
        shown = {trial: pair[0 if metric == "acc" else 1] for trial, pair in trials.items()}
        assert seen[metric]["xychart B"] == seen[metric]["table B"] == pytest.approx(shown), metric
        assert set(seen[metric]["xychart A"]) == set(seen[metric]["table A"]) == set(trials), metric
        assert [float(r["value"][1]) for r in hv[metric]] == [pytest.approx(hypervolume)], metric
    assert "$emotion" in hv_panel["title"]  # which of the two the hypervolume is


def range_query(port: int, expr: str, start: float, end: float, step: str) -> list[dict[str, Any]]:
    """Prometheus's answer to a range query (GET /api/v1/query_range), as Grafana asks a timeseries panel's."""
    import urllib.parse
    import urllib.request

    query = {"query": expr, "start": start, "end": end, "step": step}
    url = f"http://127.0.0.1:{port}/api/v1/query_range?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_a_sweep_name_used_before_the_metric_tag_and_again_under_the_other_metric_keeps_each_ones_trials_apart(
        tmp_path: Path) -> None:
    """A sweep name used under acc by an avdis that published its trial gauges and hypervolume without the `metric`
    tag (its `avdis_sweep_emotion_metric` tagged acc), then under uar by this one: the panels select untagged series
    beside the chosen metric's (`metric=~"$emotion|"`), so the uar choice drew the accuracy sweep's trials too (their
    UAR beside the UAR sweep's) and its hypervolume line began with the accuracy front's. An untagged series now counts
    only where the chosen metric has no tagged one in range; the acc choice still draws the untagged sweep."""
    at = int(time.time()) // 60 * 60
    samples = Backfill(range(0))
    before, after = range(at - 600, at - 299, 15), range(at - 240, at + 1, 15)  # the old sweep ended, the new one ran
    runs = {"acc": ({"a": (0.8, 0.5), "b": (0.6, 0.7)}, 0.30, None, before),
            "uar": ({"c": (0.4, 0.55), "d": (0.9, 0.58)}, 0.20, "uar", after)}
    for metric, (trials, hypervolume, tag, times) in runs.items():  # each trial: (accuracy, UAR)
        sweep = {"sweep": "reused", **({} if tag is None else {"metric": tag}), "SessionName": f"driver-{metric}"}
        for trial, (acc, uar) in trials.items():
            samples.trial({**sweep, "trial": trial, "method": "adversarial"}, acc, uar, times)
        samples.gauge(grafana.HYPERVOLUME, sweep, hypervolume, times)
        samples.gauge(grafana.EMOTION_METRIC, {**sweep, "metric": metric}, 1, times)
    samples.write(tmp_path)
    (hv_panel,) = [p for p in grafana.dashboard_json()["panels"] if p["type"] == "timeseries"]
    with prometheus(tmp_path, {"global": {"evaluation_interval": "5s"}, "scrape_configs": []}) as port:
        options = emotion_options(port, "reused", range_="15m", at=at)
        seen = {metric: panels(port, "reused", range_="15m", at=at, emotion=metric) for metric in runs}
        hv = {metric: range_query(port, hv_panel["targets"][0]["expr"].replace("$sweep", "reused")
                                  .replace("$emotion", metric).replace("$__range", "900s"), at - 900, at, "15s")
              for metric in runs}
    assert sorted(options) == ["acc", "uar"]
    for metric, (trials, hypervolume, _, _) in runs.items():
        shown = {trial: pair[0 if metric == "acc" else 1] for trial, pair in trials.items()}
        assert seen[metric]["xychart B"] == seen[metric]["table B"] == pytest.approx(shown), metric
        assert set(seen[metric]["xychart A"]) == set(seen[metric]["table A"]) == set(trials), metric
        drawn = sorted({float(value) for series in hv[metric] for _, value in series["values"]})
        assert drawn == [pytest.approx(hypervolume)], metric
