"""Pre-launch check: can a sweep's trial (or one `avdis train` run) ever run on the cluster?

Kept here is only what Ray cannot tell before launch. What Ray 2.60 itself reports:
- Ray Train V2 (on by default), before it asks for a worker group's placement group,
  compares `workers x resources_per_worker` per resource kind with the cluster's largest
  size and raises `InsufficientClusterResourcesError`
  (`WorkerGroup._check_cluster_resources_and_raise_if_insufficient`). That size comes from
  the cluster config the autoscaler reports to the GCS, so the check runs only inside a
  trial that has already started, only on an autoscaling cluster, and only on totals.
- A worker bundle larger than every node is not caught there: its placement group waits,
  `WorkerGroupStartupTimeoutError` follows after `RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`
  (60 s), and the default failure policy retries it without limit
  (`FailureConfig.controller_failure_limit=-1`). The autoscaler only logs "No available
  node types can fulfill resource request"; Tune only warns after 60 s without a running
  trial, comparing totals with `ray.cluster_resources()`, and says to ignore it when the
  cluster autoscales.

So the checks below refuse, with a `UsageError` naming the config field, a trial that
(1) asks for a resource kind no node type has, (2) has a worker bundle (with
`STRICT_PACK`, all workers as one bundle) or a driver bundle that fits no node type, or
(3) has more workers than the cluster at its largest could hold beside the trial's
driver. (3) is a bound, not a placement: for each node type, how many whole worker
bundles one node holds (one with `STRICT_SPREAD`) times how many such nodes may exist,
the largest first up to the launcher's global `max_workers`, less the bundles the driver
displaces on the node type where it displaces fewest. It counts whole bundles per node,
which Train V2's per-kind totals do not, and it answers before any trial starts, also on
a fixed cluster (a laptop, `ray start` nodes) where Ray has no cluster config and a
trial would otherwise wait forever. Where trials and their workers land, how many trials run
at once, and shortages that pass (nodes booting, taken by other jobs, lost) are left to
Ray's scheduler and autoscaler.

The cluster is described either by a file (a Ray cluster launcher YAML, or a KubeRay
RayCluster / RayJob manifest), which gives the node types and how many of each the
autoscaler may start, or by live `ray.nodes()` dicts, which give the nodes there now
(right for a fixed cluster; an autoscaling one may grow past them, so pass its file).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from avdis import runtime
from avdis.config import Config, TrainConfig
from avdis.errors import UsageError

_EPS = 1e-9
_UNBOUNDED = 10_000  # node count used for "no max"; far beyond any real sweep
_FIELDS = {"CPU": "train.cpus_per_worker", "GPU": "train.gpus_per_worker"}


@dataclass(frozen=True)
class NodeShape:
    """One node type: the resources of one node and how many such nodes may exist."""

    name: str
    resources: dict[str, float]
    count: int
    is_head: bool = False


# ------------------------------------------------------------------ cluster shapes


# Kubernetes quantity suffixes, longest first ("Mi" before "M").
_K8S_SUFFIXES = sorted({"m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
                        "T": Decimal(10) ** 12, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
                        "Ti": Decimal(2) ** 40}.items(), key=lambda kv: -len(kv[0]))
_STANDARD = ("CPU", "GPU", "TPU", "memory")  # not custom resources in a group's top-level `resources`


def _k8s_quantity(value: Any, where: str) -> float:
    """Kubernetes quantity ("7", 7, "500m", "1Gi") rounded up to a whole number, as Ray's KubeRay autoscaler reads
    a pod's resources (Ray 2.60 `autoscaler/_private/kuberay/autoscaling_config.py`, `_round_up_k8s_quantity`)."""
    text = str(value).strip()
    number, factor = text, Decimal(1)
    for suffix, scale in _K8S_SUFFIXES:
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], scale
            break
    try:
        return float(math.ceil(Decimal(number) * factor))
    except InvalidOperation:
        raise UsageError(f"{where}: {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 8Gi)") from None


