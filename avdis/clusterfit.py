"""Pre-launch checks: does a sweep's trial fit the cluster, and is its bucket there?

A trial that asks for more than any node can hold does not fail in Ray: it waits
forever for resources (or for an autoscaler that never adds a big enough node). These
checks turn that into a `UsageError` naming the config field before any trial starts.

The cluster is described either by a file (a Ray cluster launcher YAML, or a KubeRay
RayCluster / RayJob manifest), which gives the node types and how many of each the
autoscaler may start, or by live `ray.nodes()` dicts, which give the nodes there now
(right for a fixed cluster; an autoscaling one may grow past them, so pass its file).

A trial is what avdis asks Ray for: the trial driver (`sweep.trial_cpus` CPUs) plus
`train.workers` bundles of `{CPU: train.cpus_per_worker, GPU: train.gpus_per_worker}`
placed with `train.placement_strategy`. Packing is greedy first-fit, the same shape
of decision Ray's scheduler makes for these small, uniform bundles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from avdis.config import Config, S3Config, TrainConfig
from avdis.errors import UsageError

_EPS = 1e-9
_UNBOUNDED = 10_000  # node count used for "no max"; far beyond any real sweep


@dataclass(frozen=True)
class NodeShape:
    """One node type: the resources of one node and how many such nodes may exist."""

    name: str
    resources: dict[str, float]
    count: int
    is_head: bool = False


@dataclass
class _Node:
    shape: NodeShape
    free: dict[str, float]  # what is left after the bundles placed so far


# ------------------------------------------------------------------ cluster shapes


def _cpu_quantity(value: Any) -> float:
    """Kubernetes CPU quantity ("7", 7, "500m") -> cores."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _kuberay_group(name: str, group: dict[str, Any], count: int, head: bool) -> NodeShape:
    """Resources Ray will see in a pod: rayStartParams win over container limits."""
    params = group.get("rayStartParams") or {}
    containers = group["template"]["spec"]["containers"]
    limits = (containers[0].get("resources") or {}).get("limits") or {}
    res: dict[str, float] = {}
    if "num-cpus" in params:
        res["CPU"] = float(params["num-cpus"])
    elif "cpu" in limits:
        res["CPU"] = _cpu_quantity(limits["cpu"])
    if "num-gpus" in params:
        res["GPU"] = float(params["num-gpus"])
    elif "nvidia.com/gpu" in limits:
        res["GPU"] = float(limits["nvidia.com/gpu"])
    res.update({k: float(v) for k, v in json.loads(params.get("resources", "{}").strip("'\"") or "{}").items()})
    return NodeShape(name, res, count, head)


def _kuberay_shapes(spec: dict[str, Any]) -> tuple[list[NodeShape], int]:
    shapes = [_kuberay_group("head", spec["headGroupSpec"], 1, head=True)]
    for g in spec.get("workerGroupSpecs") or []:
        hosts = int(g.get("numOfHosts", 1))
        count = int(g.get("maxReplicas", _UNBOUNDED)) * hosts
        shapes.append(_kuberay_group(g["groupName"], g, min(count, _UNBOUNDED), head=False))
    return shapes, _UNBOUNDED


def _launcher_shapes(doc: dict[str, Any], source: str) -> tuple[list[NodeShape], int]:
    types = doc.get("available_node_types") or {}
    head_type = doc.get("head_node_type")
    global_max = int(doc.get("max_workers", _UNBOUNDED))
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
    for doc in docs:
        if doc.get("kind") == "RayCluster":
            return _kuberay_shapes(doc["spec"])
        if doc.get("kind") == "RayJob":
            return _kuberay_shapes(doc["spec"]["rayClusterSpec"])
        if "available_node_types" in doc:
            return _launcher_shapes(doc, source)
    raise UsageError(f"{source}: neither a Ray cluster launcher YAML nor a RayCluster/RayJob manifest")


def shapes_from_nodes(nodes: list[dict[str, Any]]) -> tuple[list[NodeShape], int]:
    """One shape per alive node of `ray.nodes()`; nothing more can appear."""
    shapes = [
        NodeShape(str(n.get("NodeManagerAddress") or n.get("NodeID")), dict(n.get("Resources") or {}), 1)
        for n in nodes
        if n.get("Alive", True)
    ]
    return shapes, len(shapes)


