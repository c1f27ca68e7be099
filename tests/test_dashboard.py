"""The live dashboard: a real HTTP server in a thread, and a real headless Chromium.

Chromium (Debian's `chromium`) is started with subprocess in its own process group
and always stopped by that group's id. The browser tests skip only when the binary
is absent; install it with `apt-get install -y --no-install-recommends chromium`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from conftest import ROOT, stop_process
from avdis import results
from avdis.numbers import json_safe
from avdis.report import dashboard
from avdis.results import ResultsError

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                    "(apt-get install -y --no-install-recommends chromium)")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
METHODS = ["single_task", "multitask", "adversarial", "confusion", "orthogonal", "nullspace"]
ARTIFACTS = ROOT / "test-artifacts"


def seeded_rows(n: int = 14, running: int = 2, seed: int = 7) -> list[dict]:
    """n trials over all methods; the last `running` have no completion order; one more has no metrics."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n + 1):
        method = METHODS[i % len(METHODS)]
        placed = i < n
        out.append({
            "trial_id": f"trial_{i:02d}", "sweep": "live", "method": method,
            "weight": None if method in ("single_task", "multitask") else round(float(rng.uniform(0.1, 3.0)), 3),
            "status": "TERMINATED" if i < n - running else ("RUNNING" if placed else "ERROR"),
            "emotion_acc": float(rng.uniform(0.35, 0.85)) if placed else None,
            "emotion_uar": float(rng.uniform(0.35, 0.85)) if placed else None,
            "leakage": float(rng.uniform(0.05, 0.95)) if placed else None,
            "emotion_chance": 0.25, "epochs": 3, "seed": 0,
            "order": i + 1 if i < n - running else None,
        })
    return out


def started_sweep(tmp_path: Path) -> str:
    """A sweep folder as `avdis sweep` leaves it before its first trial: only sweep.json."""
    sweep = tmp_path / "live"
    sweep.mkdir()
    (sweep / results.SPEC).write_text('{"spec": {}}')  # a sweep record, of an avdis before `selection`: accuracy
    return str(sweep)


@contextmanager
def serving(sweep_url: str, refresh_s: float = 0.2, **kw) -> Iterator[str]:
    """The dashboard on a free port (the OS picks it) in a thread; yields its base URL."""
    server = dashboard.make_server(sweep_url, host="127.0.0.1", port=0, refresh_s=refresh_s, **kw)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="dashboard", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def wait_until(check, timeout: float = 15.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# ------------------------------------------------------------------ server


def test_serves_page_json_png_and_health(tmp_path: Path) -> None:
    sweep = started_sweep(tmp_path)
    with serving(sweep) as base:
        status, ctype, body = get(base + "/")
        assert status == 200 and ctype.startswith("text/html")
        assert b"waiting for the first result" in body and b"fetch('pareto.json'" in body
        first = json.loads(get(base + "/pareto.json")[2])
        assert first["n_trials"] == 0

        assert json.loads(get(base + "/healthz")[2])["status"] == "ok"
        assert get(base + "/nope")[0] == 404

        results.write_trials(sweep, seeded_rows())
        summary = wait_until(lambda: (s := json.loads(get(base + "/pareto.json")[2]))["n_trials"] and s)
        assert summary, "pareto.json did not pick up the new trials.parquet"
        assert summary["updated_at"] != first["updated_at"] and summary["n_completed"] == 12
        page = get(base + "/")[2].decode()
        assert "waiting for the first result" not in page and "12 completed" in page
        status, ctype, png = get(base + "/pareto.png")
        assert status == 200 and ctype == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"

        again = json.loads(get(base + "/pareto.json")[2])
        assert again["updated_at"] == summary["updated_at"], "unchanged results must not trigger page reloads"
    assert not any(f.name.startswith("pareto.") for f in Path(sweep).iterdir()), "the dashboard only reads"


def test_head_answers_what_get_would_without_the_body(tmp_path: Path) -> None:
    """`curl -I` and uptime checks send HEAD; the server answered 501 Unsupported method to every path."""
    sweep = str(tmp_path / "live")
    results.record(sweep, seeded_rows(), "live")
    with serving(sweep) as base:
        for path, status in (("/", 200), ("/healthz", 200), ("/pareto.json", 200), ("/nope", 404)):
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, method="HEAD"), timeout=30) as resp:
                    head = resp.status, resp.headers["Content-Type"], resp.headers["Content-Length"], resp.read()
            except urllib.error.HTTPError as exc:
                head = exc.code, exc.headers["Content-Type"], exc.headers["Content-Length"], exc.read()
            code, ctype, body = get(base + path)
            assert head == (status, ctype, str(len(body)), b"") and code == status, path


