"""The `avdis` command: synth, preprocess, train, sweep, report, dashboard, model, grafana.

Each subcommand parses its flags, builds a typed config (exit 2 on bad input, before
any work) and calls one library function; `jobs/*.py` call the same functions.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import select
import sys
import time
from typing import TYPE_CHECKING, Any, Iterator, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from avdis import config as C
from avdis import runtime
from avdis.errors import AvdisError
from avdis.numbers import json_safe

if TYPE_CHECKING:
    import pandas as pd

CONFIG_HELP = "YAML config (see jobs/configs/); defaults are used for what it leaves out"
OVERRIDES_HELP = ("dotted overrides applied after the file, e.g. train.epochs=3 method.name=adversarial "
                  "method.weight=0.5; they may come before, between or after the options")
SWEEP_OVERRIDES_HELP = ("dotted overrides applied after the file, e.g. sweep.num_samples=8 "
                        "sweep.space.methods=[multitask,adversarial]; they may come before, between or after the "
                        "options (method.name and method.weight are drawn per trial from sweep.space; "
                        "train.storage and train.name are the sweep's to set, and train.probe_every under MO-ASHA)")
PREPROCESS_OVERRIDES_HELP = ("data, ray and s3 overrides applied after the file (preprocessing uses only these, and of "
                             "data only the settings listed below; others are refused), e.g. data.modality=audio "
                             "data.shard_size=32")
MODEL_OVERRIDES_HELP = ("overrides of the model and data settings the presets' sizes depend on, applied after the file "
                        "(only those listed below; others are refused), e.g. model.emb_dim=32 model.modality=audio "
                        "data.features.n_mels=64; where there are shards at data.shards the counts are at the "
                        "features they were made with and for their emotions and speakers (features of the config's "
                        "that differ are said), else at the config's features and for an example 8 and 24")
READER_OVERRIDES_HELP = ("s3 overrides applied after the file (a reader of results uses only the s3 settings; others are refused), "
                         "e.g. s3.endpoint_url=http://127.0.0.1:9000 s3.region=eu-west-1")


# the settings each command reads, by section or by dotted setting (a section's settings all): an override of another
# is refused (accepted, it changed nothing). Preprocessing reads the data settings that make the shards, not those a
# run reads them with (data.loader, data.split.scheme and .fold). `avdis model` counts every preset's parameters, which
# depend on the model's inputs and embedding and on the input shapes (mel bands, audio and video frames), not on
# model.preset (it lists them all), model.dropout, data.features.sample_rate or .face_size (pooled away); and its heads
# on the emotions and speakers of the shards at data.shards (s3 to reach them), where there are any, whose features
# then count instead of the config's (a run on them has theirs)
READS = {
    "preprocess": (*(key.rstrip(".") for key in C.MADE_WITH_SHARDS), "ray", "s3"),
    "train": ("data", "model", "method", "train", "probe", "ray", "s3"),
    "report": ("s3",), "dashboard": ("s3",),
    "model": ("model.modality", "model.emb_dim", "model.contours", "data.features.n_mels", "data.features.hop_ms",
              "data.features.window_s", "data.features.fps", "data.shards", "s3"),
}


# Settings read only where another setting (the mode) has one of the values given, and why: elsewhere one given would
# change nothing. Checked for each command that reads them (`READS`; `_load`), not by validation: a sweep or run started
# with one before it was refused is resumed (`_refuse_unless_resumed`) and its trials and workers validate the config
# again; a config file's is kept, unrefused, where the command line chose the mode. The settings of this kind that
# validation refuses (train's engine settings) are `C.READ_ONLY_WITH`'s, not here: each setting is in one table.
READ_ONLY_UNDER = (
    ("data.synth", "data.corpus", ("synthetic",), "data.synth describes the corpus avdis generates"),
    ("data.split.fold", "data.split.scheme", ("speaker_disjoint",),
     "data.split.fold picks the held-out speakers of speaker_disjoint (within_speaker tests every speaker)"),
    *((f"sweep.scheduler.{key}", "sweep.scheduler.type", ("mo_asha",), "MO-ASHA stops trials early, by "
       f"sweep.scheduler.{key}") for key in ("eta", "grace_epochs", "margin", "stopped_as")),
    ("sweep.startup_trials", "sweep.search", ("tpe",), "TPE draws sweep.startup_trials trials at random before it "
                                                       "models the results"),
    ("sweep.scheduler.stopped_as", "sweep.search", ("tpe", "nsga2"), "sweep.scheduler.stopped_as is how a trial "
     "MO-ASHA stopped is told to a search that models the results (tune.space.SweepSearch); random search draws every "
     "trial alike, whatever came before"),
    ("model.contours", "model.modality", ("av", "audio"), "model.contours are features of the audio encoder"),
    ("ray.include_dashboard", "ray.address", ("local", None, ""),
     "ray.include_dashboard is for the local Ray a command starts (runtime.connect), not one it joins"),
    *((f"data.features.{key}", "data.modality", ("av",), f"data.features.{key} sizes the video frames, which shards "
       "of data.modality=audio do not hold") for key in C.VIDEO_FEATURES),
)


def _reads(reads: tuple[str, ...], path: str) -> bool:
    """Whether a command reading `reads` (`READS`) reads the setting or section at dotted `path`: one it names, one
    under one it names, or a section holding one it names."""
    return any(path == r or path.startswith(f"{r}.") or r.startswith(f"{path}.") for r in reads)


def _read_by(path: str) -> str:
    """The commands that read `path` (a sweep reads every one), for a refusal to name."""
    return " or ".join(f"avdis {c}" for c in [*(c for c, r in READS.items() if _reads(r, path)), "sweep"])


_SETTINGS = tuple(key for key, _ in C.settings(C.Config))


def _set(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted paths of the settings an override sets (`C.parse_overrides`' tree), down to a setting (whose value
    may be a dict) or to a name the schema lacks, which validation names."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and any(k.startswith(f"{path}.") for k in _SETTINGS):
            yield from _set(value, f"{path}.")
        else:
            yield path


def _load(args: argparse.Namespace, flags: dict[str, tuple[str, Any]] | None = None) -> C.Config:
    """--config and its overrides, with the values of the command's own flags given (setting -> (flag, value), None
    for a flag not given). A flag and an override of one setting are refused: which should win is the user's to say
    (the override won in silence, its flag unchecked). So is an override of a section the command does not read
    (`READS`): `avdis train sweep.num_samples=8` was accepted and changed nothing."""
    given = {key: (flag, value) for key, (flag, value) in (flags or {}).items() if value is not None}
    reads = READS.get(args.command)
    for override in args.overrides:
        sets = C.parse_overrides([override])  # by its dotted key or inside a section's value (sweep={name: x})
        # a name Config lacks (trian.epochs=3) is left to validation, which names it and the one it is nearest
        unread = [path for path in _set(sets) if reads is not None and not _reads(reads, path)
                  and _reads(_SETTINGS, path)]
        if unread:
            raise C.ConfigError(f"{override}: avdis {args.command} uses only the {', '.join(reads)} settings; "
                                f"{unread[0]} would change nothing here (give it to {_read_by(unread[0])})")
        for key, (flag, value) in given.items():
            if _holds(sets, key.split(".")):
                raise C.ConfigError(f"{key} is given twice, by {flag} {value} and by {override}; give it once")
    cfg = C.load(args.config, args.overrides, {key: value for key, (_, value) in given.items()}, _given_by(flags))
    for key, mode, values, why in READ_ONLY_UNDER:
        said, current = _mode(cfg, mode)
        sampled = args.command == "sweep" and mode in cfg.sweep.space.params  # each trial its own
        unused = _reads(("ray",), key) and _without_ray(args, cfg)  # the command's no-Ray rule speaks for it
        if (reads is None or _reads(reads, key)) and current not in values and not sampled and not unused:
            _refuse_ignored(args, cfg, {key: f"{why}; under {said}={current} {{key}} would change nothing: drop it, "
                                             f"or give {mode}={'null' if values[0] is None else values[0]}"},
                            chosen=said != mode or _typed(args, mode, flags) is not None, flags=flags)
    # here, not in MethodConfig: `_refuse_unless_resumed`. A sweep draws each trial's method.name and method.weight
    # (`SWEEP_SETS_ITSELF`): a file's, for `avdis train`, are left alone there, 0 as any other weight
    if reads is not None and _reads(reads, "method.weight") and cfg.method.weight == 0 \
            and cfg.method.name not in C.WEIGHT_RANGES:
        _refuse_ignored(args, cfg, {"method.weight": f"method {cfg.method.name} takes no weight, so {{key}}=0 would "
                                                     "change nothing (it trains as without it, under a run name of its "
                                                     f"own); drop it, or give method.name one of "
                                                     f"{', '.join(C.WEIGHT_RANGES)}"}, chosen=False, flags=flags)
    return cfg


def _without_ray(args: argparse.Namespace, cfg: C.Config) -> bool:
    """Whether the command uses no Ray at all (`avdis preprocess --no-ray`, `avdis train` under train.strategy=single),
    where its own rule refuses the ray settings (`cmd_preprocess`, `SINGLE_IGNORES`): a rule for one kind of Ray
    (`READ_ONLY_UNDER`: ray.include_dashboard but for a local one) advised a ray.address that rule then refused."""
    return ((args.command == "preprocess" and args.no_ray)
            or (args.command == "train" and cfg.train.strategy == "single"))


def _value(cfg: C.Config, path: str) -> Any:
    """The setting at dotted `path` of `cfg`."""
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _mode(cfg: C.Config, mode: str) -> tuple[str, Any]:
    """The setting `mode` of `READ_ONLY_UNDER` as the command takes it: the name that gave its value, and the value.
    Where ray.address is unset, RAY_ADDRESS names the Ray the command joins (`runtime.asked_address`), as a command
    line would: a config file's settings for a local Ray are left alone there, as under `ray job submit`, which sets
    it."""
    if mode != "ray.address":
        return mode, _value(cfg, mode)
    return ("RAY_ADDRESS" if not cfg.ray.address and os.environ.get("RAY_ADDRESS") else mode,
            runtime.asked_address(cfg.ray))


def _given_by(flags: dict[str, tuple[str, Any]] | None) -> dict[str, str]:
    """Setting -> the flag that gave it, of a command's flags (setting -> (flag, value)) the user gave: a refusal
    names a setting as the user typed it (`--out`), one a flag did not give by its setting."""
    return {key: flag for key, (flag, value) in (flags or {}).items() if value is not None}


def _holds(tree: Any, path: list[str]) -> bool:
    return not path or (isinstance(tree, dict) and path[0] in tree and _holds(tree[path[0]], path[1:]))


def _given(model: BaseModel, prefix: str = "") -> Iterator[str]:
    """The dotted settings `model` was given (by the config file, an override or a flag), not left at a default."""
    for name in type(model).model_fields:
        if name in model.model_fields_set:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                yield from _given(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"


def _typed(args: argparse.Namespace, path: str, flags: dict[str, tuple[str, Any]] | None = None) -> str | None:
    """The override (the last) or flag on the command line that gave the setting `path`; None where none did."""
    for override in reversed(args.overrides):
        if _holds(C.parse_overrides([override]), path.split(".")):
            return override
    flag, value = (flags or {}).get(path, (None, None))
    return None if value is None else f"{flag} {value}"


def _refuse_ignored(args: argparse.Namespace, cfg: C.Config, ignored: dict[str, str], chosen: bool,
                    flags: dict[str, tuple[str, Any]] | None = None) -> None:
    """Refuse a setting the command was given that it would not read as configured: `ignored` maps a setting or
    section to why ({key}: the setting given). One given on the command line is always refused; one in the config
    file unless `chosen`, where the command line chose what leaves it unread (`--strategy single`, `--no-ray`): a
    file may hold settings for the other ways it is run."""
    for path in _given(cfg):
        why = next((why for key, why in ignored.items() if _reads((key,), path)), None)
        typed = _typed(args, path, flags)
        if why is not None and (typed is not None or not chosen):
            _refuse_unless_resumed(args, cfg, f"{typed or f'{args.config}: {path}'}: {why.format(key=path)}")


def _refuse_unless_resumed(args: argparse.Namespace, cfg: C.Config, said: str) -> None:
    """Refuse a setting that changes nothing (`said`: which, and why) where the command starts its sweep or run; where
    it resumes one (`_resumed`), started with the setting before it was refused, warn and go on. Such refusals are
    made here, by the command, not where a config is validated, which a resumed sweep's trials and a run's workers do
    again."""
    resumed = _resumed(args, cfg)
    if resumed is None:
        raise C.ConfigError(said)
    print(f"{_said_by(args)}: warning: {said}; kept, as {resumed} was started with it", file=sys.stderr)


def _resumed(args: argparse.Namespace, cfg: C.Config) -> str | None:
    """The sweep or run already there that the command resumes ('the sweep at <url>'), None where it starts one. A
    setting that changes nothing is refused (`_refuse_ignored`) only where none is: one started before it was refused
    (until 2026-12-04) is resumed by the same command, and with the setting dropped neither a sweep's recorded
    settings nor a run's name (whose hash holds it) would match it again."""
    from avdis import storage

    if args.command == "sweep":
        from avdis import results
        from avdis.tune.sweep import url_of

        url, what = url_of(cfg), "sweep"
        started = storage.exists(storage.join(url, results.SPEC), cfg.s3)
    elif args.command == "train":
        from avdis.train.launch import run_name

        url, what = storage.join(cfg.train.storage, run_name(cfg)), "run"
        started = storage.exists(url, cfg.s3)
    else:
        return None
    return f"the {what} at {url} it resumes" if started else None


