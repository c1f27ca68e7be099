"""Shared fixtures: real servers started here and stopped by PID, small generated corpora.

- `s3_server`: moto's standalone S3 server (`moto_server`) on 127.0.0.1, a subprocess;
  AWS_* variables point every client (s3fs here, Ray workers started later) at it.
- `tiny_corpus` / `tiny_shards`: a small generated corpus (`TINY`) and its local shards, once per session.
- `stop_ray` (and `shutdown_ray`, `ray_roots`): a Ray a test started is stopped, then any of its processes still alive
  is stopped by PID and named in a `RayLeftover` warning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One compute thread per test process, and in the processes tests start: `make test` runs 2 test processes on 2 cores
# beside the Ray workers and drivers they start, and a PyTorch process left at one thread per core spun its threads
# against the others' (a 60-clip leakage probe took 4.6-11 s at 2 threads under that load, 0.3-0.4 s at 1). Ray
# workers and sweep trials set their own (`avdis.train.loop.run`: train.cpus_per_worker).
os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with `slow` tests first, then files that start Ray, then the rest, each file's tests kept together and
    in order: `make test` hands whole files to its processes in this order, so the short files even out the end."""
    rank: dict[Path, int] = {}
    for item in items:
        kind = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("ray") else 2
        rank[item.path] = min(rank.get(item.path, 2), kind)
    items.sort(key=lambda item: (rank[item.path], str(item.path)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_local_ray(**kwargs) -> None:
    """`ray.init` of a new local Ray as avdis starts one (`runtime.local_ray_named`): its processes name it in
    RAY_ADDRESS, and without its dashboard it records a port nothing serves. Ray Train's placement-group cleaner asks
    the state API where the run's controller is: with Ray's defaults it asked the dashboard address 127.0.0.1:8265,
    where a concurrent test's Ray (pytest-xdist) may serve one that knows no such controller, and removed the live run's
    placement group (a worker destroyed mid-test)."""
    import ray

    from avdis import runtime

    with runtime.local_ray_named() as unserved:
        ray.init(address="local", include_dashboard=False, **unserved, **kwargs)


class RayLeftover(UserWarning):
    """A process of a Ray a test started outlived that Ray's teardown; `stop_ray` stopped it by PID."""


def ray_roots(*nodes) -> list[int]:
    """The PIDs of the processes Ray started for `nodes` (`ray._private.node.Node`: GCS, raylet, dashboard, ...);
    none given, this process's local Ray, none where it joined a Ray by address."""
    import ray

    nodes = nodes or tuple(filter(None, [ray._private.worker._global_node]))
    return [info.process.pid for node in nodes for infos in node.all_processes.values() for info in infos]


def ray_processes(roots: Iterable[int]) -> list[psutil.Process]:
    """The processes of one Ray on this machine: `roots`, all they started, and any worker of a raylet among them
    whose parent has gone (Ray sets RAY_RAYLET_PID in its workers' environment; a worker's child inherits it). No
    other Ray's: another raylet's PID differs while this one runs, and `psutil.Process` refuses a PID reused since."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            found.update((p.pid, p) for p in [root, *root.children(recursive=True)])
    raylets = set()
    for p in found.values():
        with contextlib.suppress(psutil.Error):
            if p.name() == "raylet":
                raylets.add(str(p.pid))
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # another user's, or gone meanwhile
            if p.pid not in found and p.environ().get("RAY_RAYLET_PID") in raylets:
                found[p.pid] = p
    return list(found.values())


def still_running(procs: list[psutil.Process], timeout: float = 0.0) -> list[psutil.Process]:
    """Those of `procs` still running `timeout` seconds on, or as soon as none is (a zombie has ended: its parent
    has yet to reap it)."""
    deadline = time.monotonic() + timeout
    while True:
        living = []
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    living.append(p)
        if not living or time.monotonic() >= deadline:
            return living
        time.sleep(0.1)


def stop_ray(stop: Callable[[], object], roots: Iterable[int], grace: float = 10.0) -> None:
    """`stop()` one Ray (`ray.shutdown()`, its `ray start` stopped), then stop by PID each of its processes (of
    `roots`: `ray_processes`) still alive `grace` seconds on, SIGTERM then SIGKILL, with a `RayLeftover` warning that
    names it. A worker stuck in its own exit (a non-daemon thread joined for ever) outlives its raylet: the raylet no
    longer counts it, and it slept on as an orphan, found by no one."""
    procs = ray_processes(roots)
    try:
        stop()
    finally:
        left = still_running(procs, grace)
        for p in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                title = " ".join(p.cmdline()).strip() or p.name()
                p.terminate()
                warnings.warn(RayLeftover(f"PID {p.pid} ({title}) of a Ray this test started was alive {grace:g} s "
                                          "after that Ray stopped; stopped it by PID"), stacklevel=2)
        killed = still_running(left, 5)
        for p in killed:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        still_running(killed, 5)


def shutdown_ray() -> None:
    """`ray.shutdown()` of the Ray this process started or joined, through `stop_ray`."""
    import ray

    stop_ray(ray.shutdown, ray_roots())


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port where connections are refused while the block runs: bound here, not listening. A port `free_port`
    gave back can be bound by any process meanwhile (the other test process's Ray binds dozens), and then
    something answers where the test expects nothing."""
    with socket.socket() as holder:  # no SO_REUSEADDR or SO_REUSEPORT: no other socket can bind the port
        holder.bind(("", 0))
        yield holder.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a server we started, by its PID (its process group when it has one)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint})
    try:
        wait_for_port(port, proc)
        yield endpoint
    finally:
        stop_process(proc)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh empty bucket on the moto server; returns its s3:// URL."""
    import boto3

    name = f"avdis-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@contextlib.contextmanager
