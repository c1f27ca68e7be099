"""The single-process trainer: golden losses, determinism under a seed, resume after a crash."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from avdis import config as C
from avdis.config import Config, FeatureConfig, MethodConfig, ModelConfig, TrainConfig
from avdis.data.stream import ShardCache, open_dataset
from avdis.errors import UsageError
from avdis.model.disentangle import REGISTRY
from avdis.model.multitask import build_model
from avdis.train import launch, loop
from avdis.train.checkpoint import KEEP_CHECKPOINTS
from avdis.train.engine import build_engine
from avdis.train import evaluate
from avdis.train.evaluate import warn_few_judged, warn_unseen_emotions
from avdis.train.step import Stepper

ROOT = Path(__file__).resolve().parents[1]
FEAT = FeatureConfig(n_mels=16, window_s=1.0, fps=4, face_size=16)
TIMING = ("train_s", "epoch_s", "train_s_sum", "epoch_s_sum", "samples_per_s", "data_wait_frac")


def fixed_batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = 8
    return {"audio": torch.randn(n, FEAT.audio_frames, FEAT.n_mels, generator=g) - 7,
            "audio_mask": torch.ones(n, FEAT.audio_frames, dtype=torch.bool),
            "video": torch.randint(0, 255, (n, FEAT.video_frames, 16, 16, 3), generator=g, dtype=torch.uint8),
            "video_mask": torch.ones(n, FEAT.video_frames, dtype=torch.bool),
            "emotion": torch.arange(n) % 4, "speaker": torch.arange(n) % 3, "valid": torch.ones(n, dtype=torch.bool),
            "scheme_split": torch.zeros(n, dtype=torch.long), "within_split": torch.zeros(n, dtype=torch.long),
            "clip_id": [str(i) for i in range(n)]}


# Losses of the first four steps, recorded with torch 2.13.0 on CPU. A change here means the
# model, a loss or the optimizer step changed: if that was intended, record the new values.
# Recorded again 2026-11-29: the audio encoder's contour features, the conditional adversary.
GOLDEN = {
    "multitask": [2.4826, 2.477265, 2.482383, 2.471078],
    "adversarial": [3.509318, 3.447229, 3.400373, 3.336557],
    "orthogonal": [2.626882, 2.573807, 2.578163, 2.577915],  # 2026-12-04: canonical correlation, running covariance
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_losses(name):
    cfg = Config(model=ModelConfig(emb_dim=8, dropout=0.0),
                 method=MethodConfig(name=name, weight=None if name == "multitask" else 1.0),
                 train=TrainConfig(lr=0.01, epochs=1))
    torch.manual_seed(0)
    stepper = Stepper(build_engine(build_model(cfg.model, FEAT, 4, 3), cfg.train, False), REGISTRY[name], cfg, 3,
                      torch.full((4, 3), 1 / 3))  # p(speaker | emotion) for the conditional adversary
    losses = [stepper.train_step(fixed_batch(i), i / 10)["loss"] for i in range(4)]
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(GOLDEN[name]), rtol=1e-4, atol=1e-4)


def test_the_adversary_takes_its_steps_once_per_encoder_step_under_grad_accum():
    """It took `method.adversary.steps` steps on every micro-batch, so grad_accum 4 (a memory setting, meant as a
    4x batch) made it 4 times as strong. Now an encoder step of 2 micro-batches of 4 clips trains it exactly as one
    batch of those 8 clips does."""
    def adversary_after(accum: int, batches: list[dict]) -> tuple[Stepper, int]:
        cfg = Config(model=ModelConfig(emb_dim=8, dropout=0.0), method=MethodConfig(name="adversarial", weight=1.0),
                     train=TrainConfig(lr=0.01, epochs=1, grad_accum=accum))
        torch.manual_seed(0)
        stepper = Stepper(build_engine(build_model(cfg.model, FEAT, 4, 3), cfg.train, False), REGISTRY["adversarial"],
                          cfg, 3, torch.full((4, 3), 1 / 3))
        logged = [stepper.train_step(b, 0.0) for b in batches]
        assert ["adversary" in log for log in logged] == [False] * (accum - 1) + [True]  # once per encoder step
        return stepper, int(next(iter(stepper.adv_opt.state.values()))["step"])

    whole = fixed_batch(0)
    halves = [{k: v[:4] for k, v in whole.items()}, {k: v[4:] for k, v in whole.items()}]
    one, steps_one = adversary_after(1, [whole])
    two, steps_two = adversary_after(2, halves)
    assert steps_one == steps_two == one.cfg.method.adversary.steps  # was 2x the steps under grad_accum 2
    for a, b in zip(one.adversary.parameters(), two.adversary.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


EPOCH_LOSSES = """
import json, sys
import torch.distributed as dist
from avdis.train.loop import _epoch_losses
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method=sys.argv[2], rank=rank, world_size=2)
logs = [[{"loss": 1.4, "adversary": 0.5}, {"loss": 1.4}, {"loss": 0.0}],  # rank 0: a padding step last
        [{"loss": 2.0, "adversary": 0.8}, {"loss": 2.0}, {"loss": 2.0}]][rank]
