"""Media as users bring it: late tracks, jumps in timestamps, phone rotation, non-square pixels, huge frames,
damaged float audio. Files are written here with PyAV (and one byte patch of an mp4 header), as a camera or an
editor would leave them."""

from __future__ import annotations

import fractions
import io
import re
import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from avdis.config import FeatureConfig
from avdis.data import media, walks, whole

FPS = 12  # the source's frame rate; features are taken at 8 fps
# what a file that ends inside one of its parts is told: a copy cut short, or a recording never closed
CUT_ADVICE = ("an interrupted copy or download (copy it again), or a recording stopped before it was closed (its end "
              "is lost: re-encode what it holds, ffmpeg -i IN OUT, and list that, or leave it out)")
ADVICE = re.escape(CUT_ADVICE)


def write(path: Path, frames: np.ndarray, pts=lambda i: i, audio_start: int = 0, sar=None, seconds: float = 2.0,
          options: dict[str, str] | None = None, gop: int = 250) -> Path:
    """An mp4 of `frames` at FPS (frame i at pts(i)/FPS s, a key frame every `gop`) and a 440 Hz tone from sample
    `audio_start` (16 kHz); `options` for the muxer."""
    with av.open(str(path), "w", options=options or {}) as out:
        v = out.add_stream("libx264", rate=FPS, options={"g": str(gop)})
        v.height, v.width = frames.shape[1:3]
        v.pix_fmt = "yuv420p"
        v.time_base = v.codec_context.time_base = fractions.Fraction(1, FPS)
        if sar is not None:
            v.codec_context.sample_aspect_ratio = sar
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
        chunks = [(audio_start + k, tone[None, k : k + 1024]) for k in range(0, len(tone), 1024)]

        def sound(start: int, samples: np.ndarray) -> None:
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, fractions.Fraction(1, 16000)
            out.mux(a.encode(frame))

        for i, img in enumerate(frames):  # interleaved by time, as a muxer wants them
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = pts(i)
            out.mux(v.encode(frame))
            while chunks and chunks[0][0] / 16000 <= (pts(i) + 1) / FPS:
                sound(*chunks.pop(0))
        out.mux(v.encode())
        for chunk in chunks:
            sound(*chunk)
        out.mux(a.encode())
    return path


def flat(n: int, size=(48, 64)) -> np.ndarray:
    """Frame i is a flat grey of level 10 i: which source frame a position shows can be read off its mean."""
    return np.stack([np.full((*size, 3), 10 * i, np.uint8) for i in range(n)])


def levels(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 10)) for f in frames]


def test_a_jump_in_the_timestamps_is_counted_not_filled(tmp_path):
    """An hour's jump between two frames (a damaged or spliced file): the positions are counted at once and only
    the asked-for ones made (it used to hold an array per position: gigabytes, or a hang for larger jumps)."""
    path = write(tmp_path / "jump.mp4", flat(24), pts=lambda i: i if i < 12 else i + 3600 * FPS)
    window, n = media.decode_video(path, 8, (4, 12))
    assert n == (3600 + 2) * 8  # up to the last frame, 23/12 s after the jump
    assert levels(window) == [6, 8, 9, 11, 11, 11, 11, 11]  # each 1/8 s slot's first frame, then frame 11 held
    after, _ = media.decode_video(path, 8, (3601 * 8 - 1, 3601 * 8 + 3))
    assert levels(after) == [11, 12, 14, 15]  # frame 11 held up to the jump, frame 12 at 3601 s


def test_the_last_frame_is_shown_for_its_own_duration(tmp_path):
    """A 2 fps video of 3 s was counted to the start of its last frame: the clip lost its last half second, and its
    window sat off centre; a single still frame counted as an instant."""
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 16000)).astype(np.float32)
    slow = tmp_path / "slow.mp4"
    media.write_clip(slow, flat(6), 2, tone, 16000)
    frames, n = media.decode_video(slow, 8)
    assert n == 24 and levels(frames) == [i // 4 for i in range(24)]  # frame 5 shown from 2.5 s to the end
    assert media.extract(slow, slow, FeatureConfig(fps=8)).duration_s == 3.0
    still = tmp_path / "still.mp4"
    media.write_clip(still, flat(1), 1, tone, 16000)
    assert media.decode_video(still, 8)[1] == 8  # one frame at 1 fps: a second


def test_a_track_that_starts_late_stays_in_step(tmp_path):
    late_video = write(tmp_path / "vlate.mp4", flat(24), pts=lambda i: i + FPS)  # video from 1 s, audio from 0
    frames, n = media.decode_video(late_video, 8)
    assert n == 24 and levels(frames[:10]) == [0] * 8 + [0, 2]  # 1 s of black, then the first frames
    assert not frames[:8].any()
    late_audio = write(tmp_path / "alate.mp4", flat(24), audio_start=16000)  # audio from 1 s
    audio = media.decode_audio(late_audio, 16000)
    heard = np.flatnonzero(np.abs(audio) > 0.05)[0] / 16000
    assert abs(heard - 1.0) < 0.07  # at 1 s, give or take AAC's priming (1024 samples); it was at 0 s before
    assert np.flatnonzero(np.abs(media.decode_audio(write(tmp_path / "sync.mp4", flat(24)), 16000)) > 0.05)[0] < 100


def with_display_matrix(path: Path, a: int, b: int, c: int, d: int) -> Path:
    """`path` with its video track's header (tkhd, version 0) given the display matrix (a b; c d) (16.16 units of
    1), as a phone or an editor writes it: (0 -1; 1 0) is what `ffmpeg -metadata:s:v rotate=90` writes."""
    matrix = struct.pack(">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
    data = bytearray(path.read_bytes())
    at = 0
    while (at := data.find(b"tkhd", at + 1)) >= 0:
        where = at + 4 + 4 + 4 * 5 + 8 + 8  # version/flags, times, track, reserved, duration, reserved, layer..volume
        width = struct.unpack(">I", data[where + 36 : where + 40])[0] >> 16
        if width:
            data[where : where + 36] = matrix
    path.write_bytes(bytes(data))
    return path


def test_a_phone_video_is_turned_upright(tmp_path):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :16] = 255  # a white band on the left
    path = with_display_matrix(write(tmp_path / "portrait.mp4", np.stack([img] * 12)), 0, -1, 1, 0)
    frames, _ = media.decode_video(path, 8)
    assert frames.shape[1:] == (64, 48, 3)  # upright: taller than wide, as a player shows it
    np.testing.assert_allclose(frames[0].astype(float), np.rot90(img, 1), atol=24)  # as ffmpeg's autorotate turns it


@pytest.mark.parametrize(
    "matrix, shown",
    [
        ((-1, 0, 0, 1), np.fliplr),  # a selfie camera's mirror: was turned 180 degrees, upside down for the face finder
        ((1, 0, 0, -1), np.flipud),
        ((-1, 0, 0, -1), lambda img: np.rot90(img, 2)),  # a real half turn stays one
        ((0, 1, 1, 0), lambda img: img.transpose(1, 0, 2)),  # a quarter turn and a mirror
        ((0, -1, -1, 0), lambda img: np.rot90(img, 2).transpose(1, 0, 2)),
        ((0, 1, -1, 0), lambda img: np.rot90(img, -1)),
    ],
)
def test_a_mirrored_video_is_shown_as_a_player_shows_it(tmp_path, matrix, shown):
    """As ffmpeg (6.1 and later) applies the display matrix: its rotation, then the flip its sign leaves."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:16, :16] = 255  # a white corner, top left: every turn and flip moves it somewhere else
    path = with_display_matrix(write(tmp_path / "mirror.mp4", np.stack([img] * 12)), *matrix)
    frames, _ = media.decode_video(path, 8)
    np.testing.assert_allclose(frames[[0, -1]].astype(float), np.stack([shown(img)] * 2), atol=24)


def test_non_square_pixels_and_huge_frames_come_out_as_shown_and_bounded(tmp_path):
    wide = write(tmp_path / "sar.mp4", flat(12, (48, 64)), sar=fractions.Fraction(32, 27))  # e.g. DV's 16:9
    assert media.decode_video(wide, 8)[0].shape[1:] == (48, round(64 * 32 / 27), 3)
    huge = write(tmp_path / "huge.mp4", flat(4, (16, 2 * media.MAX_SIDE)))
    assert media.decode_video(huge, 8)[0].shape[1:] == (8, media.MAX_SIDE, 3)


def test_the_window_is_decoded_alone_and_the_features_do_not_change(tmp_path):
    """extract decodes only its window's frames; its features equal those cut from the whole clip's frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(60, 48, 64, 3), dtype=np.uint8)
    feat = FeatureConfig(window_s=1.0)
    for name, audio_seconds in (("video_shorter", 5.0), ("audio_shorter", 3.0)):  # the video is 5 s
        path = write(tmp_path / f"{name}.mp4", frames, seconds=audio_seconds)
        clip = media.extract(path, path, feat)
        whole, n = media.decode_video(path, feat.fps)
        duration = min(len(media.decode_audio(path, feat.sample_rate)) / feat.sample_rate, n / feat.fps)
        v0 = int(round(max(0.0, (duration - feat.window_s) / 2) * feat.fps))
        expected, _ = media.crop_faces(whole[v0 : v0 + feat.video_frames], feat.face_size)
        np.testing.assert_array_equal(clip.video[: clip.video_len], expected)


def test_float_audio_with_nan_is_a_named_reject(tmp_path):
    samples = np.full(1600, 0.1, np.float32)
    samples[800] = np.nan
    body = samples.tobytes()
    header = (b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 3, 1, 16000,
              64000, 4, 32) + b"data" + struct.pack("<I", len(body)))  # format 3: IEEE float
    path = tmp_path / "03-01-05-01-01-01-01.wav"
    path.write_bytes(header + body)
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert caught.value.reason == "audio holds NaN or infinite samples (a damaged float recording)"


def test_a_voice_in_stereo_or_surround_is_as_loud_as_in_mono(tmp_path):
    """Channels are averaged (as librosa's to_mono): the resampler's downmix made stereo 3 dB louder than mono and
    7.1 13 dB, a level that follows the recording setup, and so the speaker, in a corpus that mixes them. (Planar
    audio of 8 channels crashed PyAV's array conversion: packed samples throughout.)"""
    tone = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)

    def wav(name: str, channels: np.ndarray, layout: str) -> Path:
        path = tmp_path / name
        with av.open(str(path), "w") as out:
            stream = out.add_stream("pcm_s16le", rate=16000)
            stream.layout = layout
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels.T).reshape(1, -1), format="flt",
                                               layout=layout)
            frame.sample_rate = 16000
            out.mux(stream.encode(frame))
            out.mux(stream.encode())
        return path

    mono = media.decode_audio(wav("mono.wav", tone[None], "mono"), 16000)
    stereo = media.decode_audio(wav("stereo.wav", np.stack([tone, tone]), "stereo"), 16000)
    np.testing.assert_allclose(stereo, mono, atol=1e-4)
    left = media.decode_audio(wav("left.wav", np.stack([tone, np.zeros_like(tone)]), "stereo"), 16000)
    np.testing.assert_allclose(left, mono / 2, atol=1e-4)  # the mean of the two channels
    for layout, n in (("5.1", 6), ("7.1", 8), ("hexadecagonal", 16)):
        surround = media.decode_audio(wav(f"{n}.wav", np.stack([tone] * n), layout), 16000)
        np.testing.assert_allclose(surround, mono, atol=1e-4, err_msg=layout)


