"""A one-worker DeepSpeed sweep trial trains in the Tune trial's own process (no Ray Train worker group) over a
one-process group, and a killed driver's rerun resumes it from the checkpoint it gave Tune."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from test_sweep_e2e import kill_group

from avdis import config as C, results, storage
from avdis.train import checkpoint as ck, engine, loop

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 12  # the trial trains a few epochs more in the 0.3 s the driver is given after its 2nd result
STOPPED_EPOCHS = 6  # a signal sent at once after the 2nd result finds the trial with epochs still to train
# The leakage probe only at a trial's last epoch, where a test asserts nothing of the probe: it took most of each
# epoch (e.g. 1.2 s of 1.5 s at probe.epochs=40), and it shapes no weight (the probe judges frozen embeddings)
PROBE_LAST = "train.probe_every=0"


def test_solo_group_trains_deepspeed_in_this_process_and_leaves_it_as_it_was(tiny_shards, tmp_path, monkeypatch):
    import torch.distributed as dist

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    run = str(tmp_path / "run")
    for epochs in (1, 2):  # the second group in this process resumes the first one's DeepSpeed checkpoint
        cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
            f"data.shards={tiny_shards}", f"train.epochs={epochs}", "probe.epochs=20"])
        with engine.solo_group(cfg.train):
            assert dist.get_world_size() == 1 and os.environ["LOCAL_RANK"] == "0"
            history = loop.run(cfg, loop.LocalReporter(run, cfg))
        assert not dist.is_initialized() and "LOCAL_RANK" not in os.environ  # as it was before
    assert [e["epoch"] for e in history] == [1, 2] and history[-1]["world_size"] == 1
    assert list(Path(run).glob("checkpoint_epoch_0002/engine/ckpt/*optim_states.pt"))  # ZeRO-2's optimizer state


def test_deepspeed_bf16_trains_every_input_of_the_model(tiny_shards, tmp_path, monkeypatch):
    """DeepSpeed's bf16 engine (train.precision auto on a GPU) casts the weights to bf16; the audio encoder's
    contour features then raised "Unsupported dtype BFloat16" in torch.fft at the first batch."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"data.shards={tiny_shards}", "train.epochs=1", "train.precision=bf16", "probe.epochs=20"])
    assert cfg.train.strategy == "deepspeed" and cfg.model.contours and cfg.model.modality == "av"
    with engine.solo_group(cfg.train):
        history = loop.run(cfg, loop.LocalReporter(str(tmp_path / "run"), cfg))
    assert engine.compute_dtype(cfg.train) == torch.bfloat16 and math.isfinite(history[-1]["loss"])


def test_a_trial_on_shards_made_again_since_the_sweep_started_stops_before_training(tiny_corpus, tiny_shards, tmp_path,
                                                                                    monkeypatch):
    """Each trial opens the manifest as it starts, and nothing compared it with the hash its sweep recorded: a trial
    started after `avdis preprocess` made data.shards again mid-sweep trained on other shards than the first trials,
    and the front mixed the two; one started while the build ran was told to run `avdis preprocess` first (seen in a
    sweep of 2 trials, its shards made again while the first trained)."""
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards
    from avdis.data.shards import manifest_hash
    from avdis.data.stream import ShardsRebuilt
    from avdis.tune import spec, trial

    from conftest import TINY

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    shards = str(tmp_path / "shards")
    synthetic_shards(SynthConfig(**TINY), tiny_corpus, shards, shard_size=8)  # the same corpus, made again
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [f"data.shards={shards}", "train.epochs=1"])
    sweep_url = str(tmp_path / "sweep")
    spec.record_spec(sweep_url, cfg, manifest_hash(tiny_shards))  # as the sweep recorded them when it started
    was = rf"^{shards}: its shards were made again while this sweep ran \(manifest {manifest_hash(tiny_shards)} when "
    with pytest.raises(ShardsRebuilt, match=was + rf"the sweep started \(its sweep.json\), {manifest_hash(shards)} "):
        loop.run(cfg, loop.LocalReporter(str(tmp_path / "run"), cfg), trial.recorded_data(sweep_url, cfg),
                 trial=True)
    (tmp_path / "shards" / "manifest.parquet").unlink()  # a build under way: it was "run `avdis preprocess` first"
    with pytest.raises(ShardsRebuilt, match=was + r"the sweep started \(its sweep.json\), none whole \(a build under"):
        loop.run(cfg, loop.LocalReporter(str(tmp_path / "run"), cfg), trial.recorded_data(sweep_url, cfg),
                 trial=True)
    assert not (tmp_path / "run").exists()  # nothing trained


