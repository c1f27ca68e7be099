"""A real autoscaling Ray cluster on this machine, for tests: `fake_cluster(...)`.

Ray's `fake_multinode` provider makes the autoscaler start "nodes" as extra raylets on
this machine, so scale-up and scale-down run the real autoscaler code. We start the
head ourselves (not `ray.cluster_utils.AutoscalingCluster`: in the 2.60 wheel it lacks
its base config and its start/stop run `ray stop --force`, which kills every Ray on the
machine). The head runs in its own process group with its own --temp-dir and free
ports, and is stopped by that process group, then any of its processes that outlive it by PID
(conftest.stop_ray), so other Ray instances are untouched.

Clients get token auth with a fresh token through `FakeCluster.env` (RAY_AUTH_MODE,
RAY_AUTH_TOKEN, RAY_ADDRESS): connect from a subprocess with that environment, e.g.
`subprocess.run([sys.executable, "jobs/sweep.py", ...], env=cluster.env)`. Keep
worker types small: every fake node is a real raylet with its agents (~0.3 GB).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conftest import free_port, stop_process, stop_ray, wait_for_port

OBJECT_STORE_BYTES = 128 * 1024**2  # per node; Ray's minimum is 75 MiB
DEFAULT_WORKER_TYPES: dict[str, dict[str, Any]] = {
    "cpu_worker": {"resources": {"CPU": 1, "avdis_worker": 1}, "min_workers": 0, "max_workers": 2},
}


@dataclass(frozen=True)
class FakeCluster:
    address: str  # GCS address host:port, for ray.init / RAY_ADDRESS
    dashboard_url: str  # http://127.0.0.1:PORT, for `ray job submit --address`
    env: dict[str, str]  # environment for client processes (auth token, RAY_ADDRESS)
    client_address: str  # ray://IP:PORT of the head's Ray Client server
    config_path: Path
    session_dir: Path

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes from the dashboard's state API (no Ray client in this process)."""
        req = urllib.request.Request(
            f"{self.dashboard_url}/api/v0/nodes?limit=1000&detail=true",
            headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.load(resp)
        return [n for n in body["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def autoscaler_log(self, lines: int = 40) -> str:
        """Tail of the autoscaler's log, for assertion messages."""
        log = self.session_dir / "logs" / "monitor.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no monitor.log)"


def launcher_config(gcs_address: str, head_cpus: int, worker_types: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A cluster launcher config for the fake_multinode provider (validates against Ray's schema)."""
    types: dict[str, Any] = {
        "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
    }
    for name, spec in worker_types.items():
        resources = {"object_store_memory": OBJECT_STORE_BYTES, **spec["resources"]}
        types[name] = {"node_config": {}, "min_workers": 0, **spec, "resources": resources}
    return {
        "cluster_name": "avdis-fake",
        "max_workers": sum(t.get("max_workers", 0) for t in types.values()),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.2,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "launch_multiple": True,  # start `count` nodes per request, as cloud providers do
            "gcs_address": gcs_address,  # else fake workers dial port 6379
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": types,
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _wait_head_alive(cluster: FakeCluster, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited early with code {proc.returncode}")
        with contextlib.suppress(OSError, KeyError, ValueError):
            if cluster.nodes():
                return
        time.sleep(0.5)
    raise TimeoutError(f"head node not alive after {timeout}s")


@contextlib.contextmanager
def fake_cluster(
    tmp_path: Path,
    worker_types: dict[str, dict[str, Any]] | None = None,
    head_cpus: int = 1,
    start_timeout: float = 60.0,
    head_env_without: tuple[str, ...] = (),
) -> Iterator[FakeCluster]:
    """Start an autoscaling fake multi-node cluster; stop it (by process group) on exit.

    `worker_types` maps a node type name to {"resources": {...}, "min_workers", "max_workers"};
    give its nodes a custom resource (e.g. avdis_worker) that the head lacks, so work
    asking for it makes the autoscaler add nodes. `head_env_without` names variables of this process's
    environment that the head's processes do not get (a node started elsewhere has its own environment);
    `FakeCluster.env`, for the test's own drivers, keeps them.
    """
    import ray._private.services as services

    worker_types = DEFAULT_WORKER_TYPES if worker_types is None else worker_types
    ip = services.get_node_ip_address()
    port, dash_port, client_port = free_port(), free_port(), free_port()
    gcs_address = f"{ip}:{port}"
    config_path = tmp_path / "fake-cluster.yaml"
    config_path.write_text(yaml.safe_dump(launcher_config(gcs_address, head_cpus, worker_types), sort_keys=False))
    # Ray's unix socket paths must stay under ~107 characters: a short temp dir, not tmp_path.
    temp_dir = Path(tempfile.mkdtemp(prefix="avr-", dir="/tmp"))
    token = secrets.token_hex(16)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    head_env = {
        **{k: v for k, v in env.items() if k not in head_env_without}, **auth,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM: stop now, no 30 s drain
        # Fixed default ports otherwise shared with any other Ray on the machine.
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "DASHBOARD_METRIC_PORT": str(free_port()),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cmd = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
        "--port", str(port), f"--num-cpus={head_cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--autoscaling-config={config_path}", f"--temp-dir={temp_dir}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
        f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
    ]
    log = open(tmp_path / "ray-head.log", "wb")
    proc = subprocess.Popen(cmd, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = FakeCluster(
        address=gcs_address,
        dashboard_url=f"http://127.0.0.1:{dash_port}",
        env={**env, **auth, "RAY_ADDRESS": gcs_address},
        client_address=f"ray://{ip}:{client_port}",
        config_path=config_path,
        session_dir=temp_dir / "session_latest",
    )
    try:
        wait_for_port(dash_port, proc, timeout=start_timeout)
        _wait_head_alive(cluster, proc, timeout=start_timeout)
        yield cluster
    except BaseException:
        # Keep Ray's logs (the temp dir goes below) for the failure report.
        shutil.copytree(temp_dir / "session_latest" / "logs", tmp_path / "ray-logs", ignore_dangling_symlinks=True,
                        dirs_exist_ok=True)
        log.flush()
        sys.stderr.write((tmp_path / "ray-head.log").read_text(errors="replace")[-3000:])
        sys.stderr.write(f"\nRay logs kept in {tmp_path / 'ray-logs'}\n")
        raise
    finally:
        stop_ray(lambda: stop_process(proc, timeout=20), [proc.pid])  # its group; what left the group, by PID
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
