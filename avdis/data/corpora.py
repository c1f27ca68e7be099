"""Corpus adapters: a source folder -> clip records, and rejects for files that can't be used.

RAVDESS and CREMA-D labels are canonical (`avdis.config.EMOTIONS`); `speaker` is the corpus's own
actor ID as written in the file name. Nothing is decoded here: media problems surface in preprocessing.

RAVDESS (`Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4`, audio-only files also `.wav`):
    MM modality 01 audio+video, 02 video only, 03 audio only; VV vocal channel 01 speech,
    02 song; EE emotion 01 neutral 02 calm 03 happy 04 sad 05 angry 06 fearful 07 disgust
    08 surprised; II intensity 01/02; SS statement; RR repetition; AA actor (odd male).
    One clip = the fields after MM. A full-AV file (01) is used when present, its 02 + 03
    pair (if any) kept as the fallback should it not decode (a 02 or 03 paired with the 01's
    other track after it: a 01 whose sound or picture alone is broken); otherwise a video-only (02)
    and an audio-only (03) file of the same clip are paired. A clip is never counted twice;
    unpaired or surplus files become rejects with the reason, but a copy of a file its clip is made of
    (the same name and size elsewhere in the tree: a corpus held twice) is unused; a copy of either size is
    the clip's file should the one found first not decode (RAVDESS and CREMA-D alike).
CREMA-D (`VideoFlash/<actor>_<sentence>_<EMO>_<level>.flv` + `AudioWAV/<same stem>.wav`):
    EMO in ANG DIS FEA HAP NEU SAD; level LO MD HI XX (X, as one file in some copies, is XX).
    Video and audio are paired by stem. A `VideoMP4/<same stem>.mp4` (the .flv converted, as many
    users keep it) is the clip's video where there is no .flv, and the fallback where the .flv does not decode.
    Where the .wav does not decode (cut short, zeros, its header alone), the clip's audio is a copy of it elsewhere in
    the tree, else its `AudioMP3/<same stem>.mp3` (the same recording, which is otherwise unused), else the video's own
    track (data.modality=audio too);
    the .wav stays a reject naming what its clip was taken from. A copy without AudioWAV/ (the corpus's repository
    stores each folder apart) makes each clip's sound of its .mp3 (or a copy of it elsewhere in the tree), else of
    its video's own track (data.modality=audio: each .mp3, else video, is a clip); in a tree holding AudioWAV/ a video
    without its .wav is a reject.
    Two AudioWAV files of the same bytes (one recording under two names; in a copy without AudioWAV/, the .mp3 or
    video files clips' sound is taken from) make no clip, however short; files of digital silence alike (or never
    filled in: zero bytes throughout; or a header alone, a Git LFS pointer) are no recording, each a reject of its own
    when decoded.
synthetic (`avdis.data.synth`), or a corpus of the user's own: labels from its `ground_truth.csv`, any
    emotion word (case ignored: IEMOCAP's `frustrated` is as good a class as `happy`). A listed file holding the
    same bytes as one listed before it (a copy under another name) is that one's copy, no clip of its own. A row
    whose speaker or emotion is a placeholder (MSP-Podcast's speaker `Unknown`, IEMOCAP's emotion `xxx`) is a reject.

Files are found through symlinked folders (each real folder once, under its own name where
the source tree holds it), hidden names and the output folder skipped; a link whose target is
missing is a reject, not a silent gap.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import struct
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable

from avdis.data import walks
from avdis.errors import AvdisError


GROUND_TRUTH = "ground_truth.csv"  # a corpus's labels, one row per clip (what the synthetic generator writes)


class CorpusError(AvdisError):
    """A source folder that holds no usable corpus: bad input, found before any work."""

    exit_code = 2


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    corpus: str
    speaker: str
    emotion: str
    source_path: str  # the file that names the clip (the video where there is one and it is used)
    audio_path: str
    video_path: str | None  # None: the clip's audio only (data.modality=audio)
    meta: dict[str, str] = field(default_factory=dict, compare=False)
    # (video, audio) pairs of the clip's own files, tried in turn only when the files above cannot be decoded (RAVDESS:
    # the 02 + 03 files behind a full-AV 01 file, which a bad download may have cut short, then a 02 or 03 with the
    # 01's other track; with data.modality=audio, no video and the 01 file's track behind a 03 file; CREMA-D: the .mp4
    # with the .wav behind the .flv, then each video with the AudioMP3/ file and with its own track behind the .wav)
    fallback: tuple[tuple[str | None, str], ...] = ()
    # other files of the clip that the scan marked unused (a video under data.modality=audio, a copy of the same
    # size, a file of the same bytes listed again in a ground_truth.csv, CREMA-D's AudioMP3/ file): no part of the
    # clip made (but from a fallback pair), but rejects of their own, naming why, should it not be made
    spare: tuple[str, ...] = ()
    # (video, audio) files of the same clip tried in turn should those above not decode: the pairs with a copy
    # (elsewhere in the tree) in place of one of the files, as the copy found first may be the broken one
    copies: tuple[tuple[str | None, str], ...] = ()


@dataclass(frozen=True)
class Reject:
    source_path: str
    reason: str
    # a file its clip was made without (another copy of it: RAVDESS's 02 + 03 files beside its full-AV 01 file, CREMA-D's
    # MP3s), or one that is no media (`no_media`: Thumbs.db, a README), no fault: counted apart, so a whole corpus's
    # worth of them does not hide the files that are broken
    unused: bool = False


Scan = tuple[list[ClipRecord], list[Reject]]
Adapter = Callable[[Path, list[Path], bool], Scan]  # (source folder, its files, audio only) -> records, rejects

RAVDESS_EMOTIONS = dict(zip(["01", "02", "03", "04", "05", "06", "07", "08"],
                            ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]))
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_RAVDESS_NAME = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})$")
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_(LO|MD|HI|XX|X)$")
# some copies of the corpus name one file AudioWAV/1040_ITH_SAD_X.wav (its video is ..._XX.flv): X is XX
# what a corpus of the user's own may hold as clips: such a file that ground_truth.csv does not list is a reject
_MEDIA = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".f4v", ".wmv", ".asf", ".mpg", ".mpeg", ".vob",
          ".ts", ".mts", ".m2ts", ".mxf", ".dv", ".3gp", ".3g2", ".ogv", ".wav", ".flac", ".mp3", ".m4a", ".m4b", ".aac",
          ".ogg", ".oga", ".opus", ".wma", ".aif", ".aiff", ".au", ".mka", ".caf", ".amr"}
# what may hold a corpus's clips packed (an actor's download not yet extracted): never taken for a file that is no media
_ARCHIVES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar"}


def no_media(path: str | Path) -> bool:
    """Whether a file is plainly no media: none of its name's suffixes names a media container or an archive
    (Thumbs.db, desktop.ini, a README, a spreadsheet; not `a.mp4.part`, a download cut short). In a RAVDESS or CREMA-D
    tree such a file is unused, no fault, and no part of the shards' fingerprint: an OS writes some on its own."""
    return not {suffix.lower() for suffix in Path(path).suffixes} & (_MEDIA | _ARCHIVES)