def _refuse_unread_by_methods(args: argparse.Namespace, cfg: C.Config, methods: list[str], chooser: str) -> None:
    """Refuse the method settings (`C.READ_BY_METHODS`) that none of `methods` reads, which `chooser` set (method.name
    for a run, sweep.space.methods for a sweep)."""
    runs = f"method {methods[0]} does not read" if len(methods) == 1 else \
        f"no method of {chooser}=[{', '.join(methods)}] reads"
    ignored = {key: f"{runs} {{key}} (only {', '.join(readers)} do), so it would change nothing; drop it, or give "
                    f"{chooser} one of those"
               for key, readers in C.READ_BY_METHODS.items() if not set(readers) & set(methods)}
    _refuse_ignored(args, cfg, ignored, chosen=_typed(args, chooser) is not None)


def _refuse_unread_samples(args: argparse.Namespace, cfg: C.Config) -> None:
    """Refuse a setting sweep.space.params samples that no trial reads (`_unread_sample`): it set trials apart that
    trained alike, and the searcher learned noise. Given on the command line, or in the file where the command line
    did not choose the setting that leaves it unread: a file may serve other sweeps, and its sample of
    train.max_failures under `avdis sweep train.workers=1` is left alone, as its other settings are (still sampled)."""
    param = ["sweep", "space", "params"]
    for key in cfg.sweep.space.params:
        unread = _unread_sample(cfg, key)
        if unread is not None:
            mode, why = unread
            typed = next((o for o in reversed(args.overrides) if _holds(C.parse_overrides([o]), [*param, key])
                          or _holds(C.parse_overrides([o]), [*param, *key.split(".")])), None)
            if typed is None and _chose(args, cfg, mode):
                continue
            where = typed or f"{f'{args.config}: ' if args.config else ''}sweep.space.params.{key}"
            _refuse_unless_resumed(args, cfg, f"{where}: {why}")


