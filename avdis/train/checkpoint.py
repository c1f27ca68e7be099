"""Checkpoint contents beside the engine state, and where runs keep them.

A checkpoint directory holds `engine/` (engine-specific, see `avdis.train.engine`),
`state.json` (epoch, step, data position, metric history, what model it belongs to),
`adversary.pt` and, for nullspace, `posthoc.pt`. A run resumes only with the data (the
manifest's hash), every setting that shapes its result and the measures of its method (its
`run_signature`); anything else is refused naming each setting that differs, old and new.

`RunStore` is the single-process trainer's checkpoint store (Ray Train has its own):
`<run>/checkpoint_epoch_NNNN/` folders, `latest.json` written last as the pointer.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from avdis import storage
from avdis.config import ADDED, Config, S3Config, measured_otherwise, measures_of
from avdis.errors import AvdisError, UsageError, counted

STATE = "state.json"
METRICS_FILE = "metrics.json"  # the run's history, rank 0's, beside its checkpoints
LATEST = "latest.json"
KEEP_CHECKPOINTS = 2  # per run: RunStore prunes to it, Ray Train's CheckpointConfig keeps as many
RAY_RECORD = "checkpoint_manager_snapshot"  # Ray Train's record of a run's checkpoints (a .json file, not a folder)
SIGNATURE = "run_signature"  # state.json's key for `run_signature`
MEASURE = "measures."  # a signature's keys of `config.measures_of` its method and split scheme
ADVERSARY = "adversary.pt"  # the adversary's and its optimizer's state, in every checkpoint
# The names checkpoint folders are given: RunStore's (checkpoint_epoch_0003), Ray Train's (by its node's clock,
# checkpoint_2026-12-04_13-37-00.123456) and Tune's for a trial in its own process (checkpoint_000002). A folder
# moved aside under another name in its run's folder (checkpoint_epoch_0003.bad) is none of them: the scans pass it
# over, and the run resumes from the one before it, as the advice to move it aside says.
CHECKPOINT_NAME = re.compile(r"checkpoint_(epoch_\d+|\d+|\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(\.\d+)?)")


# The sections that shape a run's result, and the settings in them a resumed run may change:
# where it lives, how it is scheduled, how far it trains (a finished run can be extended).
RESULT_SECTIONS = ("data.features", "data.split", "data.loader", "model", "method", "train", "probe")
# train.probe_every: the probe judges frozen embeddings with a generator of its own, so when it runs shapes no weight
MAY_CHANGE = ("data.loader.max_skip_rate", "train.storage", "train.name", "train.max_failures",
              "train.cpus_per_worker", "train.gpus_per_worker", "train.placement_strategy", "train.epochs",
              "train.probe_every")


def _flatten(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_signature(cfg: Config, manifest_hash: str) -> dict[str, Any]:
    """What must match for a checkpoint to resume into this run: its data, every result-shaping setting, and how its
    numbers are made (`config.measures_of` its method: a run begun under another probe or penalty would mix the two
    in its history, and change its loss halfway). A checkpoint that records more measures (every one, as runs did
    before) is checked on these alone (`check_compatible`). Settings added since runs were first signed
    (`config.ADDED`) are left out at the value avdis ran as before them: a run's name hashes its signature."""
    dump = cfg.model_dump(mode="json")
    out = {"data.manifest_hash": manifest_hash,
           **{f"{MEASURE}{name}": how
              for name, how in measures_of([cfg.method.name], cfg.data.split.scheme).items()}}
    for section in RESULT_SECTIONS:
        node = dump
        for part in section.split("."):
            node = node[part]
        out.update(_flatten(node, f"{section}."))
    if cfg.train.precision == "auto" and cfg.train.bf16:
        # signed as what it computes in: auto follows train.gpus_per_worker, which a resumed run may change (a run
        # begun on GPUs went on in fp32 on CPU, and under DeepSpeed failed to load its bf16 optimizer state). Auto
        # on CPU stays "auto", as runs recorded it before
        out["train.precision"] = "bf16"
    return {k: v for k, v in out.items() if k not in MAY_CHANGE and (k not in ADDED or v != ADDED[k])}


