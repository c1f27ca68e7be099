"""Preprocessing: clip records -> WebDataset tar shards + manifest.parquet + rejects.parquet.

Output under the URL (local folder or s3://bucket/prefix):
    shards/shard-000000.tar ...  samples `<key>.audio.npy`, `.video.npy` (not in audio shards), `.json` (key: the clip_id, dots escaped;
                                 the json: the clip's id, labels and lengths)
    manifest.parquet             one row per clip: labels, label indices, split assignments, shard, shapes, the files
                                 it was made of (`source_path`, `audio_path`, `video_path`: a fallback's where the
                                 clip's own did not decode), the audio's own sample rate (`source_rate`, Hz; not in
                                 manifests made before it was kept), the frequency its sound stops at (`bandwidth_hz`,
                                 null where too short or quiet to tell; not in manifests made before it was measured);
                                 schema metadata "avdis" holds label sets, features, shards (and a generated
                                 corpus's `data.synth` settings)
    rejects.parquet              source_path, reason, unused for every file that could not be used, or not all of
                                 it (unused: a file its clip was made without, no fault), sorted

Clips are dealt to shards in a seeded shuffled order (shards mix speakers and emotions).
Each shard is one Ray task (or one step of a local loop): it decodes its clips and
writes the shard in one atomic write, so no half shard is ever visible. Label indices and
splits are given once every clip is decoded, to the clips that were (`assign`), and live
in the manifest only: a clip rejected at decoding must not leave its speaker without a
train clip, a fold empty, or a speaker class nobody has.

A build first removes the old manifest (an interrupted build never leaves a manifest
beside shards it does not describe), then writes the shards, deletes shard files the new
manifest does not list, and writes the manifest last. A rerun is up to date, and does
nothing, only when the manifest's fingerprint matches the corpus (labels, and each source
file's path, size and mtime_ns: a content hash would read the whole corpus on every rerun; paths as the build spelt
the source folder, so another spelling of the same folder is the same corpus; the scan's rejects but files that are
no media, such as the Thumbs.db an OS writes on its own) and
settings, and `shards/` holds exactly the listed shards at their recorded byte sizes.
Anything else, or `force`, rebuilds; identical inputs give identical bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

import numpy as np
import pyarrow as pa
import webdataset as wds

from avdis import runtime, storage, storage_lock
from avdis.config import (ADDED_FEATURES, EMOTIONS, MADE_WITH_SHARDS, VIDEO_FEATURES, DataConfig, FeatureConfig,
                          S3Config, SplitConfig)
from avdis.data import splits
from avdis.data.bandwidth import band_counts, bandwidth_cue, rate_counts
from avdis.data.corpora import (GROUND_TRUTH, ClipRecord, CorpusError, Reject, copies_found, named_as,
                                no_media, placeholders_found, scan)
from avdis.errors import AvdisError, UsageError, counted

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
SHARD_DIR = "shards"


class PreprocessError(AvdisError):
    """Nothing usable came out of preprocessing."""


class ManifestUnreadable(PreprocessError):
    """manifest.parquet is there but is no manifest avdis wrote (damaged, cut short, another file in its place)."""


@dataclass(frozen=True)
class Labels:
    """Label sets of one corpus; indices are positions in these lists."""

    emotions: list[str]
    speakers: list[str]

    @classmethod
    def of(cls, records: Iterable[ClipRecord]) -> "Labels":
        records = list(records)
        present = {r.emotion for r in records}  # the canonical words in their order, then a corpus's own, sorted
        return cls([e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS)),
                   sorted({r.speaker for r in records}))


@dataclass(frozen=True)
class ShardTask:
    index: int
    records: list[ClipRecord]


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


_SHARD_NAME = re.compile(r"shard-\d{6,}\.tar")  # what shard_name writes


def sample_key(clip_id: str) -> str:
    """The clip's name inside a tar. WebDataset takes everything after the first dot of a member's name as its
    field, so an id such as `c1.mp4` (a file name, as a ground_truth.csv may give) would have its sample split
    into fields nobody reads; dots are escaped (and `%`, so two ids never meet). The id itself is in the json."""
    return clip_id.replace("%", "%25").replace(".", "%2E")


def _encode(rec: ClipRecord, feat: FeatureConfig) -> tuple[dict, dict]:
    from avdis.data.media import extract

    clip = extract(rec.audio_path, rec.video_path, feat)
    meta = {
        "clip_id": rec.clip_id, "corpus": rec.corpus, "speaker": rec.speaker, "emotion": rec.emotion,
        "audio_len": clip.audio_len, "video_len": clip.video_len, "face_detected": clip.face_detected,
    }
    sample = {"__key__": sample_key(rec.clip_id), "audio.npy": clip.audio, "json": meta,
              **({"video.npy": clip.video} if clip.video is not None else {})}
    row = {**meta, "source_path": rec.source_path, "audio_path": rec.audio_path, "video_path": rec.video_path,
           "duration_s": clip.duration_s, "source_rate": clip.source_rate,
           "bandwidth_hz": clip.bandwidth_hz, "audio_shape": list(clip.audio.shape),
           "video_shape": [] if clip.video is None else list(clip.video.shape), "meta": json.dumps(rec.meta, sort_keys=True)}
    return sample, row


# the corpora whose file names say which files hold video: one of those holding none is a bad copy, not audio alone
VIDEO_BY_NAME = ("ravdess", "cremad")


def _encode_any(rec: ClipRecord, feat: FeatureConfig) -> tuple[tuple[dict, dict] | None, list[Reject]]:
    """The clip from its own files, else from its fallback pairs, else from its pairs with a copy in place of one of
    its files (`ClipRecord.copies`); and a reject, saying why, for each file left unused or
    at fault (one that made part of the clip too). A failed clip's row names the file at fault when that is another one
    (its audio file)."""
    # The media decoders (PyAV, librosa, OpenCV) load only where clips are decoded: readers of shards
    # (training workers) never need them.
    from avdis.data.media import NO_AUDIO_STREAM, MediaError, NoVideo

    own = dict.fromkeys(p for pair in ((rec.video_path, rec.audio_path), *rec.fallback) for p in pair if p)  # no copy's
    stand_ins = _stand_ins(rec)
    # in turn, but the pairs of the clip's own audio file or a copy of it before those of a file standing in for it
    tries = sorted([(rec.video_path, rec.audio_path), *rec.fallback, *rec.copies],
                   key=lambda pair: Path(pair[1]).name in stand_ins)
    # (files tried, file at fault, reason, why, the reason without its advice: `MediaError.fault`)
    failed: list[tuple[ClipRecord, str | None, str, str, str]] = []
    encoded = None
    for video, audio in tries:
        if Path(audio).name in stand_ins and not any(at in (None, rec.audio_path) for _, at, *_ in failed):
            continue  # where the clip's own audio file failed (or an error named no file), not a video beside it
        attempt = replace(rec, source_path=video or audio, audio_path=audio, video_path=video) if failed else rec
        try:
            encoded = _encode(attempt, feat)
            break
        except Exception as exc:  # noqa: BLE001 - one bad clip must never stop the others
            at, reason, fault = ((exc.path, exc.reason, exc.fault) if isinstance(exc, MediaError) else
                                 (None, *[f"{type(exc).__name__}: {exc}"] * 2))
            if isinstance(exc, NoVideo) and rec.corpus in VIDEO_BY_NAME:
                reason = exc.damaged
            elif rec.corpus == "cremad" and reason == NO_AUDIO_STREAM and Path(audio).suffix.lower() in (".flv", ".mp4"):
                reason = _no_sound_anywhere(audio, tries)  # the video's own track, tried last
            failed.append((attempt, at, reason, reason if at in (None, attempt.source_path) else f"{at}: {reason}",
                           fault))
    used = (attempt.video_path, attempt.audio_path) if encoded else ()
    instead = ""
    if encoded:
        names = " and ".join(p if p not in own else Path(p).name for p in dict.fromkeys(used) if p)
        instead = f"; the clip was taken from {names} instead"
    faults: dict[str, Reject] = {}  # a file's own fault, the first found
    others: dict[str, Reject] = {}  # a file that was tried beside the one at fault: what the last try says of it
    for tried, at, reason, why, fault in failed:
        blamed = at if at is not None and at in (tried.video_path, tried.audio_path) else tried.source_path
        if blamed in used:  # the pair's fault, not the file's, which made the clip (a .wav silent in the window a
            # short video centres): the other file's, as the clip was made without it
            blamed = next((p for p in (tried.source_path, tried.audio_path) if p not in used), blamed)
        # a clip made all the same: the file's fault without the advice, which was for a clip of no picture
        faults.setdefault(blamed, Reject(blamed, ((fault if encoded else reason) if blamed == at else why) +
                                         (_partly(blamed, attempt, own) if blamed in used else instead)))
        for p in dict.fromkeys((tried.source_path, tried.audio_path)):
            if p == blamed or p not in own:  # a copy not at fault stays the scan's reject
                continue
            others[p] = (Reject(p, f"clip taken from {_taken(attempt, own)}", unused=True) if encoded else
                         Reject(p, why) if p == tried.source_path else
                         Reject(p, f"its clip could not be made ({Path(tried.source_path).name}: {why})"))
    if encoded:  # the fallback files where the clip's own decoded; a spare keeps the scan's reject while that is true
        # (CREMA-D's AudioMP3/ file, a video under data.modality=audio: the scan said the clip is its AudioWAV/ file's)
        others.update((p, Reject(p, f"clip taken from {_taken(attempt, own)}", unused=True))
                      for p in own if p not in others and not (p in rec.spare and not failed))
    else:  # the files the clip would have been made without
        last = next(f for f in reversed(failed) if f[0].source_path in own)
        lost = f"its clip could not be made ({Path(last[0].source_path).name}: {last[3]})"
        # a spare among its fallback files that was not tried (CREMA-D's AudioMP3/ file behind a .wav that decoded)
        # keeps the scan's reject
        tried = {p for f in failed for p in (f[0].video_path, f[0].audio_path)}
        others.update((p, Reject(p, lost)) for p in rec.spare if p in tried or p not in own)
    # a file at fault that made part of the clip stays a fault (`_partly`); the other files the clip was made of are
    # no rejects
    return encoded, [*faults.values(), *(r for p, r in others.items() if p not in faults and p not in used)]


def _no_sound_anywhere(video: str, tries: list[tuple[str | None, str]]) -> str:
    """The reject of a CREMA-D video whose own track holds no sound: it is tried for its clip's sound last, after the
    AudioWAV/ and AudioMP3/ files (`tries`, the clip's pairs), and 'no audio stream' alone read as if it were the
    clip's only source of sound."""
    stem, had = Path(video).stem, {Path(audio).suffix.lower() for _, audio in tries}
    wav, mp3 = (f"its {folder}/{stem}{suffix} {'failed' if suffix in had else 'is not in data.src'}"
                for folder, suffix in (("AudioWAV", ".wav"), ("AudioMP3", ".mp3")))
    return (f"no audio stream, the clip's last source of sound: {wav}, {mp3}; copy AudioWAV/{stem}.wav (whole) under "
            "data.src to make its clip")


def _stand_ins(rec: ClipRecord) -> set[str]:
    """The names of the files (and so of their copies) a clip's fallback pairs take its sound from in place of its
    own audio file: CREMA-D's AudioMP3/ file and its video's track, RAVDESS's 01 file behind a 03 file under
    data.modality=audio; none for a full-AV file, whose fallback pairs replace its picture too. They stand in for
    that file where it does not decode, after its copies (a whole copy of a .wav is the recording, an .mp3 a lossy
    one), and not for a video that fails beside it (a .flv of a few frames was made a clip of its own track, as
    short, though its whole .wav showed the take cut short)."""
    if rec.audio_path == rec.video_path:
        return set()
    return {Path(audio).name for _, audio in rec.fallback if audio != rec.audio_path}


def _named(path: str, own: Collection[str]) -> str:
    """A file as a reject names it: one of the clip's `own` files by name, a copy (`ClipRecord.copies`) by its path,
    as its name is that of the file it copies, which may be the one that failed."""
    return Path(path).name if path in own else path


def _partly(path: str, rec: ClipRecord, own: Collection[str]) -> str:
    """What the clip `rec` took of `path`, a file at fault that made part of it (a RAVDESS full-AV 01 file whose
    sound alone did not decode, its picture paired with the 03 file's sound): its reject, else the user never learns
    that a file of theirs is partly broken."""
    if path == rec.video_path:
        return f"; the clip was taken from its picture and the sound of {_named(rec.audio_path, own)} instead"
    return f"; the clip was taken from its sound and the picture of {_named(rec.video_path, own)} instead"


def _taken(rec: ClipRecord, own: Collection[str]) -> str:
    """The files a clip was taken from, as an unused file's reject names them (`_named`)."""
    return (f"{_named(rec.audio_path, own)} (data.modality=audio)" if rec.video_path is None else
            f"full-AV file {_named(rec.source_path, own)}" if rec.audio_path == rec.video_path else
            f"{_named(rec.video_path, own)} and {_named(rec.audio_path, own)}")


def write_shard(task: ShardTask, out: str, feat: FeatureConfig, s3: S3Config) -> dict[str, Any]:
    """Decode the task's clips and write its shard; bad clips become rejects."""
    buf = io.BytesIO()
    rows, rejects = [], []
    with wds.TarWriter(buf, mtime=0, user="avdis", group="avdis") as tar:
        for rec in task.records:
            encoded, unused = _encode_any(rec, feat)
            rejects.extend(asdict(r) for r in unused)
            if encoded is None:
                continue
            sample, row = encoded
            tar.write(sample)
            rows.append({**row, "shard": shard_name(task.index)})
    data = buf.getvalue()
    info = {"name": shard_name(task.index), "clips": len(rows), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}
    if rows:
        storage.write_bytes(storage.join(out, SHARD_DIR, info["name"]), data, s3)
    return {"rows": rows, "rejects": rejects, "shard": info if rows else None, "clips": len(task.records)}


def plan(records: list[ClipRecord], data: DataConfig) -> list[ShardTask]:
    """Clips dealt to shards in a seeded order."""
    order = np.random.default_rng(data.split.seed).permutation(len(records))
    return [ShardTask(k, [records[i] for i in order[start : start + data.shard_size]])
            for k, start in enumerate(range(0, len(records), data.shard_size))]


def assign(rows: list[dict[str, Any]], data: DataConfig) -> Labels:
    """Label indices and both split schemes for the decoded clips' manifest rows, in place; their label sets."""
    labels = Labels.of(ClipRecord(r["clip_id"], r["corpus"], r["speaker"], r["emotion"], "", "", "") for r in rows)
    speaker_idx = {name: i for i, name in enumerate(labels.speakers)}
    emotion_idx = {name: i for i, name in enumerate(labels.emotions)}
    spk = [r["speaker"] for r in rows]
    within = splits.within_speaker(spk, [r["emotion"] for r in rows], data.split)
    for row, split, fold in zip(rows, within, splits.speaker_folds(spk, data.split)):
        row.update(speaker_idx=speaker_idx[row["speaker"]], emotion_idx=emotion_idx[row["emotion"]],
                   split=split, fold=fold)  # "split": the within-speaker split (the manifest column's name)
    return labels


def _file_stamp(path: str) -> str:
    """Size and mtime_ns: what changes when a file is overwritten, without reading it."""
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


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
# (it was a reject; shards of a copy without AudioMP3/ were otherwise up to date).
DECODING = 24


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


def _made_features(data: DataConfig) -> dict[str, Any]:
    """`data.features` as shards are made with them: under data.modality=audio the video frames' settings
    (`VIDEO_FEATURES`) at their defaults, as those shards hold no video (given, they were recorded and training had
    to repeat them). Defaults, not left out, so audio shards made before this keep their fingerprint. Settings added
    since (`ADDED_FEATURES`) are left out at the value shards made before them have, for the same reason."""
    unread = {k: FeatureConfig.model_fields[k].default for k in VIDEO_FEATURES} if data.modality == "audio" else {}
    made = data.features.model_copy(update=unread).model_dump()
    return {k: v for k, v in made.items() if k not in ADDED_FEATURES or v != ADDED_FEATURES[k]}


def _recorded_features(meta: dict[str, Any]) -> dict[str, Any]:
    """The features a manifest's shards were made with, those it leaves out (`ADDED_FEATURES`) at their value."""
    return {**ADDED_FEATURES, **meta.get("features", {})}


def _fingerprint(sources: bytes, data: DataConfig) -> str:
    """What determines the output: the corpus (`_source_lines`), features, splits, shard size, and the decoding."""
    h = hashlib.sha256()
    made = [_made_features(data), _made_split(data.split), data.shard_size, data.corpus, DECODING]
    # the modality only where it is not the default: shards made before it was a setting keep their fingerprint
    h.update(json.dumps(made + ([data.modality] if data.modality != "av" else [])).encode())
    h.update(sources)
    return h.hexdigest()


# How the scan's rejects count in the fingerprint, kept in the manifest (`scan`). 2: a file that is no media
# (`corpora.no_media`: Thumbs.db, desktop.ini) is left out, so one an OS writes into the corpus rebuilds no shard; a
# manifest without `scan` counted every scan reject, and is compared as it was made.
SCAN = 2


def _source_lines(records: list[ClipRecord], rejects: list[Reject], every_reject: bool = False) -> bytes:
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
        files = "|".join(_file_stamp(p) for p in dict.fromkeys((r.audio_path, r.video_path, *fallback, *copies)) if p)
        lines.append(f"{r.clip_id}|{r.speaker}|{r.emotion}|{files}\n")
    lines += [f"reject|{j.source_path}|{j.reason}\n" for j in rejects
              if every_reject or not (j.unused and no_media(j.source_path))]
    return "".join(lines).encode()


def _made_with(corpus: Any, features: Any, split: Any, shard_size: Any, decoding: Any,
               modality: str) -> dict[str, Any]:
    return {"data.corpus": corpus, "data.shard_size": shard_size, "decoding": decoding, "data.modality": modality,
            **{f"data.features.{k}": v for k, v in (features or {}).items()},
            **{f"data.split.{k}": v for k, v in (split or {}).items() if k in SPLIT_MADE_WITH}}


def _what_changed(meta: dict[str, Any], data: DataConfig, sources: str) -> str:
    """The settings that differ from the manifest's and whether the corpus did; a manifest from before these were
    kept (no `sources`) names only the settings it holds."""
    was = _made_with(meta.get("corpus"), _recorded_features(meta), meta.get("split"), meta.get("shard_size"),
                     meta.get("decoding"), modality_of(meta))
    now = _made_with(data.corpus, {**ADDED_FEATURES, **_made_features(data)}, data.split.model_dump(), data.shard_size,
                     DECODING, data.modality)
    added = {f"data.features.{k}" for k in ADDED_FEATURES}
    changed = [f"{key} {was[key]!r} -> {value!r}" for key, value in now.items()
               if key in was and (was[key] is not None or key in added) and was[key] != value]
    if meta.get("sources") not in (None, sources):
        changed.append("the corpus (a clip added, removed or relabelled, or a source file's size or time changed)")
    if not changed:
        return "source files, settings or decoding changed"
    return "changed since the shards were made: " + "; ".join(changed)


def _shard_files(url: str, s3: S3Config) -> dict[str, int]:
    """Byte size of every shard file (`shard_name`'s) under `<url>/shards/`, by name. Only those: a build deletes
    the ones its manifest does not list, and a user's own files there (notes, other tars) are not ours to delete."""
    folder = storage.join(url, SHARD_DIR)
    fs, path = storage.filesystem(folder, s3)
    try:
        if not fs.exists(path):
            return {}
        entries = fs.ls(path, detail=True)
    except Exception as exc:
        raise storage.StorageError(f"{folder}: cannot list ({type(exc).__name__}: {exc})") from exc
    sizes = {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e["size"]) for e in entries if e["type"] == "file"}
    return {name: size for name, size in sizes.items() if _SHARD_NAME.fullmatch(name)}