def _packed(path: Path) -> bool:
    """Whether a file is an archive (an actor's download, Video_Speech_Actor_01.zip, not yet extracted)."""
    return path.suffix.lower() in _ARCHIVES


_PACKED = "an archive: the files packed in it are not read; extract it, anywhere under the source folder"


def _files(src: Path, skip: Path | None = None) -> tuple[list[Path], list[Reject]]:
    """Every file under `src` (sorted) and the rejects of the walk (folders it cannot list, broken links, devices:
    none is left out in silence, as `os.walk` would by itself). Symlinked folders are
    entered once per real folder, under its own name where the tree holds it (a link into the tree is not followed;
    one to elsewhere is, under the link's name), so a link loop ends and a folder linked twice is not counted twice;
    hidden names and the folder `skip` (a preprocess output inside the source) are left out."""
    top = os.path.realpath(src)
    seen = {top} | ({os.path.realpath(skip)} if skip else set())
    files: list[Path] = []
    rejects: list[Reject] = []
    def unlisted(exc: OSError) -> None:
        rejects.append(Reject(str(exc.filename), f"cannot list this folder ({exc.strerror or exc}): its files are "
                                                 "not read; give the user running this access to it"))

    for root, dirs, names in os.walk(src, followlinks=True, onerror=unlisted):
        kept = []
        for name in sorted(dirs, key=lambda d: (os.path.islink(os.path.join(root, d)), d)):  # a folder before a link
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if name.startswith(".") or real in seen or (os.path.islink(path) and _walked(real, top)):
                continue
            seen.add(real)
            if _readable(name):
                kept.append(name)
            else:
                rejects.append(Reject(_shown(path), f"{_NOT_UTF8}; its files are not read"))
        dirs[:] = kept
        for name in names:
            path = Path(root) / name
            if name.startswith("."):
                continue
            if not _readable(name):
                rejects.append(Reject(_shown(path), _NOT_UTF8))
                continue
            try:
                regular = path.is_file()
            except OSError as exc:  # a folder that can be listed but not entered (no x permission)
                rejects.append(Reject(str(path), f"cannot read this file's details ({exc.strerror or exc}): give the "
                                                 "user running this search (x) permission on its folder"))
                continue
            if regular:
                files.append(path)
            elif path.is_symlink():
                rejects.append(Reject(str(path), f"symbolic link to {os.readlink(path)!r}, which does not exist"))
            else:
                rejects.append(Reject(str(path), "not a regular file"))
    return sorted(files), rejects


def _walked(real: str, top: str) -> bool:
    """Whether the walk of the real folder `top` reaches the real folder `real` under its own name: a link to it is
    then not followed, as os.walk, being top-down, may meet a link before the folder (CREMA-D's `wav -> raw/AudioWAV`
    read as `wav/` would make every file a reject). A folder in a hidden one is not walked: a link is its only way in."""
    if os.path.commonpath([real, top]) != top:
        return False
    return not any(part.startswith(".") for part in Path(os.path.relpath(real, top)).parts)


_NOT_UTF8 = "name is not UTF-8 text (as unzip leaves a Windows archive's names); rename it"


