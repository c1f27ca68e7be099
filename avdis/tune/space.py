"""The search space as an Optuna define-by-run function, and trial parameters -> config overrides.

A trial draws `method` first; its weight is drawn only for methods that have one
(`weight_<method>`, so each method's weight is its own Optuna parameter and samplers
learn them separately); then every other knob of `sweep.space.params` (dotted config
paths). Random search uses the same space with Optuna's RandomSampler. NSGA-II breeds only
the parameters every trial holds (its intersection search space) and draws the rest at random,
so under it each trial draws every method's weight and uses its own method's.

`SweepSearch` is Ray's OptunaSearch with two things added. A trial the scheduler stopped at
a rung can be told to Optuna as PRUNED (no values) instead of COMPLETE with its rung values,
which a sampler would otherwise take as the configuration's final result. And a configuration
is trained once: training is deterministic, so a suggestion whose configuration (`config_key`:
every sampled parameter, `train.seed` included, but other methods' weights) was trained
already would give a bitwise copy. The first such draw of a configuration is told to the study
with the earlier trial's values, as Optuna's FAQ does with duplicated parameters (one equal to a
trial still running stays running in the study and is told that trial's values when it ends),
a later one as FAIL, which samplers leave out, and the study is asked again. After `MAX_ASKS`
draws that all repeat, the untried configuration nearest the last draw is enqueued. Each
repeat told its values used to be one more COMPLETE trial: where a method without a weight won
and nothing real-numbered was sampled, the study held some 420 trials at 100 trained, TPE's
start-up trials were mostly repeats, and a suggestion took 0.13 s (bench/search_repeats.py). A
space of finitely many configurations (`space_size`: choices only, no real-number range) whose
every configuration was tried ends the search (`Searcher.FINISHED`): a space of two
parameterless methods trains two trials, whatever `sweep.num_samples` says. So does a searcher given `num_samples`
once it has suggested that many trials, the trials of a killed driver it learned on resume (`learn_recorded`) among
them: Tune's own count of `sweep.num_samples`, restored with its experiment, never held those, and a resumed sweep
whose space was not spent first trained `sweep.num_samples` Tune trials besides them.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import optuna
import pandas as pd
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils.util import unflatten_dict

from avdis import results
from avdis.config import Range, S3Config, SearchSpace
from avdis.results import pareto

LEAKAGE = pareto.SELECTED[1]  # the leakage the searcher is told (validation clips')
MAX_ASKS = 3  # draws of one suggestion that may repeat a tried configuration before an untried one is enqueued
RANDOM_DRAWS = 100  # where the space is endless (or large): uniform draws looked through for an untried configuration
POOL = 2000  # a space of choices of at most this many configurations is looked through whole for an untried one
_ABSENT = object()
log = logging.getLogger(__name__)


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


def own_params(params: dict[str, Any]) -> dict[str, Any]:
    """The trial parameters that make its configuration: all but the weights of other methods than its own, which it
    does not use (under NSGA-II every trial draws every method's weight)."""
    own = weight_key(params.get("method"))
    return {k: v for k, v in params.items() if k == own or not k.startswith(WEIGHT_PREFIX)}


def config_key(params: dict[str, Any]) -> str:
    """What one training is: its own parameters, `train.seed` included where sampled (where it is not, every trial of
    the sweep trains with the config's seed). Two trials of one key train bitwise alike."""
    return json.dumps(own_params(params), sort_keys=True, default=str)


def _values(choice: Range | list[Any]) -> Sequence[Any] | None:
    """Every value a parameter can be drawn at, as the sampler gives it; None for a real-number range (endless). An
    int range is a `range`, never a list: `train.seed` sampled over {low: 0, high: 2147483647, int: true} (its whole
    range) was listed, 2**31 ints, at the sweep's start and at every suggestion."""
    if isinstance(choice, list):
        return list(choice)
    if choice.int:
        return range(int(choice.low), int(choice.high) + 1)
    return [choice.low] if choice.low == choice.high else None


def _product(values: list[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """`itertools.product` of the values, drawn as it goes (itertools.product lists each of them first)."""
    if not values:
        yield ()
        return
    for value in values[0]:
        for rest in _product(values[1:]):
            yield (value, *rest)


def _choices(space: SearchSpace) -> tuple[dict[str, Sequence[Any]], dict[str, Sequence[Any]]] | None:
    """Every value of each knob, and each method's weights ([None] for a method without one); None where a
    real-number range makes the space endless."""
    knobs = {k: _values(c) for k, c in space.params.items()}
    weights = {m: _values(space.weights[m]) if m in space.weights else [None] for m in space.methods}
    if any(v is None for v in (*knobs.values(), *weights.values())):
        return None
    return knobs, weights


def configurations(space: SearchSpace) -> Iterator[dict[str, Any]] | None:
    """Every configuration of a space of choices (each method at each of its weights, with every combination of the
    knobs), in order, as trial parameters; None where a real-number range makes them endless."""
    choices = _choices(space)
    if choices is None:
        return None
    knobs, weights = choices

    def each() -> Iterator[dict[str, Any]]:
        for method in space.methods:
            for weight in weights[method]:
                for combo in _product(list(knobs.values())):
                    params = {"method": method, **({weight_key(method): weight} if weight is not None else {})}
                    yield {**params, **dict(zip(knobs, combo))}
    return each()


def space_size(space: SearchSpace) -> int | None:
    """How many configurations the space holds (None: endless, a real-number range in it)."""
    choices = _choices(space)
    if choices is None:
        return None
    knobs, weights = choices
    return sum(len(w) for w in weights.values()) * math.prod(len(v) for v in knobs.values())


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


def _outcome(told: optuna.trial.FrozenTrial) -> tuple[optuna.trial.TrialState, list[float] | None]:
    """What the study holds of an ended Tune trial, as a repeat of its configuration is told it: its state and, if it
    completed, its values. A tell Optuna refused (OptunaSearch logs it) leaves the trial running: its configuration
    failed."""
    state = told.state if told.state.is_finished() else optuna.trial.TrialState.FAIL
    return state, told.values if state == optuna.trial.TrialState.COMPLETE else None


class SweepSearch(OptunaSearch):
    """OptunaSearch that tells a trial which ended before `full_epochs` as PRUNED when `stopped_as` is "pruned", and
    its leakage as the front and MO-ASHA read it (`pareto.points`): below 0, a probe under the label-only guess by
    noise, it is 0, so the sampler is not drawn toward trials whose probe was unlucky.

    It suggests no configuration twice (module docstring). What it knows of them is in its own state, which Tune saves
    with the experiment and restores on resume (and, given `trials_at`, what trials.parquet holds of trials that ended
    after Tune's last save: `learn_recorded`): `_told`, each configuration trained (key -> the state and values the
    study was told of it, a failure included: training is deterministic, so it fails again), `_running` (key -> the
    Tune trial training it), `_waiting` (Tune trial -> the study's trial that first drew its configuration again while
    it ran: it stays RUNNING in the study, as the trial itself does, and is told its values when it ends. Told PRUNED
    at once, it would tell TPE the configuration it had just chosen as a good one was worse than any finished), and
    `_repeated` (the configurations drawn again once: a later draw of one is told as FAIL).

    Given `num_samples` (the sweep's), it ends the search once it has suggested that many trials (`_ot_trials`: each
    Tune trial it suggested, and each trial it learned from trials.parquet); None: as many as it is asked for."""

    num_samples: int | None = None  # a searcher Tune pickled before it was given one (an older sweep's): no end

    def __init__(self, *, full_epochs: int, stopped_as: str = "complete", time_attr: str = "epoch",
                 trials_at: tuple[str, S3Config | None] | None = None, num_samples: int | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.full_epochs, self.stopped_as, self.time_attr = full_epochs, stopped_as, time_attr
        self.num_samples = num_samples
        self.trials_at = trials_at  # the sweep's folder holding trials.parquet (and its s3), for `restore`
        self._told: dict[str, tuple[optuna.trial.TrialState, list[float] | None]] = {}
        self._running: dict[str, str] = {}
        self._waiting: dict[str, list[optuna.Trial]] = {}
        self._repeated: set[str] = set()

    def exhausted(self) -> bool:
        """Every configuration of a space of finitely many was trained or is training."""
        size = space_size(self._space.space)
        return size is not None and len(self._told) + len(self._running) >= size

    def suggest(self, trial_id: str) -> dict | str | None:
        if not isinstance(self._space, DefineByRun) or trial_id in self._ot_trials:
            return super().suggest(trial_id)
        if self.exhausted():
            log.info("sweep search: every one of the space's %d configurations was tried; the search ends",
                     space_size(self._space.space))
            return Searcher.FINISHED
        if self.num_samples is not None and len(self._ot_trials) >= self.num_samples:
            log.info("sweep search: %d trials suggested or learned, sweep.num_samples; the search ends",
                     self.num_samples)
            return Searcher.FINISHED
        params: dict[str, Any] = {}  # the last draw, near which an untried configuration is looked for
        for ask in range(MAX_ASKS + 1):
            last = ask == MAX_ASKS
            if last and not self._enqueue_untried(params):
                log.warning("sweep search: %d draws repeated configurations already tried and %d random draws found "
                            "no untried one; the next is trained whatever it is", MAX_ASKS, RANDOM_DRAWS)
            ot_trial = self._ot_study.ask()
            params = self._suggest_from_define_by_run_func(self._space, ot_trial)
            key = config_key(params)
            if (key in self._told or key in self._running) and not last:  # tried: trained no more
                if key in self._repeated:  # a repeat after the first: told as failed, which samplers leave out
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                elif key in self._told:  # the first: the earlier trial's values (Optuna's FAQ on duplicates)
                    self._ot_study.tell(ot_trial, self._told[key][1], state=self._told[key][0])
                else:  # the first of one still training: it waits for that trial's values
                    self._waiting.setdefault(self._running[key], []).append(ot_trial)
                self._repeated.add(key)
            else:
                break
        self._start(trial_id, ot_trial, key)
        return unflatten_dict(params)

    def _start(self, trial_id: str, ot_trial: optuna.Trial, key: str) -> None:
        """Tune trial `trial_id` trains the study's `ot_trial`, of configuration `key`."""
        self._ot_trials[trial_id] = ot_trial
        if key not in self._told and key not in self._running:  # (a copy trained in spite of all is told as itself)
            self._running[key] = trial_id

    def _enqueue_untried(self, near: dict[str, Any]) -> bool:
        """Put first in the study's queue the untried configuration nearest `near` (the sampler's last draw, a
        configuration tried): the fewest parameters changed, the first such in order. Looked for among every
        configuration of a space of at most `POOL`, else among `RANDOM_DRAWS` random draws (seeded by the study's
        length: the same sweep enqueues the same), and where those are all tried, the first untried in order."""
        tried = {*self._told, *self._running}
        size = space_size(self._space.space)
        if size is not None and size <= POOL:
            pool = configurations(self._space.space)
        else:
            scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=len(self._ot_study.trials)))
            pool = (self._space(t) or t.params for t in (scratch.ask() for _ in range(RANDOM_DRAWS)))
        untried = [params for params in pool if config_key(params) not in tried]
        if not untried and size is not None:
            untried = list(itertools.islice((p for p in configurations(self._space.space)
                                             if config_key(p) not in tried), 1))
        if not untried:
            return False
        mine = own_params(near)
        changed = [sum(theirs.get(k, _ABSENT) != mine.get(k, _ABSENT) for k in {*theirs, *mine})
                   for theirs in map(own_params, untried)]
        self._ot_study.enqueue_trial(own_params(untried[changed.index(min(changed))]))
        return True

    def _failed(self, trial_id: str) -> bool:
        """Whether the study was told Tune trial `trial_id` failed (Tune's error, or a tell Optuna refused)."""
        if trial_id not in self._completed_trials or trial_id not in self._ot_trials:
            return False
        told = self._ot_study.get_trials(deepcopy=False)[self._ot_trials[trial_id].number]
        return _outcome(told)[0] == optuna.trial.TrialState.FAIL

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._failed(trial_id):  # run again (`--retry-failed`): learned if it finished, still failed if not
            if result and not error:
                self._learn(trial_id, self._ot_study.get_trials(deepcopy=False)[self._ot_trials[trial_id].number]
                            .params, result, failed=False)
            return
        stopped = bool(result) and int(result.get(self.time_attr, self.full_epochs)) < self.full_epochs
        if stopped and not error and self.stopped_as == "pruned":
            result = None  # OptunaSearch tells a trial with no values and no error as PRUNED
        elif result and (result.get(LEAKAGE) or 0) < 0:
            result = {**result, LEAKAGE: 0.0}
        super().on_trial_complete(trial_id, result=result, error=error)
        key = next((k for k, t in self._running.items() if t == trial_id), None)
        if key is None:  # told before (Tune's second completion), or not this searcher's suggestion
            return
        state, values = _outcome(self._ot_study.get_trials(deepcopy=False)[self._ot_trials[trial_id].number])
        del self._running[key]
        self._told[key] = (state, values)
        for waiting in self._waiting.pop(trial_id, []):
            self._ot_study.tell(waiting, values, state=state)

    def restore(self, checkpoint_path: str) -> None:
        """OptunaSearch's restore, then what the saved state does not know of the trials the sweep recorded
        (`learn_recorded`). A searcher saved by an avdis that kept no record of configurations (it trained them
        again) learns them from its study: each of its Tune trials, told or still running."""
        for name in ("_told", "_running", "_waiting", "_repeated"):  # the saved state's, not this object's
            self.__dict__.pop(name, None)
        super().restore(checkpoint_path)
        self.__dict__.setdefault("_repeated", set())  # saved before it was kept: each repeated once more at most
        if "_told" not in self.__dict__:
            self._record_from_study()
        where = self.__dict__.get("trials_at")  # none in a searcher pickled by an avdis before it (or the replay's)
        if where is not None:
            self.learn_recorded(results.read_trials(*where))

    def _record_from_study(self) -> None:
        self._told, running, self._waiting = {}, {}, {}
        trials = self._ot_study.get_trials(deepcopy=False)
        for trial_id, ot_trial in self._ot_trials.items():
            told = trials[ot_trial.number]
            key = config_key(told.params)
            if trial_id in self._completed_trials:
                self._told[key] = _outcome(told)
            else:
                running.setdefault(key, trial_id)
        # that avdis trained copies: one still running of a configuration told is a copy, as the suggestion of this
        # one trains them ("told as itself"), and counted as running too it made a configuration never tried look
        # tried (`exhausted`: told 1 + running 1 of a space of 2 ended the search before its second configuration)
        self._running = {key: trial_id for key, trial_id in running.items() if key not in self._told}

    def learn_recorded(self, trials: pd.DataFrame) -> list[str]:
        """Tell the study the search trials of `trials` (the sweep's trials.parquet) that ended, finished or failed,
        and that this searcher does not know: a killed driver started them after Tune last saved its state, with
        this searcher's, and they ended before it was killed. Unknown to the restored sampler, their
        configurations were drawn again (its seeded draws replay the killed driver's) and trained again, copies.
        Each is suggested and completed here as Tune would have done it, in the order they ended (`updated_at`):
        its recorded params enqueued, its recorded result told by `on_trial_complete` (stopped as `stopped_as`,
        leakage below 0 as 0, a failure as FAIL). A trial recorded as running, or closed as lost
        (`results.LOST`), has no result: its configuration is left to be drawn and trained again. So is a trial this
        searcher was told failed that the table records as finished: Tune ran it again (`--retry-failed`) and it
        finished after Tune last saved its state (its end, passed on by Tune's ConcurrencyLimiter while it runs:
        `on_trial_complete`, was not saved). Returns the trial ids learned."""
        ended = results.ended(trials, results.SEARCH)
        retried = ended[ended["order"].notna() & ended["trial_id"].map(self._failed)]
        ended = ended[~ended["trial_id"].isin(list(self._ot_trials))]
        learned = pd.concat([ended, retried]) if len(retried) else ended
        if "updated_at" in learned:
            learned = learned.sort_values("updated_at", kind="stable")
        for row in learned.to_dict("records"):
            failed = row["status"] == "ERROR"
            result = None if failed else {self.time_attr: row["epochs"], **{
                metric: None if pd.isna(row.get(metric)) else row[metric] for metric in self.metric}}
            self._learn(row["trial_id"], json.loads(row["params"]), result, failed)
        if len(ended):
            log.info("sweep search: told the study %d trials recorded after Tune's last save", len(ended))
        if len(retried):
            log.info("sweep search: told the study %d failed trials Tune ran again", len(retried))
        return list(learned["trial_id"])

    def _learn(self, trial_id: str, params: dict[str, Any], result: dict | None, failed: bool) -> None:
        """Suggest and complete Tune trial `trial_id` as Tune would have done it: `params` enqueued and asked, `result`
        told by `on_trial_complete`. One told as failed before (run again by Tune) is asked anew: its failure stays
        in the study (samplers leave failures out), and its configuration is told its result in its place. It is
        still one trial of `num_samples` (`_ot_trials`, by Tune trial)."""
        self._completed_trials.discard(trial_id)
        self._ot_study.enqueue_trial(params)
        ot_trial = self._ot_study.ask()
        key = config_key(self._suggest_from_define_by_run_func(self._space, ot_trial))
        if self._told.get(key, (None,))[0] == optuna.trial.TrialState.FAIL:
            del self._told[key]
        self._start(trial_id, ot_trial, key)
        self.on_trial_complete(trial_id, result, error=failed)