# ------------------------------------------------------------------ packing


def _fits(free: dict[str, float], bundle: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPS >= v for k, v in bundle.items() if v > 0)


class _Cluster:
    """Nodes opened on demand, up to each shape's count and the global worker cap."""

    def __init__(self, shapes: list[NodeShape], global_max: int) -> None:
        self.shapes = shapes
        self.budget = global_max
        self.left = {id(s): s.count for s in shapes if not s.is_head}
        self.nodes = [_Node(s, dict(s.resources)) for s in shapes if s.is_head]

    def _open(self, bundle: dict[str, float]) -> _Node | None:
        # Prefer shapes with the fewest resource kinds the bundle does not use (keep
        # GPU nodes for GPU work, as Ray's scheduler does).
        candidates = [s for s in self.shapes if not s.is_head and self.left[id(s)] > 0 and _fits(s.resources, bundle)]
        if not candidates or self.budget <= 0:
            return None
        shape = min(candidates, key=lambda s: sum(1 for k, v in s.resources.items() if v > 0 and k not in bundle))
        self.left[id(shape)] -= 1
        self.budget -= 1
        node = _Node(shape, dict(shape.resources))
        self.nodes.append(node)
        return node

    def place(self, bundle: dict[str, float], avoid: set[int] = frozenset()) -> int | None:
        """Index of the node now holding `bundle`, or None (cluster unchanged)."""
        for i, node in enumerate(self.nodes):
            if i not in avoid and _fits(node.free, bundle):
                break
        else:
            if self._open(bundle) is None:
                return None
            i, node = len(self.nodes) - 1, self.nodes[-1]
        for k, v in bundle.items():
            node.free[k] = node.free.get(k, 0.0) - v
        return i

    def snapshot(self) -> tuple:
        return ([(n.shape, dict(n.free)) for n in self.nodes], dict(self.left), self.budget)

    def restore(self, snap: tuple) -> None:
        nodes, self.left, self.budget = snap
        self.nodes = [_Node(s, dict(f)) for s, f in nodes]


def worker_bundle(t: TrainConfig) -> dict[str, float]:
    """What one training worker asks Ray for: the one rule behind Ray Train's ScalingConfig and every fit check."""
    worker = {"CPU": t.cpus_per_worker}
    if t.gpus_per_worker:
        worker["GPU"] = t.gpus_per_worker
    return worker


def trial_demand(cfg: Config) -> tuple[dict[str, float], list[dict[str, float]]]:
    """(driver bundle, worker bundles) that one trial asks Ray for."""
    t = cfg.train
    worker = worker_bundle(t)
    if t.strategy == "single":  # the trial process is the one worker (see avdis.tune.trial)
        return {}, [worker]
    workers = [dict(worker) for _ in range(t.workers)]
    if t.placement_strategy == "STRICT_PACK":
        workers = [{k: v * t.workers for k, v in worker.items()}]
    return {"CPU": cfg.sweep.trial_cpus}, workers


def _place_workers(cluster: _Cluster, cfg: Config, workers: list[dict[str, float]]) -> int:
    """Place worker bundles in order; how many fit (STRICT_SPREAD: one per node)."""
    spread = cfg.train.placement_strategy == "STRICT_SPREAD"
    used: set[int] = set()
    placed = 0
    for bundle in workers:
        i = cluster.place(bundle, used if spread else set())
        if i is None:
            break
        used.add(i)
        placed += 1
    return placed


def _place_trial(cluster: _Cluster, cfg: Config) -> bool:
    driver, workers = trial_demand(cfg)
    snap = cluster.snapshot()
    if _place_workers(cluster, cfg, workers) < len(workers) or cluster.place(driver) is None:
        cluster.restore(snap)
        return False
    return True


def trials_that_fit(cfg: Config, shapes: list[NodeShape], global_max: int, limit: int = 1000) -> int:
    """How many trials can run at once on the cluster at its largest (at most `limit`)."""
    cluster = _Cluster(shapes, global_max)
    n = 0
    while n < limit and _place_trial(cluster, cfg):
        n += 1
    return n


def _workers_that_fit(cfg: Config, shapes: list[NodeShape], global_max: int) -> int:
    _, workers = trial_demand(cfg)
    return _place_workers(_Cluster(shapes, global_max), cfg, workers)


