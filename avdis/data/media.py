"""Media in and out: decode a clip's audio and video, turn them into model features.

Features per clip (one fixed-length window, centred in the clip):
- audio: log-mel frames `[audio_frames, n_mels]` (float16) from mono audio resampled to `sample_rate` (16 kHz),
  mel filterbank from librosa (up to `f_max`, else `sample_rate / 2`); `source_rate`, the rate the audio was
  recorded at, and `bandwidth_hz`, the frequency its sound stops at (`bandwidth.measure`);
- video: face crops `[video_frames, face_size, face_size, 3]` (uint8 RGB) at a fixed
  frame rate; the face box comes from OpenCV's Haar cascade, with a centre-crop
  fallback recorded per clip (`face_detected`, the share of probed frames with a face);
- `audio_len` / `video_len`: how many leading frames are real; the rest is zero padding
  (the stream turns these into padding masks).
Anything that cannot be decoded raises `MediaError` naming the file and the reason.
"""

from __future__ import annotations

import fractions
import math
import os
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import av
from av.sidedata.sidedata import Type as SideDataType
import cv2
import librosa
import numpy as np

from avdis.config import MEL_FMIN, FeatureConfig
from avdis.data import bandwidth, walks, whole
from avdis.errors import AvdisError, UsageError


class MediaError(AvdisError):
    """A clip that cannot be used; `str()` names the file and why. `fault`: the reason without the advice it may
    carry, for where that advice is wrong (a RAVDESS full-AV file with no picture, whose clip was made with its
    video-only file's: no advice to preprocess audio alone)."""

    def __init__(self, path: str | Path, reason: str, fault: str | None = None):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.fault = fault or reason


class NoVideo(MediaError):
    """A file with no video track. `damaged`: its reason where the corpus names the file a video (a CREMA-D .flv, a
    RAVDESS 01 file): a bad copy among files that have one, for which advice to preprocess audio alone is wrong."""

    def __init__(self, path: str | Path, reason: str, fault: str, damaged: str):
        super().__init__(path, reason, fault)
        self.damaged = damaged


@dataclass(frozen=True)
class ClipFeatures:
    audio: np.ndarray  # float16 [audio_frames, n_mels]
    audio_len: int
    video: np.ndarray | None  # uint8 [video_frames, size, size, 3]; None for an audio-only clip
    video_len: int
    face_detected: float
    duration_s: float
    source_rate: int  # Hz, the audio's own rate before resampling (the lowest, where it changes part way)
    bandwidth_hz: int | None  # Hz its sound stops at, at most half source_rate (None: too little sound to tell)


# ------------------------------------------------------------------ decoding


_LFS_POINTER = b"version https://git-lfs"  # what a corpus cloned without git-lfs holds instead of its media


def _open(path: str | Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), options={"ignore_length": "1"} if whole.wav_wide_open(path) else None)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(path, _unopenable(path, exc)) from None
    # the formats whose parts (chunks, elements, pages, tags, frames, boxes) say how long each is
    told = ("avi", "matroska,webm", "ogg", "flv", "mp3", "aac", "caf", "au", "w64", "mpegts",
            "mov,mp4,m4a,3gp,3g2,mj2")
    cut = whole.ends_past_file(path) if container.format.name in told else None
    if cut is not None:
        container.close()
        raise _cut_at(path, cut)
    unfilled = _unfilled(path) if container.format.name in ("flv", "ogg", "matroska,webm") else None
    if unfilled is not None:
        container.close()
        raise MediaError(path, unfilled)
    if container.format.name == "hls":  # a playlist: a live one is read for ever, its next segment awaited
        container.close()
        name = Path(path).name
        raise MediaError(path, "an HLS playlist, not a media file (a live one is read for ever, waiting for its next "
                               f"segment): join its segments into one file (ffmpeg -i {name} -c copy "
                               f"{Path(name).stem}.mp4) and list that")
    return container


