"""Make sure a config's shards exist: generate the synthetic corpus and preprocess on first use.

`preprocess` is what `avdis preprocess` and `jobs/preprocess.py` run; `ensure_shards` is
what training and sweeps call so the embedded default works from a fresh clone.
"""

from __future__ import annotations

from typing import Any

from avdis import storage
from avdis.config import Config
from avdis.data import shards, synth


def preprocess(cfg: Config, use_ray: bool = True, generate: bool = True, force: bool = False) -> dict[str, Any]:
    """Preprocess `cfg.data.src` into `cfg.data.shards`; Ray tasks when `use_ray`."""
    data = cfg.data
    if generate and data.corpus == "synthetic" and not synth.is_generated(data.synth, data.src):
        print(f"generating synthetic corpus in {data.src} ...", flush=True)
        synth.generate(data.synth, data.src)
    runner = None
    if use_ray:
        from avdis import runtime

        runtime.connect(cfg.ray)
        runner = shards.run_on_ray(data, cfg.s3)
    return shards.preprocess(data, cfg.s3, run_tasks=runner, force=force)


def ensure_shards(cfg: Config, use_ray: bool = False) -> dict[str, Any]:
    """Shards for `cfg.data`, made now if missing (only the synthetic corpus can be made here)."""
    if storage.exists(storage.join(cfg.data.shards, shards.MANIFEST), cfg.s3):
        _, meta = shards.read_manifest(cfg.data.shards, cfg.s3)
        return {"url": cfg.data.shards, "up_to_date": True, "shards": len(meta["shards"])}
    if cfg.data.corpus != "synthetic":
        raise shards.PreprocessError(
            f"{cfg.data.shards}: no manifest; run `avdis preprocess --corpus {cfg.data.corpus} "
            f"--src <folder> --out {cfg.data.shards}` first"
        )
    return preprocess(cfg, use_ray=use_ray)
