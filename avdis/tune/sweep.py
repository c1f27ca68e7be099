"""The sweep: Ray Tune over methods and weights, each trial training in its own process (one worker) or
through a distributed TorchTrainer (more; see `avdis.tune.trial`).

Reads top to bottom: check inputs -> shards -> searcher + scheduler -> Tuner (new or
restored) -> fit -> confirm. Outputs under `<sweep.storage>/<sweep.name>/`:
`trials.parquet` and `pareto.json` (the recorder, after every result), `sweep.json` (what
the sweep was started with), `mo_asha.json` (the scheduler's rungs), and under
`checkpoints/` (or `<sweep.checkpoints>/<sweep.name>/`) Tune's experiments, `<name>-search/` and
`<name>-confirm/`, with the trials' checkpoints, and multi-worker trials' runs in `trials/`. Running the
same command again against the same storage resumes the sweep. The report's pages and
gauges sit a floor above: the entry point (`avdis.cli`) passes them in as `listeners` of
the recorder and further Tune `callbacks`, and writes the final report after `run`.
Tune reuses trial processes (`reuse_actors`) where every trial trains in its own process: a one-worker trial on a
process that trained before starts in a fraction of a second instead of paying a fresh process's imports.

Confirm (`sweep.confirm_seeds` = k > 0): once the search ends, the configurations of its
front at full length (`results.search_front`: early-stopped trials are not re-trained)
are trained again at the k seeds after their own (seed + 1..k, past any the search trained
them at: `confirm_points`), everything else as searched, in
a second Tune experiment, `<name>-confirm/`: the same trainable, no scheduler (full epochs),
the same callbacks, so its rows (role `confirm`) land in the same trials.parquet and the
report's front becomes seed means with their spread. It resumes like the search: the
experiment is restored and its finished trials report their recorded result.
"""

from __future__ import annotations

import itertools
import json
import os
import reprlib
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import pandas as pd
from ray.tune import Callback
from ray.tune.search import Searcher

from avdis import clusterfit, nodes, results, runtime, storage, storage_lock
from avdis.config import (ADDED, EMOTION_METRICS, EMOTION_WORDS, SEEDS, Config, Range, S3Config, measured_otherwise,
                          measures_of, selection, setting_of, with_overrides)
from avdis.data.prepare import as_made, check_source, ensure_shards, recorded, to_make
from avdis.data.shards import HELD, MANIFEST, SHARD_DIR, manifest_hash, read_manifest, unsound_shards
from avdis.data.stream import open_dataset
from avdis.errors import AvdisError, UsageError, counted
from avdis.results import pareto
from avdis.train import checkpoint as ck
from avdis.train.checkpoint import KEEP_CHECKPOINTS, MAY_CHANGE
from avdis.train.evaluate import check_leakage_defined, scheme_of, warn_few_judged, warn_unseen_emotions
from avdis.train import loop
from avdis.tune.records import SEED, Listener, TrialRecorder, config_id, notify
from avdis.tune.schedulers import MOASHAScheduler, MOSuccessiveHalving, read_state
from avdis.tune.space import DefineByRun, SweepSearch, corners, sampler, space_size, to_overrides
from avdis.tune.trial import TRIALS_DIR, explained_errors_off_the_console, run_trial

CHECKPOINTS_DIR = "checkpoints"  # in the sweep's folder, unless sweep.checkpoints puts them apart
# Settings a resumed sweep may change; everything else must match how it was started. Where the data lives may change
# (a `ray job submit` runs in a new copy of the tree each time): the data itself is checked by its manifest hash
# (`check_data`). Sweep trials never use train.storage or train.name. `sweep.num_samples` and `sweep.max_concurrent`
# are not here: Tune restores them from its own saved state, so a new value would be ignored. Nor is `sweep.storage`: Tune restores
# the experiment's callbacks too, and they write to the sweep folder they were made for (`check_spec`); for the same
# reason `s3` may change only where they and the trials still reach the same endpoint and region.
# data.synth too: the data is the shards', held by their manifest hash (`check_data`), and a data.synth given is
# checked against them (`shards.check_synth`). A sweep started before `as_made` recorded the default corpus's settings
# where its config left data.synth out: now filled from the shards, they differed, and its resume was refused
# What a resumed `avdis train` run may change (`checkpoint.MAY_CHANGE`: where it lives, how it is scheduled, its
# robustness, how often it probes) a sweep's trials may change too, so a sweep resumed on a resized cluster may take
# other worker CPUs, placement, max_failures or max_skip_rate (they were refused, sweep.trial_cpus alone let through);
# max_failures not where Tune restarts the trials by it (`check_restarts_kept`).
# Not `SWEEP_KEEPS`: train.epochs sets the rungs and how long every trial trains; train.gpus_per_worker the device and,
# under train.precision=auto, bf16 or fp32, and the front compares trials from both sides of the resume.
# train.probe_every: a sweep started when MO-ASHA's trials probed every epoch goes on probing at its rungs.
SWEEP_KEEPS = ("train.epochs", "train.gpus_per_worker")
RESUMABLE_CHANGES = ("ray", "s3", "sweep.trial_cpus", "data.src", "data.shards", "data.synth",
                     *(setting for setting in MAY_CHANGE if setting not in SWEEP_KEEPS))


def url_of(cfg: Config) -> str:
    """Where the sweep's outputs live: `<sweep.storage>/<sweep.name>`."""
    return storage.join(cfg.sweep.storage, cfg.sweep.name)


def checkpoints_of(cfg: Config) -> str:
    """Where its trials keep their checkpoints (Tune's experiments, the trials' folders):
    `<sweep.checkpoints>/<sweep.name>`, else `<sweep folder>/checkpoints`."""
    if cfg.sweep.checkpoints:
        return storage.join(cfg.sweep.checkpoints, cfg.sweep.name)
    return storage.join(url_of(cfg), CHECKPOINTS_DIR)