def _start_param_resources(raw: str, where: str) -> dict[str, float]:
    """rayStartParams.resources, in KubeRay's documented form `'"{\\"Custom1\\": 1}"'` (the outer quotes and the
    backslashes are characters of the string; Ray's autoscaler drops both) or as plain JSON."""
    text = str(raw).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    try:
        found = json.loads(text.replace("\\", "") or "{}")
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
        return {str(k): float(v) for k, v in found.items()}
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: rayStartParams.resources {raw!r} is not a JSON object of resource amounts "
                         f"({exc}); KubeRay's form is resources: '\"{{\\\"Custom1\\\": 1}}\"'") from None


def _kuberay_group(name: str, group: dict[str, Any], count: int, head: bool, source: str) -> NodeShape:
    """Resources Ray sees in a group's pods, by the rules of Ray's KubeRay autoscaler: the group's top-level
    `resources` first, then rayStartParams, then the container's limits, then its requests (quantities rounded
    up); a GPU from any `*gpu` key there (nvidia.com/gpu, amd.com/gpu)."""
    top = group.get("resources") or {}
    params = group.get("rayStartParams") or {}
    k8s = group["template"]["spec"]["containers"][0].get("resources") or {}
    limits, requests = k8s.get("limits") or {}, k8s.get("requests") or {}
    where = f"{source}: group {name!r}"
    res: dict[str, float] = {}
    if "CPU" in top:
        res["CPU"] = _k8s_quantity(top["CPU"], where)
    elif "num-cpus" in params:
        res["CPU"] = float(params["num-cpus"])
    elif "cpu" in limits or "cpu" in requests:
        res["CPU"] = _k8s_quantity(limits.get("cpu", requests.get("cpu")), where)
    if "GPU" in top:
        res["GPU"] = _k8s_quantity(top["GPU"], where)
    elif "num-gpus" in params:
        res["GPU"] = float(params["num-gpus"])
    else:
        gpus = [_k8s_quantity(v, where) for k, v in [*limits.items(), *requests.items()] if str(k).endswith("gpu")]
        if any(gpus):
            res["GPU"] = next(g for g in gpus if g > 0)
    if top:
        res.update({k: _k8s_quantity(v, where) for k, v in top.items() if k not in _STANDARD})
    elif "resources" in params:
        res.update(_start_param_resources(params["resources"], where))
    return NodeShape(name, res, count, head)


def _kuberay_pods(group: dict[str, Any], autoscaling: bool) -> int:
    """The most pods a worker group can have. Without enableInTreeAutoscaling (KubeRay's default) the operator
    keeps `replicas` (minReplicas when unset) within [minReplicas, maxReplicas], as KubeRay's
    GetWorkerGroupDesiredReplicas does; with it the autoscaler may go up to maxReplicas. A suspended group has
    none. Each replica is numOfHosts pods."""
    if group.get("suspend"):
        return 0
    low, high = int(group.get("minReplicas", 0)), int(group.get("maxReplicas", _UNBOUNDED))
    wanted = high if autoscaling else max(int(group.get("replicas", low)), low)
    return min(min(wanted, high) * int(group.get("numOfHosts", 1)), _UNBOUNDED)


def _kuberay_shapes(spec: dict[str, Any], source: str) -> tuple[list[NodeShape], int]:
    shapes = [_kuberay_group("head", spec["headGroupSpec"], 1, head=True, source=source)]
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    for g in spec.get("workerGroupSpecs") or []:
        shapes.append(_kuberay_group(g["groupName"], g, _kuberay_pods(g, autoscaling), head=False, source=source))
    return shapes, _UNBOUNDED