def _chose(args: argparse.Namespace, cfg: C.Config, mode: str) -> bool:
    """Whether the command line of `avdis sweep` chose the setting `mode` that leaves a file's setting unread: gave
    it, or, for train.workers, gave train.strategy=single, under which a file's workers are left alone
    (`C.load`): one worker, by the command line's choice."""
    return _typed(args, mode) is not None or (mode == "train.workers" and cfg.train.strategy == "single"
                                              and _typed(args, "train.strategy") is not None)


def _unread_sample(cfg: C.Config, key: str) -> tuple[str, str] | None:
    """The setting that leaves the setting `key` that sweep.space.params samples unread by every trial of the sweep,
    and why; None where a trial reads it: none of sweep.space.methods reads it (`C.READ_BY_METHODS`), it is read only
    under another value of a setting the space does not sample (`READ_ONLY_UNDER`: model.contours under
    model.modality=visual), or it is Ray Train's and every trial trains in its own process (`IN_PROCESS_IGNORES`; and
    train.max_failures, by which Tune restarts every such trial alike: `ONE_RESTART_RULE`)."""
    space, methods = cfg.sweep.space.params, cfg.sweep.space.methods
    readers = next((r for k, r in C.READ_BY_METHODS.items() if _reads((k,), key)), ())
    if readers and not set(readers) & set(methods):
        return "sweep.space.methods", (f"{key} is read only by {', '.join(readers)}, none of which "
                                       f"sweep.space.methods=[{', '.join(methods)}] holds, so sampling it would change "
                                       "nothing; add one of them to sweep.space.methods, or drop it")
    for setting, mode, values, why in READ_ONLY_UNDER:
        said, current = _mode(cfg, mode)
        if _reads((setting,), key) and mode not in space and current not in values:
            return mode, (f"{why}; under {said}={current} sampling {key} would change nothing: drop it, or give "
                          f"{mode}={'null' if values[0] is None else values[0]}")
    if key in IN_PROCESS_IGNORES and cfg.train.in_process and "train.workers" not in space:
        return "train.workers", IN_PROCESS_WHY.format(key=f"sampling {key}")
    if key == "train.max_failures" and cfg.train.in_process and "train.workers" not in space:
        return "train.workers", ONE_RESTART_RULE.format(key=f"sampling {key}")
    return None


def _refuse_cluster_on_local_ray(args: argparse.Namespace, cfg: C.Config, work: str) -> None:
    """Refuse ray.autoscaling and ray.cluster_file on the command line where the command starts a local Ray (no
    ray.address or RAY_ADDRESS, or either local: `_mode`), for its `work` (build, run, sweep). They describe a cluster
    that adds nodes (`nodes.check_added_nodes`, `clusterfit.check_cluster`), and a local Ray adds none: both pass over
    it. A config file's (a cluster config, run here) is left alone."""
    said, address = _mode(cfg, "ray.address")
    if address in (None, "", "local"):
        local = f"{said}=local" if address == "local" else "no ray.address or RAY_ADDRESS"
        _refuse_ignored(args, cfg, dict.fromkeys(("ray.autoscaling", "ray.cluster_file"), "{key} describes a cluster "
                                                 f"that adds nodes, and the local Ray this {work} starts ({local}) "
                                                 "adds none, so {key} would change nothing; drop it, or give "
                                                 f"ray.address=<the cluster's> to {work} on it"), chosen=True)