def _readable(name: str) -> bool:
    """Whether a file name is UTF-8 text: the manifest, the shards and the reports hold names as UTF-8."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_file(path: Path) -> bool:
    """Whether `path` is a regular file; False where its folder cannot be entered (the walk names that folder)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _shown(path: str | Path) -> str:
    """A path whose name is not UTF-8, written with its undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def scan_ravdess(src: Path, files: list[Path], audio_only: bool) -> Scan:
    clips: dict[str, dict[str, Path]] = {}
    fields_of: dict[str, tuple[str, ...]] = {}
    rejects: list[Reject] = []
    copies: dict[str, list[int]] = {}  # clip -> its files' copies, by their place in `rejects` (`_duplicate`)
    others: dict[str, list[tuple[Path, Path]]] = {}  # clip -> (file, its copy)
    for path in files:
        if path.suffix.lower() not in (".mp4", ".wav"):
            rejects.append(Reject(str(path), _PACKED if _packed(path) else "not a RAVDESS media file (.mp4 or .wav)",
                                  unused=no_media(path)))
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
            _duplicate(path, slot[modality], rejects, copies.setdefault(key, []))
            others.setdefault(key, []).append((slot[modality], path))
            continue
        slot[modality] = path
        fields_of[key] = tuple(rest)
    records = []
    for key, slot in sorted(clips.items()):
        fallback: tuple[tuple[str | None, str], ...] = ()
        if audio_only:  # the audio-only file, else the full-AV file's track; a video-only file is no use
            if "03" not in slot and "01" not in slot:
                rejects.append(Reject(str(slot["02"]), "video-only (02) file, and data.modality=audio uses only "
                                                       "audio: no 01 or 03 file of this clip"))
                continue
            audio = slot.get("03") or slot["01"]
            # the 01 file's track should the 03 file not decode: decoding says which was used
            fallback = ((None, str(slot["01"])),) if "03" in slot and "01" in slot else ()
            taken = audio.name if not fallback else f"{audio.name} or {slot['01'].name}"
            spare = (str(slot["02"]),) if "02" in slot else ()
            rejects.extend(Reject(p, f"clip taken from {taken} (data.modality=audio)", unused=True) for p in spare)
            spare += _copies_unused(rejects, copies.get(key, []))
            tries = _with_copies(((None, str(audio)), *fallback), others.get(key, []))
            records.append(_ravdess_record(key, fields_of[key], audio, audio, None, fallback, spare, tries))
            continue
        spare: tuple[str, ...] = ()
        mixed: list[tuple[str, str]] = []  # a 02 or 03 with the 01's other track: a 01 whose sound or picture fails
        if "01" in slot:
            audio = video = slot["01"]
            mixed += [(str(slot["01"]), str(slot["03"]))] if "03" in slot else []
            mixed += [(str(slot["02"]), str(slot["01"]))] if "02" in slot else []
            if "02" in slot and "03" in slot:  # those two after it, should one of the 02 and 03 not decode either
                fallback = ((str(slot["02"]), str(slot["03"])),)
            elif mixed:
                fallback = (mixed.pop(),)
        elif "02" in slot and "03" in slot:
            video, audio = slot["02"], slot["03"]
        else:
            only = next(iter(slot.values()))
            missing = "audio-only (03)" if "02" in slot else "video-only (02)"
            rejects.append(Reject(str(only), f"no full-AV file and no {missing} partner for this clip"))
            continue
        spare += _copies_unused(rejects, copies.get(key, []))
        fallback += tuple(mixed)
        tries = _with_copies(((str(video), str(audio)), *fallback), others.get(key, []))
        records.append(_ravdess_record(key, fields_of[key], video, audio, video, fallback, spare, tries))
    return records, rejects


def _duplicate(path: Path, first: Path, rejects: list[Reject], copies: list[int]) -> None:
    """Reject `path`, a second file of the clip and modality of `first`, which the caller keeps as the clip's further
    file (`_with_copies`); a copy of it (the same size, not empty: a tree holding the corpus twice, as Kaggle's RAVDESS
    holds its Actor_XX folders at its top and again under audio_speech_actors_01-24/) has its place kept in `copies`,
    to be marked unused should the clip be made. The reason as it was, which shards made before are fingerprinted
    with."""
    try:
        same = os.stat(path).st_size == os.stat(first).st_size > 0
    except OSError:
        same = False
    if same:
        copies.append(len(rejects))
    rejects.append(Reject(str(path), f"duplicate of {first} (same clip, same modality)"))


def _with_copies(pairs: tuple[tuple[str | None, str], ...],
                 others: list[tuple[Path, Path]]) -> tuple[tuple[str | None, str], ...]:
    """The (video, audio) `pairs` a clip is made from (its files, then its fallbacks), each with a copy in place of the
    file it copies (`others`: (file, copy)), in turn: decoding tries them should those pairs not decode, as the copy
    found first may be the broken one: cut short by a download (another size), or damaged in place or never filled in
    (a downloader that sets a file's size first: the same size). A copy of another size stays a fault while unused."""
    tries: dict[tuple[str | None, str], None] = {}
    for pair in pairs:
        for first, copy in others:
            if str(first) in pair:
                tries[tuple(str(copy) if p == str(first) else p for p in pair)] = None
    return tuple(tries)


def copies_found(rejects: list[Reject]) -> list[Reject]:
    """The rejects that are copies of files a clip was made of (`_duplicate`), by file."""
    return sorted((r for r in rejects if r.unused and r.reason.startswith("duplicate of ")), key=lambda r: r.source_path)


def _copies_unused(rejects: list[Reject], copies: list[int]) -> tuple[str, ...]:
    """The copies among `rejects` (places `_duplicate` kept) of the files of a clip that has a record, marked unused:
    a corpus held twice must not hide its broken files among half its files. Their files: the clip's spares (rejects of
    their own should it not be made)."""
    for i in copies:
        rejects[i] = replace(rejects[i], unused=True)
    return tuple(rejects[i].source_path for i in copies)


def _ravdess_record(key: str, fields: tuple[str, ...], source: Path, audio: Path, video: Path | None,
                    fallback: tuple[tuple[str | None, str], ...], spare: tuple[str, ...],
                    copies: tuple[tuple[str | None, str], ...]) -> ClipRecord:
    vocal, emo, intensity, statement, repetition, actor = fields
    return ClipRecord(
        clip_id=f"ravdess-{key}", corpus="ravdess", speaker=actor, emotion=RAVDESS_EMOTIONS[emo],
        source_path=str(source), audio_path=str(audio), video_path=None if video is None else str(video),
        meta={"vocal_channel": "speech" if vocal == "01" else "song", "intensity": intensity,
              "statement": statement, "repetition": repetition},
        fallback=fallback, spare=spare, copies=copies,
    )


# CREMA-D's files by (folder, suffix): its own VideoFlash and AudioWAV, and VideoMP4, the .flv files converted to
# .mp4 as many users do (FLV is awkward to play and edit), named by the same stems
_CREMAD_KINDS = {("VideoFlash", ".flv"): "flv", ("VideoMP4", ".mp4"): "mp4", ("AudioWAV", ".wav"): "wav"}


def scan_cremad(src: Path, files: list[Path], audio_only: bool) -> Scan:
    kinds: dict[str, dict[str, Path]] = {kind: {} for kind in _CREMAD_KINDS.values()}
    mp3s: dict[str, Path] = {}  # AudioMP3/ files by stem: a clip's audio should its AudioWAV/ file not decode
    rejects: list[Reject] = []
    copies: dict[str, list[int]] = {}  # clip -> its files' copies, by their place in `rejects` (`_duplicate`)
    others: dict[str, list[tuple[Path, Path]]] = {}  # clip -> (file, its copy)
    # a copy without AudioWAV/ (the corpus's repository stores each folder apart; AudioWAV/ is large): each clip's
    # sound is its AudioMP3/ file, else its video's own track, which the corpus records with the picture; in a tree
    # holding AudioWAV/ a clip missing its .wav is a reject, as it was
    stand_in = not any(_CREMAD_KINDS.get((p.parent.name, p.suffix.lower())) == "wav" for p in files)
    shown = {_cremad_stem(p) for p in files if _CREMAD_KINDS.get((p.parent.name, p.suffix.lower())) in ("flv", "mp4")}
    for path in files:
        kind = _CREMAD_KINDS.get((path.parent.name, path.suffix.lower()))
        stem = _cremad_stem(path)
        mp3 = _cremad_mp3(path)
        if stand_in and mp3 and stem in mp3s and (audio_only or stem in shown):
            # a second .mp3 a clip's sound is taken from (the corpus held twice): its copy, as a second .wav is
            _duplicate(path, mp3s[stem], rejects, copies.setdefault(stem, []))
            others.setdefault(stem, []).append((mp3s[stem], path))
            continue
        # an AudioMP3/ file is a copy of an AudioWAV/ one (the corpus ships both): unused, no fault, as is a file that
        # is no media; the reason as it was, which shards made before are fingerprinted with. In a copy without
        # AudioWAV/, where an .mp3 is a clip's sound, one whose name names no clip is told so, as a .flv is
        if kind is None and not (stand_in and mp3 and stem is None):
            rejects.append(Reject(str(path), _PACKED if _packed(path) else
                                  "expected VideoFlash/*.flv, VideoMP4/*.mp4 or AudioWAV/*.wav",
                                  unused=mp3 or no_media(path)))
            if mp3 and stem is not None:
                mp3s.setdefault(stem, path)
            continue
        if stem is None:
            rejects.append(Reject(str(path), "file name is not <actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_"
                                             "<LO|MD|HI|XX> (e.g. 1001_DFA_ANG_XX)"))
            continue
        if stem in kinds[kind]:
            _duplicate(path, kinds[kind][stem], rejects, copies.setdefault(stem, []))
            others.setdefault(stem, []).append((kinds[kind][stem], path))
            continue
        kinds[kind][stem] = path
    records = []
    flvs, mp4s, wavs = kinds["flv"], kinds["mp4"], kinds["wav"]
    # the file each clip's sound is taken from, checked for one recording under two names as an AudioWAV/ file is
    heard = wavs if not stand_in else {stem: mp3s.get(stem) or flvs.get(stem) or mp4s[stem]
                                       for stem in mp3s.keys() | flvs.keys() | mp4s.keys()}
    twins = _one_recording_named_twice(heard)
    named_twice: set[str] = set()
    # a twin is told so whether or not it would make a clip (a lone .mp3 under data.modality=av: no unused file)
    for stem in sorted(flvs.keys() | mp4s.keys() | wavs.keys() | twins.keys()
                       | (mp3s.keys() if stand_in and audio_only else set())):
        sound = heard.get(stem)
        if stem in twins:
            named_twice.add(str(sound))
            rejects.append(Reject(str(sound), twins[stem]))
            rejects.extend(Reject(str(videos[stem]), f"its clip is not made ({sound.parent.name}/{sound.name}: "
                                                     f"{twins[stem]})")
                           for videos in (flvs, mp4s) if stem in videos and videos[stem] != sound)
            continue
        shots = [found[stem] for found in (flvs, mp4s) if stem in found]  # the .flv first, then its .mp4
        # the AudioMP3/ file beside a .wav, unused (the scan's reject says so) unless the clip is made of it
        mp3 = (str(mp3s[stem]),) if stem in mp3s and stem in wavs else ()
        if audio_only:  # each AudioWAV file a clip (a copy of the corpus may hold nothing else), or its stand-in
            if sound is not None:
                main, *fallback = _cremad_pairs(wavs.get(stem), mp3s.get(stem), shots, audio_only)
                spare = (*(str(v) for v in shots if v != sound), *mp3, *_copies_unused(rejects, copies.get(stem, [])))
                tries = _with_copies((main, *fallback), others.get(stem, []))
                records.append(_cremad_record(stem, sound, sound, None, tuple(fallback), spare, tries))
            rejects.extend(Reject(str(videos[stem]), f"clip taken from {sound.parent.name}/{sound.name} "
                                                     "(data.modality=audio)", unused=True) if sound is not None else
                           Reject(str(videos[stem]), f"no AudioWAV/{stem}.wav, and data.modality=audio uses only audio")
                           for videos in (flvs, mp4s) if stem in videos and videos[stem] != sound)
            continue
        if sound is None:
            rejects.extend(Reject(str(videos[stem]), f"no AudioWAV/{stem}.wav to pair with")
                           for videos in (flvs, mp4s) if stem in videos)
            continue
        if not shots:
            rejects.append(Reject(str(sound), f"no VideoFlash/{stem}.flv (or VideoMP4/{stem}.mp4) to pair with"))
            continue
        # the corpus's own .flv where there is one, its .mp4 copy the fallback should the .flv not decode; the
        # AudioMP3/ file and the video's own track should the .wav not decode
        main, *fallback = _cremad_pairs(wavs.get(stem), mp3s.get(stem), shots, audio_only)
        tries = _with_copies((main, *fallback), others.get(stem, []))
        records.append(_cremad_record(stem, shots[0], sound, shots[0], tuple(fallback),
                                      (*mp3, *_copies_unused(rejects, copies.get(stem, []))), tries))
    # an AudioMP3/ file its clip is made of is no unused file (a copy without AudioWAV/), nor one named twice
    used = {r.audio_path for r in records} | named_twice
    return records, [r for r in rejects if not (r.unused and r.source_path in used)]


def _cremad_stem(path: Path) -> str | None:
    """The clip a CREMA-D file is of (`1001_DFA_ANG_XX`, its level X read as XX), None where its name names none."""
    m = _CREMAD_NAME.match(path.stem)
    if not m or m.group(3) not in CREMAD_EMOTIONS:
        return None
    return path.stem + "X" if m.group(4) == "X" else path.stem


def _cremad_pairs(wav: Path | None, mp3: Path | None, videos: list[Path],
                  audio_only: bool) -> list[tuple[str | None, str]]:
    """The (video, audio) pairs a CREMA-D clip is tried from, in turn: each of its videos (.flv, then .mp4) with its
    AudioWAV/ file, then with its AudioMP3/ file (the same recording), then each video with its own track, which the
    corpus records with the picture. A .wav cut short or damaged lost its clip, though the corpus holds its sound twice
    more; so did a copy without AudioWAV/ (`wav` None). `audio_only`: no video in any pair (the videos' tracks are
    still tried)."""
    shown = [None] if audio_only else [str(v) for v in videos]
    pairs = [(v, str(a)) for a in (wav, mp3) if a is not None for v in shown]
    return pairs + [(None if audio_only else str(v), str(v)) for v in videos]


_CREMAD_FIELDS = ("actor", "sentence", "emotion", "level")


def _one_recording_named_twice(audios: dict[str, Path]) -> dict[str, str]:
    """The stems of `audios` (the files clips' sound is taken from by stem: AudioWAV/ files, or in a copy without
    AudioWAV/ the .mp3 files, else the videos) whose file holds the same bytes as another's -> the reason
    none of them is a clip. A public CREMA-D cleaning script drops three such pairs of two emotions (1006_TIE_HAP_XX.wav
    and 1006_TIE_NEU_XX.wav; not checked against the corpus here): one sound trained as two emotions, which
    within_speaker could put one in train and one in test. A name is the label, so which is right is unknown; the names differ in actor, sentence, emotion or level."""
    stem_of = {str(path): stem for stem, path in audios.items()}
    groups: dict[str, list[str]] = {}
    # a file of digital silence (or never filled in), or one that holds no recording (`_no_recording`), is no
    # recording named twice: two as long as each other are alike, each a reject of its own when decoded. Only files
    # that hold another's bytes are read for it
    for copy, first in _same_bytes([str(audios[stem]) for stem in sorted(audios)]).items():
        if not (_silent(first) or _no_recording(first)):
            groups.setdefault(first, [first]).append(copy)
    reasons = {}
    for group in groups.values():
        for path in group:
            others = [p for p in group if p != path]
            mine, theirs = (_CREMAD_NAME.match(stem_of[p]).groups() for p in (path, others[0]))
            shown = [(CREMAD_EMOTIONS[a], CREMAD_EMOTIONS[b]) if field == "emotion" else (a, b)
                     for field, a, b in zip(_CREMAD_FIELDS, mine, theirs)]
            differ = ", ".join(f"{field} ({b}, here {a})" for field, (a, b) in zip(_CREMAD_FIELDS, shown) if a != b)
            reasons[stem_of[path]] = (f"the same bytes as {' and '.join(others)}, whose name says another {differ}: "
                                      f"one recording under {len(group)} names, which is right is unknown: no clip is "
                                      "made of it")
    return reasons


def _silent(path: str) -> bool:
    """Whether a file is digital silence, read without decoding (nothing is decoded in a scan): a RIFF WAV whose
    samples are all zero bytes (8-bit PCM, whose silence is 0x80, aside; a data chunk of size 0 is a length a streaming
    writer left open: its samples run to the end of the file, as ffmpeg reads them), an MP3 whose frames code no sound
    (CREMA-D's AudioMP3/ files, a clip's sound in a copy without AudioWAV/), or a file never filled in (a downloader
    that set its size first: zero bytes throughout), whose copy elsewhere in the tree may be whole."""
    try:
        with open(path, "rb") as fh:
            if not any(block.strip(b"\0") for block in iter(lambda: fh.read(1 << 20), b"")):
                return True
            fh.seek(0)
            if Path(path).suffix.lower() == ".mp3":
                return walks.mp3_silent(fh)
            bits = 0
            for kind, size in walks.wav_chunks(fh):
                if kind == b"fmt " and size >= 16:
                    bits = struct.unpack("<H", fh.read(16)[14:16])[0]
                elif kind == b"data":
                    size = size or os.fstat(fh.fileno()).st_size - fh.tell()  # 0: left open, read to the end
                    return bits > 8 and not any(fh.read(min(1 << 20, size - at)).strip(b"\0")
                                               for at in range(0, size, 1 << 20))
    except OSError:
        return False
    return False


def _text(head: bytes) -> bool:
    """Whether a file's first bytes are text: UTF-8 (an error page a downloader saved often is), a character cut at
    their end aside, with no control character but tabs and line breaks. No media file's header is: each holds a
    binary size or version (a NUL, an 0xFF)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return not any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text)


def _no_recording(path: str) -> bool:
    """Whether a file holds no recording two names could share, read without decoding: text (a Git LFS pointer, which a
    clone without `git lfs pull` leaves; an error page a downloader saved) or a header with nothing after it (a WAV's
    with no sample, whole chunks such as a LIST after it aside; an MP3's ID3 tag with no frame anywhere after it; an
    FLV's metadata with no sound or picture; an MP4's boxes with no media). Two such alike are two broken files, each
    a reject of its own when decoded; any sound after a header is a recording, however short (a second of CREMA-D's
    16 kHz sound as an .mp3 is 3.4 KiB: a floor of 4 KiB let such twins through)."""
    try:
        with open(path, "rb") as fh:
            size, head = os.fstat(fh.fileno()).st_size, fh.read(512)
            fh.seek(0)
            if _text(head):
                return True
            if head[:4] == b"RIFF":
                # a sample after its data chunk's header, whatever its size (0 or 0xFFFFFFFF: left open, read to the
                # end), but whole chunks to the end of the file (a LIST a writer appended to a header alone) are none
                return not any(kind == b"data" and not walks.riff_chunks_to_end(fh, fh.tell(), size)
                               for kind, _ in walks.wav_chunks(fh))
            if head[:3] == b"FLV":
                return not _flv_media(fh, int.from_bytes(head[5:9], "big") + 4, size)
            if head[4:8] == b"ftyp":
                return not _mp4_media(fh, size)
            if Path(path).suffix.lower() == ".mp3":  # its frames may start past zeros or a second tag, as ffmpeg finds
                return walks.mp3_frames_start(fh, size) is None
    except OSError:
        return False
    return False


def _flv_media(fh: BinaryIO, at: int, size: int) -> bool:
    """Whether an FLV's tags from `at` (past its header and the first PreviousTagSize) hold a byte of sound or picture:
    a script data tag (its metadata, written first) holds neither."""
    while at + 11 < size:
        fh.seek(at)
        tag = fh.read(4)
        if tag[0] in (8, 9) and int.from_bytes(tag[1:4], "big"):
            return True
        at += 11 + int.from_bytes(tag[1:4], "big") + 4
    return False


def _mp4_media(fh: BinaryIO, size: int) -> bool:
    """Whether an MP4's top-level boxes hold an mdat (its media) with a byte of its own."""
    at = 0
    while at + 8 <= size:
        fh.seek(at)
        box = fh.read(16)
        length, header = int.from_bytes(box[:4], "big"), 8
        if length == 1:  # a 64-bit size follows the type
            length, header = int.from_bytes(box[8:16], "big"), 16
        if box[4:8] == b"mdat":
            return at + header < size
        if length < 8:
            return False
        at += length
    return False


def _cremad_mp3(path: str | Path) -> bool:
    """Whether a file is one of CREMA-D's AudioMP3/ files, which avdis reads only for a clip whose AudioWAV/ file does
    not decode (AudioWAV/ holds its audio), or in a copy without AudioWAV/."""
    return (Path(path).parent.name, Path(path).suffix.lower()) == ("AudioMP3", ".mp3")


def _cremad_record(stem: str, source: Path, audio: Path, video: Path | None,
                   fallback: tuple[tuple[str | None, str], ...] = (), spare: tuple[str, ...] = (),
                   copies: tuple[tuple[str | None, str], ...] = ()) -> ClipRecord:
    actor, sentence, emo, level = _CREMAD_NAME.match(stem).groups()
    return ClipRecord(
        clip_id=f"cremad-{stem}", corpus="cremad", speaker=actor, emotion=CREMAD_EMOTIONS[emo],
        source_path=str(source), audio_path=str(audio), video_path=None if video is None else str(video),
        meta={"sentence": sentence, "level": level}, fallback=fallback, spare=spare, copies=copies,
    )


_TRUTH_COLUMNS = ("file", "clip_id", "speaker", "emotion")  # `intensity`, where present, is kept as metadata
# columns that place a row's clip at a time within its file (a session's segments, as an annotation tool exports
# them), which avdis does not read: a row's clip is its whole file, of which the features take the centre window
_TIME_COLUMNS = frozenset(f"{word}{unit}"
                          for word in ("start", "end", "stop", "begin", "onset", "offset", "tmin", "tmax", "start_time",
                                       "end_time", "begin_time", "stop_time")
                          for unit in ("", "_s", "_sec", "_secs", "_seconds", "_ms"))


_SEP_HINT = re.compile(r'"?sep=(?P<sep>[^\r\n"])"?[ \t]*(?:\r\n|\r|\n|$)', re.IGNORECASE)  # Excel's `sep=;` line


# characters that show nothing, which str.strip keeps: a zero-width space pasted from a web page or a document, a
# word joiner, a byte order mark a file joined to another left inside it
_UNSEEN = "\u200b\u200c\u200d\u2060\ufeff"


def _bare(cell: str) -> str:
    """A ground truth's cell without the spaces around it, nor characters that show nothing (`_UNSEEN`): `sad` and
    `sad` with a zero-width space pasted after it were two classes that read alike in the summary, and a file named
    after one was 'listed in ground_truth.csv but missing' beside itself 'not listed'."""
    bare = cell.strip()
    while bare and (bare[0] in _UNSEEN or bare[-1] in _UNSEEN):
        bare = bare.strip(_UNSEEN).strip()
    return bare


def _column(name: str) -> str:
    """A ground truth's column name as avdis reads it: without its case, the spaces around it and characters that show
    nothing (`_bare`), and with the spaces and hyphens inside it as underscores (`Clip ID` is clip_id)."""
    return re.sub(r"[\s-]+", "_", _bare(name).lower())


def _table(text: str) -> tuple[list[str], list[tuple[int, dict[str, str], list[str]]]]:
    """A ground truth's header and rows, by column name, each with its number as a spreadsheet shows it (the header's
    is 1), which a reject names, and the cells it has past the header's columns. Names are read without the spaces
    around them and their case, spaces and hyphens inside them as underscores (`File`, `Clip ID`, `clip-id` as a
    person writes them: `_column`), cells separated by commas, else by
    the semicolons or tabs a spreadsheet writes where the decimal mark is a comma, when those give the header its
    columns, first by the one a first line `sep=;` names (Excel's hint, which a script writing for Excel puts first: it
    was read as the header, refused as naming no column file, clip_id, speaker, emotion, which the next line names);
    Excel reads that line and does not show it, so the rows are numbered as it shows them."""
    hint = _SEP_HINT.match(text)
    if hint:
        text = text[hint.end():]
    seps = tuple(dict.fromkeys((*([hint["sep"]] if hint else []), ",", ";", "\t")))
    for sep in seps:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        header = [_column(name) for name in next(reader, [])]
        if all(c in header for c in _TRUTH_COLUMNS):
            break
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=seps[0])
        header = [_column(name) for name in next(reader, [])]
    # a blank line is no row, nor is one of empty cells (`,,,`: a spreadsheet writes one for a row it once used), but
    # each counts in the numbers of the rows after it
    return header, [(line, dict(zip(header, cells)), cells[len(header):]) for line, cells in enumerate(reader, start=2)
                    if any(_bare(cell) for cell in cells)]


