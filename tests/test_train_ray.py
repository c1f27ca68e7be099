"""Distributed training on a real local Ray with real DeepSpeed engines (CPU accelerator, gloo)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import ray.cloudpickle as cloudpickle
import pytest
import torch

from avdis import config as C
from avdis import storage_lock
from avdis.errors import UsageError
from avdis.train import launch

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[1]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules


def cfg_for(shards: str, tmp_path: Path, *overrides: str) -> C.Config:
    return C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"data.shards={shards}", f"data.src={tmp_path / 'unused-src'}", f"train.storage={tmp_path / 'runs'}",
        "train.workers=2", "train.cpus_per_worker=0.9", "probe.epochs=60", *overrides,
    ])


@pytest.fixture(scope="module")
def local_ray(s3_server):
    """A local Ray of 2 CPUs; started after the S3 fixture so workers inherit its endpoint."""
    from conftest import init_local_ray, shutdown_ray

    init_local_ray(num_cpus=2, log_to_driver=False, runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}})
    yield
    shutdown_ray()


def history(run_url: str) -> list[dict]:
    return json.loads(Path(run_url, "metrics.json").read_text())["history"]


def test_deepspeed_zero2_two_workers_learns_and_reports(local_ray, tiny_shards, tmp_path):
    cfg = cfg_for(tiny_shards, tmp_path, "train.epochs=4", "train.name=zero2", "train.lr=0.01")
    ctrl_c = signal.getsignal(signal.SIGINT)
    out = launch.train(cfg)
    assert signal.getsignal(signal.SIGINT) is ctrl_c  # Ray Train's handler stayed: the caller's Ctrl-C was swallowed
    h = history(out["run"])
    assert [e["epoch"] for e in h] == [1, 2, 3, 4]
    assert h[-1]["loss"] < h[0]["loss"]
    for key in ("emotion_acc", "emotion_uar", "leakage", "speaker_acc", "epoch", "samples_per_s"):
        assert key in out["final"]
    assert out["final"]["world_size"] == 2
    assert 0.0 <= out["final"]["emotion_acc"] <= 1.0 and out["final"]["skipped_samples"] == 0
    assert list(Path(out["run"]).glob("checkpoint_*/engine/ckpt/*optim_states.pt"))  # ZeRO shards per rank


@pytest.mark.parametrize("method, weight", [("single_task", None), ("confusion", 0.1), ("orthogonal", 1.0),
                                            ("nullspace", 2)])
def test_every_method_trains_on_two_deepspeed_workers(local_ray, tiny_shards, tmp_path, method, weight):
    """Each method's loss, adversary and post-hoc fit under ZeRO-2 across 2 ranks; multitask trains above, and
    adversarial through `ray job submit` (test_jobs.py)."""
    cfg = cfg_for(tiny_shards, tmp_path, "train.epochs=1", "probe.epochs=40", f"method.name={method}",
                  *([f"method.weight={weight}"] if weight is not None else []), f"train.name={method}")
    run = launch.train(cfg)["run"]
    h = history(run)
    assert h[-1]["epoch"] == 1 and h[-1]["world_size"] == 2
    assert 0.0 <= h[-1]["emotion_acc"] <= 1.0 and "leakage" in h[-1]
    # the method's own part ran: its loss term (and the adversary's) logged, or INLP fit and saved with the run
    terms = {k for k in h[-1] if k.startswith("loss_")}
    assert terms == {"single_task": {"loss_emotion"}, "confusion": {"loss_emotion", "loss_speaker", "loss_confusion",
                                                                    "loss_adversary"},
                     "orthogonal": {"loss_emotion", "loss_speaker", "loss_orthogonal"},
                     "nullspace": {"loss_emotion", "loss_speaker"}}[method], terms
    assert all(h[-1][k] > 0 for k in terms), h[-1]
    if method == "orthogonal":  # its running covariance, pooled over both ranks, is in the checkpoint
        saved = torch.load(next(Path(run).glob("checkpoint_*/adversary.pt")), weights_only=False)["running"]
        assert saved["batches"] > 0 and saved["cov"].shape == (2 * cfg.model.emb_dim,) * 2
    posthoc = list(Path(run).glob("checkpoint_*/posthoc.pt"))
    assert len(posthoc) == (method == "nullspace"), posthoc
    if method == "nullspace":
        projection = torch.load(posthoc[0], weights_only=False)["projection"]
        eye = torch.eye(cfg.model.emb_dim)
        assert projection.shape == eye.shape and not torch.allclose(projection, eye)  # directions were removed


def _report(metrics: dict) -> None:
    """Report from a worker; with a (tiny) checkpoint, since Result.metrics stays None without one."""
    import tempfile

    import ray.train
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as d:
        Path(d, "metrics.json").write_text(json.dumps(metrics))
        ckpt = ray.train.Checkpoint.from_directory(d) if dist.get_rank() == 0 else None
        ray.train.report(metrics, checkpoint=ckpt)


def _one_step_each_engine(config: dict) -> None:
    """In each Ray Train worker: one real step under each engine, then compare full parameters across ranks."""
    import numpy as np
    import ray.train
    import torch
    import torch.distributed as dist

    from avdis.config import Config
    from avdis.data.stream import epoch_batches, open_dataset
    from avdis.model.disentangle import REGISTRY
    from avdis.model.multitask import build_model
    from avdis.train.engine import build_engine
    from avdis.train.step import Stepper, train_prior

    results = {}
    for name, overrides in config["variants"].items():
        cfg = Config.model_validate(config["config"])
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=overrides)})
        info = open_dataset(cfg.data, cfg.s3)
        torch.manual_seed(0)
        model = build_model(cfg.model, info.features, len(info.emotions), len(info.speakers))
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        engine = build_engine(model, cfg.train, find_unused=False)
        stepper = Stepper(engine, REGISTRY["adversarial"], cfg, len(info.speakers), train_prior(info))
        rank, world = dist.get_rank(), dist.get_world_size()
        batch = next(epoch_batches(info, cfg.data, cfg.s3, "train", rank=rank, world=world, epoch=0, seed=0,
                                   batch_size=cfg.train.batch_size))
        stepper.train_step(batch, 0.0)
        params = list(engine.module.parameters())
        if cfg.train.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(params):
                after = torch.cat([p.detach().flatten().clone() for p in params])
        else:
            after = torch.cat([p.detach().flatten().clone() for p in params])
        gathered = [None] * world
        dist.all_gather_object(gathered, after.numpy())
        adv = [None] * world
        dist.all_gather_object(adv, torch.cat([p.detach().flatten() for p in stepper.adversary.parameters()]).numpy())
        results[name] = {
            "rank_diff": float(max(np.abs(g - gathered[0]).max() for g in gathered)),
            "adversary_diff": float(max(np.abs(a - adv[0]).max() for a in adv)),
            "moved": float(np.abs(gathered[0] - before.numpy()).max()) if len(before) == len(gathered[0]) else -1.0,
        }
    _report({"results": json.dumps(results)})


def test_parameters_identical_across_ranks_after_a_step_zero2_zero3_ddp(local_ray, tiny_shards, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = cfg_for(tiny_shards, tmp_path, "method.name=adversarial", "method.weight=1.0")
    variants = {"zero2": {"strategy": "deepspeed", "zero_stage": 2}, "zero3": {"strategy": "deepspeed", "zero_stage": 3},
                "ddp": {"strategy": "ddp", "zero_stage": 0}}
    result = TorchTrainer(
        _one_step_each_engine, train_loop_config={"config": cfg.model_dump(mode="json"), "variants": variants},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.9}),
        run_config=RunConfig(name="engines", storage_path=str(tmp_path / "engines")),
    ).fit()
    results = json.loads(result.metrics["results"])
    assert set(results) == set(variants)
    for name, r in results.items():
        assert r["rank_diff"] == 0.0, name  # every rank holds the same model after the step
        assert r["adversary_diff"] < 1e-6, name  # the adversary's hand-averaged gradients keep it in sync too
        assert r["moved"] > 0.0, name  # and the step really changed it


TIMING = ("train_s", "epoch_s", "train_s_sum", "epoch_s_sum", "samples_per_s", "data_wait_frac")
# ZeRO-3 partitions parameters and optimizer state over the ranks; the adversary lives outside the engine, with an
# optimizer of its own, and accumulation spans the kill
RESUMED = ("train.zero_stage=3", "method.name=adversarial", "method.weight=1.0", "train.grad_accum=2")


def untimed(h: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING} for e in h]


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint_without_losing_an_epoch(local_ray, tiny_shards, tmp_path, monkeypatch):
    """Ray Train restarts the killed worker group from epoch 1's checkpoint: engine shards, optimizer state, the
    adversary and its optimizer restored, its epochs 2 and 3 are those of a run never killed."""
    straight = history(launch.train(cfg_for(tiny_shards, tmp_path, "train.epochs=3", "train.name=straight", *RESUMED))[
        "run"])
    marker = tmp_path / "killed"
    monkeypatch.setenv("AVDIS_FAIL_AT_STEP", "3")  # global step 3 = second step of epoch 2 (2 steps per epoch)
    monkeypatch.setenv("AVDIS_FAIL_MARKER", str(marker))
    cfg = cfg_for(tiny_shards, tmp_path, "train.epochs=3", "train.max_failures=1", "train.name=faulty", *RESUMED)
    out = launch.train(cfg)
    assert marker.exists() and "killed rank 1" in marker.read_text()
    first = history(out["run"])
    assert [e["epoch"] for e in first] == [1, 2, 3]
    assert untimed(first) == untimed(straight)
    # the checkpoint restores in a fresh process: a new driver continues to epoch 4
    monkeypatch.delenv("AVDIS_FAIL_AT_STEP")
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
         f"data.shards={tiny_shards}", f"train.storage={tmp_path / 'runs'}", "train.workers=2",
         "train.cpus_per_worker=0.9", "probe.epochs=60", "train.epochs=4", "train.max_failures=1",
         "train.name=faulty", "ray.include_dashboard=false", *RESUMED],
        capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = history(out["run"])
    assert [e["epoch"] for e in second] == [1, 2, 3, 4]
    assert second[:3] == first  # the resumed run kept what was done, and did not redo it


def test_a_failed_worker_is_explained_not_left_inside_rays_error(local_ray, tiny_shards, tmp_path, monkeypatch):
    """A worker lost without train.max_failures used to reach the user as Ray Train's WorkerGroupError, a long
    traceback with nothing said about how to go on. (An avdis error a worker raises reaches the user as itself
    through `launch.stop_on_input_fault`, whatever train.max_failures is: the next test.)"""
    from avdis.errors import AvdisError

    monkeypatch.setenv("AVDIS_FAIL_AT_STEP", "1")  # rank 1 exits at its second step
    with pytest.raises(AvdisError, match=r"faulty: a training worker failed \(.*\); rerun the same command to resume "
                                         r"from the last checkpoint, or set train\.max_failures"):
        launch.train(cfg_for(tiny_shards, tmp_path, "train.epochs=1", "train.name=faulty"))


@pytest.mark.timeout(300)  # before the fix, this run restarted its workers for ever
def test_a_fault_in_the_input_ends_the_run_even_where_ray_train_may_restart_it_for_ever(tiny_shards, tmp_path):
    """train.max_failures=-1 (restart for ever, as for spot nodes): corrupt shards are met again by every restart,
    so the run must end at the first one, naming the shard, and not restart in silence. (Ray Train calls the callback
    that ends it after every worker error, whatever train.max_failures is, so this also covers the default.) The
    command's one-line error is the last thing it prints: Ray streamed its workers' and controller's tracebacks of
    that error to the console seconds late, after it, burying it."""
    bad = tmp_path / "shards"
    shutil.copytree(tiny_shards, bad)
    for shard in sorted((bad / "shards").iterdir()):  # every shard damaged: whichever rank reads one, it is named
        shard.write_bytes(shard.read_bytes()[:-1000])
    done = subprocess.run(
        [sys.executable, "-m", "avdis", "train", "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
         f"data.shards={bad}", f"train.storage={tmp_path / 'runs'}", "train.workers=2", "train.cpus_per_worker=0.9",
         "train.epochs=1", "train.name=bad", "train.max_failures=-1", "ray.include_dashboard=false"],
        capture_output=True, text=True, timeout=280, env={**os.environ, "RAY_ADDRESS": ""}, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"avdis train: error: .*shard-\d+\.tar: size mismatch.*", last), done.stderr[-3000:]
    # Ray's tracebacks of it (each worker's, the controller's) are kept off the console, in the log the error names
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    log = re.search(r"\(its traceback: (\S+) on node \S+\)$", last)
    assert log, last
    kept = Path(log.group(1)).read_text()
    assert "Traceback" in kept and "SkipRateExceeded" in kept


def test_only_errors_avdis_explains_and_that_end_the_run_are_kept_off_rays_console():
    """Ray Train's console records of an avdis error that ends the run are dropped (the command says it in one line);
    one Ray retries (storage that did not answer) and any other error keep their traceback on the console."""
    import logging

    from ray.train import ControllerError

    from avdis.errors import AvdisError
    from avdis.storage import StorageError

    def shown(error: BaseException, exc_info: bool = True, said: str | None = None) -> bool:
        try:
            raise error
        except BaseException:  # a worker's record is logged while its error is handled, its traceback as text
            message = said or f"Error in training function:\n{traceback.format_exc()}"
            record = logging.LogRecord("ray.train", logging.ERROR, __file__, 1, message, None,
                                       (type(error), error, None) if exc_info else None)
            return launch._ExplainedOffTheConsole().filter(record)

    ended = AvdisError("shard x: size mismatch")
    assert not shown(ended) and not shown(ended, exc_info=False) and not shown(ControllerError(ended))
    retried = StorageError("s3://b/x: did not answer")  # retryable
    assert shown(retried) and shown(ControllerError(retried))
    assert shown(ValueError("a bug")) and shown(ValueError("a bug"), exc_info=False)
    assert shown(ControllerError(RuntimeError("Ray's own")))
    assert shown(ended, exc_info=False, said="Failed to poll the worker group")  # another record logged meanwhile
    try:  # a bug in the code handling an avdis error: its traceback is all that tells of it
        try:
            raise ended
        except AvdisError:
            {}["cleanup"]
    except KeyError as error:
        bug = error
    assert shown(bug) and shown(bug, exc_info=False) and shown(ControllerError(bug))


def test_the_skip_rate_is_the_epochs_over_every_worker_not_one_workers(local_ray, tiny_shards, tmp_path):
    """One damaged shard, max_skip_rate between the epoch's rate and the rate of the worker that read it: judged per
    worker the run failed with 2 workers (and would have passed with 1); judged on the epoch it trains, counting
    every clip it lost."""
    from avdis.data.stream import EpochPlan, open_dataset

    damaged = tmp_path / "shards"
    shutil.copytree(tiny_shards, damaged)
    cfg = cfg_for(str(damaged), tmp_path, "train.epochs=1", "train.name=skips", "train.strategy=ddp",
                  "train.zero_stage=0", "train.probe_every=0")
    info = open_dataset(cfg.data, cfg.s3)
    bad = max(info.shards, key=lambda s: s.counts.get("train", 0))
    Path(bad.url).write_bytes(Path(bad.url).read_bytes()[:-1000])
    epoch_rates, worker_rates = [], []
    for split in ("train", "all"):
        plan = EpochPlan.make(info, split, 2, 0, cfg.train.seed, cfg.train.batch_size)
        lost = bad.counts[split]
        epoch_rates.append(lost / sum(plan.counts))
        worker_rates += [lost / count for shards, count in zip(plan.per_rank, plan.counts) if bad in shards]
    threshold = (max(epoch_rates) + min(worker_rates)) / 2
    assert max(epoch_rates) < threshold < min(worker_rates)
    result = launch.train(cfg.model_copy(update={"data": cfg.data.model_copy(update={
        "loader": cfg.data.loader.model_copy(update={"max_skip_rate": threshold})})}))
    assert result["final"]["skipped_samples"] == bad.counts["train"]
    assert result["final"]["eval_skipped_samples"] == bad.counts["all"]


def test_checkpoint_of_another_model_size_is_refused(local_ray, tiny_shards, tmp_path):
    launch.train(cfg_for(tiny_shards, tmp_path, "train.epochs=1", "train.name=shape", "train.workers=1",
                         "train.strategy=ddp", "train.zero_stage=0"))
    with pytest.raises(Exception, match="model.emb_dim=16 .this run: 32."):
        launch.train(cfg_for(tiny_shards, tmp_path, "train.epochs=2", "train.name=shape", "train.workers=1",
                             "train.strategy=ddp", "train.zero_stage=0", "model.emb_dim=32"))


def _stream_ids(config: dict) -> None:
    import ray.train
    import torch.distributed as dist

    from avdis.config import Config
    from avdis.data.stream import epoch_batches, open_dataset

    cfg = Config.model_validate(config["config"])
    info = open_dataset(cfg.data, cfg.s3)
    rank, world = dist.get_rank(), dist.get_world_size()
    epochs = []
    for epoch in range(2):
        mine = [c for b in epoch_batches(info, cfg.data, cfg.s3, "train", rank=rank, world=world, epoch=epoch,
                                         seed=0, batch_size=8) for c in b["clip_id"]]
        everyone = [None] * world
        dist.all_gather_object(everyone, mine)
        epochs.append(everyone)
    _report({"epochs": json.dumps(epochs), "expected": info.split_counts["train"]})


def test_streaming_from_s3_into_two_workers_sees_each_clip_once_per_epoch(local_ray, tiny_corpus, s3_bucket, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from avdis.data import shards

    url = f"{s3_bucket}/shards/tiny"
    cfg = cfg_for(url, tmp_path, f"data.src={tiny_corpus}")
    shards.build_shards(cfg.data, cfg.s3)
    result = TorchTrainer(
        _stream_ids, train_loop_config={"config": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.9}),
        run_config=RunConfig(name="stream", storage_path=str(tmp_path / "stream")),
    ).fit()
    expected = result.metrics["expected"]
    epochs = json.loads(result.metrics["epochs"])
    for per_rank in epochs:
        assert all(per_rank)  # both ranks got clips
        ids = [c for rank_ids in per_rank for c in rank_ids]
        assert len(ids) == len(set(ids)) == expected
    assert epochs[0] != epochs[1]  # reshuffled between epochs


def test_more_gpus_than_the_cluster_has_is_refused_before_workers_start(local_ray, tiny_shards, tmp_path):
    cfg = cfg_for(tiny_shards, tmp_path, "train.gpus_per_worker=1", "train.name=gpus")
    with pytest.raises(UsageError, match="no node type provides GPU.*train.gpus_per_worker"):
        launch.train(cfg)
    assert not (tmp_path / "runs" / "gpus").exists()


RUN_HOLDER = """
import sys, time
from avdis import storage_lock
with storage_lock.exclusive(sys.argv[1], "training run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_driver_of_a_run_still_training_is_refused_before_it_trains(tiny_shards, tmp_path):
    """The same train command submitted twice (or again while a stopped job still winds down) resumed from the
    first's newest checkpoint and trained beside it, both writing checkpoints and metrics.json into the one run
    folder, and both ended 'succeeded'. The first driver here holds the run as a running one does."""
    cfg = cfg_for(tiny_shards, tmp_path, "train.strategy=single", "train.zero_stage=0", "train.workers=1", "train.name=twice")
    run = tmp_path / "runs" / "twice"
    holder = subprocess.Popen([sys.executable, "-c", RUN_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:  # another process: this one would hold its own run again at once
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(storage_lock.BusyError, match=f"{run}: another training run is running there"):
            launch.train(cfg)
    finally:
        holder.kill()
        holder.wait(30)
    assert sorted(p.name for p in run.iterdir()) == [storage_lock.LOCK]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_rerun_resumes_even_without_ray_trains_record(tiny_shards, tmp_path):
    """Ray Train's Ctrl-C handler aborted the run and ended the process with sys.exit, exit 1 and no message; and a
    run aborted before Ray Train wrote checkpoint_manager_snapshot.json started over at epoch 1 on its rerun."""
    cmd = [sys.executable, str(ROOT / "jobs" / "train.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           f"data.shards={tiny_shards}", f"train.storage={tmp_path / 'runs'}", "train.strategy=ddp", "train.zero_stage=0",
           "train.workers=2", "train.cpus_per_worker=0.9", "probe.epochs=30", "train.epochs=8", "train.name=ctrlc",
           "ray.include_dashboard=false"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    run = tmp_path / "runs" / "ctrlc"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                 start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while len(history(str(run)) if (run / "metrics.json").exists() else []) < 3:
                assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
                time.sleep(0.2)
            first.send_signal(signal.SIGINT)
            first.wait(120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(30)
            with contextlib.suppress(ProcessLookupError):  # whatever of its local Ray is left, before the rerun
                os.killpg(first.pid, signal.SIGKILL)
    out = (tmp_path / "first.log").read_text()
    assert first.returncode == 130 and f"{run}: interrupted; rerun the same command to resume" in out, out[-3000:]
    before = history(str(run))
    assert 3 <= len(before) < 8, "interrupted too late to leave anything to resume"
    (run / "checkpoint_manager_snapshot.json").unlink(missing_ok=True)  # as an abort before Ray Train wrote it leaves

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = history(str(run))
    assert [e["epoch"] for e in after] == list(range(1, 9))
    assert after[:2] == before[:2]  # restored from a whole checkpoint before the last one, not trained again


@pytest.mark.slow
def test_a_rerun_resumes_from_checkpoints_ray_trains_record_lags_and_removes_those_it_never_will(
        local_ray, tiny_shards, tmp_path):
    """A stop (`ray job stop`, Ctrl-C) aborts a run before Ray Train's checkpoint_manager_snapshot.json records its
    last reports: two epochs behind, its rerun resumed from there, and the newer folders, which Ray Train deletes
    only once it lists them, stayed for ever (two more a stop). Built here as a stop leaves it: the record and the
    folders of epoch 2, the folders of epochs 3 and 4 beside them, metrics.json of 4 epochs."""
    run = tmp_path / "runs" / "lag"

    def train(epochs: int) -> None:
        launch.train(cfg_for(tiny_shards, tmp_path, f"train.epochs={epochs}", "train.name=lag", "train.strategy=ddp",
                             "train.workers=1", "train.zero_stage=0", "train.probe_every=0"))

    train(2)
    shutil.copytree(run, tmp_path / "at-2")
    train(4)
    before = history(str(run))
    for kept in (tmp_path / "at-2").glob("checkpoint_*"):  # Ray's record of epoch 2 and the folders it lists
        if kept.is_dir():
            shutil.copytree(kept, run / kept.name)
        else:
            shutil.copy(kept, run / kept.name)
    assert len([p for p in run.glob("checkpoint_*") if p.is_dir()]) == 4
    train(5)
    after = history(str(run))
    assert [e["epoch"] for e in after] == [1, 2, 3, 4, 5]
    assert after[:3] == before[:3]  # epoch 3 restored with its recorded times, not trained again
    record = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
    listed = {r["checkpoint_dir_name"] for r in record["checkpoint_results"]}
    assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == sorted(listed)
    assert len(listed) == 2  # KEEP_CHECKPOINTS


def test_a_failure_of_ray_trains_own_is_one_line_saying_what_to_do(local_ray, tiny_shards, tmp_path, capsys):
    """A run Ray Train itself fails (here its controller, on a record of the run's checkpoints written by another Ray
    version, in fields this one does not read, which kills it as it starts) ended `avdis train` in Ray's exception, a
    traceback of Ray's internals (with its cause at the end). Now it is one line naming that cause, exit 1."""
    from avdis.cli import main

    run = tmp_path / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "checkpoint_manager_snapshot.json").write_text('{"ray_version": "2.9.0", "checkpoints": []}')
    code = main(["train", "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"), f"data.shards={tiny_shards}",
                 f"train.storage={tmp_path / 'runs'}", "train.workers=2", "train.cpus_per_worker=0.9",
                 "train.epochs=1", "train.name=broken"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert re.fullmatch(rf"avdis train: error: {run}: Ray Train failed \(ActorDiedError: \S*"
                        r"CheckpointManagerInitializationError: .* saved with Ray version 2\.9\.0 but you are "
                        r"running Ray version .*\); Ray's output above and its "
                        r"session logs .* say more: fix what they name, then rerun the same command .*", last), last