def _refuse_s3_unused(args: argparse.Namespace, cfg: C.Config, locations: dict[str, str | None]) -> None:
    """Refuse s3 settings on the command line where none of the command's `locations` (by the name the user gave
    it) is on S3: they would change nothing, and `--out bucket/shards s3.endpoint_url=...` (s3:// left out) wrote
    the shards into a local folder so named. A config file's s3 section (a cluster config's) is left alone."""
    where = {name: url for name, url in locations.items() if url is not None}
    if any(url.startswith("s3://") for url in where.values()):
        return
    said = ", ".join(f"{name}={url}" for name, url in where.items())
    _refuse_ignored(args, cfg, {"s3": f"no location of this command is on S3 ({said}), so {{key}} would change "
                                      "nothing; give the location as s3://bucket/prefix, or drop it"}, chosen=True)


# ------------------------------------------------------------------ commands


def _refresh_seconds(text: str) -> float:
    """argparse type: seconds between the dashboard's checks, at least 0.1 (argparse names the flag and exits 2
    otherwise): the page polls the server at that rate, and a millisecond would be a poll per millisecond per viewer."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0.1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds of 0.1 or more")
    return value


def cmd_synth(args: argparse.Namespace) -> int:
    from avdis import storage, storage_lock
    from avdis.data import synth

    given = {field: getattr(args, field) for field in C.SynthConfig.model_fields if getattr(args, field) is not None}
    flags = {f"data.synth.{field}": flag for flag, (field, _) in SYNTH_FLAGS.items()}
    cfg = C.validate({"data": {"synth": given}}, "avdis synth flags", flags)
    where = _path(args.out, local_only=True)  # the generator writes local files (s3:// made a local folder so named)
    runtime.check_kept({"--out": where})
    storage.check_writable(where)
    synth.check_target(where)  # before the lock's file goes into a folder that is not the generator's to write
    clips = cfg.data.synth.speakers * cfg.data.synth.clips_per_speaker
    # the lock a sweep or a training run takes to generate its corpus (`prepare.generate_if_missing`), and a build to
    # read it: two generations into one folder wrote each other's clips in place, leaving one's settings over the
    # other's clips, and one during a build replaced the corpus it read
    with storage_lock.exclusive(where, synth.HELD_FOR, wait=True):
        if synth.is_generated(cfg.data.synth, where):  # rewritten, every clip's new time rebuilt its shards
            print(f"corpus: {where} already holds this corpus ({clips} clips), kept as it is (delete the folder to "
                  "make it again)")
            return 0
        synth.check_target(where)  # decided again in the lock: another job may have written there meanwhile
        out = synth.generate(cfg.data.synth, where)
    print(f"corpus: {out} ({clips} clips, ground truth in {out / 'ground_truth.csv'})")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from avdis import storage
    from avdis.data import corpora, prepare

    flags = {"data.corpus": ("--corpus", args.corpus), "data.src": ("--src", args.src),
             "data.shards": ("--out", args.out), "data.shard_size": ("--shard-size", args.shard_size)}
    cfg = _load(args, flags)
    if args.no_ray:  # a config file's ray section is for its builds on Ray (and its runs): left alone
        _refuse_ignored(args, cfg, {"ray": "--no-ray decodes in this process, without Ray, so {key} would change "
                                           "nothing; drop it, or drop --no-ray to decode in Ray tasks"}, chosen=True)
    else:
        _refuse_cluster_on_local_ray(args, cfg, "build")
    names = _given_by(flags)  # a refusal names a location as it was given: by its flag, else by its setting
    _refuse_s3_unused(args, cfg, {names.get("data.shards", "data.shards"): cfg.data.shards})
    corpora.source_folder(cfg.data.src, cfg.data.corpus)
    runtime.check_kept({names.get("data.shards", "data.shards"): cfg.data.shards})
    storage.check_buckets(cfg.s3, cfg.data.shards)  # a missing one: the write check said 'not writable' alone
    storage.check_writable(cfg.data.shards, cfg.s3)
    summary = prepare.preprocess(cfg, use_ray=not args.no_ray, generate=False, force=args.force, names=names)
    cue = summary.pop("bandwidth_cue", None)  # a warning, not a count: said below, once
    print(json.dumps(summary, indent=1, ensure_ascii=False))  # paths as written, not \u escapes
    if cue:
        print(f"{_said_by(args)}: warning: {cue}", file=sys.stderr)
    for name, lacks in (("val", "validation metrics (and a sweep, which chooses on them, is refused)"),
                        ("test", "test metrics and no leakage probe")):
        if summary["splits"][name] == 0:
            print(f"{_said_by(args)}: warning: the {name} split is empty (a speaker needs 3 clips or more to be in "
                  f"every split), so training will have no {lacks}", file=sys.stderr)
    speakers, folds = summary["speakers"], cfg.data.split.folds
    if speakers < 2 * folds:  # said now, not when a speaker_disjoint run or sweep is refused on these shards
        held_out = "no folds (fewer speakers than folds)" if speakers < folds else "a test or validation fold of 1 speaker"
        fix = (f"preprocess with data.split.folds <= {speakers // 2} for it" if speakers // 2 >= C.MIN_FOLDS else
               f"it needs {2 * C.MIN_FOLDS} speakers or more")
        print(f"{_said_by(args)}: warning: {speakers} speakers in data.split.folds={folds} give {held_out}, which "
              f"data.split.scheme=speaker_disjoint cannot use; {fix} (within_speaker is unaffected)", file=sys.stderr)
    return 0


# what `avdis train` reads only on Ray Train: strategy single trains in this process (`launch.train`), starting no Ray,
# making no ScalingConfig or FailureConfig, and leaving torch's thread count to the process (OMP_NUM_THREADS)
SINGLE_IGNORES = ("ray", "train.max_failures", "train.placement_strategy", "train.cpus_per_worker")
SINGLE_IGNORES_WHY = ("train.strategy=single trains in this process, without Ray, so {key} would change nothing; drop "
                      "it, or give train.strategy=ddp or deepspeed (--strategy) to train on Ray Train workers")


def cmd_train(args: argparse.Namespace) -> int:
    from avdis.train import launch

    flags = {f"train.{flag}": (f"--{flag}", getattr(args, flag)) for flag in ("workers", "strategy", "storage", "name")}
    cfg = _load(args, flags)
    if cfg.train.strategy == "single":
        _refuse_ignored(args, cfg, dict.fromkeys(SINGLE_IGNORES, SINGLE_IGNORES_WHY),
                        chosen=_typed(args, "train.strategy", flags) is not None, flags=flags)
    elif cfg.train.workers == 1:  # Ray Train's placement group of one worker's bundle: any strategy places it alike
        _refuse_ignored(args, cfg, {"train.placement_strategy": "with train.workers=1 the run places one worker, "
                                    "where every placement strategy puts it alike, so {key} would change nothing; "
                                    "drop it, or give train.workers=2 or more (--workers)"},
                        chosen=_typed(args, "train.workers", flags) is not None, flags=flags)
    if cfg.train.strategy != "single":  # single starts no Ray (`SINGLE_IGNORES`)
        _refuse_cluster_on_local_ray(args, cfg, "run")
    _refuse_unread_by_methods(args, cfg, [cfg.method.name], "method.name")
    _refuse_s3_unused(args, cfg, {"data.shards": cfg.data.shards,
                                  _given_by(flags).get("train.storage", "train.storage"): cfg.train.storage})
    result = launch.train(cfg, names=_given_by(flags))
    # strict JSON (a metric without data is null), paths as written
    print(json.dumps(json_safe(result), indent=1, allow_nan=False, ensure_ascii=False))
    return 0


# what a sweep's trials of one worker do not read: each trains in its own process (`tune.trial.run_trial`). Not
# train.max_failures: Tune restarts such a trial by it (`sweep.tune_failures`), one value for the whole sweep
IN_PROCESS_IGNORES = ("train.placement_strategy", "sweep.trial_cpus")
IN_PROCESS_WHY = ("with train.workers=1 every trial trains in its own process, not as a Ray Train run, so {key} would "
                  "change nothing; drop it, or give train.workers=2 or more (with train.strategy=ddp or deepspeed)")
ONE_RESTART_RULE = ("with train.workers=1 every trial trains in its own process, which Tune restarts (its process died) "
                    "up to the sweep's train.max_failures, one value for every trial, so {key} would change nothing; "
                    "give train.max_failures=<restarts> instead, or sample train.workers too (2 or more: Ray Train "
                    "runs, each restarting its workers by its own)")


# settings a sweep sets for each trial itself, and where from: an override of one was accepted and changed nothing
# (a sweep of every method where the user asked for one; trials' checkpoints looked for under train.storage)
SWEEP_SETS_ITSELF = {
    ("method.name", "method.weight"): "a sweep draws {keys} for each trial from sweep.space.methods and "
                                      "sweep.space.weights, so it would change nothing; give e.g. "
                                      "sweep.space.methods=[adversarial] 'sweep.space.weights={{adversarial: 0.5}}'",
    ("train.storage", "train.name"): "a sweep names its trials and keeps their checkpoints under sweep.checkpoints "
                                     "(default: checkpoints/ in the sweep's folder, <sweep.storage>/<sweep.name>), "
                                     "so {keys} would change nothing; give e.g. sweep.storage=s3://bucket/sweeps "
                                     "sweep.checkpoints=s3://bucket/trials",
}


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep with the report floor's views of it: gauges and pages per result, the report at the end."""
    from avdis import results, storage
    from avdis.report import files, metrics
    from avdis.report.callback import ReportCallback
    from avdis.tune import sweep
    from avdis.tune.failures import failures

    for override in args.overrides:
        sets = C.parse_overrides([override])
        for keys, why in SWEEP_SETS_ITSELF.items():
            held = [key for key in keys if _holds(sets, key.split("."))]
            if held:
                raise C.ConfigError(f"{override}: {why.format(keys=' and '.join(held))}")
    flags = {f"sweep.{flag}": (f"--{flag}", getattr(args, flag)) for flag in ("storage", "name")}
    cfg = _load(args, flags)
    probes = [o for o in args.overrides if _holds(C.parse_overrides([o]), ["train", "probe_every"])]
    if probes and cfg.sweep.scheduler.type == "mo_asha":  # `sweep.probing` sets it; a config file's is left alone
        raise C.ConfigError(f"{probes[0]}: under MO-ASHA (sweep.scheduler.type=mo_asha) every trial probes at each "
                            "multiple of sweep.scheduler.grace_epochs, where its rungs fall, and at its last epoch, so "
                            "train.probe_every would change nothing; give sweep.scheduler.grace_epochs=<epochs>, or "
                            "sweep.scheduler.type=none to probe every train.probe_every epochs")
    _refuse_unread_by_methods(args, cfg, cfg.sweep.space.methods, "sweep.space.methods")
    _refuse_unread_samples(args, cfg)
    _refuse_cluster_on_local_ray(args, cfg, "sweep")
    if cfg.train.in_process and "train.workers" not in cfg.sweep.space.params:
        _refuse_ignored(args, cfg, dict.fromkeys(IN_PROCESS_IGNORES, IN_PROCESS_WHY),
                        chosen=_chose(args, cfg, "train.workers"))
    for override in args.overrides:  # a file's weights may serve other lists of methods: left alone
        unswept = [m for m in C.WEIGHT_RANGES if m not in cfg.sweep.space.methods
                   and _holds(C.parse_overrides([override]), ["sweep", "space", "weights", m])]
        if unswept:
            raise C.ConfigError(f"{override}: sweep.space.methods=[{', '.join(cfg.sweep.space.methods)}] does not "
                                f"sweep {unswept[0]}, so sweep.space.weights.{unswept[0]} would change nothing; add "
                                f"{unswept[0]} to sweep.space.methods, or drop it")
    _refuse_s3_unused(args, cfg, {_given_by(flags).get("sweep.storage", "sweep.storage"): cfg.sweep.storage,
                                  "sweep.checkpoints": cfg.sweep.checkpoints, "data.shards": cfg.data.shards})
    name = cfg.sweep.name
    url = sweep.url_of(cfg)
    views = sweep.Views(listeners=(functools.partial(metrics.publish, name),), callbacks=(ReportCallback(url, cfg.s3),))
    try:
        sweep.run(cfg, views, names=_given_by(flags), retry_failed=args.retry_failed)
    finally:  # its gauges go stale once it ends, as when this process exits
        metrics.forget(name)
    written = files.write_pages(url, cfg.s3)
    failed = failures(url, cfg)  # said before the outputs: "done." followed by an error read as both
    print(f"avdis sweep {name}: {'done' if failed is None else 'ended with failed trials (the error names them)'}."
          f"\n  front:  {written['pareto.json']}\n  report: {written['pareto.html']}"
          f"\n  plot:   {written['pareto.png']}\n  trials: {storage.join(url, results.TRIALS)}", flush=True)
    skipped = results.skips_said(results.read_trials(url, cfg.s3))
    if skipped:
        print(f"{_said_by(args)}: warning: {skipped}", file=sys.stderr, flush=True)
    if failed is not None:
        raise failed
    return 0


