"""The shipped cluster files are valid and agree with the sweep configs meant for them.

Launcher YAMLs are validated the way `ray up` does before it calls any cloud API
(ray/autoscaler/_private/commands.py `_bootstrap_config`): `prepare_config` merges the
provider's defaults, then `validate_config` checks the result against Ray's own
`ray-schema.json` (jsonschema) plus its cross-field rules (head type among the node
types, sum of min_workers <= max_workers). Both are private API of this Ray 2.60
install; schema-only validation with the public JSON file would miss the defaults merge
and the cross-field rules, so we use what `ray up` uses. The fake_multinode config of
tests/autoscale.py gets `validate_config` only: its provider's defaults file is not
shipped in the 2.60 wheel, so `prepare_config` cannot run for it.

The KubeRay manifests cannot be checked by an API server here, so the checks below
spell out what the ray.io/v1 CRDs (KubeRay raycluster_types.go / rayjob_types.go) and
Kubernetes require:
- RayCluster: apiVersion ray.io/v1, kind, metadata.name (DNS-1123); spec.headGroupSpec
  with rayStartParams (map of string to string) and template.spec.containers (each with
  name and image); workerGroupSpecs[] with unique groupName, integer
  0 <= minReplicas <= replicas <= maxReplicas, rayStartParams, template; boolean
  enableInTreeAutoscaling; autoscalerOptions.upscalingMode in the CRD enum; container
  requests <= limits, and extended resources (nvidia.com/gpu) with requests == limits.
- RayJob: entrypoint (required unless submissionMode is InteractiveMode);
  runtimeEnvYAML a YAML mapping; shutdownAfterJobFinishes boolean;
  ttlSecondsAfterFinished integer >= 0; rayClusterSpec a valid RayCluster spec and
  no clusterSelector beside it.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from avdis import clusterfit
from avdis.config import load

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_YAMLS = sorted(p for p in (ROOT / "cluster").glob("*.yaml"))
KUBERAY = ROOT / "cluster" / "kuberay"
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
UPSCALING_MODES = {"Default", "Aggressive", "Conservative"}
# (config, cluster file) pairs a user runs together
PAIRS = [
    ("jobs/configs/aws-gpu.yaml", "cluster/aws.yaml"),
    ("jobs/configs/kuberay-gpu.yaml", "cluster/kuberay/raycluster.yaml"),
    ("jobs/configs/kuberay-gpu.yaml", "cluster/kuberay/rayjob.yaml"),
]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _doc(path: Path, kind: str) -> dict[str, Any]:
    return next(d for d in _docs(path) if d.get("kind") == kind)


def _validate_launcher(config: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


# ------------------------------------------------------------------ launcher YAMLs


def test_there_is_a_launcher_yaml():
    assert "aws.yaml" in [p.name for p in LAUNCHER_YAMLS]


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda p: p.name)
def test_launcher_yaml_validates_with_rays_validator(path):
    _validate_launcher(yaml.safe_load(path.read_text()))


def test_validator_rejects_a_broken_launcher_yaml():
    """Guards the test above: the validator does reject what `ray up` would."""
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5  # schema: integer
    with pytest.raises(jsonschema.ValidationError):
        _validate_launcher(config)
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    config["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        _validate_launcher(config)


def test_fake_multinode_config_validates():
    from ray.autoscaler._private.util import validate_config

    from autoscale import DEFAULT_WORKER_TYPES, launcher_config

    validate_config(launcher_config("127.0.0.1:6379", 1, DEFAULT_WORKER_TYPES))


def test_aws_yaml_is_locked_down():
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}, "no trials on the head"
    assert "0.0.0.0/0" not in json.dumps(config), "no ingress from anywhere"
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    for name, spec in types.items():
        # Without SecurityGroupIds the launcher makes a group with SSH open to the world.
        assert spec["node_config"].get("SecurityGroupIds"), name
        assert spec["node_config"].get("IamInstanceProfile", {}).get("Arn"), name
    gpu = types["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["resources"]["GPU"] >= 1
    assert all("RAY_AUTH_MODE=token" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c)


@pytest.mark.parametrize("path", [*LAUNCHER_YAMLS, *KUBERAY.glob("*.yaml")], ids=lambda p: p.name)
def test_no_credentials_in_cluster_files(path):
    text = path.read_text()
    for word in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "aws_secret_access_key", "AKIA"):
        assert word not in text


# ------------------------------------------------------------------ KubeRay manifests


def _quantity(value: Any) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _check_pod_template(template: dict[str, Any], where: str) -> list[str]:
    problems = []
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        problems.append(f"{where}: template.spec.containers is empty")
    for c in containers:
        if not c.get("name") or not c.get("image"):
            problems.append(f"{where}: container needs name and image")
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for key, req in requests.items():
            if key in limits and _quantity(req) > _quantity(limits[key]):
                problems.append(f"{where}: {key} request {req} > limit {limits[key]}")
            if "/" in key and key in limits and _quantity(req) != _quantity(limits[key]):
                problems.append(f"{where}: extended resource {key} needs request == limit")
    return problems


def _check_start_params(params: Any, where: str) -> list[str]:
    if not isinstance(params, dict):
        return [f"{where}: rayStartParams must be a mapping"]
    return [f"{where}: rayStartParams.{k} must be a string (got {v!r})" for k, v in params.items() if not isinstance(v, str)]


def check_raycluster_spec(spec: dict[str, Any], where: str) -> list[str]:
    """Problems the RayCluster CRD / KubeRay would reject; [] when fine."""
    problems = []
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict) or "template" not in head:
        return [f"{where}: spec.headGroupSpec.template is required"]
    problems += _check_start_params(head.get("rayStartParams", {}), f"{where} head")
    problems += _check_pod_template(head["template"], f"{where} head")
    if not isinstance(spec.get("enableInTreeAutoscaling", False), bool):
        problems.append(f"{where}: enableInTreeAutoscaling must be a boolean")
    mode = (spec.get("autoscalerOptions") or {}).get("upscalingMode", "Default")
    if mode not in UPSCALING_MODES:
        problems.append(f"{where}: autoscalerOptions.upscalingMode {mode!r} not in {sorted(UPSCALING_MODES)}")
    names = [g.get("groupName") for g in spec.get("workerGroupSpecs") or []]
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"{where}: workerGroupSpecs need unique, non-empty groupName (got {names})")
    for g in spec.get("workerGroupSpecs") or []:
        w = f"{where} group {g.get('groupName')}"
        lo, hi, n = g.get("minReplicas", 0), g.get("maxReplicas", 2**31 - 1), g.get("replicas", g.get("minReplicas", 0))
        if not all(isinstance(x, int) and x >= 0 for x in (lo, hi, n)) or not lo <= n <= hi:
            problems.append(f"{w}: need integers 0 <= minReplicas <= replicas <= maxReplicas (got {lo}, {n}, {hi})")
        problems += _check_start_params(g.get("rayStartParams", {}), w)
        problems += _check_pod_template(g.get("template") or {}, w) if "template" in g else [f"{w}: template is required"]
    return problems


def _check_metadata(doc: dict[str, Any], kind: str) -> None:
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == kind
    assert DNS_1123.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63


def test_raycluster_manifest():
    path = KUBERAY / "raycluster.yaml"
    doc = _doc(path, "RayCluster")
    _check_metadata(doc, "RayCluster")
    spec = doc["spec"]
    assert check_raycluster_spec(spec, path.name) == []
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu"]
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= 1
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert "nvidia.com/gpu" not in str(groups["cpu"])
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_pods_use_the_irsa_service_account(name):
    docs = _docs(KUBERAY / name)
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    ray_doc = next(d for d in docs if d["kind"] in ("RayCluster", "RayJob"))
    spec = ray_doc["spec"].get("rayClusterSpec", ray_doc["spec"])
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        account = group["template"]["spec"]["serviceAccountName"]
        assert accounts[account]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_rayjob_manifest():
    path = KUBERAY / "rayjob.yaml"
    doc = _doc(path, "RayJob")
    _check_metadata(doc, "RayJob")
    spec = doc["spec"]
    assert spec.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode")
    assert spec["entrypoint"].strip()
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)
    assert isinstance(runtime_env["working_dir"], str) and runtime_env["working_dir"].endswith(".zip")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in runtime_env["env_vars"].items())
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    assert "clusterSelector" not in spec
    assert check_raycluster_spec(spec["rayClusterSpec"], path.name) == []
    assert spec["rayClusterSpec"] == _doc(KUBERAY / "raycluster.yaml", "RayCluster")["spec"], (
        "rayjob.yaml's rayClusterSpec drifted from raycluster.yaml's spec"
    )


def test_rayjob_entrypoint_runs_a_valid_config():
    entry = shlex.split(_doc(KUBERAY / "rayjob.yaml", "RayJob")["spec"]["entrypoint"])
    assert entry[:3] == ["python", "jobs/sweep.py", "--config"]
    cfg = load(ROOT / entry[3], entry[4:])
    assert cfg.sweep.storage.startswith("s3://")


def test_structural_checks_catch_mistakes():
    spec = copy.deepcopy(_doc(KUBERAY / "raycluster.yaml", "RayCluster")["spec"])
    spec["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    spec["workerGroupSpecs"][0]["minReplicas"] = 9
    spec["workerGroupSpecs"][1]["groupName"] = "gpu"
    problems = "\n".join(check_raycluster_spec(spec, "x"))
    assert "num-cpus must be a string" in problems
    assert "minReplicas <= replicas <= maxReplicas" in problems
    assert "unique" in problems


# ------------------------------------------------------------------ configs vs clusters


@pytest.mark.parametrize("config,cluster", PAIRS)
def test_sweep_config_fits_its_cluster(config, cluster):
    cfg = load(ROOT / config)
    clusterfit.check_fits(cfg, str(ROOT / cluster))
    shapes, cap = clusterfit.shapes_from_file(ROOT / cluster)
    assert clusterfit.worker_capacity(cfg, shapes, cap) // cfg.train.workers == cfg.sweep.max_concurrent, (
        f"{config}: sweep.max_concurrent should be what {cluster} holds at once (GPU_MAX / train.workers)"
    )


@pytest.mark.parametrize("config", ["jobs/configs/aws-gpu.yaml", "jobs/configs/kuberay-gpu.yaml"])
def test_a_cluster_config_names_its_cluster_file_so_the_fit_is_checked(config, monkeypatch):
    """Without ray.cluster_file an autoscaling sweep skips the check: a trial that fits no node would wait forever."""
    monkeypatch.chdir(ROOT)  # as under `ray job submit --working-dir .`: a copy of the tree
    cfg = load(ROOT / config)
    assert cfg.ray.cluster_file and (Path(cfg.ray.cluster_file).resolve(), config) in [
        ((ROOT / cluster).resolve(), c) for c, cluster in PAIRS]
    clusterfit.check_fits(cfg, cluster_yaml=cfg.ray.cluster_file)


@pytest.mark.parametrize("config", ["jobs/configs/aws-gpu.yaml", "jobs/configs/kuberay-gpu.yaml"])
def test_cluster_configs_say_how_to_run_them(config):
    first = (ROOT / config).read_text().splitlines()[0]
    assert first.startswith("# ") and ("ray job submit" in first or "kubectl apply" in first)
    assert config.rsplit("/", 1)[-1] in first
    cfg = load(ROOT / config)
    assert cfg.train.gpus_per_worker > 0 and not cfg.train.in_process, "GPU workers, more than one per trial"
    assert cfg.data.shards.startswith("s3://") and cfg.sweep.storage.startswith("s3://")
    assert cfg.ray.autoscaling, "the head has no GPU: launch-time checks must allow for nodes still to come"


# ------------------------------------------------------------------ IAM and S3 documents (infra/storage)

STORAGE = ROOT / "infra" / "storage"


def _policy(name: str) -> dict[str, Any]:
    return json.loads((STORAGE / name).read_text().replace("${bucket}", "avdis-test-bucket"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _iam_actions() -> dict[str, Any]:
    """AWS's own list of IAM actions and the resource types each applies to, as cfn-lint ships it."""
    pytest.importorskip("cfnlint")
    import cfnlint

    return json.loads((Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json").read_text())


@pytest.mark.parametrize("name", ["node-s3-policy.json", "bucket-policy.json"])
def test_policy_actions_exist_and_name_the_right_resources(name):
    """Every action is a real IAM action, and each S3 statement names the ARN kind its actions act on
    (s3:ListBucket on the bucket ARN, object actions on bucket/*): a wrong pairing is silently never granted."""
    actions = _iam_actions()
    for st in _policy(name)["Statement"]:
        for action in _as_list(st["Action"]):
            service, verb = action.split(":")
            if "*" in verb:
                continue
            kinds = actions[service]["Actions"].get(verb.lower(), {}).get("Resources")
            assert kinds is not None, f"{name} {st['Sid']}: {action} is not an IAM action"
            for arn in _as_list(st["Resource"]):
                if service == "s3" and "*" not in verb:
                    kind = "object" if "/" in arn else "bucket"
                    assert kind in kinds, f"{name} {st['Sid']}: {action} acts on {kinds}, not on {arn} ({kind})"


def test_identity_policy_grammar():
    from moto.iam.policy_validation import IAMPolicyDocumentValidator

    IAMPolicyDocumentValidator(json.dumps(_policy("node-s3-policy.json"))).validate()


def _allows(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [st for st in policy["Statement"] if st["Effect"] == "Allow" and action in _as_list(st["Action"])]


def test_node_policy_lets_nodes_write_to_an_sse_kms_bucket():
    """create_bucket.py --kms-key-id makes SSE-KMS the bucket's default: every PutObject then needs
    kms:GenerateDataKey, and every GetObject and multipart upload kms:Decrypt, from the caller's role. Without them
    the nodes' first write (the sweep's write check) is AccessDenied. The grant is held to S3 and to this bucket."""
    policy = _policy("node-s3-policy.json")
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        statements = _allows(policy, action)
        assert statements, f"node-s3-policy.json grants no {action}"
        for st in statements:
            like = st.get("Condition", {}).get("StringLike", {})
            assert like.get("kms:ViaService") == "s3.*.amazonaws.com", "held to calls S3 makes"
            assert sorted(_as_list(like.get("kms:EncryptionContext:aws:s3:arn"))) == [
                "arn:aws:s3:::avdis-test-bucket", "arn:aws:s3:::avdis-test-bucket/*"], "held to this bucket"


def _doc_commands(path: Path, script: str) -> list[list[str]]:
    """The shell lines of `path`'s code blocks that run `script`, as argv (comments cut off)."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside and script in line:
            lines.append(shlex.split(line, comments=True))
    return lines


@pytest.mark.parametrize("doc", ["README.md", "infra/storage/README.md"])
def test_documented_create_bucket_commands_run_as_written(doc):
    """Run as documented (in --dry-run, without AWS_* variables, as on a laptop whose region lives in ~/.aws/config),
    each command makes the bucket in the region of cluster/aws.yaml and the cluster configs (s3.region)."""
    import os
    import subprocess
    import sys

    region = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())["provider"]["region"]
    assert {load(ROOT / c).s3.region for c, _ in PAIRS} == {region}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    commands = _doc_commands(ROOT / doc, "infra/storage/create_bucket.py")
    assert commands, f"{doc} shows no create_bucket.py command"
    for argv in commands:
        assert argv[:2] == ["python", "infra/storage/create_bucket.py"], argv
        run = subprocess.run([sys.executable, *argv[1:], *(["--dry-run"] if "--dry-run" not in argv else [])],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{doc}: {shlex.join(argv)} fails: {run.stderr.strip()}"
        create = run.stdout.splitlines()[0]
        assert "LocationConstraint" not in create if region == "us-east-1" else f'"LocationConstraint": "{region}"' in create


def test_the_kuberay_image_build_leaves_out_what_git_ignores():
    """cluster/README.md builds the pods' image with `COPY . /home/ray/avdis` from the repo root: without a
    .dockerignore the build context (and the image) carried .venv (GBs), .git, runs/ and test artifacts."""
    import fnmatch

    readme = (ROOT / "cluster" / "README.md").read_text()
    assert re.search(r"^COPY .*\s\.\s+/home/ray/avdis$", readme, re.M), "the documented build copies the repo root"
    ignore = ROOT / ".dockerignore"
    assert ignore.exists(), "no .dockerignore beside the build context"
    patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(prefix, pat.removeprefix("**/")) or fnmatch.fnmatch(prefix, pat)
                   or (pat.startswith("**/") and fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], pat[3:]))
                   for pat in patterns for prefix in prefixes)

    for path in (".git/HEAD", ".venv/bin/python", "runs/sweeps/x.parquet", "test-artifacts/log.txt", "build/lib/x.py",
                 "avdis/cli/__pycache__/entry.cpython-311.pyc", "avdis.egg-info/PKG-INFO", ".pytest_cache/v/x"):
        assert ignored(path), f".dockerignore lets {path} into the image"
    for path in ("avdis/cli/__init__.py", "pyproject.toml", "jobs/sweep.py", "cluster/kuberay/raycluster.yaml"):
        assert not ignored(path), f".dockerignore leaves out {path}, which the image needs"



def _aws_node_commands() -> list[str]:
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in config.get(k) or []]


def test_aws_node_commands_parse_as_bash():
    """The launcher runs each command as YAML reads it. In a plain YAML scalar ` #` starts a comment, so
    `echo 'export PATH=...'  # avdis venv' >> ~/.bashrc` reached bash cut at the `#`, an unterminated quote: the
    setup of the head and of every worker failed, and `ray start` would not have found the venv's ray."""
    import subprocess

    commands = _aws_node_commands()
    for command in commands:
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"{command!r}: {check.stderr}"
    assert any('export PATH="$HOME/venv/bin:$PATH"' in c and c.rstrip().endswith(">> ~/.bashrc") for c in commands)


def test_aws_nodes_run_the_python_of_the_kuberay_image():
    """The AMI's python3 (Ubuntu 24.04: 3.12) made the nodes' venv, while the KubeRay image and the pinned
    constraints are 3.11: Ray Client refuses a client whose Python minor version differs from the cluster's, so one
    laptop could not reach both clusters, and the AWS nodes ran untested versions."""
    image = re.search(r"FROM rayproject/ray:[\d.]+-py(\d)(\d+)", (ROOT / "cluster" / "README.md").read_text())
    assert image, "cluster/README.md's Dockerfile names no rayproject/ray image"
    version = f"{image[1]}.{image[2]}"
    commands = " ; ".join(_aws_node_commands())
    assert f"venv --seed --python {version} ~/venv" in commands
    assert f"sys.version_info[:2] == ({image[1]}, {image[2]})" in commands  # a venv of another Python is made again


def test_aws_setup_waits_for_apts_locks():
    """A fresh Ubuntu (the AMI of cluster/README.md) runs unattended-upgrades in its first minutes, holding apt's
    locks: an apt-get that does not wait fails the node's setup at random ("Could not get lock")."""
    calls = [call for c in _aws_node_commands() for call in re.findall(r"apt-get[^;&|}]*", c)]
    assert calls
    for call in calls:
        assert "DPkg::Lock::Timeout=" in call, f"apt-get without a lock timeout: {call.strip()!r}"


def _botocore_errors(service: str, operation: str, params: dict[str, Any]) -> str:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    return report.generate_report() if report.has_errors() else ""


@pytest.mark.parametrize("region,kms", [("us-east-1", None), ("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/x")])
def test_create_bucket_calls_match_botocores_s3_model(region, kms):
    """What create_bucket.py sends (lifecycle.json, public-access-block.json, the policy) has the shapes the S3 API
    takes (botocore's service model, the validator boto3 runs before sending)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("create_bucket", STORAGE / "create_bucket.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = module.plan("avdis-test-bucket", region, 30, kms)
    for name, params in calls:
        operation = "".join(part.capitalize() for part in name.split("_"))
        assert _botocore_errors("s3", operation, params) == "", name
    lifecycle = dict(calls)["put_bucket_lifecycle_configuration"]["LifecycleConfiguration"]
    prefixes = {r["Filter"].get("Prefix") for r in lifecycle["Rules"] if "Expiration" in r}
    checkpoints = {load(ROOT / c).sweep.checkpoints for c, _ in PAIRS}
    for url in checkpoints:  # the sweeps' trial checkpoints are what the expiry rule is for
        key = url.removeprefix("s3://").split("/", 1)[1].rstrip("/") + "/"
        assert any(key.startswith(p) for p in prefixes), f"{url} is not under an expiring prefix ({prefixes})"


def test_aws_node_configs_match_ec2_run_instances():
    """Each node_config, as the AWS node provider sends it (SubnetIds resolved to one SubnetId), is a valid
    RunInstances request (botocore's EC2 model): a misspelt field fails only when the autoscaler starts a node."""
    config = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    for name, node_type in config["available_node_types"].items():
        params = copy.deepcopy(node_type["node_config"])
        params["SubnetId"] = params.pop("SubnetIds")[0]
        params.update(MinCount=1, MaxCount=1)
        assert _botocore_errors("ec2", "RunInstances", params) == "", name


def test_a_jobs_working_dir_package_holds_the_code_and_not_the_git_history(tmp_path):
    """Ray's own packaging without its default excludes (RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES, as some users
    set) zipped .git too (.gitignore cannot list it): 14 MB more per job. .rayignore keeps it out there as well."""
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    create_package(str(ROOT), tmp_path / "job.zip", include_gitignore=True)
    names = zipfile.ZipFile(tmp_path / "job.zip").namelist()
    assert "avdis/cli/__init__.py" in names and "jobs/sweep.py" in names and "jobs/configs/local.yaml" in names
    assert not [n for n in names if n.startswith((".git/", ".venv/"))], [n for n in names if n.startswith(".git")][:5]