def test_audio_shorter_than_one_analysis_window_is_a_named_reject(tmp_path):
    """librosa only warned (naming no clip) and padded it into features of nothing, which then trained."""
    video = write(tmp_path / "01-01-05-01-01-01-01.mp4", flat(16))
    short = tmp_path / "03-01-05-01-01-01-01.wav"
    media.write_clip(short, None, FPS, np.full(320, 0.1, np.float32), 16000)  # 20 ms
    with pytest.raises(media.MediaError) as caught:
        media.extract(short, video, FeatureConfig())
    assert caught.value.path == str(short)
    assert caught.value.reason == "audio lasts 20 ms, shorter than one 32 ms analysis window: no voice to hear"
    media.write_clip(short, None, FPS, np.full(640, 0.1, np.float32), 16000)  # 40 ms: one window's worth is kept
    assert media.extract(short, video, FeatureConfig()).audio_len >= 1


def test_a_clip_whose_window_holds_no_sound_is_a_named_reject(tmp_path):
    """Audio from 5 s under 2 s of video (a mis-muxed file): the window held only the silence put before the track,
    and went into the shards as log-mel of nothing, while a whole track of digital silence is a reject."""
    late = write(tmp_path / "late.mp4", flat(24), audio_start=5 * 16000)
    with pytest.raises(media.MediaError, match=r"no sound in the clip's window \(0.50-1.50 s\)"):
        media.extract(late, late, FeatureConfig(window_s=1.0))
    heard_late = write(tmp_path / "later.mp4", flat(24), audio_start=16000)  # from 1 s: half the window hears it
    assert media.extract(heard_late, heard_late, FeatureConfig(window_s=1.0)).audio_len > 0


def test_a_gap_in_the_audio_is_silence_and_what_follows_stays_in_step(tmp_path):
    """Audio packets missing for a second (a lossy capture, a recorder that leaves silence out): the frames after
    the gap were joined on where it began, so everything after it sounded a second early, out of step with the
    video, and the clip was a second short."""
    path = tmp_path / "gap.mkv"
    click = np.zeros(48000, np.float32)
    click[40000:40160] = 0.8  # at 2.5 s
    with av.open(str(path), "w") as out:
        a = out.add_stream("pcm_s16le", rate=16000)
        a.layout = "mono"
        for start in range(0, len(click), 1024):
            if 16000 <= start < 32000:  # no packets from 1 s to 2 s
                continue
            frame = av.AudioFrame.from_ndarray(click[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, fractions.Fraction(1, 16000)
            out.mux(a.encode(frame))
        out.mux(a.encode())
    audio = media.decode_audio(path, 16000)
    assert np.flatnonzero(audio > 0.5)[0] / 16000 == pytest.approx(2.5, abs=0.005)
    assert len(audio) / 16000 == pytest.approx(3.0, abs=0.005)
    assert not audio[16100:31900].any()  # the gap is silence


def joined(path: Path, parts: list[tuple[tuple[int, int], int, str]]) -> Path:
    """MPEG-TS recordings of a second each, `parts` of ((height, width), sample rate, layout), joined end to end
    as `cat a.ts b.ts` does (each one's timestamps go on from the last's): a flat grey picture, a 220 Hz tone."""
    blobs = []
    for k, ((h, w), rate, layout) in enumerate(parts):
        part = path.with_suffix(f".{k}.ts")
        with av.open(str(part), "w", format="mpegts") as out:
            v = out.add_stream("mpeg2video", rate=FPS)
            v.height, v.width, v.pix_fmt = h, w, "yuv420p"
            a = out.add_stream("mp2", rate=rate)
            a.layout = layout
            channels = av.AudioLayout(layout).nb_channels
            for i in range(FPS):
                frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 100, np.uint8), format="rgb24")
                frame.pts, frame.time_base = k * FPS + i, fractions.Fraction(1, FPS)
                out.mux(v.encode(frame))
            tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)
            for start in range(0, rate, 1152):
                chunk = np.repeat(tone[start : start + 1152], channels).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, k * rate + start, fractions.Fraction(1, rate)
                out.mux(a.encode(frame))
            out.mux(v.encode())
            out.mux(a.encode())
        blobs.append(part.read_bytes())
    path.write_bytes(b"".join(blobs))
    return path


def test_recordings_joined_end_to_end_keep_one_picture_size_and_all_their_sound(tmp_path):
    """A capture whose resolution, sample rate or channels change part way (recordings joined with `cat`, a
    broadcast switching stereo and 5.1) lost the clip to a bare ValueError from the resampler or from stacking
    frames of two sizes."""
    path = joined(tmp_path / "joined.ts", [((48, 64), 44100, "stereo"), ((96, 128), 48000, "mono")])
    audio, recorded_at = media.decode_rated(path, 16000)
    assert recorded_at == 44100  # the lower of the two: what limits the clip's bandwidth
    assert len(audio) / 16000 == pytest.approx(2.0, abs=0.06)
    loud = [np.sqrt(np.mean(audio[s : s + 8000] ** 2)) for s in range(0, len(audio) - 8000, 8000)]
    assert min(loud) > 0.1  # the tone all through, both parts
    frames, n = media.decode_video(path, 8)
    assert n >= 15 and frames.shape == (n, 48, 64, 3)  # the first part's size throughout
    assert media.extract(path, path, FeatureConfig(fps=8)).duration_s >= 15 / 8


def test_an_avi_with_b_frames_shows_its_frames_in_order(tmp_path):
    """An AVI holds no presentation times: its demuxer makes them from the packets, in decode order, so H.264
    B-frames came out of the decoder in display order with shuffled times, and positions showed frames up to 3
    slots off theirs (2, 1, 4, 3, ...). The dts still rise: ffmpeg's best-effort time takes them, and so does avdis."""
    path = tmp_path / "bframes.avi"
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.height, v.width, v.pix_fmt = 48, 64, "yuv420p"
        v.options = {"bf": "3", "g": str(FPS)}
        for i, img in enumerate(flat(24)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode())
    with av.open(str(path)) as probe:  # the file is the case: its pts do go back
        pts = [f.pts for f in probe.decode(video=0)]
    assert pts != sorted(pts)
    frames, n = media.decode_video(path, FPS)
    shown = levels(frames)
    assert shown == sorted(shown)  # in order
    # each frame in a slot of its own once the pts have gone back (as in ffmpeg, a frame before that can be lost),
    # the last ones too: the decoder's final frames have no dts
    assert shown[-21:] == list(range(3, 24))
    assert n - 24 <= 3  # a delay of the decoder's reordering depth at most


def test_mel_bands_the_fft_cannot_fill_are_refused_before_any_clip_is_read(tmp_path):
    """At 16 kHz the 25 ms window's 512-point FFT leaves 24 of n_mels=256 bands without a bin: channels of constant
    log(1e-6) in every clip, which preprocessing wrote (librosa only warns) and the model was sized for."""
    from avdis.config import DataConfig, S3Config
    from avdis.data import shards
    from avdis.errors import UsageError

    dead = FeatureConfig(n_mels=256)
    mel = media.log_mel(np.random.default_rng(0).standard_normal(16000).astype(np.float32), dead)
    assert (np.ptp(mel, 0) == 0).sum() == 24
    with pytest.raises(UsageError, match=r"n_mels=256 at data.features.sample_rate=16000: 24 mel bands .* "
                                         r"use data.features.n_mels <= 191"):
        media.check_mel_bands(dead)
    media.check_mel_bands(FeatureConfig(n_mels=191))
    media.check_mel_bands(FeatureConfig(n_mels=256, sample_rate=48000))
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(UsageError, match="n_mels=256"):  # not a scan that finds no clips, nor shards of dead bands
        shards.build_shards(DataConfig(src=str(src), shards=str(tmp_path / "out"), features=dead), S3Config())


def test_an_audio_files_cover_art_is_no_video(tmp_path):
    """An .m4a (or .mp3) with cover art holds a still picture as a video track: read as the clip's video, an audio
    recording became an AV clip whose "face" was the artwork, one frame long, so the audio window was its first second
    rather than its middle. Its audio alone is a clip, as with data.modality=audio."""
    path = tmp_path / "a.m4a"
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        art = out.add_stream("mjpeg", rate=1)
        art.width = art.height = 64
        art.pix_fmt = "yuvj420p"
        art.disposition = av.stream.Disposition.attached_pic
        out.mux(art.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")))
        out.mux(art.encode())
        for k in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, k : k + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, k, fractions.Fraction(1, 16000)
            out.mux(sound.encode(frame))
        out.mux(sound.encode())
    with pytest.raises(media.MediaError, match=r"no video stream \(its only picture is cover art; for a corpus of "
                                               r"audio alone, preprocess with data.modality=audio\)"):
        media.extract(path, path, FeatureConfig())
    alone = media.extract(path, None, FeatureConfig())
    assert alone.video is None and alone.duration_s == pytest.approx(3.0, abs=0.1)


def test_a_playlist_is_no_clip(tmp_path):
    """A ground_truth.csv may list any file; an HLS playlist (`.m3u8`, as a stream recorder leaves one beside its
    segments) opened as media, and a live one, without #EXT-X-ENDLIST (a recording cut short), was read for ever,
    waiting for its next segment: its preprocessing never ended, naming nothing."""
    segment = tmp_path / "seg.ts"
    with av.open(str(segment), "w", format="mpegts") as out:
        sound = out.add_stream("mp2", rate=48000)
        sound.layout = "mono"
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 48000)).astype(np.float32)
        for k in range(0, len(tone), 1152):
            frame = av.AudioFrame.from_ndarray(tone[None, k : k + 1152], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, k, fractions.Fraction(1, 48000)
            out.mux(sound.encode(frame))
        out.mux(sound.encode())
    playlist = tmp_path / "take1.m3u8"  # one that ends: read to its end before, taken as a clip
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(playlist, 16000)
    assert caught.value.reason == ("an HLS playlist, not a media file (a live one is read for ever, waiting for its "
                                   "next segment): join its segments into one file (ffmpeg -i take1.m3u8 -c copy "
                                   "take1.mp4) and list that")


@pytest.mark.parametrize("bits", [16, 24])
def test_a_wav_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, bits):
    """ffmpeg reads a WAV to the end of the file without an error, so a copy cut short (an interrupted download of a
    corpus) was decoded as a shorter clip; its header still declares the whole length. A WAV whose header leaves
    its length open (a streaming writer's placeholder: ffmpeg's, SoX's, arecord's) is read to its end."""
    import wave

    tone = np.round(0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000) * (2 ** (bits - 1) - 1)).astype(np.int32)
    pcm = b"".join(int(v).to_bytes(bits // 8, "little", signed=True) for v in tone)
    whole = tmp_path / "whole.wav"
    with wave.open(str(whole), "wb") as w:
        w.setnchannels(1), w.setsampwidth(bits // 8), w.setframerate(16000)
        w.writeframes(pcm)
    assert len(media.decode_audio(whole, 16000)) == 32000
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: -len(pcm) // 2])
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(cut, 16000)
    assert caught.value.reason == ("cut short: its header declares 2.00 s of audio, the file holds 1.00 s (an "
                                   "interrupted copy or download); copy it again")
    # the data chunk's size left open: nothing declared, nothing missing. ffmpeg's 0xFFFFFFFF; SoX's 0x7FFFF000 and
    # arecord's 0x80000000 and 0x7FFFFF00 (recorded through a pipe) were rejected as cut short
    for placeholder in (0xFFFFFFFF, 0x7FFFF000, 0x80000000, 0x7FFFFF00):
        streamed = tmp_path / f"streamed-{placeholder:x}.wav"
        raw = bytearray(cut.read_bytes())
        at = raw.index(b"data") + 4
        raw[at : at + 4] = struct.pack("<I", placeholder)
        streamed.write_bytes(bytes(raw))
        assert len(media.decode_audio(streamed, 16000)) == 16000


@pytest.mark.parametrize("form", [b"RF64", b"BW64"])
def test_an_rf64_or_bw64_wav_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, form):
    """An RF64 WAV (as a field or broadcast recorder writes every file, ffmpeg with -rf64 always, any tool a WAV over
    4 GiB) or a BW64 one (ITU's, alike) keeps its sizes in a ds64 chunk, its data chunk's own 0xFFFFFFFF; ffmpeg
    reads it as a WAV, to the end of the file without an error. The check of a WAV cut short looked only at files
    beginning "RIFF", so a copy cut short was a shorter clip."""
    whole = _encoded(tmp_path / "whole.wav", "pcm_s16le", {"rf64": "always"})
    raw = whole.read_bytes()
    assert raw[:4] == b"RF64" and raw[12:16] == b"ds64"
    whole.write_bytes(form + raw[4:])
    assert len(media.decode_audio(whole, 16000)) == 32000
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:-32000])
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(cut, 16000)
    assert caught.value.reason == ("cut short: its header declares 2.00 s of audio, the file holds 1.00 s (an "
                                   "interrupted copy or download); copy it again")
    # one over 2 GiB (a long session's), cut short: a size a WAV's 32 bits would hold only as a writer's placeholder
    raw = bytearray(cut.read_bytes())
    raw[28:36] = struct.pack("<Q", 3 << 30)  # the ds64 chunk's data size: 3 GiB, 100,663 s of 16 kHz 16-bit mono
    cut.write_bytes(bytes(raw))
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(cut, 16000)
    assert caught.value.reason.startswith("cut short: its header declares 100663.30 s of audio, the file holds 1.00 s")


