"""Disentanglement methods: one registry, one name each, each with its `method.weight`.

- single_task  emotion loss only.
- multitask    emotion + speaker loss on z_id (the baseline: 0% disentanglement).
- adversarial  + a speaker adversary on z_emo behind gradient reversal (weight = reversal
               strength, linearly warmed up over `adversary.warmup_epochs`).
- confusion    + cross-entropy between a target speaker distribution (uniform, or
               p(speaker | emotion) when conditional) and the adversary's output on z_emo
               (weight = its loss weight); the adversary itself keeps learning.
- orthogonal   + mean squared canonical correlation of z_emo and z_id, its covariances running
               over batches (the same under any rotation or rescaling of either; weight
               comparable across emb_dim).
- nullspace    trained as multitask; post hoc, iterative nullspace projection (INLP,
               Ravfogel et al. 2020) removes `weight` speaker directions from z_emo (one per
               iteration: the most speaker-discriminative direction of a fresh linear
               classifier), then the emotion head is refit on the projected embedding.

`method.conditional` (default on) makes adversarial, confusion and nullspace remove only
identity *beyond what the emotion label explains*, the part the leakage probe counts:
the adversary sees the one-hot emotion label beside z_emo, the confusion target is
p(speaker | emotion) from the train split's labels (add-alpha smoothed) instead of uniform
(either over the speakers the train split holds),
and INLP fits each speaker classifier on z_emo minus its emotion's mean (standardised by
the spread within emotions). Unconditional, where speakers favour emotions, these methods
can only reach their goal by erasing emotion.

`adversarial` and `confusion` train their adversary with its own optimizer, `adversary.steps`
steps per encoder step on detached z_emo (see `avdis.train.step`). A training-time
adversary says nothing about what is left: only the fresh post-hoc probe judges a method.
All losses are means over valid rows (padding rows carry valid=False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from avdis.config import MethodConfig
from avdis.logistic import fit_logistic


def masked_ce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the valid rows (0 without any). The rows are picked, not multiplied by the mask: a
    padding row's NaN or infinite loss times 0 is NaN, in the loss and in its gradient."""
    per = F.cross_entropy(logits[valid].float(), target[valid], reduction="none")
    return per.sum() / valid.sum().clamp(min=1)


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; gradient multiplied by -scale backward."""
    return _ReverseGrad.apply(x, scale)


def confusion_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from a target distribution per row: minimal (= its entropy) where softmax = target.

    Speakers no row aims at (those the train split lacks, under `speaker_disjoint`) are left out of the
    softmax: a target of 0 is reached only at infinite logits, so the loss would never settle and would
    push z_emo towards whatever drives those logits down.
    """
    aimed = target.sum(0) > 0
    per = -(target[valid][:, aimed] * F.log_softmax(logits[valid].float()[:, aimed], dim=-1)).sum(dim=-1)
    return per.sum() / valid.sum().clamp(min=1)  # the valid rows picked, as in `masked_ce`


PRIOR_ALPHA = 0.5
"""Pseudo-count per (emotion, speaker seen): no confusion target over the speakers trained on is 0, which a
softmax reaches only at infinite logits."""


def speaker_given_emotion(speaker: torch.Tensor, emotion: torch.Tensor, n_speakers: int, n_emotions: int,
                          alpha: float = PRIOR_ALPHA) -> torch.Tensor:
    """p(speaker | emotion) [emotions, speakers] from label pairs, add-alpha smoothed over the speakers the pairs
    hold; a speaker they lack (held out by `speaker_disjoint`) gets 0, as no training batch can show them."""
    counts = torch.zeros(n_emotions, n_speakers, dtype=torch.float64)
    counts.index_put_((emotion.long(), speaker.long()), torch.ones(len(speaker), dtype=torch.float64), accumulate=True)
    counts += alpha * (counts.sum(0) > 0)
    return (counts / counts.sum(1, keepdim=True)).float()


def uniform_over_support(prior: torch.Tensor) -> torch.Tensor:
    """The unconditional confusion target [emotions, speakers]: uniform over the speakers `prior` gives mass to."""
    seen = (prior > 0).float()
    return seen / seen.sum(1, keepdim=True)