RANK = """
import sys, torch.distributed as dist
from avdis.data.stream import ShardsRebuilt
from avdis.config import DataConfig, S3Config
from avdis.train import loop
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method=sys.argv[2], rank=rank, world_size=2)
try:
    loop.open_checked(DataConfig(shards=sys.argv[3 + rank]), S3Config(), None)
except ShardsRebuilt as exc:
    print(exc)
dist.destroy_process_group()
"""


def test_ranks_of_one_run_that_opened_other_shards_all_stop(tiny_corpus, tiny_shards, tmp_path):
    """A run's ranks each open the manifest as they start: shards made again between two ranks' starts had one epoch's
    batches drawn from two builds. Each rank (two gloo processes) now stops, saying which manifests were opened."""
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards
    from avdis.data.shards import manifest_hash

    from conftest import TINY

    again = str(tmp_path / "shards")
    synthetic_shards(SynthConfig(**TINY), tiny_corpus, again, shard_size=8)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(r), f"file://{tmp_path}/store", tiny_shards, again],
                              env=env, stdout=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0]
    hashes = ", ".join(sorted([manifest_hash(tiny_shards), manifest_hash(again)]))
    assert all(f"its workers opened manifests {hashes}" in out for out in outs), outs


def epochs_reported(sweep: Path) -> int:
    """The most epochs any trial of the sweep has reported (0 before trials.parquet is written)."""
    return max(epochs_by_trial(sweep).values(), default=0)


