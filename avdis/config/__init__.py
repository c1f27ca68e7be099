"""Typed configuration: one YAML file plus dotted overrides, validated at the edge.

Every job reads a `Config`. A bad file, key or value raises `ConfigError`, whose
message names the key path and the allowed values or keys; the CLI turns it into
exit code 2 before any work starts. Code past the edge trusts these objects.

The modules, by job: `names` (the sets of names configs choose from), `science` (a run's objectives and how its
numbers are made), `locations` (folder names, paths and S3 URLs, region and endpoint), `sections` (the schema's
sections of a run), `schema` (the sweep's sections, the whole `Config` and the walks along it by dotted path) and
`reading` (a file, overrides and flags -> a validated `Config`, and `ConfigError`'s words). Each imports only those
before it. The names below are the modules' own, imported here (a pickle naming `avdis.config.Config`, as a sweep's
Tune state written before the package did, finds the class here); a patch of one here reaches no module that reads it:
patch it where it is read.
"""

from __future__ import annotations

from avdis.config.locations import endpoint_fault, folder_name, location, region_fault
from avdis.config.names import (CORPORA, EMOTION_METRICS, EMOTION_WORDS, EMOTIONS, METHODS, MODALITIES, PRESETS,
                                SCHEMES, STRATEGIES, WEIGHT_RANGES, Corpus, EmotionCues, EmotionMetric, IdentityCues,
                                MethodName, Modality, PresetName, SplitScheme, Strategy)
from avdis.config.reading import (PATH_FIELDS, READ_ONLY_WITH, ConfigError, describe, load, local_path, merge,
                                  parse_overrides, validate, with_overrides)
from avdis.config.schema import (MADE_WITH_SHARDS, NOT_SAMPLED, PER_SWEEP, SAMPLED_SECTIONS, Config, Range,
                                 SchedulerConfig, SearchSpace, SweepConfig, check_nullspace, setting_of, settings)
from avdis.config.science import (MEASURES, OBJECTIVES, SELECTION, measured_otherwise, measures_of, objectives,
                                  selection)
from avdis.config.sections import (ADDED, ADDED_FEATURES, MEL_FMIN, MIN_FOLDS, PROBE_LONGEST, READ_BY_METHODS, SEEDS,
                                   VIDEO_FEATURES, AdversaryConfig, DataConfig, FeatureConfig, LoaderConfig,
                                   LocalFolder, Location, MethodConfig, ModelConfig, ProbeConfig, RayConfig, S3Config,
                                   Seed, SplitConfig, SynthConfig, TrainConfig)

__all__ = ["ADDED", "ADDED_FEATURES", "CORPORA", "EMOTIONS", "EMOTION_METRICS", "EMOTION_WORDS", "MADE_WITH_SHARDS",
           "MEASURES", "MEL_FMIN", "METHODS", "MIN_FOLDS", "MODALITIES", "NOT_SAMPLED", "OBJECTIVES", "PATH_FIELDS",
           "PER_SWEEP", "PRESETS", "PROBE_LONGEST", "READ_BY_METHODS", "READ_ONLY_WITH", "SAMPLED_SECTIONS", "SCHEMES",
           "SEEDS", "SELECTION", "STRATEGIES", "VIDEO_FEATURES", "WEIGHT_RANGES", "AdversaryConfig",
           "Config", "ConfigError", "Corpus", "DataConfig", "EmotionCues", "EmotionMetric", "FeatureConfig",
           "IdentityCues", "LoaderConfig", "LocalFolder", "Location", "MethodConfig", "MethodName", "Modality",
           "ModelConfig", "PresetName", "ProbeConfig", "Range", "RayConfig", "S3Config", "SchedulerConfig",
           "SearchSpace", "Seed", "SplitConfig", "SplitScheme", "Strategy", "SweepConfig", "SynthConfig",
           "TrainConfig", "check_nullspace", "describe", "endpoint_fault", "folder_name", "load", "local_path",
           "location", "measured_otherwise", "measures_of", "merge", "objectives", "parse_overrides", "region_fault",
           "selection", "setting_of", "settings", "validate", "with_overrides"]