@pytest.mark.parametrize("form", [b"RF64", b"BW64"])
def test_an_rf64_or_bw64_wav_header_alone_is_no_recording(tmp_path, form):
    """`sniff.no_recording` read a WAV's chunks only where the file begins "RIFF", though `walks.wav_chunks` walks
    an RF64's or BW64's too (14f13a0): the header of one with no sample after it was a recording, so two such files
    alike under two CREMA-D emotions were one recording under two names (no clip of either), where two RIFF headers
    alike are two broken files, each clip then taken from its other files. Samples after the header are one."""
    from avdis.data.corpora import sniff

    raw = _encoded(tmp_path / "whole.wav", "pcm_s16le", {"rf64": "always"}).read_bytes()
    at = raw.index(b"data") + 8
    for tail, none in ((b"", True), (raw[at:], False)):
        (tmp_path / "x.wav").write_bytes(form + raw[4:at] + tail)
        assert sniff.no_recording(str(tmp_path / "x.wav")) == none, (form, len(tail))


@pytest.mark.parametrize("form", [b"RF64", b"BW64"])
def test_an_rf64_or_bw64_wav_written_into_a_pipe_is_read_to_its_end(tmp_path, form):
    """ffmpeg writing an RF64 WAV into a pipe (-rf64 always, or auto for a long recording) cannot go back to fill in
    its ds64 chunk: the data size there stays 0. ffmpeg reads a RIFF WAV's data size left open (0, 0xFFFFFFFF) to
    the end of the file, but an RF64's (or BW64's) at its word: none of the file's samples was read, and the reject
    said 'audio stream holds no samples ... copy it again', of a file holding its whole recording, which a copy gives
    again. It is now read to its end, every sample as in the same recording written to a file; its header alone
    is still no recording."""
    seekable = media.decode_audio(_encoded(tmp_path / "seekable.wav", "pcm_s16le", {"rf64": "always"}), 16000)
    raw = _encoded(tmp_path / "piped.wav", "pcm_s16le", {"rf64": "always"}, piped=True).read_bytes()
    assert raw[:4] == b"RF64" and raw[12:16] == b"ds64" and raw[28:36] == bytes(8)  # its data size: open
    path = tmp_path / "voice.wav"
    path.write_bytes(form + raw[4:])
    assert len(seekable) == 32000
    np.testing.assert_array_equal(media.decode_audio(path, 16000), seekable)
    path.write_bytes(form + raw[4 : raw.index(b"data") + 8])
    with pytest.raises(media.MediaError, match="audio stream holds no samples"):
        media.decode_audio(path, 16000)


class _Pipe(io.RawIOBase):
    """What ffmpeg writes into when it cannot seek back (its output a pipe): the sizes it fills in at the end of a
    file it writes to disk stay as they were written at its start."""

    def __init__(self) -> None:
        self.held = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.held += data
        return len(data)


def _encoded(path: Path, codec: str, options: dict[str, str] | None = None, rate: int = 16000,
             piped: bool = False) -> Path:
    """2 s of a 220 Hz tone at `rate` (16 kHz), mono, in `codec`; `piped`: written into a pipe (`_Pipe`), in the
    container `path`'s suffix names, then saved at `path`."""
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * rate) / rate)).astype(np.float32)
    pcm = codec in ("flac", "pcm_s16be", "pcm_s16le")
    samples, fmt = ((tone * 32767).astype(np.int16), "s16") if pcm else (tone, "fltp")
    pipe = _Pipe()
    with av.open(pipe if piped else str(path), "w", format=path.suffix[1:] if piped else None,
                 options=options or {}) as out:
        a = out.add_stream(codec, rate=rate)
        a.layout = "mono"
        for k in range(0, len(samples), 1152):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, k : k + 1152]), format=fmt,
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, k, fractions.Fraction(1, rate)
            out.mux(a.encode(frame))
        out.mux(a.encode())
    if piped:
        path.write_bytes(bytes(pipe.held))
    return path


