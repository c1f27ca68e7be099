"""Over several ranks a step's losses are means over every rank's valid clips, as one process over their union.

Ranks are dealt whole shards and pad to a common number of steps, so their batches hold different numbers of clips.
Run as a script (`python tests/test_rank_weighting.py RANK STORE`) it is one of two gloo ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from avdis.config import Config, FeatureConfig, MethodConfig, ModelConfig, TrainConfig
from avdis.model.disentangle import REGISTRY
from avdis.model.multitask import build_model
from avdis.train.engine import build_engine
from avdis.train.step import Stepper, seed_epoch

ROOT = Path(__file__).resolve().parents[1]
FEAT = FeatureConfig(n_mels=16, window_s=1.0, fps=4, face_size=16)
ROWS = 8
VALID = [[8, 8, 5], [8, 2, 0]]  # valid clips of each step on rank 0 and rank 1: a last partial batch, then padding only
ENGINES = {"ddp": {"strategy": "ddp"}, "zero2": {"strategy": "deepspeed", "zero_stage": 2}}


def batch(seed: int, n_valid: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(ROWS, FEAT.audio_frames, FEAT.n_mels, generator=g) - 7,
            "audio_mask": torch.ones(ROWS, FEAT.audio_frames, dtype=torch.bool),
            "video": torch.randint(0, 255, (ROWS, FEAT.video_frames, 16, 16, 3), generator=g, dtype=torch.uint8),
            "video_mask": torch.ones(ROWS, FEAT.video_frames, dtype=torch.bool),
            "emotion": torch.randint(0, 4, (ROWS,), generator=g), "speaker": torch.randint(0, 3, (ROWS,), generator=g),
            "valid": torch.arange(ROWS) < n_valid, "scheme_split": torch.zeros(ROWS, dtype=torch.long),
            "within_split": torch.zeros(ROWS, dtype=torch.long), "clip_id": [str(i) for i in range(ROWS)]}


def rank_batches(rank: int) -> list[dict]:
    return [batch(10 * rank + i, n) for i, n in enumerate(VALID[rank])]


def trained(batches: list[dict], **train: object) -> list[float]:
    """Encoder and adversary parameters after `adversarial` trained on `batches` (dropout off: same on every rank)."""
    cfg = Config(model=ModelConfig(emb_dim=8, dropout=0.0), method=MethodConfig(name="adversarial", weight=1.0),
                 train=TrainConfig(lr=0.01, epochs=1, **train))
    torch.manual_seed(0)
    stepper = Stepper(build_engine(build_model(cfg.model, FEAT, 4, 3), cfg.train, False), REGISTRY["adversarial"],
                      cfg, 3, torch.full((4, 3), 1 / 3))
    for i, b in enumerate(batches):
        stepper.train_step(b, i / 10)
    params = [*stepper.engine.module.parameters(), *stepper.adversary.parameters()]
    return torch.cat([p.detach().flatten() for p in params]).tolist()


def test_a_step_over_two_ranks_with_uneven_clips_is_the_step_over_their_union(tmp_path):
    """Each rank's loss was its own clips' mean and the engines average gradients over ranks: a rank's 2 clips
    weighed as much as the other's 8, and a rank with only padding halved the step (the adversary's hand-averaged
    steps alike). Parameters after 3 Adam steps moved up to 0.03 (3 x lr) away from one process over the same
    clips; float noise through Adam moves them about 3e-4."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ranks = [subprocess.Popen([sys.executable, __file__, str(r), f"file://{tmp_path}/store"], env=env,
                              stdout=subprocess.PIPE, text=True) for r in range(2)]
    union = [{k: (a[k] + b[k] if k == "clip_id" else torch.cat([a[k], b[k]])) for k in a}
             for a, b in zip(rank_batches(0), rank_batches(1))]
    expected = np.array(trained(union))
    outs = [p.communicate(timeout=600)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0]
    got = json.loads(outs[0])
    assert set(got) == set(ENGINES)
    for name, params in got.items():
        diff = np.abs(np.array(params) - expected)
        assert diff.max() < 3e-3 and (diff > 1e-4).mean() < 0.01, (name, diff.max(), (diff > 1e-4).mean())


def test_a_step_of_padding_only_moves_no_weight():
    """Once skipped clips leave the last steps of an epoch with padding only, those steps' losses are 0 but AdamW
    still stepped: its momentum and weight decay moved the encoder and the adversary with no clip behind them."""
    one = np.array(trained([batch(0, 8)]))
    padded = np.array(trained([batch(0, 8), batch(1, 0), batch(2, 0)]))
    assert np.abs(padded - one).max() == 0.0
    accumulated = np.array(trained([batch(0, 8), batch(1, 0), batch(2, 0), batch(3, 0)], grad_accum=2))
    assert np.abs(accumulated - np.array(trained([batch(0, 8), batch(1, 0)], grad_accum=2))).max() == 0.0


def test_each_rank_draws_its_own_dropout_masks_and_rank_0_those_of_one_process():
    """Every rank seeded its epoch with the same seed, so all ranks dropped the same units of their batches and their
    gradients were less independent than data parallelism assumes. Rank 0 keeps the seed one process always had
    (one-worker runs keep their recorded numbers), and a rank's epoch draws the same masks again on resume."""
    cfg = Config(model=ModelConfig(emb_dim=8, dropout=0.5))
    torch.manual_seed(0)
    model = build_model(cfg.model, FEAT, 4, 3).train()
    b = batch(0, ROWS)

    def z_after(seed_rng) -> torch.Tensor:
        seed_rng()
        with torch.no_grad():
            return model(b)["z_emo"]

    ranks = [z_after(lambda r=r: seed_epoch(7, 2, r)) for r in range(3)]
    assert torch.equal(ranks[0], z_after(lambda: torch.manual_seed(7 * 1000 + 2)))  # the seed one process had
    assert not torch.equal(ranks[0], ranks[1]) and not torch.equal(ranks[1], ranks[2])
    assert torch.equal(ranks[1], z_after(lambda: seed_epoch(7, 2, 1)))  # the same masks again on resume
    assert not torch.equal(ranks[1], z_after(lambda: seed_epoch(7, 3, 1)))  # and new ones each epoch


if __name__ == "__main__":
    import torch.distributed as dist

    rank = int(sys.argv[1])
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=sys.argv[2], rank=rank, world_size=2)
    result = {name: trained(rank_batches(rank), **train) for name, train in ENGINES.items()}
    if rank == 0:
        print(json.dumps(result))
    dist.destroy_process_group()
