"""A 2-node Ray cluster on this machine (`ray.cluster_utils.Cluster`), one training worker per node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import free_port
from avdis import config as C
from avdis.train import launch

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_nodes(s3_server):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                             "dashboard_port": free_port()})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()  # stops the raylets it started, by their process handles (state API needs the dashboard)


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
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True)
    assert len({a.node_id for a in workers}) == 2  # the two ranks ran on different nodes
