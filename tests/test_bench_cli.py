"""A benchmark's --help prints its usage and starts nothing (bench/trial_overhead.py took no options and ran its
whole ~4 min benchmark, local Rays included, for --help)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import trial_overhead  # noqa: E402


def test_trial_overhead_help_prints_usage_and_runs_nothing(capsys, monkeypatch):
    monkeypatch.setattr(trial_overhead, "run_sweep", lambda *a, **k: pytest.fail("--help ran the benchmark"))
    with pytest.raises(SystemExit) as caught:
        trial_overhead.main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "Writes bench/results/trial_overhead.json" in out


def test_trial_overhead_refuses_an_argument_it_does_not_take(capsys, monkeypatch):
    monkeypatch.setattr(trial_overhead, "run_sweep", lambda *a, **k: pytest.fail("a stray argument ran the benchmark"))
    with pytest.raises(SystemExit) as caught:
        trial_overhead.main(["--jobs", "2"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --jobs 2" in capsys.readouterr().err
