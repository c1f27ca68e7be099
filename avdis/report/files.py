"""A sweep's report, written under the sweep URL from `trials.parquet` and `pareto.json` (which the sweep's recorder
keeps current, `avdis.results`): `pareto.png` (`avdis.report.image`) and `pareto.html` (`avdis.report.webpage`).
`write_pages` only reads those files; `write_report` (`avdis report`) first rebuilds pareto.json from the table where
it is not that table's summary (a table no sweep summarized), and writes each file only while the table is still the
one it was drawn from."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pandas as pd

from avdis import results, storage
from avdis.config import S3Config
from avdis.errors import UsageError
from avdis.numbers import json_safe
from avdis.report.image import render_png
from avdis.report.view import load_trials, sweep_name
from avdis.report.webpage import render_html
from avdis.results import ResultsError

log = logging.getLogger(__name__)

HTML, PNG = "pareto.html", "pareto.png"


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
                         f"pass <storage>/<sweep name> of a sweep with results{results.sweeps_under(sweep_url, s3)}")


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
    """Redraw pareto.html and pareto.png from trials.parquet and pareto.json as they are; return the three URLs. The
    two are read as one write of this process's recorder left them (`results.RECORDING`): the sweep's report thread
    (`avdis.report.callback`) draws beside it."""
    _check_has_trials(sweep_url, s3)
    with results.RECORDING:
        trials, note = load_trials(sweep_url, s3)
        summary = results.read_pareto(sweep_url, s3)
    if note is not None:
        log.warning("%s", note)
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
    table read, where it was outrun), `outrun`'s words where the running sweep's own report stands instead, and
    `rebuilt`: what was wrong with a damaged pareto.json that was rebuilt from trials.parquet (a user who fixed it
    by hand, or whose tool reads it, is told it was replaced)."""

    written: dict[str, str]
    trials: pd.DataFrame
    outrun: str | None = None
    rebuilt: str | None = None


def _still_read(sweep_url: str, trials: pd.DataFrame, s3: S3Config | None) -> bool:
    """Whether trials.parquet still holds `trials`: a running sweep's recorder replaces it, and its summary with it,
    after every result."""
    try:
        return results.read_trials(sweep_url, s3).equals(trials)
    except ResultsError:  # being replaced by a foreign writer: not the table read
        return False


def _kept(sweep_url: str, summary: dict[str, Any], s3: S3Config | None) -> tuple[dict[str, Any] | None, str | None]:
    """pareto.json where it already summarizes the table as `summary` does (the recorder's, for a table a sweep
    wrote), else None, and only then is it written: beside a sweep the report writes none, so none of its own can land
    over the recorder's newer one. Second, what is wrong with a damaged one (its file and field), which is rebuilt."""
    try:
        kept = results.read_pareto(sweep_url, s3)
    except ResultsError as exc:  # damaged: rebuilt, and said (its error's advice to rebuild it is what is done)
        return None, str(exc).rsplit(" rebuild it from", 1)[0].rstrip(";,")
    drawn = json.loads(json.dumps(json_safe(summary)))
    same = kept is not None and {**kept, "updated_at": None} == {**drawn, "updated_at": None}
    return (kept if same else None), None


def write_report(sweep_url: str, s3: S3Config | None = None) -> Report:
    """Rebuild pareto.json from trials.parquet (on the emotion metric sweep.json records) where it is not that
    table's summary, then the pages.

    The trials returned are those drawn from (read once: a running sweep replaces the file, so a second read could
    tell of other trials). Each file is written only while trials.parquet still holds the table read, and drawn again
    from the new one where it does not: run beside a live sweep, a report summarized and drawn (a second or two) from
    a table the sweep's recorder then replaced wrote its older pareto.json and pages over the recorder's newer ones,
    which stood until the sweep's next result. A sweep's pareto.json already summarizes its table and is not written.
    After `REDRAWS` tries outrun by a sweep that replaces the table faster than a report is drawn, nothing more is
    written and the sweep's own report stands (`outrun`): what was needed is there, newer than this one would be.

    A damaged pareto.json is rebuilt and `rebuilt` says what was wrong with it. An unreadable trials.parquet leaves
    pareto.json as it was (a summary of nothing would replace a good one): the pages say why, and ResultsError then
    says so too."""
    _check_has_trials(sweep_url, s3)
    axes = results.axes_of(sweep_url, s3)  # the sweep's emotion metric, as its sweep.json records it
    with _read_only_said(sweep_url):
        for _ in range(REDRAWS):
            trials, note = load_trials(sweep_url, s3)
            summary = results.summarize(trials, sweep_name(trials, sweep_url), axes)
            if note is not None:  # the pages show the summary kept, and why it was kept
                _write_pages(sweep_url, _pages(trials, results.read_pareto(sweep_url, s3) or summary, note), s3)
                raise ResultsError(f"{note}; {results.PARETO} was left as it was, the pages say why")
            kept, damaged = _kept(sweep_url, summary, s3)
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
                    rebuilt = None if damaged is None else f"{damaged}; rebuilt it from {results.TRIALS}"
                    return Report(written, trials, rebuilt=rebuilt)
    return Report(_urls(sweep_url), trials, outrun(sweep_url))
