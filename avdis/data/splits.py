"""Train/val/test assignment, stored per clip in the manifest; both schemes at once.

- `within_speaker`: clips of every speaker in every split, stratified by emotion inside
  each speaker and over the corpus (the leakage probe and person-ID need the same speakers
  in train and test).
- `speaker_disjoint`: speakers dealt into k folds; fold f is the test set, fold f+1 the
  validation set, the rest train (emotion generalisation to unseen people).
Assignments depend only on the labels and the seed, so re-running preprocessing gives
the same splits.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from avdis.config import SplitConfig
from avdis.errors import UsageError

SPLITS = ("train", "val", "test")
NO_FOLD = -1


def split_sizes(n: int, cfg: SplitConfig) -> tuple[int, int, int]:
    """Train, val and test clips of a speaker with `n` clips: the configured fractions, at least one in each split. A
    speaker with fewer than 3 clips cannot be in every split: one clip goes to train, a second to test."""
    if n < 3:
        return 1, 0, n - 1
    n_test = min(max(1, int(round(n * cfg.test_fraction))), n - 2)
    n_val = min(max(1, int(round(n * cfg.val_fraction))), n - n_test - 1)
    return n - n_test - n_val, n_val, n_test


def _bounds(held: np.ndarray, sizes: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A speaker's share of each emotion in each split (`held` clips per emotion, dealt as its clips are over the
    splits), and that share rounded down and up: (share, low, high), emotions x splits."""
    n, product = int(held.sum()), np.outer(held, sizes)
    low = product // n
    return product / n, low, low + (product % n > 0)


def _deal(held: np.ndarray, sizes: tuple[int, int, int], residual: np.ndarray) -> np.ndarray:
    """A speaker's clips per emotion and split: each share rounded down or up, the speaker's clips of each emotion and
    in each split exactly theirs. Of those roundings, the one that leaves the corpus's `residual` (clips dealt minus
    shares, per emotion and split, over the speakers dealt so far) smallest in sum of squares: rounding a cell up
    rather than down adds 2 * (residual - fraction) + 1 to it, so this is a 0/1 transport problem, solved exactly."""
    share, low, high = _bounds(held, sizes)
    free = np.flatnonzero((high > low).ravel())
    if not len(free):
        return low
    emotions, n_splits = low.shape
    rows = np.zeros((emotions + n_splits, low.size))  # each cell's emotion and split
    rows[np.repeat(np.arange(emotions), n_splits), np.arange(low.size)] = 1
    rows[emotions + np.tile(np.arange(n_splits), emotions), np.arange(low.size)] = 1
    need = np.concatenate([held - low.sum(1), np.asarray(sizes) - low.sum(0)])
    fraction = (share - low).ravel()[free]
    up = milp(2 * (residual.ravel()[free] - fraction) + 1, integrality=np.ones(len(free)), bounds=Bounds(0, 1),
              constraints=LinearConstraint(rows[:, free], need, need)).x
    dealt = low.ravel().copy()
    dealt[free] += np.round(up).astype(int)
    return dealt.reshape(low.shape)


def _even_out(dealt: list[np.ndarray], bounds: list[tuple[np.ndarray, np.ndarray]], residual: np.ndarray) -> None:
    """While an emotion is a clip or more off its share of a split, swap two clips of one speaker (emotion e from
    split p to q, emotion f from q to p: the speaker's totals stay, each share still rounded down or up); each swap
    lowers the sum of squares, so this ends. Dealing speaker by speaker leaves a few corpora a clip off; where no swap
    lowers it an emotion stays off (seen on none of thousands of random corpora)."""
    while (worst := np.abs(residual)).max(initial=0.0) >= 1 - 1e-9:
        e, p = np.unravel_index(int(np.argmax(worst)), worst.shape)
        sign = 1 if residual[e, p] > 0 else -1
        best: tuple[tuple[float, float], int, dict[tuple[int, int], int]] | None = None
        for k, (low, high) in enumerate(bounds):
            for q in range(residual.shape[1]):
                for f in range(residual.shape[0]):
                    if q == p or f == e:
                        continue
                    moves = {(e, p): -sign, (e, q): sign, (f, q): -sign, (f, p): sign}
                    if not all(low[c] <= dealt[k][c] + v <= high[c] for c, v in moves.items()):
                        continue
                    gain = sum(residual[c] ** 2 - (residual[c] + v) ** 2 for c, v in moves.items())
                    rank = (max(abs(residual[c] + v) for c, v in moves.items()), -gain)
                    if gain > 1e-9 and (best is None or rank < best[0]):
                        best = (rank, k, moves)
        if best is None:
            return
        for c, v in best[2].items():
            dealt[best[1]][c] += v
            residual[c] += v


def within_speaker(speakers: Sequence[str], emotions: Sequence[str], cfg: SplitConfig) -> list[str]:
    """Split name per clip: every speaker's clips over the splits as `split_sizes` says, each of its emotions dealt as
    its clips are (rounded down or up), and each emotion's clips in a split within one clip of the sum of its
    speakers' shares (its share of the split where speakers' clips are dealt alike).

    Speakers are dealt one at a time in a seeded order, each the rounding that best evens out the corpus's counts so
    far (`_deal`), then pairs of a speaker's clips are swapped while an emotion is still a clip off (`_even_out`).
    Dealt within each speaker alone, speakers that hold different emotions (a clip of 3 of 4 emotions each) left
    one emotion with 10 train clips and another with 4 where each had 6 due."""
    rng = np.random.default_rng(cfg.seed)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(speakers):
        by_speaker[s].append(i)
    names = sorted(set(emotions))
    residual = np.zeros((len(names), len(SPLITS)))
    order = sorted(by_speaker)
    groups: list[dict[str, list[int]]] = []
    dealt: list[np.ndarray] = []
    bounds: list[tuple[np.ndarray, np.ndarray]] = []
    for j in rng.permutation(len(order)):
        members: dict[str, list[int]] = {name: [] for name in names}
        for i in by_speaker[order[j]]:
            members[emotions[i]].append(i)
        held = np.array([len(members[name]) for name in names])
        sizes = split_sizes(int(held.sum()), cfg)
        share, low, high = _bounds(held, sizes)
        groups.append(members)
        dealt.append(_deal(held, sizes, residual))
        bounds.append((low, high))
        residual += dealt[-1] - share
    _even_out(dealt, bounds, residual)
    out = [""] * len(speakers)
    for members, counts in zip(groups, dealt):
        for e, name in enumerate(names):
            clips = [members[name][j] for j in rng.permutation(len(members[name]))]
            for i, label in zip(clips, np.repeat(SPLITS, counts[e])):
                out[i] = str(label)
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
