"""`storage_lock.exclusive`: one writer per folder, locally (flock) and on S3 (a lease written by conditional PUTs),
held again at once by the process that holds it."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from avdis import storage, storage_lock
from avdis.config import S3Config
from avdis.errors import UsageError


def _start(code: str, *args: str) -> subprocess.Popen:
    """A Python process running `code` (after `from avdis import storage_lock`), its stdout and stderr piped."""
    code = "import sys, time\nfrom avdis import storage_lock\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _lock_body(url: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(url, storage_lock.LOCK)))


BUILDER = """
import os
storage_lock.LEASE_S = 2.0  # the waiter looks again every 0.5 s
with storage_lock.exclusive(sys.argv[1], "build of these shards", wait=True):
    with open(sys.argv[2], "a") as log:
        log.write("in\\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:  # the test's go-ahead
        time.sleep(0.05)
    with open(sys.argv[2], "a") as log:
        log.write("out\\n")
"""


def test_two_jobs_building_the_same_s3_shards_take_turns(s3_bucket, tmp_path):
    """S3 had no lock: two jobs building the same shards there wrote them beside each other."""
    url, log, go = f"{s3_bucket}/shards", tmp_path / "log", tmp_path / "go"
    first = _start(BUILDER, url, str(log), str(go))
    deadline = time.monotonic() + 60
    while not log.exists() and time.monotonic() < deadline:  # the first holds the lock; the second is started now,
        time.sleep(0.05)  # not at once: moto checks a condition and writes in two steps (S3 in one), so two PUTs at
    second = _start(BUILDER, url, str(log), str(go))  # the same instant could both pass there
    waiting = next((line for line in iter(second.stderr.readline, "") if "waiting" in line), "")  # lock found held
    go.touch()
    for build in (first, second):
        build.wait(60)
    assert [b.returncode for b in (first, second)] == [0, 0], [b.stderr.read() for b in (first, second)]
    assert log.read_text() == "in\nout\nin\nout\n"  # one after the other, never both in
    assert f"another build of these shards is running there (pid {first.pid} on " in waiting, waiting
    assert "waiting for it to end" in waiting, waiting
    assert _lock_body(url)["holder"] is None  # released


HOLDER = """
storage_lock.LEASE_S = 2.0  # renewed every 0.5 s
with storage_lock.exclusive(sys.argv[1], "sweep driver"):
    print("held", flush=True)
    time.sleep(60)
"""
# a holder on another machine, as far as the lock can tell: whether it was killed cannot be asked here
ELSEWHERE = HOLDER.replace("storage_lock.LEASE_S", "from avdis import storage\nstorage._SPACE = 'another-machine'\n"
                                                   "storage_lock.LEASE_S", 1)


def test_an_s3_lock_is_renewed_while_its_holder_runs_and_runs_out_once_it_is_killed(s3_bucket, capfd):
    url = f"{s3_bucket}/sweeps/s"
    holder = _start(ELSEWHERE, url)
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
        time.sleep(3)  # past its lease: renewed, so still held
        with pytest.raises(storage_lock.BusyError, match=rf"^{url}: another sweep driver is running there \(pid "
                                                    rf"{holder.pid} on .*; wait for it to end, or use another name$"):
            with storage_lock.exclusive(url, "sweep driver"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no release: its lease runs out
        holder.wait(30)
    start = time.monotonic()
    with storage_lock.exclusive(url, "sweep driver", wait=True):
        assert time.monotonic() - start < 10
        assert _lock_body(url)["holder"] == f"pid {os.getpid()} on {os.uname().nodename}"
    assert f"another sweep driver is running there (pid {holder.pid} on " in capfd.readouterr().err


def test_the_refusal_while_a_killed_holders_s3_lease_runs_out_says_how_long_is_left(s3_bucket):
    """A sweep driver killed (SIGKILL) keeps its S3 folder until its lease runs out: the second command was told that
    it runs out 60 s after its last renewal, not when that was, so how long to wait was left to guess."""
    url = f"{s3_bucket}/sweeps/s"
    holder = _start(ELSEWHERE.replace("LEASE_S = 2.0", "LEASE_S = 40.0"), url)
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    with pytest.raises(storage_lock.BusyError) as refused:
        with storage_lock.exclusive(url, "sweep driver"):
            pass
    said = re.search(r"renewed (\d+) s ago: if it was killed, its lease runs out in (\d+) s, 40 s after its last "
                     r"renewal\); wait for it to end", str(refused.value))
    assert said, refused.value
    ago, left = map(int, said.groups())
    assert ago <= 15 and abs(ago + left - 40) <= 1  # S3 stamps whole seconds


def test_an_s3_lock_whose_holder_was_killed_on_this_machine_is_taken_over_at_once(s3_bucket, capfd):
    """`ray job stop` kills a sweep's driver 3 s after its SIGTERM, before it lets its S3 lock go (a real sweep on S3
    needed 4-6 s), and the same command submitted again at once, whose driver runs on the same head, was refused for
    the rest of the lease, up to a minute. A holder of this machine (host, boot, PID namespace) whose process is gone
    is no holder: taken over at once, saying so, and `held` says the folder is free. A live one is still refused. Ray's
    job supervisor does not reap the driver it killed: a zombie, not waited for here either, is gone too."""
    url = f"{s3_bucket}/sweeps/s"
    holder = _start(HOLDER.replace("LEASE_S = 2.0", "LEASE_S = 40.0"), url)
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
        assert storage_lock.held(url)
        with pytest.raises(storage_lock.BusyError, match=rf"another sweep driver is running there \(pid {holder.pid} "):
            with storage_lock.exclusive(url, "sweep driver"):  # alive: its lock stands
                pass
        holder.send_signal(signal.SIGKILL)  # not waited for: a zombie until the test reaps it
        deadline = time.monotonic() + 30
        while Path(f"/proc/{holder.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not storage_lock.held(url)  # its lease has ~40 s left, its process none
        start = time.monotonic()
        with storage_lock.exclusive(url, "sweep driver"):  # without wait: refused before
            assert time.monotonic() - start < 5
            assert _lock_body(url)["holder"] == f"pid {os.getpid()} on {os.uname().nodename}"
    finally:
        holder.kill()
        holder.wait(30)
    said = capfd.readouterr().err
    assert f"the sweep driver that held it (pid {holder.pid} on " in said and "taking it over" in said, said


def test_a_lease_stamped_by_a_clock_ahead_of_the_answering_one_was_renewed_0_s_ago(s3_bucket, monkeypatch):
    """S3's servers need not agree to the second: where the one answering runs behind the one that stamped the lock,
    the refusal said 'renewed -0 s ago' (or -2 s)."""
    import email.utils

    import boto3

    url = f"{s3_bucket}/sweeps/s"
    held = {"holder": "pid 1 on elsewhere", "token": "other", "lease_s": 40, "renewal": 0}
    boto3.client("s3").put_object(Bucket=s3_bucket.removeprefix("s3://"), Key=f"sweeps/s/{storage_lock.LOCK}",
                                  Body=json.dumps(held).encode())
    read = storage_lock._get_object

    async def behind(fs, bucket: str, key: str):  # the answer's Date 2 s before the object's LastModified
        data, response = await read(fs, bucket, key)
        date = response["LastModified"].timestamp() - 2
        response["ResponseMetadata"]["HTTPHeaders"]["date"] = email.utils.formatdate(date, usegmt=True)
        return data, response

    monkeypatch.setattr(storage_lock, "_get_object", behind)
    with pytest.raises(storage_lock.BusyError, match=r"renewed 0 s ago: if it was killed, its lease runs out in 40 s"):
        with storage_lock.exclusive(url, "sweep driver"):
            pass


def test_a_holder_whose_s3_lock_was_taken_says_so_loudly(s3_bucket, capfd, monkeypatch):
    """A holder stalled past its lease (a long GC pause, S3 out of reach) whose lock another job took."""
    import boto3

    monkeypatch.setattr(storage_lock, "LEASE_S", 1.0)
    url = f"{s3_bucket}/runs/r"
    with storage_lock.exclusive(url, "training run"):
        other = {"holder": "pid 1 on elsewhere", "token": "other", "lease_s": 60, "renewal": 0}
        boto3.client("s3").put_object(Bucket=s3_bucket.removeprefix("s3://"), Key=f"runs/r/{storage_lock.LOCK}",
                                      Body=json.dumps(other).encode())
        said, deadline = "", time.monotonic() + 10
        while "WARNING" not in said and time.monotonic() < deadline:  # the next renewal, within 0.25 s when idle
            time.sleep(0.1)
            said += capfd.readouterr().err
    assert f"WARNING: {url}: this training run's lock is now held by pid 1 on elsewhere" in said, said
    assert "two training runs may now write there at once" in said
    assert _lock_body(url)["holder"] == "pid 1 on elsewhere"  # not released over the other's


def test_an_s3_lock_is_released_where_deletes_are_denied(s3_bucket):
    """Buckets that deny s3:DeleteObject must not keep a released lock held until its lease runs out."""
    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    s3 = boto3.client("s3")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    try:
        url = f"{s3_bucket}/shards"
        with storage_lock.exclusive(url, "build of these shards", wait=True):
            pass
        assert _lock_body(url)["holder"] is None
        start = time.monotonic()
        with storage_lock.exclusive(url, "build of these shards"):  # taken at once
            assert time.monotonic() - start < 5
    finally:
        s3.delete_bucket_policy(Bucket=bucket)


@contextmanager
def _store(upstream: str, conditionals: str) -> Iterator[str]:
    """An S3-compatible store in front of moto (`upstream`) that refuses conditional writes (`conditionals="refuses"`:
    501 NotImplemented, as stores without them answer), ignores them ("ignores"), or keeps to them without naming
    the failed condition in its refusal ("unnamed", as AWS does). Yields its endpoint."""
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # answers botocore's Expect: 100-continue

        def log_message(self, *args) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conditional = {"If-None-Match", "If-Match"} & set(self.headers.keys())
            if self.command == "PUT" and conditional and conditionals == "refuses":
                error = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code><Message>A header "
                         b"you provided implies functionality that is not implemented</Message></Error>")
                self.send_response(501)
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            ignored = conditional if self.command == "PUT" and conditionals == "ignores" else set()
            headers = {k: v for k, v in self.headers.items() if k not in ignored}
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            if conditionals == "unnamed":
                data = re.sub(rb"<Condition>.*?</Condition>", b"", data)
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", answer.getheader("Content-Length") if self.command == "HEAD" else
                             str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("conditionals", ["refuses", "ignores"])
def test_a_store_without_conditional_writes_runs_unlocked_with_a_warning(s3_server, s3_bucket, conditionals, capfd):
    """A store that ignores If-None-Match would let every job take the lock: it is found out, as one refusing it."""
    with _store(s3_server, conditionals) as endpoint:
        with storage_lock.exclusive(f"{s3_bucket}/sweeps/s", "sweep driver", s3=S3Config(endpoint_url=endpoint)):
            pass
    said = capfd.readouterr().err
    assert f"avdis: warning: {s3_bucket}/sweeps/s: cannot lock (the store " in said, said
    assert "make sure no other sweep driver runs there" in said


def test_a_job_on_a_store_that_ignores_conditional_writes_is_not_told_as_ended(s3_server, s3_bucket):
    """Its lock was left written as released: `held` said no job held the folder while one ran there unlocked, and
    the dashboard refused, or said ended, a sweep getting ready there. It cannot be told: held."""
    url = f"{s3_bucket}/sweeps/s"
    with _store(s3_server, "ignores") as endpoint:
        s3 = S3Config(endpoint_url=endpoint)
        with storage_lock.exclusive(url, "sweep driver", s3=s3):
            assert storage_lock.held(url, s3)
        with storage_lock.exclusive(url, "sweep driver", s3=s3):  # the next job there is not kept out by the mark
            pass


def test_a_store_that_does_not_name_the_failed_condition_is_locked(s3_server, s3_bucket):
    """s3fs raises FileExistsError for a refused If-None-Match only where the 412 names the condition."""
    holder = _start(HOLDER, f"{s3_bucket}/s")
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
        with (_store(s3_server, "unnamed") as endpoint,
              pytest.raises(storage_lock.BusyError, match=f"pid {holder.pid} ")):
            with storage_lock.exclusive(f"{s3_bucket}/s", "sweep driver", s3=S3Config(endpoint_url=endpoint)):
                pass
    finally:
        holder.kill()
        holder.wait(30)


NESTED = """
with storage_lock.exclusive(sys.argv[1], "sweep driver"):
    # data.shards: the sweep's folder
    with storage_lock.exclusive(sys.argv[1] + "/", "build of these shards", wait=True):
        print("built", flush=True)
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_folder_this_process_holds_is_held_again_at_once(tmp_path, where, request):
    """A sweep whose data.shards is its own folder waited for its own lock for ever (locally: a second flock of the
    same process blocks)."""
    url = str(tmp_path / "sweeps" / "s") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/sweeps/s"
    nested = _start(NESTED, url)
    try:
        out, err = nested.communicate(timeout=30)
    finally:
        nested.kill()
    assert (nested.returncode, out) == (0, "built\n"), err
    assert "waiting" not in err


