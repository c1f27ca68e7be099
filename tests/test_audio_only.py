"""Corpora of audio alone (data.modality=audio): a folder of .wav files, CREMA-D's AudioWAV, RAVDESS's 03 files.

Most emotion corpora users bring have no video (IEMOCAP's audio, MSP-Podcast, a CREMA-D copy holding only AudioWAV):
every clip of such a corpus was a reject ("no video stream"), so it made no shards.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from avdis import config as C
from avdis.config import DataConfig, S3Config, SplitConfig
from avdis.data import corpora, shards
from avdis.data.media import write_clip
from avdis.data.shards import made_with
from avdis.errors import UsageError
from avdis.train import launch
from corpus_trees import SR, clip_media, cremad_tree, ravdess_tree

ROOT = Path(__file__).resolve().parents[1]


def wav_corpus(src: Path, speakers: int = 6, clips: int = 4) -> Path:
    """A corpus of the user's own: .wav files and a ground_truth.csv."""
    rows = ["file,clip_id,speaker,emotion"]
    for s in range(speakers):
        for c in range(clips):
            _, audio = clip_media(s * clips + c)
            write_clip(src / f"spk{s}" / f"{c}.wav", None, 12, audio, SR)
            rows.append(f"spk{s}/{c}.wav,s{s}c{c},spk{s},{['happy', 'sad'][c % 2]}")
    (src / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    return src


def test_a_folder_of_wav_files_makes_audio_shards_and_is_named_without_the_setting(tmp_path):
    src = wav_corpus(tmp_path / "corpus")
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "av"), split=SplitConfig(folds=3))
    with pytest.raises(shards.PreprocessError, match="no video stream \\(for a corpus of audio alone, preprocess "
                                                     "with data.modality=audio\\)"):
        shards.build_shards(data, S3Config())
    audio = data.model_copy(update={"modality": "audio", "shards": str(tmp_path / "audio")})
    summary = shards.build_shards(audio, S3Config())
    assert summary["clips"] == 24 and summary["rejects"] == 0
    table, meta = shards.read_manifest(audio.shards)
    assert meta["modalities"] == ["audio"] and set(table.column("video_shape").to_pylist()[0]) == set()
    with tarfile.open(Path(audio.shards) / "shards" / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert names and not [n for n in names if n.endswith("video.npy")]


def test_an_audio_only_corpus_trains_an_audio_model_and_refuses_an_av_one(tmp_path):
    src = wav_corpus(tmp_path / "corpus")
    out = str(tmp_path / "shards")
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        "data.corpus=synthetic", f"data.src={src}", f"data.shards={out}", "data.modality=audio",
        f"train.storage={tmp_path / 'runs'}", "train.strategy=single", "train.zero_stage=0", "train.workers=1",
        "train.epochs=1", "probe.epochs=30", "train.name=run", "model.modality=audio"])
    shards.build_shards(cfg.data, cfg.s3)
    result = launch.train(cfg)
    final = result["final"]
    assert final["epoch"] == 1 and 0.0 <= final["emotion_acc"] <= 1.0 and "leakage" in final
    with pytest.raises(UsageError, match="model.modality=av needs \\['visual'\\] but the shards at .* hold only "
                                         "\\['audio'\\]"):
        launch.train(cfg.model_copy(update={"model": cfg.model.model_copy(update={"modality": "av"}),
                                            "train": cfg.train.model_copy(update={"name": "av"})}))
    # data.modality as the shards were made, as every data setting fixed then: the run (and a sweep's settings)
    # recorded data.modality=av for audio shards, and the same sweep given data.modality=audio later was refused
    with pytest.raises(UsageError, match="its shards were made with other settings: data.modality='av' \(made with "
                                         "'audio'\)"):
        launch.train(cfg.model_copy(update={"data": cfg.data.model_copy(update={"modality": "av"}),
                                            "train": cfg.train.model_copy(update={"name": "av2"})}))


def test_audio_shards_are_not_made_with_the_video_frames_settings(tmp_path):
    """data.features.fps and .face_size size video frames, which audio shards hold none of: given (a config file's,
    under a command line's data.modality=audio), they were recorded in the manifest, and training at any other value
    was refused ('made with other settings: data.features.fps=8.0 (made with 4.0)'), a build at another rebuilt."""
    audio = DataConfig(corpus="synthetic", src=str(wav_corpus(tmp_path / "corpus")), shards=str(tmp_path / "audio"),
                       modality="audio", split=SplitConfig(folds=3))
    shards.build_shards(audio.model_copy(update={"features": C.FeatureConfig(fps=4, face_size=32)}), S3Config())
    _, meta = shards.read_manifest(audio.shards)
    shards.check_made_with(audio, meta)  # defaults: taken
    assert shards.build_shards(audio, S3Config())["up_to_date"] is True
    made_before = {**meta, "features": {**meta["features"], "fps": 4.0, "face_size": 32}}  # recorded, as before
    shards.check_made_with(audio, made_before)
    with pytest.raises(UsageError, match=r"data.features.n_mels=64 \(made with 40\)"):
        shards.check_made_with(audio.model_copy(update={"features": C.FeatureConfig(n_mels=64)}), made_before)


