"""One writer per folder: `exclusive` holds a folder for a job (a sweep's driver, a training run, a build of shards,
the generation of a corpus) while it writes there, and `held` tells a reader whether a job holds one now. Locally a
flock on `<folder>/.avdis-lock`; on S3 that object is a lease written only by conditional PUTs (`_Lease`).
"""

from __future__ import annotations

import email.utils
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec.asyn

from avdis import storage
from avdis.config import S3Config
from avdis.errors import AvdisError, UsageError
from avdis.storage import NotWritableError, failed, filesystem, is_remote, join, what_to_check


LOCK = ".avdis-lock"
LEASE_S = 60.0  # an S3 lock's lease: how long one whose holder was killed keeps its folder (renewed every LEASE_S/4)
_HELD: set[str] = set()  # the folders this process holds (`exclusive`)


class BusyError(UsageError):
    """Another process holds the folder: two writers would interleave their outputs."""


@contextmanager
def exclusive(url: str, what: str, wait: bool = False, s3: S3Config | None = None) -> Iterator[None]:
    """Hold `url`'s folder for this process while the block runs, so a second `what` there is refused instead of
    writing beside the first, or with `wait` waits for the first to end (saying so): a second build of the same
    shards then finds them made. Locally a lock on `<folder>/.avdis-lock`, which the OS releases when the process
    (and any child it forked without exec) ends, however it ends. On S3 that object is a lease (`_Lease`), renewed
    while the block runs: one whose holder was killed runs out within LEASE_S, by S3's clock, or at once for a
    process of this machine, which can see that the holder's is gone (`_gone`). A folder this process
    already holds is held again at once (the sweep's own folder given as its data.shards): its lock would wait for
    itself for ever. Where no lock can be taken (a network filesystem without locks, a store refusing conditional
    writes) it warns and runs unlocked. Other remote stores are refused (`_lockable`)."""
    _lockable(url)
    fs, path = filesystem(url, s3)
    held = f"s3://{path}" if url.startswith("s3://") else os.path.realpath(path)
    if held in _HELD:
        yield
        return
    with (_lease if url.startswith("s3://") else _flock)(url, fs, path, what, wait):
        _HELD.add(held)
        try:
            yield
        finally:
            _HELD.discard(held)


def _lockable(url: str) -> None:
    """Refuse (UsageError) a URL that is neither a local folder nor s3://: there is no lock for it here, and a job
    there ran unlocked without a word (two sweeps or builds writing one folder at once). Every setting and command
    refuses such URLs before this (`config.location`): this keeps a new way in from reaching one silently."""
    if is_remote(url) and not url.startswith("s3://"):
        raise UsageError(f"{url}: avdis locks only local folders and s3://bucket/prefix (no lock for "
                         f"{url.split('://', 1)[0]}://, so two jobs could write there at once); use one of those")


def _busy(url: str, what: str, holder: str, wait: bool) -> None:
    """Refuse the second `what` (BusyError), or with `wait` say that it waits, on stderr: stdout may be what a
    command answers (preprocess's summary)."""
    if not wait:
        raise BusyError(f"{url}: another {what} is running there ({holder}); wait for it to end, or use another name")
    print(f"avdis: {url}: another {what} is running there ({holder}); waiting for it to end", file=sys.stderr,
          flush=True)


def _unlocked(url: str, what: str, why: str) -> None:
    print(f"avdis: warning: {url}: cannot lock ({why}); make sure no other {what} runs there", file=sys.stderr,
          flush=True)


@contextmanager
def _flock(url: str, fs: Any, folder: str, what: str, wait: bool) -> Iterator[None]:
    """`exclusive` on a local folder: flock on its `.avdis-lock`, which holds who has it."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise NotWritableError(f"{url}: not writable ({exc}); pick an output folder or bucket you can write "
                               "to") from None
    try:
        try:
            if not _flock_free(fd):
                _busy(url, what, os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process", wait)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without locks (some NFS, FUSE mounts)
            _unlocked(url, what, str(exc))
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)


def _flock_free(fd: int) -> bool:
    """Take the flock on `fd` where no one holds it (False where another does). Looked at twice, 0.05 s apart: a
    reader's probe (`held`) holds it for an instant, which must not refuse a sweep driver or a training run."""
    for look in range(2):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if look == 0:
                time.sleep(0.05)
    return False


