"""Bandwidth as an identity cue: what preprocessing says of a corpus whose clips' sound stops at different frequencies.

Every clip is resampled to data.features.sample_rate, but resampling adds no frequencies: a clip recorded at 8 kHz
holds nothing above 4 kHz, so its upper mel bands are empty. So does a clip whose file's rate is higher than its
sound's: an 8 kHz phone call saved at 16 or 44.1 kHz, an MP3 or AAC at a low bit rate (its encoder cuts what lies
above some 5-11 kHz). Where the bandwidth goes with the speaker (a phone corpus merged into a studio one, one session
recorded otherwise) it names the speaker, and the leakage probe reads it as identity. Each clip's bandwidth is
measured (`measure`) as well as its file's rate read; mel bands that stop at the lowest bandwidth (data.features.f_max)
are alike for every clip.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import next_fast_len

from avdis.config import FeatureConfig

NAMED = 5  # speakers named in the warning; the rest are counted

# `measure`: a cliff is the level falling CLIFF_DB from the median of the BELOW_HZ under a frequency to the loudest of
# all that lies GUARD_HZ or more above it (speech and a recording's noise fall a few dB over that, a resampler's or an
# encoder's low-pass 60 or more; a resampler's transition band mirrors the top few hundred Hz of a band its sound fills
# just above the cut only ~20 dB down, which a guard of 250 Hz took for sound there); the bandwidth is where the level
# first falls EDGE_DB below the median of the BELOW_HZ before the lowest cliff. A cut in the top fifth of the band up to
# half data.features.sample_rate is the anti-aliasing filter's of the file or of the resampling into that band: the clip
# fills it. A file at a lower rate has its cut read as it is (a phone line's 3.4 kHz in an 8 kHz file, or its
# resampler's at 4 kHz where its sound reaches that), as the same sound saved at a higher rate reads. None under
# LOWEST_HZ is looked for (a low voice or a hum falls off there). A frame holding digital silence of SILENCE_S or more
# (a noise gate's, an edit's, a gap decoding filled) is left out: the step into it and out of it is a click over every
# band, which hid a narrow one. Clips with under MIN_FRAMES frames of sound (a frame's power at SOUND or more) are too
# short or quiet to tell.
CLIFF_DB = 25.0
EDGE_DB = 10.0
BELOW_HZ = 500.0
GUARD_HZ = 750.0
LOWEST_HZ = 2000.0
FULL = 0.8
MIN_FRAMES = 8
FRAME_S = 0.064  # s at any rate: bins of 16 Hz or finer, MIN_FRAMES of them half a second, as many between gaps
SOUND = 1e-7  # mean square: -70 dBFS
SILENCE_S = 0.001  # s: a run of exact zeros this long is digital silence
MAX_FRAMES = 2000  # a long recording's frames are sampled evenly: its spectrum, at a bounded cost
SAME_BAND = 0.1  # bandwidths within a tenth of each other are one band (measure's error on test signals: under 8%)


def measure(audio: np.ndarray, sample_rate: int, source_rate: int) -> int | None:
    """The frequency (Hz, to 10 Hz) below which a clip's sound lies, from its long-term spectrum as resampled to
    `sample_rate` (nothing above that reaches a feature), at most half the lower of the two rates; None where the clip
    holds too little sound to tell (silence, a clip under half a second, or one gated to digital silence so often that
    under half a second of its frames holds none)."""
    n_fft = next_fast_len(round(FRAME_S * sample_rate), real=True)
    n = len(audio) // n_fft
    frames = audio[: n * n_fft].reshape(n, n_fft)
    frames = frames[np.mean(np.square(frames), axis=1, dtype=np.float64) >= SOUND]
    frames = frames[np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_FRAMES)).astype(int))]
    frames = frames[~_silence_in(frames, round(SILENCE_S * sample_rate))]
    if len(frames) < MIN_FRAMES:
        return None
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2, axis=0)
    bin_hz = sample_rate / n_fft
    tiny = power.max() * 1e-15
    level = 10 * np.log10(power + tiny)
    width = max(1, round(125 / bin_hz))  # the loudest above: over 125 Hz, not a bin's chance peak
    smooth = 10 * np.log10(np.convolve(power, np.ones(width) / width, mode="same") + tiny)
    below, guard = round(BELOW_HZ / bin_hz), round(GUARD_HZ / bin_hz)
    top = int(0.99 * (len(power) - 1))
    loudest_above = np.maximum.accumulate(smooth[: top + 1][::-1])[::-1]
    under = np.median(sliding_window_view(level, below), axis=1)  # under[i]: the median of level[i : i + below]
    first = max(2 * below, int(np.ceil(LOWEST_HZ / bin_hz)))
    at = np.arange(first, top - guard + 1)
    cliffs = at[under[at - below] - loudest_above[at + guard] >= CLIFF_DB]
    nyquist = min(source_rate, sample_rate) / 2
    if not len(cliffs):
        return int(nyquist)
    low = cliffs[0]  # the first: below a low-pass's skirt, which falls on as steeply, lies the sound it cut
    start = max(low - below, first)  # a dip under LOWEST_HZ is no edge: none is looked for there
    edge = start + int(np.argmax(smooth[start:] < under[low - 2 * below] - EDGE_DB))
    cut = edge * bin_hz
    return int(nyquist) if cut >= FULL * sample_rate / 2 else min(int(nyquist), int(round(cut, -1)))


def _silence_in(frames: np.ndarray, run: int) -> np.ndarray:
    """Which frames hold `run` samples or more of digital silence in a row."""
    zeros = np.zeros((len(frames), frames.shape[1] + 1), np.int16)  # a frame: under 32768 samples up to 500 kHz
    np.cumsum(frames == 0, axis=1, out=zeros[:, 1:])
    return np.any(zeros[:, run:] - zeros[:, :-run] == run, axis=1)


def effective(rate: int, bandwidth: int | None) -> float:
    """Hz a clip's sound fills: its measured bandwidth, else (too little sound, or shards made before it was
    measured) half the rate it was recorded at."""
    return rate / 2 if bandwidth is None else min(rate / 2, bandwidth)


def _bands(values: list[float]) -> dict[float, list[int]]:
    """Indices of `values` by band, each band's lowest value first and within SAME_BAND of it, lowest band first."""
    bands: dict[float, list[int]] = {}
    low = None
    for i in sorted(range(len(values)), key=values.__getitem__):
        if low is None or values[i] > low * (1 + SAME_BAND):
            low = values[i]
            bands[low] = []
        bands[low].append(i)
    return bands