@pytest.mark.ray
@pytest.mark.slow
def test_one_worker_deepspeed_trial_trains_in_its_process_and_resumes_from_its_tune_checkpoint(tiny_shards, tmp_path):
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           "--storage", str(tmp_path / "sweeps"), "--name", "inproc", f"data.shards={tiny_shards}",
           "sweep.num_samples=1", "sweep.scheduler.type=none",
           f"train.epochs={EPOCHS}", "probe.epochs=40", "ray.include_dashboard=false", PROBE_LAST]
    # Tune saves its experiment state (which checkpoint each trial has) at every step, not every 10 s.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    sweep = tmp_path / "sweeps" / "inproc"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:  # killed once the trial has reported (and checkpointed) 2 epochs
        deadline = time.monotonic() + 300
        while epochs_reported(sweep) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the trial reported no 2 epochs in time"
            time.sleep(0.2)
        time.sleep(0.3)
    finally:
        kill_group(first)
        log.close()
    states = list((sweep / "checkpoints" / "inproc-search").glob("experiment_state-*.json"))
    for state in states:  # whole, even when the kill came while Tune uploaded it
        json.loads(state.read_text())
    assert states
    (trial_dir,) = (sweep / "checkpoints" / "trials").iterdir()
    before = json.loads((trial_dir / "metrics.json").read_text())["history"]
    assert 2 <= len(before) < EPOCHS, "the driver was killed too late to leave the trial anything to resume"

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = json.loads((trial_dir / "metrics.json").read_text())["history"]
    assert [e["epoch"] for e in after] == list(range(1, EPOCHS + 1))
    assert after[0] == before[0]  # epoch 1 came back from the checkpoint (its timings too), not trained again

    # In the trial's own process: no Ray Train run beside metrics.json; the DeepSpeed checkpoints are Tune's.
    # (nor the temp file of a metrics.json write the kill cut short: the rerun's write of that file cleared it)
    assert sorted(p.name for p in trial_dir.iterdir()) == ["metrics.json"]
    tune_checkpoints = list((sweep / "checkpoints" / "inproc-search").glob("*/checkpoint_*/engine/ckpt"))
    assert tune_checkpoints and all(list(p.glob("*optim_states.pt")) for p in tune_checkpoints)
    trials = pd.read_parquet(sweep / "trials.parquet")
    assert list(trials["status"]) == ["TERMINATED"] and int(trials["epochs"].iloc[0]) == EPOCHS


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("stop, concurrent", [(signal.SIGINT, 1), (signal.SIGTERM, 2)], ids=["ctrl_c", "job_stop"])
def test_a_stopped_sweep_ends_unfinished_and_its_rerun_finishes_it(tiny_shards, tmp_path, stop, concurrent):
    """On SIGINT Tune saves its state and returns normally: the sweep used to print "done", confirm the part of a
    front it had and exit 0, its interrupted trial marked as lost. With every trial started (2 at a time) Tune's
    grid reads them all TERMINATED, which hid the interruption; SIGTERM (`ray job stop`) killed the driver before
    Tune saved its state. `ray job stop`'s driver runs with SIGINT blocked, as Ray starts every process of its own
    (`ray._private.services.start_ray_process`; the job supervisor unblocks it only for RAY_JOB_STOP_SIGNAL=SIGINT):
    the SIGINT the driver sent itself on SIGTERM stayed pending, and Tune never saved."""
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           "--storage", str(tmp_path / "sweeps"), "--name", "ctrlc", f"data.shards={tiny_shards}",
           "sweep.num_samples=2", f"sweep.max_concurrent={concurrent}", "sweep.scheduler.type=none",
           "sweep.confirm_seeds=1", f"train.epochs={STOPPED_EPOCHS}", "probe.epochs=40", "ray.include_dashboard=false",
           "train.cpus_per_worker=0.8", PROBE_LAST]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sweep = tmp_path / "sweeps" / "ctrlc"
    with open(tmp_path / "first.log", "w") as log:  # a file, not a pipe: a full pipe would stall the driver
        as_ray_starts_it = (lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})) if stop == signal.SIGTERM else None
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=as_ray_starts_it)
        try:
            deadline = time.monotonic() + 300
            while epochs_reported(sweep) < 2:  # epoch 1's checkpoint is then in Tune's state (it saves after a report)
                assert first.poll() is None and time.monotonic() < deadline, "the first trial reported no 2 epochs in time"
                time.sleep(0.2)
            first.send_signal(stop)  # what Ctrl-C, or `ray job stop`, sends the driver
            first.wait(120)
        finally:
            if first.poll() is None:
                kill_group(first)
    out = (tmp_path / "first.log").read_text()
    assert first.returncode == 130, out[-3000:]
    assert "interrupted before its 2 trials ended; Tune saved its state: rerun the same command to resume" in out, \
        out[-3000:]
    assert "done." not in out and not (sweep / "checkpoints" / "ctrlc-confirm").exists()
    before = {d.name: json.loads((d / "metrics.json").read_text())["history"]
              for d in (sweep / "checkpoints" / "trials").iterdir() if (d / "metrics.json").exists()}

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = {trial: history for trial, history in before.items() if len(history) >= 2}
    assert resumed, before
    for trial, history in resumed.items():  # from their checkpoints (epoch 1 with its timings), not from scratch
        after = json.loads((sweep / "checkpoints" / "trials" / trial / "metrics.json").read_text())["history"]
        assert after[0] == history[0], (trial, [e["train_s"] for e in history], [e["train_s"] for e in after])
    trials = pd.read_parquet(sweep / "trials.parquet")
    search = trials[trials["role"] == "search"]
    assert list(search["status"]) == ["TERMINATED"] * 2 and set(search["epochs"]) == {STOPPED_EPOCHS}
    assert (trials["role"] == "confirm").sum() >= 1


@pytest.mark.ray
@pytest.mark.slow
def test_the_checkpoints_of_a_trial_started_after_tunes_last_save_are_removed_once_the_resumed_sweep_ends(tiny_shards,
                                                                                                          tmp_path):
    """A trial the killed driver started after Tune last saved its experiment state is unknown to the restored state:
    the resumed sweep closes it as lost (`results.LOST`), and its checkpoint folders, which Tune neither restores from
    nor deletes, stayed in storage for ever (a model's weights each). Tune saves here only when it must (every
    `KEEP_CHECKPOINTS` checkpoints of a trial), so the second trial, started once the first ended, is unknown to it."""
    sweep, trials = killed_and_resumed(tiny_shards, tmp_path)
    lost = trials.index[trials["error"] == results.LOST]
    assert len(lost) == 1, trials[["status", "epochs", "error"]]
    experiment = sweep / "checkpoints" / "lost-search"
    kept = {trial: sorted(p.name for p in experiment.glob(f"run_trial_{trial}_*/checkpoint_*"))
            for trial in trials.index}
    assert kept.pop(lost[0]) == [] and all(len(names) == 2 for names in kept.values()), kept  # Tune's own kept


