"""Pre-launch checks against the real cluster files and hand-made bad configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from avdis import clusterfit, nodes, storage
from avdis.config import S3Config, load
from avdis.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
AWS = str(ROOT / "cluster" / "aws.yaml")
AWS_GPU = ROOT / "jobs" / "configs" / "aws-gpu.yaml"


def cfg(*overrides: str):
    return load(AWS_GPU, list(overrides))


def write_cluster(tmp_path: Path, types: dict, max_workers: int = 10) -> str:
    doc = {
        "cluster_name": "t", "max_workers": max_workers, "provider": {"type": "aws", "region": "us-east-1"},
        "head_node_type": "head",
        "available_node_types": {"head": {"resources": {"CPU": 0}, "node_config": {}}, **types},
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def node(cpu: float, gpu: float = 0, alive: bool = True) -> dict:
    """A `ray.nodes()` entry, bookkeeping resources included."""
    res = {"CPU": cpu, "memory": 8e9, "object_store_memory": 2e9, "node:10.0.0.1": 1.0}
    if gpu:
        res["GPU"] = gpu
    return {"NodeID": "abc", "Alive": alive, "NodeManagerAddress": "10.0.0.1", "Resources": res}


def test_aws_gpu_config_fits_one_worker_per_gpu_node():
    clusterfit.check_fits(cfg(), AWS)
    shapes, cap = clusterfit.shapes_from_file(AWS)
    assert clusterfit.worker_capacity(cfg(), shapes, cap) == 8  # gpu_worker: 8 nodes x one {CPU: 7, GPU: 1}
    # CPU-only workers of 4 CPUs: 4 cpu_worker nodes x 4 + 8 gpu_worker nodes x 2 (max_workers 12 takes
    # them all), less the one worker the driver's 0.5 CPU displaces
    cpu_only = cfg("train.gpus_per_worker=0", "train.cpus_per_worker=4")
    assert clusterfit.worker_capacity(cpu_only, shapes, cap) == 31


def test_kuberay_manifest_bounds_workers_by_max_replicas():
    kuberay = load(ROOT / "jobs" / "configs" / "kuberay-gpu.yaml", ["train.workers=9"])
    with pytest.raises(UsageError, match=r"raycluster\.yaml: one trial needs train\.workers=9 .* holds 8 such worker.*"
                                         r"raise max_workers \(maxReplicas;"):
        clusterfit.check_fits(kuberay, str(ROOT / "cluster" / "kuberay" / "raycluster.yaml"))
    too_big = load(ROOT / "jobs" / "configs" / "kuberay-gpu.yaml", ["train.cpus_per_worker=8"])
    with pytest.raises(UsageError, match=r"one training worker needs \{CPU: 8, GPU: 1\}.*gpu \{CPU: 7, GPU: 1\}"):
        clusterfit.check_fits(too_big, str(ROOT / "cluster" / "kuberay" / "rayjob.yaml"))


def test_live_nodes_leave_room_for_the_trial_driver():
    two_workers = ["train.gpus_per_worker=0", "train.cpus_per_worker=1", "train.workers=2", "sweep.trial_cpus=0.5"]
    with pytest.raises(UsageError, match=r"plus its driver \{CPU: 0\.5\}.*holds 1 such worker"):
        clusterfit.check_fits(cfg(*two_workers), nodes=[node(2)])
    clusterfit.check_fits(cfg(*two_workers), nodes=[node(2), node(0.5)])  # the driver on the small node
    # one worker trains in the trial process itself: no driver bundle beside it
    clusterfit.check_fits(cfg("train.gpus_per_worker=0", "train.cpus_per_worker=2", "train.workers=1"), nodes=[node(2)])
    # a plain `avdis train` run drives its TorchTrainer from the user's process: no driver bundle either
    clusterfit.check_fits(cfg(*two_workers), nodes=[node(2)], standalone=True)
    with pytest.raises(UsageError, match=r"one run needs train.workers=3 .*holds 2 such worker"):
        clusterfit.check_fits(cfg(*two_workers[:2], "train.workers=3"), nodes=[node(2)], standalone=True)


def test_gpu_asked_but_cluster_has_none(tmp_path):
    path = write_cluster(tmp_path, {"cpu": {"resources": {"CPU": 16}, "node_config": {}, "max_workers": 4}})
    with pytest.raises(UsageError, match=r"no node type provides GPU.*train\.gpus_per_worker"):
        clusterfit.check_fits(cfg(), path)


def test_worker_larger_than_any_node():
    with pytest.raises(UsageError, match=r"one training worker needs \{CPU: 9, GPU: 1\}.*train\.cpus_per_worker=9"):
        clusterfit.check_fits(cfg("train.cpus_per_worker=9"), AWS)


def test_driver_larger_than_any_node():
    with pytest.raises(UsageError, match=r"sweep\.trial_cpus=32"):
        clusterfit.check_fits(cfg("sweep.trial_cpus=32"), AWS)


def test_trial_larger_than_the_cluster_can_ever_hold():
    with pytest.raises(UsageError, match=r"train\.workers=9 .* holds 8 such worker"):
        clusterfit.check_fits(cfg("train.workers=9"), AWS)


def test_global_max_workers_caps_the_cluster(tmp_path):
    gpu = {"gpu": {"resources": {"CPU": 8, "GPU": 1}, "node_config": {}, "max_workers": 8}}
    with pytest.raises(UsageError, match=r"holds 3 such worker"):
        clusterfit.check_fits(cfg("train.workers=4"), write_cluster(tmp_path, gpu, max_workers=3))
    # the bound takes the roomiest node types first: 3 x {CPU: 16}, less one worker for the driver
    mixed = {"big": {"resources": {"CPU": 16}, "node_config": {}, "max_workers": 4},
             "small": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 8}}
    shapes, cap = clusterfit.shapes_from_file(write_cluster(tmp_path, mixed, max_workers=3))
    assert clusterfit.worker_capacity(cfg("train.gpus_per_worker=0", "train.cpus_per_worker=1"), shapes, cap) == 47


def test_strict_pack_needs_one_node_for_all_workers():
    with pytest.raises(UsageError, match=r"all workers together .*\{CPU: 14, GPU: 2\}"):
        clusterfit.check_fits(cfg("train.placement_strategy=STRICT_PACK"), AWS)


def test_live_nodes_strict_spread_needs_distinct_nodes():
    nodes = [node(4), node(4), node(64, alive=False)]
    base = ["train.gpus_per_worker=0", "train.cpus_per_worker=1", "train.workers=3"]
    clusterfit.check_fits(cfg(*base), nodes=nodes)  # PACK: three on one node
    with pytest.raises(UsageError, match=r"running Ray cluster.*holds 2 such worker"):
        clusterfit.check_fits(cfg(*base, "train.placement_strategy=STRICT_SPREAD"), nodes=nodes)


def test_live_nodes_without_gpu():
    with pytest.raises(UsageError, match="no node type provides GPU"):
        clusterfit.check_fits(cfg(), nodes=[node(16)])
    clusterfit.check_fits(cfg(), nodes=[node(8, gpu=1), node(8, gpu=1)])


def test_node_type_without_declared_cpu(tmp_path):
    path = write_cluster(tmp_path, {"gpu": {"resources": {}, "node_config": {}, "max_workers": 2}})
    with pytest.raises(UsageError, match=r"node type 'gpu' declares no CPU"):
        clusterfit.check_fits(cfg(), path)


def test_not_a_cluster_file(tmp_path):
    with pytest.raises(UsageError, match="neither a Ray cluster launcher YAML"):
        clusterfit.check_fits(cfg(), str(AWS_GPU))
    with pytest.raises(UsageError, match="cannot read cluster file"):
        clusterfit.check_fits(cfg(), str(tmp_path / "missing.yaml"))
    # a RayJob on an existing cluster (KubeRay's clusterSelector) and a manifest missing a field ended in a KeyError
    job = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob.yaml").read_text().split("\n---\n")[-1])
    selector = tmp_path / "selector.yaml"
    spec = {k: v for k, v in job["spec"].items() if k != "rayClusterSpec"}
    selector.write_text(yaml.safe_dump({**job, "spec": {**spec, "clusterSelector": {"ray.io/cluster": "avdis"}}}))
    with pytest.raises(UsageError, match="this RayJob runs on an existing RayCluster .* give that RayCluster's"):
        clusterfit.check_fits(cfg(), str(selector))
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"kind": "RayCluster", "spec": {"workerGroupSpecs": []}}))
    with pytest.raises(UsageError, match=r"broken.yaml: cannot read its node types \(KeyError: 'headGroupSpec'\)"):
        clusterfit.check_fits(cfg(), str(broken))


def test_exactly_one_cluster_description():
    with pytest.raises(ValueError, match="exactly one"):
        clusterfit.check_fits(cfg())
    with pytest.raises(ValueError, match="exactly one"):
        clusterfit.check_fits(cfg(), AWS, nodes=[node(8)])


def test_bucket_present(s3_bucket):
    storage.check_bucket(f"{s3_bucket}/sweeps")


def test_bucket_missing(s3_server):
    with pytest.raises(UsageError, match=r"bucket 'avdis-no-such-bucket' does not exist.*create_bucket\.py"):
        storage.check_bucket("s3://avdis-no-such-bucket/shards/cremad")


def test_bucket_unreachable(monkeypatch):
    from conftest import refused_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with refused_port() as port:
        s3 = S3Config(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1")
        with pytest.raises(UsageError, match=r"bucket 'b1x' \(EndpointConnectionError.*cannot connect: check s3\.endpoint_url"):
            storage.check_bucket("s3://b1x/sweeps", s3)
        # every storage call says what to check, as the bucket check does
        with pytest.raises(storage.StorageError, match=r"cannot reach storage \(.*; cannot connect: check s3\.endpoint_url"):
            storage.exists("s3://b1x/sweeps/x/trials.parquet", s3)


def test_a_profile_that_cannot_be_loaded_is_said_as_such_not_as_an_unreachable_endpoint(tmp_path, monkeypatch):
    """AWS_PROFILE naming a profile the AWS files lack (exported for another account, or on a node without them):
    the bucket check said to check the endpoint and the network."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "config").write_text("[profile other]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "avdis-missing")
    with pytest.raises(UsageError, match=r"bucket 'b1x' \(ProfileNotFound: .*\); AWS_PROFILE") as refused:
        storage.check_bucket("s3://b1x/sweeps")
    assert "endpoint" not in str(refused.value)
    with pytest.raises(storage.StorageError, match=r"cannot reach storage \(ProfileNotFound: .*\); AWS_PROFILE"):
        storage.exists("s3://b1x/sweeps/x/trials.parquet")


