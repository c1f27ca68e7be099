"""The sweep: Ray Tune over methods and weights, each trial a distributed TorchTrainer.

Reads top to bottom: check inputs -> shards -> searcher + scheduler -> Tuner (new or
restored) -> fit -> report. Outputs under `<sweep.storage>/<sweep.name>/`:
`trials.parquet`, `pareto.json`, `pareto.html`, `pareto.png`, `sweep.json` (what the
sweep was started with) and Tune's own experiment state (the ResultGrid). Running the
same command again against the same storage resumes the sweep.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from avdis import runtime, storage
from avdis.config import Config, with_overrides
from avdis.data.prepare import ensure_shards
from avdis.errors import UsageError
from avdis.report.callback import ReportCallback
from avdis.report.plots import write_report
from avdis.tune.records import TrialRecorder
from avdis.tune.schedulers import MOASHAScheduler
from avdis.tune.space import DefineByRun, sampler
from avdis.tune.trial import run_trial

SPEC = "sweep.json"
# Settings a resumed sweep may change; everything else must match how it was started.
RESUMABLE_CHANGES = ("ray", "s3", "sweep.num_samples", "sweep.max_concurrent", "sweep.trial_cpus", "sweep.storage")


def _spec(cfg: Config) -> dict[str, Any]:
    spec = cfg.model_dump(mode="json")
    for path in RESUMABLE_CHANGES:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node[p]
        node.pop(leaf, None)
    return spec


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(a.keys() | b.keys()):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _digest(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def check_spec(sweep_url: str, cfg: Config) -> bool:
    """Refuse to mix another sweep into this folder; True when it holds this same sweep (resume)."""
    url = storage.join(sweep_url, SPEC)
    spec = _spec(cfg)
    if storage.exists(url, cfg.s3):
        saved = json.loads(storage.read_bytes(url, cfg.s3))
        if saved["digest"] != _digest(spec):
            diff = ", ".join(_differences(saved["spec"], spec)[:8])
            raise UsageError(
                f"{sweep_url} holds a sweep started with other settings (differs in: {diff}). "
                f"Pick a new name (--name or sweep.name=...), or rerun with the original config to resume it."
            )
        return True
    return False


def record_spec(sweep_url: str, cfg: Config) -> None:
    spec = _spec(cfg)
    body = json.dumps({"digest": _digest(spec), "spec": spec}, indent=1).encode()
    storage.write_bytes(storage.join(sweep_url, SPEC), body, cfg.s3)


def check_cluster(cfg: Config) -> None:
    """Trials that can never be placed would wait forever: refuse them before launching."""
    import ray

    from avdis import clusterfit

    if cfg.ray.cluster_file:
        clusterfit.check_fits(cfg, cluster_yaml=cfg.ray.cluster_file)
    elif not cfg.ray.autoscaling:
        clusterfit.check_fits(cfg, nodes=ray.nodes())
    for url in (cfg.sweep.storage, cfg.data.shards):
        if url.startswith("s3://"):
            clusterfit.check_bucket(url, cfg.s3)


def trial_resources(cfg: Config) -> dict[str, float]:
    """What Tune reserves for a trial's own process, from the same rule the cluster check uses.

    A distributed trial's driver needs little; its TorchTrainer workers ask for their own.
    A single-process trial trains in the trial itself: it takes its one worker's bundle (GPU included).
    """
    from avdis.clusterfit import trial_demand

    driver, workers = trial_demand(cfg)
    own = workers[0] if cfg.train.strategy == "single" else driver
    return {key.lower(): amount for key, amount in own.items()}


def _tuner(cfg: Config, sweep_url: str, resume: bool):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=cfg.model_dump(mode="json"), sweep_url=sweep_url), trial_resources(cfg),
    )
    fs, path = storage.pyarrow_filesystem(cfg.sweep.storage, cfg.s3)
    experiment = f"{path.rstrip('/')}/{cfg.sweep.name}"
    if resume and tune.Tuner.can_restore(experiment, storage_filesystem=fs):
        print(f"avdis sweep: resuming {sweep_url}", flush=True)
        return tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False, storage_filesystem=fs)
    s = cfg.sweep
    searcher = OptunaSearch(space=DefineByRun(s.space), metric=list(s.metrics), mode=list(s.modes),
                            sampler=sampler(s.search, s.seed))
    scheduler = (MOASHAScheduler(cfg.train.epochs, s.scheduler.grace_epochs, s.scheduler.eta, tuple(s.metrics))
                 if s.scheduler.type == "mo_asha" else None)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent),
                                    scheduler=scheduler, num_samples=s.num_samples),
        run_config=tune.RunConfig(
            name=s.name, storage_path=path, storage_filesystem=fs,
            callbacks=[TrialRecorder(sweep_url, cfg), ReportCallback(sweep_url, cfg.s3)],
            failure_config=tune.FailureConfig(max_failures=0), verbose=1,
        ),
    )


def run(cfg: Config) -> dict[str, str]:
    """Run (or resume) the sweep; returns where its outputs are."""
    if cfg.sweep.scheduler.type == "mo_asha":
        cfg = with_overrides(cfg, {"train.probe_every": 1})  # a trial may stop after any rung: probe every epoch
    sweep_url = storage.join(cfg.sweep.storage, cfg.sweep.name)
    resume = check_spec(sweep_url, cfg)
    address = runtime.connect(cfg.ray)
    runtime.pin_train_coordinator()
    check_cluster(cfg)
    ensure_shards(cfg, use_ray=True)
    if not resume:
        record_spec(sweep_url, cfg)
    s, t = cfg.sweep, cfg.train
    print(f"avdis sweep {s.name}: {s.num_samples} trials, search={s.search}, scheduler={s.scheduler.type}, "
          f"{s.max_concurrent} at a time; each trial {t.workers} x {t.strategy} worker(s) "
          f"(zero_stage={t.zero_stage}, {t.cpus_per_worker} CPU, {t.gpus_per_worker} GPU); ray={address}; "
          f"outputs -> {sweep_url}", flush=True)
    _tuner(cfg, sweep_url, resume).fit()
    written = write_report(sweep_url, cfg.s3)
    print(f"avdis sweep {s.name}: done.\n  front:  {written['pareto.json']}\n  report: {written['pareto.html']}"
          f"\n  plot:   {written['pareto.png']}\n  trials: {storage.join(sweep_url, 'trials.parquet')}", flush=True)
    return written
