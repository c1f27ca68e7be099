"""Train/val/test assignment, stored per clip in the manifest; both schemes at once.

- `within_speaker`: clips of every speaker in every split, stratified by emotion inside
  each speaker and over the corpus (the leakage probe and person-ID need the same speakers
  in train and test).
- `speaker_disjoint`: speakers dealt into k folds; fold f is the test set, fold f+1 the
  validation set, the rest train (emotion generalisation to unseen people).
Assignments depend only on the labels, the settings and the seed (dealt in exact integer
arithmetic with explicit tie-breaks, no solver), so re-running preprocessing gives the same
splits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from functools import cache
from itertools import combinations
from typing import Callable, Sequence

import numpy as np

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


def _bounds(held: list[int], sizes: tuple[int, int, int]) -> tuple[list[list[int]], list[list[int]]]:
    """A speaker's share of each emotion in each split (`held` clips per emotion, dealt as its clips are over the
    splits) rounded down and up: (low, high), emotions x splits."""
    n = sum(held)
    low = [[h * size // n for size in sizes] for h in held]
    return low, [[k + (h * size % n > 0) for k, size in zip(row, sizes)] for row, h in zip(low, held)]


def _deal(held: list[int], sizes: tuple[int, int, int], residual: list[list[int]], scale: int) -> list[list[int]]:
    """A speaker's clips per emotion and split: each share rounded down or up, the speaker's clips of each emotion and
    in each split exactly theirs. Of those roundings, the one that leaves the corpus's `residual` (clips dealt minus
    shares per emotion and split over the speakers dealt so far, times `scale`) smallest in sum of squares: rounding a
    cell up rather than down adds 2 * (residual - fraction) + 1 to it (times `scale`), so this is a 0/1 transport
    problem, solved exactly, in integers, emotion by emotion over the round-ups each split still needs (`_cheapest`).
    Of equally good roundings, the one rounded up at the first cell where two differ (emotions in name order, each
    train, val, test): the split depends on the clips, the settings and the seed alone (which of equally good
    roundings a solver returns can change with its version)."""
    n = sum(held)
    low, high = _bounds(held, sizes)
    # per emotion: (the splits rounded up, what that adds to the sum of squares), in tie-break order
    options: list[list[tuple[tuple[int, ...], int]]] = []
    for e, h in enumerate(held):
        free = [p for p in range(len(sizes)) if high[e][p] > low[e][p]]
        cost = {p: 2 * (residual[e][p] - h * sizes[p] % n * (scale // n)) + scale for p in free}
        options.append([(ups, sum(cost[p] for p in ups)) for ups in combinations(free, h - sum(low[e]))])
    cheapest = _cheapest(options)
    left = tuple(size - sum(row[p] for row in low) for p, size in enumerate(sizes))
    for e, row in enumerate(low):
        ups = next(ups for ups, cost in options[e]
                   if (rest := cheapest(e + 1, _less(left, ups))) is not None and cost + rest == cheapest(e, left))
        left = _less(left, ups)
        for p in ups:
            row[p] += 1
    return low


def _cheapest(options: list[list[tuple[tuple[int, ...], int]]]) -> Callable[[int, tuple[int, ...]], int | None]:
    """The least cost of rounding emotions e onwards (their `options`) with `left` round-ups due per split; None where
    no rounding gives each split its round-ups. Memoised: the states are the few ways to share the round-ups left."""

    @cache
    def cheapest(e: int, left: tuple[int, ...]) -> int | None:
        if min(left) < 0:
            return None
        if e == len(options):
            return None if any(left) else 0
        costs = [cost + rest for ups, cost in options[e] if (rest := cheapest(e + 1, _less(left, ups))) is not None]
        return min(costs, default=None)

    return cheapest


def _less(left: tuple[int, ...], ups: tuple[int, ...]) -> tuple[int, ...]:
    """The round-ups due per split once the splits `ups` are rounded up."""
    return tuple(k - (p in ups) for p, k in enumerate(left))


def _even_out(dealt: list[list[list[int]]], bounds: list[tuple[list[list[int]], list[list[int]]]],
              residual: list[list[int]], scale: int) -> None:
    """While an emotion is a clip or more off its share of a split, swap two clips of one speaker (emotion e from
    split p to q, emotion f from q to p: the speaker's totals stay, each share still rounded down or up); each swap
    lowers the sum of squares, so this ends. Dealing speaker by speaker leaves a few corpora a clip off; where no swap
    lowers it an emotion stays off (seen on none of thousands of random corpora). The cell furthest off is the first
    of the furthest (emotions in name order, each train, val, test); the swap chosen leaves the cells it moves least
    far off, then lowers the sum of squares most, then is the first found (speakers in dealing order, then q, f).
    `residual` is in integers, times `scale`, so ties are exact."""
    cells = [(e, p) for e in range(len(residual)) for p in range(len(residual[0]))]
    while (far := max((abs(residual[e][p]) for e, p in cells), default=0)) >= scale:
        e, p = next((e, p) for e, p in cells if abs(residual[e][p]) == far)
        sign = 1 if residual[e][p] > 0 else -1
        best: tuple[tuple[int, int], int, dict[tuple[int, int], int]] | None = None
        for k, (low, high) in enumerate(bounds):
            for q in range(len(residual[0])):
                for f in range(len(residual)):
                    if q == p or f == e:
                        continue
                    moves = {(e, p): -sign, (e, q): sign, (f, q): -sign, (f, p): sign}
                    if not all(low[a][b] <= dealt[k][a][b] + v <= high[a][b] for (a, b), v in moves.items()):
                        continue
                    after = {(a, b): residual[a][b] + v * scale for (a, b), v in moves.items()}
                    gain = sum(residual[a][b] ** 2 - x ** 2 for (a, b), x in after.items())
                    rank = (max(abs(x) for x in after.values()), -gain)
                    if gain > 0 and (best is None or rank < best[0]):
                        best = (rank, k, moves)
        if best is None:
            return
        for (a, b), v in best[2].items():
            dealt[best[1]][a][b] += v
            residual[a][b] += v * scale


def within_speaker(speakers: Sequence[str], emotions: Sequence[str], cfg: SplitConfig) -> list[str]:
    """Split name per clip: every speaker's clips over the splits as `split_sizes` says, each of its emotions dealt as
    its clips are (rounded down or up), and each emotion's clips in a split within one clip of the sum of its
    speakers' shares (its share of the split where speakers' clips are dealt alike).

    Speakers are dealt one at a time in a seeded order, each the rounding that best evens out the corpus's counts so
    far (`_deal`), then pairs of a speaker's clips are swapped while an emotion is still a clip off (`_even_out`).
    Dealt within each speaker alone, speakers that hold different emotions (a clip of 3 of 4 emotions each) left
    one emotion with 10 train clips and another with 4 where each had 6 due. The counts are kept in integers, times
    the least common multiple of the speakers' clip counts (every share is then whole), so every choice is exact."""
    rng = np.random.default_rng(cfg.seed)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(speakers):
        by_speaker[s].append(i)
    names = sorted(set(emotions))
    scale = math.lcm(*(len(clips) for clips in by_speaker.values()))
    residual = [[0] * len(SPLITS) for _ in names]
    order = sorted(by_speaker)
    groups: list[dict[str, list[int]]] = []
    dealt: list[list[list[int]]] = []
    bounds: list[tuple[list[list[int]], list[list[int]]]] = []
    for j in rng.permutation(len(order)):
        members: dict[str, list[int]] = {name: [] for name in names}
        for i in by_speaker[order[j]]:
            members[emotions[i]].append(i)
        held = [len(members[name]) for name in names]
        sizes = split_sizes(sum(held), cfg)
        groups.append(members)
        dealt.append(_deal(held, sizes, residual, scale))
        bounds.append(_bounds(held, sizes))
        per_clip = scale // sum(held)
        for e, h in enumerate(held):
            for p, size in enumerate(sizes):
                residual[e][p] += dealt[-1][e][p] * scale - h * size * per_clip
    _even_out(dealt, bounds, residual, scale)
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


def held_out_fold(cfg: SplitConfig, split: str) -> int:
    """The speaker_disjoint fold that is the `split` ("test" or "val"): data.split.fold, and the fold after it."""
    return cfg.fold if split == "test" else (cfg.fold + 1) % cfg.folds


def split_of(within: str, fold: int, cfg: SplitConfig) -> str:
    """The split a clip belongs to under the configured scheme."""
    if cfg.scheme == "within_speaker":
        return within
    if fold == NO_FOLD:
        raise UsageError(f"these shards have too few speakers for data.split.folds={cfg.folds}; use "
                         "data.split.scheme=within_speaker or preprocess again with fewer folds")
    return next((split for split in ("test", "val") if fold == held_out_fold(cfg, split)), "train")


def split_id(cfg: SplitConfig) -> str:
    """A short name recorded with every result: which split the numbers are on."""
    if cfg.scheme == "within_speaker":
        return f"within_speaker/seed{cfg.seed}"
    return f"speaker_disjoint/fold{cfg.fold}of{cfg.folds}/seed{cfg.seed}"
