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
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from avdis.config import RayConfig
from avdis.errors import AvdisError, UsageError

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
    inside = {k: os.path.relpath(v, copy) for k, v in local.items() if "://" not in v and _within(v, copy)}
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


def _within(path: str, folder: str) -> bool:
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
    if address == "auto" and "://" in (os.environ.get("RAY_ADDRESS") or ""):  # "auto" reads it: refused as itself
        address = os.environ["RAY_ADDRESS"]  # (Ray said only "Invalid address format: http://127.0.0.1:8265")
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


NODE_ANSWER_S = 120.0  # for every node's answer to `_on_each`: a task taking no CPU starts in seconds on a sound node
NODE_POLL_S = 5.0  # how often `_on_each` asks a node that has not answered yet whether it is setting up the runtime env


class NodeSilentError(AvdisError):
    """A Ray node listed alive that does not run a task: work sent there would wait on it for ever."""


class NodeSetupError(AvdisError):
    """A Ray node that could not set up the job's runtime env: work sent there would fail the same way."""


def _on_each(nodes: list[dict[str, Any]], fn: Callable[..., Any], *args: Any,
             timeout_s: float = NODE_ANSWER_S) -> list[tuple[dict[str, Any], Any]]:
    """(node, `fn(*args)` run on it as a task taking no CPU) for each of `nodes` (`ray.nodes()` entries): what a
    node's own disk and environment hold, checked before work is sent there. A node gone since it was listed is left
    out, as no work will go there: Ray lists a dead node alive until its heartbeats have been missed for some seconds
    (a spot instance reclaimed, a pod evicted), and its task failed with TaskUnschedulableError, a traceback. Nodes
    that have not answered for `timeout_s` while not setting up the job's runtime env (`_setting_up`) are named in a
    NodeSilentError (it ended the run in Ray's GetTimeoutError traceback), their tasks cancelled. A node's first task
    waits for that setup (pip packages, a big working_dir: minutes), and such a node was named silent; it is waited
    for, said once, as the work would wait (Ray fails a setup that outlasts its setup_timeout_seconds, 600 s unless
    the job sets it); nodes whose setup failed are named in a NodeSetupError."""
    import ray
    from ray.exceptions import NodeDiedError, RuntimeEnvSetupError, TaskUnschedulableError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(fn)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(*args)
            for n in nodes]
    node_of = dict(zip(refs, nodes))
    quiet_since = dict.fromkeys(refs, time.monotonic())  # since when each node has neither answered nor set up
    pending, silent, said = list(refs), [], False
    while pending:
        pending = ray.wait(pending, num_returns=len(pending), timeout=min(NODE_POLL_S, timeout_s))[1]
        now = time.monotonic()
        setting_up = [ref for ref in pending if _setting_up(node_of[ref])]
        quiet_since.update(dict.fromkeys(setting_up, now))
        if setting_up and not said:
            said = True
            print(f"avdis: waiting for the Ray node(s) at {_named(node_of[r] for r in setting_up)} to set up the "
                  "job's runtime env (pip packages, working_dir) before they run the node checks", file=sys.stderr,
                  flush=True)
        silent = [ref for ref in pending if now - quiet_since[ref] >= timeout_s]
        if silent:
            break
    if silent:
        for ref in pending:
            ray.cancel(ref, force=True)  # its worker, should it ever start or wake
        where = _named(node_of[r] for r in silent)
        raise NodeSilentError(
            f"the Ray node(s) at {where} did not answer within {timeout_s:g} s a task that checks, before work goes "
            "there, what the node's disk and environment hold: Ray lists the node alive, but it runs no task (a hung "
            "mount or disk, worker processes that cannot start), and the run's work would wait there too. Check the "
            "node (`ray status`; on it, the logs in /tmp/ray/session_latest/logs), restart it or take it out of the "
            "cluster (`ray stop` there), then run the command again")
    answers, unset = [], []
    for node, ref in zip(nodes, refs):
        try:
            answers.append((node, ray.get(ref)))
        except (TaskUnschedulableError, NodeDiedError):
            continue
        except RuntimeEnvSetupError as exc:  # it ended the run in Ray's traceback, the node's setup log inside it
            unset.append((node, [line for line in str(exc).splitlines() if line.strip()][-1]))
    if unset:
        raise NodeSetupError(
            f"the Ray node(s) at {'; '.join(f'{_named([n])}: {why}' for n, why in unset)} could not set up the job's "
            "runtime env, and the run's work there would fail the same way. Fix the job's runtime env (the pip "
            "packages, working_dir or py_modules given to `ray job submit` or ray.init) or the node (its "
            "runtime_env_setup-*.log in /tmp/ray/session_latest/logs says more), then run the command again")
    return answers


