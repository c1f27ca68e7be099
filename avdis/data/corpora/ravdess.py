"""The RAVDESS adapter: a source folder's files -> clip records and rejects.

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
the clip's file should the one found first not decode (RAVDESS and CREMA-D alike). A file a clip may be made of (a
fallback too) holding the same bytes as another clip's (one recording under two names: a file copied under another
name) makes neither clip, as in CREMA-D: a name is its label, and which is right is unknown (`copies.named_twice`).
"""

from __future__ import annotations

import re
from pathlib import Path

from avdis.data.corpora.copies import copies_unused, duplicate, named_twice, with_copies
from avdis.data.corpora.records import PACKED, ClipRecord, Reject, Scan, no_media, packed


EMOTIONS = dict(zip(["01", "02", "03", "04", "05", "06", "07", "08"],
                    ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]))
_NAME = re.compile(r"^(0[1-3])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})$")


def scan(src: Path, files: list[Path], audio_only: bool) -> Scan:
    clips: dict[str, dict[str, Path]] = {}
    fields_of: dict[str, tuple[str, ...]] = {}
    rejects: list[Reject] = []
    copies: dict[str, list[int]] = {}  # clip -> its files' copies, by their place in `rejects` (`duplicate`)
    others: dict[str, list[tuple[Path, Path]]] = {}  # clip -> (file, its copy)
    for path in files:
        if path.suffix.lower() not in (".mp4", ".wav"):
            rejects.append(Reject(str(path), PACKED if packed(path) else "not a RAVDESS media file (.mp4 or .wav)",
                                  unused=no_media(path)))
            continue
        m = _NAME.match(path.stem)
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
            duplicate(path, slot[modality], rejects, copies.setdefault(key, []))
            others.setdefault(key, []).append((slot[modality], path))
            continue
        slot[modality] = path
        fields_of[key] = tuple(rest)
    may_use = {str(p): key for key, slot in sorted(clips.items()) for p in _may_use(slot, audio_only)}
    twins = named_twice(may_use, lambda key: _shown(fields_of[key]))
    records = []
    for key, slot in sorted(clips.items()):
        faulty = [p for p in _may_use(slot, audio_only) if str(p) in twins]
        if faulty:  # every file of the clip a reject
            rejects.extend(Reject(str(p), twins[str(p)] if p in faulty else
                                  f"its clip is not made ({faulty[0].name}: {twins[str(faulty[0])]})")
                           for p in slot.values())
            continue
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
            spare += copies_unused(rejects, copies.get(key, []))
            tries = with_copies(((None, str(audio)), *fallback), others.get(key, []))
            records.append(_record(key, fields_of[key], audio, audio, None, fallback, spare, tries))
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
        spare += copies_unused(rejects, copies.get(key, []))
        fallback += tuple(mixed)
        tries = with_copies(((str(video), str(audio)), *fallback), others.get(key, []))
        records.append(_record(key, fields_of[key], video, audio, video, fallback, spare, tries))
    return records, rejects


def _may_use(slot: dict[str, Path], audio_only: bool) -> list[Path]:
    """The files a clip (`slot`: its files by modality) may be made of, checked for one recording under two names: its
    file and its fallbacks, which decoding takes where the file before them does not decode (a 01 file copied under
    the name of a clip made of its own 03 file is that clip's sound should its 03 not decode): under data.modality=av
    all its files, under data.modality=audio its 03 and 01 files (a 02 file gives no sound). None for a clip not made
    (a lone 02 or 03 file, a reject of its own; under data.modality=audio a lone 02), so no second clip of a
    recording."""
    if audio_only:
        return [slot[m] for m in ("03", "01") if m in slot]
    return list(slot.values()) if "01" in slot or ("02" in slot and "03" in slot) else []


_FIELDS = ("vocal channel", "emotion", "intensity", "statement", "repetition", "actor")  # a name's, after MM


def _shown(fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A clip's name as `copies.named_twice` tells where two differ: its vocal channel and emotion by name."""
    named = {"vocal channel": {"01": "speech", "02": "song"}, "emotion": EMOTIONS}
    return tuple((field, named.get(field, {}).get(code, code)) for field, code in zip(_FIELDS, fields))


def _record(key: str, fields: tuple[str, ...], source: Path, audio: Path, video: Path | None,
                    fallback: tuple[tuple[str | None, str], ...], spare: tuple[str, ...],
                    copies: tuple[tuple[str | None, str], ...]) -> ClipRecord:
    vocal, emo, intensity, statement, repetition, actor = fields
    return ClipRecord(
        clip_id=f"ravdess-{key}", corpus="ravdess", speaker=actor, emotion=EMOTIONS[emo],
        source_path=str(source), audio_path=str(audio), video_path=None if video is None else str(video),
        meta={"vocal_channel": "speech" if vocal == "01" else "song", "intensity": intensity,
              "statement": statement, "repetition": repetition},
        fallback=fallback, spare=spare, copies=copies,
    )
