"""The confirmation's trials: the search front's configurations at more seeds (`confirm_points`), and the searcher
that suggests them in order (`FixedPoints`). The confirm experiment itself is set up and run by `sweep.confirm`."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pandas as pd
from ray.tune.search import Searcher

from avdis import results
from avdis.config import SEEDS, S3Config
from avdis.results import pareto
from avdis.tune.records import SEED, config_id


class FixedPoints(Searcher):
    """Suggests the given trial parameters in order, then FINISHED; its place survives a restore. Given `trials_at`
    (the sweep's folder and its s3), a restored one passes over the points after its place that trials.parquet
    records as ended, finished or failed, by confirming trials: a killed driver started them after Tune last saved its
    state, with this place, and they ended before the kill. Suggested again, each was trained again, a copy
    (`sweep.confirm` counts them apart, `resume.ended_apart`). Tune pickles the object with its experiment, `trials_at`
    with it (none in one pickled by an avdis before it)."""

    def __init__(self, points: list[dict[str, Any]], trials_at: tuple[str, S3Config | None] | None = None) -> None:
        super().__init__()
        self.points, self.next, self.trials_at = points, 0, trials_at

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.next >= len(self.points):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.points[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the points are fixed."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump({"points": self.points, "next": self.next}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.points, self.next = state["points"], state["next"]
        where = getattr(self, "trials_at", None)
        if where is not None:
            ended = results.ended(results.read_trials(*where), results.CONFIRM).dropna(subset=["seed"])
            done = set(zip(ended["config_id"], ended["seed"].astype(int)))
            self.points = self.points[:self.next] + [p for p in self.points[self.next:]
                                                     if (config_id(p), int(p[SEED])) not in done]


def confirm_points(trials: pd.DataFrame, seeds: int, axes: pareto.Axes = pareto.ACC) -> list[dict[str, Any]]:
    """The search front's (on `axes`) parameters with `seeds` more train.seed each, seed by seed across
    configurations: the next after its own that no search trial of the configuration trained. Where the space samples
    train.seed the search may have trained one (seed + 1 beside seed): trained again it was a bitwise copy, no
    other seed. Past the last seed a config takes (2**31 - 1) they go on from 0: a configuration at seed 2147483647
    (the config's own train.seed, or drawn from a space over every seed) was confirmed at seed 2147483648, which
    every confirming trial refused, after the whole search."""
    front = results.search_front(trials, axes)
    searched = trials[trials["role"].fillna(results.SEARCH) == results.SEARCH].dropna(subset=["seed"])
    trained = searched.groupby("config_id")["seed"].agg(lambda s: set(s.astype(int))).to_dict()

    def fresh(config: str, own: int) -> list[int]:
        untrained = (seed for seed in (each % SEEDS for each in itertools.count(own + 1))
                     if seed not in trained.get(config, set()))
        return list(itertools.islice(untrained, seeds))

    more = [(json.loads(row.params), fresh(row.config_id, int(row.seed))) for row in front.itertuples()]
    return [{**params, SEED: each[i]} for i in range(seeds) for params, each in more]
