"""Typed configuration: one YAML file plus dotted overrides, validated at the edge.

Every job reads a `Config`. A bad file, key or value raises `ConfigError`, whose
message names the key path and the allowed values or keys; the CLI turns it into
exit code 2 before any work starts. Code past the edge trusts these objects.
"""

from __future__ import annotations

import datetime
import difflib
import math
import os
import re
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo,
                      field_validator, model_validator)
from pydantic.fields import FieldInfo

from avdis.errors import UsageError

EMOTIONS: tuple[str, ...] = (
    "neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised", "calm",
)
"""Canonical emotion names; corpora map their codes onto these words."""

# The one list of each set of names: the Literal validates configs, the tuple is what code
# iterates and the CLI offers; registries keyed by these names are tested against them.
MethodName = Literal["single_task", "multitask", "adversarial", "confusion", "orthogonal", "nullspace"]
METHODS: tuple[str, ...] = get_args(MethodName)
SplitScheme = Literal["within_speaker", "speaker_disjoint"]
SCHEMES: tuple[str, ...] = get_args(SplitScheme)
PresetName = Literal["tiny", "base", "large"]
PRESETS: tuple[str, ...] = get_args(PresetName)
Modality = Literal["audio", "visual", "av"]
MODALITIES: tuple[str, ...] = get_args(Modality)
Strategy = Literal["single", "ddp", "deepspeed"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
Corpus = Literal["synthetic", "ravdess", "cremad"]
CORPORA: tuple[str, ...] = get_args(Corpus)
IdentityCues = Literal["on", "voice", "off"]
EmotionCues = Literal["mixed", "dynamics"]

# What `method.weight` means for each method, and its allowed range (low, high, integer).
WEIGHT_RANGES: dict[str, tuple[float, float, bool]] = {
    "adversarial": (0.0, 10.0, False),  # gradient-reversal strength
    "confusion": (0.0, 10.0, False),  # weight of the cross-entropy to uniform
    "orthogonal": (0.0, 100.0, False),  # weight of the canonical-correlation penalty
    "nullspace": (1, 64, True),  # INLP iterations
}

# The emotion metric a sweep's front is drawn on (`sweep.emotion_metric`): accuracy, or unweighted average recall,
# which a model naming every clip the majority emotion does not lead on (corpora heavy in one emotion report UAR).
EmotionMetric = Literal["acc", "uar"]
EMOTION_METRICS: tuple[str, ...] = get_args(EmotionMetric)
EMOTION_WORDS: dict[str, str] = {"acc": "accuracy", "uar": "UAR"}  # each in words, for messages and labels


def objectives(emotion: EmotionMetric = "acc") -> dict[str, Literal["max", "min"]]:
    """The mission's two objectives on the test split, with `emotion`'s metric: what the report gives for every
    trial and front point."""
    return {f"emotion_{emotion}": "max", "leakage": "min"}


def selection(emotion: EmotionMetric = "acc") -> dict[str, Literal["max", "min"]]:
    """The same two on validation clips: what the searcher learns from, MO-ASHA stops on and the front is chosen by,
    so that no choice a sweep makes has seen the test clips its report is measured on (chosen on test, a front is
    optimistic by the test set's noise)."""
    return {f"val_{name}": mode for name, mode in objectives(emotion).items()}


# Accuracy's, the default's: the two every run measures and checks, whatever a sweep draws its front on.
OBJECTIVES = objectives()
SELECTION = selection()
# How a trial's numbers are made where avdis changed it, so the same trial now gives others: a run and a sweep record
# those of their methods (`measures_of`) and are not resumed under others (old and new numbers would share one front).
MEASURES: dict[str, str] = {
    "leakage": "probes on z_emo with the one-hot emotion beside it, each predicting by the label alone where it does "
               "not beat it out of fold, the MLP training on past probe.epochs while its best out-of-fold epoch lies "
               "in the last quarter of those run (since 2026-12-05: z_emo alone before 2026-12-04, then the probes "
               "always predicting, then the MLP alone falling back, then the MLP stopping at probe.epochs)",
    "orthogonal": "mean squared canonical correlation of z_emo and z_id, its covariances running over batches "
                  "(since 2026-12-04: per coordinate before, then one batch's covariances)",
    "speaker_disjoint": "the probes of a held-out fold judge every clip of it they do not fit on, its within-speaker "
                        "test and validation clips (since 2026-12-05: the test fold's test clips alone for leakage, "
                        "the validation fold's validation clips alone for val_leakage)",
}


def measures_of(methods: list[str], scheme: str) -> dict[str, str]:
    """The `MEASURES` that make the numbers of runs of `methods` under the split `scheme`: one named after a method
    (its penalty) makes that method's alone, one named after a scheme (how its probes judge) that scheme's alone, the
    others (the leakage probe) every run's. A run or sweep records and is checked on these alone: checked on all, a
    change to orthogonal's penalty refused the resume of a run or sweep of any method."""
    return {name: how for name, how in MEASURES.items()
            if (name not in METHODS or name in methods) and (name not in SCHEMES or name == scheme)}


def measured_otherwise(recorded: dict[str, str], now: dict[str, str], whose: str) -> str | None:
    """How a run's or sweep's numbers were made otherwise than this avdis makes them, in words: each of the measures
    `now` (`measures_of`) it `recorded` otherwise, how it is made now and how `whose` were ("not recorded, so the one
    before" where it recorded none: begun before the measure changed). None where none differs. One wording for the
    refusal of a sweep's resume (`spec.check_spec`) and a run's (`checkpoint.check_compatible`): the run's said only
    that its checkpoint "records no measures.speaker_disjoint: an older avdis wrote it"."""
    changed = [f"{name}: {how} ({whose}: {recorded.get(name, 'not recorded, so the one before')})"
               for name, how in now.items() if recorded.get(name) != how]
    return f"measured otherwise than this avdis measures them ({'; '.join(changed)})" if changed else None
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


def folder_name(field: str, name: str, parent: str) -> str:
    """`name` if it is one folder name under `parent` (a path could write outside it), else ValueError."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"{field} {name!r} must be one folder name: letters, digits, '.', '_' and '-', starting with "
                         f"a letter or digit (one started under a name with '/' is reached with the part before the "
                         f"last '/' added to {parent})")
    return name


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")  # s3:/b and S3://b too; a relative path `exp:1/out` is a path
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_GLOB = "[]*?"  # fsspec's glob characters


def location(value: str, local_only: bool = False) -> str:
    """`value` if it is a local path (or file://) or, unless `local_only`, s3://bucket[/prefix]; else ValueError.
    A mistyped URL (`s3:/b`, `S3://b`, `s3://`) would otherwise become a local folder named after it, and a job's
    results would land in a copy of the tree that is thrown away. An empty one would be the working directory."""
    if not value.strip():
        raise ValueError("empty; give a folder or s3://bucket/prefix (null, for a setting that has a default)")
    if not _SCHEME.match(value) or value.startswith("file://"):
        return value
    if value.startswith("s3://") and not local_only:
        bucket, *prefix = value.removeprefix("s3://").rstrip("/").split("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-'); "
                             "give s3://bucket/prefix")
        if "" in prefix:  # s3fs reads "a//b" as "a/b" when listing but not when writing: the work was lost at the end
            raise ValueError("holds an empty folder name ('//'); write s3://bucket/a/b")
        if dots := sorted({part for part in prefix if part in (".", "..")}):
            # Ray's storage (pathlib) drops a '.': a run's checkpoints under s3://b/a/./x went to a/x, where avdis's
            # own reads of a/./x never looked; s3://b/a/../x wrote under a folder named '..', not under x
            raise ValueError(f"holds {' and '.join(repr(d) for d in dots)} as a folder name, which S3 keeps as a "
                             "name, not as this folder or the one above (and Ray's storage drops a '.', writing "
                             "where avdis does not read); write s3://bucket/a/b")
        if pattern := sorted(set("".join(prefix)) & set(_GLOB)):  # s3fs deletes by pattern: a run's pruning
            raise ValueError(f"holds {' '.join(pattern)}, which s3fs reads as a pattern when it deletes (a run "
                             "under s3://b/exp[1] pruned another run's checkpoints under s3://b/exp1); name the "
                             "prefix without [ ] * ?")
        return "/".join([f"s3://{bucket}", *prefix])  # one spelling: a trailing '/' named another run
    kinds = "a local folder (copy the corpus out of object storage first)" if local_only else \
        "a local path or s3://bucket/prefix (the storage avdis reads and writes; schemes are lowercase)"
    raise ValueError(f"not {kinds}")


# numpy's seeds stop at 2**32 - 1, and a sweep's confirming seeds add up to 20: refused at the edge, not in a traceback
# after preprocessing
SEEDS = 2**31  # how many seeds a config takes: 0 to 2**31 - 1
Seed = Annotated[int, Field(ge=0, le=SEEDS - 1)]
Location = Annotated[str, AfterValidator(location)]
LocalFolder = Annotated[str, AfterValidator(lambda v: location(v, local_only=True))]


MIN_FOLDS = 3  # speaker_disjoint: a test fold, a validation fold and training speakers


class ConfigError(UsageError):
    """A config that cannot be used; the message says where and how to fix it."""


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type holds true/false itself (bool, a Literal of them, Any, or a union with one)."""
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, bool) for choice in get_args(annotation))
    return any(_takes_bool(arg) for arg in get_args(annotation))