def _provider_max_workers(provider: dict[str, Any]) -> int:
    """The global max_workers Ray gives a launcher YAML that sets none: its provider's defaults.yaml (2 for aws, gcp
    and azure in Ray 2.60; `autoscaler/_private/util.py` fillout_defaults), which also caps every node type without
    a max_workers of its own. Unbounded where Ray's defaults cannot be read (an external provider)."""
    try:
        from ray.autoscaler._private.providers import _get_default_config

        return int(_get_default_config(provider).get("max_workers", _UNBOUNDED))
    except Exception:  # private API, unknown provider type: judge without the cap
        return _UNBOUNDED


def _launcher_shapes(doc: dict[str, Any], source: str) -> tuple[list[NodeShape], int]:
    types = doc.get("available_node_types") or {}
    head_type = doc.get("head_node_type")
    global_max = int(doc["max_workers"]) if "max_workers" in doc else _provider_max_workers(doc.get("provider") or {})
    shapes = []
    for name, spec in types.items():
        res = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        if "CPU" not in res:
            raise UsageError(
                f"{source}: node type {name!r} declares no CPU in `resources`; declare "
                "resources: {CPU: ..., GPU: ...} so the sweep can be checked against it "
                "(instance types are not looked up offline)"
            )
        if name == head_type:
            shapes.append(NodeShape(name, res, 1, is_head=True))
        count = int(spec.get("max_workers", 0 if name == head_type else global_max))
        if count:
            shapes.append(NodeShape(name, res, min(count, _UNBOUNDED)))
    return shapes, global_max


def shapes_from_file(path: str | Path) -> tuple[list[NodeShape], int]:
    """Node shapes of a launcher YAML or KubeRay manifest, and the cap on worker nodes."""
    source = str(path)
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{source}: cannot read cluster file ({exc})") from None
    try:
        for doc in docs:
            if doc.get("kind") == "RayCluster":
                return _kuberay_shapes(doc["spec"], source)
            if doc.get("kind") == "RayJob":
                if "rayClusterSpec" not in (doc.get("spec") or {}):  # KubeRay's clusterSelector: a cluster made apart
                    raise UsageError(f"{source}: this RayJob runs on an existing RayCluster (no rayClusterSpec) and "
                                     "describes no nodes; give that RayCluster's manifest as ray.cluster_file")
                return _kuberay_shapes(doc["spec"]["rayClusterSpec"], source)
            if "available_node_types" in doc:
                return _launcher_shapes(doc, source)
    except UsageError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:  # a field missing or of another kind
        raise UsageError(f"{source}: cannot read its node types ({type(exc).__name__}: {exc}); check the file against "
                         "cluster/aws.yaml or cluster/kuberay/raycluster.yaml") from None
    raise UsageError(f"{source}: neither a Ray cluster launcher YAML nor a RayCluster/RayJob manifest")


def shapes_from_nodes(nodes: list[dict[str, Any]]) -> tuple[list[NodeShape], int]:
    """One shape per alive node of `ray.nodes()`; nothing more can appear."""
    shapes = [
        NodeShape(str(n.get("NodeManagerAddress") or n.get("NodeID")), dict(n.get("Resources") or {}), 1)
        for n in nodes
        if n.get("Alive", True)
    ]
    return shapes, len(shapes)


# ------------------------------------------------------------------ demand and capacity


def worker_bundle(t: TrainConfig) -> dict[str, float]:
    """What one training worker asks Ray for: the one rule behind Ray Train's ScalingConfig and every fit check."""
    worker = {"CPU": t.cpus_per_worker}
    if t.gpus_per_worker:
        worker["GPU"] = t.gpus_per_worker
    return worker


def demand(cfg: Config, standalone: bool = False) -> tuple[dict[str, float], list[dict[str, float]]]:
    """(driver bundle, worker bundles) that one sweep trial asks Ray for, or with `standalone` one
    `avdis train` run, whose TorchTrainer is driven from the user's process (a bundle of nothing)."""
    t = cfg.train
    worker = worker_bundle(t)
    if t.in_process and not standalone:  # the trial process is the one worker (see avdis.tune.trial)
        return {}, [worker]
    driver = {} if standalone else {"CPU": cfg.sweep.trial_cpus}
    if t.placement_strategy == "STRICT_PACK":
        return driver, [{k: v * t.workers for k, v in worker.items()}]
    return driver, [dict(worker) for _ in range(t.workers)]


