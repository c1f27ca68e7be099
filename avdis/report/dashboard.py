"""A live page for a running sweep: `avdis dashboard <storage>/<sweep>`.

A stdlib HTTP server renders the report from `trials.parquet` and `pareto.json` in memory
(it writes nothing, so read-only access to the sweep's storage is enough, local or s3://)
and renders again only when the files' bytes changed. A table no sweep summarized (no
pareto.json), or whose pareto.json is damaged (the page says so), is summarized here, in memory, on the emotion
metric sweep.json records: where that file is damaged (`results.axes_of`) the dashboard refuses to start, and once
serving the page answers 503 naming it until it is restored. Routes: `/` (the page, which polls
`/pareto.json` and reloads when its `updated_at` changes), `/pareto.json`,
`/pareto.png`, `/healthz`. A started sweep (it holds trials.parquet or sweep.json), or one
getting ready (it holds its folder's lock), with no (readable) results yet shows "waiting for
the first result", and says so where it ends before its first result (no job holds the lock); a folder
that holds no sweep (or only the lock of one that ended), a port out of range or in use are
refused before serving.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from avdis import results, storage, storage_lock
from avdis.config import S3Config
from avdis.errors import AvdisError, UsageError
from avdis.numbers import json_safe
from avdis.report import files, image, view, webpage

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    digest: str | None
    html: bytes
    summary: dict[str, Any]
    trials: pd.DataFrame = field(repr=False)
    png: bytes | None = None  # rendered on first request: matplotlib is the slow part


def _check_sweep(sweep_url: str, s3: S3Config | None) -> None:
    """An existing folder with neither trials.parquet nor sweep.json is a wrong path: waiting there never ends. One
    whose lock a job holds (`storage_lock.held`) is a sweep getting ready (its corpus and shards made before its first
    trial): it waits, unless it holds what another avdis folder does (`_not_a_sweep`), whose job takes the same lock
    there. A lock no one holds is a sweep that ended before its first result."""
    if not storage.exists(sweep_url, s3):
        return  # no folder: `_render` refuses it (ResultsError naming it, from `view.load_trials`), no wait
    results.check_folder(sweep_url, s3)
    if any(storage.exists(storage.join(sweep_url, name), s3) for name in (results.TRIALS, results.SPEC)):
        return
    fix = ("pass <sweep.storage>/<sweep.name> of a sweep that has started, the folder that holds its "
           f"{results.TRIALS} and {results.SPEC} (runs/sweeps/local for the embedded default)")
    held = _not_a_sweep(sweep_url, s3)
    if held is not None:
        raise UsageError(f"{sweep_url}: holds {held}, not a sweep; {fix}")
    if not storage.exists(storage.join(sweep_url, storage_lock.LOCK), s3):
        raise UsageError(f"{sweep_url}: holds no sweep (no {results.TRIALS} or {results.SPEC} found); {fix}"
                         f"{results.sweeps_under(sweep_url, s3)}")
    if not storage_lock.held(sweep_url, s3):  # its job ended before writing either: waiting there never ends
        raise UsageError(f"{sweep_url}: no sweep is running or has started there: no {results.TRIALS} or "
                         f"{results.SPEC}, and no job holds its lock ({storage_lock.LOCK}), as a sweep refused or "
                         "stopped before its first result leaves it; start the sweep (avdis sweep, or ray job submit "
                         f"... jobs/sweep.py), then the dashboard, or {fix}")


def _not_a_sweep(url: str, s3: S3Config | None) -> str | None:
    """What the folder at `url` holds where it is the shards, the corpus or the training run's folder of a config:
    their jobs lock it as a sweep's driver locks its own (`storage_lock.exclusive`), so the dashboard waited there for
    ever for a first result. None for none of them."""
    from avdis.data import shards, synth
    from avdis.data.corpora import GROUND_TRUTH
    from avdis.train import checkpoint

    kinds = {"shards (`avdis preprocess`'s output, data.shards)": (shards.MANIFEST, shards.SHARD_DIR),
             "a corpus (data.src)": (GROUND_TRUTH, synth.SETTINGS),
             "a training run (`avdis train`'s, under train.storage)": (checkpoint.METRICS_FILE, checkpoint.LATEST)}
    return next((what for what, names in kinds.items()
                 if any(storage.exists(storage.join(url, name), s3) for name in names)), None)


class LiveReport:
    """The sweep's report, re-rendered when trials.parquet or pareto.json changes (checked at most every refresh_s / 2)."""

    def __init__(self, sweep_url: str, s3: S3Config | None, refresh_s: float) -> None:
        self.sweep_url, self.s3, self.refresh_s = sweep_url, s3, refresh_s
        self.lock = threading.Lock()
        self.checked, self.ended = float("-inf"), False
        self.failure: AvdisError | None = None
        _check_sweep(sweep_url, s3)
        self.snapshot = self._render()  # raises ResultsError for a sweep path that does not exist

    def _digest(self) -> str | None:
        """The files' bytes, and whether the sweep ended before its first result (`ended`, asked while there is no
        trials.parquet). sweep.json's too: a page with no (readable) pareto.json is drawn on its emotion metric, and
        one damaged or restored while serving went unseen until the next result."""
        digest = hashlib.sha256()
        names = (results.TRIALS, results.PARETO, results.SPEC)
        try:
            tables = [storage.read_bytes(url, self.s3) if storage.exists(url, self.s3) else None
                      for url in (storage.join(self.sweep_url, name) for name in names)]
        except FileNotFoundError:
            return None
        for data in tables:
            digest.update(b"-" if data is None else data)
        self.ended = tables[0] is None and self._ended()
        digest.update(b"ended" if self.ended else b"")
        return digest.hexdigest()

    def _ended(self) -> bool:
        """Whether a sweep with no trials.parquet ended before its first result: no job holds its folder's lock any
        more (a sweep refused, or stopped, while it got ready, or after it wrote its sweep.json and started its trials
        (`ray job stop` while the first trials started up): the page waited for it for ever)."""
        url, s3 = self.sweep_url, self.s3
        return storage.exists(storage.join(url, storage_lock.LOCK), s3) and not storage_lock.held(url, s3)

    def _render(self) -> Snapshot:
        digest = self._digest()
        trials, note = view.load_trials(self.sweep_url, self.s3)
        if note is not None:  # said when the files change, not at every poll
            log.warning("%s", note)
        try:
            summary = results.read_pareto(self.sweep_url, self.s3)
        except results.ResultsError as exc:  # damaged: summarize the table here, as for none, and say so (the page
            summary = None  # needs only read access, so refusing to serve left a read-only user with nothing)
            note = "; ".join(filter(None, [note, f"{exc}; the page summarizes {results.TRIALS} itself meanwhile"]))
        if self.ended:
            note = "; ".join(filter(None, [note, (
                f"no sweep is running here any more: it ended before its first result (no job holds its lock, "
                f"{storage_lock.LOCK}, and it wrote no {results.TRIALS}); see the sweep's output for why and start it "
                "again (the same command resumes one that wrote its sweep.json): this page follows it when it does")]))
        summary = summary or results.summarize(trials, view.sweep_name(trials, self.sweep_url),
                                               results.axes_of(self.sweep_url, self.s3))
        page = webpage.render_html(trials, summary, note=note, refresh_s=self.refresh_s)
        self.checked = time.monotonic()
        return Snapshot(digest, page.encode(), summary, trials)

    def current(self) -> Snapshot:
        """The newest snapshot; the error of the last check where it failed, until a check succeeds (a request
        within refresh_s / 2 of a failed one was answered with the snapshot from before the failure, 200)."""
        with self.lock:
            if time.monotonic() - self.checked >= self.refresh_s / 2:
                self.checked = time.monotonic()
                try:
                    if self._digest() != self.snapshot.digest:
                        self.snapshot = self._render()
                    self.failure = None
                except AvdisError as exc:
                    self.failure = exc
            if self.failure is not None:
                raise self.failure.with_traceback(None)  # not one frame more per request it is raised for
            return self.snapshot

    def png(self) -> bytes:
        snap = self.current()
        with self.lock:
            if snap.png is None:
                snap.png = image.render_png(snap.trials, snap.summary)
            return snap.png


