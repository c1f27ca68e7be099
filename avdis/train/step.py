"""One training step and one embedding pass, shared by every engine and launcher.

The adversary of `adversarial`/`confusion` lives outside the engine (ZeRO never shards
it): it has its own AdamW, takes `method.adversary.steps` steps on detached z_emo before
each encoder step, and its gradients are averaged across ranks by hand. Under
`train.grad_accum` an encoder step spans several micro-batches: the adversary takes its
steps once per encoder step, on the z_emo of all of them, before the last one's loss (on
every micro-batch it took `steps` steps of its own, so grad_accum 4 made it 4 times as
strong). In the encoder step it is called with detached parameters, so only the encoder
learns from that term.
Over several ranks every loss (the encoder's and the adversary's) is a mean over the valid clips of all ranks'
batches, not a mean of each rank's own mean: the engines average gradients over ranks, so each rank's loss is
scaled by its share of the step's valid clips (`rank_share`). Ranks are dealt whole shards and pad to a common
number of steps, so their batches hold different numbers of clips (a last partial batch, a padding-only batch,
skipped clips); averaged unweighted, a clip alone on its rank weighed as much as a full batch on another, and a
padding-only rank halved the step's gradient. Under `train.grad_accum` the encoder's update is likewise the mean over
its window's clips (the loop tells each micro-batch its window's clips): the engines average the micro-batches, and
a last partial batch of 2 clips weighed as much as the full one it shared an update with. An update whose window
holds no valid clip on any rank (the last steps of an epoch once skipped clips left only padding there) moves no
weight: Adam's momentum and weight decay would move them with no data behind them. The adversary's steps are
skipped; the encoder's runs at lr 0, as DeepSpeed's window must still close, so Adam's moment estimates still decay
and its step count still grows there.
With `method.conditional` it reads the emotion label too and the confusion target is
p(speaker | emotion) of the train split (`train_prior`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import math

import numpy as np
import torch
import torch.distributed as dist
from torch.func import functional_call

from avdis.config import Config
from avdis.data.stream import DatasetInfo
from avdis.model.disentangle import (Adversary, Critic, Method, RunningCovariance, masked_ce, method_weight,
                                     speaker_given_emotion, uniform_over_support)
from avdis.train.engine import Engine

TENSOR_KEYS = ("audio", "audio_mask", "video", "video_mask", "emotion", "speaker", "scheme_split", "within_split", "valid")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if k in TENSOR_KEYS else v) for k, v in batch.items()}


def lr_at(cfg: Config, epoch_progress: float, epochs: int | None = None) -> float:
    """Learning rate at a point of training (epochs as a float), on a schedule `epochs` long (default: the config's)."""
    if cfg.train.lr_schedule == "constant":
        return cfg.train.lr
    frac = min(1.0, epoch_progress / (epochs or cfg.train.epochs))
    return cfg.train.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed this rank's random stream (dropout masks) for an epoch: a resumed run draws what the uninterrupted one
    would. Rank 0 keeps the seed one process has always had (the numbers of one-worker runs stay as recorded); any
    other rank draws from its own seed: with one seed for all, every rank dropped the same units of its batch, so
    their gradients were less independent than data parallelism assumes. torch's CPU generator keeps only a seed's low
    32 bits, so the rank is mixed in by `SeedSequence`, not added above them."""
    if rank == 0:
        torch.manual_seed(seed * 1000 + epoch)
    else:
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))


def rank_share(valid: torch.Tensor, window: int | None = None, accum: int = 1) -> tuple[float, float]:
    """This batch's valid clips times the world size (and `accum`) over all ranks' valid clips, and that total: a
    rank's mean loss scaled by the share and then averaged over ranks (and over the `accum` micro-batches of an
    accumulation window), as DDP, DeepSpeed and `_average_grads` do with gradients, is the mean over every rank's
    valid clips (of the window). `window`: this rank's valid clips in the micro-batches of this batch's accumulation
    window (None: the batch is its own window). A total of 0 is padding only."""
    mine = float(valid.sum())
    world = dist.get_world_size() if dist.is_initialized() else 1
    total = torch.tensor(mine if window is None else float(window), dtype=torch.float64, device=valid.device)
    if world > 1:
        dist.all_reduce(total)
    return (mine * world * accum / float(total) if total else 0.0), float(total)


def _average_grads(module: torch.nn.Module) -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()


def train_prior(info: DatasetInfo) -> torch.Tensor:
    """p(speaker | emotion) [emotions, speakers] over the train split's clips."""
    train = [(spk, emo) for spk, emo, scheme_split, _ in info.labels if scheme_split == "train"]
    speaker = torch.tensor([spk for spk, _ in train], dtype=torch.long)
    emotion = torch.tensor([emo for _, emo in train], dtype=torch.long)
    return speaker_given_emotion(speaker, emotion, len(info.speakers), len(info.emotions))


