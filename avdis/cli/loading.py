"""A command's config from --config, its overrides and the command's own flags, with the refusals every command
makes while reading it (a setting it does not read, one given twice, one read only under another mode, a weight of 0
for a method that takes none)."""

from __future__ import annotations

import argparse
from typing import Any

from avdis import config as C
from avdis.cli.reads import (EVERY_SETTING, READ_ONLY_UNDER, READS, given_by, holds_path, mode_of, read_by,
                             reads_setting, set_paths, typed_by, without_ray)
from avdis.cli.refusals import refuse_ignored


def load_config(args: argparse.Namespace, flags: dict[str, tuple[str, Any]] | None = None) -> C.Config:
    """--config and its overrides, with the values of the command's own flags given (setting -> (flag, value), None
    for a flag not given). A flag and an override of one setting are refused: which should win is the user's to say
    (the override won in silence, its flag unchecked). So is an override of a section the command does not read
    (`READS`): `avdis train sweep.num_samples=8` was accepted and changed nothing."""
    given = {key: (flag, value) for key, (flag, value) in (flags or {}).items() if value is not None}
    reads = READS.get(args.command)
    for override in args.overrides:
        sets = C.parse_overrides([override])  # by its dotted key or inside a section's value (sweep={name: x})
        # a name Config lacks (trian.epochs=3) is left to validation, which names it and the one it is nearest
        unread = [path for path in set_paths(sets) if reads is not None and not reads_setting(reads, path)
                  and reads_setting(EVERY_SETTING, path)]
        if unread:
            raise C.ConfigError(f"{override}: avdis {args.command} uses only the {', '.join(reads)} settings; "
                                f"{unread[0]} would change nothing here (give it to {read_by(unread[0])})")
        for key, (flag, value) in given.items():
            if holds_path(sets, key.split(".")):
                raise C.ConfigError(f"{key} is given twice, by {flag} {value} and by {override}; give it once")
    cfg = C.load(args.config, args.overrides, {key: value for key, (_, value) in given.items()}, given_by(flags))
    for key, mode, values, why in READ_ONLY_UNDER:
        said, current = mode_of(cfg, mode)
        sampled = args.command == "sweep" and mode in cfg.sweep.space.params  # each trial its own
        unused = reads_setting(("ray",), key) and without_ray(args, cfg)  # the command's no-Ray rule speaks for it
        if (reads is None or reads_setting(reads, key)) and current not in values and not sampled and not unused:
            refuse_ignored(args, cfg, {key: f"{why}; under {said}={current} {{key}} would change nothing: drop it, "
                                             f"or give {mode}={'null' if values[0] is None else values[0]}"},
                            chosen=said != mode or typed_by(args, mode, flags) is not None, flags=flags)
    # here, not in MethodConfig: `_refuse_unless_resumed`. A sweep draws each trial's method.name and method.weight
    # (`SWEEP_SETS_ITSELF`): a file's, for `avdis train`, are left alone there, 0 as any other weight
    if reads is not None and reads_setting(reads, "method.weight") and cfg.method.weight == 0 \
            and cfg.method.name not in C.WEIGHT_RANGES:
        refuse_ignored(args, cfg, {"method.weight": f"method {cfg.method.name} takes no weight, so {{key}}=0 would "
                                                     "change nothing (it trains as without it, under a run name of its "
                                                     f"own); drop it, or give method.name one of "
                                                     f"{', '.join(C.WEIGHT_RANGES)}"}, chosen=False, flags=flags)
    return cfg