# a cell that holds no label but says none is known, as a program writes a missing value (pandas' `nan`, R's `NA`,
# Excel's `#N/A`, Python's `None`, SQL's `null`) or a person does (`n/a`, `?`, `-`); MSP-Podcast's speaker `Unknown`.
# Read without case and spaces. Nothing that could be a real id or class: speaker `0` or `x`, emotion `other` (`oth`,
# `o`: a label annotators agreed on, a class in many setups)
_MISSING = {"unknown", "unk", "n/a", "na", "#n/a", "none", "null", "nan", "undefined"}
# given names (pinyin's Na 娜 and Nan 楠, English Nan) written as a name is, capitalised, as no program writes a
# missing value: a speaker of that name keeps its clips (R's `NA`, pandas' `nan` and `NaN` are placeholders)
_NAMES = {"Na", "Nan"}
_NO_AGREEMENT = re.compile(r"x+")  # IEMOCAP's emotion `xxx`, MSP-Podcast's `X`: annotators did not agree
_PLACEHOLDER_FIX = {
    "speaker": "a speaker not identified is no one speaker, whom no split by speaker can hold; give each known speaker "
               "an id of their own and leave the clips of unknown speakers out (a real speaker's id written so, "
               "initials NA: write it another way in every row, spk_NA)",
    "emotion": "no agreed emotion (IEMOCAP's xxx, MSP-Podcast's X: annotators did not agree, or none was given) is no "
               "class; give the clip its emotion, or leave its row out (a class of the corpus's own named so: name it "
               "another way in every row)",
}
_PLACEHOLDER = re.compile(rf"{re.escape(GROUND_TRUTH)} row \d+: placeholder (?P<speaker>speaker '[^']*')?(?: and )?"
                          r"(?P<emotion>emotion '[^']*')?")