@pytest.mark.ray
@pytest.mark.slow
def test_the_ray_train_checkpoints_of_a_lost_multi_worker_trial_are_removed_once_the_resumed_sweep_ends(tiny_shards,
                                                                                                        tmp_path):
    """A lost trial of two workers keeps its checkpoints in its Ray Train run (`<checkpoints>/trials/<trial id>/`), not
    in its Tune trial folder: the resumed sweep removed those of a lost trial in its own process only, and a lost
    multi-worker trial's stayed for ever. The finished trials keep Ray Train's own `KEEP_CHECKPOINTS`."""
    sweep, trials = killed_and_resumed(tiny_shards, tmp_path, "train.workers=2", "train.strategy=ddp",
                                       "train.cpus_per_worker=0.5")
    lost = set(trials.index[trials["error"] == results.LOST])
    assert lost, trials[["status", "epochs", "error"]]
    kept = {trial: sorted(p.name for p in (sweep / "checkpoints" / "trials" / trial).iterdir()
                          if ck.CHECKPOINT_NAME.fullmatch(p.name))  # not Ray Train's record beside them
            for trial in trials.index}
    assert all(kept[trial] == [] for trial in lost), (lost, kept)
    assert all(len(names) == 2 for trial, names in kept.items() if trial not in lost), (lost, kept)


def killed_and_resumed(tiny_shards: str, tmp_path: Path, *settings: str) -> tuple[Path, pd.DataFrame]:
    """A 2-trial sweep (one at a time) killed once its second trial has reported (and checkpointed) its first epoch,
    then run again to its end; its folder and its trials."""
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           "--storage", str(tmp_path / "sweeps"), "--name", "lost", f"data.shards={tiny_shards}",
           "sweep.num_samples=2", "sweep.max_concurrent=1", "sweep.scheduler.type=none", "sweep.confirm_seeds=0",
           "train.epochs=4", "probe.epochs=40", "ray.include_dashboard=false", *settings]
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    sweep = tmp_path / "sweeps" / "lost"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while len(reported := epochs_by_trial(sweep)) < 2 or min(reported.values()) < 1:
                assert first.poll() is None and time.monotonic() < deadline, "the 2nd trial reported no epoch in time"
                time.sleep(0.05)
        finally:
            kill_group(first)
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return sweep, pd.read_parquet(sweep / "trials.parquet").set_index("trial_id")


def epochs_by_trial(sweep: Path) -> dict[str, int]:
    path = sweep / "trials.parquet"
    if not path.exists():
        return {}
    table = storage.read_parquet(str(path)).to_pandas()  # whole: see test_sweep_e2e.completed
    return dict(zip(table["trial_id"], table["epochs"].fillna(0).astype(int)))


