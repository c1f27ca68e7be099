"""What the cluster's nodes see, checked before work goes there: every check sends a task to each node
(`_on_each`, which names a node that does not answer or cannot set up the job's runtime env), or reads this
machine's mount table for the nodes still to come. Local folders a node does not see as this process does
(`check_shared`), folders on this machine's own disk where the cluster adds nodes (`check_added_nodes`), and s3://
work on nodes without AWS credentials (`check_node_credentials`) are refused, naming the option and the node.
Connecting to Ray, and the environment its workers get, are `avdis.runtime`'s.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from avdis import runtime
from avdis.config import RayConfig
from avdis.errors import AvdisError, UsageError

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
        if runtime.within(real, point) and len(point) >= len(best):
            best, kind = point, rest.split()[0]
    return kind


def check_added_nodes(outputs: dict[str, str], cluster: RayConfig) -> None:
    """Refuse local folders (by option name) that work on other nodes writes to, on a filesystem of this machine's
    own, where the cluster adds nodes as work waits (`cluster`'s autoscaling or cluster_file). `check_shared` asks
    the nodes alive, and a node started later has a disk of its own at that path: on cluster/aws.yaml, whose head is
    up alone when a sweep starts, a sweep.storage on the head's disk passed, and every trial, on a GPU node started
    later, failed at its first checkpoint (Ray: "Unable to set up cluster storage"); preprocessing tasks wrote
    their shards to the disks of CPU nodes that then went away. A network filesystem (NFS, EFS) is trusted. A local
    Ray that `connect` starts (no address), or that this process started itself (a notebook's ray.init(),
    `runtime.started_here`), adds no nodes: nothing is refused there (`avdis preprocess` with a cluster's config, run
    where the corpus is, was refused as if on the cluster); nor does a cluster_file whose
    worker node types may have no node (`max_workers: 0`: the head alone)."""
    if not (cluster.autoscaling or cluster.cluster_file is not None) or runtime.starts_local(cluster) \
            or runtime.started_here():
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

    here = None if runtime.is_ray_client() else ray.get_runtime_context().get_node_id()
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
    carried = trials and not runtime.is_ray_client()  # this shell's keys reach the work (through Tune)
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