def rate_counts(rates: list[int]) -> dict[str, int]:
    """Clips per source rate, lowest first, for the summary (JSON keys: strings)."""
    return {str(rate): n for rate, n in sorted(Counter(rates).items())}


def band_counts(bandwidths: list[int | None]) -> dict[str, int]:
    """Clips per measured bandwidth (`_bands`: keyed by each band's lowest, Hz), lowest first, and those too short or
    quiet to measure ('unknown'), for the summary."""
    known = [b for b in bandwidths if b is not None]
    unknown = len(bandwidths) - len(known)
    return {**{f"{low:g}": len(ids) for low, ids in _bands(known).items()}, **({"unknown": unknown} if unknown else {})}


def _named(speakers: list[str]) -> str:
    return ", ".join(speakers[:NAMED]) + (f" and {len(speakers) - NAMED} more" if len(speakers) > NAMED else "")


def bandwidth_cue(speakers: list[str], rates: list[int], bandwidths: list[int | None],
                  feat: FeatureConfig) -> str | None:
    """Why clips' mel bands differ by bandwidth, which clips and speakers have the narrower, and what to do; None
    where every clip fills the same bands (to within SAME_BAND)."""
    top = feat.mel_top
    filled = [min(effective(r, b), top) for r, b in zip(rates, bandwidths)]
    bands = _bands(filled)
    if len(bands) < 2:
        return None
    widest = max(bands)
    band_of = {i: low for low, ids in bands.items() for i in ids}
    by_speaker: dict[str, list[float]] = defaultdict(list)
    for i, speaker in enumerate(speakers):
        by_speaker[speaker].append(band_of[i])
    counts = ", ".join(f"{len(ids)} up to {low:g} Hz" for low, ids in bands.items())
    who = []
    for low in list(bands)[:-1]:  # each narrower band: the speakers none of whose clips reach a wider one
        own = sorted(s for s, lows in by_speaker.items() if max(lows) == low)
        if own:
            who.append(f"{len(own)} of {len(by_speaker)} speakers ({_named(own)}) have every clip up to {low:g} Hz")
    mixed = sum(1 for lows in by_speaker.values() if min(lows) < widest <= max(lows))
    lowest = min(filled)
    files = ", ".join(f"{n} at {rate} Hz" for rate, n in sorted(Counter(rates).items()))
    named = "; ".join(who) or "No speaker has only such clips"
    return (f"clips' sound stops at different frequencies: {counts} (the mel bands go up to {top:g} Hz: "
            f"data.features.sample_rate={feat.sample_rate}{'' if feat.f_max is None else f', f_max={feat.f_max:g}'}; "
            f"the clips' files: {files}). A clip holds nothing above half its rate, nor above what a phone line, a "
            "lossy encoder or resampling before it reached the corpus left of it (`bandwidth_hz` in the manifest). "
            f"{named}, {mixed} some of theirs. Where the bandwidth goes with the speaker, it names the speaker: the "
            "model can learn it, and the leakage probe reads it as identity the method left in, a measure of the recording "
            f"setup. Set data.features.f_max={lowest:g} (the lowest bandwidth){_mels_with(feat, lowest)} to give every "
            "clip the same bands (the shards are made again), or leave out the clips of the narrower bands")


def _mels_with(feat: FeatureConfig, f_max: float) -> str:
    """The n_mels to set with the advised f_max where the one set leaves mel bands without an FFT bin under it
    (`media.check_mel_bands` refuses that): the f_max alone would be refused."""
    from avdis.data.media import mel_bands_filled  # media imports this module

    empty, most = mel_bands_filled(feat.model_copy(update={"f_max": f_max}))
    if not empty:
        return ""
    return (f" and data.features.n_mels={most} (at {feat.n_mels} that f_max leaves {empty} mel bands empty, which is "
            "refused)")