def _identity(spec: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """A config dump less the settings in `skip`, and less any setting this avdis no longer has (a sweep started by
    an older avdis cannot have used it)."""
    out = json.loads(json.dumps(spec))
    for path in [*skip, *(path for path in _paths(out) if setting_of(path) is None)]:
        *parents, leaf = path.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return out


def _as_before(spec: dict[str, Any]) -> dict[str, Any]:
    """A config dump with each setting of `config.ADDED` it lacks given the value it ran as (sweep.emotion_metric:
    accuracy was the only metric, and `selection`, checked first, says the sweep chose on it)."""
    out = json.loads(json.dumps(spec))
    for path, value in ADDED.items():
        *parents, leaf = path.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node.setdefault(leaf, value)
    return out


def _paths(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted path of every value in a nested dict."""
    return [path for key, value in tree.items()
            for path in (_paths(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"])]


_ABSENT = object()


def _differences(saved: Any, now: Any, prefix: str = "") -> list[tuple[str, bool]]:
    """Every setting whose value differs, each with whether the saved spec lacks it."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [d for key in sorted(saved.keys() | now.keys())
                for d in _differences(saved.get(key, _ABSENT), now.get(key, _ABSENT), f"{prefix}{key}.")]
    return [] if saved == now else [(prefix.rstrip("."), saved is _ABSENT)]


def check_spec(sweep_url: str, cfg: Config) -> dict[str, Any] | None:
    """Refuse to mix another sweep into this folder; its sweep.json when it holds this same sweep (resume), else
    None."""
    url = storage.join(sweep_url, results.SPEC)
    if not storage.exists(url, cfg.s3):
        if storage.exists(storage.join(sweep_url, results.TRIALS), cfg.s3):  # its recorder would take up those rows
            raise UsageError(f"{sweep_url} holds {results.TRIALS} but no {results.SPEC}: results copied in, or a "
                             f"sweep's whose {results.SPEC} is gone, which a new sweep here would count as its own trials. "
                             "Start it under another name (--name or sweep.name=...), or move the folder aside; "
                             f"`avdis report {sweep_url}` still reads them")
        return None
    record = _read_record(url, sweep_url, cfg.s3)
    chose, now = record.get("selection"), list(selection(cfg.sweep.emotion_metric))
    if chose != now:
        started_on = next((m for m in EMOTION_METRICS if chose == list(selection(m))), None)
        if chose is None:  # a sweep.json without it: only an avdis that chose on test wrote one
            raise UsageError(f"{sweep_url} holds a sweep started by an avdis that chose its trials, rungs and front "
                             f"on test clips, not on {', '.join(now)}: its searcher and MO-ASHA's rungs hold test "
                             "numbers, and a resume would mix the two. Start a new sweep under a new name (--name or "
                             f"sweep.name=...); `avdis report {sweep_url}` still reads this one (chosen on test).")
        if started_on is None:  # a newer avdis's metric, or an edit: not one that chose on test
            raise UsageError(f"{url}: its selection {reprlib.repr(chose)} is of no emotion metric this avdis knows "
                             f"({', '.join(EMOTION_METRICS)}): a newer avdis started the sweep, or the file was "
                             "edited. Resume it with the newer avdis that started it, or restore it from a copy; "
                             "this one cannot tell what its searcher and MO-ASHA's rungs chose on")
        raise UsageError(f"{sweep_url} holds a sweep that chose its trials, rungs and front on {', '.join(chose)}, "
                         f"and this run would choose on {', '.join(now)}: its searcher and MO-ASHA's rungs hold the "
                         f"other metric's numbers, and a resume would choose on both. Resume it with "
                         f"sweep.emotion_metric={started_on}, or start a new sweep under a new name (--name or "
                         "sweep.name=...)")
    measured = record.get("measures") or {}  # a sweep recorded before `measures_of` holds them all: these compared
    # on the methods it ran: a method added to its space is not a measure it recorded otherwise (`_differences` names
    # sweep.space.methods), and it resumes with its own space
    ran = record["spec"].get("sweep", {}).get("space", {}).get("methods", cfg.sweep.space.methods)
    otherwise = measured_otherwise(measured, measures_of(ran, cfg.data.split.scheme), "this sweep's")
    if otherwise:
        raise UsageError(f"{sweep_url} holds a sweep whose trials were {otherwise}: resumed, its old trials and the new "
                         "ones would share one front on two measures. Start a new sweep under a new name (--name or "
                         f"sweep.name=...); `avdis report {sweep_url}` still reads this one")
    started = record["spec"].get("sweep", {}).get("storage")
    if started is not None and storage.join(started, cfg.sweep.name) != sweep_url:  # moved, or copied (to S3, say)
        raise UsageError(
            f"{sweep_url}: this sweep was started under sweep.storage={started}, and Tune restores its saved "
            "experiment with the callbacks that record its trials and draw its report there, so resumed here its "
            f"results would go to the old place (or fail where it is gone). Resume it where it started (move the "
            f"folder back to {storage.join(started, cfg.sweep.name)}), or start a new sweep (sweep.name=...); "
            f"`avdis report {sweep_url}` still reads it here")
    if sweep_url.startswith("s3://"):  # the restored callbacks use s3 for the sweep's folder alone
        saved = record["spec"].get("s3", {})
        _check_restored_s3(sweep_url, S3Config(endpoint_url=saved.get("endpoint_url"), region=saved.get("region")),
                           cfg.s3)
    differences = _differences(_identity(_as_before(record["spec"]), RESUMABLE_CHANGES),
                               _identity(cfg.model_dump(mode="json"), RESUMABLE_CHANGES))
    if differences:
        diff = ", ".join(path for path, _ in differences[:8])
        added = [path for path, lacked in differences if lacked and setting_of(path) == path]
        hint = (f"It was started by an older avdis, which had no {', '.join(added[:8])}: resume it with that "
                "version, or start a new sweep under a new name (--name or sweep.name=...)." if added else
                "Pick a new name (--name or sweep.name=...), or rerun with the original config to resume it.")
        raise UsageError(f"{sweep_url} holds a sweep started with other settings (differs in: {diff}). {hint}")
    return record


def _read_record(url: str, sweep_url: str, s3: S3Config) -> dict[str, Any]:
    """The sweep.json at `url`, or a UsageError naming it where it is not one as `record_spec` writes it: damaged (cut
    short by a copy, edited), it ended the rerun of a sweep in a traceback (JSONDecodeError, KeyError: 'spec')."""
    try:
        record = json.loads(storage.read_bytes(url, s3))
    except ValueError as exc:
        why = f"not readable JSON ({exc})"
    else:
        if isinstance(record, dict) and isinstance(record.get("spec"), dict):
            return record
        why = "no sweep record (an object with the config the sweep started with under 'spec')"
    raise UsageError(f"{url}: {why}; avdis writes it whole when a sweep starts, so it was cut short or edited, and "
                     f"this sweep cannot be checked for a resume: restore it from a copy, or start a new sweep under a "
                     f"new name (--name or sweep.name=...); `avdis report {sweep_url}` still reads its results")


def _check_restored_s3(sweep_url: str, started: S3Config, now: S3Config) -> None:
    """`s3` may change on resume only where the callbacks Tune restores (made with `started`) and this run's trials
    (given `now`, pinned) still reach the same endpoint and region; else its results and its trials part ways."""
    theirs, ours = storage.pinned(started), storage.pinned(now)
    if (theirs.endpoint_url, theirs.region) != (ours.endpoint_url, ours.region):
        raise UsageError(
            f"{sweep_url}: this sweep was started with s3.endpoint_url={started.endpoint_url}, "
            f"s3.region={started.region}, and Tune restores its saved experiment with the callbacks that record its "
            f"trials made with those: here they reach {theirs.endpoint_url or 'AWS'} ({theirs.region}), its trials "
            f"{ours.endpoint_url or 'AWS'} ({ours.region}). Resume it with the s3 settings it started with (where "
            "they were unset, AWS_ENDPOINT_URL and AWS_REGION are read afresh by both), or start a new sweep "
            "(sweep.name=...)")


def check_data(sweep_url: str, cfg: Config, record: dict[str, Any]) -> None:
    """Refuse to resume on other data than the sweep started on and its trials trained on (the manifest's hash, not
    its path)."""
    recorded = set(results.read_trials(sweep_url, cfg.s3)["manifest_hash"].dropna()) | {record.get("manifest_hash")}
    recorded.discard(None)
    now = manifest_hash(cfg.data.shards, cfg.s3)
    if recorded - {now}:
        raise UsageError(f"{sweep_url}: it ran on data with manifest hash {', '.join(sorted(recorded - {now}))}, but "
                         f"{cfg.data.shards} holds {now}; point data.shards at the sweep's data, or start a new sweep "
                         "(sweep.name=...)")


def record_spec(sweep_url: str, cfg: Config, data_hash: str) -> None:
    """What the sweep was started with (the whole config, `prepare.recorded`: data.synth null for a corpus avdis did not
    generate), on which data (its manifest hash), what it chooses on
    (`config.selection` of its `sweep.emotion_metric`) and how its numbers are made (`config.measures_of` the
    methods of its space), for `check_spec` and `check_data`."""
    record = {"spec": recorded(cfg), "manifest_hash": data_hash,
              "selection": list(selection(cfg.sweep.emotion_metric)),
              "measures": measures_of(cfg.sweep.space.methods, cfg.data.split.scheme)}
    storage.write_bytes(storage.join(sweep_url, results.SPEC), json.dumps(record, indent=1).encode(), cfg.s3)


def trial_resources(cfg: Config) -> dict[str, float]:
    """What Tune reserves for a trial's own process, from the same rule the cluster check uses.

    A multi-worker trial's driver needs little; its TorchTrainer workers ask for their own.
    A one-worker trial (any strategy) trains in the trial itself: it takes its worker's bundle (GPU included).
    """
    driver, workers = clusterfit.demand(cfg)
    own = workers[0] if cfg.train.in_process else driver
    return {key.lower(): amount for key, amount in own.items()}


@dataclass(frozen=True)
class TrialResources:
    """Tune's resource request for each trial, from that trial's own config (`trial_resources`): a space that
    samples train.workers or a worker's CPUs gets each trial's own size. Sized from the sweep's config, a trial
    sampled to 2 workers reserved one in-process bundle and waited for ever for the workers it then asked for."""

    base: dict[str, Any]

    def __call__(self, params: dict[str, Any]) -> Any:
        from ray.tune import PlacementGroupFactory

        own = trial_resources(with_overrides(Config.model_validate(self.base), to_overrides(params)))
        return PlacementGroupFactory([{key.upper(): amount for key, amount in own.items()}])


class FixedPoints(Searcher):
    """Suggests the given trial parameters in order, then FINISHED; its place survives a restore. Given `trials_at`
    (the sweep's folder and its s3), a restored one passes over the points after its place that trials.parquet
    records as ended, finished or failed, by confirming trials: a killed driver started them after Tune last saved its
    state, with this place, and they ended before the kill. Suggested again, each was trained again, a copy (`confirm`
    counts them apart, `ended_apart`). Tune pickles the object with its experiment, `trials_at` with it (none in one
    pickled by an avdis before it)."""

    def __init__(self, points: list[dict[str, Any]], trials_at: tuple[str, S3Config | None] | None = None) -> None:
        super().__init__()
        self.points, self.next, self.trials_at = points, 0, trials_at

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.next >= len(self.points):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.points[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the points are fixed."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump({"points": self.points, "next": self.next}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.points, self.next = state["points"], state["next"]
        where = getattr(self, "trials_at", None)
        if where is not None:
            ended = results.ended(results.read_trials(*where), results.CONFIRM).dropna(subset=["seed"])
            done = set(zip(ended["config_id"], ended["seed"].astype(int)))
            self.points = self.points[:self.next] + [p for p in self.points[self.next:]
                                                     if (config_id(p), int(p[SEED])) not in done]


def confirm_points(trials: pd.DataFrame, seeds: int, axes: pareto.Axes = pareto.ACC) -> list[dict[str, Any]]:
    """The search front's (on `axes`) parameters with `seeds` more train.seed each, seed by seed across
    configurations: the next after its own that no search trial of the configuration trained. Where the space samples
    train.seed the search may have trained one (seed + 1 beside seed): trained again it was a bitwise copy, no
    other seed. Past the last seed a config takes (2**31 - 1) they go on from 0: a configuration at seed 2147483647
    (the config's own train.seed, or drawn from a space over every seed) was confirmed at seed 2147483648, which
    every confirming trial refused, after the whole search."""
    front = results.search_front(trials, axes)
    searched = trials[trials["role"].fillna(results.SEARCH) == results.SEARCH].dropna(subset=["seed"])
    trained = searched.groupby("config_id")["seed"].agg(lambda s: set(s.astype(int))).to_dict()

    def fresh(config: str, own: int) -> list[int]:
        untrained = (seed for seed in (each % SEEDS for each in itertools.count(own + 1))
                     if seed not in trained.get(config, set()))
        return list(itertools.islice(untrained, seeds))

    more = [(json.loads(row.params), fresh(row.config_id, int(row.seed))) for row in front.itertuples()]
    return [{**params, SEED: each[i]} for i in range(seeds) for params, each in more]


@dataclass(frozen=True)
class Views:
    """What shows the sweep's results, passed in from above: recorder listeners, then more Tune callbacks."""

    listeners: tuple[Listener, ...] = ()
    callbacks: tuple[Callback, ...] = ()


def experiment_of(cfg: Config, role: str) -> tuple[Any, str, str]:
    """Tune's experiment of `role` (its state and its trials' folders): (pyarrow filesystem, storage path, name),
    at `<checkpoints_of>/<sweep.name>-<role>`. Never the sweep's own folder, whose files (mo_asha.json,
    pareto.json) Tune copied back over with the ones it found at a restore; named after the sweep, since Ray stages
    a driver's experiment files by name and second."""
    fs, storage_path = storage.pyarrow_filesystem(checkpoints_of(cfg), cfg.s3)
    return fs, storage_path.rstrip("/"), f"{cfg.sweep.name}-{role}"


def _restorable(cfg: Config, role: str) -> bool:
    from ray import tune

    fs, storage_path, name = experiment_of(cfg, role)
    return tune.Tuner.can_restore(f"{storage_path}/{name}", storage_filesystem=fs)


def check_experiments(sweep_url: str, cfg: Config, resume: bool) -> None:
    """Refuse a Tune experiment that is where it should not be, or not where it should be. A new sweep finding one
    (sweep.checkpoints is shared by sweep name; a sweep folder deleted without its checkpoints) would write its
    state beside another sweep's and resume from the newer; a resumed sweep whose experiment is gone (expired by a
    lifecycle rule, deleted) would start its trials over beside the ones it recorded."""
    where = checkpoints_of(cfg)
    if not resume:
        held = [role for role in (results.SEARCH, results.CONFIRM) if _restorable(cfg, role)]
        if held:
            raise UsageError(f"{where} holds a Tune experiment ({experiment_of(cfg, held[0])[2]}) but {sweep_url} "
                             "no sweep: it is another sweep's of this name, or what is left of one deleted. Give "
                             "another sweep.name, or move that folder aside")
        return
    done = _finished_roles(results.read_trials(sweep_url, cfg.s3))
    gone = [role for role in (results.SEARCH, results.CONFIRM) if role in done and not _restorable(cfg, role)]
    if gone:
        raise UsageError(f"{sweep_url}: its Tune experiment {experiment_of(cfg, gone[0])[2]} is gone from {where} "
                         "(expired by a lifecycle rule, or deleted), so it cannot resume: its trials would start over "
                         f"beside the ones it recorded. `avdis report {sweep_url}` still reads it; search again under "
                         "a new sweep.name")


def check_trial_runs(sweep_url: str, cfg: Config, saved: dict[str, SavedExperiment] | None = None) -> list[str]:
    """Refuse, before Ray starts, a resumed sweep's unfinished trial that cannot resume, saying what to move aside:
    refused in the trial, it failed, and a failed trial is never retried on resume. A multi-worker trial's Ray Train
    run (under `<checkpoints>/trials/`) whose record lists a checkpoint folder that is gone (deleted, expired by a
    lifecycle rule), which Ray Train will not load (the trial ended in Ray's CheckpointManagerInitializationError); a
    checkpoint the trial restores (its Ray Train run's, or Tune's for a trial in its own process) that lacks a file
    every checkpoint holds (`ck.fault`); a Tune checkpoint that is gone with no whole one beside it. Finished trials
    are not trained again, failed ones not retried: neither is checked. Returns the Tune checkpoint folders that are
    gone, for `ck.stand_in`: Tune deletes one as its trial saves newer ones, and a driver killed before it saved its
    state again left the state naming it, as the one the trial restores from (with a whole one beside it) or as one
    it keeps beside that, which Tune deletes in turn: Ray's deletion of a folder that is gone raised, logged with its
    traceback, before Tune advanced the trial's checkpoint index, and the trial's next restore wrote its first
    checkpoint over the one it restored from. `saved`: the saved experiments this resume has read (`read_saved`),
    filled with those it reads."""
    trials = results.read_trials(sweep_url, cfg.s3)
    resumed = trials[trials["order"].isna() & (trials["status"] != "ERROR")]
    saved = {} if saved is None else saved
    gone = []
    for trial_id, role in zip(resumed["trial_id"], resumed["role"].fillna(results.SEARCH)):
        run_url = storage.join(checkpoints_of(cfg), TRIALS_DIR, trial_id)
        ck.check_ray_record(run_url, cfg.s3, "start a new sweep (sweep.name=...)")
        folder = ck.ray_restored(run_url, cfg.s3)
        if folder is not None:
            why = ck.fault(folder, cfg.s3)
            if why is not None:
                raise ck.unusable(run_url, why, folder, s3=cfg.s3)
            continue
        restored = read_saved(saved, cfg, role).restored.get(trial_id)
        if restored is None:
            continue
        folder, kept = restored
        gone.extend(other for other in kept if other != folder and not storage.exists(other, cfg.s3))
        if not storage.exists(folder, cfg.s3):
            if ck.tune_whole_beside(folder, run_url, cfg.s3) is None:
                raise ck.tune_unusable(folder, trial_id, "it is gone", run_url, cfg.s3)
            gone.append(folder)
        # without a state.json the trial resumes from the newest whole checkpoint beside it (`loop.tune_checkpoint`)
        elif storage.exists(storage.join(folder, ck.STATE), cfg.s3):
            why = ck.fault(folder, cfg.s3)
            if why is not None:  # Tune fails a trial whose checkpoint folder is gone: it must stay where it is
                raise ck.tune_unusable(folder, trial_id, why, run_url, cfg.s3)
    return gone


@dataclass(frozen=True)
class SavedExperiment:
    """What the saved Tune experiment of a role lists (`saved_experiment`)."""

    known: frozenset[str]  # the ids of its trials
    # by trial id, the URL of the checkpoint Tune restores the trial from (its latest in the saved state) and the URLs
    # of those it keeps of the trial (`KEEP_CHECKPOINTS`, that one among them)
    restored: dict[str, tuple[str, list[str]]]


def saved_experiment(cfg: Config, role: str) -> SavedExperiment:
    """The trials the saved Tune experiment of `role` lists, and the checkpoints it restores them from; none without
    a saved experiment. Each call opens it (`ExperimentAnalysis`: on S3 a listing and a read of its state): a resume
    reads it once per role (`read_saved`)."""
    from ray.tune import ExperimentAnalysis

    if not _restorable(cfg, role):
        return SavedExperiment(frozenset(), {})
    fs, storage_path, name = experiment_of(cfg, role)
    trials = ExperimentAnalysis(f"{storage_path}/{name}", storage_filesystem=fs).trials
    restored = {}
    for trial in trials:
        if trial.checkpoint is not None:
            kept = [r.checkpoint.path for r in trial.run_metadata.checkpoint_manager.best_checkpoint_results]
            restored[trial.trial_id] = (storage.url_from_pyarrow(fs, trial.checkpoint.path) or trial.checkpoint.path,
                                        [storage.url_from_pyarrow(fs, path) or path for path in kept])
    return SavedExperiment(frozenset(t.trial_id for t in trials), restored)


def read_saved(saved: dict[str, SavedExperiment], cfg: Config, role: str) -> SavedExperiment:
    """`saved_experiment` of `role` as this resume read it before Ray started, read into `saved` (one resume's, by
    role) where it has not been: the checks before Ray starts (`check_trial_runs`) and the trials counted apart
    (`ended_apart`) each opened it. Not for after the role's experiment has run again (`lost_checkpoint_folders`),
    whose state Tune has saved anew."""
    if role not in saved:
        saved[role] = saved_experiment(cfg, role)
    return saved[role]


def _finished_roles(trials: pd.DataFrame) -> set[str]:
    return set(trials.loc[trials["order"].notna(), "role"].fillna(results.SEARCH))


def tune_failures(cfg: Config, in_process: bool) -> int:
    """How many times Tune restarts a trial that failed (`FailureConfig.max_failures`): train.max_failures where
    every trial trains in its own process (`in_process`, `reuse_processes`), whose death (killed, out of memory, its
    node lost) it otherwise ended in; else 0, where train.max_failures is each multi-worker trial's Ray Train run's
    (it restarts the run's workers) and restarting its trial too would multiply the two. An avdis error that is not
    `retryable` is not retried (`records.TrialRecorder.on_trial_recover`)."""
    return cfg.train.max_failures if in_process else 0


def check_restarts_kept(sweep_url: str, cfg: Config, record: dict[str, Any], in_process: bool) -> None:
    """Refuse to resume, with another train.max_failures, a sweep whose trials Tune restarts (`tune_failures`): Tune
    restores its experiment with the FailureConfig it was started with, and its trials with their own, so the new
    value would change nothing."""
    started = record["spec"].get("train", {}).get("max_failures", 0)
    if in_process and started != cfg.train.max_failures:
        raise UsageError(f"{sweep_url}: its trials each train in their own process, which Tune restarts up to the "
                         f"train.max_failures the sweep was started with ({started}), restored with its saved "
                         f"experiment: train.max_failures={cfg.train.max_failures} would change nothing. Resume it "
                         f"with train.max_failures={started}, or start a new sweep (sweep.name=...)")


def _experiment(cfg: Config, sweep_url: str, role: str, tune_config: Any, resume: bool, views: Views,
                in_process: bool = False):
    """A Tuner for the experiment of `role` under `checkpoints_of` (restored when it was started before).

    Its trials run the same trainable and land in the same trials.parquet, recorded as `role`. Tune restarts a
    failed trial up to `tune_failures` (`in_process`: every trial trains in its own process).
    """
    from ray import tune

    # Trials on other nodes get the driver's endpoint and region; the callbacks (pickled with the experiment and
    # restored with it) keep resolving them from the driver's environment of the day.
    base = cfg.model_copy(update={"s3": storage.pinned(cfg.s3)}).model_dump(mode="json")
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, sweep_url=sweep_url, checkpoints_url=checkpoints_of(cfg)),
        TrialResources(base))
    fs, storage_path, name = experiment_of(cfg, role)
    experiment = f"{storage_path}/{name}"
    if resume and _restorable(cfg, role):
        print(f"avdis sweep: resuming {sweep_url} ({role})", flush=True)
        return tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False, storage_filesystem=fs)
    return tune.Tuner(
        trainable, tune_config=tune_config,
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=fs,
            callbacks=[TrialRecorder(sweep_url, cfg, role, views.listeners, restarts=in_process), *views.callbacks],
            failure_config=tune.FailureConfig(max_failures=tune_failures(cfg, in_process)), verbose=1,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),  # in-process trials' checkpoints
        ),
    )


