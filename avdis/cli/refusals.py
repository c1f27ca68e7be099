"""The settings a command refuses because it would not read them as configured (accepted, each changed nothing),
and why; where the command resumes a sweep or run begun with one, a warning instead (`said_by`: the name it gives
the command). Made by the command, not by validation, which a resumed sweep's trials and a run's workers do again."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from avdis import config as C
from avdis.cli.reads import READ_ONLY_UNDER, given_settings, holds_path, mode_of, reads_setting, typed_by


def said_by(args: argparse.Namespace) -> str:
    """The name the command's errors, warnings and notes give it: its usage's (`avdis sweep`, or the jobs/ script
    run), as argparse's own errors do (`avdis sweep: error:` under `python jobs/sweep.py` named a command not run)."""
    return args.command_parser.prog


# what `avdis train` reads only on Ray Train: strategy single trains in this process (`launch.train`), starting no Ray,
# making no ScalingConfig or FailureConfig, and leaving torch's thread count to the process (OMP_NUM_THREADS)
SINGLE_IGNORES = ("ray", "train.max_failures", "train.placement_strategy", "train.cpus_per_worker")
SINGLE_IGNORES_WHY = ("train.strategy=single trains in this process, without Ray, so {key} would change nothing; drop "
                      "it, or give train.strategy=ddp or deepspeed (--strategy) to train on Ray Train workers")


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


def refuse_ignored(args: argparse.Namespace, cfg: C.Config, ignored: dict[str, str], chosen: bool,
                    flags: dict[str, tuple[str, Any]] | None = None) -> None:
    """Refuse a setting the command was given that it would not read as configured: `ignored` maps a setting or
    section to why ({key}: the setting given). One given on the command line is always refused; one in the config
    file unless `chosen`, where the command line chose what leaves it unread (`--strategy single`, `--no-ray`): a
    file may hold settings for the other ways it is run."""
    for path in given_settings(cfg):
        why = next((why for key, why in ignored.items() if reads_setting((key,), path)), None)
        typed = typed_by(args, path, flags)
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
    print(f"{said_by(args)}: warning: {said}; kept, as {resumed} was started with it", file=sys.stderr)


def _resumed(args: argparse.Namespace, cfg: C.Config) -> str | None:
    """The sweep or run already there that the command resumes ('the sweep at <url>'), None where it starts one. A
    setting that changes nothing is refused (`refuse_ignored`) only where none is: one started before it was refused
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


def refuse_unread_by_methods(args: argparse.Namespace, cfg: C.Config, methods: list[str], chooser: str) -> None:
    """Refuse the method settings (`C.READ_BY_METHODS`) that none of `methods` reads, which `chooser` set (method.name
    for a run, sweep.space.methods for a sweep)."""
    runs = f"method {methods[0]} does not read" if len(methods) == 1 else \
        f"no method of {chooser}=[{', '.join(methods)}] reads"
    ignored = {key: f"{runs} {{key}} (only {', '.join(readers)} do), so it would change nothing; drop it, or give "
                    f"{chooser} one of those"
               for key, readers in C.READ_BY_METHODS.items() if not set(readers) & set(methods)}
    refuse_ignored(args, cfg, ignored, chosen=typed_by(args, chooser) is not None)


def refuse_unread_samples(args: argparse.Namespace, cfg: C.Config) -> None:
    """Refuse a setting sweep.space.params samples that no trial reads (`_unread_sample`): it set trials apart that
    trained alike, and the searcher learned noise. Given on the command line, or in the file where the command line
    did not choose the setting that leaves it unread: a file may serve other sweeps, and its sample of
    train.max_failures under `avdis sweep train.workers=1` is left alone, as its other settings are (still sampled)."""
    param = ["sweep", "space", "params"]
    for key in cfg.sweep.space.params:
        unread = _unread_sample(cfg, key)
        if unread is not None:
            mode, why = unread
            typed = next((o for o in reversed(args.overrides) if holds_path(C.parse_overrides([o]), [*param, key])
                          or holds_path(C.parse_overrides([o]), [*param, *key.split(".")])), None)
            if typed is None and line_chose(args, cfg, mode):
                continue
            where = typed or f"{f'{args.config}: ' if args.config else ''}sweep.space.params.{key}"
            _refuse_unless_resumed(args, cfg, f"{where}: {why}")


def line_chose(args: argparse.Namespace, cfg: C.Config, mode: str) -> bool:
    """Whether the command line of `avdis sweep` chose the setting `mode` that leaves a file's setting unread: gave
    it, or, for train.workers, gave train.strategy=single, under which a file's workers are left alone
    (`C.load`): one worker, by the command line's choice."""
    return typed_by(args, mode) is not None or (mode == "train.workers" and cfg.train.strategy == "single"
                                              and typed_by(args, "train.strategy") is not None)


