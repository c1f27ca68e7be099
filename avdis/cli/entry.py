"""The `avdis` command: synth, preprocess, train, sweep, report, dashboard, model, grafana.

(That first line is `avdis --help`'s description.) The parser, the parse of a command line, and `main`, which runs a
command and turns its errors, a Ctrl-C and a reader of its output gone into messages and exit codes (and a crash in
native code into its threads' stacks, `stacks_on_crash`).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import re
import select
import sys

from avdis import config as C
from avdis import runtime
from avdis.cli.commands import (GRAFANA_TOKEN_ENV, cmd_dashboard, cmd_grafana, cmd_model, cmd_preprocess, cmd_report,
                                cmd_sweep, cmd_synth, cmd_train)
from avdis.cli.helps import (MODEL_OVERRIDES_HELP, PREPROCESS_OVERRIDES_HELP, READER_OVERRIDES_HELP,
                             SWEEP_OVERRIDES_HELP, add_synth_flags, refresh_seconds, settings_help, with_config)
from avdis.cli.reads import READS
from avdis.cli.refusals import said_by
from avdis.errors import AvdisError


def build_parser(default_config: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """The `avdis` parser; `default_config` is the --config a command reads when none is given (`jobs/sweep.py`'s
    embedded default), shown in its --help. `prog` is the name a command's usage and argparse's errors give it
    where it is not `avdis <command>`: a jobs/ script's file name, as argparse names a script (`python
    jobs/sweep.py --help` showed `usage: avdis sweep`, a command the user had not run)."""
    SETTINGS_HELP, RAW = settings_help(), argparse.RawDescriptionHelpFormatter  # the epilog's lines as written
    parser = argparse.ArgumentParser(prog="avdis", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a generated audio-visual corpus (real mp4 files + ground truth)")
    p.add_argument("--out", required=True, help="local folder to write the corpus into: a new or empty one, or one "
                   "holding a corpus avdis synth generated (made again with these settings; kept where it has them)")
    add_synth_flags(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("preprocess", help="decode a corpus into WebDataset shards + manifest.parquet",
                       epilog=settings_help(READS["preprocess"]), formatter_class=RAW)
    p.add_argument("--corpus", choices=C.CORPORA, help="data.corpus (default: the config's)")
    p.add_argument("--src", help="the corpus's source folder (data.src; default: the config's)")
    p.add_argument("--out", help="output URL, a local folder or s3://bucket/prefix (data.shards; default: the "
                   "config's, which train and sweep read)")
    p.add_argument("--shard-size", type=int, help="clips per shard (data.shard_size)")
    p.add_argument("--no-ray", action="store_true", help="decode in this process instead of Ray tasks")
    p.add_argument("--force", action="store_true",
                   help="rebuild the shards even when the manifest says they are up to date")
    with_config(p, PREPROCESS_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train one model (strategy single: this process; ddp/deepspeed: Ray Train)",
                       epilog=settings_help(READS["train"]), formatter_class=RAW)
    p.add_argument("--workers", type=int, help="training workers (train.workers); more than 1 needs --strategy ddp "
                   "or deepspeed")
    p.add_argument("--strategy", choices=C.STRATEGIES, help="train.strategy: single trains in this process; ddp and "
                   "deepspeed train on Ray Train workers, one or more")
    p.add_argument("--storage", help="URL for metrics.json and checkpoints (local folder or s3://)")
    p.add_argument("--name", help="run name under --storage")
    with_config(p, default=default_config)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="Ray Tune sweep over methods and weights; writes the Pareto front",
                       epilog=SETTINGS_HELP, formatter_class=RAW)
    p.add_argument("--storage", help="URL the sweep writes under (local folder or s3://)")
    p.add_argument("--name", help="sweep name; outputs go to <storage>/<name>/")
    p.add_argument("--retry-failed", action="store_true",
                   help="resuming a sweep, run its failed trials (search and confirming; the search's not once the "
                   "front's confirmation has begun) again, each from its last checkpoint: once their cause is fixed "
                   "(without it they stay failed; a new sweep has none)")
    with_config(p, SWEEP_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="write pareto.html / pareto.png / pareto.json for a sweep",
                       epilog=settings_help(("s3",)), formatter_class=RAW)
    p.add_argument("sweep", help="<storage>/<sweep name>")
    with_config(p, READER_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="serve a sweep's live Pareto page",
                       epilog=settings_help(("s3",)), formatter_class=RAW)
    p.add_argument("sweep", help="<storage>/<sweep name>")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8300, help="TCP port to listen on (default: %(default)s; 0: any free port)")
    p.add_argument("--refresh", type=refresh_seconds, default=5.0,
                   help="seconds between checks for new results, 0.1 or more (default: %(default)s)")
    with_config(p, READER_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("model", help="list model size presets with their parameter counts",
                       epilog=settings_help(READS["model"]), formatter_class=RAW)
    p.add_argument("--list", action="store_true", help="(default) list the presets")
    with_config(p, MODEL_OVERRIDES_HELP, default_config)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("grafana", help="export the Grafana dashboard JSON or push it to a Grafana server")
    p.add_argument("action", choices=["export", "push"])
    p.add_argument("--out", help="export: the file to write (default: standard output, or -); "
                   "the repo's copy is infra/grafana/dashboards/avdis-pareto.json")
    p.add_argument("--url", help="push: Grafana base URL")
    p.add_argument("--folder-uid", help="push: Grafana folder UID")
    p.add_argument("--overwrite", action="store_true", help="push: replace a dashboard with the same UID")
    p.add_argument("--token-env",
                   help=f"push: environment variable holding the API token (default: {GRAFANA_TOKEN_ENV})")
    p.set_defaults(func=cmd_grafana)
    for command in sub.choices.values():  # its own usage for an error in its arguments, not the list of commands
        command.set_defaults(command_parser=command)
        command.prog = prog or command.prog
    return parser


def parse(argv: list[str] | None = None, default_config: str | None = None,
          prog: str | None = None) -> argparse.Namespace:
    """The parsed command line; key=value overrides may also come between or after options."""
    parser = build_parser(default_config, prog)
    args, rest = parser.parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    stray = [a for a in rest if not (takes_overrides and "=" in a and not a.startswith("-"))]
    if stray:
        args.command_parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if takes_overrides:
        args.overrides = [*args.overrides, *rest]
    if getattr(args, "sweep", None) and _OVERRIDE.fullmatch(args.sweep):
        # `avdis report s3.endpoint_url=... <sweep>`: argparse took the first word for the sweep and told the user
        # their folder was a malformed override. The sweep is the one word that is no override
        words = [args.sweep, *args.overrides]
        paths = [w for w in words if not _OVERRIDE.fullmatch(w)]
        if not paths:
            args.command_parser.error("no sweep folder given: pass <storage>/<sweep name> (key=value overrides "
                                      "may come before or after it)")
        if len(paths) == 1:
            args.sweep, args.overrides = paths[0], [w for w in words if w != paths[0]]
    return args


_OVERRIDE = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*=.*", re.S)  # dotted.key=value, as no path starts


# How to go on after a Ctrl-C that no avdis error reported (one that did, e.g. a Ray Train run's or Tune's, says so
# itself): what each command leaves behind when cut short, for its rerun.
AFTER_INTERRUPT = {
    "synth": "rerun the same command to generate the corpus again",
    "preprocess": "rerun the same command to build the shards again (a build cut short leaves no manifest, so no run "
                  "reads its shards)",
    "train": "rerun the same command to resume from its last whole checkpoint",
    "sweep": "rerun the same command to resume",
}


def main(argv: list[str] | None = None, default_config: str | None = None, prog: str | None = None) -> int:
    stacks_on_crash()
    args = parse(argv, default_config, prog)
    before, remembered = runtime.stop_as_interrupt(), runtime.remember_interrupts()
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader gone is said as such, not in Python's flush at exit
        return code
    except AvdisError as exc:
        print(f"{said_by(args)}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        then = AFTER_INTERRUPT.get(args.command)
        print(f"{said_by(args)}: interrupted" + (f"; {then}" if then else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not stdout_gone():  # a pipe of the command's own (to a child, a socket) broke: that is its failure
            raise
        # what reads the output stopped (`avdis grafana export | head`): no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would raise again
        return 141  # as a shell reports a command that SIGPIPE ended
    finally:
        if before is not None:  # a caller's own (main called in a process that goes on)
            before()
        if remembered is not None:
            remembered()
        interrupts_handled()


def interrupts_handled() -> None:
    """Tell CPython that every Ctrl-C so far was handled (a KeyboardInterrupt main lets out is flagged again as it
    leaves). One that reached the command through code Python compiled from a string (a lazy import making a dataclass
    or namedtuple, any `exec`) leaves CPython's flag of an unhandled Ctrl-C set though the command handled it, and a
    process started as `python -m` is ended by SIGINT after it exits: `python -m avdis preprocess`, Ctrl-C'd as its
    build began, said it was interrupted and died of SIGINT (exit -2 to its parent, not 130). Running code compiled from
    a string clears the flag; nothing else in Python reaches it."""
    exec("")


def stacks_on_crash() -> None:
    """Have a crash in native code (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT: in a decoder, a compiler, a library's
    thread as the interpreter exits) print every thread's Python stack to stderr (Python's faulthandler): such a crash
    ended a command without a word, exit -11 alone. Left on once the command returns, for a crash in the interpreter's
    exit. A process that has it on already (PYTHONFAULTHANDLER, `python -X faulthandler`, pytest) keeps its own, and
    nothing is turned on where stderr has no file descriptor (None, closed, or an object writing elsewhere). The
    signals a command handles (Ctrl-C, SIGTERM, SIGHUP) are not among those it takes."""
    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable()  # to sys.stderr's file descriptor, every thread
    except (AttributeError, RuntimeError, ValueError, OSError):  # sys.stderr None, without a fileno, or closed
        pass


def stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (its write end then polls POLLERR)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError):  # no file descriptor (stdout replaced), or closed
        return False