def test_the_endpoint_and_region_of_the_drivers_aws_profile_are_pinned_for_the_nodes(tmp_path, monkeypatch):
    """A driver whose AWS profile gives S3's endpoint (MinIO) and region in ~/.aws/config reached MinIO itself, while
    its trials and workers, on nodes without that profile, went to AWS with the driver's keys: only the config and
    the environment were pinned."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "config").write_text("[profile minio]\nregion = eu-west-1\nendpoint_url = http://minio.internal:9000\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "minio")
    assert storage.pinned(S3Config()) == S3Config(endpoint_url="http://minio.internal:9000", region="eu-west-1")
    given = S3Config(endpoint_url="http://127.0.0.1:9000", region="us-east-1")
    assert storage.pinned(given) == given  # the config's own first
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")  # botocore's switch: the profile's endpoint unused
    assert storage.pinned(S3Config()) == S3Config(region="eu-west-1")


def test_local_paths_need_no_bucket(tmp_path):
    storage.check_bucket(str(tmp_path / "sweeps"))


def test_train_and_sweep_check_their_buckets_before_any_work(s3_server, tmp_path, monkeypatch, capsys):
    """A missing bucket used to surface after the corpus was generated, as a failed write of its first shard."""
    from avdis.cli import main

    monkeypatch.chdir(tmp_path)
    smoke = str(ROOT / "jobs" / "configs" / "smoke.yaml")
    common = ["data.shards=s3://avdis-no-such-bucket/shards", f"data.src={tmp_path / 'corpus'}"]
    assert main(["train", "--config", smoke, "--strategy", "single", "train.zero_stage=0", f"train.storage={tmp_path / 'runs'}",
                 *common]) == 2
    assert "bucket 'avdis-no-such-bucket' does not exist" in capsys.readouterr().err
    assert main(["sweep", "--config", smoke, f"sweep.storage={tmp_path / 'sweeps'}", *common]) == 2
    assert "bucket 'avdis-no-such-bucket' does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no corpus generated, no run or sweep folder made


def write_kuberay(tmp_path: Path, gpu_group: dict, autoscaling: bool = True) -> str:
    """A RayCluster whose head has num-cpus 0 (KubeRay's usual advice) and one worker group `gpu_group`."""
    gpu_group = dict(gpu_group)
    container = {"name": "w", "image": "i", **({"resources": gpu_group.pop("k8s")} if "k8s" in gpu_group else {})}
    doc = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "t"}, "spec": {
        "enableInTreeAutoscaling": autoscaling,
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                          "template": {"spec": {"containers": [{"name": "h", "image": "i"}]}}},
        "workerGroupSpecs": [{"groupName": "gpu", "minReplicas": 0, "maxReplicas": 4,
                              "template": {"spec": {"containers": [container]}}, **gpu_group}]}}
    path = tmp_path / "raycluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_kuberay_custom_resources_in_kuberays_documented_form(tmp_path):
    """rayStartParams.resources as KubeRay documents it, `resources: '"{\\"Custom1\\": 1, \\"Custom2\\": 5}"'`: the
    outer quotes and the backslashes are characters of the string. It failed with a bare JSONDecodeError."""
    documented = yaml.safe_load('''resources: '"{\\"A10G\\": 1, \\"Custom2\\": 5}"' ''')["resources"]
    assert documented == '"{\\"A10G\\": 1, \\"Custom2\\": 5}"'
    path = write_kuberay(tmp_path, {"rayStartParams": {"num-cpus": "7", "num-gpus": "1", "resources": documented}})
    shapes, _ = clusterfit.shapes_from_file(path)
    assert shapes[1].resources == {"CPU": 7, "GPU": 1, "A10G": 1, "Custom2": 5}
    clusterfit.check_fits(cfg("train.cpus_per_worker=6"), path)
    bad = write_kuberay(tmp_path, {"rayStartParams": {"num-cpus": "7", "resources": '"{\\"A10G\\": }"'}})
    with pytest.raises(UsageError, match=r"group 'gpu': rayStartParams.resources .* is not a JSON object"):
        clusterfit.shapes_from_file(bad)


