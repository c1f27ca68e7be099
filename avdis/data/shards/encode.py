"""One clip record -> one WebDataset sample and its manifest row (from the clip's own files, else its fallbacks and
copies, with a reject for each file left unused or at fault), and one shard task -> one shard file, written whole."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Collection

from avdis import storage
from avdis.config import FeatureConfig, S3Config
from avdis.data.corpora import ClipRecord, Reject
from avdis.data.shards.layout import SHARD_DIR, ShardTask, shard_name


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


def encode_any(rec: ClipRecord, feat: FeatureConfig) -> tuple[tuple[dict, dict] | None, list[Reject]]:
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
            elif rec.corpus == "ravdess" and reason == NO_AUDIO_STREAM and Path(audio).name.startswith("01-"):
                reason = _full_av_without_sound(audio, tries)
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


def _full_av_without_sound(path: str, tries: list[tuple[str | None, str]]) -> str:
    """The reject of a RAVDESS full-AV (01) file holding no sound: every 01 file of the corpus holds its clip's sound
    (its 02 files are the video-only ones), so this one is a bad copy, and 'no audio stream' alone said nothing of what
    to do. Names the corpus's download the file is in, and the clip's audio-only (03) file, which the clip takes its
    sound from where it is beside it (the scan's fallback pair of the 01's picture and the 03's sound): to put it
    there, or, where it is among the clip's pairs (`tries`) and the clip was not made all the same, that it failed
    too (advice to put beside the 01 a file already there read as if it were missing)."""
    stem = Path(path).stem  # MM-VV-EE-II-SS-RR-AA, as the scan matched it
    kind, actor = ("Speech" if stem[3:5] == "01" else "Song"), stem[-2:]
    wav, download = f"03-{stem[3:]}.wav", f"Audio_{kind}_Actors_01-24.zip"
    if any(Path(audio).stem == f"03-{stem[3:]}" for _, audio in tries):
        sound = (f"and the clip's audio-only file {wav}, which it takes its sound from then, failed too (copy it from "
                 f"{download})")
    else:
        sound = (f"or put the clip's audio-only file {wav} (in {download}) beside it: the clip then takes its sound "
                 "from that")
    return (f"no audio stream, though RAVDESS's full-AV files (modality 01) hold their clip's sound (its 02 files are "
            "the video-only ones): a bad copy (converted without its sound, or a 02 file renamed 01); copy "
            f"{Path(path).name} again from the corpus's Video_{kind}_Actor_{actor}.zip, {sound}")


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
    # here: importing webdataset imports torch (about 1.3 s of CPU), which `avdis preprocess` on Ray does not need in
    # its driver, where its Ray tasks write the shards
    import webdataset as wds

    buf = io.BytesIO()
    rows, rejects = [], []
    with wds.TarWriter(buf, mtime=0, user="avdis", group="avdis") as tar:
        for rec in task.records:
            encoded, unused = encode_any(rec, feat)
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
