"""The embedded default sweep, in smoke size, end to end: killed driver, same command again, consistent outputs.
Its 1-worker DeepSpeed trials train in the trial's own process; 2-worker trials, each a TorchTrainer reporting through
the relay, run in test_jobs.py (through `ray job submit`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from avdis import results, storage
from avdis.results import pareto

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 6  # in-process trials of 3 epochs end about 2 a second: the driver must be killed with some still to run


def smoke_overrides(tmp_path: Path) -> list[str]:
    """The embedded default (jobs/configs/local.yaml) shrunk to smoke size."""
    return [
        f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}", f"sweep.storage={tmp_path / 'sweeps'}",
        "data.synth.speakers=6", "data.synth.clips_per_speaker=12",
        "data.shard_size=16", "train.epochs=3", "model.emb_dim=16", "probe.epochs=60",
        "sweep.space.weights.nullspace={low: 1, high: 15, int: true}",  # INLP removes at most emb_dim - 1 directions
        # a rung at epoch 2, as local.yaml's first: trials probe there and at 3, and epoch 1 reports no leakage
        f"sweep.num_samples={SAMPLES}", "sweep.scheduler.eta=2", "sweep.scheduler.grace_epochs=2",
    ]


def completed(sweep: Path) -> pd.DataFrame:
    """The finished trials; none while the table is missing. Read whole, as avdis's readers do: the recorder
    replaces the file by a rename, and pandas' reader opens it twice (footer, then pages), so it could read the
    footer of one version and the pages of the next ("Deserializing page header failed")."""
    try:
        df = storage.read_parquet(str(sweep / "trials.parquet")).to_pandas()
    except FileNotFoundError:  # not there yet
        return pd.DataFrame(columns=["order"])
    return df[df["order"].notna()]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its process group, and Ray's own groups below it)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:  # it had ended already (the test's own assertion says why)
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(30)


def killed_once(cmd: list[str], env: dict[str, str], tmp_path: Path, done: Callable[[], bool], what: str,
                poll_s: float) -> None:
    """Start the sweep's driver and SIGKILL it, and all it started, once `done` holds (polled every `poll_s`)."""
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while not done():
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() < deadline, f"no {what} finished in time"
                time.sleep(poll_s)
        finally:
            kill_group(first)


def resumed_without_synth(cmd: list[str], env: dict[str, str], tmp_path: Path) -> str:
    """The killed sweep run again with a config that leaves data.synth out: the corpus is the shards' (before, the
    default corpus's settings were recorded, and here compared with the started sweep's: the resume was refused).
    Its stdout, once it said it resumed and ended well."""
    spec = yaml.safe_load((ROOT / "jobs" / "configs" / "local.yaml").read_text())
    del spec["data"]["synth"]
    (tmp_path / "no_synth.yaml").write_text(yaml.safe_dump(spec))
    resume = [*cmd[:2], f"--config={tmp_path / 'no_synth.yaml'}", *(a for a in cmd[2:] if not a.startswith("data.synth."))]
    second = subprocess.run(resume, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=700)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    return second.stdout