def test_a_corpus_of_one_speaker_is_refused_as_such(tmp_path):
    """A one-speaker corpus (a single actor's recordings) was refused for 'too few clips for two speakers to share an
    emotion', with 'use a corpus with more clips per speaker and emotion' as the fix, which no number of clips is."""
    src = wav_corpus(tmp_path / "corpus", speakers=1, clips=8)
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        "data.corpus=synthetic", f"data.src={src}", f"data.shards={tmp_path / 'shards'}", "data.modality=audio",
        f"train.storage={tmp_path / 'runs'}", "train.strategy=single", "train.zero_stage=0", "train.workers=1",
        "train.epochs=1", "train.name=run", "model.modality=audio", "method.name=single_task"])
    with pytest.raises(UsageError, match=r"the corpus holds 1 speaker; leakage is how well a probe tells speakers "
                                         r"apart .*use a corpus of 2 speakers or more"):
        launch.train(cfg)
    assert not (tmp_path / "runs" / "run").exists()


def test_a_corpus_of_one_clip_per_speaker_is_refused_before_training(tmp_path):
    """Every clip goes to train, so no test clip is left to score: the run trained its epochs, then failed at the
    probe with 'the leakage probe needs test clips of the train speakers', naming neither the data nor a fix."""
    src = wav_corpus(tmp_path / "corpus", speakers=4, clips=1)
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        "data.corpus=synthetic", f"data.src={src}", f"data.shards={tmp_path / 'shards'}", "data.modality=audio",
        f"train.storage={tmp_path / 'runs'}", "train.strategy=single", "train.zero_stage=0", "train.workers=1",
        "train.epochs=1", "train.name=run", "model.modality=audio"])
    with pytest.raises(UsageError, match=r"shards: no test clip for the leakage probe to judge under "
                                         r"data.split.scheme=within_speaker: a speaker has one only with 2 clips or "
                                         r"more .*use a corpus with more clips per speaker"):
        launch.train(cfg)
    assert not (tmp_path / "runs" / "run").exists()


def test_train_refuses_an_av_model_before_it_decodes_a_corpus_into_audio_shards(tmp_path):
    """`avdis train data.modality=audio` without model.modality=audio decoded the whole corpus into shards, and only
    then was refused for a model the shards give no video: what data.modality makes is known before decoding."""
    src = wav_corpus(tmp_path / "corpus")
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        "data.corpus=synthetic", f"data.src={src}", f"data.shards={tmp_path / 'shards'}", "data.modality=audio",
        f"train.storage={tmp_path / 'runs'}", "train.strategy=single", "train.zero_stage=0", "train.epochs=1"])
    with pytest.raises(UsageError, match=r"model.modality=av needs \['visual'\] but the shards at .*shards hold only "
                                         r"\['audio'\]; set model.modality=audio"):
        launch.train(cfg)
    assert not (tmp_path / "shards").exists()


