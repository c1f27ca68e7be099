"""What shards are made with: the decoding (`DECODING`), the settings a manifest records, the fingerprint a rerun
compares (the corpus's files and labels, `source_lines`, and those settings), what changed when it differs; and the
checks of a config against the shards it names (`check_made_with`, `check_synth`)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from avdis.config import ADDED_FEATURES, MADE_WITH_SHARDS, VIDEO_FEATURES, DataConfig, FeatureConfig, SplitConfig
from avdis.data.corpora import ClipRecord, Reject, copies_found, no_media
from avdis.errors import UsageError


def file_stamp(path: str) -> str:
    """Size and mtime_ns: what changes when a file is overwritten, without reading it; and that the user cannot read
    it, where so: `chmod a+r`, which its reject says to run, changes neither, and a rerun found the shards made
    without its clip up to date. A file that can be read keeps the stamp shards were made with before."""
    st = os.stat(path)
    unreadable = "" if os.access(path, os.R_OK) else ":unreadable"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}{unreadable}"


# How clips are decoded into features; bump it when that changes, so shards made before are made again rather than
# mixed with new ones. 2: every channel layout is averaged, a video lasts to the end of its last frame. 3: audio
# shorter than one analysis window is rejected. 4: a clip whose window holds no sound (its audio starts after the
# video ends) is rejected. 5: an audio file's cover art is no video (such a clip was an AV clip of the artwork); an HLS
# playlist is no clip; a WAV cut short (its header declares more audio than it holds) is no clip. 6: a WAV whose header
# holds a placeholder length (SoX or arecord writing into a pipe) is a clip again, not a WAV cut short. 7: a FLAC or
# an MP3 cut short (its STREAMINFO or Xing/Info header declares more audio than it holds) is no clip. 8: nor is an MP4
# cut short (its index lists packets past the end of the file), whose video was a shorter clip. 9: nor is an AIFF cut
# short. 10: nor an AVI or Matroska file cut short (its RIFF chunk or segment runs past the end of the file). 11: a
# file's audio and video are the tracks it marks default (a player's), not its first (a commentary or a dub). 12: nor
# an Ogg or FLV file cut short (its last page or tag runs past the end of the file). 13: nor an MP3 without a
# Xing/Info header, a Matroska file written live, a fragmented MP4, a CAF or an AU file cut short (its last frame,
# element, box or chunk does); an MP3 with bytes appended after its last frame is a clip again (it was "corrupt audio
# stream" or "cut short"). 14: so is one with more than 64 KiB appended, a Matroska file written live with bytes
# appended that begin with an element's ID and a fragmented MP4 or a CAF file with text appended (each was "cut
# short"); a Xing MP3 cut inside a frame's header is no clip (it was a shorter one). 15: an FLV file, or a Matroska
# file written live with clusters of open size, with a short word of text or other bytes appended is a clip again
# (each was "cut short"). 16: so are a Matroska file written live with a Korean character appended and an FLV file
# with a tab and a few characters appended; an AVI over 1 GiB (OpenDML), an MPEG transport stream (.ts, .mts: inside a
# packet, or between two inside an audio PES packet or a video frame), a fragmented MP4 cut inside a box's header or
# a W64 file cut short is no clip (each was a shorter one), a CAF file with text appended that begins with a chunk's
# type is a clip again (it was "cut short"); and shards made with it deal within_speaker splits anew
# (each emotion its share of every split: splits.within_speaker). 17: nor is an FLV file whose tags stop short of the
# size its metadata declares, the rest zeros or damage (a download that set the file's size first, never filled in):
# its video was a shorter clip. 18: nor is an MP3 whose frames stop before the bytes its Xing/Info header counts, the
# rest zeros (taken for zeros appended, it was a shorter clip). 19: nor an Ogg file whose pages stop before its
# stream's last page, the rest no page (a shorter clip, or "cannot open media"). 20: nor a Matroska file whose
# elements stop short of its segment's end, the rest zeros (a shorter clip, or "corrupt video stream"). 21: an Ogg file whose last page does not mark its stream's end,
# with a tag or text appended (no zeros, no page after it), is a clip again (it was "damaged"). 22: a video under half
# as long as its audio, and more than 0.5 s shorter, is no clip (it was one of a few frames under seconds of voice).
# 23: that is within the clip's window, not the whole file: a long recording whose video covers its window is a clip
# again. 24: a CREMA-D clip whose .wav does not decode is made of its AudioMP3/ file, else of its video's own track
# (it was a reject; shards of a copy without AudioMP3/ were otherwise up to date). 25: nor is an RF64 or BW64 WAV cut
# short (its ds64 chunk declares more audio than it holds; it was a shorter clip). 26: an RF64 or BW64 WAV whose ds64
# chunk leaves its data's size open (0: written into a pipe) is read to its end (it was "audio stream holds no
# samples", no clip).
DECODING = 26


# The split settings preprocessing fixes in the manifest (config.MADE_WITH_SHARDS); `scheme` and `fold` are chosen
# when training.
SPLIT_MADE_WITH = tuple(k.removeprefix("data.split.") for k in MADE_WITH_SHARDS if k.startswith("data.split."))


# what the shards of each data.modality hold (the manifest's `modalities`, which training checks model.modality against)
HELD = {"av": ["audio", "visual"], "audio": ["audio"]}


def _made_split(split: SplitConfig) -> dict[str, Any]:
    """`split` with the settings training chooses at their defaults: a preprocess config naming another fold or
    scheme (one per cross-validation job) made the same shards, and rebuilt them all. Defaults, not left out, so
    the shards made before this with the default scheme and fold keep their fingerprint."""
    chosen_later = {k: f.default for k, f in SplitConfig.model_fields.items() if k not in SPLIT_MADE_WITH}
    return split.model_copy(update=chosen_later).model_dump()


def made_features(data: DataConfig) -> dict[str, Any]:
    """`data.features` as shards are made with them: under data.modality=audio the video frames' settings
    (`VIDEO_FEATURES`) at their defaults, as those shards hold no video (given, they were recorded and training had
    to repeat them). Defaults, not left out, so audio shards made before this keep their fingerprint. Settings added
    since (`ADDED_FEATURES`) are left out at the value shards made before them have, for the same reason."""
    unread = {k: FeatureConfig.model_fields[k].default for k in VIDEO_FEATURES} if data.modality == "audio" else {}
    made = data.features.model_copy(update=unread).model_dump()
    return {k: v for k, v in made.items() if k not in ADDED_FEATURES or v != ADDED_FEATURES[k]}


def recorded_features(meta: dict[str, Any]) -> dict[str, Any]:
    """The features a manifest's shards were made with, those it leaves out (`ADDED_FEATURES`) at their value."""
    return {**ADDED_FEATURES, **meta.get("features", {})}


