"""Training throughput: DDP vs DeepSpeed ZeRO-1/2/3 at equal batch, 1 vs 2 Ray Train workers.

    .venv/bin/python bench/train_throughput.py            # CPU: tiny and base presets (~8 min on 2 cores)
    .venv/bin/python bench/train_throughput.py --gpu      # where CUDA is available: large preset, bf16, MFU
    .venv/bin/python bench/train_throughput.py --gpu --dry-run   # the GPU runs' code on CPU, tiny: check before GPU time
    python3 bench/train_throughput.py --gpu --in-process --shards DIR   # one GPU, no Ray: PyTorch, NumPy,
        # pyarrow, fsspec, PyYAML, DeepSpeed, webdataset and pydantic are enough (no media decoders, no Ray)

Each configuration runs a real TorchTrainer (with --in-process: this process, world of one)
with the real engine, step code and shard stream (a generated corpus), warms up, then times `--steps` steps per worker: median
step time, samples/s per worker and in all, and the share of step time spent waiting
for the next batch. One thread per worker, so 1 -> 2 workers on 2 cores can reach 2x.
Targets (issue): ZeRO-2 within 10% of DDP on CPU; data wait < 5% of step time;
1 -> 2 workers >= 1.7x samples/s where cores allow; MFU >= 40% on an H100/H200-class GPU.
Writes bench/results/train_throughput.json (or train_throughput_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

STRATEGIES = {"ddp": {"strategy": "ddp", "zero_stage": 0}, "zero1": {"strategy": "deepspeed", "zero_stage": 1},
              "zero2": {"strategy": "deepspeed", "zero_stage": 2}, "zero3": {"strategy": "deepspeed", "zero_stage": 3}}
GPU_STRATEGIES = ("ddp", "zero2", "zero3")
# Dense bf16 peaks, vendor figures; the first name found in the device name wins (PCIe/NVL before SXM).
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200 NVL": 835.0, "H200": 989.0,
                    "A100": 312.0}


def measure_steps(config: dict[str, Any]) -> dict[str, Any]:
    """On this rank (torch.distributed already set up): warm up, then time steps."""
    import torch
    import torch.distributed as dist
    from torch.utils.flop_counter import FlopCounterMode

    from avdis.config import Config
    from avdis.data.stream import epoch_batches, open_dataset
    from avdis.model.disentangle import REGISTRY
    from avdis.model.multitask import build_model, count_parameters
    from avdis.train.engine import build_engine
    from avdis.train.step import Stepper

    torch.set_num_threads(config["threads"])
    cfg = Config.model_validate(config["config"])
    info = open_dataset(cfg.data, cfg.s3)
    torch.manual_seed(0)
    model = build_model(cfg.model, info.features, len(info.emotions), len(info.speakers))
    params = count_parameters(model)
    engine = build_engine(model, cfg.train, find_unused=False)
    stepper = Stepper(engine, REGISTRY["multitask"], cfg, len(info.speakers))
    rank, world = dist.get_rank(), dist.get_world_size()
    epoch, steps, waits, flops = 0, [], [], None
    batches = epoch_batches(info, cfg.data, cfg.s3, "train", rank=rank, world=world, epoch=0, seed=0,
                            batch_size=cfg.train.batch_size)
    while len(steps) < config["warmup"] + config["steps"]:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            epoch += 1
            batches = epoch_batches(info, cfg.data, cfg.s3, "train", rank=rank, world=world, epoch=epoch, seed=0,
                                    batch_size=cfg.train.batch_size)
            continue
        t1 = time.perf_counter()
        if flops is None and config["count_flops"]:
            with FlopCounterMode(display=False) as counter:
                stepper.train_step(batch, 0.0)
            flops = counter.get_total_flops()
        else:
            stepper.train_step(batch, 0.0)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        steps.append(t2 - t0)
        waits.append(t1 - t0)
    steps, waits = steps[config["warmup"]:], waits[config["warmup"]:]
    return {"step_s": statistics.median(steps), "wait_share": sum(waits) / sum(steps), "flops_per_step": flops,
            "params": params}


def measure(config: dict[str, Any]) -> None:
    """Ray Train worker: measure, then rank 0 reports everyone's figures."""
    import tempfile as tf

    import ray.train
    import torch.distributed as dist

    mine = measure_steps(config)
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    with tf.TemporaryDirectory() as d:
        Path(d, "r.json").write_text(json.dumps(everyone))
        ckpt = ray.train.Checkpoint.from_directory(d) if dist.get_rank() == 0 else None
        ray.train.report({"workers": json.dumps(everyone)}, checkpoint=ckpt)


