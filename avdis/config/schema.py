"""The whole `Config`, the sweep's sections (what a sweep may sample, and how), and the walks along the schema by
dotted path (`settings`, `setting_of`). One module: the search space checks its keys against the `Config` it is
part of."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Self

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)
from pydantic.fields import FieldInfo

from avdis.config.locations import folder_name
from avdis.config.names import METHODS, WEIGHT_RANGES, EmotionMetric
from avdis.config.sections import (DataConfig, Location, MethodConfig, ModelConfig, ProbeConfig, RayConfig, S3Config,
                                   Section, Seed, TrainConfig)

# Sections a sweep may sample settings of (`sweep.space.params`), and the settings it may not: the method and its
# weight are drawn from `methods` and `weights`, and where a run is stored is not a knob of its result.
SAMPLED_SECTIONS = ("data", "model", "train", "method")
NOT_SAMPLED = ("method.name", "method.weight", "train.storage", "train.name")
# Settings a sweep holds for every trial, and why: the scheduler's rungs and the searcher judge each trial against
# train.epochs (a trial sampled to fewer was taken as stopped early, and told to the searcher as pruned).
PER_SWEEP = {"train.epochs": "MO-ASHA's rungs and the searcher judge every trial against it",
             "data.split.scheme": "a within-speaker test holds speakers the model trained on, a speaker-disjoint one "
                                  "speakers it never heard, so one front of both would compare the schemes, not the "
                                  "models; run one sweep per scheme",
             "data.split.fold": "each fold tests other speakers, with a probe of its own, so the searcher and "
                                "MO-ASHA would learn which fold reads well and one front would compare folds, not "
                                "models; run one sweep per fold",
             "train.probe_every": "MO-ASHA decides at each rung on the validation leakage, which a trial probes only "
                                  "at its probe epochs (under MO-ASHA the sweep sets sweep.scheduler.grace_epochs: "
                                  "every rung is a multiple of it)",
             # a key ending in "." holds the whole section: the probe judges every trial's leakage (a probe of 2
             # epochs and 1 hidden unit reads 0.05 on an embedding where the default probe reads 0.92)
             "probe.": "the leakage probe judges every trial; sampled, the search would pick the lenient probes "
                       "(fewer epochs or hidden units read less leakage) and the front would compare judges, not models"}
# Fixed when the shards are made (`avdis.data.shards.check_made_with`, `check_synth`): one sweep trains on one set of
# shards.
MADE_WITH_SHARDS = ("data.corpus", "data.src", "data.shards", "data.shard_size", "data.modality", "data.synth.",
                    "data.features.",
                    "data.split.folds", "data.split.val_fraction", "data.split.test_fraction", "data.split.seed")


class Range(Section):
    low: float
    high: float
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.low <= self.high:  # equal: one value (a weight held fixed while other settings are swept)
            raise ValueError(f"empty range: low={self.low} must be <= high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log range needs low > 0 (got {self.low})")
        if self.int and not (self.low.is_integer() and self.high.is_integer()):
            # cut to int(low) and int(high) when drawn: low=1.5 drew 1, below the range
            raise ValueError(f"int range needs whole-number ends (got low={self.low}, high={self.high})")
        return self


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(value: Any) -> float | int | None:
    """`value` where it is a number, also one written as a string, as pydantic takes it for a number setting: YAML
    1.1 reads 1e-1 as one (its floats need a '.'), and `adversarial: 1e-1` was refused as "not a valid Range" where
    `method.weight=1e-1` was taken. None otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return float(value) if isinstance(value, str) and _NUMBER.fullmatch(value.strip()) else None


