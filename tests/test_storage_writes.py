"""Writes through avdis.storage are whole or absent, Ray's included: a process killed mid-write leaves the old file;
reads of its Parquet tables leave the process able to exit."""

from __future__ import annotations

import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from conftest import s3_denied

from avdis import storage, storage_lock

WRITER = """
import sys, time
from avdis import storage
fs, path = storage.pyarrow_filesystem(sys.argv[1])
stream = fs.open_output_stream(path + "/experiment_state.json")
stream.write(b'{"trial_data": [' * 1000)
stream.flush()
print("written", flush=True)
time.sleep(60)
"""


def test_a_writer_killed_mid_file_through_rays_filesystem_leaves_the_old_file(tmp_path):
    (tmp_path / "experiment_state.json").write_text('{"trial_data": []}')
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
        assert (tmp_path / "experiment_state.json").read_text() == '{"trial_data": []}'  # not truncated while written
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    assert (tmp_path / "experiment_state.json").read_text() == '{"trial_data": []}'


def test_rays_uploads_through_the_local_filesystem_arrive_whole_and_leave_no_temp_files(tmp_path):
    source = tmp_path / "src"
    (source / "a" / "b").mkdir(parents=True)
    (source / "a" / "b" / "weights.bin").write_bytes(os.urandom(3_000_000))
    (source / "state.json").write_text("{}")
    fs, path = storage.pyarrow_filesystem(str(tmp_path / "dst"))
    fs.create_dir(path)
    pafs.copy_files(str(source), path, destination_filesystem=fs, chunk_size=1 << 20)  # as Ray's uploads call it
    got = sorted(p.relative_to(tmp_path / "dst") for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert got == [Path("a/b/weights.bin"), Path("state.json")]
    assert (tmp_path / "dst" / "a" / "b" / "weights.bin").read_bytes() == (source / "a" / "b" / "weights.bin").read_bytes()
    pafs.copy_files(str(source / "state.json"), f"{path}/state.json", destination_filesystem=fs)  # rewrites in place
    assert sorted(os.listdir(tmp_path / "dst")) == ["a", "state.json"]


def test_a_write_that_fails_or_a_stream_dropped_unclosed_keeps_the_old_file(tmp_path):
    target = tmp_path / "experiment_state.json"
    storage.write_bytes(str(target), b"old")
    with pytest.raises(RuntimeError):
        with storage._AtomicLocalFile(str(target)) as fh:
            fh.write(b"half")
            raise RuntimeError("the writer failed")
    fh = storage._AtomicLocalFile(str(target))
    fh.write(b"half")
    with pytest.raises(TypeError):
        fh.write(object())  # a write that fails
    fh.close()
    fs, path = storage.pyarrow_filesystem(str(tmp_path))
    stream = fs.open_output_stream(f"{path}/experiment_state.json")
    stream.write(b"half")
    del stream  # what pyarrow does with the stream of a copy that failed
    gc.collect()
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["experiment_state.json"]


def test_the_temp_file_a_killed_writer_left_is_cleared_by_the_next_write_of_that_file(tmp_path):
    (tmp_path / "experiment_state.json").write_text('{"trial_data": []}')
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    left = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert len(left) == 1  # the killed write's (a sweep rerun after a kill found it beside pareto.html)
    storage.write_bytes(str(tmp_path / "other.json"), b"{}")  # another file's write leaves it be
    assert (tmp_path / left[0]).exists()
    live = storage._AtomicLocalFile(str(tmp_path / "experiment_state.json"))
    assert not (tmp_path / left[0]).exists()
    storage.write_bytes(str(tmp_path / "experiment_state.json"), b'{"trial_data": [1]}')  # a writer still at work: kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["experiment_state.json", "other.json", Path(live.name).name])
    live.close()
    assert sorted(os.listdir(tmp_path)) == ["experiment_state.json", "other.json"]


def _zombie_of(proc: subprocess.Popen) -> None:
    """Wait (up to 30 s) until `proc`, killed and not reaped, is a zombie."""
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_temp_file_of_a_killed_writer_not_yet_reaped_is_cleared_too(tmp_path):
    """A writer killed whose parent has not reaped it (Ray's job supervisor does not reap a driver it SIGKILLed) is a
    zombie: it writes nothing more, but `pid_alive` took it for alive (only the S3 lock saw through it), and its temp
    file stayed until its parent went."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: a zombie cannot be told here")
    (tmp_path / "experiment_state.json").write_text('{"trial_data": []}')
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
        assert storage.pid_alive(writer.pid)
        writer.send_signal(signal.SIGKILL)  # not waited for: a zombie until the test reaps it
        _zombie_of(writer)
        assert not storage.pid_alive(writer.pid)
        left = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
        assert len(left) == 1
        storage.write_bytes(str(tmp_path / "experiment_state.json"), b'{"trial_data": [1]}')
        assert sorted(os.listdir(tmp_path)) == ["experiment_state.json"]
    finally:
        writer.kill()
        writer.wait(30)


WRITING = """
import os, sys, time
from avdis import storage
live = storage._AtomicLocalFile(sys.argv[1])
print(os.getpid(), flush=True)
time.sleep(60)
"""


def test_the_temp_file_of_a_writer_in_another_container_of_this_hostname_is_left_alone(tmp_path):
    """Containers of one hostname (docker --network host, pods with hostNetwork) writing to one shared folder (a bind
    mount, NFS, EFS) each have their own PIDs: a writer's PID in one is free in the other, where the next write of
    that file took its temp file for a killed writer's and deleted it (its rename then failed). The other container
    here: a writer in its own PID namespace, under a PID that no process here has (forked by its shell: the `exit`
    keeps a shell that is bash from exec'ing the writer as the namespace's PID 1). What such a writer left when
    killed goes once older than any write (a container restarted after an OOM kill has a new PID namespace)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-pfr", "true"], capture_output=True).returncode:
        pytest.skip("no unshare, or no user namespaces here")
    target = tmp_path / "trials.parquet"
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    free = next(p for p in range(min(pid_max, 32768) - 1, 300, -1) if not storage.pid_alive(p))
    holder = subprocess.Popen(
        ["unshare", "-pfr", "sh", "-c", f'echo {free - 1} > /proc/sys/kernel/ns_last_pid && "$0" -c "$1" "$2"; exit $?',
         sys.executable, WRITING, str(target)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline() == f"{free}\n"
        held = [p.name for p in tmp_path.iterdir()]
        storage.write_bytes(str(target), b"here")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*held, target.name])
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(30)
    # killed, as by an OOM kill before its container restarted: its PID cannot tell, its age does
    os.utime(tmp_path / held[0], (time.time() - storage.STALE_S + 60,) * 2)
    storage.write_bytes(str(target), b"again")
    assert sorted(os.listdir(tmp_path)) == sorted([*held, target.name])
    os.utime(tmp_path / held[0], (time.time() - storage.STALE_S - 60,) * 2)
    storage.write_bytes(str(target), b"again")
    assert os.listdir(tmp_path) == [target.name]


def test_a_trial_reads_a_checkpoint_in_local_storage_in_place(tmp_path):
    """Ray copies a checkpoint to /tmp unless it sits on pyarrow's own local filesystem; avdis's reads it in place."""
    from ray.train import Checkpoint

    from avdis.train.loop import _as_directory

    (tmp_path / "state.json").write_text("{}")
    fs, path = storage.pyarrow_filesystem(str(tmp_path))
    with _as_directory(Checkpoint(path=path, filesystem=fs)) as here:
        assert here == tmp_path
    with _as_directory(Checkpoint(path=path, filesystem=pafs.SubTreeFileSystem("/", pafs.LocalFileSystem()))) as copy:
        assert copy != tmp_path and (copy / "state.json").read_text() == "{}"  # any other filesystem: Ray's copy


READER = "import sys; from avdis.data import shards; shards.read_manifest(sys.argv[1])"


def test_reading_a_manifest_never_aborts_the_process_at_exit(tiny_shards):
    """pyarrow 26's threaded decode of an in-memory Parquet file aborted the process at exit in about half the runs
    ("terminate called without an active exception", after a preprocess rerun had printed its summary)."""
    runs = [subprocess.run([sys.executable, "-c", READER, tiny_shards], capture_output=True, text=True)
            for _ in range(8)]
    assert [(r.returncode, r.stderr) for r in runs] == [(0, "")] * 8


HOLDER = """
import sys, time
from avdis import storage_lock
with storage_lock.exclusive(sys.argv[1], "sweep driver"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_driver_on_a_held_folder_is_refused_until_the_first_ends(tmp_path, capsys):
    """Two drivers of one sweep both ran, each writing its own trials.parquet over the other's."""
    from avdis.cli import main

    url = str(tmp_path / "sweeps" / "s")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(storage_lock.BusyError, match=rf"{url}: another sweep driver is running there \(pid "
                                                    rf"{holder.pid} on "):
            with storage_lock.exclusive(url, "sweep driver"):
                pass
        assert main(["sweep", "--storage", str(tmp_path / "sweeps"), "--name", "s"]) == 2  # before Ray starts
        assert "another sweep driver is running there" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)  # however it ends, the OS lets go of its lock
        holder.wait(30)
    with storage_lock.exclusive(url, "sweep driver"):
        assert (tmp_path / "sweeps" / "s" / storage_lock.LOCK).read_text().startswith(f"pid {os.getpid()} on ")


