"""Make sure a config's shards exist: generate the synthetic corpus and preprocess on first use.

`preprocess` is what `avdis preprocess` and `jobs/preprocess.py` run; `ensure_shards` is
what training and sweeps call so the embedded default works from a fresh clone;
`synthetic_shards` is the test fixtures' and the benchmarks' "a generated corpus with
these settings, preprocessed into shards at this URL". All three generate through
`generate_if_missing` and write through `shards.build_shards`. `as_made` gives drivers the
config to record: data.synth as the shards' corpus was generated; `recorded` the dump they record, data.synth null
where the shards' corpus was not generated.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from avdis import nodes, runtime, storage, storage_lock
from avdis.config import Config, DataConfig, S3Config, SynthConfig, with_overrides
from avdis.data import corpora, shards, synth
from avdis.data.corpora import GROUND_TRUTH
from avdis.errors import UsageError


def _generates(data: DataConfig) -> bool:
    """Whether `generate_if_missing` writes the corpus: not where a finished one with these settings is, nor into a
    corpus of the user's own (a `ground_truth.csv` the generator did not write)."""
    if data.corpus != "synthetic" or synth.is_generated(data.synth, data.src):
        return False
    return synth.made_here(data.src) or not (Path(data.src) / GROUND_TRUTH).is_file()


def generate_if_missing(data: DataConfig) -> None:
    """Generate the synthetic corpus at `data.src` unless a finished one with these settings is there. A folder the
    generator did not make is never written into: a `ground_truth.csv` there is a corpus of the user's own (read
    as it is; generating over it replaced its rows), and other files are refused. Nor is a finished corpus it made
    with other settings: refused, naming them (only an unfinished one, a generation cut short, is made again). Two
    jobs making the same corpus at once (two sweeps submitted on a fresh cluster) each generated it: the second now
    waits for the first, then finds it made."""
    if not _generates(data):
        return
    _check_target(data)  # before the lock's file goes into a folder that is not the generator's to write
    with storage_lock.exclusive(data.src, synth.HELD_FOR, wait=True):
        if _generates(data):  # decided again in the lock: a corpus another job made meanwhile is kept
            _check_target(data)
            print(f"generating synthetic corpus in {data.src} ...", flush=True)
            synth.generate(data.synth, data.src)


def _check_target(data: DataConfig) -> None:
    """Refuse to generate into `data.src` where it holds a finished corpus of other settings, or files of others."""
    src = Path(data.src)
    made = synth.settings_of(src)
    if made is not None:
        raise UsageError(f"{src}: holds a corpus generated with other settings ({_differ(made, data)}); it is not "
                         "generated over (one made with `avdis synth` was replaced by this config's, and trained on in "
                         "its place). Train on it with its settings, point data.src to a new folder for a corpus with "
                         f"these, or delete the folder (or run `avdis synth --out {src}` with these settings) to make it again")
    if synth.holds_others(src):
        named = corpora.named_as(src, None, data.corpus)
        if named:  # `avdis train data.src=<a RAVDESS copy>` was told to write a ground_truth.csv for its files
            raise UsageError(f"{src}: holds files but no {GROUND_TRUTH}, read as data.corpus=synthetic{named}")
        raise UsageError(f"{src}: holds files but no {GROUND_TRUTH}; the synthetic corpus is generated only into an "
                         f"empty or new folder: point data.src to one, or add a {GROUND_TRUTH} (columns file, clip_id, "
                         "speaker, emotion) to use these files as a corpus")


def _differ(made: dict[str, Any], data: DataConfig) -> str:
    """The data.synth settings in which a generated corpus's recorded `made` differs from the config's."""
    return "; ".join(f"data.synth.{k}: {made.get(k)!r} there, {v!r} here"
                     for k, v in data.synth.model_dump().items() if made.get(k) != v)


def check_corpus(data: DataConfig) -> None:
    """Refuse a data.synth the config gives (`model_fields_set`) other than that of the generated corpus at data.src,
    before any decoding: preprocessing reads the corpus as it is, so `avdis preprocess data.synth.identity_cues=off`
    made shards with identity cues, said nothing, and training with that config then refused them
    (`shards.check_synth`). A corpus the generator did not write has no such settings: data.synth is not its own."""
    made = synth.settings_of(data.src) if data.corpus == "synthetic" and "synth" in data.model_fields_set else None
    if made is not None and made != data.synth.model_dump():
        raise UsageError(f"{data.src}: holds a corpus generated with other settings ({_differ(made, data)}); "
                         "preprocessing reads it as it is, and training with this data.synth would refuse its shards. "
                         "Give data.synth as it was made (or leave it out), or generate a corpus with these settings "
                         "(`avdis synth --out <another folder> ...`) and preprocess that")


