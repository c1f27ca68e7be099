"""Reading a manifest (once per process until it is written again) and its hash, and the shard files stored beside
it: which it lists are missing or of another size, which it does not list."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

from avdis import storage
from avdis.config import S3Config
from avdis.data.shards.layout import MANIFEST, SHARD_DIR, SHARD_NAME, ManifestUnreadable, PreprocessError


def read_manifest(url: str, s3: S3Config | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """The manifest table and its "avdis" metadata (label sets, features, shards)."""
    table, meta, _ = load_manifest(url, s3)
    return table, meta


# manifest URL -> (its `_stamp`, table, metadata as JSON, hash) of the last one read in this process
_READ: dict[str, tuple[str, pa.Table, bytes, str]] = {}


def load_manifest(url: str, s3: S3Config | None = None) -> tuple[pa.Table, dict[str, Any], str]:
    """`read_manifest`, and the `manifest_hash` of the bytes it read: one download where a trial's every worker
    opens the data, and the hash a run records is that of the manifest it read, not of a later read. Read again only
    where it changed since this process last read it (`_stamp`): the start of a run or a sweep reads it for each of
    its checks (4 to 5 downloads of a manifest that may be megabytes on S3)."""
    murl = storage.join(url, MANIFEST)
    if not storage.exists(murl, s3):
        raise PreprocessError(f"{murl}: no manifest; run `avdis preprocess --out {url}` first")
    stamp = _stamp(murl, s3)
    held = _READ.get(murl)
    if held is not None and stamp and held[0] == stamp:
        _, table, meta, digest = held
        return table, json.loads(meta), digest
    data = storage.read_bytes(murl, s3)
    try:  # pa.ArrowInvalid, a ValueError, for a file that is not Parquet
        table = storage.parquet_of(data)
        meta = table.schema.metadata[b"avdis"]
        parsed = json.loads(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestUnreadable(f"{murl}: holds no avdis manifest ({type(exc).__name__}: {exc}); rebuild it with "
                                 f"`avdis preprocess --out {url} --force`") from None
    _READ[murl] = (stamp, table, meta, _short_hash(data))
    return table, parsed, _READ[murl][3]


def _stamp(url: str, s3: S3Config | None) -> str:
    """What changes when the file at `url` is written again, from its details (an S3 object's ETag; a local file's
    inode, size and time: avdis writes a new file and renames it into place), asked afresh, not from a listing
    cached in this process; '' where they cannot be had (the file is then read)."""
    fs, path = storage.filesystem(url, s3)
    try:
        info = fs.info(path, refresh=True)
    except Exception:  # noqa: BLE001 - read it, whose failure says why
        return ""
    return "|".join(str(info.get(k)) for k in ("ETag", "ino", "size", "mtime", "LastModified"))


def manifest_hash(url: str, s3: S3Config | None = None) -> str:
    """Short hash of the manifest bytes, recorded with every result."""
    return load_manifest(url, s3)[2]


def _short_hash(manifest: bytes) -> str:
    return hashlib.sha256(manifest).hexdigest()[:16]


def _shard_files(url: str, s3: S3Config) -> dict[str, int]:
    """Byte size of every shard file (`shard_name`'s) under `<url>/shards/`, by name. Only those: a build deletes
    the ones its manifest does not list, and a user's own files there (notes, other tars) are not ours to delete."""
    folder = storage.join(url, SHARD_DIR)
    fs, path = storage.filesystem(folder, s3)
    try:
        if not fs.exists(path):
            return {}
        entries = fs.ls(path, detail=True)
    except Exception as exc:
        raise storage.StorageError(f"{folder}: cannot list ({type(exc).__name__}: {exc})") from exc
    sizes = {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e["size"]) for e in entries if e["type"] == "file"}
    return {name: size for name, size in sizes.items() if SHARD_NAME.fullmatch(name)}


def _unsound(listed: list[dict[str, Any]], found: dict[str, int]) -> dict[str, str]:
    """The shards of a manifest's list that `found` (name -> bytes, `_shard_files`) lacks or holds at another size, by
    name, each with what is wrong."""
    return {s["name"]: "missing" if s["name"] not in found else f"has {found[s['name']]} bytes, the manifest says "
            f"{s['bytes']}" for s in sorted(listed, key=lambda s: s["name"]) if found.get(s["name"]) != s["bytes"]}


def unsound_shards(url: str, s3: S3Config | None = None) -> dict[str, str]:
    """The shards the manifest at `url` lists whose file is missing or not of its recorded size, by name, each with
    what is wrong: one listing, no read (a shard damaged in place at its size is found only as a run reads it)."""
    return _unsound(read_manifest(url, s3)[1]["shards"], _shard_files(url, s3 or S3Config()))


def shards_mismatch(url: str, listed: list[dict[str, Any]], s3: S3Config) -> str | None:
    """How the shard files in storage differ from the manifest's list; None when they are exactly it."""
    found = _shard_files(url, s3)
    problems = [f"{name} {why}" for name, why in _unsound(listed, found).items()]
    problems += [f"{n} is not in the manifest" for n in sorted(found.keys() - {s["name"] for s in listed})]
    return f"the shards stored differ from the manifest: {'; '.join(problems[:5])}" if problems else None


def remove_unlisted(url: str, listed: list[dict[str, Any]], s3: S3Config) -> None:
    """Delete shard files a new manifest does not list (left by an older or interrupted build)."""
    keep = {s["name"] for s in listed}
    for name in sorted(_shard_files(url, s3).keys() - keep):
        storage.remove(storage.join(url, SHARD_DIR, name), s3)