def _per_node(resources: dict[str, float], bundle: dict[str, float]) -> int:
    """How many whole copies of `bundle` one node with `resources` holds."""
    asked = [(resources.get(k, 0.0) + _EPS) / v for k, v in bundle.items() if v > 0]
    return math.floor(min(asked)) if asked else _UNBOUNDED


def worker_capacity(cfg: Config, shapes: list[NodeShape], global_max: int, standalone: bool = False) -> int:
    """Most worker bundles of one trial the cluster at its largest holds beside its driver (an upper bound).

    Per node type: bundles one node holds (one with STRICT_SPREAD) x how many such nodes
    may exist, worker node types largest first up to `global_max` nodes in all; less what
    the driver costs on the node type where it costs the fewest bundles.
    """
    driver, workers = demand(cfg, standalone)
    most = 1 if cfg.train.placement_strategy == "STRICT_SPREAD" else _UNBOUNDED

    def fit(res: dict[str, float]) -> int:
        return min(_per_node(res, workers[0]), most)

    total = sum(fit(s.resources) for s in shapes if s.is_head)
    nodes_left = global_max
    for s in sorted((s for s in shapes if not s.is_head), key=lambda s: -fit(s.resources)):
        taken = min(s.count, nodes_left)
        total, nodes_left = total + taken * fit(s.resources), nodes_left - taken
    if not driver:
        return total
    costs = [fit(s.resources) - fit({k: v - driver.get(k, 0.0) for k, v in s.resources.items()})
             for s in shapes if s.count > 0 and _per_node(s.resources, driver)]
    return total - min(costs, default=0)


# ------------------------------------------------------------------ checks


_HIDDEN = ("node:", "memory", "object_store_memory", "accelerator_type:")


def _fmt(res: dict[str, float]) -> str:
    """`{CPU: 7, GPU: 1}`; Ray's bookkeeping resources (memory, node:ip) left out."""
    shown = sorted((k, v) for k, v in res.items() if not k.startswith(_HIDDEN))
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in shown) + "}"


def _check_kinds(worker: dict[str, float], shapes: list[NodeShape], source: str) -> None:
    """A resource kind no node type has: the clearest message for the commonest mistake (GPU)."""
    for name, amount in worker.items():
        if amount > 0 and not any(s.resources.get(name, 0) > 0 for s in shapes):
            field = _FIELDS.get(name, name)
            raise UsageError(
                f"{source}: no node type provides {name}, but each training worker asks for {amount:g} "
                f"({field}); use a cluster with {name} nodes or set {field}=0"
            )


def _check_bundles(cfg: Config, shapes: list[NodeShape], source: str, driver: dict[str, float],
                   workers: list[dict[str, float]]) -> None:
    """A worker or driver bundle that no single node can hold waits forever (see the module docstring)."""
    t = cfg.train
    usable = [s for s in shapes if s.count > 0]
    types = ", ".join(f"{s.name} {_fmt(s.resources)}" for s in usable) or "none"
    if not any(_per_node(s.resources, workers[0]) for s in usable):
        packed = t.placement_strategy == "STRICT_PACK"
        what = "all workers together (placement_strategy=STRICT_PACK)" if packed else "one training worker"
        raise UsageError(
            f"{source}: {what} needs {_fmt(workers[0])} (train.cpus_per_worker={t.cpus_per_worker:g}, "
            f"train.gpus_per_worker={t.gpus_per_worker:g}) but no node type holds that; node types: "
            f"{types}. Lower the per-worker resources or add a bigger node type"
        )
    if driver and not any(_per_node(s.resources, driver) for s in usable):
        raise UsageError(
            f"{source}: the trial driver needs {_fmt(driver)} (sweep.trial_cpus={cfg.sweep.trial_cpus:g}) "
            f"but no node type holds that; node types: {types}"
        )