def test_cremad_audiowav_alone_and_ravdess_audio_files_are_clips_of_their_audio(tmp_path):
    cremad = tmp_path / "cremad"
    files = cremad_tree(cremad)
    records, rejects = corpora.scan("cremad", cremad, audio_only=True)
    by_id = {r.clip_id: r for r in records}
    # every well-named AudioWAV file is a clip, with or without its video; no clip reads a video
    assert set(by_id) == {"cremad-1001_DFA_ANG_XX", "cremad-1001_IEO_HAP_XX", "cremad-1002_DFA_NEU_XX",
                          "cremad-1002_TIE_SAD_XX", "cremad-1003_ITS_DIS_LO", "cremad-1002_IWW_FEA_MD"}
    assert all(r.video_path is None and r.source_path == r.audio_path and r.audio_path.endswith(".wav")
               for r in records)
    reasons = {Path(r.source_path).name: r.reason for r in rejects}
    assert reasons[files["1001_DFA_ANG_XX"].name] == "clip taken from AudioWAV/1001_DFA_ANG_XX.wav (data.modality=audio)"
    assert reasons["1003_DFA_FEA_HI.flv"] == "no AudioWAV/1003_DFA_FEA_HI.wav, and data.modality=audio uses only audio"
    assert "1003_ITS_XYZ_LO.wav" in reasons  # a bad name stays a reject

    ravdess = tmp_path / "ravdess"
    rfiles = ravdess_tree(ravdess)
    records, rejects = corpora.scan("ravdess", ravdess, audio_only=True)
    by_id = {r.clip_id: r for r in records}
    # the audio-only (03) file where there is one, else the full-AV file's track
    assert by_id["ravdess-01-01-01-01-01-01"].audio_path.endswith("03-01-01-01-01-01-01.wav")
    assert by_id["ravdess-01-05-01-01-01-02"].audio_path == str(rfiles["av2"])
    assert by_id["ravdess-01-04-02-02-01-02"].audio_path == str(rfiles["pair_audio"])
    assert all(r.video_path is None for r in records)
    reasons = {Path(r.source_path).name: r.reason for r in rejects}
    assert reasons["02-01-06-01-01-02-02.mp4"] == ("video-only (02) file, and data.modality=audio uses only audio: no "
                                                   "01 or 03 file of this clip")
    # the 01 file's track is the fallback of a 03 file: decoding says which was used, not the scan
    assert "01-01-01-01-01-01-01.mp4" not in reasons
    assert by_id["ravdess-01-01-01-01-01-01"].fallback == ((None, str(rfiles["av0"])),)
    assert reasons["02-01-01-01-01-01-01.mp4"] == ("clip taken from 03-01-01-01-01-01-01.wav or "
                                                   "01-01-01-01-01-01-01.mp4 (data.modality=audio)")

    data = DataConfig(corpus="cremad", src=str(cremad), shards=str(tmp_path / "out"), modality="audio",
                      split=SplitConfig(folds=3))
    summary = shards.build_shards(data, S3Config())
    assert summary["clips"] == 6  # the corrupt .wav's clip is its .flv's track, as it is with video
    again = shards.build_shards(data.model_copy(update={"modality": "av"}), S3Config())
    assert again["rebuilt_because"].startswith("changed since the shards were made: data.modality 'audio' -> 'av'")
    assert shards.read_manifest(data.shards)[1]["modalities"] == ["audio", "visual"]


def test_a_ravdess_03_file_that_does_not_decode_falls_back_to_its_01_files_track(tmp_path):
    """With data.modality=audio a RAVDESS clip read its 03 file, its 01 file marked unused ('clip taken from the 03
    file') at the scan: a 03 file cut short lost the clip though the 01 file's track decodes, and the 01 file's
    reject said the clip was taken from a file that had failed."""
    src = tmp_path / "ravdess"
    files = ravdess_tree(src)
    broken = files["cut_av_audio"]  # 03 beside a full-AV 01 (cut short there) and a 02; here the 03 is cut instead
    frames, audio = clip_media(5)
    write_clip(files["cut_av"], frames, 12, audio, SR)
    broken.write_bytes(broken.read_bytes()[:300])
    data = DataConfig(corpus="ravdess", src=str(src), shards=str(tmp_path / "out"), modality="audio",
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    shards.build_shards(data, S3Config())
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    row = next(r for r in manifest if r["clip_id"] == "ravdess-01-06-02-01-01-01")
    assert row["audio_path"] == str(files["cut_av"]) and row["video_path"] is None
    rejects = {r["source_path"]: r for r in pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()}
    assert rejects[str(broken)]["reason"].endswith(f"; the clip was taken from {files['cut_av'].name} instead")
    assert not rejects[str(broken)]["unused"]
    # a 03 file that decodes is the clip; its 01 file is unused, and says so at decoding
    row = next(r for r in manifest if r["clip_id"] == "ravdess-01-01-01-01-01-01")
    assert row["audio_path"].endswith("03-01-01-01-01-01-01.wav")
    assert rejects[str(files["av0"])] == {"source_path": str(files["av0"]), "unused": True,
                                           "reason": "clip taken from 03-01-01-01-01-01-01.wav (data.modality=audio)"}


def test_a_model_needing_video_on_audio_shards_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """Forgetting model.modality=audio failed in each Ray worker: `avdis train` under Ray after Ray and its workers
    started, a sweep in every trial, which spent its name (failed trials are not retried on resume)."""
    import ray
    from conftest import shutdown_ray

    from avdis.tune import preflight, sweep

    monkeypatch.setenv("RAY_TMPDIR", f"/tmp/avr-mod-{tmp_path.name[-8:]}")  # should the check not hold: a short path
    src = wav_corpus(tmp_path / "corpus")
    common = ["data.corpus=synthetic", f"data.src={src}", f"data.shards={tmp_path / 'shards'}", "data.modality=audio",
              f"train.storage={tmp_path / 'runs'}", f"sweep.storage={tmp_path / 'sweeps'}", "sweep.num_samples=2",
              "train.epochs=1", "data.split.folds=3"]
    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", common)
    shards.build_shards(cfg.data, cfg.s3)
    try:
        with pytest.raises(UsageError, match=r"model.modality=av needs \['visual'\] but the shards at .*shards hold "
                                             r"only \['audio'\]; set model.modality=audio"):
            launch.train(cfg)  # smoke.yaml: DeepSpeed on a Ray worker
        with pytest.raises(UsageError, match=r"model.modality=av needs \['visual'\] .* set model.modality=audio"):
            sweep.run(cfg)
        sampled = C.load(ROOT / "jobs" / "configs" / "smoke.yaml",
                         [*common, "model.modality=audio", "sweep.space.params={model.modality: [audio, av]}"])
        with pytest.raises(UsageError, match=r"model.modality=av \(sampled by sweep.space.params\) needs"):
            sweep.run(sampled)
        assert not ray.is_initialized() and not (tmp_path / "runs").exists()
        assert [p.name for p in (tmp_path / "sweeps").rglob("*") if p.is_file()] == [".avdis-lock"]  # no trials
    finally:
        shutdown_ray()
    audio = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [*common, "model.modality=audio"])
    preflight.check_modalities(audio, preflight.check_space(audio))  # the audio model is let through