@pytest.mark.parametrize("codec, suffix", [("flac", "flac"), ("libmp3lame", "mp3"), ("pcm_s16be", "aiff")])
def test_a_flac_aiff_or_mp3_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, codec, suffix):
    """ffmpeg decodes an MP3 or an AIFF cut short, and a FLAC cut at a frame's end, to the end of the file without an
    error, so an interrupted copy was a shorter clip; a FLAC cut inside a frame was "corrupt audio stream (Invalid
    data ...)", which does not say to copy it again. Their headers (FLAC's STREAMINFO, an AIFF's COMM, an MP3's
    Xing/Info) still declare the whole length (an MP3 without one: test_an_mp3_without_a_xing_header_...)."""
    whole = _encoded(tmp_path / f"whole.{suffix}", codec)
    assert len(media.decode_audio(whole, 16000)) == 32000
    with av.open(str(whole)) as container:  # where the frames start: a cut there leaves whole frames only
        starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    data = whole.read_bytes()
    mid = starts[len(starts) // 2]
    # at a frame's start, inside its header (an MP3's was a shorter clip: taken for bytes appended), inside a frame
    for at in (mid, mid + 2, mid + 40):
        cut = tmp_path / f"cut{whole.suffix}"
        cut.write_bytes(data[:at])
        with pytest.raises(media.MediaError) as caught:
            media.decode_audio(cut, 16000)
        assert caught.value.reason.startswith("cut short: its header declares 2.00 s of audio, the file holds ")
        assert caught.value.reason.endswith(" s (an interrupted copy or download); copy it again")
    if codec == "pcm_s16be":  # the COMM chunk's frame count left 0 (written into a pipe): nothing declared
        raw = bytearray(cut.read_bytes())
        at = raw.index(b"COMM") + 10
        raw[at : at + 4] = bytes(4)
        cut.write_bytes(bytes(raw))
        assert 0 < len(media.decode_audio(cut, 16000)) < 32000


def test_an_mp3_without_a_xing_header_cut_inside_a_frame_is_a_named_reject(tmp_path):
    """An MP3 without a Xing/Info header (a CBR encode, ffmpeg's -write_xing 0) declares no length: ffmpeg guesses it
    from the file's size, and a copy cut short was read to its end as a shorter clip. Each frame's header says how
    long the frame is (bitrate, sample rate, padding), and a copy cut short ends inside the last; one cut exactly
    between two frames stays unseen. An ID3v1 or APE tag, or bytes a tool appended, after the last frame say
    nothing."""
    bare = _encoded(tmp_path / "bare.mp3", "libmp3lame", {"write_xing": "0"})
    data = bare.read_bytes()
    assert data[:3] == b"ID3"  # its frames start after an ID3v2 tag
    with av.open(str(bare)) as container:
        starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    id3v1 = b"TAG" + b"take 1".ljust(30, b"\0") + bytes(94) + b"\x0c"  # its title, artist ... genre
    ape = b"APETAGEX" + struct.pack("<4I", 2000, 32, 0, 0) + bytes(8)  # an APE tag's footer, of no items
    tagged = tmp_path / "tagged.mp3"
    for tail in (b"", id3v1, ape + id3v1):
        tagged.write_bytes(data + tail)
        assert len(media.decode_audio(tagged, 16000)) >= 32000
    tagged.write_bytes(data + b"\0tag" * 8)  # appended by a tool: test_an_mp3_with_bytes_appended_...
    assert whole.ends_past_file(tagged) is None
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: starts[len(starts) // 2]])
    assert 0 < len(media.decode_audio(cut, 16000)) < 32000
    for at in (starts[len(starts) // 2] + 2, starts[len(starts) // 2] + 40, len(data) - 3):
        cut.write_bytes(data[:at])
        with pytest.raises(media.MediaError) as caught:
            media.decode_audio(cut, 16000)
        assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its MPEG audio frame( header)?, which "
                            rf"runs to byte \d+: {ADVICE}",
                            caught.value.reason), caught.value.reason


@pytest.mark.parametrize("xing", ["0", "1"])
def test_an_mp3_with_bytes_appended_after_its_last_frame_is_read_whole(tmp_path, xing):
    """Zeros or junk a tool appended after an MP3's last frame: ffmpeg handed them to the decoder as one more packet,
    which failed, and the whole file was "corrupt audio stream"; one with a Xing/Info header was "cut short" (more than
    a sixteenth appended, ffmpeg takes its length from its size, not from the header's count). A player passes over
    them; so does decoding now, however many (more than 64 KiB were still an error: "corrupt audio stream", with a
    Xing header "cut short: its header declares 25.42 s"), random bytes too, in which a lone frame header turns up."""
    path = _encoded(tmp_path / "whole.mp3", "libmp3lame", {"write_xing": xing})
    data, n = path.read_bytes(), len(media.decode_audio(path, 16000))
    appended = tmp_path / "appended.mp3"
    junk = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    for tail in (bytes(32), bytes(len(data) // 8), b"\0tag" * 8, bytes(70000), junk):
        appended.write_bytes(data + tail)
        assert abs(len(media.decode_audio(appended, 16000)) - n) < 400  # ffmpeg's own count of the encoder's delay


def test_an_mp3_whose_last_frames_were_never_filled_in_is_a_named_reject_not_a_shorter_clip(tmp_path):
    """A download that sets a file's size before it fills it in (and stopped) leaves an MP3 at its full size with
    zeros where its last frames were: taken for zeros a tool appended, it was a shorter clip (1.15 s of 2), though its
    Xing/Info header counts the bytes its frames fill, and those reach past where its frames stop. Zeros or text
    appended after those bytes are no fault (test_an_mp3_with_bytes_appended_after_its_last_frame_is_read_whole)."""
    path = _encoded(tmp_path / "whole.mp3", "libmp3lame")
    data = path.read_bytes()
    at = len(data) * 6 // 10
    unfilled = tmp_path / "unfilled.mp3"
    unfilled.write_bytes(data[:at] + bytes(len(data) - at))
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(unfilled, 16000)
    assert re.fullmatch(r"cut short: its header declares 2.00 s of audio, the file holds 1.\d\d s \(an interrupted "
                        r"copy or download\); copy it again", caught.value.reason), caught.value.reason


# what a tagger may leave after an MP3's ID3v2 tag, which ffmpeg passes over to the frames after: zeros (padding the
# tag's size does not count) or a second tag
AFTER_TAG = pytest.mark.parametrize("between", [bytes(2048), b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10)],
                                    ids=["zeros", "a second tag"])


def _padded(path: Path, between: bytes) -> bytes:
    """The MP3 at `path` with `between` after its ID3v2 tag, before its first frame."""
    data = path.read_bytes()
    at = walks.id3_end(data[:10])
    return data[:at] + between + data[at:]


@AFTER_TAG
@pytest.mark.parametrize("xing", ["0", "1"])
def test_an_mp3_whose_frames_start_past_its_id3_tag_with_bytes_appended_is_read_whole(tmp_path, xing, between):
    """`whole.mp3_frames_end` looked for the first frame right after the ID3v2 tag, so past zeros or a second tag
    there it found none, and junk appended after the last frame went to the decoder: "corrupt audio stream", where
    the same file without them was read whole. Its walk starts where the frames do."""
    path = tmp_path / "padded.mp3"
    path.write_bytes(_padded(_encoded(tmp_path / "whole.mp3", "libmp3lame", {"write_xing": xing}), between))
    data, n = path.read_bytes(), len(media.decode_audio(path, 16000))
    assert n >= 32000
    junk = np.random.default_rng(0).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    for tail in (b"\0tag" * 8, junk):
        path.write_bytes(data + tail)
        assert abs(len(media.decode_audio(path, 16000)) - n) < 400  # ffmpeg's own count of the encoder's delay
        assert whole.mp3_frames_end(path) == len(data)


@AFTER_TAG
@pytest.mark.parametrize("xing", ["0", "1"])
def test_an_mp3_whose_frames_start_past_its_id3_tag_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, xing,
                                                                                                    between):
    """whole's cut-short checks looked for the first frame (and a Xing/Info header in it) right after the ID3v2 tag,
    so past zeros or a second tag there they saw no MP3: a copy cut short was a shorter clip. They start where the
    frames do. ffmpeg reads a Xing/Info header only right after the tags (a second tag too), where its count is the
    length declared; past zeros it reads none and guesses the length from the file's size, so the frames are walked,
    as a CBR encode's are. A file whose last frames were never filled in is told by the count where ffmpeg reads it."""
    path = tmp_path / "padded.mp3"
    path.write_bytes(_padded(_encoded(tmp_path / "whole.mp3", "libmp3lame", {"write_xing": xing}), between))
    assert len(media.decode_audio(path, 16000)) >= 32000
    with av.open(str(path)) as container:
        starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    data, at = path.read_bytes(), starts[len(starts) // 2] + 40  # inside a frame half way
    counted = xing == "1" and between[:3] == b"ID3"
    declared = (r"its header declares 2.00 s of audio, the file holds \d.\d\d s \(an interrupted copy or download\); "
                r"copy it again")
    walked = rf"the file ends at byte {at}, inside its MPEG audio frame, which runs to byte \d+: {ADVICE}"
    path.write_bytes(data[:at])
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert re.fullmatch(rf"cut short: {declared if counted else walked}", caught.value.reason), caught.value.reason
    if counted:
        path.write_bytes(data[:at] + bytes(len(data) - at))  # never filled in
        with pytest.raises(media.MediaError) as caught:
            media.decode_audio(path, 16000)
        assert re.fullmatch(rf"cut short: {declared}", caught.value.reason), caught.value.reason


@pytest.mark.parametrize("name, codec", [("voice.opus", "libopus"), ("voice.oga", "flac")])
def test_an_ogg_file_whose_last_pages_were_never_filled_in_is_a_named_reject_not_a_shorter_clip(tmp_path, name, codec):
    """An Ogg file at its full size with zeros where its last pages were (a download that sets a file's size before
    it fills it in, stopped) was a shorter clip: the zeros were taken for bytes a tool appended. A stream marks its
    last page (end of stream); pages that stop before it, no page following, are a damaged copy. Bytes appended after
    a whole file stay no fault (test_an_ogg_or_flv_file_cut_short_is_a_named_reject_...). Zeros inside the last page
    alone stay unseen (its header says how long it is; only its checksum, which ffmpeg does not check, would tell)."""
    path = _encoded(tmp_path / name, codec)
    data = path.read_bytes()
    path.write_bytes(data + bytes(64))
    assert len(media.decode_audio(path, 16000)) >= 32000
    at = len(data) // 3  # FLAC in Ogg: in the third of its four pages
    path.write_bytes(data[:at] + bytes(len(data) - at))
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert re.fullmatch(r"damaged: its Ogg pages stop at byte \d+, before its stream's last page; what follows is no "
                        r"page \(a download that set the file's size first, stopped before it was filled in, or a "
                        r"copy damaged in place\): copy it again", caught.value.reason), caught.value.reason


def _ogg_checksum(page: bytes) -> bytes:
    """An Ogg page's checksum: CRC-32 (polynomial 0x04C11DB7, not reflected) of the page with its checksum field 0."""
    crc = 0
    for byte in page[:22] + bytes(4) + page[26:]:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1 ^ 0x04C11DB7 if crc >> 31 else crc << 1) & 0xFFFFFFFF
    return crc.to_bytes(4, "little")


@pytest.mark.parametrize("name, codec", [("voice.opus", "libopus"), ("voice.oga", "flac")])
def test_an_ogg_file_without_its_end_of_stream_mark_with_a_tag_appended_is_read_whole(tmp_path, name, codec):
    """An Ogg file whose last page does not mark its stream's end (a stream captured from a radio, a recorder that
    leaves it unset), whole, with a tag or text a tool appended (ID3v1, APEv2) was "damaged: its Ogg pages stop ...:
    copy it again": the tag was read as bytes a download never filled in, and the clip lost, which no copy brings
    back. Bytes that are no page stay a damaged copy where they are zeros to the end of the file (the download) or
    pages start again after them (damage in place)."""
    data = _encoded(tmp_path / name, codec).read_bytes()
    starts = [0]
    while (end := walks.ogg_page(io.BytesIO(data), starts[-1])[0]) < len(data):
        starts.append(end)
    page = bytearray(data[starts[-1] :])
    page[5] &= ~4  # its end-of-stream flag cleared, its checksum made anew
    page[22:26] = _ogg_checksum(page)
    unended = data[: starts[-1]] + bytes(page)
    path = tmp_path / f"unended.{name}"
    path.write_bytes(unended)
    length = len(media.decode_audio(path, 16000))
    id3v1, ape = b"TAG" + b"Take 3".ljust(125, b"\0"), b"APETAGEX" + struct.pack("<4I", 2000, 32, 0, 1 << 31) + bytes(8)
    for tail in (id3v1, ape, b"Recorded with Some App 1.2\n"):
        path.write_bytes(unended + tail)
        assert len(media.decode_audio(path, 16000)) == length
    hole = starts[-2]  # zeros over the page before the last, which follows them
    at = len(data) // 3
    for damaged in (unended[:at] + bytes(len(unended) - at), unended[:hole] + bytes(64) + unended[hole + 64 :]):
        path.write_bytes(damaged)
        with pytest.raises(media.MediaError, match=r"damaged: its Ogg pages stop at byte \d+, before its stream's"):
            media.decode_audio(path, 16000)


@pytest.mark.parametrize("name", ["voice.mka", "clip.mkv", "clip.webm"])
def test_a_matroska_file_whose_last_elements_were_never_filled_in_is_a_named_reject_not_a_shorter_clip(tmp_path, name):
    """A Matroska file (.mka, .mkv, .webm) at its full size with zeros where its last clusters were (a download that
    sets a file's size before it fills it in, stopped) was a shorter clip: ffmpeg reads the clusters before them
    without an error. Its segment says how long it is: elements that stop short of its end, zeros to it, are a
    damaged copy. Zeros appended after a whole file stay no fault."""
    if name == "voice.mka":
        path = _encoded(tmp_path / name, "libopus")
    else:
        path = tmp_path / name
        with av.open(str(path), "w") as out:  # video alone, as a corpus whose sound is in files of its own
            v = out.add_stream("libx264" if name.endswith(".mkv") else "libvpx", rate=FPS)
            v.height, v.width, v.pix_fmt = 48, 64, "yuv420p"
            for img in flat(24):
                out.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(v.encode())
    read = (lambda p: len(media.decode_audio(p, 16000))) if name == "voice.mka" else (
        lambda p: media.decode_video(p, 8)[1])
    data = path.read_bytes()
    whole_length = read(path)
    path.write_bytes(data + bytes(64))
    assert read(path) == whole_length
    at = len(data) // 2
    path.write_bytes(data[:at] + bytes(len(data) - at))
    with pytest.raises(media.MediaError) as caught:
        read(path)
    assert re.fullmatch(r"damaged: its Matroska elements stop at byte \d+, short of byte \d+, where its segment "
                        r"ends; what follows is zeros \(a download that set the file's size first, stopped before it "
                        r"was filled in, or a copy damaged in place\): copy it again", caught.value.reason), \
        caught.value.reason


def test_a_stream_that_fails_to_decode_says_what_to_do_and_names_zeros_where_a_download_stopped(tmp_path):
    """An MP4 whose media was damaged in place, or whose last part was never filled in (zeros where a download that
    sets the file's size first stopped), failed as "corrupt audio stream (... Invalid data found when processing
    input: 'avcodec_send_packet()')", which said neither why nor what to do."""
    path = write(tmp_path / "clip.mp4", flat(24), options={"movflags": "faststart"})  # its index first, as downloads
    data = path.read_bytes()
    junk = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    at = len(data) * 6 // 10
    failed = "corrupt {} stream \\(.*Invalid data found when processing input.*\\): "
    for damaged, why in (
            (data[:at] + bytes(len(data) - at),
             rf"its last {len(data) - at} bytes, from byte {at}, are zeros \(a download that set the file's size "
             r"first, stopped before it was filled in\): copy it again"),
            (data[: len(data) // 2] + junk + data[len(data) // 2 + len(junk) :],
             r"damaged inside: copy it again, or re-encode what of it decodes in its place \(ffmpeg -i IN OUT\)")):
        path.write_bytes(damaged)
        for kind, read in (("audio", lambda p: media.decode_audio(p, 16000)),
                           ("video", lambda p: media.decode_video(p, 8))):
            with pytest.raises(media.MediaError) as caught:
                read(path)
            assert re.fullmatch(failed.format(kind) + why, caught.value.reason), caught.value.reason


def test_an_mp4_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path):
    """An MP4 whose index (moov) comes before its media, as a download's does, cut short: ffmpeg read its video to the
    end of the file without an error, a shorter clip (a RAVDESS video-only 02 file, a CREMA-D .mp4, paired with a
    whole .wav), and its audio failed on the last, partial packet as "corrupt audio stream (Invalid data ...)", which
    does not say to copy it again. The index still lists every packet, where the file no longer holds them."""
    whole = write(tmp_path / "whole.mp4", flat(24), options={"movflags": "faststart"})
    assert media.decode_video(whole, 8)[1] == 16 and len(media.decode_audio(whole, 16000)) >= 32000
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) * 6 // 10])
    for kind, decode in (("video", lambda: media.decode_video(cut, 8)), ("audio", lambda: media.decode_audio(cut, 16000))):
        with pytest.raises(media.MediaError) as caught:
            decode()
        assert re.fullmatch(rf"cut short: its header declares 2\.00 s of {kind}, the file holds [01]\.\d\d s \(an "
                            r"interrupted copy or download\); copy it again", caught.value.reason), caught.value.reason


def test_an_mp4_cut_short_before_its_index_is_named_not_unopenable(tmp_path):
    """An MP4 writes its index (moov) after its media unless made for streaming: a copy cut short has none, and ffmpeg
    cannot open it ("cannot open media (InvalidDataError: ... Invalid data found when processing input)", as for a
    damaged file). Its last box still declares how far it runs. A recording stopped before it was closed has none
    either, its mdat's size left 0 (to the end of the file) as ffmpeg writes it until then: it was "cannot open
    media" too, as was a copy cut exactly where its moov began. None can be re-encoded (the advice for a cut said
    to), so the advice is to copy it again or leave it out."""
    whole = write(tmp_path / "whole.mp4", flat(24))
    data = whole.read_bytes()
    cut, crashed, exact = tmp_path / "cut.mp4", tmp_path / "crashed.mp4", tmp_path / "exact.mp4"
    cut.write_bytes(data[:900])
    mdat, moov = data.index(b"mdat") - 4, data.index(b"moov") - 4
    crashed.write_bytes(data[:mdat] + bytes(4) + data[mdat + 4 : moov])
    exact.write_bytes(data[:moov])
    unindexed = (r"no index: no index \(moov\) follows its media data, which runs to the end of the file: a recording "
                 r"stopped before it was closed \(a recorder that crashed, a camera that lost power; ffmpeg can neither "
                 r"read nor re-encode an MP4 without its index: leave it out\), or a copy cut short where its index "
                 r"began \(copy it again\)")
    for path, reason in (
            (cut, r"cut short: the file ends at byte 900, inside its MP4 box, which runs to byte \d+, before its index "
                  r"\(moov\), without which ffmpeg can neither read nor re-encode it: an interrupted copy or download "
                  r"\(copy it again\), or a recording stopped before it was closed \(leave it out\)"),
            (crashed, unindexed), (exact, unindexed)):
        for decode in (lambda: media.decode_video(path, 8), lambda: media.decode_audio(path, 16000)):
            with pytest.raises(media.MediaError) as caught:
                decode()
            assert re.fullmatch(reason, caught.value.reason), caught.value.reason
        with pytest.raises(av.error.InvalidDataError):  # what `ffmpeg -i IN OUT` meets: nothing to re-encode
            av.open(str(path))


def _video(path: Path, container: str, codec: str, options: dict[str, str] | None = None) -> Path:
    """`flat(24)` at FPS in `container`, written with the muxer's `options`."""
    with av.open(str(path), "w", format=container, options=options or {}) as out:
        v = out.add_stream(codec, rate=FPS)
        v.height, v.width, v.pix_fmt = 48, 64, "yuv420p"
        for img in flat(24):
            out.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(v.encode())
    return path


@pytest.mark.parametrize("movflags", ["frag_keyframe+empty_moov", "frag_keyframe"])
def test_a_fragmented_mp4_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, movflags):
    """A fragmented MP4 (a fragment per key frame: its moov lists none of them, or the first alone) is indexed as
    ffmpeg reads its fragments: a copy cut short after a fragment's video was read as a shorter clip (4 frames of
    17), and one cut inside a later fragment's moof gave both tracks shorter, its index holding no packet past the
    end. Its top-level boxes still say how long each is; a cut exactly between two stays unseen. A recorder stopped
    before it closed the file leaves the same, which no copy makes whole: the advice says what to do for either.
    Bytes a tool appended say nothing, text too, whose first 8 bytes read as a box's size and type (it was called cut
    short)."""
    path = write(tmp_path / "frag.mp4", flat(24), options={"movflags": movflags}, gop=4)
    assert media.decode_video(path, 8)[1] >= 16 and len(media.decode_audio(path, 16000)) >= 32000
    data = path.read_bytes()
    appended = tmp_path / "appended.mp4"
    appended.write_bytes(data + b"Recorded with Some App 1.2\n")
    assert media.decode_video(appended, 8)[1] >= 16 and len(media.decode_audio(appended, 16000)) >= 32000
    fragments = [m.start() - 4 for m in re.finditer(b"moof", data)]
    assert len(fragments) >= 5
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: fragments[2]])
    assert 0 < media.decode_video(cut, 8)[1] < 16
    for at in (fragments[1] - 10, fragments[3] + 100, fragments[-1] + 100):  # after a fragment's video, in a moof
        cut.write_bytes(data[:at])
        for read in (lambda p: media.decode_video(p, 8), lambda p: media.decode_audio(p, 16000)):
            with pytest.raises(media.MediaError) as caught:
                read(cut)
            assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its MP4 box, which runs to byte \d+: "
                                rf"{ADVICE}",
                                caught.value.reason), caught.value.reason