class SearchSpace(Section):
    """Sampled per trial. `params` keys are dotted config paths (e.g. train.lr)."""

    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    weights: dict[str, Range] = Field(default_factory=lambda: {  # per method, conditional on it
        "adversarial": Range(low=0.05, high=3.0, log=True),
        "confusion": Range(low=0.05, high=3.0, log=True),
        "orthogonal": Range(low=0.1, high=30.0, log=True),
        "nullspace": Range(low=1, high=16, int=True),
    })
    params: dict[str, Range | list[Any]] = Field(default_factory=dict)

    @field_validator("weights", mode="before")
    @classmethod
    def _over_defaults(cls, weights: Any) -> Any:
        """A range given for one method leaves the others at their defaults, as a config leaves out any setting:
        taken whole, a YAML narrowing `adversarial` alone was refused for lacking `confusion`'s range. A number is
        that method's weight held fixed (`adversarial: 0.5`), a range of one value. A range without both ends
        (`sweep.space.weights.adversarial.low=0.1` over the defaults) is the method's default range with the given
        fields changed: it was refused for lacking `high`, which the user had not meant to change."""
        if not isinstance(weights, dict):
            return weights
        for m in weights:  # before the values: `adverserial: 0.5` was refused as "not a valid Range (got 0.5)"
            if m not in WEIGHT_RANGES:
                why = "method takes no weight" if m in METHODS else "no such method"
                near = difflib.get_close_matches(str(m), sorted(WEIGHT_RANGES), n=1)
                raise ValueError(f"sweep.space.weights.{m}: {why}; weighted methods: {sorted(WEIGHT_RANGES)}"
                                 + (f"; did you mean {near[0]}?" if near else ""))
        fixed = {m: {"low": w, "high": w, "int": WEIGHT_RANGES[m][2]} for m, v in weights.items()
                 if (w := _number(v)) is not None}
        defaults = cls.model_fields["weights"].default_factory()
        partial = {m: {**defaults[m].model_dump(), **v} for m, v in weights.items()
                   if isinstance(v, dict) and not {"low", "high"} <= v.keys()}
        return {**defaults, **weights, **partial, **fixed}

    @field_validator("params", mode="before")
    @classmethod
    def _no_single_values(cls, params: Any) -> Any:
        """A single value is no choice to sample: it failed as "not a valid dictionary or instance of Range", with
        no word of where a fixed setting goes."""
        for key, value in (params or {}).items() if isinstance(params, dict) else ():
            if not isinstance(value, (dict, list, Range)) and setting_of(str(key)) != key:
                # sweep.space.params.train.lr.low=0.1 was told to hold "train.lr.low" fixed with train.lr.low=0.1
                raise ValueError(_not_a_param(str(key)))
            if not isinstance(value, (dict, list, Range)):
                raise ValueError(f"{key}: {value!r} is one value, not a choice to sample: to hold "
                                 f"{key} fixed, set it ({key}={value}); to sample it, give choices ([a, b]) or a range "
                                 "({low: ..., high: ...})")
        return params

    @model_validator(mode="after")
    def _check(self) -> Self:
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r} in sweep.space.methods; allowed: {list(METHODS)}")
        twice = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if twice:  # each entry is one choice of the draw: a method listed twice was drawn twice as often
            raise ValueError(f"sweep.space.methods lists {', '.join(twice)} more than once; list each method once")
        for m, r in self.weights.items():
            low, high, integer = WEIGHT_RANGES[m]
            if (r.low < low if integer else r.low <= low) or r.high > high:
                raise ValueError(f"sweep.space.weights.{m}: [{r.low}, {r.high}] leaves the method's range "
                                 f"{'[' if integer else '('}{low}, {high}]")
            if integer and not r.int:
                raise ValueError(f"sweep.space.weights.{m}: the weight is a count of iterations; add int: true")
        for m in self.methods:
            if m in WEIGHT_RANGES and m not in self.weights:
                raise ValueError(f"sweep.space.weights.{m} is missing: method {m!r} needs a weight range")
        for key, choice in self.params.items():
            if key in NOT_SAMPLED:
                raise ValueError(f"sweep.space.params: {key} is not sampled here; the method and its weight come from "
                                 "sweep.space.methods and sweep.space.weights")
            if setting_of(key) != key:  # before the sections' refusals: a typo under one is named as a typo
                raise ValueError(f"sweep.space.params: {_not_a_param(key)}")
            held = [why for k, why in PER_SWEEP.items() if key == k or (k.endswith(".") and key.startswith(k))]
            if held:
                raise ValueError(f"sweep.space.params: {key} is one setting for the whole sweep: {held[0]}")
            if key.startswith(MADE_WITH_SHARDS):
                raise ValueError(f"sweep.space.params: {key} is fixed when the shards are made, so every trial of a "
                                 "sweep has the same; sweep it with one sweep per set of shards")
            section, _, rest = key.partition(".")
            if section not in SAMPLED_SECTIONS or not rest:
                raise ValueError(f"sweep.space.params: {key!r} is not a setting of {', '.join(SAMPLED_SECTIONS)} "
                                 "(write its dotted path, e.g. train.lr)")
            if isinstance(choice, list) and not choice:
                raise ValueError(f"sweep.space.params.{key}: empty list of choices")
            values = choice if isinstance(choice, list) else [choice.low, choice.high]
            field = fields_along(key)[-1]  # the setting itself: setting_of(key) == key
            takes = TypeAdapter(Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation,
                                config=ConfigDict(allow_inf_nan=Section.model_config["allow_inf_nan"]))
            read = []
            for value in values:  # its own type and bounds; rules tying it to other settings: each trial's config
                try:
                    read.append(takes.dump_python(takes.validate_python(value), mode="json"))
                except ValidationError as exc:
                    why = "; ".join(e["msg"] for e in exc.errors())
                    raise ValueError(f"sweep.space.params.{key}: {value!r} is not a value it takes ({why})") from None
            if isinstance(choice, list):
                # as the setting reads them: YAML reads 1e-4 as a string, which was drawn, recorded in trials.parquet
                # and told to the searcher as one
                if any(c in read[:i] for i, c in enumerate(read)):
                    raise ValueError(f"sweep.space.params.{key}: {choice} holds a value more than once, which would "
                                     "be drawn more often than the others; list each value once")
                self.params[key] = read
            if isinstance(choice, Range) and not choice.int and choice.low < choice.high:
                try:  # a draw inside: 8 and 32 pass for a count, 21.17 does not
                    takes.validate_python(math.nextafter(choice.low, choice.high))
                except ValidationError:
                    raise ValueError(f"sweep.space.params.{key}: the setting takes whole numbers, and this range "
                                     "draws between them; add int: true") from None
        return self


