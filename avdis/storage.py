"""Object storage behind one interface: a local folder or s3:// through fsspec/s3fs.

Every URL avdis reads or writes (shards, manifests, checkpoints, sweep outputs) goes
through here, so S3 options are applied in one place. Credentials are never passed
in: s3fs reads them from the environment (AWS_ACCESS_KEY_ID, ..., or the node's
instance role). Writes are atomic: a reader sees the old object or the whole new one.
"""

from __future__ import annotations

import errno
import io
import os
import re
import socket
import threading
import time
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from avdis import runtime
from avdis.config import S3Config, endpoint_fault, region_fault
from avdis.errors import AvdisError, UsageError


class StorageError(AvdisError):
    """A storage URL that cannot be used; the message names it and what to check."""

    retryable = True  # a network blip, a throttled request: another try may pass


class NotWritableError(StorageError, UsageError):
    """An output URL given by the user that cannot be written: bad input, refused before any work."""

    retryable = False


_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ClientConnectorError",
                "ConnectionError", "TimeoutError", "gaierror"}
# A profile's credentials that do not load (an expired SSO login, a failing credential_process, a malformed profile):
# botocore's message says which
_PROFILE_FAILED = {"SSOError", "TokenRetrievalError", "CredentialRetrievalError", "InvalidConfigError"}


UNREACHABLE = "cannot connect: check s3.endpoint_url / AWS_ENDPOINT_URL and the network"


# where a `ray job submit` driver found no credentials or no endpoint: the user's shell had them, the job never did
IN_A_JOB = ("; this `ray job submit` driver runs with the environment its Ray node was started with, not the "
            "submitting shell's: give AWS_* variables in the job's runtime env (--runtime-env-json "
            "'{\"env_vars\": {\"AWS_ENDPOINT_URL\": ...}}'), or start the nodes with them")


