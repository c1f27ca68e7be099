"""The build: a corpus's scan -> shard tasks (`plan`), their results -> label indices and splits (`assign`), the
manifest and rejects.parquet; nothing where the manifest says the shards are up to date."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa

from avdis import runtime, storage, storage_lock
from avdis.config import EMOTIONS, DataConfig, S3Config
from avdis.data import splits
from avdis.data.corpora import ClipRecord, CorpusError, Reject, named_as, scan
from avdis.data.shards import made_with  # its DECODING, read there: the one value the fingerprint holds
from avdis.data.shards.counts import (emotion_counts, first_rejects, manifest_rates, reject_counts, rejects_now,
                                      rejects_table, split_counts)
from avdis.data.shards.encode import write_shard
from avdis.data.shards.layout import MANIFEST, REJECTS, ManifestUnreadable, PreprocessError, ShardTask
from avdis.data.shards.made_with import HELD, SCAN, fingerprint_of, made_features, source_lines, what_changed
from avdis.data.shards.manifest import read_manifest, remove_unlisted, shards_mismatch
from avdis.data.shards.notes import (audio_alone_hint, audio_from_note, copies_note, no_video_anywhere,
                                     placeholders_counted, placeholders_note)
from avdis.errors import UsageError, counted


BUILD = "build of these shards"  # what holds the shards folder's lock (`storage_lock.exclusive`) while it makes them


def build_shards(
    data: DataConfig,
    s3: S3Config,
    run_tasks: Callable[[list[ShardTask]], Iterable[dict[str, Any]]] | None = None,
    force: bool = False,
    missing_only: bool = False,
) -> dict[str, Any] | None:
    """Scan `data.src`, write shards + manifest + rejects under `data.shards`; return a summary.

    `run_tasks` executes the shard tasks (Ray tasks in `jobs/preprocess.py`); by default
    they run one after another in this process. Two builds of the same local shards at once (two sweeps submitted
    on a fresh cluster, `avdis preprocess` twice) each made them: the second now waits for the first, then finds
    them up to date. `missing_only`: make them only where no manifest is there once this build holds the folder,
    None where another job made them meanwhile (`prepare.ensure_shards`, which takes shards as they are made).
    """
    from avdis.data.media import check_mel_bands

    check_mel_bands(data.features)  # before the scan: every clip would be decoded into the same dead bands
    out_dir = None if storage.is_remote(data.shards) else storage.filesystem(data.shards)[1]
    if out_dir is not None and os.path.realpath(out_dir) == os.path.realpath(data.src):
        raise UsageError(f"{data.shards}: is the source folder itself; write the shards to a folder beside it or "
                         "inside it (its own files would be read as the corpus's)")
    with storage_lock.exclusive(data.shards, BUILD, wait=True, s3=s3):
        if missing_only and storage.exists(storage.join(data.shards, MANIFEST), s3):
            return None
        from avdis.data import synth

        with synth.held_while_read(data.src) if data.corpus == "synthetic" else nullcontext():
            return _build(data, s3, run_tasks, force, out_dir)


def _build(data: DataConfig, s3: S3Config, run_tasks: Callable[[list[ShardTask]], Iterable[dict[str, Any]]] | None,
           force: bool, out_dir: str | None) -> dict[str, Any]:
    """`build_shards`' work, in the shards folder's lock (`out_dir`: that folder where it is local)."""
    from avdis.data import synth

    records, scan_rejects = scan(data.corpus, data.src, skip=out_dir, audio_only=data.modality == "audio")  # an output inside the source is no input
    manifest_url = storage.join(data.shards, MANIFEST)
    if not records:
        if storage.exists(manifest_url, s3):  # a wrong --src must not touch the shards a manifest vouches for
            where = f"{data.shards} was left as it was"
        else:
            storage.write_parquet(storage.join(data.shards, REJECTS), rejects_table(scan_rejects), s3)
            where = f"all in {storage.join(data.shards, REJECTS)}"
        counts = reject_counts(scan_rejects)  # unused files (CREMA-D's AudioMP3 copies) are no faults
        unused = f" ({counts['unused']} more unused, no fault)" if counts["unused"] else ""
        placed = placeholders_counted(scan_rejects)  # said beside the first rejects by file: all may be such rows
        raise PreprocessError(f"{data.src}: no usable {data.corpus} clips; {counted(counts['rejects'], 'file')} "
                              f"rejected{unused}, first: {first_rejects(scan_rejects)} ({where}){'; ' if placed else ''}"
                              f"{placed}"
                              f"{audio_alone_hint(data, out_dir)}"
                              f"{named_as(Path(data.src), None, data.corpus, Path(out_dir) if out_dir else None)}")
    lines = source_lines(records, scan_rejects)  # stats every source file once, for both hashes
    fingerprint, sources = fingerprint_of(lines, data), hashlib.sha256(lines).hexdigest()
    table, meta, reason = None, None, "forced" if force else None
    if not force and storage.exists(manifest_url, s3):
        try:
            table, meta = read_manifest(data.shards, s3)
        except ManifestUnreadable as exc:  # a damaged manifest vouches for nothing: rebuilt, as --force would
            reason = f"manifest unreadable ({exc})"
    then = _as_made(meta, data, out_dir, (records, scan_rejects))
    reason = reason or _stale_reason(data, meta, *(then or (fingerprint, sources)), s3)
    if reason is None:
        return {"url": data.shards, "clips": table.num_rows, **rejects_now(meta, scan_rejects, data, s3),
                **copies_note(scan_rejects, data.corpus), **placeholders_note(scan_rejects), "up_to_date": True,
                **audio_from_note(data.corpus, records, table.column("audio_path").to_pylist()),
                **manifest_rates(table, data.features),
                "shards": len(meta["shards"]), "speakers": len(meta["speakers"]),
                "emotions": emotion_counts(table.column("emotion").to_pylist(), meta["emotions"]),
                "splits": split_counts(table.column("split").to_pylist())}
    rejects_url = storage.join(data.shards, REJECTS)
    # from here until the new manifest is written, no manifest vouches for the shards, nor do the old build's rejects
    # speak for this one, should it be cut short; kept here to be put back should no clip decode (no shard is then
    # written: a corpus cloned again without `git lfs pull` must not cost the shards made from a whole copy)
    old = {url: storage.read_bytes(url, s3) for url in (manifest_url, rejects_url) if storage.exists(url, s3)}
    for url in old:
        storage.remove(url, s3)
    runner = run_tasks or (lambda ts: (write_shard(t, data.shards, data.features, s3) for t in ts))
    rows, decoded, shards = [], [], []
    for result in runner(plan(records, data)):
        runtime.check_interrupted()  # a Ctrl-C the decoder's libraries swallowed stops the build here
        rows.extend(result["rows"])
        decoded.extend(Reject(**r) for r in result["rejects"])
        if result["shard"]:
            shards.append(result["shard"])
    # a file the scan marked unused (a spare of its clip) is a reject of its own where its clip could not be made, and
    # none where its clip was made from it (CREMA-D's AudioMP3/ file behind a .wav that does not decode); a copy of
    # another size (a fault to the scan) is none where its clip was made from it, and its own where it failed
    judged = {r.source_path for r in decoded}
    copied = {p for rec in records for pair in rec.copies for p in pair if p}
    settled = judged | {p for row in rows for p in (row["audio_path"], row["video_path"])}  # or made a clip
    rejected = [r for r in scan_rejects
                if not ((r.unused or r.source_path in copied) and r.source_path in settled)] + decoded
    counts = reject_counts(rejected)  # unused files (CREMA-D's AudioMP3 copies) are no clips that failed
    unused = f"; {counts['unused']} more unused, no fault" if counts["unused"] else ""
    placed = placeholders_counted(scan_rejects)
    none_made = "" if rows else (f"{data.src}: every clip was rejected ({counted(counts['rejects'], 'file')}{unused}), "
                                 f"first: {first_rejects(rejected)}{'; ' if placed else ''}{placed}"
                                 f"{no_video_anywhere(records, decoded, data, out_dir)}")
    if not rows and manifest_url in old:
        for url, content in old.items():
            storage.write_bytes(url, content, s3)
        raise PreprocessError(f"{none_made} ({data.shards} was left as it was)")
    storage.write_parquet(rejects_url, rejects_table(rejected), s3)
    if not rows:
        raise PreprocessError(f"{none_made}; see {rejects_url}")
    rows.sort(key=lambda r: r["clip_id"])
    shards.sort(key=lambda s: s["name"])
    labels = assign(rows, data)
    meta = {
        "version": 1, "corpus": data.corpus, "src": data.src, "fingerprint": fingerprint, "sources": sources,
        "shard_size": data.shard_size, "decoding": made_with.DECODING, "scan": SCAN,
        "emotions": labels.emotions, "speakers": labels.speakers,
        "features": made_features(data), "split": data.split.model_dump(), "modalities": HELD[data.modality],
        "shards": shards, **counts,
    }
    made = synth.settings_of(data.src) if data.corpus == "synthetic" else None
    if made is not None:  # the generator's settings, for `check_synth` (a corpus of one's own has none)
        meta["synth"] = made
    table = pa.Table.from_pylist(rows).replace_schema_metadata({"avdis": json.dumps(meta)})
    remove_unlisted(data.shards, shards, s3)
    storage.write_parquet(manifest_url, table, s3)
    return {"url": data.shards, "clips": len(rows), **counts, **copies_note(scan_rejects, data.corpus),
            **placeholders_note(scan_rejects), **audio_from_note(data.corpus, records, [r["audio_path"] for r in rows]),
            "up_to_date": False, "shards": len(shards),
            **manifest_rates(table, data.features),
            "speakers": len(labels.speakers), "emotions": emotion_counts([r["emotion"] for r in rows], labels.emotions),
            "splits": split_counts([r["split"] for r in rows]), "rebuilt_because": reason}


def _stale_reason(data: DataConfig, meta: dict[str, Any] | None, fingerprint: str, sources: str,
                  s3: S3Config) -> str | None:
    """Why the output under `data.shards` (its manifest's `meta`) must be rebuilt; None when it is up to date."""
    if meta is None:
        return "no manifest"
    if meta.get("fingerprint") != fingerprint:
        return what_changed(meta, data, sources)
    return shards_mismatch(data.shards, meta["shards"], s3)


def _as_made(meta: dict[str, Any] | None, data: DataConfig, out_dir: str | None,
             scanned: tuple[list[ClipRecord], list[Reject]]) -> tuple[str, str] | None:
    """The fingerprint and sources hash of the corpus as the build `meta` speaks for made them, where that differs
    from how they are made now (`scanned`, data.src's scan): with its folder spelt as that build spelt it, when
    data.src names that folder otherwise (`corpus` then, `$PWD/corpus` or a link to it now), and with every scan
    reject for a manifest from before `SCAN`; else None. Either would otherwise rebuild every shard, saying the corpus
    had changed: the fingerprint holds each file's path, and the rejects of a README the build found."""
    made = (meta or {}).get("src")
    spelt = made not in (None, data.src) and os.path.realpath(made) == os.path.realpath(data.src)
    legacy = meta is not None and "scan" not in meta
    if not spelt and not legacy:
        return None
    if spelt:
        scanned = scan(data.corpus, made, skip=out_dir, audio_only=data.modality == "audio")
    lines = source_lines(*scanned, every_reject=legacy)
    return fingerprint_of(lines, data), hashlib.sha256(lines).hexdigest()


def source_changed(data: DataConfig, meta: dict[str, Any]) -> bool:
    """Whether the corpus at data.src differs from the one the shards `meta` speaks for were made from (a file or
    label changed, or another folder); False where that cannot be told here (data.src not on this machine, a manifest
    from before `sources` was kept, a folder that holds no corpus)."""
    if "sources" not in meta or not os.path.isdir(data.src):
        return False
    out_dir = None if storage.is_remote(data.shards) else storage.filesystem(data.shards)[1]
    try:
        scanned = scan(data.corpus, data.src, skip=out_dir, audio_only=data.modality == "audio")
    except CorpusError:  # no corpus there: training is not the place to tell
        return False
    then = _as_made(meta, data, out_dir, scanned)
    return (then[1] if then else hashlib.sha256(source_lines(*scanned)).hexdigest()) != meta["sources"]


@dataclass(frozen=True)
class Labels:
    """Label sets of one corpus; indices are positions in these lists."""

    emotions: list[str]
    speakers: list[str]

    @classmethod
    def of(cls, records: Iterable[ClipRecord]) -> "Labels":
        records = list(records)
        present = {r.emotion for r in records}  # the canonical words in their order, then a corpus's own, sorted
        return cls([e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS)),
                   sorted({r.speaker for r in records}))