rows = [[2, 2, 0], [2, 2, 1]][rank]
print(json.dumps(_epoch_losses(logs, rows, rows, ("loss", "adversary", "speaker"))))
dist.destroy_process_group()
"""


def test_an_epochs_loss_is_over_every_ranks_clips_without_padding_steps(tmp_path):
    """The epoch's loss was the mean of rank 0's steps: a padding step (no clips, loss 0) pulled it down, and the
    other ranks' clips were not in it. Here rank 0 logged 1.4 on 4 clips and a padding step, rank 1 2.0 on 5."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ranks = [subprocess.Popen([sys.executable, "-c", EPOCH_LOSSES, str(r), f"file://{tmp_path}/store"], env=env,
                              stdout=subprocess.PIPE, text=True) for r in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0]
    expected = {"loss": (1.4 * 4 + 2.0 * 5) / 9, "adversary": (0.5 * 2 + 0.8 * 2) / 4}  # no step logged "speaker"
    for out in outs:  # every rank alike
        assert out.keys() == expected.keys() and all(out[k] == pytest.approx(v) for k, v in expected.items()), out


def test_the_adversarys_epoch_loss_under_grad_accum_weighs_each_window_by_its_clips():
    """The adversary logs one loss per accumulation window, its mean over the window's clips, on the window's last
    micro-batch: weighed by that micro-batch's clips, a window of 8 + 2 clips counted 2 (its 10 clips went nearly
    unheard) and one whose last micro-batch was padding only counted 0. Windows of 8 + 8, 8 + 2 and 8 + 0 clips."""
    from avdis.train.loop import _epoch_losses

    logs = [{"loss": 1.0}, {"loss": 1.0, "adversary": 0.4}, {"loss": 2.0}, {"loss": 2.0, "adversary": 1.0},
            {"loss": 3.0}, {"loss": 0.0, "adversary": 2.0}]
    rows, windows = [8, 8, 8, 2, 8, 0], [16, 16, 10, 10, 8, 8]
    out = _epoch_losses(logs, rows, windows, ("loss", "adversary"))
    assert out["adversary"] == pytest.approx((0.4 * 16 + 1.0 * 10 + 2.0 * 8) / 34)  # was (0.4 * 8 + 1.0 * 2) / 10
    assert out["loss"] == pytest.approx((1.0 * 16 + 2.0 * 10 + 3.0 * 8) / 34)  # each micro-batch by its own clips


def single(tiny_shards: str, storage: Path, *overrides: str) -> C.Config:
    return C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        f"data.shards={tiny_shards}", f"train.storage={storage}", "train.strategy=single", "train.zero_stage=0",
        "train.workers=1", "train.epochs=3", "probe.epochs=60", "train.name=run", *overrides])


def test_a_test_fold_without_leakage_to_measure_is_refused_before_training(tiny_shards, tmp_path):
    """6 speakers in 4 folds: fold 2 holds one. The run trained an epoch (with train.probe_every=0, every epoch) and
    then stopped at its probe, and a rerun resumed into the same failure; a sweep refused it before any trial."""
    with pytest.raises(UsageError, match=r"the test fold of data.split.scheme=speaker_disjoint, fold 2, holds 1 "
                                         r"speaker; .*Preprocess again with data.split.folds <= 3 \(this corpus has "
                                         r"6 speakers\)"):
        launch.train(single(tiny_shards, tmp_path, "data.split.scheme=speaker_disjoint", "data.split.fold=2",
                            "train.probe_every=0"))
    assert not (tmp_path / "run").exists()


