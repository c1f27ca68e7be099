"""A command's start-up: what a fresh process pays in imports before its work begins.

    .venv/bin/python bench/startup.py                      # ~5 min on 2 cores; writes bench/results/startup.json
    .venv/bin/python bench/startup.py --baseline ../old    # the same, another checkout timed alternately beside it

Every figure is of a fresh `python` (its interpreter start included), timed from outside: wall seconds, and CPU
seconds (user + system, the process's own rusage), `--repeats` times each, min and median. Measured:
- `help`: `python -m avdis --help`;
- `sweep_help`: `python jobs/sweep.py --help`;
- `import:<command>`: `avdis.cli` and the imports `avdis <command>` makes before its work (the `from ... import`
  lines of its `cmd_<command>` in avdis/cli/commands.py, read from the checkout timed);
- `trial`: `import avdis.tune.trial`, what a trial's fresh Ray process imports to unpickle its training function;
- `sweep_to_ray`: `python jobs/sweep.py --config jobs/configs/smoke.yaml` (into a temporary folder) up to the call
  that starts Ray (`avdis.runtime.connect`, replaced by an exit): its imports and every check it makes first;
- `sweep_refused`: `python -m avdis sweep method.name=adversarial`, a command line the sweep refuses (exit 2).
With each, the heavy packages (`HEAVY`) the process had imported (a run of its own under `python -X importtime`).
With `--baseline`, each measurement runs in both checkouts one after the other, the order swapped every repeat, so
a machine whose load changes meanwhile weighs on both alike. Each checkout runs with `PYTHONPATH` set to it.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFUSED = {"sweep_refused": 2}  # the exit each measurement ends with where it is not 0
HEAVY = ("torch", "deepspeed", "webdataset", "ray", "ray.tune", "ray.train", "pandas", "pyarrow", "scipy",
         "scipy.stats", "matplotlib", "plotly", "optuna", "av", "cv2", "librosa")
# the sweep driver of `sweep_to_ray`: jobs/sweep.py's own run (its embedded default, the smoke size given), stopped
# where it would start Ray; argv: the checkout, then the sweep's arguments
TO_RAY = """
import os, runpy, sys
from avdis import runtime
def start(*_args, **_kwargs):
    os._exit(0)  # the sweep starts Ray here: what came before is what is timed
runtime.connect = start
script = os.path.join(sys.argv[1], "jobs", "sweep.py")
sys.argv, sys.path[0] = [script, *sys.argv[2:]], os.path.dirname(script)  # as `python jobs/sweep.py` has them
runpy.run_path(script, run_name="__main__")
"""


def command_imports(root: Path) -> dict[str, str]:
    """Per command, the statements that import what its `cmd_<command>` imports, as avdis/cli/commands.py of the
    checkout at `root` writes them (behind `import avdis.cli`, which every command imports first)."""
    tree = ast.parse((root / "avdis" / "cli" / "commands.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_"):
            lines = [ast.unparse(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
            found[node.name.removeprefix("cmd_")] = "\n".join(["import avdis.cli", *lines])
    return found


def measurements(root: Path, scratch: Path) -> dict[str, list[str]]:
    """Each measurement's `python` arguments for the checkout at `root` (`scratch`: a folder the sweep may write)."""
    smoke = ["--config", str(root / "jobs" / "configs" / "smoke.yaml"), f"sweep.storage={scratch / 'sweeps'}",
             f"data.src={scratch / 'corpus'}", f"data.shards={scratch / 'shards'}"]
    return {"help": ["-m", "avdis", "--help"], "sweep_help": [str(root / "jobs" / "sweep.py"), "--help"],
            **{f"import:{command}": ["-c", code] for command, code in command_imports(root).items()},
            "trial": ["-c", "import avdis.tune.trial"], "sweep_to_ray": ["-c", TO_RAY, str(root), *smoke],
            "sweep_refused": ["-m", "avdis", "sweep", "method.name=adversarial"]}


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), "RAY_ADDRESS": ""}


