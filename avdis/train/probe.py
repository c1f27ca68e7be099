"""The leakage probe: a fresh speaker classifier on frozen z_emo and the clip's one-hot emotion
label, trained on train clips, scored on test clips of the same speakers (within_speaker
split), and by the same fit on their validation clips (`val_leakage`, what a sweep selects
on: its test clips stay unseen by every choice the sweep makes).

The probe reads the label beside z_emo, as the conditional adversary does, so that leakage
is identity beyond what the emotion label tells: given a z_emo without identity it has the
label alone, as the label-only chance it is normalised by. Until 2026-12-04 it read z_emo
alone, and a z_emo holding identity but little emotion read below that chance (negative
leakage, counted 0 on the front): the probe lacked what the label told, the chance had it.

Two probes: multinomial logistic regression and a small MLP (the headline: a linear
probe misses non-linearly encoded identity). The MLP is cross-fitted: `folds` copies, one
per fold of the train clips, train at once as one batched model; the epoch is the one
where every train clip, judged by the copy that did not fit it, is best classified, and the
test clips are predicted by the copies' mean softmax at that epoch. Every train clip both
fits and judges, so the probe is a stronger adversary, and steadier under its own seed,
than one MLP that picks its epoch on a held-out fifth (bench/probe_quality.py measures
both). The adversary may also guess from the label alone: the label-only guess, fitted per
fold the same way, is judged out of fold beside the epochs, and where no epoch beats it the
clips are predicted by it, so leakage reads 0 (the chance is that guess's accuracy). The
linear probe falls back the same way, judged by one fit per fold (`linear_predict`). Until
2026-12-04 both probes always predicted: where z_emo held noise dimensions they fitted them
and predicted worse than the label, so pure noise read below 0 (on 8 speakers x 12 train
clips, 32 dimensions, speakers mostly showing one emotion: about -0.4 by the MLP, -4 with 8
emotions, and -0.3 by the linear probe) and a z_emo holding some identity beside noise read
less than it held. Both probes are deterministic under a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avdis.config import PROBE_LONGEST, ProbeConfig
from avdis.errors import UsageError
from avdis.logistic import fit_logistic
from avdis.train.metrics import accuracy, label_only_speaker_chance, label_only_speaker_guess, normalised_leakage


LINEAR_L2 = 1e-3  # the linear probe's weight penalty


@dataclass(frozen=True)
class ProbeResult:
    probe_acc: float  # MLP probe, test accuracy
    probe_acc_linear: float | None  # None where not fitted (`leakage_probe(linear=False)`)
    probe_chance: float  # best speaker guess from the emotion label alone
    chance_uniform: float  # 1 / speakers
    leakage: float  # MLP, normalised
    leakage_linear: float | None
    val_leakage: float | None = None  # MLP, normalised, on the validation clips (None without any)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both splits scaled by the train clips' statistics."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def probe_inputs(z_train: np.ndarray, emo_train: np.ndarray, z_judged: np.ndarray, emo_judged: np.ndarray,
                 n_emotions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The probes' input: z_emo standardised by the train clips' statistics, the one-hot emotion label beside it
    (unscaled, as the conditional adversary reads it: an emotion without train clips stays a column of zeros there,
    where standardising would divide by its zero spread)."""
    x_tr, x_judged = standardise(torch.as_tensor(z_train, dtype=torch.float32),
                                 torch.as_tensor(z_judged, dtype=torch.float32))

    def with_label(x: torch.Tensor, emotion: np.ndarray) -> torch.Tensor:
        return torch.cat([x, F.one_hot(torch.as_tensor(emotion, dtype=torch.long), n_emotions).float()], 1)

    return with_label(x_tr, emo_train), with_label(x_judged, emo_judged)


@dataclass(frozen=True)
class CrossFit:
    """The train clips' cross-fit folds and what they tell, dealt once per probe: the linear probe's per-fold fits and
    the MLP's copies are judged on the same folds, so `leakage_probe` deals and scores them once for both."""

    k: int
    fold: np.ndarray  # each train clip's fold (of k)
    judged: np.ndarray  # whether the clip can judge the fit that left it out (`_judged`)
    label_right: np.ndarray | None  # the label-only guess out of fold (`_label_right`); None without labels or judges
    init: torch.Tensor  # the seed's generator after dealing: it draws the MLP copies' first weights


def cross_fit(spk: np.ndarray, folds: int, seed: int, emo: np.ndarray | None = None) -> CrossFit:
    """`folds` folds of the train clips of speakers `spk` (fewer with fewer clips) dealt under `seed`, and with `emo`
    (their emotion labels) the label-only guess judged out of fold."""
    n = len(spk)
    k = min(folds, n)
    gen = torch.Generator().manual_seed(seed)
    fold = _folds(n, k, gen).numpy()
    judged = _judged(spk, fold, k)
    label_right = _label_right(emo, spk, fold, k) if emo is not None and judged.any() else None
    return CrossFit(k, fold, judged, label_right, gen.get_state())


