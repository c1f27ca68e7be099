"""The autoscaler for real, under a smoke sweep: the head holds no CPU, so preprocessing tasks and
trials (1-worker DeepSpeed, trained in the trial's own process) make the autoscaler add nodes;
they run there; the idle nodes go away after the timeout; and the same command again resumes the
sweep from its S3 storage (moto's server). fake_multinode nodes are real raylets on this machine;
see tests/autoscale.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from autoscale import fake_cluster
from avdis import storage
from avdis import results

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
WORKERS = {"cpu_worker": {"resources": {"CPU": 1}, "min_workers": 0, "max_workers": 2}}

CHECK_FITS = """
import os, ray
from avdis import clusterfit
from avdis.config import load
from avdis.errors import UsageError
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
nodes = ray.nodes()
clusterfit.check_fits(load(None, ["train.cpus_per_worker=0.9"]), nodes=nodes)
try:
    clusterfit.check_fits(load(None, ["train.gpus_per_worker=1"]), nodes=nodes)
except UsageError as exc:
    print("REFUSED", exc)
"""


def actors(cluster, class_name: str) -> list[dict]:
    req = urllib.request.Request(
        f"{cluster.dashboard_url}/api/v0/actors?limit=1000&detail=true",
        headers={"Authorization": f"Bearer {cluster.env['RAY_AUTH_TOKEN']}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        rows = json.load(resp)["data"]["result"]["result"]
    return [a for a in rows if a["class_name"] == class_name]


@pytest.mark.timeout(900)
def test_smoke_sweep_scales_out_runs_on_new_nodes_scales_in_and_resumes_from_s3(tmp_path, tiny_corpus, s3_bucket):
    sweeps, shards = f"{s3_bucket}/sweeps", f"{s3_bucket}/shards/smoke"
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           f"data.src={tiny_corpus}", f"data.shards={shards}", f"sweep.storage={sweeps}",
           "sweep.num_samples=2", "train.cpus_per_worker=0.9", "probe.epochs=40", "ray.autoscaling=true"]
    with fake_cluster(tmp_path, worker_types=WORKERS, head_cpus=0, start_timeout=90) as cluster:
        head = [n["node_id"] for n in cluster.nodes()]
        assert len(head) == 1
        log = open(tmp_path / "sweep.log", "w+")
        t0 = time.monotonic()
        driver = subprocess.Popen(cmd, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                  start_new_session=True)
        added: set[str] = set()
        first_added, check = None, None
        try:
            while driver.poll() is None and time.monotonic() - t0 < 600:
                alive = {n["node_id"] for n in cluster.nodes()} - set(head)
                if alive and first_added is None:
                    first_added = time.monotonic() - t0
                    # the live-node fit check, while the added nodes are busy (idle ones may go at any time)
                    check = subprocess.run([sys.executable, "-c", CHECK_FITS], env=cluster.env, capture_output=True,
                                           text=True, timeout=60)
                added |= alive
                time.sleep(1)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait(30)
        done = time.monotonic() - t0
        log.seek(0)
        out = log.read()
        assert driver.returncode == 0, out[-4000:] + "\n--- autoscaler:\n" + cluster.autoscaler_log()
        assert added, f"no node was added:\n{cluster.autoscaler_log()}"
        trials = actors(cluster, "ImplicitFunc")
        assert trials and {a["node_id"] for a in trials} <= added  # the trials, and so their training, ran there
        assert not actors(cluster, "RayTrainWorker")  # a 1-worker trial trains in its own process: no worker group

        assert check is not None, "the fit check never ran: no node was added"
        assert check.returncode == 0 and "no node type provides GPU" in check.stdout, check.stderr[-2000:]

        while len(cluster.nodes()) > 1 and time.monotonic() - t0 < done + 90:
            time.sleep(1)
        removed = time.monotonic() - t0
        assert len(cluster.nodes()) == 1, f"idle nodes not removed:\n{cluster.autoscaler_log()}"
        print(f"\nautoscaling: first node after {first_added:.1f}s, {len(added)} nodes added, sweep done at "
              f"{done:.1f}s, back to the head alone at {removed:.1f}s")

        # outputs landed in the bucket; the same command resumes from there
        for name in ("trials.parquet", "pareto.json", "pareto.html", "pareto.png", "sweep.json"):
            assert storage.exists(f"{sweeps}/smoke/{name}")
        before = results.read_trials(f"{sweeps}/smoke")
        again = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
        assert "resuming" in again.stdout
        after = results.read_trials(f"{sweeps}/smoke")
        assert len(after) == 2 and list(after["leakage"]) == list(before["leakage"])