def _path(value: str, local_only: bool = False) -> str:
    """A path given to a command, checked as a config's paths are and kept as they are kept (`~` expanded: quoted,
    as a path with spaces is, the shell leaves it; absolute)."""
    try:
        where = C.location(value, local_only)
    except ValueError as exc:
        raise C.ConfigError(f"{value}: {exc}") from None
    return where if where.startswith("s3://") else C.local_path(where, value)


def cmd_report(args: argparse.Namespace) -> int:
    from avdis import results
    from avdis.report import files

    cfg = _load(args)
    url = _path(args.sweep)
    _refuse_s3_unused(args, cfg, {"the sweep folder": url})
    report = files.write_report(url, cfg.s3)
    trials, axes = report.trials, results.axes_of(url, cfg.s3)
    for kind, page in report.written.items():
        print(f"{kind}: {page}")
    for note in (report.rebuilt, report.outrun, _still_running(trials), results.failures_said(trials, url),
                 results.skips_said(trials), results.unvalidated_said(results.unvalidated(trials, axes), axes)):
        if note:
            print(f"{_said_by(args)}: note: {note}", file=sys.stderr)
    return 0


def _still_running(trials: pd.DataFrame) -> str | None:
    """What a report on running trials should say (`view.last_result`: the table cannot tell a live sweep from one
    whose driver stopped)."""
    from avdis.report import view

    running = int((trials["status"] == "RUNNING").sum())
    if not running:
        return None
    last = view.last_result(trials)
    came = ("" if last is None else  # a table without times
            f"; the sweep's last result came {max(0.0, time.time() - last) / 60:.0f} min ago ({view.utc(last)})")
    return (f"{running} trial{'s are' if running > 1 else ' is'} RUNNING{came}. If the sweep's driver has stopped, "
            "they stay RUNNING until the sweep is run again with the same config, which resumes them.")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from avdis.report import dashboard

    cfg = _load(args)
    url = _path(args.sweep)
    _refuse_s3_unused(args, cfg, {"the sweep folder": url})
    dashboard.serve(url, host=args.host, port=args.port, s3=cfg.s3, refresh_s=args.refresh)
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from avdis.model import multitask

    cfg = _load(args)
    _refuse_s3_unused(args, cfg, {"data.shards": cfg.data.shards})  # s3 reaches the shards whose counts it lists
    made = _shards_made(cfg)
    if isinstance(made, str):
        print(f"avdis model: note: {made}; the features counted are the config's, the heads an example's",
              file=sys.stderr)
    elif made is not None:
        n_emotions, n_speakers, features, shards = made
        differ = [f"data.features.{k}={getattr(cfg.data.features, k):g} (made with {getattr(features, k):g})"
                  for k in multitask.shaping_features(cfg.model.modality)
                  if getattr(cfg.data.features, k) != getattr(features, k)]
        if differ:
            print(f"avdis model: note: {shards} were made with other features than the config's: "
                  f"{', '.join(differ)}; counted with theirs, as a run on them has (a run with the config's is "
                  "refused until shards are made with them)", file=sys.stderr)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"features": features})})
    print(multitask.describe_presets(cfg, n_emotions, n_speakers, shards) if isinstance(made, tuple) else
          multitask.describe_presets(cfg))
    return 0