class SweepInterrupted(AvdisError):
    """Tune caught a Ctrl-C (SIGINT) or a stop (SIGTERM), saved its state and returned early: the sweep is not done."""

    exit_code = 130  # what a shell reports for a process ended by SIGINT


@contextmanager
def _watching_signals() -> Iterator[dict[str, bool]]:
    """While `tuner.fit()` runs: say afterwards whether Tune's SIGINT handler fired, and make SIGTERM (what `ray job
    stop` sends) do what SIGINT does, on which Tune saves its state before it returns (killed, it restarts trials
    from older checkpoints). Tune puts its handler over the one it finds and, on the first SIGINT, puts that one
    back: a marker installed here is back in place afterwards exactly when Tune was interrupted. (Its grid cannot
    tell: the trials it stopped then read TERMINATED.) SIGTERM calls the SIGINT handler in place: a SIGINT sent to
    this process would stay pending in a `ray job submit` driver, where Ray blocks SIGINT in every process it
    starts, so `ray job stop` killed the driver 3 s later without Tune's save."""
    seen = {"interrupted": False}
    # Tune catches no signal off the main thread, nor in a Ray Client process (its tuner runs on the cluster)
    if threading.current_thread() is not threading.main_thread() or runtime.is_ray_client():
        yield seen
        return

    def marker(sig: int, frame: Any) -> None:
        raise KeyboardInterrupt  # Tune installed no handler of its own (TUNE_DISABLE_SIGINT_HANDLER): Ctrl-C as ever

    def stop(sig: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIG_IGN (a driver started with SIGINT ignored) or SIG_DFL: as SIGINT would leave it
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.signal(signal.SIGINT, marker), signal.signal(signal.SIGTERM, stop)
    try:
        yield seen
    finally:
        tune_catches = not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0"))
        seen["interrupted"] = tune_catches and signal.getsignal(signal.SIGINT) is marker
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def fit(tuner: Any, trials: int, sweep_url: str, noun: str = "trial") -> None:
    """`tuner.fit()`, raising SweepInterrupted when it was interrupted or returned with trials still to run: on
    SIGINT Tune saves its state and returns normally, and the rest of the sweep (confirmation, final report) must
    not run on the part. `trials` is how many the experiment runs in all, each a `noun` (the confirmation's are
    confirming trials: said as trials, a sweep stopped while confirming its front of 2 configurations x 1 seed read
    'interrupted before its 2 trials ended' after its search's 16 had).

    Tune snapshots its experiment state whenever a trial has saved `KEEP_CHECKPOINTS` checkpoints since the last one
    (so that a restored sweep never points at a deleted checkpoint), and warned at each snapshot within 5 s of another
    that it "may become a bottleneck": two dozen times in the demo's output, for snapshots of some 20 ms each. Quiet
    unless its threshold is set (under Ray Client, Tune's controller runs on the cluster and still warns)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with _watching_signals() as seen, explained_errors_off_the_console():
        grid = tuner.fit()
    ended = grid.num_terminated + grid.num_errors
    if seen["interrupted"] or ended < len(grid) or ended < trials:
        raise SweepInterrupted(f"{sweep_url}: interrupted before its {counted(trials, noun)} ended; Tune saved its "
                               "state: rerun the same command to resume")


def searcher(cfg: Config, sweep_url: str | None = None) -> Searcher:
    """The sweep's search algorithm (Optuna over `sweep.space`); the replay benchmark drives this same object. With
    `sweep_url`, restored on resume it learns the trials recorded there that its saved state does not know
    (`SweepSearch.learn_recorded`). It ends the search at `sweep.num_samples` trials, those learned among them."""
    s = cfg.sweep
    return SweepSearch(full_epochs=cfg.train.epochs, stopped_as=s.scheduler.stopped_as,
                       space=DefineByRun(s.space, every_weight=s.search == "nsga2"),
                       metric=list(selection(s.emotion_metric)), mode=list(selection(s.emotion_metric).values()),
                       sampler=sampler(s.search, s.seed, s.startup_trials), num_samples=s.num_samples,
                       trials_at=None if sweep_url is None else (sweep_url, cfg.s3))


def search_trials(cfg: Config, apart: int = 0) -> int:
    """How many trials the search's Tune experiment runs: `sweep.num_samples`, or fewer where the space holds fewer
    configurations (`space.space_size`): the searcher trains each once (training is deterministic) and then ends the
    search. A resumed search's searcher also learned `apart` trials Tune does not count (`ended_apart`): they are of
    the sweep's trials, and the searcher ends the search once it has suggested or learned `sweep.num_samples` (or
    spent the space), so Tune runs that many fewer. Tune's own count, restored with its experiment, is still
    `sweep.num_samples` (the trials apart were drawn after its last save): until 2026-12-05, when the searcher did not
    end the search at it, a resumed sweep whose space was not spent first trained that many Tune trials besides them."""
    size = space_size(cfg.sweep.space)
    share = cfg.sweep.num_samples if size is None else min(size, cfg.sweep.num_samples)
    return max(0, share - apart)


def space_spent(cfg: Config) -> str:
    """What the sweep says, once, where its search ended before `sweep.num_samples` for want of configurations. Its
    advice is of what the sweep does not do already: a space that samples train.seed is told to sample more seeds, a
    sweep that confirms its front to confirm it with more (told to sample train.seed and to set confirm_seeds, a sweep
    that did both read as if it had done neither)."""
    s = cfg.sweep
    size = search_trials(cfg)
    seeds = s.space.params.get(SEED)
    if seeds is None:
        more_seeds = f"sample {SEED} (e.g. 'sweep.space.params.{SEED}=[0, 1, 2]')"
    else:
        held = sorted(int(v) for v in seeds) if isinstance(seeds, list) else range(int(seeds.low), int(seeds.high) + 1)
        # seeds the space does not hold, next to its own (below its first where its last is the last a config takes)
        fresh = (v for v in itertools.chain(range(held[-1] + 1, SEEDS), range(held[0] - 1, -1, -1)) if v not in held)
        add = list(itertools.islice(fresh, 1 if isinstance(seeds, list) else len(held)))
        wider = (f"[{', '.join(str(v) for v in sorted([*held, *add]))}]" if isinstance(seeds, list) else
                 f"{{low: {min(held[0], *add)}, high: {max(held[-1], *add)}, int: true}}")
        more_seeds = (f"sample more {SEED} values than the {len(held)} it samples (e.g. "
                      f"'sweep.space.params.{SEED}={wider}')")
    confirm = (f"raise sweep.confirm_seeds (now {s.confirm_seeds}) to re-train the front with more seeds"
               if s.confirm_seeds else "set sweep.confirm_seeds to re-train the front with more seeds")
    return (f"avdis sweep {s.name}: the search ended after {counted(size, 'trial')} of sweep.num_samples="
            f"{s.num_samples}: its space holds {counted(size, 'configuration')} (sweep.space: methods, weights and "
            f"params, {SEED} included) and each was trained once (training is deterministic: another trial of "
            f"one would only copy it). For more, {more_seeds} or a real-number range (e.g. train.lr), or {confirm}")


SCHEDULER_STATE = "mo_asha.json"  # under the sweep's URL: MO-ASHA's rungs, for a resumed sweep


def scheduler(cfg: Config, sweep_url: str | None = None) -> MOASHAScheduler | None:
    """The sweep's trial scheduler (None: every trial runs its full epochs); the replay drives it too. With
    `sweep_url` it keeps its rungs there, for a resumed sweep."""
    s = cfg.sweep
    if s.scheduler.type == "mo_asha":
        k = s.scheduler
        state = storage.join(sweep_url, SCHEDULER_STATE) if sweep_url else None
        return MOASHAScheduler(cfg.train.epochs, k.grace_epochs, k.eta, k.margin, state_url=state, s3=cfg.s3,
                               on=tuple(selection(s.emotion_metric)))
    return None


def scheduler_plan(cfg: Config) -> str:
    """The scheduler as the sweep's first line states it: where MO-ASHA judges, or that it never will (a short sweep
    under the default grace ran every trial to the end while its first line said mo_asha)."""
    k = cfg.sweep.scheduler
    if k.type != "mo_asha":
        return k.type
    rungs = list(MOSuccessiveHalving(cfg.train.epochs, k.grace_epochs, k.eta).rungs)
    if not rungs:
        return (f"mo_asha with no rung below train.epochs={cfg.train.epochs}, so it stops no trial (lower "
                f"sweep.scheduler.grace_epochs={k.grace_epochs}, or set sweep.scheduler.type=none)")
    return f"mo_asha (rungs at epoch{'s' if len(rungs) > 1 else ''} {', '.join(map(str, rungs))})"


def plan(cfg: Config, address: str, sweep_url: str) -> str:
    """The sweep's first line: what it will run, where, and where its outputs go."""
    s, t, n = cfg.sweep, cfg.train, search_trials(cfg)
    fewer = f" (the space holds {counted(n, 'configuration')})" if n < s.num_samples else ""
    return (f"avdis sweep {s.name}: {counted(n, 'trial')}{fewer}, search={s.search}, "
            f"scheduler={scheduler_plan(cfg)}, confirm_seeds={s.confirm_seeds}, {s.max_concurrent} at a time; each "
            f"trial {t.workers} x {t.strategy} worker{'s' if t.workers > 1 else ''} (zero_stage={t.zero_stage}, "
            f"{t.cpus_per_worker} CPU, {t.gpus_per_worker} GPU); ray={address}; outputs -> {sweep_url}")


