"""A command imports, before its work, only the heavy packages that work needs: each is seconds of a fresh process's
start on 2 cores (torch ~1.3 s of CPU, scipy.stats ~0.6 s, Ray Tune and matplotlib more), paid by every command a
user runs and every driver a test starts. Each check runs the real command line in a fresh `python -X importtime`
and reads what it imported (`bench/startup.py`'s reading of it, which times the same command lines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import startup  # noqa: E402

# not before the work of a command that trains no model: the preprocess command's builds write shards in Ray tasks,
# which import webdataset (and so torch) themselves; the seed spread's Student-t quantile is all a reader of results
# used scipy.stats for
UNNEEDED = ("torch", "deepspeed", "webdataset", "ray.tune", "ray.train", "scipy.stats")


@pytest.mark.parametrize("name", ["help", "sweep_help"])
def test_help_imports_no_heavy_package(name, tmp_path):
    argv = startup.measurements(ROOT, tmp_path)[name]
    assert startup.imported(name, argv, ROOT) == []


@pytest.mark.parametrize("command", ["synth", "preprocess", "report", "dashboard", "grafana"])
def test_a_command_that_trains_nothing_imports_neither_torch_nor_ray_tune_nor_scipy_stats(command, tmp_path):
    argv = startup.measurements(ROOT, tmp_path)[f"import:{command}"]
    assert "avdis." in argv[-1]  # the command's own modules, read from commands.py, are what is imported
    assert [name for name in startup.imported(f"import:{command}", argv, ROOT) if name in UNNEEDED] == []


def test_a_measurement_whose_import_fails_is_an_error_not_a_light_start():
    """The packages a command imports were read from a run whatever its exit: one stopped by a failed import (a
    module renamed, a typo in a cmd_ function's import) had imported less, so a check of what it imports passed and
    the bench wrote a lighter start. Such a run is now an error naming the measurement and its exit."""
    argv = ["-c", "import avdis.cli\nimport avdis.no_such_module"]
    with pytest.raises(SystemExit, match=r"(?s)import:report in .* exited 1:.*No module named 'avdis.no_such_module'"):
        startup.imported("import:report", argv, ROOT)


def test_a_sweep_refused_for_its_command_line_is_refused_before_the_sweep_is_imported(tmp_path):
    argv = startup.measurements(ROOT, tmp_path)["sweep_refused"]
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=tmp_path, env=startup.environment(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "method.name=adversarial: a sweep draws method.name for each trial" in done.stderr
    assert startup.heavy_in(done.stderr) == []
