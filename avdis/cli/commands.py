"""The subcommands, one function each (`cmd_<command>`, the parser's `func`): a command's own checks of its
config and flags, then the one library function it calls, and what it prints."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from typing import TYPE_CHECKING

from avdis import config as C
from avdis import runtime
from avdis.cli.helps import SYNTH_FLAGS
from avdis.cli.loading import load_config
from avdis.cli.reads import given_by, holds_path, typed_by
from avdis.cli.refusals import (IN_PROCESS_IGNORES, IN_PROCESS_WHY, SINGLE_IGNORES, SINGLE_IGNORES_WHY,
                                SWEEP_SETS_ITSELF, line_chose, refuse_cluster_on_local_ray, refuse_ignored,
                                refuse_s3_unused, refuse_unread_by_methods, refuse_unread_samples, said_by)
from avdis.numbers import json_safe

if TYPE_CHECKING:
    import pandas as pd


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
    cfg = load_config(args, flags)
    if args.no_ray:  # a config file's ray section is for its builds on Ray (and its runs): left alone
        refuse_ignored(args, cfg, {"ray": "--no-ray decodes in this process, without Ray, so {key} would change "
                                           "nothing; drop it, or drop --no-ray to decode in Ray tasks"}, chosen=True)
    else:
        refuse_cluster_on_local_ray(args, cfg, "build")
    names = given_by(flags)  # a refusal names a location as it was given: by its flag, else by its setting
    refuse_s3_unused(args, cfg, {names.get("data.shards", "data.shards"): cfg.data.shards})
    corpora.source_folder(cfg.data.src, cfg.data.corpus)
    runtime.check_kept({names.get("data.shards", "data.shards"): cfg.data.shards})
    storage.check_buckets(cfg.s3, cfg.data.shards)  # a missing one: the write check said 'not writable' alone
    storage.check_writable(cfg.data.shards, cfg.s3)
    summary = prepare.preprocess(cfg, use_ray=not args.no_ray, generate=False, force=args.force, names=names)
    cue = summary.pop("bandwidth_cue", None)  # a warning, not a count: said below, once
    print(json.dumps(summary, indent=1, ensure_ascii=False))  # paths as written, not \u escapes
    if cue:
        print(f"{said_by(args)}: warning: {cue}", file=sys.stderr)
    for name, lacks in (("val", "validation metrics (and a sweep, which chooses on them, is refused)"),
                        ("test", "test metrics and no leakage probe")):
        if summary["splits"][name] == 0:
            print(f"{said_by(args)}: warning: the {name} split is empty (a speaker needs 3 clips or more to be in "
                  f"every split), so training will have no {lacks}", file=sys.stderr)
    speakers, folds = summary["speakers"], cfg.data.split.folds
    if speakers < 2 * folds:  # said now, not when a speaker_disjoint run or sweep is refused on these shards
        held_out = "no folds (fewer speakers than folds)" if speakers < folds else "a test or validation fold of 1 speaker"
        fix = (f"preprocess with data.split.folds <= {speakers // 2} for it" if speakers // 2 >= C.MIN_FOLDS else
               f"it needs {2 * C.MIN_FOLDS} speakers or more")
        print(f"{said_by(args)}: warning: {speakers} speakers in data.split.folds={folds} give {held_out}, which "
              f"data.split.scheme=speaker_disjoint cannot use; {fix} (within_speaker is unaffected)", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from avdis.train import launch

    flags = {f"train.{flag}": (f"--{flag}", getattr(args, flag)) for flag in ("workers", "strategy", "storage", "name")}
    cfg = load_config(args, flags)
    if cfg.train.strategy == "single":
        refuse_ignored(args, cfg, dict.fromkeys(SINGLE_IGNORES, SINGLE_IGNORES_WHY),
                        chosen=typed_by(args, "train.strategy", flags) is not None, flags=flags)
    elif cfg.train.workers == 1:  # Ray Train's placement group of one worker's bundle: any strategy places it alike
        refuse_ignored(args, cfg, {"train.placement_strategy": "with train.workers=1 the run places one worker, "
                                    "where every placement strategy puts it alike, so {key} would change nothing; "
                                    "drop it, or give train.workers=2 or more (--workers)"},
                        chosen=typed_by(args, "train.workers", flags) is not None, flags=flags)
    if cfg.train.strategy != "single":  # single starts no Ray (`SINGLE_IGNORES`)
        refuse_cluster_on_local_ray(args, cfg, "run")
    refuse_unread_by_methods(args, cfg, [cfg.method.name], "method.name")
    refuse_s3_unused(args, cfg, {"data.shards": cfg.data.shards,
                                  given_by(flags).get("train.storage", "train.storage"): cfg.train.storage})
    result = launch.train(cfg, names=given_by(flags))
    # strict JSON (a metric without data is null), paths as written
    print(json.dumps(json_safe(result), indent=1, allow_nan=False, ensure_ascii=False))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep with the report floor's views of it: gauges and pages per result, the report at the end."""
    for override in args.overrides:
        sets = C.parse_overrides([override])
        for keys, why in SWEEP_SETS_ITSELF.items():
            held = [key for key in keys if holds_path(sets, key.split("."))]
            if held:
                raise C.ConfigError(f"{override}: {why.format(keys=' and '.join(held))}")
    flags = {f"sweep.{flag}": (f"--{flag}", getattr(args, flag)) for flag in ("storage", "name")}
    cfg = load_config(args, flags)
    probes = [o for o in args.overrides if holds_path(C.parse_overrides([o]), ["train", "probe_every"])]
    if probes and cfg.sweep.scheduler.type == "mo_asha":  # `sweep.probing` sets it; a config file's is left alone
        raise C.ConfigError(f"{probes[0]}: under MO-ASHA (sweep.scheduler.type=mo_asha) every trial probes at each "
                            "multiple of sweep.scheduler.grace_epochs, where its rungs fall, and at its last epoch, so "
                            "train.probe_every would change nothing; give sweep.scheduler.grace_epochs=<epochs>, or "
                            "sweep.scheduler.type=none to probe every train.probe_every epochs")
    refuse_unread_by_methods(args, cfg, cfg.sweep.space.methods, "sweep.space.methods")
    refuse_unread_samples(args, cfg)
    refuse_cluster_on_local_ray(args, cfg, "sweep")
    if cfg.train.in_process and "train.workers" not in cfg.sweep.space.params:
        refuse_ignored(args, cfg, dict.fromkeys(IN_PROCESS_IGNORES, IN_PROCESS_WHY),
                        chosen=line_chose(args, cfg, "train.workers"))
    for override in args.overrides:  # a file's weights may serve other lists of methods: left alone
        unswept = [m for m in C.WEIGHT_RANGES if m not in cfg.sweep.space.methods
                   and holds_path(C.parse_overrides([override]), ["sweep", "space", "weights", m])]
        if unswept:
            raise C.ConfigError(f"{override}: sweep.space.methods=[{', '.join(cfg.sweep.space.methods)}] does not "
                                f"sweep {unswept[0]}, so sweep.space.weights.{unswept[0]} would change nothing; add "
                                f"{unswept[0]} to sweep.space.methods, or drop it")
    refuse_s3_unused(args, cfg, {given_by(flags).get("sweep.storage", "sweep.storage"): cfg.sweep.storage,
                                  "sweep.checkpoints": cfg.sweep.checkpoints, "data.shards": cfg.data.shards})
    # the sweep's modules once its command line passed these checks: they import Ray Tune, torch, pandas and
    # matplotlib, seconds of CPU that a refused command line need not wait for
    from avdis import results, storage
    from avdis.report import files, metrics
    from avdis.report.callback import ReportCallback
    from avdis.tune import sweep
    from avdis.tune.failures import failures

    name = cfg.sweep.name
    url = sweep.url_of(cfg)
    views = sweep.Views(listeners=(functools.partial(metrics.publish, name),), callbacks=(ReportCallback(url, cfg.s3),))
    try:
        sweep.run(cfg, views, names=given_by(flags), retry_failed=args.retry_failed)
        # Prometheus's last scrape of its gauges is of its end, not of some results before
        metrics.settle(name, cfg.sweep.prometheus_scrape_s)
    finally:  # its gauges go stale once it ends, as when this process exits
        metrics.forget(name)
    written = files.write_pages(url, cfg.s3)
    failed = failures(url, cfg)  # said before the outputs: "done." followed by an error read as both
    print(f"avdis sweep {name}: {'done' if failed is None else 'ended with failed trials (the error names them)'}."
          f"\n  front:  {written['pareto.json']}\n  report: {written['pareto.html']}"
          f"\n  plot:   {written['pareto.png']}\n  trials: {storage.join(url, results.TRIALS)}", flush=True)
    skipped = results.skips_said(results.read_trials(url, cfg.s3))
    if skipped:
        print(f"{said_by(args)}: warning: {skipped}", file=sys.stderr, flush=True)
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

    cfg = load_config(args)
    url = _path(args.sweep)
    refuse_s3_unused(args, cfg, {"the sweep folder": url})
    report = files.write_report(url, cfg.s3)
    trials, axes = report.trials, results.axes_of(url, cfg.s3)
    for kind, page in report.written.items():
        print(f"{kind}: {page}")
    for note in (report.rebuilt, report.outrun, _still_running(trials), results.failures_said(trials, url),
                 results.skips_said(trials), results.unvalidated_said(results.unvalidated(trials, axes), axes)):
        if note:
            print(f"{said_by(args)}: note: {note}", file=sys.stderr)
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
            f"; the sweep's last result came {_ago(time.time() - last)} ago ({view.utc(last)})")
    return (f"{running} trial{'s are' if running > 1 else ' is'} RUNNING{came}. If the sweep's driver has stopped, "
            "they stay RUNNING until the sweep is run again with the same config, which resumes them.")


def _ago(seconds: float) -> str:
    """A time past in the unit it reads best in: a result seconds old read '0 min ago', one of a driver stopped two
    days before '2880 min ago'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} days"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from avdis.report import dashboard

    cfg = load_config(args)
    url = _path(args.sweep)
    refuse_s3_unused(args, cfg, {"the sweep folder": url})
    dashboard.serve(url, host=args.host, port=args.port, s3=cfg.s3, refresh_s=args.refresh)
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from avdis.model import multitask

    cfg = load_config(args)
    refuse_s3_unused(args, cfg, {"data.shards": cfg.data.shards})  # s3 reaches the shards whose counts it lists
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