def _not_a_param(key: str) -> str:
    """Why `key` of sweep.space.params names no setting: a typo (probe.epoch), or a part of a setting's choice
    (train.lr.low: a range is given whole)."""
    owner = setting_of(key)
    if owner is not None:
        return (f"{key!r} is not a setting but a key inside {owner}'s value; a range or list of "
                f"choices is given whole: sweep.space.params.{owner}={{low: ..., high: ...}} or =[a, b]")
    near = difflib.get_close_matches(key, [path for path, _ in settings(Config)], n=1)  # probe.epoch: probe.epochs
    return (f"{key!r} is not a setting of {', '.join(SAMPLED_SECTIONS)} (write its dotted path, "
            "e.g. train.lr)" + (f"; did you mean {near[0]}?" if near else ""))


class SchedulerConfig(Section):
    """Multi-objective asynchronous successive halving (MO-ASHA)."""

    type: Literal["mo_asha", "none"] = "mo_asha"
    eta: int = Field(2, ge=2)
    grace_epochs: int = Field(2, ge=1)  # the first rung: epoch-1 values barely predict the last epoch's (replay)
    stopped_as: Literal["complete", "pruned"] = "pruned"  # how the searcher is told of a trial stopped at a rung
    # stop a trial outside the rung's top 1/eta only if a trial there beats it by this much in both objectives
    margin: float = Field(0.1, ge=0.0, le=1.0)