def _shards_made(cfg: C.Config) -> tuple[int, int, C.FeatureConfig, str] | str | None:
    """The emotions and speakers of the shards at the config's data.shards and the features they were made with,
    which a run on them has (`loop.run`, `stream.open_dataset`), and the words naming them; None where no shards are
    there, or why they could not be read. `avdis model --config` counted an example's heads (8 emotions, 24 speakers)
    and the config's data.features for a config naming shards with their own. Shards of audio alone hold no video:
    the config's video settings (`C.VIDEO_FEATURES`) are kept, as training does not check them there."""
    from avdis import storage
    from avdis.data import shards

    try:
        if not storage.exists(storage.join(cfg.data.shards, shards.MANIFEST), cfg.s3):
            return None
        _, meta = shards.read_manifest(cfg.data.shards, cfg.s3)
        features = C.FeatureConfig(**meta["features"])
        if shards.modality_of(meta) == "audio":
            features = features.model_copy(update={k: getattr(cfg.data.features, k) for k in C.VIDEO_FEATURES})
        return len(meta["emotions"]), len(meta["speakers"]), features, f"the shards at {cfg.data.shards}"
    except Exception as exc:  # noqa: BLE001 - a listing: unreadable shards (S3 unreachable, damaged) are said
        return f"{cfg.data.shards}: its shards' emotions, speakers and features not read ({exc})"


GRAFANA_TOKEN_ENV = "GRAFANA_TOKEN"  # where `avdis grafana push` reads its token without --token-env
# each action's own flags (dest): given to the other, one was accepted and changed nothing (`export --url ...` wrote
# the file and pushed nothing)
GRAFANA_FLAGS = {"export": {"--out": "out"},
                 "push": {"--url": "url", "--folder-uid": "folder_uid", "--overwrite": "overwrite",
                          "--token-env": "token_env"}}


def cmd_grafana(args: argparse.Namespace) -> int:
    from avdis.report import grafana

    other = "push" if args.action == "export" else "export"
    for flag, dest in GRAFANA_FLAGS[other].items():
        if getattr(args, dest) not in (None, False):
            raise C.ConfigError(f"{flag} is a flag of `avdis grafana {other}`, not of {args.action}, so it would "
                                f"change nothing here; drop it, or run `avdis grafana {other}`")
    if args.action == "export":
        if args.out in (None, "-"):
            sys.stdout.write(grafana.render())
        else:
            print(f"dashboard: {grafana.export(_path(args.out, local_only=True))}")
        return 0
    if not args.url:
        raise C.ConfigError("avdis grafana push: --url is required (the Grafana base URL)")
    result = grafana.push(args.url, folder_uid=args.folder_uid, overwrite=args.overwrite,
                          token_env=GRAFANA_TOKEN_ENV if args.token_env is None else args.token_env)
    print(json.dumps(result, indent=1))
    return 0