def test_embedded_default_sweep_resumes_after_a_killed_driver(tmp_path):
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), *smoke_overrides(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sweep = tmp_path / "sweeps" / "local"
    # polled often: 4 trials once all ended inside a 2 s poll
    killed_once(cmd, env, tmp_path, lambda: len(completed(sweep)) >= 1, "trial", poll_s=0.1)
    done_before = completed(sweep)
    assert 1 <= len(done_before) < SAMPLES

    assert f"front:  {sweep / 'pareto.json'}" in resumed_without_synth(cmd, env, tmp_path)

    trials = pd.read_parquet(sweep / "trials.parquet")
    finished = trials[trials["order"].notna()]
    assert len(finished) == SAMPLES
    # a trial the killed driver started after Tune's last save is not resumed: it is closed, saying so
    lost = trials[trials["order"].isna()]
    assert (lost["status"] == "ERROR").all() and lost["error"].str.contains("driver was killed").all()
    trials = finished
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    assert {json.loads(c)["data"]["synth"]["speakers"] for c in trials["config"]} == {6}  # the corpus trained on
    kept = trials.set_index("trial_id").loc[done_before["trial_id"]]
    for col in ("emotion_acc", "leakage", "order", "method"):  # finished trials were kept, not rerun
        assert list(kept[col]) == list(done_before[col])
    assert trials["leakage"].notna().all() and trials["manifest_hash"].nunique() == 1
    assert (trials["split_id"] == "within_speaker/seed0").all()
    # MO-ASHA's rungs hold every trial, those of the resumed driver too: Tune's experiment used to be the sweep's
    # folder, and its sync copied mo_asha.json as it was at the restore back over the resumed driver's
    rungs = json.loads((sweep / "mo_asha.json").read_text())["rungs"]
    assert set(trials["trial_id"]) <= set(rungs["2"]), rungs
    for trial in trials["trial_id"]:  # probed at the rung and the last epoch only (Tune once ended the sweep at epoch 1)
        history = json.loads((sweep / "checkpoints" / "trials" / trial / "metrics.json").read_text())["history"]
        assert [e["epoch"] for e in history if "val_leakage" in e] == [e for e in (2, 3) if e <= len(history)]
    # time in training steps <= time in whole epochs (steps, evaluation, probe)
    assert ((trials["train_s"] > 0) & (trials["train_s"] <= trials["work_s"])).all()

    summary = json.loads((sweep / "pareto.json").read_text())
    # the front: chosen on the validation numbers among the trials trained longest
    longest = trials[(trials["epochs"] == trials["epochs"].max()) & (trials["status"] != "STOPPED")]  # trained_longest
    mask = pareto.nondominated(longest["val_emotion_acc"].to_numpy(), longest["val_leakage"].to_numpy())
    assert summary["selected_on"] == "val" and set(summary["front"]) == set(longest["trial_id"][mask])
    assert len(summary["hypervolume_history"]) == SAMPLES
    assert summary["hypervolume"] == pytest.approx(summary["hypervolume_history"][-1]["hypervolume"])
    for name in ("pareto.html", "pareto.png", "sweep.json"):
        assert (sweep / name).stat().st_size > 0


def confirm_overrides(tmp_path: Path) -> list[str]:
    """Smoke size, one-process trials one at a time, 2 search trials, the front confirmed with 2 more seeds each.

    4 epochs: a confirmation then lasts seconds, so the driver is killed while one is left to do.
    """
    smoke = [o for o in smoke_overrides(tmp_path) if not o.startswith("sweep.scheduler.")]  # no MO-ASHA: refused
    return [*smoke, "train.epochs=4", "sweep.num_samples=2", "sweep.max_concurrent=1", "sweep.confirm_seeds=2",
            "sweep.scheduler.type=none", "train.strategy=single", "train.zero_stage=0", "sweep.name=confirm",
            f"sweep.checkpoints={tmp_path / 'checkpoints'}"]  # set apart, as for an S3 lifecycle rule


def test_front_confirmed_with_more_seeds_resumes_without_redoing_them(tmp_path):
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), *confirm_overrides(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sweep = tmp_path / "sweeps" / "confirm"
    # killed once the first confirmation finished: the others are left to the second run
    killed_once(cmd, env, tmp_path, lambda: "confirm" in set(completed(sweep).get("role", [])), "confirmation",
                poll_s=0.5)
    confirmed_before = completed(sweep).query("role == 'confirm'")

    assert "confirming the front" in resumed_without_synth(cmd, env, tmp_path)

    trials = pd.read_parquet(sweep / "trials.parquet")
    # a confirmation the killed driver started after Tune's last save is not resumed (its point is drawn again):
    # it is closed, saying so
    lost = trials[trials["order"].isna()]
    assert (lost["status"] == "ERROR").all() and lost["error"].str.contains("driver was killed").all()
    trials = trials[trials["order"].notna()]
    assert set(trials["status"]) == {"TERMINATED"}
    search, confirm = trials[trials["role"] == "search"], trials[trials["role"] == "confirm"]
    assert len(search) == 2
    front = results.search_front(trials)
    assert len(confirm) == 2 * len(front)  # each front configuration twice: no confirmation trained twice
    assert len(confirmed_before) < len(confirm), "the kill came after the last confirmation: nothing was resumed"
    for rep in front.itertuples():
        runs = confirm[confirm["config_id"] == rep.config_id]
        assert sorted(runs["seed"]) == [rep.seed + 1, rep.seed + 2]
        for params in runs["params"]:  # the same configuration, another seed
            assert {**json.loads(params), "train.seed": None} == {**json.loads(rep.params), "train.seed": None}
    kept = trials.set_index("trial_id").loc[confirmed_before["trial_id"]]
    for col in ("emotion_acc", "leakage", "order"):  # finished before the kill: kept, not trained again
        assert list(kept[col]) == list(confirmed_before[col])

    summary = json.loads((sweep / "pareto.json").read_text())
    assert summary["front_basis"] == "seed_mean" and summary["front_points"]
    for point in summary["front_points"]:
        runs = confirm[confirm["config_id"] == point["config_id"]]  # its confirming seeds: the search's is left out
        assert point["n"] == 2 and sorted(point["trials"]) == sorted(runs["trial_id"])
        assert point["emotion_acc"] == pytest.approx(runs["emotion_acc"].mean())
        assert point["leakage_std"] == pytest.approx(runs["leakage"].std(ddof=1))
        assert point["emotion_acc_ci95"] is not None and point["leakage_ci95"] is not None
    assert "seed means" in (sweep / "pareto.html").read_text()
    # sweep.checkpoints: Tune's experiments (search and confirm) and the trials' checkpoints went there, and were
    # resumed from there; the sweep's folder holds its results alone
    apart = tmp_path / "checkpoints" / "confirm"
    assert list((apart / "confirm-search").glob("experiment_state-*.json"))  # <sweep.name>-<role>
    assert list((apart / "confirm-confirm").glob("experiment_state-*.json"))
    assert len(list(apart.glob("confirm-search/run_trial_*/checkpoint_*"))) >= 2
    assert list(apart.glob("confirm-confirm/run_trial_*"))
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == [
        "pareto.html", "pareto.json", "pareto.png", "sweep.json", "trials.parquet"]


def test_a_sweep_on_uar_chooses_its_front_on_validation_uar_and_report_reads_it_so(tiny_shards, tmp_path):
    """The smoke sweep (3 one-process trials) under sweep.emotion_metric=uar: every trial records val_emotion_uar,
    pareto.json's front is the non-dominated set of the longest-trained trials on (val_emotion_uar, val_leakage) and
    its axis and box corner are UAR's; `avdis report`, which reads the setting from sweep.json, rebuilds the same
    front; and the sweep run again on accuracy is refused."""
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           "--storage", str(tmp_path), "--name", "uar", "train.strategy=single", "train.zero_stage=0",
           "train.cpus_per_worker=1", "sweep.max_concurrent=1", f"data.shards={tiny_shards}"]
    done = subprocess.run([*cmd, "sweep.emotion_metric=uar"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "uar"
    trials = pd.read_parquet(sweep / "trials.parquet")
    assert trials["val_emotion_uar"].notna().all() and (trials["emotion_uar_chance"] > 0).all()
    longest = trials[(trials["epochs"] == trials["epochs"].max()) & (trials["status"] == "TERMINATED")]
    mask = pareto.nondominated(longest["val_emotion_uar"].to_numpy(), longest["val_leakage"].to_numpy())
    summary = json.loads((sweep / "pareto.json").read_text())
    assert sorted(summary["front"]) == sorted(longest["trial_id"][mask])
    assert summary["objectives"] == {"emotion_uar": "max", "leakage": "min"} and summary["selected_on"] == "val"
    assert summary["reference"] == {"emotion_uar": trials["emotion_uar_chance"].max(), "leakage": 1.0}
    (sweep / "pareto.json").unlink()
    report = subprocess.run([sys.executable, "-m", "avdis", "report", str(sweep)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert report.returncode == 0, report.stderr[-3000:]
    rebuilt = json.loads((sweep / "pareto.json").read_text())
    assert (rebuilt["front"], rebuilt["objectives"]) == (summary["front"], summary["objectives"])
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode != 0 and "sweep.emotion_metric=uar" in again.stderr, again.stderr[-3000:]


def test_a_sweep_of_a_spent_space_trains_each_configuration_once_and_says_so(tiny_shards, tmp_path):
    """The smoke sweep over two methods without a weight asks for 4 trials: the space holds 2 configurations (one
    train.seed), so 2 trials run, one each, and the sweep ends (exit 0, not 'interrupted') saying why; before, 4 ran,
    two of them bitwise copies of the others."""
    cmd = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
           "--storage", str(tmp_path), "--name", "spent", "train.strategy=single", "train.zero_stage=0",
           "train.cpus_per_worker=1", "sweep.max_concurrent=1", f"data.shards={tiny_shards}", "train.epochs=1",
           "sweep.scheduler.type=none", "sweep.num_samples=4", "sweep.space.methods=[multitask, single_task]"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "spent" / "trials.parquet")
    assert sorted(trials["method"]) == ["multitask", "single_task"] and (trials["status"] == "TERMINATED").all()
    said = [line for line in done.stdout.splitlines() if "the search ended" in line]
    assert len(said) == 1 and "2 trials of sweep.num_samples=4" in said[0] and "holds 2 configurations" in said[0]
    assert "avdis sweep spent: 2 trials (the space holds 2 configurations), search=tpe" in done.stdout  # its plan