def _named(nodes: Iterable[dict[str, Any]]) -> str:
    return ", ".join(f"{n['NodeManagerAddress']} (node {n['NodeID'][:8]})" for n in nodes)


def _setting_up(node: dict[str, Any]) -> bool:
    """Whether the runtime env agent of `node` (a `ray.nodes()` entry) is creating a runtime env: one a worker about
    to start holds, neither created nor failed yet. False where the agent does not answer within NODE_POLL_S (a hung
    node). Asked of the agent itself: Ray 2.60's `ray.util.state.list_runtime_envs` fails on exactly such an entry
    (its `success` is unset), and needs the dashboard."""
    import urllib.request

    from google.protobuf.message import DecodeError
    from ray._common.network_utils import build_address
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled
    from ray.core.generated.runtime_env_agent_pb2 import GetRuntimeEnvsInfoReply, GetRuntimeEnvsInfoRequest

    port = node.get("RuntimeEnvAgentPort")
    if not port:
        return False
    ask = urllib.request.Request(
        f"http://{build_address(node['NodeManagerAddress'], port)}/get_runtime_envs_info", method="POST",
        data=GetRuntimeEnvsInfoRequest().SerializeToString(), headers=get_auth_headers_if_auth_enabled({}))
    try:
        with urllib.request.urlopen(ask, timeout=NODE_POLL_S) as answer:
            envs = GetRuntimeEnvsInfoReply.FromString(answer.read()).runtime_env_states
    except (OSError, DecodeError):  # urllib's errors are OSErrors
        return False
    return any(env.ref_cnt > 0 and not env.success and not env.error for env in envs)


# Filesystems that are one machine's own: a node started later has its own at the same path, never this one.
MACHINE_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "bcachefs", "tmpfs", "ramfs",
                                 "overlay", "vfat", "exfat"})