def preprocess(cfg: Config, use_ray: bool = True, generate: bool = True, force: bool = False,
               names: dict[str, str] | None = None, missing_only: bool = False) -> dict[str, Any] | None:
    """Preprocess `cfg.data.src` into `cfg.data.shards`; Ray tasks when `use_ray`. `names`: the option the user gave
    data.src or data.shards by where it is not that setting (`--out`), for a refusal to name. `missing_only`: as
    `shards.build_shards` takes it (None where another job made the shards meanwhile)."""
    if generate:
        generate_if_missing(cfg.data)
    if not generate:
        check_corpus(cfg.data)
    runner = None
    if use_ray:
        src, out = ((names or {}).get(key, key) for key in ("data.src", "data.shards"))
        nodes.check_added_nodes({out: cfg.data.shards}, cfg.ray)  # data.src: a task that misses it says so
        runtime.connect(cfg.ray)
        nodes.check_shared({src: cfg.data.src, out: cfg.data.shards})
        nodes.check_node_credentials({out: cfg.data.shards})
        runner = shards.run_on_ray(cfg.data, storage.pinned(cfg.s3))  # tasks on other nodes: the driver's endpoint
    return shards.build_shards(cfg.data, cfg.s3, run_tasks=runner, force=force, missing_only=missing_only)


def synthetic_shards(spec: SynthConfig, src: str | Path, url: str | Path,
                     shard_size: int = DataConfig.model_fields["shard_size"].default,
                     s3: S3Config | None = None) -> dict[str, Any]:
    """A corpus generated with `spec` at `src` (kept if already there), preprocessed in this process into `url`."""
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(url), shard_size=shard_size, synth=spec)
    generate_if_missing(data)
    return shards.build_shards(data, s3 or S3Config())


def to_make(cfg: Config) -> dict[str, str]:
    """The data paths `ensure_shards` would write to, by option name: none when the shards are there; else the
    shards, and the source folder when the corpus is generated into it."""
    if storage.exists(storage.join(cfg.data.shards, shards.MANIFEST), cfg.s3):
        return {}
    return {"data.shards": cfg.data.shards, **({"data.src": cfg.data.src} if _generates(cfg.data) else {})}


def check_source(cfg: Config) -> None:
    """Refuse, before Ray starts, shards still to make that cannot be made: a corpus only `avdis preprocess` makes,
    never made (or wait for its build under way, `await_build`), or a data.src the generator may not write into
    (`_check_target`). A sweep found either only in `ensure_shards`, once Ray had started: 20 s and its log lines."""
    if not to_make(cfg):
        return
    if cfg.data.corpus != "synthetic":
        await_build(cfg)
    elif _generates(cfg.data):
        _check_target(cfg.data)


def as_made(cfg: Config) -> Config:
    """`cfg` with the data.synth of the generated corpus its shards were made from, where the config leaves data.synth
    out (a data.synth it gives is checked against the shards instead, `shards.check_synth`): runs and sweeps record
    their config, and a control run on shards of a corpus without identity cues recorded the default corpus's
    `identity_cues: on`. Unchanged where the shards are not made yet (they will be, with this data.synth) or their
    manifest records no generator settings (a corpus of one's own, or shards made before they were kept)."""
    manifest = storage.join(cfg.data.shards, shards.MANIFEST)
    if "synth" in cfg.data.model_fields_set or not storage.exists(manifest, cfg.s3):
        return cfg
    made = shards.synth_made(shards.read_manifest(cfg.data.shards, cfg.s3)[1])
    if made is None:
        return cfg
    return with_overrides(cfg, {"data.synth": made})