@pytest.mark.parametrize("container, codec", [("matroska", "libx264"), ("avi", "mpeg4")])
def test_an_avi_or_matroska_file_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, container, codec):
    """ffmpeg reads an AVI or a Matroska file cut short (an interrupted copy) to its end without an error: a shorter
    clip. Its RIFF chunk (AVI) or segment (Matroska) still says how long the file is (a Matroska file written live:
    test_a_matroska_file_written_live_...)."""
    path = _video(tmp_path / f"whole.{'mkv' if container == 'matroska' else 'avi'}", container, codec)
    assert media.decode_video(path, 8)[1] == 16
    cut = tmp_path / f"cut{path.suffix}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 6 // 10])
    what = "Matroska segment" if container == "matroska" else "AVI RIFF chunk"
    with pytest.raises(media.MediaError) as caught:
        media.decode_video(cut, 8)
    assert re.fullmatch(rf"cut short: the file ends at byte \d+, inside its {what}, which runs to byte "
                        rf"{len(path.read_bytes())}: {ADVICE}",
                        caught.value.reason), caught.value.reason


def test_an_avi_over_1_gib_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path):
    """An AVI over 1 GiB (OpenDML, as ffmpeg writes one) holds its media in a RIFF 'AVI ' chunk, then RIFF 'AVIX'
    chunks, the first whole once the next is written: only its size was checked, so a copy cut short in a later one
    was a shorter clip (15 positions of 16). Each chunk says how long it is. Here ffmpeg's AVI, its frames split
    between the two as such a file holds them (no index: ffmpeg reads the chunks in turn)."""
    data = _video(tmp_path / "small.avi", "avi", "mpeg4").read_bytes()
    movi = data.index(b"movi") - 8
    chunks, at = [], movi + 12
    while at < movi + 8 + int.from_bytes(data[movi + 4 : movi + 8], "little"):
        chunks.append(data[at : at + 8 + int.from_bytes(data[at + 4 : at + 8], "little")])
        at += len(chunks[-1])

    def chunk(riff: bytes, kind: bytes, body: bytes) -> bytes:
        return riff + (4 + len(body)).to_bytes(4, "little") + kind + body

    movies = [chunk(b"LIST", b"movi", b"".join(part)) for part in (chunks[:12], chunks[12:])]
    path = tmp_path / "odml.avi"
    path.write_bytes(chunk(b"RIFF", b"AVI ", data[12:movi] + movies[0]) + chunk(b"RIFF", b"AVIX", movies[1]))
    odml = path.read_bytes()
    assert media.decode_video(path, 8)[1] == 16
    path.write_bytes(odml + b"Recorded with Some App 1.2\n")
    assert media.decode_video(path, 8)[1] == 16
    cut = tmp_path / "cut.avi"
    for at in (len(odml) - 100, len(odml) - len(movies[1]) - 5):  # in the AVIX chunk, in its header
        cut.write_bytes(odml[:at])
        with pytest.raises(media.MediaError) as caught:
            media.decode_video(cut, 8)
        assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its AVI RIFF chunk( header)?, which runs "
                            rf"to byte \d+: {ADVICE}", caught.value.reason), caught.value.reason


@pytest.mark.parametrize("suffix, packet", [("ts", 188), ("m2ts", 192)])
def test_an_mpeg_transport_stream_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, suffix, packet):
    """An MPEG transport stream (.ts; a camcorder's .mts/.m2ts, whose packets carry a 4-byte arrival time first) says
    no length anywhere, and ffmpeg drops a last, partial packet: a copy cut short was a shorter clip (11 positions of
    17), or its audio failed as "corrupt audio stream". Its packets are all of one size, so a copy cut inside one
    ends inside the last; one cut exactly between two ends inside an audio PES packet, which says how long it is, or
    inside a video's, whose length ffmpeg leaves unsaid (test_an_mpeg_transport_stream_cut_between_two_packets_...), or
    between two PES packets, which stays unseen. Text appended is no packet."""
    path = write(tmp_path / f"clip.{suffix}", flat(24))
    data = path.read_bytes()
    assert len(data) % packet == 0 and media.decode_video(path, 8)[1] == 17
    appended = tmp_path / f"appended.{suffix}"
    # "G": a packet's sync byte, then a PID no packet has ("GT": one no packet's begins with)
    for tail in (b"\n", b"Generated by Some App 1.2\n", b"GT"):
        appended.write_bytes(data + tail)
        assert media.decode_video(appended, 8)[1] == 17 and len(media.decode_audio(appended, 16000)) >= 32000
    with av.open(str(path)) as container:
        audio = container.streams.audio[0].id  # its PID
    sync = packet - 188
    pes = [k for k in range(len(data) // packet) if data[k * packet + sync + 1] & 0x40  # a PES packet starts there
           and int.from_bytes(data[k * packet + sync + 1 : k * packet + sync + 3], "big") & 0x1FFF == audio]
    cut = tmp_path / f"cut.{suffix}"
    inside = len(data) // packet * 6 // 10 * packet + 100
    for at, what in ((inside, "MPEG-TS packet"), ((pes[len(pes) // 2] + 1) * packet, "MPEG-TS PES packet")):
        cut.write_bytes(data[:at])
        for read in (lambda p: media.decode_video(p, 8), lambda p: media.decode_audio(p, 16000)):
            with pytest.raises(media.MediaError) as caught:
                read(cut)
            assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its {what}, which runs to byte \d+: "
                                rf"{ADVICE}", caught.value.reason), caught.value.reason


def test_an_mpeg_transport_stream_cut_between_two_packets_of_its_video_is_a_named_reject(tmp_path):
    """ffmpeg's transport streams leave a video PES packet's length unsaid (0, by default), so a copy cut
    exactly between two of its packets ends as a whole file might: it was a shorter clip (9 positions of 17, its last
    frame patched by the decoder). The decoder flags that last frame as incomplete; a whole file's is not, and a cut
    exactly between two PES packets stays unseen."""
    noise = np.random.default_rng(0).integers(0, 255, (24, 96, 128, 3), dtype=np.uint8)
    path = write(tmp_path / "clip.ts", noise)
    data = path.read_bytes()
    assert media.decode_video(path, 8)[1] == 17
    with av.open(str(path)) as container:
        video = container.streams.video[0].id  # its PID
    inside = [k for k in range(len(data) // 188) if not data[k * 188 + 1] & 0x40  # no PES packet starts there
              and int.from_bytes(data[k * 188 + 1 : k * 188 + 3], "big") & 0x1FFF == video]
    cut = tmp_path / "cut.ts"
    at = inside[len(inside) // 2] * 188
    cut.write_bytes(data[:at])
    assert whole.ends_past_file(cut) is None  # its packets say nothing
    with pytest.raises(media.MediaError) as caught:
        media.decode_video(cut, 8)
    assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its last video frame, which the decoder found "
                        rf"incomplete \(a transport stream's video packets say no length\): {ADVICE}",
                        caught.value.reason), caught.value.reason


@pytest.mark.parametrize("clusters", ["sized", "open"])
def test_a_matroska_file_written_live_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, clusters):
    """A Matroska file written live (ffmpeg's -live 1, or into a pipe) leaves its segment's size open, a browser's
    recorder its clusters' too: a copy cut short was read to its end as a shorter clip. Each cluster, or each block
    of a cluster of open size, still says how long it is, and a copy cut short ends inside the last; one cut exactly
    between two stays unseen. Bytes a tool appended say nothing, those whose first byte is an element's ID too (they
    were called cut short): an ID the level does not hold, or first bytes no such element holds, end the walk; a
    cluster's timestamp comes before its blocks (one short word of Chinese text was one after them), a CRC-32 is its
    parent's first child, and no Void sits among a cluster's blocks (one Korean character was each)."""
    path = _video(tmp_path / "live.mkv", "matroska", "libx264", {"live": "1"})
    data = path.read_bytes()
    cluster = b"\x1f\x43\xb6\x75"
    if clusters == "open":  # each cluster's size, as a browser's recorder writes it: every bit set, its width kept
        raw, at = bytearray(data), data.index(cluster)
        while at >= 0:
            width = 9 - raw[at + 4].bit_length()
            raw[at + 4 : at + 4 + width] = ((2 << (7 * width)) - 1).to_bytes(width, "big")
            at = data.find(cluster, at + 1)
        data = bytes(raw)
        path.write_bytes(data)
    assert media.decode_video(path, 8)[1] == 16
    appended = tmp_path / "appended.mkv"
    for tail in (b"\0tag", b"\xa3tag junk", b"\xecjunk", b"\xe7junk"):  # a SimpleBlock's, Void's, Timestamp's ID
        appended.write_bytes(data + tail * 8)
        assert whole.ends_past_file(appended) is None, tail
    # E7 88 B1: a Timestamp's ID and size, after the cluster's blocks; EC 80 BF and EC 80 A3: a Void of no bytes, then
    # a CRC-32's ID after the segment's first element, and a SimpleBlock's after a Void in a cluster
    for word in ("爱", "쀿", "쀣"):
        appended.write_bytes(data + word.encode())
        assert whole.ends_past_file(appended) is None, word
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: data.rindex(cluster)])  # between two clusters
    assert 0 < media.decode_video(cut, 8)[1] < 16
    for at in (len(data) * 6 // 10, data.rindex(cluster) + 2, len(data) - 3):
        cut.write_bytes(data[:at])
        for read in (lambda p: media.decode_video(p, 8), lambda p: media.decode_audio(p, 16000)):
            with pytest.raises(media.MediaError) as caught:
                read(cut)
            assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its Matroska element( header)?, which "
                                rf"runs to byte \d+: {ADVICE}",
                                caught.value.reason), caught.value.reason


@pytest.mark.parametrize("segment_at", [56, 5000])
def test_a_matroska_file_whose_header_holds_padding_is_read_whole_and_still_told_cut_short(tmp_path, segment_at):
    """An EBML header may hold a Void element (padding a muxer leaves to rewrite it): the segment's 8-byte size then
    straddled byte 64, where the check read to, and a whole file was rejected as cut short (a size read in part).
    Read from the file's first 4 KiB, the check is whole; a segment past 4 KiB leaves it unsaid, as a size left open
    does, and the file is read to its end."""
    plain, path = tmp_path / "plain.mkv", tmp_path / "padded.mkv"
    with av.open(str(plain), "w", format="matroska") as out:
        a = out.add_stream("flac", rate=16000)
        a.layout = "mono"
        x = (np.sin(np.arange(32000) / 10) * 9000).astype(np.int16)
        for k in range(0, 32000, 1152):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, k : k + 1152]), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, k, fractions.Fraction(1, 16000)
            out.mux(a.encode(frame))
        out.mux(a.encode())
    raw = plain.read_bytes()
    body = raw[4] & 0x7F  # the EBML header's size, one byte wide as ffmpeg writes it
    pad = segment_at - (4 + 8 + body + 9)  # the segment's ID after the EBML ID, its size, its body and the Void
    void = b"\xec\x01" + pad.to_bytes(7, "big") + bytes(pad)  # its ID, an 8-byte size, its zeros
    header = raw[5 : 5 + body] + void
    path.write_bytes(raw[:4] + b"\x01" + len(header).to_bytes(7, "big") + header + raw[5 + body :])
    assert len(media.decode_audio(path, 16000)) == 32000
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 6 // 10])
    assert path.read_bytes()[segment_at : segment_at + 4] == b"\x18\x53\x80\x67"  # the segment
    if segment_at < whole.HEAD_BYTES:
        with pytest.raises(media.MediaError, match="cut short: .* inside its Matroska segment"):
            media.decode_audio(cut, 16000)
    else:
        assert whole.ends_past_file(cut) is None