def what_to_check(exc: BaseException) -> str:
    """What to do about a storage failure, where its kind tells: '' when it does not. In a `ray job submit` driver,
    missing credentials and an endpoint that does not answer say where its environment comes from (IN_A_JOB): the
    variables set in the submitting shell, which the message told to set, never reach it."""
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    in_a_job = IN_A_JOB if runtime.job_runtime_env() is not None else ""
    if isinstance(exc, PermissionError):
        return "access denied: check the node's IAM role / AWS credentials"
    if kinds & {"NoCredentialsError", "PartialCredentialsError"}:
        return ("no AWS credentials: give the node a role, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                + in_a_job)
    if "ProfileNotFound" in kinds:
        return ("AWS_PROFILE names a profile missing from the AWS config files (~/.aws/config and credentials, or "
                "AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE): fix or unset AWS_PROFILE")
    if kinds & _PROFILE_FAILED:
        return "the AWS profile's credentials cannot be loaded (as said): renew or fix them, or give the node a role"
    if kinds & _UNREACHABLE:
        return UNREACHABLE + in_a_job
    return ""


def failed(url: str, doing: str, exc: BaseException) -> StorageError:
    """The error for a storage call on `url` that failed `doing` something, with what to check where its kind tells."""
    hint = what_to_check(exc) if is_remote(url) else ""  # a local failure's own message says it (disk, permissions)
    return StorageError(f"{url}: {doing} ({type(exc).__name__}: {exc}){'; ' + hint if hint else ''}")


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


REGION_VARIABLES = ("AWS_DEFAULT_REGION", "AWS_REGION")  # read in this order where s3.region is unset
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # read in this order where s3.endpoint_url is unset


def _variable(variables: tuple[str, ...]) -> str | None:
    """The first of `variables` set (not empty) in the environment; None where none is."""
    return next((variable for variable in variables if os.environ.get(variable)), None)


def _s3_options(s3: S3Config) -> dict[str, Any]:
    client: dict[str, Any] = {}
    variable = _variable(ENDPOINT_VARIABLES)
    endpoint = s3.endpoint_url or (os.environ[variable] if variable else None)
    if endpoint:
        client["endpoint_url"] = endpoint
    variable = _variable(REGION_VARIABLES)
    region = s3.region or (os.environ[variable] if variable else None)
    if region:
        client["region_name"] = region
    # No caching of listings: shards and results appear while others read them.
    return {"client_kwargs": client, "use_listings_cache": False, "skip_instance_cache": True}


def _profile_s3() -> tuple[str | None, str | None]:
    """The S3 endpoint and region botocore finds in this process's AWS profile (~/.aws/config: endpoint_url, its
    services section, region); (None, None) where the profile does not load (the storage calls say why)."""
    import botocore.exceptions
    import botocore.session
    from botocore.configprovider import ConfiguredEndpointProvider

    session = botocore.session.get_session()
    try:
        region = session.get_config_variable("region")
        if session.get_config_variable("ignore_configured_endpoint_urls"):
            return None, region
        return ConfiguredEndpointProvider(full_config=session.full_config, scoped_config=session.get_scoped_config(),
                                          client_name="s3").provide(), region
    except botocore.exceptions.BotoCoreError:
        return None, None


def pinned(s3: S3Config) -> S3Config:
    """`s3` with the endpoint and region this process takes from its environment (AWS_ENDPOINT_URL, AWS_REGION, ...)
    written in. Sweep trials and Ray Train workers get the config, not the driver's environment (Ray Tune forwards
    AWS keys to trials, not the endpoint or region; nodes started by `ray start` have their own): unpinned, a trial
    on such a node sent the driver's MinIO keys to AWS's endpoint, as it did where the driver's AWS profile gave the
    endpoint (`_profile_s3`). Credentials stay in the environment. One S3Config would refuse (AWS_REGION='eu west',
    AWS_ENDPOINT_URL=localhost:9000) is left out: every trial and Ray Train worker validates its config again, and
    failed on it, also where no location is on S3 (botocore never reads it there; on S3 the driver's first call fails
    on it first)."""
    client = _s3_options(s3)["client_kwargs"]
    endpoint, region = client.get("endpoint_url"), client.get("region_name")
    if endpoint is None or region is None:  # the profile's, which a node without that profile lacks
        in_profile = _profile_s3()
        endpoint, region = endpoint or in_profile[0], region or in_profile[1]
    found = {"endpoint_url": endpoint, "region": region}
    return s3.model_copy(update={key: value for key, value in found.items() if _taken(key, value)})


def _taken(key: str, value: str | None) -> bool:
    """Whether S3Config takes `value` for its setting `key`."""
    try:
        S3Config.model_validate({key: value})
    except ValueError:  # pydantic's ValidationError
        return False
    return True


def check_environment(s3: S3Config) -> None:
    """Refuse, as a UsageError (exit 2), an S3 region or endpoint of the environment (AWS_DEFAULT_REGION, AWS_REGION;
    AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL) or the AWS profile (~/.aws/config) that botocore would refuse, naming where
    it came from: it failed only at the first S3 call, as 'cannot reach storage (InvalidRegionError: ...)' or
    '(ValueError: Invalid endpoint: localhost:9000)', or with the advice to check the endpoint and the network (exit
    1). s3.region and s3.endpoint_url, which come before them, are checked with the config (`S3Config`). botocore's
    rules and no narrower (S3 servers other than AWS name their own regions: garage, default), the config's rules and
    wording (`avdis.config.region_fault`, `endpoint_fault`)."""
    found = [("region", "s3.region", REGION_VARIABLES, region_fault),
             ("endpoint_url", "s3.endpoint_url", ENDPOINT_VARIABLES, endpoint_fault)]
    in_profile = None
    for key, setting, variables, fault_of in found:
        if getattr(s3, key):
            continue
        variable = _variable(variables)
        if variable:
            value = os.environ[variable]
        else:
            in_profile = _profile_s3() if in_profile is None else in_profile
            value = in_profile[0 if key == "endpoint_url" else 1]
        fault = fault_of(value)
        if fault:
            where, fix = ((f"{variable}={value!r} (from the environment)", f"fix or unset {variable}") if variable else
                          (f"{value!r} (the {key} of {_profile_named()})", "fix it there"))
            raise UsageError(f"the S3 {key.removesuffix('_url')} {where} {fault}; {fix}, or give {setting}, "
                             "which comes first")


def _profile_named() -> str:
    """The AWS profile botocore reads, as a refusal names it: 'the AWS profile 'default' in ~/.aws/config'."""
    import botocore.session

    session = botocore.session.get_session()
    return (f"the AWS profile {session.profile or 'default'!r} in "
            f"{session.get_config_variable('config_file')}")


_S3_FILESYSTEMS: dict[tuple[Any, ...], fsspec.AbstractFileSystem] = {}
_S3_LOCK = threading.Lock()  # two threads asking at once get one filesystem


def _aws_files() -> tuple[tuple[int, int] | None, ...]:
    """The size and modification time of the AWS config and credentials files (None where missing)."""
    found: list[tuple[int, int] | None] = []
    for variable, default in (("AWS_CONFIG_FILE", "~/.aws/config"),
                              ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")):
        try:
            st = os.stat(os.path.expanduser(os.environ.get(variable) or default))
            found.append((st.st_size, st.st_mtime_ns))
        except OSError:
            found.append(None)
    return tuple(found)


def _s3_filesystem(s3: S3Config) -> fsspec.AbstractFileSystem:
    """The s3fs filesystem of these S3 settings, made once per process and AWS environment. A new one per call built
    a botocore session and client at its first request (0.2-0.9 s each against moto: the dashboard took ~15 s to open
    an S3 sweep and seconds per poll). Not fsspec's instance cache, which does not see the AWS_* variables (the
    credentials, profile and config files) nor those files: a process that changes the variables, or runs while a tool
    rewrites the credentials file with new temporary keys (saml2aws, a cron job; botocore reads keys from the file
    once), gets a new filesystem for them, as it got one per call before. Keyed by PID too: a forked child (a
    DataLoader worker) cannot use its parent's, whose event loop ran in a thread the fork left behind. Credentials that
    expire where botocore renews them itself (a role's, SSO) are refreshed in the client; listings are never cached
    (`_s3_options`), so a reused filesystem sees an object written a moment ago."""
    options = _s3_options(s3)
    aws_env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (os.getpid(), repr(options), aws_env, _aws_files())
    with _S3_LOCK:
        fs = _S3_FILESYSTEMS.get(key)
        if fs is None:  # those it replaces go (another process's, or older keys of these settings): a dashboard
            # left running beside a tool that rewrites the credentials file kept a client per rewrite
            check_environment(s3)  # before the first S3 call, which a region or endpoint botocore refuses fails
            for old in [k for k in _S3_FILESYSTEMS if k[0] != key[0] or k[1] == key[1]]:
                del _S3_FILESYSTEMS[old]
            fs = _S3_FILESYSTEMS[key] = fsspec.filesystem("s3", **options)
    return fs


def filesystem(url: str, s3: S3Config | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for `url` and the path inside it (on S3 one per settings, `_s3_filesystem`)."""
    if url.startswith("s3://"):
        return _s3_filesystem(s3 or S3Config()), url.removeprefix("s3://").rstrip("/")
    if is_remote(url):
        fs, path = fsspec.core.url_to_fs(url)
        return fs, path
    return LocalFileSystem(), os.path.abspath(url.removeprefix("file://"))


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(url: str, s3: S3Config | None = None) -> bool:
    fs, path = filesystem(url, s3)
    try:
        return fs.exists(path)
    except Exception as exc:  # unreachable endpoint, bad credentials, missing bucket
        raise failed(url, "cannot reach storage", exc) from exc


def read_bytes(url: str, s3: S3Config | None = None) -> bytes:
    """The whole object in one read (one GET on S3). Not `fs.open`: s3fs pins the ETag it saw first, so an object
    rewritten between its HEAD and its GET (the sweep rewrites trials.parquet after every result) fails the read."""
    fs, path = filesystem(url, s3)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise
    except NotADirectoryError as exc:  # a path through a file: on S3 simply an object that does not exist
        raise FileNotFoundError(url) from exc
    except Exception as exc:
        raise failed(url, "cannot read", exc) from exc


def check_bucket(url: str, s3: S3Config | None = None) -> None:
    """Raise UsageError if the bucket of an s3:// URL is missing or unreachable (other URLs pass). A listing of a
    missing bucket reads as an empty folder, so a wrong bucket name surfaced as a missing file or folder in it."""
    if not url.startswith("s3://"):
        return
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    fs, _ = filesystem(url, s3)
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise UsageError(
            f"{url}: bucket {bucket!r} does not exist; create it "
            f"(python infra/storage/create_bucket.py {bucket}) or fix the URL"
        ) from None
    except Exception as exc:  # denied, no credentials, endpoint down, DNS, TLS: say what to check
        hint = what_to_check(exc) or UNREACHABLE
        raise UsageError(f"{url}: bucket {bucket!r} ({type(exc).__name__}: {exc}); {hint}") from None


def check_buckets(s3: S3Config, *urls: str) -> None:
    """Before any work: the buckets of the s3:// URLs exist and answer (a missing one would first surface as a
    failed write after minutes of preprocessing, or as advice to preprocess into it)."""
    for url in urls:
        check_bucket(url, s3)


def _process_space() -> str:
    """Where this process's PID means this process: its host, and on Linux the machine's boot and its PID namespace.
    Containers of one hostname (docker --network host, pods with hostNetwork) have PIDs of their own: by the
    hostname alone one took a live writer's temp file in a shared folder, under a PID free in its own, for a dead
    one's."""
    host = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip().replace("-", "")[:12]
        space = os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:  # not Linux: the host alone
        return host
    return f"{host}-{boot}-{space}"


_SPACE = _process_space()


def pid_alive(pid: int) -> bool:
    """Whether a process of this PID runs on this host (another user's counts): on Linux, not a zombie, which writes
    nothing more and stays while its parent does not reap it (Ray's job supervisor does not reap a driver it killed
    with SIGKILL after its stop timed out). Its temp files, scratch folders and S3 lock are a gone process's."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive, unless /proc says a zombie
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # not Linux, or gone meanwhile: as kill said
        return True


SHARED_CHECK = ".avdis-shared-check"  # `nodes.check_shared`'s marker files: no one's data, where a killed check left one


STALE_S = 3600.0  # far longer than any write of one file takes: a temp file untouched this long has no writer


def _stale(path: str) -> bool:
    """Whether the file at `path` is untouched for STALE_S (False once gone)."""
    try:
        return os.stat(path).st_mtime < time.time() - STALE_S
    except OSError:  # removed meanwhile
        return False


def own_name(prefix: str) -> str:
    """`prefix` tagged with where this process's PID holds (`_process_space`), the PID and a random part: a file name
    only this process writes, which `remove_dead` tells as left behind once the process is gone."""
    return f"{prefix}-{_SPACE}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_dead(folder: str, prefix: str) -> None:
    """Delete the files in `folder` named by `own_name(prefix)` in processes of this host that are gone: one killed
    (SIGKILL, `ray job stop`, the OOM killer) skips its cleanup, and the next process to use the name clears what it
    left. A live process's, or one of another host sharing the folder, are left alone. Names of this hostname from
    another PID namespace or boot (a container restarted after an OOM kill, the machine rebooted, or another container
    of this hostname) cannot be judged by their PID: they go once untouched for STALE_S."""
    ours = re.compile(rf"{re.escape(prefix)}-{re.escape(_SPACE)}-(\d+)-[0-9a-f]{{8}}")
    host = re.escape(socket.gethostname())  # with any PID space, or none (names of avdis before it had one)
    this_host = re.compile(rf"{re.escape(prefix)}-{host}-([0-9a-f]{{12}}-\d+-)?\d+-[0-9a-f]{{8}}")
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return  # what follows (a write, a marker) says what is wrong with the folder
    for name in names:
        if found := ours.fullmatch(name):
            dead = not pid_alive(int(found.group(1)))
        else:
            dead = this_host.fullmatch(name) is not None and _stale(os.path.join(folder, name))
        if dead:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:  # removed by another first, or another user's in a sticky folder: theirs to remove
                pass


def _fsync(path: str) -> None:
    """Flush a local file's data, or a folder's entries, to disk. A folder this process may write but not open (mode
    -wx), or on a filesystem that cannot sync one (EINVAL: some network and FUSE mounts), keeps its entries as its
    filesystem does: a file written whole there is not refused for it."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES) or not os.path.isdir(path):
            raise


def sync(url: str, s3: S3Config | None = None) -> None:
    """Flush the local folder `url` to disk: every file and folder under it, and its own entry in its parent. Files
    copied in (fsspec's put) wait in the page cache for the kernel to write them, and a crash of the machine (a kernel
    panic, a power loss) before then left them empty beside what was written after. Nothing to do on S3, where an
    object is stored once its PUT returns."""
    fs, path = filesystem(url, s3)
    if not isinstance(fs, LocalFileSystem):
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            _fsync(os.path.join(folder, name))
        _fsync(folder)
    _fsync(os.path.dirname(path))


class _AtomicLocalFile(io.FileIO):
    """A local file written under a temp name and renamed over `path` once closed whole: a reader, or a rerun after a
    kill or a crash of the machine, sees the old file or the new one, never a truncated one (its data is synced
    before the rename, and the rename before the close returns). Discarded instead when a write failed, when its own
    `with` block raised, or when it is dropped unclosed (as pyarrow drops a stream whose copy failed). A pyarrow
    stream's `with` block closes it even when the block raised, so through pyarrow only failed writes are caught."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        remove_dead(os.path.dirname(path), f"{os.path.basename(path)}.tmp")  # left by writers killed mid-write
        self.target, self.failed = path, False
        super().__init__(own_name(f"{path}.tmp"), "wb")

    def write(self, data: Any) -> int:
        done = 0
        try:
            view = memoryview(data).cast("B")
            while done < view.nbytes:  # a raw write may take less than it was given
                done += super().write(view[done:])
        except BaseException:
            self.failed = True
            raise
        return done

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self.failed:
                os.fsync(self.fileno())
        except BaseException:
            self.failed = True
            raise
        finally:
            super().close()
            if self.failed:
                os.unlink(self.name)
            else:
                os.replace(self.name, self.target)
                _fsync(os.path.dirname(self.target) or ".")

    def __exit__(self, exc_type, *rest) -> None:
        self.failed = self.failed or exc_type is not None
        self.close()

    def __del__(self) -> None:
        if not self.closed:
            self.failed = True
            self.close()


def write_bytes(url: str, data: bytes, s3: S3Config | None = None) -> None:
    """Atomic write: temp file + rename locally, one PUT (or completed multipart) on S3."""
    fs, path = filesystem(url, s3)
    try:
        with _AtomicLocalFile(path) if isinstance(fs, LocalFileSystem) else fs.open(path, "wb") as fh:
            fh.write(data)
    except Exception as exc:
        raise failed(url, "cannot write", exc) from exc


def read_parquet(url: str, s3: S3Config | None = None) -> pa.Table:
    """A Parquet file read whole (`read_bytes`) and decoded before this returns. Not `pq.read_table` on the bytes:
    it finishes reading in the background, and a process that exits right after (a preprocess rerun with nothing to
    do) aborted in about half the runs here ("terminate called without an active exception", apache/arrow#33975).
    Raises pa.ArrowInvalid for a file that is not Parquet."""
    return parquet_of(read_bytes(url, s3))


def parquet_of(data: bytes) -> pa.Table:
    """Parquet bytes decoded before this returns, as `read_parquet` decodes them (for bytes a caller also hashes)."""
    with pq.ParquetFile(pa.BufferReader(data), pre_buffer=False) as parquet:
        return parquet.read(use_threads=False)


def write_parquet(url: str, table: pa.Table, s3: S3Config | None = None) -> None:
    """`table` as one whole Parquet file (`write_bytes`)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(url, buf.getvalue(), s3)


def list_files(url: str, suffix: str = "", s3: S3Config | None = None) -> list[str]:
    """Full URLs of the files and folders directly under `url` whose names end in `suffix` (sorted). Not the folder
    itself: s3fs lists its marker (the empty `train/run/` object the S3 console's "Create folder" writes) inside it."""
    fs, path = filesystem(url, s3)
    try:
        if not fs.exists(path):
            return []
        names = {n.rstrip("/") for n in fs.ls(path, detail=False)} - {path.rstrip("/")}
    except Exception as exc:
        raise failed(url, "cannot list", exc) from exc
    return sorted(join(url, n.rsplit("/", 1)[-1]) for n in names if n.endswith(suffix))


# what a refused delete is told, by `remove` and `check_writable` alike
_DELETES = ("avdis deletes there (old checkpoints, shards a rebuild drops): allow s3:DeleteObject on it "
            "(infra/storage/node-s3-policy.json)")


def remove(url: str, s3: S3Config | None = None) -> None:
    """Delete the file or folder at `url` (nothing there: nothing to do), one file at a time, raising StorageError,
    naming the file, where storage refuses. Not `fs.rm`: on S3 it sends DeleteObjects, which answers 200 with a refusal
    per key that s3fs drops, so where s3:DeleteObject is denied old checkpoints and stale shards stayed, unsaid."""
    fs, path = filesystem(url, s3)
    file = path
    try:
        for file in fs.find(path):  # a file: itself; a folder: every file under it
            fs.rm_file(file)
        if isinstance(fs, LocalFileSystem) and os.path.isdir(path):
            fs.rm(path, recursive=True)  # the emptied folders
    except Exception as exc:
        where = url if file == path else join(url, file.removeprefix(path))
        if is_remote(url) and isinstance(exc, PermissionError):
            raise StorageError(f"{where}: cannot delete ({type(exc).__name__}: {exc}); {_DELETES}") from exc
        raise failed(where, "cannot delete", exc) from exc


def check_writable(url: str, s3: S3Config | None = None) -> None:
    """Fail early, naming the URL, if outputs could not be written there. Leaves no trace: the probe file goes,
    and so do the local folders it made (a run refused next, for other reasons, has written nothing)."""
    probe = join(url, f".avdis-write-check-{uuid.uuid4().hex[:8]}")
    fs, path = filesystem(probe, s3)
    made = []  # local folders the probe will make, deepest first
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path)
        while folder and not os.path.exists(folder) and folder != os.path.dirname(folder):
            made.append(folder)
            folder = os.path.dirname(folder)
    try:
        write_bytes(probe, b"ok", s3)
    except StorageError as exc:
        cause = exc.__cause__ or exc
        hint = what_to_check(cause) if is_remote(url) else ""  # a refused PUT said 'Forbidden' and nothing to check
        raise NotWritableError(f"{url}: not writable ({cause}); {hint + ', or ' if hint else ''}pick an output folder "
                               "or bucket you can write to") from None
    try:
        fs.rm_file(path)  # not `rm`: s3fs's takes a delete refused per key (DeleteObjects answers 200) as done
    except Exception as exc:
        raise NotWritableError(
            f"{url}: written, but not deletable ({type(exc).__name__}: {exc}); {_DELETES} or pick another output, "
            f"and remove the check's file {probe}") from None
    for folder in made:
        try:
            os.rmdir(folder)
        except OSError:  # another process wrote there meanwhile: its folder now
            break


class _AtomicLocalHandler(pafs.FSSpecHandler):
    """fsspec's local filesystem for pyarrow, writing every file whole (`_AtomicLocalFile`)."""

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return pa.PythonFile(_AtomicLocalFile(path), mode="w")


def pyarrow_filesystem(url: str, s3: S3Config | None = None):
    """(pyarrow filesystem, path) for Ray's `storage_filesystem`, sharing the S3 options.

    Local folders get whole-file writes too: Ray uploads its experiment state by rewriting the files in place, so a
    driver killed mid-upload left them empty and its rerun silently started the sweep over instead of resuming it.
    """
    if url.startswith("s3://"):
        fs, path = filesystem(url, s3)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    if is_remote(url):
        return None, url
    return pafs.PyFileSystem(_AtomicLocalHandler(LocalFileSystem())), os.path.abspath(url.removeprefix("file://"))


def url_from_pyarrow(fs: Any, path: str) -> str | None:
    """The URL of `path` on a filesystem `pyarrow_filesystem` gave (None for another): how a Ray checkpoint's
    folder, which Ray holds as (filesystem, path), is read with this module."""
    if not isinstance(fs, pafs.PyFileSystem) or not isinstance(fs.handler, pafs.FSSpecHandler):
        return None
    if isinstance(fs.handler, _AtomicLocalHandler):
        return path
    protocol = fs.handler.fs.protocol
    return f"s3://{path}" if "s3" in ((protocol,) if isinstance(protocol, str) else protocol) else None


def local_path(fs: Any, path: str) -> str | None:
    """`path` itself when `fs` is the local filesystem `pyarrow_filesystem` gives (None otherwise): Ray hands a
    checkpoint over in place only on pyarrow's own local filesystem, and would copy it to /tmp first."""
    return path if isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, _AtomicLocalHandler) else None
