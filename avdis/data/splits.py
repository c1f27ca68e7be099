"""Train/val/test assignment, stored per clip in the manifest; both schemes at once.

- `within_speaker`: clips of every speaker in every split, stratified by emotion inside
  each speaker (the leakage probe and person-ID need the same speakers in train and test).
- `speaker_disjoint`: speakers dealt into k folds; fold f is the test set, fold f+1 the
  validation set, the rest train (emotion generalisation to unseen people).
Assignments depend only on the labels and the seed, so re-running preprocessing gives
the same splits.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from avdis.config import SplitConfig
from avdis.errors import UsageError

SPLITS = ("train", "val", "test")
NO_FOLD = -1


def within_speaker(speakers: Sequence[str], emotions: Sequence[str], cfg: SplitConfig) -> list[str]:
    """Split name per clip. A speaker with fewer than 3 clips cannot be in every split:
    one clip goes to train, a second to test.

    Each speaker's clips are dealt along their emotion order from its own starting point, spread evenly over the
    speakers (a seeded order): dealt from the same point, a speaker with 2 clips of each of 6 emotions sent the
    same 3 emotions to test every time, and the test set of the whole corpus held half of its emotions."""
    rng = np.random.default_rng(cfg.seed)
    out = [""] * len(speakers)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(speakers):
        by_speaker[s].append(i)
    phase = dict(zip(sorted(by_speaker), (rng.permutation(len(by_speaker)) + 0.5) / len(by_speaker)))
    for spk in sorted(by_speaker):
        idx = by_speaker[spk]
        if len(idx) < 3:
            for i, lab in zip(idx, ("train", "test")):
                out[i] = lab
            continue
        # order clips emotion by emotion (shuffled inside), then deal splits evenly along it
        groups: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            groups[emotions[i]].append(i)
        ordered = []
        for emo in sorted(groups):
            members = groups[emo]
            ordered.extend(members[j] for j in rng.permutation(len(members)))
        n = len(ordered)
        start = int(phase[spk] * n)
        ordered = ordered[start:] + ordered[:start]
        n_test = max(1, int(round(n * cfg.test_fraction)))
        n_val = max(1, int(round(n * cfg.val_fraction)))
        n_test = min(n_test, n - 2)
        n_val = min(n_val, n - n_test - 1)
        # Bresenham-style dealing: positions spread evenly, so each emotion gets its share
        labels = np.array(["train"] * n, dtype=object)
        test_pos = np.floor((np.arange(n_test) + 0.5) * n / n_test).astype(int)
        labels[test_pos] = "test"
        rest = np.flatnonzero(labels == "train")
        val_pos = rest[np.floor((np.arange(n_val) + 0.5) * len(rest) / n_val).astype(int)]
        labels[val_pos] = "val"
        for i, lab in zip(ordered, labels):
            out[i] = str(lab)
    return out


def speaker_folds(speakers: Sequence[str], cfg: SplitConfig) -> list[int]:
    """Fold index per clip; speakers are dealt round-robin after a seeded shuffle.

    With fewer speakers than folds every clip gets fold -1: the corpus still serves
    within_speaker training, and asking for speaker_disjoint on it fails (`split_of`).
    """
    unique = sorted(set(speakers))
    if len(unique) < cfg.folds:
        return [NO_FOLD] * len(speakers)
    order = np.random.default_rng(cfg.seed).permutation(len(unique))
    fold_of = {unique[j]: k % cfg.folds for k, j in enumerate(order)}
    return [fold_of[s] for s in speakers]


def split_of(within: str, fold: int, cfg: SplitConfig) -> str:
    """The split a clip belongs to under the configured scheme."""
    if cfg.scheme == "within_speaker":
        return within
    if fold == NO_FOLD:
        raise UsageError(f"these shards have too few speakers for data.split.folds={cfg.folds}; use "
                         "data.split.scheme=within_speaker or preprocess again with fewer folds")
    if fold == cfg.fold:
        return "test"
    if fold == (cfg.fold + 1) % cfg.folds:
        return "val"
    return "train"


def split_id(cfg: SplitConfig) -> str:
    """A short name recorded with every result: which split the numbers are on."""
    if cfg.scheme == "within_speaker":
        return f"within_speaker/seed{cfg.seed}"
    return f"speaker_disjoint/fold{cfg.fold}of{cfg.folds}/seed{cfg.seed}"