class SweepConfig(Section):
    name: str = "local"
    storage: Location = "runs/sweeps"  # local folder or s3://bucket/prefix; the sweep writes under <storage>/<name>/
    # Where the trials' checkpoints go (Tune's experiments, each trial's folder): <checkpoints>/<name>/. None: in the
    # sweep's folder. Apart, one S3 lifecycle rule can expire them and keep the results (infra/storage/README.md).
    checkpoints: Location | None = None
    search: Literal["tpe", "nsga2", "random"] = "tpe"
    num_samples: int = Field(12, ge=1)
    seed: Seed = 0  # the searcher's seed
    startup_trials: int = Field(6, ge=1)  # TPE: trials drawn at random before it models the results
    max_concurrent: int = Field(2, ge=1)
    confirm_seeds: int = Field(0, ge=0, le=20)  # after the search: re-train each front config with k more seeds
    trial_cpus: float = Field(0.1, gt=0)  # the trial driver; its TorchTrainer workers add their own
    # the front's emotion axis: what the searcher learns from, MO-ASHA stops on, the front is chosen and drawn on
    emotion_metric: EmotionMetric = "acc"
    # seconds: the scrape interval of the Prometheus that scrapes the cluster's Ray metrics. At its end the sweep holds
    # its last values until Ray exports them and this long more, so one scrape takes them (`metrics.settle`); 5 is
    # infra/prometheus/prometheus.yml's. 0: no Prometheus scrapes it, and the sweep ends without that wait
    prometheus_scrape_s: float = Field(5.0, ge=0, le=600)
    scheduler: SchedulerConfig = SchedulerConfig()
    space: SearchSpace = SearchSpace()

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        return folder_name("sweep.name", name, "sweep.storage")


class Config(Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    sweep: SweepConfig = SweepConfig()
    ray: RayConfig = RayConfig()
    s3: S3Config = S3Config()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.method.name == "nullspace" and self.method.weight is not None:
            check_nullspace("method.weight", self.method.weight, self.model.emb_dim)
        warmup = self.method.adversary.warmup_epochs
        if self.method.name in ("adversarial", "confusion") and warmup >= self.train.epochs:
            # the ramp reaches method.weight after warmup_epochs: the run trained below the weight it is recorded at
            raise ValueError(f"method.adversary.warmup_epochs={warmup} ramps method {self.method.name}'s weight up "
                             f"over at least all train.epochs={self.train.epochs}, so it trains below "
                             f"method.weight={self.method.weight:g} (recorded as its weight) to the end; set "
                             f"method.adversary.warmup_epochs < train.epochs")
        if self.method.name == "orthogonal" and self.train.batch_size < 2:
            # each micro-batch's covariance of z_emo and z_id is folded into a running one: one row has none (the
            # penalty stayed 0); two fold in the direction they span, and the running covariance fills in
            raise ValueError(f"method orthogonal folds each batch's covariance of z_emo and z_id into a running one, "
                             f"and train.batch_size={self.train.batch_size} has no covariance to fold in (it trained "
                             "as multitask); set train.batch_size >= 2 (rows per worker and micro-batch; "
                             "train.grad_accum does not add any)")
        return self


def check_nullspace(field: str, directions: float, emb_dim: int) -> None:
    """INLP removes one direction of z_emo per iteration: more than model.emb_dim would be recorded but not done, and
    all of them leave z_emo empty, a model that names every clip one emotion and leaks nothing by construction (such a
    trial sat on a sweep's front)."""
    if directions >= emb_dim:
        raise ValueError(f"{field}={directions:g}: nullspace removes at most model.emb_dim - 1 = {emb_dim - 1} "
                         f"directions of z_emo (model.emb_dim={emb_dim}); all of them leave it empty, a model that "
                         "names every clip one emotion and leaks nothing by construction")


def settings(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Each setting (a field that holds no section) under `model`, by its dotted path, in the schema's order."""
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from settings(sub, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def fields_along(path: str) -> list[FieldInfo]:
    """The schema fields a dotted path passes through, as far as the schema reaches (it ends at a field whose value is
    no section, or at a name Config does not have)."""
    model: Any = Config
    found: list[FieldInfo] = []
    for part in path.split("."):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            break
        found.append(fields[part])
        model = fields[part].annotation
    return found


def setting_of(path: str) -> str | None:
    """The setting a dotted `path` of a config dump lies in: `path` itself when it names a field, the field holding
    it when it lies inside a field's value (a key of sweep.space.params), None when Config has no such field."""
    parts, found = path.split("."), fields_along(path)
    if len(found) == len(parts):
        return path
    if found and getattr(found[-1].annotation, "model_fields", None) is None:
        return ".".join(parts[:len(found)])
    return None