def check_fits(cfg: Config, cluster_yaml: str | None = None, nodes: list[dict] | None = None,
               standalone: bool = False, local: bool = False) -> None:
    """Raise UsageError if one trial of `cfg` (with `standalone`, one `avdis train` run) can never be scheduled.
    `local`: `nodes` are those of a Ray this process started, which adds none (`runtime.started_here`)."""
    if (cluster_yaml is None) == (nodes is None):
        raise ValueError("pass exactly one of cluster_yaml (a file) or nodes (ray.nodes())")
    if cluster_yaml is not None:
        shapes, global_max = shapes_from_file(cluster_yaml)
        source, grow = cluster_yaml, (f"raise max_workers (maxReplicas; replicas where enableInTreeAutoscaling is "
                                      f"off) in {cluster_yaml}")
    elif local:
        shapes, global_max = shapes_from_nodes(nodes or [])
        source, grow = "the local Ray this process started", "run on a cluster"
    else:
        shapes, global_max = shapes_from_nodes(nodes or [])
        source, grow = "the running Ray cluster", "add nodes to the cluster"
    try:
        _check_shapes(cfg, shapes, global_max, source, grow, standalone)
    except UsageError as exc:
        if nodes is None:
            raise
        if local:  # ray.autoscaling / ray.cluster_file (a config file's, for its cluster) change nothing here
            raise UsageError(f"{exc}. A local Ray adds no nodes, whatever ray.autoscaling and ray.cluster_file say: "
                             "give ray.address=<a cluster's> (or RAY_ADDRESS) to run on one") from None
        # judged on the nodes there now: on an autoscaling cluster (a KubeRay head with num-cpus 0, GPU nodes on
        # demand) the advice above is wrong, and the one setting that fixes it is ray.autoscaling
        raise UsageError(f"{exc}. This was judged on the nodes the cluster has now (ray.autoscaling=false): if it "
                         "adds nodes on demand, set ray.autoscaling=true, or ray.cluster_file=<its launcher YAML or "
                         "KubeRay manifest> to be checked against its node types") from None


def _check_shapes(cfg: Config, shapes: list[NodeShape], global_max: int, source: str, grow: str,
                  standalone: bool) -> None:
    t = cfg.train
    driver, workers = demand(cfg, standalone)
    _check_kinds(workers[0], shapes, source)
    _check_bundles(cfg, shapes, source, driver, workers)
    room = worker_capacity(cfg, shapes, global_max, standalone)
    if room < len(workers):
        beside = f" plus its driver {_fmt(driver)}" if driver else ""
        raise UsageError(
            f"{source}: one {'run' if standalone else 'trial'} needs train.workers={t.workers} x {_fmt(worker_bundle(t))} "
            f"(placement_strategy={t.placement_strategy}){beside}, but the cluster at its largest holds {room} "
            f"such worker(s) at once{beside and ' beside the driver'}; lower train.workers or {grow}"
        )


def check_cluster(cfg: Config, standalone: bool = False) -> None:
    """Before launch: one trial (with `standalone`, one `avdis train` run) fits the cluster, judged on its file,
    else on the nodes of a fixed cluster (an autoscaling one without a file may grow: Ray judges). A Ray this
    process started is judged on its nodes whatever ray.autoscaling and ray.cluster_file say (a config file's,
    for its cluster): none is added, and a worker too big for them waited forever. Call it connected to Ray."""
    import ray

    if runtime.started_here():
        check_fits(cfg, nodes=ray.nodes(), standalone=standalone, local=True)
    elif cfg.ray.cluster_file:
        check_fits(cfg, cluster_yaml=cfg.ray.cluster_file, standalone=standalone)
    elif not cfg.ray.autoscaling:
        check_fits(cfg, nodes=ray.nodes(), standalone=standalone)