def test_an_s3_output_that_refuses_writes_says_what_to_check(s3_bucket):
    """A bucket (or role) without s3:PutObject: the write check said '<url>: not writable (Forbidden); pick an output
    folder or bucket you can write to', naming nothing to check, where every other storage call says to check the
    node's role or credentials. Here a bucket policy denies writes (moto enforces it, as AWS does)."""
    with s3_denied(s3_bucket, "s3:PutObject"), pytest.raises(storage.NotWritableError) as refused:
        storage.check_writable(f"{s3_bucket}/shards")
    assert str(refused.value) == (f"{s3_bucket}/shards: not writable (Forbidden); access denied: check the node's IAM "
                                  "role / AWS credentials, or pick an output folder or bucket you can write to")


def test_an_s3_output_that_takes_writes_but_refuses_deletes_is_refused_naming_the_permission(s3_bucket):
    """A bucket (or role) that allows s3:PutObject but not s3:DeleteObject: the write check passed, leaving its probe
    file, since s3fs's rm takes a refusal per key as done; the run then kept every old checkpoint and every stale
    shard it meant to delete. Here a bucket policy denies deletes (moto enforces it, as AWS does)."""
    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    with s3_denied(s3_bucket, "s3:DeleteObject"), pytest.raises(storage.NotWritableError) as refused:
        storage.check_writable(f"{s3_bucket}/runs")
    said = str(refused.value)
    assert said.startswith(f"{s3_bucket}/runs: ") and "s3:DeleteObject" in said, said
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(left) == 1 and f"{s3_bucket}/{left[0]}" in said  # the probe it could not remove is named
    storage.check_writable(f"{s3_bucket}/runs")  # deletes allowed: passes, and leaves nothing
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == left