def reuse_processes(edges: list[Config]) -> bool:
    """Whether Tune may reuse trial processes: only where every trial trains in its own (`train.in_process`). A trial
    whose TorchTrainer runs in a helper thread is not told when a scheduler stops it on a process kept for reuse
    (Ray 2.60 caches the actor and calls nothing on it): its worker group trained on, up to two more epochs, then
    held its resources (GPUs) until the process took another trial. Killed, a trial takes its worker group along."""
    return all(trial.train.in_process for trial in edges)


def _tuner(cfg: Config, sweep_url: str, resume: bool, views: Views, reuse: bool):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    s = cfg.sweep
    search = ConcurrencyLimiter(searcher(cfg, sweep_url), max_concurrent=s.max_concurrent)
    tune_config = tune.TuneConfig(search_alg=search,
                                  scheduler=scheduler(cfg, sweep_url), num_samples=s.num_samples, reuse_actors=reuse)
    return _experiment(cfg, sweep_url, results.SEARCH, tune_config, resume, views, in_process=reuse)


def confirm(cfg: Config, sweep_url: str, resume: bool, views: Views, reuse: bool,
            saved: dict[str, SavedExperiment] | None = None) -> None:
    """Re-train the search front's configurations with sweep.confirm_seeds more seeds each (full epochs). `saved`: the
    saved experiments this resume has read (`read_saved`)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    s = cfg.sweep
    points = confirm_points(results.read_trials(sweep_url, cfg.s3), s.confirm_seeds, pareto.axes(s.emotion_metric))
    if not points:
        print(f"avdis sweep {s.name}: no finished trial on the front, nothing to confirm", flush=True)
        return
    configs = len(points) // s.confirm_seeds
    print(f"avdis sweep {s.name}: confirming the front: {configs} configuration{'s' if configs > 1 else ''} x "
          f"{s.confirm_seeds} more seed{'s' if s.confirm_seeds > 1 else ''}, full {cfg.train.epochs} "
          f"epoch{'s' if cfg.train.epochs > 1 else ''}", flush=True)
    fixed = FixedPoints(points, (sweep_url, cfg.s3))
    tune_config = tune.TuneConfig(search_alg=ConcurrencyLimiter(fixed, max_concurrent=s.max_concurrent),
                                  num_samples=len(points), reuse_actors=reuse)
    # the confirming trials a killed driver ran after Tune's last save are not Tune's, nor trained again (FixedPoints)
    apart = len(ended_apart(sweep_url, cfg, results.CONFIRM, saved)) if resume else 0
    fit(_experiment(cfg, sweep_url, results.CONFIRM, tune_config, resume, views, in_process=reuse),
        len(points) - apart, sweep_url, "confirming trial")


def outputs_of(cfg: Config, names: dict[str, str] | None = None) -> dict[str, str]:
    """The sweep's own output locations, by option name: the one the user gave it by (`names`, e.g. `--storage`),
    else its setting."""
    return {(names or {}).get("sweep.storage", "sweep.storage"): cfg.sweep.storage,
            **({"sweep.checkpoints": cfg.sweep.checkpoints} if cfg.sweep.checkpoints else {})}


def run(cfg: Config, views: Views = Views(), names: dict[str, str] | None = None) -> str:
    """Run (or resume) the sweep; returns its URL (trials.parquet and pareto.json are there). `names`: the option the
    user gave sweep.storage by where it is not that setting (`--storage`), for a refusal to name."""
    storage.check_buckets(cfg.s3, cfg.sweep.storage, cfg.data.shards, *filter(None, [cfg.sweep.checkpoints]))
    runtime.check_kept({**outputs_of(cfg, names), **to_make(cfg)})
    # two drivers on one sweep would each write its tables
    with storage_lock.exclusive(url_of(cfg), "sweep driver", s3=cfg.s3):
        return _run(cfg, views, names)


CORNERS_CHECKED = 4096  # trial configs built at the space's edges before any work (each takes 1-4 ms)


def _check_space(cfg: Config) -> list[Config]:
    """What the space asks that no trial could do, found before any work: every trial config at the space's edges
    is built (`space.corners`) and returned. A trial's own config is otherwise checked only when it starts, and one
    the space made invalid (nullspace's iterations against a sampled model.emb_dim, zero_stage against a sampled
    strategy) stopped the whole sweep there, with trials running, under a name that could then not be resumed. A
    space of more edges than `CORNERS_CHECKED` is checked in part (every method at each end of its weight, with
    every value of each knob: `corners`), and says so."""
    edges = []
    found = corners(cfg.sweep.space)
    for params in itertools.islice(found, CORNERS_CHECKED):
        try:
            edges.append(with_overrides(cfg, to_overrides(params)))
        except AvdisError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in to_overrides(params).items() if v is not None)
            why = str(exc).removeprefix("config + trial parameters: ").removeprefix("<root>: ")
            raise UsageError(f"sweep.space samples trials no run could take: at {shown}: {why}; narrow "
                             "sweep.space") from None
    if next(found, None) is not None:
        print(f"avdis sweep: note: sweep.space has more edges than the {CORNERS_CHECKED} built before any work (each "
              "method at each end of its weight with every value of each knob, and as many of their combinations as "
              "fit): a trial at another combination may still be refused when it starts, which ends the sweep, or "
              "not fit the cluster", flush=True)
    return edges


def trial_sizes(edges: list[Config]) -> list[Config]:
    """One trial config per size among the space's edges (`_check_space`'s): each is checked on the cluster."""
    sizes: dict[str, Config] = {}
    for trial in edges:
        sizes.setdefault(json.dumps(clusterfit.demand(trial), sort_keys=True), trial)
    return list(sizes.values())


def check_validation(cfg: Config) -> None:
    """Refuse data with no validation clips where a trial needs them: the searcher, MO-ASHA and the front choose on
    validation numbers (`config.selection`), so that the test numbers reported were never used to choose. Without
    such clips every trial would end in error, with the sweep's compute spent. The split is one for the whole sweep
    (`config.PER_SWEEP`)."""
    info = open_dataset(cfg.data, cfg.s3)
    labels = info.labels
    scored = sum(scheme == "val" for _, _, scheme, _ in labels)  # the emotion metric
    probed = sum(scheme == "val" and within == "val" for _, _, scheme, within in labels)  # the probe
    if not (scored and probed):
        raise UsageError(
            f"{cfg.data.shards}: no validation clips under {scheme_of(cfg)} ({scored} for emotion "
            f"{EMOTION_WORDS[cfg.sweep.emotion_metric]}, {probed} "
            "for the leakage probe); a sweep chooses its trials and front on them, not on the test clips it "
            "reports. A speaker has validation clips only with 3 clips or more (then at least one, whatever "
            "data.split.val_fraction); under speaker_disjoint, the validation fold's speakers need them. Use a "
            "corpus with more clips per speaker, or data.split.scheme=speaker_disjoint with fewer folds")
    check_leakage_defined(info, cfg, ("test", "val"))
    warn_unseen_emotions(info, cfg, ("test", "val"))
    warn_few_judged(info, cfg, ("test", "val"))


STEPS_SET_BY = ("train.batch_size", "train.workers", "train.grad_accum", "train.epochs")  # with the data


def check_accumulation(cfg: Config) -> None:
    """Refuse, before any trial starts, a train.grad_accum that does not divide the steps of every epoch of every
    trial the sweep can run (`loop.check_accumulation`, which `avdis train` runs before Ray starts): each trial failed
    on it once its workers had started, and the sweep's name was spent on failed trials. Every value sweep.space can
    give the settings that set the steps is tried, not only the space's edges (batches of 8 and 12 may divide where 10
    does not). A trial's seed orders only shards of the same size (`EpochPlan.make`): it does not change the steps."""
    space = cfg.sweep.space.params
    values = {key: _every(space[key]) if key in space else [getattr(cfg.train, key.removeprefix("train."))]
              for key in STEPS_SET_BY}
    if max(values["train.grad_accum"]) <= 1:
        return
    info = open_dataset(cfg.data, cfg.s3)
    for combo in itertools.product(*values.values()):
        given = dict(zip(STEPS_SET_BY, combo))
        trial = cfg.train.model_copy(update={key.removeprefix("train."): v for key, v in given.items()})
        try:
            loop.check_accumulation(info, cfg.model_copy(update={"train": trial}), trial.workers)
        except UsageError as exc:
            sampled = [f"{key}={v}" for key, v in given.items() if key in space]
            if not sampled:
                raise
            raise UsageError(f"sweep.space samples trials no run could take: at {', '.join(sampled)}: {exc}; narrow "
                             "sweep.space or pick another train.grad_accum") from None


