"""The CREMA-D adapter: a source folder's files -> clip records and rejects.

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
"""

from __future__ import annotations

import re
from pathlib import Path

from avdis.data.corpora.copies import copies_unused, duplicate, named_twice, with_copies
from avdis.data.corpora.records import PACKED, ClipRecord, Reject, Scan, no_media, packed


EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
# some copies of the corpus name one file AudioWAV/1040_ITH_SAD_X.wav (its video is ..._XX.flv): X is XX
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_(LO|MD|HI|XX|X)$")
# CREMA-D's files by (folder, suffix): its own VideoFlash and AudioWAV, and VideoMP4, the .flv files converted to
# .mp4 as many users do (FLV is awkward to play and edit), named by the same stems
_KINDS = {("VideoFlash", ".flv"): "flv", ("VideoMP4", ".mp4"): "mp4", ("AudioWAV", ".wav"): "wav"}


def scan(src: Path, files: list[Path], audio_only: bool) -> Scan:
    kinds: dict[str, dict[str, Path]] = {kind: {} for kind in _KINDS.values()}
    mp3s: dict[str, Path] = {}  # AudioMP3/ files by stem: a clip's audio should its AudioWAV/ file not decode
    rejects: list[Reject] = []
    copies: dict[str, list[int]] = {}  # clip -> its files' copies, by their place in `rejects` (`duplicate`)
    others: dict[str, list[tuple[Path, Path]]] = {}  # clip -> (file, its copy)
    # a copy without AudioWAV/ (the corpus's repository stores each folder apart; AudioWAV/ is large): each clip's
    # sound is its AudioMP3/ file, else its video's own track, which the corpus records with the picture; in a tree
    # holding AudioWAV/ a clip missing its .wav is a reject, as it was
    stand_in = not any(_KINDS.get((p.parent.name, p.suffix.lower())) == "wav" for p in files)
    shown = {_stem(p) for p in files if _KINDS.get((p.parent.name, p.suffix.lower())) in ("flv", "mp4")}
    for path in files:
        kind = _KINDS.get((path.parent.name, path.suffix.lower()))
        stem = _stem(path)
        mp3 = _is_mp3(path)
        if stand_in and mp3 and stem in mp3s and (audio_only or stem in shown):
            # a second .mp3 a clip's sound is taken from (the corpus held twice): its copy, as a second .wav is
            duplicate(path, mp3s[stem], rejects, copies.setdefault(stem, []))
            others.setdefault(stem, []).append((mp3s[stem], path))
            continue
        # an AudioMP3/ file is a copy of an AudioWAV/ one (the corpus ships both): unused, no fault, as is a file that
        # is no media; the reason as it was, which shards made before are fingerprinted with. In a copy without
        # AudioWAV/, where an .mp3 is a clip's sound, one whose name names no clip is told so, as a .flv is
        if kind is None and not (stand_in and mp3 and stem is None):
            rejects.append(Reject(str(path), PACKED if packed(path) else
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
            duplicate(path, kinds[kind][stem], rejects, copies.setdefault(stem, []))
            others.setdefault(stem, []).append((kinds[kind][stem], path))
            continue
        kinds[kind][stem] = path
    records = []
    flvs, mp4s, wavs = kinds["flv"], kinds["mp4"], kinds["wav"]
    # the file each clip's sound is taken from, checked for one recording under two names as an AudioWAV/ file is
    heard = wavs if not stand_in else {stem: mp3s.get(stem) or flvs.get(stem) or mp4s[stem]
                                       for stem in mp3s.keys() | flvs.keys() | mp4s.keys()}
    # a public CREMA-D cleaning script drops three such pairs of two emotions (1006_TIE_HAP_XX.wav and
    # 1006_TIE_NEU_XX.wav; not checked against the corpus here)
    sounds = {str(heard[stem]): stem for stem in sorted(heard)}
    twins = {sounds[path]: reason for path, reason in named_twice(sounds, _shown).items()}
    told_twice: set[str] = set()
    # a twin is told so whether or not it would make a clip (a lone .mp3 under data.modality=av: no unused file)
    for stem in sorted(flvs.keys() | mp4s.keys() | wavs.keys() | twins.keys()
                       | (mp3s.keys() if stand_in and audio_only else set())):
        sound = heard.get(stem)
        if stem in twins:
            told_twice.add(str(sound))
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
                main, *fallback = _pairs(wavs.get(stem), mp3s.get(stem), shots, audio_only)
                spare = (*(str(v) for v in shots if v != sound), *mp3, *copies_unused(rejects, copies.get(stem, [])))
                tries = with_copies((main, *fallback), others.get(stem, []))
                records.append(_record(stem, sound, sound, None, tuple(fallback), spare, tries))
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
        main, *fallback = _pairs(wavs.get(stem), mp3s.get(stem), shots, audio_only)
        tries = with_copies((main, *fallback), others.get(stem, []))
        records.append(_record(stem, shots[0], sound, shots[0], tuple(fallback),
                                      (*mp3, *copies_unused(rejects, copies.get(stem, []))), tries))
    # an AudioMP3/ file its clip is made of is no unused file (a copy without AudioWAV/), nor one named twice
    used = {r.audio_path for r in records} | told_twice
    return records, [r for r in rejects if not (r.unused and r.source_path in used)]


def _stem(path: Path) -> str | None:
    """The clip a CREMA-D file is of (`1001_DFA_ANG_XX`, its level X read as XX), None where its name names none."""
    m = _NAME.match(path.stem)
    if not m or m.group(3) not in EMOTIONS:
        return None
    return path.stem + "X" if m.group(4) == "X" else path.stem


def _pairs(wav: Path | None, mp3: Path | None, videos: list[Path],
                  audio_only: bool) -> list[tuple[str | None, str]]:
    """The (video, audio) pairs a CREMA-D clip is tried from, in turn: each of its videos (.flv, then .mp4) with its
    AudioWAV/ file, then with its AudioMP3/ file (the same recording), then each video with its own track, which the
    corpus records with the picture. A .wav cut short or damaged lost its clip, though the corpus holds its sound twice
    more; so did a copy without AudioWAV/ (`wav` None). `audio_only`: no video in any pair (the videos' tracks are
    still tried)."""
    shown = [None] if audio_only else [str(v) for v in videos]
    pairs = [(v, str(a)) for a in (wav, mp3) if a is not None for v in shown]
    return pairs + [(None if audio_only else str(v), str(v)) for v in videos]


_FIELDS = ("actor", "sentence", "emotion", "level")


def _shown(stem: str) -> tuple[tuple[str, str], ...]:
    """A clip's name as `copies.named_twice` tells where two differ: its emotion by name."""
    return tuple((field, EMOTIONS[code] if field == "emotion" else code)
                 for field, code in zip(_FIELDS, _NAME.match(stem).groups()))


def _is_mp3(path: str | Path) -> bool:
    """Whether a file is one of CREMA-D's AudioMP3/ files, which avdis reads only for a clip whose AudioWAV/ file does
    not decode (AudioWAV/ holds its audio), or in a copy without AudioWAV/."""
    return (Path(path).parent.name, Path(path).suffix.lower()) == ("AudioMP3", ".mp3")


def _record(stem: str, source: Path, audio: Path, video: Path | None,
                   fallback: tuple[tuple[str | None, str], ...] = (), spare: tuple[str, ...] = (),
                   copies: tuple[tuple[str | None, str], ...] = ()) -> ClipRecord:
    actor, sentence, emo, level = _NAME.match(stem).groups()
    return ClipRecord(
        clip_id=f"cremad-{stem}", corpus="cremad", speaker=actor, emotion=EMOTIONS[emo],
        source_path=str(source), audio_path=str(audio), video_path=None if video is None else str(video),
        meta={"sentence": sentence, "level": level}, fallback=fallback, spare=spare, copies=copies,
    )
