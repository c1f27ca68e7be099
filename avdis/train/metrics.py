"""Emotion and speaker metrics on the test split, and the chance levels they are read against."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    return float((pred == target).mean()) if len(target) else float("nan")


def uar(pred: np.ndarray, target: np.ndarray) -> float:
    """Unweighted average recall: mean of per-class recall over the classes present."""
    classes = np.unique(target)
    if not len(classes):
        return float("nan")
    return float(np.mean([(pred[target == c] == c).mean() for c in classes]))


def majority_rate(target: np.ndarray) -> float:
    """Accuracy of always predicting the most common class: the emotion accuracy at chance."""
    if not len(target):
        return float("nan")
    return float(np.bincount(target).max() / len(target))


def label_only_speaker_chance(emo_train: np.ndarray, spk_train: np.ndarray,
                              emo_test: np.ndarray, spk_test: np.ndarray) -> float:
    """Test accuracy of the best speaker guess from the emotion label alone.

    Where speaker and emotion are correlated, the label already reveals something about
    the speaker; that is not leakage. For each emotion, guess the speaker seen most often
    with it in train (ties: lowest index). Equals ~1/speakers when they are independent.
    """
    guess = {}
    for e in np.unique(emo_train):
        counts = np.bincount(spk_train[emo_train == e])
        guess[int(e)] = int(np.argmax(counts))
    fallback = int(np.argmax(np.bincount(spk_train)))
    pred = np.array([guess.get(int(e), fallback) for e in emo_test])
    return accuracy(pred, spk_test)


def normalised_leakage(probe_acc: float, chance: float) -> float:
    """(acc - chance) / (1 - chance): 0 = no more than the emotion label tells, 1 = identity fully there. NaN where
    the label alone names every judged clip's speaker (a speaker_disjoint fold of one speaker can): no probe can show
    more there, and 0, as before, read as an embedding that hides who speaks."""
    return float((probe_acc - chance) / (1.0 - chance)) if chance < 1.0 else float("nan")
