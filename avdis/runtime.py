"""Connecting to Ray: the cluster at an address, or a local one started here.

One place decides the address (config, then RAY_ADDRESS, else a new local Ray: never
the last `ray start` recorded on this machine, which may be long dead; "auto" asks for
that record) and the environment every Ray worker gets, so jobs behave the same under
`python jobs/...`, `avdis ...` and `ray job submit`. A configured address must answer within
CONNECT_TIMEOUT_S; Ray itself would retry it for ever.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from avdis.config import RayConfig
from avdis.errors import UsageError

# Environment for every worker process: quiet Ray Train prints, DeepSpeed on the CPU
# accelerator where no GPU is visible (set per worker in avdis.train.engine too).
WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "PYTHONUNBUFFERED": "1"}
CONNECT_TIMEOUT_S = 15.0
# Set by Ray's job supervisor for a `ray job submit` driver: the job's config, runtime env included.
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_runtime_env() -> dict[str, Any] | None:
    """The runtime env of the Ray job this driver runs in; None outside a job."""
    raw = os.environ.get(JOB_CONFIG_VAR)
    return (json.loads(raw).get("runtime_env") or {}) if raw else None


def check_kept(paths: dict[str, str]) -> None:
    """Refuse outputs (by option name) that lie in Ray's unpacked copy of `--working-dir`, where a `ray job submit`
    driver runs and where a relative path lands (configs make local paths absolute against it): what is written
    there is lost when Ray clears its copies, and a corpus made there is made again by every job. All are named at
    once, so one resubmission fixes them. Callers pass what they write (reading from the copy is fine)."""
    copy = _job_copy()
    if copy is None:
        return
    local = {k: v.removeprefix("file://") for k, v in paths.items()}
    inside = {k: os.path.relpath(v, copy) for k, v in local.items() if "://" not in v and within(v, copy)}
    if inside:
        raise UsageError(
            f"{', '.join(f'{k}={v}' for k, v in inside.items())}: in {copy}, Ray's unpacked copy of --working-dir "
            "where this job runs, which Ray deletes when it needs the room; what is written there would not be where "
            "you look for it. Give absolute paths on the cluster's nodes (on a one-machine cluster: "
            f"{' '.join(f'{k}=$PWD/{v}' for k, v in inside.items())}, which your shell expands where you submit) "
            "or s3://bucket/prefix")


def _job_copy() -> str | None:
    """Ray's unpacked copy of the job's `--working-dir` that this driver runs in (Ray 2.60 unpacks it to
    `.../runtime_resources/working_dir_files/<package>/` and starts the driver there), or None: outside a job, in a
    job without one, or in a driver that moved elsewhere (`cd /srv/x && python ...`)."""
    if not (job_runtime_env() or {}).get("working_dir"):
        return None
    here = Path(os.getcwd())
    return next((str(p) for p in (here, *here.parents) if p.parent.name == "working_dir_files"), None)


def within(path: str, folder: str) -> bool:
    """Whether `path` is `folder` (an absolute path) or lies under it, as written: no link is resolved."""
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def job_env_vars() -> dict[str, str]:
    """Environment variables of the Ray job this driver runs in (`--runtime-env-json`); {} outside a job."""
    return (job_runtime_env() or {}).get("env_vars") or {}


def project_env() -> dict[str, str]:
    """WORKER_ENV less the keys the job sets: the job's own values win, and Ray refuses a key given twice."""
    taken = job_env_vars()
    return {k: v for k, v in WORKER_ENV.items() if k not in taken}


def worker_runtime_env(gcs: str | None = None) -> dict[str, dict[str, str]] | None:
    """`project_env` as ray.init's runtime env (None when the job sets every key itself), and RAY_ADDRESS=`gcs`, the
    cluster this process joins at its GCS address (unless the job sets it): a worker has the environment of its
    node's `ray start`, which names no cluster, and Ray Train's placement-group cleaner asks the state API, with no
    address, whether its run's controller lives. Ray then takes the head recorded in the default temp dir, else the
    one Ray running on the machine: on a machine with several Rays (another job's, another user's; a head started
    with --temp-dir records itself elsewhere) the cleaner died on "Found multiple active Ray instances", and a run
    whose driver died kept its placement group, holding its CPUs (`_init_local` names a local Ray the same way)."""
    env = project_env()
    if gcs is not None and "RAY_ADDRESS" not in job_env_vars():
        env["RAY_ADDRESS"] = gcs
    return {"env_vars": env} if env else None


