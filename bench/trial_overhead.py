"""A sweep trial's fixed cost (start, engine, checkpoints, teardown): the old way against the new, in one run.

    .venv/bin/python bench/trial_overhead.py      # ~4 min on 2 cores

One after the other, each in a local Ray of its own (so no leftover of one holds resources from the next):
- `old`: the smoke sweep (jobs/configs/smoke.yaml with 6 trials of 1-worker DeepSpeed ZeRO-2, 2 at a time,
  MO-ASHA) with every trial a one-worker TorchTrainer whose reports reach Tune through the relay, in a
  fresh trial process each, as avdis ran them before issue 15 (rebuilt here from `launch.trainer` +
  `relay` with `reuse_actors=False`: bench-only switches);
- `new`: the same sweep as avdis runs it (the trial trains in its own process over a one-process group,
  and Tune reuses trial processes: only the first trial on each pays a fresh process's start and imports);
- `multi_worker`: one 2-worker DeepSpeed trial (the TorchTrainer path, unchanged), to see where a
  multi-worker start-up goes.

Every trial is timed with `time.perf_counter` in each process it runs in (CLOCK_MONOTONIC on Linux: one
clock across the processes of a machine): the driver's Tune callback (trial start, trial complete), the
trial's training function (entry, engine build, checkpoint writes and reports, last report) and, for a
TorchTrainer, `fit()` in the trial. `wall_s - work_s` is read from the sweep's own trials.parquet (start
to last result, minus the epochs); `startup_s` (what bench/sweep_replay.py reads) is the median of a
trial's slot (start to complete, teardown included) minus its epochs, for the new way.
Writes bench/results/trial_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from ray.tune import Callback  # noqa: E402

from avdis import results, runtime  # noqa: E402
from avdis.config import Config, load  # noqa: E402
from avdis.tune import sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBES = "probes"
TRIALS = 6  # per sweep: 2 at a time, so 4 of the new way's trials run on a reused process  # beside the sweep folders: one JSON per trial and process


# ------------------------------------------------------------------ timing inside trials (pickled by value)

def _probe_file(sweep_url: str, trial_id: str, role: str) -> Path:
    folder = Path(sweep_url).parent / PROBES
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{trial_id}-{role}.json"


def _instrument(path: Path) -> None:
    """Time this process's engine builds, checkpoint writes and reports into `path` (each event rewrites it).

    Patched once per process; a reused actor's next trial only starts a new record.
    """
    from avdis import storage
    from avdis.train import engine, loop

    probe = getattr(loop.build_engine, "probe", None)
    if probe is None:
        probe = {}

        def timed(owner: Any, name: str, bucket: str, end: str | None = None) -> None:
            inner = getattr(owner, name)

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    record = probe["record"]
                    record[bucket] += time.perf_counter() - t0
                    if end:
                        record[end] = time.perf_counter()
                    probe["path"].write_text(json.dumps(record))

            wrapper.probe = probe
            setattr(owner, name, wrapper)

        timed(loop, "build_engine", "engine_s")
        for cls in (engine.Engine, engine.DeepSpeedEngine):
            timed(cls, "save", "checkpoint_s")
        timed(storage, "write_bytes", "checkpoint_s")  # metrics.json, beside each checkpoint
        for cls in (loop.TuneReporter, loop.RayReporter):
            timed(cls, "report", "checkpoint_s", end="last_report")
    probe.update(path=path, record={"entry": time.perf_counter(), "engine_s": 0.0, "checkpoint_s": 0.0})
    path.write_text(json.dumps(probe["record"]))


def _timed_worker(config: dict[str, Any]) -> None:
    """Ray Train's training function, timed on rank 0."""
    import ray.train

    from avdis.train import loop

    if ray.train.get_context().get_world_rank() == 0:
        run_url = config["run_url"]
        # run_url: <sweep>/checkpoints/trials/<trial id>, its probes beside the sweep's as `run_sweep` reads them
        _instrument(_probe_file(str(Path(run_url).parents[2]), Path(run_url).name, "worker"))
    loop.train_worker(config)


def _time_fit(trial_id: str, sweep_url: str) -> None:
    """Time the relay's fit() in this trial, and send Ray Train's workers into `_timed_worker`."""
    from avdis.train import launch
    from avdis.tune.relay import TrainToTune

    launch.train_worker = _timed_worker  # launch.trainer reads it when it builds the TorchTrainer
    record: dict[str, Any] = {}
    path = _probe_file(sweep_url, trial_id, "fit")
    fitting = TrainToTune.run

    def run(self: TrainToTune, fit: Any) -> Any:
        record["fit_call"] = time.perf_counter()
        path.write_text(json.dumps(record))
        try:
            return fitting(self, fit)
        finally:  # not reached by a trial the scheduler stopped (Tune ends its actor)
            record["fit_return"] = time.perf_counter()
            path.write_text(json.dumps(record))

    TrainToTune.run = run