def test_a_file_is_written_whole_into_a_folder_this_process_may_write_but_not_open(tmp_path):
    """A write syncs its folder's entry after the rename; a folder of mode -wx (a drop box) cannot be opened to be
    synced, and the file written whole there must not be refused for it. Root's power over permissions is given up
    (setpriv) where the suite runs as root."""
    drop = [shutil.which("setpriv"), "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if drop and drop[0] is None:
        pytest.skip("running as root without setpriv (util-linux) to give up root's power over permissions")
    box = tmp_path / "box"
    box.mkdir(mode=0o300)
    write = f"from avdis import storage; storage.write_bytes({str(box / 'x.json')!r}, b'whole')"
    try:
        out = subprocess.run([*drop, sys.executable, "-c", write], capture_output=True, text=True, timeout=60)
    finally:
        box.chmod(0o700)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [p.name for p in box.iterdir()] == ["x.json"] and (box / "x.json").read_bytes() == b"whole"


def test_an_s3_folder_marker_is_not_listed_as_an_entry_of_its_folder(s3_bucket):
    """The S3 console's "Create folder" writes an empty `train/run/` object: s3fs lists it under `train/run` as that
    folder itself, which `list_files` gave as a phantom `train/run/run`, and a folder of its marker alone (a
    checkpoint's `engine/`) as holding a file. Folders inside are listed, as files are."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket.removeprefix("s3://")
    for key in ("train/run/", "train/run/metrics.json", "train/run/checkpoint_000001/", "train/run/checkpoint_000001/a.pt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}" if key.endswith(("json", "pt")) else b"")
    run = f"{s3_bucket}/train/run"
    assert storage.list_files(run) == [f"{run}/checkpoint_000001", f"{run}/metrics.json"]
    assert storage.list_files(f"{run}/checkpoint_000001") == [f"{run}/checkpoint_000001/a.pt"]
    assert storage.list_files(run, ".json") == [f"{run}/metrics.json"]
    s3.put_object(Bucket=bucket, Key="train/run/checkpoint_000002/engine/", Body=b"")
    assert storage.list_files(f"{run}/checkpoint_000002/engine") == []  # a folder of its marker alone is empty


def test_a_filesystem_made_for_new_credentials_replaces_the_one_before(monkeypatch):
    """One s3fs filesystem per S3 settings and AWS environment: a dashboard left running while a tool rewrote the
    credentials (or their variables) kept every filesystem made before, each with its client, for ever."""
    from avdis import storage
    from avdis.config import S3Config

    monkeypatch.setattr(storage, "_S3_FILESYSTEMS", {})
    for key in ("first", "second", "third"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        fs = storage._s3_filesystem(S3Config(endpoint_url="http://127.0.0.1:1"))
        assert storage._s3_filesystem(S3Config(endpoint_url="http://127.0.0.1:1")) is fs
        assert len(storage._S3_FILESYSTEMS) == 1
    storage._s3_filesystem(S3Config(endpoint_url="http://127.0.0.1:2"))  # other settings: one of their own
    assert len(storage._S3_FILESYSTEMS) == 2


def test_an_s3_setting_of_the_environment_the_config_refuses_is_not_pinned_into_it(tmp_path, monkeypatch):
    """AWS_REGION='eu west' or AWS_ENDPOINT_URL=localhost:9000, pinned into the config that every sweep trial and Ray
    Train worker validates again, failed each of them with a traceback (a local sweep's every trial: "'eu west' is not
    a region name botocore takes"), where no location was on S3 and botocore never read them. Left out, as what S3Config
    takes is pinned."""
    from avdis.config import Config, S3Config

    for key in ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_REGION", "eu west")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:9000")
    cfg = Config()
    assert storage.pinned(cfg.s3) == S3Config()
    Config.model_validate(cfg.model_copy(update={"s3": storage.pinned(cfg.s3)}).model_dump(mode="json"))  # a trial's
    monkeypatch.setenv("AWS_REGION", "garage")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    assert storage.pinned(cfg.s3) == S3Config(endpoint_url="http://minio:9000", region="garage")


def test_a_region_botocore_refuses_from_the_environment_or_profile_is_refused_naming_where(tmp_path, monkeypatch,
                                                                                           capsys):
    """A region of AWS_REGION, AWS_DEFAULT_REGION or the AWS profile that botocore refuses failed only at the first S3
    call, as 'cannot reach storage (InvalidRegionError: ...)' or a bucket that did not connect (exit 1). Refused before
    it (exit 2), naming where it came from; s3.region comes first, and any name botocore takes is taken. A trailing
    newline (a Kubernetes ConfigMap made from a file), which botocore's own check let through, is refused as s3.region
    refuses it: it failed at the first S3 call as 'Invalid endpoint: https://s3.eu-west-1\\n.amazonaws.com'."""
    from avdis.cli import main
    from avdis.config import S3Config

    for key in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(storage, "_S3_FILESYSTEMS", {})
    config = tmp_path / "config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    config.write_text("[default]\nregion = eu west 1\n")
    with pytest.raises(storage.UsageError, match=re.escape(
            f"the S3 region 'eu west 1' (the region of the AWS profile 'default' in {config}) is not a region name "
            "botocore takes") + ".*; fix it there, or give s3.region"):
        storage.filesystem("s3://bucket/x")
    assert storage.filesystem("s3://bucket/x", S3Config(region="eu-west-1"))  # s3.region first
    for variable, region in (("AWS_REGION", "not a region"), ("AWS_DEFAULT_REGION", "eu_west_1"),
                             ("AWS_REGION", "-eu"), ("AWS_DEFAULT_REGION", "1234"), ("AWS_REGION", "eu-west-1\n")):
        with monkeypatch.context() as env:
            env.setenv(variable, region)
            with pytest.raises(storage.UsageError, match=re.escape(
                    f"the S3 region {variable}={region!r} (from the environment) is not a region name botocore takes")
                    + f".*; fix or unset {variable}, or give s3.region"):
                storage.filesystem("s3://bucket/x")
    for region in ("us-east-1", "garage", "default", "ceph-1"):
        config.write_text(f"[default]\nregion = {region}\n")
        assert storage.filesystem("s3://bucket/x")
        with monkeypatch.context() as env:
            env.setenv("AWS_REGION", region)
            assert storage.filesystem("s3://bucket/y")
    monkeypatch.setenv("AWS_REGION", "eu west")  # the command, before any call (the endpoint would not answer)
    assert main(["report", "s3://bucket/sweep", "s3.endpoint_url=http://127.0.0.1:9"]) == 2
    assert "avdis report: error: the S3 region AWS_REGION='eu west' (from the environment)" in capsys.readouterr().err


def test_an_endpoint_botocore_refuses_from_the_environment_or_profile_is_refused_naming_where(tmp_path, monkeypatch,
                                                                                             capsys):
    """An endpoint without its scheme in AWS_ENDPOINT_URL (MinIO's address as its console shows it), or in the AWS
    profile, failed only at the first S3 call, as 'cannot reach storage (ValueError: Invalid endpoint: localhost:9)'
    (exit 1). Refused before it (exit 2), naming where it came from, by s3.endpoint_url's rule and words; so is one
    of another scheme (`s3://minio:9000`, which botocore's check took and its first call refused: 'Custom endpoint ...
    was not a valid URI'); s3.endpoint_url comes first, and any endpoint botocore takes is taken."""
    from avdis.cli import main
    from avdis.config import S3Config

    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr(storage, "_S3_FILESYSTEMS", {})
    config = tmp_path / "config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    config.write_text("[default]\nendpoint_url = minio:9000\n")
    with pytest.raises(storage.UsageError, match=re.escape(
            f"the S3 endpoint 'minio:9000' (the endpoint_url of the AWS profile 'default' in {config}) is not an "
            "endpoint URL; give it with its scheme, e.g. http://minio:9000; fix it there, or give s3.endpoint_url, "
            "which comes first")):
        storage.filesystem("s3://bucket/x")
    assert storage.filesystem("s3://bucket/x", S3Config(endpoint_url="http://minio:9000"))  # s3.endpoint_url first
    for variable, endpoint in (("AWS_ENDPOINT_URL", "localhost:9000"), ("AWS_ENDPOINT_URL_S3", "http:/minio:9000"),
                               ("AWS_ENDPOINT_URL", "s3://minio:9000"), ("AWS_ENDPOINT_URL_S3", "http://minio_1:9000"),
                               ("AWS_ENDPOINT_URL", "http://minio:9000 "), ("AWS_ENDPOINT_URL", "http://minio:9000\n")):
        with monkeypatch.context() as env:
            env.setenv(variable, endpoint)
            with pytest.raises(storage.UsageError, match=re.escape(
                    f"the S3 endpoint {variable}={endpoint!r} (from the environment) is not an endpoint URL")
                    + f".*; fix or unset {variable}, or give s3.endpoint_url"):
                storage.filesystem("s3://bucket/x")
    for endpoint in ("http://minio:9000", "https://s3.example.com", "http://[::1]:9000", "HTTP://minio:9000"):
        config.write_text(f"[default]\nendpoint_url = {endpoint}\n")
        assert storage.filesystem("s3://bucket/x")
        with monkeypatch.context() as env:
            env.setenv("AWS_ENDPOINT_URL", endpoint)
            assert storage.filesystem("s3://bucket/y")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:9")  # the command, before any call
    assert main(["report", "s3://bucket/sweep"]) == 2
    assert "avdis report: error: the S3 endpoint AWS_ENDPOINT_URL='localhost:9' (from the environment)" in \
        capsys.readouterr().err