def _local(paths: dict[str, str]) -> dict[str, str]:
    """The local paths among `paths` (file:// ones included), made absolute."""
    return {k: os.path.abspath(v.removeprefix("file://")) for k, v in paths.items()
            if "://" not in v or v.startswith("file://")}


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem `path` (or, not there yet, its nearest parent) lies on, as this process's mount
    table says; None where there is none to read (not Linux). The path is resolved as far as this process may look
    (realpath leaves the rest as written): a folder it may not search (another user's, mode 0700) raised
    PermissionError where its existence was asked."""
    real = os.path.realpath(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    for line in lines:  # "id parent dev root MOUNTPOINT options... - TYPE source options"; later mounts lie on top
        fields, _, rest = line.partition(" - ")
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields.split()[4])
        if _within(real, point) and len(point) >= len(best):
            best, kind = point, rest.split()[0]
    return kind


def check_added_nodes(outputs: dict[str, str], cluster: RayConfig) -> None:
    """Refuse local folders (by option name) that work on other nodes writes to, on a filesystem of this machine's
    own, where the cluster adds nodes as work waits (`cluster`'s autoscaling or cluster_file). `check_shared` asks
    the nodes alive, and a node started later has a disk of its own at that path: on cluster/aws.yaml, whose head is
    up alone when a sweep starts, a sweep.storage on the head's disk passed, and every trial, on a GPU node started
    later, failed at its first checkpoint (Ray: "Unable to set up cluster storage"); preprocessing tasks wrote
    their shards to the disks of CPU nodes that then went away. A network filesystem (NFS, EFS) is trusted. A local
    Ray that `connect` starts (no address) adds no nodes: nothing is refused there (`avdis preprocess` with a
    cluster's config, run where the corpus is, was refused as if on the cluster); nor does a cluster_file whose
    worker node types may have no node (`max_workers: 0`: the head alone)."""
    if not (cluster.autoscaling or cluster.cluster_file is not None) or _starts_local(cluster):
        return
    local = _local(outputs)
    own = {k: kind for k, path in local.items() if (kind := filesystem_type(path)) in MACHINE_FILESYSTEMS}
    if own and _adds_nodes(cluster):
        raise UsageError(
            f"{', '.join(f'{k}={local[k]} ({own[k]})' for k in own)}: on this machine's own disk, and the cluster adds "
            "nodes as work waits (ray.autoscaling / ray.cluster_file): trials, workers and tasks on a node added later "
            "would read and write that node's own disk, where this process and the other nodes never look. Give "
            "s3://bucket/prefix URLs, or a folder every node mounts at the same path (NFS, EFS)")


def _adds_nodes(cluster: RayConfig) -> bool:
    """Whether nodes may join the cluster after this process has asked those alive: ray.autoscaling, or a
    cluster_file with a worker node type that may have a node (one that starts with the cluster may still be booting
    when a job starts). A file that allows none (`max_workers: 0`) is the head alone, fixed as a cluster without a
    file is: its folders were refused as if on cluster/aws.yaml."""
    from avdis import clusterfit

    if cluster.autoscaling or cluster.cluster_file is None:
        return cluster.autoscaling
    shapes, global_max = clusterfit.shapes_from_file(cluster.cluster_file)
    return global_max > 0 and any(s.count > 0 for s in shapes if not s.is_head)


def _starts_local(cfg: RayConfig) -> bool:
    """Whether `connect` would start a local Ray of its own: no Ray in this process yet, and no address given."""
    import ray

    return not ray.is_initialized() and _address(cfg) in (None, "local")


def _address(cfg: RayConfig) -> str | None:
    """The Ray address asked for: ray.address, else RAY_ADDRESS (an empty one is none); None where neither gives one.
    None and "local" start a local Ray; "local" is asked for, so no note says a recorded head is live."""
    return cfg.address or os.environ.get("RAY_ADDRESS") or None


def check_shared(paths: dict[str, str]) -> None:
    """Refuse local paths (by option name) that a node of the cluster does not see as this process does. Trials,
    Ray Train workers and preprocessing tasks run on any node and read and write its disks, while this process
    checks, resumes and reports from its own: on a folder they do not share, shards are missing where a worker
    reads them and a trial's checkpoints stay on the node it ran on, where a resumed trial elsewhere, or this
    process, never looks. Under Ray Client this process is on no node: every node is checked (Tune's tuner runs on
    the client server's). Each local path gets a marker file here that a task on every other alive node must find;
    a folder they all mount at the same path (NFS) passes. Nodes the autoscaler adds later are not checked here
    (`check_added_nodes`)."""
    import ray

    here = None if is_ray_client() else ray.get_runtime_context().get_node_id()
    nodes = [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != here]
    if not nodes:
        return
    local = _local(paths)
    marks = {}
    for key, path in local.items():
        folder = next(p for p in (Path(path), *Path(path).parents) if p.exists())  # to be made: its nearest parent
        mark = _new_mark(folder)
        try:
            mark.write_text(mark.name)
        except OSError:
            continue  # not writable here: the caller's own check says so
        marks[key] = str(mark)
    if not marks:
        return

    def seen(files: dict[str, str]) -> dict[str, bool]:
        return {k: os.path.exists(f) and Path(f).read_text() == os.path.basename(f) for k, f in files.items()}

    try:
        found = _on_each(nodes, seen, marks)
    finally:
        for mark in marks.values():
            Path(mark).unlink(missing_ok=True)
    blind = {k: [f"{n['NodeManagerAddress']} (node {n['NodeID'][:8]})" for n, ok in found if not ok[k]] for k in marks}
    unseen = [k for k in marks if blind[k]]
    if not unseen:
        return
    where = ("this process reaches Ray through Ray Client, and the cluster does not see that folder as this machine "
             "does: the work runs on the cluster's nodes" if here is None else
             f"the Ray node(s) at {', '.join(sorted({b for k in unseen for b in blind[k]}))} do not see that folder "
             "as this node does: trials, workers and tasks there")
    raise UsageError(
        f"{', '.join(f'{k}={local[k]}' for k in unseen)}: {where} would read and write where this process never "
        "looks. Give s3://bucket/prefix URLs, or a folder every node mounts at the same path (NFS)"
        + (", or run the command on the cluster with `ray job submit`" if here is None else ""))


def _new_mark(folder: Path) -> Path:
    """A new marker's path in `folder` for `check_shared`, once the markers this host's killed checks left there are
    gone: a check stopped by SIGTERM or SIGKILL (`ray job stop`, a node's OOM killer) skips its cleanup. (A folder
    checked for files of its own, as the synthetic corpus's target is, passes any marker over: `synth.holds_others`.)"""
    from avdis import storage

    storage.remove_dead(str(folder), storage.SHARED_CHECK)
    return folder / storage.own_name(storage.SHARED_CHECK)


def _no_aws_credentials() -> str | None:
    """None when this process finds AWS credentials as s3fs does (botocore's chain: environment, files, the role);
    else "" (none found), or why a profile named did not load (it ended the check in a RayTaskError traceback)."""
    import botocore.exceptions
    import botocore.session

    try:
        found = botocore.session.get_session().get_credentials()
    except botocore.exceptions.BotoCoreError as exc:  # an AWS_PROFILE the files lack, an SSO login expired, ...
        return f"{type(exc).__name__}: {exc}"
    return None if found is not None else ""


# The keys Ray Tune copies from its driver into each trial that a trial needs to reach S3 (Ray 2.60 copies a
# temporary key's AWS_SESSION_TOKEN / AWS_SECURITY_TOKEN too: ray/tune/execution/class_cache.py)
TUNE_CARRIES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def check_node_credentials(urls: dict[str, str], trials: bool = False) -> None:
    """Before Ray tasks, Ray Train workers or (`trials`) a sweep's trials touch s3:// URLs (by option name): refuse
    when a node of the cluster finds no AWS credentials. Keys in the driver's shell do not reach nodes `ray start`
    began elsewhere: Ray Train and tasks get none of them, and the run died in Ray's controller with botocore's
    NoCredentialsError after the driver's own checks had passed. Ray Tune copies TUNE_CARRIES into its trials, never
    a profile, a credentials file or a role: a sweep's driver with those alone saw each trial die reading the shards.
    Through Ray Client, Tune's driver runs on the cluster and copies that node's, not this shell's."""
    s3 = [f"{k}={v}" for k, v in urls.items() if v.startswith("s3://")]
    if not s3:
        return
    carried = trials and not is_ray_client()  # this shell's keys reach the work (through Tune)
    if carried and all(os.environ.get(key) for key in TUNE_CARRIES):
        return
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    lacks = _on_each(nodes, _no_aws_credentials)
    bare = sorted({n["NodeManagerAddress"] + (f" ({why})" if why else "") for n, why in lacks if why is not None})
    if not bare:
        return
    why = (f"Ray Tune hands its trials this shell's {' and '.join(TUNE_CARRIES)} (and session token), not a profile, "
           "a credentials file or a role" if carried else
           "keys exported in this shell do not travel to nodes started elsewhere")
    raise UsageError(
        f"{', '.join(s3)}: the Ray node(s) at {', '.join(bare)} find no AWS credentials, and the work "
        f"runs there: {why}. Give the nodes a role (cluster/README.md), export the keys where each node's `ray start` "
        f"runs{', or export them here' if carried else ''}, or pass them to the job (`ray job submit "
        "--runtime-env-json` with env_vars; Ray then writes them to its logs)")


def _init_local(cfg: RayConfig, runtime_env: dict[str, dict[str, str]] | None) -> None:
    """Start a local Ray whose own processes name it in RAY_ADDRESS. Ray Train's placement-group cleaner (a detached
    actor beside every TorchTrainer run) asks the state API, with no address, whether the run's controller lives:
    with none, Ray takes the head in ray_current_cluster, else the one Ray running on the machine. With another Ray
    there (another job's, another user's) it asked that one (the controller unknown there: dead) or failed ("Found
    multiple active Ray instances"), and the placement group of every trial a sweep stopped stayed, holding its
    CPUs. The GCS port is chosen here so the address is known before Ray starts; this process's own environment is
    left as it was."""
    import ray
    from ray._private.ray_constants import GCS_PORT_ENVIRONMENT_VARIABLE

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    own = {"RAY_ADDRESS": f"{ray.util.get_node_ip_address()}:{port}", GCS_PORT_ENVIRONMENT_VARIABLE: str(port)}
    with environment(own):  # the Ray processes started now inherit it; address="local" itself ignores RAY_ADDRESS
        ray.init(address="local", include_dashboard=cfg.include_dashboard, runtime_env=runtime_env,
                 log_to_driver=True)


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

    address = _address(cfg)
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
    address = _address(cfg)
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    target = check_address(cfg)
    if address is None or address == "local":
        live = None if address else _live_recorded_head()
        if live:  # Ray's own ray.init() would join it: say why this job does not, and how it would
            print(f"avdis: note: a Ray head that `ray start` started answers at {live}; this job starts a local Ray "
                  f"of its own, as it does with no address given: set ray.address=auto (or RAY_ADDRESS={live}) to run "
                  "on that cluster and its nodes", file=sys.stderr, flush=True)
        _init_local(cfg, worker_runtime_env())
        stop_as_interrupt()
        return "local"
    try:
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
    and went on: an `avdis preprocess` stopped then ran to its end, exit 0). Returns what puts Python's handler back;
    None where SIGINT has another handler (ignored in a job's driver, or a caller's own), which is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        return None
    _INTERRUPTED.clear()

    def interrupt(sig: int, frame: Any) -> None:
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


def check_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that something swallowed (`remember_interrupts`); for long loops to
    call between their steps."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def stop_as_interrupt() -> Any:
    """Make SIGTERM (what `ray job stop` sends a job's driver) do what Ctrl-C does: the SIGINT handler in place (Ray
    Train's, which aborts its run; `sweep.fit` puts Tune's in its own way), else KeyboardInterrupt, which the command
    reports as interrupted, saying how to go on (exit 130); return the SIGTERM handler it replaced (None off the main
    thread, where none is set). The command sets it as it starts (SIGTERM ended a run of one process, or a corpus
    being generated, at once, without a word), and `connect` again once Ray is up: `ray.init` puts Ray's handler in
    its place, under Ray's crash handler, and a job stopped while it built shards or ran a Ray Train run printed a
    native stack dump ("*** SIGTERM received ... PC: @ ... (unknown)") and ended with exit 15. Ray blocks SIGINT in
    a job's driver, so a SIGINT sent there would stay pending: the handler is called in place."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(sig: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIG_IGN (a job's driver) or SIG_DFL
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    return signal.signal(signal.SIGTERM, stop)


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