def recorded(cfg: Config) -> dict[str, Any]:
    """`cfg` dumped as sweeps record it (sweep.json's `spec`, each trial's `config` in trials.parquet): data.synth
    null where the shards are not of a corpus avdis generated (data.corpus ravdess or cremad, or shards whose manifest
    records no generator settings: a corpus of one's own, or shards made before they were kept). Nothing computes
    with it there, and its defaults read as the settings of a corpus that was never generated. Where no shards are
    made yet a synthetic config's data.synth is kept (they will be generated with it, `as_made`). A sweep's resume
    does not compare data.synth (`spec.RESUMABLE_CHANGES`), so one recorded with it before resumes."""
    dump = cfg.model_dump(mode="json")
    if cfg.data.corpus != "synthetic":
        dump["data"]["synth"] = None
    elif storage.exists(storage.join(cfg.data.shards, shards.MANIFEST), cfg.s3):
        if shards.synth_made(shards.read_manifest(cfg.data.shards, cfg.s3)[1]) is None:
            dump["data"]["synth"] = None
    return dump


def ensure_shards(cfg: Config, use_ray: bool = False) -> dict[str, Any]:
    """Shards for `cfg.data`, made now if missing (only the synthetic corpus can be made here); shards there are used
    as they are (unless made with other settings than the config gives), with a warning where data.src is not the
    corpus they were made from. So are shards another job made while this one waited to make them: a run started
    while `avdis preprocess` made them (its build removes the manifest first) found none, waited, and made them again
    with its own config's settings over those just made. A run on a corpus of another kind waits for such a build
    likewise (`await_build`)."""
    if not storage.exists(storage.join(cfg.data.shards, shards.MANIFEST), cfg.s3):
        if cfg.data.corpus != "synthetic":
            await_build(cfg)
        else:
            made = preprocess(cfg, use_ray=use_ray, missing_only=True)
            if made is not None:
                _warn_bandwidth(cfg, made.get("bandwidth_cue"))
                return made
    table, meta = shards.read_manifest(cfg.data.shards, cfg.s3)
    shards.check_made_with(cfg.data, meta)
    shards.check_synth(cfg.data, meta)
    _warn_bandwidth(cfg, shards.manifest_rates(table, cfg.data.features).get("bandwidth_cue"))
    if shards.source_changed(cfg.data, meta):  # a warning: the shards may be meant, and be all this node has
        print(f"avdis: warning: {cfg.data.src}: not the corpus the shards at {cfg.data.shards} were made from (a "
              "clip added, removed or relabelled, a source file's size, time or whether the user can read it changed, "
              "or another folder); this run trains on the shards as they are: `avdis preprocess` makes them again",
              file=sys.stderr, flush=True)
    return {"url": cfg.data.shards, "up_to_date": True, "clips": table.num_rows, "shards": len(meta["shards"])}


def _warn_bandwidth(cfg: Config, cue: str | None) -> None:
    """Say, as `avdis preprocess` does, that clips' recording rates leave different mel bands empty: a run or sweep
    that made or opened a corpus's shards itself (a corpus of one's own) said nothing of it."""
    if cue:
        print(f"avdis: warning: {cfg.data.shards}: {cue}", file=sys.stderr, flush=True)


def await_build(cfg: Config) -> None:
    """Wait for a build of `cfg`'s shards under way (`avdis preprocess`, which removes the manifest first and holds
    the folder's lock while it builds), saying whose (as a run that makes its synthetic shards waits), then refuse
    where still no manifest is there: only the synthetic corpus can be made here. A run started during such a build
    was told 'no manifest; run `avdis preprocess` first' while the build it asked for was running. The lock is
    taken only where a build has been (its file is there): no folder is made for shards never built. For shards
    without a manifest (a sweep calls it before Ray starts)."""
    if storage.exists(storage.join(cfg.data.shards, storage_lock.LOCK), cfg.s3):
        with storage_lock.exclusive(cfg.data.shards, shards.BUILD, wait=True, s3=cfg.s3):
            pass
    if not storage.exists(storage.join(cfg.data.shards, shards.MANIFEST), cfg.s3):
        # with this config's data.modality: shards made without it would be refused (`check_made_with`)
        modality = " data.modality=audio" if cfg.data.modality == "audio" else ""
        raise shards.PreprocessError(f"{cfg.data.shards}: no manifest; run `avdis preprocess --corpus "
                                     f"{cfg.data.corpus} --src <folder> --out {cfg.data.shards}{modality}` first")
