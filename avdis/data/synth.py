"""A generated audio-visual corpus that poses the real problem: emotion entangled with identity.

Layout written under `out/`:
    spk03/spk03_happy_007.mp4      H.264 video (64x64 cartoon face, 16 fps) + AAC audio (16 kHz)
    ground_truth.csv               file, clip_id, speaker, emotion, intensity (one row per clip)
    speakers.json                  each speaker's voice and face parameters
    corpus.json                    the generation settings

What makes it a fair benchmark:
- Identity cues: voice pitch and formants (timbre), loudness, speaking rate; face
  colour, shape, hair colour, eye spacing.
- Emotion cues: pitch level and contour, vibrato, energy, syllable rate, spectral tilt;
  mouth curvature and opening, brow angle and height, eye opening.
- Several emotion cues are *relative to the speaker's baseline* (pitch = speaker f0 x
  emotion ratio, loudness and mouth curve = speaker offset + emotion delta), as in real
  speech: knowing who speaks helps to read the emotion, so multitask training has a point
  and pulls identity into the emotion embedding. Other cues (contour, rate, brows) are
  absolute, so emotion stays learnable without identity.
- Per-clip intensity, jitter and noise keep the cues learnable but not trivial.
- `entanglement` sets P(emotion | speaker) = (1-x)/E + x * [emotion == speaker's favourite].
  Counts per speaker follow these probabilities exactly (largest remainder), not by chance.
- `identity_cues="off"` gives every speaker the same voice and face: the control where no
  embedding can carry identity beyond what the emotion label itself reveals. `"voice"` gives
  every speaker the same face, so identity lives in the voice alone (a visual-only model
  then has nothing to leak).
- `cues="dynamics"`: emotion lives only in how the voice moves over time (syllable rate,
  i.e. the energy contour's modulation rate; tremor; the pitch contour's shape), as arousal
  does in real speech; pitch level, formants, loudness, tempo and the face carry identity
  alone (the mouth still opens with each syllable). A model that only hears average spectra
  is at chance here.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import ValidationError

from avdis import runtime, storage, storage_lock
from avdis.config import EMOTIONS, SynthConfig
from avdis.data.corpora import GROUND_TRUTH
from avdis.data.media import write_clip
from avdis.errors import UsageError

SETTINGS = "corpus.json"  # the generation settings, written last: a corpus with them is whole
# what holds a generated corpus's folder (`storage_lock.exclusive`, waiting): its generation (`avdis synth`, a run's or
# sweep's first use) or a build of shards from it (`prepare.preprocess`), so that neither replaces it under the other
HELD_FOR = "job generating this corpus or building shards from it"
UNDER_WAY = "{}"  # what SETTINGS holds while the generator writes: its folder, no corpus yet
SAMPLE_RATE = 16000
VIDEO_FPS = 16
SIZE = 64

# Emotion prototypes: (pitch ratio, contour octaves, vibrato, energy dB, syllables/s, tilt,
#                      mouth curve, mouth open, brow tilt, brow raise, eye open)
_PROTO = {
    "neutral":   (1.00, 0.00, 0.00, 0.0, 4.0, 0.0, 0.0, 0.25, 0.0, 0.0, 1.0),
    "happy":     (1.22, 0.25, 0.00, 4.0, 5.0, 0.3, 1.0, 0.45, 0.1, 0.2, 0.85),
    "sad":       (0.84, -0.20, 0.00, -6.0, 3.0, -0.5, -0.8, 0.15, 0.8, 0.1, 0.75),
    "angry":     (1.12, -0.10, 0.00, 8.0, 5.5, 0.8, -0.4, 0.55, -1.0, -0.3, 0.8),
    "fearful":   (1.35, 0.10, 0.06, 2.0, 6.0, 0.2, -0.2, 0.50, 0.6, 0.6, 1.25),
    "disgust":   (0.92, -0.05, 0.00, -2.0, 3.5, -0.2, -0.6, 0.20, -0.5, -0.2, 0.65),
    "surprised": (1.45, 0.35, 0.00, 5.0, 4.5, 0.4, 0.1, 0.85, 0.2, 1.0, 1.4),
    "calm":      (0.95, -0.05, 0.00, -4.0, 3.0, -0.3, 0.3, 0.20, 0.0, 0.0, 0.9),
}

# cues="dynamics": (syllables/s, contour octaves, contour arch, tremor Hz, tremor depth).
# Pitch ratio 1, no energy or tilt change, a neutral face: nothing but dynamics says the emotion.
_DYNAMICS = {
    "neutral":   (4.0, 0.00, 0.0, 0.0, 0.0),
    "happy":     (6.0, 0.00, 0.5, 0.0, 0.0),   # quick, rise-fall melody
    "sad":       (2.5, -0.30, 0.0, 0.0, 0.0),  # slow, falling
    "angry":     (7.5, -0.15, 0.0, 0.0, 0.0),  # fast, falling
    "fearful":   (5.0, 0.00, 0.0, 11.0, 0.6),  # tremulous
    "disgust":   (3.0, 0.00, -0.5, 0.0, 0.0),  # slow, fall-rise
    "surprised": (4.5, 0.40, 0.0, 0.0, 0.0),   # rising
    "calm":      (3.5, 0.00, 0.0, 1.5, 0.5),   # slow swell
}
_NEUTRAL_FACE = (0.0, 0.35, 0.0, 0.0, 1.0)


def _cues(emotion: str, mode: str) -> tuple[tuple, tuple]:
    """(voice cues, face cues) of one emotion: voice = (pitch ratio, contour, vibrato, energy dB,
    syllables/s, tilt, contour arch, tremor Hz, tremor depth), face = the last five of `_PROTO`."""
    if mode == "dynamics":
        rate, contour, arch, tremor_hz, tremor = _DYNAMICS[emotion]
        return (1.0, contour, 0.0, 0.0, rate, 0.0, arch, tremor_hz, tremor), _NEUTRAL_FACE
    p = _PROTO[emotion]
    return (*p[:6], 0.0, 0.0, 0.0), p[6:]


@dataclass(frozen=True)
class Speaker:
    f0: float  # Hz
    formants: tuple[float, float]  # Hz
    loudness_db: float
    rate: float  # speaking-rate factor
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    aspect: float  # face width / height
    eye_spacing: float
    # a person's resting expression, on the same scales as the emotion deltas: emotion is
    # read relative to these, as in real faces and voices
    mouth_offset: float
    mouth_open_offset: float
    brow_tilt_offset: float
    brow_raise_offset: float
    eye_open_offset: float
    contour_offset: float


_ANYONE = Speaker(150.0, (700.0, 1700.0), 0.0, 1.0, (200, 160, 130), (70, 50, 40), 0.82, 9.0,
                  0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
_FACE = ("skin", "hair", "aspect", "eye_spacing", "mouth_offset", "mouth_open_offset", "brow_tilt_offset",
         "brow_raise_offset", "eye_open_offset")


def _speaker(rng: np.random.Generator, identity_cues: str, cues: str = "mixed") -> Speaker:
    if identity_cues == "off":
        return _ANYONE
    spk = Speaker(
        f0=float(np.exp(rng.uniform(np.log(95), np.log(240)))),
        formants=(float(rng.uniform(450, 950)), float(rng.uniform(1200, 2500))),
        loudness_db=float(rng.uniform(-6, 6)),
        rate=float(rng.uniform(0.8, 1.25)),
        skin=tuple(int(v) for v in rng.uniform([120, 70, 50], [255, 220, 200])),
        hair=tuple(int(v) for v in rng.uniform(0, 255, size=3)),
        aspect=float(rng.uniform(0.68, 0.95)),
        eye_spacing=float(rng.uniform(7.0, 11.0)),
        mouth_offset=float(rng.uniform(-0.7, 0.7)),
        mouth_open_offset=float(rng.uniform(-0.15, 0.2)),
        brow_tilt_offset=float(rng.uniform(-0.7, 0.7)),
        brow_raise_offset=float(rng.uniform(-0.5, 0.5)),
        eye_open_offset=float(rng.uniform(-0.25, 0.25)),
        contour_offset=float(rng.uniform(-0.15, 0.15)),
    )
    if cues == "dynamics":  # tempo and melody are the emotion's here; expression offsets have no use
        spk = replace(spk, rate=1.0, contour_offset=0.0)
    if identity_cues == "voice":
        spk = replace(spk, **{k: getattr(_ANYONE, k) for k in _FACE})
    return spk


def _counts(n: int, probs: np.ndarray, first: int) -> np.ndarray:
    """Largest-remainder integer counts summing to n; equal remainders go round from index `first`. Always from
    0, every speaker's leftover clips went to the first emotions: a corpus with more of them, and speakers whose
    favourite was emotion 0 had none of the last one."""
    raw = probs * n
    counts = np.floor(raw).astype(int)
    turn = (np.arange(len(probs)) - first) % len(probs)
    for i in np.lexsort((turn, -np.round(raw - counts, 9)))[: n - counts.sum()]:  # rounded: 0.2 / 4 * 30 is 1.4999...
        counts[i] += 1
    return counts


def _audio(
    rng: np.random.Generator, spk: Speaker, voice: tuple, intensity: float, duration: float
) -> tuple[np.ndarray, np.ndarray]:
    ratio, contour, vibrato, energy, rate, tilt, arch, tremor_hz, tremor = voice
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = spk.f0 * ratio**intensity * rng.uniform(0.95, 1.05)
    u = t / duration - 0.5  # -0.5 .. 0.5 over the clip
    octaves = (spk.contour_offset + contour * intensity) * u + arch * intensity * (0.25 - 2 * u**2)
    f0_t = f0 * 2.0**octaves * (1 + vibrato * intensity * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0_t) / SAMPLE_RATE
    wave = np.zeros(n)
    f1, f2 = spk.formants
    for k in range(1, int(4000 // f0) + 1):
        fk = k * f0
        env = np.exp(-(((fk - f1) / 180) ** 2)) + 0.7 * np.exp(-(((fk - f2) / 260) ** 2)) + 0.05
        wave += env * (fk / 1000.0) ** (tilt * intensity - 0.6) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    # syllables: raised-cosine bursts at the emotion's rate (speaker's tempo, jittered)
    gate = np.zeros(n)
    pos = rng.uniform(0.0, 0.08)
    syl_rate = rate * spk.rate * rng.uniform(0.9, 1.1)
    while pos < duration:
        length = rng.uniform(0.5, 0.8) / syl_rate
        i0, i1 = int(pos * SAMPLE_RATE), min(n, int((pos + length) * SAMPLE_RATE))
        if i1 > i0:
            gate[i0:i1] = np.maximum(gate[i0:i1], rng.uniform(0.6, 1.0) * np.sin(np.linspace(0, np.pi, i1 - i0)))
        pos += 1.0 / syl_rate
    if tremor:  # amplitude tremor on top of the syllables
        gate = gate * (1 - tremor * intensity * 0.5 * (1 + np.sin(2 * np.pi * tremor_hz * t + rng.uniform(0, 2 * np.pi))))
    gain_db = spk.loudness_db + energy * intensity + rng.normal(0, 1.5)
    wave = wave / (np.abs(wave).max() + 1e-9) * gate * 0.25 * 10 ** (gain_db / 20)
    noise = rng.normal(0, 1, n) * 0.25 * 10 ** (rng.uniform(-32, -22) / 20)
    return np.clip(wave + noise, -1, 1).astype(np.float32), gate


def _frames(rng: np.random.Generator, spk: Speaker, face: tuple, intensity: float, gate: np.ndarray, duration: float) -> np.ndarray:
    curve, mouth_open, brow_tilt, brow_raise, eye_open = face
    nframes = int(round(duration * VIDEO_FPS))
    bg = rng.uniform(40, 200, size=3)
    cx0, cy0 = SIZE / 2 + rng.uniform(-4, 4), SIZE / 2 + 2 + rng.uniform(-4, 4)
    scale = rng.uniform(0.92, 1.08)
    light = rng.uniform(0.85, 1.15)
    mouth_curve = spk.mouth_offset + curve * intensity + rng.normal(0, 0.15)
    frames = np.empty((nframes, SIZE, SIZE, 3), np.uint8)
    for i in range(nframes):
        img = np.empty((SIZE, SIZE, 3), np.float32)
        img[:] = bg
        cx, cy = cx0 + rng.normal(0, 0.6), cy0 + rng.normal(0, 0.6)
        fh, fw = 22 * scale, 22 * scale * spk.aspect
        cv2.ellipse(img, (int(cx), int(cy - fh * 0.55)), (int(fw * 1.05), int(fh * 0.6)), 0, 180, 360, spk.hair, -1)
        cv2.ellipse(img, (int(cx), int(cy)), (int(fw), int(fh)), 0, 0, 360, spk.skin, -1)
        ey = cy - 5 * scale
        es = spk.eye_spacing * scale
        eh = max(1, int(round(2.2 * scale * (1 + spk.eye_open_offset + (eye_open - 1) * intensity))))
        for side in (-1, 1):
            cv2.ellipse(img, (int(cx + side * es), int(ey)), (3, eh), 0, 0, 360, (250, 250, 250), -1)
            cv2.circle(img, (int(cx + side * es), int(ey)), 1, (20, 20, 20), -1)
            by = ey - 5 - 3 * (spk.brow_raise_offset + brow_raise * intensity)
            tilt = 3 * (spk.brow_tilt_offset + brow_tilt * intensity)
            inner = (int(cx + side * (es - 4)), int(by - tilt))
            outer = (int(cx + side * (es + 4)), int(by + tilt))
            cv2.line(img, inner, outer, (40, 30, 30), 1)
        # mouth: a curve whose bend is the (speaker-relative) curvature, opening with the voice
        g = gate[min(len(gate) - 1, int(i / VIDEO_FPS * SAMPLE_RATE))]
        opening = 1 + 5 * max(0.0, spk.mouth_open_offset + mouth_open * intensity) * g
        mw, my = 7 * scale, cy + 10 * scale
        xs = np.linspace(-mw, mw, 9)
        upper = my - mouth_curve * 3 * (1 - (xs / mw) ** 2)
        lower = upper + opening * (1 - (xs / mw) ** 2)
        poly = np.stack([np.r_[cx + xs, cx + xs[::-1]], np.r_[upper, lower[::-1]]], axis=1)
        cv2.fillPoly(img, [poly.astype(np.int32)], (90, 20, 30))
        img = img * light + rng.normal(0, 6, img.shape)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def generate(cfg: SynthConfig, out: str | Path) -> Path:
    """Write the corpus under `out` (idempotent: same settings, same files). Over a corpus it generated, that
    corpus's clips go first (left beside the new ones, each was a reject: "not listed"). Until the new corpus is
    whole its settings file says no settings: cut short, the folder is the generator's (it may write there again)
    and no corpus (`is_generated` is false for any settings)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old = made_here(out)
    (out / SETTINGS).write_text(UNDER_WAY)
    if old:
        _remove_clips(out)
    emotions = list(EMOTIONS[: cfg.emotions])
    rng = np.random.default_rng(cfg.seed)
    speakers = {f"spk{s:02d}": _speaker(rng, cfg.identity_cues, cfg.cues) for s in range(cfg.speakers)}
    rows = []
    for s, (name, spk) in enumerate(speakers.items()):
        favourite = s % cfg.emotions
        probs = np.full(cfg.emotions, (1 - cfg.entanglement) / cfg.emotions)
        probs[favourite] += cfg.entanglement
        labels = np.repeat(np.arange(cfg.emotions), _counts(cfg.clips_per_speaker, probs, favourite + 1))
        rng.shuffle(labels)
        for j, e in enumerate(labels):
            runtime.check_interrupted()  # a Ctrl-C a library's C callback swallowed stops it between clips
            clip_rng = np.random.default_rng([cfg.seed, s, j])
            emotion = emotions[e]
            intensity = float(clip_rng.uniform(0.3, 1.0))
            voice, face = _cues(emotion, cfg.cues)
            audio, gate = _audio(clip_rng, spk, voice, intensity, cfg.duration_s)
            frames = _frames(clip_rng, spk, face, intensity, gate, cfg.duration_s)
            rel = f"{name}/{name}_{emotion}_{j:03d}.mp4"
            write_clip(out / rel, frames, VIDEO_FPS, audio, SAMPLE_RATE)
            rows.append({"file": rel, "clip_id": f"synthetic-{name}-{j:03d}", "speaker": name,
                         "emotion": emotion, "intensity": round(intensity, 4)})
    with open(out / GROUND_TRUTH, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "speakers.json").write_text(json.dumps({k: asdict(v) for k, v in speakers.items()}, indent=1))
    (out / SETTINGS).write_text(json.dumps(cfg.model_dump(), indent=1))
    return out


