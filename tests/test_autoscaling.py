"""The autoscaler for real: work that needs a worker-only resource adds nodes, runs on
them, and the nodes go away after the idle timeout (fake_multinode nodes are real
raylets on this machine; see tests/autoscale.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from autoscale import fake_cluster
from avdis import clusterfit
from avdis.config import load
from avdis.errors import UsageError

TASKS = 2
TASK_SECONDS = 5

# Runs in its own process with the cluster's env (token auth, RAY_ADDRESS).
DRIVER = f"""
import json, os, time, ray
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
head = ray.get_runtime_context().get_node_id()

@ray.remote(num_cpus=1, resources={{"avdis_worker": 1}})
def where():
    time.sleep({TASK_SECONDS})
    return ray.get_runtime_context().get_node_id()

nodes = ray.get([where.remote() for _ in range({TASKS})], timeout=100)
print("RESULT " + json.dumps({{"head": head, "task_nodes": nodes, "ray_nodes": ray.nodes()}}, default=str), flush=True)
"""


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_nodes_added_for_work_and_removed_when_idle(tmp_path):
    with fake_cluster(tmp_path, head_cpus=1) as cluster:
        assert len(cluster.nodes()) == 1, "only the head before any work"
        out = open(tmp_path / "driver.log", "w+")
        t0 = time.monotonic()
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=cluster.env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        first_added = None
        peak = 1
        worker_ids: set[str] = set()
        try:
            while driver.poll() is None and time.monotonic() - t0 < 120:
                alive = cluster.nodes()
                worker_ids |= {n["node_id"] for n in alive if not n["is_head_node"]}
                peak = max(peak, len(alive))
                if first_added is None and len(alive) > 1:
                    first_added = time.monotonic() - t0
                time.sleep(0.5)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait(10)
        work_done = time.monotonic() - t0
        out.seek(0)
        log = out.read()
        assert driver.returncode == 0, f"driver failed:\n{log[-3000:]}\n--- autoscaler:\n{cluster.autoscaler_log()}"
        result = json.loads(next(line for line in log.splitlines() if line.startswith("RESULT ")).removeprefix("RESULT "))

        assert first_added is not None, f"no node was added:\n{cluster.autoscaler_log()}"
        # No exact node count: while a launch is in flight Ray 2.60's autoscaler at times
        # queues one node beyond the type's max_workers and then terminates it
        # ("max_workers_per_type"); seen in about one run in five here.
        assert all(n != result["head"] for n in result["task_nodes"]), "a task ran on the head"
        assert set(result["task_nodes"]) <= worker_ids, "tasks ran on nodes the autoscaler added"
        # The pre-launch check reads real ray.nodes() output of this cluster.
        clusterfit.check_fits(load(None, ["train.cpus_per_worker=1", "sweep.trial_cpus=0.5"]), nodes=result["ray_nodes"])
        with pytest.raises(UsageError, match="no node type provides GPU"):
            clusterfit.check_fits(load(None, ["train.gpus_per_worker=1"]), nodes=result["ray_nodes"])

        while len(cluster.nodes()) > 1 and time.monotonic() - t0 < work_done + 60:
            time.sleep(0.5)
        removed = time.monotonic() - t0
        assert len(cluster.nodes()) == 1, f"idle nodes not removed:\n{cluster.autoscaler_log()}"
        print(f"\nautoscaling: first node added {first_added:.1f}s after submit, peak {peak} nodes, "
              f"work done at {work_done:.1f}s, back to head only at {removed:.1f}s "
              f"({removed - work_done:.1f}s after the work ended)")
