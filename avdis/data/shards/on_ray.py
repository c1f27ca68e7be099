"""The shard tasks as Ray tasks (`run_on_ray`, `build_shards`' `run_tasks`): a node that does not see the corpus
stops the build, and a task whose process dies has its clips decoded one per task, those that kill it too rejects."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Callable, Iterable

from avdis.config import DataConfig, FeatureConfig, S3Config
from avdis.data.corpora import ClipRecord, Reject
from avdis.data.shards.encode import encode_any, write_shard
from avdis.data.shards.layout import PreprocessError, ShardTask
from avdis.errors import counted


def write_shard_seen(task: ShardTask, out: str, feat: FeatureConfig, s3: S3Config, src: str) -> dict[str, Any]:
    """`write_shard` in a Ray task, which may run on another node than the driver whose scan listed its clips. A node
    that does not see the corpus stops the build: its clips would otherwise all become rejects ("cannot open"), and
    the manifest hold only the clips of tasks that ran where the corpus is (none where the head has no CPUs). Each
    file a clip is made of is looked for, not only the one it is listed by: a CREMA-D clip whose AudioWAV/ file the
    node did not see (a corpus split over mounts) was made of its video's sound, its WAV a reject read as damaged."""
    missing = [p for r in task.records for p in dict.fromkeys((r.source_path, r.audio_path, r.video_path))
               if p and not os.path.exists(p)]
    if missing:
        import ray

        more = f" and {counted(len(missing) - 1, 'more file')}" if len(missing) > 1 else ""
        raise PreprocessError(
            f"{missing[0]}{more}: listed by the driver's "
            f"scan of data.src={src}, but not found on node {ray.util.get_node_ip_address()}, where a preprocessing "
            "task ran. Every node that runs these tasks must see data.src at the same path (a shared filesystem), or "
            "preprocess on the machine that holds the corpus (`--no-ray`, or no Ray address: a local Ray) with --out "
            "s3://... (the corpus may also have changed during preprocessing: then run it again)")
    return write_shard(task, out, feat, s3)


def decode_alone(rec: ClipRecord, feat: FeatureConfig) -> None:
    """Decode one clip and keep nothing: run as a Ray task of its own, whether its decoding ends the process."""
    encode_any(rec, feat)


def _files_of(rec: ClipRecord) -> list[str]:
    """Every file of a clip: its own, its separate audio file, its fallback pairs, its spare files, its copies."""
    return [p for p in dict.fromkeys((rec.source_path, rec.audio_path, rec.video_path,
                                      *(p for pair in rec.fallback for p in pair), *rec.spare,
                                      *(p for pair in rec.copies for p in pair))) if p]


def _own_error(get: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`get()` of a shard task, raising a task's own PreprocessError without Ray's traceback around it."""
    import ray

    try:
        return get()
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, PreprocessError):
            raise exc.cause from None
        raise


def run_on_ray(data: DataConfig, s3: S3Config, cpus_per_task: float = 1.0):
    """A `run_tasks` for `build_shards` that runs each shard as a Ray task, with a progress bar.

    A shard task whose process dies on each of its tries (a decoder that crashes on one file, a clip that takes
    more memory than the node has) would end the whole run naming no file: its clips are then decoded one per task,
    and those whose process dies too become rejects, named, while the shard is made of the others."""
    import ray
    from ray.exceptions import OutOfMemoryError, WorkerCrashedError
    from tqdm import tqdm

    died = (WorkerCrashedError, OutOfMemoryError)
    remote = ray.remote(num_cpus=cpus_per_task, max_retries=2)(write_shard_seen)
    alone = ray.remote(num_cpus=cpus_per_task, max_retries=0)(decode_alone)

    def without_crashes(task: ShardTask, exc: Exception) -> dict[str, Any]:
        probes = [alone.remote(rec, data.features) for rec in task.records]
        crashed: list[tuple[ClipRecord, str]] = []
        for rec, probe in zip(task.records, probes):
            try:
                ray.get(probe)
            except died as probe_exc:
                crashed.append((rec, type(probe_exc).__name__))
        gone = {id(rec) for rec, _ in crashed}
        kept = ShardTask(task.index, [rec for rec in task.records if id(rec) not in gone])
        result = _own_error(lambda: ray.get(remote.remote(kept, data.shards, data.features, s3, data.src))) \
            if kept.records else {"rows": [], "rejects": [], "shard": None}
        result["rejects"] = result["rejects"] + [
            asdict(Reject(path, f"the process decoding clip {rec.clip_id} died ({why}; its shard's task: "
                                f"{type(exc).__name__}): a decoder crashed on it or it needs more memory than the "
                                "node has; re-encode or leave out its files"))
            for rec, why in crashed for path in _files_of(rec)]
        return {**result, "clips": len(task.records)}

    def run(tasks: list[ShardTask]) -> Iterable[dict[str, Any]]:
        pending = {remote.remote(t, data.shards, data.features, s3, data.src): t for t in tasks}
        total = sum(len(t.records) for t in tasks)
        done = lost = 0
        with tqdm(total=total, unit="clip", desc="preprocess") as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                try:
                    result = _own_error(lambda: ray.get(ready[0]))
                except died as exc:
                    result = without_crashes(task, exc)
                done += len(result["rows"])
                lost += result["clips"] - len(result["rows"])  # clips, not files: a clip's surplus files are no loss
                bar.update(result["clips"])
                bar.set_postfix(done=done, lost=lost)
                yield result

    return run