def test_a_run_whose_shards_are_made_again_after_its_checks_stops_before_training(tiny_corpus, tmp_path, monkeypatch):
    """`avdis train` checks a run (its checkpoints' data, the modalities, the accumulation) on the manifest it reads
    first, and its workers opened the manifest again: shards made again between the two were trained on unchecked
    (seen with several workers, whose ranks checked only each other). The workers now check theirs against the
    driver's hash and stop."""
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards
    from avdis.data.shards import manifest_hash
    from avdis.data.stream import ShardsRebuilt

    from conftest import TINY

    shards = str(tmp_path / "shards")
    synthetic_shards(SynthConfig(**TINY), tiny_corpus, shards, shard_size=16)
    checked = manifest_hash(shards)
    checks = launch.check_leakage_defined

    def made_again_after(*args, **kwargs):  # the last of the driver's checks: `avdis preprocess --force` runs now
        checks(*args, **kwargs)
        synthetic_shards(SynthConfig(**TINY), tiny_corpus, shards, shard_size=8)

    monkeypatch.setattr(launch, "check_leakage_defined", made_again_after)
    with pytest.raises(ShardsRebuilt) as stopped:
        launch.train(single(shards, tmp_path / "runs", "train.epochs=1"))
    assert str(stopped.value).startswith(f"{shards}: its shards were made again while this run ran (manifest {checked} "
                                         f"when `avdis train` checked the run, {manifest_hash(shards)} when its "
                                         "workers opened them)")
    assert manifest_hash(shards) != checked and not (tmp_path / "runs" / "run" / "metrics.json").exists()


def test_speakers_that_share_no_emotion_are_refused_for_that_not_for_too_few_clips(tmp_path):
    """data.synth.entanglement=1 with no more speakers than emotions: each speaker shows an emotion of its own, so the
    label names every clip's speaker. The refusal said 'too few clips for two speakers to share an emotion' and asked
    for more clips per speaker and emotion, which leave it as it is."""
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards

    spec = SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, entanglement=1.0, duration_s=0.5, seed=1)
    synthetic_shards(spec, tmp_path / "corpus", tmp_path / "shards")
    with pytest.raises(UsageError, match=r"names the speaker of every test clip the leakage probe judges \(no emotion "
                                         r"of theirs is shown by two of their speakers\), .*use a corpus whose "
                                         r"speakers share emotions \(a generated one: data.synth.entanglement below 1"):
        launch.train(single(str(tmp_path / "shards"), tmp_path / "runs",  # smoke.yaml's data.synth: this corpus's
                            *(f"data.synth.{k}={v}" for k, v in spec.model_dump().items())))
    assert not (tmp_path / "runs" / "run").exists()


def test_an_accumulated_update_is_the_update_over_its_micro_batches_clips(tiny_shards, tmp_path):
    """42 train clips: batches of 16 (16, 16, 10) against micro-batches of 8 accumulated in pairs (8+8, 8+8, 8+2), the
    same clips in the same order. The engines average the micro-batches, so the last window's 2 clips weighed as much
    as its 8 (parameters 4.5e-3 apart after the epoch); each micro-batch's loss now counts its clips (2e-5: float
    noise)."""
    def trained(name: str, *overrides: str) -> torch.Tensor:
        launch.train(single(tiny_shards, tmp_path, f"train.name={name}", "train.epochs=1", "probe.epochs=5",
                            "model.dropout=0.0", "train.lr_schedule=constant", "method.name=multitask", *overrides))
        [state] = (tmp_path / name).rglob("engine/state.pt")
        return torch.cat([p.float().flatten() for p in torch.load(state, weights_only=True)["model"].values()])

    whole = trained("whole", "train.batch_size=16")
    accumulated = trained("accumulated", "train.batch_size=8", "train.grad_accum=2")
    assert (whole - accumulated).abs().max() < 5e-4