def plan(records: list[ClipRecord], data: DataConfig) -> list[ShardTask]:
    """Clips dealt to shards in a seeded order."""
    order = np.random.default_rng(data.split.seed).permutation(len(records))
    return [ShardTask(k, [records[i] for i in order[start : start + data.shard_size]])
            for k, start in enumerate(range(0, len(records), data.shard_size))]


def assign(rows: list[dict[str, Any]], data: DataConfig) -> Labels:
    """Label indices and both split schemes for the decoded clips' manifest rows, in place; their label sets."""
    labels = Labels.of(ClipRecord(r["clip_id"], r["corpus"], r["speaker"], r["emotion"], "", "", "") for r in rows)
    speaker_idx = {name: i for i, name in enumerate(labels.speakers)}
    emotion_idx = {name: i for i, name in enumerate(labels.emotions)}
    spk = [r["speaker"] for r in rows]
    within = splits.within_speaker(spk, [r["emotion"] for r in rows], data.split)
    for row, split, fold in zip(rows, within, splits.speaker_folds(spk, data.split)):
        row.update(speaker_idx=speaker_idx[row["speaker"]], emotion_idx=emotion_idx[row["emotion"]],
                   split=split, fold=fold)  # "split": the within-speaker split (the manifest column's name)
    return labels
