"""The names configs choose from: emotions, methods, split schemes, presets, modalities, strategies, corpora, the
weighted methods' ranges and the emotion metrics. The schema validates by them and code, the CLI and registries read
them, so each set is written once, here."""

from __future__ import annotations

from typing import Literal, get_args

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
