"""Recording rates as an identity cue: what preprocessing says of a corpus whose clips were recorded at different rates.

Every clip is resampled to data.features.sample_rate, but resampling adds no frequencies: a clip recorded at 8 kHz
holds nothing above 4 kHz, so its upper mel bands are empty. Where the recording rate goes with the speaker (a phone
corpus merged into a studio one, one session recorded otherwise) the bandwidth names the speaker, and the leakage
probe reads it as identity. Mel bands that stop at the lowest rate's Nyquist frequency (data.features.f_max) are
alike for every clip.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from avdis.config import FeatureConfig

NAMED = 5  # speakers named in the warning; the rest are counted


def rate_counts(rates: list[int]) -> dict[str, int]:
    """Clips per source rate, lowest first, for the summary (JSON keys: strings)."""
    return {str(rate): n for rate, n in sorted(Counter(rates).items())}


def bandwidth_cue(speakers: list[str], rates: list[int], feat: FeatureConfig) -> str | None:
    """Why clips' mel bands differ by recording rate, who they differ for, and what to do; None where every clip
    fills the same bands (one rate, or every rate's Nyquist frequency at or above the top of the mel bands)."""
    top = feat.mel_top
    filled = [min(rate / 2, top) for rate in rates]
    if len(set(filled)) < 2:
        return None
    counts = ", ".join(f"{n} at {rate} Hz" for rate, n in sorted(Counter(rates).items()))
    lowest = min(rates)
    by_speaker: dict[str, list[bool]] = defaultdict(list)
    for speaker, band in zip(speakers, filled):
        by_speaker[speaker].append(band < top)
    narrow = sorted(s for s, bands in by_speaker.items() if all(bands))
    mixed = sum(1 for bands in by_speaker.values() if any(bands) and not all(bands))
    named = ", ".join(narrow[:NAMED]) + (f" and {len(narrow) - NAMED} more" if len(narrow) > NAMED else "")
    who = (f"{len(narrow)} of {len(by_speaker)} speakers ({named}) have every clip recorded below {2 * top:g} Hz"
           if narrow else f"no speaker has only clips recorded below {2 * top:g} Hz")
    return (f"clips recorded at different sample rates: {counts}. A clip holds nothing above half its rate, so the "
            f"mel bands up to {top:g} Hz (data.features.sample_rate={feat.sample_rate}"
            f"{'' if feat.f_max is None else f', f_max={feat.f_max:g}'}) are empty above {lowest / 2:g} Hz in those "
            f"recorded at {lowest} Hz. {who}, {mixed} some of theirs. Where the rate goes with the speaker, the "
            "bandwidth names the speaker: the model can learn it, and the leakage probe reads it as identity the "
            f"method left in, a measure of the recording setup. Set data.features.f_max={lowest / 2:g} (half the "
            "lowest rate) to give every clip the same bands (the shards are made again), or leave out the clips "
            "recorded at the lower rates")