def test_kuberay_group_resources_read_as_rays_kuberay_autoscaler_reads_them(tmp_path):
    """Ray 2.60's autoscaler (autoscaling_config.py): CPU from limits else requests, rounded up; a GPU from any
    `*gpu` key; the group's top-level `resources` first. Read otherwise, trials that fit were refused."""
    requests_only = {"k8s": {"requests": {"cpu": "7", "nvidia.com/gpu": 1}}}
    shapes, _ = clusterfit.shapes_from_file(write_kuberay(tmp_path, requests_only))
    assert shapes[1].resources == {"CPU": 7, "GPU": 1}
    clusterfit.check_fits(cfg("train.cpus_per_worker=6"), write_kuberay(tmp_path, requests_only))
    amd = {"k8s": {"limits": {"cpu": "7500m", "amd.com/gpu": 1}}}
    shapes, _ = clusterfit.shapes_from_file(write_kuberay(tmp_path, amd))
    assert shapes[1].resources == {"CPU": 8, "GPU": 1}  # 7.5 cores: Ray sees 8
    clusterfit.check_fits(cfg("train.cpus_per_worker=7"), write_kuberay(tmp_path, amd))
    top = {"resources": {"CPU": "7", "GPU": "1", "Custom1": "2"}, "k8s": {"limits": {"cpu": "8"}}}
    shapes, _ = clusterfit.shapes_from_file(write_kuberay(tmp_path, top))
    assert shapes[1].resources == {"CPU": 7, "GPU": 1, "Custom1": 2}
    with pytest.raises(UsageError, match=r"group 'gpu'.*'seven' is not a Kubernetes quantity"):
        clusterfit.shapes_from_file(write_kuberay(tmp_path, {"k8s": {"limits": {"cpu": "seven"}}}))



