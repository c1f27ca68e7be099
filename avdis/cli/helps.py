"""What the parser says and takes beside the commands' own flags: the help of --config and of each command's
overrides, the synth flags, the dashboard's --refresh, and the settings a command reads, each with its default and
what it takes (`settings_help`); the settings' lines and the synth flags' ranges and defaults come from the schema, so
that --help cannot drift from it."""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from avdis import config as C
from avdis.cli.reads import reads_setting


CONFIG_HELP = "YAML config (see jobs/configs/); defaults are used for what it leaves out"
OVERRIDES_HELP = ("dotted overrides applied after the file, e.g. train.epochs=3 method.name=adversarial "
                  "method.weight=0.5; they may come before, between or after the options")
SWEEP_OVERRIDES_HELP = ("dotted overrides applied after the file, e.g. sweep.num_samples=8 "
                        "sweep.space.methods=[multitask,adversarial]; they may come before, between or after the "
                        "options (method.name and method.weight are drawn per trial from sweep.space; "
                        "train.storage and train.name are the sweep's to set, and train.probe_every under MO-ASHA)")
PREPROCESS_OVERRIDES_HELP = ("data, ray and s3 overrides applied after the file (preprocessing uses only these, and of "
                             "data only the settings listed below; others are refused), e.g. data.modality=audio "
                             "data.shard_size=32")
MODEL_OVERRIDES_HELP = ("overrides of the model and data settings the presets' sizes depend on, applied after the file "
                        "(only those listed below; others are refused), e.g. model.emb_dim=32 model.modality=audio "
                        "data.features.n_mels=64; where there are shards at data.shards the counts are at the "
                        "features they were made with and for their emotions and speakers (features of the config's "
                        "that differ are said), else at the config's features and for an example 8 and 24")
READER_OVERRIDES_HELP = ("s3 overrides applied after the file (a reader of results uses only the s3 settings; others are refused), "
                         "e.g. s3.endpoint_url=http://127.0.0.1:9000 s3.region=eu-west-1")


SYNTH_FLAGS = {  # flag -> (SynthConfig field, what it means); defaults, types, ranges and choices come from the field
    "--speakers": ("speakers", ""),
    "--emotions": ("emotions", f"first E of {', '.join(C.EMOTIONS)}"),
    "--clips-per-speaker": ("clips_per_speaker", ""),
    "--entanglement": ("entanglement", "0: emotion independent of speaker; 1: each speaker shows one emotion"),
    "--identity-cues": ("identity_cues", "voice: every speaker has the same face (identity only in the voice); "
                                         "off: the same voice and face too (control corpus)"),
    "--cues": ("cues", "where emotion lives: mixed (pitch, energy, rhythm, face) or dynamics (only how the voice "
                       "moves over time: syllable rate, tremor, melody shape; voice level and face say who speaks)"),
    "--duration": ("duration_s", "seconds per clip"),
    "--seed": ("seed", ""),
}


def _bounds(field: FieldInfo) -> str:
    """A field's allowed range as `2 <= x <= 500`, from its pydantic constraints ('' when unbounded)."""
    ops = {"ge": "<=", "gt": "<", "le": "<=", "lt": "<"}
    low = [f"{getattr(m, k)} {ops[k]} " for m in field.metadata for k in ("ge", "gt") if hasattr(m, k)]
    high = [f" {ops[k]} {getattr(m, k)}" for m in field.metadata for k in ("le", "lt") if hasattr(m, k)]
    return f"{''.join(low)}x{''.join(high)}" if low or high else ""


def add_synth_flags(p: argparse.ArgumentParser) -> None:
    """SynthConfig's fields as flags; a flag left out is not passed, so the field's own default applies."""
    for flag, (name, meaning) in SYNTH_FLAGS.items():
        field = C.SynthConfig.model_fields[name]
        choices = get_args(field.annotation) or None
        bounds = _bounds(field)
        text = "; ".join(part for part in (meaning, bounds and f"range {bounds}", f"default {field.default}") if part)
        p.add_argument(flag, dest=name, choices=choices, type=None if choices else field.annotation, help=text)


def _default(field: FieldInfo) -> Any:
    """A field's default as plain data (a weight range as {low, high, log/int when set})."""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, dict):
        return {k: v.model_dump(exclude_defaults=True) if isinstance(v, BaseModel) else v for k, v in value.items()}
    return value


def _takes(key: str, field: FieldInfo) -> str:
    """What a setting takes: its choices (a Literal, optionally None) or its range; '' when neither says more."""
    if key == "data.features.f_max":
        return (f"{C.MEL_FMIN:g} < x <= data.features.sample_rate / 2, in Hz: the top of the mel bands; null, or "
                "sample_rate / 2 given: sample_rate / 2; the lowest bandwidth where avdis preprocess warns that "
                "clips' sound stops at different frequencies (it names the value, and the n_mels to set with it)")
    if key == "probe.epochs":
        return (f"1 <= x: the least the MLP probe trains; it trains on, up to {C.PROBE_LONGEST} times as many, while "
                "its best out-of-fold epoch lies in the last quarter of those run")
    if key == "method.weight":
        ranges = [f"{m} {low:g}..{high:g}" if integer else f"{m} ({low:g}, {high:g}]"
                  for m, (low, high, integer) in C.WEIGHT_RANGES.items()]
        return "; ".join(ranges) + "; none for the others"
    literal = [a for a in (field.annotation, *get_args(field.annotation)) if get_origin(a) is Literal]
    return " | ".join(map(str, get_args(literal[0]))) if literal else _bounds(field)


def _settings(reads: tuple[str, ...] | None) -> list[str]:
    """One line per setting a command reading `reads` reads (`READS`; None: every one): its dotted key, its default
    and what it takes (choices or range)."""
    lines = []
    for key, field in C.settings(C.Config):
        if reads is not None and not reads_setting(reads, key):
            continue
        takes = _takes(key, field)
        default = json.dumps(_default(field), separators=(", ", ": "))
        lines.append(f"  {key} = {default}" + (f"  ({takes})" if takes else ""))
    return lines


def settings_help(reads: tuple[str, ...] | None = None) -> str:
    """The settings a config file or a key=value override can give, for a command's --help epilog: those it reads
    (`READS`), or all."""
    lines = ["settings (YAML under --config, or key=value), each with what it takes and its default where the YAML "
             "leaves it out (a default --config file sets its own):"]
    return "\n".join(lines + _settings(reads))


def with_config(p: argparse.ArgumentParser, overrides_help: str = OVERRIDES_HELP,
                 default: str | None = None) -> None:
    p.add_argument("--config", default=default,
                   help=CONFIG_HELP + (f"; without --config: {default}" if default else ""))
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value", help=overrides_help)  # default: not "required"


def refresh_seconds(text: str) -> float:
    """argparse type: seconds between the dashboard's checks, at least 0.1 (argparse names the flag and exits 2
    otherwise): the page polls the server at that rate, and a millisecond would be a poll per millisecond per viewer."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0.1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds of 0.1 or more")
    return value