def _placeholder(column: str, value: str) -> bool:
    """Whether a ground truth's speaker or emotion cell holds a placeholder, not a label: taken as given, `Unknown` was
    one speaker of thousands of clips (the identity head learnt it, the leakage probe counted it, speaker_disjoint put
    it in one fold) and `xxx` an emotion class, trained and scored as one."""
    said = " ".join(value.casefold().split())
    if column == "speaker" and value in _NAMES:
        return False
    return (said in _MISSING or re.fullmatch(r"[?-]+", said) is not None
            or (column == "emotion" and _NO_AGREEMENT.fullmatch(said) is not None))


def _placeholder_reason(name: str, line: int, posing: dict[str, str]) -> str:
    """A reject's reason for a row whose `posing` cells (column -> the cell as written) hold placeholders."""
    shown = " and ".join(f"{c} {v!r}" for c, v in posing.items())
    return f"{name} row {line}: placeholder {shown}: " + "; and ".join(_PLACEHOLDER_FIX[c] for c in posing)


def placeholders_found(rejects: list[Reject]) -> tuple[list[Reject], int, int]:
    """The rejects of rows holding placeholders (`_placeholder_reason`), by file, and how many name a speaker's and an
    emotion's."""
    matched = [(r, m) for r in rejects if (m := _PLACEHOLDER.match(r.reason))]
    return (sorted((r for r, _ in matched), key=lambda r: r.source_path),
            sum(m["speaker"] is not None for _, m in matched), sum(m["emotion"] is not None for _, m in matched))


