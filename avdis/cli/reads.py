"""What each command reads (`READS`, `READ_ONLY_UNDER`) and which settings its command line gave, by dotted path: a
command refuses a setting it would not read (`refusals`), named as the user gave it."""

from __future__ import annotations

import argparse
import os
from typing import Any, Iterator

from pydantic import BaseModel

from avdis import config as C
from avdis import runtime


# the settings each command reads, by section or by dotted setting (a section's settings all): an override of another
# is refused (accepted, it changed nothing). Preprocessing reads the data settings that make the shards, not those a
# run reads them with (data.loader, data.split.scheme and .fold). `avdis model` counts every preset's parameters, which
# depend on the model's inputs and embedding and on the input shapes (mel bands, audio and video frames), not on
# model.preset (it lists them all), model.dropout, data.features.sample_rate or .face_size (pooled away); and its heads
# on the emotions and speakers of the shards at data.shards (s3 to reach them), where there are any, whose features
# then count instead of the config's (a run on them has theirs)
READS = {
    "preprocess": (*(key.rstrip(".") for key in C.MADE_WITH_SHARDS), "ray", "s3"),
    "train": ("data", "model", "method", "train", "probe", "ray", "s3"),
    "report": ("s3",), "dashboard": ("s3",),
    "model": ("model.modality", "model.emb_dim", "model.contours", "data.features.n_mels", "data.features.hop_ms",
              "data.features.window_s", "data.features.fps", "data.shards", "s3"),
}


# Settings read only where another setting (the mode) has one of the values given, and why: elsewhere one given would
# change nothing. Checked for each command that reads them (`READS`; `load_config`), not by validation: a sweep or run
# started with one before it was refused is resumed (`_refuse_unless_resumed`) and its trials and workers validate the
# config again; a config file's is kept, unrefused, where the command line chose the mode. The settings of this kind
# that validation refuses (train's engine settings) are `C.READ_ONLY_WITH`'s, not here: each setting is in one table.
READ_ONLY_UNDER = (
    ("data.synth", "data.corpus", ("synthetic",), "data.synth describes the corpus avdis generates"),
    ("data.split.fold", "data.split.scheme", ("speaker_disjoint",),
     "data.split.fold picks the held-out speakers of speaker_disjoint (within_speaker tests every speaker)"),
    *((f"sweep.scheduler.{key}", "sweep.scheduler.type", ("mo_asha",), "MO-ASHA stops trials early, by "
       f"sweep.scheduler.{key}") for key in ("eta", "grace_epochs", "margin", "stopped_as")),
    ("sweep.startup_trials", "sweep.search", ("tpe",), "TPE draws sweep.startup_trials trials at random before it "
                                                       "models the results"),
    ("sweep.scheduler.stopped_as", "sweep.search", ("tpe", "nsga2"), "sweep.scheduler.stopped_as is how a trial "
     "MO-ASHA stopped is told to a search that models the results (tune.space.SweepSearch); random search draws every "
     "trial alike, whatever came before"),
    ("model.contours", "model.modality", ("av", "audio"), "model.contours are features of the audio encoder"),
    ("ray.include_dashboard", "ray.address", ("local", None, ""),
     "ray.include_dashboard is for the local Ray a command starts (runtime.connect), not one it joins"),
    *((f"data.features.{key}", "data.modality", ("av",), f"data.features.{key} sizes the video frames, which shards "
       "of data.modality=audio do not hold") for key in C.VIDEO_FEATURES),
)


def reads_setting(reads: tuple[str, ...], path: str) -> bool:
    """Whether a command reading `reads` (`READS`) reads the setting or section at dotted `path`: one it names, one
    under one it names, or a section holding one it names."""
    return any(path == r or path.startswith(f"{r}.") or r.startswith(f"{path}.") for r in reads)


def read_by(path: str) -> str:
    """The commands that read `path` (a sweep reads every one), for a refusal to name."""
    return " or ".join(f"avdis {c}" for c in [*(c for c, r in READS.items() if reads_setting(r, path)), "sweep"])


EVERY_SETTING = tuple(key for key, _ in C.settings(C.Config))


def set_paths(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted paths of the settings an override sets (`C.parse_overrides`' tree), down to a setting (whose value
    may be a dict) or to a name the schema lacks, which validation names."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and any(k.startswith(f"{path}.") for k in EVERY_SETTING):
            yield from set_paths(value, f"{path}.")
        else:
            yield path


def without_ray(args: argparse.Namespace, cfg: C.Config) -> bool:
    """Whether the command uses no Ray at all (`avdis preprocess --no-ray`, `avdis train` under train.strategy=single),
    where its own rule refuses the ray settings (`cmd_preprocess`, `SINGLE_IGNORES`): a rule for one kind of Ray
    (`READ_ONLY_UNDER`: ray.include_dashboard but for a local one) advised a ray.address that rule then refused."""
    return ((args.command == "preprocess" and args.no_ray)
            or (args.command == "train" and cfg.train.strategy == "single"))


def _value(cfg: C.Config, path: str) -> Any:
    """The setting at dotted `path` of `cfg`."""
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def mode_of(cfg: C.Config, mode: str) -> tuple[str, Any]:
    """The setting `mode` of `READ_ONLY_UNDER` as the command takes it: the name that gave its value, and the value.
    Where ray.address is unset, RAY_ADDRESS names the Ray the command joins (`runtime.asked_address`), as a command
    line would: a config file's settings for a local Ray are left alone there, as under `ray job submit`, which sets
    it."""
    if mode != "ray.address":
        return mode, _value(cfg, mode)
    return ("RAY_ADDRESS" if not cfg.ray.address and os.environ.get("RAY_ADDRESS") else mode,
            runtime.asked_address(cfg.ray))


def given_by(flags: dict[str, tuple[str, Any]] | None) -> dict[str, str]:
    """Setting -> the flag that gave it, of a command's flags (setting -> (flag, value)) the user gave: a refusal
    names a setting as the user typed it (`--out`), one a flag did not give by its setting."""
    return {key: flag for key, (flag, value) in (flags or {}).items() if value is not None}


def holds_path(tree: Any, path: list[str]) -> bool:
    return not path or (isinstance(tree, dict) and path[0] in tree and holds_path(tree[path[0]], path[1:]))


def given_settings(model: BaseModel, prefix: str = "") -> Iterator[str]:
    """The dotted settings `model` was given (by the config file, an override or a flag), not left at a default."""
    for name in type(model).model_fields:
        if name in model.model_fields_set:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                yield from given_settings(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"


def typed_by(args: argparse.Namespace, path: str, flags: dict[str, tuple[str, Any]] | None = None) -> str | None:
    """The override (the last) or flag on the command line that gave the setting `path`; None where none did."""
    for override in reversed(args.overrides):
        if holds_path(C.parse_overrides([override]), path.split(".")):
            return override
    flag, value = (flags or {}).get(path, (None, None))
    return None if value is None else f"{flag} {value}"