def _every(choice: Range | list[Any]) -> list[Any]:
    """Every value a knob of sweep.space can take: its list, or each whole number of an int range."""
    return choice if isinstance(choice, list) else list(range(int(choice.low), int(choice.high) + 1))


def check_modalities(cfg: Config, edges: list[Config]) -> None:
    """Refuse, before Ray starts, a model.modality (the config's, or one sweep.space.params samples) whose inputs the
    shards do not hold: each trial failed on it in its worker, and the sweep's name was spent on failed trials. The
    shards' `modalities` are the manifest's, or those of the shards this sweep will make (`ensure_shards`)."""
    manifest = storage.join(cfg.data.shards, MANIFEST)
    held = (read_manifest(cfg.data.shards, cfg.s3)[1].get("modalities", HELD["av"])
            if storage.exists(manifest, cfg.s3) else HELD[cfg.data.modality])
    for modality in dict.fromkeys(trial.model.modality for trial in edges):
        where = "" if modality == cfg.model.modality else " (sampled by sweep.space.params)"
        loop.check_modalities(modality, held, cfg.data.shards, where)


def check_shards_whole(cfg: Config) -> None:
    """Refuse, before Ray starts, shards of data.shards that are missing or cut short (their size against the
    manifest's: one listing) where their clips are more of the train split, or of all clips, than
    data.loader.max_skip_rate lets an epoch go without; warn where it lets them. With a shard truncated on S3 every
    trial failed its first epoch on it, one after another, and the sweep's name was spent on failed trials (which a
    resume does not retry). Shards still to make (`to_make`) are not looked at."""
    if not storage.exists(storage.join(cfg.data.shards, MANIFEST), cfg.s3):
        return
    bad = unsound_shards(cfg.data.shards, cfg.s3)
    if not bad:
        return
    info = open_dataset(cfg.data, cfg.s3)
    held = {ref.url.rsplit("/", 1)[-1]: ref.counts for ref in info.shards}
    lost = {split: sum(held.get(name, {}).get(split, 0) for name in bad) for split in ("train", "all")}
    rate = cfg.data.loader.max_skip_rate
    over = [f"{lost[split]} of {info.split_counts[split]} {'train' if split == 'train' else 'evaluated'} clips"
            for split in lost if info.split_counts.get(split) and lost[split] / info.split_counts[split] > rate]
    named = "; ".join(f"{storage.join(cfg.data.shards, SHARD_DIR, name)}: {why}" for name, why in list(bad.items())[:5])
    if over:
        raise UsageError(f"{cfg.data.shards}: {counted(len(bad), 'shard')} missing or cut short ({named}), "
                         f"{' and '.join(over)}, more than data.loader.max_skip_rate={rate} lets an epoch go without: "
                         f"every trial would fail its first epoch. `avdis preprocess --out {cfg.data.shards}` makes "
                         "them again (it compares their sizes with the manifest); or raise data.loader.max_skip_rate "
                         "to train without their clips")
    print(f"avdis sweep: warning: {cfg.data.shards}: {counted(len(bad), 'shard')} missing or cut short ({named}): "
          f"trials will train and be measured without {lost['all']} of its {info.split_counts['all']} clips, as "
          f"data.loader.max_skip_rate={rate} lets them", file=sys.stderr, flush=True)