def _resolve(address: str) -> str:
    """The host:port (ray:// kept) that `address` stands for. "auto" is RAY_ADDRESS (unless "auto" too), else the
    head the last `ray start` on this machine recorded, else the one Ray running here (with several, refused: Ray
    would join whichever its set gives first). Ray's own lookup prefers a lone running Ray to the recorded head:
    with that head dead and one other Ray on the machine (another job's, another user's) it would join that one
    instead of saying the head is down."""
    address = _spelt(address)
    if "://" in address and not address.startswith("ray://"):
        raise UsageError(f"Ray address {address!r} is a URL; give the cluster's host:port (its GCS, port 6379 unless "
                         "changed), or ray://host:10001 for Ray Client. The dashboard's http:// address is for "
                         "`ray job submit` (a RAY_ADDRESS exported for it is read here too): fix ray.address / "
                         "RAY_ADDRESS, or unset both to start a local Ray")
    if address != "auto":
        return address
    import ray._private.services as services
    import ray._private.utils as ray_utils

    # RAY_ADDRESS=auto (as Ray's docs export it) is this same "auto", not an address to hand Ray's lookup
    looked_up = (os.environ.get("RAY_ADDRESS") or "auto") == "auto"
    recorded = ray_utils.read_ray_address() if looked_up else None
    running = sorted(services.find_gcs_addresses()) if looked_up and recorded is None else []
    if len(running) > 1:  # Ray would join one of them, whichever its set gives first
        raise UsageError(
            f"Ray address 'auto': no `ray start` recorded a head in {ray_utils.get_ray_address_file(None)} (a head "
            f"started with --temp-dir records itself in that folder instead), and {len(running)} Rays run on this "
            f"machine ({', '.join(running)}); give yours as ray.address or RAY_ADDRESS (host:port)")
    try:
        return services.canonicalize_bootstrap_address(recorded or "auto") or ""
    except (ConnectionError, ValueError) as exc:
        raise UsageError(f"Ray address 'auto': {exc}") from None