def test_a_kuberay_cluster_without_its_autoscaler_holds_its_replicas_not_max_replicas(tmp_path):
    """Without enableInTreeAutoscaling (KubeRay's default) the operator keeps `replicas` pods (minReplicas when
    unset), clamped to [minReplicas, maxReplicas]: counting maxReplicas let a trial that can never be placed wait
    for ever."""
    gpu = {"rayStartParams": {"num-cpus": "7", "num-gpus": "1"}, "minReplicas": 1, "maxReplicas": 4}
    three = cfg("train.cpus_per_worker=6", "train.workers=3")
    clusterfit.check_fits(three, write_kuberay(tmp_path, gpu))  # the autoscaler may add up to 4
    for fixed, holds in (({"replicas": 2}, 2), ({}, 1), ({"replicas": 9}, 4), ({"replicas": 2, "numOfHosts": 2}, 4)):
        path = write_kuberay(tmp_path, {**gpu, **fixed}, autoscaling=False)
        assert clusterfit.shapes_from_file(path)[0][1].count == holds, fixed
        if holds < 3:
            with pytest.raises(UsageError, match=rf"one trial needs train\.workers=3 .* holds {holds} such worker.*"
                                                 r"replicas where enableInTreeAutoscaling is off"):
                clusterfit.check_fits(three, path)
        else:
            clusterfit.check_fits(three, path)
    suspended = write_kuberay(tmp_path, {**gpu, "suspend": True})
    with pytest.raises(UsageError, match=r"no node type holds that; node types: head \{CPU: 0\}\."):
        clusterfit.check_fits(three, suspended)