CCA_RIDGE = 1.0
"""Ridge added to each covariance, as a share of its mean eigenvalue (i.e. its mean variance). A batch of 32 rows
cannot estimate a 32 x 32 covariance: its sample covariance is singular and every canonical correlation of two
independent embeddings read near 1 when the penalty read one batch alone (at 1.0 about 0.15; 0.53 at 0.1, where
training collapsed both embeddings onto one shared direction, which reads 1/d). The running covariance
(`RunningCovariance`) no longer needs it for that; it stays so that the weight keeps its scale, at the price that a
direction with less spread than the mean counts less (one with a tenth of it counts about a fifth as much)."""

CCA_MOMENTUM = 0.99
"""Share of the running covariance each batch keeps (the first batches are averaged evenly): about the last 100
batches count. Measured on 2026-12-04 with 32 rows of 64 dimensions per batch: one batch alone read 0.17 for
independent embeddings, 0.17 for embeddings sharing 4 of their 64 directions and 0.19 for identical ones; after 200
batches the running covariance reads 0.003, 0.018 and 0.249 (0.016 and 0.25 on 20000 rows). In training (the
README's figures) a weight then did about what 6 times it did on one batch's covariances."""


class RunningCovariance(nn.Module):
    """The joint covariance of [z_emo, z_id] over the last batches (exponential moving average, `CCA_MOMENTUM`),
    a buffer saved with the run's checkpoint so that a resumed run reads what the uninterrupted one would.

    Over several ranks each batch's covariance is pooled over all of them first (weighted by their valid rows), so
    every rank holds the same one."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("cov", torch.zeros(dim, dim, dtype=torch.float64))
        self.register_buffer("batches", torch.zeros((), dtype=torch.float64))

    def mix(self, batch_cov: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Fold the (detached) covariance of this batch's `rows` rows in and return the running one, through which
        the gradient reaches this batch's rows as if it were theirs: the penalty's gradient at the long-run
        covariance, not at one batch's, where independent embeddings read almost as correlated as identical ones.
        A batch of no rows (or a non-finite one, `rows` 0) leaves it as it was."""
        summed = torch.cat([(batch_cov.detach() * rows).flatten(), rows.reshape(1)])
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(summed)
        total = summed[-1]
        pooled = summed[:-1].reshape(batch_cov.shape) / total.clamp(min=1)
        seen = total > 0
        batches = self.batches + seen.double()
        share = torch.where(seen, (1 / batches.clamp(min=1)).clamp(min=1 - CCA_MOMENTUM), 0.0)
        with torch.no_grad():
            self.cov.copy_(self.cov + share * (pooled - self.cov))
            self.batches.copy_(batches)
        return self.cov + (batch_cov - batch_cov.detach())