def test_a_leakage_probe_that_judges_few_clips_is_said_before_training(tiny_shards, tmp_path, capsys, monkeypatch):
    """Where a probe judges a handful of clips, each is a large share of its accuracy and leakage moves by chance as
    much as between methods: a corpus of one's own (hU3) had 3-5 judged clips, its val_leakage read 0 or 1 epoch to
    epoch and its test leakage -1.0, and nothing said so. The tiny corpus's probes judge 18 test and 12 val clips
    (within_speaker), 10 and 10 of its speaker_disjoint folds; leakage is read on those the emotion label alone does
    not name, 10 and 5, 1 and 3."""
    cfg = single(tiny_shards, tmp_path)
    info = open_dataset(cfg.data, cfg.s3)
    warn_few_judged(info, cfg, ("test", "val"))
    out = capsys.readouterr().out
    assert ("the leakage probe judges 18 test clips under data.split.scheme=within_speaker: each is 6% of its "
            "accuracy; the emotion label alone names the speaker of 8 of them, and leakage counts only what a probe "
            "names beyond that: each of the other 10 is 10% of it, so leakage differs between trials by chance") in out
    assert ("judges 12 val clips under data.split.scheme=within_speaker: each is 8% of its accuracy; the emotion label "
            "alone names the speaker of 7 of them, and val_leakage counts only what a probe names beyond that: each of "
            "the other 5 is 20% of it, so val_leakage") in out and "fewer data.split.folds" not in out
    warn_few_judged(info, cfg)  # a run's own: its test probe alone
    assert "val clips" not in capsys.readouterr().out
    disjoint = cfg.model_copy(update={"data": cfg.data.model_copy(update={"split": cfg.data.split.model_copy(
        update={"scheme": "speaker_disjoint"})})})
    warn_few_judged(open_dataset(disjoint.data, disjoint.s3), disjoint, ("test", "val"))
    out = capsys.readouterr().out
    assert "judges 10 test clips under data.split.scheme=speaker_disjoint, fold 0" in out and "judges 10 val" in out
    # the val probe judges the next fold's speakers, not data.split.fold's (hU4 read "15 val clips under ..., fold 0")
    assert "fold 0 (the 2 speakers of its test fold, 0): each" in out
    assert "names the speaker of 9 of them, and leakage counts only what a probe names beyond that: the other one is " \
        "all of it" in out
    assert "judges 10 val clips under data.split.scheme=speaker_disjoint, fold 0 (the 2 speakers of its validation " \
        "fold, 1): each" in out
    assert "or preprocess with fewer data.split.folds (more speakers a fold)" in out
    monkeypatch.setattr(evaluate, "MIN_JUDGED", 5)  # 10 and 5 judged beyond the label's guess: enough at this bar
    warn_few_judged(info, cfg, ("test", "val"))
    assert capsys.readouterr().out == ""


def test_test_clips_of_an_emotion_no_training_clip_has_are_said_before_training(tiny_shards, tmp_path, capsys):
    """Every such clip is an error in emotion accuracy whatever the method: said, not found in the numbers."""
    cfg = single(tiny_shards, tmp_path)
    info = open_dataset(cfg.data, cfg.s3)
    warn_unseen_emotions(info, cfg)
    assert "warning" not in capsys.readouterr().out  # every emotion has training clips here
    unseen = [(spk, emo, scheme, within) for spk, emo, scheme, within in info.labels
              if not (scheme == "train" and emo == 1)]  # as if emotion 1's training clips were missing
    warn_unseen_emotions(replace(info, labels=unseen), cfg)
    out = capsys.readouterr().out
    n_test = sum(scheme == "test" and emo == 1 for _, emo, scheme, _ in unseen)
    assert f"{n_test} of the {sum(s == 'test' for _, _, s, _ in unseen)} test clips" in out
    assert f"no training clip has ({info.emotions[1]})" in out and out.count("warning") == 2  # test and val


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING} for e in history]