def saved_signature(state: dict[str, Any]) -> dict[str, Any]:
    """The run signature a checkpoint's state.json recorded; empty for one too old to record it
    (older versions kept a shorter record under "identity"), which `check_compatible` refuses as such."""
    return state.get(SIGNATURE, {})


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Refuse to resume a checkpoint made with other data or settings (or too old to say which). A setting added
    since it was saved (`config.ADDED`) is read as the value it ran as, and so is one this run leaves out at that
    value (`run_signature`) where the checkpoint holds it: compared on this run's keys alone, a checkpoint signed
    with data.features.f_max=4000 resumed into a run of the full band. A checkpoint whose measures (`run_signature`)
    differ, or that records none of one (begun before it changed), is refused saying how, in the sweep's words
    (`config.measured_otherwise`)."""
    saved = {**{k: v for k, v in ADDED.items() if k in current}, **saved}
    current = {**current, **{k: v for k, v in ADDED.items() if k in saved and k not in current}}
    unknown = [k for k in current if k not in saved]
    if saved and all(k.startswith(MEASURE) for k in unknown):  # else too old to say more than that
        # said as a sweep's refusal says it: a measure it records none of is one it began before that measure changed
        measures = ({k.removeprefix(MEASURE): v for k, v in signed.items() if k.startswith(MEASURE)}
                    for signed in (saved, current))
        otherwise = measured_otherwise(*measures, "this run's")
        if otherwise:
            raise UsageError(f"{where}: its checkpoint was {otherwise}: resumed, its history would hold numbers of "
                             "two measures. Use another train.name (or sweep name) for a new run, or delete that run "
                             "folder to start it over.")
    if unknown:
        more = f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
        raise UsageError(
            f"{where}: the checkpoint records no {', '.join(unknown[:4])}{more}: an older avdis wrote it, so it "
            "cannot be checked against this run. Use another train.name (or sweep name) for a new run, or delete "
            "that run folder to start it over."
        )
    changed = [k for k, v in current.items() if saved[k] != v]
    if changed:
        shards = (" Its shards are not these (data.manifest_hash: the hash of data.shards' manifest.parquet)."
                  if "data.manifest_hash" in changed else "")
        raise UsageError(
            f"{where}: checkpoint was made with other data or settings: "
            f"{'; '.join(f'{k}={saved[k]!r} (this run: {current[k]!r})' for k in changed)}.{shards} "
            "Use another train.name (or sweep name) for a new run, or the original settings to resume."
        )


def _newest_whole(run_url: str, s3: S3Config, up_to_epoch: int | None = None,
                  without: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """(folder URL, state) of the checkpoint folder (`CHECKPOINT_NAME`: RunStore's, Ray Train's or Tune's) of the
    latest epoch whose `state.json` is whole and, with `up_to_epoch`, of an epoch no later than it; None when there
    is none. By the epoch its state holds, not by name: Ray Train names its folders by the node's clock, which may be
    behind an earlier attempt's on another node. `without`: a folder's URL to pass over, as if moved aside."""
    skip = without.rstrip("/").rsplit("/", 1)[-1] if without is not None else None
    found = [u for u in storage.list_files(run_url, s3=s3)
             if CHECKPOINT_NAME.fullmatch(u.rsplit("/", 1)[-1]) and u.rsplit("/", 1)[-1] != skip]
    whole = []
    for i, folder in enumerate(found):
        try:
            state = json.loads(storage.read_bytes(storage.join(folder, STATE), s3))
            epoch = int(state.get("epoch", 0))
        except (FileNotFoundError, ValueError, TypeError, AttributeError):
            continue
        if up_to_epoch is None or epoch <= up_to_epoch:
            whole.append((epoch, i, folder, state))
    if not whole:
        return None
    _, _, folder, state = max(whole, key=lambda w: w[:2])  # of equal epochs (one run again), the later name
    return folder, state


class CheckpointError(AvdisError):
    """A checkpoint a run would resume from that cannot be used; the message names it and what to do."""


def unusable(where: str, why: str, folder: str | None = None, trial: bool = False, ray_train: bool = True, *,
             s3: S3Config) -> CheckpointError:
    """The refusal of a run's checkpoint that cannot be used, naming `folder`, the one the run restored, to move aside
    to resume from the one before it (a run keeps `KEEP_CHECKPOINTS`, and a single-process run's may not be the one
    latest.json names: `RunStore.resume_point`), found in `s3` as the run will (`resumes_without`). Where none is
    before it, it says to start the run over instead: a single-process run with the folder moved aside was refused
    in turn, and a Ray Train run started from epoch 0. `ray_train`: the folder is a Ray Train run's, named with the
    run's record, which goes aside with it: Ray Train will not load a record that lists a folder that is gone, so
    moving the folder alone was refused in turn. `trial`: refused in a sweep's trial, which then fails, and a resumed
    sweep retries a failed trial only under --retry-failed, from this checkpoint again: moving anything aside would
    not train it again (`resume.check_trial_runs` refuses what it can before Ray starts)."""
    if trial:
        return CheckpointError(f"{where}: its newest checkpoint cannot be used ({why}), so this trial fails (a rerun "
                               "with --retry-failed would restore it from this checkpoint again): start a new sweep "
                               "(sweep.name=...)")
    before = resumes_without(where, folder, s3, ray_train) if folder is not None else None
    if before is None:
        return CheckpointError(f"{where}: its newest checkpoint cannot be used ({why}), and no whole checkpoint is "
                               f"before it to resume from; delete {where} to start the run over, or use another "
                               "train.name for a new run (for a sweep's trial, start a new sweep instead: "
                               "sweep.name=...)")
    if not ray_train:
        aside = f"move {folder} aside to resume from {before}"
    else:
        aside = (f"move {folder} aside, and Ray Train's record of the run's checkpoints ({ray_record_url(where)}) "
                 f"with it, to resume from {before}")
    return CheckpointError(f"{where}: its newest checkpoint cannot be used ({why}); {aside}, or use another "
                           "train.name (for a sweep's trial: another sweep.name) to start a new run")


def tune_unusable(folder: str, trial_id: str, why: str, records_url: str, s3: S3Config) -> CheckpointError:
    """The refusal of the checkpoint Tune restores trial `trial_id`, in its own process, from (`folder`, lacking a file:
    `fault`): its state.json to move aside, not the folder, which Tune must find, where the trial then resumes from the
    whole checkpoint beside it that `loop.tune_checkpoint` takes (`tune_whole_beside`), named; where there is none, a
    new sweep at once: the advice to move it aside, followed, failed the trial in turn (a failed trial is retried
    only under --retry-failed, whose refusal adds that a rerun without it leaves the trial failed:
    `resume.check_trial_runs`)."""
    beside = tune_whole_beside(folder, records_url, s3)
    said = f"{folder}: the checkpoint Tune restores trial {trial_id} from cannot be used ({why})"
    if beside is None:
        return CheckpointError(f"{said}, and no checkpoint beside it is known to be whole to resume the trial from; "
                               "start a new sweep (sweep.name=...)")
    return CheckpointError(f"{said}; move its {STATE} aside (not the folder, which Tune must find) to resume the trial "
                           f"from {beside}, or start a new sweep (sweep.name=...)")


def tune_whole_beside(folder: str, records_url: str, s3: S3Config) -> str | None:
    """URL of the checkpoint a trial in its own process resumes from where the one Tune restores it from (`folder`)
    cannot be used: the newest other beside it of an epoch the metrics.json under `records_url` shows uploaded whole
    (`uploaded_epochs`); None where there is none."""
    uploaded = uploaded_epochs(records_url, s3)
    beside = None if uploaded is None else _newest_whole(folder.rsplit("/", 1)[0], s3, uploaded, without=folder)
    return beside[0] if beside is not None else None


STAND_IN = "deleted.txt"  # the one file of a stand-in for a Tune checkpoint folder that is gone (`stand_in`)


def stand_in(folder: str, s3: S3Config) -> None:
    """Put a stand-in where a checkpoint folder of a trial that Tune's state lists is gone. Tune deletes a trial's
    checkpoint past `KEEP_CHECKPOINTS` as it registers a newer one and saves its experiment state (which lists each
    trial's checkpoints) only after, so a driver killed in between leaves a state listing deleted folders. Ray refuses
    to restore from one before the trial runs (the trial fails, and a failed trial is run again only under
    --retry-failed), and fails to delete one (`resume.check_trial_runs`). The stand-in has no state.json: a trial
    restored from it resumes from the newest whole checkpoint beside it, copied into the stand-in first
    (`loop.tune_checkpoint`), and Tune deletes the stand-in in time, as it would have the checkpoint."""
    storage.write_bytes(storage.join(folder, STAND_IN), (
        "avdis put this folder here in place of a checkpoint that was deleted after the sweep's driver last saved its "
        "state, for Tune to delete in turn; a trial restored from it resumed from the newest whole checkpoint beside "
        "it, copied here.\n").encode(), s3)


def resumes_without(run_url: str, folder: str, s3: S3Config, ray_train: bool) -> str | None:
    """URL of the checkpoint the run under `run_url` resumes from once `folder` (and, for a Ray Train run, its record)
    is moved aside: the newest other with a whole state.json (`RunStore.resume_point`), for a Ray Train run the newest
    its metrics.json shows uploaded whole (`unrecorded_point`, which `RayReporter.restore` takes without a record);
    None where there is none."""
    if ray_train:
        point = unrecorded_point(run_url, s3, without=folder)
    else:
        point = _newest_whole(run_url, s3, without=folder)
    return point[0] if point is not None else None


def fault(folder_url: str, s3: S3Config) -> str | None:
    """Why a run cannot resume from the checkpoint folder at `folder_url`, as far as its files tell without loading
    them: a state.json that is not whole, or a file every checkpoint holds that is missing (adversary.pt, the
    engine's state); None where nothing is seen wrong."""
    from avdis.train.engine import ENGINE_DIR  # here: the engine's module imports torch, which this one does not need

    try:
        int(json.loads(storage.read_bytes(storage.join(folder_url, STATE), s3))["epoch"])
    except FileNotFoundError:
        return f"{STATE} is missing"
    except (ValueError, KeyError, TypeError) as exc:
        return f"{STATE} is damaged ({type(exc).__name__}: {exc})"
    if not storage.exists(storage.join(folder_url, ADVERSARY), s3):
        return f"{ADVERSARY} is missing"
    if not storage.list_files(storage.join(folder_url, ENGINE_DIR), s3=s3):
        return f"{ENGINE_DIR}/, the model's and optimizer's state, is missing"
    return None


def check_resume(run_url: str, current: dict[str, Any], s3: S3Config, epochs: int, ray_train: bool) -> None:
    """Before any work, refuse what `check_compatible` would refuse once the run restores its checkpoint, and a
    run that has trained more than `epochs` already (it would return its later result as if it were this one), or
    exactly `epochs` of a longer run it was started as (it would return a result no finished run had).

    Judges the checkpoint the run will resume from (`RunStore.resume_point`, or for a Ray Train run `ray_resume_point`),
    not the newest with a whole state.json: a kill can cut an upload short after its state.json, and a rerun asking
    for the epochs that the run will actually train was refused one epoch early. A run that would start afresh
    beside checkpoints (another launcher's: `train.strategy` changed) is checked against the newest of them, so as
    not to train into another run's folder.
    """
    resumed = ray_resume_point(run_url, s3) if ray_train else RunStore(run_url, s3).resume_point()
    judged = resumed or _newest_whole(run_url, s3)
    if judged is not None:
        check_compatible(saved_signature(judged[1]), current, run_url)
    if resumed is not None:
        done, planned = resumed[1].get("epoch", 0), resumed[1].get("epochs")
        if done > epochs:
            raise UsageError(f"{run_url}: has trained {done} epochs already, more than train.epochs="
                             f"{epochs}; ask for at least {done}, or use another train.name for a new run")
        if done == epochs and planned is not None and planned > epochs:
            # nothing would train, so its epoch-`done` result would be returned as a finished run's: one whose last
            # epoch did not end the schedule, nor surely probe (and fit nullspace's INLP) as a last epoch does
            raise UsageError(f"{run_url}: stopped after epoch {done} of the {planned} it was started with; that epoch "
                             f"did not end a {epochs}-epoch run (it trained on the {planned}-epoch learning-rate "
                             "schedule, and not as a last epoch, which always probes leakage); ask for more than "
                             f"{counted(done, 'epoch')} (train.epochs={planned} finishes it), or use another "
                             "train.name for a new run")


def ray_resume_point(run_url: str, s3: S3Config) -> tuple[str, dict[str, Any]] | None:
    """(folder URL, state) of the checkpoint a Ray Train run under `run_url` resumes from (`RayReporter.restore`):
    the one its record names as its latest (what `ray.train.get_checkpoint` gives), or the newer one
    `unrecorded_point` finds; None for a run that starts afresh. A record listing a folder that is gone is refused
    (`check_ray_record`)."""
    record = _ray_record(run_url, s3)
    if record is None:
        return unrecorded_point(run_url, s3)  # no record (Ray Train starts afresh), or one it refuses to read itself
    check_ray_record(run_url, s3, f"delete {run_url} to start the run over, or use another train.name for a new run")
    after, recorded, latest = 0, None, record[1]
    if latest is not None:
        try:
            state = json.loads(storage.read_bytes(storage.join(latest, STATE), s3))
            after, recorded = int(state.get("epoch", 0)), (latest, state)
        except (FileNotFoundError, ValueError, TypeError, AttributeError):
            pass  # its restore says why it cannot be used, unless a newer whole checkpoint is found
    return unrecorded_point(run_url, s3, after) or recorded


def ray_restored(run_url: str, s3: S3Config) -> str | None:
    """URL of the checkpoint folder a Ray Train run under `run_url` restores (`RayReporter.restore`): that of
    `ray_resume_point`, else its record's latest, whose state.json cannot be read; None for a run that starts
    afresh."""
    point = ray_resume_point(run_url, s3)
    if point is not None:
        return point[0]
    record = _ray_record(run_url, s3)
    return record[1] if record is not None else None


def _ray_record(run_url: str, s3: S3Config) -> tuple[list[str], str | None] | None:
    """(names of the folders listed, URL of the latest) in Ray Train's record of the run's checkpoints; None without
    one Ray Train reads (none: it starts afresh; a damaged one it refuses itself)."""
    try:
        record = json.loads(storage.read_bytes(ray_record_url(run_url), s3))
        listed = [r["checkpoint_dir_name"] for r in record["checkpoint_results"]]
        latest = record["latest_checkpoint_result"]
        return listed, storage.join(run_url, latest["checkpoint_dir_name"]) if latest is not None else None
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def ray_record_url(run_url: str) -> str:
    """Where Ray Train keeps its record of the checkpoints of the run under `run_url`."""
    return storage.join(run_url, f"{RAY_RECORD}.json")


def check_ray_record(run_url: str, s3: S3Config, start_over: str) -> None:
    """Refuse a Ray Train run whose record lists a checkpoint folder that is gone (deleted by hand, expired by a
    bucket lifecycle rule), saying what to do: Ray Train will not load such a record, and the run ended in its
    traceback (`avdis train`), or a sweep's trial in an error (retried only under --retry-failed, meeting it again).
    `start_over`: what else to do, where no whole checkpoint is left or the user would rather not resume from it."""
    record = _ray_record(run_url, s3)
    if record is None:
        return
    present = {u.rsplit("/", 1)[-1] for u in storage.list_files(run_url, s3=s3)}
    gone = [name for name in record[0] if name not in present]
    if gone:
        left = unrecorded_point(run_url, s3)  # what the run resumes from once the record is moved aside
        raise CheckpointError(
            f"{run_url}: Ray Train's record of its checkpoints ({ray_record_url(run_url)}) lists {', '.join(gone)}, "
            f"which {'is' if len(gone) == 1 else 'are'} gone, and Ray Train will not resume from such a record; "
            + (f"move {ray_record_url(run_url)} aside to resume from {left[0]}, the newest whole checkpoint left, or "
               if left else "") + start_over)


def unrecorded_point(run_url: str, s3: S3Config, after: int = 0,
                     without: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """(folder URL, state) of the newest checkpoint of a Ray Train run that its own record lacks, of an epoch after
    `after` (the epoch of the newest one the record has); None when there is none. A stop (Ctrl-C, `ray job stop`)
    aborts the run before Ray Train has recorded its last reports in checkpoint_manager_snapshot.json (two epochs
    behind, or no record at all), and its rerun went back that far. Only a checkpoint of an epoch before the last one
    metrics.json records counts: each epoch's metrics.json is written once the previous epoch's checkpoint was
    uploaded whole, so that one is whole (the last may have been cut short)."""
    uploaded = uploaded_epochs(run_url, s3)
    if uploaded is None or uploaded <= after:  # nothing newer is known whole: no listing (the usual restore)
        return None
    newest = _newest_whole(run_url, s3, up_to_epoch=uploaded, without=without)
    return newest if newest is not None and int(newest[1].get("epoch", 0)) > after else None


def remove_unlisted(run_url: str, s3: S3Config, listed: set[str]) -> None:
    """Remove the checkpoint folders of a Ray Train run that its record does not list (`listed`: their names); for
    a record that lists a checkpoint newer than all of them. Ray Train deletes only those it lists, down to
    KEEP_CHECKPOINTS: the ones a stop left unrecorded (`unrecorded_point`), about two a stop, stayed for ever. A
    folder the user moved aside under another name (`CHECKPOINT_NAME`) is theirs, and stays. With none listed, all
    of a lost trial's Tune trial folder or Ray Train run (`resume.remove_lost_checkpoints`)."""
    for folder in storage.list_files(run_url, s3=s3):
        name = folder.rsplit("/", 1)[-1]
        if CHECKPOINT_NAME.fullmatch(name) and name not in listed:
            _remove(folder, s3)


def uploaded_epochs(records_url: str, s3: S3Config) -> int | None:
    """The epochs of a run whose checkpoints were surely uploaded whole: one fewer than the metrics.json under
    `records_url` records, which each epoch writes before its checkpoint goes up (a kill during that upload can leave
    a whole state.json beside missing weights: Ray copies a folder's files at once). None without a readable one."""
    try:
        return len(json.loads(storage.read_bytes(storage.join(records_url, METRICS_FILE), s3))["history"]) - 1
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def local(folder_url: str, s3: S3Config) -> Iterator[Path]:
    """A checkpoint folder as a local folder while the block runs: read in place where local, else downloaded."""
    if not storage.is_remote(folder_url):
        yield Path(storage.filesystem(folder_url, s3)[1])
        return
    with _downloaded(folder_url, s3) as here:
        yield here


@contextmanager
def _downloaded(folder_url: str, s3: S3Config) -> Iterator[Path]:
    """A checkpoint folder copied to a local temp folder while the block runs."""
    fs, path = storage.filesystem(folder_url, s3)
    with tempfile.TemporaryDirectory(prefix="avdis-restore-") as tmp:
        fs.get(path + "/", tmp + "/", recursive=True)
        yield Path(tmp)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    (directory / STATE).write_text(json.dumps(state, indent=1))


def read_state(directory: Path) -> dict[str, Any]:
    return json.loads((directory / STATE).read_text())


class RunStore:
    """Checkpoints of a single-process run under its URL (local folder or s3://)."""

    def __init__(self, run_url: str, s3: S3Config):
        self.url, self.s3 = run_url, s3
        self.restored: str | None = None  # the URL of the checkpoint `latest` gave, for a refusal to name

    def _fs(self):
        return storage.filesystem(self.url, self.s3)

    def resume_point(self) -> tuple[str, dict[str, Any], str | None] | None:
        """(folder URL, state, why) of the checkpoint the run resumes from (`latest`); None for a new run. That is
        the one latest.json names, unless the pointer is gone or damaged or names a folder without a whole state.json:
        then the newest folder with one, and `why` says what was wrong (starting over would overwrite good
        checkpoints)."""
        pointer = storage.join(self.url, LATEST)
        folder, why, no_pointer = None, None, False
        try:
            folder = storage.join(self.url, json.loads(storage.read_bytes(pointer, self.s3))["checkpoint"])
            state = json.loads(storage.read_bytes(storage.join(folder, STATE), self.s3))
        except FileNotFoundError:
            no_pointer = folder is None
            why = f"{storage.join(folder, STATE) if folder else pointer} is missing"
        except (ValueError, KeyError, TypeError):
            why = f"{storage.join(folder, STATE) if folder else pointer} is damaged"
        if why is None:
            return folder, state, None
        newest = _newest_whole(self.url, self.s3)
        if newest is not None:
            return *newest, why
        if no_pointer:
            return None  # a new run
        raise CheckpointError(f"{self.url}: {why}, and no checkpoint folder with a whole {STATE} is left to resume "
                              f"from; delete {self.url} to start the run over, or use another train.name for a new run")

    @contextmanager
    def latest(self) -> Iterator[Path | None]:
        """The run's `resume_point` as a local folder while the block runs (None for a new run), said aloud where it
        is not the one latest.json names."""
        found = self.resume_point()
        self.restored = found[0] if found is not None else None
        if found is None:
            yield None
            return
        folder, _, why = found
        if why is not None:
            print(f"avdis train: {why}; resuming from {folder}, the newest checkpoint with a whole {STATE}", flush=True)
        with _downloaded(folder, self.s3) as here:
            yield here

    def save(self, local_dir: Path, epoch: int) -> str:
        name = f"checkpoint_epoch_{epoch:04d}"
        fs, path = storage.filesystem(storage.join(self.url, name), self.s3)
        if fs.exists(path):
            _remove(storage.join(self.url, name), self.s3)
        upload(local_dir, storage.join(self.url, name), self.s3)  # whole before latest.json names it
        storage.write_bytes(storage.join(self.url, LATEST), json.dumps({"checkpoint": name}).encode(), self.s3)
        self._prune()
        return storage.join(self.url, name)

    def _prune(self) -> None:
        fs, path = self._fs()
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        names = sorted((n for n in names if re.fullmatch(r"checkpoint_epoch_\d+", n)), key=lambda n: int(n[17:]))
        for old in names[:-KEEP_CHECKPOINTS]:  # by number: epoch 10000's folder sorts before 9999's by name
            _remove(storage.join(self.url, old), self.s3)


def upload(local_dir: Path, folder_url: str, s3: S3Config) -> None:
    """Copy the checkpoint in `local_dir` to `folder_url`, its state.json last: a folder with a whole one is whole
    (s3fs uploads a folder's files at once, in any order), so the rest is on disk before it is written (a crash of
    the machine left a whole state.json beside empty weights)."""
    fs, path = storage.filesystem(folder_url, s3)
    rest = sorted(p for p in local_dir.rglob("*") if p.is_file() and p != local_dir / STATE)
    for folder in {path, *(f"{path}/{p.parent.relative_to(local_dir).as_posix()}" for p in rest)}:
        fs.makedirs(folder, exist_ok=True)  # local folders; nothing on S3
    fs.put([str(p) for p in rest], [f"{path}/{p.relative_to(local_dir).as_posix()}" for p in rest])
    storage.sync(folder_url, s3)
    storage.write_bytes(storage.join(folder_url, STATE), (local_dir / STATE).read_bytes(), s3)


def _remove(folder_url: str, s3: S3Config) -> None:
    """Remove a checkpoint folder, its state.json first: a recursive removal goes in the filesystem's own order, and
    one stopped part-way (killed) left a folder that held its state.json, so counted as whole, without its weights."""
    storage.remove(storage.join(folder_url, STATE), s3)
    storage.remove(folder_url, s3)


SCRATCH_PREFIX = "avdis-ckpt-"
ORPHAN_AGE_S = 600.0  # a scratch folder this old whose process is gone was left by a killed one


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temp folder to write one checkpoint in, removed afterwards; named with this process's PID so that
    the folders of killed processes (an epoch's engine state each) are removed by the next run on the node."""
    _remove_orphans(Path(tempfile.gettempdir()))
    d = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@functools.cache  # once per process and folder: checkpoints are written every epoch, orphans appear rarely
def _remove_orphans(tmp: Path) -> None:
    for d in tmp.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = d.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or storage.pid_alive(int(pid)) or time.time() - d.stat().st_mtime < ORPHAN_AGE_S:
                continue
        except OSError:
            continue  # another process removed it first
        shutil.rmtree(d, ignore_errors=True)