def _check_answers(address: str, target: str) -> None:
    """Refuse, naming the address (and `target`, what it resolved to), when Ray does not answer there within
    CONNECT_TIMEOUT_S (Ray itself would retry for ever, also at a port where something else listens, such as the
    dashboard's)."""
    hostport = target.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not host:port; fix ray.address / RAY_ADDRESS")
    shown = repr(address) if target == address else f"{address!r} ({hostport}, as resolved)"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(
            f"Ray address {shown} does not answer ({exc}; waited up to {CONNECT_TIMEOUT_S:.0f}s); start that "
            "cluster, fix ray.address / RAY_ADDRESS, or unset both to start a local Ray"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true") and not _speaks_grpc(hostport):
        raise UsageError(
            f"Ray address {shown} accepts connections but does not answer as Ray (no gRPC service there within "
            f"{CONNECT_TIMEOUT_S:.0f}s): give the port of the cluster's GCS (6379 unless changed), not the "
            "dashboard's or another service's"
        )


def _speaks_grpc(target: str) -> bool:
    """Whether a gRPC (HTTP/2) server answers at host:port: Ray's GCS and Ray Client both are one."""
    import grpc
    from ray._private.ray_constants import GLOBAL_GRPC_OPTIONS  # as Ray's own channels: no HTTP proxy

    channel = grpc.insecure_channel(target, options=GLOBAL_GRPC_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_S)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def is_ray_client() -> bool:
    """Whether this process reaches Ray through Ray Client (`ray://`): then its tasks, actors and Tune's tuner run
    on the cluster, and this process on a machine of its own."""
    import ray.util.client

    return ray.util.client.ray.is_connected()


def _is_connected_to(address: str, here: str) -> bool:
    """Whether this process's Ray (its cluster's GCS at `here`) is the one `address` names. A Ray Client session
    (`ray://host:10001`) reports the cluster's GCS address, never the client server's it was opened at: any Ray
    Client session counts as that one, a direct connection does not. A direct address is compared as Ray spells the
    GCS address it connects to: 127.0.0.1 and localhost as this node's IP (`ray.address=127.0.0.1:6379` was refused
    as another Ray by the second `connect` of the same sweep, the one that makes its shards)."""
    if address.startswith("ray://"):
        return is_ray_client()
    import ray._private.services as services

    try:
        return services.canonicalize_bootstrap_address(address) == here
    except ValueError:  # not host:port: the connection at hand was not made from it
        return False


def starts_local(cfg: RayConfig) -> bool:
    """Whether `connect` would start a local Ray of its own: no Ray in this process yet, and no address given."""
    import ray

    return not ray.is_initialized() and asked_address(cfg) in (None, "local")


def started_here() -> bool:
    """Whether the Ray this process is connected to is one it started: `connect`'s local Ray, or a caller's own
    ray.init() (a notebook's), which `connect` then uses as it is. Such a Ray runs no autoscaler (ray.init takes no
    autoscaling config), so no node is ever added to it (`clusterfit.check_cluster`). Ray 2.60 has no public call that
    tells: this process's Ray node is then the head (that of a process that joins a Ray is not), as Ray's own
    `ClientContext` asks it (ray/client_builder.py). A record of the Ray `connect` starts would miss a caller's own."""
    import ray

    node = getattr(ray._private.worker.global_worker, "node", None)  # None under Ray Client, or not connected
    return node is not None and node.is_head()


def _spelt(address: str) -> str:
    """`address`, but "auto" where RAY_ADDRESS holds a URL: that URL, which "auto" reads (Ray Client's ray://, or one
    refused as itself: Ray said only "Invalid address format: http://127.0.0.1:8265")."""
    if address == "auto" and "://" in (os.environ.get("RAY_ADDRESS") or ""):
        return os.environ["RAY_ADDRESS"]
    return address


def asks_ray_client(cfg: RayConfig) -> bool:
    """Whether the Ray address asked for (`asked_address`, "auto" read as `connect` reads it) is Ray Client's
    (`ray://`), before Ray is reached."""
    return _spelt(asked_address(cfg) or "").startswith("ray://")


def asked_address(cfg: RayConfig) -> str | None:
    """The Ray address asked for: ray.address, else RAY_ADDRESS (an empty one is none); None where neither gives one.
    None and "local" start a local Ray; "local" is asked for, so no note says a recorded head is live."""
    return cfg.address or os.environ.get("RAY_ADDRESS") or None


def _init_local(cfg: RayConfig, runtime_env: dict[str, dict[str, str]] | None) -> None:
    """Start a local Ray whose own processes name it in RAY_ADDRESS. Ray Train's placement-group cleaner (a detached
    actor beside every TorchTrainer run) asks the state API, with no address, whether the run's controller lives:
    with none, Ray takes the head in ray_current_cluster, else the one Ray running on the machine. With another Ray
    there (another job's, another user's) it asked that one (the controller unknown there: dead) or failed ("Found
    multiple active Ray instances"), and the placement group of every trial a sweep stopped stayed, holding its
    CPUs. The GCS port is chosen here so the address is known before Ray starts; this process's own environment is
    left as it was. Without its dashboard, Ray still records the dashboard's address, 127.0.0.1:8265, where the state
    API is asked: there another Ray's dashboard answers on a machine that runs one, knows no such controller, and the
    cleaner removed the live run's placement group, its workers with it. A port of its own that nothing serves is
    recorded instead: the cleaner's question goes unanswered (it warns, and removes nothing)."""
    import ray

    runtime_env = {**(runtime_env or {}), "worker_process_setup_hook": f"{__name__}.{_hangup_ignored.__name__}"}
    with local_ray_named() as unserved:
        ray.init(address="local", include_dashboard=cfg.include_dashboard, runtime_env=runtime_env,
                 log_to_driver=True, **({} if cfg.include_dashboard else unserved))


@contextmanager
def local_ray_named() -> Iterator[dict[str, int]]:
    """While the block starts a local Ray (`ray.init(address="local", ...)`), RAY_ADDRESS and its GCS port name it in
    the environment its processes inherit (address="local" itself ignores RAY_ADDRESS); yields the `dashboard_port`
    to give ray.init where the dashboard is off: a port nothing serves (`_init_local` says why both)."""
    import ray
    from ray._private.ray_constants import GCS_PORT_ENVIRONMENT_VARIABLE

    port, unserved = _free_ports(2)
    with environment({"RAY_ADDRESS": f"{ray.util.get_node_ip_address()}:{port}",
                      GCS_PORT_ENVIRONMENT_VARIABLE: str(port)}):
        yield {"dashboard_port": unserved}


def _hangup_ignored() -> None:
    """Each worker of a local Ray, as it starts: SIGHUP ignored rather than blocked. The workers inherit the blocked
    SIGHUP that `_hangup_held` gives the Ray it starts, so an actor or task that set its own SIGHUP handler never got
    the signal; ignored, they still outlive a dropped terminal, and such a handler runs."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # first: a hangup held meanwhile is dropped, as the block meant
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on this machine now, from the system's ephemeral range (not a dashboard's 8265
    and on)."""
    with ExitStack() as stack:
        held = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in held:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in held]


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment while the block runs (for what it starts then), then each variable
    as it was, unset where it was unset."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_address(cfg: RayConfig) -> str | None:
    """The host:port a configured Ray address (ray.address, else RAY_ADDRESS) stands for, refused unless Ray answers
    there; None where a local Ray would start or this process is on a Ray already. Callable before the work that
    precedes connecting: `avdis train` made its shards (minutes of decoding) before a stale RAY_ADDRESS was refused."""
    import ray

    address = asked_address(cfg)
    if ray.is_initialized() or address is None or address == "local":
        return None
    target = _resolve(address)
    _check_answers(address, target)
    return target