@pytest.mark.parametrize("method", ["multitask", "nullspace"])
def test_same_seed_same_numbers(tiny_shards, tmp_path, method, monkeypatch):
    """Run b reads every shard on every pass (a cache of 0 bytes, as before runs kept their decoded shards): a's
    passes after its first come from its `ShardCache`, and change no number."""
    extra = ["method.name=nullspace", "method.weight=2"] if method == "nullspace" else []
    a = launch.train(single(tiny_shards, tmp_path / "a", *extra))
    with monkeypatch.context() as m:
        m.setattr(loop, "ShardCache", lambda: ShardCache(0))
        b = launch.train(single(tiny_shards, tmp_path / "b", *extra))
    ha = json.loads(Path(a["metrics_file"]).read_text())["history"]
    hb = json.loads(Path(b["metrics_file"]).read_text())["history"]
    assert without_timing(ha) == without_timing(hb)
    c = launch.train(single(tiny_shards, tmp_path / "c", "train.seed=1", *extra))
    assert c["final"]["loss"] != a["final"]["loss"]
    ckpt = sorted(Path(a["run"]).glob("checkpoint_epoch_*"))
    assert KEEP_CHECKPOINTS < 3, "train for more epochs than are kept, or pruning goes untested"
    kept = [f"checkpoint_epoch_{epoch:04d}" for epoch in range(4 - KEEP_CHECKPOINTS, 4)]  # the latest of 3 epochs
    assert [p.name for p in ckpt] == kept
    assert (ckpt[-1] / "engine" / "state.pt").exists() and (ckpt[-1] / "state.json").exists()
    assert ((ckpt[-1] / "posthoc.pt").exists()) == (method == "nullspace")


@pytest.mark.parametrize("extra", [[], ["method.name=orthogonal", "method.weight=5"]], ids=["multitask", "orthogonal"])
def test_crash_then_resume_gives_the_uninterrupted_run(tiny_shards, tmp_path, extra):
    """Train 3 epochs straight; train again, crash in epoch 2, rerun: the tails match. Orthogonal's running
    covariance is in the checkpoint: begun afresh on resume, it read only the batches after it."""
    straight = launch.train(single(tiny_shards, tmp_path / "straight", *extra))
    args = [sys.executable, str(ROOT / "jobs" / "train.py"), "--config", str(ROOT / "jobs" / "configs" / "smoke.yaml"),
            f"data.shards={tiny_shards}", f"train.storage={tmp_path / 'crashy'}", "train.strategy=single",
            "train.zero_stage=0", "train.workers=1", "train.epochs=3", "probe.epochs=60", "train.name=run", *extra]
    env = {**os.environ, "AVDIS_FAIL_AT_STEP": "4", "AVDIS_FAIL_MARKER": str(tmp_path / "crashed")}
    crashed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert crashed.returncode != 0 and (tmp_path / "crashed").exists()
    done = json.loads((tmp_path / "crashy" / "run" / "metrics.json").read_text())["history"]
    assert [e["epoch"] for e in done] == [1]  # epoch 1 was checkpointed before the crash in epoch 2
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "avdis train: resuming from epoch 1 of 3" in resumed.stdout
    tail = json.loads((tmp_path / "crashy" / "run" / "metrics.json").read_text())["history"]
    full = json.loads(Path(straight["metrics_file"]).read_text())["history"]
    assert without_timing(tail) == without_timing(full)


def test_a_resumed_run_reports_its_restored_epochs_again_before_training_on(tiny_shards, tmp_path):
    """A multi-worker sweep trial's Train run can checkpoint epochs its driver never heard of (its reports queue
    behind Tune's); resumed, it reported only the epochs after its checkpoint, so a rung among the others was never
    judged by MO-ASHA and a trial it would have stopped trained to the end."""
    from avdis.train import loop

    class Heard(loop.LocalReporter):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.heard: list[tuple[int, bool]] = []

        def report(self, metrics, directory) -> None:
            self.heard.append((metrics["epoch"], directory is not None))
            super().report(metrics, directory)

    first = single(tiny_shards, tmp_path, "train.epochs=2", "probe.epochs=20")
    loop.run(first, Heard(str(tmp_path / "run"), first))
    longer = single(tiny_shards, tmp_path, "train.epochs=3", "probe.epochs=20")
    resumed = Heard(str(tmp_path / "run"), longer)
    history = loop.run(longer, resumed)
    assert resumed.heard == [(1, False), (2, False), (3, True)]  # epochs 1-2 again, without checkpoints
    assert [e["epoch"] for e in history] == [1, 2, 3]
    finished = Heard(str(tmp_path / "run"), longer)
    loop.run(longer, finished)
    assert finished.heard == [(3, False)]  # a finished run says so once


