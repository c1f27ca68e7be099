"""A sweep trial of one worker whose process dies (killed, out of memory, its node lost: on another node) is restarted
by Tune from its last checkpoint up to train.max_failures, as a Ray Train run's workers are; an avdis error a restart
meets again is not retried. Before, such a sweep refused train.max_failures, and the trial ended as ERROR, never retried."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pytest

from test_sweep_e2e import kill_group
from test_trial_inprocess import epochs_by_trial

from avdis import config as C, results

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6


def trial_process(driver: subprocess.Popen) -> psutil.Process | None:
    """The process a trial trains in: the Ray worker, among the driver's, that holds Tune's trainable."""
    for proc in psutil.Process(driver.pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(proc.cmdline()):
                return proc
        except psutil.NoSuchProcess:
            pass
    return None



@pytest.fixture
def tune_records(tmp_path):
    """A local Ray where Tune's own `Trial` objects can be made (of a trainable that trains nothing: the trials are
    Tune's records alone), and the sweep folder their recorder writes in."""
    from ray.tune import register_trainable

    from conftest import init_local_ray, shutdown_ray

    init_local_ray(num_cpus=1)
    try:
        register_trainable("trainable", lambda config: None)
        (tmp_path / "sweep").mkdir()
        yield tmp_path / "sweep"
    finally:
        shutdown_ray()


def recorder_of(sweep: Path, max_failures: int):
    """The sweep's recorder, set up as Tune does, of a sweep whose one-worker trials Tune restarts."""
    from avdis.tune.records import TrialRecorder

    made = TrialRecorder(str(sweep), C.load(None, [f"sweep.storage={sweep.parent}",
                                                    f"train.max_failures={max_failures}"]), restarts=True)
    made.setup()
    return made


def tune_trial(sweep: Path, trial_id: str, max_failures: int):
    """Tune's record of a trial with its own max_failures (Tune's FailureConfig's)."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    made = Trial("trainable", config={"method": "multitask"}, trial_id=trial_id, max_failures=max_failures,
                 storage=StorageContext(storage_path=str(sweep.parent / "tune"), experiment_dir_name="e"))
    made.init_local_path()
    return made


def in_trial(error: BaseException):
    """`error` raised in a trial, as Tune gets it: a Ray task's error of its traceback, then the error itself."""
    from ray.exceptions import RayTaskError

    said = f"Traceback (most recent call last):\n  File ...\n{type(error).__module__}.{type(error).__name__}: {error}"
    return RayTaskError("ImplicitFunc.train", said, error).as_instanceof_cause()


def recorded_error(sweep: Path, trial_id: str) -> str:
    """The error trials.parquet records of the trial."""
    (row,) = results.read_trials(str(sweep)).query(f"trial_id == '{trial_id}'").to_dict("records")
    return row["error"]


def died_after(sweep: Path, trial_id: str, max_failures: int, first: BaseException) -> str:
    """The recorded error of a trial that failed of `first`, was restarted, and whose process then died in that
    restart, ending it."""
    from ray.exceptions import ActorDiedError

    recorder = recorder_of(sweep, max_failures)
    t = tune_trial(sweep, trial_id, max_failures)
    recorder.on_trial_start(0, [], t)
    t.handle_error(in_trial(first))
    recorder.on_trial_recover(1, [], t)
    t.handle_error(ActorDiedError())
    assert not t.should_recover()
    recorder.on_trial_error(2, [], t)
    return recorded_error(sweep, trial_id)


def died_with_its_node(reason: str):
    """The error Ray gives Tune for a trial whose process died with its node, an `ActorDiedError` of the GCS's cause
    as Ray's deserializer makes it: its text is that of the node crash and preemption in
    test_a_trial_whose_node_is_lost_is_restarted_on_another_node_from_its_checkpoint. `reason`: Ray's NodeDeathInfo."""
    from ray.core.generated.common_pb2 import ActorDiedErrorContext, NodeDeathInfo
    from ray.exceptions import ActorDiedError

    how = {"UNEXPECTED_TERMINATION": "terminated unexpectedly: health check failed due to missing too many heartbeats",
           "AUTOSCALER_DRAIN_PREEMPTED": "preempted: reclaimed"}[reason]
    return ActorDiedError(cause=ActorDiedErrorContext(  # by name, as Ray makes it: pickled without the context
        class_name="ImplicitFunc", actor_id=bytes.fromhex("babab3add4a0965aad89a6f001000000"), pid=11240,
        ray_namespace="9e51e1fe-49f4-4b8b-a26c-ed669204f344", node_ip_address="192.0.2.2",
        error_message=(f"The actor died because its node has died. Node Id: {'9fc46376' * 7}\n"
                       f"\tthe actor's node was {how}"),
        node_death_info=NodeDeathInfo(reason=NodeDeathInfo.Reason.Value(reason), reason_message=how.split(": ")[-1])))


def stopping_failed():
    """Tune's error for a trial whose stop failed: a callback that raised in `on_trial_complete` (its storage down),
    as `TuneController.stop_trial` makes it. A TuneError: Tune pickles it nowhere (`Trial.handle_error`)."""
    from ray.tune.error import _TuneStopTrialError

    return _TuneStopTrialError("Traceback (most recent call last):\n  File ...\n"
                               "OSError: [Errno 5] Input/output error\n")