@pytest.mark.parametrize("name, codec", [("voice.opus", "libopus"), ("voice.oga", "flac"), ("clip.flv", None)])
def test_an_ogg_or_flv_file_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, name, codec):
    """ffmpeg reads an Ogg file (Opus, or FLAC in Ogg) cut short to its end without an error, as a shorter clip; an
    FLV's audio failed on its last, partial packet, told as "its header declares 1.79 s of audio, the file holds
    1.79 s" (its read-as-it-goes index). Neither declares a length up front, but each page or tag says how long it
    is, and a copy cut short ends inside the last. Bytes a tool appended after the last page or tag say nothing: a
    short line of text too, whose first byte an FLV tag's header masked into an audio tag's type ("Hi": called cut
    short inside an FLV tag's header), or junk that begins as a tag's type does, its timestamp hours past the last.
    A tab and a few characters hold a video tag's type and size alone (they were called cut short inside its header):
    the file's metadata says where it ended as written."""
    path = _encoded(tmp_path / name, codec) if codec else write(tmp_path / name, flat(24))
    decode = (lambda p: media.decode_audio(p, 16000)) if codec else (lambda p: media.decode_video(p, 8)[1])
    ok = decode(path)
    assert (len(ok) >= 32000) if codec else ok >= 16
    appended = tmp_path / f"appended{path.suffix}"
    for tail in (b"\0tag" * 8, b"Hi\n", b"Recorded with Some App 1.2\n", b"\x08\0\0\0junk", b"\tHi\n", b"\tHello\n"):
        appended.write_bytes(path.read_bytes() + tail)
        assert whole.ends_past_file(appended) is None, tail
    data = path.read_bytes()
    what = "FLV tag" if not codec else "Ogg page"
    for at in (len(data) * 6 // 10, len(data) - 3):
        cut = tmp_path / f"cut{path.suffix}"
        cut.write_bytes(data[:at])
        for read in (decode, lambda p: media.decode_audio(p, 16000)):
            with pytest.raises(media.MediaError) as caught:
                read(cut)
            assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its {what}( header)?, which runs to "
                                rf"byte \d+: {ADVICE}",
                                caught.value.reason), caught.value.reason


def test_an_flv_file_written_into_a_pipe_with_text_appended_is_read_whole(tmp_path):
    """ffmpeg writing an FLV into a pipe (a live stream's recorder) leaves its metadata's filesize 0: a tab and a few
    characters appended held a video tag's type and a size alone, and the file was called cut short inside its
    header. Text after a tab reads as a tag of 576 KiB or more, far larger than any before it."""
    path = write(tmp_path / "piped.flv", flat(24))
    data = bytearray(path.read_bytes())
    at = data.index(b"\x00\x08filesize\x00") + 11
    data[at : at + 8] = bytes(8)  # as ffmpeg leaves it where it cannot seek back
    for tail in (b"\tH", b"\tHi\n", b"\tHello\n", b"\t\n"):
        path.write_bytes(bytes(data) + tail)
        assert whole.ends_past_file(path) is None, tail
    for at in (len(data) * 6 // 10, len(data) - 3):
        path.write_bytes(bytes(data[:at]))
        assert whole.ends_past_file(path) is not None, at


def test_an_flv_file_whose_media_starts_hours_in_is_still_told_cut_short(tmp_path):
    """ffmpeg writes an FLV's codec headers at 0 ms and its media at their own timestamps (-copyts, -output_ts_offset,
    a live stream's): a tag hours after the one before is a tag where it fits in the file. Only one that would run
    past the end must be near the latest, which tells junk appended from a tag cut short."""
    path = write(tmp_path / "late.flv", flat(24), pts=lambda i: i + 10 * 3600 * FPS, audio_start=10 * 3600 * 16000)
    data = path.read_bytes()
    assert whole.ends_past_file(path) is None
    cut = tmp_path / "cut.flv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert whole.ends_past_file(cut) is not None


def test_an_flv_file_whose_last_tags_were_never_filled_in_is_a_named_reject_not_a_shorter_clip(tmp_path):
    """A download that sets a file's size before it fills it in (and stopped), or a copy damaged in place, leaves an
    FLV at its full size with zeros where its last tags were: ffmpeg read the tags before them without an error, and
    a CREMA-D clip (its picture from VideoFlash/*.flv, its sound from AudioWAV/) was made of the first 60 % of its
    video; its own audio failed as "corrupt audio stream". The metadata's filesize says where the file ended as
    written: tags that stop before it, in a file that holds that many bytes, are a damaged copy. Zeros or text
    appended after it are no fault."""
    path = write(tmp_path / "clip.flv", flat(24))
    data = path.read_bytes()
    assert media.decode_video(path, 8)[1] == 17
    for tail in (bytes(64), b"Recorded with Some App 1.2\n"):
        path.write_bytes(data + tail)
        assert media.decode_video(path, 8)[1] == 17
    at = len(data) * 6 // 10
    rng = np.random.default_rng(0)
    for filler in (bytes(len(data) - at), b"\0" + rng.integers(0, 256, len(data) - at - 1, dtype=np.uint8).tobytes()):
        path.write_bytes(data[:at] + filler)
        for read in (lambda p: media.decode_video(p, 8), lambda p: media.decode_audio(p, 16000)):
            with pytest.raises(media.MediaError) as caught:
                read(path)
            assert re.fullmatch(rf"damaged: its FLV tags stop at byte \d+, short of byte {len(data)}, where its "
                                r"metadata says the file ends; what follows is no tag \(a download that set the "
                                r"file's size first, stopped before it was filled in, or a copy damaged in place\): "
                                r"copy it again", caught.value.reason), caught.value.reason


def test_a_wav_of_no_audio_and_a_file_ffmpeg_cannot_open_say_what_to_do(tmp_path):
    """A WAV header and nothing after it (a broken take, as a corpus may ship one) was rejected as "audio stream
    holds no samples", and bytes ffmpeg cannot read as media as "cannot open media (InvalidDataError: ...)"; neither
    said what to do about it."""
    header = tmp_path / "header.wav"
    header.write_bytes(b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
                       + bytes.fromhex("01000100803e0000007d00000200100064617461") + bytes(4))
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(header, 16000)
    assert caught.value.reason == (
        "audio stream holds no samples (a header and nothing recorded after it): copy it again; where the source's "
        "own copy holds none either, let it be: it stays a reject, the other clips are made")
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"this is no media, just text\n" * 20)
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(junk, 16000)
    assert re.fullmatch(r"cannot open media \(InvalidDataError: .*\): not media ffmpeg reads, or damaged at its start: "
                        r"copy it again, or convert it with the tool that made it", caught.value.reason), \
        caught.value.reason