def fingerprint_of(sources: bytes, data: DataConfig) -> str:
    """What determines the output: the corpus (`source_lines`), features, splits, shard size, and the decoding."""
    h = hashlib.sha256()
    made = [made_features(data), _made_split(data.split), data.shard_size, data.corpus, DECODING]
    # the modality only where it is not the default: shards made before it was a setting keep their fingerprint
    h.update(json.dumps(made + ([data.modality] if data.modality != "av" else [])).encode())
    h.update(sources)
    return h.hexdigest()


# How the scan's rejects count in the fingerprint, kept in the manifest (`scan`). 2: a file that is no media
# (`corpora.no_media`: Thumbs.db, desktop.ini) is left out, so one an OS writes into the corpus rebuilds no shard; a
# manifest without `scan` counted every scan reject, and is compared as it was made.
SCAN = 2


def source_lines(records: list[ClipRecord], rejects: list[Reject], every_reject: bool = False) -> bytes:
    """The corpus's part of the fingerprint: clips, labels, source files' sizes and times, scan rejects but those of
    files that are no media (all of them: `every_reject`, as before `SCAN`). Its own hash is kept in the manifest too
    (`sources`), so a rebuild can say whether the corpus or the settings changed."""
    # a copy of the same size (`copies_found`) is not stamped, as before it was tried: the file it copies is, and one
    # that changes size is a copy of another size, which is
    twins = {j.source_path for j in copies_found(rejects)}
    lines = []
    for r in records:
        # audio file first, as shards were fingerprinted before audio-only clips (with no video file): listed
        # video first, every CREMA-D shard and RAVDESS 02 + 03 clip made before read as a corpus that had changed
        # a clip's copies of another size only where it has them: others keep the fingerprint they were made with
        # nor is a fallback file the scan marked unused (CREMA-D's AudioMP3/ file, a video under data.modality=audio),
        # as before it was tried: its coming or going is its scan reject's line; nor, in a pair with a copy of another
        # file, such a file or a copy of it (found by name, which a copy keeps)
        unread = {Path(p).name for pair in r.fallback for p in pair if p in r.spare}
        copies = (p for pair in r.copies for p in pair if p and p not in twins and Path(p).name not in unread)
        fallback = (p for pair in r.fallback for p in pair if p not in r.spare)
        files = "|".join(file_stamp(p) for p in dict.fromkeys((r.audio_path, r.video_path, *fallback, *copies)) if p)
        lines.append(f"{r.clip_id}|{r.speaker}|{r.emotion}|{files}\n")
    lines += [f"reject|{j.source_path}|{j.reason}\n" for j in rejects
              if every_reject or not (j.unused and no_media(j.source_path))]
    return "".join(lines).encode()


def _made_with(corpus: Any, features: Any, split: Any, shard_size: Any, decoding: Any,
               modality: str) -> dict[str, Any]:
    return {"data.corpus": corpus, "data.shard_size": shard_size, "decoding": decoding, "data.modality": modality,
            **{f"data.features.{k}": v for k, v in (features or {}).items()},
            **{f"data.split.{k}": v for k, v in (split or {}).items() if k in SPLIT_MADE_WITH}}