def _unsound(listed: list[dict[str, Any]], found: dict[str, int]) -> dict[str, str]:
    """The shards of a manifest's list that `found` (name -> bytes, `_shard_files`) lacks or holds at another size, by
    name, each with what is wrong."""
    return {s["name"]: "missing" if s["name"] not in found else f"has {found[s['name']]} bytes, the manifest says "
            f"{s['bytes']}" for s in sorted(listed, key=lambda s: s["name"]) if found.get(s["name"]) != s["bytes"]}


def unsound_shards(url: str, s3: S3Config | None = None) -> dict[str, str]:
    """The shards the manifest at `url` lists whose file is missing or not of its recorded size, by name, each with
    what is wrong: one listing, no read (a shard damaged in place at its size is found only as a run reads it)."""
    return _unsound(read_manifest(url, s3)[1]["shards"], _shard_files(url, s3 or S3Config()))


def _shards_mismatch(url: str, listed: list[dict[str, Any]], s3: S3Config) -> str | None:
    """How the shard files in storage differ from the manifest's list; None when they are exactly it."""
    found = _shard_files(url, s3)
    problems = [f"{name} {why}" for name, why in _unsound(listed, found).items()]
    problems += [f"{n} is not in the manifest" for n in sorted(found.keys() - {s["name"] for s in listed})]
    return f"the shards stored differ from the manifest: {'; '.join(problems[:5])}" if problems else None