@pytest.mark.ray
@pytest.mark.slow
def test_a_trial_whose_recorded_checkpoint_tune_deleted_resumes_from_the_newest_whole_one(tiny_shards, tmp_path):
    """Tune deletes a trial's checkpoint past KEEP_CHECKPOINTS as it registers a newer one, and saves its experiment
    state (which names the checkpoint each trial restores from) only after: a driver killed in between left a state
    naming a folder that is gone. Ray's own restore refused it before the trial ran ("Could not recover from
    checkpoint as it does not exist on storage anymore"), so the trial failed, and a resumed sweep never retries a
    failed trial (the killed-driver test failed so in CI). The folder is deleted by hand here, after a stop on which
    Tune saved its state: the kill's window is a few milliseconds."""
    from ray.tune import ExperimentAnalysis

    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           "--storage", str(tmp_path / "sweeps"), "--name", "gone", f"data.shards={tiny_shards}",
           "sweep.num_samples=1", "sweep.scheduler.type=none", f"train.epochs={EPOCHS}", "probe.epochs=40",
           "ray.include_dashboard=false", PROBE_LAST]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sweep = tmp_path / "sweeps" / "gone"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while epochs_reported(sweep) < 3:  # epoch 2's checkpoint is in Tune's state, and one beside it
                assert first.poll() is None and time.monotonic() < deadline, "the trial reported no 3 epochs in time"
                time.sleep(0.05)
            first.send_signal(signal.SIGINT)
            first.wait(120)
        finally:
            if first.poll() is None:
                kill_group(first)
    assert first.returncode == 130, (tmp_path / "first.log").read_text()[-3000:]
    (trial,) = ExperimentAnalysis(str(sweep / "checkpoints" / "gone-search")).trials
    recorded = Path(trial.checkpoint.path)
    (trial_dir,) = (sweep / "checkpoints" / "trials").iterdir()
    before = json.loads((trial_dir / "metrics.json").read_text())["history"]
    beside = [json.loads((d / "state.json").read_text())["epoch"] for d in recorded.parent.glob("checkpoint_*")
              if d != recorded]
    whole = max([e for e in beside if e < len(before)], default=None)  # one metrics.json shows uploaded whole
    assert whole, (recorded.name, beside, len(before))
    assert len(before) < EPOCHS, len(before)
    shutil.rmtree(recorded)  # as Tune deletes it when the trial saves KEEP_CHECKPOINTS newer ones

    aside = tmp_path / "aside"  # with no whole checkpoint beside it the trial cannot resume: refused before Ray starts
    recorded.parent.rename(aside)
    recorded.parent.mkdir()
    refused = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert (f"{recorded}: the checkpoint Tune restores trial {trial.trial_id} from cannot be used (it is gone), and no "
            "checkpoint beside it is known to be whole to resume the trial from; start a new sweep") in refused.stderr, \
        refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr and "avdis sweep gone: 1 trial" not in refused.stdout  # before Ray
    assert not recorded.exists()  # no stand-in where it would not serve
    recorded.parent.rmdir()
    aside.rename(recorded.parent)

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert (f"trial checkpoint {recorded} was gone (deleted after the driver last saved its state); resuming from "
            f"the newest whole checkpoint in {recorded.parent}") in second.stdout, second.stdout[-3000:]
    after = json.loads((trial_dir / "metrics.json").read_text())["history"]
    assert [e["epoch"] for e in after] == list(range(1, EPOCHS + 1))
    assert after[:whole] == before[:whole]  # from the checkpoint beside it, not from scratch
    trials = pd.read_parquet(sweep / "trials.parquet")
    assert list(trials.loc[trials["role"] == "search", "status"]) == ["TERMINATED"]


def test_tunes_record_of_a_failed_trial_is_kept_off_the_console_only_for_an_avdis_error():
    """Tune logged every failed trial's traceback (Ray's internals first, ~40 lines) above the sweep's own error,
    which names each failed trial with its message and where Tune's error file, holding that traceback, is. Kept off
    where the trial failed of an avdis error, itself or in its Ray Train run; any other error keeps it."""
    import logging

    from ray.exceptions import RayTaskError
    from ray.train import ControllerError

    from avdis.errors import AvdisError
    from avdis.tune.trial import explained_errors_off_the_console

    logger = logging.getLogger("ray.tune.execution.tune_controller")
    shown: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(type(record.exc_info[1].cause).__name__)  # type: ignore[method-assign]
    logger.addHandler(handler)

    def failed(cause: Exception) -> None:  # as Tune's controller logs a trial's failure
        error = RayTaskError("ImplicitFunc.train", "Traceback ...", cause).as_instanceof_cause()
        logger.error("Trial task failed for trial run_trial_1", exc_info=error)

    try:
        with explained_errors_off_the_console():
            failed(AvdisError("shard-000001.tar: size mismatch; make the shards again"))  # an in-process trial's
            failed(ControllerError(AvdisError("shard-000001.tar: size mismatch")))  # a multi-worker trial's
            failed(ValueError("a bug"))
            failed(ControllerError(RuntimeError("Ray Train's own")))
            try:  # a bug in the code handling an avdis error: its traceback is all that tells of it
                raise AvdisError("shard-000001.tar: size mismatch")
            except AvdisError:
                try:
                    {}["cleanup"]
                except KeyError as bug:
                    failed(bug)
        failed(AvdisError("after the sweep's fit"))
    finally:
        logger.removeHandler(handler)
    assert shown == ["ValueError", "ControllerError", "KeyError", "AvdisError"]