def held(url: str, s3: S3Config | None = None) -> bool:
    """Whether a job holds `url`'s folder now (`exclusive`): tells a sweep getting ready (its corpus and shards made
    before its first result, its lock held) from a folder whose job ended, which leaves only its `.avdis-lock` (a
    sweep refused after it took its lock, or killed before its first result). Locally a shared flock tried without
    waiting on a descriptor of its own, let go at once; on S3 the lease as it stands. True where it cannot be told (a
    filesystem without locks, a store that ignores conditional writes, whose job marks its lock `unlocked`): a reader
    then waits, as for a held one. Other remote stores are refused (`_lockable`)."""
    _lockable(url)
    fs, path = filesystem(url, s3)
    if url.startswith("s3://"):
        bucket, key, _ = fs.split_path(join(path, LOCK))
        try:
            found = _read_lease(fs, bucket, key)
        except Exception as exc:
            raise failed(url, "cannot read its lock", exc) from None
        return found is not None and (not found[2] or found[0].get("unlocked") is True)
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDONLY)  # read access is enough: a shared lock
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held; any other: a filesystem without locks
        return True
    finally:
        os.close(fd)  # lets the probe's lock go
    return False


@contextmanager
def _lease(url: str, fs: Any, folder: str, what: str, wait: bool) -> Iterator[None]:
    """`exclusive` on an S3 folder (`_Lease`); a refused write is the output's refusal, as locally."""
    lease = _Lease(fs, join(folder, LOCK), url, what)
    try:
        taken = lease.take(wait)
    except AvdisError:
        raise
    except PermissionError as exc:
        raise NotWritableError(f"{url}: not writable ({exc}); {what_to_check(exc)}, or pick an output folder or bucket "
                               "you can write to") from None
    except Exception as exc:
        raise failed(url, "cannot lock", exc) from None
    try:
        yield
    finally:
        if taken:
            lease.release()


def _s3_code(exc: BaseException) -> str:
    """The S3 error code behind an s3fs error ('' for none). Not the error's type: s3fs turns 412 and 501 alike into
    OSError, and a refused If-None-Match into FileExistsError only where the store names the condition (AWS does,
    others need not)."""
    response = getattr(exc.__cause__, "response", None) or getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return "NotImplemented" if status == 501 else response.get("Error", {}).get("Code", "")