def scan_synthetic(src: Path, files: list[Path], audio_only: bool) -> Scan:
    truth = src / GROUND_TRUTH
    if not truth.is_file():
        media = [p for p in files if p.suffix.lower() in _MEDIA]
        if media:  # a corpus of the user's own (a .wav folder): `avdis synth` refuses to write among its files
            raise CorpusError(f"{truth}: missing; to use the {len(media)} media files here (first: {media[0]}) as a "
                              f"corpus, add a {GROUND_TRUTH} listing them, one row per clip, with columns "
                              f"{', '.join(_TRUTH_COLUMNS)}{named_as(src, files, 'synthetic')}")
        raise CorpusError(f"{truth}: missing; generate the corpus with `avdis synth --out {src}`")
    records, rejects = [], []
    rows_of: dict[str, int] = {}  # clip_id -> its row
    files_of: dict[str, int] = {}  # file (its real path) -> its row
    listed: set[str] = set()  # real paths
    cased: dict[str, tuple[int, str]] = {}  # a file a row names but for case (its real path) -> (that row, its name)
    told: list[tuple[int, str, str, int]] = []  # such a row's reject: (its index, the file's name, real path, the row)
    folders: dict[Path, dict[str, list[str]]] = {}  # the folders `_cased` has read
    try:
        with open(truth, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's "CSV UTF-8" has a BOM
            header, rows = _table(fh.read())
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{truth}: not UTF-8 text (byte {exc.start}); save it as \"CSV UTF-8\" (a spreadsheet's "
                          "plain \"CSV\" and \"Unicode Text\" are other encodings)") from None
    missing = [c for c in _TRUTH_COLUMNS if c not in header]
    if missing:
        raise CorpusError(f"{truth}: no column {', '.join(missing)}; its header must name {', '.join(_TRUTH_COLUMNS)}")
    _check_no_times(truth, header, rows)
    spans: list[tuple[int, str, str]] = []  # (row, column, text) of the cells that run across lines
    for line, cells, past in rows:
        spans += [(line, c, text) for c, text in cells.items() if "\n" in text.strip() or "\r" in text.strip()]
        # without the spaces around them (or characters that show nothing, `_bare`), which a spreadsheet's cell does
        # not show: `spk1 ` would be a second speaker, in another speaker_disjoint fold than `spk1`'s clips, and
        # ` happy` no emotion
        row = {c: _bare(cells.get(c) or "") for c in (*_TRUTH_COLUMNS, "intensity")}
        row["emotion"] = row["emotion"].lower()  # `Happy` and `happy` in one file are one class
        for c in ("clip_id", "speaker", "emotion"):  # so are `Zoë` typed (NFC) and `Zoë` from a name a Mac wrote (NFD)
            row[c] = unicodedata.normalize("NFC", row[c])
        # a file is its real path, whatever the spelling (`sub/../a.mp4`, a linked folder, a `--src` with `..`): one
        # recording under two would be two clips, one in train and one in test (normpath is no identity: `link/..`
        # is not the folder holding `link`); shown and read as the row spells it
        spelt = row["file"]
        path = src / spelt
        if "\\" in spelt and not _is_file(path):  # a list written on Windows: folders by backslash
            spelt = spelt.replace("\\", "/")
            path = src / spelt
        if not _is_file(path):  # a name typed composed (`é`, NFC) for a file a Mac wrote decomposed (NFD), or back
            path = next((src / unicodedata.normalize(form, spelt) for form in ("NFC", "NFD")
                         if _is_file(src / unicodedata.normalize(form, spelt))), path)
        real = os.path.realpath(path)
        listed.add(real)
        empty = [c for c in _TRUTH_COLUMNS if not row[c]]
        # a line break in a name or label is no part of it: a quote (") left open took the lines after it in, which
        # made a label of them (a class of its own) or a file of no such name
        across = [c for c in (*_TRUTH_COLUMNS, "intensity") if "\n" in row[c] or "\r" in row[c]]
        if all(_column(cells.get(c) or "") == c for c in _TRUTH_COLUMNS):
            # two ground truths joined end to end (`cat a.csv b.csv`) hold the second's header as a row, which read
            # as file `file` listed but missing
            rejects.append(Reject(str(truth), f"{truth.name} row {line}: repeats the header (two lists joined end to "
                                              "end?); it lists no clip: delete the row"))
        elif across:
            rejects.append(Reject(str(path).splitlines()[0], f"{truth.name} row {line}: its {', '.join(across)} cell "
                                                             f"runs across lines; {_OPEN_QUOTE}"))
        elif any(_bare(cell) for cell in past):
            # a separator inside a cell, unquoted, splits it in two and moves every cell after it: speaker `Smith, John`
            # was speaker `Smith` and emotion `John`, a class of its own (the corpus's own labels are taken as given,
            # placeholders aside)
            rejects.append(Reject(str(path), f"{truth.name} row {line}: {len(header) + len(past)} cells for the "
                                             f"header's {len(header)} columns; {_UNQUOTED}"))
        elif empty:
            rejects.append(Reject(str(path), f"{truth.name} row {line}: empty {', '.join(empty)}"))
        elif posing := {c: _bare(cells.get(c) or "") for c in ("speaker", "emotion") if _placeholder(c, row[c])}:
            rejects.append(Reject(str(path), _placeholder_reason(truth.name, line, posing)))
        elif row["clip_id"] in rows_of:
            rejects.append(Reject(str(path), f"{truth.name} row {line}: clip_id {row['clip_id']!r} is already "
                                             f"on row {rows_of[row['clip_id']]}"))
        elif real in files_of:
            rejects.append(Reject(str(path), f"{truth.name} row {line}: file already listed on row {files_of[real]}"))
        elif not _is_file(path):
            on_disk = _cased(src, spelt, folders)
            if on_disk is not None:
                cased.setdefault(os.path.realpath(src / on_disk), (line, spelt))
                told.append((len(rejects), on_disk, os.path.realpath(src / on_disk), line))
                where = (f" ({on_disk} is there: the names differ in case, which this file system tells apart, unlike "
                         f"a Mac's or Windows'; write it as {on_disk})")
            else:
                where = _found_nearer(src, spelt)
            rejects.append(Reject(str(path), f"listed in {GROUND_TRUTH} but missing{where}"))
        else:
            rows_of[row["clip_id"]], files_of[real] = line, line
            records.append(ClipRecord(
                clip_id=row["clip_id"], corpus="synthetic", speaker=row["speaker"], emotion=row["emotion"],
                source_path=str(path), audio_path=str(path), video_path=None if audio_only else str(path),
                meta={"intensity": row["intensity"]} if row["intensity"] else {},
            ))
    for at, on_disk, real, line in told:  # the file is listed by another row, before or after: "write it as" would
        if real in files_of:  # make it 'already listed'; on a Mac or Windows the two rows are one file
            rejects[at] = Reject(rejects[at].source_path, f"{truth.name} row {line}: names {on_disk}, which row "
                                                          f"{files_of[real]} lists, in another case (on a Mac or "
                                                          "Windows one file listed twice); drop one of the two rows")
    for p in files:
        if p.suffix.lower() in _MEDIA and os.path.realpath(p) not in listed:
            row_of = cased.get(os.path.realpath(p))
            where = (f" (row {row_of[0]} names it {row_of[1]}, in another case)" if row_of is not None
                     else _inside(p.relative_to(src).as_posix(), spans))
            rejects.append(Reject(str(p), f"not listed in {GROUND_TRUTH}{where}"))
    records = _one_per_recording(truth, records, rejects, rows_of)
    _check_speaker_case(truth, records, rows_of)
    return records, rejects


