"""A benchmark's --help prints its usage and starts nothing (bench/trial_overhead.py took no options and ran its
whole ~4 min benchmark, local Rays included, for --help); a benchmark refuses what it would run as something else."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import sweep_record  # noqa: E402
import trial_overhead  # noqa: E402

from avdis.errors import UsageError  # noqa: E402


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


@pytest.mark.parametrize(("setup", "why"), [("tpe/mo_asha:g4e2_pruned_s6_m0.1", "no variant 'g4e2_pruned_s6_m0.1'"),
                                            ("random/oracle", "the oracle is replayed only as tpe/oracle"),
                                            ("tpe/asha", "sweep.scheduler.type: Input should be 'mo_asha' or 'none'"),
                                            ("tpe/mo_asha:warm_told_64", "name its recording with --warm-from")])
def test_sweep_replay_refuses_a_setup_it_would_run_as_another(tmp_path, setup, why):
    """A variant the replay does not define ran the defaults under its name (and random/oracle ran random search
    with no scheduler): numbers labelled as a setup that never ran. Refused before any work, naming it."""
    out = subprocess.run([sys.executable, str(BENCH / "sweep_replay.py"), "--setups", setup, "--seeds", "1",
                          "--trials", "4", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    assert out.returncode == 2 and f"error: setup {setup!r}: " in out.stderr and why in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.iterdir())


def test_sweep_record_resumes_its_design_and_refuses_to_pair_seeds_of_two_designs_under_one_id(tmp_path):
    """A rerun with another --per-method recorded a seed of `<method>-00` at the new design's values beside the
    first seed at the old one's: the replay took the two configurations for two seeds of one."""
    path = tmp_path / "curves.csv"
    first = sweep_record.design(2)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=sweep_record.COLUMNS)
        writer.writeheader()
        writer.writerows({**p, "seed": 0, "epoch": 1} for p in first)
    assert sweep_record.todo(first, 2, path) == [(p, 1) for p in first]  # the same design goes on
    more = sweep_record.design(3)
    assert sweep_record.todo(more, 1, path) == [(p, 0) for p in more if p["config_id"].endswith("-02")]
    with pytest.raises(UsageError, match=r"single_task-00 is recorded at weight None, lr [0-9.e-]+, where this "
                                         r"--per-method puts it at weight None, lr"):
        sweep_record.todo(more, 2, path)


@pytest.mark.ray
@pytest.mark.slow
def test_trial_overhead_runs_the_old_ways_trial_through_the_relay(tiny_shards, tmp_path, request):
    """The old way's trial (a TorchTrainer whose reports reach Tune through the relay) built TrainToTune() without
    the sweep's emotion metric it has taken since 20e93e7: each of its trials failed of a TypeError, so the
    benchmark stopped at its first arm. Its workers' timings must reach the file the benchmark reads, too. One trial
    of one epoch, timed as the benchmark times it."""
    import ray.cloudpickle as cloudpickle

    from avdis.config import load
    from avdis.tune import sweep

    own_trial, own_resources = sweep.run_trial, sweep.trial_resources
    cloudpickle.register_pickle_by_value(trial_overhead)  # Ray's workers cannot import bench/ modules
    request.addfinalizer(lambda: cloudpickle.unregister_pickle_by_value(trial_overhead))
    cfg = load(BENCH.parent / "jobs" / "configs" / "smoke.yaml",
               [f"data.shards={tiny_shards}", f"sweep.storage={tmp_path}/sweeps", f"train.storage={tmp_path}/train",
                "sweep.name=old", "sweep.num_samples=1", "sweep.scheduler.type=none", "train.epochs=1",
                "train.strategy=ddp", "train.zero_stage=0", "sweep.space.methods=[multitask]"])
    rows, _ = trial_overhead.run_sweep(cfg, trial_overhead.old_trial, lambda c: {"cpu": c.sweep.trial_cpus},
                                       reuse_actors=False)
    assert [(r["status"], r["epochs"]) for r in rows] == [("TERMINATED", 1)]
    assert rows[0]["fit_to_worker_s"] > 0  # its worker ran under a TorchTrainer, through the relay's fit()
    # its bench-only switches are put back: a later sweep in this process (test_sweep_units on the same xdist
    # worker, in a CI run) sized its trials with the old way's resources
    assert (sweep.run_trial, sweep.trial_resources) == (own_trial, own_resources)