def test_av_shards_made_before_audio_only_clips_keep_their_fingerprint(tmp_path):
    """A manifest's fingerprint covers each clip's source files, audio file first (as shards were made before clips
    could lack a video file). Listed video first, every CREMA-D clip and RAVDESS 02 + 03 pair made before read as a
    changed corpus: `avdis preprocess` rebuilt such shards, saying the corpus had changed."""
    for corpus, tree in (("cremad", cremad_tree), ("ravdess", ravdess_tree)):
        tree(tmp_path / corpus)
        records, rejects = corpora.scan(corpus, tmp_path / corpus)
        assert any(r.audio_path != r.video_path for r in records)  # clips of two files, where the order shows
        lines = made_with.source_lines(records, rejects).decode().splitlines()[: len(records)]
        made_before = [f"{r.clip_id}|{r.speaker}|{r.emotion}|" + "|".join(  # one fallback pair, as made before
            made_with.file_stamp(p) for p in dict.fromkeys((r.audio_path, r.video_path, *(r.fallback[0] if r.fallback else ()))))
            for r in records]
        assert lines == made_before
    # so do the scan's rejects: CREMA-D's AudioMP3 copies, now marked unused, keep the reason they were made with
    mp3 = tmp_path / "cremad" / "AudioMP3" / "1001_DFA_ANG_XX.mp3"
    mp3.parent.mkdir()
    mp3.write_bytes(b"ID3")
    records, rejects = corpora.scan("cremad", tmp_path / "cremad")
    assert f"reject|{mp3}|expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav\n" in \
        made_with.source_lines(records, rejects).decode()
    # a file a clip is tried from only where its .wav does not decode, which the scan marks unused (the .mp3, a video
    # under data.modality=audio), is not stamped, as before it was tried: training on shards made before was told
    # that the corpus had changed
    for audio_only in (False, True):
        records, rejects = corpora.scan("cremad", tmp_path / "cremad", audio_only=audio_only)
        lines = made_with.source_lines(records, rejects).decode()
        assert f"{mp3}:" not in lines and (".flv:" not in lines) == audio_only


def test_a_cremad_tree_held_twice_stamps_no_mp3_nor_under_data_modality_audio_a_video(tmp_path):
    """The same holds where the tree holds the corpus twice (as Kaggle's RAVDESS holds its actors): the clip's pairs
    with a copy in place of one file named its .mp3 (and its copied video under data.modality=audio), which were
    stamped, so training on shards made before was told that the corpus had changed."""
    root = tmp_path / "twice"
    cremad_tree(root / "a")
    for wav in sorted((root / "a" / "AudioWAV").glob("*.wav"))[:3]:
        write_clip(root / "a" / "AudioMP3" / f"{wav.stem}.mp3", None, 12, clip_media(0)[1], SR)
    shutil.copytree(root / "a", root / "b")
    (root / "b" / "VideoFlash" / "1001_DFA_ANG_XX.flv").write_bytes(b"FLV")  # a copy of another size too
    for audio_only in (False, True):
        records, rejects = corpora.scan("cremad", root, audio_only=audio_only)
        assert any(r.copies for r in records)
        clips = [line for line in made_with.source_lines(records, rejects).decode().splitlines()
                 if not line.startswith("reject|")]
        assert not any(".mp3:" in line for line in clips) and any(".flv:" in line for line in clips) != audio_only