class _Section(BaseModel):
    # no setting takes infinity or NaN (YAML reads 1e400 as infinity): probe.lr=.inf trained a probe to NaN
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: Any) -> Any:
        """pydantic takes true as 1 for a number: `train.epochs: yes` (YAML's true) trained one epoch."""
        if isinstance(value, bool) and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("YAML reads this as a yes/no (true, false, yes, no, on, off), which this setting does not "
                             "take: give a number, or quote a name ('yes')")
        return value


def region_fault(region: str | None) -> str | None:
    """Why botocore refuses `region` ('is not a region name botocore takes: ...'), None where it takes it or there is
    none: the one rule for s3.region (`S3Config`) and the region of the environment or AWS profile
    (`avdis.storage.check_environment`). botocore's rule (`botocore.utils.validate_region_name`, one DNS label) matched
    whole, not botocore's own check, whose `$` lets a trailing newline through ('eu-west-1\\n', as a Kubernetes
    ConfigMap made from a file gives it), which failed at the first S3 call as 'Invalid endpoint'. No narrower: S3
    servers other than AWS take names of their own (MinIO us-east-1, Garage garage, Ceph default)."""
    if not region or re.fullmatch(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)", region):
        return None
    return ("is not a region name botocore takes: letters, digits and '-' (at most 63, not all digits, no '-' first or "
            "last), e.g. eu-west-1, or the one your S3 server names")


def endpoint_fault(url: str | None) -> str | None:
    """Why `url` is no S3 endpoint botocore takes ('is not an endpoint URL; ...'), None where it is or there is none:
    the one rule for s3.endpoint_url (`S3Config`) and the endpoint of the environment or AWS profile
    (`avdis.storage.check_environment`). An http:// or https:// URL, in either case (botocore checks no scheme:
    AWS_ENDPOINT_URL=s3://minio:9000 passed) whose host botocore takes (`is_valid_endpoint_url`, imported here only
    where an endpoint is given: ~70 ms), a DNS name or an IP address: s3.endpoint_url=http://minio_1:9000 (a Compose
    container's name) failed at the first S3 call as 'cannot reach storage (ValueError: Invalid endpoint ...)'. Its
    port and query as botocore's endpoint resolution reads them (`botocore.endpoint_provider`'s parse_url), which
    refused 'http://minio:9000 ' (a space after it), port 99999 or '...?region=x' only at the first call ('Custom
    endpoint ... was not a valid URI')."""
    if not url:
        return None
    if url[0].isspace():  # the advice below would put the spaces after http://
        return "is not an endpoint URL; it starts with a space: remove it"
    if not re.match(r"https?://[^/]", url, re.IGNORECASE):  # botocore reads HTTPS:// as https://
        host = url.split(":", 1)[1].lstrip("/") if re.match(r"[A-Za-z][\w+.-]*:/", url) else url
        return f"is not an endpoint URL; give it with its scheme, e.g. http://{host}"
    if re.search(r"[\t\r\n]", url):  # botocore's UNSAFE_URL_CHARS: its host check below refuses them too
        return ("is not an endpoint URL botocore takes: it holds a line break or tab (a file's last newline, say); "
                "remove it")
    import botocore.utils

    if not (botocore.utils.is_valid_endpoint_url(url) or botocore.utils.is_valid_ipv6_endpoint_url(url)):
        return ("is not an endpoint URL botocore takes: its host must be an IP address or a DNS name (letters, digits, "
                "'-' and '.'), e.g. http://minio:9000")
    parts = urlsplit(url)
    try:
        parts.port  # reading it raises where botocore cannot read it
    except ValueError:
        return ("is not an endpoint URL botocore takes: its port must be a number up to 65535, with nothing after it "
                "(no space), e.g. http://minio:9000")
    if parts.query:
        return "is not an endpoint URL botocore takes: it has a query ('?...'), which botocore refuses; remove it"
    return None


class S3Config(_Section):
    """S3 options for every s3:// URL; credentials only ever come from the environment."""

    endpoint_url: str | None = None  # None (or empty): AWS_ENDPOINT_URL or AWS's own endpoint
    region: str | None = None  # None: AWS_DEFAULT_REGION / AWS_REGION

    @field_validator("endpoint_url")
    @classmethod
    def _a_url(cls, value: str | None) -> str | None:
        """`localhost:9000` failed as 'Invalid endpoint' when a command first reached S3, after its other work (exit
        1), not here."""
        fault = endpoint_fault(value)
        if fault:
            raise ValueError(f"{value!r} {fault}")
        return value

    @field_validator("region")
    @classmethod
    def _a_region(cls, value: str | None) -> str | None:
        """`s3.region='not a region'` failed as InvalidRegionError when a command first reached S3, after its other
        work, not here."""
        fault = region_fault(value)
        if fault:
            raise ValueError(f"{value!r} {fault}")
        return value


class SynthConfig(_Section):
    speakers: int = Field(12, ge=2, le=500)
    emotions: int = Field(4, ge=2, le=len(EMOTIONS))
    clips_per_speaker: int = Field(24, ge=3, le=10_000)
    entanglement: float = Field(0.8, ge=0.0, le=1.0)
    # who speaks shows in: "on" voice and face, "voice" the voice alone (every face alike), "off" nothing (control);
    # true / false mean on / off
    identity_cues: IdentityCues = "on"
    # where emotion lives: "mixed" (pitch level, energy, contour, rate, face expression) or
    # "dynamics" (only how the voice moves over time: syllable rate, tremor, contour shape;
    # pitch level, formants, loudness and the face say who speaks, never how they feel)
    cues: EmotionCues = "mixed"
    duration_s: float = Field(1.0, gt=0.2, le=10.0)
    seed: Seed = 0

    @field_validator("identity_cues", mode="before")
    @classmethod
    def _cues_from_bool(cls, value: Any) -> Any:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


MEL_FMIN = 20.0  # Hz: the lowest mel band's lower edge


# Settings added after shards, runs and sweeps first recorded what they were made with, each at the value that runs as
# avdis ran before it: a record that lacks one is read as holding that value, so what was made before it stays up to
# date (shards: `shards.made_with.made_features`), resumable (runs: `checkpoint.run_signature`, which leaves them out at that
# value, so an unnamed run keeps its name) and comparable (sweeps: `spec.check_spec`). A setting added without an
# entry here refuses every older record ("an older avdis wrote it"), as its older runs may have run as no value does.
ADDED: dict[str, Any] = {"data.features.f_max": None, "sweep.emotion_metric": "acc"}
ADDED_FEATURES: dict[str, Any] = {k.removeprefix("data.features."): v for k, v in ADDED.items()
                                  if k.startswith("data.features.")}


# the data.features settings of the video frames alone: shards of data.modality=audio hold none, so there they change
# nothing (refused by the CLI, left out of what such shards are made with: `avdis.data.shards.check_made_with`)
VIDEO_FEATURES = ("fps", "face_size")


class FeatureConfig(_Section):
    sample_rate: int = Field(16000, ge=8000, le=48000)
    n_mels: int = Field(40, ge=8, le=256)
    # milliseconds, at least 1: below, 0.01 (10 ms written in seconds) rounded to a hop of 0 samples, which failed
    # every clip of a preprocessing run
    hop_ms: float = Field(10.0, ge=1, le=50)
    window_s: float = Field(1.0, gt=0.1, le=30.0)
    fps: float = Field(8.0, gt=0, le=60)
    face_size: int = Field(48, ge=16, le=256)
    # Hz, the top of the mel bands (None: sample_rate / 2). At or below a corpus's lowest bandwidth, clips recorded at
    # 8 kHz and at 16 kHz fill the same bands (`bandwidth.bandwidth_cue` advises it)
    f_max: float | None = None

    @field_validator("f_max")
    @classmethod
    def _under_nyquist(cls, value: float | None, info: ValidationInfo) -> float | None:
        """Above sample_rate / 2 it asks for frequencies the resampled audio cannot hold. At sample_rate / 2 it is the
        default, None: the same bands, so shards made without it are neither made again nor refused for it."""
        nyquist = info.data.get("sample_rate", 0) / 2  # absent: sample_rate was refused, and is named
        if value is not None and nyquist and not MEL_FMIN < value <= nyquist:
            raise ValueError(f"{value:g} must be > {MEL_FMIN:g} Hz (the lowest mel band's lower edge) and <= "
                             f"data.features.sample_rate / 2 = {nyquist:g} Hz (leave it out for sample_rate / 2)")
        return None if value == nyquist else value

    @property
    def mel_top(self) -> float:
        """The top of the mel bands in Hz."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    @property
    def audio_frames(self) -> int:
        return int(round(self.window_s * 1000.0 / self.hop_ms))

    @property
    def video_frames(self) -> int:
        return max(1, int(round(self.window_s * self.fps)))


class SplitConfig(_Section):
    """Which split the model trains on; both schemes are stored in every manifest."""

    scheme: SplitScheme = "within_speaker"
    fold: int = Field(0, ge=0)
    folds: int = Field(4, ge=MIN_FOLDS, le=50)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.25, gt=0.0, lt=0.5)
    seed: Seed = 0

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.fold >= self.folds:
            raise ValueError(f"fold={self.fold} must be < folds={self.folds}")
        return self


class LoaderConfig(_Section):
    shuffle_buffer: int = Field(256, ge=1)
    workers: int = Field(0, ge=0, le=64)  # DataLoader worker processes per Ray worker
    max_skip_rate: float = Field(0.01, ge=0.0, le=1.0)


class DataConfig(_Section):
    corpus: Corpus = "synthetic"
    src: LocalFolder = "runs/corpus/synthetic"  # raw corpus folder (generated on first use if synthetic)
    shards: Location = "runs/shards/synthetic"  # local folder or s3://bucket/prefix
    shard_size: int = Field(64, ge=1, le=100_000)
    # what the shards hold: "audio" for a corpus of audio files (IEMOCAP's, MSP-Podcast's, a .wav folder), whose
    # clips have no video to decode; train such shards with model.modality=audio
    modality: Literal["av", "audio"] = "av"
    synth: SynthConfig = SynthConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    loader: LoaderConfig = LoaderConfig()



class ModelConfig(_Section):
    preset: PresetName = "tiny"
    modality: Modality = "av"
    emb_dim: int = Field(64, ge=2, le=2048)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    contours: bool = True  # audio: prosodic contour features (modulation spectrum, contour shape); see encoders


class AdversaryConfig(_Section):
    """The speaker classifier on z_emo used by `adversarial` and `confusion`."""

    steps: int = Field(5, ge=1, le=50)  # adversary steps per encoder step: a weak adversary is fooled, not beaten
    lr: float = Field(3e-3, gt=0)
    hidden: int = Field(128, ge=1)
    warmup_epochs: int = Field(0, ge=0)  # linear ramp of the method weight


# Method settings only some methods read: the adversary (`avdis.train.step`) is trained by adversarial and confusion,
# method.conditional changes those two and INLP (`avdis.train.evaluate`), and method.speaker_weight weighs the speaker
# loss on z_id, which single_task does not train. Given to a run of another method, one would change nothing.
READ_BY_METHODS: dict[str, tuple[str, ...]] = {
    "method.adversary": ("adversarial", "confusion"),
    "method.conditional": ("adversarial", "confusion", "nullspace"),
    "method.speaker_weight": tuple(m for m in METHODS if m != "single_task"),
}


class MethodConfig(_Section):
    name: MethodName = "multitask"
    weight: float | None = None  # meaning per method: see WEIGHT_RANGES; None for baselines
    speaker_weight: float = Field(1.0, ge=0.0, le=100.0)  # weight of the speaker loss on z_id (logged as loss_speaker)
    # adversarial, confusion, nullspace: remove only identity beyond what the emotion label explains
    # (adversary sees the label; confusion target p(speaker | emotion); INLP within emotions). Others ignore it.
    conditional: bool = True
    adversary: AdversaryConfig = AdversaryConfig()

    @model_validator(mode="after")
    def _check_weight(self) -> Self:
        rng = WEIGHT_RANGES.get(self.name)
        if rng is None:
            # 0 is taken here and refused by the command (`cli._load`), which lets a run started with it resume
            if self.weight not in (None, 0):
                raise ValueError(
                    f"method {self.name!r} takes no weight (got {self.weight}); "
                    f"drop method.weight or pick one of {sorted(WEIGHT_RANGES)}"
                )
            return self
        low, high, integer = rng
        if self.weight is None:
            raise ValueError(f"method {self.name!r} needs method.weight in {'[' if integer else '('}{low}, {high}]")
        if integer and self.weight != int(self.weight):
            raise ValueError(f"method {self.name!r}: weight is a count of iterations, got {self.weight}")
        if not (low < self.weight <= high if not integer else low <= self.weight <= high):
            raise ValueError(
                f"method {self.name!r}: weight {self.weight} outside its range "
                f"{'[' if integer else '('}{low}, {high}]"
            )
        return self


class TrainConfig(_Section):
    epochs: int = Field(4, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1)  # per worker
    lr: float = Field(3e-3, gt=0, le=1.0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: decays to 5% of lr by the last epoch
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float = Field(1.0, ge=0.0)  # 0 disables clipping
    grad_accum: int = Field(1, ge=1, le=1024)
    seed: Seed = 0
    probe_every: int = Field(1, ge=0)  # leakage probe every N epochs (0: only at the end)
    # engine
    strategy: Strategy = "single"
    zero_stage: int = Field(0, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 with gpus_per_worker > 0, else fp32
    offload_optimizer: bool = False
    offload_params: bool = False
    # scaling
    workers: int = Field(1, ge=1, le=4096)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0, le=1)  # a worker trains on one GPU (data parallel): more would idle
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_failures: int = Field(0, ge=-1)
    # outputs
    storage: Location = "runs/train"  # local folder or s3://bucket/prefix
    name: str | None = None  # run name; None: derived from method and seed

    @property
    def bf16(self) -> bool:
        """Whether the workers compute in bf16. `auto` is resolved from the config alone, not from the machine that
        asks: the driver signs a run (`checkpoint.run_signature`) where its workers' GPUs may not be."""
        return self.precision == "bf16" or (self.precision == "auto" and self.gpus_per_worker > 0)

    @property
    def in_process(self) -> bool:
        """One worker: a sweep trial trains in its own process (any strategy), with no Ray Train worker group."""
        return self.workers == 1

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.strategy != "deepspeed" and self.zero_stage:
            raise ValueError(
                f"zero_stage={self.zero_stage} shards state only under strategy=deepspeed "
                f"(got strategy={self.strategy}); set train.strategy=deepspeed or train.zero_stage=0"
            )
        if self.offload_params and not (self.strategy == "deepspeed" and self.zero_stage == 3):
            raise ValueError("offload_params needs strategy=deepspeed with zero_stage=3")
        if self.offload_optimizer and not (self.strategy == "deepspeed" and self.zero_stage >= 1):
            raise ValueError("offload_optimizer needs strategy=deepspeed with zero_stage >= 1")
        if self.strategy == "deepspeed" and self.zero_stage == 0 and self.bf16 and self.grad_accum > 1:
            raise ValueError(  # engine.deepspeed_config: stages 1-3 sum the micro-batches in fp32
                f"grad_accum={self.grad_accum} in bf16 at zero_stage=0 sums the micro-batches' gradients in bf16 "
                "(DeepSpeed has no fp32 accumulation there: each partial sum rounded, the update off by ~3e-3 of "
                "itself); use train.zero_stage >= 1, train.precision=fp32, or train.grad_accum=1")
        if self.strategy == "single" and self.workers != 1:
            raise ValueError(
                f"strategy=single runs one process (got workers={self.workers}); "
                "use train.strategy=ddp or deepspeed for several workers"
            )
        if self.workers > 1 and 0 < self.gpus_per_worker < 1:
            raise ValueError(f"gpus_per_worker={self.gpus_per_worker:g} with workers={self.workers}: two workers of "
                             "one run could share a GPU, which NCCL refuses; give each worker a whole GPU "
                             "(train.gpus_per_worker=1), or share GPUs between one-worker sweep trials")
        return self

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str | None) -> str | None:
        return None if name is None else folder_name("train.name", name, "train.storage")