def test_launcher_yaml_without_max_workers_gets_rays_default_cap(tmp_path):
    """Ray fills a launcher YAML's missing global max_workers from its provider's defaults (2 on aws), and a node
    type without its own max_workers gets that: a trial of 3 one-GPU workers can never run there."""
    path = write_cluster(tmp_path, {"gpu": {"resources": {"CPU": 8, "GPU": 1}, "node_config": {}}})
    doc = yaml.safe_load(Path(path).read_text())
    del doc["max_workers"]
    Path(path).write_text(yaml.safe_dump(doc))
    clusterfit.check_fits(cfg("train.workers=2"), path)
    with pytest.raises(UsageError, match=r"train\.workers=3 .*holds 2 such worker"):
        clusterfit.check_fits(cfg("train.workers=3"), path)


def test_live_nodes_refusal_names_ray_autoscaling():
    """A KubeRay head with num-cpus 0 and GPU workers on demand: judged on the head alone, the refusal must say
    which setting fits an autoscaling cluster, not only 'use a cluster with GPU nodes'."""
    with pytest.raises(UsageError, match=r"no node type provides CPU.*set ray\.autoscaling=true, or ray\.cluster_file"):
        clusterfit.check_fits(cfg(), nodes=[node(0)])
    with pytest.raises(UsageError, match=r"holds 1 such worker.*ray\.autoscaling=true"):
        clusterfit.check_fits(cfg("train.gpus_per_worker=0", "train.cpus_per_worker=1"), nodes=[node(2)])


