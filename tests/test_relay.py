"""Train -> Tune relay (avdis.tune.relay) in a real local Ray with real Tune trials.

Each trial's "fit" here is a Ray task in the controller's place: it calls the callback's
`after_report` for each epoch, as Ray Train's controller does, and the fit returns the
moment the last report is handed over: the timing in which Ray 2.60's TuneReportCallback
deadlocks a trial (see the relay's docstring). Real TorchTrainers go through the relay in
test_sweep_e2e's sweep of 2-worker trials (1-worker trials train in the trial's process: no relay).
"""

from __future__ import annotations

import sys
import threading

import pytest
import ray.cloudpickle as cloudpickle

pytestmark = pytest.mark.ray
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
TRIALS = 4


@pytest.fixture(scope="module")
def ray_local():
    import ray
    from conftest import shutdown_ray

    ray.init(address="local", num_cpus=TRIALS, include_dashboard=False, log_to_driver=False)
    yield
    shutdown_ray()


def trainable(config: dict) -> None:
    import ray

    from avdis.tune.relay import TrainToTune

    @ray.remote(num_cpus=0)
    def controller(callback: TrainToTune, epochs: int, fail: bool) -> None:
        for epoch in range(1, epochs + 1):
            callback.after_report(None, [{"epoch": epoch, "trial": config["i"]}], None)
        if fail:
            raise RuntimeError("worker group failed")

    relay = TrainToTune("acc")
    result = relay.run(lambda: ray.get(controller.remote(relay, config["epochs"], config["fail"])))
    assert result is None  # what fit() returned comes back


def fit(param_space: dict, **tune_kwargs):
    from ray import tune

    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space=param_space,
                       tune_config=tune.TuneConfig(max_concurrent_trials=TRIALS),
                       run_config=tune.RunConfig(verbose=0, **tune_kwargs))
    out: dict = {}

    def run() -> None:
        try:
            out["grid"] = tuner.fit()
        except BaseException as exc:  # re-raised below, in the test's thread
            out["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(180)
    assert not runner.is_alive(), "a trial never finished: a report was lost between Train and Tune"
    if "error" in out:
        raise out["error"]
    return out["grid"]


def test_every_report_arrives_in_order_when_trials_end_right_after_reporting(ray_local, tmp_path):
    from ray import tune

    grid = fit({"i": tune.grid_search(list(range(TRIALS))), "epochs": 3, "fail": False},
               storage_path=str(tmp_path))
    assert not grid.errors
    for result in grid:
        history = result.metrics_dataframe
        assert list(history["epoch"]) == [1, 2, 3]
        assert set(history["trial"]) == {result.config["i"]}
        assert result.metrics["training_iteration"] == 3


def test_tune_stopping_a_trial_ends_it_and_a_failed_fit_fails_it(ray_local, tmp_path):
    from ray import tune

    grid = fit({"i": tune.grid_search([0, 1]), "epochs": 6, "fail": False}, storage_path=str(tmp_path),
               stop={"epoch": 2})
    assert [r.metrics["epoch"] for r in grid] == [2, 2] and not grid.errors  # the stop took effect at once
    grid = fit({"i": 0, "epochs": 1, "fail": True}, storage_path=str(tmp_path / "fail"))
    (failed,) = list(grid)
    assert failed.error is not None and "worker group failed" in str(failed.error)
    assert failed.metrics["epoch"] == 1  # the report before the failure still arrived


def failing(config: dict) -> None:
    raise ValueError("boom in epoch 2")


def test_a_failed_trials_row_holds_its_error(ray_local, tmp_path):
    """The recorder read the error through Trial.get_error(), which reads the storage copy Tune uploads only later:
    every failed trial's row read "trial failed (see its error file)". Storage as the sweep gives it to Tune."""
    from ray import tune

    from avdis import results, storage
    from avdis.config import Config
    from avdis.tune.records import TrialRecorder

    fs, path = storage.pyarrow_filesystem(str(tmp_path / "ckpt"))
    (tmp_path / "sweep").mkdir()
    tune.Tuner(failing, param_space={"method": "multitask"},
               run_config=tune.RunConfig(name="t", storage_path=path, storage_filesystem=fs, verbose=0,
                                         callbacks=[TrialRecorder(str(tmp_path / "sweep"), Config())])).fit()
    (row,) = results.read_trials(str(tmp_path / "sweep")).to_dict("records")
    assert row["status"] == "ERROR" and "ValueError: boom in epoch 2" in row["error"], row["error"]


def checkpointing(config: dict) -> None:
    import tempfile
    import time
    from pathlib import Path

    from ray import tune

    for epoch in range(1, 9):  # epochs of 0.3 s (Tune skips a snapshot while the one before is still being written)
        with tempfile.TemporaryDirectory() as d:
            Path(d, "epoch").write_text(str(epoch))
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))
        time.sleep(0.3)


def test_tunes_snapshots_at_kept_checkpoints_are_taken_quietly(ray_local, tmp_path, monkeypatch):
    """Tune snapshots its experiment state whenever a trial has saved num_to_keep checkpoints since the last one,
    and warned at each snapshot within 5 s of another that it "may become a bottleneck": two dozen times in the
    demo's output, for snapshots of some 20 ms (`sweep.fit` quiets it). Ray's loggers do not reach pytest's."""
    import logging

    from ray import tune

    from avdis.tune import sweep

    monkeypatch.delenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", raising=False)
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("ray.tune.execution.experiment_state")
    logger.addHandler(handler)
    try:
        tuner = tune.Tuner(checkpointing, run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0, checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        sweep.fit(tuner, 1, str(tmp_path))
    finally:
        logger.removeHandler(handler)
    assert not [m for m in said if "snapshotting has been triggered" in m], said
