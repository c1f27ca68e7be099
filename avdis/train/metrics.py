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


def uar_chance(target: np.ndarray) -> float:
    """UAR of always predicting one class: 1 / the classes present, the emotion UAR at chance (what a model naming
    every clip the majority emotion scores, however common that emotion is)."""
    return 1.0 / len(np.unique(target)) if len(target) else float("nan")


def majority_rate(target: np.ndarray) -> float:
    """Accuracy of always predicting the most common class: the emotion accuracy at chance."""
    if not len(target):
        return float("nan")
    return float(np.bincount(target).max() / len(target))


def label_only_speaker_guess(emo_fit: np.ndarray, spk_fit: np.ndarray, emo_judged: np.ndarray) -> np.ndarray:
    """The best speaker guess from the emotion label alone, fitted on (emo_fit, spk_fit), for each judged clip.

    For each emotion, the speaker seen most often with it among the fit clips (ties: lowest index); an emotion
    without fit clips gets the most common speaker. The leakage probe's chance, and the guess both its probes fall
    back to (`avdis.train.probe`), are this guess.
    """
    guess = {int(e): int(np.argmax(np.bincount(spk_fit[emo_fit == e]))) for e in np.unique(emo_fit)}
    fallback = int(np.argmax(np.bincount(spk_fit)))
    return np.array([guess.get(int(e), fallback) for e in emo_judged], dtype=np.int64)


def label_only_speaker_chance(emo_train: np.ndarray, spk_train: np.ndarray,
                              emo_test: np.ndarray, spk_test: np.ndarray) -> float:
    """Test accuracy of the best speaker guess from the emotion label alone (`label_only_speaker_guess`).

    Where speaker and emotion are correlated, the label already reveals something about
    the speaker; that is not leakage. Equals ~1/speakers when they are independent.
    """
    return accuracy(label_only_speaker_guess(emo_train, spk_train, emo_test), spk_test)


def normalised_leakage(probe_acc: float, chance: float) -> float:
    """(acc - chance) / (1 - chance): 0 = no more than the emotion label tells, 1 = identity fully there. NaN where
    the label alone names every judged clip's speaker (a speaker_disjoint fold of one speaker can): no probe can show
    more there, and 0, as before, read as an embedding that hides who speaks."""
    return float((probe_acc - chance) / (1.0 - chance)) if chance < 1.0 else float("nan")
