"""A named run resumes only with the data and settings it started with; anything else is refused, exit 2."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import s3_denied, saved_tune_state, shutdown_ray

from avdis import config as C
from avdis import results, storage
from avdis.cli import main
from avdis.data import shards
from avdis.errors import UsageError
from avdis.train import checkpoint as ck
from avdis.train import launch, loop

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "configs" / "smoke.yaml"


def overrides(shards_url: str, storage: Path, *extra: str) -> list[str]:
    return [f"data.shards={shards_url}", f"train.storage={storage}", "train.strategy=single", "train.zero_stage=0",
            "train.workers=1", "train.epochs=1", "probe.epochs=30", "train.name=fixed", *extra]


def cfg_for(shards_url: str, storage: Path, *extra: str) -> C.Config:
    return C.load(SMOKE, overrides(shards_url, storage, *extra))


@pytest.fixture(scope="module")
def finished(tiny_shards, tmp_path_factory) -> Path:
    """Storage holding `fixed`: a finished 1-epoch single-process run on `tiny_shards` (copy before changing)."""
    storage = tmp_path_factory.mktemp("runs")
    launch.train(cfg_for(tiny_shards, storage))
    return storage


def copy_of(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "runs")
    return tmp_path / "runs"


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if not k.endswith(("_s", "_s_sum", "_per_s", "_frac"))} for e in history]


def history(storage: Path) -> list[dict]:
    return json.loads((storage / "fixed" / ck.METRICS_FILE).read_text())["history"]


def test_other_lr_is_refused_with_exit_2_instead_of_the_old_result(tiny_shards, finished, capsys):
    before = history(finished)
    code = main(["train", "--config", str(SMOKE), *overrides(tiny_shards, finished, "train.lr=0.01")])
    err = capsys.readouterr().err
    assert code == 2
    assert "train.lr=0.003 (this run: 0.01)" in err and "another train.name" in err
    assert history(finished) == before  # nothing trained, nothing rewritten


def test_other_lr_is_refused_by_the_loop_itself(tiny_shards, finished):
    """What a sweep trial relies on (its checkpoints come from Tune), also for a run that already finished."""
    cfg = cfg_for(tiny_shards, finished, "train.lr=0.01")
    with pytest.raises(UsageError, match=r"train\.lr=0\.003 \(this run: 0\.01\)"):
        loop.run(cfg, loop.LocalReporter(str(finished / "fixed"), cfg))


def test_other_shards_are_refused_naming_the_manifest(tiny_corpus, tiny_shards, finished, tmp_path):
    other = str(tmp_path / "shards24")
    shards.build_shards(C.load(SMOKE, [f"data.src={tiny_corpus}", f"data.shards={other}", "data.shard_size=24"]).data,
                      C.S3Config())  # the same clips and labels, dealt to other shards: another manifest
    old, new = shards.manifest_hash(tiny_shards), shards.manifest_hash(other)
    with pytest.raises(UsageError, match=rf"data\.manifest_hash='{old}' \(this run: '{new}'\)\. Its shards"):
        launch.train(cfg_for(other, finished))


def test_a_ray_strategy_is_refused_before_ray_starts(tiny_shards, finished):
    import ray

    with pytest.raises(UsageError, match=r"train\.strategy='single' \(this run: 'ddp'\)"):
        launch.train(cfg_for(tiny_shards, finished, "train.strategy=ddp"))
    assert not ray.is_initialized()


def test_a_checkpoint_from_before_the_check_is_refused_clearly(tiny_shards, finished, tmp_path):
    storage = copy_of(finished, tmp_path)
    for state_file in (storage / "fixed").glob("checkpoint_*/state.json"):
        state = json.loads(state_file.read_text())
        del state[ck.SIGNATURE]
        state["identity"] = {"model.preset": "tiny", "model.modality": "av", "model.emb_dim": 16,
                             "method.name": "multitask", "train.strategy": "single", "train.zero_stage": 0,
                             "emotions": 4, "speakers": 6}  # what older versions recorded
        state_file.write_text(json.dumps(state))
    with pytest.raises(UsageError, match=r"records no data\.manifest_hash, .* an older avdis wrote it"):
        launch.train(cfg_for(tiny_shards, storage))


def test_a_checkpoint_a_kill_cut_short_is_passed_over_for_the_one_the_run_resumes_from(tiny_shards, finished, tmp_path,
                                                                                      capsys):
    storage = copy_of(finished, tmp_path)
    cut = storage / "fixed" / "checkpoint_epoch_0002"  # its upload was killed: latest.json still names epoch 1's
    cut.mkdir()
    (cut / "state.json").write_text('{"epoch": 2, "history": [{"epoch": 1, "emotion_a')
    code = main(["train", "--config", str(SMOKE), *overrides(tiny_shards, storage, "train.lr=0.01")])
    assert code == 2 and "train.lr=0.003 (this run: 0.01)" in capsys.readouterr().err  # checked against epoch 1's
    assert launch.train(cfg_for(tiny_shards, storage))["final"] == history(finished)[-1]


def test_a_ray_train_run_folder_is_checked_against_its_newest_checkpoint_folder(tiny_shards, finished, tmp_path):
    run = tmp_path / "ray_run"  # Ray Train's layout: checkpoint_<time> folders beside its manager's snapshot file
    newest = run / "checkpoint_2026-01-01_00-00-01.000001"
    newest.mkdir(parents=True)
    shutil.copy(finished / "fixed" / "checkpoint_epoch_0001" / ck.STATE, newest / ck.STATE)
    ray_record(run, newest.name)
    (run / "checkpoint_manager_snapshot.json.tmp-0a1b2c3d").write_text("{")  # a snapshot write a kill cut short
    manifest = shards.manifest_hash(tiny_shards)
    other = cfg_for(tiny_shards, finished, "train.lr=0.01")
    with pytest.raises(UsageError, match=r"train\.lr=0\.003 \(this run: 0\.01\)"):
        ck.check_resume(str(run), ck.run_signature(other, manifest), other.s3, other.train.epochs, ray_train=True)
    same = cfg_for(tiny_shards, finished)
    ck.check_resume(str(run), ck.run_signature(same, manifest), same.s3, same.train.epochs, ray_train=True)


def ray_record(run: Path | str, *listed: str) -> None:
    """Ray Train's checkpoint_manager_snapshot.json listing these checkpoint folders, the last as the run's latest, as
    Ray Train 2.60 writes it."""
    import ray

    results = [{"version": 0, "checkpoint_dir_name": name, "metrics": {"epoch": i}} for i, name in enumerate(listed, 1)]
    storage.write_bytes(storage.join(str(run), "checkpoint_manager_snapshot.json"), json.dumps({
        "ray_version": ray.__version__, "checkpoint_results": results,
        "checkpoint_report_indices": list(range(len(listed))),
        "latest_checkpoint_result": results[-1], "pending_training_results": [], "pending_validation_specs": [],
        "current_report_index": len(listed), "validated_checkpoint_dir_names": [],
        "timed_out_validation_checkpoint_dir_names": [], "failed_validation_checkpoint_dir_names": []}).encode())


@pytest.mark.parametrize("ray_train", [True, False], ids=["ray_train", "runstore"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_rerun_is_judged_by_the_checkpoint_it_resumes_from_not_one_a_kill_cut_short(tiny_shards, finished, tmp_path,
                                                                                      request, where, ray_train):
    """A 5-epoch run killed as epoch 3's checkpoint went up (its state.json whole, its weights not, or its pointer
    not yet written) resumes from epoch 2's, yet the check read epoch 3's: a rerun with train.epochs=3, which trains
    epoch 3 as its last, was refused ('stopped after epoch 3 of the 5'), and one with 2 was told it had trained 3.
    Seen with a real Ray Train run whose record (checkpoint_manager_snapshot.json) ended at epoch 1."""
    run = storage.join(str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket"), "run")
    template = json.loads((finished / "fixed" / "checkpoint_epoch_0001" / ck.STATE).read_text())
    names = {}
    for epoch in (1, 2, 3):
        names[epoch] = f"checkpoint_2026-01-01_00-00-0{epoch}" if ray_train else f"checkpoint_epoch_{epoch:04d}"
        state = {**template, "epoch": epoch, "epochs": 5}
        storage.write_bytes(storage.join(run, names[epoch], ck.STATE), json.dumps(state).encode())
        if epoch < 3:
            storage.write_bytes(storage.join(run, names[epoch], "adversary.pt"), b"weights")
    storage.write_bytes(storage.join(run, ck.METRICS_FILE), json.dumps({"history": [{}] * 3}).encode())
    if ray_train:
        ray_record(run, names[1])  # behind: the stop came before Ray Train recorded epoch 2's
        assert ck.ray_resume_point(run, C.S3Config())[0] == storage.join(run, names[2])
        restored = ck.local(ck.unrecorded_point(run, C.S3Config(), after=1)[0], C.S3Config())  # RayReporter.restore's
    else:
        storage.write_bytes(storage.join(run, ck.LATEST), json.dumps({"checkpoint": names[2]}).encode())
        restored = ck.RunStore(run, C.S3Config()).latest()
    with restored as here:
        assert ck.read_state(here)["epoch"] == 2
    cfg = cfg_for(tiny_shards, finished, "train.epochs=3")
    signature = ck.run_signature(cfg, shards.manifest_hash(tiny_shards))
    ck.check_resume(run, signature, cfg.s3, 3, ray_train=ray_train)  # trains epoch 3 on: nothing to refuse
    with pytest.raises(UsageError, match="stopped after epoch 2 of the 5 it was started with"):
        ck.check_resume(run, signature, cfg.s3, 2, ray_train=ray_train)


def signed_ray_run(tiny_shards: str, tmp_path: Path,
                   planned: int) -> tuple[Path, list[str], dict[str, Any], tuple[str, str]]:
    """A DDP run `fixed` (its settings: train.epochs=3) of two checkpoints of a run started for `planned` epochs,
    signed as this config's, each with its adversary.pt, both in Ray Train's record, and metrics.json `planned`
    epochs on: (its folder, the settings, their run signature, the checkpoints' names)."""
    run = tmp_path / "runs" / "fixed"
    settings = overrides(tiny_shards, tmp_path / "runs", "train.strategy=ddp", "train.epochs=3")
    signature = ck.run_signature(C.load(SMOKE, settings), shards.manifest_hash(tiny_shards))
    names = ("checkpoint_2026-01-01_00-00-01", "checkpoint_2026-01-01_00-00-02")
    for epoch, name in enumerate(names, 1):
        (run / name).mkdir(parents=True)
        ck.write_state(run / name, {"epoch": epoch, "epochs": planned, "history": [{}] * epoch,
                                    ck.SIGNATURE: signature})
        (run / name / ck.ADVERSARY).write_bytes(b"weights")
    ray_record(run, *names)
    (run / ck.METRICS_FILE).write_text(json.dumps({"history": [{}] * planned}))
    return run, settings, signature, names


def test_a_ray_train_run_whose_record_lists_a_deleted_checkpoint_says_what_to_do(tiny_shards, tmp_path, capsys):
    """Ray Train refuses a record (checkpoint_manager_snapshot.json) that lists a checkpoint folder that is gone
    (deleted by hand), and the rerun ended in its traceback (ActorDiedError around CheckpointManagerInitializationError)
    once Ray had started. Now refused before, with exit 1, saying what to do."""
    import ray

    run, settings, _, names = signed_ray_run(tiny_shards, tmp_path, planned=2)
    shutil.rmtree(run / names[1])
    args = ["train", "--config", str(SMOKE), *settings]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{run}: Ray Train's record of its checkpoints ({run / 'checkpoint_manager_snapshot.json'}) lists " \
           f"{names[1]}, which is gone" in err, err
    assert f"aside to resume from {run / names[0]}, the newest whole checkpoint left, or delete {run} to start" in err
    shutil.rmtree(run / names[0])
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"lists {names[0]}, {names[1]}, which are gone" in err and "aside" not in err and "Traceback" not in err
    assert not ray.is_initialized()


def test_a_ray_train_runs_unusable_checkpoint_is_set_aside_in_one_step(tiny_shards, tmp_path):
    """A Ray Train run's checkpoint that cannot be used (adversary.pt missing, weights cut short) was refused saying
    to move 'that checkpoint folder' aside; done, the rerun was refused again: Ray Train's record lists that folder,
    and Ray Train will not load it then. Now the refusal names the folder and the record, and moving both aside is
    the one step that resumes from the checkpoint before it."""
    run, _, signature, names = signed_ray_run(tiny_shards, tmp_path, planned=3)
    record = run / "checkpoint_manager_snapshot.json"
    said = str(ck.unusable(str(run), "adversary.pt is missing", str(run / names[1]), s3=C.S3Config()))
    assert f"{run}: its newest checkpoint cannot be used (adversary.pt is missing); move {run / names[1]} aside, and " \
           f"Ray Train's record of the run's checkpoints ({record}) with it, to resume from {run / names[0]}, or use " \
           "another train.name" in said, said
    aside = tmp_path / "aside"
    aside.mkdir()
    for moved in (run / names[1], record):
        moved.rename(aside / moved.name)
    ck.check_resume(str(run), signature, C.S3Config(), 3, ray_train=True)  # the rerun goes ahead
    assert ck.ray_resume_point(str(run), C.S3Config())[0] == str(run / names[0])  # what RayReporter.restore takes


def trial_run(run: Path, names: tuple[str, ...]) -> None:
    """A multi-worker sweep trial's Ray Train run of whole checkpoints, one an epoch, each named in its record, and its
    metrics.json one epoch on (each epoch's is written before its checkpoint goes up)."""
    for epoch, name in enumerate(names, 1):
        Path(run, name, "engine").mkdir(parents=True)
        ck.write_state(Path(run, name), {"epoch": epoch, "history": [{}] * epoch})
        Path(run, name, ck.ADVERSARY).write_bytes(b"weights")
        Path(run, name, "engine", "state.pt").write_bytes(b"weights")
    ray_record(run, *names)
    Path(run, ck.METRICS_FILE).write_text(json.dumps({"history": [{}] * len(names)}))


def test_a_resumed_sweeps_trial_whose_record_lists_a_deleted_checkpoint_says_what_to_do(tiny_shards, tmp_path, capsys):
    """A multi-worker trial's Ray Train run (under <checkpoints>/trials/) whose record lists a checkpoint folder that
    is gone (expired by a lifecycle rule, deleted) ended the resumed sweep's trial in Ray's
    CheckpointManagerInitializationError, an error no resume retries. Now the sweep is refused before Ray starts, with
    exit 1, saying what to do; trials that will not train again (finished, failed) are not checked."""
    import ray

    from avdis.data.prepare import as_made
    from avdis.tune import resume, spec, sweep

    args = ["sweep", "--config", str(SMOKE), "--storage", str(tmp_path / "sweeps"), "--name", "s", *[
        f"data.shards={tiny_shards}", "train.strategy=ddp", "train.zero_stage=0", "train.workers=2",
        "sweep.num_samples=3", "sweep.scheduler.type=none", "sweep.space.methods=[multitask]"]]
    cfg = as_made(C.load(SMOKE, [*args[7:], f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"]))
    url, trials = sweep.url_of(cfg), storage.join(sweep.checkpoints_of(cfg), "trials")
    spec.record_spec(url, cfg, shards.manifest_hash(tiny_shards))
    rows = [{"trial_id": tid, "sweep": "s", "method": "multitask", "status": status, "order": order}
            for tid, status, order in [("t1", "RUNNING", None), ("t3", "ERROR", None), ("t2", "TERMINATED", 1)]]
    results.write_trials(url, rows[:2])  # a finished one would need its Tune experiment too: checked below
    names = ("checkpoint_2026-01-01_00-00-01", "checkpoint_2026-01-01_00-00-02")
    for tid in ("t1", "t2", "t3"):
        trial_run(Path(trials, tid), names)
        shutil.rmtree(Path(trials, tid, names[1]))
    assert main(args) == 1
    err = capsys.readouterr().err
    record = Path(trials, "t1", "checkpoint_manager_snapshot.json")
    assert f"{trials}/t1: Ray Train's record of its checkpoints ({record}) lists {names[1]}, which is gone" in err, err
    assert f"move {record} aside to resume from {trials}/t1/{names[0]}, the newest whole checkpoint left, or start " \
           "a new sweep (sweep.name=...)" in err, err
    assert "Traceback" not in err and not ray.is_initialized()
    record.rename(record.with_suffix(".json.aside"))  # as it says; the finished and the failed will not train again
    results.write_trials(url, rows)
    resume.check_trial_runs(url, cfg)


def test_a_resumed_sweeps_trial_whose_checkpoint_lacks_its_files_is_refused_before_ray_starts(tiny_shards, tmp_path):
    """A multi-worker trial whose Ray Train run restores a checkpoint without adversary.pt or its engine's state
    (deleted by hand, expired by a lifecycle rule) was refused in the trial, saying to move that
    folder aside; the trial failed, and a resumed sweep never retries a failed trial, so that could not work. Now the
    resumed sweep is refused before Ray starts, and moving aside what it names resumes the trial from the checkpoint
    before."""
    import ray

    from avdis.data.prepare import as_made
    from avdis.tune import resume, spec, sweep

    cfg = as_made(C.load(SMOKE, [f"data.shards={tiny_shards}", "train.strategy=ddp", "train.zero_stage=0",
                                 "train.workers=2", f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"]))
    url, trials = sweep.url_of(cfg), Path(sweep.checkpoints_of(cfg), "trials")
    spec.record_spec(url, cfg, shards.manifest_hash(tiny_shards))
    results.write_trials(url, [{"trial_id": "t1", "sweep": "s", "method": "multitask", "status": "RUNNING"}])
    names = ("checkpoint_2026-01-01_00-00-01", "checkpoint_2026-01-01_00-00-02")
    trial_run(trials / "t1", names)
    for lost, why in [(Path(names[1], ck.ADVERSARY), "adversary.pt is missing"),
                      (Path(names[1], "engine", "state.pt"), "engine/, the model's and optimizer's state, is missing")]:
        (trials / "t1" / lost).rename(trials / "t1" / "kept")
        with pytest.raises(ck.CheckpointError) as refused:
            resume.check_trial_runs(url, cfg)
        assert str(refused.value) == (
            f"{trials}/t1: its newest checkpoint cannot be used ({why}); move {trials}/t1/{names[1]} aside, and Ray "
            f"Train's record of the run's checkpoints ({trials}/t1/checkpoint_manager_snapshot.json) with it, to resume "
            f"from {trials}/t1/{names[0]}, or use another train.name (for a sweep's trial: another sweep.name) to "
            "start a new run")
        (trials / "t1" / "kept").rename(trials / "t1" / lost)
    resume.check_trial_runs(url, cfg)  # whole again
    (trials / "t1" / names[1] / ck.ADVERSARY).unlink()
    aside = tmp_path / "aside"
    aside.mkdir()
    for moved in (names[1], "checkpoint_manager_snapshot.json"):  # as it says
        (trials / "t1" / moved).rename(aside / moved)
    resume.check_trial_runs(url, cfg)
    assert ck.ray_resume_point(str(trials / "t1"), C.S3Config())[0] == str(trials / "t1" / names[0])
    (trials / "t1" / names[0] / ck.ADVERSARY).unlink()  # none is before it: moving it aside would start from epoch 0
    with pytest.raises(ck.CheckpointError, match=r"\(adversary.pt is missing\), and no whole checkpoint is before it "
                       r"to resume from; .* \(for a sweep's trial, start a new sweep instead: sweep.name=...\)$"):
        resume.check_trial_runs(url, cfg)
    assert not ray.is_initialized()


def test_a_failed_trial_retry_failed_cannot_restore_is_refused_saying_the_sweep_can_rerun_without_the_flag(
        tiny_shards, tmp_path):
    """A failed trial `--retry-failed` would run again from a checkpoint that cannot be used is refused before Ray
    starts, as an unfinished one is, but need not be run again: the refusal says so, rerun without the flag leaving it
    failed and the sweep as it is. Until 2026-12-05 it said to start a new sweep alone (the whole sweep given up for
    one failed trial); without the flag the failed trial is not checked."""
    from avdis.data.prepare import as_made
    from avdis.tune import resume, spec, sweep

    cfg = as_made(C.load(SMOKE, [f"data.shards={tiny_shards}", "train.strategy=ddp", "train.zero_stage=0",
                                 "train.workers=2", f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"]))
    url, trials = sweep.url_of(cfg), Path(sweep.checkpoints_of(cfg), "trials")
    spec.record_spec(url, cfg, shards.manifest_hash(tiny_shards))
    results.write_trials(url, [{"trial_id": "t1", "sweep": "s", "method": "multitask", "status": "ERROR"}])
    names = ("checkpoint_2026-01-01_00-00-01",)
    trial_run(trials / "t1", names)
    (trials / "t1" / names[0] / ck.ADVERSARY).unlink()
    with pytest.raises(ck.CheckpointError) as refused:
        resume.check_trial_runs(url, cfg, retried={"t1"})
    assert str(refused.value).startswith(f"{trials}/t1: its newest checkpoint cannot be used (adversary.pt is missing)")
    assert str(refused.value).endswith("start a new sweep instead: sweep.name=...); or rerun without --retry-failed, "
                                       "which leaves trial t1 failed and the rest of the sweep as it is")
    assert resume.check_trial_runs(url, cfg) == []


def test_a_sweeps_last_words_say_the_flag_refuses_a_failed_trials_checkpoint_until_it_is_seen_to(tmp_path):
    """A failed trial whose checkpoint the checks before Ray starts refuse (`check_trial_runs`) is refused by
    --retry-failed, which says a rerun without the flag leaves it failed; but the last words of that plain rerun sent
    it to the flag again ('Rerun the same command with --retry-failed ...'), which refused it again, at every rerun.
    They say the flag's refusal, with what to move aside; once that is seen to, they send it to the flag alone. A
    real trials.parquet, Tune's saved state of a real Tune trial holding it as failed, and its Ray Train run whose
    newest checkpoint lacks adversary.pt."""
    from avdis.tune import resume, sweep
    from avdis.tune.failures import failures

    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"])
    url, trials = sweep.url_of(cfg), Path(sweep.checkpoints_of(cfg), "trials")
    results.write_trials(url, [{"trial_id": "t1", "sweep": "s", "method": "multitask", "status": "ERROR",
                                "role": results.SEARCH, "error": "boom"}])
    saved_tune_state(cfg, results.SEARCH, {"t1": "ERROR"})
    names = ("checkpoint_2026-01-01_00-00-01", "checkpoint_2026-01-01_00-00-02")
    trial_run(trials / "t1", names)
    (trials / "t1" / names[1] / ck.ADVERSARY).unlink()
    said = str(failures(url, cfg))
    assert (
        "Rerun the same command with --retry-failed once the cause is fixed: each failed trial is run again from its "
        "last checkpoint (rerun without it, they stay failed); but while trial t1's checkpoint stands as it is, the "
        f"flag refuses the rerun before Ray starts: {trials}/t1: its newest checkpoint cannot be used (adversary.pt "
        f"is missing); move {trials}/t1/{names[1]} aside, and Ray Train's record") in said, said
    with pytest.raises(ck.CheckpointError) as refused:  # the flag's refusal, as said
        resume.check_trial_runs(url, cfg, retried={"t1"})
    assert said.endswith(str(refused.value).split("; or rerun without")[0] + "."), said
    shutil.move(trials / "t1" / names[1], tmp_path / "aside")
    ray_record(trials / "t1", names[0])
    said = str(failures(url, cfg))
    assert said.endswith("Rerun the same command with --retry-failed once the cause is fixed: each failed trial is "
                         "run again from its last checkpoint (rerun without it, they stay failed)."), said


def test_a_failed_trial_marked_in_tunes_saved_state_keeps_the_failure_it_was_saved_before(tmp_path):
    """A trial whose process died ends in ERROR unmarked, and Tune's saved state holds it as it was at its last save:
    RUNNING, its failures counted before that death (Tune's num_failures, which train.max_failures counts against).
    `mark_failed_trials` made it ERROR with that count, so a retried trial killed again said its count one short
    ('train.max_failures=1 would have restarted it' under 0, where it had failed twice). Marked, its count takes that
    failure; a trial the state holds as ERROR (saved with its failure counted) keeps its own, and a second resume
    counts nothing again; nor does a retried trial saved PAUSED, held by `schedulers.AtMost` for a place under
    sweep.max_concurrent as the driver stopped (it never ran again: its failure was counted before). Tune's saved
    state of real Tune trials, read back by Tune."""
    from ray.tune import ExperimentAnalysis

    from avdis.tune import resume, sweep

    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "status": "ERROR", "role": results.SEARCH, "error": "died"}
    results.write_trials(url, [{**row, "trial_id": t} for t in ("died", "raised", "held")])
    state = saved_tune_state(cfg, results.SEARCH, {"died": "RUNNING", "raised": "ERROR", "held": "PAUSED"},
                             {"died": 1, "raised": 1, "held": 1})

    def counts() -> dict[str, tuple[str, int]]:
        return {t.trial_id: (t.status, t.num_failures) for t in ExperimentAnalysis(str(state)).trials}

    resume.mark_failed_trials(url, cfg)
    assert counts() == {"died": ("ERROR", 2), "raised": ("ERROR", 1), "held": ("ERROR", 1)}
    resume.mark_failed_trials(url, cfg)  # the next resume's
    assert counts() == {"died": ("ERROR", 2), "raised": ("ERROR", 1), "held": ("ERROR", 1)}


def test_a_trial_of_a_non_finite_objective_tunes_saved_state_holds_unfinished_is_marked_finished(tmp_path):
    """A trial that reported a non-finite objective ends in the record as failed and in Tune's state as finished, and
    `--retry-failed` does not run it (training it again meets the same values). Where the driver was killed after the
    recorder wrote its end and before Tune saved it, `mark_failed_trials` marked it ERROR like a trial whose process
    died, and the flag trained it again from its checkpoint. It is marked TERMINATED, its count of failures as it was;
    a trial whose process died beside it is still marked ERROR, and one that an avdis before marked ERROR is marked
    TERMINATED too. Tune's saved state of real Tune trials, read back by Tune; the flag's rule (`retried_trials`) run
    on it before and after the marking."""
    from ray.tune import ExperimentAnalysis

    from avdis.tune import resume, sweep
    from avdis.tune.records import NON_FINITE

    cfg = C.load(None, [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"])
    url = sweep.url_of(cfg)
    row = {"sweep": "s", "method": "multitask", "status": "ERROR", "role": results.SEARCH}
    nan = {**row, "error": f"{NON_FINITE} {{'leakage': nan}} at epoch 2"}
    results.write_trials(url, [{**nan, "trial_id": "nan"}, {**nan, "trial_id": "old"},
                               {**row, "trial_id": "died", "error": "died"}])
    state = saved_tune_state(cfg, results.SEARCH, {"nan": "RUNNING", "old": "ERROR", "died": "RUNNING"})
    retries = resume.Retries({results.SEARCH: {"died"}, results.CONFIRM: set()}, {"nan", "old"}, set(),
                             frozenset({"nan", "old"}))
    assert resume.retried_trials(url, cfg, {}) == retries
    resume.mark_failed_trials(url, cfg)
    assert {t.trial_id: (t.status, t.num_failures) for t in ExperimentAnalysis(str(state)).trials} == {
        "nan": ("TERMINATED", 0), "old": ("TERMINATED", 0), "died": ("ERROR", 1)}
    assert resume.retried_trials(url, cfg, {}) == retries


def test_retry_failed_says_it_retries_a_trial_only_once_its_checkpoint_passed_the_checks(tiny_shards, tmp_path,
                                                                                            monkeypatch, capsys):
    """The sweep said "--retry-failed: retrying 1 failed trial" and then refused that trial's checkpoint (found by
    hR70): it retried none. The line comes once the checks before Ray starts have passed. Tune's saved state, which
    holds the trial as ERROR, is given as `resume.retried_trials` reads it; the sweep's record and the trial's Ray
    Train run are real."""
    from avdis.data.prepare import as_made
    from avdis.tune import resume, spec, sweep

    cfg = as_made(C.load(SMOKE, [f"data.shards={tiny_shards}", "train.strategy=ddp", "train.zero_stage=0",
                                 "train.workers=2", f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s"]))
    url, trials = sweep.url_of(cfg), Path(sweep.checkpoints_of(cfg), "trials")
    spec.record_spec(url, cfg, shards.manifest_hash(tiny_shards))
    results.write_trials(url, [{"trial_id": "t1", "sweep": "s", "method": "multitask", "status": "ERROR"}])
    trial_run(trials / "t1", ("checkpoint_2026-01-01_00-00-01",))
    (trials / "t1" / "checkpoint_2026-01-01_00-00-01" / ck.ADVERSARY).unlink()
    monkeypatch.setattr(resume, "retried_trials", lambda *args: resume.Retries(
        {results.SEARCH: {"t1"}, results.CONFIRM: set()}, set(), set()))
    with pytest.raises(ck.CheckpointError, match="rerun without --retry-failed"):
        sweep.run(cfg, retry_failed=True)
    assert "retrying" not in capsys.readouterr().out


def three_checkpoints(config: dict[str, Any]) -> None:
    """A Tune trainable reporting three epochs' checkpoints, as a sweep trial in its own process does."""
    import tempfile

    from ray import tune

    for epoch in (1, 2, 3):
        with tempfile.TemporaryDirectory() as d:
            ck.write_state(Path(d), {"epoch": epoch, "history": []})
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))


@pytest.mark.ray
def test_a_resumed_sweep_puts_a_stand_in_at_every_gone_checkpoint_tunes_state_keeps_of_a_trial(tiny_shards, tmp_path):
    """Tune's state keeps KEEP_CHECKPOINTS of each trial, and is saved every 10 s at most: a killed driver's state kept
    two the trial had since deleted, where the resumed sweep put a stand-in at the newest alone, the one the trial
    restores from. The trial's first new checkpoint made Tune delete the other, and Ray's deletion of a folder that is
    gone raised (logged with its traceback) before Tune advanced the trial's checkpoint index: the trial's next restore
    wrote its first checkpoint over the one it restored from. Ray's own Tune run, state and checkpoint manager."""
    import tempfile

    import ray
    import ray.cloudpickle as cloudpickle
    from ray import tune
    from ray.train._internal.session import _TrainingResult
    from ray.tune import ExperimentAnalysis

    from avdis.data.prepare import as_made
    from avdis.tune import resume, spec, sweep

    cfg = as_made(C.load(SMOKE, [f"data.shards={tiny_shards}", f"sweep.storage={tmp_path / 'sweeps'}",
                                 "sweep.name=s"]))
    url = sweep.url_of(cfg)
    spec.record_spec(url, cfg, shards.manifest_hash(tiny_shards))
    fs, storage_path, name = sweep.experiment_of(cfg, results.SEARCH)
    temp = tempfile.mkdtemp(prefix="avr-kept-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import test modules
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
        tune.Tuner(three_checkpoints, run_config=tune.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=fs, verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=ck.KEEP_CHECKPOINTS))).fit()
    finally:
        shutdown_ray()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        shutil.rmtree(temp, ignore_errors=True)
    (trial,) = ExperimentAnalysis(f"{storage_path}/{name}", storage_filesystem=fs).trials
    kept = [Path(r.checkpoint.path) for r in trial.run_metadata.checkpoint_manager.best_checkpoint_results]
    assert [p.name for p in kept] == ["checkpoint_000001", "checkpoint_000002"]
    results.write_trials(url, [{"trial_id": trial.trial_id, "sweep": "s", "method": "multitask", "status": "RUNNING"}])
    for p in kept:  # the killed driver's trial saved two more, and Tune deleted these
        shutil.rmtree(p)
    for epoch in (4, 5):
        storage.write_bytes(str(kept[0].parent / f"checkpoint_00000{epoch - 1}" / ck.STATE),
                            json.dumps({"epoch": epoch, "history": []}).encode())
    records = Path(sweep.checkpoints_of(cfg), "trials", trial.trial_id)
    storage.write_bytes(str(records / ck.METRICS_FILE), json.dumps({"history": [{}] * 5}).encode())
    gone = resume.check_trial_runs(url, cfg)
    assert sorted(gone) == [str(p) for p in kept]
    for folder in gone:
        ck.stand_in(folder, C.S3Config())
    new = tune.Checkpoint(str(kept[0].parent / "checkpoint_000003"), filesystem=fs)
    trial.run_metadata.checkpoint_manager.register_checkpoint(_TrainingResult(checkpoint=new, metrics={"epoch": 6}))
    assert not kept[0].exists() and kept[1].exists()  # deleted in turn, as Tune does after the resumed trial's first


def test_a_trials_checkpoint_refused_in_the_trial_says_to_start_a_new_sweep():
    """A checkpoint refused in a sweep's trial (what `check_trial_runs` cannot see: weights that do not load) fails the
    trial, and a resumed sweep retries it only under --retry-failed, from the same checkpoint: the advice to move it
    aside could not work."""
    refused = str(ck.unusable("s3://b/ckpt/trials/t1", "adversary.pt is missing", "s3://b/ckpt/trials/t1/c", True,
                              s3=C.S3Config()))
    assert refused == ("s3://b/ckpt/trials/t1: its newest checkpoint cannot be used (adversary.pt is missing), so this "
                       "trial fails (a rerun with --retry-failed would restore it from this checkpoint again): start a "
                       "new sweep (sweep.name=...)")


def test_same_settings_resume_and_more_epochs_extend_the_run(tiny_shards, finished, tmp_path):
    storage = copy_of(finished, tmp_path)
    first = history(storage)
    again = launch.train(cfg_for(tiny_shards, storage, "train.max_failures=3"))  # scheduling settings may change
    assert again["final"] == first[-1]
    longer = launch.train(cfg_for(tiny_shards, storage, "train.epochs=2"))
    assert [e["epoch"] for e in history(storage)] == [1, 2] and history(storage)[0] == first[0]
    assert longer["final"]["manifest_hash"] == shards.manifest_hash(tiny_shards)
    # fewer epochs than the run has: its epoch-2 result would be returned as if it were an epoch-1 one
    with pytest.raises(UsageError, match=r"has trained 2 epochs already, more than train\.epochs=1; ask for at least 2"):
        launch.train(cfg_for(tiny_shards, storage, "train.epochs=1"))


@pytest.fixture(scope="module")
def two_epochs(tiny_shards, tmp_path_factory) -> Path:
    """Storage holding `fixed`, finished at 2 epochs: checkpoints of epochs 1 and 2, latest.json naming epoch 2's."""
    storage = tmp_path_factory.mktemp("runs2")
    launch.train(cfg_for(tiny_shards, storage, "train.epochs=2"))
    return storage


@pytest.mark.parametrize("damage, said, resumed_from", [
    ("no pointer", "fixed/latest.json is missing", 2),  # killed between a checkpoint's upload and its pointer
    ("garbage pointer", "fixed/latest.json is damaged", 2),
    ("pointer to a folder that is gone", "fixed/checkpoint_epoch_0009/state.json is missing", 2),
    ("newest state cut short", "fixed/checkpoint_epoch_0002/state.json is damaged", 1),
])
def test_a_damaged_pointer_or_state_resumes_from_the_newest_whole_checkpoint(tiny_shards, two_epochs, tmp_path,
                                                                             capsys, damage, said, resumed_from):
    """It used to start over (overwriting the good checkpoints) or stop with a bare JSON traceback."""
    storage = copy_of(two_epochs, tmp_path)
    run = storage / "fixed"
    if damage == "no pointer":
        (run / ck.LATEST).unlink()
    elif damage == "garbage pointer":
        (run / ck.LATEST).write_text("{")
    elif damage == "pointer to a folder that is gone":
        (run / ck.LATEST).write_text('{"checkpoint": "checkpoint_epoch_0009"}')
    else:
        state = run / "checkpoint_epoch_0002" / ck.STATE
        state.write_text(state.read_text()[:40])
    result = launch.train(cfg_for(tiny_shards, storage, "train.epochs=2"))
    out = capsys.readouterr().out
    assert f"{said}; resuming from {run}/checkpoint_epoch_{resumed_from:04d}, the newest checkpoint" in out
    assert f"resuming from epoch {resumed_from} of 2" in out
    assert without_timing(history(storage)) == without_timing(history(two_epochs))  # the same run, not a new one
    assert result["final"]["epoch"] == 2


def test_a_run_stopped_on_the_way_is_not_returned_as_a_finished_shorter_one(tiny_shards, two_epochs, tmp_path, capsys):
    """A 2-epoch run killed in epoch 2, rerun with train.epochs=1, returned its epoch-1 numbers as a finished run's:
    trained on the 2-epoch schedule and, with train.probe_every=0, without a leakage probe."""
    storage = copy_of(two_epochs, tmp_path)
    run = storage / "fixed"
    shutil.rmtree(run / "checkpoint_epoch_0002")  # what a kill in epoch 2 leaves
    (run / ck.LATEST).write_text(json.dumps({"checkpoint": "checkpoint_epoch_0001"}))
    code = main(["train", "--config", str(SMOKE), *overrides(tiny_shards, storage, "train.epochs=1")])
    err = capsys.readouterr().err
    assert code == 2 and "stopped after epoch 1 of the 2 it was started with" in err, err
    assert "ask for more than 1 epoch (train.epochs=2 finishes it)" in err  # not '1 epochs'
    assert not (run / "checkpoint_epoch_0002").exists()  # nothing trained


@pytest.mark.parametrize("damage", ["adversary.pt", "engine state"])
def test_a_checkpoint_missing_a_part_is_named_not_resumed_half(tiny_shards, two_epochs, tmp_path, capsys, damage):
    """Without adversary.pt the adversary started afresh on a resumed run (its losses differed) and said nothing.
    The refusal said to move 'that checkpoint folder' aside without naming it."""
    storage = copy_of(two_epochs, tmp_path)
    newest = storage / "fixed" / "checkpoint_epoch_0002"
    if damage == "adversary.pt":
        (newest / "adversary.pt").unlink()
    else:
        state = next(newest.glob("engine/*.pt"))
        state.write_bytes(state.read_bytes()[:100])
    code = main(["train", "--config", str(SMOKE), *overrides(tiny_shards, storage, "train.epochs=3")])
    err = capsys.readouterr().err
    assert code == 1 and f"{storage / 'fixed'}: its newest checkpoint cannot be used (" in err, err
    assert ("adversary.pt is missing" in err) == (damage == "adversary.pt")
    # named, as a Ray Train run's is: a run keeps two checkpoint folders, and `latest.json` may not name this one
    assert f"move {newest} aside to resume from {storage / 'fixed' / 'checkpoint_epoch_0001'}, or" in err
    assert "another train.name (for a sweep's trial: another sweep.name)" in err  # a trial has no train.name to change


def test_a_checkpoint_moved_aside_within_its_run_folder_is_not_resumed_from(tiny_shards, two_epochs, tmp_path, capsys):
    """The refusal of a checkpoint missing a part says to move that folder aside; one renamed in place
    (checkpoint_epoch_0002.bad) was still found by the scan for the newest whole checkpoint, and refused again with the
    same advice. Only folders named as checkpoints are (`ck.CHECKPOINT_NAME`): the run resumes from the one before."""
    storage = copy_of(two_epochs, tmp_path)
    run = storage / "fixed"
    (run / "checkpoint_epoch_0002" / "adversary.pt").unlink()
    (run / "checkpoint_epoch_0002").rename(run / "checkpoint_epoch_0002.bad")
    code = main(["train", "--config", str(SMOKE), *overrides(tiny_shards, storage, "train.epochs=2")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"resuming from {run}/checkpoint_epoch_0001, the newest checkpoint" in out and "from epoch 1 of 2" in out
    assert (run / "checkpoint_epoch_0002.bad").is_dir()


def test_an_unusable_checkpoint_with_none_before_it_says_to_start_the_run_over(tiny_shards, finished, tmp_path,
                                                                               capsys):
    """A run's only checkpoint that cannot be used was refused saying to move it aside to resume from the one before
    it; there was none, and the rerun was refused again (delete the run to start it over). Now that is said at once,
    and it works."""
    storage = copy_of(finished, tmp_path)
    run = storage / "fixed"
    (run / "checkpoint_epoch_0001" / ck.ADVERSARY).unlink()
    args = ["train", "--config", str(SMOKE), *overrides(tiny_shards, storage, "train.epochs=2")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{run}: its newest checkpoint cannot be used (adversary.pt is missing), and no whole checkpoint is " \
           f"before it to resume from; delete {run} to start the run over, or use another train.name" in err, err
    assert "aside" not in err
    shutil.rmtree(run)  # as it says
    assert main(args) == 0, capsys.readouterr().err


def test_a_ray_train_runs_only_checkpoint_that_cannot_be_used_says_to_start_the_run_over(tiny_shards, tmp_path):
    """As a single-process run's: with its record moved aside too, the run started from epoch 0, not from a checkpoint
    before it, as it said. Where there is one, it is named."""
    run, _, _, names = signed_ray_run(tiny_shards, tmp_path, planned=3)
    said = str(ck.unusable(str(run), "adversary.pt is missing", str(run / names[1]), s3=C.S3Config()))
    assert f"with it, to resume from {run / names[0]}, or use another" in said, said
    shutil.rmtree(run / names[0])
    ray_record(run, names[1])
    said = str(ck.unusable(str(run), "adversary.pt is missing", str(run / names[1]), s3=C.S3Config()))
    assert said == (f"{run}: its newest checkpoint cannot be used (adversary.pt is missing), and no whole checkpoint "
                    f"is before it to resume from; delete {run} to start the run over, or use another train.name for "
                    "a new run (for a sweep's trial, start a new sweep instead: sweep.name=...)")


def test_a_run_whose_checkpoint_folders_were_all_deleted_says_to_start_it_over(tiny_shards, finished, tmp_path, capsys):
    """It said to move aside the newest checkpoint folder and resume from the one before it: there was none."""
    storage = copy_of(finished, tmp_path)
    for folder in (storage / "fixed").glob("checkpoint_*"):
        shutil.rmtree(folder)  # by hand; latest.json and metrics.json stay
    code = main(["train", "--config", str(SMOKE), *overrides(tiny_shards, storage)])
    err = capsys.readouterr().err
    assert code == 1 and "checkpoint_epoch_0001/state.json is missing, and no checkpoint folder with a whole" in err, err
    assert f"delete {storage / 'fixed'} to start the run over" in err and "move that checkpoint folder" not in err


def test_how_often_the_probe_runs_shapes_no_epoch_and_may_change_on_resume(tiny_shards, two_epochs, tmp_path):
    """A sweep under MO-ASHA probes its trials only at the rungs (multiples of grace_epochs), where it probed every
    epoch before: a trial checkpointed then must resume, and its epochs train as they would have."""
    probe = ("leakage", "leakage_linear", "val_leakage", "probe_acc", "probe_acc_linear", "probe_chance",
             "speaker_chance")
    launch.train(cfg_for(tiny_shards, tmp_path, "train.epochs=2", "train.probe_every=2"))
    sparse, every = history(tmp_path), history(two_epochs)  # two_epochs probed every epoch (smoke.yaml)
    assert "leakage" not in sparse[0] and "leakage" in every[0] and sparse[1]["leakage"] == every[1]["leakage"]
    unprobed = [without_timing([{k: v for k, v in e.items() if k not in probe} for e in h]) for h in (sparse, every)]
    assert unprobed[0] == unprobed[1]  # losses, accuracies: the same run
    assert launch.train(cfg_for(tiny_shards, tmp_path, "train.epochs=3"))["final"]["epoch"] == 3  # every epoch again


def test_run_signature_covers_every_result_setting_but_not_where_or_how_it_runs():
    cfg = C.Config()
    ident = ck.run_signature(cfg, "abc")
    assert ident["data.manifest_hash"] == "abc" and ident["train.lr"] == cfg.train.lr
    assert {"model.dropout", "method.adversary.lr", "probe.epochs", "data.split.fold", "data.features.n_mels",
            "train.seed", "train.workers", "data.loader.shuffle_buffer"} <= ident.keys()
    assert not {"train.storage", "train.name", "train.max_failures", "train.epochs", "data.shards"} & ident.keys()
    assert not any(k.startswith(("sweep.", "ray.", "s3.")) for k in ident)


def test_a_checkpoint_measured_otherwise_is_not_resumed():
    """A run begun before 2026-12-04 (the probe on z_emo alone, orthogonal per coordinate) resumed under the new
    probe and penalty: its history held both leakages, and an orthogonal run's loss changed halfway, with no word."""
    ident = ck.run_signature(C.with_overrides(C.Config(), {"method.name": "orthogonal", "method.weight": 5}), "abc")
    before = {k: v for k, v in ident.items() if not k.startswith("measures.")}
    with pytest.raises(UsageError, match=r"measured otherwise than this avdis measures them \(leakage: .*\(this run's: "
                                         r"not recorded, so the one before\); orthogonal: .*\(this run's: not recorded"):
        ck.check_compatible(before, ident, "runs/r")
    with pytest.raises(UsageError, match=r"\(leakage: .*\(this run's: another probe\)\): resumed, its history"):
        ck.check_compatible({**ident, "measures.leakage": "another probe"}, ident, "runs/r")


def test_a_run_is_checked_on_the_measures_of_its_own_method_alone():
    """Every run's signature held every measure, so a change to orthogonal's penalty refused the resume of a run of
    every method. A run recorded with them all (before this change) resumes, checked on its own method's."""
    sign = {m: ck.run_signature(C.with_overrides(C.Config(), {"method.name": m, "method.weight": w}), "abc")
            for m, w in (("multitask", None), ("orthogonal", 5))}
    assert {k for k in sign["multitask"] if k.startswith("measures.")} == {"measures.leakage"}
    assert {k for k in sign["orthogonal"] if k.startswith("measures.")} == {"measures.leakage", "measures.orthogonal"}
    every = {f"measures.{name}": how for name, how in C.MEASURES.items()}  # what every run recorded before
    for method, current in sign.items():
        ck.check_compatible({**current, **every}, current, "runs/r")
    ck.check_compatible({**sign["multitask"], "measures.orthogonal": "another penalty"}, sign["multitask"], "runs/r")
    with pytest.raises(UsageError, match=r"\(orthogonal: .*\(this run's: another penalty\)\)"):
        ck.check_compatible({**sign["orthogonal"], "measures.orthogonal": "another penalty"}, sign["orthogonal"],
                            "runs/r")


def test_a_speaker_disjoint_run_probed_as_before_is_not_resumed_and_a_within_speaker_one_is():
    """Under speaker_disjoint the probes judge a held-out fold's validation clips beside its test clips since
    2026-12-05 (MEASURES' speaker_disjoint): a run begun judging fewer would mix two measures in its history. A
    within_speaker run's numbers did not change, so it is not checked on it."""
    within = ck.run_signature(C.Config(), "abc")
    disjoint = ck.run_signature(C.with_overrides(C.Config(), {"data.split.scheme": "speaker_disjoint"}), "abc")
    assert "measures.speaker_disjoint" not in within and "measures.speaker_disjoint" in disjoint
    ck.check_compatible({k: v for k, v in within.items()}, within, "runs/r")
    before = {k: v for k, v in disjoint.items() if k != "measures.speaker_disjoint"}
    with pytest.raises(UsageError, match=r"\(speaker_disjoint: .*\(this run's: not recorded, so the one before\)\)"):
        ck.check_compatible(before, disjoint, "runs/r")


def test_a_run_signed_before_a_setting_was_added_resumes_at_the_value_it_ran_as_and_keeps_its_name():
    """data.features.f_max came after runs were signed: every run signed before it was refused ("an older avdis wrote
    it"), and every unnamed run, whose name hashes its signature, was looked for under a new name. At the value runs
    ran as (`config.ADDED`) it is left out of the signature; another value is named as the difference."""
    cfg = C.Config()
    before = ck.run_signature(cfg, "abc")
    assert not set(C.ADDED) & before.keys()  # as a run signed before the settings holds them
    ck.check_compatible(before, ck.run_signature(cfg, "abc"), "runs/r")
    narrow = C.with_overrides(cfg, {"data.features.f_max": 4000})
    assert launch.run_name(narrow) != launch.run_name(cfg)
    with pytest.raises(UsageError, match=r"data.features.f_max=None \(this run: 4000.0\)"):
        ck.check_compatible(before, ck.run_signature(narrow, "abc"), "runs/r")
    ck.check_compatible(ck.run_signature(narrow, "abc"), ck.run_signature(narrow, "abc"), "runs/r")


def test_a_run_started_at_another_value_of_an_added_setting_is_not_resumed_at_the_one_left_out():
    """run_signature leaves data.features.f_max out at its default, and check_compatible compared only the keys this
    run signs: a checkpoint signed with f_max=4000 resumed into a run of the full band, its bands changed halfway
    with no word (its shards made again at the default give another manifest hash, which alone was named)."""
    cfg = C.Config()
    narrow = ck.run_signature(C.with_overrides(cfg, {"data.features.f_max": 4000}), "abc")
    with pytest.raises(UsageError, match=r"data.features.f_max=4000.0 \(this run: None\)"):
        ck.check_compatible(narrow, ck.run_signature(cfg, "abc"), "runs/r")
    with pytest.raises(UsageError, match=r"data.manifest_hash='abc' \(this run: 'def'\); "
                                         r"data.features.f_max=4000.0 \(this run: None\)"):
        ck.check_compatible(narrow, ck.run_signature(cfg, "def"), "runs/r")
    ck.check_compatible({**ck.run_signature(cfg, "abc"), "data.features.f_max": None}, ck.run_signature(cfg, "abc"),
                        "runs/r")  # signed with it at its default (d2a345b to 99534b1): as the run is now


def test_a_run_without_a_name_is_found_again_with_more_epochs_and_a_new_lr_names_a_new_run(tiny_shards, tmp_path):
    """The name hashed the whole config: more epochs started over under a new name, against the README."""
    base = [f"data.shards={tiny_shards}", f"train.storage={tmp_path}", "train.strategy=single", "train.zero_stage=0",
            "train.workers=1", "probe.epochs=30"]
    name = launch.run_name(C.load(SMOKE, [*base, "train.epochs=1"]))
    assert launch.run_name(C.load(SMOKE, [*base, "train.epochs=5", "train.max_failures=2"])) == name
    assert launch.run_name(C.load(SMOKE, [*base, "train.lr=0.01"])) != name
    assert launch.run_name(C.load(SMOKE, [*base, f"data.shards={tmp_path}/other"])) != name
    assert launch.run_name(C.load(SMOKE, [*base, "train.seed=1"])).startswith("multitask-seed1-")


def test_an_unrecorded_ray_train_checkpoint_is_the_newest_whole_one_before_the_last_recorded_epoch(tmp_path):
    run = tmp_path / "run"
    for name, epoch in (("checkpoint_2026-01-01_00-00-01", 1), ("checkpoint_2026-01-01_00-00-02", 2),
                        ("checkpoint_2026-01-01_00-00-03", 3)):
        (run / name).mkdir(parents=True)
        (run / name / ck.STATE).write_text(json.dumps({"epoch": epoch}))
    assert ck.unrecorded_point(str(run), C.S3Config()) is None  # no metrics.json: nothing says which were whole
    (run / ck.METRICS_FILE).write_text(json.dumps({"history": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}))
    second = str(run / "checkpoint_2026-01-01_00-00-02")
    assert ck.unrecorded_point(str(run), C.S3Config())[0] == second  # epoch 3's may have been cut short
    assert ck.unrecorded_point(str(run), C.S3Config(), after=2) is None  # the record has epoch 2's: it is restored
    assert ck.unrecorded_point(str(run), C.S3Config(), after=1)[0] == second  # the record lags (a stop cut it short)
    (run / "checkpoint_2026-01-01_00-00-02" / ck.STATE).write_text('{"epo')
    assert ck.unrecorded_point(str(run), C.S3Config())[0] == str(run / "checkpoint_2026-01-01_00-00-01")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_checkpoint_folders_ray_trains_record_does_not_list_are_removed_and_nothing_else(where, request, tmp_path):
    """Ray Train deletes only the checkpoints its record lists: those a stop left unrecorded stayed for ever."""
    run = storage.join(str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket"), "run")
    for name in ("checkpoint_2026-01-01_00-00-01", "checkpoint_2026-01-01_00-00-02", "checkpoint_2026-01-01_00-00-03"):
        storage.write_bytes(storage.join(run, name, "engine", "ckpt"), b"w", C.S3Config())
        storage.write_bytes(storage.join(run, name, ck.STATE), b"{}", C.S3Config())
    for name in ("checkpoint_manager_snapshot.json", "checkpoint_manager_snapshot.json.tmp-0a1b2c3d", ck.METRICS_FILE,
                 "checkpoint_2026-01-01_00-00-02.bad/state.json"):  # one the user moved aside is theirs
        storage.write_bytes(storage.join(run, name), b"{}", C.S3Config())
    ck.remove_unlisted(run, C.S3Config(), {"checkpoint_2026-01-01_00-00-03"})
    assert [u.rsplit("/", 1)[-1] for u in storage.list_files(run, s3=C.S3Config())] == [
        "checkpoint_2026-01-01_00-00-02.bad", "checkpoint_2026-01-01_00-00-03", "checkpoint_manager_snapshot.json",
        "checkpoint_manager_snapshot.json.tmp-0a1b2c3d", ck.METRICS_FILE]
    assert storage.read_bytes(storage.join(run, "checkpoint_2026-01-01_00-00-03", "engine", "ckpt"), C.S3Config())


def test_the_newest_checkpoint_is_the_latest_epoch_whatever_the_folder_names_say(tmp_path):
    """Ray Train names its folders by the node's clock: an attempt on a node whose clock is behind wrote epoch 3 under
    an earlier name than epoch 2's, and the fallback resumed from epoch 2. RunStore's folders of epoch 10000 and
    9999: pruning by name deleted the newer one, and every rerun trained the last epoch again."""
    run = tmp_path / "run"
    for name, epoch in (("checkpoint_2026-01-01_00-00-05", 2), ("checkpoint_2026-01-01_00-00-03", 3),
                        ("checkpoint_2026-01-01_00-00-04.bad", 4), ("checkpoint_000005.old", 5)):  # moved aside
        (run / name).mkdir(parents=True)
        (run / name / ck.STATE).write_text(json.dumps({"epoch": epoch}))
    assert ck._newest_whole(str(run), C.S3Config())[0].endswith("checkpoint_2026-01-01_00-00-03")
    store = ck.RunStore(str(tmp_path / "long"), C.S3Config())
    for epoch in (9998, 9999, 10000):
        local = tmp_path / f"ckpt{epoch}"
        local.mkdir()
        ck.write_state(local, {"epoch": epoch, "history": []})
        store.save(local, epoch)
    kept = {p.name for p in (tmp_path / "long").glob("checkpoint_epoch_*")}
    assert kept == {f"checkpoint_epoch_{e:04d}" for e in (9998, 9999, 10000)[-ck.KEEP_CHECKPOINTS:]}
    with store.latest() as here:
        assert json.loads((here / ck.STATE).read_text())["epoch"] == 10000


@pytest.mark.parametrize("setting, made", [("data.split.test_fraction=0.45", "0.25"), ("data.features.fps=4", "8.0")])
def test_split_or_feature_settings_the_shards_were_not_made_with_are_refused(tiny_shards, tmp_path, setting, made):
    """Training read the manifest's split and features: another test_fraction was recorded but never used."""
    key, value = setting.split("=")
    with pytest.raises(UsageError, match=re.escape(f"its shards were made with other settings: {key}=") + ".*"
                       + re.escape(f"(made with {made})")):
        launch.train(cfg_for(tiny_shards, tmp_path / "runs", setting))
    assert not (tmp_path / "runs").exists()


def test_a_grad_accum_that_does_not_divide_an_epoch_is_refused(tiny_shards, tmp_path):
    """Its partial accumulation carried into the next epoch, and a resumed run lost it (other weights)."""
    with pytest.raises(UsageError, match=r"train.grad_accum=2 does not divide the 3 steps of epoch 1"):
        launch.train(cfg_for(tiny_shards, tmp_path / "runs", "train.grad_accum=2"))


def test_scratch_folders_of_killed_processes_are_removed_and_no_others(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import time

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a PID whose process has ended
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not reaped until the end of the test
    deadline = time.monotonic() + 30
    while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    old = time.time() - 2 * ck.ORPHAN_AGE_S
    folders = {
        "orphan": tmp_path / f"{ck.SCRATCH_PREFIX}{gone.pid}-a1",  # dead and old: a killed run's
        "zombie": tmp_path / f"{ck.SCRATCH_PREFIX}{zombie.pid}-d4",  # a killed run's whose parent has not reaped it
        "fresh": tmp_path / f"{ck.SCRATCH_PREFIX}{gone.pid}-b2",  # dead but new: perhaps another PID namespace's
        "alive": tmp_path / f"{ck.SCRATCH_PREFIX}{os.getpid()}-c3",  # a live process's, however old
        "unnamed": tmp_path / f"{ck.SCRATCH_PREFIX}q8zk1_x0",  # from before folders carried the PID
    }
    for name, d in folders.items():
        (d / "engine").mkdir(parents=True)
        (d / "engine" / "state.pt").write_bytes(b"x" * 64)
        if name != "fresh":
            os.utime(d, (old, old))
    monkeypatch.setattr(ck.tempfile, "tempdir", str(tmp_path))
    try:
        with ck.scratch_dir() as d:
            assert d.parent == tmp_path and d.name.startswith(f"{ck.SCRATCH_PREFIX}{os.getpid()}-")
            assert {name for name, f in folders.items() if f.exists()} == {"fresh", "alive", "unnamed"}
        assert not d.exists()
    finally:
        zombie.wait(30)


def test_a_checkpoint_round_trips_through_s3_with_its_state_written_last(s3_bucket, tmp_path):
    """RunStore on S3: every file back as saved; a folder whose state.json is missing (an upload cut short before it)
    is not taken for a whole checkpoint."""
    local = tmp_path / "ckpt"
    (local / "engine").mkdir(parents=True)
    (local / "engine" / "state.pt").write_bytes(b"engine" * 100)
    (local / "adversary.pt").write_bytes(b"adv")
    ck.write_state(local, {"epoch": 1, "history": []})
    run = f"{s3_bucket}/runs/fixed"
    store = ck.RunStore(run, C.S3Config())
    store.save(local, 1)
    with store.latest() as here:
        assert {p.relative_to(here).as_posix(): p.read_bytes() for p in here.rglob("*") if p.is_file()} == \
            {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    (local / ck.STATE).unlink()
    cut = tmp_path / "cut"
    shutil.copytree(local, cut)
    fs, path = storage.filesystem(f"{run}/checkpoint_epoch_0002")
    fs.put(str(cut) + "/", path + "/", recursive=True)  # epoch 2's files, but its state.json never arrived
    assert ck._newest_whole(run, C.S3Config())[0].endswith("checkpoint_epoch_0001")


def test_auto_precision_is_signed_as_the_bf16_it_means_on_gpu_workers():
    """train.precision=auto is bf16 with train.gpus_per_worker > 0, fp32 without, and gpus_per_worker may change on
    resume: a run begun on GPUs had the signature of one on CPU, went on there in fp32 and, under DeepSpeed, stopped
    with 'KeyError: param_groups' loading its bf16 optimizer state, as if its checkpoint were damaged."""
    def signature(*extra: str) -> dict:
        return ck.run_signature(C.load(SMOKE, list(extra)), "h")

    on_gpus = signature("train.gpus_per_worker=1")
    with pytest.raises(UsageError, match=r"train\.precision='bf16' \(this run: 'auto'\)"):
        ck.check_compatible(on_gpus, signature("train.gpus_per_worker=0"), "run")
    ck.check_compatible(on_gpus, signature("train.gpus_per_worker=0", "train.precision=bf16"), "run")
    ck.check_compatible(on_gpus, signature("train.gpus_per_worker=0.5"), "run")
    assert signature()["train.precision"] == "auto"  # on CPU as recorded before: those runs keep name and checkpoints


def test_a_checkpoint_folder_whose_removal_stopped_part_way_is_not_resumed_from(tmp_path):
    """RunStore.save removes an epoch's folder before it writes that epoch again, and the removal went in the order
    the filesystem lists the folder: stopped part-way (killed), the folder kept its state.json, which marks it whole,
    without its weights, and a run whose latest.json was lost resumed from it. Here the removal stops where the
    folder cannot be changed: its top is made read-only (for a user without root's power over permissions), so that
    a subfolder's files go and the folder's own entries stay, and its weights are in a subfolder this filesystem
    lists before state.json (a removal that takes state.json first stops at once, and leaves the folder whole)."""
    import os
    import subprocess
    import sys

    probe = tmp_path / "probe"  # made as save makes a folder: its subfolders, then state.json
    for name in ("engine", "weights", "model", "params", "shards", "ranks", "parts", "w"):
        (probe / name).mkdir(parents=True)
        (probe / ck.STATE).write_text("{}")
        if os.listdir(probe)[0] == name:
            break
        shutil.rmtree(probe)
    else:
        pytest.skip("this filesystem lists state.json before every folder name tried")
    drop = [shutil.which("setpriv"), "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if drop and drop[0] is None:
        pytest.skip("running as root without setpriv (util-linux) to give up root's power over permissions")
    run = tmp_path / "run"
    store = ck.RunStore(str(run), C.S3Config())
    saved = {}
    for epoch in (1, 2):
        local = tmp_path / f"ckpt{epoch}"
        (local / name).mkdir(parents=True)
        (local / name / "model.pt").write_bytes(b"w" * 64 * epoch)
        ck.write_state(local, {"epoch": epoch, "history": []})
        store.save(local, epoch)
        saved[epoch] = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    folder = run / "checkpoint_epoch_0002"
    assert os.listdir(folder)[0] == name
    folder.chmod(0o555)
    again = ("import sys; from pathlib import Path; from avdis.config import S3Config; from avdis.train import "
             "checkpoint as ck; ck.RunStore(sys.argv[1], S3Config()).save(Path(sys.argv[2]), 2)")
    try:
        out = subprocess.run([*drop, sys.executable, "-c", again, str(run), str(tmp_path / "ckpt2")],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        folder.chmod(0o755)
    assert out.returncode != 0 and "PermissionError" in out.stderr, out.stderr[-2000:]
    (run / ck.LATEST).unlink()  # the pointer lost: the newest folder with a whole state.json is resumed
    with store.latest() as here:
        found = {p.relative_to(here).as_posix(): p.read_bytes() for p in here.rglob("*") if p.is_file()}
    assert found == saved[json.loads(found[ck.STATE])["epoch"]]


def test_a_local_checkpoint_is_on_disk_before_latest_json_names_it(tmp_path, monkeypatch):
    """RunStore.save copied the weights and state.json into the run's folder without fsync, then wrote latest.json:
    after a kernel crash or power loss the folder latest.json named (or the newest with a whole state.json) could hold
    a whole state.json beside zero-length weights, never written from the page cache. Now the weights and their folders
    are synced before state.json is written, and state.json (its entry too) before latest.json. Each real os.fsync is
    recorded here by the path it synced."""
    import os

    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", fsync)
    local = tmp_path / "ckpt"
    (local / "engine").mkdir(parents=True)
    (local / "engine" / "model.pt").write_bytes(b"w" * 4096)
    (local / "adversary.pt").write_bytes(b"a" * 512)
    ck.write_state(local, {"epoch": 1, "history": []})
    run = tmp_path / "run"
    ck.RunStore(str(run), C.S3Config()).save(local, 1)
    folder = run / "checkpoint_epoch_0001"

    def at(path: Path) -> list[int]:  # a file written atomically is synced under its temp name, beside its target
        found = [i for i, p in enumerate(synced) if p == str(path) or p.startswith(f"{path}.tmp-")]
        assert found, f"{path} never synced: {synced}"
        return found

    def first(path: Path) -> int:
        return at(path)[0]

    def last(path: Path) -> int:
        return at(path)[-1]

    state, pointer = first(folder / ck.STATE), first(run / ck.LATEST)
    for weights in (folder / "engine" / "model.pt", folder / "adversary.pt", folder / "engine"):
        assert first(weights) < state, synced
    assert state < last(folder) < pointer, synced  # state.json's entry in its folder, before the pointer
    assert first(run) < pointer, synced  # the checkpoint folder's entry in the run's


def test_checkpoints_storage_will_not_delete_stop_the_run_naming_them(s3_bucket, tmp_path):
    """RunStore pruned old checkpoints with s3fs's rm, whose DeleteObjects answers 200 with a refusal per key that
    s3fs drops: where s3:DeleteObject is denied (a bucket policy, a role; a resumed sweep does not check, nor does a
    run whose permissions changed since it started) every old checkpoint stayed, unsaid. Now a refused delete stops
    the save, naming the file and the permission. moto enforces the bucket policy's Deny as AWS does."""
    import os

    import boto3

    store = ck.RunStore(f"{s3_bucket}/runs/fixed", C.S3Config())
    with s3_denied(s3_bucket, "s3:DeleteObject"):
        for epoch in range(1, ck.KEEP_CHECKPOINTS + 2):
            local = tmp_path / f"ckpt{epoch}"
            (local / "engine").mkdir(parents=True)
            (local / "engine" / "model.pt").write_bytes(b"w" * epoch)
            ck.write_state(local, {"epoch": epoch, "history": []})
            if epoch <= ck.KEEP_CHECKPOINTS:
                store.save(local, epoch)
        with pytest.raises(storage.StorageError) as refused:
            store.save(local, epoch)  # the first that prunes
    said = str(refused.value)
    assert said.startswith(f"{s3_bucket}/runs/fixed/checkpoint_epoch_0001/{ck.STATE}: cannot delete"), said
    assert "s3:DeleteObject" in said, said
    store.save(local, epoch)  # deletes allowed: pruned to the newest
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    left = {o["Key"].split("/")[2] for o in s3.list_objects_v2(Bucket=s3_bucket.removeprefix("s3://"))["Contents"]}
    assert left == {ck.LATEST, *(f"checkpoint_epoch_{e:04d}" for e in range(2, epoch + 1))}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_trial_whose_recorded_checkpoint_was_deleted_resumes_from_the_newest_whole_one(where, tmp_path, request,
                                                                                        capsys):
    """A resumed sweep restores each trial from the checkpoint its killed driver last saved in Tune's experiment
    state; Tune had since deleted that one, keeping KEEP_CHECKPOINTS newer ones, and the resumed sweep put a stand-in
    there (`ck.stand_in`, which test_trial_inprocess.py runs end to end). Ray's own Checkpoint over the sweep's
    filesystem, as Tune hands it."""
    from ray.tune import Checkpoint

    trial = f"{request.getfixturevalue('s3_bucket')}/ck/trial" if where == "s3" else str(tmp_path / "trial")
    for epoch in (2, 3):
        storage.write_bytes(storage.join(trial, f"checkpoint_00000{epoch - 1}", ck.STATE),
                            json.dumps({"epoch": epoch, "history": []}).encode())
    records = storage.join(trial.rsplit("/", 1)[0], "trials", "t1")  # the trial's metrics.json: 4 epochs
    storage.write_bytes(storage.join(records, ck.METRICS_FILE), json.dumps({"history": [{}] * 4}).encode())
    fs, path = storage.pyarrow_filesystem(trial)
    with loop.tune_checkpoint(Checkpoint(f"{path}/checkpoint_000001", filesystem=fs), C.S3Config(), records) as here:
        assert ck.read_state(here)["epoch"] == 2  # whole: the one Tune names
    ck.stand_in(storage.join(trial, "checkpoint_000000"), C.S3Config())  # as the resumed sweep does
    with loop.tune_checkpoint(Checkpoint(f"{path}/checkpoint_000000", filesystem=fs), C.S3Config(), records) as here:
        assert ck.read_state(here)["epoch"] == 3
    assert f"trial checkpoint {path}/checkpoint_000000 was gone (deleted after the driver last saved its state); " \
           f"resuming from the newest whole checkpoint in {trial}, checkpoint_000002, copied into checkpoint_000000 " \
           "first" in capsys.readouterr().out
    with loop.tune_checkpoint(None, C.S3Config(), records) as here:
        assert here is None  # a new trial
    for name in ("checkpoint_000000", "checkpoint_000001", "checkpoint_000002"):  # the copy's too
        storage.remove(storage.join(trial, name, ck.STATE))
    with pytest.raises(ck.CheckpointError, match=rf"{trial}: its newest checkpoint cannot be used \({path}/"
                                                  r"checkpoint_000000 was gone \(deleted after the driver last saved "
                                                  r"its state\), and no checkpoint beside it is known"):
        with loop.tune_checkpoint(Checkpoint(f"{path}/checkpoint_000000", filesystem=fs), C.S3Config(), records):
            pass


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_trial_checkpoint_whose_state_was_moved_aside_is_not_said_to_be_gone(where, tmp_path, request, capsys):
    """`avdis sweep` refuses a trial checkpoint that lacks a file, saying to move its state.json aside (not the
    folder, which Tune must find); the resumed trial then said the folder, still there, 'is gone (deleted after the
    driver last saved its state)', and so did its refusal where no checkpoint beside it was whole."""
    from ray.tune import Checkpoint

    trial = f"{request.getfixturevalue('s3_bucket')}/ck/trial" if where == "s3" else str(tmp_path / "trial")
    storage.write_bytes(storage.join(trial, "checkpoint_000000", ck.STATE), json.dumps({"epoch": 1}).encode())
    bad = storage.join(trial, "checkpoint_000001")
    storage.write_bytes(storage.join(bad, f"{ck.STATE}.bad"), json.dumps({"epoch": 2}).encode())  # moved aside
    records = storage.join(trial.rsplit("/", 1)[0], "trials", "t1")
    storage.write_bytes(storage.join(records, ck.METRICS_FILE), json.dumps({"history": [{}] * 2}).encode())
    fs, path = storage.pyarrow_filesystem(trial)
    restored = Checkpoint(f"{path}/checkpoint_000001", filesystem=fs)
    with loop.tune_checkpoint(restored, C.S3Config(), records) as here:
        assert ck.read_state(here)["epoch"] == 1
    said = capsys.readouterr().out
    assert f"trial checkpoint {path}/checkpoint_000001 has no {ck.STATE} (moved aside, or cut short" in said, said
    storage.remove(storage.join(bad, ck.STATE))  # the copy of checkpoint_000000's
    storage.remove(storage.join(records, ck.METRICS_FILE))  # nothing says which is whole
    with pytest.raises(ck.CheckpointError, match=rf"\({path}/checkpoint_000001 has no {ck.STATE} \(moved aside"):
        with loop.tune_checkpoint(restored, C.S3Config(), records):
            pass


def test_a_trial_whose_recorded_checkpoint_was_deleted_skips_one_a_kill_cut_short(tmp_path, capsys):
    """The driver's kill ends the trial too, maybe part way through uploading its newest checkpoint: Ray copies a
    folder's files at once, and the small state.json lands whole before the weights. That one is no checkpoint to
    resume from (it failed on 'adversary.pt is missing', every retry alike): only a checkpoint of an epoch before the
    last one the trial's metrics.json records was surely uploaded whole (metrics.json is written before each epoch's
    checkpoint)."""
    from ray.tune import Checkpoint

    trial, records = tmp_path / "experiment" / "trial", tmp_path / "trials" / "t1"
    for epoch in (4, 5):  # checkpoint_000003 whole; checkpoint_000004 cut short: its state.json alone
        storage.write_bytes(str(trial / f"checkpoint_00000{epoch - 1}" / ck.STATE),
                            json.dumps({"epoch": epoch, "history": []}).encode())
    storage.write_bytes(str(trial / "checkpoint_000003" / "adversary.pt"), b"weights")
    storage.write_bytes(str(records / ck.METRICS_FILE), json.dumps({"history": [{}] * 5}).encode())
    fs, path = storage.pyarrow_filesystem(str(trial))
    ck.stand_in(str(trial / "checkpoint_000002"), C.S3Config())
    gone = Checkpoint(f"{path}/checkpoint_000002", filesystem=fs)
    with loop.tune_checkpoint(gone, C.S3Config(), str(records)) as here:
        assert ck.read_state(here)["epoch"] == 4 and (here / "adversary.pt").exists()
    assert "resuming from the newest whole checkpoint" in capsys.readouterr().out
    storage.remove(str(trial / "checkpoint_000002" / ck.STATE))  # the copy of checkpoint_000003's
    storage.remove(str(records / ck.METRICS_FILE))  # nothing says which is whole: none is guessed
    with pytest.raises(ck.CheckpointError, match="checkpoint_000002 was gone"):
        with loop.tune_checkpoint(gone, C.S3Config(), str(records)):
            pass


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_trial_resumed_from_the_checkpoint_after_its_restored_one_survives_tune_overwriting_that(where, tmp_path,
                                                                                                 request):
    """Tune writes a restored trial's next checkpoint into the folder after the one it restores (the index is in its
    saved state), over the files there, each whole (old or new) where a kill stops the copy. A trial resumed from
    checkpoint_000001 beside a stand-in for checkpoint_000000 (Tune had registered checkpoint_000002, whose epoch
    metrics.json does not yet show uploaded) wrote its next checkpoint over checkpoint_000001 itself: a kill part way
    through left that one, the only one to resume from, with its state.json of one epoch and weights of the next,
    and the rerun loaded it as whole. The checkpoint beside is now copied into the restored folder first."""
    from ray.tune import Checkpoint

    s3 = C.S3Config()
    trial = f"{request.getfixturevalue('s3_bucket')}/ck/trial" if where == "s3" else str(tmp_path / "trial")
    for epoch in (2, 3):
        folder = storage.join(trial, f"checkpoint_00000{epoch - 1}")
        for name in (ck.ADVERSARY, "engine/state.pt"):
            storage.write_bytes(storage.join(folder, name), f"epoch {epoch}".encode(), s3)
        storage.write_bytes(storage.join(folder, ck.STATE), json.dumps({"epoch": epoch, "history": []}).encode(), s3)
    records = storage.join(trial.rsplit("/", 1)[0], "trials", "t1")
    storage.write_bytes(storage.join(records, ck.METRICS_FILE), json.dumps({"history": [{}] * 3}).encode(), s3)
    ck.stand_in(storage.join(trial, "checkpoint_000000"), s3)
    fs, path = storage.pyarrow_filesystem(trial)
    restored = Checkpoint(f"{path}/checkpoint_000000", filesystem=fs)
    with loop.tune_checkpoint(restored, s3, records) as here:
        assert ck.read_state(here)["epoch"] == 2
    for name in (ck.ADVERSARY, "engine/state.pt"):  # the resumed trial's epoch 3, into checkpoint_000001: killed
        storage.write_bytes(storage.join(trial, "checkpoint_000001", name), b"epoch 3", s3)
    with loop.tune_checkpoint(restored, s3, records) as here:
        assert ck.read_state(here)["epoch"] == 2
        assert (here / ck.ADVERSARY).read_bytes() == (here / "engine" / "state.pt").read_bytes() == b"epoch 2"


def test_a_trial_checkpoint_tune_restores_that_cannot_be_used_names_where_the_trial_resumes_from(tmp_path):
    """`avdis sweep` refused such a checkpoint of a trial in its own process saying to move its state.json aside 'to
    resume the trial from the newest whole checkpoint beside it', where there might be none: followed, the trial failed
    on it (`loop.tune_checkpoint`), and a failed trial is never retried. It now names the one the trial resumes from,
    and where there is none says at once to start a new sweep."""
    trial, records = tmp_path / "experiment" / "trial", tmp_path / "trials" / "t1"
    for epoch in (1, 2):
        storage.write_bytes(str(trial / f"checkpoint_00000{epoch - 1}" / ck.STATE), json.dumps({"epoch": epoch}).encode())
    storage.write_bytes(str(records / ck.METRICS_FILE), json.dumps({"history": [{}] * 3}).encode())
    bad = str(trial / "checkpoint_000001")
    assert str(ck.tune_unusable(bad, "t1", "adversary.pt is missing", str(records), C.S3Config())) == (
        f"{bad}: the checkpoint Tune restores trial t1 from cannot be used (adversary.pt is missing); move its "
        f"state.json aside (not the folder, which Tune must find) to resume the trial from {trial}/checkpoint_000000, "
        "or start a new sweep (sweep.name=...)")
    (trial / "checkpoint_000000" / ck.STATE).unlink()
    assert str(ck.tune_unusable(bad, "t1", "adversary.pt is missing", str(records), C.S3Config())).endswith(
        "(adversary.pt is missing), and no checkpoint beside it is known to be whole to resume the trial from; start a "
        "new sweep (sweep.name=...)")


def test_a_speaker_disjoint_run_begun_before_its_measure_is_told_the_measure_changed(tiny_shards, finished, tmp_path,
                                                                                     capsys):
    """A speaker_disjoint run begun before `config.MEASURES["speaker_disjoint"]` (its probes judged the test fold's
    test clips alone) was refused with "records no measures.speaker_disjoint: an older avdis wrote it": right, but
    unlike the sweep's refusal of the same case it did not say that the measure changed, to what, nor why that stops
    the resume. It says it in the sweep's words (`config.measured_otherwise`)."""
    storage = copy_of(finished, tmp_path)
    disjoint = ["data.split.scheme=speaker_disjoint"]
    signed = ck.run_signature(cfg_for(tiny_shards, storage, *disjoint), shards.manifest_hash(tiny_shards))
    for state_file in (storage / "fixed").glob("checkpoint_*/state.json"):
        state = json.loads(state_file.read_text())
        state[ck.SIGNATURE] = {k: v for k, v in signed.items() if k != "measures.speaker_disjoint"}  # as signed before
        state_file.write_text(json.dumps(state))
    before = history(storage)
    assert main(["train", "--config", str(SMOKE), *overrides(tiny_shards, storage, *disjoint)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"{storage / 'fixed'}: its checkpoint was measured otherwise than this avdis measures them "
            f"(speaker_disjoint: {C.MEASURES['speaker_disjoint']} (this run's: not recorded, so the one before))") in err
    assert "another train.name" in err and "older avdis wrote it" not in err
    assert history(storage) == before  # nothing trained
