"""What a sweep records of how it was started (`record_spec`: sweep.json) and what its resume may change: its
settings (`check_spec`, against `RESUMABLE_CHANGES`), its data (`check_data`: the manifest's hash) and, where Tune
restarts its trials, train.max_failures (`check_restarts_kept`)."""

from __future__ import annotations

import json
import reprlib
from typing import Any

from avdis import results, storage
from avdis.config import (ADDED, EMOTION_METRICS, Config, S3Config, measured_otherwise, measures_of, selection,
                          setting_of)
from avdis.data.prepare import recorded
from avdis.data.shards import manifest_hash
from avdis.errors import UsageError
from avdis.train.checkpoint import MAY_CHANGE

# Settings a resumed sweep may change; everything else must match how it was started. Where the data lives may change
# (a `ray job submit` runs in a new copy of the tree each time): the data itself is checked by its manifest hash
# (`check_data`). Sweep trials never use train.storage or train.name. `sweep.num_samples` and `sweep.max_concurrent`
# are not here: Tune restores them from its own saved state, so a new value would be ignored (max_concurrent's by the
# ConcurrencyLimiter, while `sweep.restored` gives the scheduler the new one: the two would disagree). Nor is
# `sweep.storage`: Tune restores the experiment's callbacks too, and they write to the sweep folder they were made for
# (`check_spec`); for the same reason `s3` may change only where they and the trials still reach the same endpoint
# and region.
# data.synth too: the data is the shards', held by their manifest hash (`check_data`), and a data.synth given is
# checked against them (`shards.check_synth`). A sweep started before `as_made` recorded the default corpus's settings
# where its config left data.synth out: now filled from the shards, they differed, and its resume was refused.
# What a resumed `avdis train` run may change (`checkpoint.MAY_CHANGE`: where it lives, how it is scheduled, its
# robustness, how often it probes) a sweep's trials may change too, so a sweep resumed on a resized cluster may take
# other worker CPUs, placement, max_failures or max_skip_rate (they were refused, sweep.trial_cpus alone let through);
# max_failures not where Tune restarts the trials by it (`check_restarts_kept`).
# Not `SWEEP_KEEPS`: train.epochs sets the rungs and how long every trial trains; train.gpus_per_worker the device and,
# under train.precision=auto, bf16 or fp32, and the front compares trials from both sides of the resume.
# train.probe_every: a sweep started when MO-ASHA's trials probed every epoch goes on probing at its rungs.
SWEEP_KEEPS = ("train.epochs", "train.gpus_per_worker")
RESUMABLE_CHANGES = ("ray", "s3", "sweep.trial_cpus", "sweep.prometheus_scrape_s", "data.src", "data.shards",
                     "data.synth", *(setting for setting in MAY_CHANGE if setting not in SWEEP_KEEPS))


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
    hashes = set(results.read_trials(sweep_url, cfg.s3)["manifest_hash"].dropna()) | {record.get("manifest_hash")}
    hashes.discard(None)
    now = manifest_hash(cfg.data.shards, cfg.s3)
    if hashes - {now}:
        raise UsageError(f"{sweep_url}: it ran on data with manifest hash {', '.join(sorted(hashes - {now}))}, but "
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


def check_restarts_kept(sweep_url: str, cfg: Config, record: dict[str, Any], in_process: bool) -> None:
    """Refuse to resume, with another train.max_failures, a sweep whose trials Tune restarts
    (`sweep.tune_failures`): Tune restores its experiment with the FailureConfig it was started with, and its trials
    with their own, so the new value would change nothing."""
    started = record["spec"].get("train", {}).get("max_failures", 0)
    if in_process and started != cfg.train.max_failures:
        raise UsageError(f"{sweep_url}: its trials each train in their own process, which Tune restarts up to the "
                         f"train.max_failures the sweep was started with ({started}), restored with its saved "
                         f"experiment: train.max_failures={cfg.train.max_failures} would change nothing. Resume it "
                         f"with train.max_failures={started}, or start a new sweep (sweep.name=...)")