def probing(cfg: Config) -> Config:
    """Under MO-ASHA, trials probe at every rung: it decides on the rung's validation leakage. Rungs sit at
    grace * eta^k epochs, multiples of the first, so `train.probe_every` = grace_epochs probes each (and the last
    epoch, always probed) and no epoch between: the probe took 0.7 s of the demo's 1.9 s epoch."""
    if cfg.sweep.scheduler.type != "mo_asha":
        return cfg
    return with_overrides(cfg, {"train.probe_every": cfg.sweep.scheduler.grace_epochs})


def _run(cfg: Config, views: Views, names: dict[str, str] | None) -> str:
    edges = _check_space(cfg)
    check_modalities(cfg, edges)
    cfg = as_made(probing(cfg))  # recorded, and compared on resume, with the data.synth its trials train on
    sweep_url = url_of(cfg)
    record = check_spec(sweep_url, cfg)
    resume = record is not None
    if resume:
        read_state(storage.join(sweep_url, SCHEDULER_STATE), cfg.s3)  # a damaged one is refused here, not in Tune
        check_restarts_kept(sweep_url, cfg, record, reuse_processes(edges))
    check_source(cfg)
    # resumed too: a role or bucket policy may have changed; and the shards (and corpus) still to make, as train
    # checks them: a read-only data.shards failed once Ray had started and the corpus was generated
    for url in dict.fromkeys([sweep_url, checkpoints_of(cfg), *to_make(cfg).values()]):
        storage.check_writable(url, cfg.s3)  # before Ray starts: a wrong storage fails in a second
    check_experiments(sweep_url, cfg, resume)
    saved: dict[str, SavedExperiment] = {}  # the Tune experiments this resume read, by role (`read_saved`)
    if resume:
        for folder in check_trial_runs(sweep_url, cfg, saved):
            ck.stand_in(folder, cfg.s3)
    check_shards_whole(cfg)
    nodes.check_added_nodes({**outputs_of(cfg, names), "data.shards": cfg.data.shards}, cfg.ray)
    address = runtime.connect(cfg.ray)
    # shards to make: preprocess checks
    nodes.check_shared({**outputs_of(cfg, names), "data.shards": cfg.data.shards})
    nodes.check_node_credentials({**outputs_of(cfg, names), "data.shards": cfg.data.shards}, trials=True)
    runtime.pin_train_coordinator()
    for size in trial_sizes(edges):  # trials that never fit would wait forever
        clusterfit.check_cluster(size)
    ensure_shards(cfg, use_ray=True)
    check_validation(cfg)
    check_accumulation(cfg)
    if resume:
        check_data(sweep_url, cfg, record)
    else:
        record_spec(sweep_url, cfg, manifest_hash(cfg.data.shards, cfg.s3))
    print(plan(cfg, address, sweep_url), flush=True)
    reuse = reuse_processes(edges)
    # trials the searcher learned from trials.parquet (`SweepSearch.learn_recorded`) are not Tune's, and count toward
    # sweep.num_samples (the searcher ends the search at it): Tune's end short by them, and the sweep read as
    # interrupted at every rerun where they were counted as Tune's
    apart = len(ended_apart(sweep_url, cfg, results.SEARCH, saved)) if resume else 0
    fit(_tuner(cfg, sweep_url, resume, views, reuse), search_trials(cfg, apart), sweep_url)
    if search_trials(cfg) < cfg.sweep.num_samples:
        print(space_spent(cfg), flush=True)
    close_lost_trials(sweep_url, cfg, results.SEARCH, views.listeners)  # not left RUNNING through the confirmation
    if cfg.sweep.confirm_seeds:
        confirm(cfg, sweep_url, resume, views, reuse, saved)
        close_lost_trials(sweep_url, cfg, results.CONFIRM, views.listeners)
    return sweep_url