def sweep_command(tiny_shards: str, tmp_path: Path, *more: str) -> list[str]:
    """jobs/sweep.py of the sweep "died": 2 trials of EPOCHS epochs, one at a time, every epoch to the end."""
    return [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
            "--storage", str(tmp_path / "sweeps"), "--name", "died", f"data.shards={tiny_shards}",
            "sweep.num_samples=2", "sweep.max_concurrent=1", "sweep.scheduler.type=none", f"train.epochs={EPOCHS}",
            "probe.epochs=40", "ray.include_dashboard=false", *more]


SWEEP_ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "TUNE_GLOBAL_CHECKPOINT_S": "0"}


def killed_sweep(tiny_shards: str, tmp_path: Path, max_failures: int) -> tuple[int, str, str, list[dict]]:
    """Sweep "died" with the first trial's process SIGKILLed once it has reported (and checkpointed) 2 epochs: the
    driver's exit code, its output, the killed trial's id and its metrics.json epochs when it was killed."""
    cmd = sweep_command(tiny_shards, tmp_path, *([f"train.max_failures={max_failures}"] * (max_failures > 0)))
    sweep = tmp_path / "sweeps" / "died"
    with open(tmp_path / "out.log", "w") as log:
        driver = subprocess.Popen(cmd, cwd=tmp_path, env=SWEEP_ENV, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            # 2 epochs: Tune registers a checkpoint once the trial's process has saved it, after the result it came
            # with, so the first epoch's is registered (its restart resumes there) once the second is reported
            while not (reported := epochs_by_trial(sweep)) or max(reported.values()) < 2:
                assert driver.poll() is None and time.monotonic() < deadline, "no trial reported 2 epochs in time"
                time.sleep(0.05)
            (killed,) = reported
            trial_process(driver).send_signal(signal.SIGKILL)
            before = json.loads((sweep / "checkpoints" / "trials" / killed / "metrics.json").read_text())["history"]
            driver.wait(400)
        finally:
            if driver.poll() is None:
                kill_group(driver)
    assert 2 <= len(before) < EPOCHS, "the trial was killed too late to have epochs left to train"
    return driver.returncode, (tmp_path / "out.log").read_text(), killed, before


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_whose_process_is_killed_is_restarted_from_its_checkpoint_by_train_max_failures(tiny_shards, tmp_path):
    """The first trial's process SIGKILLed once it has reported (and checkpointed) 2 epochs. With
    train.max_failures=1 Tune restarts it from that checkpoint and the sweep ends whole (exit 0): its epochs counted
    once, those before the kill not trained again, both trials on the record. With 0 (the default) it ends as ERROR:
    `test_a_failed_trial_is_run_again_from_its_checkpoint_by_retry_failed`."""
    code, out, killed, before = killed_sweep(tiny_shards, tmp_path, 1)
    sweep = tmp_path / "sweeps" / "died"
    assert code == 0, out[-3000:]
    assert (f"avdis sweep: trial {killed}: its process died; restarting it from its last checkpoint (restart 1 of "
            "train.max_failures=1)") in out, out[-3000:]
    trials = pd.read_parquet(sweep / "trials.parquet").set_index("trial_id")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all() and (trials["epochs"] == EPOCHS).all()
    assert sorted(trials["order"]) == [1, 2] and trials["error"].isna().all()
    after = json.loads((sweep / "checkpoints" / "trials" / killed / "metrics.json").read_text())["history"]
    assert [e["epoch"] for e in after] == list(range(1, EPOCHS + 1))  # each epoch once
    assert after[0] == before[0]  # epoch 1 came back from the checkpoint (its timings too), not trained again
    summary = json.loads((sweep / "pareto.json").read_text())
    assert len(summary["hypervolume_history"]) == 2 and set(summary["front"]) <= set(trials.index)


@pytest.mark.ray
@pytest.mark.slow
def test_a_failed_trial_is_run_again_from_its_checkpoint_by_retry_failed(tiny_shards, tmp_path):
    """With train.max_failures=0 (the default) the killed trial ends as ERROR and the sweep exits 1, listing it with
    the train.max_failures that would have restarted it and saying to rerun with --retry-failed once the cause is
    fixed. Rerun as before, it stays failed. Rerun with --retry-failed (and another setting) it is refused as ever;
    rerun with --retry-failed alone, Tune runs it again from its last checkpoint (`resume_errored`): the sweep exits 0,
    its row TERMINATED with its metrics, each epoch once in its metrics.json (epoch 1 from the checkpoint, not trained
    again), no trial more. Before, a failed trial was never run again: the whole sweep was to be started over. So too
    where its process died while Tune saved its checkpoint, which left Tune's stop of the trial held in its saved
    state: until 2026-12-05 the retried trial ran to its first checkpoint and ended there, STOPPED."""
    code, out, killed, before = killed_sweep(tiny_shards, tmp_path, 0)
    sweep = tmp_path / "sweeps" / "died"
    history = sweep / "checkpoints" / "trials" / killed / "metrics.json"
    assert code == 1, out[-3000:]
    trials = pd.read_parquet(sweep / "trials.parquet").set_index("trial_id")
    assert len(trials) == 2 and (trials.drop(killed)["status"] == "TERMINATED").all()
    assert trials.loc[killed, "status"] == "ERROR" and trials.loc[killed, "epochs"] < EPOCHS
    assert (f"  {killed} (method.name=" in out and "the trial's process died (killed, out of memory, or its node "
            "lost; restarts allowed: train.max_failures=0): train.max_failures=1 would have restarted it from "
            "its last checkpoint\n") in out, out[-3000:]
    assert "Rerun the same command with --retry-failed once the cause is fixed" in out, out[-3000:]

    def rerun(*more: str) -> tuple[int, str]:
        done = subprocess.run(sweep_command(tiny_shards, tmp_path, *more), cwd=tmp_path, env=SWEEP_ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400, start_new_session=True)
        return done.returncode, done.stdout

    code, out = rerun()
    assert code == 1 and "--retry-failed" not in out.split("Tune's error file")[0], out[-3000:]
    assert pd.read_parquet(sweep / "trials.parquet").set_index("trial_id").loc[killed, "status"] == "ERROR"
    code, out = rerun("--retry-failed", f"train.epochs={EPOCHS + 1}")  # the settings are still the sweep's
    assert code == 2 and "train.epochs" in out, out[-3000:]

    # where the process died while Tune saved its checkpoint, Tune held its stop of the failed trial until that save,
    # and saved it so in its state (seen in a sweep whose trial was SIGKILLed there): set here, wherever the kill above
    # fell. Restored with the state, it stopped the retried trial at its first checkpoint: STOPPED, with no scheduler
    (state_file,) = sorted((sweep / "checkpoints").glob("died-search/experiment_state-*.json"))[-1:]
    state = json.loads(state_file.read_text())
    state["runner_data"]["_cached_trial_decisions"][killed] = "STOP"
    state_file.write_text(json.dumps(state))
    code, out = rerun("--retry-failed")
    assert code == 0, out[-3000:]
    assert ("avdis sweep died: --retry-failed: retrying 1 failed trial (1 search), each from its last checkpoint "
            "(from its start where it has none)") in out, out[-3000:]
    trials = pd.read_parquet(sweep / "trials.parquet").set_index("trial_id")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all() and (trials["epochs"] == EPOCHS).all()
    assert sorted(trials["order"]) == [1, 2] and trials["error"].isna().all()
    assert trials.loc[killed, ["val_emotion_acc", "val_leakage", "emotion_acc", "leakage"]].notna().all()
    after = json.loads(history.read_text())["history"]
    assert [e["epoch"] for e in after] == list(range(1, EPOCHS + 1))  # each epoch once
    assert after[0] == before[0]  # epoch 1 came back from the checkpoint, not trained again
    summary = json.loads((sweep / "pareto.json").read_text())
    assert set(summary["front"]) <= set(trials.index)


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_whose_node_is_lost_is_restarted_on_another_node_from_its_checkpoint(tiny_shards, tmp_path):
    """On a cluster a trial's process dies with its node: a spot instance reclaimed, a node that crashed. A real
    `ray.cluster_utils.Cluster` (its head holds no trial, one worker node of a trial's CPU): the first trial's node is
    drained as preempted and removed once the trial has reported 2 epochs, another node added, and that one removed
    unannounced (a crash) once the restarted trial has reported 4, and a third added. Each time Tune restarts the trial
    on the new node from its checkpoint in the sweep's storage: the preemption as no failure (it says so), so the
    crash is restart 1 of train.max_failures=1 (said as its node lost) and the sweep ends whole (exit 0), each epoch
    once."""
    from ray._raylet import GcsClient
    from ray.cluster_utils import Cluster
    from ray.core.generated.autoscaler_pb2 import DrainNodeReason

    from conftest import free_port, ray_roots, stop_ray

    temp = tempfile.mkdtemp(prefix="avl-", dir="/tmp")  # a Ray temp dir of its own: see test_train_multinode's cluster
    sweep = tmp_path / "sweeps" / "lost"
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RAY_TMPDIR", temp)
            env.delenv("RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE", raising=False)
            # a lost node is found by the head's health checks (Ray's defaults: 15 s of them), here in about 2 s
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "include_dashboard": False, "dashboard_port": free_port(),
                "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                                   "health_check_failure_threshold": 2}})
            try:
                node = cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config",
                       str(ROOT / "jobs" / "configs" / "smoke.yaml"), "--storage", str(tmp_path / "sweeps"), "--name",
                       "lost", f"data.shards={tiny_shards}", f"ray.address={cluster.address}", "sweep.num_samples=2",
                       "sweep.max_concurrent=1", "sweep.scheduler.type=none", f"train.epochs={EPOCHS}",
                       "probe.epochs=40", "train.max_failures=1"]
                driver_env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
                              "TUNE_GLOBAL_CHECKPOINT_S": "0", "PYTHONPATH": str(ROOT)}
                with open(tmp_path / "out.log", "w") as log:
                    driver = subprocess.Popen(cmd, cwd=tmp_path, env=driver_env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
                    try:
                        deadline = time.monotonic() + 300

                        def reported(epochs: int) -> dict[str, int]:
                            while not (seen := epochs_by_trial(sweep)) or max(seen.values()) < epochs:
                                assert driver.poll() is None and time.monotonic() < deadline, \
                                    f"no trial reported {epochs} epochs in time"
                                time.sleep(0.05)
                            return seen

                        (lost,) = reported(2)  # its checkpoint of epoch 1 at least is registered: see the test above
                        history = sweep / "checkpoints" / "trials" / lost / "metrics.json"
                        before = json.loads(history.read_text())["history"]
                        # as Ray's autoscaler drains a spot instance about to be reclaimed; then it is gone
                        accepted, why = GcsClient(address=cluster.address).drain_node(
                            node.node_id, DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"), "reclaimed",
                            int(time.time() * 1000) + 1)
                        assert accepted, why
                        time.sleep(0.01)  # past the drain's deadline: Ray reads the node's death as that preemption
                        cluster.remove_node(node, allow_graceful=False)
                        node = cluster.add_node(num_cpus=1)
                        assert list(reported(4)) == [lost]  # the restarted trial, on the second node
                        restarted = json.loads(history.read_text())["history"]
                        cluster.remove_node(node, allow_graceful=False)  # unannounced: a crash
                        cluster.add_node(num_cpus=1)
                        driver.wait(300)
                    finally:
                        if driver.poll() is None:
                            kill_group(driver)
            finally:
                stop_ray(cluster.shutdown, ray_roots(*cluster.list_all_nodes()))  # its raylets, by their handles
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    out = (tmp_path / "out.log").read_text()
    assert driver.returncode == 0, out[-3000:]
    assert 2 <= len(before) < 4 <= len(restarted) < EPOCHS, "a node was lost too late to have epochs left to train"
    assert (f"avdis sweep: trial {lost}: its node was preempted; restarting it from its last checkpoint (Ray counts a "
            "preemption as no failure: Tune restarts the trial whatever train.max_failures says; failures so far: "
            "0)") in out, out[-3000:]
    # Ray's error names the crashed node's death: said so, not 'its process died'
    assert (f"avdis sweep: trial {lost}: its node was lost; restarting it from its last checkpoint (restart 1 of "
            "train.max_failures=1)") in out, out[-3000:]
    trials = pd.read_parquet(sweep / "trials.parquet").set_index("trial_id")
    assert len(trials) == 2 and (trials["status"] == "TERMINATED").all() and (trials["epochs"] == EPOCHS).all()
    assert sorted(trials["order"]) == [1, 2] and trials["error"].isna().all()
    after = json.loads(history.read_text())["history"]
    assert [e["epoch"] for e in after] == list(range(1, EPOCHS + 1))  # each epoch once
    assert after[0] == before[0]  # epoch 1 came back from the checkpoint, not trained again on the new node


@pytest.mark.ray
def test_a_trial_that_failed_of_an_error_a_restart_meets_again_is_not_retried(tune_records):
    """Tune restarts a failed trial whatever it failed of, up to train.max_failures (-1: for ever): an avdis error
    that is not `retryable` (a non-finite loss, a damaged shard) would meet every restart, for ever. The recorder, told
    of the restart, makes the restart Tune has begun the trial's last: it meets the error again and ends on it. A dead
    process, or storage that did not answer, is retried as Tune says."""
    from ray.exceptions import ActorDiedError

    from avdis.errors import AvdisError
    from avdis.storage import StorageError

    recorder = recorder_of(tune_records, -1)

    def failed(trial_id: str, error: BaseException):
        trial = tune_trial(tune_records, trial_id, -1)
        recorder.on_trial_start(0, [], trial)
        trial.handle_error(error)  # as Tune's controller does before it decides on a restart
        assert trial.should_recover()
        recorder.on_trial_recover(1, [], trial)
        return trial

    fault = "epoch 1, step 2 of 3: non-finite {'loss': nan}; training diverged: lower train.lr"
    trial = failed("nan", in_trial(AvdisError(fault)))
    assert trial.max_failures == 0
    trial.handle_error(in_trial(AvdisError(fault)))  # the restart, from the last checkpoint, meets it again
    assert not trial.should_recover()  # the restart's failure is its last
    recorder.on_trial_error(2, [], trial)
    (row,) = results.read_trials(str(tune_records)).query("trial_id == 'nan'").to_dict("records")
    assert row["status"] == "ERROR" and row["error"].strip().splitlines()[-1].endswith(fault)

    for trial_id, error in (("died", ActorDiedError()),
                            ("blip", in_trial(StorageError("s3://b/x: timed out")))):
        trial = failed(trial_id, error)
        trial.handle_error(error)
        assert trial.max_failures == -1 and trial.should_recover()  # restarted again, as Tune says


def test_a_sweep_tune_restarts_by_train_max_failures_resumes_only_with_that_value(tmp_path):
    """Tune restores its experiment with the FailureConfig it started with (and each trial with its own
    max_failures): resumed with another train.max_failures, a sweep of one-worker trials would go on restarting them
    by the old one. Refused, saying which; a sweep with trials of more workers (Ray Train's restarts) may change it."""
    from avdis.errors import UsageError
    from avdis.tune.spec import check_restarts_kept, record_spec

    started = [f"sweep.storage={tmp_path}", "sweep.name=s1", "train.max_failures=1"]
    record_spec(f"{tmp_path}/s1", C.load(None, started), "0" * 16)
    record = json.loads((tmp_path / "s1" / "sweep.json").read_text())
    check_restarts_kept(f"{tmp_path}/s1", C.load(None, started), record, in_process=True)
    changed = C.load(None, [*started, "train.max_failures=3"])
    with pytest.raises(UsageError, match=r"restarts up to the train.max_failures the sweep was started with \(1\), "
                                         r"restored with its saved experiment: train.max_failures=3 would change "
                                         r"nothing. Resume it with train.max_failures=1"):
        check_restarts_kept(f"{tmp_path}/s1", changed, record, in_process=True)
    check_restarts_kept(f"{tmp_path}/s1", changed, record, in_process=False)


@pytest.mark.ray
def test_what_a_restart_and_a_trial_lost_to_its_dead_process_say_is_what_ray_did(tune_records, capsys):
    """Ray counts no failure for a process that died with its node preempted (drained by the autoscaler: a spot
    instance reclaimed), so Tune restarts that trial whatever train.max_failures says, 0 included: it read 'restart 0
    of train.max_failures=0'. A trial's num_failures counts its failures, not its deaths: one restarted after a storage
    error whose process then died read 'died 2 times'. And one whose restart the non-retryable rule made its last, and
    that died in it, was listed as one train.max_failures=2 would have restarted, given 3."""
    from ray.exceptions import ActorDiedError

    from avdis.errors import AvdisError
    from avdis.storage import StorageError

    def preempted() -> ActorDiedError:
        died = ActorDiedError()
        died._preempted = True  # as Ray makes it of a node the autoscaler drained as preempted
        return died

    # preempted at train.max_failures=0: Tune restarts it all the same
    at_zero = recorder_of(tune_records, 0)
    t = tune_trial(tune_records, "spot", 0)
    at_zero.on_trial_start(0, [], t)
    t.handle_error(preempted())
    assert t.should_recover()  # Ray's rule, not avdis's
    at_zero.on_trial_recover(1, [], t)
    out = capsys.readouterr().out
    assert "restart 0 of" not in out, out
    assert ("avdis sweep: trial spot: its node was preempted; restarting it from its last checkpoint (Ray counts a "
            "preemption as no failure: Tune restarts the trial whatever train.max_failures says; failures so far: "
            "0)") in out, out

    # restarted after a storage error, then its process died: died once, in its second failure
    said = died_after(tune_records, "blip", 1, StorageError("s3://b/x: timed out"))
    assert said.endswith(
        "\nthe trial's process died (its failure 2) (killed, out of memory, or its node lost; restarts allowed: "
        "train.max_failures=1): train.max_failures=2 would have restarted it from its last checkpoint"), said

    # a non-retryable error made its restart its last, and its process died in that restart: no value would do
    said = died_after(tune_records, "nan", 3, AvdisError("epoch 1, step 2 of 3: non-finite {'loss': nan}"))
    assert "would have restarted it from its last checkpoint" not in said, said
    assert said.endswith("restarts allowed: train.max_failures=3): the restart after an error a restart meets again "
                         "was its last, so no train.max_failures would have restarted it")


@pytest.mark.ray
def test_a_restart_and_an_end_are_said_of_the_failure_at_hand(tune_records, capsys):
    """Tune pickles a trial's error only where it is a Ray task's or actor's (`Trial.handle_error`), over the last
    one; a failure of another kind (Tune's own error for a callback that raised as it stopped the trial) left the
    earlier failure's there, and the recorder judged and said the failure at hand by it. A trial restarted after its
    node was preempted, whose stop then failed, was restarted 'as no failure' ('failures so far: 1'); one restarted
    after its process died, whose stop then failed, was listed as a process that died twice."""
    from ray.exceptions import ActorDiedError

    twice = recorder_of(tune_records, 2)
    t = tune_trial(tune_records, "spot", 2)
    twice.on_trial_start(0, [], t)
    t.handle_error(died_with_its_node("AUTOSCALER_DRAIN_PREEMPTED"))
    twice.on_trial_recover(1, [], t)
    twice.on_trial_start(2, [], t)
    t.handle_error(stopping_failed())
    assert t.num_failures == 1 and t.should_recover()  # counted, by train.max_failures
    capsys.readouterr()
    twice.on_trial_recover(3, [], t)
    assert capsys.readouterr().out == ("avdis sweep: trial spot: it failed; restarting it from its last checkpoint "
                                       "(restart 1 of train.max_failures=2)\n")

    once = recorder_of(tune_records, 1)
    t = tune_trial(tune_records, "died", 1)
    once.on_trial_start(0, [], t)
    t.handle_error(ActorDiedError())
    once.on_trial_recover(1, [], t)
    once.on_trial_start(2, [], t)
    t.handle_error(stopping_failed())
    assert not t.should_recover()
    once.on_trial_error(3, [], t)
    said = recorded_error(tune_records, "died")
    assert said.endswith("OSError: [Errno 5] Input/output error\n\n"), said  # Tune's text, no more

    # the same error as the pickled one, the failure at hand again: judged by it
    t.handle_error(ActorDiedError())
    once.on_trial_error(4, [], t)
    said = recorded_error(tune_records, "died")
    assert "\nthe trial's process died (its failure 3)" in said, said


@pytest.mark.ray
def test_a_trial_whose_node_was_lost_is_said_to_have_lost_its_node(tune_records, capsys):
    """Ray's error for a process that died with its node names the node's death; a crashed node's trial was said to
    restart, or listed as failed, because 'its process died'."""
    restarted = recorder_of(tune_records, 1)
    t = tune_trial(tune_records, "crash", 1)
    restarted.on_trial_start(0, [], t)
    t.handle_error(died_with_its_node("UNEXPECTED_TERMINATION"))
    restarted.on_trial_recover(1, [], t)
    assert capsys.readouterr().out == ("avdis sweep: trial crash: its node was lost; restarting it from its last "
                                       "checkpoint (restart 1 of train.max_failures=1)\n")

    ended = recorder_of(tune_records, 0)
    t = tune_trial(tune_records, "gone", 0)
    ended.on_trial_start(0, [], t)
    t.handle_error(died_with_its_node("UNEXPECTED_TERMINATION"))
    assert not t.should_recover()
    ended.on_trial_error(1, [], t)
    said = recorded_error(tune_records, "gone")
    assert said.endswith("\nthe trial's node was lost (restarts allowed: train.max_failures=0): "
                         "train.max_failures=1 would have restarted it from its last checkpoint"), said


def ends_once(config: dict) -> None:
    """A trial that reports its last epoch and ends, counting its runs in the folder `config['runs']`."""
    from ray import tune

    runs = Path(config["runs"])
    (runs / str(len(list(runs.iterdir())))).touch()
    tune.report({"epoch": config["epochs"], "emotion_acc": 0.5, "leakage": 0.4})


class StorageDown:
    """The sweep's storage, down from `down()` until `up()`: trials.parquet is a folder there, which a write cannot
    replace (`storage.write_bytes` raises StorageError, as for S3 that does not answer)."""

    def __init__(self, sweep: Path):
        self.table = sweep / results.TRIALS

    def down(self) -> None:
        if not self.table.is_dir():  # written already or not yet
            self.table.unlink(missing_ok=True)
            self.table.mkdir()
            (self.table / "in-the-way").touch()

    def up(self) -> None:
        shutil.rmtree(self.table, ignore_errors=True)


@pytest.mark.ray
def test_a_trial_whose_row_cannot_be_written_as_it_ends_is_not_run_again_and_its_row_is_written_later(
        tune_records, tmp_path, capsys):
    """A callback that raises in on_trial_complete makes Tune fail the trial (`TuneController.stop_trial`) and, by
    train.max_failures, run it again: a trial whose row the recorder could not write as it ended (its storage down)
    was trained again from its last checkpoint, its second end ignored, its row never written. A real Tune run: the
    trial runs once and ends TERMINATED, the row kept and written as the experiment ends, once storage is back."""
    from ray import tune
    import ray.cloudpickle as cloudpickle

    storage = StorageDown(tune_records)

    class Down(tune.Callback):  # before the recorder, as a failing storage would be
        def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
            storage.down()

        def on_experiment_end(self, trials: list, **info) -> None:
            storage.up()

    recorder = recorder_of(tune_records, 1)
    (tmp_path / "runs").mkdir()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    try:
        grid = tune.Tuner(ends_once, param_space={"method": "multitask", "runs": str(tmp_path / "runs"),
                                                  "epochs": recorder.cfg.train.epochs},
                          run_config=tune.RunConfig(name="end", storage_path=str(tmp_path / "tune"), verbose=0,
                                                    callbacks=[Down(), recorder],
                                                    failure_config=tune.FailureConfig(max_failures=1))).fit()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert len(list((tmp_path / "runs").iterdir())) == 1  # not run again
    assert grid.num_errors == 0 and grid[0].metrics["epoch"] == recorder.cfg.train.epochs
    (row,) = results.read_trials(str(tune_records)).to_dict("records")
    assert (row["status"], row["order"], row["epochs"]) == ("TERMINATED", 1, recorder.cfg.train.epochs)
    err = capsys.readouterr().err
    assert (f"avdis sweep: warning: trial {row['trial_id']} ended (TERMINATED), but trials.parquet in {tune_records} "
            "could not be written (") in err, err
    assert ("its row is kept and written with the sweep's next write (at the latest as the experiment ends), and "
            "the trial is not run again") in err, err


@pytest.mark.ray
def test_the_rows_of_ended_trials_still_unwritten_as_the_experiment_ends_are_written_or_given(tune_records):
    """A row the recorder owes (its trial ended while storage was down) is written by the next write, whatever trial's
    it is; as the experiment ends, storage still down, it is tried again, and then the error raised gives the row."""
    storage = StorageDown(tune_records)
    recorder = recorder_of(tune_records, 1)
    recorder.END_TRIES = (0.0,)  # one more try, at once
    full = {"epoch": recorder.cfg.train.epochs, "emotion_acc": 0.5, "leakage": 0.4}

    first = tune_trial(tune_records, "first", 1)
    recorder.on_trial_start(0, [], first)
    recorder.on_trial_result(1, [], first, full)
    storage.down()
    recorder.on_trial_complete(2, [], first)  # said, not raised
    with pytest.raises(results.ResultsError, match=r"trials.parquet could not be written as the sweep's experiment "
                                                   r"ended \(.*\): the rows of ended trials first are not in it\. "
                                                   r"Once storage answers, set their rows in it to these before the "
                                                   r"sweep is resumed, and `avdis report .*` redraws its front from "
                                                   r"it: Tune saved them as ended, so a rerun does not run them "
                                                   r"again, and closes their rows, still running, as lost, their "
                                                   r"results off the front\. Their rows, as recorded: "
                                                   r'\{"first": \{.*"status": "TERMINATED"'):
        recorder.on_experiment_end([first])
    storage.up()
    second = tune_trial(tune_records, "second", 1)
    recorder.on_trial_start(3, [], second)  # the next write: the first's row with it
    rows = results.read_trials(str(tune_records)).set_index("trial_id")
    assert (rows.loc["first", "status"], rows.loc["first", "order"]) == ("TERMINATED", 1)
    assert rows.loc["second", "status"] == "RUNNING"
    recorder.on_experiment_end([first, second])  # nothing owed


@pytest.mark.ray
def test_a_restarted_trials_wall_time_counts_what_its_dead_process_lost(tune_records):
    """A restarted trial's wall time went on from its last result: the part of an epoch lost with its dead process
    (here 0.5 s) was counted nowhere. It runs to the failure, and from the restart on; not while the trial waited to
    restart (another 0.5 s)."""
    from ray.exceptions import ActorDiedError

    recorder = recorder_of(tune_records, 1)
    t = tune_trial(tune_records, "died", 1)
    began = time.time()
    recorder.on_trial_start(0, [], t)
    started = time.time()
    recorder.on_trial_result(1, [], t, {"epoch": 1, "emotion_acc": 0.5})
    time.sleep(0.5)  # epoch 2, lost with the process
    died = time.time()
    t.handle_error(ActorDiedError())
    recorder.on_trial_recover(1, [], t)
    told = time.time()
    time.sleep(0.5)  # waiting for its restart
    restart = time.time()
    recorder.on_trial_start(2, [], t)
    restarted = time.time()
    recorder.on_trial_result(3, [], t, {"epoch": 2, "emotion_acc": 0.5})
    ended = time.time()
    (row,) = results.read_trials(str(tune_records)).to_dict("records")
    assert died - started <= row["wall_s"] <= (told - began) + (ended - restart), row["wall_s"]

    time.sleep(0.3)  # epoch 3, lost with the process: counted in the failed trial's too
    died_again = time.time()
    t.handle_error(ActorDiedError())
    assert not t.should_recover()
    recorder.on_trial_error(4, [], t)
    ended = time.time()
    (row,) = results.read_trials(str(tune_records)).to_dict("records")
    assert ((died - started) + (died_again - restarted) <= row["wall_s"]
            <= (told - began) + (ended - restart)), row["wall_s"]


def reports_epochs(config: dict) -> None:
    """A trial that reports each of its epochs, counting its runs in the folder `config['runs']`, and then fails where
    `config['fails']`."""
    from ray import tune

    runs = Path(config["runs"])
    (runs / str(len(list(runs.iterdir())))).touch()
    for epoch in range(1, config["epochs"] + 1):
        tune.report({"epoch": epoch, "emotion_acc": 0.5, "leakage": 0.4})
    if config["fails"]:
        raise ValueError("the trial's own failure")


def run_with(storage_callback, recorder, tmp_path: Path, fails: bool = False):
    """A real Tune run of one `reports_epochs` trial, train.max_failures=0, `storage_callback` before the recorder."""
    from ray import tune
    import ray.cloudpickle as cloudpickle

    (tmp_path / "runs").mkdir()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    try:
        return tune.Tuner(reports_epochs, param_space={"method": "multitask", "runs": str(tmp_path / "runs"),
                                                       "epochs": recorder.cfg.train.epochs, "fails": fails},
                          run_config=tune.RunConfig(name="blip", storage_path=str(tmp_path / "tune"), verbose=0,
                                                    callbacks=[storage_callback, recorder],
                                                    failure_config=tune.FailureConfig(max_failures=0))).fit()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.ray
def test_storage_down_from_a_trials_start_to_its_second_result_neither_fails_nor_restarts_it(
        tune_records, tmp_path, capsys):
    """A write that storage did not take at a trial's start or result raised out of the recorder's hook, and a callback
    that raises there ends Tune's run (`TuneController._schedule_trial_task` raises it out of `step`): a 2-second S3
    blip ended the sweep. A real Tune run, storage down from the trial's start until its second epoch's result: the
    trial runs once to its end, the failure is said once, the rows owed are written with the write storage takes."""
    from ray import tune

    storage = StorageDown(tune_records)

    class Blip(tune.Callback):  # before the recorder, as a failing storage would be
        def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
            storage.down()

        def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
            if result["epoch"] == 2:
                storage.up()

    recorder = recorder_of(tune_records, 0)
    grid = run_with(Blip(), recorder, tmp_path)
    assert len(list((tmp_path / "runs").iterdir())) == 1  # run once
    assert grid.num_errors == 0 and grid[0].metrics["epoch"] == recorder.cfg.train.epochs
    (row,) = results.read_trials(str(tune_records)).to_dict("records")
    assert (row["status"], row["order"], row["epochs"]) == ("TERMINATED", 1, recorder.cfg.train.epochs)
    err = capsys.readouterr().err
    assert err.count("could not be written") == 1, err  # said once: at the start, not again at epoch 1
    assert (f"avdis sweep: warning: trial {row['trial_id']} started, but trials.parquet in {tune_records} could not "
            "be written (") in err, err
    assert ("its row is kept and written with the sweep's next write (at the latest as the experiment ends), and the "
            "trial runs on") in err, err
    assert f"avdis sweep: trials.parquet in {tune_records} written again, after 2 writes it did not take" in err, err


@pytest.mark.ray
def test_a_trial_that_fails_while_storage_is_down_has_its_error_written_as_the_experiment_ends(
        tune_records, tmp_path, capsys):
    """A write that storage did not take as a trial failed raised out of on_trial_error, which ends Tune's run: the
    sweep ended on a storage blip, the trial's error unrecorded. A real Tune run, storage down from the trial's
    failure until the experiment ends: the run ends, and its row, ERROR with the trial's error, is written then."""
    from ray import tune

    storage = StorageDown(tune_records)

    class Down(tune.Callback):  # before the recorder, as a failing storage would be
        def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
            storage.down()

        def on_experiment_end(self, trials: list, **info) -> None:
            storage.up()

    recorder = recorder_of(tune_records, 0)
    grid = run_with(Down(), recorder, tmp_path, fails=True)
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert grid.num_errors == 1
    (row,) = results.read_trials(str(tune_records)).to_dict("records")
    assert (row["status"], row["epochs"]) == ("ERROR", recorder.cfg.train.epochs)
    assert "ValueError: the trial's own failure" in row["error"], row["error"]
    err = capsys.readouterr().err
    assert (f"avdis sweep: warning: trial {row['trial_id']} failed, but trials.parquet in {tune_records} could not be "
            "written (") in err, err


@pytest.mark.ray
def test_an_experiment_cut_short_while_storage_is_down_says_its_running_trials_rows_are_behind(tune_records, capsys):
    """Rows of trials still running as the experiment ends (interrupted, its driver failed) that storage did not take
    are not waited for nor raised (over the interruption's own end): the resume runs those trials on and writes them.
    The outage's failed writes are said once. On the old code the first result's write raised out of the hook."""
    storage = StorageDown(tune_records)
    recorder = recorder_of(tune_records, 0)
    recorder.END_TRIES = (60.0,)  # not waited for
    running = tune_trial(tune_records, "running", 0)
    recorder.on_trial_start(0, [], running)
    storage.down()
    for epoch in (1, 2):
        recorder.on_trial_result(epoch, [], running, {"epoch": epoch, "emotion_acc": 0.5, "leakage": 0.4})
    began = time.monotonic()
    recorder.on_experiment_end([running])
    assert time.monotonic() - began < 30
    err = capsys.readouterr().err
    assert err.count("could not be written") == 2, err  # the outage's first failure, and the end's
    assert ("avdis sweep: warning: trial running reported epoch 1, but trials.parquet in "
            f"{tune_records} could not be written (") in err, err
    assert (f"avdis sweep: warning: trials.parquet in {tune_records} could not be written as the experiment ended ("
            in err), err
    assert ("the rows of trials running, still running, are behind in it; the sweep's resume runs them on and writes "
            "them") in err, err
    storage.up()
    recorder.on_trial_result(3, [], running, {"epoch": 3, "emotion_acc": 0.5, "leakage": 0.4})
    (row,) = results.read_trials(str(tune_records)).to_dict("records")
    assert (row["status"], row["epochs"]) == ("RUNNING", 3)
    assert f"trials.parquet in {tune_records} written again, after 3 writes it did not take" in capsys.readouterr().err


@pytest.mark.ray
def test_a_write_that_fails_of_its_rows_not_of_storage_is_raised(tune_records):
    """Only storage's failures (StorageError) are kept for a later write: a row the table cannot hold fails every write
    again, and the sweep would run on recording nothing."""
    recorder = recorder_of(tune_records, 0)
    trial = tune_trial(tune_records, "odd", 0)
    recorder.on_trial_start(0, [], trial)
    recorder.rows["odd"]["lr"] = "fast"  # a value trials.parquet's schema has no place for
    with pytest.raises(pa.ArrowInvalid, match="fast"):
        recorder.on_trial_result(1, [], trial, {"epoch": 1, "emotion_acc": 0.5, "leakage": 0.4})