def test_a_raw_aac_file_cut_short_is_named_cut_short_not_corrupt(tmp_path):
    """A raw AAC file (.aac: ADTS frames, as `ffmpeg -c:a copy voice.aac` or a recorder writes it) cut short failed on
    its last, partial frame as "corrupt audio stream (Invalid data found ...)", which does not say to copy it again.
    Each frame's header says how long it is; a cut exactly between two frames stays unseen (a shorter clip). Bytes a
    tool appended say nothing."""
    path = _encoded(tmp_path / "voice.aac", "aac")
    data = path.read_bytes()
    appended = tmp_path / "appended.aac"
    appended.write_bytes(data + b"\0tag" * 8)
    assert len(media.decode_audio(appended, 16000)) >= 32000
    with av.open(str(path)) as container:
        starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    cut = tmp_path / "cut.aac"
    cut.write_bytes(data[: starts[len(starts) // 2]])
    assert 0 < len(media.decode_audio(cut, 16000)) < 32000
    for at in (len(data) * 6 // 10, starts[len(starts) // 2] + 3, len(data) - 3):
        cut.write_bytes(data[:at])
        with pytest.raises(media.MediaError) as caught:
            media.decode_audio(cut, 16000)
        assert re.fullmatch(rf"cut short: the file ends at byte {at}, inside its AAC \(ADTS\) frame( header)?, which "
                            rf"runs to byte \d+: {ADVICE}",
                            caught.value.reason), caught.value.reason


@pytest.mark.parametrize("suffix, what", [("caf", "CAF chunk"), ("au", "AU data"), ("w64", "W64 riff chunk")])
def test_a_caf_au_or_w64_file_cut_short_is_a_named_reject_not_a_shorter_clip(tmp_path, suffix, what):
    """A CAF (Apple's Core Audio Format), an AU or a Sony Wave64 file cut short was read to its end without an error,
    as a shorter clip (1.2 s of 2 s), though its header says how long its data (a W64: the file) is, as a WAV's does;
    a size left open (a writer into a pipe: CAF's and W64's -1, AU's all bits set) says nothing, nor does text a tool
    appended (a CAF's was called cut short, read as a chunk 'Reco' of 8e18 bytes)."""
    path = _encoded(tmp_path / f"voice.{suffix}", "pcm_s16le" if suffix == "w64" else "pcm_s16be")
    assert len(media.decode_audio(path, 16000)) == 32000
    data = path.read_bytes()
    appended = tmp_path / f"appended.{suffix}"
    appended.write_bytes(data + b"Recorded with Some App 1.2\n")
    assert len(media.decode_audio(appended, 16000)) >= 32000
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(cut, 16000)
    assert caught.value.reason == (f"cut short: the file ends at byte {len(data) * 6 // 10}, inside its {what}, which "
                                   f"runs to byte {len(data)}: {CUT_ADVICE}")
    raw = bytearray(cut.read_bytes())
    at, width = (raw.index(b"data") + 4, 8) if suffix == "caf" else {"au": (8, 4), "w64": (16, 8)}[suffix]
    raw[at : at + width] = b"\xff" * width
    cut.write_bytes(bytes(raw))
    assert 0 < len(media.decode_audio(cut, 16000)) < 32000


def test_a_w64_file_written_into_a_pipe_is_named_with_a_way_to_read_it(tmp_path):
    """ffmpeg writing a Sony Wave64 into a pipe leaves its riff and data sizes open (-1, 2^63 - 1), and cannot read
    such a file back: it was "cannot open media (InvalidDataError ...)", with no way out. libsndfile (soundfile,
    which avdis installs with librosa) reads it: the reject says how to convert it, and following it gives the clip."""
    path = _encoded(tmp_path / "voice.w64", "pcm_s16le", piped=True)
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    advice = re.fullmatch(r"a Sony Wave64 file written into a pipe \(its sizes left open\), which ffmpeg cannot read: "
                          r"convert it to WAV with soundfile, installed with avdis \(in its folder: python -c "
                          r"\"(.+)\"\), and list voice\.wav in its place, or leave it out", caught.value.reason)
    assert advice, caught.value.reason
    subprocess.run([sys.executable, "-c", advice[1]], cwd=tmp_path, check=True)
    assert len(media.decode_audio(tmp_path / "voice.wav", 16000)) == 32000


@pytest.mark.parametrize("name", ["clip.ts", "clip.avi", "voice.opus", "voice.aac", "voice.caf", "frag.mp4"])
def test_a_copy_cut_a_few_bytes_into_a_parts_header_is_cut_short(tmp_path, name):
    """A copy cut a byte or a few past the end of one part (packet, chunk, page, frame, box) holds the first bytes of
    the next one's header: the same bytes as a whole file with those bytes appended. One rule for every walk: where
    what the file holds of a header is what such a header holds there (a sync byte, a type's first letters), the
    file is cut short, as a copy is far more often cut there than a tool appends a lone sync byte or type letter; a
    CAF's chunk header (its type first) and an MP4's box header (its size, then its type) were read as nothing.
    Bytes that tell nothing (an MP4 box's size, which any bytes may be; zeros) stay unseen, as a cut exactly between
    two parts does."""
    codec = {"opus": "libopus", "aac": "aac", "caf": "pcm_s16be"}.get(name.split(".")[1])
    options = {"movflags": "frag_keyframe+empty_moov"} if name == "frag.mp4" else None
    path = _encoded(tmp_path / name, codec) if codec else write(tmp_path / name, flat(24), options=options, gop=6)
    data = path.read_bytes()
    if name.endswith(".ts"):
        starts = range(0, len(data), 188)
    elif name.endswith(".avi"):  # its RIFF 'AVI ' chunk, then a second (as an AVI over 1 GiB holds 'AVIX' chunks)
        data += b"RIFF" + (4).to_bytes(4, "little") + b"AVIX"
        starts = [len(data) - 12]
    elif name.endswith(".caf"):
        starts = [data.index(b"data")]
    elif name.endswith(".mp4"):
        starts = [m.start() - 4 for m in re.finditer(b"moof", data)][1:]
    else:
        with av.open(str(path)) as container:
            starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos]
        starts = [data.index(b"OggS", starts[len(starts) // 2])] if name.endswith(".opus") else starts
    at = starts[len(starts) // 2]
    held = 5 if name.endswith(".mp4") else 1  # an MP4 box's size tells nothing: its type's first letter does
    cut = tmp_path / f"cut{path.suffix}"
    cut.write_bytes(data[: at + held])
    assert whole.ends_past_file(cut) is not None
    for tail in (b"\0" * 7, b"\n", data[at : at + 4] if name.endswith(".mp4") else b""):
        cut.write_bytes(data[:at] + tail)
        assert whole.ends_past_file(cut) is None, tail


@pytest.mark.parametrize("name", ["voice.caf", "frag.mp4"])
def test_text_appended_that_begins_as_a_chunk_type_is_passed_over_by_its_64_bit_size(tmp_path, name):
    """A whole CAF with "info ok\n" appended was a reject, 'cut short: ... inside its CAF chunk header' (its type's
    first letters alone were read; with 12 bytes or more, 'inside its CAF chunk'): the bytes after the type, read as
    the first of the chunk's 64-bit size, make it 2^59 bytes or more, which no file holds. A size, as far as the file
    holds it (the rest taken as 0), tells: from walks.BIG_PART up it is text, not a chunk or an MP4 box (its 64-bit
    size, after a 32-bit 1 and its type); under it (or a CAF data chunk's -1, a pipe's), a copy cut inside a header
    is still cut short."""
    if name == "voice.caf":
        data = _encoded(tmp_path / name, "pcm_s16be").read_bytes()
        tails = [b"info ok\n", b"peak 0.9\n", b"data\n", b"info: written by a tool\n"]
        at, first, header = data.index(b"data"), 1, 12
    else:
        data = write(tmp_path / name, flat(24), options={"movflags": "frag_keyframe+empty_moov"}, gop=6).read_bytes()
        tails = [b"\0\0\0\1moof ok\n", b"\0\0\0\1moof, written by a tool\n"]
        data += b"\0\0\0\1moof" + (24).to_bytes(8, "big") + bytes(8)  # a box of a 64-bit size
        at, first, header = len(data) - 24, 5, 16  # its 32-bit size alone tells nothing
    path = tmp_path / f"copy{Path(name).suffix}"
    for tail in tails:
        path.write_bytes(data + tail)
        assert whole.ends_past_file(path) is None, tail
    if name == "voice.caf":
        assert len(media.decode_audio(path, 16000)) == 32000
    for held in range(first, header):
        path.write_bytes(data[: at + held])
        assert whole.ends_past_file(path) is not None, held
        if name == "voice.caf":  # written into a pipe: its data chunk's size left open, -1
            path.write_bytes((data[: at + 4] + b"\xff" * 8)[: at + held])
            assert whole.ends_past_file(path) is not None, held


def test_stereo_whose_channels_cancel_is_named_as_such_not_as_silence(tmp_path):
    """A voice on one channel and its inverse on the other averages to 0 in mono: it was rejected as "digital
    silence (every sample is 0)", which sent the user looking for a broken recording, not a miswired one."""
    import wave

    voice = np.round(0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000) * 32767).astype(np.int16)
    path = tmp_path / "inverted.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.stack([voice, -voice], axis=1).tobytes())
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert caught.value.reason.startswith("its channels cancel out when averaged to mono")


def mux_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, hz: float) -> None:
    """Two seconds of a `hz` tone at 16 kHz (0 Hz: digital silence) into `stream` of `out`, flushed."""
    tone = (0.3 * np.sin(2 * np.pi * hz * np.arange(32000) / 16000)).astype(np.float32)
    for k in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, k : k + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 16000, k, fractions.Fraction(1, 16000)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_tracks_a_player_plays_are_the_clips(tmp_path, suffix):
    """A file with a commentary track (220 Hz) before the recording's sound (440 Hz, marked default) and a guide video
    (black) before the recording's picture (marked default): the clip is what a player plays. The first audio track
    was the one decoded: a clip learnt from its commentary. (Cover art: test_an_audio_files_cover_art_is_no_video.)"""
    path = tmp_path / f"tracks{suffix}"
    with av.open(str(path), "w") as out:
        guide, shown = out.add_stream("libx264", rate=8), out.add_stream("libx264", rate=8)
        for v, d in ((guide, av.stream.Disposition(0)), (shown, av.stream.Disposition.default)):
            v.height, v.width, v.pix_fmt, v.disposition = 48, 64, "yuv420p", d
        comment, voice = out.add_stream("aac", rate=16000), out.add_stream("aac", rate=16000)
        comment.disposition, voice.disposition = av.stream.Disposition.comment, av.stream.Disposition.default
        comment.layout = voice.layout = "mono"
        for v, frames in ((guide, np.zeros((16, 48, 64, 3), np.uint8)), (shown, flat(16))):
            for img in frames:
                out.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(v.encode())
        for a, hz in ((comment, 220), (voice, 440)):
            mux_tone(out, a, hz)
    audio = media.decode_audio(path, 16000)
    assert np.argmax(np.abs(np.fft.rfft(audio[:16000]))) == 440  # 1 Hz bins
    frames, n = media.decode_video(path, 8)
    assert n == 16 and levels(frames) == list(range(16))


def test_a_silent_track_beside_others_is_named_with_the_way_to_the_voice(tmp_path):
    """A recorder's file of two tracks whose default one is silent (OBS's desktop audio, the microphone on the second):
    'audio is digital silence' said the recording had no sound, while the voice was in the file."""
    path = tmp_path / "obs.mp4"
    with av.open(str(path), "w") as out:
        tracks = [out.add_stream("aac", rate=16000, layout="mono") for _ in range(2)]
        for a, hz in zip(tracks, (0, 440)):
            mux_tone(out, a, hz)
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert caught.value.reason == ("audio is digital silence (every sample is 0) in its audio track 0:a:0, the one of "
                                   "its 2 it marks default (else its first): make a file of the track with the voice "
                                   "(ffmpeg -i IN -map '0:v?' -map 0:a:N -c copy OUT) and list that")


def test_a_video_far_shorter_than_its_audio_is_a_named_reject_and_one_a_little_shorter_a_clip(tmp_path):
    """A CREMA-D .flv of 2 frames beside 2 s of .wav made a clip of video_len 1: a face of one frame under 2 s of
    voice. The two lengths were never compared; a video much shorter than its audio is now a reject naming both. One
    take's streams that differ by a fraction of a second (CREMA-D's .flv and .wav) still make a clip, and so does one
    file holding both (RAVDESS's .mp4)."""
    feat = FeatureConfig()
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * 16000) / 16000)).astype(np.float32)
    wav = tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    media.write_clip(wav, None, FPS, tone, 16000)
    flv = tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv"
    media.write_clip(flv, flat(2), FPS, tone, 16000)
    with pytest.raises(media.MediaError) as caught:
        media.extract(wav, flv, feat)
    assert caught.value.path == str(flv)
    assert caught.value.reason == (
        f"its video lasts 0.25 s, under half the 2.00 s of its audio ({wav.name}): its clip would show a face under a "
        "part of its voice only (a copy cut short or damaged): copy it again; where the corpus's own copy is so, leave "
        "it out")
    both = tmp_path / "01-01-01-01-01-01-01.mp4"
    write(both, flat(3), seconds=2.0)
    with pytest.raises(media.MediaError, match=r"its video lasts 0.25 s, under half the 2.\d\d s of its audio: "):
        media.extract(both, both, feat)
    media.write_clip(flv, flat(21), FPS, tone, 16000)  # 1.75 s against 2 s: one take's streams
    clip = media.extract(wav, flv, feat)
    assert clip.video_len == feat.video_frames and 1.7 < clip.duration_s < 2.0


def test_a_long_recording_whose_video_covers_the_window_is_a_clip_however_long_its_audio_runs_on(tmp_path):
    """The clip is its window (data.features.window_s, centred on the shorter stream), not the whole file: a recording
    of 8 s of voice whose camera stopped after 3 s gives a 1 s window that both cover, as the clip was before the
    lengths were compared. It was rejected as 'a face under a part of its voice only' on the whole file's lengths. A
    window the video covers under half of is still a reject."""
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(8 * 16000) / 16000)).astype(np.float32)
    wav = tmp_path / "talk.wav"
    media.write_clip(wav, None, FPS, tone, 16000)
    video = tmp_path / "talk.mp4"
    media.write_clip(video, np.full((3 * FPS, 48, 64, 3), 120, np.uint8), FPS, tone[: 3 * 16000], 16000)
    feat = FeatureConfig()
    clip = media.extract(wav, video, feat)
    assert clip.video_len == feat.video_frames and clip.audio_len == feat.audio_frames and clip.duration_s == 3.0
    with pytest.raises(media.MediaError, match=r"its video lasts 3.00 s, under half the 8.00 s of its audio"):
        media.extract(wav, video, FeatureConfig(window_s=8.0))