def _check_no_times(truth: Path, header: list[str], rows: list[tuple[int, dict[str, str], list[str]]]) -> None:
    """Refuse a ground truth whose rows give times within their files (`start`, `end`, `onset`, `Start Time`, ...):
    the columns were read as metadata nobody reads, so a row of a session's segment trained on the centre of the whole
    session, other sound than the label's, and the session's other rows were 'file already listed'. An empty column
    is no time."""
    named = [name for name in header if name in _TIME_COLUMNS
             and any(_bare(cells.get(name) or "") for _, cells, _ in rows)]
    if named:
        raise CorpusError(f"{truth}: {'columns' if len(named) > 1 else 'column'} {', '.join(named)} "
                          f"{'place' if len(named) > 1 else 'places'} each row's clip at a time within its file, which "
                          "avdis does not read: a row's clip is its whole file (the features take its centre "
                          "data.features.window_s seconds), and one file is one clip; cut each segment into a file of "
                          f"its own and list those, or, where each row's time is its whole file, leave "
                          f"{'them' if len(named) > 1 else 'it'} out")


def _cased(src: Path, spelt: str, folders: dict[Path, dict[str, list[str]]]) -> str | None:
    """The name of the one file under `src` that `spelt` names but for case (and Unicode form); None where there is
    none, or more than one. A list written on a Mac or a Windows share, whose file systems read `clips/A.mp4` as
    `clips/a.mp4`, names files this one tells apart: each such row was 'missing' beside its file 'not listed', and
    nothing said why. `folders`: the folders read so far, their names by `_folded` form."""
    at, found = src, []
    for part in Path(spelt).parts:
        if os.path.lexists(at / part):
            name = part
        else:
            if at not in folders:
                folders[at] = {}
                try:
                    for entry in os.listdir(at):
                        folders[at].setdefault(_folded(entry), []).append(entry)
                except OSError:
                    pass
            names = folders[at].get(_folded(part), [])
            if len(names) != 1:
                return None
            name = names[0]
        at, found = at / name, [*found, name]
    return Path(*found).as_posix() if found and _is_file(at) else None


def _folded(name: str) -> str:
    """A name as a Mac's file system compares it: case and Unicode form aside."""
    return unicodedata.normalize("NFC", name).casefold()


def _found_nearer(src: Path, spelt: str) -> str:
    """Where a listed file that is missing is under `src` with its leading folders left out: a list that names files
    from the folder above (`corpus/clips/a.wav` for `clips/a.wav`), every one of whose rows was 'missing' beside a
    file 'not listed', which did not say from where a name is read."""
    parts = Path(spelt).parts
    found = next((Path(*parts[k:]) for k in range(1, len(parts)) if _is_file(src / Path(*parts[k:]))), None)
    if found is None:
        return ""
    return f" ({found.as_posix()} is there: a name is read from the folder that holds {GROUND_TRUTH}, {src})"


_OPEN_QUOTE = 'a quote (") that opens a cell and is never closed takes the lines after it into that cell; close it'
_UNQUOTED = ('a cell holding the separator (a name "Smith, John") must be quoted, or it is read as two cells and the '
             'cells after it move one column on; a column of its own needs a name in the header')


def _inside(name: str, spans: list[tuple[int, str, str]]) -> str:
    """Where a file a ground truth does not list is named inside a cell that runs across lines (`spans`): its row was
    taken into that cell, and 'not listed' alone sent the user looking for a row that is there."""
    def spelt(text: str) -> set[str]:  # the cell's text cut where a row's cells and lines part, each as a path
        return {os.path.normpath(t.strip().strip("\"'").replace("\\", "/")) for t in re.split(r"[\n,;\t|]", text)}

    row, column = next(((row, column) for row, column, text in spans if name in spelt(text)), (None, None))
    if row is None:
        return ""
    return f" (its name is inside row {row}'s {column} cell, which runs across lines; {_OPEN_QUOTE})"


