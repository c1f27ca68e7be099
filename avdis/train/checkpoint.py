"""Checkpoint contents beside the engine state, and where runs keep them.

A checkpoint directory holds `engine/` (engine-specific, see `avdis.train.engine`),
`state.json` (epoch, step, data position, metric history, what model it belongs to),
`adversary.pt` and, for nullspace, `posthoc.pt`. Resuming into another model shape fails
with the setting that differs.

`RunStore` is the single-process trainer's checkpoint store (Ray Train has its own):
`<run>/checkpoint_epoch_NNNN/` folders, `latest.json` written last as the pointer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from avdis import storage
from avdis.config import Config, S3Config
from avdis.errors import UsageError

STATE = "state.json"
LATEST = "latest.json"
KEEP = 2


def identity(cfg: Config, n_emotions: int, n_speakers: int) -> dict[str, Any]:
    """What must match for a checkpoint to load into this run."""
    return {
        "model.preset": cfg.model.preset, "model.modality": cfg.model.modality, "model.emb_dim": cfg.model.emb_dim,
        "method.name": cfg.method.name, "train.strategy": cfg.train.strategy,
        "train.zero_stage": cfg.train.zero_stage, "emotions": n_emotions, "speakers": n_speakers,
    }


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    diffs = [f"{k}={saved.get(k)!r} (this run: {v!r})" for k, v in current.items() if saved.get(k) != v]
    if diffs:
        raise UsageError(
            f"{where}: checkpoint belongs to another model: {'; '.join(diffs)}. "
            "Use another train.name (or sweep name) for a new run, or the original settings to resume."
        )


def write_state(directory: Path, state: dict[str, Any]) -> None:
    (directory / STATE).write_text(json.dumps(state, indent=1))


def read_state(directory: Path) -> dict[str, Any]:
    return json.loads((directory / STATE).read_text())


class RunStore:
    """Checkpoints of a single-process run under its URL (local folder or s3://)."""

    def __init__(self, run_url: str, s3: S3Config):
        self.url, self.s3 = run_url, s3

    def _fs(self):
        return storage.filesystem(self.url, self.s3)

    @contextmanager
    def latest(self) -> Iterator[Path | None]:
        pointer = storage.join(self.url, LATEST)
        if not storage.exists(pointer, self.s3):
            yield None
            return
        name = json.loads(storage.read_bytes(pointer, self.s3))["checkpoint"]
        fs, path = storage.filesystem(storage.join(self.url, name), self.s3)
        with tempfile.TemporaryDirectory(prefix="avdis-restore-") as tmp:
            fs.get(path + "/", tmp + "/", recursive=True)
            yield Path(tmp)

    def save(self, local_dir: Path, epoch: int) -> str:
        name = f"checkpoint_epoch_{epoch:04d}"
        fs, path = storage.filesystem(storage.join(self.url, name), self.s3)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.put(str(local_dir) + "/", path + "/", recursive=True)
        storage.write_bytes(storage.join(self.url, LATEST), json.dumps({"checkpoint": name}).encode(), self.s3)
        self._prune()
        return storage.join(self.url, name)

    def _prune(self) -> None:
        fs, path = self._fs()
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False) if "checkpoint_epoch_" in p)
        for old in names[:-KEEP]:
            fs.rm(f"{path}/{old}", recursive=True)


@contextmanager
def scratch_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="avdis-ckpt-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
