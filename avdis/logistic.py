"""Multinomial logistic regression on torch tensors: the leakage probe's linear probe and INLP's classifier.

It sits below the model and train floors because both use it (`avdis.model.disentangle`
for INLP and the nullspace emotion head, `avdis.train.probe` for the linear probe).
scikit-learn's LogisticRegression(lbfgs) with C = 1 / (2 * l2 * n) fits the same objective
to the same held-out accuracy (measured on probe-sized problems); this one stays because it
works on float64 torch tensors and returns the `nn.Linear` the nullspace head is saved as.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = 1e-3, iters: int = 100) -> nn.Linear:
    """Mean cross-entropy + l2 * |W|^2, by full-batch L-BFGS from zeros (deterministic); a float64 layer."""
    lin = nn.Linear(x.shape[1], n_classes).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    x = x.double()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y) + l2 * (lin.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin
