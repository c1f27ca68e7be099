"""The schema's sections of a run (data, model, method, train, probe, ray, s3) and the base they share: every
setting's type, bounds and the rules between settings of one section. The sweep's sections and the whole `Config`
are `schema`'s."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from avdis.config.locations import endpoint_fault, folder_name, location, region_fault
from avdis.config.names import (EMOTIONS, METHODS, WEIGHT_RANGES, Corpus, EmotionCues, IdentityCues, MethodName,
                                Modality, PresetName, SplitScheme, Strategy)

# numpy's seeds stop at 2**32 - 1, and a sweep's confirming seeds add up to 20: refused at the edge, not in a traceback
# after preprocessing
SEEDS = 2**31  # how many seeds a config takes: 0 to 2**31 - 1
Seed = Annotated[int, Field(ge=0, le=SEEDS - 1)]
Location = Annotated[str, AfterValidator(location)]
LocalFolder = Annotated[str, AfterValidator(lambda v: location(v, local_only=True))]


MIN_FOLDS = 3  # speaker_disjoint: a test fold, a validation fold and training speakers


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type holds true/false itself (bool, a Literal of them, Any, or a union with one)."""
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, bool) for choice in get_args(annotation))
    return any(_takes_bool(arg) for arg in get_args(annotation))


class Section(BaseModel):
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


class S3Config(Section):
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


class SynthConfig(Section):
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


class FeatureConfig(Section):
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


class SplitConfig(Section):
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


class LoaderConfig(Section):
    shuffle_buffer: int = Field(256, ge=1)
    workers: int = Field(0, ge=0, le=64)  # DataLoader worker processes per Ray worker
    max_skip_rate: float = Field(0.01, ge=0.0, le=1.0)


class DataConfig(Section):
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


class ModelConfig(Section):
    preset: PresetName = "tiny"
    modality: Modality = "av"
    emb_dim: int = Field(64, ge=2, le=2048)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    contours: bool = True  # audio: prosodic contour features (modulation spectrum, contour shape); see encoders


class AdversaryConfig(Section):
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


class MethodConfig(Section):
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
            # 0 is taken here and refused by the command (`cli.loading.load_config`), which lets a run started with it resume
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


class TrainConfig(Section):
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


class ProbeConfig(Section):
    """The fresh post-hoc speaker probe on frozen z_emo that judges every method."""

    hidden: int = Field(128, ge=1)
    epochs: int = Field(300, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    folds: int = Field(5, ge=2)  # the MLP's cross-fitting: one copy per fold of the train clips


class RayConfig(Section):
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