def _told_cut_short_inside_a_frame(path: Path, data: bytes, cut: int) -> None:
    """`data` cut at byte `cut`, inside an MPEG audio frame, is "cut short" naming that byte, not a shorter clip."""
    path.write_bytes(data[:cut])
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert re.fullmatch(rf"cut short: the file ends at byte {cut}, inside its MPEG audio frame( header)?, which runs to "
                        rf"byte \d+: {ADVICE}", caught.value.reason), caught.value.reason


def test_two_mp3s_with_xing_headers_joined_end_to_end_are_read_whole(tmp_path):
    """Two MP3s joined end to end (cat a.mp3 b.mp3): the first's Xing/Info header counts its own bytes only, and where
    the file is more than a sixteenth larger than that count ffmpeg takes it for a joined file and guesses the length
    from the file's size ("invalid concatenated file detected - using bitrate for duration"). That guess was taken for
    the length declared, and the whole file, decoded to its end, was "cut short: its header declares 4.24 s of audio,
    the file holds 4.14 s". The frames are walked instead, as a CBR encode's are."""
    data = _encoded(tmp_path / "whole.mp3", "libmp3lame").read_bytes()
    frames = data[walks.id3_end(data[:10]) :]
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(data + frames)
    assert len(media.decode_audio(joined, 16000)) >= 64000
    _told_cut_short_inside_a_frame(joined, data + frames, len(data) + len(frames) // 2 + 40)  # in the second half


def test_an_mp3_whose_second_id3_tag_holds_frame_headers_is_read_whole(tmp_path):
    """`walks.mp3_frames_start` searched for the frames from the first ID3v2 tag's end, so a second tag holding bytes
    that read as two MPEG audio frames (a PRIV or GEOB frame holding a preview) was taken for where they start: the
    walk after them found no frame of that stream, `whole.mp3_frames_end` called the rest bytes appended, and the whole
    file was "audio stream holds no samples". ffmpeg passes over each tag by its size, as the search now does."""
    data = _encoded(tmp_path / "whole.mp3", "libmp3lame").read_bytes()
    at = walks.id3_end(data[:10])
    held = b"preview\0" + (b"\xff\xfb\x90\x64" + bytes(413)) * 2  # two 128 kb/s 44.1 kHz frames
    body = b"PRIV" + len(held).to_bytes(4, "big") + bytes(2) + held
    size = bytes((len(body) >> shift) & 0x7F for shift in (21, 14, 7, 0))  # syncsafe
    path = tmp_path / "tagged.mp3"
    path.write_bytes(data[:at] + b"ID3\x03\x00\x00" + size + body + data[at:])
    assert len(media.decode_audio(path, 16000)) >= 32000
    assert whole.mp3_frames_end(path) is None


def _id3(held: bytes) -> bytes:
    """An ID3v2.3 tag of one PRIV frame holding `held`."""
    body = b"PRIV" + len(held).to_bytes(4, "big") + bytes(2) + held
    return b"ID3\x03\x00\x00" + bytes((len(body) >> shift) & 0x7F for shift in (21, 14, 7, 0)) + body


@pytest.mark.parametrize("second", ["its own tag", "a cover's tag", "a tag holding frame headers", "two tags"])
def test_two_mp3s_joined_end_to_end_with_the_second_ones_id3_tag_between_are_read_whole(tmp_path, second):
    """`cat a.mp3 b.mp3` where b.mp3 starts with an ID3v2 tag, as most encoders' and taggers' files do: ffmpeg hands
    the tag on with the frame after it (or up to bytes in it that read as a frame, handed on next) and the decoder
    fails on it ("Invalid data found"), so the whole file was "corrupt audio stream ... copy it again", and a copy cut
    short inside the second half was told the same. ffmpeg's own command and players pass over the tag and play on,
    as decoding now does; the frame walks pass over it too, so that cut is "cut short" as without the tag."""
    data = _encoded(tmp_path / "whole.mp3", "libmp3lame").read_bytes()
    at = walks.id3_end(data[:10])
    tags = {"its own tag": data[:at], "a cover's tag": _id3(b"cover\0" + bytes(range(256)) * 80),
            "a tag holding frame headers": _id3(b"preview\0" + (b"\xff\xfb\x90\x64" + bytes(413)) * 2),
            "two tags": data[:at] + _id3(b"note\0" + bytes(100))}
    joined, path = data + tags[second] + data[at:], tmp_path / "joined.mp3"
    for tail in (b"", b"TAG" + bytes(125), b"junk a tool appended\n" * 3):
        path.write_bytes(joined + tail)
        assert len(media.decode_audio(path, 16000)) >= 64000, tail
    _told_cut_short_inside_a_frame(path, joined, len(joined) - (len(data) - at) // 2 + 40)  # in the second half


def _quiet(samples: np.ndarray) -> int:
    """Tenths of a second (at 16 kHz) of `samples` that hold no sound (peak under 0.01)."""
    return int((np.abs(samples[: len(samples) // 1600 * 1600]).reshape(-1, 1600).max(1) < 0.01).sum())


@pytest.mark.parametrize("says", ["more than it holds", "more than the file holds"])
def test_the_tag_between_two_joined_mp3s_passes_over_no_frames_where_its_size_is_garbage(tmp_path, says):
    """decode_rated passed over every packet from an ID3v2 tag between two joined MP3s to where its size said it
    ended, whatever that was: a size 5000 bytes more than the tag held made 1.7 s of b.mp3's 2 s silence, and one past
    the end of the file left b out, without a word, where ffmpeg plays b's frames after the packet that fails. Only a
    tag after whose end b's frames (or another tag, or the file's end) follow is passed over so
    (walks.id3_between); past another, the packet holding the tag alone, as ffmpeg does."""
    data = _encoded(tmp_path / "whole.mp3", "libmp3lame").read_bytes()
    at = walks.id3_end(data[:10])
    tag = _id3(b"note\0" + bytes(100))
    size = len(tag) - 10 + (5000 if says == "more than it holds" else 1 << 20)
    tag = tag[:6] + bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0)) + tag[10:]
    path = tmp_path / "joined.mp3"
    path.write_bytes(data + tag + data[at:])
    samples = media.decode_audio(path, 16000)
    assert len(samples) >= 64000 and _quiet(samples) <= 1, (len(samples), _quiet(samples))


@pytest.mark.parametrize("rate", [44100, 8000])
@pytest.mark.parametrize("between", ["", "its own tag"])
def test_two_mp3s_of_other_sample_rates_joined_end_to_end_are_read_whole(tmp_path, rate, between):
    """`cat a.mp3 b.mp3` where b.mp3 is another stream (another sample rate or MPEG version), with or without its
    ID3v2 tag: ffmpeg decodes on through b's frames, but the frame walks knew a's stream only, so whole.mp3_frames_end
    called all of b bytes a tool appended and decoding passed over them: 2 s of the 4 s, without a word; and a copy
    cut short inside b was that shorter clip too. The walks now go on into another stream's frames where two follow
    one another, as a resumed stream is confirmed."""
    data = _encoded(tmp_path / "a.mp3", "libmp3lame").read_bytes()
    other = _encoded(tmp_path / "b.mp3", "libmp3lame", rate=rate).read_bytes()
    at = walks.id3_end(other[:10])
    joined, path = data + (other if between else other[at:]), tmp_path / "joined.mp3"
    for tail in (b"", b"TAG" + bytes(125), b"junk a tool appended\n" * 3):
        path.write_bytes(joined + tail)
        samples = media.decode_audio(path, 16000)
        assert len(samples) >= 64000 and _quiet(samples) <= 1, (tail, len(samples), _quiet(samples))
    _told_cut_short_inside_a_frame(path, joined, len(joined) - (len(other) - at) // 2 + 40)  # in the second half


@pytest.mark.parametrize("second", ["b's own tag", "a tag appended (ID3v2.4)"])
def test_an_mp3_cut_short_inside_an_id3_tag_after_its_frames_is_told_cut_short(tmp_path, second):
    """Two MP3s joined end to end, cut short inside b.mp3's ID3v2 tag (a cover's picture makes it tens of KB), read as
    a.mp3 alone, 2 s where the file was 4, without a word: the walk stopped at a tag running past the end, and what
    followed was taken for bytes a tool appended. A tag that runs past the end, with no frames after its header, is
    now where the file was cut, as for a frame; so is an ID3v2.4 tag appended after an MP3's frames, cut short, which
    cannot be told from it (an interrupted copy all the same)."""
    data = _encoded(tmp_path / "whole.mp3", "libmp3lame").read_bytes()
    at = walks.id3_end(data[:10])
    tag = _id3(b"cover\0" + bytes(range(256)) * 80)
    after = data[at:]
    if second == "a tag appended (ID3v2.4)":  # with its footer, after the frames and nothing after it
        tag, after = b"ID3\x04\x00\x10" + tag[6:] + b"3DI\x04\x00\x10" + tag[6:10], b""
    cut, path = len(data) + len(tag) // 2, tmp_path / "cut.mp3"
    path.write_bytes((data + tag + after)[:cut])
    with pytest.raises(media.MediaError) as caught:
        media.decode_audio(path, 16000)
    assert caught.value.reason == (f"cut short: the file ends at byte {cut}, inside its ID3v2 tag, which runs to byte "
                                   f"{len(data) + len(tag)}: {CUT_ADVICE}")