# ------------------------------------------------------------------ checks


_HIDDEN = ("node:", "memory", "object_store_memory", "accelerator_type:")


def _fmt(res: dict[str, float]) -> str:
    """`{CPU: 7, GPU: 1}`; Ray's bookkeeping resources (memory, node:ip) left out."""
    shown = sorted((k, v) for k, v in res.items() if not k.startswith(_HIDDEN))
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in shown) + "}"


def check_fits(cfg: Config, cluster_yaml: str | None = None, nodes: list[dict] | None = None) -> None:
    """Raise UsageError if one trial of `cfg` can never be scheduled on the cluster."""
    if (cluster_yaml is None) == (nodes is None):
        raise ValueError("pass exactly one of cluster_yaml (a file) or nodes (ray.nodes())")
    if cluster_yaml is not None:
        shapes, global_max = shapes_from_file(cluster_yaml)
        source = cluster_yaml
    else:
        shapes, global_max = shapes_from_nodes(nodes or [])
        source = "the running Ray cluster"
    t = cfg.train
    driver, workers = trial_demand(cfg)
    fields = {"CPU": "train.cpus_per_worker", "GPU": "train.gpus_per_worker"}
    for name in workers[0]:
        if workers[0][name] > 0 and not any(s.resources.get(name, 0) > 0 for s in shapes):
            raise UsageError(
                f"{source}: no node type provides {name}, but each training worker asks for "
                f"{workers[0][name]:g} ({fields.get(name, name)}); use a cluster with {name} nodes "
                f"or set {fields.get(name, name)}=0"
            )
    usable = [s for s in shapes if s.count > 0]
    biggest = ", ".join(f"{s.name} {_fmt(s.resources)}" for s in usable) or "none"
    if not any(_fits(s.resources, workers[0]) for s in usable):
        what = "all workers together (placement_strategy=STRICT_PACK)" if t.placement_strategy == "STRICT_PACK" else "one training worker"
        raise UsageError(
            f"{source}: {what} needs {_fmt(workers[0])} (train.cpus_per_worker={t.cpus_per_worker:g}, "
            f"train.gpus_per_worker={t.gpus_per_worker:g}) but no node type holds that; node types: "
            f"{biggest}. Lower the per-worker resources or add a bigger node type"
        )
    if not any(_fits(s.resources, driver) for s in usable):
        raise UsageError(
            f"{source}: the trial driver needs {_fmt(driver)} (sweep.trial_cpus={cfg.sweep.trial_cpus:g}) "
            f"but no node type holds that; node types: {biggest}"
        )
    if trials_that_fit(cfg, shapes, global_max, limit=1) == 0:
        room = _workers_that_fit(cfg, shapes, global_max)
        grow = f"raise max_workers (maxReplicas) in {source}" if cluster_yaml else "add nodes to the cluster"
        raise UsageError(
            f"{source}: one trial needs train.workers={t.workers} x {_fmt(workers[0])} plus the trial driver "
            f"{_fmt(driver)} (placement_strategy={t.placement_strategy}), but the cluster at its largest holds "
            f"{room} such worker(s) and the driver at once; lower train.workers or {grow}"
        )


def check_bucket(url: str, s3: S3Config | None = None) -> None:
    """Raise UsageError if the bucket of an s3:// URL is missing or unreachable (others pass)."""
    if not url.startswith("s3://"):
        return
    from avdis.storage import filesystem

    bucket = url.removeprefix("s3://").split("/", 1)[0]
    fs, _ = filesystem(url, s3)
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise UsageError(
            f"{url}: bucket {bucket!r} does not exist; create it "
            f"(python infra/storage/create_bucket.py {bucket}) or fix the URL in the config"
        ) from None
    except PermissionError:
        raise UsageError(
            f"{url}: access to bucket {bucket!r} denied; check the node's IAM role / AWS credentials"
        ) from None
    except Exception as exc:  # endpoint down, DNS, TLS: say where we tried
        raise UsageError(
            f"{url}: cannot reach S3 for bucket {bucket!r} ({type(exc).__name__}: {exc}); check s3.endpoint_url / "
            "AWS_ENDPOINT_URL and the network"
        ) from None
