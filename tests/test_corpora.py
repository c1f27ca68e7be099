"""Corpus adapters and preprocessing on RAVDESS-/CREMA-D-shaped trees: labels, pairing, rejects."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from avdis.config import DataConfig, S3Config, SplitConfig
from avdis.data import corpora, shards
from corpus_trees import cremad_tree, ravdess_tree


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("RAVDESS")
    return root, ravdess_tree(root)


@pytest.fixture(scope="module")
def cremad(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("CREMA-D")
    return root, cremad_tree(root)


def test_ravdess_labels_pairing_and_no_double_counting(ravdess):
    root, files = ravdess
    records, rejects = corpora.scan("ravdess", root)
    by_id = {r.clip_id: r for r in records}
    assert len(by_id) == len(records)
    assert by_id["ravdess-01-01-01-01-01-01"].emotion == "neutral"
    assert by_id["ravdess-01-01-01-01-01-01"].video_path.endswith("01-01-01-01-01-01-01.mp4")  # full AV wins
    assert by_id["ravdess-01-05-01-01-01-02"].emotion == "angry"
    assert by_id["ravdess-01-08-01-01-01-02"].emotion == "surprised"
    assert {r.speaker for r in records} == {"01", "02"}
    pair = by_id["ravdess-01-04-02-02-01-02"]
    assert pair.emotion == "sad" and pair.video_path == str(files["pair_video"]) and pair.audio_path == str(files["pair_audio"])
    reasons = {Path(r.source_path).name: r.reason for r in rejects}
    assert "already used from full-AV" in reasons["02-01-01-01-01-01-01.mp4"]
    assert "already used from full-AV" in reasons["03-01-01-01-01-01-01.wav"]
    assert "no audio-only (03) partner" in reasons["02-01-06-01-01-02-02.mp4"]
    assert "not a RAVDESS media file" in reasons["notes.txt"]


def test_cremad_labels_and_pairing_by_stem(cremad):
    root, _ = cremad
    records, rejects = corpora.scan("cremad", root)
    labels = {r.clip_id: (r.speaker, r.emotion) for r in records}
    assert labels["cremad-1001_DFA_ANG_XX"] == ("1001", "angry")
    assert labels["cremad-1002_TIE_SAD_XX"] == ("1002", "sad")
    assert all(r.audio_path.endswith(".wav") and r.video_path.endswith(".flv") for r in records)
    reasons = {Path(r.source_path).name: r.reason for r in rejects}
    assert "no AudioWAV/1003_DFA_FEA_HI.wav" in reasons["1003_DFA_FEA_HI.flv"]
    assert "no VideoFlash/1003_ITS_DIS_LO.flv" in reasons["1003_ITS_DIS_LO.wav"]
    assert "file name is not" in reasons["1003_ITS_XYZ_LO.wav"]


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(corpora.CorpusError, match="does not exist"):
        corpora.scan("ravdess", tmp_path / "nope")
    with pytest.raises(corpora.CorpusError, match="empty folder"):
        corpora.scan("cremad", tmp_path)
    with pytest.raises(corpora.CorpusError, match="avdis synth"):
        corpora.scan("synthetic", tmp_path)


@pytest.mark.parametrize("corpus", ["ravdess", "cremad"])
def test_preprocess_rejects_broken_media_and_keeps_the_rest(corpus, ravdess, cremad, tmp_path):
    root, files = ravdess if corpus == "ravdess" else cremad
    out = tmp_path / "shards"
    data = DataConfig(corpus=corpus, src=str(root), shards=str(out), shard_size=2,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    # two speakers with few clips each: within-speaker splits need >= 3 clips per speaker
    records, _ = corpora.scan(corpus, root)
    summary = shards.build_shards(data, S3Config())
    manifest = pq.read_table(out / "manifest.parquet").to_pandas()
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    assert summary["clips"] == len(manifest) > 0
    reasons = dict(zip(rejects.source_path.map(lambda p: Path(p).name), rejects.reason))
    if corpus == "ravdess":
        assert "cannot open media" in reasons[files["truncated"].name] or "corrupt" in reasons[files["truncated"].name]
        assert reasons[files["no_audio"].name] == "no audio stream"
    else:
        assert "1002_IWW_FEA_MD.flv" in reasons and ("cannot open" in reasons["1002_IWW_FEA_MD.flv"]
                                                     or "audio" in reasons["1002_IWW_FEA_MD.flv"])
    # every clip is either in the manifest or rejected, never both, never lost
    used = set(manifest.source_path)
    assert used.isdisjoint(set(rejects.source_path))
    assert len(used) + sum(1 for r in records if r.source_path in set(rejects.source_path)) == len(records)
    assert set(manifest.columns) >= {"clip_id", "corpus", "speaker", "emotion", "source_path", "shard", "split",
                                     "fold", "audio_shape", "video_shape", "face_detected"}
    assert manifest.clip_id.is_unique