def _unread_sample(cfg: C.Config, key: str) -> tuple[str, str] | None:
    """The setting that leaves the setting `key` that sweep.space.params samples unread by every trial of the sweep,
    and why; None where a trial reads it: none of sweep.space.methods reads it (`C.READ_BY_METHODS`), it is read only
    under another value of a setting the space does not sample (`READ_ONLY_UNDER`: model.contours under
    model.modality=visual), or it is Ray Train's and every trial trains in its own process (`IN_PROCESS_IGNORES`; and
    train.max_failures, by which Tune restarts every such trial alike: `ONE_RESTART_RULE`)."""
    space, methods = cfg.sweep.space.params, cfg.sweep.space.methods
    readers = next((r for k, r in C.READ_BY_METHODS.items() if reads_setting((k,), key)), ())
    if readers and not set(readers) & set(methods):
        return "sweep.space.methods", (f"{key} is read only by {', '.join(readers)}, none of which "
                                       f"sweep.space.methods=[{', '.join(methods)}] holds, so sampling it would change "
                                       "nothing; add one of them to sweep.space.methods, or drop it")
    for setting, mode, values, why in READ_ONLY_UNDER:
        said, current = mode_of(cfg, mode)
        if reads_setting((setting,), key) and mode not in space and current not in values:
            return mode, (f"{why}; under {said}={current} sampling {key} would change nothing: drop it, or give "
                          f"{mode}={'null' if values[0] is None else values[0]}")
    if key in IN_PROCESS_IGNORES and cfg.train.in_process and "train.workers" not in space:
        return "train.workers", IN_PROCESS_WHY.format(key=f"sampling {key}")
    if key == "train.max_failures" and cfg.train.in_process and "train.workers" not in space:
        return "train.workers", ONE_RESTART_RULE.format(key=f"sampling {key}")
    return None


def refuse_cluster_on_local_ray(args: argparse.Namespace, cfg: C.Config, work: str) -> None:
    """Refuse ray.autoscaling and ray.cluster_file on the command line where the command starts a local Ray (no
    ray.address or RAY_ADDRESS, or either local: `mode_of`), for its `work` (build, run, sweep). They describe a cluster
    that adds nodes (`nodes.check_added_nodes`, `clusterfit.check_cluster`), and a local Ray adds none: both pass over
    it. A config file's (a cluster config, run here) is left alone."""
    said, address = mode_of(cfg, "ray.address")
    if address in (None, "", "local"):
        local = f"{said}=local" if address == "local" else "no ray.address or RAY_ADDRESS"
        refuse_ignored(args, cfg, dict.fromkeys(("ray.autoscaling", "ray.cluster_file"), "{key} describes a cluster "
                                                 f"that adds nodes, and the local Ray this {work} starts ({local}) "
                                                 "adds none, so {key} would change nothing; drop it, or give "
                                                 f"ray.address=<the cluster's> to {work} on it"), chosen=True)


def refuse_s3_unused(args: argparse.Namespace, cfg: C.Config, locations: dict[str, str | None]) -> None:
    """Refuse s3 settings on the command line where none of the command's `locations` (by the name the user gave
    it) is on S3: they would change nothing, and `--out bucket/shards s3.endpoint_url=...` (s3:// left out) wrote
    the shards into a local folder so named. A config file's s3 section (a cluster config's) is left alone."""
    where = {name: url for name, url in locations.items() if url is not None}
    if any(url.startswith("s3://") for url in where.values()):
        return
    said = ", ".join(f"{name}={url}" for name, url in where.items())
    refuse_ignored(args, cfg, {"s3": f"no location of this command is on S3 ({said}), so {{key}} would change "
                                      "nothing; give the location as s3://bucket/prefix, or drop it"}, chosen=True)
