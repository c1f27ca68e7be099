"""Corpus adapters and preprocessing on RAVDESS-/CREMA-D-shaped trees: labels, pairing, rejects."""

import ast
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avdis import storage, storage_lock
from avdis.config import DataConfig, S3Config, SplitConfig
from avdis.data import corpora, shards, stream, walks
from avdis.data.corpora import ground_truth, sniff
from avdis.data.media import MediaError, decode_audio, write_clip
from avdis.data.shards import encode, made_with, notes
from corpus_trees import SR, clip_media, cremad_tree, ravdess_tree


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
    # the same clip's 02 + 03 files behind a full-AV file: kept as its fallback, decided on when decoding
    assert by_id["ravdess-01-01-01-01-01-01"].fallback[0] == (str(root / "Actor_01" / "02-01-01-01-01-01-01.mp4"),
                                                             str(root / "Actor_01" / "03-01-01-01-01-01-01.wav"))
    assert "02-01-01-01-01-01-01.mp4" not in reasons and pair.fallback == ()
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


def test_cremads_mp3_copies_are_unused_files_not_rejects(tmp_path):
    """CREMA-D ships AudioMP3/ beside AudioWAV/: each of its 7,442 files was a reject, as if broken."""
    frames, audio = clip_media(0)
    write_clip(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv", frames, 12, audio, SR)
    write_clip(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav", None, 12, audio, SR)
    touch(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3")  # the scan reads names only
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"]
    assert [(Path(r.source_path).name, r.unused) for r in rejects] == [("1001_DFA_ANG_XX.mp3", True)]


def test_a_cremad_tree_of_audiomp3_alone_is_told_of_data_modality_audio_not_to_put_audiowav_under_data_src(tmp_path):
    """AudioMP3/ alone (data.modality=av): its .mp3 files make clips of audio alone, as AudioWAV/ files would, and
    none of either makes an AV clip without a video, but the error told the user to put AudioWAV/ under data.src."""
    for stem in ("1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX"):
        touch(tmp_path / "CREMA-D" / "AudioMP3" / f"{stem}.mp3")
    data = DataConfig(corpus="cremad", src=str(tmp_path / "CREMA-D"), shards=str(tmp_path / "out"))
    with pytest.raises(shards.PreprocessError) as exc:
        shards.build_shards(data, S3Config())
    assert "AudioMP3/1001_DFA_ANG_XX.mp3: expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav" in str(exc.value)
    assert "AudioWAV/ folder under data.src" not in str(exc.value)
    assert "its audio files make clips of audio alone: preprocess them with data.modality=audio" in str(exc.value)


def test_a_cremad_tree_with_audiowav_is_not_told_to_put_audiowav_under_data_src(tmp_path):
    """AudioWAV/ and AudioMP3/ without videos (data.modality=av): no clip could be made, and the message told the
    user to put the AudioWAV/ folder, which data.src holds, under data.src, as if only the MP3s were there."""
    for stem in ("1001_DFA_ANG_XX", "1001_IEO_HAP_XX"):
        touch(tmp_path / "CREMA-D" / "AudioWAV" / f"{stem}.wav")
        touch(tmp_path / "CREMA-D" / "AudioMP3" / f"{stem}.mp3")
    data = DataConfig(corpus="cremad", src=str(tmp_path / "CREMA-D"), shards=str(tmp_path / "out"))
    with pytest.raises(shards.PreprocessError) as exc:
        shards.build_shards(data, S3Config())
    assert "no VideoFlash/1001_DFA_ANG_XX.flv" in str(exc.value) and "AudioMP3" in str(exc.value)
    assert "put its AudioWAV/ folder under data.src" not in str(exc.value)
    assert "data.modality=audio" in str(exc.value)  # what makes clips of these files

def test_a_source_with_no_usable_clip_counts_its_faults_apart_from_unused_files(tmp_path):
    """'no usable clips; N files rejected' counted CREMA-D's AudioMP3 copies, unused and no fault, among the rejected
    files: a tree with 3 faults read as 6."""
    for stem in ("1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX"):
        touch(tmp_path / "CREMA-D" / "AudioWAV" / f"{stem}.wav")
        touch(tmp_path / "CREMA-D" / "AudioMP3" / f"{stem}.mp3")
    data = DataConfig(corpus="cremad", src=str(tmp_path / "CREMA-D"), shards=str(tmp_path / "out"))
    with pytest.raises(shards.PreprocessError, match=r"no usable cremad clips; 3 files rejected \(3 more unused, no "
                                                     r"fault\), first: "):
        shards.build_shards(data, S3Config())


def test_cremad_pairs_the_x_level_file_some_copies_ship(tmp_path):
    """AudioWAV/1040_ITH_SAD_X.wav (one X) beside VideoFlash/1040_ITH_SAD_XX.flv, as in some copies of the corpus:
    both were rejected, the wav for its name and the flv for want of a partner."""
    video = touch(tmp_path / "VideoFlash" / "1040_ITH_SAD_XX.flv")
    audio = touch(tmp_path / "AudioWAV" / "1040_ITH_SAD_X.wav")
    touch(tmp_path / "AudioWAV" / "1040_ITH_SAD_ZZ.wav")
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion, r.audio_path, r.video_path) for r in records] == [
        ("cremad-1040_ITH_SAD_XX", "1040", "sad", str(audio), str(video))]
    assert [(Path(r.source_path).name, r.reason) for r in rejects] == [
        ("1040_ITH_SAD_ZZ.wav", "file name is not <actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<LO|MD|HI|XX> "
                                "(e.g. 1001_DFA_ANG_XX)")]
    # with data.modality=audio the video's reject names the file its clip was taken from (it named _XX.wav)
    records, rejects = corpora.scan("cremad", tmp_path, audio_only=True)
    assert [r.audio_path for r in records] == [str(audio)]
    assert {Path(r.source_path).name: r.reason for r in rejects}[video.name] == (
        "clip taken from AudioWAV/1040_ITH_SAD_X.wav (data.modality=audio)")


def test_a_corpus_none_of_whose_clips_decodes_counts_its_broken_files_apart_from_unused_copies(tmp_path):
    """'every clip was rejected (N files)' counted CREMA-D's AudioMP3 copies, unused and no fault, among the broken
    files: a whole corpus of them doubled the count the user goes to look for. An AudioMP3/ file tried in place of its
    broken .wav, and broken too, is one of them; a file that is no media stays unused."""
    for stem in ("1001_DFA_ANG_XX", "1002_IEO_HAP_XX"):
        for folder, suffix in (("VideoFlash", ".flv"), ("AudioWAV", ".wav"), ("AudioMP3", ".mp3")):
            touch(tmp_path / "CREMA-D" / folder / f"{stem}{suffix}")  # empty: none decodes
    (tmp_path / "CREMA-D" / "AudioMP3" / "Thumbs.db").write_bytes(b"\0")
    data = DataConfig(corpus="cremad", src=str(tmp_path / "CREMA-D"), shards=str(tmp_path / "out"),
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    with pytest.raises(shards.PreprocessError, match=r"every clip was rejected \(6 files; 1 more unused, no fault\)"):
        shards.build_shards(data, S3Config())


@pytest.mark.parametrize("modality", ["av", "audio"])
def test_one_rejected_file_is_counted_as_one_file(tmp_path, modality):
    """A source of one broken or lone file was told '1 files rejected' (no clip in the scan: a .wav with no video
    under data.modality=av) or 'every clip was rejected (1 files)' (a clip that did not decode: an empty .wav)."""
    touch(tmp_path / "CREMA-D" / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    data = DataConfig(corpus="cremad", src=str(tmp_path / "CREMA-D"), shards=str(tmp_path / "out"), modality=modality)
    said = r"no usable cremad clips; 1 file rejected, first: " if modality == "av" else \
        r"every clip was rejected \(1 file\), first: "
    with pytest.raises(shards.PreprocessError, match=said):
        shards.build_shards(data, S3Config())


def test_cremad_converted_to_mp4_is_read_as_the_clips_video_or_its_fallback(tmp_path):
    """VideoMP4/<stem>.mp4, the .flv converted as many users keep it: every file was a reject ("expected
    VideoFlash/*.flv or AudioWAV/*.wav"), so a copy holding only the .mp4 files made no clip at all."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    stems = ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX", "1002_TIE_SAD_XX"]
    for i, stem in enumerate(stems):
        frames, audio = clip_media(i)
        write_clip(root / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
        write_clip(root / "VideoMP4" / f"{stem}.mp4", frames, 12, None, SR)
    flv, cut = root / "VideoFlash" / f"{stems[0]}.flv", root / "VideoFlash" / f"{stems[1]}.flv"
    write_clip(flv, clip_media(0)[0], 12, None, SR)  # an .flv beside its .mp4: the corpus's own file is used
    write_clip(cut, clip_media(1)[0], 12, None, SR)
    cut.write_bytes(cut.read_bytes()[:60])  # cut short: the clip is taken from its .mp4
    lone = touch(root / "VideoMP4" / "1003_ITS_DIS_LO.mp4")
    data = DataConfig(corpus="cremad", src=str(root), shards=str(out), shard_size=2,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    summary = shards.build_shards(data, S3Config())
    manifest = pq.read_table(out / "manifest.parquet").to_pandas().set_index("clip_id")
    assert summary["clips"] == 4 and sorted(manifest.index) == [f"cremad-{s}" for s in stems]
    assert manifest.loc[f"cremad-{stems[0]}"].video_path == str(flv)
    for stem in stems[1:]:
        assert manifest.loc[f"cremad-{stem}"].video_path == str(root / "VideoMP4" / f"{stem}.mp4")
    assert set(manifest.audio_path) == {str(root / "AudioWAV" / f"{s}.wav") for s in stems}
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert [r["source_path"] for r in rejects] == sorted([str(cut), str(lone), str(root / "VideoMP4" / f"{stems[0]}.mp4")])
    reasons = {Path(r["source_path"]).name: r["reason"] for r in rejects}
    assert reasons[f"{stems[0]}.mp4"] == f"clip taken from {stems[0]}.flv and {stems[0]}.wav"
    assert reasons[cut.name].endswith(f"; the clip was taken from {stems[1]}.mp4 and {stems[1]}.wav instead")
    assert reasons[lone.name] == "no AudioWAV/1003_ITS_DIS_LO.wav to pair with"


def cremad_with_broken_wavs(root: Path) -> dict[str, Path]:
    """Five CREMA-D clips of two actors: two whole, with an AudioMP3/ file beside the first; a .wav cut short whose
    .mp3 decodes; a .wav of zeros without an .mp3; a .wav of its header alone whose .mp3 is cut short and whose .flv
    holds no sound. Returns the notable files by name."""
    stems = ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX", "1002_TIE_SAD_XX", "1001_TIE_SAD_XX"]
    files = {}
    for i, stem in enumerate(stems):
        frames, audio = clip_media(i)
        for folder, suffix, picture, sound in (("VideoFlash", ".flv", frames, None if i == 3 else audio),
                                               ("AudioWAV", ".wav", None, audio), ("AudioMP3", ".mp3", None, audio)):
            if suffix != ".mp3" or i in (0, 1, 3):
                files[f"{stem}{suffix}"] = root / folder / f"{stem}{suffix}"
                write_clip(files[f"{stem}{suffix}"], picture, 12, sound, SR)
    cut, zeros, header = (files[f"{stems[k]}.wav"] for k in (1, 2, 3))
    cut.write_bytes(cut.read_bytes()[:3000])
    zeros.write_bytes(bytes(zeros.stat().st_size))
    header.write_bytes(header.read_bytes()[:44])
    files[f"{stems[3]}.mp3"].write_bytes(files[f"{stems[3]}.mp3"].read_bytes()[:400])
    return files


def built_cremad(root: Path, out: Path, modality: str) -> tuple[DataConfig, tuple[dict, dict, dict]]:
    """The CREMA-D tree at `root` made into shards at `out`: its config, and (summary, manifest rows by stem,
    rejects by file name)."""
    data = DataConfig(corpus="cremad", src=str(root), shards=str(out), shard_size=2, modality=modality,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    summary = shards.build_shards(data, S3Config())
    rows = {r["clip_id"].removeprefix("cremad-"): r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    rejects = {Path(r["source_path"]).name: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    return data, (summary, rows, rejects)


@pytest.mark.parametrize("modality", ["av", "audio"])
def test_a_cremad_wav_that_does_not_decode_is_replaced_by_its_mp3_else_by_its_videos_own_track(tmp_path, modality):
    """An AudioWAV/ file cut short, zeros or its header alone made its clip a reject, though CREMA-D holds the same
    recording in AudioMP3/ and the .flv records it with the picture. The clip is now made of the .mp3, else of the
    video's track; the .wav stays a fault saying so, and an .mp3 not needed stays unused, as it was."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    files = cremad_with_broken_wavs(root)
    _, (summary, rows, rejects) = built_cremad(root, out, modality)
    audio = modality == "audio"
    flv = {stem: None if audio else str(files[f"{stem}.flv"]) for stem in rows}
    assert sorted(rows) == ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1001_TIE_SAD_XX", "1002_DFA_NEU_XX"]
    made_of = {stem: (row["video_path"], row["audio_path"]) for stem, row in rows.items()}
    assert made_of["1001_IEO_HAP_XX"] == (flv["1001_IEO_HAP_XX"], str(files["1001_IEO_HAP_XX.mp3"]))
    assert made_of["1002_DFA_NEU_XX"] == (flv["1002_DFA_NEU_XX"], str(files["1002_DFA_NEU_XX.flv"]))
    assert made_of["1001_DFA_ANG_XX"] == (flv["1001_DFA_ANG_XX"], str(files["1001_DFA_ANG_XX.wav"]))
    # each broken .wav a fault naming what its clip was taken from
    taken = {"1001_IEO_HAP_XX": "1001_IEO_HAP_XX.mp3" if audio else "1001_IEO_HAP_XX.flv and 1001_IEO_HAP_XX.mp3",
             "1002_DFA_NEU_XX": "1002_DFA_NEU_XX.flv"}
    for stem, names in taken.items():
        why = rejects[f"{stem}.wav"]
        assert why["reason"].endswith(f"; the clip was taken from {names} instead") and not why["unused"]
    assert rejects["1001_DFA_ANG_XX.mp3"] == {"source_path": str(files["1001_DFA_ANG_XX.mp3"]), "unused": True,
                                              "reason": "expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav"}
    # no file the clip was made of is a reject; a video under data.modality=audio names the file its clip was from
    assert "1001_IEO_HAP_XX.mp3" not in rejects and "1002_DFA_NEU_XX.flv" not in rejects
    if audio:
        assert rejects["1001_IEO_HAP_XX.flv"]["reason"] == "clip taken from 1001_IEO_HAP_XX.mp3 (data.modality=audio)"
        assert rejects["1001_DFA_ANG_XX.flv"]["reason"] == ("clip taken from AudioWAV/1001_DFA_ANG_XX.wav "
                                                            "(data.modality=audio)")
    # none of the three decodes: each file tried is a fault of its own, none said to be unused
    lost = {name: rejects[f"1002_TIE_SAD_XX.{name}"] for name in ("wav", "mp3", "flv")}
    assert not any(r["unused"] for r in lost.values())
    for name in ("wav", "mp3"):
        with pytest.raises(MediaError) as fault:
            decode_audio(files[f"1002_TIE_SAD_XX.{name}"], SR)
        assert lost[name]["reason"] == fault.value.reason  # "cannot open media ...", "cut short ..."
    assert lost["flv"]["reason"].startswith("no audio stream, the clip's last source of sound: its "
                                            "AudioWAV/1002_TIE_SAD_XX.wav failed, its AudioMP3/1002_TIE_SAD_XX.mp3 "
                                            "failed; ")
    assert summary["clips"] == 4 and summary["rejects"] == 5 and summary["unused"] == 1 + 3 * audio


def test_a_cremad_clip_whose_wav_decodes_is_never_made_of_its_mp3_or_its_videos_track(tmp_path):
    """The .mp3 and the video's own track stand in for a .wav that does not decode, not for a video that fails: a
    .flv of a few frames whose own track is as short, beside a whole .wav, was made a clip of that track (the take
    cut short, its whole .wav then a fault), and a clip lost to its .flv made its .mp3 a fault too (it was unused)."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    stems = ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX", "1002_TIE_SAD_XX", "1001_TIE_SAD_XX",
             "1002_IEO_HAP_XX"]
    for i, stem in enumerate(stems):
        frames, audio = clip_media(i, seconds=2.0)
        short = i in (1, 2)  # 3 frames; the second's own track as short as its picture
        write_clip(root / "VideoFlash" / f"{stem}.flv", frames[:3] if short else frames, 12,
                   audio[:SR // 4] if i == 2 else audio, SR)
        write_clip(root / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
        write_clip(root / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
    damaged = root / "VideoFlash" / f"{stems[3]}.flv"
    damaged.write_bytes(damaged.read_bytes()[:13] + bytes(damaged.stat().st_size - 13))
    data = DataConfig(corpus="cremad", src=str(root), shards=str(out), shard_size=2,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    summary = shards.build_shards(data, S3Config())
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert {r["clip_id"]: Path(r["audio_path"]).name for r in rows} == {
        f"cremad-{s}": f"{s}.wav" for s in (stems[0], stems[4], stems[5])}
    rejects = {Path(r["source_path"]).name: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    for stem in stems[1:4]:  # the video's fault, as before: the whole .wav a clip not made, the .mp3 unused
        assert rejects[f"{stem}.wav"]["reason"].startswith(f"its clip could not be made ({stem}.flv: ")
        assert rejects[f"{stem}.mp3"] == {"source_path": str(root / "AudioMP3" / f"{stem}.mp3"), "unused": True,
                                          "reason": "expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav"}
    assert summary["clips"] == 3 and summary["rejects"] == 6 and summary["unused"] == 6


@pytest.mark.parametrize("modality", ["av", "audio"])
def test_a_cremad_wav_that_does_not_decode_is_replaced_by_its_whole_copy_before_its_mp3(tmp_path, modality):
    """A tree holding AudioWAV/ twice, whose first copy of a .wav is damaged in place: its clip was made of the
    whole copy (the same recording, as the corpus ships it), and since 1e6b460 of the lossy .mp3 instead."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    stems = ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX", "1002_TIE_SAD_XX", "1001_TIE_SAD_XX"]
    for i, stem in enumerate(stems):
        frames, audio = clip_media(i)
        write_clip(root / "a" / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(root / "a" / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
        write_clip(root / "a" / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
    shutil.copytree(root / "a" / "AudioWAV", root / "b" / "AudioWAV")
    damaged = root / "a" / "AudioWAV" / f"{stems[1]}.wav"
    damaged.write_bytes(bytes(damaged.stat().st_size))
    data = DataConfig(corpus="cremad", src=str(root), shards=str(out), shard_size=2, modality=modality,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    assert shards.build_shards(data, S3Config())["clips"] == 5
    rows = {r["clip_id"]: r["audio_path"] for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert rows[f"cremad-{stems[1]}"] == str(root / "b" / "AudioWAV" / f"{stems[1]}.wav")


def cremad_without_audiowav(root: Path) -> dict[str, Path]:
    """Five CREMA-D clips of three actors as a copy fetched without AudioWAV/ holds them: a .flv with its AudioMP3/
    file, a .flv alone, a VideoMP4/ file alone, a .flv whose .mp3 is cut short, an .mp3 alone. Returns them by name."""
    held = {"1001_DFA_ANG_XX": ("flv", "mp3"), "1001_IEO_HAP_XX": ("flv",), "1002_DFA_NEU_XX": ("mp4",),
            "1002_TIE_SAD_XX": ("flv", "mp3"), "1003_DFA_FEA_HI": ("mp3",)}
    folders = {"flv": "VideoFlash", "mp4": "VideoMP4", "mp3": "AudioMP3"}
    files = {}
    for i, (stem, kinds) in enumerate(held.items()):
        frames, audio = clip_media(i)
        for kind in kinds:
            files[f"{stem}.{kind}"] = root / folders[kind] / f"{stem}.{kind}"
            write_clip(files[f"{stem}.{kind}"], None if kind == "mp3" else frames, 12, audio, SR)
    cut = files["1002_TIE_SAD_XX.mp3"]
    cut.write_bytes(cut.read_bytes()[:400])
    return files


@pytest.mark.parametrize("modality", ["av", "audio"])
def test_a_cremad_tree_without_audiowav_makes_its_clips_of_the_mp3s_else_of_the_videos_own_tracks(tmp_path, modality):
    """CREMA-D's repository stores each folder apart and AudioWAV/ is large: a copy of VideoFlash/ alone, or with
    AudioMP3/, holds every clip's picture and sound (the .flv records the take's own track), yet each video was a
    reject ('no AudioWAV/<stem>.wav to pair with') and no clip was made. A clip's sound is now its .mp3, else its
    video's track, and the summary says that the corpus is made of those lossy copies."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    files = cremad_without_audiowav(root)
    data, (summary, rows, rejects) = built_cremad(root, out, modality)
    audio = modality == "audio"
    sound = {"1001_DFA_ANG_XX": "mp3", "1001_IEO_HAP_XX": "flv", "1002_DFA_NEU_XX": "mp4", "1002_TIE_SAD_XX": "flv",
             **({"1003_DFA_FEA_HI": "mp3"} if audio else {})}
    picture = {stem: None if audio else str(files[f"{stem}.{'mp4' if kind == 'mp4' else 'flv'}"])
               for stem, kind in sound.items()}
    assert {stem: (row["video_path"], row["audio_path"]) for stem, row in rows.items()} == {
        stem: (picture[stem], str(files[f"{stem}.{kind}"])) for stem, kind in sound.items()}
    # the .mp3 cut short is a fault naming the track its clip was taken from; no file a clip was made of is a reject
    assert rejects["1002_TIE_SAD_XX.mp3"]["reason"].endswith("; the clip was taken from 1002_TIE_SAD_XX.flv instead")
    assert not rejects.keys() & {Path(row["audio_path"]).name for row in rows.values()}
    if audio:  # a video whose clip is its .mp3 names it
        assert rejects["1001_DFA_ANG_XX.flv"] == {"source_path": str(files["1001_DFA_ANG_XX.flv"]), "unused": True,
                                                  "reason": "clip taken from AudioMP3/1001_DFA_ANG_XX.mp3 "
                                                            "(data.modality=audio)"}
    else:  # an .mp3 with no video to pair with keeps the scan's word
        assert rejects["1003_DFA_FEA_HI.mp3"]["reason"] == "expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav"
    assert summary["clips"] == 4 + audio and len(rejects) == 2
    note = summary["audio_from"]
    assert note.startswith(f"the sound of {4 + audio} clips came from lossy copies of the recording, not from "
                           f"AudioWAV/*.wav, which data.src does not hold: {1 + audio} from AudioMP3/*.mp3, 3 from "
                           "the videos' own tracks") and "source_rates" in note
    # made again, the shards are up to date and the summary says the same
    again = shards.build_shards(data, S3Config())
    assert again["up_to_date"] and again["audio_from"] == note


def test_one_clip_of_lossy_sound_and_one_second_copy_are_told_in_the_singular(tmp_path):
    """A CREMA-D copy of one .flv held twice was told '1 clip took their sound from lossy copies ... to make them of
    its recordings' and '1 files are second copies of clips' files'; a corpus of one's own with one file listed twice
    '1 files listed in ground_truth.csv hold the same bytes as files listed before them'."""
    root = tmp_path / "CREMA-D"
    frames, audio = clip_media(0)
    write_clip(root / "VideoFlash" / "1001_DFA_ANG_XX.flv", frames, 12, audio, SR)
    shutil.copytree(root / "VideoFlash", root / "again" / "VideoFlash")
    summary = shards.build_shards(DataConfig(corpus="cremad", src=str(root), shards=str(tmp_path / "out")),
                                  S3Config())
    assert summary["audio_from"] == ("the sound of 1 clip came from lossy copies of the recording, not from "
                                     "AudioWAV/*.wav, which data.src does not hold: 1 from the videos' own tracks; put "
                                     "CREMA-D's AudioWAV/ folder under data.src to make the clips of its recordings "
                                     "(the shards are then made again)")
    assert summary["copies"].startswith("1 file is a second copy of a clip's file (the same name and size; first: ")
    copy = corpora.Reject("b.wav", "duplicate of a.wav (the same bytes; ground_truth.csv row 3, its row 2)", True)
    assert notes.copies_note([copy], "synthetic")["copies"].startswith(
        "1 file listed in ground_truth.csv holds the same bytes as a file listed before it (first: b.wav, ")


@pytest.mark.parametrize("kind", ["flv", "mp3"])
def test_a_cremad_tree_without_audiowav_names_only_the_sources_its_clips_took_their_sound_from(tmp_path, kind):
    """A copy of VideoFlash/ alone was told its clips took their sound '0 from AudioMP3/*.mp3, 4 from their videos'
    own tracks', naming a folder it does not hold; a source that gave no clip is now left out."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    folder = {"flv": "VideoFlash", "mp3": "AudioMP3"}[kind]
    for i, stem in enumerate(("1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX", "1002_TIE_SAD_XX")):
        frames, audio = clip_media(i)
        write_clip(root / folder / f"{stem}.{kind}", frames if kind == "flv" else None, 12, audio, SR)
    _, (summary, _, _) = built_cremad(root, out, "av" if kind == "flv" else "audio")
    source = {"flv": "4 from the videos' own tracks", "mp3": "4 from AudioMP3/*.mp3"}[kind]
    assert summary["audio_from"] == (f"the sound of 4 clips came from lossy copies of the recording, not from "
                                     f"AudioWAV/*.wav, which data.src does not hold: {source}; put CREMA-D's AudioWAV/ "
                                     "folder under data.src to make the clips of its recordings (the shards are then "
                                     "made again)")


@pytest.mark.parametrize("modality", ["av", "audio"])
def test_a_cremad_video_without_sound_says_its_clip_found_none_in_audiowav_or_audiomp3_either(tmp_path, modality):
    """A CREMA-D video whose own track, its clip's last source of sound, holds none was told 'no audio stream' alone,
    as if that were its clip's only one: it now says what of AudioWAV/ and AudioMP3/ was tried before it."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    stems = ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX"]
    for i, stem in enumerate(stems):
        frames, audio = clip_media(i)
        write_clip(root / "VideoFlash" / f"{stem}.flv", frames, 12, audio if i == 0 else None, SR)
    cut = root / "AudioMP3" / f"{stems[2]}.mp3"
    write_clip(cut, None, 12, clip_media(2)[1], SR)
    cut.write_bytes(cut.read_bytes()[:400])
    _, (summary, rows, rejects) = built_cremad(root, out, modality)
    assert list(rows) == [stems[0]] and summary["rejects"] == 3
    for stem, mp3 in ((stems[1], "is not in data.src"), (stems[2], "failed")):
        assert rejects[f"{stem}.flv"]["reason"] == (
            f"no audio stream, the clip's last source of sound: its AudioWAV/{stem}.wav is not in data.src, its "
            f"AudioMP3/{stem}.mp3 {mp3}; copy AudioWAV/{stem}.wav (whole) under data.src to make its clip")


@pytest.mark.parametrize("audio_only", [False, True])
def test_a_ravdess_file_copied_under_another_clips_name_makes_no_clip_of_either(tmp_path, audio_only):
    """A RAVDESS copy holding one file under the names of two clips (copied under another emotion's and intensity's
    codes) made two clips of one recording under two labels, which within_speaker could put one in train and the
    other in test; CREMA-D's such files and a ground_truth.csv's were checked, RAVDESS's not. Its names are its
    labels, as CREMA-D's are, so which is right is unknown: neither is a clip, each file a reject naming the other
    and what its name says otherwise, and the other files of its clip say why they are unused. The corpus held
    twice (the same names again) is no such twin."""
    suffix, mm = (".wav", "03") if audio_only else (".mp4", "01")
    happy = tmp_path / "Actor_01" / f"{mm}-01-03-01-01-01-01{suffix}"
    angry, other = (happy.with_name(f"{mm}-01-{code}{suffix}") for code in ("05-02-01-01-01", "04-01-01-01-01"))
    frames, audio = clip_media(0)
    write_clip(happy, None if audio_only else frames, 12, audio, SR)
    shutil.copyfile(happy, angry)
    write_clip(other, None if audio_only else frames, 12, clip_media(1)[1], SR)
    beside = happy.with_name(f"{'01' if audio_only else '03'}-01-03-01-01-01-01{'.mp4' if audio_only else '.wav'}")
    write_clip(beside, frames if audio_only else None, 12, audio, SR)  # another file of happy's clip
    shutil.copytree(tmp_path / "Actor_01", tmp_path / "copy" / "Actor_01")  # the corpus held twice
    records, rejects = corpora.scan("ravdess", tmp_path, audio_only=audio_only)
    assert [r.clip_id for r in records] == ["ravdess-01-04-01-01-01-01"]
    reasons = {r.source_path: r.reason for r in rejects}
    said = ("the same bytes as {0}, whose name says another emotion ({1}, here {2}), intensity ({3}, here {4}): one "
            "recording under 2 names, which is right is unknown: no clip is made of it")
    assert reasons[str(happy)] == said.format(angry, "angry", "happy", "02", "01")
    assert reasons[str(angry)] == said.format(happy, "happy", "angry", "01", "02")
    assert reasons[str(beside)] == f"its clip is not made ({happy.name}: {reasons[str(happy)]})"
    assert not any(r.unused for r in rejects if "copy" not in Path(r.source_path).parts)


@pytest.mark.parametrize("audio_only", [False, True])
def test_a_ravdess_file_copied_under_another_clips_name_makes_no_clip_of_either_though_its_clip_is_made_of_another(
        tmp_path, audio_only):
    """Only the files clips are made of were compared, not the 01 beside the 03 a clip is made of under
    data.modality=audio, nor a clip's fallbacks: happy's 01 copied as angry's (a clip of that file alone) made two
    clips of one recording under data.modality=audio, and sad's 03 copied as fearful's (beside fearful's own 01) is
    fearful's sound should its 01 not decode. Every file a clip may be made of is now compared: neither clip is made.
    A 02 file gives no sound: under data.modality=audio two alike (neutral's copied as calm's) make their clips. The
    corpus held twice is no such copy."""
    actor = tmp_path / "Actor_01"
    path = {(mm, emo): actor / f"{mm}-01-{emo}-01-01-01-01.{'wav' if mm == '03' else 'mp4'}"
            for mm in ("01", "02", "03") for emo in ("01", "02", "03", "04", "05", "06")}
    for seed, (emo, mms) in enumerate([("03", "01 03"), ("04", "01 03"), ("06", "01"), ("01", "01 02"), ("02", "01")]):
        frames, audio = clip_media(seed)
        for mm in mms.split():
            write_clip(path[mm, emo], None if mm == "03" else frames, 12, None if mm == "02" else audio, SR)
    # happy's 01 as angry's, sad's 03 as fearful's, neutral's 02 as calm's
    for mm, first, copy in (("01", "03", "05"), ("03", "04", "06"), ("02", "01", "02")):
        shutil.copyfile(path[mm, first], path[mm, copy])
    shutil.copytree(actor, tmp_path / "copy" / "Actor_01")  # the corpus held twice
    records, rejects = corpora.scan("ravdess", tmp_path, audio_only=audio_only)
    # neutral's and calm's 02 files give no sound
    assert [r.clip_id for r in records] == (["ravdess-01-01-01-01-01-01", "ravdess-01-02-01-01-01-01"] if audio_only
                                            else [])
    reasons = {r.source_path: r.reason for r in rejects}
    said = ("the same bytes as {}, whose name says another emotion ({}, here {}): one recording under 2 names, which "
            "is right is unknown: no clip is made of it")
    assert reasons[str(path["01", "03"])] == said.format(path["01", "05"], "angry", "happy")
    assert reasons[str(path["01", "05"])] == said.format(path["01", "03"], "happy", "angry")
    assert reasons[str(path["03", "03"])] == f"its clip is not made ({path['01', '03'].name}: " \
                                             f"{reasons[str(path['01', '03'])]})"
    assert reasons[str(path["03", "06"])] == said.format(path["03", "04"], "sad", "fearful")
    assert reasons[str(path["01", "06"])].startswith(f"its clip is not made ({path['03', '06'].name}: ")
    if not audio_only:
        assert reasons[str(path["02", "02"])] == said.format(path["02", "01"], "neutral", "calm")
    assert all(r.reason.startswith("duplicate of ") for r in rejects if "copy" in Path(r.source_path).parts)


@pytest.mark.parametrize("channel, download", [("01", "Speech"), ("02", "Song")])
def test_a_ravdess_full_av_file_without_sound_says_where_to_get_it_and_its_clip_is_made_as_it_says(
        tmp_path, channel, download):
    """A RAVDESS full-AV (01) file holding no sound was told 'no audio stream' alone, of a corpus whose every 01 file
    holds sound (its 02 files are the video-only ones): it is a bad copy, and nothing said what to do. It now names
    the download to copy it again from and the clip's audio-only (03) file, which, put beside it, makes the clip."""
    from avdis.config import FeatureConfig

    name = f"{channel}-02-01-02-01-12"
    silent, wav = tmp_path / "Actor_12" / f"01-{name}.mp4", tmp_path / "Actor_12" / f"03-{name}.wav"
    frames, audio = clip_media(0)
    write_clip(silent, frames, 12, None, SR)
    (rec,), _ = corpora.scan("ravdess", tmp_path)
    encoded, rejects = encode.encode_any(rec, FeatureConfig())
    assert encoded is None and [r.source_path for r in rejects] == [str(silent)]
    assert rejects[0].reason == (
        "no audio stream, though RAVDESS's full-AV files (modality 01) hold their clip's sound (its 02 files are the "
        f"video-only ones): a bad copy (converted without its sound, or a 02 file renamed 01); copy 01-{name}.mp4 "
        f"again from the corpus's Video_{download}_Actor_12.zip, or put the clip's audio-only file 03-{name}.wav (in "
        f"Audio_{download}_Actors_01-24.zip) beside it: the clip then takes its sound from that")
    write_clip(wav, None, 12, audio, SR)
    (rec,), _ = corpora.scan("ravdess", tmp_path)
    encoded, rejects = encode.encode_any(rec, FeatureConfig())
    assert encoded is not None and (encoded[1]["video_path"], encoded[1]["audio_path"]) == (str(silent), str(wav))
    assert [(r.source_path, r.reason) for r in rejects] == [
        (str(silent), f"no audio stream; the clip was taken from its picture and the sound of {wav.name} instead")]


@pytest.mark.parametrize("audio_only", [False, True])
def test_a_ravdess_full_av_file_without_sound_beside_a_broken_03_file_says_that_one_failed_too(tmp_path, audio_only):
    """A full-AV (01) file holding no sound, its clip's audio-only (03) file beside it but broken: the clip is not made,
    and the 01's reject told to put the 03 file beside it, which was there, tried, and a reject of its own. It now
    says that file failed too, and where to copy each from."""
    from avdis.config import FeatureConfig

    name = "01-02-01-02-01-12"
    silent, wav = tmp_path / "Actor_12" / f"01-{name}.mp4", tmp_path / "Actor_12" / f"03-{name}.wav"
    write_clip(silent, clip_media(0)[0], 12, None, SR)
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (rec,), _ = corpora.scan("ravdess", tmp_path, audio_only=audio_only)
    encoded, rejects = encode.encode_any(rec, FeatureConfig())
    reasons = {r.source_path: r.reason for r in rejects}
    assert encoded is None and set(reasons) == {str(silent), str(wav)}
    assert reasons[str(silent)] == (
        "no audio stream, though RAVDESS's full-AV files (modality 01) hold their clip's sound (its 02 files are the "
        f"video-only ones): a bad copy (converted without its sound, or a 02 file renamed 01); copy 01-{name}.mp4 "
        f"again from the corpus's Video_Speech_Actor_12.zip, and the clip's audio-only file 03-{name}.wav, which it "
        "takes its sound from then, failed too (copy it from Audio_Speech_Actors_01-24.zip)")
    assert reasons[str(wav)].startswith("cannot open media")


def test_a_cremad_tree_without_audiowav_held_twice_takes_a_clip_from_the_whole_copy_of_its_mp3(tmp_path):
    """A copy without AudioWAV/ holding AudioMP3/ twice (data.modality=audio): each clip's sound is its .mp3, but the
    second copy of an .mp3 was an unused file ('expected VideoFlash/*.flv, ...'), never tried, so a clip whose first
    .mp3 was cut short was lost though its copy was whole, and the summary did not say the corpus was held twice, as it
    does for AudioWAV/ files held twice. A second .mp3 is now its clip's copy, as a second .wav is."""
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    stems = ("1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX", "1002_TIE_SAD_XX", "1003_DFA_FEA_HI")
    for i, stem in enumerate(stems):
        for copy in ("a", "b"):
            write_clip(root / copy / "AudioMP3" / f"{stem}.mp3", None, 12, clip_media(i)[1], SR)
    cut = root / "a" / "AudioMP3" / f"{stems[0]}.mp3"
    cut.write_bytes(cut.read_bytes()[:400])
    data = DataConfig(corpus="cremad", src=str(root), shards=str(out), shard_size=2, modality="audio",
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    summary = shards.build_shards(data, S3Config())
    rows = {r["clip_id"].removeprefix("cremad-"): r["audio_path"]
            for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert rows == {stem: str(root / ("b" if stem == stems[0] else "a") / "AudioMP3" / f"{stem}.mp3") for stem in stems}
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert rejects[str(cut)]["reason"].endswith(f"; the clip was taken from {rows[stems[0]]} instead")
    assert {path: (r["reason"], r["unused"]) for path, r in rejects.items() if path != str(cut)} == {
        str(root / "b" / "AudioMP3" / f"{stem}.mp3"): (f"duplicate of {root / 'a' / 'AudioMP3' / f'{stem}.mp3'} "
                                                       "(same clip, same modality)", True) for stem in stems[1:]}
    assert summary["copies"].startswith("4 files are second copies of clips' files")


@pytest.mark.parametrize("audio_only", [False, True])
def test_a_misnamed_mp3_in_a_cremad_tree_without_audiowav_is_told_its_name(tmp_path, audio_only):
    """In a copy without AudioWAV/ an .mp3 is a clip's sound, but one whose name names no clip (a browser's
    '1001_IEO_HAP_XX (1).mp3') was an unused file, no fault, so its clip was lost unsaid while a .flv so named is told
    its name. It is now told so too; in a tree holding AudioWAV/ such an .mp3 is the unused file it was."""
    name = "file name is not <actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<LO|MD|HI|XX> (e.g. 1001_DFA_ANG_XX)"
    mp3 = touch(tmp_path / "AudioMP3" / "1001_IEO_HAP_XX (1).mp3")
    touch(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3")
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    records, rejects = corpora.scan("cremad", tmp_path, audio_only=audio_only)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"]
    assert [(r.source_path, r.reason, r.unused) for r in rejects if not r.unused or r.source_path == str(mp3)] == [
        (str(mp3), name, False)]
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    rejects = corpora.scan("cremad", tmp_path, audio_only=audio_only)[1]
    assert (str(mp3), "expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav", True) in {
        (r.source_path, r.reason, r.unused) for r in rejects}


def test_a_cremad_tree_with_audiowav_pairs_as_before_beside_audiomp3_and_lone_files(tmp_path):
    """A tree holding AudioWAV/ is read as it was: its .wav files are the clips' sound, a video without one and an
    .mp3 alone are the rejects they were, in both modalities (a copy missing some .wav files is told which)."""
    root = tmp_path / "CREMA-D"
    for stem in ("1001_DFA_ANG_XX", "1001_IEO_HAP_XX"):
        for folder, suffix in (("VideoFlash", ".flv"), ("AudioWAV", ".wav"), ("AudioMP3", ".mp3")):
            touch(root / folder / f"{stem}{suffix}")
    lone_flv = touch(root / "VideoFlash" / "1002_DFA_NEU_XX.flv")
    touch(root / "AudioMP3" / "1002_DFA_NEU_XX.mp3")
    lone_mp3 = touch(root / "AudioMP3" / "1002_TIE_SAD_XX.mp3")
    for audio_only in (False, True):
        records, rejects = corpora.scan("cremad", root, audio_only=audio_only)
        assert [Path(r.audio_path).name for r in records] == ["1001_DFA_ANG_XX.wav", "1001_IEO_HAP_XX.wav"]
        reasons = {Path(r.source_path).name: (r.reason, r.unused) for r in rejects}
        assert reasons[lone_flv.name] == (("no AudioWAV/1002_DFA_NEU_XX.wav, and data.modality=audio uses only audio"
                                           if audio_only else "no AudioWAV/1002_DFA_NEU_XX.wav to pair with"), False)
        for mp3 in ("1001_DFA_ANG_XX.mp3", "1002_DFA_NEU_XX.mp3", lone_mp3.name):
            assert reasons[mp3] == ("expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav", True)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(corpora.CorpusError, match="does not exist"):
        corpora.scan("ravdess", tmp_path / "nope")
    (tmp_path / "corpus.zip").write_bytes(b"PK")
    with pytest.raises(corpora.CorpusError, match="corpus.zip: not a folder"):
        corpora.scan("ravdess", tmp_path / "corpus.zip")
    (tmp_path / "corpus.zip").unlink()
    with pytest.raises(corpora.CorpusError, match="empty folder"):
        corpora.scan("cremad", tmp_path)
    with pytest.raises(corpora.CorpusError, match="avdis synth"):
        corpora.scan("synthetic", tmp_path)


@pytest.mark.parametrize("on_disk, typed", [("NFD", "NFC"), ("NFC", "NFD")])
def test_a_source_folder_typed_in_another_unicode_form_than_its_name_on_disk_is_named_as_written_there(
        tmp_path, on_disk, typed):
    """A corpus folder a Mac named (`Korpus Zoë`, its ë decomposed: e and an accent), copied to Linux, and typed on a
    keyboard (ë, one character) is another name there: the build said "source folder does not exist" of a folder
    `ls` shows, with the same letters."""
    written = tmp_path / unicodedata.normalize(on_disk, "Korpus Zoë") / "RAVDESS"
    touch(written / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    src = tmp_path / unicodedata.normalize(typed, "Korpus Zoë") / "RAVDESS"
    with pytest.raises(corpora.CorpusError) as caught:
        corpora.scan("ravdess", src)
    assert str(caught.value).startswith(
        f"{src}: source folder does not exist as typed; {written} is there, named in another Unicode form (")
    assert str(written) != str(src)
    missing = src.with_name("RAVDES")  # a name of no folder, in either form: as before
    with pytest.raises(corpora.CorpusError, match=re.escape(f"{missing}: source folder does not exist; give")):
        corpora.scan("ravdess", missing)


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
        assert reasons[files["truncated"].name].startswith("cut short: the file ends at byte 900, inside its MP4 box")
        assert reasons[files["no_audio"].name].startswith("no audio stream, though RAVDESS's full-AV files")
        # a full-AV file that does not decode: its clip from its 02 + 03 files, the 01 a reject saying so; where the
        # 01 decodes, its 02 + 03 are the rejects
        assert reasons[files["cut_av"].name].endswith(
            f"; the clip was taken from {files['cut_av_video'].name} and {files['cut_av_audio'].name} instead")
        row = manifest.set_index("clip_id").loc["ravdess-01-06-02-01-01-01"]
        assert (row.video_path, row.audio_path) == (str(files["cut_av_video"]), str(files["cut_av_audio"]))
        for name in ("02-01-01-01-01-01-01.mp4", "03-01-01-01-01-01-01.wav"):
            assert reasons[name] == f"clip taken from full-AV file {files['av0'].name}"
        # those two are files their clip was made without, no fault: counted apart from the broken ones (a whole
        # RAVDESS download holds ~2,900 of them, which hid its few broken files in one count), as is a file of no media
        unused = set(rejects[rejects.unused].source_path.map(lambda p: Path(p).name))
        assert unused == {"02-01-01-01-01-01-01.mp4", "03-01-01-01-01-01-01.wav", "notes.txt"}
        assert (summary["rejects"], summary["unused"]) == (len(rejects) - 3, 3)
    else:
        # the .wav at fault, its clip made of its .flv's own track
        assert "1002_IWW_FEA_MD.flv" not in reasons
        assert reasons[files["corrupt_wav"].name].startswith("cannot open media")
        assert reasons[files["corrupt_wav"].name].endswith("; the clip was taken from 1002_IWW_FEA_MD.flv instead")
    # every clip is either in the manifest or rejected, never both, never lost
    used, rejected = set(manifest.source_path), set(rejects.source_path)
    assert used.isdisjoint(rejected)
    # and so is every file: a failed clip's separate audio file (CREMA-D's corrupt wav's) has its own row
    assert {str(p) for p in root.rglob("*") if p.is_file()} == (
        set(manifest.audio_path) | set(manifest.video_path) | rejected)
    lost = [r for r in records if r.clip_id not in set(manifest.clip_id)]
    assert all(r.source_path in rejected for r in lost) and len(manifest) + len(lost) == len(records)
    assert set(manifest.columns) >= {"clip_id", "corpus", "speaker", "emotion", "source_path", "shard", "split",
                                     "fold", "audio_shape", "video_shape", "face_detected"}
    assert manifest.clip_id.is_unique


def test_a_rerun_on_shards_made_before_files_were_marked_unused_counts_them_apart(ravdess, tmp_path):
    """Such a manifest counted a download's unused 02 + 03 files among its rejects, and its shards stay up to date:
    a rerun's summary gave them as rejects again (~2,900 of a RAVDESS download), the count `unused` was made to end."""
    import json

    root, _ = ravdess
    data = DataConfig(corpus="ravdess", src=str(root), shards=str(tmp_path / "out"), shard_size=2,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    made = shards.build_shards(data, S3Config())
    assert made["unused"] == 3  # the 02 + 03 files beside a full-AV file, and notes.txt
    manifest, rejects = tmp_path / "out" / "manifest.parquet", tmp_path / "out" / "rejects.parquet"
    table = pq.read_table(manifest)  # as a build before 5e85358 wrote them: every file one count, no unused column
    meta = json.loads(table.schema.metadata[b"avdis"])
    meta["rejects"] = meta["rejects"] + meta.pop("unused")
    pq.write_table(table.replace_schema_metadata({"avdis": json.dumps(meta)}), manifest)
    pq.write_table(pq.read_table(rejects).select(["source_path", "reason"]), rejects)
    again = shards.build_shards(data, S3Config())
    assert again["up_to_date"] and (again["rejects"], again["unused"]) == (made["rejects"], made["unused"])


def ravdess_of_three_clips(tmp_path: Path) -> Path:
    """A RAVDESS tree of three full-AV clips that decode (so there is a build), for a test to add a clip beside."""
    src = tmp_path / "RAVDESS"
    for i, emo in enumerate(["01", "03", "04"]):
        frames, audio = clip_media(i)
        write_clip(src / "Actor_01" / f"01-01-{emo}-01-01-01-01.mp4", frames, 12, audio, SR)
    return src


def files_of_clip_7(src: Path) -> tuple[Path, Path, Path]:
    """Where the full-AV (01), video-only (02) and audio-only (03) files of one more clip go (none written)."""
    av, video, sound = (src / "Actor_01" / f"{m}-01-05-01-01-01-01.{ext}"
                        for m, ext in (("01", "mp4"), ("02", "mp4"), ("03", "wav")))
    return av, video, sound


def test_every_file_of_a_ravdess_clip_that_no_file_pair_makes_is_a_reject(tmp_path):
    """A full-AV (01) file and its fallback video-only (02) file both cut short: the 01 and the 02 were rejects, the
    audio-only (03) file in neither the manifest nor the rejects."""
    src = ravdess_of_three_clips(tmp_path)
    frames, audio = clip_media(7)
    av, video, sound = files_of_clip_7(src)
    write_clip(av, frames, 12, audio, SR)
    write_clip(video, frames, 12, None, SR)
    write_clip(sound, None, 12, audio, SR)
    for path in (av, video):
        path.write_bytes(path.read_bytes()[:700])
    out = tmp_path / "out"
    shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                   split=SplitConfig(folds=3)), S3Config())
    rejects = {r["source_path"]: r["reason"] for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert sorted(rejects) == [str(av), str(video), str(sound)]
    assert rejects[str(video)].startswith("cut short: the file ends at byte 700")
    # named by the last pair it was tried in: with the 01's picture
    assert rejects[str(sound)] == f"its clip could not be made ({av.name}: {rejects[str(av)]})"


@pytest.mark.parametrize("modality, spare", [("av", "03"), ("audio", "02")])
def test_a_ravdess_file_marked_unused_is_a_reject_when_its_clip_could_not_be_made(tmp_path, modality, spare):
    """A full-AV (01) file with one of its 02 or 03 files beside it (or, under data.modality=audio, a 02 file beside
    its 01): the other file was marked unused, no fault, "clip taken from" the 01, before the 01 was decoded. When the
    01 did not decode, the clip was lost while that file still said it had been taken, and counted as no fault."""
    src = ravdess_of_three_clips(tmp_path)
    frames, audio = clip_media(7)
    av, video, sound = files_of_clip_7(src)
    other = sound if spare == "03" else video
    write_clip(av, frames, 12, audio, SR)
    write_clip(other, None if spare == "03" else frames, 12, audio if spare == "03" else None, SR)
    av.write_bytes(av.read_bytes()[:700])  # a download cut short
    out = tmp_path / "out"
    summary = shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                             modality=modality, split=SplitConfig(folds=3)), S3Config())
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert sorted(rejects) == [str(av), str(other)] and summary["clips"] == 3
    assert rejects[str(other)]["reason"] == f"its clip could not be made ({av.name}: {rejects[str(av)]['reason']})"
    assert not rejects[str(other)]["unused"] and (summary["rejects"], summary["unused"]) == (2, 0)


@pytest.mark.parametrize("partner, broken", [("03", None), ("02", None), ("03", "02"), ("02", "03")])
def test_a_full_av_file_whose_sound_or_picture_alone_is_broken_is_rescued_by_its_partner(tmp_path, partner, broken):
    """A full-AV (01) file with no audio track (or no picture) beside its clip's audio-only 03 (or video-only 02) file:
    the 03 (02) was unused, the clip lost, though the 01's picture (sound) and the 03 (02) make it; and where the
    other of them was there but broken too, only the 02 + 03 pair was tried. Once made so, the 01's own fault was in no
    reject: its user was never told that a file of theirs is partly broken. Its reject then told to preprocess with
    data.modality=audio, for a clip made with the 02's picture."""
    src = ravdess_of_three_clips(tmp_path)
    frames, audio = clip_media(7)
    av, video, sound = files_of_clip_7(src)
    write_clip(av, frames if partner == "03" else None, 12, audio if partner == "02" else None, SR)
    write_clip(video, frames, 12, None, SR)
    write_clip(sound, None, 12, audio, SR)
    cut = {"02": video, "03": sound}.get(broken)
    if cut:
        cut.write_bytes(cut.read_bytes()[:700])
    else:  # the partner alone beside the 01
        {"02": sound, "03": video}[partner].unlink()
    out = tmp_path / "out"
    summary = shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                             split=SplitConfig(folds=3)), S3Config())
    row = {r["clip_id"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}["ravdess-01-05-01-01-01-01"]
    made_of = (str(av), str(sound)) if partner == "03" else (str(video), str(av))
    assert (row["video_path"], row["audio_path"]) == made_of
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert summary["clips"] == 4 and sorted(rejects) == sorted([str(av), *([str(cut)] if cut else [])])
    if cut:
        assert rejects[str(cut)]["reason"].endswith(f"; the clip was taken from {Path(made_of[0]).name} and "
                                                    f"{Path(made_of[1]).name} instead")
    missing, kept, other = ("audio", "picture", f"sound of {sound.name}") if partner == "03" else (
        "video", "sound", f"picture of {video.name}")
    # the 01's picture missing: no advice to preprocess with data.modality=audio, as the clip has the 02's picture
    assert rejects[str(av)]["reason"] == f"no {missing} stream; the clip was taken from its {kept} and the {other} instead"
    assert not rejects[str(av)]["unused"] and (summary["rejects"], summary["unused"]) == (len(rejects), 0)


def _every_video_unreadable(tmp_path: Path, stems: list[str], cut: str | None = None) -> str:
    """The error of building shards of a CREMA-D copy of `stems`, each a whole .wav beside an .flv no decoder reads
    (the .wav of `cut` cut short): 'every clip was rejected'."""
    root = tmp_path / "CREMA-D"
    (root / "VideoFlash").mkdir(parents=True)
    for i, stem in enumerate(stems):
        write_clip(root / "AudioWAV" / f"{stem}.wav", None, 12, clip_media(i)[1], SR)
        (root / "VideoFlash" / f"{stem}.flv").write_bytes(b"FLV\x01" + bytes(range(256)) * 4 + bytes([i]))
    if cut is not None:
        wav = root / "AudioWAV" / f"{cut}.wav"
        wav.write_bytes(wav.read_bytes()[:3000])
    data = DataConfig(corpus="cremad", src=str(root), shards=str(tmp_path / "out"))
    with pytest.raises(shards.PreprocessError, match="every clip was rejected") as exc:
        shards.build_shards(data, S3Config())
    return str(exc.value)


@pytest.mark.parametrize("wavs", ["whole", "one cut short"])
def test_a_cremad_copy_whose_every_video_fails_beside_whole_wavs_is_told_of_data_modality_audio(tmp_path, wavs):
    """AudioWAV/ whole and every .flv unreadable: 'every clip was rejected' named the videos' faults but not
    data.modality=audio, which makes a clip of each .wav; only a copy whose videos hold no video track was told of
    it. It is now told wherever every clip was lost to its video and each clip's audio file makes a clip alone, and
    not where one of those does not (that is checked, not assumed)."""
    stems = ["1001_DFA_ANG_XX", "1001_IEO_HAP_XX", "1002_DFA_NEU_XX"]
    error = _every_video_unreadable(tmp_path, stems, None if wavs == "whole" else stems[1])
    hint = ("; every clip was lost to its video (each clip's audio file alone decodes whole); its audio files make "
            "clips of audio alone: preprocess them with data.modality=audio (and train with model.modality=audio)")
    assert (hint in error) == (wavs == "whole")
    assert "data.modality=audio" not in error or wavs == "whole"


def test_a_large_cremad_copy_whose_every_video_fails_decodes_a_sample_of_its_wavs_for_the_advice(tmp_path):
    """Every clip lost to its video: the advice of data.modality=audio decoded each clip's .wav in the driver, one
    after another, after the build (~45 ms a clip: over 5 minutes for CREMA-D's 7,442 before its error). A sample
    spread over the corpus is decoded, and the error says how many of how many."""
    stems = [f"{1001 + i % 3}_{('DFA', 'IEO', 'IOM', 'ITH', 'ITS', 'IWL', 'IWW', 'MTI')[i // 3 % 8]}_"
             f"{('ANG', 'HAP', 'SAD')[i // 24]}_XX" for i in range(3 * shards.HEARD_AT_MOST)]
    assert (f"; every clip was lost to its video (the audio files of {shards.HEARD_AT_MOST} of its "
            f"{3 * shards.HEARD_AT_MOST} clips, spread over it, decode whole alone); its audio files make clips of "
            "audio alone: preprocess them with data.modality=audio") in _every_video_unreadable(tmp_path, stems)


@pytest.mark.parametrize("last", ["whole", "cut short"])
def test_the_sample_of_wavs_decoded_for_the_advice_is_as_many_as_it_may_be_and_takes_the_last_clip(tmp_path, last):
    """The sample took every ceil(n / HEARD_AT_MOST)-th clip from the first: 6 of 17 clips, and never the last
    speaker's last clip (CREMA-D's 7,442: none of the last 924, its last 12 speakers), so a .wav cut short there was
    told to decode whole. HEARD_AT_MOST clips are taken, evenly from the first to the last."""
    sentences = ("DFA", "IEO", "IOM", "ITH", "ITS", "IWL", "IWW", "MTI")
    stems = [f"{1001 + i // 8}_{sentences[i % 8]}_ANG_XX" for i in range(2 * shards.HEARD_AT_MOST + 1)]
    error = _every_video_unreadable(tmp_path, stems, None if last == "whole" else max(stems))
    told = (f"; every clip was lost to its video (the audio files of {shards.HEARD_AT_MOST} of its {len(stems)} "
            "clips, spread over it, decode whole alone)")
    assert (told in error) == (last == "whole"), error
    assert ("data.modality=audio" in error) == (last == "whole"), error


def test_a_full_av_file_with_no_picture_whose_clip_has_another_is_not_told_to_preprocess_audio_alone(tmp_path):
    """A full-AV (01) file with no video stream beside its clip's 02 + 03 files: the clip is made of those, and the
    01's reject said "for a corpus of audio alone, preprocess with data.modality=audio", for a clip with a picture."""
    src = ravdess_of_three_clips(tmp_path)
    frames, audio = clip_media(7)
    av, video, sound = files_of_clip_7(src)
    write_clip(av, None, 12, audio, SR)
    write_clip(video, frames, 12, None, SR)
    write_clip(sound, None, 12, audio, SR)
    out = tmp_path / "out"
    shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                   split=SplitConfig(folds=3)), S3Config())
    rejects = {r["source_path"]: r["reason"] for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert rejects == {str(av): f"no video stream; the clip was taken from {video.name} and {sound.name} instead"}


def test_a_file_an_os_writes_into_the_corpus_rebuilds_no_shard_and_is_no_fault(tmp_path):
    """Thumbs.db, desktop.ini (Windows writes them where a folder is viewed) were scan rejects, part of the shards'
    fingerprint: one appearing rebuilt every shard, saying the corpus had changed, and each was counted as a broken
    file. A file that may be media (another container, a download cut short, an archive) still rebuilds, a fault."""
    import json

    src = ravdess_of_three_clips(tmp_path)
    out = tmp_path / "out"
    data = DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8, split=SplitConfig(folds=3))
    shards.build_shards(data, S3Config())
    for name in ("Actor_01/Thumbs.db", "desktop.ini", "Actor_01/Icon\r", "README.md"):
        (src / name).write_bytes(b"\xd0\xcf\x11\xe0 not media")
    assert shards.build_shards(data, S3Config())["up_to_date"]
    forced = shards.build_shards(data, S3Config(), force=True)
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert all(r["unused"] for r in rejects) and len(rejects) == 4 and (forced["rejects"], forced["unused"]) == (0, 4)
    # a manifest made before such files were left out of the fingerprint is as up to date as it was
    table = pq.read_table(out / "manifest.parquet")
    meta = json.loads(table.schema.metadata[b"avdis"])
    lines = made_with.source_lines(*corpora.scan("ravdess", src), every_reject=True)
    meta.pop("scan")
    meta["fingerprint"] = made_with.fingerprint_of(lines, data)
    pq.write_table(table.replace_schema_metadata({"avdis": json.dumps(meta)}), out / "manifest.parquet")
    assert shards.build_shards(data, S3Config())["up_to_date"]
    maybe = [src / "Actor_01" / name for name in ("01-01-05-01-01-01-01.mov", "01-01-06-01-01-01-01.mp4.part",
                                                  "Video_Speech_Actor_02.zip")]
    for path in maybe:
        path.write_bytes(b"media, perhaps")
    again = shards.build_shards(data, S3Config())
    assert not again["up_to_date"] and (again["rejects"], again["unused"]) == (3, 4)
    assert {r["source_path"] for r in pq.read_table(out / "rejects.parquet").to_pylist() if not r["unused"]} == {
        str(p) for p in maybe}


def test_shards_found_up_to_date_say_what_the_scan_finds_now_of_files_that_are_no_media(tmp_path):
    """A README (or Thumbs.db) that appears rebuilds no shard, but the rerun that found the shards up to date kept the
    build's summary and rejects.parquet: "unused": 0 with no row for it, where --force said 1. Its going is said too;
    an unchanged corpus rewrites nothing."""
    src = ravdess_of_three_clips(tmp_path)
    out = tmp_path / "out"
    data = DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8, split=SplitConfig(folds=3))
    (src / "Actor_01" / "01-01-05-01-01-01-01.mp4").write_bytes(b"broken")  # a fault, kept as the build found it
    built = shards.build_shards(data, S3Config())
    assert (built["rejects"], built["unused"]) == (1, 0)
    readme = src / "Actor_01" / "README.txt"
    readme.write_text("hi\n")
    again = shards.build_shards(data, S3Config())
    rows = pq.read_table(out / "rejects.parquet").to_pylist()
    assert again["up_to_date"] and (again["rejects"], again["unused"]) == (1, 1)
    assert {r["source_path"]: r["unused"] for r in rows} == {str(src / "Actor_01" / "01-01-05-01-01-01-01.mp4"): False,
                                                            str(readme): True}
    forced = shards.build_shards(data, S3Config(), force=True)  # what a build says of the corpus as it is now
    assert pq.read_table(out / "rejects.parquet").to_pylist() == rows
    assert (forced["rejects"], forced["unused"]) == (1, 1)
    stamp = (out / "rejects.parquet").stat().st_mtime_ns
    assert shards.build_shards(data, S3Config())["up_to_date"] and (out / "rejects.parquet").stat().st_mtime_ns == stamp
    readme.unlink()
    gone = shards.build_shards(data, S3Config())
    assert gone["up_to_date"] and (gone["rejects"], gone["unused"]) == (1, 0)
    assert [r["source_path"] for r in pq.read_table(out / "rejects.parquet").to_pylist()] == [
        str(src / "Actor_01" / "01-01-05-01-01-01-01.mp4")]


def test_kaggles_ravdess_which_holds_every_actor_folder_twice_is_read_once_and_named(tmp_path):
    """Kaggle's "ravdess-emotional-speech-audio" holds Actor_XX/ at its top and again under
    audio_speech_actors_01-24/. Each clip was used once, but every copy was a fault: half the corpus's files counted
    as broken ones, which hid the few that were, and nothing said to point data.src at one copy."""
    src = tmp_path / "ravdess-emotional-speech-audio"
    names = [f"03-01-{emo}-01-01-01-01.wav" for emo in ("01", "03", "04", "05")]
    for i, name in enumerate(names[:3]):
        write_clip(src / "Actor_01" / name, None, 12, clip_media(i)[1], SR)
    (src / "Actor_01" / names[3]).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # broken in both copies
    shutil.copytree(src / "Actor_01", src / "audio_speech_actors_01-24" / "Actor_01")
    other = src / "audio_speech_actors_01-24" / "Actor_01" / names[2]
    other.write_bytes(other.read_bytes()[:-2000])  # a copy of another size: which one is right is not known
    out = tmp_path / "out"
    summary = shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                             modality="audio", split=SplitConfig(folds=3)), S3Config())
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(r["source_path"] for r in manifest) == [str(src / "Actor_01" / name) for name in names[:3]]
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    copy = src / "audio_speech_actors_01-24" / "Actor_01"
    assert {p for p, r in rejects.items() if r["unused"]} == {str(copy / name) for name in names[:2]}
    assert rejects[str(copy / names[3])]["reason"].startswith("cannot open media")  # tried too: broken as well
    assert rejects[str(other)]["reason"] == f"duplicate of {src / 'Actor_01' / names[2]} (same clip, same modality)"
    assert (summary["clips"], summary["rejects"], summary["unused"]) == (3, 3, 2)
    assert summary["copies"].startswith(f"3 files are second copies of clips' files (the same name and size; "
                                        f"first: {copy / names[0]}, duplicate of {src / 'Actor_01' / names[0]} ")
    assert summary["copies"].endswith("point data.src at one copy")


def test_a_copy_of_another_size_makes_the_clip_whose_first_copy_does_not_decode(tmp_path):
    """Copies of a clip's file of different sizes: the copy found first was used, and when that one was the copy a
    download cut short, the clip was lost though the other copy is whole, and both were faults."""
    src = tmp_path / "RAVDESS"
    names = [f"03-01-{emo}-01-01-01-01.wav" for emo in ("01", "03", "04", "05")]
    for i, name in enumerate(names):
        write_clip(src / "Actor_01" / name, None, 12, clip_media(i)[1], SR)
    shutil.copytree(src / "Actor_01", src / "audio_speech_actors_01-24" / "Actor_01")
    first, copy = src / "Actor_01" / names[2], src / "audio_speech_actors_01-24" / "Actor_01" / names[2]
    first.write_bytes(first.read_bytes()[:-2000])  # the copy found first is cut short
    both = [src / "Actor_01" / names[3], src / "audio_speech_actors_01-24" / "Actor_01" / names[3]]
    both[0].write_bytes(both[0].read_bytes()[:-2000])
    both[1].write_bytes(both[1].read_bytes()[:-4000])  # no copy whole
    out = tmp_path / "out"
    summary = shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                             modality="audio", split=SplitConfig(folds=3)), S3Config())
    manifest = {r["clip_id"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert manifest["ravdess-01-04-01-01-01-01"]["audio_path"] == str(copy) and summary["clips"] == 3
    rows = pq.read_table(out / "rejects.parquet").to_pylist()
    rejects = {r["source_path"]: r for r in rows if r["source_path"].endswith((names[2], names[3]))}
    assert len(rows) == len({r["source_path"] for r in rows}) and sorted(rejects) == sorted(map(str, [first, *both]))
    assert rejects[str(first)]["reason"].endswith(f"; the clip was taken from {copy} instead")
    assert all(r["reason"].startswith("cut short") and not r["unused"] for r in rejects.values())
    assert (summary["rejects"], summary["unused"]) == (3, 2)


def test_a_file_left_unused_names_a_copy_the_clip_was_taken_from_by_its_folder(tmp_path):
    """A full-AV (01) file and its fallback 02 file cut short, the clip made from a whole copy of the 01 elsewhere in
    the tree: its 03 file said "clip taken from full-AV file 01-...mp4", the name of the 01 that had failed."""
    src = ravdess_of_three_clips(tmp_path)
    frames, audio = clip_media(7)
    av, video, sound = files_of_clip_7(src)
    copy = src / "backup" / "Actor_01" / av.name
    write_clip(av, frames, 12, audio, SR)
    write_clip(video, frames, 12, None, SR)
    write_clip(sound, None, 12, audio, SR)
    copy.parent.mkdir(parents=True)
    shutil.copy(av, copy)
    for path in (av, video):
        path.write_bytes(path.read_bytes()[:700])
    out = tmp_path / "out"
    shards.build_shards(DataConfig(corpus="ravdess", src=str(src), shards=str(out), shard_size=8,
                                   split=SplitConfig(folds=3)), S3Config())
    manifest = {r["clip_id"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert manifest["ravdess-01-05-01-01-01-01"]["video_path"] == str(copy)
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert rejects[str(sound)]["reason"] == f"clip taken from full-AV file {copy}" and rejects[str(sound)]["unused"]
    assert rejects[str(av)]["reason"].endswith(f"; the clip was taken from {copy} instead")


@pytest.mark.parametrize("corpus", ["ravdess", "cremad"])
def test_a_copy_of_the_same_size_makes_the_clip_whose_first_copy_does_not_decode(tmp_path, corpus):
    """A corpus held twice whose copy found first is damaged in place, at its size (bytes lost to a bad disk, a file a
    downloader sized first and never filled in): only copies of another size were tried, so the clip was lost and its
    whole twin said "its clip could not be made"."""
    src = tmp_path / corpus
    (src / "copy").mkdir(parents=True)
    if corpus == "ravdess":
        names = [f"Actor_01/03-01-{emo}-01-01-01-01.wav" for emo in ("01", "03", "04")]
        for i, name in enumerate(names):
            write_clip(src / name, None, 12, clip_media(i)[1], SR)
        shutil.copytree(src / "Actor_01", src / "copy" / "Actor_01")
    else:
        names = [f"AudioWAV/1001_{s}_ANG_XX.wav" for s in ("DFA", "IEO", "TIE")]
        for i, name in enumerate(names):
            write_clip(src / name, None, 12, clip_media(i)[1], SR)
        shutil.copytree(src / "AudioWAV", src / "copy" / "AudioWAV")
    first, twin = src / names[1], src / "copy" / names[1]
    first.write_bytes(bytes(first.stat().st_size))  # zeros, at its size
    out = tmp_path / "out"
    summary = shards.build_shards(DataConfig(corpus=corpus, src=str(src), shards=str(out), shard_size=8,
                                             modality="audio", split=SplitConfig(folds=3)), S3Config())
    assert sorted(r["audio_path"] for r in pq.read_table(out / "manifest.parquet").to_pylist()) == sorted(
        [str(src / names[0]), str(twin), str(src / names[2])])
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert sorted(rejects) == sorted(map(str, [first, src / "copy" / names[0], src / "copy" / names[2]]))
    assert rejects[str(first)]["reason"].endswith(f"; the clip was taken from {twin} instead")
    assert not rejects[str(first)]["unused"] and (summary["clips"], summary["rejects"], summary["unused"]) == (3, 1, 2)
    # not stamped in the fingerprint, as before: shards of a corpus held twice, made before twins were tried, are kept
    assert f"{twin}:" not in made_with.source_lines(*corpora.scan(corpus, src, audio_only=True)).decode()


def test_rejects_are_the_same_bytes_whatever_order_the_shards_finish_in(tmp_path):
    """Rejects were written in the order Ray tasks finished, so rejects.parquet differed from run to run."""
    src = tmp_path / "corpus"
    frames, audio = clip_media(0)
    write_clip(src / "good.mp4", frames, 12, audio, SR)
    for name in ("b.mp4", "c.mp4", "d.mp4"):
        touch(src / name)  # empty: a reject at decoding, each in a shard of its own
    (src / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\ngood.mp4,good,s1,happy\n"
                                          "b.mp4,b,s1,sad\nc.mp4,c,s1,sad\nd.mp4,d,s1,sad\n")

    def build(out: Path, order) -> bytes:  # the shard tasks run, and finish, in `order`, as Ray's may
        data = DataConfig(corpus="synthetic", src=str(src), shards=str(out), shard_size=1, split=SplitConfig(folds=3))
        summary = shards.build_shards(data, S3Config(), run_tasks=lambda ts: (
            shards.write_shard(t, data.shards, data.features, S3Config()) for t in order(ts)))
        assert summary["rejects"] == 3
        return (out / "rejects.parquet").read_bytes()

    assert build(tmp_path / "in_order", list) == build(tmp_path / "reversed", lambda ts: ts[::-1])
    assert pq.read_table(tmp_path / "reversed" / "rejects.parquet").column("source_path").to_pylist() == [
        str(src / name) for name in ("b.mp4", "c.mp4", "d.mp4")]


def test_a_corpus_of_ones_own_may_name_emotions_of_its_own(tmp_path):
    """IEMOCAP-, MELD-style labels (`frustrated`, `excited`) were each a reject ("not one of" the 8 words the bundled
    corpora use), so such a corpus made no shards. Case is ignored: `Frustrated` and `frustrated` are one class."""
    src = tmp_path / "corpus"
    rows = ["file,clip_id,speaker,emotion"]
    for i, emotion in enumerate(["Frustrated", "happy", "excited", "frustrated", "neutral", "excited"]):
        frames, audio = clip_media(i)
        write_clip(src / f"c{i}.mp4", frames, 12, audio, SR)
        rows.append(f"c{i}.mp4,c{i},s{i % 3},{emotion}")
    (src / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), shard_size=2,
                      split=SplitConfig(folds=3))
    summary = shards.build_shards(data, S3Config())
    assert summary["rejects"] == 0 and summary["clips"] == 6
    # the bundled corpora's words keep their order, a corpus's own follow, sorted: indices are positions here
    assert summary["emotions"] == {"neutral": 1, "happy": 1, "excited": 2, "frustrated": 2}
    table, meta = shards.read_manifest(str(tmp_path / "out"))
    assert meta["emotions"] == ["neutral", "happy", "excited", "frustrated"]
    assert dict(zip(table.column("clip_id").to_pylist(), table.column("emotion").to_pylist()))["c0"] == "frustrated"
    again = shards.build_shards(data, S3Config())  # a rerun on up-to-date shards counts them too
    assert again["up_to_date"] and again["emotions"] == summary["emotions"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_symlinked_folders_are_entered_once_and_a_broken_link_is_a_reject(tmp_path):
    root, elsewhere = tmp_path / "RAVDESS", tmp_path / "elsewhere"
    touch(root / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    touch(elsewhere / "Actor_02" / "01-01-03-01-01-01-02.mp4")
    (root / "Actor_02").symlink_to(elsewhere / "Actor_02")  # a corpus assembled from links
    (root / "loop").symlink_to(root)  # a link back up: walked once, not for ever
    (root / "Actor_00").symlink_to(root / "Actor_01")  # the same real folder under a second name, sorting first:
    # counted once, under its own name (walked under the link's, its clips would be rejects of a wrong folder)
    (root / "Actor_01" / "01-01-04-01-01-01-01.mp4").symlink_to(tmp_path / "gone.mp4")
    records, rejects = corpora.scan("ravdess", root)
    assert [r.clip_id for r in records] == ["ravdess-01-03-01-01-01-01", "ravdess-01-03-01-01-01-02"]
    assert [(Path(r.source_path).name, r.reason) for r in rejects] == [
        ("01-01-04-01-01-01-01.mp4", f"symbolic link to {str(tmp_path / 'gone.mp4')!r}, which does not exist")]


def test_an_icloud_placeholder_of_a_clip_is_a_reject_not_a_hidden_file_passed_over(ravdess, tmp_path):
    """A corpus kept in iCloud Drive and copied off the Mac (rsync, scp) holds, for each file macOS had not downloaded,
    only its placeholder `.<name>.icloud` (a small plist). Hidden, it was passed over with .DS_Store and the other
    hidden names: its clip was in neither the manifest nor the rejects, and the build said nothing."""
    root = shutil.copytree(ravdess[0], tmp_path / "RAVDESS", symlinks=True)
    evicted = root / "Actor_02" / "01-01-05-01-01-01-02.mp4"
    placeholder = evicted.with_name(f".{evicted.name}.icloud")
    evicted.unlink()
    placeholder.write_bytes(b"bplist00\xd3\x01\x02\x03" + bytes(60))
    (root / ".README.md.icloud").write_bytes(b"bplist00" + bytes(60))  # no media: unused, as its README would be
    (root / "Actor_01" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "Actor_01" / "._01-01-01-01-01-01-01.mp4").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble: passed over
    records, rejects = corpora.scan("ravdess", root)
    assert "ravdess-01-05-01-01-01-02" not in {r.clip_id for r in records}
    why = ("an iCloud Drive placeholder of {}, not the file: macOS had not downloaded it when the corpus was copied; "
           "download it there (Finder: Download Now, or `brctl download`) and copy it again")
    placeholders = sorted((r.source_path, r.reason, r.unused) for r in rejects if r.source_path.endswith(".icloud"))
    assert placeholders == [(str(root / ".README.md.icloud"), why.format("README.md"), True),
                            (str(placeholder), why.format(evicted.name), False)]
    assert not [r for r in rejects if "DS_Store" in r.source_path or "/._" in r.source_path]


def test_a_link_into_the_tree_does_not_hide_the_folder_it_names(tmp_path):
    """os.walk is top-down: a shortcut `wav -> raw/AudioWAV` was met before the folder, which was then skipped as
    seen, and its files read as `wav/...`, not CREMA-D's AudioWAV/: a complete corpus became all rejects."""
    root = tmp_path / "CREMA-D"
    for stem in ("1001_DFA_ANG_XX", "1002_IEO_HAP_HI"):
        touch(root / "raw" / "VideoFlash" / f"{stem}.flv")
        touch(root / "raw" / "AudioWAV" / f"{stem}.wav")
    (root / "wav").symlink_to("raw/AudioWAV")
    records, rejects = corpora.scan("cremad", root)
    assert [(r.clip_id, r.audio_path) for r in records] == [
        (f"cremad-{stem}", str(root / "raw" / "AudioWAV" / f"{stem}.wav"))
        for stem in ("1001_DFA_ANG_XX", "1002_IEO_HAP_HI")]
    assert rejects == []
    # a folder the walk does not enter (a hidden one) is still read through a link to it, under the link's name
    shutil.rmtree(root / "raw" / "AudioWAV")
    (root / "wav").unlink()
    touch(root / ".store" / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    (root / "raw" / "AudioWAV").symlink_to(root / ".store" / "AudioWAV")
    records, rejects = corpora.scan("cremad", root)
    assert [r.audio_path for r in records] == [str(root / "raw" / "AudioWAV" / "1001_DFA_ANG_XX.wav")]
    assert [(Path(r.source_path).name, r.reason) for r in rejects] == [
        ("1002_IEO_HAP_HI.flv", "no AudioWAV/1002_IEO_HAP_HI.wav to pair with")]


def test_a_preprocess_output_inside_the_source_is_not_scanned(tmp_path):
    touch(tmp_path / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    touch(tmp_path / "shards" / "manifest.parquet")
    touch(tmp_path / "shards" / "shards" / "shard-000000.tar")
    records, rejects = corpora.scan("ravdess", tmp_path, skip=tmp_path / "shards")
    assert len(records) == 1 and rejects == []


def test_cremad_rejects_a_second_file_of_the_same_clip(tmp_path):
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    first = touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.FLV")
    second = touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    third = touch(tmp_path / "more" / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [(r.clip_id, r.video_path) for r in records] == [("cremad-1001_DFA_ANG_XX", str(first))]
    assert {(r.source_path, r.reason) for r in rejects} == {
        (str(p), f"duplicate of {first} (same clip, same modality)") for p in (second, third)}


@pytest.mark.parametrize("audio_only", [False, True])
def test_one_cremad_recording_under_two_names_is_no_clip(tmp_path, audio_only):
    """One recording under two AudioWAV/ names that say other emotions (a public CREMA-D cleaning script drops
    1006_TIE_HAP_XX.wav and 1006_TIE_NEU_XX.wav, 1013_WSI_DIS_XX.wav and 1013_WSI_SAD_XX.wav, 1017_IWW_ANG_XX.wav and
    1017_IWW_FEA_XX.wav as byte-identical; not checked against the corpus here): each name was a clip, one sound trained as two emotions,
    and within_speaker could put one in train and the other in test. The name is the label, and which name is right is
    unknown: every file of both clips is a reject naming the other; a copy elsewhere in the tree (the same name) is
    still one clip."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1001_DFA_ANG_XX")):
        frames, audio = clip_media(i)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioWAV" / f"1006_TIE_{e}_XX.wav" for e in ("HAP", "NEU"))
    shutil.copy(happy, neutral)
    shutil.copytree(tmp_path / "AudioWAV", tmp_path / "again" / "AudioWAV")
    header = (b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
              + bytes.fromhex("01000100803e0000007d00000200100064617461") + bytes(4))  # a WAV of no audio, 44 bytes
    for emotion in ("NEU", "SAD"):  # two broken files alike (a header alone, a Git LFS pointer) are no recording
        (tmp_path / "VideoFlash" / f"1076_MTI_{emotion}_XX.flv").write_bytes(b"")
        (tmp_path / "AudioWAV" / f"1076_MTI_{emotion}_XX.wav").write_bytes(header)
    records, rejects = corpora.scan("cremad", tmp_path, audio_only=audio_only)
    assert [r.clip_id for r in records] == [f"cremad-{stem}" for stem in ("1001_DFA_ANG_XX", "1076_MTI_NEU_XX",
                                                                          "1076_MTI_SAD_XX")]
    same = ("the same bytes as {other}, whose name says another {what}: one recording under 2 names, which is right "
            "is unknown: no clip is made of it")
    faults = {(r.source_path, r.reason) for r in rejects if not r.unused and "again" not in r.source_path}
    assert faults == {
        (str(happy), same.format(other=neutral, what="emotion (neutral, here happy)")),
        (str(neutral), same.format(other=happy, what="emotion (happy, here neutral)")),
        (str(tmp_path / "VideoFlash" / "1006_TIE_HAP_XX.flv"),
         "its clip is not made (AudioWAV/1006_TIE_HAP_XX.wav: " + same.format(other=neutral, what="emotion (neutral, "
                                                                               "here happy)") + ")"),
        (str(tmp_path / "VideoFlash" / "1006_TIE_NEU_XX.flv"),
         "its clip is not made (AudioWAV/1006_TIE_NEU_XX.wav: " + same.format(other=happy, what="emotion (happy, "
                                                                               "here neutral)") + ")")}
    assert {r.source_path for r in rejects if "again" in r.source_path and not r.unused} == {
        str(tmp_path / "again" / "AudioWAV" / f"1006_TIE_{e}_XX.wav") for e in ("HAP", "NEU")}


@pytest.mark.parametrize("audio_only", [False, True])
def test_one_cremad_recording_under_two_names_is_no_clip_in_a_tree_without_audiowav(tmp_path, audio_only):
    """A copy without AudioWAV/ takes each clip's sound from its .mp3, else its video's own track, but only AudioWAV/
    files were checked for one recording under two names: twin .mp3s (or twin videos with no .mp3) made two clips of one
    sound under two emotions. The file a clip's sound is taken from is checked, as an AudioWAV/ file is."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1001_DFA_ANG_XX")):
        frames, audio = clip_media(i, seconds=2.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioMP3" / f"1006_TIE_{e}_XX.mp3" for e in ("HAP", "NEU"))
    shutil.copy(happy, neutral)
    frames, audio = clip_media(3)
    disgust, sad = (tmp_path / "VideoFlash" / f"1013_WSI_{e}_XX.flv" for e in ("DIS", "SAD"))
    write_clip(disgust, frames, 12, audio, SR)
    shutil.copy(disgust, sad)
    records, rejects = corpora.scan("cremad", tmp_path, audio_only=audio_only)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"]
    same = ("the same bytes as {other}, whose name says another {what}: one recording under 2 names, which is right "
            "is unknown: no clip is made of it")
    happy_why, neutral_why = (same.format(other=neutral, what="emotion (neutral, here happy)"),
                              same.format(other=happy, what="emotion (happy, here neutral)"))
    assert {(r.source_path, r.reason) for r in rejects if not r.unused} == {
        (str(happy), happy_why), (str(neutral), neutral_why),
        (str(tmp_path / "VideoFlash" / "1006_TIE_HAP_XX.flv"), f"its clip is not made (AudioMP3/{happy.name}: {happy_why})"),
        (str(tmp_path / "VideoFlash" / "1006_TIE_NEU_XX.flv"),
         f"its clip is not made (AudioMP3/{neutral.name}: {neutral_why})"),
        (str(disgust), same.format(other=sad, what="emotion (sad, here disgust)")),
        (str(sad), same.format(other=disgust, what="emotion (disgust, here sad)"))}
    assert not {r.source_path for r in rejects if r.unused} & {str(happy), str(neutral)}


def test_a_lone_cremad_mp3_that_is_a_clips_twin_under_another_name_is_told_so_not_unused(tmp_path):
    """In a copy without AudioWAV/, an .mp3 with no video of its own makes no clip under data.modality=av, but it is
    checked for one recording under two names: holding the bytes of another clip's .mp3 under another emotion, that
    clip was lost as 'the same bytes as' it, while it stayed an unused file ('expected VideoFlash/*.flv, ...'), no
    fault, which hid the other half of the pair from the faults counted. It is now that fault, naming the other."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1001_DFA_ANG_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioMP3" / f"1006_TIE_{e}_XX.mp3" for e in ("HAP", "NEU"))
    shutil.copy(happy, neutral)
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"]
    same = ("the same bytes as {other}, whose name says another {what}: one recording under 2 names, which is right "
            "is unknown: no clip is made of it")
    assert [(r.source_path, r.reason, r.unused) for r in rejects if r.source_path in (str(happy), str(neutral))] == [
        (str(happy), same.format(other=neutral, what="emotion (neutral, here happy)"), False),
        (str(neutral), same.format(other=happy, what="emotion (happy, here neutral)"), False)]


@pytest.mark.parametrize("audio_only", [False, True])
def test_one_short_cremad_recording_under_two_names_is_no_clip_however_few_its_bytes(tmp_path, audio_only):
    """The check for one recording under two names passed over files under 4 KiB, a floor set for a WAV's header alone,
    but a second of CREMA-D's 16 kHz sound as an .mp3 is 3.4 KiB, and a short .flv under 4 KiB too: twins of a short
    take under two emotions made two clips of one sound. Files alike are passed over only where they hold no recording:
    text (a Git LFS pointer), or a header with nothing after it (an MP3's ID3 tag with no frame, an FLV's with no
    tag), each a reject of its own when decoded."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1001_DFA_ANG_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioMP3" / f"1006_TIE_{e}_XX.mp3" for e in ("HAP", "NEU"))
    shutil.copy(happy, neutral)
    frames, audio = clip_media(3, seconds=0.2)
    disgust, sad = (tmp_path / "VideoFlash" / f"1013_WSI_{e}_XX.flv" for e in ("DIS", "SAD"))
    write_clip(disgust, frames, 12, audio, SR)
    shutil.copy(disgust, sad)
    assert max(happy.stat().st_size, disgust.stat().st_size) < 4096  # the floor the check had
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 41800\n"
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"TIT2\x00\x00\x00\x00\x00\x00"  # an ID3v2 tag, no frame after it
    flv, mp4 = disgust.read_bytes(), tmp_path / "x.mp4"
    write_clip(mp4, frames, 12, audio, SR)
    heads = {  # (folder, suffix) -> a header alone: the FLV's metadata (its first tag), the MP4's ftyp box
        ("AudioMP3", ".mp3"): tag,
        ("VideoFlash", ".flv"): flv[:13 + 15 + int.from_bytes(flv[14:17], "big")],
        ("VideoMP4", ".mp4"): mp4.read_bytes()[:int.from_bytes(mp4.read_bytes()[:4], "big")]}
    assert flv[13] == 18 and (tmp_path / "x.mp4").read_bytes()[4:8] == b"ftyp"
    mp4.unlink()
    alone = [("1076", "AudioMP3", ".mp3", pointer), *((str(1077 + i), *kind, head) for i, (kind, head) in
                                                     enumerate(heads.items()))]
    for number, folder, suffix, head in alone:
        for emotion in ("NEU", "SAD"):
            touch(tmp_path / folder / f"{number}_MTI_{emotion}_XX{suffix}").write_bytes(head)
            if folder == "AudioMP3":  # a video (empty: no file to compare), which under av a clip needs
                touch(tmp_path / "VideoFlash" / f"{number}_MTI_{emotion}_XX.flv")
    records, rejects = corpora.scan("cremad", tmp_path, audio_only=audio_only)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"] + [
        f"cremad-{number}_MTI_{e}_XX" for number, *_ in alone for e in ("NEU", "SAD")]
    same = ("the same bytes as {other}, whose name says another {what}: one recording under 2 names, which is right "
            "is unknown: no clip is made of it")
    assert {(r.source_path, r.reason) for r in rejects if r.source_path in {str(happy), str(disgust)}} == {
        (str(happy), same.format(other=neutral, what="emotion (neutral, here happy)")),
        (str(disgust), same.format(other=sad, what="emotion (sad, here disgust)"))}


@pytest.mark.parametrize("between", [bytes(2048), b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10)],
                         ids=["zeros", "a second tag"])
def test_an_mp3_whose_frames_start_past_its_id3_tag_holds_a_recording_its_twin_is_no_clip(tmp_path, between):
    """`sniff.no_recording` read an .mp3 whose first bytes after its ID3v2 tag are no frame as holding none, but a tagger
    may leave zeros there (padding the tag's size does not count) or a second tag, which ffmpeg passes over to the
    frames after: two such files alike under two emotions were two clips of one sound. Frames that start anywhere past
    the tag are a recording; a tag with nothing after it but zeros or another tag is none."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1001_DFA_ANG_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioMP3" / f"1006_TIE_{e}_XX.mp3" for e in ("HAP", "NEU"))
    data = happy.read_bytes()
    at = walks.id3_end(data[:10])
    happy.write_bytes(data[:at] + between + data[at:])
    shutil.copy(happy, neutral)
    assert np.abs(decode_audio(happy, SR)).max() > 0.1  # ffmpeg hears the take
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"]
    assert {r.source_path for r in rejects if r.reason.startswith("the same bytes as")} == {str(happy), str(neutral)}
    (tmp_path / "x.mp3").write_bytes(data[:at] + between)
    assert sniff.no_recording(str(tmp_path / "x.mp3"))


def test_ground_truth_csv_as_a_spreadsheet_saves_it_and_its_bad_rows(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        touch(tmp_path / "clips" / name)
    rows = ["file,clip_id,speaker,emotion", "clips/a.mp4,a,s1,happy", "clips/b.mp4,a,s1,sad",
            "clips/c.mp4,c,,sad", "clips/a.mp4,a2,s1,happy", "clips/d.mp4,d,s2,angry"]
    (tmp_path / "ground_truth.csv").write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode())  # BOM, CRLF
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.meta) for r in records] == [("a", "s1", {}), ("d", "s2", {})]
    assert sorted((Path(r.source_path).name, r.reason) for r in rejects) == [
        ("a.mp4", "ground_truth.csv row 5: file already listed on row 2"),
        ("b.mp4", "ground_truth.csv row 3: clip_id 'a' is already on row 2"),
        ("c.mp4", "ground_truth.csv row 4: empty speaker"),
    ]
    (tmp_path / "ground_truth.csv").write_text("file,clip,speaker,emotion\n")
    with pytest.raises(corpora.CorpusError, match="ground_truth.csv: no column clip_id; its header must name file, "
                                                  "clip_id, speaker, emotion"):
        corpora.scan("synthetic", tmp_path)
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\n")
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        (tmp_path / "clips" / name).unlink()
    with pytest.raises(corpora.CorpusError, match="ground_truth.csv lists no clips"):  # was: "empty folder"
        corpora.scan("synthetic", tmp_path)


def test_a_blank_ground_truth_row_is_no_clip_and_the_rows_after_it_are_named_by_their_own_number(tmp_path):
    """A row of empty cells (`,,,,`, as a spreadsheet writes a row it once used) was a fault of its own, named as the
    corpus folder ("row 4: empty file, clip_id, speaker, emotion"), and a blank line was left out of the count: the
    rows after it were named by a number one short, another row than the one at fault."""
    for name in ("a.mp4", "b.mp4"):
        touch(tmp_path / "clips" / name)
    rows = ["file,clip_id,speaker,emotion,notes", "clips/a.mp4,a,s1,happy,x", "", ",,,,", " , ,,,",
            "clips/b.mp4,b,,sad,", "clips/c.mp4,c,s1,sad,"]
    (tmp_path / "ground_truth.csv").write_text("\r\n".join(rows) + "\r\n,,,,\r\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [r.clip_id for r in records] == ["a"]
    assert sorted((Path(r.source_path).name, r.reason) for r in rejects) == [
        ("b.mp4", "ground_truth.csv row 6: empty speaker"), ("c.mp4", "listed in ground_truth.csv but missing")]


@pytest.mark.parametrize("column", ["emotion", "transcript"])
def test_a_quote_left_open_in_a_ground_truth_is_named_not_read_as_a_label(tmp_path, column):
    """A cell that opens a quote and never closes it takes the lines after it into that cell: in the emotion column the
    clip was trained on a class named 'sad\\nclips/c.mp4,c,s2,sad...', and the rows it took in said only 'not
    listed in ground_truth.csv' of their files, rows that are there."""
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        touch(tmp_path / "clips" / name)
    b = 'clips/b.mp4,b,s1,"sad,' if column == "emotion" else 'clips/b.mp4,b,s1,sad,"Hmm'
    rows = ["file,clip_id,speaker,emotion,transcript", "clips/a.mp4,a,s1,happy,ok", b, "clips/c.mp4,c,s2,sad,",
            "clips/d.mp4,d,s2,happy,"]
    (tmp_path / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    made = [("a", "happy")] + ([("b", "sad")] if column != "emotion" else [])
    assert [(r.clip_id, r.emotion) for r in records] == made
    open_quote = 'a quote (") that opens a cell and is never closed takes the lines after it into that cell; close it'
    reasons = {Path(r.source_path).name: r.reason for r in rejects}
    assert reasons == {
        **({"b.mp4": f"ground_truth.csv row 3: its emotion cell runs across lines; {open_quote}"}
           if column == "emotion" else {}),
        **{name: f"not listed in ground_truth.csv (its name is inside row 3's {column} cell, which runs across lines; "
                 f"{open_quote})" for name in ("c.mp4", "d.mp4")}}


def test_an_archive_in_a_ravdess_or_cremad_tree_is_told_to_be_extracted(tmp_path):
    """RAVDESS comes as one .zip per actor (Video_Speech_Actor_01.zip), CREMA-D's copies often as one: a download left
    packed was 'not a RAVDESS media file (.mp4 or .wav)', which does not say that its clips are inside, to extract."""
    touch(tmp_path / "ravdess" / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    packed = touch(tmp_path / "ravdess" / "Video_Speech_Actor_02.zip")
    touch(tmp_path / "cremad" / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    touch(tmp_path / "cremad" / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    flash = touch(tmp_path / "cremad" / "VideoFlash.tar.gz")
    for corpus, archive in (("ravdess", packed), ("cremad", flash)):
        records, rejects = corpora.scan(corpus, tmp_path / corpus)
        assert len(records) == 1
        assert [(r.source_path, r.reason, r.unused) for r in rejects] == [
            (str(archive), "an archive: the files packed in it are not read; extract it, anywhere under the source "
                           "folder", False)]


def test_a_ground_truth_naming_files_from_the_folder_above_says_where_names_are_read_from(tmp_path):
    """A list written beside the corpus folder, then moved into it, names `corpus/clips/a.mp4` for `clips/a.mp4`:
    every row was 'listed in ground_truth.csv but missing' beside a file 'not listed', and nothing said from where a
    name is read."""
    src = tmp_path / "corpus"
    touch(src / "clips" / "a.mp4")
    (src / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\ncorpus/clips/a.mp4,a,s1,happy\n"
                                          "corpus/clips/b.mp4,b,s1,sad\n")
    records, rejects = corpora.scan("synthetic", src)
    assert records == [] and sorted((r.source_path, r.reason) for r in rejects) == [
        (str(src / "clips" / "a.mp4"), "not listed in ground_truth.csv"),
        (str(src / "corpus" / "clips" / "a.mp4"), "listed in ground_truth.csv but missing (clips/a.mp4 is there: a "
                                                  f"name is read from the folder that holds ground_truth.csv, {src})"),
        (str(src / "corpus" / "clips" / "b.mp4"), "listed in ground_truth.csv but missing")]


def test_a_ground_truth_naming_files_in_another_case_says_so(tmp_path):
    """A list written on a Mac or a Windows share, whose file systems read `Clips/A.MP4` as `clips/a.mp4`: each row was
    'listed in ground_truth.csv but missing' beside its file 'not listed', the same name to the eye. Where two files
    differ only in case, neither is named."""
    for name in ("a.mp4", "b.mp4", "c.mp4", "C.mp4"):
        touch(tmp_path / "clips" / name)
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\nclips/A.mp4,a,s1,happy\n"
                                               "Clips/B.MP4,b,s1,sad\nclips/c.MP4,c,s1,sad\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    told = "the names differ in case, which this file system tells apart, unlike a Mac's or Windows'; write it as"
    assert records == [] and sorted((r.source_path, r.reason) for r in rejects) == sorted([
        (str(tmp_path / "clips" / "A.mp4"), f"listed in ground_truth.csv but missing (clips/a.mp4 is there: {told} "
                                            "clips/a.mp4)"),
        (str(tmp_path / "Clips" / "B.MP4"), f"listed in ground_truth.csv but missing (clips/b.mp4 is there: {told} "
                                            "clips/b.mp4)"),
        (str(tmp_path / "clips" / "c.MP4"), "listed in ground_truth.csv but missing"),
        (str(tmp_path / "clips" / "a.mp4"), "not listed in ground_truth.csv (row 2 names it clips/A.mp4, in another "
                                            "case)"),
        (str(tmp_path / "clips" / "b.mp4"), "not listed in ground_truth.csv (row 3 names it Clips/B.MP4, in another "
                                            "case)"),
        (str(tmp_path / "clips" / "c.mp4"), "not listed in ground_truth.csv"),
        (str(tmp_path / "clips" / "C.mp4"), "not listed in ground_truth.csv")])


def test_a_ground_truth_row_with_more_cells_than_columns_is_named_not_read_shifted(tmp_path):
    """A speaker `Smith, John` not quoted is two cells: the clip was of speaker 'Smith' and emotion 'john', a class of
    the corpus's own, and its transcript took the emotion. Cells past the header's columns that are empty (a
    spreadsheet's trailing commas) are no fault."""
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        touch(tmp_path / "clips" / name)
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion,transcript\n"
                                               "clips/a.mp4,a,Smith, John,happy,Hello\n"
                                               "clips/b.mp4,b,Jones,sad,Hi,,\n"
                                               'clips/c.mp4,c,"Smith, John",sad,"Well, yes"\n')
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion) for r in records] == [("b", "Jones", "sad"), ("c", "Smith, John", "sad")]
    assert [(Path(r.source_path).name, r.reason) for r in rejects] == [
        ("a.mp4", "ground_truth.csv row 2: 6 cells for the header's 5 columns; a cell holding the separator (a name "
                  '"Smith, John") must be quoted, or it is read as two cells and the cells after it move one column '
                  "on; a column of its own needs a name in the header")]


@pytest.mark.parametrize("times", ["start,end", "Start Time,End Time", "onset_s"])
def test_a_ground_truth_placing_clips_at_times_within_their_files_is_refused_not_read_as_whole_files(tmp_path, times):
    """A session's segments as an annotation tool exports them, `file,...,start,end`: the times were read as metadata
    nobody reads, so a row trained on the centre of the whole session (other sound than its label's) and the session's
    other rows were 'file already listed', saying nothing of the times. An empty such column is no time."""
    for name in ("session1.wav", "b.wav"):
        touch(tmp_path / name)
    columns = times.split(",")
    ranges = [",".join(["12.5", "14.0"][:len(columns)]), ",".join(["30.0", "31.5"][:len(columns)])]
    (tmp_path / "ground_truth.csv").write_text(f"file,clip_id,speaker,emotion,{times}\n"
                                               f"session1.wav,s1_001,spk1,happy,{ranges[0]}\n"
                                               f"session1.wav,s1_002,spk1,sad,{ranges[1]}\n")
    named = ", ".join(c.lower().replace(" ", "_") for c in columns)  # as the header is read: `Clip ID` is clip_id
    with pytest.raises(corpora.CorpusError, match=rf"ground_truth.csv: columns? {named} places? each row's clip at a "
                                                  r"time within its file, which avdis does not read: .*cut each "
                                                  "segment into a file of its own"):
        corpora.scan("synthetic", tmp_path)
    (tmp_path / "ground_truth.csv").write_text(f"file,clip_id,speaker,emotion,{times}\n"
                                               f"session1.wav,a,spk1,happy,{',' * (len(columns) - 1)}\n"
                                               f"b.wav,b,spk1,sad,{',' * (len(columns) - 1)}\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [r.clip_id for r in records] == ["a", "b"] and rejects == []


def test_ground_truth_cells_are_read_without_surrounding_spaces(tmp_path):
    """`spk1 ` (a space a spreadsheet cell does not show) was a second speaker, which speaker_disjoint could put in
    another fold than `spk1`: one voice in train and in test."""
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        touch(tmp_path / "clips" / name)
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion,intensity\nclips/a.mp4,a,spk1,happy,\n"
                                               " clips/b.mp4 , b ,spk1 , sad, high \nclips/c.mp4,c,\" spk1\",angry,\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion, r.source_path, r.meta) for r in records] == [
        ("a", "spk1", "happy", str(tmp_path / "clips" / "a.mp4"), {}),
        ("b", "spk1", "sad", str(tmp_path / "clips" / "b.mp4"), {"intensity": "high"}),
        ("c", "spk1", "angry", str(tmp_path / "clips" / "c.mp4"), {})]
    assert rejects == []
    assert shards.Labels.of(records).speakers == ["spk1"]


def test_ground_truth_cells_are_read_without_characters_that_show_nothing(tmp_path):
    """A zero-width space pasted with a label from a web page or a document (`happy\u200b`) made a class of its own
    that the summary showed as a second `happy`; a word joiner made a second speaker `spk1`; a byte order mark a file
    joined to another left before a file's name made it 'listed in ground_truth.csv but missing' beside itself 'not
    listed'."""
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        touch(tmp_path / "clips" / name)
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\nclips/a.mp4,a,spk1,happy\n"
                                               "clips/b.mp4,b,spk1\u2060,\u200bHappy \u200b\n"
                                               "\ufeffclips/c.mp4,c,spk1,sad\nclips/d.mp4,d,spk1,\u200b\n",
                                               encoding="utf-8")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion, r.source_path) for r in records] == [
        ("a", "spk1", "happy", str(tmp_path / "clips" / "a.mp4")),
        ("b", "spk1", "happy", str(tmp_path / "clips" / "b.mp4")),
        ("c", "spk1", "sad", str(tmp_path / "clips" / "c.mp4"))]
    assert [(r.source_path, r.reason) for r in rejects] == [
        (str(tmp_path / "clips" / "d.mp4"), "ground_truth.csv row 5: empty emotion")]
    assert shards.Labels.of(records).emotions == ["happy", "sad"]


@pytest.mark.parametrize("header, sep", [("file, clip_id, speaker, emotion", ", "),
                                         ("File,Clip_ID,Speaker,Emotion", ","), ("file;clip_id;speaker;emotion", ";"),
                                         ("file\tclip_id\tspeaker\temotion", "\t")])
def test_a_ground_truth_header_is_read_as_a_person_or_a_spreadsheet_writes_it(tmp_path, header, sep):
    """Spaces after the commas, capitals, or the semicolons (tabs) a spreadsheet separates with where the decimal mark
    is a comma: refused as "no column file, clip_id, speaker, emotion", the very columns the header shows."""
    touch(tmp_path / "clips" / "a.mp4")
    (tmp_path / "ground_truth.csv").write_text(f"{header}\n" + sep.join(["clips/a.mp4", "a", "spk1", "Happy"]) + "\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion, r.source_path) for r in records] == [
        ("a", "spk1", "happy", str(tmp_path / "clips" / "a.mp4"))]
    assert rejects == []


@pytest.mark.parametrize("hint, sep, end", [("sep=;", ";", "\n"), ('"sep=,"', ",", "\r\n"), ("SEP=\t", "\t", "\n")])
def test_a_ground_truth_whose_first_line_names_its_separator_for_excel_is_read(tmp_path, hint, sep, end):
    """A script writing a CSV for Excel puts `sep=;` first, which Excel reads and does not show: that line was read as
    the header, refused as naming 'no column file, clip_id, speaker, emotion', the very columns the next line names.
    The rows are numbered as Excel shows them, the header 1."""
    for name in ("a.mp4", "b.mp4"):
        touch(tmp_path / "clips" / name)
    rows = [hint, sep.join(["file", "clip_id", "speaker", "emotion"]), sep.join(["clips/a.mp4", "a", "spk1", "Happy"]),
            sep.join(["clips/b.mp4", "b", "", "sad"])]
    (tmp_path / "ground_truth.csv").write_bytes(("\ufeff" + end.join(rows) + end).encode())  # a BOM before it too
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion) for r in records] == [("a", "spk1", "happy")]
    assert [(r.source_path, r.reason) for r in rejects] == [
        (str(tmp_path / "clips" / "b.mp4"), "ground_truth.csv row 3: empty speaker")]


@pytest.mark.parametrize("names", [("File", "Clip ID", "Speaker", "Emotion", "Intensity"),
                                   ("file", "clip-id", "speaker", "emotion", "intensity"),
                                   ("File", "Clip  Id", "Speaker", "Emotion", "Intensity")])
def test_a_ground_truth_header_written_with_spaces_or_hyphens_is_read(tmp_path, names):
    """`Clip ID` and `clip-id`, as a person types a column's name in a spreadsheet, were no column clip_id: the whole
    list was refused ('no column clip_id'). Spaces and hyphens inside a name now read as underscores."""
    touch(tmp_path / "a.mp4")
    (tmp_path / "ground_truth.csv").write_text(",".join(names) + "\na.mp4,a,s1,Happy,strong\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.speaker, r.emotion, r.meta) for r in records] == [("a", "s1", "happy",
                                                                              {"intensity": "strong"})]
    assert rejects == []


def test_a_ground_truth_row_that_repeats_the_header_is_told_so(tmp_path):
    """Two lists joined end to end (`cat a.csv b.csv`) hold the second's header as a row, which was 'file listed in
    ground_truth.csv but missing' (a file named `file`), saying nothing of why. It is now a reject of its own naming
    the row, and the rows after it are read."""
    for name in ("a.mp4", "b.mp4"):
        touch(tmp_path / name)
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\na.mp4,a,s1,happy\n"
                                               "File,Clip ID,Speaker,Emotion\nb.mp4,b,s2,sad\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [r.clip_id for r in records] == ["a", "b"]
    assert [(r.source_path, r.reason) for r in rejects] == [
        (str(tmp_path / "ground_truth.csv"), "ground_truth.csv row 3: repeats the header (two lists joined end to "
                                             "end?); it lists no clip: delete the row")]


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])  # a spreadsheet's plain "CSV", its "Unicode Text"
def test_a_ground_truth_csv_in_another_encoding_is_named(tmp_path, encoding):
    touch(tmp_path / "a.mp4")
    (tmp_path / "ground_truth.csv").write_bytes("file,clip_id,speaker,emotion\r\na.mp4,a,Zoë,happy\r\n".encode(encoding))
    with pytest.raises(corpora.CorpusError, match=r"ground_truth.csv: not UTF-8 text .*save it as \"CSV UTF-8\""):
        corpora.scan("synthetic", tmp_path)  # was a UnicodeDecodeError traceback


def test_one_file_by_two_spellings_is_one_clip(tmp_path):
    """`sub/../a.mp4` is `a.mp4`: listed both ways, one recording was two clips, one in train and one in test."""
    touch(tmp_path / "a.mp4")
    (tmp_path / "sub").mkdir()
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\na.mp4,a,s1,happy\n"
                                               "sub/../a.mp4,a_again,s1,happy\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [r.clip_id for r in records] == ["a"]
    assert [(r.source_path, r.reason) for r in rejects] == [  # named as row 3 spells it
        (str(tmp_path / "sub" / ".." / "a.mp4"), "ground_truth.csv row 3: file already listed on row 2")]


def test_one_file_through_a_linked_folder_or_a_source_with_dots_is_one_clip(tmp_path):
    """normpath was the file's identity: a file listed through a linked folder and by its real path was two clips (a
    train/test leak), one listed only through the link a false "not listed" reject, and with `--src other/../corpus`
    every media file was both a clip and a reject."""
    root = tmp_path / "corpus"
    touch(root / "real" / "a.mp4")
    touch(root / "real" / "b.mp4")
    (root / "link").symlink_to("real")  # a folder linked in from shared storage, say
    (root / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\nlink/a.mp4,a,s1,happy\n"
                                           "real/b.mp4,b,s1,sad\nlink/b.mp4,b_again,s1,sad\n")
    (tmp_path / "other").mkdir()
    for src in (root, tmp_path / "other" / ".." / "corpus"):
        records, rejects = corpora.scan("synthetic", src)
        assert [(r.clip_id, r.source_path) for r in records] == [("a", str(src / "link" / "a.mp4")),
                                                                 ("b", str(src / "real" / "b.mp4"))]
        assert [(r.source_path, r.reason) for r in rejects] == [
            (str(src / "link" / "b.mp4"), "ground_truth.csv row 4: file already listed on row 3")]


def test_a_wrong_source_leaves_a_built_output_as_it_was(ravdess, tmp_path):
    root, _ = ravdess
    out = tmp_path / "shards"
    data = DataConfig(corpus="ravdess", src=str(root), shards=str(out), shard_size=4,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    shards.build_shards(data, S3Config())
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    junk = touch(tmp_path / "junk" / "readme.txt")
    with pytest.raises(shards.PreprocessError) as caught:
        shards.build_shards(data.model_copy(update={"src": str(junk.parent)}), S3Config())
    assert f"{junk}: not a RAVDESS media file" in str(caught.value) and f"{out} was left as it was" in str(caught.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert shards.build_shards(data, S3Config())["up_to_date"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_source_whose_every_clip_fails_to_decode_leaves_a_built_output_as_it_was(cremad, tmp_path, where, request):
    """The same corpus cloned again without `git lfs pull`: every file a pointer, found by name, none decodes."""
    root = tmp_path / "CREMA-D"
    shutil.copytree(cremad[0], root)
    out = str(tmp_path / "shards") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/shards"
    data = DataConfig(corpus="cremad", src=str(root), shards=out, shard_size=2)

    def contents() -> dict[str, bytes]:
        fs, path = storage.filesystem(out)
        return {name: fs.cat_file(name) for name in fs.find(path) if not name.endswith(storage_lock.LOCK)}  # no output

    shards.build_shards(data, S3Config())
    before = contents()
    assert len(before) == 5  # the manifest, the rejects, 3 shards
    for path in root.rglob("*.*"):
        path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n")
    with pytest.raises(shards.PreprocessError) as caught:
        shards.build_shards(data, S3Config())
    assert "a Git LFS pointer, not media" in str(caught.value) and f"{out} was left as it was" in str(caught.value)
    assert contents() == before
    assert shards.read_manifest(out)[0].num_rows == 5


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file (0 bytes); copy the corpus again"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n",
     "a Git LFS pointer, not media; fetch the files (`git lfs pull`)"),
])
def test_an_empty_file_or_a_git_lfs_pointer_is_named_as_such(tmp_path, content, reason):
    from avdis.data import media

    path = tmp_path / "01-01-03-01-01-01-01.mp4"
    path.write_bytes(content)
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert caught.value.reason == reason


def test_an_audio_track_of_digital_silence_is_a_reject(tmp_path):
    from avdis.data import media

    path = tmp_path / "AudioWAV" / "1076_MTI_SAD_XX.wav"  # as the one silent file CREMA-D ships
    path.parent.mkdir()
    media.write_clip(path, None, 12, np.zeros(8000, dtype=np.float32), 16000)
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert caught.value.reason == "audio is digital silence (every sample is 0)"
    quiet = tmp_path / "quiet.wav"
    media.write_clip(quiet, None, 12, np.full(8000, 1e-3, dtype=np.float32), 16000)
    assert media.decode_audio(quiet, 16000).any()  # quiet is not silent



@pytest.mark.parametrize("entanglement, clips", [(0.0, 6), (0.8, 10)])
def test_the_generated_corpus_gives_every_emotion_its_share(tmp_path, entanglement, clips):
    """Clips left over after rounding go round the emotions. Always given to the first ones, 4 speakers x 6 clips
    of 4 emotions, balanced, held 8, 8, 4 and 4 clips of them."""
    import pandas as pd

    from avdis.config import SynthConfig
    from avdis.data import synth

    spec = SynthConfig(speakers=4, emotions=4, clips_per_speaker=clips, entanglement=entanglement, duration_s=0.3)
    truth = pd.read_csv(synth.generate(spec, tmp_path) / "ground_truth.csv")
    assert truth.groupby("emotion").size().tolist() == [clips] * 4


SCAN = ("import sys; from avdis.data import corpora; "
        "print([(r.source_path, r.reason) for r in corpora.scan('ravdess', sys.argv[1])[1]])")


@pytest.mark.parametrize("mode, where, why", [
    (0, "Actor_02", "cannot list this folder (Permission denied)"),
    (0o644, "Actor_02/01-01-03-01-01-01-02.mp4", "cannot read this file's details (Permission denied): give the "
                                                 "user running this search (x) permission on its folder"),
])
def test_a_folder_that_cannot_be_listed_is_a_reject_not_a_silent_gap(tmp_path, mode, where, why):
    """A folder the user cannot read (an actor copied with the wrong owner) was skipped by os.walk in silence: its
    clips were in neither the manifest nor the rejects. One the user can list but not enter (`chmod -R 644`) made
    the scan fail with a bare PermissionError. Run as a user without root's power to read anything."""
    touch(tmp_path / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    touch(tmp_path / "Actor_02" / "01-01-03-01-01-01-02.mp4").parent.chmod(mode)
    drop = [shutil.which("setpriv"), "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if drop and drop[0] is None:
        pytest.skip("running as root without setpriv (util-linux) to give up root's read-anything capability")
    try:
        out = subprocess.run([*drop, sys.executable, "-c", SCAN, str(tmp_path)], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    finally:
        (tmp_path / "Actor_02").chmod(0o755)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [(path, reason[: len(why)]) for path, reason in ast.literal_eval(out.stdout)] == [(str(tmp_path / where), why)]


BUILD = ("import sys, pyarrow.parquet as pq; from avdis.config import DataConfig, S3Config; "
         "from avdis.data import shards; "
         "summary = shards.build_shards(DataConfig(corpus='ravdess', src=sys.argv[1], shards=sys.argv[2]), "
         "S3Config()); "
         "print((summary['clips'], summary['up_to_date'], "
         "pq.read_table(sys.argv[2] + '/rejects.parquet').select(['source_path', 'reason']).to_pylist())); "
         "print(summary.get('rebuilt_because'), file=sys.stderr)")


def _build_unprivileged(tmp_path: Path, why: list[str] | None = None) -> tuple[int, bool, list[dict[str, str]]]:
    """(clips, up to date, rejects) of shards.build_shards of `tmp_path`/RAVDESS into `tmp_path`/shards, run as a user
    without root's power to read anything; its summary's `rebuilt_because` is added to `why`."""
    drop = [shutil.which("setpriv"), "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if drop and drop[0] is None:
        pytest.skip("running as root without setpriv (util-linux) to give up root's read-anything capability")
    out = subprocess.run([*drop, sys.executable, "-c", BUILD, str(tmp_path / "RAVDESS"), str(tmp_path / "shards")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr[-2000:]
    if why is not None:
        why.append(out.stderr.strip().splitlines()[-1])
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def _locked_ravdess(tmp_path: Path) -> Path:
    """A RAVDESS tree of 6 clips, one of whose files no one may read (its owner may write it); returns that file."""
    for k, actor in enumerate(("01", "02")):
        for i, emo in enumerate(("01", "03", "05")):
            frames, audio = clip_media(3 * k + i)  # each a recording of its own: files alike are one named twice
            write_clip(tmp_path / "RAVDESS" / f"Actor_{actor}" / f"01-01-{emo}-01-01-01-{actor}.mp4", frames, 12,
                       audio, SR)
    locked = tmp_path / "RAVDESS" / "Actor_02" / "01-01-05-01-01-01-02.mp4"
    locked.chmod(0o200)
    return locked


def test_a_file_the_user_cannot_read_is_told_to_be_given_read_access_not_to_be_copied_again(tmp_path):
    """A clip file without read permission for the user (a copy kept with its owner's mode 600, an archive extracted
    with sudo) is whole: it was rejected as "cannot open media (PermissionError: ...): not media ffmpeg reads, or
    damaged at its start: copy it again, or convert it", which sends the user to fetch a corpus they already have."""
    locked = _locked_ravdess(tmp_path)
    try:
        clips, _, rejects = _build_unprivileged(tmp_path)
    finally:
        locked.chmod(0o644)
    assert clips == 5
    assert rejects == [{
        "source_path": str(locked),
        "reason": "cannot read this file (Permission denied): give the user running this read (r) permission on it "
                  "(chmod a+r), or run as its owner"}]


def test_a_file_made_readable_after_a_build_makes_its_clip_on_the_next(tmp_path):
    """`chmod a+r`, as the reject of a file the user cannot read says, changes neither its size nor its modification
    time, which were all of it the fingerprint held: the rerun found the shards made without its clip up to date,
    and the clip stayed out until --force. The rebuild says so (it said a source file's size or time had changed)."""
    locked = _locked_ravdess(tmp_path)
    try:
        assert _build_unprivileged(tmp_path)[:2] == (5, False)
    finally:
        locked.chmod(0o644)
    why: list[str] = []
    assert _build_unprivileged(tmp_path, why) == (6, False, [])
    assert why == ["changed since the shards were made: the corpus (a clip added, removed or relabelled, or a source "
                   "file's size, time or whether the user can read it changed)"]
    assert _build_unprivileged(tmp_path) == (6, True, [])


def test_a_name_that_is_not_utf8_is_a_reject_and_the_rest_is_built(ravdess, tmp_path):
    """Names in another encoding (Latin-1 bytes, as unzip leaves a Windows archive's) made preprocessing fail before
    any clip was decoded, naming no file: the manifest, the shards and the rejects hold names as UTF-8 text."""
    root = shutil.copytree(ravdess[0], tmp_path / "RAVDESS", symlinks=True)
    stray = os.path.join(os.fsencode(root / "Actor_01"), b"notes_\xe9t\xe9.txt")
    folder = os.path.join(os.fsencode(root), b"Actor_\xe9")
    os.mkdir(folder)
    for path in (stray, os.path.join(folder, b"01-01-03-01-01-01-01.mp4")):
        Path(os.fsdecode(path)).write_bytes(b"")
    out = tmp_path / "shards"
    data = DataConfig(corpus="ravdess", src=str(root), shards=str(out), shard_size=4,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    summary = shards.build_shards(data, S3Config())
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    reasons = dict(zip(rejects.source_path, rejects.reason))
    not_utf8 = "name is not UTF-8 text (as unzip leaves a Windows archive's names); rename it"
    assert reasons[f"{root}/Actor_01/notes_\\xe9t\\xe9.txt"] == not_utf8
    assert reasons[f"{root}/Actor_\\xe9"] == f"{not_utf8}; its files are not read"
    clean = data.model_copy(update={"src": str(ravdess[0]), "shards": str(tmp_path / "clean")})
    shards.build_shards(clean, S3Config())
    built = {p: set(pq.read_table(p / "manifest.parquet").column("clip_id").to_pylist()) for p in (out, tmp_path / "clean")}
    assert summary["clips"] > 0 and built[out] == built[tmp_path / "clean"]  # the same clips as the tree without them


def test_media_files_a_users_ground_truth_leaves_out_are_rejects_whatever_their_container(tmp_path):
    (tmp_path / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\n")
    media = ["a.mov", "b.m4v", "c.mp3", "d.flac", "e.mka", "f.caf", "g.amr", "h.m4b", "i.mxf", "j.3g2"]
    for name in (*media, "notes.txt"):
        touch(tmp_path / "s1" / name)
    _, rejects = ground_truth.scan(tmp_path, sorted((tmp_path / "s1").iterdir()), audio_only=False)
    assert sorted(Path(r.source_path).name for r in rejects) == media  # a Matroska audio or a phone's AMR too
    assert {r.reason for r in rejects} == {"not listed in ground_truth.csv"}


def own_wavs(src: Path) -> Path:
    """A corpus of one's own: 6 .wav files of 2 speakers and its ground_truth.csv."""
    rows = ["file,clip_id,speaker,emotion"]
    for s in range(2):
        for c in range(3):
            _, audio = clip_media(3 * s + c)
            write_clip(src / f"s{s}_{c}.wav", None, 12, audio, SR)
            rows.append(f"s{s}_{c}.wav,s{s}c{c},s{s},{['happy', 'sad'][c % 2]}")
    (src / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    return src


def test_a_recording_a_corpus_of_ones_own_holds_twice_under_two_names_is_one_clip(tmp_path):
    """A copy made while organising the corpus (`s0_0.wav` copied to `sorted/s0_0 copy.wav`) and listed too was a
    second clip of the same bytes: within_speaker could put one in train and one in test, whose score then counted a
    clip the model had trained on. The copy is unused and noted; labelled otherwise, a fault naming both rows."""
    src = own_wavs(tmp_path / "corpus")
    copy, relabelled = src / "sorted" / "s0_0 copy.wav", src / "sorted" / "s1_1.wav"
    copy.parent.mkdir()
    shutil.copy(src / "s0_0.wav", copy)
    shutil.copy(src / "s1_0.wav", relabelled)
    broken = [src / "b.wav", src / "b again.wav"]  # a recording that does not decode, listed twice
    for path in broken:
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with open(src / "ground_truth.csv", "a") as fh:
        fh.write("sorted/s0_0 copy.wav,s0c0_copy,s0,happy\nsorted/s1_1.wav,s1c0_again,s1,sad\n"
                 "b.wav,b,s0,sad\nb again.wav,b_again,s0,sad\n")
    out = tmp_path / "out"
    summary = shards.build_shards(DataConfig(corpus="synthetic", src=str(src), shards=str(out), shard_size=4,
                                             modality="audio", split=SplitConfig(folds=3)), S3Config())
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(r["clip_id"] for r in manifest) == ["s0c0", "s0c1", "s0c2", "s1c0", "s1c1", "s1c2"]
    rejects = {r["source_path"]: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    assert sorted(rejects) == sorted(map(str, [*broken, copy, relabelled]))
    assert rejects[str(copy)] == {"source_path": str(copy), "unused": True, "reason": (
        f"duplicate of {src / 's0_0.wav'} (the same bytes; ground_truth.csv row 8, its row 2): one recording is one "
        "clip")}
    assert rejects[str(relabelled)]["reason"] == (
        f"ground_truth.csv row 9: the same bytes as {src / 's1_0.wav'} (row 5), labelled otherwise (emotion 'happy' "
        "there, 'sad' here): one recording is one clip; correct the label that is wrong and list the file once")
    assert not rejects[str(relabelled)]["unused"]
    assert rejects[str(broken[1])]["reason"].startswith("its clip could not be made (b.wav: ")
    assert not rejects[str(broken[1])]["unused"]
    assert (summary["clips"], summary["rejects"], summary["unused"]) == (6, 3, 1)
    assert summary["copies"].startswith("2 files listed in ground_truth.csv hold the same bytes as files listed "
                                        f"before them (first: {broken[1]}, duplicate of {broken[0]} ")


def test_shards_of_another_corpus_are_refused_before_training(tmp_path):
    """`avdis train data.corpus=ravdess data.src=...` with data.shards left at the shards of a corpus made before
    (the default's generated one): the manifest's corpus was never compared, so the run trained on those shards and
    recorded itself as a RAVDESS run."""
    from avdis.config import Config
    from avdis.data import prepare
    from avdis.errors import UsageError

    data = {"src": str(own_wavs(tmp_path / "own")), "shards": str(tmp_path / "shards"), "modality": "audio"}
    assert prepare.ensure_shards(Config.model_validate({"data": data}))["clips"] == 6
    other = Config.model_validate({"data": {**data, "corpus": "ravdess", "src": str(tmp_path / "RAVDESS")}})
    for check in (prepare.ensure_shards, lambda cfg: stream.open_dataset(cfg.data, cfg.s3)):
        with pytest.raises(UsageError, match=r"its shards were made with other settings: data.corpus='ravdess' "
                                             r"\(made with 'synthetic'\)"):
            check(other)


def test_a_name_typed_composed_finds_the_file_a_mac_named_decomposed(tmp_path):
    """`Zoë/é.wav` typed in a spreadsheet is composed (NFC); the same name written by a Mac, or unzipped from an archive
    it made, is decomposed (NFD): other bytes. Each such row was "listed but missing" and its file "not listed", both
    shown as the same name."""
    import unicodedata

    typed = "Zoë/colère_é.wav"
    touch(tmp_path / unicodedata.normalize("NFD", typed))
    touch(tmp_path / unicodedata.normalize("NFC", "André/joie.wav"))  # and the other way round
    (tmp_path / "ground_truth.csv").write_text(f"file,clip_id,speaker,emotion\n{typed},a,Zoë,angry\n"
                                               f"{unicodedata.normalize('NFD', 'André/joie.wav')},b,André,happy\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [(r.clip_id, r.source_path) for r in records] == [
        ("a", str(tmp_path / unicodedata.normalize("NFD", typed))),
        ("b", str(tmp_path / unicodedata.normalize("NFC", "André/joie.wav")))]
    assert rejects == []


def test_a_label_in_either_unicode_normal_form_is_one_label(tmp_path):
    """`Zoë` typed (composed, NFC) and `Zoë` taken from a name a Mac wrote (decomposed, NFD) were two speakers, which
    speaker_disjoint could put in different folds: one voice in train and in test; and `colère` two emotions."""
    import unicodedata

    rows = ["file,clip_id,speaker,emotion"]
    for i, form in enumerate(("NFC", "NFD")):
        touch(tmp_path / f"{i}.wav")
        rows.append(unicodedata.normalize(form, f"{i}.wav,c{i},Zoë,colère"))
    (tmp_path / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    labels = shards.Labels.of(records)
    assert labels.speakers == ["Zoë"] and labels.emotions == ["colère"] and len(records) == 2 and rejects == []


def test_speakers_that_differ_only_in_case_are_refused(tmp_path):
    """`Spk1` and `spk1` were two speakers, which speaker_disjoint could put in different folds: one voice in train
    and in test (emotions were already read in lower case)."""
    rows = ["file,clip_id,speaker,emotion"]
    for i, speaker in enumerate(("Spk1", "spk2", "spk1", "SPK1")):
        touch(tmp_path / f"{i}.wav")
        rows.append(f"{i}.wav,c{i},{speaker},happy")
    (tmp_path / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(corpora.CorpusError) as caught:
        corpora.scan("synthetic", tmp_path)
    assert "speakers 'Spk1' (row 2) and 'spk1' (row 4) and 'SPK1' (row 5) differ only in case" in str(caught.value)


def test_placeholder_speakers_and_emotions_in_a_ground_truth_are_rejects_naming_their_row(tmp_path):
    """MSP-Podcast's speaker `Unknown` (not identified) was one speaker holding every such clip: the identity head
    learnt it, the leakage probe counted it and speaker_disjoint put it in one fold (`Unknown` and `unknown` were
    refused as one speaker in two cases); IEMOCAP's emotion `xxx` and MSP-Podcast's `X` (annotators did not agree)
    were each a class, trained and scored as one. Each such row is a reject naming it, which the summary counts and
    words; a speaker `0` or `x` and an emotion `other` (a label annotators agreed on) are clips."""
    src = tmp_path / "corpus"
    labels = [("0", "happy"), ("0", "sad"), ("0", "other"), ("s1", "happy"), ("s1", "sad"), ("s1", "Other"),
              ("x", "happy"), ("x", "sad"), ("x", "neutral"), ("Unknown", "happy"), (" unknown ", "sad"),
              ("N/A", "angry"), ("s1", "xxx"), ("0", "X"), ("unk", "xxx")]
    rows = ["file,clip_id,speaker,emotion"]
    for i, (speaker, emotion) in enumerate(labels):
        _, audio = clip_media(i)
        write_clip(src / f"c{i}.wav", None, 12, audio, SR)
        rows.append(f"c{i}.wav,c{i},{speaker},{emotion}")
    (src / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    records, rejects = corpora.scan("synthetic", src)
    assert [(r.speaker, r.emotion) for r in records] == [(s, e.lower()) for s, e in labels[:9]]
    no_one = ("a speaker not identified is no one speaker, whom no split by speaker can hold; give each known speaker "
              "an id of their own and leave the clips of unknown speakers out (a real speaker's id written so, "
              "initials NA: write it another way in every row, spk_NA)")
    no_class = ("no agreed emotion (IEMOCAP's xxx, MSP-Podcast's X: annotators did not agree, or none was given) is "
                "no class; give the clip its emotion, or leave its row out (a class of the corpus's own named so: name "
                "it another way in every row)")
    assert [(Path(r.source_path).name, r.reason, r.unused) for r in rejects] == [
        ("c9.wav", f"ground_truth.csv row 11: placeholder speaker 'Unknown': {no_one}", False),
        ("c10.wav", f"ground_truth.csv row 12: placeholder speaker 'unknown': {no_one}", False),
        ("c11.wav", f"ground_truth.csv row 13: placeholder speaker 'N/A': {no_one}", False),
        ("c12.wav", f"ground_truth.csv row 14: placeholder emotion 'xxx': {no_class}", False),
        ("c13.wav", f"ground_truth.csv row 15: placeholder emotion 'X': {no_class}", False),
        ("c14.wav", f"ground_truth.csv row 16: placeholder speaker 'unk' and emotion 'xxx': {no_one}; and {no_class}",
         False)]
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), shard_size=4, modality="audio",
                      split=SplitConfig(folds=3))
    summary = shards.build_shards(data, S3Config())
    assert (summary["clips"], summary["rejects"], summary["speakers"]) == (9, 6, 3)
    assert summary["emotions"] == {"neutral": 1, "happy": 3, "sad": 3, "other": 2}
    assert summary["placeholders"] == (
        "6 rows of ground_truth.csv hold a placeholder where a label goes (4 a speaker's, 3 an emotion's), each a reject "
        f"(first: {src / 'c10.wav'}: ground_truth.csv row 12: placeholder speaker 'unknown': {no_one})")
    again = shards.build_shards(data, S3Config())  # a rerun on up-to-date shards words them too
    assert again["up_to_date"] and again["placeholders"] == summary["placeholders"]
    # a corpus all of whose rows are placeholders is told so, not only 'no usable clips'
    (src / "ground_truth.csv").write_text("\n".join([rows[0], *rows[10:]]) + "\n")
    with pytest.raises(shards.PreprocessError) as caught:
        shards.build_shards(data.model_copy(update={"shards": str(tmp_path / "out2")}), S3Config())
    assert "; 6 rows of ground_truth.csv hold a placeholder where a label goes (4 a speaker's, 3 an emotion's)" in str(
        caught.value)



def test_missing_values_as_programs_and_people_write_them_are_placeholders_and_ids_that_could_be_real_are_not(tmp_path):
    """pandas' `nan`, R's `NA`, Excel's `#N/A`, Python's `None`, SQL's `null`, a typed `?` or `--` were each a speaker or
    an emotion class; a speaker `x`, `na1` or `-1` and an emotion `o`, `oth` (agreed labels) or `xo` are labels."""
    speakers = ["nan", "NA", "#N/A", "None", "null", "?", "--", "undefined", "Unknown  ", "s1", "s1", "s1", "s1", "s1"]
    emotions = ["happy"] * 9 + ["n/a", "?", "-", "none", "xx"]
    kept = [("x", "o"), ("na1", "oth"), ("-1", "xo"), ("0", "Other")]
    rows = ["file,clip_id,speaker,emotion"]
    for i, (speaker, emotion) in enumerate([*zip(speakers, emotions), *kept]):
        touch(tmp_path / f"{i}.wav")
        rows.append(f"{i}.wav,c{i},{speaker},{emotion}")
    (tmp_path / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert sorted((r.speaker, r.emotion) for r in records) == sorted((s, e.lower()) for s, e in kept)
    assert sorted(r.reason.split(":")[1] for r in rejects) == sorted(
        [f" placeholder speaker {s.strip()!r}" for s in speakers[:9]] + [f" placeholder emotion {e!r}" for e in emotions[9:]])
    assert corpora.placeholders_found(rejects)[1:] == (9, 5)


def test_speakers_named_na_or_nan_as_a_name_is_written_are_speakers(tmp_path):
    """A speaker `Na` or `Nan` (given names: Chinese 娜 and 楠 in pinyin, English Nan) was taken for R's `NA` or
    pandas' `nan` and every clip of theirs rejected; written as a name is, capitalised, no program writes a missing
    value so. Written as programs write them (`NA`, `nan`, `NaN`), they are placeholders still."""
    labels = [("Na", "happy"), ("Nan", "sad"), ("Li", "happy"), ("NA", "sad"), ("nan", "happy"), ("NaN", "sad")]
    rows = ["file,clip_id,speaker,emotion"]
    for i, (speaker, emotion) in enumerate(labels):
        touch(tmp_path / f"{i}.wav")
        rows.append(f"{i}.wav,c{i},{speaker},{emotion}")
    (tmp_path / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert [r.speaker for r in records] == ["Na", "Nan", "Li"]
    assert corpora.placeholders_found(rejects)[1:] == (3, 0)


def test_a_placeholder_reject_says_how_to_keep_a_real_label_spelt_so(tmp_path):
    """A speaker `NA` (a person's initials, as SAVEE's speakers are named) or an emotion `x` (a corpus's own class of
    single letters) is a placeholder to the scan, whose reject told only to leave the clips out: a corpus whose label
    it is had no word on keeping them. The reason says to write it another way, and that way keeps them."""
    rows = ["file,clip_id,speaker,emotion", "0.wav,c0,NA,happy", "1.wav,c1,s1,x"]
    for i in range(2):
        touch(tmp_path / f"{i}.wav")
    (tmp_path / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    rejects = corpora.scan("synthetic", tmp_path)[1]
    assert [r.reason.rsplit("; ", 1)[1] for r in rejects] == [
        "give each known speaker an id of their own and leave the clips of unknown speakers out (a real speaker's id "
        "written so, initials NA: write it another way in every row, spk_NA)",
        "give the clip its emotion, or leave its row out (a class of the corpus's own named so: name it another way "
        "in every row)"]
    (tmp_path / "ground_truth.csv").write_text("\n".join([rows[0], "0.wav,c0,spk_NA,happy", "1.wav,c1,s1,x_"]) + "\n")
    records, rejects = corpora.scan("synthetic", tmp_path)
    assert ([(r.speaker, r.emotion) for r in records], rejects) == ([("spk_NA", "happy"), ("s1", "x_")], [])


def test_one_placeholder_row_is_counted_in_the_singular(tmp_path):
    """The error that no clip is usable said '1 rows of ground_truth.csv hold a placeholder ..., each a reject'."""
    src = tmp_path / "corpus"
    touch(src / "0.wav")
    (src / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\n0.wav,c0,Unknown,happy\n")
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), modality="audio")
    with pytest.raises(shards.PreprocessError) as caught:
        shards.build_shards(data, S3Config())
    assert "; 1 row of ground_truth.csv holds a placeholder where a label goes (1 a speaker's), a reject" in str(
        caught.value)


def test_an_error_that_every_clip_was_rejected_counts_the_placeholder_rows(tmp_path):
    """The error that no clip is usable counted ground_truth.csv's placeholder rows where none was listed with a
    label, but not where those listed so all failed to decode (an MSP-Podcast export of mostly `Unknown` speakers,
    its labelled files Git LFS pointers): it named its first rejects by file alone."""
    src = tmp_path / "corpus"
    for name in ("0.wav", "1.wav", "2.wav"):
        touch(src / name)
    (src / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\n0.wav,c0,Unknown,happy\n"
                                          "1.wav,c1,s1,xxx\n2.wav,c2,s1,happy\n")
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), modality="audio")
    with pytest.raises(shards.PreprocessError) as caught:
        shards.build_shards(data, S3Config())
    assert "every clip was rejected (3 files)" in str(caught.value)
    assert ("; 2 rows of ground_truth.csv hold a placeholder where a label goes (1 a speaker's, 1 an emotion's), "
            "each a reject" in str(caught.value))


def test_a_corpus_scanned_as_another_is_told_its_name(ravdess, cremad, tmp_path):
    """`avdis preprocess --src RAVDESS/` without --corpus (the config's default is the generated corpus) was told to
    write a ground_truth.csv for its files, and a CREMA-D copy preprocessed as RAVDESS that no file was named right."""
    with pytest.raises(corpora.CorpusError, match=r"ground_truth.csv: missing; .*; these are RAVDESS files: "
                                                  r"preprocess them with --corpus ravdess \(data.corpus=ravdess\)"):
        corpora.scan("synthetic", ravdess[0])
    data = DataConfig(corpus="ravdess", src=str(cremad[0]), shards=str(tmp_path / "out"))
    with pytest.raises(shards.PreprocessError, match=r"no usable ravdess clips; .*; these are CREMA-D files: "
                                                     r"preprocess them with --corpus cremad \(data.corpus=cremad\)"):
        shards.build_shards(data, S3Config())
    (tmp_path / "own" / "a.wav").parent.mkdir()
    (tmp_path / "own" / "a.wav").write_bytes(b"")
    with pytest.raises(corpora.CorpusError) as caught:  # files of neither: no corpus named
        corpora.scan("synthetic", tmp_path / "own")
    assert "--corpus" not in str(caught.value)


def test_training_on_shards_of_a_corpus_that_changed_since_says_so(tmp_path, capsys):
    """Labels fixed in ground_truth.csv, or data.src pointed at one's own corpus with data.shards left at the shards
    made before (the generated corpus's, by default): training used those shards, saying nothing, and only
    `avdis preprocess` would have made them again."""
    from avdis.config import Config
    from avdis.data import prepare

    data = {"src": str(own_wavs(tmp_path / "own")), "shards": str(tmp_path / "shards"), "modality": "audio"}
    prepare.ensure_shards(Config.model_validate({"data": data}))
    capsys.readouterr()
    assert prepare.ensure_shards(Config.model_validate({"data": data}))["up_to_date"]
    assert "warning" not in capsys.readouterr().err
    other = {**data, "src": str(own_wavs(tmp_path / "other"))}
    truth = tmp_path / "own" / "ground_truth.csv"
    truth.write_text(truth.read_text().replace("s0c0,s0,happy", "s0c0,s0,sad"))
    for changed in (data, other):
        assert prepare.ensure_shards(Config.model_validate({"data": changed}))["up_to_date"]
        assert (f"avdis: warning: {changed['src']}: not the corpus the shards at {data['shards']} were made from "
                "(a clip added, removed or relabelled, a source file's size, time or whether the user can read it "
                "changed, or another folder); this run trains on the shards as they are: `avdis preprocess` makes "
                "them again") in capsys.readouterr().err


def test_a_data_synth_other_than_the_shards_corpus_had_is_refused(tmp_path):
    """`avdis train data.synth.identity_cues=off` (a control run) with data.shards left at shards of the generated
    corpus made with identity cues trained on those, recorded as the control: shards kept no data.synth, and the
    settings were never compared. A config that leaves data.synth out takes the shards as they are."""
    import json

    import pyarrow.parquet as pq
    import yaml

    from avdis import config as C
    from avdis.data import prepare, synth
    from avdis.errors import UsageError

    spec = {"speakers": 2, "emotions": 2, "clips_per_speaker": 3, "duration_s": 0.5, "seed": 1}
    paths = [f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}"]
    given = [*paths, *(f"data.synth.{k}={v}" for k, v in spec.items())]
    prepare.ensure_shards(C.load(None, given))  # generated and preprocessed on first use
    assert shards.read_manifest(str(tmp_path / "shards"))[1]["synth"] == C.SynthConfig(**spec).model_dump()
    control = C.load(None, [*given, "data.synth.identity_cues=off"])
    for cfg in (control, C.with_overrides(control, {"train.probe_every": 1})):  # a sweep's driver: with_overrides
        with pytest.raises(UsageError, match=r"shards: its shards were made from a corpus generated with other "
                                             r"settings: data.synth.identity_cues='off' \(made with 'on'\); the run "
                                             r"would record this data.synth and train on that corpus\. Point "
                                             r"data.shards and data.src at new folders .* or give data.synth as they "
                                             r"were made \(or leave it out of the config\)"):
            prepare.ensure_shards(cfg)
    config = tmp_path / "other.yaml"  # a config file's corpus, pointed at these shards
    config.write_text(yaml.safe_dump({"data": {"synth": {"speakers": 6, "emotions": 2, "clips_per_speaker": 3,
                                                         "duration_s": 0.5, "seed": 1}}}))
    with pytest.raises(UsageError, match=r"settings: data.synth.speakers=6 \(made with 2\); the run"):
        prepare.ensure_shards(C.load(config, paths))
    for left_out in (C.load(None, paths), C.with_overrides(C.load(None, paths), {"train.probe_every": 1})):
        assert prepare.ensure_shards(left_out)["up_to_date"]  # the default data.synth, not given: the shards as made
        # and recorded as made: a sweep's records held the default corpus's settings
        assert prepare.as_made(left_out).data.synth == C.SynthConfig(**spec)
    assert prepare.as_made(control) is control  # given: checked, never replaced
    manifest = tmp_path / "shards" / shards.MANIFEST
    table = pq.read_table(manifest)
    meta = json.loads(table.schema.metadata[b"avdis"])
    del meta["synth"]["identity_cues"]  # a setting the generator gained after these shards: its default, as a config reads it
    pq.write_table(table.replace_schema_metadata({"avdis": json.dumps(meta)}), manifest)
    assert prepare.ensure_shards(prepare.as_made(C.load(None, paths)))["up_to_date"]
    del meta["synth"]  # shards made before the settings were kept: not checked
    pq.write_table(table.replace_schema_metadata({"avdis": json.dumps(meta)}), manifest)
    assert prepare.ensure_shards(control)["up_to_date"]
    assert prepare.as_made(C.load(None, paths)).data.synth == C.SynthConfig()  # nothing recorded to read
    # the corpus generated again with other settings: its files changed, so the shards are made again, recording them
    synth.generate(control.data.synth, tmp_path / "corpus")
    summary = shards.build_shards(control.data, S3Config())
    assert summary["rebuilt_because"].startswith("changed since the shards were made: the corpus")
    assert shards.read_manifest(str(tmp_path / "shards"))[1]["synth"]["identity_cues"] == "off"
    assert prepare.ensure_shards(control)["up_to_date"]


def test_shards_of_a_corpus_generated_when_identity_cues_was_a_bool_are_taken_as_made(tiny_corpus, tiny_shards,
                                                                                       tmp_path):
    """A corpus generated before identity_cues took words ('on', 'voice', 'off') recorded `true`, which a config reads
    as 'on': compared as recorded, a sweep whose config leaves data.synth out (given the shards' settings by
    `prepare.as_made`) was refused, saying identity_cues='on' was not what the corpus was 'made with True'; and the
    corpus itself was refused for generating or preprocessing ("identity_cues: True there, 'on' here")."""
    import json

    from conftest import TINY

    from avdis import config as C
    from avdis.data import prepare, synth
    from avdis.errors import UsageError

    corpus = tmp_path / "old_corpus"
    shutil.copytree(tiny_corpus, corpus)
    recorded = json.loads((corpus / synth.SETTINGS).read_text())
    (corpus / synth.SETTINGS).write_text(json.dumps({**recorded, "identity_cues": True}))
    assert synth.is_generated(C.SynthConfig(**TINY), corpus)
    prepare.generate_if_missing(DataConfig(src=str(corpus), synth=C.SynthConfig(**TINY)))  # taken as it is

    table = pq.read_table(Path(tiny_shards) / shards.MANIFEST)
    meta = json.loads(table.schema.metadata[b"avdis"])
    meta["synth"]["identity_cues"] = True  # as such a corpus's corpus.json holds it
    (tmp_path / "shards").mkdir()
    pq.write_table(table.replace_schema_metadata({"avdis": json.dumps(meta)}), tmp_path / "shards" / shards.MANIFEST)
    paths = [f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}"]
    made = prepare.as_made(C.load(None, paths))
    assert made.data.synth.identity_cues == "on" and made.data.synth.speakers == meta["synth"]["speakers"]
    assert prepare.ensure_shards(made)["up_to_date"]
    with pytest.raises(UsageError, match=r"data.synth.identity_cues='off' \(made with 'on'\)"):
        prepare.ensure_shards(C.with_overrides(made, {"data.synth.identity_cues": "off"}))


def test_a_video_whose_window_misses_the_sound_is_a_fault_where_its_fallback_makes_the_clip(tmp_path):
    """A .flv shorter than its clip's .wav (a download cut short that still decodes) centres the window where the
    .wav is silent, which fails naming the .wav; the .mp4 fallback, as long as the .wav, makes the clip with it. The
    .wav's fault was dropped (it made the clip) and the .flv was said to be unused, no fault, so nothing told of it;
    it is the .flv's fault, as it was before copies were tried."""
    from avdis.config import FeatureConfig

    root = tmp_path / "CREMA-D"
    stem, t = "1001_DFA_ANG_XX", np.arange(4 * SR) / SR
    audio = np.where(t > 1.3, 0.2 * np.sin(2 * np.pi * 180 * t), 0.0).astype(np.float32)  # silent for 1.3 s
    frames = clip_media(0, seconds=4.0)[0]
    flv, mp4 = root / "VideoFlash" / f"{stem}.flv", root / "VideoMP4" / f"{stem}.mp4"
    wav = root / "AudioWAV" / f"{stem}.wav"
    write_clip(flv, frames[:12], 12, None, SR)  # 1 s: the window is 0-1 s, all silence
    write_clip(mp4, frames, 12, None, SR)
    write_clip(wav, None, 12, audio, SR)
    (rec,), _ = corpora.scan("cremad", root)
    encoded, rejects = encode.encode_any(rec, FeatureConfig())
    assert encoded is not None and encoded[1]["video_path"] == str(mp4)
    assert [(r.source_path, r.unused) for r in rejects] == [(str(flv), False)]
    assert rejects[0].reason.startswith(f"{wav}: no sound in the clip's window (0.00-1.00 s)")
    assert rejects[0].reason.endswith(f"; the clip was taken from {mp4.name} and {wav.name} instead")


def test_files_of_one_size_are_copies_only_where_every_byte_is_the_same(tmp_path):
    """`sniff.same_bytes` compares files of one size by 4 KiB at their start, middle and end, then whole where those
    match: recordings with the same leading silence and samples, or small files, are still told apart by every byte."""
    from avdis.data.corpora.sniff import SAMPLE, same_bytes

    rng = np.random.default_rng(0)
    body = rng.integers(0, 256, 40 * SAMPLE, dtype=np.uint8).tobytes()
    files = {
        "a": body,
        "a copy": body,  # every byte the same
        "b": body[:SAMPLE * 10] + bytes([body[SAMPLE * 10] ^ 1]) + body[SAMPLE * 10 + 1:],  # the same 3 samples
        "c": bytes(20 * SAMPLE) + body[20 * SAMPLE:],  # another start
        "small": body[:100], "small copy": body[:100], "small other": body[1:101],
    }
    paths = {}
    for name, data in files.items():
        paths[name] = str(tmp_path / f"{name}.wav")
        Path(paths[name]).write_bytes(data)
    assert same_bytes(list(paths.values())) == {paths["a copy"]: paths["a"], paths["small copy"]: paths["small"]}


def test_a_file_is_said_to_be_inside_a_cell_run_across_lines_only_where_its_whole_name_is():
    """`a.wav` was said to be inside a cell that named `xa.wav` (a substring), sending the user to the wrong row."""
    from avdis.data.corpora.ground_truth import _inside

    spans = [(4, "emotion", 'sad\nclips/xa.wav,xa,s2,sad'), (7, "transcript", 'hello\n./clips/a.wav;a;s1;happy'),
             (9, "emotion", 'sad\r\n"clips\\b.wav"\tb\ts1\tsad')]
    assert "row 7's transcript cell" in _inside("clips/a.wav", spans)  # spelt ./clips/a.wav there
    assert "row 9's emotion cell" in _inside("clips/b.wav", spans)  # quoted, a backslash, tabs
    assert _inside("a.wav", spans) == "" and _inside("clips/x", spans) == ""
    assert "row 4's emotion cell" in _inside("clips/xa.wav", spans)


def test_a_row_naming_in_another_case_a_file_another_row_lists_is_told_so_not_to_write_it_the_same(tmp_path):
    """`clips/A.mp4` beside a row for `clips/a.mp4`: on a Mac or Windows, one file listed twice. It was told to write
    it as clips/a.mp4, which would be 'file already listed' next; whichever row comes first."""
    touch(tmp_path / "clips" / "a.mp4")
    for rows in ("clips/a.mp4,a,s1,happy\nclips/A.mp4,b,s1,sad\n", "clips/A.mp4,b,s1,sad\nclips/a.mp4,a,s1,happy\n"):
        (tmp_path / "ground_truth.csv").write_text(f"file,clip_id,speaker,emotion\n{rows}")
        _, rejects = corpora.scan("synthetic", tmp_path)
        line, other = (3, 2) if rows.startswith("clips/a") else (2, 3)
        assert [(r.source_path, r.reason) for r in rejects] == [
            (str(tmp_path / "clips" / "A.mp4"), f"ground_truth.csv row {line}: names clips/a.mp4, which row {other} "
                                                "lists, in another case (on a Mac or Windows one file listed twice); "
                                                "drop one of the two rows")]


def test_a_cremad_wav_whose_length_is_left_open_holds_its_samples_its_twin_is_no_clip(tmp_path):
    """A WAV's data chunk of size 0 is a length a streaming writer left open (`whole.wav_held`): ffmpeg reads its
    samples to the end of the file. `sniff.silent` and `sniff.no_recording` read it as holding no sample (silence, no recording),
    so two such files alike under two emotions were passed over by the check for one recording under two names: two
    clips of one sound. Its samples are those to the end of the file: a header alone, or zeros, is still none."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1001_DFA_ANG_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioWAV" / f"1006_TIE_{e}_XX.wav" for e in ("HAP", "NEU"))
    data = happy.read_bytes()
    at = data.index(b"data") + 4
    happy.write_bytes(data[:at] + bytes(4) + data[at + 4:])  # its size left open
    shutil.copy(happy, neutral)
    assert np.abs(decode_audio(happy, SR)).max() > 0.1  # ffmpeg hears the take
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [r.clip_id for r in records] == ["cremad-1001_DFA_ANG_XX"]
    assert {r.source_path for r in rejects if r.reason.startswith("the same bytes as")} == {str(happy), str(neutral)}
    samples = data[at + 4:]
    for tail, silent, none in ((b"", True, True), (bytes(len(samples)), True, False), (samples, False, False)):
        (tmp_path / "x.wav").write_bytes(data[:at] + bytes(4) + tail)
        assert (sniff.silent(str(tmp_path / "x.wav")), sniff.no_recording(str(tmp_path / "x.wav"))) == (
            silent, none)


@pytest.mark.parametrize("length", [bytes(4), b"\xff" * 4], ids=["0", "0xFFFFFFFF"])
def test_two_cremad_wav_headers_with_their_length_open_and_a_list_chunk_after_alike_are_no_recording(tmp_path, length):
    """A WAV header whose data chunk's length is left open (0, or 0xFFFFFFFF, which ffmpeg reads alike) with nothing
    after it but a LIST chunk a writer appended holds no sample, yet `sniff.no_recording` took the LIST's first byte, right
    after the data chunk's header, for one: two such files alike under two emotions were one recording under two names,
    and both clips were lost, though each .wav alone fails (ffmpeg reads the LIST's bytes as 17 samples, shorter than
    a window) and its AudioMP3/ file holds the take. Whole chunks to the end of the file are no samples."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
        write_clip(tmp_path / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
    happy, neutral = (tmp_path / "AudioWAV" / f"1006_TIE_{e}_XX.wav" for e in ("HAP", "NEU"))
    data = happy.read_bytes()
    at = data.index(b"data") + 4
    info = b"INFO" + b"ISFT" + (14).to_bytes(4, "little") + b"Lavf60.16.100\0"
    listed = b"LIST" + len(info).to_bytes(4, "little") + info
    happy.write_bytes(data[:at] + length + listed)
    shutil.copy(happy, neutral)
    records, rejects = corpora.scan("cremad", tmp_path)
    assert not [r for r in rejects if r.reason.startswith("the same bytes as")]
    assert [(r.clip_id, r.fallback[0][1]) for r in records] == [
        (f"cremad-1006_TIE_{e}_XX", str(tmp_path / "AudioMP3" / f"1006_TIE_{e}_XX.mp3")) for e in ("HAP", "NEU")]
    for tail, none in ((listed, True), (data[at + 4:] + listed, False), (listed + data[at + 4:], False)):
        (tmp_path / "x.wav").write_bytes(data[:at] + length + tail)  # samples before or after the LIST are some
        assert sniff.no_recording(str(tmp_path / "x.wav")) == none


def test_two_cremad_wavs_that_are_one_utf8_error_page_are_no_recording_their_clips_come_of_their_mp3s(tmp_path):
    """`sniff.no_recording` took a file for text only where its first 512 bytes are ASCII, but an error page a downloader
    saved in place of a .wav is often UTF-8 ("Not found – …"): two such pages alike (one server's page) were one
    recording under two names, and both clips were lost, though each .wav's AudioMP3/ file, tried when it does not
    decode, holds the take (until the 4 KiB floor went, a page that small was passed over). Text is UTF-8 with no
    control character but tabs and line breaks; no media file's header is (each holds a binary size or version)."""
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"{stem}.mp3", None, 12, audio, SR)
        page = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Not found – the file is gone</title>"
        touch(tmp_path / "AudioWAV" / f"{stem}.wav").write_bytes((page + " " * 600 + "</html>\n").encode())
    records, rejects = corpora.scan("cremad", tmp_path)
    assert [(r.clip_id, r.fallback[0][1]) for r in records] == [
        (f"cremad-1006_TIE_{e}_XX", str(tmp_path / "AudioMP3" / f"1006_TIE_{e}_XX.mp3")) for e in ("HAP", "NEU")]
    assert not [r for r in rejects if r.reason.startswith("the same bytes as")]
    for head in (b"RIFF\x24\x00\x00\x00WAVEfmt ", b"FLV\x01\x05", b"\x00\x00\x00\x20ftypisom", b"ID3\x04\x00",
                 b"\xff\xfb\x90\x64", "naïve\x7f".encode()):  # media headers and a control character: no text
        assert not sniff.is_text(head)
    # the worst case, real files' heads: a WAV's RIFF size can read as text ("ABCD", 1.1 GB), but its first chunk's
    # size (fmt's 16) holds NULs; an MP4's first box's size, an FLV's version, an MP3's frame sync or ID3 version alike
    write_clip(tmp_path / "x.wav", None, 12, audio, SR)
    write_clip(tmp_path / "x.mp4", frames, 12, audio, SR)
    wav = (tmp_path / "x.wav").read_bytes()
    for head in (b"RIFFABCD" + wav[8:512], *((tmp_path / name).read_bytes()[:512] for name in (
            "x.mp4", "VideoFlash/1006_TIE_NEU_XX.flv", "AudioMP3/1006_TIE_NEU_XX.mp3"))):
        assert not sniff.is_text(head)
    assert sniff.is_text(("a" + "é" * 300).encode()[:512])  # a character cut at its end is still text


def test_two_cremad_wavs_of_digital_silence_alike_are_each_told_silent_not_one_recording_named_twice(tmp_path):
    """Two AudioWAV/ files of digital silence as long as each other hold the same bytes: they were 'one recording under
    2 names, which is right is unknown', a label problem, while each alone is 'audio is digital silence', which says
    what is wrong. Silence is no recording to be named twice: each clip is made and decoding rejects it as silence
    (and its .flv, tried for its sound in the .wav's place, holds none)."""
    from avdis.config import FeatureConfig

    frames = clip_media(0, seconds=1.0)[0]
    for emotion in ("NEU", "SAD"):
        write_clip(tmp_path / "VideoFlash" / f"1076_MTI_{emotion}_XX.flv", frames, 12, None, SR)
        write_clip(tmp_path / "AudioWAV" / f"1076_MTI_{emotion}_XX.wav", None, 12, np.zeros(SR, np.float32), SR)
    assert not sniff.no_recording(str(tmp_path / "AudioWAV" / "1076_MTI_NEU_XX.wav"))  # samples, all 0
    records, rejects = corpora.scan("cremad", tmp_path)
    assert rejects == [] and [r.clip_id for r in records] == ["cremad-1076_MTI_NEU_XX", "cremad-1076_MTI_SAD_XX"]
    for rec in records:
        encoded, faults = encode.encode_any(rec, FeatureConfig())
        assert encoded is None
        stem = Path(rec.video_path).stem
        assert [(r.source_path, r.reason) for r in faults] == [
            (rec.audio_path, "audio is digital silence (every sample is 0)"),
            (rec.video_path, f"no audio stream, the clip's last source of sound: its AudioWAV/{stem}.wav failed, its "
                             f"AudioMP3/{stem}.mp3 is not in data.src; copy AudioWAV/{stem}.wav (whole) under data.src "
                             "to make its clip")]


@pytest.mark.parametrize("audio_only", [False, True])
def test_two_cremad_mp3s_of_digital_silence_alike_in_a_tree_without_audiowav_are_no_recording_named_twice(
        tmp_path, audio_only):
    """A copy without AudioWAV/ checks the .mp3 each clip's sound is taken from for one recording under two names, but
    only a .wav was told silent: two .mp3s of digital silence as long as each other hold the same bytes (an encoder
    writes silence alike), so both clips were lost as one recording under two names, though each video's own track,
    tried when its .mp3 decodes to silence, is a recording of its own. Each clip is made: its .mp3 is the silence
    reject it is alone, and its clip is taken from its video's track."""
    from avdis.config import FeatureConfig

    for i, emotion in enumerate(("NEU", "SAD")):
        frames, audio = clip_media(i, seconds=2.0)
        write_clip(tmp_path / "VideoFlash" / f"1076_MTI_{emotion}_XX.flv", frames, 12, audio, SR)
        write_clip(tmp_path / "AudioMP3" / f"1076_MTI_{emotion}_XX.mp3", None, 12, np.zeros_like(audio), SR)
    neutral, sad = (tmp_path / "AudioMP3" / f"1076_MTI_{e}_XX.mp3" for e in ("NEU", "SAD"))
    assert neutral.read_bytes() == sad.read_bytes() and not sniff.no_recording(str(neutral))
    records, rejects = corpora.scan("cremad", tmp_path, audio_only=audio_only)
    assert [r.clip_id for r in records] == ["cremad-1076_MTI_NEU_XX", "cremad-1076_MTI_SAD_XX"]
    assert [r for r in rejects if not r.unused] == []
    for rec in records:
        encoded, faults = encode.encode_any(rec, FeatureConfig())
        assert encoded is not None
        assert [(r.source_path, r.reason.split(";")[0]) for r in faults] == [
            (rec.audio_path, "audio is digital silence (every sample is 0)")]
    for rate in (16000, 44100):  # MPEG-2 and MPEG-1 frames, whose side info differ: silence told, a tone not
        for audio in (np.zeros(rate, np.float32), np.sin(np.arange(rate, dtype=np.float32) / 9)):
            write_clip(tmp_path / "x.mp3", None, 12, audio, rate)
            assert sniff.silent(str(tmp_path / "x.mp3")) == (not audio.any())


@pytest.mark.parametrize("between", [bytes(2048), b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10)],
                         ids=["zeros", "a second tag"])
def test_two_mp3s_of_silence_whose_frames_start_past_their_id3_tag_alike_are_no_recording_named_twice(
        tmp_path, between):
    """`walks.mp3_silent` read an .mp3 whose first bytes after its ID3v2 tag are no frame as no silence, but a tagger
    may leave zeros there or a second tag, which ffmpeg passes over to the frames after: two such files of silence alike
    were one recording under two names, and both clips were lost, though each video's own track is a recording of its
    own. The walk starts where the frames do, past such bytes: each clip is made."""
    tree = tmp_path / "CREMA-D"
    for i, emotion in enumerate(("NEU", "SAD")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tree / "VideoFlash" / f"1076_MTI_{emotion}_XX.flv", frames, 12, audio, SR)
    write_clip(tmp_path / "x.mp3", None, 12, np.zeros(SR, np.float32), SR)
    data = (tmp_path / "x.mp3").read_bytes()
    at = walks.id3_end(data[:10])
    for emotion in ("NEU", "SAD"):
        touch(tree / "AudioMP3" / f"1076_MTI_{emotion}_XX.mp3").write_bytes(data[:at] + between + data[at:])
    with pytest.raises(MediaError, match="digital silence"):
        decode_audio(tree / "AudioMP3" / "1076_MTI_NEU_XX.mp3", SR)
    records, rejects = corpora.scan("cremad", tree)
    assert [r.clip_id for r in records] == ["cremad-1076_MTI_NEU_XX", "cremad-1076_MTI_SAD_XX"]
    assert [r for r in rejects if not r.unused] == []
    write_clip(tmp_path / "x.mp3", None, 12, clip_media(0, seconds=1.0)[1], SR)
    data = (tmp_path / "x.mp3").read_bytes()
    (tmp_path / "x.mp3").write_bytes(data[:at] + between + data[at:])
    with open(tmp_path / "x.mp3", "rb") as fh:
        assert not walks.mp3_silent(fh)


def _silent_as_said_and_twins_no_clip(tmp_path: Path, cases: tuple[tuple[bytes, bool], ...], twin: bytes,
                                      other: bytes) -> None:
    """Each MP3 of `cases` is digital silence or not as said (`walks.mp3_silent`), and in a CREMA-D copy without
    AudioWAV/ whose first two .mp3s are `twin` (under two emotions) and the other two `other`, the twins are no clip:
    'the same bytes as' each other, where silence alike would not be one recording named twice."""
    for data, silent in cases:
        (tmp_path / "x.mp3").write_bytes(data)
        with open(tmp_path / "x.mp3", "rb") as fh:
            assert walks.mp3_silent(fh) == silent
    for i, stem in enumerate(("1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1076_MTI_NEU_XX", "1076_MTI_SAD_XX")):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(tmp_path / "CREMA-D" / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        touch(tmp_path / "CREMA-D" / "AudioMP3" / f"{stem}.mp3").write_bytes(twin if i < 2 else other)
    records, rejects = corpora.scan("cremad", tmp_path / "CREMA-D")
    assert [r.clip_id for r in records] == ["cremad-1076_MTI_NEU_XX", "cremad-1076_MTI_SAD_XX"]
    assert {r.source_path for r in rejects if r.reason.startswith("the same bytes as")} == {
        str(tmp_path / "CREMA-D" / "AudioMP3" / f"1006_TIE_{e}_XX.mp3") for e in ("HAP", "NEU")}


def test_an_mp3_of_silence_joined_to_a_take_is_no_silence_and_its_twin_under_another_name_is_no_clip(tmp_path):
    """`walks.mp3_silent` ended its walk at the first bytes that are no frame and called the file silence where the
    frames before them were: a silent lead-in joined to a take (`cat lead.mp3 take.mp3`, the lead's ID3v1 tag between
    the two), which ffmpeg decodes whole, read as silence, so two such files alike under two emotions were two clips of
    one sound. The walk goes past what is no frame to the frames after it, as a decoder does; an .mp3 of silence with
    tags at its end (APE, Lyrics3, ID3v1) or zeros a tool padded it with is still silence."""
    def frames(seconds: float, audio: np.ndarray) -> bytes:  # an .mp3's frames after its ID3v2 and Xing/Info ones
        write_clip(tmp_path / "x.mp3", None, 12, audio[: int(seconds * SR)], SR)
        data = (tmp_path / "x.mp3").read_bytes()
        at = walks.id3_end(data[:10])
        return data[at + walks.mpeg_frame_length(data[at : at + 4], data[at : at + 4]):]

    silence, take = frames(1.0, np.zeros(SR, np.float32)), frames(1.0, clip_media(0, seconds=1.0)[1])
    joined = silence + b"TAG" + b"lead-in".ljust(125, b"\0") + take
    (tmp_path / "joined.mp3").write_bytes(joined)
    assert np.abs(decode_audio(tmp_path / "joined.mp3", SR)[SR + SR // 4:]).max() > 0.1  # ffmpeg hears the take
    ape = b"APETAGEX" + (2000).to_bytes(4, "little") + (32).to_bytes(4, "little") + bytes(16)
    tags = ape + b"LYRICSBEGININD00002" + b"10" + b"000021LYRICS200" + b"TAG" + b"\xff\xf3 X".ljust(125, b"\0")
    _silent_as_said_and_twins_no_clip(tmp_path, ((joined, False), (take, False), (silence, True),
                                                 (silence + tags, True), (silence + bytes(300), True), (tags, False)),
                                      joined, silence + tags)


@pytest.mark.parametrize("rate", [44100, 8000])
@pytest.mark.parametrize("between", ["", "its own tag"])
def test_an_mp3_of_silence_joined_to_a_take_of_another_rate_is_no_silence_and_its_twin_is_no_clip(tmp_path, rate,
                                                                                                   between):
    """`walks.mp3_silent` followed the first stream of two MP3s joined end to end only: where the second is another
    stream (a take at 44.1 or 8 kHz after a 16 kHz lead-in, with or without its ID3v2 tag between), frames of the
    first do not start again in it, so the walk ended at the join and called the file silence, though ffmpeg decodes
    on through the take (`walks.Mp3Units`, e4c887e): two such files alike under two emotions were two clips of one
    sound. The walk now goes on as Mp3Units does; a lead-in of silence joined to silence at another rate is still
    silence."""
    def encoded(name: str, audio: np.ndarray, at: int) -> bytes:  # a whole .mp3 (ID3v2 tag, Info frame, frames)
        write_clip(tmp_path / name, None, 12, audio, at)
        return (tmp_path / name).read_bytes()

    def bare(data: bytes) -> bytes:  # an .mp3 without its ID3v2 tag
        return data if between else data[walks.id3_end(data[:10]):]

    tone = (0.2 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    lead = encoded("lead.mp3", np.zeros(SR, np.float32), SR)
    joined, hush = lead + bare(encoded("take.mp3", tone, rate)), lead + bare(encoded("hush.mp3", tone * 0, rate))
    (tmp_path / "joined.mp3").write_bytes(joined)
    assert np.abs(decode_audio(tmp_path / "joined.mp3", SR)[SR + SR // 4:]).max() > 0.1  # ffmpeg hears the take
    _silent_as_said_and_twins_no_clip(tmp_path, ((joined, False), (hush, True), (lead, True)), joined, hush)


@pytest.mark.parametrize("folder", ["AudioMP3", "AudioWAV"])
def test_two_cremad_files_never_filled_in_alike_are_no_recording_named_twice(tmp_path, folder):
    """The corpus held twice, two of its first copy's sound files never filled in (a downloader that sets a file's size
    first, then died: zero bytes throughout), as long as each other: they hold the same bytes, so both clips were lost as
    'one recording under 2 names', though each whole copy, tried in its place, is a recording of its own (an AudioMP3/
    file is a clip's sound in a copy without AudioWAV/). A file of zero bytes is no recording, as silence is not: each
    clip is made of its whole copy."""
    from avdis.config import FeatureConfig

    suffix = {"AudioMP3": ".mp3", "AudioWAV": ".wav"}[folder]
    stems = ("1001_DFA_ANG_XX", "1002_IEO_HAP_XX")
    for i, stem in enumerate(stems):
        for copy in ("a", "b"):
            write_clip(tmp_path / copy / folder / f"{stem}{suffix}", None, 12, clip_media(i, seconds=2.0)[1], SR)
        empty = tmp_path / "a" / folder / f"{stem}{suffix}"
        empty.write_bytes(bytes(empty.stat().st_size))
    records = corpora.scan("cremad", tmp_path, audio_only=True)[0]
    assert [r.clip_id for r in records] == [f"cremad-{stem}" for stem in stems]
    for rec in records:
        encoded = encode.encode_any(rec, FeatureConfig())[0]
        assert encoded is not None and encoded[1]["audio_path"] == str(
            tmp_path / "b" / folder / f"{rec.clip_id.removeprefix('cremad-')}{suffix}")


def test_a_cremad_flv_with_no_video_track_is_told_to_be_copied_again_and_a_corpus_of_none_to_use_audio_alone(tmp_path):
    """One VideoFlash/ file holding no video track among others that have one (a damaged copy) was told "for a corpus
    of audio alone, preprocess with data.modality=audio": advice for the whole corpus, which has video, given for one
    file. That file is now told to be copied again; a CREMA-D copy none of whose videos holds a video track is still
    told of data.modality=audio, once, for the corpus."""
    from avdis.config import FeatureConfig

    root = tmp_path / "CREMA-D"
    stems = ("1001_DFA_ANG_XX", "1001_IEO_HAP_XX")
    for i, stem in enumerate(stems):
        frames, audio = clip_media(i, seconds=1.0)
        write_clip(root / "VideoFlash" / f"{stem}.flv", None if i == 0 else frames, 12, audio, SR)
        write_clip(root / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
    lone, fine = corpora.scan("cremad", root)[0]
    assert encode.encode_any(fine, FeatureConfig())[0] is not None
    encoded, rejects = encode.encode_any(lone, FeatureConfig())
    assert encoded is None
    assert [(r.source_path, r.reason) for r in rejects] == [
        (lone.video_path, "holds no video track: copy it again"),
        (lone.audio_path, f"its clip could not be made ({stems[0]}.flv: holds no video track: copy it again)")]
    write_clip(root / "VideoFlash" / f"{stems[1]}.flv", None, 12, clip_media(1, seconds=1.0)[1], SR)
    data = DataConfig(corpus="cremad", src=str(root), shards=str(tmp_path / "out"))
    with pytest.raises(shards.PreprocessError) as exc:
        shards.build_shards(data, S3Config())
    assert "holds no video track: copy it again" in str(exc.value)
    assert ("; none of its videos holds a video track; its audio files make clips of audio alone: preprocess them with "
            "data.modality=audio (and train with model.modality=audio)") in str(exc.value)