# ------------------------------------------------------------------ parser


SYNTH_FLAGS = {  # flag -> (SynthConfig field, what it means); defaults, types, ranges and choices come from the field
    "--speakers": ("speakers", ""),
    "--emotions": ("emotions", f"first E of {', '.join(C.EMOTIONS)}"),
    "--clips-per-speaker": ("clips_per_speaker", ""),
    "--entanglement": ("entanglement", "0: emotion independent of speaker; 1: each speaker shows one emotion"),
    "--identity-cues": ("identity_cues", "voice: every speaker has the same face (identity only in the voice); "
                                         "off: the same voice and face too (control corpus)"),
    "--cues": ("cues", "where emotion lives: mixed (pitch, energy, rhythm, face) or dynamics (only how the voice "
                       "moves over time: syllable rate, tremor, melody shape; voice level and face say who speaks)"),
    "--duration": ("duration_s", "seconds per clip"),
    "--seed": ("seed", ""),
}


def _bounds(field: FieldInfo) -> str:
    """A field's allowed range as `2 <= x <= 500`, from its pydantic constraints ('' when unbounded)."""
    ops = {"ge": "<=", "gt": "<", "le": "<=", "lt": "<"}
    low = [f"{getattr(m, k)} {ops[k]} " for m in field.metadata for k in ("ge", "gt") if hasattr(m, k)]
    high = [f" {ops[k]} {getattr(m, k)}" for m in field.metadata for k in ("le", "lt") if hasattr(m, k)]
    return f"{''.join(low)}x{''.join(high)}" if low or high else ""


def _add_synth_flags(p: argparse.ArgumentParser) -> None:
    """SynthConfig's fields as flags; a flag left out is not passed, so the field's own default applies."""
    for flag, (name, meaning) in SYNTH_FLAGS.items():
        field = C.SynthConfig.model_fields[name]
        choices = get_args(field.annotation) or None
        bounds = _bounds(field)
        text = "; ".join(part for part in (meaning, bounds and f"range {bounds}", f"default {field.default}") if part)
        p.add_argument(flag, dest=name, choices=choices, type=None if choices else field.annotation, help=text)


def _default(field: FieldInfo) -> Any:
    """A field's default as plain data (a weight range as {low, high, log/int when set})."""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, dict):
        return {k: v.model_dump(exclude_defaults=True) if isinstance(v, BaseModel) else v for k, v in value.items()}
    return value


def _takes(key: str, field: FieldInfo) -> str:
    """What a setting takes: its choices (a Literal, optionally None) or its range; '' when neither says more."""
    if key == "data.features.f_max":
        return (f"{C.MEL_FMIN:g} < x <= data.features.sample_rate / 2, in Hz: the top of the mel bands; null, or "
                "sample_rate / 2 given: sample_rate / 2; the lowest bandwidth where avdis preprocess warns that "
                "clips' sound stops at different frequencies (it names the value, and the n_mels to set with it)")
    if key == "probe.epochs":
        return (f"1 <= x: the least the MLP probe trains; it trains on, up to {C.PROBE_LONGEST} times as many, while "
                "its best out-of-fold epoch lies in the last quarter of those run")
    if key == "method.weight":
        ranges = [f"{m} {low:g}..{high:g}" if integer else f"{m} ({low:g}, {high:g}]"
                  for m, (low, high, integer) in C.WEIGHT_RANGES.items()]
        return "; ".join(ranges) + "; none for the others"
    literal = [a for a in (field.annotation, *get_args(field.annotation)) if get_origin(a) is Literal]
    return " | ".join(map(str, get_args(literal[0]))) if literal else _bounds(field)


def _settings(reads: tuple[str, ...] | None) -> list[str]:
    """One line per setting a command reading `reads` reads (`READS`; None: every one): its dotted key, its default
    and what it takes (choices or range)."""
    lines = []
    for key, field in C.settings(C.Config):
        if reads is not None and not _reads(reads, key):
            continue
        takes = _takes(key, field)
        default = json.dumps(_default(field), separators=(", ", ": "))
        lines.append(f"  {key} = {default}" + (f"  ({takes})" if takes else ""))
    return lines


def settings_help(reads: tuple[str, ...] | None = None) -> str:
    """The settings a config file or a key=value override can give, for a command's --help epilog: those it reads
    (`READS`), or all."""
    lines = ["settings (YAML under --config, or key=value), each with what it takes and its default where the YAML "
             "leaves it out (a default --config file sets its own):"]
    return "\n".join(lines + _settings(reads))


def _with_config(p: argparse.ArgumentParser, overrides_help: str = OVERRIDES_HELP,
                 default: str | None = None) -> None:
    p.add_argument("--config", default=default,
                   help=CONFIG_HELP + (f"; without --config: {default}" if default else ""))
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value", help=overrides_help)  # default: not "required"