def connect(cfg: RayConfig) -> str:
    """Initialise Ray once per process; return the address used ("local" for a new local Ray)."""
    import ray

    if ray.is_initialized():
        here = ray.get_runtime_context().gcs_address
        if cfg.address not in (None, "", "auto", "local") and not _is_connected_to(cfg.address, here):
            raise UsageError(f"ray.address={cfg.address!r}, but this process is already connected to the Ray at "
                             f"{here}; call ray.shutdown() first, or drop ray.address to use the Ray it has")
        return "existing"
    address = asked_address(cfg)
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    target = check_address(cfg)
    if address is None or address == "local":
        live = None if address else _live_recorded_head()
        if live:  # Ray's own ray.init() would join it: say why this job does not, and how it would
            print(f"avdis: note: a Ray head that `ray start` started answers at {live}; this job starts a local Ray "
                  f"of its own, as it does with no address given: set ray.address=auto (or RAY_ADDRESS={live}) to run "
                  "on that cluster and its nodes", file=sys.stderr, flush=True)
        with _hangup_held(), _terminated_as_interrupt():
            _init_local(cfg, worker_runtime_env())
        stop_as_interrupt()
        return "local"
    try:
        with _terminated_as_interrupt():
            ray.init(address=target, runtime_env=worker_runtime_env(_gcs_of(target)), log_to_driver=True)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise UsageError(
            f"Ray address {address!r} does not answer ({type(exc).__name__}: {exc}); "
            "check ray.address / RAY_ADDRESS, or unset both to start a local Ray. A cluster started with token "
            "authentication (RAY_AUTH_MODE=token) refuses a driver without its token, and says so only in the "
            "warnings above: set RAY_AUTH_MODE=token here too, with its token (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
        ) from None
    stop_as_interrupt()
    return address


_INTERRUPTED = threading.Event()  # set by `remember_interrupts`' handler, read by `check_interrupted`