def test_an_audio_copy_of_cremad_or_ravdess_preprocessed_for_av_is_told_of_data_modality_audio(tmp_path):
    """CREMA-D's AudioWAV alone (a common download) or RAVDESS's audio download, preprocessed without
    data.modality=audio: every file was a reject for want of a video partner, and the error named no way out."""
    _, audio = clip_media(0)
    write_clip(tmp_path / "cremad" / "AudioWAV" / "1001_DFA_ANG_XX.wav", None, 12, audio, SR)
    write_clip(tmp_path / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.wav", None, 12, audio, SR)
    for corpus in ("cremad", "ravdess"):
        data = DataConfig(corpus=corpus, src=str(tmp_path / corpus), shards=str(tmp_path / f"{corpus}-out"))
        with pytest.raises(shards.PreprocessError, match=r"no usable .*: no (VideoFlash|full-AV file).*; its audio "
                                                         r"files make clips of audio alone: preprocess them with "
                                                         r"data.modality=audio"):
            shards.build_shards(data, S3Config())
    # a folder with nothing of the corpus in it is not told so
    write_clip(tmp_path / "other" / "Actor_01" / "notes.wav", None, 12, audio, SR)
    data = DataConfig(corpus="ravdess", src=str(tmp_path / "other"), shards=str(tmp_path / "other-out"))
    with pytest.raises(shards.PreprocessError) as caught:
        shards.build_shards(data, S3Config())
    assert "data.modality" not in str(caught.value)


def test_training_audio_before_preprocessing_names_the_preprocess_command_with_data_modality_audio(tmp_path):
    """The command it named made AV shards (or, for a corpus of audio alone, none), which the same config then
    refused as made with data.modality=av."""
    from avdis.data import prepare

    cfg = C.load(ROOT / "jobs" / "configs" / "smoke.yaml", [
        "data.corpus=cremad", f"data.src={tmp_path}", f"data.shards={tmp_path / 'shards'}", "data.modality=audio"])
    with pytest.raises(shards.PreprocessError, match=r"run `avdis preprocess --corpus cremad --src <folder> --out "
                                                     r".*shards data.modality=audio` first"):
        prepare.ensure_shards(cfg)


def test_an_av_model_on_shards_of_an_av_corpus_made_as_audio_is_told_how_to_get_video():
    """An AV corpus preprocessed with data.modality=audio, then trained with model.modality=av: the refusal named
    only model.modality=audio, a model without the video the user has and wants."""
    from avdis.train import loop

    with pytest.raises(UsageError, match=r"set model.modality=audio, or, for a model that sees video, make shards "
                                         r"of the corpus with it \(`avdis preprocess \.\.\. data.modality=av --out"):
        loop.check_modalities("av", ["audio"], "s3://bucket/shards")
    loop.check_modalities("audio", ["audio"], "s3://bucket/shards")


def test_a_folder_of_wav_files_without_ground_truth_is_told_to_add_one(tmp_path):
    """It was told to generate the synthetic corpus there (`avdis synth --out` it), which the generator refuses
    among files it did not write: the fix, a ground_truth.csv listing the files, was not named."""
    src = wav_corpus(tmp_path / "corpus", speakers=1, clips=2)
    (src / "ground_truth.csv").unlink()
    with pytest.raises(corpora.CorpusError, match=r"ground_truth.csv: missing; to use the 2 media files here \(first: "
                                                  r".*spk0/0.wav\) as a corpus, add a ground_truth.csv listing them, "
                                                  r"one row per clip, with columns file, clip_id, speaker, emotion"):
        corpora.scan("synthetic", src, audio_only=True)


def test_a_ground_truth_written_on_windows_finds_its_files_in_nested_folders(tmp_path):
    """`spk0\\0.wav`, as a list made on Windows names a file in a folder: every row was "listed but missing" and
    every file "not listed", so the corpus made no clip."""
    src = wav_corpus(tmp_path / "corpus", speakers=2, clips=2)
    truth = src / "ground_truth.csv"
    truth.write_text(truth.read_text().replace("/", "\\"))
    records, rejects = corpora.scan("synthetic", src, audio_only=True)
    assert [(r.clip_id, r.audio_path) for r in records] == [
        (f"s{s}c{c}", str(src / f"spk{s}" / f"{c}.wav")) for s in range(2) for c in range(2)]
    assert rejects == []