@pytest.mark.timeout(120)
def test_a_local_ray_is_judged_on_its_nodes_whatever_the_cluster_settings_say(monkeypatch):
    """On a Ray this process started (a command's local Ray) no node is ever added, but ray.autoscaling=true skipped
    the fit check (train.cpus_per_worker=64 on 2 CPUs waited forever) and ray.cluster_file judged the file's node types
    in place of this machine's. Now the local nodes are judged whatever they say, naming the local Ray and not
    advising ray.autoscaling; what fits passes."""
    import shutil
    import tempfile

    import ray
    from conftest import shutdown_ray

    monkeypatch.chdir(ROOT)  # aws-gpu.yaml's cluster_file is relative to the tree
    too_big = ["train.gpus_per_worker=0", "train.cpus_per_worker=4"]  # fits aws.yaml's gpu_worker {CPU: 7}, not 2 CPUs
    settings = (["ray.cluster_file=null"], [], ["ray.autoscaling=false"])  # autoscaling alone; with the file; the file
    temp = tempfile.mkdtemp(prefix="avr-fit-", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        for extra in settings:
            for standalone in (True, False):
                with pytest.raises(UsageError, match=r"^the local Ray this process started: one training worker needs "
                                   r"\{CPU: 4\}.*A local Ray adds no nodes, whatever ray\.autoscaling and "
                                   r"ray\.cluster_file say: give ray\.address=") as refused:
                    clusterfit.check_cluster(cfg(*too_big, *extra, "train.workers=1"), standalone=standalone)
                assert "set ray.autoscaling=true" not in str(refused.value)
        with pytest.raises(UsageError, match=r"^the local Ray this process started: one run needs train\.workers=2 x "
                           r"\{CPU: 1.5\}.*holds 1 such worker.*lower train\.workers or run on a cluster\. A local"):
            clusterfit.check_cluster(cfg("train.gpus_per_worker=0", "train.cpus_per_worker=1.5"), standalone=True)
        clusterfit.check_cluster(cfg("train.gpus_per_worker=0", "train.cpus_per_worker=1"), standalone=True)
        # nor are its folders on this machine's disk refused as if nodes were added (they were, under autoscaling)
        for extra in settings:
            nodes.check_added_nodes({"sweep.storage": temp}, cfg(*extra).ray)
    finally:
        shutdown_ray()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_job_driver_without_credentials_or_endpoint_is_told_its_environment_is_not_the_shells(tmp_path, monkeypatch):
    """Submitted with `ray job submit` from a shell holding AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    AWS_ENDPOINT_URL (moto here) to a `ray start` head started without them, the sweep's driver was told "no AWS
    credentials: ... set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" (set already, in the shell it was submitted
    from), and given keys in its runtime env but no endpoint, to check AWS_ENDPOINT_URL (set there too). A job's
    driver is told where its environment comes from; outside a job nothing changes."""
    import json

    from conftest import refused_port

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3 = S3Config(region="us-east-1")
    with pytest.raises(UsageError, match=r"no AWS credentials: give the node a role, or set AWS_ACCESS_KEY_ID and "
                                         r"AWS_SECRET_ACCESS_KEY$"):
        storage.check_bucket("s3://b1x/sweeps", s3)  # outside a job: as ever
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}, "metadata": {}}))  # Ray's, for a job
    with pytest.raises(UsageError, match=r"no AWS credentials: .*; this `ray job submit` driver runs with the "
                                         r"environment its Ray node was started with, not the submitting shell's: "
                                         r"give AWS_\* variables in the job's runtime env \(--runtime-env-json"):
        storage.check_bucket("s3://b1x/sweeps", s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with refused_port() as port:
        with pytest.raises(storage.StorageError, match=r"cannot connect: check s3\.endpoint_url / AWS_ENDPOINT_URL "
                                                       r"and the network; this `ray job submit` driver runs with"):
            storage.exists("s3://b1x/sweeps/x/trials.parquet", S3Config(endpoint_url=f"http://127.0.0.1:{port}",
                                                                        region="us-east-1"))