def test_one_progress_line_per_epoch_and_a_resume_line(tiny_shards, tmp_path, capsys):
    cfg = single(tiny_shards, tmp_path, "train.epochs=2", "train.probe_every=2", "probe.epochs=20")
    launch.train(cfg)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("avdis train: epoch")]
    number = r"-?\d+\.\d"
    assert len(lines) == 2
    assert re.fullmatch(rf"avdis train: epoch 1/2, loss {number}{{4}}, emotion_acc {number}{{3}}, {number} s", lines[0])
    assert re.fullmatch(rf"avdis train: epoch 2/2, loss {number}{{4}}, emotion_acc {number}{{3}}, "
                        rf"leakage {number}{{3}}, {number} s", lines[1])  # probed: the last epoch
    launch.train(cfg)  # the run is complete: it resumes, says so, trains nothing
    out = capsys.readouterr().out
    assert f"avdis train: resuming from epoch 2 of 2 ({tmp_path}/run)" in out and "avdis train: epoch" not in out
    assert "train.epochs changed" not in out
    # extended: the cosine schedule is now 3 epochs long, so the learning rate rises again (from 5% of lr); say so
    launch.train(single(tiny_shards, tmp_path, "train.epochs=3", "train.probe_every=2", "probe.epochs=20"))
    out = capsys.readouterr().out
    said = re.search(r"avdis train: train.epochs changed from 2 to 3: the cosine learning rate follows the 3-epoch "
                     r"schedule from epoch 3, so it moves from (\S+) to (\S+);", out)
    assert said, out
    lr = cfg.train.lr  # cos(pi * 2/3) = -1/2: a quarter of the way down from lr, on a 5% floor
    assert [float(x) for x in said.groups()] == pytest.approx([0.05 * lr, lr * (0.05 + 0.95 * 0.25)], rel=1e-2)
    assert "avdis train: epoch 3/3" in out


def test_model_list_prints_presets_with_parameter_counts(capsys):
    from avdis.cli import main

    assert main(["model", "--list"]) == 0
    out = capsys.readouterr().out
    for preset in C.PRESETS:
        assert preset in out
    large = next(line for line in out.splitlines() if line.startswith("large"))
    assert int(large.split()[-1].replace(",", "")) > 100_000_000


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the load on a machine without CUDA")
def test_an_adversary_saved_on_a_gpu_resumes_on_this_device(tmp_path, monkeypatch):
    """adversary.pt was loaded without map_location: one rank 0 saved on its GPU raised 'Attempting to deserialize
    object on a CUDA device' on a CPU node (every other rank would put it on cuda:0). Saved here as a GPU tags it."""
    cfg = Config(model=ModelConfig(emb_dim=8, dropout=0.0), method=MethodConfig(name="adversarial", weight=1.0),
                 train=TrainConfig(lr=0.01, epochs=1))
    make = lambda: Stepper(build_engine(build_model(cfg.model, FEAT, 4, 3), cfg.train, False),  # noqa: E731
                           REGISTRY["adversarial"], cfg, 3, torch.full((4, 3), 1 / 3))
    trained = make()
    trained.train_step(fixed_batch(0), 0.0)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(trained.state_dict(), tmp_path / "adversary.pt")
    with pytest.raises(RuntimeError, match="CUDA device"):  # what the old load did
        torch.load(tmp_path / "adversary.pt", weights_only=False)
    resumed = make()
    resumed.load(tmp_path / "adversary.pt")
    for mine, theirs in zip(resumed.adversary.parameters(), trained.adversary.parameters()):
        assert mine.device == resumed.engine.device and torch.equal(mine, theirs)
    moments = [s.adv_opt.state_dict()["state"][0]["exp_avg"] for s in (resumed, trained)]
    assert torch.equal(*moments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows a machine without CUDA")
def test_a_worker_that_asked_for_a_gpu_torch_cannot_see_is_refused():
    """It trained on CPU, saying nothing: hours where a GPU was meant (a CPU build of torch), in fp32 under auto."""
    cfg = TrainConfig(gpus_per_worker=1)
    with pytest.raises(UsageError, match="gpus_per_worker=1 but torch sees no CUDA device"):
        build_engine(torch.nn.Linear(2, 2), cfg, False)