def old_trial(params: dict[str, Any], base: dict[str, Any], sweep_url: str, checkpoints_url: str) -> None:
    """A trial as avdis ran every ddp/deepspeed one before issue 15: a TorchTrainer (here of one worker) + relay."""
    import ray.tune

    from avdis import storage
    from avdis.config import with_overrides
    from avdis.train import launch
    from avdis.tune import trial
    from avdis.tune.relay import TrainToTune
    from avdis.tune.space import to_overrides

    cfg = with_overrides(Config.model_validate(base), to_overrides(params))
    trial_id = ray.tune.get_context().get_trial_id()
    _time_fit(trial_id, sweep_url)
    relay = TrainToTune(cfg.sweep.emotion_metric)
    trainer = launch.trainer(cfg, storage.join(checkpoints_url, trial.TRIALS_DIR), trial_id, callbacks=[relay])
    relay.run(trainer.fit)


def new_trial(params: dict[str, Any], base: dict[str, Any], sweep_url: str, checkpoints_url: str) -> None:
    """The sweep's own trainable, timed: in this process for one worker, a TorchTrainer for more."""
    import ray.tune

    from avdis.tune import trial

    trial_id = ray.tune.get_context().get_trial_id()
    if Config.model_validate(base).train.in_process:
        _instrument(_probe_file(sweep_url, trial_id, "worker"))
    else:
        _time_fit(trial_id, sweep_url)
    trial.run_trial(params, base, sweep_url, checkpoints_url)


# ------------------------------------------------------------------ the driver

class TrialClock(Callback):
    """Trial start and completion (or stop) as the driver's Tune loop sees them."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.start[trial.trial_id] = time.perf_counter()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end[trial.trial_id] = time.perf_counter()


PHASES = {  # what each per-trial figure holds, and whose time it is
    "work_s": "the epochs (steps, embedding pass, evaluation, probe): trials.parquet's work_s",
    "wall_minus_work_s": "trials.parquet's wall_s (trial start to last result) minus work_s",
    "slot_s": "trial start to trial complete, as the driver's Tune loop sees them",
    "fixed_s": "slot_s - work_s: what a trial costs beyond its epochs",
    "start_s": "trial start -> training function entered. Ray: the trial actor; for a TorchTrainer also its "
               "controller, worker actors and gloo group. Imports of torch and avdis in those processes",
    "engine_s": "engine build: almost all first-use imports in a fresh process (torch._dynamo through torch.optim, "
                "torch._inductor through DeepSpeed's optimizer check)",
    "checkpoint_s": "avdis: engine save, metrics.json, and the report that hands the checkpoint to Tune/Train",
    "setup_other_s": "avdis: the rest of the training function outside epochs (data, model, restore)",
    "teardown_s": "last report -> trial complete. A TorchTrainer's is Ray Train's worker group and controller shutdown",
    "trial_to_fit_s": "multi-worker: trial start -> fit() (Ray: trial actor; avdis imports in it)",
    "fit_to_worker_s": "multi-worker: fit() -> training function on rank 0 (Ray Train: controller, placement "
                       "group, worker actors, gloo group; avdis: importing avdis.train.loop in each worker)",
    "last_report_to_fit_return_s": "multi-worker: Ray Train's shutdown of the worker group and controller",
    "fit_return_to_complete_s": "multi-worker: fit() returned -> Tune's trial complete",
}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def run_sweep(cfg: Config, trainable: Any, resources: Any, reuse_actors: bool | None = None
              ) -> tuple[list[dict[str, Any]], float]:
    """Run `cfg`'s sweep in a Ray of its own with `trainable` as each trial (and `resources` for its own
    process; Tune's `reuse_actors` forced when given, else avdis's); per-trial timings. Ray's start counts in
    no trial's figures."""
    import ray
    from ray import tune

    # Bench-only switches, for the old way: avdis's trainable, resources and reuse_actors are the new. Put back
    # afterwards: a later sweep in this process (the next arm, a test) must size and run trials as avdis does.
    own = sweep.run_trial, sweep.trial_resources
    sweep.run_trial, sweep.trial_resources = trainable, resources
    tune_config = tune.TuneConfig
    if reuse_actors is not None:
        tune.TuneConfig = lambda *a, **k: tune_config(*a, **{**k, "reuse_actors": reuse_actors})
    clock = TrialClock()
    runtime.connect(cfg.ray)
    t0 = time.perf_counter()
    try:
        url = sweep.run(cfg, sweep.Views(callbacks=(clock,)))
    finally:
        total = time.perf_counter() - t0
        tune.TuneConfig = tune_config
        sweep.run_trial, sweep.trial_resources = own
        ray.shutdown()
    table = results.read_trials(url, cfg.s3)
    failed = table[~table["status"].isin(["TERMINATED", "STOPPED"])]
    if len(failed):
        raise RuntimeError(f"{url}: trials did not finish: {failed[['trial_id', 'status', 'error']].to_dict('records')}")
    rows = []
    for row in table.itertuples():
        tid = row.trial_id
        worker = json.loads(_probe_file(url, tid, "worker").read_text())
        fit_file = _probe_file(url, tid, "fit")
        fit = json.loads(fit_file.read_text()) if fit_file.exists() else {}
        start, end = clock.start[tid], clock.end[tid]
        inside = worker["last_report"] - worker["entry"] - row.work_s
        t = {
            "trial_id": tid, "epochs": int(row.epochs), "status": row.status, "work_s": row.work_s,
            "wall_minus_work_s": row.wall_s - row.work_s, "slot_s": end - start,
            "fixed_s": end - start - row.work_s,
            "start_s": worker["entry"] - start,  # trial start -> the training function
            "engine_s": worker["engine_s"], "checkpoint_s": worker["checkpoint_s"],
            "setup_other_s": inside - worker["engine_s"] - worker["checkpoint_s"],  # data, model, restore
            "teardown_s": end - worker["last_report"],  # last report -> Tune's trial complete
        }
        if fit:
            t.update({"trial_to_fit_s": fit["fit_call"] - start, "fit_to_worker_s": worker["entry"] - fit["fit_call"]})
        if "fit_return" in fit:
            t.update({"last_report_to_fit_return_s": fit["fit_return"] - worker["last_report"],
                      "fit_return_to_complete_s": end - fit["fit_return"]})
        rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()})
    return rows, total


