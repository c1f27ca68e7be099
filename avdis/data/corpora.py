"""Corpus adapters: a source folder -> clip records, and rejects for files that can't be used.

Labels are canonical (`avdis.config.EMOTIONS`); `speaker` is the corpus's own actor ID as
written in the file name. Nothing is decoded here: media problems surface in preprocessing.

RAVDESS (`Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4`, audio-only files also `.wav`):
    MM modality 01 audio+video, 02 video only, 03 audio only; VV vocal channel 01 speech,
    02 song; EE emotion 01 neutral 02 calm 03 happy 04 sad 05 angry 06 fearful 07 disgust
    08 surprised; II intensity 01/02; SS statement; RR repetition; AA actor (odd male).
    One clip = the fields after MM. A full-AV file (01) is used when present; otherwise
    a video-only (02) and an audio-only (03) file of the same clip are paired. A clip is
    never counted twice; unpaired or surplus files become rejects with the reason.
CREMA-D (`VideoFlash/<actor>_<sentence>_<EMO>_<level>.flv` + `AudioWAV/<same stem>.wav`):
    EMO in ANG DIS FEA HAP NEU SAD; level LO MD HI XX. Video and audio are paired by stem.
synthetic (`avdis.data.synth`): labels from the corpus's `ground_truth.csv`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from avdis.config import EMOTIONS
from avdis.errors import AvdisError


class CorpusError(AvdisError):
    """A source folder that holds no usable corpus."""


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    corpus: str
    speaker: str
    emotion: str
    source_path: str  # the file that names the clip (the video where there is one)
    audio_path: str
    video_path: str
    meta: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Reject:
    source_path: str
    reason: str


Scan = tuple[list[ClipRecord], list[Reject]]

RAVDESS_EMOTIONS = dict(zip(["01", "02", "03", "04", "05", "06", "07", "08"],
                            ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]))
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_RAVDESS_NAME = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})$")
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_MEDIA = {".mp4", ".wav", ".flv", ".avi", ".mkv", ".webm"}


def _files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))


def scan_ravdess(src: Path) -> Scan:
    clips: dict[str, dict[str, Path]] = {}
    fields_of: dict[str, tuple[str, ...]] = {}
    rejects: list[Reject] = []
    for path in _files(src):
        if path.suffix.lower() not in (".mp4", ".wav"):
            rejects.append(Reject(str(path), "not a RAVDESS media file (.mp4 or .wav)"))
            continue
        m = _RAVDESS_NAME.match(path.stem)
        if not m:
            rejects.append(Reject(str(path), "file name is not MM-VV-EE-II-SS-RR-AA with RAVDESS codes"))
            continue
        modality, *rest = m.groups()
        actor = rest[-1]
        if path.parent.name != f"Actor_{actor}":
            rejects.append(Reject(str(path), f"actor {actor} in the name but folder is {path.parent.name!r}"))
            continue
        if path.suffix.lower() == ".wav" and modality != "03":
            rejects.append(Reject(str(path), f"modality {modality} in a .wav file (only 03 is audio-only)"))
            continue
        key = "-".join(rest)
        slot = clips.setdefault(key, {})
        if modality in slot:
            rejects.append(Reject(str(path), f"duplicate of {slot[modality]} (same clip, same modality)"))
            continue
        slot[modality] = path
        fields_of[key] = tuple(rest)
    records = []
    for key, slot in sorted(clips.items()):
        vocal, emo, intensity, statement, repetition, actor = fields_of[key]
        if "01" in slot:
            audio = video = slot["01"]
            rejects.extend(Reject(str(slot[m]), f"clip already used from full-AV file {slot['01'].name}")
                           for m in ("02", "03") if m in slot)
        elif "02" in slot and "03" in slot:
            video, audio = slot["02"], slot["03"]
        else:
            only = next(iter(slot.values()))
            missing = "audio-only (03)" if "02" in slot else "video-only (02)"
            rejects.append(Reject(str(only), f"no full-AV file and no {missing} partner for this clip"))
            continue
        records.append(ClipRecord(
            clip_id=f"ravdess-{key}", corpus="ravdess", speaker=actor, emotion=RAVDESS_EMOTIONS[emo],
            source_path=str(video), audio_path=str(audio), video_path=str(video),
            meta={"vocal_channel": "speech" if vocal == "01" else "song", "intensity": intensity,
                  "statement": statement, "repetition": repetition},
        ))
    return records, rejects


def scan_cremad(src: Path) -> Scan:
    videos: dict[str, Path] = {}
    audios: dict[str, Path] = {}
    rejects: list[Reject] = []
    for path in _files(src):
        folder, suffix = path.parent.name, path.suffix.lower()
        if (folder, suffix) not in (("VideoFlash", ".flv"), ("AudioWAV", ".wav")):
            rejects.append(Reject(str(path), "expected VideoFlash/*.flv or AudioWAV/*.wav"))
            continue
        m = _CREMAD_NAME.match(path.stem)
        if not m or m.group(3) not in CREMAD_EMOTIONS:
            rejects.append(Reject(str(path), "file name is not <actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<level>"))
            continue
        (videos if suffix == ".flv" else audios)[path.stem] = path
    records = []
    for stem in sorted(videos.keys() | audios.keys()):
        if stem not in audios:
            rejects.append(Reject(str(videos[stem]), f"no AudioWAV/{stem}.wav to pair with"))
            continue
        if stem not in videos:
            rejects.append(Reject(str(audios[stem]), f"no VideoFlash/{stem}.flv to pair with"))
            continue
        actor, sentence, emo, level = _CREMAD_NAME.match(stem).groups()
        records.append(ClipRecord(
            clip_id=f"cremad-{stem}", corpus="cremad", speaker=actor, emotion=CREMAD_EMOTIONS[emo],
            source_path=str(videos[stem]), audio_path=str(audios[stem]), video_path=str(videos[stem]),
            meta={"sentence": sentence, "level": level},
        ))
    return records, rejects


def scan_synthetic(src: Path) -> Scan:
    truth = src / "ground_truth.csv"
    if not truth.is_file():
        raise CorpusError(f"{truth}: missing; generate the corpus with `avdis synth --out {src}`")
    records, rejects, listed = [], [], set()
    with open(truth, newline="") as fh:
        for row in csv.DictReader(fh):
            path = src / row["file"]
            listed.add(path)
            if row["emotion"] not in EMOTIONS:
                rejects.append(Reject(str(path), f"emotion {row['emotion']!r} is not one of {list(EMOTIONS)}"))
            elif not path.is_file():
                rejects.append(Reject(str(path), "listed in ground_truth.csv but missing"))
            else:
                records.append(ClipRecord(
                    clip_id=row["clip_id"], corpus="synthetic", speaker=row["speaker"], emotion=row["emotion"],
                    source_path=str(path), audio_path=str(path), video_path=str(path),
                    meta={"intensity": row["intensity"]},
                ))
    rejects.extend(Reject(str(p), "not listed in ground_truth.csv")
                   for p in _files(src) if p.suffix.lower() in _MEDIA and p not in listed)
    return records, rejects


ADAPTERS: dict[str, Callable[[Path], Scan]] = {  # keyed by config.CORPORA
    "ravdess": scan_ravdess,
    "cremad": scan_cremad,
    "synthetic": scan_synthetic,
}


def scan(corpus: str, src: str | Path) -> Scan:
    """Clip records (sorted by clip_id) and rejects for the corpus under `src`."""
    root = Path(src)
    if not root.is_dir():
        raise CorpusError(f"{root}: source folder does not exist")
    if corpus not in ADAPTERS:
        raise CorpusError(f"unknown corpus {corpus!r}; choose one of {sorted(ADAPTERS)}")
    records, rejects = ADAPTERS[corpus](root)
    if not records and not rejects:
        raise CorpusError(f"{root}: empty folder, no {corpus} files found")
    return sorted(records, key=lambda r: r.clip_id), rejects