def canonical_correlation_penalty(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor,
                                  running: RunningCovariance | None = None) -> torch.Tensor:
    """Mean squared canonical correlation of a and b, each covariance ridged by `CCA_RIDGE`:
    ||Saa^-1/2 Sab Sbb^-1/2||_F^2 / min(d_a, d_b). 0 when uncorrelated, under 1. The covariances are `running`'s
    (this batch's valid rows folded in) where given, else this batch's alone.

    Canonical, not per-coordinate, correlations: the mean squared correlation between the coordinates of z_emo
    and z_id was met by moving the identity z_emo shares with z_id into directions of little spread, rotated off
    the axes, where a linear probe still reads it (penalty 0.127 -> 0.0066 while z_emo predicted z_id with
    R^2 0.94). This one does not change under a rotation or uniform rescaling of either embedding; a direction of
    less spread than the mean still counts less (the ridge), so it closes the rotation, not all the hiding. An
    unnormalised ||A^T B||_F^2 (Domain Separation Networks) is met by shrinking the embeddings. The mean, not
    the sum: it keeps the weight comparable across emb_dim. Running, not one batch's: with 32 rows of 64
    dimensions one batch read 0.17 for independent embeddings and 0.19 for identical ones (`CCA_MOMENTUM`).
    """
    a, b = a[valid].double(), b[valid].double()
    # NaN where either holds a NaN or inf, so that loop._check_step names the step and its clips (Cholesky raised a
    # LinAlgError traceback); without a host sync, on the embeddings' own device
    finite = torch.isfinite(a).all() & torch.isfinite(b).all()
    a, b = torch.where(finite, a, 0.0), torch.where(finite, b, 0.0)
    x = torch.cat([a, b], 1)
    x = x - x.mean(0) if len(x) else x
    n = len(x)
    cov = x.T @ x / max(n, 1)
    if running is not None:  # every rank folds its batch in, whatever its rows (a collective over ranks)
        cov = running.mix(cov, torch.where(finite & (n >= 2), float(n), 0.0).to(cov))
    elif n < 2:
        return (a.sum() * 0 + b.sum() * 0).float()
    d_a = a.shape[1]

    def ridged(c: torch.Tensor) -> torch.Tensor:
        scale = torch.diagonal(c).mean().clamp(min=1e-12)  # a constant batch: a positive definite ridge, value 0
        return c + CCA_RIDGE * scale * torch.eye(len(c), dtype=c.dtype, device=c.device)

    # ||Saa^-1/2 Sab Sbb^-1/2||_F^2 = tr(Saa^-1 Sab Sbb^-1 Sba): two Cholesky solves of positive definite matrices
    cross = cov[:d_a, d_a:]
    left = torch.cholesky_solve(cross, torch.linalg.cholesky(ridged(cov[:d_a, :d_a])))
    right = torch.cholesky_solve(cross.T, torch.linalg.cholesky(ridged(cov[d_a:, d_a:])))
    value = (left * right.T).sum() / min(d_a, b.shape[1])
    return torch.where(finite, value, float("nan")).float()