def close_lost_trials(sweep_url: str, cfg: Config, role: str, listeners: Sequence[Listener] = ()) -> pd.DataFrame:
    """Once the experiment of `role` has ended, a row of that role still RUNNING is a trial the killed driver started
    after Tune's last save: no one will finish it. Mark it ERROR, saying why, instead of showing it as running for
    ever, and show the closed table to the listeners too (the gauges kept its mid-training values on Grafana's
    front). Rows of the other role are left: a confirmation running when the driver was killed is resumed by the
    confirm experiment, which starts after the search's has ended."""
    trials = results.read_trials(sweep_url, cfg.s3)
    lost = (trials["status"] == "RUNNING") & (trials["role"].fillna(results.SEARCH) == role)
    # stamped as the recorder stamps each change (`updated_at`: the row's last change), not left at its last epoch's
    trials.loc[lost, ["status", "stop_reason", "error", "updated_at"]] = ["ERROR", "error", results.LOST, time.time()]
    frame, summary = results.record(sweep_url, trials.to_dict("records"), cfg.sweep.name, cfg.s3,
                                    cfg.sweep.emotion_metric)
    notify(listeners, frame, summary)
    # every lost trial of the role, closed now or by an earlier run: a removal that failed then is tried again
    closed = (trials["error"] == results.LOST) & (trials["role"].fillna(results.SEARCH) == role)
    if closed.any():
        remove_lost_checkpoints(cfg, role, set(trials.loc[closed, "trial_id"]))
    return frame