def _handler(live: LiveReport) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        head = False  # answering HEAD: the headers GET would send, no body

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
            """`curl -I` and uptime checks send HEAD, which every HTTP server must answer (RFC 9110 9.1); the
            stdlib answered 501 Unsupported method."""
            self.head = True
            try:
                self.do_GET()
            finally:
                self.head = False

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html", "/" + files.HTML):
                    self._send(live.current().html, "text/html; charset=utf-8")
                elif path == "/" + results.PARETO:
                    body = json.dumps(json_safe(live.current().summary)).encode()
                    self._send(body, "application/json")
                elif path == "/" + files.PNG:
                    self._send(live.png(), "image/png")
                elif path == "/healthz":
                    self._send(json.dumps({"status": "ok", "sweep": live.sweep_url}).encode(), "application/json")
                else:
                    self._send(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)
            except AvdisError as exc:  # storage gone or unreadable: say so, keep serving
                log.warning("%s", exc)
                self._send(f"{exc}\n".encode(), "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)

        def _send(self, body: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not self.head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


class DashboardServer(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], live: LiveReport) -> None:
        if ":" in address[0]:  # an IPv6 address (::1, ::): the stdlib server binds IPv4 only unless told
            self.address_family = socket.AF_INET6
        super().__init__(address, _handler(live))
        self.live = live

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closed its connection mid-page (a reload of the multi-MB page) is no error of the
        dashboard's: the stdlib printed a traceback for each to the terminal."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def make_server(sweep_url: str, host: str = "127.0.0.1", port: int = 8300, s3: S3Config | None = None,
                refresh_s: float = 5.0) -> DashboardServer:
    """A bound, not yet serving, server (port 0 picks a free one).

    Raises, before binding, ResultsError for a missing sweep and UsageError for a folder
    without one or a port out of range; UsageError when the port cannot be bound.
    """
    if not 0 <= port <= 65535:
        raise UsageError(f"port {port} is not a TCP port; pick one in 1-65535 (0: any free port)")
    live = LiveReport(sweep_url, s3, refresh_s)
    try:
        return DashboardServer((host, port), live)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                         "pick another --port (0: any free port) or --host") from None


def page_url(server: DashboardServer) -> str:
    """The URL to open the page at. A server on every interface (--host 0.0.0.0 or ::) is named by the machine's name:
    http://0.0.0.0:8300/, as it was named, opens nothing on another machine, the reason to listen on every interface."""
    host, port = server.server_address[:2]
    if ipaddress.ip_address(host).is_unspecified:
        host = socket.gethostname()
    host = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    return f"http://{host}:{port}/"


def serve(sweep_url: str, host: str = "127.0.0.1", port: int = 8300, s3: S3Config | None = None,
          refresh_s: float = 5.0) -> None:
    """Serve the live page until interrupted."""
    server = make_server(sweep_url, host, port, s3, refresh_s)
    print(f"avdis dashboard: {sweep_url} on {page_url(server)} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