def summary(rows: list[dict[str, Any]], total: float) -> dict[str, Any]:
    """Medians over the trials (of those that have the figure: a stopped trial's fit() never returns)."""
    keys = dict.fromkeys(k for r in rows for k in r if k.endswith("_s"))
    return {"trials": len(rows), "sweep_s": round(total, 1),
            "median": {k: _median([r[k] for r in rows if k in r]) for k in keys}, "per_trial": rows}


def import_seconds(module: str) -> float:
    """Seconds a fresh interpreter takes to import `module` (after torch, which any torch worker imports)."""
    code = (f"import time, torch; t = time.perf_counter(); import {module}; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def main(argv: list[str] | None = None) -> None:
    # no options: the parser gives --help (which ran the whole benchmark) and refuses a stray argument
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="avdis-trial-overhead-") as tmp:
        base = [f"data.src={tmp}/corpus", f"data.shards={tmp}/shards", f"sweep.storage={tmp}/sweeps",
                f"train.storage={tmp}/train"]
        smoke = ROOT / "jobs" / "configs" / "smoke.yaml"
        old_resources = lambda c: {"cpu": c.sweep.trial_cpus}  # noqa: E731 - the old trial's own process: its driver
        print("trial_overhead: old way (1-worker TorchTrainer per trial, a fresh trial process each)", flush=True)
        old, old_total = run_sweep(load(smoke, [*base, "sweep.name=old", f"sweep.num_samples={TRIALS}"]), old_trial,
                                   old_resources, reuse_actors=False)
        print("trial_overhead: new way (in the trial's process, trial processes reused)", flush=True)
        new, new_total = run_sweep(load(smoke, [*base, "sweep.name=new", f"sweep.num_samples={TRIALS}"]), new_trial,
                                   sweep.trial_resources)
        print("trial_overhead: one 2-worker trial (TorchTrainer)", flush=True)
        multi, multi_total = run_sweep(
            load(smoke, [*base, "sweep.name=multi", "train.workers=2", "sweep.num_samples=1",
                         "sweep.scheduler.type=none"]), new_trial, sweep.trial_resources)
    o, n = summary(old, old_total), summary(new, new_total)
    payload = {
        "command": "python bench/trial_overhead.py",
        "sweep": f"jobs/configs/smoke.yaml: {TRIALS} trials, 2 at a time, 1-worker DeepSpeed ZeRO-2, MO-ASHA (eta 2, "
                 "grace 1)",
        "phases": PHASES,
        "old": o, "new": n,
        "wall_minus_work_s": {"old": o["median"]["wall_minus_work_s"], "new": n["median"]["wall_minus_work_s"],
                              "target": 12.0},
        "fixed_s": {"old": o["median"]["fixed_s"], "new": n["median"]["fixed_s"],
                    "ratio": round(n["median"]["fixed_s"] / o["median"]["fixed_s"], 3), "target_ratio": 0.2},
        "startup_s": n["median"]["fixed_s"],  # what bench/sweep_replay.py charges each trial
        "cold_start_s": max(r["fixed_s"] for r in new),  # the first trial on a fresh process
        "multi_worker": {
            **summary(multi, multi_total),
            "imports_after_torch_s": {m: import_seconds(m) for m in ("avdis.train.loop", "deepspeed", "ray.train.torch")},
        },
    }
    machine.write("trial_overhead", payload)
    print(json.dumps({k: payload[k] for k in ("wall_minus_work_s", "fixed_s", "startup_s")}, indent=1))
    print(json.dumps(payload["multi_worker"]["median"], indent=1))


if __name__ == "__main__":
    main()