def remember_interrupts() -> Callable[[], None] | None:
    """Make Ctrl-C raise KeyboardInterrupt as ever, and remember that it came (`check_interrupted`): a library's C
    callback can swallow the KeyboardInterrupt (numba compiling librosa's functions on a shard's first clip, through
    llvmlite's ctypes callbacks, printed 'Exception ignored on calling ctypes callback function: ... KeyboardInterrupt'
    and went on: an `avdis preprocess` stopped then ran to its end, exit 0). Returns what puts Python's handler back
    and forgets a Ctrl-C remembered; None where SIGINT has another handler (ignored in a job's driver, or a caller's own), which is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return None
    _INTERRUPTED.clear()

    def interrupt(sig: int, frame: Any) -> None:
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)

    def forget() -> None:  # a caller that goes on (main called in a process of its own) is not stopped by it later
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _INTERRUPTED.clear()

    return forget


def check_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that something swallowed (`remember_interrupts`); for long loops to
    call between their steps."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def stop_as_interrupt() -> Callable[[], None] | None:
    """Make SIGTERM (what `ray job stop` sends a job's driver) and SIGHUP (its terminal gone: an ssh session dropped)
    do what Ctrl-C does: the SIGINT handler in place (Ray Train's, which aborts its run; Tune's while `sweep.fit` runs,
    which saves its state), else KeyboardInterrupt, which the command reports as interrupted, saying how to go on (exit
    130), its lock released; SIGHUP had ended the process at once, an S3 lock held to its lease's end and a sweep's
    Tune state unsaved. A SIGHUP ignored as the process started (`nohup`, which keeps a job running once its terminal
    is gone) stays ignored. Returns what puts back the handlers it replaced (None off the main thread, where none is
    set). The command sets it as it starts (SIGTERM ended a run of one process, or a corpus being generated, at once,
    without a word), and `connect` again once Ray is up: `ray.init` puts Ray's SIGTERM handler in its place, under
    Ray's crash handler, and a job stopped while it built shards or ran a Ray Train run printed a native stack dump
    ("*** SIGTERM received ... PC: @ ... (unknown)") and ended with exit 15. Ray blocks SIGINT in a job's driver, so
    a SIGINT sent there would stay pending: the handler is called in place."""
    if threading.current_thread() is not threading.main_thread():
        return None
    terminal = [fd for fd in (1, 2) if os.isatty(fd)]  # stdout, stderr

    def stop(sig: int, frame: Any) -> None:
        if sig == signal.SIGHUP:  # one hangup: the shell sends it, then the kernel again as the shell exits
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _off_the_terminal(terminal)
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIG_IGN (a job's driver) or SIG_DFL
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig, handler in before.items():
        if not (sig == signal.SIGHUP and handler == signal.SIG_IGN):
            signal.signal(sig, stop)

    def put_back() -> None:
        for sig, handler in before.items():
            if handler is not None:  # None: one not set from Python, which cannot be set back
                signal.signal(sig, handler)

    return put_back


def _off_the_terminal(fds: list[int]) -> None:
    """Point `fds`, once a terminal, at /dev/null: a write to a terminal hung up fails (EIO), and the first print
    of a command stopped by the hangup (Tune's word on its save, the command's "interrupted") raised OSError in the
    middle of its cleanup."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


@contextmanager
def _hangup_held() -> Iterator[None]:
    """SIGHUP blocked while the block starts processes, which keep it blocked (a signal mask passes through fork and
    exec, a handler does not): a local Ray's gcs_server and raylet run in this process's group, to which a shell whose
    terminal drops sends SIGHUP, and died with it, leaving the command, stopped as an interrupt (`stop_as_interrupt`),
    no Ray to end its trials or save a sweep's state with. They still end with this process (Ray's fate-sharing). A
    hangup while the block runs is held, not lost, and handled as it ends: it was ignored then (SIG_IGN, which
    children inherit too), and a command whose terminal dropped in the seconds a local Ray starts went on to its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """A SIGTERM while the block runs `ray.init` stops the command as an interrupt, as at any other time
    (`stop_as_interrupt`, which `connect` sets again once Ray is up): ray.init sets Ray's own handler as it begins,
    sys.exit(15), and a command sent SIGTERM in the seconds a local Ray started ended with exit 15 without a word."""
    try:
        yield
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        raise KeyboardInterrupt from None


def _gcs_of(target: str) -> str | None:
    """The GCS address a direct `target` (host:port) is, as Ray spells it (localhost and 127.0.0.1 as this node's IP,
    which other nodes reach too); None for Ray Client (`ray://`), whose cluster's GCS is known only once connected."""
    import ray._private.services as services

    return None if target.startswith("ray://") else services.canonicalize_bootstrap_address(target)


def _live_recorded_head() -> str | None:
    """The head the last `ray start` on this machine recorded, where its GCS port takes a connection (at once: a
    dead one's refuses); None where none is recorded, it is down, or the record cannot be read (another user's
    `ray start` under umask 077: the local start that read it for this note failed with PermissionError)."""
    import ray._private.utils as ray_utils

    try:
        recorded = ray_utils.read_ray_address()
    except OSError:
        return None
    host, _, port = (recorded or "").rpartition(":")
    if not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):  # an IPv6 host is recorded bracketed
            return recorded
    except OSError:
        return None


def pin_train_coordinator() -> None:
    """Create Ray Train's autoscaling coordinator here (the driver's node) before any trainer does.

    Ray 2.60's TrainController creates a detached `AutoscalingCoordinator` actor on its own
    node the first time it runs. Inside a sweep that node is a worker node the autoscaler
    added, and a detached actor keeps it from ever becoming idle: the node (a GPU node, on
    a cluster) would never be removed. Created first from the driver, the actor lives on
    the driver's node (the head, for `ray job submit`), and every trainer reuses it.
    """
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:  # private API; other Ray versions may not have (or need) it
        return
    get_or_create_autoscaling_coordinator()