def build_parser(default_config: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """The `avdis` parser; `default_config` is the --config a command reads when none is given (`jobs/sweep.py`'s
    embedded default), shown in its --help. `prog` is the name a command's usage and argparse's errors give it
    where it is not `avdis <command>`: a jobs/ script's file name, as argparse names a script (`python
    jobs/sweep.py --help` showed `usage: avdis sweep`, a command the user had not run)."""
    SETTINGS_HELP, RAW = settings_help(), argparse.RawDescriptionHelpFormatter  # the epilog's lines as written
    parser = argparse.ArgumentParser(prog="avdis", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a generated audio-visual corpus (real mp4 files + ground truth)")
    p.add_argument("--out", required=True, help="local folder to write the corpus into: a new or empty one, or one "
                   "holding a corpus avdis synth generated (made again with these settings; kept where it has them)")
    _add_synth_flags(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("preprocess", help="decode a corpus into WebDataset shards + manifest.parquet",
                       epilog=settings_help(READS["preprocess"]), formatter_class=RAW)
    p.add_argument("--corpus", choices=C.CORPORA, help="data.corpus (default: the config's)")
    p.add_argument("--src", help="the corpus's source folder (data.src; default: the config's)")
    p.add_argument("--out", help="output URL, a local folder or s3://bucket/prefix (data.shards; default: the "
                   "config's, which train and sweep read)")
    p.add_argument("--shard-size", type=int, help="clips per shard (data.shard_size)")
    p.add_argument("--no-ray", action="store_true", help="decode in this process instead of Ray tasks")
    p.add_argument("--force", action="store_true",
                   help="rebuild the shards even when the manifest says they are up to date")
    _with_config(p, PREPROCESS_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train one model (strategy single: this process; ddp/deepspeed: Ray Train)",
                       epilog=settings_help(READS["train"]), formatter_class=RAW)
    p.add_argument("--workers", type=int, help="training workers (train.workers); more than 1 needs --strategy ddp "
                   "or deepspeed")
    p.add_argument("--strategy", choices=C.STRATEGIES, help="train.strategy: single trains in this process; ddp and "
                   "deepspeed train on Ray Train workers, one or more")
    p.add_argument("--storage", help="URL for metrics.json and checkpoints (local folder or s3://)")
    p.add_argument("--name", help="run name under --storage")
    _with_config(p, default=default_config)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="Ray Tune sweep over methods and weights; writes the Pareto front",
                       epilog=SETTINGS_HELP, formatter_class=RAW)
    p.add_argument("--storage", help="URL the sweep writes under (local folder or s3://)")
    p.add_argument("--name", help="sweep name; outputs go to <storage>/<name>/")
    p.add_argument("--retry-failed", action="store_true",
                   help="resuming a sweep, run its failed trials (search and confirming) again, each from its last "
                   "checkpoint: once their cause is fixed (without it they stay failed; a new sweep has none)")
    _with_config(p, SWEEP_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="write pareto.html / pareto.png / pareto.json for a sweep",
                       epilog=settings_help(("s3",)), formatter_class=RAW)
    p.add_argument("sweep", help="<storage>/<sweep name>")
    _with_config(p, READER_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="serve a sweep's live Pareto page",
                       epilog=settings_help(("s3",)), formatter_class=RAW)
    p.add_argument("sweep", help="<storage>/<sweep name>")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8300, help="TCP port to listen on (default: %(default)s; 0: any free port)")
    p.add_argument("--refresh", type=_refresh_seconds, default=5.0,
                   help="seconds between checks for new results, 0.1 or more (default: %(default)s)")
    _with_config(p, READER_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("model", help="list model size presets with their parameter counts",
                       epilog=settings_help(READS["model"]), formatter_class=RAW)
    p.add_argument("--list", action="store_true", help="(default) list the presets")
    _with_config(p, MODEL_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("grafana", help="export the Grafana dashboard JSON or push it to a Grafana server")
    p.add_argument("action", choices=["export", "push"])
    p.add_argument("--out", help="export: the file to write (default: standard output, or -); "
                   "the repo's copy is infra/grafana/dashboards/avdis-pareto.json")
    p.add_argument("--url", help="push: Grafana base URL")
    p.add_argument("--folder-uid", help="push: Grafana folder UID")
    p.add_argument("--overwrite", action="store_true", help="push: replace a dashboard with the same UID")
    p.add_argument("--token-env",
                   help=f"push: environment variable holding the API token (default: {GRAFANA_TOKEN_ENV})")
    p.set_defaults(func=cmd_grafana)
    for command in sub.choices.values():  # its own usage for an error in its arguments, not the list of commands
        command.set_defaults(command_parser=command)
        command.prog = prog or command.prog
    return parser


def parse(argv: list[str] | None = None, default_config: str | None = None,
          prog: str | None = None) -> argparse.Namespace:
    """The parsed command line; key=value overrides may also come between or after options."""
    parser = build_parser(default_config, prog)
    args, rest = parser.parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    stray = [a for a in rest if not (takes_overrides and "=" in a and not a.startswith("-"))]
    if stray:
        args.command_parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if takes_overrides:
        args.overrides = [*args.overrides, *rest]
    if getattr(args, "sweep", None) and _OVERRIDE.fullmatch(args.sweep):
        # `avdis report s3.endpoint_url=... <sweep>`: argparse took the first word for the sweep and told the user
        # their folder was a malformed override. The sweep is the one word that is no override
        words = [args.sweep, *args.overrides]
        paths = [w for w in words if not _OVERRIDE.fullmatch(w)]
        if not paths:
            args.command_parser.error("no sweep folder given: pass <storage>/<sweep name> (key=value overrides "
                                      "may come before or after it)")
        if len(paths) == 1:
            args.sweep, args.overrides = paths[0], [w for w in words if w != paths[0]]
    return args


_OVERRIDE = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*=.*", re.S)  # dotted.key=value, as no path starts


# How to go on after a Ctrl-C that no avdis error reported (one that did, e.g. a Ray Train run's or Tune's, says so
# itself): what each command leaves behind when cut short, for its rerun.
AFTER_INTERRUPT = {
    "synth": "rerun the same command to generate the corpus again",
    "preprocess": "rerun the same command to build the shards again (a build cut short leaves no manifest, so no run "
                  "reads its shards)",
    "train": "rerun the same command to resume from its last whole checkpoint",
    "sweep": "rerun the same command to resume",
}


def _said_by(args: argparse.Namespace) -> str:
    """The name the command's errors, warnings and notes give it: its usage's (`avdis sweep`, or the jobs/ script
    run), as argparse's own errors do (`avdis sweep: error:` under `python jobs/sweep.py` named a command not run)."""
    return args.command_parser.prog


def main(argv: list[str] | None = None, default_config: str | None = None, prog: str | None = None) -> int:
    args = parse(argv, default_config, prog)
    before, remembered = runtime.stop_as_interrupt(), runtime.remember_interrupts()
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader gone is said as such, not in Python's flush at exit
        return code
    except AvdisError as exc:
        print(f"{_said_by(args)}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        then = AFTER_INTERRUPT.get(args.command)
        print(f"{_said_by(args)}: interrupted" + (f"; {then}" if then else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_gone():  # a pipe of the command's own (to a child, a socket) broke: that is its failure
            raise
        # what reads the output stopped (`avdis grafana export | head`): no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would raise again
        return 141  # as a shell reports a command that SIGPIPE ended
    finally:
        if before is not None:  # a caller's own (main called in a process that goes on)
            before()
        if remembered is not None:
            remembered()


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (its write end then polls POLLERR)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError):  # no file descriptor (stdout replaced), or closed
        return False
