"""A 2-node Ray cluster on this machine (`ray.cluster_utils.Cluster`), one training worker per node."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, ray_roots, stop_ray
from avdis import config as C
from avdis.train import launch

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_nodes(s3_server):
    """The cluster, under a Ray temp dir of its own (RAY_TMPDIR): `Cluster` records its head in the default one's
    `ray_current_cluster`, where another process's `ray.init()` or `ray.util.state` call would find it, and deletes
    that record on shutdown, whichever Ray wrote it."""
    import ray
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="avr-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RAY_TMPDIR", temp)
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                                     "dashboard_port": free_port()})  # state API
            try:
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                ray.init(address=cluster.address, log_to_driver=False)
                yield cluster
            finally:
                ray.shutdown()
                stop_ray(cluster.shutdown, ray_roots(*cluster.list_all_nodes()))  # its raylets, by their handles
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_one_deepspeed_worker_per_node(two_nodes, tiny_shards, tmp_path):
    import ray
    from ray.util.state import list_actors

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"data.shards={tiny_shards}", f"train.storage={tmp_path / 'runs'}", "train.workers=2",
        "train.cpus_per_worker=1", "train.placement_strategy=STRICT_SPREAD", "train.epochs=2",
        "probe.epochs=40", "train.name=two-nodes"])
    out = launch.train(cfg)
    history = json.loads(Path(out["metrics_file"]).read_text())["history"]
    assert [e["epoch"] for e in history] == [1, 2] and history[-1]["world_size"] == 2
    workers = list_actors(address=two_nodes.address, filters=[("class_name", "=", "RayTrainWorker")], detail=True)
    assert len({a.node_id for a in workers}) == 2  # the two ranks ran on different nodes