def what_changed(meta: dict[str, Any], data: DataConfig, sources: str) -> str:
    """The settings that differ from the manifest's and whether the corpus did; a manifest from before these were
    kept (no `sources`) names only the settings it holds."""
    was = _made_with(meta.get("corpus"), recorded_features(meta), meta.get("split"), meta.get("shard_size"),
                     meta.get("decoding"), modality_of(meta))
    now = _made_with(data.corpus, {**ADDED_FEATURES, **made_features(data)}, data.split.model_dump(), data.shard_size,
                     DECODING, data.modality)
    added = {f"data.features.{k}" for k in ADDED_FEATURES}
    changed = [f"{key} {was[key]!r} -> {value!r}" for key, value in now.items()
               if key in was and (was[key] is not None or key in added) and was[key] != value]
    if meta.get("sources") not in (None, sources):
        changed.append("the corpus (a clip added, removed or relabelled, or a source file's size, time or whether "
                       "the user can read it changed)")
    if not changed:
        return "source files, settings or decoding changed"
    return "changed since the shards were made: " + "; ".join(changed)


def modality_of(meta: dict[str, Any]) -> str | None:
    """The data.modality a manifest's shards were made with (manifests from before the setting hold AV shards)."""
    return {tuple(v): k for k, v in HELD.items()}.get(tuple(meta.get("modalities", HELD["av"])))


def check_made_with(data: DataConfig, meta: dict[str, Any]) -> None:
    """Refuse a corpus, features, split settings or a modality other than the shards were made with: training reads
    the manifest's, so they would be recorded with the run (and a sweep's settings) but never used (a config naming
    RAVDESS, its data.shards left at the generated corpus's, trained on that). Not the video frames' settings of
    shards of audio alone, which hold none (a manifest may record them, made before `made_features`)."""
    made = {**{f"data.split.{k}": v for k, v in meta.get("split", {}).items() if k in SPLIT_MADE_WITH},
            **{f"data.features.{k}": v for k, v in recorded_features(meta).items()},
            "data.modality": modality_of(meta), **({"data.corpus": meta["corpus"]} if "corpus" in meta else {})}
    asked = {**{f"data.split.{k}": getattr(data.split, k) for k in SPLIT_MADE_WITH},
             **{f"data.features.{k}": v for k, v in data.features.model_dump().items()},
             "data.modality": data.modality, "data.corpus": data.corpus}
    unread = {f"data.features.{k}" for k in VIDEO_FEATURES} if made["data.modality"] == "audio" else set()
    differ = [f"{key}={asked[key]!r} (made with {made[key]!r})" for key in asked
              if key in made and key not in unread and made[key] != asked[key]]
    if differ:
        raise UsageError(f"{data.shards}: its shards were made with other settings: {', '.join(differ)}; make shards "
                         f"with these (`avdis preprocess ... --out <another folder>`, then data.shards=<it>), or leave "
                         "them as they were made")


def synth_made(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The data.synth of the generated corpus a manifest's shards were made from, as a config reads it; None where it
    records none. A corpus generated before identity_cues took words recorded `true`, which a config reads as 'on':
    compared as recorded, every config was refused, even one that left data.synth out (`prepare.as_made` gives it
    these settings)."""
    from avdis.data import synth

    return None if meta.get("synth") is None else synth.as_read(meta["synth"])


def check_synth(data: DataConfig, meta: dict[str, Any]) -> None:
    """Refuse a data.synth the config gives (`model_fields_set`) other than the generated corpus's the shards were made
    from: training reads the shards, so a control run (data.synth.identity_cues=off, data.shards left at the default)
    trained on a corpus with identity cues and was recorded as the control. A config that leaves data.synth out
    takes the shards as they are, as for any corpus, and so does a manifest that records no settings (made before
    they were kept, or from a corpus the generator did not write). Checked by the driver (`ensure_shards`), whose
    config is the user's: the one sent on to workers is dumped whole, every setting given there."""
    made = synth_made(meta)
    if made is None or "synth" not in data.model_fields_set:
        return
    differ = [f"data.synth.{k}={v!r} (made with {made.get(k)!r})" for k, v in data.synth.model_dump().items()
              if made.get(k) != v]
    if differ:
        raise UsageError(f"{data.shards}: its shards were made from a corpus generated with other settings: "
                         f"{', '.join(differ)}; the run would record this data.synth and train on that corpus. "
                         "Point data.shards and data.src at new folders (a corpus with these settings is then "
                         "generated and preprocessed on first use) or at shards made with them (`avdis preprocess "
                         "--src <a corpus generated with them> --out <another folder>`), or give data.synth as they "
                         "were made (or leave it out of the config) to train on these shards")