# a clip's path as `generate` names it: spkNN/spkNN_<emotion>_NNN.mp4
_CLIP = re.compile(rf"(spk\d{{2,}})/\1_(?:{'|'.join(map(re.escape, EMOTIONS))})_\d{{3,}}\.mp4")


def _remove_clips(out: Path) -> None:
    """Remove the clips the generator's ground truth at `out` lists under the names it gives them (only those: a
    file of the user's own stays, even one they listed there beside the generated ones), then the ground truth."""
    truth = out / GROUND_TRUTH
    if not truth.is_file():
        return
    with open(truth, newline="") as fh:
        files = [row.get("file") or "" for row in csv.DictReader(fh)]
    home = out.resolve()
    for file in files:
        named = _CLIP.fullmatch(file)
        if not named or (out / named[1]).resolve() != home / named[1]:  # a speaker folder linked elsewhere: not ours
            continue
        clip = out / file
        if clip.is_symlink() or clip.is_file():  # a link goes, not what it points to
            clip.unlink()
    truth.unlink()


def check_target(out: str | Path) -> None:
    """Refuse to write into a folder that holds files but no corpus this generator wrote: a `ground_truth.csv` there
    is a corpus of the user's own (generating over it replaces its rows), other files are someone else's."""
    if holds_others(out):
        raise UsageError(f"{out}: holds files but no corpus the generator wrote; a corpus is generated only into "
                         "an empty or new folder, or over one it generated: give another folder")


