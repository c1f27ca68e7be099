"""The `avdis` command: synth, preprocess, train, sweep, report, dashboard, model, grafana.

Each subcommand parses its flags, builds a typed config (exit 2 on bad input, before
any work) and calls one library function; `jobs/*.py` call the same functions.

The modules, by job: `reads` (the settings each command reads, and which its command line gave), `refusals` (the
settings a command refuses as ones it would not read, and why), `loading` (--config, overrides and flags -> a
`Config`, with the refusals every command makes), `helps` (what --help says of the flags, overrides and settings),
`commands` (a function per subcommand) and `entry` (the parser, the parse of a command line, and `main`). Each imports
only those before it. The names below are the modules' own, imported here (`avdis = avdis.cli:main`, `jobs/*.py`,
the tests' `load_config` and `stdout_gone`); a patch of one here reaches no module that reads it: patch it where it is
read.
"""

from __future__ import annotations

from avdis.cli.commands import (GRAFANA_FLAGS, GRAFANA_TOKEN_ENV, cmd_dashboard, cmd_grafana, cmd_model,
                                cmd_preprocess, cmd_report, cmd_sweep, cmd_synth, cmd_train)
from avdis.cli.entry import AFTER_INTERRUPT, build_parser, main, parse, stdout_gone
from avdis.cli.helps import (CONFIG_HELP, MODEL_OVERRIDES_HELP, OVERRIDES_HELP, PREPROCESS_OVERRIDES_HELP,
                             READER_OVERRIDES_HELP, SWEEP_OVERRIDES_HELP, SYNTH_FLAGS, settings_help)
from avdis.cli.loading import load_config
from avdis.cli.reads import READ_ONLY_UNDER, READS
from avdis.cli.refusals import (IN_PROCESS_IGNORES, IN_PROCESS_WHY, ONE_RESTART_RULE, SINGLE_IGNORES,
                                SINGLE_IGNORES_WHY, SWEEP_SETS_ITSELF)

__all__ = ["AFTER_INTERRUPT", "CONFIG_HELP", "GRAFANA_FLAGS", "GRAFANA_TOKEN_ENV", "IN_PROCESS_IGNORES",
           "IN_PROCESS_WHY", "MODEL_OVERRIDES_HELP", "ONE_RESTART_RULE", "OVERRIDES_HELP", "PREPROCESS_OVERRIDES_HELP",
           "READER_OVERRIDES_HELP", "READS", "READ_ONLY_UNDER", "SINGLE_IGNORES", "SINGLE_IGNORES_WHY",
           "SWEEP_OVERRIDES_HELP", "SWEEP_SETS_ITSELF", "SYNTH_FLAGS", "build_parser", "cmd_dashboard", "cmd_grafana",
           "cmd_model", "cmd_preprocess", "cmd_report", "cmd_sweep", "cmd_synth", "cmd_train", "load_config", "main",
           "parse", "settings_help", "stdout_gone"]