def remove_lost_checkpoints(cfg: Config, role: str, lost: set[str]) -> None:
    """Remove the checkpoint folders of the `lost` trials of `role` (`close_lost_trials`), once its experiment has
    ended: they stayed in storage for ever, a model's weights each (`lost_checkpoint_folders`). Best effort: a folder
    storage refuses to delete (a transient S3 error, a denied delete) is kept with a warning naming it, where it
    refuses even to look for them the warning names the lost trials, and the sweep goes on, its rerun trying again
    (until 2026-12-05 it ended in that error, after the trial's row was closed, so no rerun tried again)."""
    try:
        folders = lost_checkpoint_folders(cfg, role, lost)
    except (AvdisError, OSError) as exc:  # not the folder's to delete by hand: it holds every trial's checkpoints
        print(f"avdis sweep: warning: the checkpoints of lost trial{'s' if len(lost) > 1 else ''} "
              f"{', '.join(sorted(lost))} could not be looked for in {checkpoints_of(cfg)} ({exc}); the sweep goes "
              "on, and its rerun tries again", file=sys.stderr, flush=True)
        return
    for folder in folders:
        try:
            ck.remove_unlisted(folder, cfg.s3, set())
        except (AvdisError, OSError) as exc:
            _kept(folder, exc)


def lost_checkpoint_folders(cfg: Config, role: str, lost: set[str]) -> list[str]:
    """The folders the checkpoints of the `lost` trials of `role` are in: a trial's Tune trial folder (a trial in its
    own process) and its Ray Train run (`TRIALS_DIR`, a trial of more workers). Tune's saved state does not know
    them, so no trial is restored from them and neither Tune nor Ray Train deletes them. A trial the state lists is
    left to Tune."""
    if not _restorable(cfg, role):  # no saved experiment: no folder of its trials either
        return []
    unknown = lost - saved_experiment(cfg, role).known  # as Tune saved it this run
    name = experiment_of(cfg, role)[2]
    prefixes = tuple(f"{run_trial.__name__}_{trial}_" for trial in unknown)  # Tune's <trainable>_<id>_<tag>
    tune_folders = [folder for folder in storage.list_files(storage.join(checkpoints_of(cfg), name), s3=cfg.s3)
                    if folder.rsplit("/", 1)[-1].startswith(prefixes)]
    return tune_folders + [storage.join(checkpoints_of(cfg), TRIALS_DIR, trial) for trial in sorted(unknown)]


def ended_apart(sweep_url: str, cfg: Config, role: str, saved: dict[str, SavedExperiment] | None = None) -> set[str]:
    """The trials of `role` recorded in trials.parquet as ended (finished, or failed) that the saved Tune experiment
    of `role` does not list: a killed driver started them after Tune last saved its state, and they ended before it
    was killed. Tune never resumes nor counts them; on resume the search's searcher learns them
    (`SweepSearch.learn_recorded`) and the confirmation's passes over their points (`FixedPoints`). `saved`: the
    saved experiments this resume has read (`read_saved`)."""
    mine = results.ended(results.read_trials(sweep_url, cfg.s3), role)
    return set(mine["trial_id"]) - read_saved({} if saved is None else saved, cfg, role).known if len(mine) else set()


def _kept(folder: str, exc: BaseException) -> None:
    """Say that `folder`'s lost-trial checkpoints stay, why, and how they go."""
    print(f"avdis sweep: warning: {folder}: the checkpoints of a lost trial could not be deleted ({exc}); the sweep "
          "goes on, and its rerun tries again, or delete it by hand (its checkpoint_* folders: no trial resumes from "
          "them)", file=sys.stderr, flush=True)


class TrialsFailed(AvdisError):
    """Trials of the sweep ended in an error: its front stands on the others, and its exit code says so."""


LAST_LINE = 2000  # the most of a failed trial's last line of error the sweep's last words quote


def failures(sweep_url: str, cfg: Config) -> TrialsFailed | None:
    """TrialsFailed naming every trial that errored (a lost trial is not one: Tune drew another in its place), None
    where none did; returned, not raised, so that the sweep's last words can say which it was before it is raised.
    Each trial's last line of error is quoted whole (up to LAST_LINE characters), once: a trial that ended on the same
    line as one before it says so. Cut at 300 characters, it lost what avdis's errors end with, what to do (every
    trial of a sweep on a damaged shard read "...; make the shards again with `avdis")."""
    trials = results.read_trials(sweep_url, cfg.s3)
    said = results.failures_said(trials, sweep_url)
    if said is None:
        return None
    lines, first = [], {}  # a trial's last line of error -> the first trial that ended on it
    for row in trials[results.failed(trials)].itertuples():
        last = (str(row.error).strip().splitlines() or ["no message"])[-1]  # an exception without a message: empty
        quoted = (f"the same error as {first[last]}" if last in first else
                  last if len(last) <= LAST_LINE else f"{last[:LAST_LINE]}... (the rest in its row)")
        first.setdefault(last, row.trial_id)
        lines.append(f"  {row.trial_id} ({_settings(row)}): {quoted}")
    return TrialsFailed(
        f"{said}\n" + "\n".join(lines)
        + f"\nTune's error file is in each trial's folder under {checkpoints_of(cfg)}. A trial's settings, given to "
        "`avdis train` with the sweep's config, train it alone. Failed trials are not retried on resume: fix the cause "
        "and start a new sweep (sweep.name=...)."
    )


def _settings(row: Any) -> str:
    """A failed trial's sampled settings as overrides `avdis train` takes (its method alone for a row without them):
    the method says too little to reproduce a failure that one weight or learning rate causes."""
    if not isinstance(row.params, str):
        return str(row.method)
    return " ".join(f"{k}={v}" for k, v in to_overrides(json.loads(row.params)).items() if v is not None)