def holds_others(out: str | Path) -> bool:
    """Whether `out` is a folder holding files but no corpus this generator wrote: one it must not write into. A
    shared-storage check's marker (`storage.SHARED_CHECK`, which a killed check leaves behind) is no one's file: an
    empty folder with one was refused, though `ls` showed it empty. Nor is the lock a generation takes there
    (`storage_lock.LOCK`)."""
    out = Path(out)
    return out.is_dir() and not made_here(out) and any(not p.name.startswith(storage.SHARED_CHECK)
                                                        and p.name != storage_lock.LOCK for p in out.iterdir())


@contextmanager
def held_while_read(src: str | Path) -> Iterator[None]:
    """Hold the corpus this generator wrote at `src` (`HELD_FOR`, waiting for a generation under way) while shards are
    built from it: `avdis synth` into that folder with other settings, run during a build, waited only for another
    generation and replaced the corpus under the build reading it. Taken inside the build's own lock on its shards
    folder (`shards.build_shards`), never around it: a sweep whose data.shards is its own folder holds that folder
    and then this one, and the other order deadlocked it with `avdis preprocess` into the same folder. Not a corpus
    the generator did not write, which it never writes over, nor one this user cannot write (a read-only copy),
    which no generation here can replace: no lock's file goes there."""
    if not made_here(src) or not os.access(src, os.W_OK):
        yield
        return
    with storage_lock.exclusive(str(src), HELD_FOR, wait=True):
        yield


