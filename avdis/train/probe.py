"""The leakage probe: a fresh speaker classifier on frozen z_emo, trained on train clips,
scored on test clips of the same speakers (within_speaker split).

Two probes: multinomial logistic regression and a small MLP (the headline: a linear
probe misses non-linearly encoded identity). The MLP picks its epoch count on a held-out
fifth of the train clips, then refits on all of them. Both are deterministic under a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avdis.config import ProbeConfig
from avdis.errors import UsageError
from avdis.logistic import fit_logistic
from avdis.train.metrics import accuracy, label_only_speaker_chance, normalised_leakage


@dataclass(frozen=True)
class ProbeResult:
    probe_acc: float  # MLP probe, test accuracy
    probe_acc_linear: float
    probe_chance: float  # best speaker guess from the emotion label alone
    chance_uniform: float  # 1 / speakers
    leakage: float  # MLP, normalised
    leakage_linear: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def _train_mlp(x: torch.Tensor, y: torch.Tensor, n_classes: int, cfg: ProbeConfig, epochs: int,
               seed: int, x_eval: torch.Tensor | None = None, y_eval: torch.Tensor | None = None):
    """Full-batch Adam; returns the model and, with eval data, accuracy after every epoch."""
    gen = torch.Generator().manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(x.shape[1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n_classes))
    for p in mlp.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / np.sqrt(p.shape[-1])) if p.dim() > 1 else 0 * p)
    opt = torch.optim.Adam(mlp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curve = []
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(mlp(x), y).backward()
        opt.step()
        if x_eval is not None:
            with torch.no_grad():
                curve.append(float((mlp(x_eval).argmax(1) == y_eval).float().mean()))
    return mlp, curve


def mlp_probe_accuracy(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                       n_classes: int, cfg: ProbeConfig, seed: int) -> float:
    perm = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, len(x_tr) // 5)
    hold, fit = perm[:n_hold], perm[n_hold:]
    _, curve = _train_mlp(x_tr[fit], y_tr[fit], n_classes, cfg, cfg.epochs, seed, x_tr[hold], y_tr[hold])
    best_epochs = int(np.argmax(curve)) + 1
    mlp, _ = _train_mlp(x_tr, y_tr, n_classes, cfg, best_epochs, seed)
    with torch.no_grad():
        return accuracy(mlp(x_te).argmax(1).numpy(), y_te.numpy())


def leakage_probe(z_train: np.ndarray, spk_train: np.ndarray, emo_train: np.ndarray,
                  z_test: np.ndarray, spk_test: np.ndarray, emo_test: np.ndarray,
                  n_speakers: int, cfg: ProbeConfig, seed: int) -> ProbeResult:
    """Fit both probes on (z_train -> speaker), score on z_test; normalise by the label-only chance."""
    present = np.unique(spk_train)
    if len(present) < 2:
        raise UsageError(f"the leakage probe needs >= 2 speakers in the train split (found {len(present)})")
    if not len(z_test):
        raise UsageError("the leakage probe needs test clips of the train speakers (within_speaker split)")
    torch.manual_seed(seed)
    x_tr, x_te = _standardise(torch.as_tensor(z_train, dtype=torch.float32), torch.as_tensor(z_test, dtype=torch.float32))
    y_tr, y_te = torch.as_tensor(spk_train, dtype=torch.long), torch.as_tensor(spk_test, dtype=torch.long)
    lin = fit_logistic(x_tr, y_tr, n_speakers, l2=1e-3)
    with torch.no_grad():
        acc_lin = accuracy(lin(x_te.double()).argmax(1).numpy(), spk_test)
    acc_mlp = mlp_probe_accuracy(x_tr, y_tr, x_te, y_te, n_speakers, cfg, seed)
    chance = label_only_speaker_chance(emo_train, spk_train, emo_test, spk_test)
    return ProbeResult(
        probe_acc=acc_mlp, probe_acc_linear=acc_lin, probe_chance=chance, chance_uniform=1.0 / n_speakers,
        leakage=normalised_leakage(acc_mlp, chance), leakage_linear=normalised_leakage(acc_lin, chance),
    )
