"""Tiny RAVDESS- and CREMA-D-shaped trees in the real naming and container formats.

No corpus can be downloaded here, so tests write their own: H.264/AAC .mp4 and PCM .wav
for RAVDESS, FLV1/AAC .flv plus .wav for CREMA-D, with a tone whose pitch encodes the
emotion and a coloured square, so the files decode like the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avdis.data.media import write_clip

SR = 16000


def clip_media(seed: int, seconds: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    audio = (0.2 * np.sin(2 * np.pi * (150 + 20 * (seed % 7)) * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    frames = np.full((int(12 * seconds), 48, 48, 3), 40, np.uint8)
    frames[:, 12:36, 12:36] = rng.integers(60, 250, size=3)
    return frames, audio


def ravdess_tree(root: Path) -> dict[str, Path]:
    """Two actors; full-AV clips, a 02+03 pair, and broken/odd files. Returns notable paths."""
    files = {}
    for i, (actor, emo) in enumerate([("01", "01"), ("01", "03"), ("02", "05"), ("02", "08")]):
        frames, audio = clip_media(i)
        path = root / f"Actor_{actor}" / f"01-01-{emo}-01-01-01-{actor}.mp4"
        write_clip(path, frames, 12, audio, SR)
        files[f"av{i}"] = path
    # the same clip as av0 also exists as video-only + audio-only: must not be counted twice
    frames, audio = clip_media(0)
    write_clip(root / "Actor_01" / "02-01-01-01-01-01-01.mp4", frames, 12, None, SR)
    write_clip(root / "Actor_01" / "03-01-01-01-01-01-01.wav", None, 12, audio, SR)
    # a clip that only exists as a 02 + 03 pair: paired
    frames, audio = clip_media(9)
    files["pair_video"] = root / "Actor_02" / "02-01-04-02-02-01-02.mp4"
    files["pair_audio"] = root / "Actor_02" / "03-01-04-02-02-01-02.wav"
    write_clip(files["pair_video"], frames, 12, None, SR)
    write_clip(files["pair_audio"], None, 12, audio, SR)
    # a full-AV file cut short (a bad download) beside its clip's 02 + 03 files: the clip is taken from those
    frames, audio = clip_media(5)
    files["cut_av"] = root / "Actor_01" / "01-01-06-02-01-01-01.mp4"
    files["cut_av_video"] = root / "Actor_01" / "02-01-06-02-01-01-01.mp4"
    files["cut_av_audio"] = root / "Actor_01" / "03-01-06-02-01-01-01.wav"
    write_clip(files["cut_av"], frames, 12, audio, SR)
    files["cut_av"].write_bytes(files["cut_av"].read_bytes()[:700])
    write_clip(files["cut_av_video"], frames, 12, None, SR)
    write_clip(files["cut_av_audio"], None, 12, audio, SR)
    # a video-only file with no partner, an unknown name, a truncated file, a full-AV file with no audio
    write_clip(root / "Actor_02" / "02-01-06-01-01-02-02.mp4", frames, 12, None, SR)
    (root / "Actor_02" / "notes.txt").write_text("not media")
    files["truncated"] = root / "Actor_02" / "01-01-07-01-01-01-02.mp4"
    files["truncated"].write_bytes(files["av2"].read_bytes()[:900])
    # its own picture: with cut_av_video's, also without sound, the two files are alike, one recording under two
    # names, which makes neither clip
    files["no_audio"] = root / "Actor_01" / "01-01-02-01-02-01-01.mp4"
    write_clip(files["no_audio"], clip_media(7)[0], 12, None, SR)
    return files


def cremad_tree(root: Path) -> dict[str, Path]:
    files = {}
    for i, (actor, sentence, emo) in enumerate([("1001", "DFA", "ANG"), ("1001", "IEO", "HAP"),
                                                ("1002", "DFA", "NEU"), ("1002", "TIE", "SAD")]):
        frames, audio = clip_media(i)
        stem = f"{actor}_{sentence}_{emo}_XX"
        write_clip(root / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(root / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
        files[stem] = root / "VideoFlash" / f"{stem}.flv"
    frames, audio = clip_media(5)
    write_clip(root / "VideoFlash" / "1003_DFA_FEA_HI.flv", frames, 12, audio, SR)  # no wav partner
    write_clip(root / "AudioWAV" / "1003_ITS_DIS_LO.wav", None, 12, audio, SR)  # no flv partner
    write_clip(root / "AudioWAV" / "1003_ITS_XYZ_LO.wav", None, 12, audio, SR)  # unknown emotion code
    files["corrupt_wav"] = root / "AudioWAV" / "1002_IWW_FEA_MD.wav"
    files["corrupt_wav"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_clip(root / "VideoFlash" / "1002_IWW_FEA_MD.flv", frames, 12, audio, SR)
    return files