class Adversary(nn.Module):
    """Speaker classifier on z_emo (an MLP: a linear adversary is too easy to fool).

    With `n_emotions` > 0 (conditional) it also reads the one-hot emotion label, so what
    z_emo adds beyond the label is all it can gain from z_emo.
    """

    def __init__(self, emb_dim: int, hidden: int, n_speakers: int, n_emotions: int = 0):
        super().__init__()
        self.n_emotions = n_emotions
        self.net = nn.Sequential(nn.Linear(emb_dim + n_emotions, hidden), nn.ReLU(), nn.Linear(hidden, n_speakers))

    def forward(self, z: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        if self.n_emotions:
            z = torch.cat([z, F.one_hot(emotion, self.n_emotions).to(z.dtype)], dim=-1)
        return self.net(z)


@dataclass(frozen=True)
class Critic:
    """What the penalties read beyond the batch: the adversary-based ones the (frozen) adversary and the confusion
    target per emotion, `orthogonal` its running covariance."""

    adversary: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None  # (z_emo, emotion) -> speaker logits
    # [emotions, speakers]: p(speaker | emotion) when conditional, else `uniform_over_support` of it
    target: torch.Tensor | None = None
    running: RunningCovariance | None = None

    def confusion_target(self, emotion: torch.Tensor) -> torch.Tensor:
        """Per-row target of `confusion`."""
        return self.target[emotion]


@dataclass(frozen=True)
class Method:
    name: str
    identity_loss: bool  # train z_id with the speaker loss
    adversary: bool  # uses a speaker adversary on z_emo
    running: bool = False  # keeps a `RunningCovariance` of [z_emo, z_id]
    # extra encoder loss: (outputs, batch, critic or None, current weight) -> loss
    penalty: Callable[[dict, dict, Critic | None, float], torch.Tensor] | None = None

    def encoder_losses(self, out: dict, batch: dict, cfg: MethodConfig, weight: float,
                       critic: Critic | None = None) -> dict[str, torch.Tensor]:
        """Named loss terms; their sum is what the encoder minimises."""
        valid = batch["valid"]
        terms = {"emotion": masked_ce(out["emo_logits"], batch["emotion"], valid)}
        if self.identity_loss:
            terms["speaker"] = cfg.speaker_weight * masked_ce(out["id_logits"], batch["speaker"], valid)
        if self.penalty is not None:
            terms[self.name] = self.penalty(out, batch, critic, weight)
        return terms


def _adversarial(out: dict, batch: dict, critic: Critic, weight: float) -> torch.Tensor:
    # The encoder sees -weight * d(CE)/dz: it learns to make the adversary fail.
    logits = critic.adversary(reverse_grad(out["z_emo"], weight), batch["emotion"])
    return masked_ce(logits, batch["speaker"], batch["valid"])


def _confusion(out: dict, batch: dict, critic: Critic, weight: float) -> torch.Tensor:
    logits = critic.adversary(out["z_emo"], batch["emotion"])
    return weight * confusion_loss(logits, critic.confusion_target(batch["emotion"]), batch["valid"])


def _orthogonal(out: dict, batch: dict, critic: Critic | None, weight: float) -> torch.Tensor:
    running = critic.running if critic is not None else None  # None: this batch alone
    return weight * canonical_correlation_penalty(out["z_emo"], out["z_id"], batch["valid"], running)


REGISTRY: dict[str, Method] = {  # keyed by config.METHODS
    "single_task": Method("single_task", identity_loss=False, adversary=False),
    "multitask": Method("multitask", identity_loss=True, adversary=False),
    "adversarial": Method("adversarial", identity_loss=True, adversary=True, penalty=_adversarial),
    "confusion": Method("confusion", identity_loss=True, adversary=True, penalty=_confusion),
    "orthogonal": Method("orthogonal", identity_loss=True, adversary=False, running=True, penalty=_orthogonal),
    "nullspace": Method("nullspace", identity_loss=True, adversary=False),
}


def method_weight(cfg: MethodConfig, epoch_progress: float) -> float:
    """The method's weight now; `epoch_progress` counts epochs as a float (2.5 = mid third)."""
    w = float(cfg.weight or 0.0)
    if cfg.name in ("adversarial", "confusion") and cfg.adversary.warmup_epochs:
        w *= min(1.0, epoch_progress / cfg.adversary.warmup_epochs)
    return w


# ------------------------------------------------------------------ post hoc (nullspace)


def remove_group_means(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """x minus the mean of its row's group: only the variation within each group is left."""
    sums = torch.zeros(int(group.max()) + 1, x.shape[1], dtype=x.dtype).index_add_(0, group, x)
    counts = torch.bincount(group, minlength=len(sums)).clamp(min=1).to(x.dtype)
    return x - (sums / counts[:, None])[group]


def shrunk_covariance(z: torch.Tensor) -> torch.Tensor:
    """Covariance [d, d] of the centred rows z [n, d] with its correlations shrunk toward 0 by the Ledoit-Wolf
    amount (Ledoit & Wolf 2004, on the standardised coordinates, so each coordinate keeps its own variance).

    Whitening by the sample covariance trusts its smallest eigenvalues, which few rows per dimension estimate far
    too small (with n close to d some are near 0): the whitened fit then stretches those directions, and the
    projection INLP maps back through the whitening is oblique with a norm in the tens to hundreds (an orthogonal
    projection has norm 1), so clips it was not fit on
    (val, test) come out distorted while the train clips look fine. Shrinkage vanishes as n grows past d.
    """
    n, d = z.shape
    sd = z.std(0, unbiased=False).clamp_min(1e-12)
    x = z / sd
    emp = x.T @ x / n  # the correlation matrix: unit diagonal, so the target is the identity (mu = 1)
    x2 = x**2
    beta = float(((x2.T @ x2).sum() / n - (emp**2).sum()) / (d * n))
    delta = float(((emp - torch.eye(d, dtype=z.dtype)) ** 2).sum() / d)
    shrinkage = 0.0 if delta <= 0 else min(max(beta, 0.0), delta) / delta
    shrunk = (1 - shrinkage) * emp + shrinkage * torch.eye(d, dtype=z.dtype)
    return shrunk * sd[:, None] * sd[None, :]


NO_SPREAD = 1e-6
"""Below this share of the whitened train rows' norm (or this size of a classifier weight on unit-spread inputs) a
rest is rounding: a direction fit to it is arbitrary."""


def inlp_projection(z: torch.Tensor, speaker: torch.Tensor, n_speakers: int, iterations: int,
                    emotion: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Projection [d, d] onto the complement of up to `iterations` speaker directions of z, and how many it removed.

    With `emotion` (conditional), each speaker classifier sees z minus its emotion's mean:
    it finds directions that tell speakers apart within an emotion, not emotion directions
    that happen to predict speakers.
    It stops early once the rows left have no spread (n rows in g emotions span at most n - g directions within them:
    one clip per emotion, none) or the classifier finds nothing on them: its weights, and the direction taken from
    them, were then noise, and removing it erased an arbitrary direction (emotion, for clips it was not fit on).
    """
    d = z.shape[1]
    z = (z - z.mean(0)).double()
    if emotion is not None:
        z = remove_group_means(z, emotion)  # the projection is linear: centring once equals centring each time
    # whiten by the (within-emotion) covariance the classifier sees: every direction, not only every coordinate,
    # gets unit spread. Scaled per coordinate only, a direction of little spread that mixes coordinates got large
    # weights from a fit to noise and was removed before speaker directions (within emotions: the emotion
    # directions, whose spread the emotion means took away, were removed first). The covariance is shrunk
    # (`shrunk_covariance`): with few clips per dimension the sample one made the projection stretch held-out clips.
    cov = shrunk_covariance(z)
    cov = cov + 1e-6 * float(cov.diagonal().mean().clamp_min(1e-12)) * torch.eye(d, dtype=torch.float64)
    white = torch.linalg.inv(torch.linalg.cholesky(cov)).T  # z @ white has (about) identity covariance
    zs = z @ white
    removed = torch.zeros(d, 0, dtype=torch.float64)
    proj = torch.eye(d, dtype=torch.float64)
    for _ in range(min(iterations, d)):
        if float((zs @ proj).norm()) <= NO_SPREAD * float(zs.norm()):
            break
        w = fit_logistic(zs @ proj, speaker, n_speakers).weight.detach()  # [S, d]
        _, size, vh = torch.linalg.svd(w @ proj, full_matrices=False)  # top direction in the current space
        if float(size[0]) <= NO_SPREAD:
            break
        removed = torch.linalg.qr(torch.cat([removed, vh[0][:, None]], dim=1)).Q
        proj = torch.eye(d, dtype=torch.float64) - removed @ removed.T
    # in the original coordinates: z -> z @ white @ proj @ white^-1, i.e. z @ projection.T
    return (white @ proj @ torch.linalg.inv(white)).T.float(), removed.shape[1]


@dataclass(frozen=True)
class NullspaceFit:
    projection: torch.Tensor  # [d, d], applied as z @ projection.T after centring
    mean: torch.Tensor
    emo_head: nn.Linear
    directions: int  # speaker directions removed: fewer than asked where the train clips held no more

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) @ self.projection.T

    def emotion_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.emo_head(self.transform(z).double()).float()


def fit_nullspace(z_train: torch.Tensor, speaker: torch.Tensor, emotion: torch.Tensor,
                  n_speakers: int, n_emotions: int, iterations: int, conditional: bool = False) -> NullspaceFit:
    """INLP on train embeddings (speaker directions within emotions if conditional), then a fresh emotion head.

    The head is fit on the projected embeddings scaled to unit spread (its weights scaled back after): the fit's
    fixed L2 penalty weighs against the embedding's scale, so on an embedding of small spread (std 0.005 after a few
    epochs) the head underfit (0.28 train accuracy where the scaled fit reached 0.95) and nullspace read as a method
    that erases emotion. One scale for every coordinate keeps the projection's geometry (directions it removed stay
    removed, not blown up)."""
    mean = z_train.mean(0)
    proj, directions = inlp_projection(z_train - mean, speaker, n_speakers, iterations,
                                       emotion if conditional else None)
    fit = NullspaceFit(proj, mean, nn.Linear(1, 1), directions)
    x = fit.transform(z_train)
    scale = float(x.double().pow(2).mean().sqrt().clamp_min(1e-12))  # the spread of the centred, projected rows
    head = fit_logistic(x / scale, emotion, n_emotions)
    with torch.no_grad():
        head.weight /= scale  # the logits of x itself: W (x / scale) = (W / scale) x
    return NullspaceFit(proj, mean, head, directions)