def timed(name: str, argv: list[str], root: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh `python <argv>` (measurement `name`) run in the checkout at `root`; a run
    that exits otherwise than it should (`REFUSED`, else 0) is an error."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=root, env=environment(root), capture_output=True, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != REFUSED.get(name, 0):
        raise SystemExit(f"{name} in {root} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported(name: str, argv: list[str], root: Path) -> list[str]:
    """The packages of `HEAVY` that `python <argv>` (measurement `name`) imports in the checkout at `root` (read from
    -X importtime). A run that exits otherwise than it should (`REFUSED`, else 0) is an error: one that stopped at a
    failed import had imported less, and read as lighter."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=root, env=environment(root),
                          capture_output=True, text=True)
    if done.returncode != REFUSED.get(name, 0):
        raise SystemExit(f"{name} in {root} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return heavy_in(done.stderr)


def heavy_in(importtime: str) -> list[str]:
    """The packages of `HEAVY` that a `python -X importtime` run's standard error names, or a module of (some, such
    as scipy.stats, imported through their package's `__getattr__`, have only their modules named)."""
    names = {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")}
    return [heavy for heavy in HEAVY if any(name == heavy or name.startswith(f"{heavy}.") for name in names)]


def summary(runs: list[tuple[float, float]], heavy: list[str]) -> dict[str, Any]:
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    return {"wall_s": {"min": round(min(walls), 2), "median": round(statistics.median(walls), 2)},
            "cpu_s": {"min": round(min(cpus), 2), "median": round(statistics.median(cpus), 2)},
            "heavy_imported": heavy}


def commit_of(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement (default 5)")
    parser.add_argument("--baseline", type=Path, help="another checkout of avdis to time beside this one")
    parser.add_argument("--out", type=Path, help="the JSON to write (default bench/results/startup.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more")
    roots = {"this": ROOT}
    if args.baseline is not None:
        baseline = args.baseline.resolve()
        if not (baseline / "avdis" / "cli" / "commands.py").is_file():
            parser.error(f"--baseline {args.baseline}: no avdis checkout there (no avdis/cli/commands.py)")
        roots["baseline"] = baseline
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="avdis-startup-") as tmp:
        plans = {key: measurements(root, Path(tmp) / key) for key, root in roots.items()}
        names = [name for name in plans["this"] if all(name in plan for plan in plans.values())]
        runs: dict[str, dict[str, list[tuple[float, float]]]] = {key: {n: [] for n in names} for key in roots}
        for repeat in range(args.repeats):
            order = list(roots) if repeat % 2 == 0 else list(reversed(roots))
            for name in names:
                for key in order:
                    runs[key][name].append(timed(name, plans[key][name], roots[key]))
            loads.append(os.getloadavg()[0])
            print(f"repeat {repeat + 1}/{args.repeats} done (load {loads[-1]:.1f})", flush=True)
        results = {key: {name: summary(runs[key][name], imported(name, plans[key][name], roots[key]))
                         for name in names}
                   for key in roots}
    for name in names:
        print(f"{name:>20}  " + "  ".join(f"{key}: wall {results[key][name]['wall_s']['median']:6.2f} s, cpu "
                                           f"{results[key][name]['cpu_s']['median']:5.2f} s" for key in roots))
    machine.write(args.out or "startup", {
        "command": "python bench/startup.py" + (" --baseline <checkout>" if args.baseline else "")
                   + f" --repeats {args.repeats}",
        "checkouts": {key: commit_of(root) for key, root in roots.items()},
        "load_1min": {"min": round(min(loads), 1), "max": round(max(loads), 1)},
        "measured": {"wall_s": "a fresh process's wall seconds, min and median over the repeats",
                     "cpu_s": "its user + system CPU seconds, min and median",
                     "heavy_imported": "the packages of HEAVY it imported"},
        "results": results},
        note=f"{args.repeats} repeats" + (", alternating with the baseline" if args.baseline else ""))


if __name__ == "__main__":
    main()
