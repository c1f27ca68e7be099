"""A corpus whose emotion lives only in the voice's dynamics, and an audio encoder that hears it.

`avdis synth --cues dynamics`: syllable rate, tremor and melody shape say the emotion; pitch
level, formants, loudness and the face say only who speaks. Checked on the corpus itself
(a linear probe on each clip's average spectrum finds the speaker but not the emotion) and
on the model (audio-only multitask, tiny preset, 12 epochs: with the contour features it
learns the emotion; the encoder without them, as before, stays far below).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avdis import config as C
from avdis.config import DataConfig, S3Config, SynthConfig
from avdis.data import stream, synth
from avdis.data.prepare import synthetic_shards
from avdis.logistic import fit_logistic
from avdis.train import launch

SPEC = SynthConfig(speakers=12, emotions=4, clips_per_speaker=24, entanglement=0.0, cues="dynamics", seed=0)


@pytest.fixture(scope="module")
def dynamics_shards(tmp_path_factory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("dynamics")
    synthetic_shards(SPEC, work / "corpus", work / "shards")
    return {"src": str(work / "corpus"), "shards": str(work / "shards"), "work": str(work)}


def _probe_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, classes: int) -> float:
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = torch.as_tensor((x - mean) / std)
    lin = fit_logistic(z[train], torch.as_tensor(y[train]), classes)
    with torch.no_grad():
        return float((lin(z[~train].double()).argmax(1).numpy() == y[~train]).mean())


def test_dynamics_corpus_keeps_emotion_out_of_the_average_spectrum(dynamics_shards):
    data = DataConfig(corpus="synthetic", src=dynamics_shards["src"], shards=dynamics_shards["shards"])
    info = stream.open_dataset(data, S3Config())
    rows = {"x": [], "emotion": [], "speaker": [], "split": []}
    for b in stream.epoch_batches(info, data, S3Config(), None, rank=0, world=1, epoch=0, seed=0, batch_size=32,
                                  shuffle=False):
        v = b["valid"]
        m = b["audio_mask"][v].unsqueeze(-1).float()
        rows["x"].append(((b["audio"][v] * m).sum(1) / m.sum(1)).numpy())  # each clip's average log-mel
        for k in ("emotion", "speaker", "within_split"):
            rows["split" if k == "within_split" else k].append(b[k][v].numpy())
    x, emo, spk, split = (np.concatenate(rows[k]) for k in ("x", "emotion", "speaker", "split"))
    train = split == stream.SPLIT_CODES["train"]
    assert _probe_accuracy(x, spk, train, SPEC.speakers) >= 0.8  # who speaks: in the average spectrum
    assert _probe_accuracy(x, emo, train, SPEC.emotions) <= 0.45  # how they feel: not (chance 0.25)


def _train(shards_: dict[str, str], name: str, *extra: str) -> float:
    cfg = C.load(None, ["model.preset=tiny", "model.modality=audio", "train.epochs=12", "train.strategy=single",
                        "train.probe_every=0", "method.name=multitask", f"data.src={shards_['src']}",
                        f"data.shards={shards_['shards']}", f"train.storage={shards_['work']}/runs",
                        f"train.name={name}", *extra])
    return launch.train(cfg)["final"]["emotion_acc"]


def test_audio_only_tiny_model_learns_emotion_from_dynamics_in_12_epochs(dynamics_shards):
    with_contours = _train(dynamics_shards, "contours")
    without = _train(dynamics_shards, "no-contours", "model.contours=false")
    assert with_contours >= 0.9, with_contours
    assert with_contours - without >= 0.15, (with_contours, without)


def test_voice_only_identity_gives_every_speaker_one_face_and_their_own_voice():
    rng = np.random.default_rng(0)
    speakers = [synth._speaker(rng, "voice") for _ in range(4)]
    assert len({tuple(getattr(s, k) for k in synth._FACE) for s in speakers}) == 1
    assert len({(s.f0, s.formants) for s in speakers}) == 4
    assert SynthConfig(identity_cues=False).identity_cues == "off"  # YAML booleans keep their meaning
