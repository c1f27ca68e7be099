"""DeepSpeed with bf16 weights and gradient accumulation: the micro-batches' gradients are summed in fp32.

By default DeepSpeed keeps the running sum in bf16, rounding every partial sum (and at ZeRO-1 it rounds the
fp32 sum again when it reduces it in bf16); `deepspeed_config` asks for fp32 accumulation at stages 1-3.
A small model on CPU, a few seconds per stage.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avdis.config import TrainConfig
from avdis.train import engine

ACCUM = 4


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(32, 64)
        self.b = nn.Linear(64, 8)

    def forward(self, batch: dict) -> dict:
        x = batch["x"].to(self.a.weight.dtype)
        return {"loss": (self.b(torch.tanh(self.a(x))).float() ** 2).mean()}


def micro_batches(n: int = ACCUM, seed: int = 1) -> list[dict]:
    """One large micro-batch then small ones: a bf16 running sum drops most of the small ones' digits."""
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(8, 32, generator=g) * (3.0 if i == 0 else 3.0 / 64)} for i in range(n)]


def fp32_sum_of_bf16_gradients() -> dict[str, torch.Tensor]:
    """What fp32 accumulation gives exactly: each micro-batch's gradient of the bf16 model (scaled by
    1/accum as DeepSpeed scales the loss), added up in fp32."""
    model = Tiny().to(torch.bfloat16)
    total = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in model.named_parameters()}
    for batch in micro_batches():
        model.zero_grad()
        (model(batch)["loss"] / ACCUM).backward()
        for n, p in model.named_parameters():
            total[n] += p.grad.float()
    return total


def train_cfg(stage: int, **kw) -> TrainConfig:
    return TrainConfig(**{"strategy": "deepspeed", "zero_stage": stage, "precision": "bf16", "grad_accum": ACCUM,
                          "batch_size": 8, "grad_clip": 0.0, "weight_decay": 0.0, **kw})


def master_weights(eng: engine.DeepSpeedEngine) -> dict[str, torch.Tensor]:
    from deepspeed.utils import safe_get_full_fp32_param

    return {n: safe_get_full_fp32_param(p).detach().clone() for n, p in eng.module.named_parameters()}


def run(eng: engine.DeepSpeedEngine, batches: list[dict]) -> None:
    for batch in batches:
        eng.backward(eng.forward(batch)["loss"])
        eng.step()


def test_accumulation_in_fp32_is_asked_for_only_where_there_is_a_bf16_sum_deepspeed_can_keep_in_fp32():
    assert engine.deepspeed_config(train_cfg(2))["data_types"] == {"grad_accum_dtype": "fp32"}
    assert engine.deepspeed_config(train_cfg(1))["communication_data_type"] == "fp32"
    assert "communication_data_type" not in engine.deepspeed_config(train_cfg(2))
    # stage 0 has no fp32 accumulation for bf16 weights (NotImplementedError): the config refuses it (test_config)
    for cfg in (train_cfg(2, grad_accum=1), train_cfg(2, precision="fp32"), train_cfg(0, grad_accum=1)):
        assert not {"data_types", "communication_data_type"} & engine.deepspeed_config(cfg).keys()


@pytest.mark.parametrize("stage, offload", [(1, False), (2, False), (3, False), (1, True), (2, True), (3, True)])
def test_the_update_after_accumulated_bf16_micro_batches_is_their_fp32_sum(stage, offload, monkeypatch):
    """With SGD at lr 1 the fp32 master weights move by exactly the accumulated gradient. Summed in bf16
    (the config before) it is off by ~3e-3 relative; summed in fp32 it matches to float rounding."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(engine, "_optimizer", lambda model, cfg: torch.optim.SGD(model.parameters(), lr=1.0))
    cfg = train_cfg(stage, offload_optimizer=offload, offload_params=offload and stage == 3)
    want = fp32_sum_of_bf16_gradients()
    with engine.solo_group(cfg):
        eng = engine.DeepSpeedEngine(Tiny(), cfg)
        before = master_weights(eng)
        run(eng, micro_batches())
        after = master_weights(eng)
    for name, grad in want.items():
        error = ((before[name] - after[name]) - grad).norm() / grad.norm()
        assert error < 1e-5, f"ZeRO-{stage} {name}: update off the fp32 sum of the micro-batch gradients by {error:.2e}"


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_a_bf16_accumulating_engine_resumed_from_its_checkpoint_continues_as_the_uninterrupted_one(stage, tmp_path,
                                                                                                   monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cfg = train_cfg(stage, lr=1e-2)
    first, second = micro_batches(seed=1), micro_batches(seed=2)
    with engine.solo_group(cfg):
        eng = engine.DeepSpeedEngine(Tiny(), cfg)
        run(eng, first)
        eng.save(tmp_path)
        run(eng, second)
        straight = master_weights(eng)
    with engine.solo_group(cfg):
        eng = engine.DeepSpeedEngine(Tiny(), cfg)
        eng.load(tmp_path)
        assert eng._micro == ACCUM
        run(eng, second)
        resumed = master_weights(eng)
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0)
