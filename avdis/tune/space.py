"""The search space as an Optuna define-by-run function, and trial parameters -> config overrides.

A trial draws `method` first; its weight is drawn only for methods that have one
(`weight_<method>`, so each method's weight is its own Optuna parameter and samplers
learn them separately); then every other knob of `sweep.space.params` (dotted config
paths). Random search uses the same space with Optuna's RandomSampler. NSGA-II breeds only
the parameters every trial holds (its intersection search space) and draws the rest at random,
so under it each trial draws every method's weight and uses its own method's.

`SweepSearch` is Ray's OptunaSearch with one choice added: a trial the scheduler stopped at
a rung can be told to Optuna as PRUNED (no values) instead of COMPLETE with its rung values,
which a sampler would otherwise take as the configuration's final result.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator

import optuna
from ray.tune.search.optuna import OptunaSearch

from avdis.config import Range, SearchSpace
from avdis.results import pareto

LEAKAGE = pareto.SELECTED[1]  # the leakage the searcher is told (validation clips')


def _suggest(trial: optuna.Trial, name: str, choice: Range | list[Any]) -> Any:
    if isinstance(choice, list):
        return trial.suggest_categorical(name, choice)
    if choice.int:
        return trial.suggest_int(name, int(choice.low), int(choice.high), log=choice.log)
    return trial.suggest_float(name, choice.low, choice.high, log=choice.log)


WEIGHT_PREFIX = "weight_"  # the trial parameter holding a method's weight is weight_<method>


def weight_key(method: str) -> str:
    return f"{WEIGHT_PREFIX}{method}"


@dataclass(frozen=True)
class DefineByRun:
    """Optuna's define-by-run space; a plain object so Tune can pickle the searcher's state."""

    space: SearchSpace
    every_weight: bool = False  # draw each method's weight in every trial (NSGA-II)

    def __call__(self, trial: optuna.Trial) -> None:
        method = trial.suggest_categorical("method", self.space.methods)
        for name in self.space.methods if self.every_weight else [method]:
            if name in self.space.weights:
                _suggest(trial, weight_key(name), self.space.weights[name])
        for key, choice in self.space.params.items():
            _suggest(trial, key, choice)


def corners(space: SearchSpace) -> Iterator[dict[str, Any]]:
    """Every trial parameters at the space's edges (each method at both ends of its weight range, every knob at
    both ends or each of its choices, and a real-number knob just inside its low end too): where a setting sampled
    against another breaks a rule they share. The draw inside finds rules that refuse values between whole numbers
    (fractional GPUs with several workers), which both ends of 0..1 pass. A caller that builds only the first N still
    reaches every method at each end of its weight, each with every value of every knob: the blocks (a method at one
    weight) are taken in turn, and each gives first its knobs' values one knob at a time, then their every
    combination (method by method, a space of a few knobs used the N up within its first methods; in turn, on the
    product alone, a block's first knobs stayed at their first value)."""
    def ends(choice: Range | list[Any]) -> list[Any]:
        if isinstance(choice, list):
            return choice
        if choice.int:
            return [int(choice.low), int(choice.high)]
        return [choice.low, math.nextafter(choice.low, choice.high), choice.high]

    keys = list(space.params)
    values = [ends(space.params[k]) for k in keys]
    at_first = tuple(0 for _ in values)  # indices into each knob's values
    singles = [at_first, *(at_first[:i] + (j,) + at_first[i + 1:] for i, vs in enumerate(values)
                           for j in range(1, len(vs)))]
    given = set(singles)

    def block(method: str, weight: Any) -> Iterator[dict[str, Any]]:
        everything = itertools.product(*(range(len(vs)) for vs in values))
        for combo in itertools.chain(singles, (c for c in everything if c not in given)):
            params = {"method": method, **{k: vs[j] for k, vs, j in zip(keys, values, combo)}}
            if weight is not None:
                params[weight_key(method)] = weight
            yield params

    blocks = [block(method, weight) for method in space.methods
              for weight in (ends(space.weights[method]) if method in space.weights else [None])]
    for turn in itertools.zip_longest(*blocks):
        yield from (params for params in turn if params is not None)


def to_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """Tune's trial config -> dotted config overrides."""
    method = params["method"]
    out: dict[str, Any] = {"method.name": method, "method.weight": params.get(weight_key(method))}
    out.update({k: v for k, v in params.items() if "." in k})
    return out


def sampler(kind: str, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup_trials)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    return optuna.samplers.RandomSampler(seed=seed)


class SweepSearch(OptunaSearch):
    """OptunaSearch that tells a trial which ended before `full_epochs` as PRUNED when `stopped_as` is "pruned", and
    its leakage as the front and MO-ASHA read it (`pareto.points`): below 0, a probe under the label-only guess by
    noise, it is 0, so the sampler is not drawn toward trials whose probe was unlucky."""

    def __init__(self, *, full_epochs: int, stopped_as: str = "complete", time_attr: str = "epoch", **kwargs: Any):
        super().__init__(**kwargs)
        self.full_epochs, self.stopped_as, self.time_attr = full_epochs, stopped_as, time_attr

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        stopped = bool(result) and int(result.get(self.time_attr, self.full_epochs)) < self.full_epochs
        if stopped and not error and self.stopped_as == "pruned":
            result = None  # OptunaSearch tells a trial with no values and no error as PRUNED
        elif result and (result.get(LEAKAGE) or 0) < 0:
            result = {**result, LEAKAGE: 0.0}
        super().on_trial_complete(trial_id, result=result, error=error)