# The MLP probe trains probe.epochs epochs, and on, up to this many times as many, while its best out-of-fold epoch
# lies in the last quarter of those run: one still learning at probe.epochs read leakage low (entangled single_task in
# the science benchmark chose epochs 274-286 of 300 and read 0.406; trained 900 epochs, 0.41-0.47).
PROBE_LONGEST = 4


class ProbeConfig(_Section):
    """The fresh post-hoc speaker probe on frozen z_emo that judges every method."""

    hidden: int = Field(128, ge=1)
    epochs: int = Field(300, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    folds: int = Field(5, ge=2)  # the MLP's cross-fitting: one copy per fold of the train clips


class Range(_Section):
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


class SearchSpace(_Section):
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
            field = _fields_along(key)[-1]  # the setting itself: setting_of(key) == key
            takes = TypeAdapter(Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation,
                                config=ConfigDict(allow_inf_nan=_Section.model_config["allow_inf_nan"]))
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


class SchedulerConfig(_Section):
    """Multi-objective asynchronous successive halving (MO-ASHA)."""

    type: Literal["mo_asha", "none"] = "mo_asha"
    eta: int = Field(2, ge=2)
    grace_epochs: int = Field(2, ge=1)  # the first rung: epoch-1 values barely predict the last epoch's (replay)
    stopped_as: Literal["complete", "pruned"] = "pruned"  # how the searcher is told of a trial stopped at a rung
    # stop a trial outside the rung's top 1/eta only if a trial there beats it by this much in both objectives
    margin: float = Field(0.1, ge=0.0, le=1.0)


class SweepConfig(_Section):
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
    scheduler: SchedulerConfig = SchedulerConfig()
    space: SearchSpace = SearchSpace()

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        return folder_name("sweep.name", name, "sweep.storage")


class RayConfig(_Section):
    address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray started here; "auto": the head `ray start` recorded here
    include_dashboard: bool = True  # keep on: stopped nested trials leak placement groups without it
    autoscaling: bool = False  # the cluster adds nodes on demand: don't refuse what it lacks right now
    cluster_file: str | None = None  # launcher YAML / KubeRay manifest: sweeps check trials fit its node types

    @field_validator("cluster_file")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        """An empty one (`ray.cluster_file=`, to drop a config's) was the working directory, read as a cluster file."""
        if value is not None and not value.strip():
            raise ValueError("empty; give a Ray cluster launcher YAML or KubeRay manifest, or null for none")
        return value


class Config(_Section):
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


def _fields_along(path: str) -> list[FieldInfo]:
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
    parts, found = path.split("."), _fields_along(path)
    if len(found) == len(parts):
        return path
    if found and getattr(found[-1].annotation, "model_fields", None) is None:
        return ".".join(parts[:len(found)])
    return None


_DOTTED_KEYS = "sweep.space.params."  # a mapping whose keys are dotted paths: sweep.space.params.train.lr=[...]


def _set_dotted(tree: dict[str, Any], path: str, value: Any) -> None:
    node = tree
    parts = (_DOTTED_KEYS[:-1].split(".") + [path.removeprefix(_DOTTED_KEYS)] if path.startswith(_DOTTED_KEYS)
             else path.split("."))
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {path}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _comment_of(raw: str) -> str:
    """The text of `raw` YAML leaves out as a comment ("" when none): whatever follows the last node it parsed."""
    nodes = (yaml.ScalarEvent, yaml.SequenceEndEvent, yaml.MappingEndEvent)
    end = max((event.end_mark.index for event in yaml.parse(raw) if isinstance(event, nodes)), default=0)
    return raw[end:].strip()


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["train.epochs=3", "method.name=adversarial"]` -> nested dict (values parsed as YAML). Each override is merged
    into those before it, as they are into the file: a section given as a value (`train={lr: 0.1}`) replaced what an
    earlier one set in it (`train.epochs=3` dropped, in silence); a setting given again takes the later value."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r}: expected dotted.key=value, e.g. train.epochs=3")
        try:
            value = _read_yaml(raw, key) if raw != "" else ""  # a key twice is refused, as in a file
            dropped = _comment_of(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        if dropped:
            raise ConfigError(f"override {item!r}: {dropped!r} is a YAML comment, so the value would be {value!r}; "
                              f"quote the value to keep it whole: {key}='\"{raw}\"'")
        if value is None and raw.strip() == "~" and key in _FOLDERS_NEVER_NULL:
            # the home folder, as a shell reads it and as `~/x` is: YAML's null was refused for these as "not a valid
            # string (got None)". Where null means something (sweep.checkpoints: the sweep's folder) ~ stays null
            value = "~"
        own: dict[str, Any] = {}
        _set_dotted(own, key, value)
        try:
            tree = merge(tree, own)
        except ConfigError as exc:  # a section over a value an earlier override gave (method=x method.weight=1)
            raise ConfigError(f"override {item!r}: {exc}") from None
    return tree


def _section_hint(path: tuple[str, ...], value: Any) -> str:
    """How to write `path: value` as the section it must be (`write method: {name: adversarial}`), or that it is a
    setting of one value, with no keys under it (`train.epochs.max=5`: it was told to write train.epochs as a section)."""
    dotted = ".".join(path)
    owner = _field_model(Config, path)
    if owner is None:
        along = _fields_along(dotted)
        if len(along) == len(path) and get_origin(along[-1].annotation) is not dict:
            return f"it takes one value, with no keys under it: give {dotted}=VALUE"
        return f"write {dotted}: {{key: value}}"
    name = owner.model_fields.get("name")
    if name is not None and isinstance(value, str) and value in get_args(name.annotation):
        return f"write {dotted}: {{name: {value}}}"
    return f"write {dotted}: {{key: value}} with keys from {', '.join(owner.model_fields)}"


def merge(base: dict[str, Any], extra: dict[str, Any], at: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep merge: sections merge, values in `extra` win.

    A section in `extra` over a value in `base` is an error: dropping the value would
    silently train on defaults. An entry of a mapping setting (sweep.space.weights, sweep.space.params) is replaced:
    its value may be a range as well as a number or a list of choices, and a range over a file's choices was refused
    as "not a section" (the hint asking for the range just given).
    """
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = merge(current, value, (*at, key))
        elif isinstance(value, dict) and current is not None and not _is_mapping_setting(at):
            path = (*at, key)
            raise ConfigError(
                f"{'.'.join(path)} is a value ({current}), not a section; {_section_hint(path, current)}"
            )
        else:
            out[key] = value
    return out


def _is_mapping_setting(path: tuple[str, ...]) -> bool:
    """Whether `path` is a setting whose value is a mapping of the user's keys (sweep.space.params)."""
    along = _fields_along(".".join(path))
    return bool(path) and len(along) == len(path) and get_origin(along[-1].annotation) is dict


def _field_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (to list its allowed keys): through sections, the values of a
    mapping setting and the member of a union pydantic names in `loc` (a range of sweep.space.weights or
    sweep.space.params, whose misspelt key listed no allowed keys)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is not None:
            if part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) is dict:  # `part` is the user's key
            current = get_args(current)[1]
        else:  # a union: `part` names the member tried, e.g. "function-after[_check(), Range]"
            current = next((m for m in get_args(current) if isinstance(m, type) and issubclass(m, BaseModel)
                            and re.search(rf"\b{m.__name__}\b", str(part))), None)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


# what YAML reads an unquoted value as, where a name or path was meant
_YAML_READS = {int: "a number", float: "a number", datetime.date: "a date", datetime.datetime: "a date and time"}


def describe(error: ValidationError, model: type[BaseModel] | None = None, source: str = "config",
             flags: dict[str, str] | None = None) -> str:
    """One line per problem: `source: key.path: what is wrong (allowed ...)`; a setting a command's flag gave (in
    `flags`, setting -> flag) as `--flag: what is wrong`: the user typed the flag, not the setting."""
    model = model or Config
    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc if not str(p).startswith("function-after")) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner = _field_model(model, loc[:-1])
            allowed = sorted(owner.model_fields) if owner else []
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)  # train.epoch: one letter off a setting
            msg = (f"unknown key; allowed keys here: {', '.join(allowed)}"
                   + (f"; did you mean {near[0]}?" if near else ""))
            head, dot, rest = str(loc[-1]).partition(".")
            if dot and model is Config and setting_of(path) == path:  # `train.epochs: 5` in a file: "unknown" as is
                msg = (f"YAML reads a dotted key as one name (dots nest settings only in a key=value's key), so it "
                       f"names no setting; write {head}: {{{rest}: ...}}")
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
            read_as = _YAML_READS.get(type(err["input"]))  # sweep.name=007 read as 7, sweep.name=2026-12-03 as a date
            if err["type"] == "string_type" and read_as == "a date and time":  # its text (T, Z) is lost: no example
                msg += (f"; YAML read the value as {read_as}: quote it to keep it as text, in a file or on the command "
                        f"line (\"{path}='...'\")")
            elif err["type"] == "string_type" and err["input"] is None and path in _FOLDERS_NEVER_NULL:
                msg += "; YAML reads ~ or null as no value: give a folder (quoted, '~' is the home folder)"
            elif err["type"] == "string_type" and read_as:
                shown = str(err["input"]) if read_as == "a date" else "007"  # a number's text is lost: an example
                msg += (f"; YAML read the value as {read_as}: quote it to keep it as written ('{shown}' in a file, "
                        f"\"{path}='{shown}'\" on the command line)")
        lines.append(f"{flags[path]}: {msg}" if path in (flags or {}) else f"{source}: {path}: {msg}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML keeps the last silently, so a second
    `train:` section would drop the first. Merge keys (`<<: *anchor`) stay YAML's."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # refused by SafeLoader itself, with its own message
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _empty_sections_dropped(raw: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`raw` without the sections a file leaves empty (`train:` with every line under it commented out is YAML's
    null, refused as no mapping): an empty section keeps its defaults, as a section left out does. So does an empty
    mapping setting (`params:` with its one entry commented out in local.yaml, refused the same way)."""
    out = {}
    for key, value in raw.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        sub = field.annotation if field is not None else None
        if value is None and get_origin(sub) is dict:
            continue
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            if value is None:
                continue
            if isinstance(value, dict):
                value = _empty_sections_dropped(value, sub)
        out[key] = value
    return out


def _read_yaml(text: str, name: str) -> Any:
    """`text` as YAML (keys once each), its error marks naming the file `name` ("<unicode string>" otherwise)."""
    loader = _UniqueKeyLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# Settings (section.key) read only under some values of another (the mode), which the validators refuse elsewhere
# (`TrainConfig._check`): (setting, mode, whether a value of the mode reads it). Refused by validation, a config file's
# is dropped before it where the command line chose a mode that leaves it unread (`_left_alone`). Those the command
# refuses instead, where it starts work, are `avdis.cli.READ_ONLY_UNDER`'s (a file's is kept there): each setting is in
# one table.
_UNSET = object()
READ_ONLY_WITH: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    *((f"train.{key}", "train.strategy", lambda strategy: strategy == "deepspeed")
      for key in ("zero_stage", "offload_optimizer", "offload_params")),
    ("train.offload_params", "train.zero_stage", lambda stage: stage == 3),
    ("train.offload_optimizer", "train.zero_stage", lambda stage: isinstance(stage, int) and stage >= 1),
    ("train.workers", "train.strategy", lambda strategy: strategy != "single"),
)


def _left_alone(raw: dict[str, Any], line: list[dict[str, Any]]) -> dict[str, Any]:
    """The config file's `raw` less its settings the command line (`line`: the trees of its flags and overrides)
    chose a mode of that does not read them (`READ_ONLY_WITH`), where the command line did not give them too: the
    README's rule, a file's setting is left alone where the command line chose the mode that ignores it. The run is
    then as without them (its name and recorded settings too). A setting the file's own mode does not read (its
    strategy: ddp with a zero_stage) is kept, and refused. `--strategy single` on smoke.yaml, whose zero_stage=2
    is DeepSpeed's, was refused as "zero_stage=2 shards state only under strategy=deepspeed"."""

    def at(tree: Any, path: str) -> Any:
        for part in path.split("."):
            tree = tree.get(part, _UNSET) if isinstance(tree, dict) else _UNSET
        return tree

    def chose(path: str) -> Any:
        return next((v for v in (at(t, path) for t in reversed(line)) if v is not _UNSET), _UNSET)

    def own(mode: str) -> Any:  # the file's mode, else its default: a file setting its mode does not read is refused
        value = at(raw, mode)
        return _fields_along(mode)[-1].default if value is _UNSET else value

    dropped = {setting for setting, mode, reads in READ_ONLY_WITH
               if at(raw, setting) is not _UNSET and chose(setting) is _UNSET and reads(own(mode))
               and (choice := chose(mode)) is not _UNSET and not reads(choice)}
    out = raw
    for setting in dropped:
        section, key = setting.split(".")
        out = {**out, section: {k: v for k, v in out[section].items() if k != key}}
    return out


def load(path: str | Path | None = None, overrides: list[str] | None = None,
         values: dict[str, Any] | None = None, flags: dict[str, str] | None = None) -> Config:
    """Read a YAML config (or the defaults), apply dotted overrides, validate. `values` are dotted settings given
    as values (a command's own flags: `--name "run #2"` is that name, not YAML whose comment cut it to "run");
    `flags` names the flag that gave each (setting -> flag), for a refusal to name as the user typed it."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "defaults"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"{p}: is a folder, not a config file; pass --config with a YAML file (see jobs/configs/)")
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found; pass --config with an existing YAML file")
        try:
            raw = _read_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
        except yaml.YAMLError as exc:
            tabs = f"\n{p}: indent with spaces; YAML takes no tabs there" if "'\\t'" in str(exc) else ""
            raise ConfigError(f"{p}: not valid YAML: {exc}{tabs}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections (data, model, ...)")
        raw = _empty_sections_dropped(raw, Config)
    given: dict[str, Any] = {}
    for key, value in (values or {}).items():
        _set_dotted(given, key, value)
    tree = parse_overrides(overrides) if overrides else {}
    raw = _left_alone(raw, [given, tree])
    if values:
        raw = merge(raw, given)
        source += " + flags"
    if overrides:
        try:
            raw = merge(raw, tree)
        except ConfigError as exc:
            raise ConfigError(f"{source} + overrides: {exc}") from None
        source += " + overrides"
    return validate(raw, source, flags)


# Local paths are made absolute at the edge: Ray workers run in other directories.
PATH_FIELDS = (("data", "src"), ("data", "shards"), ("train", "storage"), ("sweep", "storage"),
               ("sweep", "checkpoints"), ("ray", "cluster_file"))
_FOLDERS_NEVER_NULL = ("data.src", "data.shards", "train.storage", "sweep.storage")  # an override's ~: the home folder


def local_path(value: str, field: str) -> str:
    """A local path as avdis keeps it: `~` expanded, absolute and normalised (`a/../b` is `b`: one spelling per
    folder, as run names hash it)."""
    try:
        return os.path.abspath(Path(value.removeprefix("file://")).expanduser())
    except RuntimeError as exc:  # ~nosuchuser
        raise ConfigError(f"{field}: {value}: {exc}; give the folder's full path") from None


def _absolute(cfg: Config, flags: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings `cfg` was given, its local paths (defaults among them) absolute. Only those given: a section's
    `model_fields_set` then still tells a setting given from one left at its default (`shards.check_synth`). A
    refusal names a path by its flag where one in `flags` gave it."""
    out = cfg.model_dump(mode="json", exclude_unset=True)
    for section, key in PATH_FIELDS:
        value = getattr(getattr(cfg, section), key)
        if isinstance(value, str) and ("://" not in value or value.startswith("file://")):
            field = f"{section}.{key}"
            out[section] = {**out.get(section, {}), key: local_path(value, (flags or {}).get(field, field))}
    return out


def validate(raw: dict[str, Any], source: str = "config", flags: dict[str, str] | None = None) -> Config:
    """`raw` as a Config; `flags` (setting -> flag) names what a refusal names by the flag the user gave it."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, Config, source, flags)) from None
    return Config.model_validate(_absolute(cfg, flags))


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of `cfg` with flat dotted overrides applied and validated again (what `cfg` was given stays given)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        _set_dotted(tree, key, value)
    return validate(merge(cfg.model_dump(mode="json", exclude_unset=True), tree), "config + trial parameters")