def test_a_browser_leaving_mid_page_prints_no_traceback(tmp_path: Path, capfd) -> None:
    """The page is megabytes: a reload or a closed tab mid-download printed a ConnectionResetError traceback to the
    dashboard's terminal for each."""
    import socket
    import struct

    with serving(started_sweep(tmp_path)) as base:
        port = int(base.rsplit(":", 1)[1])
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(64).startswith(b"HTTP/1.")
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        assert get(base + "/healthz")[0] == 200
        time.sleep(0.5)
    assert "Traceback" not in capfd.readouterr().err


def test_half_written_table_shows_waiting(tmp_path: Path) -> None:
    sweep = str(tmp_path / "live")
    results.write_trials(sweep, seeded_rows())
    path = Path(sweep, results.TRIALS)
    path.write_bytes(path.read_bytes()[:300])
    with serving(sweep) as base:
        page = get(base + "/")[2].decode()
        assert "waiting for the first result" in page and "not a readable trials table" in page


def test_missing_sweep_fails_before_binding(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such sweep folder"):
        dashboard.make_server(str(tmp_path / "nope"), port=0)


@pytest.mark.parametrize("folder, holds", [("shards", "holds shards (`avdis preprocess`'s output, data.shards)"),
                                           ("corpus", "holds a corpus (data.src)"),
                                           ("run", "holds a training run (`avdis train`'s, under train.storage)")])
def test_the_shards_corpus_or_run_folder_is_refused_not_waited_on(tiny_shards: str, tmp_path: Path, folder: str,
                                                                  holds: str) -> None:
    """Their jobs leave the lock a sweep's driver takes in its folder (`.avdis-lock`), and the dashboard pointed at one
    took it for a sweep getting ready: it served "waiting for the first result" for ever."""
    from avdis import storage_lock
    from avdis.cli import main

    url = {"shards": tiny_shards, "corpus": str(tmp_path / "corpus"), "run": str(tmp_path / "run")}[folder]
    if folder == "corpus":
        assert main(["synth", "--out", url, "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "3",
                     "--duration", "0.3"]) == 0
    if folder == "run":  # a training run's folder after its first epoch (`avdis train`)
        with storage_lock.exclusive(url, "training run"):
            Path(url, "metrics.json").write_text("[]")
    assert Path(url, storage_lock.LOCK).is_file()
    with pytest.raises(dashboard.UsageError, match=re.escape(f"{url}: {holds}, not a sweep; pass "
                                                             "<sweep.storage>/<sweep.name> of a sweep")):
        dashboard.make_server(url, port=0)


ENDED = "no sweep is running here any more: it ended before its first result"


def page_once_its_sweep_ends(url: str) -> tuple[dashboard.LiveReport, str | None]:
    """A page opened on `url` while a sweep holds it, which does not say the sweep ended, and the page once the sweep
    lets go (None where it never says so)."""
    from avdis import storage_lock

    with storage_lock.exclusive(url, "sweep driver"):
        live = dashboard.LiveReport(url, None, refresh_s=0.2)
        assert ENDED not in live.current().html.decode()
    return live, wait_until(lambda: (text := live.current().html.decode()) and ENDED in text and text)


def test_the_page_says_when_a_sweep_getting_ready_ends_before_its_first_result(tmp_path: Path) -> None:
    """A sweep refused (or killed) while it got ready, after the page started: the page waited for its first result
    for ever. It says so now, and waits again once a sweep holds the folder. (An S3 folder's lock is told by
    `storage_lock.held` as for the dashboard's start: tests/test_cli_inputs.py.)"""
    from avdis import storage_lock

    url = str(tmp_path / "live")
    live, page = page_once_its_sweep_ends(url)
    assert page and "waiting for the first result" in page
    with storage_lock.exclusive(url, "sweep driver"):  # started again
        assert wait_until(lambda: ENDED not in live.current().html.decode())


def test_the_page_says_when_a_sweep_ends_after_its_sweep_json_before_its_first_result(tmp_path: Path) -> None:
    """A sweep stopped (`ray job stop`, Ctrl-C) once it had written its sweep.json and started its first trials, before
    any reported: its lock let go, the page waited for its first result for ever."""
    page = page_once_its_sweep_ends(started_sweep(tmp_path))[1]
    assert page and "the same command resumes one that wrote its sweep.json" in page


def test_serves_an_s3_sweep(s3_bucket: str) -> None:
    sweep = f"{s3_bucket}/sweeps/live"
    results.write_trials(sweep, seeded_rows())
    with serving(sweep) as base:
        page = get(base + "/")[2].decode()
        assert "12 completed" in page and "live" in page


def test_an_s3_sweep_is_read_through_one_filesystem_that_sees_each_new_result(s3_bucket: str, monkeypatch) -> None:
    """Every storage call made a new s3fs filesystem, whose first request builds a botocore client (0.2-0.9 s here):
    the page took ~15 s to open on an S3 sweep, and each poll seconds. The one kept must still see what the sweep
    writes after it was first read: a new table, and a new file in a listing (no listing cached)."""
    import fsspec

    from avdis import storage

    sweep = f"{s3_bucket}/sweeps/live"
    results.write_trials(sweep, seeded_rows(6, running=0))
    made = []
    real = fsspec.filesystem
    monkeypatch.setattr(fsspec, "filesystem", lambda *args, **kw: made.append(args) or real(*args, **kw))
    with serving(sweep, refresh_s=0.05) as base:
        assert "6 completed" in get(base + "/")[2].decode()
        listed = storage.list_files(sweep)
        results.write_trials(sweep, seeded_rows(9, running=0))
        storage.write_bytes(storage.join(sweep, "new.json"), b"{}")
        assert wait_until(lambda: "9 completed" in get(base + "/")[2].decode(), timeout=10)
    assert storage.list_files(sweep) == sorted([*listed, storage.join(sweep, "new.json")])
    assert len(made) <= 1, made  # none where an earlier test's settings made it


def test_credentials_a_tool_rewrites_are_read_again(s3_bucket: str, tmp_path: Path, monkeypatch) -> None:
    """Keys read from the credentials file are kept by botocore as they were read: a filesystem kept for the whole
    process (a dashboard left running) would go on with the keys a tool (saml2aws, a cron job) has since replaced."""
    from avdis import storage

    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = old\naws_secret_access_key = old\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    first = storage.filesystem(s3_bucket)[0]
    assert storage.filesystem(s3_bucket)[0] is first
    credentials.write_text("[default]\naws_access_key_id = newer\naws_secret_access_key = newer\n")
    assert storage.filesystem(s3_bucket)[0] is not first


# ------------------------------------------------------------------ real browser


def run_chromium(args: list[str], profile: Path, timeout: float = 60.0) -> str:
    """Run chromium to completion in its own process group; the group is always stopped."""
    proc = subprocess.Popen([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out.decode()
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    stop_process(proc)
    try:  # helpers (renderer, zygote) that outlive the main process
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def point_tags(dom: str) -> list[dict[str, str]]:
    """Attributes of every plotly point the page tagged with its trace and trial."""
    tags = re.findall(r"<path\b[^>]*\bclass=\"point[^\"]*\"[^>]*>", dom)
    return [dict(re.findall(r"([\w-]+)=\"([^\"]*)\"", t)) for t in tags]


@needs_chromium
@pytest.mark.timeout(120)
def test_a_one_trial_page_opened_from_a_file_has_no_negative_accuracy_or_hypervolume_on_its_axes(
        tmp_path: Path) -> None:
    """A sweep's first finished trial, its pareto.html opened from a file:// URL: plotly padded the one point's
    emotion axis to -0.75..1.2 and the hypervolume's to -1..1, ticks no accuracy or hypervolume can take. The folder's
    name holds a space and a non-ASCII letter, as the file URL quotes them."""
    from avdis.report import files

    sweep = tmp_path / "sw eeps é" / "first"
    results.write_trials(str(sweep), [{**seeded_rows(n=1, running=0)[0], "sweep": "first"}])
    page = Path(files.write_report(str(sweep)).written["pareto.html"])
    dom = run_chromium(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path / "profile")
    rendered = re.search(r'<body[^>]*data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) >= 2, "both plots must have drawn before the DOM was dumped"
    ticks = re.findall(r'<g class="ytick">.*?<text[^>]*>([^<]*)</text>', dom)
    assert len(ticks) >= 4, ticks
    assert not [t for t in ticks if t.startswith(("\u2212", "-"))], ticks  # plotly writes a minus as U+2212


@needs_chromium
@pytest.mark.timeout(120)
def test_chromium_renders_one_point_per_trial(tmp_path: Path) -> None:
    sweep = str(tmp_path / "live")
    rows = seeded_rows()
    results.write_trials(sweep, rows)
    trials = results.read_trials(sweep)
    front = set(results.summarize(trials, "live")["front"])
    placed = {r["trial_id"] for r in rows if r["leakage"] is not None}
    running = {r["trial_id"] for r in rows if r["status"] == "RUNNING"}
    assert len(front) >= 2 and running

    with serving(sweep, refresh_s=60) as base:
        dom = run_chromium(["--virtual-time-budget=5000", "--dump-dom", base + "/"], tmp_path / "profile-dom")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        run_chromium(["--virtual-time-budget=5000", f"--screenshot={shot}", "--window-size=1280,900", base + "/"],
                     tmp_path / "profile-shot")

    rendered = re.search(r'<body[^>]*data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) >= 2, "both plots must have drawn before the DOM was dumped"
    points = point_tags(dom)
    per_trial = [p["data-trial-id"] for p in points if p.get("data-trace", "").startswith("method-")]
    assert sorted(per_trial) == sorted(placed), "one point per trial that has both metrics"
    on_front = [p for p in points if p.get("data-trace") == "front"]
    assert {p["data-trial-id"] for p in on_front} == front and len(on_front) == len(front)
    hollow = {p["data-trial-id"] for p in points
              if p.get("data-trace", "").startswith("method-") and "fill: none" in p.get("style", "")}
    assert hollow == running
    assert any(p.get("data-trace") == "baseline" for p in points)
    assert any(p.get("data-trace") == "paper-target" for p in points)
    assert "hypervolume" in dom and 'id="front-table"' in dom

    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 900)
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50, "screenshot looks blank"


async def _evaluate(ws_url: str, expression: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_json({"id": 1, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": True}})
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("id") == 1:
                return str(data.get("result", {}).get("result", {}).get("value", ""))
    return ""


@needs_chromium
@pytest.mark.timeout(120)
def test_chromium_page_reloads_when_results_arrive(tmp_path: Path) -> None:
    """Open the page in a live headless Chromium (DevTools protocol), then add results."""
    sweep = started_sweep(tmp_path)
    profile = tmp_path / "profile-live"
    with serving(sweep, refresh_s=0.3) as base:
        proc = subprocess.Popen([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                 base + "/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = profile / "DevToolsActivePort"
            # Chromium creates the file before it writes the port into it: wait for the port, not the file
            assert wait_until(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30), \
                "chromium did not open its DevTools port"
            port = port_file.read_text().split()[0]

            def page_text() -> str:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
                ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                return asyncio.run(_evaluate(ws, "document.body ? document.body.innerText : ''"))

            assert "waiting for the first result" in wait_until(
                lambda: (t := page_text()) and "waiting" in t and t, timeout=30)
            results.write_trials(sweep, seeded_rows())
            text = wait_until(lambda: (t := page_text()) and "12 completed" in t and t, timeout=30, every=0.3)
            assert text and "waiting for the first result" not in text, "the page did not reload with the new results"
        finally:
            stop_group(proc)


@needs_chromium
@pytest.mark.timeout(120)
def test_chromium_page_without_updated_at_in_pareto_json_does_not_reload_at_every_poll(tmp_path: Path,
                                                                                        caplog) -> None:
    """A pareto.json without `updated_at` (`results.Summary` lets every key be missing) reloaded the multi-MB page at
    every poll: the page held null for it, the fetched summary no key (undefined !== null). The server's log of
    requests counts the page's loads and its polls."""
    import logging

    sweep = str(tmp_path / "live")
    _, summary = results.record(sweep, seeded_rows(), "live")
    Path(sweep, results.PARETO).write_text(json.dumps({k: v for k, v in json_safe(summary).items()
                                                       if k != "updated_at"}))
    caplog.set_level(logging.DEBUG, logger=dashboard.log.name)

    def requests(path: str) -> int:
        return sum(f'"GET {path} HTTP' in r.getMessage() for r in caplog.records)

    profile = tmp_path / "profile-poll"
    with serving(sweep, refresh_s=0.2) as base:
        proc = subprocess.Popen([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", base + "/"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_until(lambda: requests("/pareto.json") >= 10, timeout=60), "the page never polled"
        finally:
            stop_group(proc)
    assert requests("/") == 1, f"the page reloaded {requests('/') - 1} times while nothing changed"


def test_serves_on_an_ipv6_address(tmp_path: Path) -> None:
    """--host ::1 was refused ("Address family for hostname not supported"): the server bound IPv4 only."""
    import socket
    import urllib.request

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sweep = started_sweep(tmp_path)
    server = dashboard.make_server(sweep, host="::1", port=0, refresh_s=0.2)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="dashboard6", daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{server.server_address[1]}/healthz", timeout=10) as resp:
            assert json.load(resp) == {"status": "ok", "sweep": sweep}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_server_on_every_interface_is_named_by_the_machines_name(tmp_path: Path) -> None:
    """--host 0.0.0.0 printed http://0.0.0.0:PORT/, which opens nothing from another machine, the reason to use it."""
    import socket

    sweep = started_sweep(tmp_path)
    for host, named in (("0.0.0.0", socket.gethostname()), ("127.0.0.1", "127.0.0.1")):
        server = dashboard.make_server(sweep, host=host, port=0)
        try:
            assert dashboard.page_url(server) == f"http://{named}:{server.server_address[1]}/"
        finally:
            server.server_close()


def test_a_damaged_pareto_json_is_summarized_here_and_said(tmp_path: Path) -> None:
    """A damaged pareto.json stopped the dashboard from starting (or answered 503 once serving), though it can
    summarize trials.parquet itself, as it does where no pareto.json is, with read access only."""
    sweep = str(tmp_path / "demo")
    results.record(sweep, [{"trial_id": "a", "sweep": "demo", "method": "multitask", "status": "TERMINATED",
                            "emotion_acc": 0.7, "leakage": 0.4, "emotion_chance": 0.25, "epochs": 2, "order": 1}],
                   "demo")
    Path(sweep, "pareto.json").write_text('{"front": [')
    with serving(sweep) as base:
        page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
        assert "pareto.json: not readable JSON" in page and "summarizes trials.parquet itself" in page
        summary = json.load(urllib.request.urlopen(base + "/pareto.json", timeout=30))
        assert summary["front"] == ["a"] and summary["n_completed"] == 1


UAR_SPEC = '{"spec": {}, "selection": ["val_emotion_uar", "val_leakage"]}'
NEWER_SPEC = '{"spec": {}, "selection": ["val_emotion_f1", "val_leakage"]}'  # a metric a newer avdis may choose on


def test_a_damaged_sweep_json_answers_503_naming_it_until_restored(tmp_path: Path) -> None:
    """A sweep with no pareto.json yet draws its page on the emotion metric its sweep.json records. One of a metric
    this avdis does not know (a newer avdis's) or of a wrong shape was drawn on accuracy, answering 200, and a change to
    sweep.json alone went unseen while serving. The page and pareto.json now answer 503 naming the file and what is
    wrong, within a refresh, and the page comes back once the file is restored; such a file refuses the dashboard's
    start too."""
    sweep = Path(started_sweep(tmp_path))
    spec = sweep / results.SPEC
    spec.write_text(UAR_SPEC)
    with serving(str(sweep)) as base:
        status, _, body = get(base + "/")
        assert status == 200 and "emotion UAR vs identity leakage" in body.decode()
        spec.write_text(NEWER_SPEC)
        got = wait_until(lambda: (answer := get(base + "/"))[0] == 503 and answer)
        assert got, "the page still answered 200, drawn on accuracy"
        status, ctype, body = got
        assert ctype.startswith("text/plain")
        said = body.decode()
        assert f"{spec}: selection ['val_emotion_f1', 'val_leakage'] is of no emotion metric" in said, said
        assert "report it with the newer avdis that ran the sweep" in said, said
        assert get(base + "/pareto.json")[0] == 503
        assert get(base + "/healthz")[0] == 200  # the server is up: it is the sweep's file that is wrong
        spec.write_text(UAR_SPEC)
        got = wait_until(lambda: (answer := get(base + "/"))[0] == 200 and answer)
        assert got and "emotion UAR vs identity leakage" in got[2].decode()
    for text in (NEWER_SPEC, '["val_emotion_uar", "val_leakage"]'):
        spec.write_text(text)
        with pytest.raises(ResultsError, match=rf"{spec}: .*sweep.emotion_metric\) is unknown"):
            dashboard.make_server(str(sweep), port=0)