def crossfit_mlp_predict(x: torch.Tensor, y: torch.Tensor, x_te: torch.Tensor, n_classes: int, cfg: ProbeConfig,
                         seed: int, emotion: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """`mlp_predict` on `cfg.folds` folds dealt under `seed`.

    With `emotion` (the train clips' and the predicted clips' emotion labels) the label-only guess is one more
    candidate, fitted per fold and judged out of fold on the same clips: where no epoch beats it (ties included), the
    clips are predicted by the guess fitted on every train clip, the label-only chance's own guess. Without it the MLP
    predicts alone (bench/probe_quality.py compares MLPs so).
    """
    split = cross_fit(y.numpy(), cfg.folds, seed, None if emotion is None else emotion[0])
    return mlp_predict(x, y, x_te, n_classes, cfg, split, emotion)


def mlp_predict(x: torch.Tensor, y: torch.Tensor, x_te: torch.Tensor, n_classes: int, cfg: ProbeConfig,
                split: CrossFit, emotion: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Test-clip predictions of the cross-fitted MLP (full-batch Adam, one hidden layer), one copy per fold of `split`.

    Each forward pass over the train clips gives both the out-of-fold accuracy of the copies after the steps so far and
    the folds' training loss for the next step; the test clips' mean-softmax prediction is kept for the first epoch
    (after its step, the last included) with the best out-of-fold accuracy (the last epoch when no clip can be judged
    out of fold). The copies train `cfg.epochs` epochs, and on while the best lies in the last quarter of those run
    (up to `PROBE_LONGEST` times as many; not where no clip can be judged). The epoch is chosen on the train clips
    alone: the clips predicted play no part in it. Where `split`
    judged the label-only guess and no epoch beats it, the clips are predicted by that guess fitted on every train clip
    (`_label_wins`; `emotion`: the train clips' and the predicted clips' emotion labels).
    """
    n, d, k = len(x), x.shape[1], split.k
    gen = torch.Generator().set_state(split.init)
    fold = torch.as_tensor(split.fold)
    fits = (fold[None, :] != torch.arange(k)[:, None]).float()  # (k, n): the clips each copy fits
    w1 = (torch.randn(k, d, cfg.hidden, generator=gen) / np.sqrt(d)).requires_grad_()
    b1 = torch.zeros(k, 1, cfg.hidden, requires_grad=True)
    w2 = (torch.randn(k, cfg.hidden, n_classes, generator=gen) / np.sqrt(cfg.hidden)).requires_grad_()
    b2 = torch.zeros(k, 1, n_classes, requires_grad=True)
    opt = torch.optim.Adam([w1, b1, w2, b2], lr=cfg.lr, weight_decay=cfg.weight_decay)

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(inputs[None] @ w1 + b1) @ w2 + b2  # (k, rows, classes)

    rows, targets, fitted = torch.arange(n), y.repeat(k), fits.sum(1)
    # With no clip to judge (each speaker one train clip), no epoch can be chosen: the trained copies predict.
    judged = torch.as_tensor(split.judged)
    best, best_step, best_pred = -1.0, 0, np.zeros(len(x_te), dtype=np.int64)
    for step in range(PROBE_LONGEST * cfg.epochs + 1):
        logits = forward(x)  # the copies after `step` steps
        if step:  # the initialisation is no candidate: every epoch's copies are judged after their step
            with torch.no_grad():
                right = logits[fold, rows].argmax(1) == y  # each clip by the copy that did not fit it
                # in float64, as the label's guess is judged: a tie in float32 (22/30 rounds up) went to the MLP
                oof = float(right[judged].double().mean()) if judged.any() else -1.0
                if oof > best or (not judged.any() and step == cfg.epochs):  # none judged: the trained copies
                    best, best_step, best_pred = oof, step, forward(x_te).softmax(-1).mean(0).argmax(1).numpy()
        if step >= cfg.epochs and (4 * best_step <= 3 * step or step == PROBE_LONGEST * cfg.epochs
                                   or not judged.any()):
            break  # the best epoch lies a quarter of the epochs run back: the copies have stopped learning (with no
            # clip to judge, the copies at cfg.epochs predict: training on would change nothing)
        loss = F.cross_entropy(logits.reshape(-1, n_classes), targets, reduction="none").view(k, n)
        opt.zero_grad()
        ((loss * fits).sum(1) / fitted).sum().backward()
        opt.step()
    if emotion is not None and _label_wins(split, best):
        return label_only_speaker_guess(emotion[0], y.numpy(), emotion[1])
    return best_pred


def _label_wins(split: CrossFit, oof: float) -> bool:
    """Whether the label-only guess, judged out of fold, does as well as a probe of out-of-fold accuracy `oof` (ties
    go to the label): then the probe predicts by it, so a z_emo without identity reads 0, not below (a fitted noise
    dimension predicts worse than the label). Never where `split` had no labels or no clip to judge."""
    return split.label_right is not None and oof <= float(split.label_right[split.judged].mean())


def _folds(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Each train clip's cross-fit fold (of `k`), dealt from one permutation drawn from `gen`."""
    fold = torch.empty(n, dtype=torch.long)
    fold[torch.randperm(n, generator=gen)] = torch.arange(n) % k
    return fold


def _judged(spk: np.ndarray, fold: np.ndarray, k: int) -> np.ndarray:
    """Whether each train clip can judge the fit that left it out: its speaker is among the other folds' clips (a fit
    cannot name a speaker it never saw)."""
    judged = np.zeros(len(spk), dtype=bool)
    for f in range(k):
        out = fold == f
        judged[out] = np.isin(spk[out], spk[~out])
    return judged


def _label_right(emo: np.ndarray, spk: np.ndarray, fold: np.ndarray, k: int) -> np.ndarray:
    """Whether each train clip's speaker is named by the label-only guess fitted on the other folds' clips."""
    right = np.zeros(len(spk), dtype=bool)
    for f in range(k):
        out = fold == f
        right[out] = label_only_speaker_guess(emo[~out], spk[~out], emo[out]) == spk[out]
    return right


def linear_predict(x: torch.Tensor, y: torch.Tensor, x_te: torch.Tensor, n_classes: int, split: CrossFit,
                   emotion: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Test-clip predictions of the linear probe (logistic regression fitted on every train clip), or of the
    label-only guess where the probe does not beat it out of fold (`_label_wins`): judged by one fit per fold of
    `split` (the MLP's folds), on the clips of the speakers the other folds hold."""
    spk = y.numpy()
    lin_right = np.zeros(len(x), dtype=bool)
    for f in range(split.k):
        out = split.fold == f
        fitted = fit_logistic(x[~out], y[~out], n_classes, l2=LINEAR_L2)  # k >= 2 folds, none empty
        with torch.no_grad():
            lin_right[out] = fitted(x[out].double()).argmax(1).numpy() == spk[out]
    if split.judged.any() and _label_wins(split, float(lin_right[split.judged].mean())):
        return label_only_speaker_guess(emotion[0], spk, emotion[1])
    lin = fit_logistic(x, y, n_classes, l2=LINEAR_L2)
    with torch.no_grad():
        return lin(x_te.double()).argmax(1).numpy()


Clips = tuple[np.ndarray, np.ndarray, np.ndarray]  # z, speaker, emotion


def leakage_probe(z_train: np.ndarray, spk_train: np.ndarray, emo_train: np.ndarray,
                  z_test: np.ndarray, spk_test: np.ndarray, emo_test: np.ndarray,
                  n_speakers: int, n_emotions: int, cfg: ProbeConfig, seed: int,
                  val: Clips | None = None, linear: bool = True) -> ProbeResult:
    """Fit both probes on (z_train and its emotion label -> speaker), score on z_test (and the MLP on `val`'s clips,
    from the same fit: a second fit would cost a second probe per epoch); normalise by the label-only chance. With
    `linear` False the linear probe (k + 1 logistic fits) is skipped and its fields are None, for a caller that reads
    the MLP's leakage alone."""
    present = np.unique(spk_train)
    if len(present) < 2:
        raise UsageError(f"the leakage probe needs >= 2 speakers in the train split (found {len(present)})")
    if not len(z_test):
        raise UsageError("the leakage probe needs test clips of the train speakers (within_speaker split)")
    z_val, spk_val, emo_val = val if val is not None else (z_test[:0], spk_test[:0], emo_test[:0])
    x_tr, x_judged = probe_inputs(z_train, emo_train, np.concatenate([z_test, z_val]),
                                  np.concatenate([emo_test, emo_val]), n_emotions)
    x_te = x_judged[: len(z_test)]
    y_tr = torch.as_tensor(spk_train, dtype=torch.long)
    split = cross_fit(spk_train, cfg.folds, seed, emo_train)
    acc_lin = (accuracy(linear_predict(x_tr, y_tr, x_te, n_speakers, split, (emo_train, emo_test)), spk_test)
               if linear else None)
    pred = mlp_predict(x_tr, y_tr, x_judged, n_speakers, cfg, split,  # predicts each row on its own
                       (emo_train, np.concatenate([emo_test, emo_val])))
    acc_mlp = accuracy(pred[: len(z_test)], spk_test)
    chance = label_only_speaker_chance(emo_train, spk_train, emo_test, spk_test)
    val_leakage = None
    if len(z_val):
        val_chance = label_only_speaker_chance(emo_train, spk_train, emo_val, spk_val)
        val_leakage = normalised_leakage(accuracy(pred[len(z_test):], spk_val), val_chance)
    return ProbeResult(
        # over the speakers the probe tells apart: under speaker_disjoint a fold's, not every speaker's
        probe_acc=acc_mlp, probe_acc_linear=acc_lin, probe_chance=chance, chance_uniform=1.0 / len(present),
        leakage=normalised_leakage(acc_mlp, chance),
        leakage_linear=None if acc_lin is None else normalised_leakage(acc_lin, chance),
        val_leakage=val_leakage,
    )