def made_here(out: str | Path) -> bool:
    """True when `out` holds a corpus this generator wrote (with any settings): one it may write over."""
    return (Path(out) / SETTINGS).is_file()


def settings_of(out: str | Path) -> dict[str, Any] | None:
    """The settings of the finished corpus the generator wrote at `out`; None for none, or for one cut short (its
    settings file still the placeholder, or cut mid-write: written last, it is what makes a corpus whole)."""
    meta = Path(out) / SETTINGS
    if not (meta.is_file() and (Path(out) / GROUND_TRUTH).is_file()):
        return None
    try:
        made = json.loads(meta.read_text())
    except ValueError:
        return None
    return as_read(made) if made else None


def as_read(made: dict[str, Any]) -> dict[str, Any]:
    """Recorded generator settings as a config reads them: a corpus generated before identity_cues took words
    recorded `true`, which a config reads as 'on', and compared as recorded it was refused as made with other
    settings (generating, preprocessing, training), even by a config that left data.synth out. A setting added
    since reads as its default; settings this version cannot read are kept as recorded."""
    try:
        return SynthConfig.model_validate({k: v for k, v in made.items() if k in SynthConfig.model_fields}).model_dump()
    except ValidationError:
        return made


def is_generated(cfg: SynthConfig, out: str | Path) -> bool:
    """True when `out` holds a finished corpus made with exactly these settings."""
    return settings_of(out) == cfg.model_dump()