async def _get_object(fs: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    try:
        return await response["Body"].read(), response
    finally:
        response["Body"].close()


def _read_lease(fs: Any, bucket: str, key: str) -> tuple[dict[str, Any], str, bool] | None:
    """An S3 lock as it stands: its body (with quiet_s, the seconds since it was last written, by S3's clock), its
    ETag, and whether it is free (released, or its lease ran out); None where there is none."""
    try:
        data, response = fsspec.asyn.sync(fs.loop, _get_object, fs, bucket, key)
    except FileNotFoundError:
        return None
    try:
        body = json.loads(data)
        lease_s = float(body["lease_s"])
    except (ValueError, TypeError, KeyError):  # no lease (a local folder's lock, copied up with its shards): free
        return {}, response["ETag"], True
    now = email.utils.parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"])
    quiet = max(0.0, (now - response["LastModified"]).total_seconds())  # S3's servers' clocks need not agree
    free = body.get("holder") is None or quiet > lease_s or _gone(body)
    return {**body, "lease_s": lease_s, "quiet_s": quiet}, response["ETag"], free


def _gone(body: dict[str, Any]) -> bool:
    """Whether the lease's holder ran where this process runs (`storage._SPACE`: the host, its boot and PID
    namespace) and its process is gone: killed without releasing it. `ray job stop` kills a sweep's driver 3 s after
    its SIGTERM, before Tune lets it release its lock on S3, and the same command submitted again at once, whose
    driver runs on the same head, was refused for the rest of the lease (up to a minute). A holder elsewhere, or one
    whose PID is taken again, is judged by its lease alone."""
    pid = body.get("pid")
    return (body.get("holder") is not None and body.get("space") == storage._SPACE and isinstance(pid, int)
            and not storage.pid_alive(pid))  # a zombie too: Ray's supervisor does not reap a driver it SIGKILLed


class _Lease:
    """An S3 folder's lock: the object `<folder>/.avdis-lock`, written only by conditional PUTs. It is made with
    If-None-Match: * (of two jobs, one makes it), renewed every lease_s / 4 with If-Match on its ETag, and taken over
    from a holder gone quiet for lease_s (killed, its node lost), released, or of this machine and gone (`_gone`),
    again with If-Match: of two waiters, one takes it. Quiet is judged by S3's clock (the object's LastModified
    against the Date of the answer), so a node whose clock runs ahead does not take a live lease. Released by
    writing it as released: no s3:DeleteObject, which some buckets deny. The body says who holds it: holder ('pid N
    on host', null once released), a token of this hold, lease_s, the renewal's number (each write a new ETag), and
    the holder's pid and process space (`storage._SPACE`)."""

    CONTENDED = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey")  # another wrote first: look again

    def __init__(self, fs: Any, path: str, url: str, what: str) -> None:
        self.fs, self.url, self.what = fs, url, what
        self.bucket, self.key, _ = fs.split_path(path)
        self.holder, self.token = f"pid {os.getpid()} on {socket.gethostname()}", uuid.uuid4().hex
        self.lease_s, self.renewal, self.etag, self.lost = LEASE_S, 0, "", False
        self.stop = threading.Event()
        self.renewer = threading.Thread(target=self._renew, name=f"avdis lease {url}", daemon=True)

    def _put(self, released: bool = False, unlocked: bool = False, **condition: str) -> str:
        """Write the lock under `condition`; its new ETag. `unlocked`: free, marked as a job's that runs unlocked."""
        body = {"holder": None if released or unlocked else self.holder, "token": self.token, "lease_s": self.lease_s,
                "renewal": self.renewal, "pid": os.getpid(), "space": storage._SPACE,  # for `_gone`
                **({"unlocked": True} if unlocked else {})}
        return self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=json.dumps(body).encode(),
                               **condition)["ETag"]

    def take(self, wait: bool) -> bool:
        """Take the lock, waiting for it with `wait` (else BusyError); False where the store cannot lock (warned)."""
        said = False
        while True:
            try:
                try:
                    self.etag = self._put(IfNoneMatch="*")
                except OSError as exc:
                    if _s3_code(exc) != "PreconditionFailed":
                        raise
                    found = _read_lease(self.fs, self.bucket, self.key)
                    if found is None:
                        continue  # released by a delete meanwhile
                    body, etag, free = found
                    if body.get("token") == self.token:  # our own write, retried by s3fs after its answer was lost
                        self.etag = etag
                    elif free:
                        if _gone(body) and body["quiet_s"] <= body["lease_s"]:  # its lease alone would hold it
                            print(f"avdis: {self.url}: the {self.what} that held it ({body['holder']}) is gone, killed "
                                  "on this machine without letting it go; taking it over", file=sys.stderr, flush=True)
                        self.etag = self._put(IfMatch=etag)
                    else:
                        if not said:
                            lapses = (f"renewed {body['quiet_s']:.0f} s ago: if it was killed, its lease runs out in "
                                      f"{max(0.0, body['lease_s'] - body['quiet_s']):.0f} s, {body['lease_s']:g} s "
                                      "after its last renewal")
                            _busy(self.url, self.what, f"{body.get('holder')}; {lapses}", wait)
                            said = True
                        time.sleep(min(5.0, body["lease_s"] / 4))
                        continue
                return self._honoured()
            except OSError as exc:
                if _s3_code(exc) == "NotImplemented":
                    _unlocked(self.url, self.what, f"the store refuses conditional writes: {exc}")
                    return False
                if _s3_code(exc) not in self.CONTENDED:
                    raise
                time.sleep(0.1)

    def _honoured(self) -> bool:
        """Whether the store keeps to If-None-Match (one that ignores it would let every job take the lock), asked
        by writing the lock again under it: it must be refused. Starts the renewals where it is; where it is not, the
        lock is left free and marked `unlocked`, which `held` cannot tell from a running job: one written as released
        told the dashboard that no sweep ran there while one did."""
        try:
            self._put(IfNoneMatch="*")
        except OSError as exc:
            if _s3_code(exc) != "PreconditionFailed":
                raise
            self.renewer.start()
            return True
        _unlocked(self.url, self.what, "the store ignores conditional writes (If-None-Match)")
        self._put(unlocked=True)
        return False

    def _renew(self) -> None:
        """Renew the lease every lease_s / 4 until released, or until another has taken the lock (`_taken`). Any other
        failure (S3 unreachable a while) is tried again at the next renewal, within the lease."""
        while not self.stop.wait(self.lease_s / 4):
            self.renewal += 1
            try:
                self.etag = self._put(IfMatch=self.etag)
            except Exception as exc:
                if _s3_code(exc) in self.CONTENDED and self._taken():
                    return

    def _taken(self) -> bool:
        """After a refused renewal: whether another holds the lock now, said loudly (else it was our own renewal,
        retried by s3fs after its answer was lost)."""
        try:
            found = _read_lease(self.fs, self.bucket, self.key)
        except Exception:
            return False
        if found is not None and found[0].get("token") == self.token:
            self.etag = found[1]
            return False
        holder = (found[0].get("holder") if found else None) or "no one now (another took it and let go)"
        print(f"avdis: WARNING: {self.url}: this {self.what}'s lock is now held by {holder}: it went unrenewed for "
              f"{self.lease_s:g} s (this process stalled, or could not reach S3) and was taken as a dead holder's; "
              f"two {self.what}s may now write there at once: stop one of them", file=sys.stderr, flush=True)
        self.lost = True
        return True

    def release(self) -> None:
        self.stop.set()
        self.renewer.join()
        if not self.lost:
            try:
                self._put(released=True, IfMatch=self.etag)
            except Exception:  # taken meanwhile, or S3 unreachable: the lease runs out by itself
                pass