def _stale_reason(data: DataConfig, meta: dict[str, Any] | None, fingerprint: str, sources: str,
                  s3: S3Config) -> str | None:
    """Why the output under `data.shards` (its manifest's `meta`) must be rebuilt; None when it is up to date."""
    if meta is None:
        return "no manifest"
    if meta.get("fingerprint") != fingerprint:
        return _what_changed(meta, data, sources)
    return _shards_mismatch(data.shards, meta["shards"], s3)


def _remove_unlisted(url: str, listed: list[dict[str, Any]], s3: S3Config) -> None:
    """Delete shard files a new manifest does not list (left by an older or interrupted build)."""
    keep = {s["name"] for s in listed}
    for name in sorted(_shard_files(url, s3).keys() - keep):
        storage.remove(storage.join(url, SHARD_DIR, name), s3)


def modality_of(meta: dict[str, Any]) -> str | None:
    """The data.modality a manifest's shards were made with (manifests from before the setting hold AV shards)."""
    return {tuple(v): k for k, v in HELD.items()}.get(tuple(meta.get("modalities", HELD["av"])))


def check_made_with(data: DataConfig, meta: dict[str, Any]) -> None:
    """Refuse a corpus, features, split settings or a modality other than the shards were made with: training reads
    the manifest's, so they would be recorded with the run (and a sweep's settings) but never used (a config naming
    RAVDESS, its data.shards left at the generated corpus's, trained on that). Not the video frames' settings of
    shards of audio alone, which hold none (a manifest may record them, made before `_made_features`)."""
    made = {**{f"data.split.{k}": v for k, v in meta.get("split", {}).items() if k in SPLIT_MADE_WITH},
            **{f"data.features.{k}": v for k, v in _recorded_features(meta).items()},
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


def read_manifest(url: str, s3: S3Config | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """The manifest table and its "avdis" metadata (label sets, features, shards)."""
    table, meta, _ = load_manifest(url, s3)
    return table, meta


# manifest URL -> (its `_stamp`, table, metadata as JSON, hash) of the last one read in this process
_READ: dict[str, tuple[str, pa.Table, bytes, str]] = {}


def load_manifest(url: str, s3: S3Config | None = None) -> tuple[pa.Table, dict[str, Any], str]:
    """`read_manifest`, and the `manifest_hash` of the bytes it read: one download where a trial's every worker
    opens the data, and the hash a run records is that of the manifest it read, not of a later read. Read again only
    where it changed since this process last read it (`_stamp`): the start of a run or a sweep reads it for each of
    its checks (4 to 5 downloads of a manifest that may be megabytes on S3)."""
    murl = storage.join(url, MANIFEST)
    if not storage.exists(murl, s3):
        raise PreprocessError(f"{murl}: no manifest; run `avdis preprocess --out {url}` first")
    stamp = _stamp(murl, s3)
    held = _READ.get(murl)
    if held is not None and stamp and held[0] == stamp:
        _, table, meta, digest = held
        return table, json.loads(meta), digest
    data = storage.read_bytes(murl, s3)
    try:  # pa.ArrowInvalid, a ValueError, for a file that is not Parquet
        table = storage.parquet_of(data)
        meta = table.schema.metadata[b"avdis"]
        parsed = json.loads(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestUnreadable(f"{murl}: holds no avdis manifest ({type(exc).__name__}: {exc}); rebuild it with "
                                 f"`avdis preprocess --out {url} --force`") from None
    _READ[murl] = (stamp, table, meta, _short_hash(data))
    return table, parsed, _READ[murl][3]


def _stamp(url: str, s3: S3Config | None) -> str:
    """What changes when the file at `url` is written again, from its details (an S3 object's ETag; a local file's
    inode, size and time: avdis writes a new file and renames it into place), asked afresh, not from a listing
    cached in this process; '' where they cannot be had (the file is then read)."""
    fs, path = storage.filesystem(url, s3)
    try:
        info = fs.info(path, refresh=True)
    except Exception:  # noqa: BLE001 - read it, whose failure says why
        return ""
    return "|".join(str(info.get(k)) for k in ("ETag", "ino", "size", "mtime", "LastModified"))


BUILD = "build of these shards"  # what holds the shards folder's lock (`storage_lock.exclusive`) while it makes them


def build_shards(
    data: DataConfig,
    s3: S3Config,
    run_tasks: Callable[[list[ShardTask]], Iterable[dict[str, Any]]] | None = None,
    force: bool = False,
    missing_only: bool = False,
) -> dict[str, Any] | None:
    """Scan `data.src`, write shards + manifest + rejects under `data.shards`; return a summary.

    `run_tasks` executes the shard tasks (Ray tasks in `jobs/preprocess.py`); by default
    they run one after another in this process. Two builds of the same local shards at once (two sweeps submitted
    on a fresh cluster, `avdis preprocess` twice) each made them: the second now waits for the first, then finds
    them up to date. `missing_only`: make them only where no manifest is there once this build holds the folder,
    None where another job made them meanwhile (`prepare.ensure_shards`, which takes shards as they are made).
    """
    from avdis.data.media import check_mel_bands

    check_mel_bands(data.features)  # before the scan: every clip would be decoded into the same dead bands
    out_dir = None if storage.is_remote(data.shards) else storage.filesystem(data.shards)[1]
    if out_dir is not None and os.path.realpath(out_dir) == os.path.realpath(data.src):
        raise UsageError(f"{data.shards}: is the source folder itself; write the shards to a folder beside it or "
                         "inside it (its own files would be read as the corpus's)")
    with storage_lock.exclusive(data.shards, BUILD, wait=True, s3=s3):
        if missing_only and storage.exists(storage.join(data.shards, MANIFEST), s3):
            return None
        from avdis.data import synth

        with synth.held_while_read(data.src) if data.corpus == "synthetic" else nullcontext():
            return _build(data, s3, run_tasks, force, out_dir)


def _build(data: DataConfig, s3: S3Config, run_tasks: Callable[[list[ShardTask]], Iterable[dict[str, Any]]] | None,
           force: bool, out_dir: str | None) -> dict[str, Any]:
    """`build_shards`' work, in the shards folder's lock (`out_dir`: that folder where it is local)."""
    from avdis.data import synth

    records, scan_rejects = scan(data.corpus, data.src, skip=out_dir, audio_only=data.modality == "audio")  # an output inside the source is no input
    manifest_url = storage.join(data.shards, MANIFEST)
    if not records:
        if storage.exists(manifest_url, s3):  # a wrong --src must not touch the shards a manifest vouches for
            where = f"{data.shards} was left as it was"
        else:
            storage.write_parquet(storage.join(data.shards, REJECTS), _rejects_table(scan_rejects), s3)
            where = f"all in {storage.join(data.shards, REJECTS)}"
        counts = _reject_counts(scan_rejects)  # unused files (CREMA-D's AudioMP3 copies) are no faults
        unused = f" ({counts['unused']} more unused, no fault)" if counts["unused"] else ""
        placed = _placeholders_counted(scan_rejects)  # said beside the first rejects by file: all may be such rows
        raise PreprocessError(f"{data.src}: no usable {data.corpus} clips; {counted(counts['rejects'], 'file')} "
                              f"rejected{unused}, first: {_first(scan_rejects)} ({where}){'; ' if placed else ''}"
                              f"{placed}"
                              f"{_audio_alone_hint(data, out_dir)}"
                              f"{named_as(Path(data.src), None, data.corpus, Path(out_dir) if out_dir else None)}")
    lines = _source_lines(records, scan_rejects)  # stats every source file once, for both hashes
    fingerprint, sources = _fingerprint(lines, data), hashlib.sha256(lines).hexdigest()
    table, meta, reason = None, None, "forced" if force else None
    if not force and storage.exists(manifest_url, s3):
        try:
            table, meta = read_manifest(data.shards, s3)
        except ManifestUnreadable as exc:  # a damaged manifest vouches for nothing: rebuilt, as --force would
            reason = f"manifest unreadable ({exc})"
    then = _as_made(meta, data, out_dir, (records, scan_rejects))
    reason = reason or _stale_reason(data, meta, *(then or (fingerprint, sources)), s3)
    if reason is None:
        return {"url": data.shards, "clips": table.num_rows, **_rejects_now(meta, scan_rejects, data, s3),
                **_copies_note(scan_rejects, data.corpus), **_placeholders_note(scan_rejects), "up_to_date": True,
                **_audio_from_note(data.corpus, records, table.column("audio_path").to_pylist()),
                **manifest_rates(table, data.features),
                "shards": len(meta["shards"]), "speakers": len(meta["speakers"]),
                "emotions": emotion_counts(table.column("emotion").to_pylist(), meta["emotions"]),
                "splits": split_counts(table.column("split").to_pylist())}
    rejects_url = storage.join(data.shards, REJECTS)
    # from here until the new manifest is written, no manifest vouches for the shards, nor do the old build's rejects
    # speak for this one, should it be cut short; kept here to be put back should no clip decode (no shard is then
    # written: a corpus cloned again without `git lfs pull` must not cost the shards made from a whole copy)
    old = {url: storage.read_bytes(url, s3) for url in (manifest_url, rejects_url) if storage.exists(url, s3)}
    for url in old:
        storage.remove(url, s3)
    runner = run_tasks or (lambda ts: (write_shard(t, data.shards, data.features, s3) for t in ts))
    rows, decoded, shards = [], [], []
    for result in runner(plan(records, data)):
        runtime.check_interrupted()  # a Ctrl-C the decoder's libraries swallowed stops the build here
        rows.extend(result["rows"])
        decoded.extend(Reject(**r) for r in result["rejects"])
        if result["shard"]:
            shards.append(result["shard"])
    # a file the scan marked unused (a spare of its clip) is a reject of its own where its clip could not be made, and
    # none where its clip was made from it (CREMA-D's AudioMP3/ file behind a .wav that does not decode); a copy of
    # another size (a fault to the scan) is none where its clip was made from it, and its own where it failed
    judged = {r.source_path for r in decoded}
    copied = {p for rec in records for pair in rec.copies for p in pair if p}
    settled = judged | {p for row in rows for p in (row["audio_path"], row["video_path"])}  # or made a clip
    rejected = [r for r in scan_rejects
                if not ((r.unused or r.source_path in copied) and r.source_path in settled)] + decoded
    counts = _reject_counts(rejected)  # unused files (CREMA-D's AudioMP3 copies) are no clips that failed
    unused = f"; {counts['unused']} more unused, no fault" if counts["unused"] else ""
    placed = _placeholders_counted(scan_rejects)
    none_made = "" if rows else (f"{data.src}: every clip was rejected ({counted(counts['rejects'], 'file')}{unused}), "
                                 f"first: {_first(rejected)}{'; ' if placed else ''}{placed}"
                                 f"{_no_video_anywhere(records, decoded, data, out_dir)}")
    if not rows and manifest_url in old:
        for url, content in old.items():
            storage.write_bytes(url, content, s3)
        raise PreprocessError(f"{none_made} ({data.shards} was left as it was)")
    storage.write_parquet(rejects_url, _rejects_table(rejected), s3)
    if not rows:
        raise PreprocessError(f"{none_made}; see {rejects_url}")
    rows.sort(key=lambda r: r["clip_id"])
    shards.sort(key=lambda s: s["name"])
    labels = assign(rows, data)
    meta = {
        "version": 1, "corpus": data.corpus, "src": data.src, "fingerprint": fingerprint, "sources": sources,
        "shard_size": data.shard_size, "decoding": DECODING, "scan": SCAN,
        "emotions": labels.emotions, "speakers": labels.speakers,
        "features": _made_features(data), "split": data.split.model_dump(), "modalities": HELD[data.modality],
        "shards": shards, **counts,
    }
    made = synth.settings_of(data.src) if data.corpus == "synthetic" else None
    if made is not None:  # the generator's settings, for `check_synth` (a corpus of one's own has none)
        meta["synth"] = made
    table = pa.Table.from_pylist(rows).replace_schema_metadata({"avdis": json.dumps(meta)})
    _remove_unlisted(data.shards, shards, s3)
    storage.write_parquet(manifest_url, table, s3)
    return {"url": data.shards, "clips": len(rows), **counts, **_copies_note(scan_rejects, data.corpus),
            **_placeholders_note(scan_rejects), **_audio_from_note(data.corpus, records, [r["audio_path"] for r in rows]),
            "up_to_date": False, "shards": len(shards),
            **manifest_rates(table, data.features),
            "speakers": len(labels.speakers), "emotions": emotion_counts([r["emotion"] for r in rows], labels.emotions),
            "splits": split_counts([r["split"] for r in rows]), "rebuilt_because": reason}


def _as_made(meta: dict[str, Any] | None, data: DataConfig, out_dir: str | None,
             scanned: tuple[list[ClipRecord], list[Reject]]) -> tuple[str, str] | None:
    """The fingerprint and sources hash of the corpus as the build `meta` speaks for made them, where that differs
    from how they are made now (`scanned`, data.src's scan): with its folder spelt as that build spelt it, when
    data.src names that folder otherwise (`corpus` then, `$PWD/corpus` or a link to it now), and with every scan
    reject for a manifest from before `SCAN`; else None. Either would otherwise rebuild every shard, saying the corpus
    had changed: the fingerprint holds each file's path, and the rejects of a README the build found."""
    made = (meta or {}).get("src")
    spelt = made not in (None, data.src) and os.path.realpath(made) == os.path.realpath(data.src)
    legacy = meta is not None and "scan" not in meta
    if not spelt and not legacy:
        return None
    if spelt:
        scanned = scan(data.corpus, made, skip=out_dir, audio_only=data.modality == "audio")
    lines = _source_lines(*scanned, every_reject=legacy)
    return _fingerprint(lines, data), hashlib.sha256(lines).hexdigest()


def source_changed(data: DataConfig, meta: dict[str, Any]) -> bool:
    """Whether the corpus at data.src differs from the one the shards `meta` speaks for were made from (a file or
    label changed, or another folder); False where that cannot be told here (data.src not on this machine, a manifest
    from before `sources` was kept, a folder that holds no corpus)."""
    if "sources" not in meta or not os.path.isdir(data.src):
        return False
    out_dir = None if storage.is_remote(data.shards) else storage.filesystem(data.shards)[1]
    try:
        scanned = scan(data.corpus, data.src, skip=out_dir, audio_only=data.modality == "audio")
    except CorpusError:  # no corpus there: training is not the place to tell
        return False
    then = _as_made(meta, data, out_dir, scanned)
    return (then[1] if then else hashlib.sha256(_source_lines(*scanned)).hexdigest()) != meta["sources"]


def _audio_alone_hint(data: DataConfig, out_dir: str | None) -> str:
    """The fix for a corpus of audio alone (CREMA-D's AudioWAV only, RAVDESS's audio download) scanned for AV clips:
    each of its files is a reject for want of a video partner, a reason that does not say data.modality=audio exists."""
    if data.modality == "audio" or not scan(data.corpus, data.src, skip=out_dir, audio_only=True)[0]:
        return ""
    return ("; its audio files make clips of audio alone: preprocess them with data.modality=audio (and train with "
            "model.modality=audio)")


def _no_video_anywhere(records: list[ClipRecord], decoded: list[Reject], data: DataConfig,
                       out_dir: str | None) -> str:
    """The fix for a RAVDESS or CREMA-D copy none of whose videos holds a video track (`_audio_alone_hint`): each
    is told to be copied again, a file's fault, which said nothing of data.modality=audio for the corpus. So for a
    copy none of whose clips was made, each lost to its video (an .flv unreadable beside its whole .wav)."""
    from avdis.data.media import NO_VIDEO_TRACK

    empty = {r.source_path for r in decoded if r.reason.startswith(NO_VIDEO_TRACK)}
    if records and data.corpus in VIDEO_BY_NAME and all(r.video_path in empty for r in records):
        return f"; none of its videos holds a video track{_audio_alone_hint(data, out_dir)}"
    heard = _heard_alone(records, data.features) if records else ""
    return f"; every clip was lost to its video ({heard}){_audio_alone_hint(data, out_dir)}" if heard else ""


# the clips whose audio files `_heard_alone` decodes at most: ~0.5 s in the driver; all of CREMA-D's 7,442, each decoded
# into a clip (~45 ms), held its error back over 5 minutes after shard tasks that had failed each clip at once
HEARD_AT_MOST = 8


def _heard_alone(records: list[ClipRecord], feat: FeatureConfig) -> str:
    """What decoding the clips' own audio files alone found, where each tried makes a clip of audio alone (a clip not
    made then lost to its video): advice to preprocess audio alone is given only where it is so. '' where one fails
    (the first ends it) or a clip has none. A sample spread over the clips (sorted by clip_id: over the speakers) where
    they are more than HEARD_AT_MOST, which the words say."""
    from avdis.data.media import extract

    if any(r.video_path in (None, r.audio_path) for r in records):
        return ""
    tried = _spread(records, HEARD_AT_MOST)
    for rec in tried:
        try:
            extract(rec.audio_path, None, feat)
        except Exception:  # noqa: BLE001 - any file that fails to decode, as in `_encode_any`
            return ""
    if len(tried) == len(records):
        return "each clip's audio file alone decodes whole"
    return f"the audio files of {len(tried)} of its {len(records)} clips, spread over it, decode whole alone"


def _spread(records: list[ClipRecord], most: int) -> list[ClipRecord]:
    """`most` of the records evenly from the first to the last (all where they are no more): every ceil(n / most)-th
    from the first took as few as 6 of 17 and never the last speakers' clips (none of CREMA-D's last 924)."""
    if len(records) <= most:
        return records
    return [records[i * (len(records) - 1) // (most - 1)] for i in range(most)]


def _copies_note(scan_rejects: list[Reject], corpus: str) -> dict[str, str]:
    """The summary's word on the scan's copies of clips' files, where there are any: each clip is read from one
    copy, and the others are unused, but a corpus held twice (Kaggle's RAVDESS) is better pointed at as one copy, and
    a ground_truth.csv better lists each recording once."""
    found = copies_found(scan_rejects)
    if not found:
        return {}
    first = f"first: {found[0].source_path}, {found[0].reason}"
    n = len(found)
    if corpus == "synthetic":  # a corpus of one's own: copies under other names, found by their bytes
        listed = (f"1 file listed in {GROUND_TRUTH} holds the same bytes as a file listed before it" if n == 1 else
                  f"{n} files listed in {GROUND_TRUTH} hold the same bytes as files listed before them")
        return {"copies": f"{listed} ({first}): each recording is one clip, from the row listing it first; list each "
                          f"recording once in {GROUND_TRUTH}"}
    copies = "1 file is a second copy of a clip's file" if n == 1 else f"{n} files are second copies of clips' files"
    return {"copies": f"{copies} (the same name and size; {first}): "
                      "each clip is read from one copy, the first found that decodes; where data.src holds the "
                      "corpus twice (Kaggle's RAVDESS holds its Actor_XX folders at its top and again under "
                      "audio_speech_actors_01-24/), point data.src at one copy"}


def _audio_from_note(corpus: str, records: list[ClipRecord], audio_paths: list[str]) -> dict[str, str]:
    """The summary's word on a CREMA-D copy without AudioWAV/, whose clips' sound is their AudioMP3/ files' and their
    videos' own tracks (`audio_paths`, the clips made): lossy copies of the recording, of a rate and bandwidth that can
    differ from clip to clip and from the .wav files a corpus held whole is made of."""
    if corpus != "cremad" or any(Path(r.audio_path).suffix.lower() == ".wav" for r in records):
        return {}
    mp3 = sum(Path(p).suffix.lower() == ".mp3" for p in audio_paths)
    track = len(audio_paths) - mp3
    mixed = "; the two can differ in rate and bandwidth, and so clips by their source (see source_rates and bandwidths)"
    # only the sources that gave a clip: a copy of VideoFlash/ alone was told of '0 from AudioMP3/*.mp3'
    sources = ", ".join(f"{n} from {source}" for n, source in ((mp3, "AudioMP3/*.mp3"),
                                                               (track, "the videos' own tracks")) if n)
    # worded alike for one clip and many (it read '1 clip took their sound ... to make them of its recordings')
    return {"audio_from": f"the sound of {counted(len(audio_paths), 'clip')} came from lossy copies of the recording, "
                          f"not from AudioWAV/*.wav, which data.src does not hold: {sources}"
                          f"{mixed if mp3 and track else ''}; put CREMA-D's AudioWAV/ folder under data.src to make "
                          "the clips of its recordings (the shards are then made again)"}


def _placeholders_note(scan_rejects: list[Reject]) -> dict[str, str]:
    """The summary's word on the rows of a ground_truth.csv holding placeholders (MSP-Podcast's speaker `Unknown`,
    IEMOCAP's emotion `xxx`), where there are any: a corpus most of whose rows are such rejects is told why in the
    summary, not in its rejects.parquet alone."""
    found = placeholders_found(scan_rejects)[0]
    if not found:
        return {}
    return {"placeholders": f"{_placeholders_counted(scan_rejects)} (first: {found[0].source_path}: "
                            f"{found[0].reason})"}


def _placeholders_counted(scan_rejects: list[Reject]) -> str:
    """'N rows of ground_truth.csv hold a placeholder ...' (how many of a speaker's and of an emotion's), '' for none:
    an error that no clip is usable says it too, beside its first rejects by file."""
    found, speakers, emotions = placeholders_found(scan_rejects)
    if not found:
        return ""
    which = ", ".join(f"{n} {what}" for n, what in ((speakers, "a speaker's"), (emotions, "an emotion's")) if n)
    one = len(found) == 1
    held = f"1 row of {GROUND_TRUTH} holds" if one else f"{len(found)} rows of {GROUND_TRUTH} hold"
    return f"{held} a placeholder where a label goes ({which}), {'a' if one else 'each a'} reject"


def manifest_rates(table: pa.Table, feat: FeatureConfig) -> dict[str, Any]:
    """The summary's clips per source rate and per bandwidth, and `bandwidth_cue`'s warning where their mel bands
    differ; nothing for a manifest made before `source_rate` was kept, and the rates alone for one made before
    `bandwidth_hz` was (its clips' bandwidth: half their rate)."""
    if "source_rate" not in table.column_names:
        return {}
    rates = table.column("source_rate").to_pylist()
    measured = "bandwidth_hz" in table.column_names
    bandwidths = table.column("bandwidth_hz").to_pylist() if measured else [None] * len(rates)
    cue = bandwidth_cue(table.column("speaker").to_pylist(), rates, bandwidths, feat)
    return {"source_rates": rate_counts(rates), **({"bandwidths": band_counts(bandwidths)} if measured else {}),
            **({"bandwidth_cue": cue} if cue else {})}


def emotion_counts(emotions: list[str], order: list[str]) -> dict[str, int]:
    """Clips per emotion in the label order, for the summary: a corpus's own words (a typo among them) show there."""
    counts = Counter(emotions)
    return {e: counts[e] for e in order}


def _first(rejects: list[Reject], n: int = 3) -> str:
    """The first `n` rejects by file, faults before unused files, each with its reason: enough to tell a wrong folder
    or a broken copy."""
    return "; ".join(f"{r.source_path}: {r.reason}"
                     for r in sorted(rejects, key=lambda r: (r.unused, r.source_path, r.reason))[:n])


def _reject_counts(rejects: list[Reject]) -> dict[str, int]:
    """Files that could not be used (`rejects`), and files their clips were made without (`unused`)."""
    unused = sum(r.unused for r in rejects)
    return {"rejects": len(rejects) - unused, "unused": unused}


def _rejects_now(meta: dict[str, Any], scan_rejects: list[Reject], data: DataConfig, s3: S3Config) -> dict[str, int]:
    """`_reject_counts` of shards found up to date, whose rejects.parquet is made to list the files that are no media
    (`no_media`: a README, Thumbs.db) the scan finds now: their coming or going rebuilds nothing (`SCAN`), and the
    summary and rejects.parquet kept the build's (one added: "unused": 21 where --force says 22, and no row for it).
    Every other reject is the same as the build's, or the shards would not be up to date. A manifest from before
    `SCAN` or unused files (its rejects.parquet has no `unused` column), shards with no rejects.parquet, and data.src
    spelt otherwise than the build spelt it (a link to its folder: the files would be named two ways) keep the
    build's (`_made_counts`)."""
    rejects_url = storage.join(data.shards, REJECTS)
    if ("scan" not in meta or "unused" not in meta or meta.get("src") != data.src
            or not storage.exists(rejects_url, s3)):
        return _made_counts(meta, scan_rejects, data.shards, s3)
    made = storage.read_parquet(rejects_url, s3)
    now = [Reject(**r) for r in made.to_pylist() if not (r["unused"] and no_media(r["source_path"]))]
    now += [r for r in scan_rejects if r.unused and no_media(r.source_path)]
    table = _rejects_table(now)
    if not table.equals(made):
        storage.write_parquet(rejects_url, table, s3)
    return _reject_counts(now)


def _made_counts(meta: dict[str, Any], scan_rejects: list[Reject], url: str, s3: S3Config) -> dict[str, int]:
    """`_reject_counts` of the build a manifest speaks for. One made before files were marked unused counted them
    among its rejects (a RAVDESS download's ~2,900 02 + 03 files) and its rejects.parquet has no `unused` column: they
    are told apart again by the scan's marks and by the reason decoding gives such a file ("clip taken from ...")."""
    if "unused" in meta or not storage.exists(storage.join(url, REJECTS), s3):
        return {"rejects": meta["rejects"], "unused": meta.get("unused", 0)}
    marked = {(r.source_path, r.reason) for r in scan_rejects if r.unused}
    rows = storage.read_parquet(storage.join(url, REJECTS), s3).select(["source_path", "reason"]).to_pylist()
    unused = sum((r["source_path"], r["reason"]) in marked or r["reason"].startswith("clip taken from ") for r in rows)
    return {"rejects": meta["rejects"] - unused, "unused": unused}


def split_counts(within: list[str]) -> dict[str, int]:
    """Clips per within-speaker split; a 0 means that split is empty (every speaker has fewer than 3 clips)."""
    return {name: within.count(name) for name in splits.SPLITS}


def _rejects_table(rejects: list[Reject]) -> pa.Table:
    """Sorted by file and reason: Ray tasks finish in any order, and identical inputs give identical bytes."""
    return pa.Table.from_pylist([asdict(r) for r in sorted(rejects, key=lambda r: (r.source_path, r.reason))],
                                schema=pa.schema([("source_path", pa.string()), ("reason", pa.string()),
                                                  ("unused", pa.bool_())]))


def manifest_hash(url: str, s3: S3Config | None = None) -> str:
    """Short hash of the manifest bytes, recorded with every result."""
    return load_manifest(url, s3)[2]


def _short_hash(manifest: bytes) -> str:
    return hashlib.sha256(manifest).hexdigest()[:16]


def write_shard_seen(task: ShardTask, out: str, feat: FeatureConfig, s3: S3Config, src: str) -> dict[str, Any]:
    """`write_shard` in a Ray task, which may run on another node than the driver whose scan listed its clips. A node
    that does not see the corpus stops the build: its clips would otherwise all become rejects ("cannot open"), and
    the manifest hold only the clips of tasks that ran where the corpus is (none where the head has no CPUs)."""
    missing = [r.source_path for r in task.records if not os.path.exists(r.source_path)]
    if missing:
        import ray

        more = f" and {counted(len(missing) - 1, 'more clip')}" if len(missing) > 1 else ""
        raise PreprocessError(
            f"{missing[0]}{more}: listed by the driver's "
            f"scan of data.src={src}, but not found on node {ray.util.get_node_ip_address()}, where a preprocessing "
            "task ran. Every node that runs these tasks must see data.src at the same path (a shared filesystem), or "
            "preprocess on the machine that holds the corpus (`--no-ray`, or no Ray address: a local Ray) with --out "
            "s3://... (the corpus may also have changed during preprocessing: then run it again)")
    return write_shard(task, out, feat, s3)


def decode_alone(rec: ClipRecord, feat: FeatureConfig) -> None:
    """Decode one clip and keep nothing: run as a Ray task of its own, whether its decoding ends the process."""
    _encode_any(rec, feat)


def _files_of(rec: ClipRecord) -> list[str]:
    """Every file of a clip: its own, its separate audio file, its fallback pairs, its spare files, its copies."""
    return [p for p in dict.fromkeys((rec.source_path, rec.audio_path, rec.video_path,
                                      *(p for pair in rec.fallback for p in pair), *rec.spare,
                                      *(p for pair in rec.copies for p in pair))) if p]


def _own_error(get: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`get()` of a shard task, raising a task's own PreprocessError without Ray's traceback around it."""
    import ray

    try:
        return get()
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, PreprocessError):
            raise exc.cause from None
        raise


def run_on_ray(data: DataConfig, s3: S3Config, cpus_per_task: float = 1.0):
    """A `run_tasks` for `build_shards` that runs each shard as a Ray task, with a progress bar.

    A shard task whose process dies on each of its tries (a decoder that crashes on one file, a clip that takes
    more memory than the node has) would end the whole run naming no file: its clips are then decoded one per task,
    and those whose process dies too become rejects, named, while the shard is made of the others."""
    import ray
    from ray.exceptions import OutOfMemoryError, WorkerCrashedError
    from tqdm import tqdm

    died = (WorkerCrashedError, OutOfMemoryError)
    remote = ray.remote(num_cpus=cpus_per_task, max_retries=2)(write_shard_seen)
    alone = ray.remote(num_cpus=cpus_per_task, max_retries=0)(decode_alone)

    def without_crashes(task: ShardTask, exc: Exception) -> dict[str, Any]:
        probes = [alone.remote(rec, data.features) for rec in task.records]
        crashed: list[tuple[ClipRecord, str]] = []
        for rec, probe in zip(task.records, probes):
            try:
                ray.get(probe)
            except died as probe_exc:
                crashed.append((rec, type(probe_exc).__name__))
        gone = {id(rec) for rec, _ in crashed}
        kept = ShardTask(task.index, [rec for rec in task.records if id(rec) not in gone])
        result = _own_error(lambda: ray.get(remote.remote(kept, data.shards, data.features, s3, data.src))) \
            if kept.records else {"rows": [], "rejects": [], "shard": None}
        result["rejects"] = result["rejects"] + [
            asdict(Reject(path, f"the process decoding clip {rec.clip_id} died ({why}; its shard's task: "
                                f"{type(exc).__name__}): a decoder crashed on it or it needs more memory than the "
                                "node has; re-encode or leave out its files"))
            for rec, why in crashed for path in _files_of(rec)]
        return {**result, "clips": len(task.records)}

    def run(tasks: list[ShardTask]) -> Iterable[dict[str, Any]]:
        pending = {remote.remote(t, data.shards, data.features, s3, data.src): t for t in tasks}
        total = sum(len(t.records) for t in tasks)
        done = lost = 0
        with tqdm(total=total, unit="clip", desc="preprocess") as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                try:
                    result = _own_error(lambda: ray.get(ready[0]))
                except died as exc:
                    result = without_crashes(task, exc)
                done += len(result["rows"])
                lost += result["clips"] - len(result["rows"])  # clips, not files: a clip's surplus files are no loss
                bar.update(result["clips"])
                bar.set_postfix(done=done, lost=lost)
                yield result

    return run