def s3_denied(s3_bucket: str, action: str) -> Iterator[None]:
    """The moto bucket's policy denies `action` (e.g. "s3:DeleteObject") on its objects while the block runs; moto
    enforces a bucket policy's Deny as AWS does."""
    import json

    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": action, "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    try:
        yield
    finally:
        s3.delete_bucket_policy(Bucket=bucket)


TINY = {"speakers": 6, "emotions": 4, "clips_per_speaker": 12, "entanglement": 0.7, "seed": 3}
"""The tiny corpus: 6 speakers x 12 clips, 4 emotions, strong entanglement."""


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The generated `TINY` corpus."""
    from avdis.config import SynthConfig
    from avdis.data import synth

    out = tmp_path_factory.mktemp("corpus")
    synth.generate(SynthConfig(**TINY), out)
    return out


@pytest.fixture(scope="session")
def tiny_shards(tiny_corpus, tmp_path_factory) -> str:
    """`tiny_corpus` preprocessed into local shards of 16 clips."""
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards

    out = str(tmp_path_factory.mktemp("shards"))
    synthetic_shards(SynthConfig(**TINY), tiny_corpus, out, shard_size=16)
    return out


def saved_tune_state(cfg, role: str, trials: dict[str, str], failures: dict[str, int] | None = None) -> Path:
    """Tune's saved experiment of `cfg`'s sweep's `role` where Tune keeps it, holding `trials` (by id, the status Tune
    saved it in) as Ray 2.60 saves them: real Tune `Trial`s, each its own `get_json_state()` (`failures`: their
    `num_failures`), in an experiment_state file, beside the tuner.pkl `Tuner.can_restore` looks for. Without a run:
    none of their checkpoints. Returns the state file."""
    import json

    from ray import tune
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    from avdis.tune import sweep
    from avdis.tune.trial import run_trial

    _, storage_path, name = sweep.experiment_of(cfg, role)
    folder = Path(storage_path, name)
    folder.mkdir(parents=True, exist_ok=True)
    data = []
    for trial_id, status in trials.items():
        trial = Trial(run_trial.__name__, trial_id=trial_id, stub=True, config={"method": "multitask"},
                      placement_group_factory=tune.PlacementGroupFactory([{"CPU": 1}]),
                      storage=StorageContext(storage_path=storage_path, experiment_dir_name=name,
                                             trial_dir_name=f"{run_trial.__name__}_{trial_id}_00000"))
        trial.create_placement_group_factory()
        trial.set_status(status)
        trial.run_metadata.num_failures = (failures or {}).get(trial_id, 0)
        data.append(list(trial.get_json_state()))
    state = folder / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text(json.dumps({"trial_data": data, "runner_data": {}}))
    (folder / "tuner.pkl").write_bytes(b"")
    return state
