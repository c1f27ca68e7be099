"""The counts of a build's summary: clips per emotion, split, source rate and bandwidth; rejects and unused files, and
rejects.parquet, which they are counted from."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from avdis import storage
from avdis.config import DataConfig, FeatureConfig, S3Config
from avdis.data import splits
from avdis.data.bandwidth import band_counts, bandwidth_cue, rate_counts
from avdis.data.corpora import Reject, no_media
from avdis.data.shards.layout import REJECTS


def manifest_rates(table: pa.Table, feat: FeatureConfig) -> dict[str, Any]:
    """The summary's clips per source rate and per bandwidth, and `bandwidth_cue`'s warning where their mel bands
    differ; nothing for a manifest made before `source_rate` was kept, and the rates alone for one made before
    `bandwidth_hz` was (its clips' bandwidth: half their rate)."""
    if "source_rate" not in table.column_names:
        return {}
    rates = table.column("source_rate").to_pylist()
    measured = "bandwidth_hz" in table.column_names
    bandwidths = table.column("bandwidth_hz").to_pylist() if measured else [None] * len(rates)
    cue = bandwidth_cue(table.column("speaker").to_pylist(), rates, bandwidths, feat)
    return {"source_rates": rate_counts(rates), **({"bandwidths": band_counts(bandwidths)} if measured else {}),
            **({"bandwidth_cue": cue} if cue else {})}


def emotion_counts(emotions: list[str], order: list[str]) -> dict[str, int]:
    """Clips per emotion in the label order, for the summary: a corpus's own words (a typo among them) show there."""
    counts = Counter(emotions)
    return {e: counts[e] for e in order}


def split_counts(within: list[str]) -> dict[str, int]:
    """Clips per within-speaker split; a 0 means that split is empty (every speaker has fewer than 3 clips)."""
    return {name: within.count(name) for name in splits.SPLITS}


def first_rejects(rejects: list[Reject], n: int = 3) -> str:
    """The first `n` rejects by file, faults before unused files, each with its reason: enough to tell a wrong folder
    or a broken copy."""
    return "; ".join(f"{r.source_path}: {r.reason}"
                     for r in sorted(rejects, key=lambda r: (r.unused, r.source_path, r.reason))[:n])


def reject_counts(rejects: list[Reject]) -> dict[str, int]:
    """Files that could not be used (`rejects`), and files their clips were made without (`unused`)."""
    unused = sum(r.unused for r in rejects)
    return {"rejects": len(rejects) - unused, "unused": unused}


def rejects_now(meta: dict[str, Any], scan_rejects: list[Reject], data: DataConfig, s3: S3Config) -> dict[str, int]:
    """`reject_counts` of shards found up to date, whose rejects.parquet is made to list the files that are no media
    (`no_media`: a README, Thumbs.db) the scan finds now: their coming or going rebuilds nothing (`SCAN`), and the
    summary and rejects.parquet kept the build's (one added: "unused": 21 where --force says 22, and no row for it).
    Every other reject is the same as the build's, or the shards would not be up to date. A manifest from before
    `SCAN` or unused files (its rejects.parquet has no `unused` column), shards with no rejects.parquet, and data.src
    spelt otherwise than the build spelt it (a link to its folder: the files would be named two ways) keep the
    build's (`_made_counts`)."""
    rejects_url = storage.join(data.shards, REJECTS)
    if ("scan" not in meta or "unused" not in meta or meta.get("src") != data.src
            or not storage.exists(rejects_url, s3)):
        return _made_counts(meta, scan_rejects, data.shards, s3)
    made = storage.read_parquet(rejects_url, s3)
    now = [Reject(**r) for r in made.to_pylist() if not (r["unused"] and no_media(r["source_path"]))]
    now += [r for r in scan_rejects if r.unused and no_media(r.source_path)]
    table = rejects_table(now)
    if not table.equals(made):
        storage.write_parquet(rejects_url, table, s3)
    return reject_counts(now)


def _made_counts(meta: dict[str, Any], scan_rejects: list[Reject], url: str, s3: S3Config) -> dict[str, int]:
    """`reject_counts` of the build a manifest speaks for. One made before files were marked unused counted them
    among its rejects (a RAVDESS download's ~2,900 02 + 03 files) and its rejects.parquet has no `unused` column: they
    are told apart again by the scan's marks and by the reason decoding gives such a file ("clip taken from ...")."""
    if "unused" in meta or not storage.exists(storage.join(url, REJECTS), s3):
        return {"rejects": meta["rejects"], "unused": meta.get("unused", 0)}
    marked = {(r.source_path, r.reason) for r in scan_rejects if r.unused}
    rows = storage.read_parquet(storage.join(url, REJECTS), s3).select(["source_path", "reason"]).to_pylist()
    unused = sum((r["source_path"], r["reason"]) in marked or r["reason"].startswith("clip taken from ") for r in rows)
    return {"rejects": meta["rejects"] - unused, "unused": unused}


def rejects_table(rejects: list[Reject]) -> pa.Table:
    """Sorted by file and reason: Ray tasks finish in any order, and identical inputs give identical bytes."""
    return pa.Table.from_pylist([asdict(r) for r in sorted(rejects, key=lambda r: (r.source_path, r.reason))],
                                schema=pa.schema([("source_path", pa.string()), ("reason", pa.string()),
                                                  ("unused", pa.bool_())]))
