"""One sweep trial: a Tune trainable that trains in its own process, or launches a TorchTrainer.

A trial whose training fits one worker (`train.in_process`) trains right here, whatever its
strategy: DDP and DeepSpeed over a one-process group (`engine.solo_group`), checkpoints and
metrics straight to Tune (`loop.TuneReporter`). Starting a Ray Train worker group, its
controller and its process group would cost a short trial more than its epochs.

A multi-worker trial launches a distributed TorchTrainer (Train V2 pattern), whose reports
reach Tune through `avdis.tune.relay` (not Ray's TuneReportCallback, which can deadlock a
trial whose training ends right after its last report). Its Ray Train run lives under
`<checkpoints>/trials/<trial id>/` (`sweep.checkpoints_of`: the sweep's folder unless set apart).

Either way a trial restarted after a killed driver resumes from its last checkpoint (Tune's,
or its Ray Train run's) instead of starting over; so does a one-worker trial whose own process died, which Tune
restarts up to `train.max_failures` (`sweep.tune_failures`), once only where it failed of an avdis error a restart
meets again (`records.TrialRecorder.on_trial_recover`). Tune saves its experiment state every few
seconds, our trials.parquet after every result: a trial the table already records as
finished (or stopped early) is not trained again on resume, its recorded final result is
reported once more instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from avdis import results, storage
from avdis.config import Config, with_overrides
from avdis.train import launch, loop
from avdis.train.engine import solo_group
from avdis.tune.space import to_overrides

TRIALS_DIR = "trials"


def run_trial(params: dict[str, Any], base: dict[str, Any], sweep_url: str, checkpoints_url: str) -> None:
    """Train one trial; its checkpoints under `checkpoints_url`, its record read from `sweep_url`'s table."""
    import ray.tune

    from avdis.tune.relay import TrainToTune

    cfg = with_overrides(Config.model_validate(base), to_overrides(params))
    trial_id = ray.tune.get_context().get_trial_id()
    final = finished_result(sweep_url, trial_id, cfg)
    if final is not None:
        ray.tune.report(final)
        return
    recorded = recorded_data(sweep_url, cfg)
    if cfg.train.in_process:  # one worker: no Ray Train, Tune holds its checkpoints
        with solo_group(cfg.train):
            loop.run(cfg, loop.TuneReporter(storage.join(checkpoints_url, TRIALS_DIR, trial_id), cfg), recorded,
                     trial=True)
        return
    relay = TrainToTune(cfg.sweep.emotion_metric)
    trainer = launch.trainer(cfg, storage.join(checkpoints_url, TRIALS_DIR), trial_id, callbacks=[relay],
                             data_hash=recorded, trial=True)
    relay.run(trainer.fit)  # Train V2's fit() raises when the run fails


def recorded_data(sweep_url: str, cfg: Config) -> str:
    """The manifest hash of the data the sweep started on, as its driver recorded it in sweep.json: every trial (and
    each of its ranks) checks the shards it opens against it (`loop.open_checked`)."""
    return json.loads(storage.read_bytes(storage.join(sweep_url, results.SPEC), cfg.s3))["manifest_hash"]


def finished_result(sweep_url: str, trial_id: str, cfg: Config) -> dict[str, Any] | None:
    """The recorded final metrics of a trial that already finished, else None."""
    table = results.read_trials(sweep_url, cfg.s3)
    row = table[(table["trial_id"] == trial_id) & table["order"].notna()]
    if row.empty:
        return None
    record = row.iloc[0]
    metrics = {k: record[k] for k in ("emotion_acc", "emotion_uar", "leakage", "speaker_acc", "val_emotion_acc",
                                      "val_emotion_uar", "val_leakage", "epochs")
               if record[k] == record[k]}  # NaN-free
    return {**metrics, "epoch": int(record["epochs"]), "resumed_finished": True}


class _ExplainedTrialError(logging.Filter):
    """Drops Tune's "Trial task failed for trial ..." record, and its traceback, where the trial failed of an avdis
    error (in a multi-worker trial, one its Ray Train run failed of): the sweep's error names each failed trial with
    the error's message and where Tune's error file, which holds the traceback, is (`failures.failures`). A trial of
    damaged shards printed 40 lines of traceback, Ray's internals first, above that. Any other error keeps it, one
    raised while an avdis error was handled included (a bug in the handling)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or launch._avdis_error([error], context=False) is None


@contextmanager
def explained_errors_off_the_console() -> Iterator[None]:
    """`_ExplainedTrialError` on Tune's controller logger while the block (the driver's `tuner.fit()`) runs."""
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    kept_off = _ExplainedTrialError()
    logger.addFilter(kept_off)
    try:
        yield
    finally:
        logger.removeFilter(kept_off)
