"""The embedded default sweep, in smoke size, end to end: killed driver, same command again, consistent outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from avdis.tune import pareto

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 4


def smoke_overrides(tmp_path: Path) -> list[str]:
    """The embedded default (jobs/configs/local.yaml) shrunk to smoke size."""
    return [
        f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}", f"sweep.storage={tmp_path / 'sweeps'}",
        f"train.storage={tmp_path / 'train'}", "data.synth.speakers=6", "data.synth.clips_per_speaker=12",
        "data.shard_size=16", "train.epochs=2", "model.emb_dim=16", "probe.epochs=60",
        f"sweep.num_samples={SAMPLES}", "sweep.scheduler.eta=2",
    ]


def completed(sweep: Path) -> pd.DataFrame:
    path = sweep / "trials.parquet"
    if not path.exists():
        return pd.DataFrame(columns=["order"])
    df = pd.read_parquet(path)
    return df[df["order"].notna()]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its process group, and Ray's own groups below it)."""
    family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(30)


def test_embedded_default_sweep_resumes_after_a_killed_driver(tmp_path):
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), *smoke_overrides(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sweep = tmp_path / "sweeps" / "local"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(completed(sweep)) < 1:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(2)
    finally:
        kill_group(first)
        log.close()
    done_before = completed(sweep)
    assert 1 <= len(done_before) < SAMPLES

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=700)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    assert f"front:  {sweep / 'pareto.json'}" in second.stdout

    trials = pd.read_parquet(sweep / "trials.parquet")
    assert len(trials) == SAMPLES and trials["order"].notna().all()
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    kept = trials.set_index("trial_id").loc[done_before["trial_id"]]
    for col in ("emotion_acc", "leakage", "order", "method"):  # finished trials were kept, not rerun
        assert list(kept[col]) == list(done_before[col])
    assert trials["leakage"].notna().all() and trials["manifest_hash"].nunique() == 1
    assert (trials["split_id"] == "within_speaker/seed0").all()
    # time in training steps <= time in whole epochs (steps, evaluation, probe)
    assert ((trials["train_s"] > 0) & (trials["train_s"] <= trials["work_s"])).all()

    summary = json.loads((sweep / "pareto.json").read_text())
    mask = pareto.nondominated(trials["emotion_acc"].to_numpy(), trials["leakage"].to_numpy())
    assert set(summary["front"]) == set(trials["trial_id"][mask])
    assert len(summary["hypervolume_history"]) == SAMPLES
    assert summary["hypervolume"] == pytest.approx(summary["hypervolume_history"][-1]["hypervolume"])
    for name in ("pareto.html", "pareto.png", "sweep.json"):
        assert (sweep / name).stat().st_size > 0