def _one_per_recording(truth: Path, records: list[ClipRecord], rejects: list[Reject],
                       rows_of: dict[str, int]) -> list[ClipRecord]:
    """`records` without the later rows whose file holds the same bytes as an earlier row's (a copy made while
    organising the corpus, under another name): one recording as two clips could be split into train and test, and the
    test would score a clip the model trained on. Such a copy, labelled alike, is unused (its clip's spare, a reject of
    its own should the clip not be made), as RAVDESS's copies are; labelled otherwise, a fault naming both rows."""
    first_of = _same_bytes([r.source_path for r in records])
    of_file = {r.source_path: r for r in records}
    spares: dict[str, tuple[str, ...]] = {}
    for copy, first in first_of.items():
        rec, orig = of_file[copy], of_file[first]
        row, at = rows_of[rec.clip_id], rows_of[orig.clip_id]
        differ = [f"{c} {getattr(orig, c)!r} there, {getattr(rec, c)!r} here" for c in ("speaker", "emotion")
                  if getattr(orig, c) != getattr(rec, c)]
        if differ:
            rejects.append(Reject(copy, f"{truth.name} row {row}: the same bytes as {first} (row {at}), labelled "
                                        f"otherwise ({'; '.join(differ)}): one recording is one clip; correct the "
                                        "label that is wrong and list the file once"))
        else:
            rejects.append(Reject(copy, f"duplicate of {first} (the same bytes; {truth.name} row {row}, its row "
                                        f"{at}): one recording is one clip", unused=True))
            spares[first] = (*spares.get(first, ()), copy)
    return [replace(r, spare=(*r.spare, *spares[r.source_path])) if r.source_path in spares else r
            for r in records if r.source_path not in first_of]


def _same_bytes(paths: list[str]) -> dict[str, str]:
    """Each of `paths` whose bytes are those of one before it -> that first one. Only files of the same size are read,
    first 4 KiB at their start, middle and end (`_sampled`), then whole where those match: a rescan (every `avdis
    train`) reads 12 KiB of each clip of a corpus whose WAVs all last as long (one size), where reading each one's
    opening 64 KiB read 2/3 of a 3 s, 16 kHz clip. Empty files are no copies (each is a reject)."""
    by_size: dict[int, list[str]] = {}
    for p in paths:
        try:
            size = os.stat(p).st_size
        except OSError:
            continue
        if size:
            by_size.setdefault(size, []).append(p)
    first_of: dict[str, str] = {}
    for size, group in ((k, g) for k, g in by_size.items() if len(g) > 1):
        heads: dict[bytes, list[str]] = {}
        for p in group:
            heads.setdefault(_sampled(p, size), []).append(p)
        for same_head in (g for g in heads.values() if len(g) > 1):
            seen: dict[bytes, str] = {}
            for p in same_head:
                first_of.setdefault(p, seen.setdefault(_digest(p), p))
    return {p: first for p, first in first_of.items() if p != first}


SAMPLE = 4096  # bytes `_sampled` reads at each of a file's start, middle and end


def _sampled(path: str, size: int) -> bytes:
    """sha256 of a file's `SAMPLE` bytes at its start, middle and end (all of it when that is as much): two
    recordings of one length differ there (a clip's leading silence can be the same, its middle and end are not);
    where it cannot be read, its path, like no other file's (`_digest`)."""
    if size <= 3 * SAMPLE:
        return _digest(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for at in (0, size // 2, size - SAMPLE):
                fh.seek(at)
                h.update(fh.read(SAMPLE))
    except OSError:
        return path.encode()
    return h.digest()


def _digest(path: str) -> bytes:
    """sha256 of a file's bytes; where it cannot be read, its path, like no other file's (decoding names the fault)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError:
        return path.encode()
    return h.digest()


def _check_speaker_case(truth: Path, records: list[ClipRecord], rows_of: dict[str, int]) -> None:
    """Refuse speakers whose names differ only in case (`Spk1`, `spk1`): one person typed two ways is two speakers,
    whom speaker_disjoint may put one in train and one in test, and the leakage probe then hears a seen voice."""
    spelt: dict[str, dict[str, int]] = {}  # casefolded -> spelling -> its first row
    for r in records:
        spelt.setdefault(r.speaker.casefold(), {}).setdefault(r.speaker, rows_of[r.clip_id])
    clashes = [ways for ways in spelt.values() if len(ways) > 1]
    if clashes:
        shown = "; ".join(" and ".join(f"{name!r} (row {row})" for name, row in ways.items()) for ways in clashes[:3])
        raise CorpusError(f"{truth}: speakers {shown} differ only in case{' (and more)' if len(clashes) > 3 else ''}: "
                          "one speaker written two ways would be two, which data.split can put in train and in test; "
                          "write each speaker one way (different people need names that differ otherwise)")


def named_as(src: Path, files: list[Path] | None, corpus: str, skip: Path | None = None) -> str:
    """The fix for RAVDESS's or CREMA-D's files scanned as another `corpus` (the default data.corpus=synthetic), ''
    for files of neither: the first was told to write a ground_truth.csv for them, the second that no file was named
    right. `files`: None for those under `src` but `skip`."""
    files = _files(src, skip)[0] if files is None else files
    for name, shown, adapter in (("ravdess", "RAVDESS", scan_ravdess), ("cremad", "CREMA-D", scan_cremad)):
        if name != corpus and adapter(src, files, True)[0]:  # audio alone: a clip of any file named as it names them
            return f"; these are {shown} files: preprocess them with --corpus {name} (data.corpus={name})"
    return ""


ADAPTERS: dict[str, Adapter] = {  # keyed by config.CORPORA
    "ravdess": scan_ravdess,
    "cremad": scan_cremad,
    "synthetic": scan_synthetic,
}


def source_folder(src: str | Path) -> Path:
    """`src` as a folder, or CorpusError naming it (checked before any output is touched)."""
    root = Path(src)
    if not root.is_dir():
        raise CorpusError(f"{root}: {'not a folder' if root.exists() else 'source folder does not exist'}; "
                          "give the corpus's top folder as --src (data.src)")
    return root


def scan(corpus: str, src: str | Path, skip: str | Path | None = None, audio_only: bool = False) -> Scan:
    """Clip records (sorted by clip_id) and rejects for the corpus under `src`, leaving out the folder `skip`;
    `audio_only` (data.modality=audio): clips of audio alone, from audio files where the corpus has them."""
    root = source_folder(src)
    if corpus not in ADAPTERS:
        raise CorpusError(f"unknown corpus {corpus!r}; choose one of {sorted(ADAPTERS)}")
    files, walk_rejects = _files(root, Path(skip) if skip else None)
    records, rejects = ADAPTERS[corpus](root, files, audio_only)
    rejects = walk_rejects + rejects
    if not records and not rejects:
        what = f"{GROUND_TRUTH} lists no clips" if (root / GROUND_TRUTH).is_file() else "empty folder"
        raise CorpusError(f"{root}: {what}, no {corpus} files found")
    return sorted(records, key=lambda r: r.clip_id), rejects