def train_config(shards: str, preset: str, strategy: str, workers: int, batch: int, gpu: bool, on_gpu: bool):
    """`gpu`: the GPU setup (bf16, FLOP count); `on_gpu=False` runs that setup on CPU (the dry run)."""
    from avdis import config as C

    overrides = [f"data.shards={shards}", f"model.preset={preset}", f"train.batch_size={batch}",
                 f"train.workers={workers}", *(f"train.{k}={v}" for k, v in STRATEGIES[strategy].items())]
    if gpu:
        overrides += [f"train.gpus_per_worker={int(on_gpu)}", "train.precision=bf16"]
    return C.load(None, overrides)


def run_one(shards: str, preset: str, strategy: str, workers: int, batch: int, gpu: bool, on_gpu: bool,
            args) -> dict[str, Any]:
    """One configuration as a real TorchTrainer run (one Ray Train worker per CPU slot or GPU)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = train_config(shards, preset, strategy, workers, batch, gpu, on_gpu)
    t0 = time.perf_counter()
    result = TorchTrainer(
        measure,
        train_loop_config={"config": cfg.model_dump(mode="json"), "steps": args.steps, "warmup": args.warmup,
                           "threads": 4 if gpu else 1, "count_flops": gpu},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=on_gpu,
                                     resources_per_worker={"CPU": 1, **({"GPU": 1} if on_gpu else {})}),
        run_config=RunConfig(name=f"{preset}-{strategy}-{workers}", storage_path=tempfile.mkdtemp()),
    ).fit()
    return _row(preset, strategy, workers, batch, json.loads(result.metrics["workers"]), time.perf_counter() - t0, gpu)


def run_in_process(shards: str, preset: str, strategy: str, batch: int, on_gpu: bool, args) -> dict[str, Any]:
    """The GPU setup on one device in this process, no Ray: for a GPU machine without Ray installed.

    The process group (world of one) is set up by the first call and kept for the rest.
    """
    import os
    import socket

    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
                          LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
        dist.init_process_group("nccl" if on_gpu else "gloo")
    cfg = train_config(shards, preset, strategy, 1, batch, True, on_gpu)
    t0 = time.perf_counter()
    mine = measure_steps({"config": cfg.model_dump(mode="json"), "steps": args.steps, "warmup": args.warmup,
                          "threads": 4, "count_flops": True})
    return _row(preset, strategy, 1, batch, [mine], time.perf_counter() - t0, True)


def _row(preset: str, strategy: str, workers: int, batch: int, per: list[dict[str, Any]], wall_s: float,
         gpu: bool) -> dict[str, Any]:
    step = max(w["step_s"] for w in per)  # the slowest rank sets the pace
    row = {"preset": preset, "strategy": strategy, "workers": workers, "batch_per_worker": batch,
           "params": per[0]["params"], "step_s": step, "samples_per_s_per_worker": batch / step,
           "samples_per_s": batch * workers / step, "data_wait_share": max(w["wait_share"] for w in per),
           "wall_s": wall_s}
    if gpu:
        achieved = per[0]["flops_per_step"] / step / 1e12
        row.update(tflops_per_gpu=achieved, mfu=mfu(achieved, machine.describe()["gpus"]))
    print(row, flush=True)
    return row


def make_shards() -> str:
    """A generated 320-clip corpus, preprocessed into shards in a temporary folder."""
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards

    work = Path(tempfile.mkdtemp(prefix="avdis-bench-train-"))
    synthetic_shards(SynthConfig(speakers=8, clips_per_speaker=40, seed=2), work / "corpus", work / "shards")
    return str(work / "shards")


@contextmanager
def local_ray(num_cpus: int | None) -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def mfu(tflops: float, gpus: list[str]) -> float | None:
    """Achieved over the vendor's dense bf16 peak; None for a device without a known peak (or none)."""
    name = next((k for k in PEAK_BF16_TFLOPS if gpus and k in gpus[0]), None)
    return tflops / PEAK_BF16_TFLOPS[name] if name else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="large preset in bf16 on every GPU")
    parser.add_argument("--in-process", action="store_true",
                        help="with --gpu: one GPU, in this process, without Ray (for a machine without Ray)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --gpu: the same runs on CPU with the tiny preset and 2 steps; writes nothing")
    parser.add_argument("--shards", help="existing shards to read (default: generate a 320-clip corpus here, "
                                         "which needs the media decoders)")
    parser.add_argument("--batch", type=int, default=64, help="--gpu: samples per GPU per step")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if (args.dry_run or args.in_process) and not args.gpu:
        parser.error("--dry-run and --in-process apply to the --gpu runs; add --gpu")
    if args.dry_run:
        args.steps, args.warmup, args.batch = 2, 1, 4
    import torch

    shard_dir = args.shards or make_shards()
    if args.gpu:
        gpus = 1 if args.dry_run else torch.cuda.device_count()
        if not gpus:
            sys.exit("--gpu: torch sees no CUDA device here (use --dry-run to rehearse on CPU)")
        preset, on_gpu = ("tiny", False) if args.dry_run else ("large", True)
        if args.in_process:
            import torch.distributed as dist

            rows = [run_in_process(shard_dir, preset, s, args.batch, on_gpu, args) for s in GPU_STRATEGIES]
            dist.destroy_process_group()
        else:
            with local_ray(num_cpus=None if on_gpu else 2):
                rows = [run_one(shard_dir, preset, s, gpus, args.batch, True, on_gpu, args) for s in GPU_STRATEGIES]
    else:
        with local_ray(num_cpus=2):
            rows = [run_one(shard_dir, preset, strategy, workers, batch, False, False, args)
                    for preset, batch in (("tiny", 32), ("base", 16)) for strategy in STRATEGIES for workers in (1, 2)]
    if args.dry_run:
        print(f"dry run: {len(rows)} GPU-setup runs completed on CPU; nothing written")
        return
    summary = {}
    for preset in {r["preset"] for r in rows}:
        by = {(r["strategy"], r["workers"]): r for r in rows if r["preset"] == preset}
        most = max(w for _, w in by)  # ZeRO-2 against DDP at the most workers run (2 on CPU)
        summary[preset] = {
            "max_data_wait_share": max(r["data_wait_share"] for r in by.values()),
            "scaling_1_to_2_workers": {s: by[(s, 2)]["samples_per_s"] / by[(s, 1)]["samples_per_s"]
                                       for s in STRATEGIES if (s, 1) in by and (s, 2) in by},
        }
        if ("ddp", most) in by and ("zero2", most) in by:
            summary[preset]["zero2_vs_ddp_samples_per_s"] = (
                by[("zero2", most)]["samples_per_s"] / by[("ddp", most)]["samples_per_s"])
        if any(r.get("mfu") is not None for r in by.values()):
            summary[preset]["best_mfu"] = max(r["mfu"] for r in by.values() if r.get("mfu") is not None)
    name = "train_throughput_gpu" if args.gpu else "train_throughput"
    settings = {"steps": args.steps, "warmup": args.warmup,
                **({"batch_per_gpu": args.batch, "ray": not args.in_process} if args.gpu else {})}
    machine.write(name, {"settings": settings, "runs": rows, "summary": summary})


if __name__ == "__main__":
    main()
