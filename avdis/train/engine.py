"""Training engines: one interface over a plain process, DDP and DeepSpeed ZeRO.

The step code (`avdis.train.step`) calls `engine.model(batch)`, `engine.backward(loss)`
and `engine.step()` and never asks which engine it has. Each engine owns gradient
accumulation and clipping; `save`/`load` are collective where the engine needs it
(every rank must call them). The DeepSpeed config is built here from the typed config;
on CPU DeepSpeed runs on its CPU accelerator over the gloo group Ray Train created, or,
in a one-worker sweep trial, over the one-process group `solo_group` makes.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from avdis.config import TrainConfig
from avdis.runtime import environment
from avdis.errors import UsageError

ENGINE_DIR = "engine"


def use_cuda(cfg: TrainConfig) -> bool:
    """Whether this worker trains on its GPU; one that asked for a GPU torch cannot see is refused, not run on CPU."""
    if cfg.gpus_per_worker <= 0:
        return False
    if not torch.cuda.is_available():
        raise UsageError(f"train.gpus_per_worker={cfg.gpus_per_worker:g} but torch sees no CUDA device here (a CPU "
                         "build of torch, or no GPU on this node); set train.gpus_per_worker=0 to train on CPU")
    return True


def compute_dtype(cfg: TrainConfig) -> torch.dtype:
    return torch.bfloat16 if cfg.bf16 else torch.float32


def device_for(cfg: TrainConfig) -> torch.device:
    if use_cuda(cfg):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class Engine:
    """Plain single process: AdamW, accumulation, clipping."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, find_unused: bool = False):
        self.cfg = cfg
        self.device = device_for(cfg)
        self.dtype = compute_dtype(cfg)
        self.module = model.to(self.device)
        self.model: nn.Module = self._wrap(self.module, find_unused)
        self.optimizer = _optimizer(self.module, cfg)
        self._micro = 0

    def _wrap(self, model: nn.Module, find_unused: bool) -> nn.Module:
        return model

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            return self.model(batch)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.grad_accum).backward()

    def at_boundary(self) -> bool:
        """Whether the coming `step` ends an accumulation window (applies the update)."""
        return (self._micro + 1) % self.cfg.grad_accum == 0

    def step(self) -> bool:
        """Apply the update at an accumulation boundary; True when it did."""
        self._micro += 1
        if self._micro % self.cfg.grad_accum:
            return False
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def save(self, directory: Path) -> None:
        if _rank() == 0:
            (directory / ENGINE_DIR).mkdir(parents=True, exist_ok=True)
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "micro": self._micro}, directory / ENGINE_DIR / "state.pt")

    def load(self, directory: Path) -> None:
        state = torch.load(directory / ENGINE_DIR / "state.pt", map_location=self.device, weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._micro = state["micro"]


class DDPEngine(Engine):
    """torch DistributedDataParallel; gradients all-reduced in backward."""

    def _wrap(self, model: nn.Module, find_unused: bool) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)

    def backward(self, loss: torch.Tensor) -> None:
        if self.at_boundary():
            super().backward(loss)
        else:
            with self.model.no_sync():
                super().backward(loss)


def deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    """The DeepSpeed JSON config, derived from the typed config (never hand-edited)."""
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_cuda(cfg)}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": use_cuda(cfg)}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.bf16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # keep torch AdamW with CPU offload (no JIT build)
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if cfg.bf16 and cfg.grad_accum > 1 and cfg.zero_stage >= 1:
        # DeepSpeed otherwise sums the micro-batches' gradients in bf16, rounding every partial sum.
        # Stages 2 and 3 reduce each micro-batch's gradient and add it to fp32 buffers; stage 1 sums in
        # fp32 (its bf16 optimizer wrapper, or param.grad_accum with offload) and reduces once at the
        # boundary, in the communication dtype: bf16 by default, which would round the fp32 sum again.
        # Stage 0 has no fp32 accumulation with bf16 weights (DeepSpeed raises NotImplementedError).
        # The fp32 sums cost 4 bytes a parameter (stage 1: the whole model on each rank; 2 and 3: the
        # rank's partition), which is why a run with nothing to accumulate (grad_accum 1) goes without.
        config["data_types"] = {"grad_accum_dtype": "fp32"}
        if cfg.zero_stage == 1:
            config["communication_data_type"] = "fp32"
    return config


def _prepare_deepspeed_env(cfg: TrainConfig) -> None:
    """CPU: DeepSpeed's CPU accelerator, and skip JIT-building the shared-memory comm op."""
    if not use_cuda(cfg):
        os.environ["DS_ACCELERATOR"] = "cpu"
        import deepspeed.comm.torch  # noqa: F401

        # The shm op only speeds up intra-node CPU all-reduce; building it costs ~25 s of g++.
        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


class DeepSpeedEngine(Engine):
    """DeepSpeed ZeRO 0-3; the engine does accumulation, clipping and (b)f16 itself."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, find_unused: bool = False):
        _prepare_deepspeed_env(cfg)
        import deepspeed

        self.cfg = cfg
        self.device = device_for(cfg)
        self.dtype = compute_dtype(cfg)
        if not dist.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if use_cuda(cfg) else "gloo")
        self.module = model.to(self.device)
        self.model, self.optimizer, _, _ = deepspeed.initialize(
            model=self.module, optimizer=_optimizer(self.module, cfg), config=deepspeed_config(cfg),
        )
        self._micro = 0

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def backward(self, loss: torch.Tensor) -> None:
        self.model.backward(loss)

    def step(self) -> bool:
        boundary = self.model.is_gradient_accumulation_boundary()
        self.model.step()
        self._micro += 1
        return boundary

    def save(self, directory: Path) -> None:
        self.model.save_checkpoint(str(directory / ENGINE_DIR), tag="ckpt", client_state={"micro": self._micro})

    def load(self, directory: Path) -> None:
        _, client = self.model.load_checkpoint(str(directory / ENGINE_DIR), tag="ckpt")
        if client is None:
            raise RuntimeError(f"{directory / ENGINE_DIR}: DeepSpeed checkpoint could not be loaded")
        self._micro = client.get("micro", 0)


SOLO_ENV = {"LOCAL_RANK": "0"}  # what DeepSpeed's engine reads beside the group itself


@contextmanager
def solo_group(cfg: TrainConfig) -> Iterator[None]:
    """This process alone as rank 0 of 1 while the block runs, for DDP and DeepSpeed without a worker group.

    The store is in memory: no port for two trials on one node to collide on. The group and the
    environment are restored after, so a process that trains again (a reused Tune actor) starts clean.
    """
    if cfg.strategy == "single":
        yield
        return
    with environment(SOLO_ENV):
        dist.init_process_group("nccl" if use_cuda(cfg) else "gloo", store=dist.HashStore(), rank=0, world_size=1)
        try:
            yield
        finally:
            _destroy_group()


def _destroy_group() -> None:
    """End the default group; through DeepSpeed when it holds the group, so it lets go of its copies too."""
    ds_comm = sys.modules.get("deepspeed.comm")
    if ds_comm is not None and ds_comm.is_initialized():
        ds_comm.destroy_process_group()
    else:
        dist.destroy_process_group()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


ENGINES: dict[str, type[Engine]] = {"single": Engine, "ddp": DDPEngine, "deepspeed": DeepSpeedEngine}  # keyed by config.STRATEGIES


def build_engine(model: nn.Module, cfg: TrainConfig, find_unused: bool) -> Engine:
    return ENGINES[cfg.strategy](model, cfg, find_unused)
