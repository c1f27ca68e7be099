"""A live page for a running sweep: `avdis dashboard <storage>/<sweep>`.

A stdlib HTTP server renders the report from `trials.parquet` in memory (it writes
nothing, so read-only access to the sweep's storage is enough, local or s3://) and
renders again only when the file's bytes changed. Routes: `/` (the page, which polls
`/pareto.json` and reloads when its `updated_at` changes), `/pareto.json`,
`/pareto.png`, `/healthz`. A sweep with no (readable) results yet shows
"waiting for the first result".
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from avdis import storage
from avdis.config import S3Config
from avdis.errors import AvdisError
from avdis.report import plots, results

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    digest: str | None
    html: bytes
    summary: dict[str, Any]
    trials: pd.DataFrame = field(repr=False)
    png: bytes | None = None  # rendered on first request: matplotlib is the slow part


class LiveReport:
    """The sweep's report, re-rendered when trials.parquet changes (checked at most every refresh_s / 2)."""

    def __init__(self, sweep_url: str, s3: S3Config | None, refresh_s: float) -> None:
        self.sweep_url, self.s3, self.refresh_s = sweep_url, s3, refresh_s
        self.lock = threading.Lock()
        self.checked = float("-inf")
        self.snapshot = self._render()  # raises ResultsError for a sweep path that does not exist

    def _digest(self) -> str | None:
        url = storage.join(self.sweep_url, results.TRIALS)
        try:
            return hashlib.sha256(storage.read_bytes(url, self.s3)).hexdigest()
        except FileNotFoundError:
            return None

    def _render(self) -> Snapshot:
        digest = self._digest()
        trials, note = plots.load_trials(self.sweep_url, self.s3)
        summary = results.summarize(trials, plots.sweep_name(trials, self.sweep_url))
        page = plots.render_html(trials, summary, note=note, refresh_s=self.refresh_s)
        self.checked = time.monotonic()
        return Snapshot(digest, page.encode(), summary, trials)

    def current(self) -> Snapshot:
        with self.lock:
            if time.monotonic() - self.checked >= self.refresh_s / 2:
                self.checked = time.monotonic()
                if self._digest() != self.snapshot.digest:
                    self.snapshot = self._render()
            return self.snapshot

    def png(self) -> bytes:
        snap = self.current()
        with self.lock:
            if snap.png is None:
                snap.png = plots.render_png(snap.trials, snap.summary)
            return snap.png


def _handler(live: LiveReport) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html", "/" + plots.HTML):
                    self._send(live.current().html, "text/html; charset=utf-8")
                elif path == "/" + results.PARETO:
                    body = json.dumps(results.json_safe(live.current().summary)).encode()
                    self._send(body, "application/json")
                elif path == "/" + plots.PNG:
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
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


class DashboardServer(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], live: LiveReport) -> None:
        super().__init__(address, _handler(live))
        self.live = live


def make_server(sweep_url: str, host: str = "127.0.0.1", port: int = 8300, s3: S3Config | None = None,
                refresh_s: float = 5.0) -> DashboardServer:
    """A bound, not yet serving, server (port 0 picks a free one); raises ResultsError first for a missing sweep."""
    return DashboardServer((host, port), LiveReport(sweep_url, s3, refresh_s))


def serve(sweep_url: str, host: str = "127.0.0.1", port: int = 8300, s3: S3Config | None = None,
          refresh_s: float = 5.0) -> None:
    """Serve the live page until interrupted."""
    server = make_server(sweep_url, host, port, s3, refresh_s)
    bound_host, bound_port = server.server_address[:2]
    print(f"avdis dashboard: {sweep_url} on http://{bound_host}:{bound_port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