def test_a_local_folders_lock_copied_to_s3_with_its_shards_holds_nothing(s3_bucket):
    """Shards built locally and copied up (`aws s3 sync`) bring their `.avdis-lock`, which no one renews: the next
    build there waited a whole lease for it."""
    url = f"{s3_bucket}/shards"
    storage.write_bytes(storage.join(url, storage_lock.LOCK), b"pid 1 on laptop")
    with storage_lock.exclusive(url, "build of these shards"):  # not BusyError
        assert _lock_body(url)["holder"] == f"pid {os.getpid()} on {os.uname().nodename}"


def test_a_readers_probe_of_a_lock_does_not_refuse_a_job(tmp_path, monkeypatch):
    """`storage_lock.held` (the dashboard's) holds a local folder's lock for an instant: a sweep driver starting just
    then was refused as if another driver ran there."""
    import fcntl

    url = str(tmp_path / "sweeps" / "s")
    with storage_lock.exclusive(url, "sweep driver"):
        assert storage_lock.held(url)
    assert not storage_lock.held(url)
    probe = os.open(os.path.join(url, storage_lock.LOCK), os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # as `held` takes it
    sleep = time.sleep

    def probe_ends(seconds: float) -> None:  # the probe lets go while the job looks again
        os.close(probe)
        monkeypatch.setattr(time, "sleep", sleep)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", probe_ends)
    with storage_lock.exclusive(url, "sweep driver"):
        assert storage_lock.held(url)


@pytest.mark.parametrize("url", ["gs://bucket/sweeps/s", "memory://sweeps/s"])
def test_a_store_with_no_lock_is_refused_not_run_unlocked_unsaid(url):
    """A remote store other than S3 was run unlocked without a word (`held` said held for ever)."""
    with pytest.raises(UsageError, match=rf"^{url}: avdis locks only local folders and s3://"):
        with storage_lock.exclusive(url, "sweep driver"):
            pytest.fail("ran unlocked")
    with pytest.raises(UsageError, match="avdis locks only local folders and s3://"):
        storage_lock.held(url)