def _unopenable(path: str | Path, exc: Exception) -> str:
    """Why a file does not open, in the user's terms where the file's first bytes tell."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_LFS_POINTER))
    except PermissionError as denied:  # the file is whole, the user cannot read it (a copy with its owner's mode 600)
        return (f"cannot read this file ({denied.strerror}): give the user running this read (r) permission on it "
                "(chmod a+r), or run as its owner")
    except OSError:
        head = None
    if head == b"":
        return "empty file (0 bytes); copy the corpus again"
    if head == _LFS_POINTER:
        return "a Git LFS pointer, not media; fetch the files (`git lfs pull`)"
    cut = whole.ends_past_file(path) if head else None
    if cut is not None:
        return _cut_at(path, cut).reason
    unfilled = _unfilled(path) if head else None
    if unfilled is not None:
        return unfilled
    if head and whole.w64_piped(path):
        name, wav = Path(path).name, f"{Path(path).stem}.wav"
        convert = f"import soundfile as sf; sf.write('{wav}', *sf.read('{name}'), subtype=sf.info('{name}').subtype)"
        return (f"a Sony Wave64 file written into a pipe (its sizes left open), which ffmpeg cannot read: convert it "
                f"to WAV with soundfile, installed with avdis (in its folder: python -c \"{convert}\"), and list {wav} "
                "in its place, or leave it out")
    if head and whole.mp4_unindexed(path):  # its mdat open or ending at the end of the file
        return ("no index: no index (moov) follows its media data, which runs to the end of the file: a recording "
                "stopped before it was closed (a recorder that crashed, a camera that lost power; ffmpeg can neither "
                "read nor re-encode an MP4 without its index: leave it out), or a copy cut short where its index "
                "began (copy it again)")
    return (f"cannot open media ({exc.__class__.__name__}: {exc}): not media ffmpeg reads, or damaged at its start: "
            "copy it again, or convert it with the tool that made it")


def _unfilled(path: str | Path) -> str | None:
    """Why an FLV, Ogg or Matroska file whose parts stop before its end as written, the rest no part, is damaged; None
    for another. ffmpeg read what came before as a shorter clip, or could not open one whose end it looks at first."""
    flv, ogg, mkv = whole.flv_unfilled(path), whole.ogg_unended(path), whole.matroska_unfilled(path)
    if flv is not None:
        where = (f"FLV tags stop at byte {flv[0]}, short of byte {flv[1]}, where its metadata says the file ends; what "
                 "follows is no tag")
    elif ogg is not None:
        where = f"Ogg pages stop at byte {ogg}, before its stream's last page; what follows is no page"
    elif mkv is not None:
        where = (f"Matroska elements stop at byte {mkv[0]}, short of byte {mkv[1]}, where its segment ends; what "
                 "follows is zeros")
    else:
        return None
    return (f"damaged: its {where} (a download that set the file's size first, stopped before it was filled in, or a "
            "copy damaged in place): copy it again")


def _cut_at(path: str | Path, cut: tuple[str, int, int]) -> MediaError:
    """A file that ends inside one of its parts: a copy cut short, or a recording whose writer stopped before closing
    it (a recorder that crashed while writing a fragmented MP4, a live Matroska file, an MP3, an Ogg file), which no
    copy makes whole. An MP4 cut before its index cannot be re-encoded: no advice to."""
    what, end, size = cut
    if whole.mp4_unindexed(path):
        return MediaError(path, f"cut short: the file ends at byte {size}, inside its {what}, which runs to byte "
                                f"{end}, before its index (moov), without which ffmpeg can neither read nor re-encode "
                                "it: an interrupted copy or download (copy it again), or a recording stopped before it "
                                "was closed (leave it out)")
    return MediaError(path, f"cut short: the file ends at byte {size}, inside its {what}, which runs to byte {end}: "
                            f"{_CUT_ADVICE}")


def _corrupt(path: str | Path, kind: str, exc: Exception) -> MediaError:
    """A track that fails to decode: why, where the file ends in zeros (a download that set its size first and stopped
    before filling it in), and what to do."""
    tail = whole.zero_tail(path)
    why = ("damaged inside: copy it again, or re-encode what of it decodes in its place (ffmpeg -i IN OUT)"
           if tail is None else
           f"its last {os.path.getsize(path) - tail} bytes, from byte {tail}, are zeros (a download that set the "
           "file's size first, stopped before it was filled in): copy it again")
    return MediaError(path, f"corrupt {kind} stream ({exc}): {why}")


_CUT_ADVICE = ("an interrupted copy or download (copy it again), or a recording stopped before it was closed (its end "
               "is lost: re-encode what it holds, ffmpeg -i IN OUT, and list that, or leave it out)")
# Frames a decoder may give back after the last one it decoded (B-frames, shown before the frame decoded ahead of them)
_REORDERED = 3


def _start(stream: av.stream.Stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _origin(container: av.container.InputContainer, stream: av.stream.Stream, together: bool) -> float:
    """Time zero in seconds for `stream`'s track. Decoded `together` with the other track of its file, the earlier
    start of the two, so a track that starts late (an audio delay, a video cut with an offset) stays in step with
    the other; alone (the other track comes from another file, as CREMA-D's .flv and .wav), its own start."""
    if not together:
        return _start(stream)
    tracks = [s for s in (_played(container.streams.audio), _played(_moving(container))) if s is not None]
    return min(_start(s) for s in tracks)


def _moving(container: av.container.InputContainer) -> list[av.stream.Stream]:
    """The video tracks that are video: an audio file's cover art (an .m4a's or .mp3's attached picture) is a still
    image the file shows beside its sound, not the clip's picture."""
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def _played(tracks: Sequence[av.stream.Stream]) -> av.stream.Stream | None:
    """The track of `tracks` a player plays: the first the container marks default, else the first (ffmpeg's
    av_find_best_stream also ranks the default first). A dub, a commentary or a guide track may come first, the
    recording itself marked default after it: the first track was the one learnt from."""
    return next((s for s in tracks if s.disposition & av.stream.Disposition.default), tracks[0] if tracks else None)


def _mono(frame: av.AudioFrame) -> tuple[np.ndarray, bool]:
    """The mean of a packed frame's channels, and whether any channel held a sound."""
    samples = frame.to_ndarray()
    return samples.reshape(-1, frame.layout.nb_channels).mean(axis=1), bool(samples.any())


GAP_S = 0.02  # audio timestamps ahead of the samples so far by more than this: a gap, filled with silence
MAX_GAP_S = 600.0  # a longer gap is a damaged or spliced file: filling it would take gigabytes, not a clip's worth


def _cut_short(path: str | Path, declared: float, held: float, kind: str = "audio") -> MediaError:
    return MediaError(path, f"cut short: its header declares {declared:.2f} s of {kind}, the file holds {held:.2f} s "
                            "(an interrupted copy or download); copy it again")


def decode_audio(path: str | Path, sample_rate: int, together: bool = True) -> np.ndarray:
    """Mono float32 samples at `sample_rate` (`decode_rated`'s)."""
    return decode_rated(path, sample_rate, together)[0]


NO_AUDIO_STREAM = "no audio stream"  # how a file holding no sound is told (`shards.encode` words it more for the
# corpora whose files are named as holding sound: `_no_sound_anywhere`, `_full_av_without_sound`)


def decode_rated(path: str | Path, sample_rate: int, together: bool = True) -> tuple[np.ndarray, int]:
    """Mono float32 samples at `sample_rate`, and the lowest rate the track was recorded at (what limits its bandwidth),
    from time zero (`_origin`; silence before a late start), each frame where its timestamp puts it: a gap in the
    track (packets lost in a capture, silence a WebRTC recorder left out) is silence, not the rest of the clip moved
    earlier out of step with the video. A track whose rate or channels change part way (recordings joined end to end)
    is resampled piece by piece."""
    with _open(path) as container:
        stream = _played(container.streams.audio)
        if stream is None:
            raise MediaError(path, NO_AUDIO_STREAM)
        tracks, track = len(container.streams.audio), list(container.streams.audio).index(stream)
        cut = whole.wav_held(path) if container.format.name == "wav" else None
        if cut is not None and cut[0] - cut[1] > whole.CUT_SHORT_S:
            raise _cut_short(path, *cut)
        past = whole.index_past_end(path, stream)
        if past is not None:
            raise _cut_short(path, *past)
        declared = whole.declared_s(path, container, stream)
        origin = _origin(container, stream, together)
        chunks: list[np.ndarray] = []
        done = 0  # samples in chunks
        # every channel resampled as it is, then their mean (librosa's to_mono): the resampler's own downmix follows
        # the layout's mixing matrix, so one voice came out 3 dB louder in stereo than in mono and up to 13 dB in
        # 7.1, a level that follows the recording setup (a per-recording cue). Packed samples: PyAV 18 crashes
        # reading planar audio of 8 channels or more into an array
        resampler, setup = None, None
        begins = None
        rates: set[int] = set()

        heard = False  # in any channel: channels that cancel out in the mean are no silent recording

        def resample(frame: av.AudioFrame | None) -> None:
            nonlocal done, heard
            for out in resampler.resample(frame):
                mono, sound = _mono(out)
                chunks.append(mono)
                done += len(mono)
                heard = heard or sound

        def ahead(frame: av.AudioFrame) -> int:  # samples from the end so far to where the frame's timestamp puts it
            return 0 if frame.time is None else round((frame.time - begins) * sample_rate) - done

        packet = None  # the last one read: a FLAC cut short fails to decode its last, partial frame
        mp3 = container.format.name == "mp3"
        appended = whole.mp3_frames_end(path) if mp3 else None

        def decoded() -> Iterator[av.AudioFrame]:
            nonlocal packet
            tag_end = -1  # of an ID3v2 tag between MP3s joined end to end (cat a.mp3 b.mp3)
            for packet in container.demux(stream):
                if appended is not None and packet.pos is not None and packet.pos >= appended:
                    continue  # bytes after an MP3's last frame, which a player passes over: they fail to decode
                if packet.pos is not None and packet.pos < tag_end:
                    continue  # bytes in the tag that read as a frame, handed on after it
                if mp3 and packet.pos is not None and bytes(packet)[:3] == b"ID3":
                    # ffmpeg hands the tag on with the frame after it (or up to bytes in it that read as a frame,
                    # handed on next), which fail to decode; players, and ffmpeg's own command, pass over them and
                    # play on (the frame lost is the second file's Xing/Info header, or its first 26-72 ms). Only
                    # a tag `walks.id3_between` tells is passed over to its end: a size that is garbage would pass
                    # over the frames after it, which ffmpeg plays
                    with open(path, "rb") as fh:
                        tag_end = max(tag_end, walks.id3_between(fh, packet.pos, os.fstat(fh.fileno()).st_size))
                    continue
                yield from packet.decode()

        try:
            for frame in decoded():
                if begins is None and frame.time is not None:
                    begins = frame.time
                if resampler is not None and (ahead(frame) > GAP_S * sample_rate
                                              or setup != (frame.format.name, frame.layout.name, frame.sample_rate)):
                    resample(None)  # what the resampler holds belongs before the gap or the change
                    resampler = None
                gap = ahead(frame)
                if gap > MAX_GAP_S * sample_rate:
                    raise MediaError(path, f"audio timestamps jump {gap / sample_rate:.0f} s ahead at "
                                           f"{done / sample_rate:.1f} s (a damaged or spliced file); cut the clip "
                                           "out of it (ffmpeg -ss/-t) or leave it out")
                if gap > GAP_S * sample_rate:
                    chunks.append(np.zeros(gap, np.float32))
                    done += gap
                if resampler is None:
                    resampler = av.AudioResampler(format="flt", rate=sample_rate)
                    setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                    rates.add(frame.sample_rate)
                resample(frame)
            if resampler is not None:
                resample(None)
        except av.error.FFmpegError as exc:
            if declared is not None and packet is not None and packet.pos is not None \
                    and packet.pos + packet.size >= os.path.getsize(path):
                raise _cut_short(path, declared, done / sample_rate) from None
            raise _corrupt(path, "audio", exc) from None
    if declared is not None and declared - done / sample_rate > whole.CUT_SHORT_S:
        raise _cut_short(path, declared, done / sample_rate)
    if done == 0:
        raise MediaError(path, "audio stream holds no samples (a header and nothing recorded after it): copy it again; "
                               "where the source's own copy holds none either, let it be: it stays a reject, the other "
                               "clips are made")
    samples = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(samples).all():
        raise MediaError(path, "audio holds NaN or infinite samples (a damaged float recording)")
    if not samples.any() and heard:
        raise MediaError(path, "its channels cancel out when averaged to mono (one is another inverted: a miswired "
                               "microphone); keep one channel (ffmpeg -i IN -af pan=mono|c0=c0 OUT) and list that file")
    if not samples.any() and tracks > 1:  # a recorder's track of another source (OBS's desktop audio), the voice beside
        raise MediaError(path, f"audio is digital silence (every sample is 0) in its audio track 0:a:{track}, the one "
                               f"of its {tracks} it marks default (else its first): make a file of the track with the "
                               "voice (ffmpeg -i IN -map '0:v?' -map 0:a:N -c copy OUT) and list that")
    if not samples.any():  # a broken recording (CREMA-D ships one), not a quiet one: it has no voice to learn from
        raise MediaError(path, "audio is digital silence (every sample is 0)")
    lead = int(round(((begins if begins is not None else origin) - origin) * sample_rate))
    return (np.concatenate([np.zeros(lead, np.float32), samples]) if lead > 0 else samples), min(rates)


MAX_SIDE = 1920  # frames are scaled down to this longest side as they are decoded: faces are cropped to a few dozen pixels


def _shown_size(frame: av.VideoFrame, aspect: float) -> tuple[int, int]:
    """(width, height) a frame is shown at: square pixels (`aspect`: the stream's pixel aspect ratio), no side above
    `MAX_SIDE`."""
    w, h = frame.width * aspect, frame.height
    scale = min(1.0, MAX_SIDE / max(w, h))
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def _rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """A frame as RGB `[H, W, 3]` the way a player shows it: scaled to `size` (the first frame's `_shown_size`, so a
    stream whose resolution changes part way, as recordings joined end to end, keeps one), turned and mirrored by
    its display matrix (a phone's portrait video)."""
    if size == (frame.width, frame.height):
        img = frame.to_ndarray(format="rgb24")
    else:
        img = frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")
    return _as_displayed(img, frame)


def _as_displayed(img: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """`img` moved as the frame's display matrix says (libavutil/display.h: a point (p, q) is shown at
    (a*p + c*q, b*p + d*q)), to the nearest quarter turn. Its rotation alone is not enough: a selfie camera's
    mirror (a = -1, d = 1) reads as a half turn, and would put faces upside down."""
    side = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side is None:
        return img
    (a, b), (c, d) = np.frombuffer(bytes(side), np.int32)[[0, 1, 3, 4]].reshape(2, 2)
    if abs(a) + abs(d) < abs(b) + abs(c):  # a quarter turn: shown at (c*q, b*p), the axes swapped
        img, a, d = img.transpose(1, 0, 2), c, b
    if a < 0:
        img = img[:, ::-1]
    if d < 0:
        img = img[::-1]
    return np.ascontiguousarray(img)


NO_VIDEO_TRACK = "holds no video track"  # how a file a corpus names a video, but holding none, is told (`NoVideo`)


def decode_video(path: str | Path, fps: float, span: tuple[int, int] | None = None,
                 together: bool = True) -> tuple[np.ndarray, int]:
    """RGB frames `[n, H, W, 3]` at `fps` from time zero (`_origin`) (each position shows the first source frame of
    its 1/fps slot, or repeats the one before when the slot has none; black before a late start), and the clip's
    length in such positions, to the end of its last frame (shown for its own duration, as a player does: a 2 fps
    video lost its last half second, a single still frame all but an instant). With `span` (first, end) only those
    positions are converted and kept: a clip's frames at full size would take gigabytes for a minute of 1080p, while
    a window takes a few seconds' worth. A transport stream cut between two packets of its video is told by its last
    frame, which the decoder patches up."""
    first, end = span if span is not None else (0, math.inf)
    kept: list[np.ndarray] = []
    with _open(path) as container:
        stream = _played(_moving(container))
        if stream is None:
            art = "its only picture is cover art" if container.streams.video else ""
            raise NoVideo(path, f"no video stream ({art}{'; ' if art else ''}for a corpus of audio alone, "
                                "preprocess with data.modality=audio)",
                          fault=f"no video stream ({art})" if art else "no video stream",
                          damaged=f"{NO_VIDEO_TRACK}{f' ({art})' if art else ''}: copy it again")
        cut = whole.index_past_end(path, stream)
        if cut is not None:
            raise _cut_short(path, *cut, kind="video")
        origin = _origin(container, stream, together)
        if not together:  # alone: positions from the slot the track starts in, on the file's own 1/fps grid
            origin = math.floor(origin * fps + 1e-6) / fps
        sar = stream.sample_aspect_ratio
        aspect = float(sar) if sar else 1.0
        size = None  # the first frame's shown size, kept for every frame
        n = 0  # positions so far
        held: tuple[av.VideoFrame, np.ndarray | None] | None = None  # the newest source frame, and its array if made
        t = 0.0
        when = _ShownAt()
        # whether the decoder patched up each of the last frames (error concealment), and the one before them
        patched = deque([False], maxlen=_REORDERED + 2)
        try:
            for i, frame in enumerate(container.decode(stream)):
                patched.append(frame.is_corrupt)
                t = when(frame)
                t = t if t is not None else i / float(stream.average_rate or 25)
                size = size or _shown_size(frame, aspect)
                slot = max(0, int(np.floor((t - origin) * fps + 1e-6)))
                if slot < n:  # the slot has its frame; the positions after it repeat the newest one
                    held = (frame, None)
                    continue
                img = _rgb(frame, size) if first <= slot < end else None
                # positions n..slot-1 have no frame of their own (a low source fps, a jump in the timestamps): counted
                # at once, and only those in the span are filled, with the held frame or black before the first
                lo, hi = max(n, first), min(slot, end)
                if lo < hi:
                    if held is None:
                        fill = np.zeros_like(img if img is not None else _rgb(frame, size))
                    else:
                        fill = held[1] if held[1] is not None else _rgb(held[0], size)
                    kept.extend([fill] * int(hi - lo))
                if img is not None:
                    kept.append(img)
                held, n = (frame, img), slot + 1
        except av.error.FFmpegError as exc:
            raise _corrupt(path, "video", exc) from None
        # a transport stream's video PES packets say no length (0), so a copy cut between two of its packets ends as a
        # whole file might, but the last frame decoded is patched up; patched frames that run on from before the last
        # few follow damage inside the file (a lost reference), not a cut
        if container.format.name == "mpegts" and any(patched) and not patched[0]:
            raise MediaError(path, f"cut short: the file ends at byte {os.path.getsize(path)}, inside its last video "
                                   "frame, which the decoder found incomplete (a transport stream's video packets say "
                                   f"no length): {_CUT_ADVICE}")
    if held is None:
        raise MediaError(path, "video stream holds no frames")
    shown_until = max(n, round((t + _frame_length(held[0], stream) - origin) * fps))  # a sliver of a slot is none
    lo, hi = max(n, first), min(shown_until, end)
    if lo < hi:
        kept.extend([held[1] if held[1] is not None else _rgb(held[0], size)] * int(hi - lo))
    n = shown_until
    if not kept:
        return _rgb(held[0], size)[None][:0], n
    return np.stack(kept), n


class _ShownAt:
    """A decoded frame's time in seconds as ffmpeg's `best_effort_timestamp` picks it (`guess_correct_pts`): its
    pts, unless the pts have gone backwards more often than the dts. An AVI holds no pts: its demuxer makes them
    from the packets, in decode order, so H.264 B-frames came out of the decoder in display order with shuffled
    times (frames up to 3 slots off theirs), while their dts still rise. The frames the decoder gives back at the
    end have no dts: once on the dts, each follows the one before by its duration (ffmpeg takes their pts)."""

    def __init__(self) -> None:
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.faulty_pts = self.faulty_dts = 0

    def __call__(self, frame: av.VideoFrame) -> float | None:
        pts, dts = frame.pts, frame.dts
        if dts is None and self.faulty_pts > self.faulty_dts and self.last_dts is not None:
            dts = self.last_dts + max(1, frame.duration or 0)
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        best = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        return None if best is None or frame.time_base is None else float(best * frame.time_base)


def _frame_length(frame: av.VideoFrame, stream: av.stream.Stream) -> float:
    """Seconds a frame is shown: its own duration, else one frame at the stream's average rate, else none."""
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    return 1 / float(stream.average_rate) if stream.average_rate else 0.0


# ------------------------------------------------------------------ features


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    xml = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(xml))
    if cascade.empty():
        raise RuntimeError(f"{xml}: Haar cascade missing; opencv-python-headless<5 ships it")
    return cascade


def face_box(frames: np.ndarray, probes: int = 3) -> tuple[tuple[int, int, int], float]:
    """(x, y, side) of a square face box and the share of probed frames where a face was found."""
    n, h, w = frames.shape[:3]
    found = []
    for idx in np.unique(np.linspace(0, n - 1, num=min(probes, n)).astype(int)):
        gray = cv2.cvtColor(frames[idx], cv2.COLOR_RGB2GRAY)
        min_side = max(24, min(h, w) // 8)
        boxes = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        if len(boxes):
            found.append(max(boxes, key=lambda b: b[2] * b[3]))
    rate = len(found) / min(probes, n)
    if not found:
        side = int(min(h, w) * 0.9)
        return ((w - side) // 2, (h - side) // 2, side), rate
    x, y, bw, bh = np.median(np.array(found), axis=0)
    side = int(min(max(bw, bh) * 1.3, min(h, w)))
    cx, cy = x + bw / 2, y + bh / 2
    x0 = int(np.clip(cx - side / 2, 0, w - side))
    y0 = int(np.clip(cy - side / 2, 0, h - side))
    return (x0, y0, side), rate


def crop_faces(frames: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    (x, y, side), rate = face_box(frames)
    crops = [cv2.resize(f[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack(crops).astype(np.uint8), rate


def _window(feat: FeatureConfig) -> tuple[int, int]:
    """The analysis window's samples (25 ms) and its FFT length (the next power of two)."""
    win = int(round(feat.sample_rate * 0.025))
    return win, 1 << (win - 1).bit_length()


def _empty_mel_bands(feat: FeatureConfig, n_mels: int) -> int:
    """How many of `n_mels` mel bands no FFT bin of `log_mel` falls in (librosa only warns of them)."""
    _, n_fft = _window(feat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bank = librosa.filters.mel(sr=feat.sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=MEL_FMIN, fmax=feat.mel_top)
    return int((bank.max(1) == 0).sum())


def mel_bands_filled(feat: FeatureConfig) -> tuple[int, int]:
    """(empty, most): how many of `feat.n_mels` bands no FFT bin falls in, and the most n_mels under it with none
    empty (0 where none is); `check_mel_bands` refuses what this finds, and the bandwidth warning's advice avoids it."""
    empty = _empty_mel_bands(feat, feat.n_mels)
    if not empty:
        return 0, feat.n_mels
    return empty, next((n for n in range(feat.n_mels - 1, 0, -1) if not _empty_mel_bands(feat, n)), 0)


def check_mel_bands(feat: FeatureConfig) -> None:
    """Refuse more mel bands than the 25 ms window's FFT bins fill: a band with no bin is a channel of constant
    log(1e-6) in every clip (at 16 kHz, 24 of n_mels=256), a feature of nothing the model was still sized for."""
    empty, most = mel_bands_filled(feat)
    if empty:
        fewer = f"data.features.n_mels <= {most}, or " if most else ""
        top, higher = (("", "sample_rate") if feat.f_max is None else
                       (f" and data.features.f_max={feat.f_max:g}", "f_max"))
        raise UsageError(f"data.features.n_mels={feat.n_mels} at data.features.sample_rate={feat.sample_rate}{top}: "
                         f"{empty} mel bands hold no frequency bin of the {_window(feat)[1]}-point FFT and would be "
                         f"constant; use {fewer}a higher {higher}")


def log_mel(audio: np.ndarray, feat: FeatureConfig) -> np.ndarray:
    """Log-mel frames `[T, n_mels]` (25 ms windows, `hop_ms` hop)."""
    hop = int(round(feat.sample_rate * feat.hop_ms / 1000.0))
    win, n_fft = _window(feat)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=feat.sample_rate, n_fft=n_fft, hop_length=hop,
        win_length=win, n_mels=feat.n_mels, fmin=MEL_FMIN, fmax=feat.mel_top, power=2.0,
        center=True,
    )
    return np.log(mel + 1e-6).T.astype(np.float32)


def _fit(x: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """Zero-pad or cut `x` along axis 0 to `length`; return it and the real length."""
    n = min(len(x), length)
    out = np.zeros((length, *x.shape[1:]), dtype=x.dtype)
    out[:n] = x[:n]
    return out, n


def extract(audio_path: str | Path, video_path: str | Path | None, feat: FeatureConfig) -> ClipFeatures:
    """Decode one clip (audio and video may live in separate files; no video_path: its audio only) into its
    features."""
    together = Path(audio_path) == Path(video_path or audio_path)
    audio, source_rate = decode_rated(audio_path, feat.sample_rate, together)
    heard = len(audio) / feat.sample_rate
    rated = (source_rate, bandwidth.measure(audio, feat.sample_rate, source_rate))

    def window_start(duration: float) -> tuple[float, int]:  # centre window, both modalities alike
        start = max(0.0, (duration - feat.window_s) / 2)
        return start, int(round(start * feat.fps))

    if video_path is None:
        start, _ = window_start(heard)
        return ClipFeatures(*_heard_features(audio, start, audio_path, feat), None, 0, 0.0, heard, *rated)
    # decode only the window's frames. It is where the audio puts it unless the video is the shorter: then it starts
    # earlier, mostly by a few frames (AAC audio runs up to ~0.1 s past the video), which a little slack before the
    # window keeps; a video shorter still is decoded again for its own window (under half its audio, a reject)
    _, v0 = window_start(heard)
    lo = max(0, v0 - math.ceil(0.25 * feat.fps))
    kept, n_frames = decode_video(video_path, feat.fps, (lo, v0 + feat.video_frames), together)
    duration = min(heard, n_frames / feat.fps)
    start, v1 = window_start(duration)
    if v1 >= lo:
        window = kept[v1 - lo : v1 - lo + feat.video_frames]
    else:
        window, _ = decode_video(video_path, feat.fps, (v1, v1 + feat.video_frames), together)
    mel, audio_len = _heard_features(audio, start, audio_path, feat)  # a window of silence first: it says more
    _check_lengths(video_path, n_frames / feat.fps, heard, feat.window_s, None if together else audio_path)
    crops, rate = crop_faces(window, feat.face_size)
    video, video_len = _fit(crops, feat.video_frames)
    return ClipFeatures(mel, audio_len, video, video_len, rate, duration, *rated)


# A video shorter than its audio by more than half of it, and by more than SHORT_VIDEO_GAP_S, within the clip's window
# is no take's picture (a copy cut short or damaged: a CREMA-D .flv of a few frames beside 2 s of .wav): its clip
# would show a face under a part of its voice only. One take's streams differ by a fraction of a second (CREMA-D's
# .flv and .wav; AAC audio runs up to ~0.1 s past the video it shares a file with), under both on clips of a second or
# more. The window, not the file: it is centred on the shorter stream, so a long recording whose video stops early
# still gives a window both cover.
SHORT_VIDEO_SHARE = 0.5
SHORT_VIDEO_GAP_S = 0.5


def _check_lengths(video_path: str | Path, seen: float, heard: float, window_s: float,
                   audio_path: str | Path | None) -> None:
    """Reject a video that covers far less of the clip's window (`window_s`) than its audio does (`audio_path`: the
    audio's own file, None where the video's file holds it), naming both lengths."""
    covered, voiced = min(seen, window_s), min(heard, window_s)
    if voiced - covered <= max(SHORT_VIDEO_GAP_S, (1 - SHORT_VIDEO_SHARE) * voiced):
        return
    where = f" ({Path(audio_path).name})" if audio_path is not None else ""
    raise MediaError(video_path, f"its video lasts {seen:.2f} s, under half the {heard:.2f} s of its audio{where}: "
                                 "its clip would show a face under a part of its voice only (a copy cut short or "
                                 "damaged): copy it again; where the corpus's own copy is so, leave it out")


def _heard_features(audio: np.ndarray, start: float, audio_path: str | Path,
                    feat: FeatureConfig) -> tuple[np.ndarray, int]:
    """The log-mel features of the clip's window from `start` s, and their length in frames."""
    a0 = int(start * feat.sample_rate)
    a1 = a0 + int(feat.window_s * feat.sample_rate)
    heard_window, (_, n_fft) = audio[a0:a1], _window(feat)
    if len(heard_window) < n_fft:  # librosa would only warn, naming no clip, and pad it into features of nothing
        raise MediaError(audio_path, f"audio lasts {len(heard_window) / feat.sample_rate * 1000:.0f} ms, shorter "
                                     f"than one {n_fft / feat.sample_rate * 1000:.0f} ms analysis window: no voice to hear")
    if not heard_window.any():  # a whole silent track is a reject; so is a window of only the lead put before it
        raise MediaError(audio_path, f"no sound in the clip's window ({start:.2f}-{start + feat.window_s:.2f} s): "
                                     "its audio is digital silence there (a track that starts after the video ends, "
                                     "or muted); trim or remux the clip")
    mel, audio_len = _fit(log_mel(heard_window, feat), feat.audio_frames)
    return mel.astype(np.float16), audio_len


# ------------------------------------------------------------------ writing


def write_clip(
    path: str | Path,
    frames: np.ndarray | None,
    fps: float,
    audio: np.ndarray | None,
    sample_rate: int,
) -> None:
    """Write RGB frames and/or mono float audio into one container, chosen by suffix.

    `.mp4` (H.264 + AAC), `.flv` (FLV1 + AAC, as CREMA-D's VideoFlash), `.wav` (PCM), `.mp3` (audio only, as
    CREMA-D's AudioMP3).
    Used by the generated corpus and by tests that build corpus trees.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codecs = {".mp4": ("libx264", "aac"), ".flv": ("flv", "aac"), ".wav": (None, "pcm_s16le"),
              ".mp3": (None, "libmp3lame")}
    vcodec, acodec = codecs[path.suffix.lower()]
    with av.open(str(path), "w") as out:
        vstream = astream = None
        if frames is not None:
            if vcodec is None:
                raise ValueError(f"{path}: {path.suffix} holds no video")
            vstream = out.add_stream(vcodec, rate=fractions.Fraction(fps).limit_denominator(1000))
            vstream.height, vstream.width = frames.shape[1:3]
            vstream.pix_fmt = "yuv420p"
            if vcodec == "libx264":
                # x264's macroblock-tree rate control encoded the same frames differently from one run to the next,
                # so a generated corpus, and everything trained on it, did not reproduce; without it, it does
                vstream.options = {"crf": "20", "preset": "veryfast", "x264-params": "mbtree=0"}
            else:
                vstream.bit_rate = 800_000
        if audio is not None:
            astream = out.add_stream(acodec, rate=sample_rate)
            astream.layout = "mono"
        if vstream is not None:
            for frame in frames:
                for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    out.mux(packet)
            for packet in vstream.encode():
                out.mux(packet)
        if astream is not None:
            if acodec == "pcm_s16le":
                samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
                fmt = "s16"
            else:
                samples, fmt = audio.astype(np.float32)[None], "fltp"
            step = 1024
            for i in range(0, samples.shape[1], step):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i : i + step]), format=fmt, layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = i
                frame.time_base = fractions.Fraction(1, sample_rate)
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