class Stepper:
    def __init__(self, engine: Engine, method: Method, cfg: Config, n_speakers: int,
                 prior: torch.Tensor | None = None):
        """`prior`: p(speaker | emotion) from `train_prior`; the adversary methods need it (unconditional
        confusion for the speakers the train split holds)."""
        self.engine, self.method, self.cfg = engine, method, cfg
        self.adversary: Adversary | None = None
        self.adv_opt: torch.optim.Optimizer | None = None
        self.target: torch.Tensor | None = None
        if method.adversary:
            if prior is None:
                raise ValueError(f"{method.name} needs p(speaker | emotion): pass prior=train_prior(info)")
            conditional = cfg.method.conditional
            self.target = (prior if conditional else uniform_over_support(prior)).to(engine.device)
            torch.manual_seed(cfg.train.seed + 17)  # same init on every rank
            n_emotions = len(prior) if conditional else 0
            self.adversary = Adversary(cfg.model.emb_dim, cfg.method.adversary.hidden, n_speakers,
                                       n_emotions).to(engine.device)
            self.adv_opt = torch.optim.AdamW(self.adversary.parameters(), lr=cfg.method.adversary.lr)
        # orthogonal's covariance of [z_emo, z_id] over batches, saved with the adversary's state
        self.running = RunningCovariance(2 * cfg.model.emb_dim).to(engine.device) if method.running else None
        self.window: list[tuple[torch.Tensor, ...]] = []  # this encoder step's (z_emo, emotion, speaker, valid)
        self.has_clips = False  # whether this encoder step's micro-batches so far hold a valid clip on any rank

    def _train_adversary(self) -> float:
        z, emotion, speaker, valid = (torch.cat(part) for part in zip(*self.window))
        self.window.clear()
        share, clips = rank_share(valid)
        if not clips:  # padding only, on every rank
            return 0.0
        loss = torch.zeros(())
        for _ in range(self.cfg.method.adversary.steps):
            self.adv_opt.zero_grad(set_to_none=True)
            loss = masked_ce(self.adversary(z, emotion), speaker, valid)
            (loss * share).backward()
            _average_grads(self.adversary)
            self.adv_opt.step()
        return float(loss.detach())

    def train_step(self, batch: dict[str, Any], epoch_progress: float, window: int | None = None) -> dict[str, float]:
        """One micro-batch; `window`: this rank's valid clips in the micro-batches of its accumulation window (the
        training loop reads a window's batches first), so that the window's update is the mean over its clips (None:
        each micro-batch's mean weighs alike, whatever its clips)."""
        batch = to_device(batch, self.engine.device)
        out = self.engine.forward(batch)
        logs: dict[str, float] = {}
        critic = Critic(None, running=self.running)
        if self.adversary is not None:
            self.window.append((out["z_emo"].detach().float(), batch["emotion"], batch["speaker"], batch["valid"]))
            if self.engine.at_boundary():
                logs["adversary"] = self._train_adversary()
            params = {n: p.detach() for n, p in self.adversary.named_parameters()}
            frozen = lambda z, emotion: functional_call(self.adversary, params, (z.float(), emotion))  # noqa: E731
            critic = Critic(frozen, self.target, self.running)
        weight = method_weight(self.cfg.method, epoch_progress)
        terms = self.method.encoder_losses(out, batch, self.cfg.method, weight, critic)
        loss = sum(terms.values())
        accum = self.cfg.train.grad_accum if window is not None else 1
        share, clips = rank_share(batch["valid"], window, accum)
        self.has_clips = self.has_clips or clips > 0
        self.engine.backward(loss * share)
        boundary = self.engine.at_boundary()
        self.engine.set_lr(lr_at(self.cfg, epoch_progress) if self.has_clips or not boundary else 0.0)
        self.engine.step()
        if boundary:
            self.has_clips = False
        logs.update({k: float(v.detach()) for k, v in terms.items()})
        logs["loss"] = float(loss.detach())
        return logs

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.adversary is not None:
            state.update(adversary=self.adversary.state_dict(), optimizer=self.adv_opt.state_dict())
        if self.running is not None:
            state["running"] = self.running.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.adversary is not None and state:
            self.adversary.load_state_dict(state["adversary"])
            self.adv_opt.load_state_dict(state["optimizer"])
        if self.running is not None:
            self.running.load_state_dict(state["running"])

    def load(self, path: Path) -> None:
        """`state_dict` as saved at `path`, onto this worker's device: rank 0 saved it from its own GPU, which is
        cuda:0 for every rank (or no device at all on a CPU node) unless mapped."""
        self.load_state_dict(torch.load(path, map_location=self.engine.device, weights_only=False))


@torch.no_grad()
def embed(engine: Engine, batches: Iterable[dict[str, Any]]) -> dict[str, np.ndarray]:
    """z_emo, z_id, logits and labels of every valid row, gathered from all ranks (rank order)."""
    engine.train(False)
    keep: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        batch = to_device(batch, engine.device)
        out = engine.forward(batch)
        valid = batch["valid"]
        rows = {**{k: out[k].float()[valid] for k in ("z_emo", "z_id", "emo_logits", "id_logits")},
                **{k: batch[k][valid] for k in ("emotion", "speaker", "scheme_split", "within_split")}}
        for k, v in rows.items():
            keep.setdefault(k, []).append(v.cpu().numpy())
        for key in ("clip_id", "shard"):
            keep.setdefault(key, []).append(np.array([c for c, ok in zip(batch[key], valid.tolist()) if ok], dtype=object))
    engine.train(True)
    local = {k: np.concatenate(v) for k, v in keep.items()}
    if dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[dict[str, np.ndarray]] = [None] * dist.get_world_size()  # type: ignore[list-item]
        dist.all_gather_object(parts, local)
        local = {k: np.concatenate([p[k] for p in parts if k in p]) for k in parts[0]}
    order = np.argsort(local["clip_id"], kind="stable")  # deterministic whatever the shard dealing
    return {k: v[order] for k, v in local.items()}
