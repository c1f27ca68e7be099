"""Clips whose sound stops at different frequencies (recorded at different sample rates, or resampled up or cut by a
lossy encoder before they reached the corpus): the rate and the measured bandwidth are recorded per clip, a corpus
whose bandwidths differ is warned of (by band and by speaker), and data.features.f_max gives an 8 kHz and a 16 kHz
recording the same mel bands.

The corpora are WAV and MP3 files written here (the project's own writer, LAME through PyAV), preprocessed by
`avdis preprocess --no-ray`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import librosa
import numpy as np
import pyarrow.parquet as pq
import pytest

from avdis import config as C
from avdis import storage
from avdis.cli import main
from avdis.config import DataConfig, FeatureConfig, S3Config, SplitConfig
from avdis.data import media, shards
from avdis.data.media import write_clip
from avdis.errors import UsageError
from avdis.train import checkpoint as ck
from avdis.train import launch

SECONDS = 1.2


def band_noise(seed: int, low: float, high: float, peak: float) -> np.ndarray:
    """Seeded noise at 16 kHz with nothing outside `low`-`high` Hz, scaled to `peak`."""
    rng = np.random.default_rng(seed)
    n = int(16000 * SECONDS)
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / 16000)
    spectrum[(freqs < low) | (freqs > high)] = 0
    x = np.fft.irfft(spectrum, n)
    return (peak * x / np.abs(x).max()).astype(np.float32)


def voice(seed: int) -> np.ndarray:
    """The telephone band (300-3400 Hz): nothing above 4 kHz, so every second sample of it is the same sound
    recorded at 8 kHz."""
    return band_noise(seed, 300, 3400, 0.3)


def air(seed: int) -> np.ndarray:
    """4.5-7.5 kHz: what a 16 kHz recording holds above an 8 kHz one's Nyquist frequency."""
    return band_noise(seed + 1000, 4500, 7500, 0.1)


def recording(path: Path, seed: int, rate: int) -> Path:
    """The seed's sound as a WAV recorded at `rate` (8000 or 16000 Hz)."""
    sound = voice(seed)
    write_clip(path, None, 0, sound[::2] if rate == 8000 else sound + air(seed), rate)
    return path


def corpus(root: Path, rates: dict[str, int], clips: int = 3) -> Path:
    """A corpus of one's own: each speaker's clips recorded at its rate, emotions alternating."""
    rows = ["file,clip_id,speaker,emotion"]
    for s, (speaker, rate) in enumerate(rates.items()):
        for c in range(clips):
            name = f"{speaker}_{c}.wav"
            recording(root / name, 10 * s + c, rate)
            rows.append(f"{name},{speaker}_{c},{speaker},{('happy', 'sad')[c % 2]}")
    (root / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    return root


def preprocess(capsys, src: Path, out: Path, *overrides: str) -> str:
    """`avdis preprocess --no-ray` of an audio corpus; its stderr."""
    code = main(["preprocess", "--no-ray", "--src", str(src), "--out", str(out), "data.modality=audio",
                 "data.split.folds=3", *overrides])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


def test_speakers_recorded_at_a_lower_rate_are_named_with_the_f_max_that_evens_them_out(tmp_path, capsys):
    """Two of six speakers recorded at 8 kHz (the telephone band, read as it is: 3300-3600 Hz): their clips' mel bands
    above that are empty, so the bandwidth names them, and preprocessing said nothing of it."""
    rates = {"s1": 8000, "s2": 8000, "s3": 16000, "s4": 16000, "s5": 16000, "s6": 16000}
    src, out = corpus(tmp_path / "corpus", rates), tmp_path / "shards"
    err = preprocess(capsys, src, out)
    found = re.search(r"warning: clips' sound stops at different frequencies: 6 up to (\d+) Hz, 12 up to 8000 Hz", err)
    assert found and 3300 <= int(found.group(1)) <= 3600, err
    lowest = int(found.group(1))
    assert "the clips' files: 6 at 8000 Hz, 12 at 16000 Hz" in err
    assert f"2 of 6 speakers (s1, s2) have every clip up to {lowest} Hz, 0 some of theirs" in err
    assert "it names the speaker" in err and f"Set data.features.f_max={lowest} (the lowest bandwidth)" in err
    table = pq.read_table(out / "manifest.parquet")
    assert dict(zip(table.column("clip_id").to_pylist(), table.column("source_rate").to_pylist())) == {
        f"{s}_{c}": rate for s, rate in rates.items() for c in range(3)}
    assert "stops at different frequencies" in preprocess(capsys, src, out)  # up to date: said again
    # the advice taken: the shards are made again, every clip's bands stop at the lowest, and nothing is said
    err = preprocess(capsys, src, out, f"data.features.f_max={lowest}")
    assert "different frequencies" not in err
    assert pq.read_table(out / "manifest.parquet").schema.metadata[b"avdis"].count(f'"f_max": {lowest}.0'.encode()) == 1


def test_a_corpus_recorded_at_one_rate_says_nothing_of_rates(tmp_path, capsys):
    """Every clip at 8 kHz: all lack the same bands, which tell no speaker from another."""
    src, out = corpus(tmp_path / "corpus", {f"s{i}": 8000 for i in range(6)}), tmp_path / "shards"
    err = preprocess(capsys, src, out)
    assert "different frequencies" not in err
    assert set(pq.read_table(out / "manifest.parquet").column("source_rate").to_pylist()) == {8000}


def test_with_f_max_at_half_the_lowest_rate_an_8_and_a_16_khz_recording_fill_the_same_bands(tmp_path):
    """The same sound recorded at 8 kHz and at 16 kHz: at the default top of 8 kHz the upper mel bands tell them
    apart by far (empty in one); with data.features.f_max=4000 every band holds the same, on average within 0.05 of
    the log-mel (a 16 kHz clip's top bands differed by 8.6)."""
    low, high = recording(tmp_path / "low.wav", 3, 8000), recording(tmp_path / "high.wav", 3, 16000)

    def features(feat: FeatureConfig, top: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both recordings' log-mel frames, and which of the bands up to `top` Hz lie wholly above 4.2 kHz."""
        a, b = (media.extract(path, None, feat) for path in (low, high))
        lower_edges = librosa.mel_frequencies(feat.n_mels + 2, fmin=media.MEL_FMIN, fmax=top)[:-2]
        return a.audio.astype(np.float32)[: a.audio_len], b.audio.astype(np.float32)[: b.audio_len], lower_edges > 4200

    a, b, above = features(FeatureConfig(), 8000)
    assert above.sum() >= 5 and np.abs(a[:, above] - b[:, above]).mean() > 5  # empty bands, against the air there
    a, b, above = features(FeatureConfig(f_max=4000), 4000)
    assert not above.any() and np.abs(a - b).mean(axis=0).max() < 0.05  # every band, the top one too


def test_an_f_max_above_the_nyquist_frequency_is_refused_naming_it(tmp_path, capsys):
    code = main(["preprocess", "--no-ray", "--src", str(tmp_path), "--out", str(tmp_path / "out"),
                 "data.features.f_max=9000"])
    err = capsys.readouterr().err
    assert code == 2 and "data.features.f_max: 9000 must be > 20 Hz" in err and "sample_rate / 2 = 8000 Hz" in err, err


def test_shards_made_before_rates_were_kept_stay_up_to_date_and_f_max_makes_them_again(tmp_path):
    """A new manifest column and a new feature setting at its default rebuild no shard (hours for a large corpus);
    f_max given does, naming it, and training with it on shards made without it is refused."""
    src = corpus(tmp_path / "corpus", {"s1": 8000, "s2": 16000, "s3": 16000})
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), modality="audio",
                      split=SplitConfig(folds=3))
    lowest = min(int(b) for b in shards.build_shards(data, S3Config())["bandwidths"])  # the 8 kHz clips' 3.4 kHz
    table, meta = shards.read_manifest(data.shards)  # as an earlier avdis wrote it: no source_rate, no f_max
    assert "f_max" not in meta["features"]
    storage.write_parquet(str(tmp_path / "out" / shards.MANIFEST), table.drop_columns(["source_rate", "bandwidth_hz"]),
                          S3Config())
    again = shards.build_shards(data, S3Config())
    assert again["up_to_date"] and "source_rates" not in again and "bandwidth_cue" not in again
    # made after rates were kept, before bandwidths were measured: up to date, warned of by their rates
    storage.write_parquet(str(tmp_path / "out" / shards.MANIFEST), table.drop_columns(["bandwidth_hz"]), S3Config())
    rated = shards.build_shards(data, S3Config())
    assert rated["up_to_date"] and rated["source_rates"] == {"8000": 3, "16000": 6} and "bandwidths" not in rated
    assert "3 up to 4000 Hz, 6 up to 8000 Hz" in rated["bandwidth_cue"]
    narrow = data.model_copy(update={"features": FeatureConfig(f_max=lowest)})
    with pytest.raises(UsageError, match=rf"data\.features\.f_max={lowest}\.0 \(made with None\)"):
        shards.check_made_with(narrow, shards.read_manifest(data.shards)[1])
    made = shards.build_shards(narrow, S3Config())
    assert made["rebuilt_because"] == f"changed since the shards were made: data.features.f_max None -> {lowest}.0"
    assert made["source_rates"] == {"8000": 3, "16000": 6} and "bandwidth_cue" not in made
    assert made["bandwidths"] == {str(lowest): 3, "8000": 6}


def test_f_max_at_half_the_sample_rate_is_the_default_for_shards_runs_and_sweeps(tmp_path):
    """data.features.f_max=8000 at sample_rate 16000 makes the same mel bands as leaving it out, yet as given it
    rebuilt shards made without it (hours for a large corpus), training on them was refused, and a run or sweep
    started at the default was refused on resume (an unnamed run was looked for under another name)."""
    assert FeatureConfig(f_max=8000).f_max is None and FeatureConfig(sample_rate=22050, f_max=11025).f_max is None
    src = corpus(tmp_path / "corpus", {"s1": 16000, "s2": 16000, "s3": 16000})
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), modality="audio",
                      split=SplitConfig(folds=3))
    shards.build_shards(data, S3Config())
    same = data.model_copy(update={"features": FeatureConfig(f_max=8000)})
    shards.check_made_with(same, shards.read_manifest(data.shards)[1])
    assert shards.build_shards(same, S3Config())["up_to_date"]
    default, given = (C.with_overrides(C.Config(), {"data.features.f_max": f_max}) for f_max in (None, 8000))
    assert ck.run_signature(given, "abc") == ck.run_signature(default, "abc")
    assert launch.run_name(given) == launch.run_name(default)
    assert given.model_dump() == default.model_dump()  # what a sweep records and compares on resume
    assert C.with_overrides(default, {"data.features.f_max": 4000}).data.features.f_max == 4000


def test_a_run_or_sweep_that_makes_or_opens_the_shards_says_the_rates_differ_too(tmp_path, capsys):
    """A corpus of one's own is made into shards by the run or sweep that first needs them (`ensure_shards`), and
    neither said that its rates differ: only `avdis preprocess` did. Said when made, and on each later start."""
    from avdis.data import prepare

    rates = {"s1": 8000, "s2": 16000, "s3": 16000}
    data = {"corpus": "synthetic", "src": str(corpus(tmp_path / "corpus", rates)), "shards": str(tmp_path / "shards"),
            "modality": "audio", "split": {"folds": 3}}
    for _ in range(2):  # made, then opened as they are
        prepare.ensure_shards(C.Config.model_validate({"data": data}))
        err = capsys.readouterr().err
        found = re.search(rf"warning: {re.escape(data['shards'])}: clips' sound stops at different frequencies: "
                          r"3 up to (\d+) Hz", err)
        assert found and f"Set data.features.f_max={found.group(1)} " in err, err
    even = {**data, "src": str(corpus(tmp_path / "even", {"s1": 16000, "s2": 16000, "s3": 16000})),
            "shards": str(tmp_path / "even_shards")}
    for _ in range(2):
        prepare.ensure_shards(C.Config.model_validate({"data": even}))
        assert "different frequencies" not in capsys.readouterr().err


def speech(seed: int, rate: int, seconds: float = SECONDS, level: float = 0.3) -> np.ndarray:
    """Seeded speech-like sound at `rate`: noise falling 5-8 dB an octave above 500 Hz, in syllables, over faint room
    noise, so every band up to the Nyquist frequency holds some, as a full-band recording's do."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    tilt = np.where(freqs < 80, 0, 1 / np.maximum(freqs / 500, 1) ** rng.uniform(0.8, 1.4))
    x = np.fft.irfft(np.fft.rfft(rng.normal(size=n)) * tilt, n)
    t = np.arange(n) / rate
    x *= np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = level * x / np.abs(x).max() + rng.normal(size=n) * level * 10 ** (rng.uniform(-60, -45) / 20)
    return x.astype(np.float32)


def resampled(x: np.ndarray, rate: int, to: int, how: str) -> np.ndarray:
    """`x` at `to` Hz, by scipy's polyphase resampler ('poly') or ffmpeg's (libswresample through PyAV, 'swr')."""
    if how == "poly":
        from scipy.signal import resample_poly

        return resample_poly(x, to, rate).astype(np.float32)
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=to)
    frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
    frame.sample_rate = rate
    return np.concatenate([o.to_ndarray()[0] for o in [*resampler.resample(frame), *resampler.resample(None)]])


def upsampled(x: np.ndarray, rate: int, via: int, how: str = "poly") -> np.ndarray:
    """`x` as a recording at `via` Hz saved at `rate` Hz: nothing above `via` / 2."""
    return resampled(resampled(x, rate, via, how), via, rate, how)


def write_mp3(path: Path, x: np.ndarray, rate: int, kbps: int) -> Path:
    """`x` as an MP3 (LAME) at `kbps` kbit/s, whose encoder cuts what lies above a frequency that falls with it."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.bit_rate, stream.layout = kbps * 1000, "mono"
        frame = av.AudioFrame.from_ndarray((x[None] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def own_corpus(root: Path, sounds: dict[str, list[tuple[str, np.ndarray, int]]]) -> Path:
    """A corpus of one's own: each speaker's clips (file name, sound, file rate), emotions alternating."""
    rows = ["file,clip_id,speaker,emotion"]
    for speaker, clips in sounds.items():
        for c, (name, sound, rate) in enumerate(clips):
            if name.endswith(".wav"):
                write_clip(root / name, None, 0, sound, rate)
            rows.append(f"{name},{Path(name).stem},{speaker},{('happy', 'sad')[c % 2]}")
    (root / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    return root


def measured(path: Path, sample_rate: int = 16000) -> int | None:
    """`bandwidth.measure` of a file as preprocessing decodes it."""
    from avdis.data import bandwidth

    audio, rate = media.decode_rated(path, sample_rate)
    return bandwidth.measure(audio, sample_rate, rate)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_the_measured_bandwidth_of_generated_speech_is_within_8_percent(tmp_path, rate):
    """Speech-like sound recorded at 8 and 11.025 kHz and saved at `rate` (resampled by scipy and by ffmpeg) reads
    within 8% of its recording's Nyquist frequency (on these: 3910-4140 Hz and 5660-5940 Hz); full-band sound reads
    the top of what decoding keeps (8 kHz at 16 kHz), as do recordings at 16 and 22.05 kHz; an MP3 reads its encoder's
    cut at 16 kHz as at its own 44.1 kHz (within 1%)."""
    for seed in range(3):
        x = speech(seed, rate, 3.0)
        write_clip(tmp_path / "full.wav", None, 0, x, rate)
        assert measured(tmp_path / "full.wav") == 8000
        for via in (8000, 11025, 16000, 22050):
            for how in ("poly", "swr"):
                if via < rate:
                    path = tmp_path / f"{via}_{how}.wav"
                    write_clip(path, None, 0, upsampled(x, rate, via, how), rate)
                    expected = min(via, 16000) / 2
                    assert abs(measured(path) - expected) <= 0.08 * expected, (seed, via, how)
    if rate == 44100:
        for seed in range(3):
            for kbps in (16, 24):  # LAME cuts at ~5.6 and ~6.2 kHz (below that, its low-pass skirt falls on)
                cut = measured(write_mp3(tmp_path / "low.mp3", speech(seed, rate, 3.0), rate, kbps), 44100)
                assert 5000 < cut < 6400 and abs(measured(tmp_path / "low.mp3") - cut) <= 0.03 * cut, (seed, kbps)
            assert measured(write_mp3(tmp_path / "high.mp3", speech(seed, rate, 3.0), rate, 64)) == 8000  # cut > 16 kHz


def test_silence_and_a_short_clip_are_unknown_not_narrow(tmp_path):
    """Under half a second of sound, or sound at -70 dBFS or below (as a dither's), is too little to tell a band limit
    from: unknown, never a narrow band."""
    from avdis.data import bandwidth

    narrow = upsampled(speech(2, 16000, 3.0), 16000, 8000)
    assert bandwidth.measure(narrow, 16000, 16000) < 4200
    assert bandwidth.measure(narrow[:6000], 16000, 16000) is None  # 0.375 s
    assert bandwidth.measure(narrow * 10 ** (-70 / 20), 16000, 16000) is None
    assert bandwidth.measure(np.zeros(48000, np.float32), 16000, 16000) is None


def test_speakers_whose_clips_were_upsampled_from_8_khz_are_named_though_their_files_are_16_khz(tmp_path, capsys):
    """Every file at 16 kHz, but two speakers' sound recorded at 8 kHz (a phone corpus merged in, saved at 16 kHz):
    their mel bands above 4 kHz are as empty as an 8 kHz file's, and nothing was said (the file's rate is all that
    was read). They are named, with the f_max that evens the bands, which, taken, is said nothing of."""
    sounds = {s: [(f"{s}_{c}.wav", speech(10 * i + c, 16000), 16000) for c in range(3)]
              for i, s in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"])}
    for s in ("s1", "s2"):
        sounds[s] = [(name, upsampled(x, 16000, 8000), rate) for name, x, rate in sounds[s]]
    src, out = own_corpus(tmp_path / "corpus", sounds), tmp_path / "shards"
    err = preprocess(capsys, src, out)
    found = re.search(r"warning: clips' sound stops at different frequencies: 6 up to (\d+) Hz, 12 up to 8000 Hz", err)
    assert found, err
    lowest = int(found.group(1))
    assert f"2 of 6 speakers (s1, s2) have every clip up to {lowest} Hz, 0 some of theirs" in err
    table = pq.read_table(out / "manifest.parquet")
    bands = dict(zip(table.column("clip_id").to_pylist(), table.column("bandwidth_hz").to_pylist()))
    assert lowest == min(bands.values()) and all(3800 <= bands[f"{s}_{c}"] <= 4200 for s in ("s1", "s2")
                                                 for c in range(3)), bands
    assert {b for clip, b in bands.items() if clip[:2] not in ("s1", "s2")} == {8000}
    assert set(table.column("source_rate").to_pylist()) == {16000}
    assert f"Set data.features.f_max={lowest} (the lowest bandwidth)" in err
    assert "different frequencies" not in preprocess(capsys, src, out, f"data.features.f_max={lowest}")


def test_three_bands_are_each_named_with_their_speakers(tmp_path, capsys):
    """A speaker's sound at 8 kHz, one's an MP3 at 16 kbit/s (cut at ~5.6 kHz), the rest full band at 44.1 kHz and
    16 kHz: each narrower band is named with its clips and its speaker (the rates alone said nothing: every file's
    Nyquist frequency is at or above the top of the mel bands)."""
    sounds = {s: [(f"{s}_{c}.wav", speech(10 * i + c, 44100), 44100) for c in range(3)]
              for i, s in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"])}
    sounds["s1"] = [(name, upsampled(x, 44100, 8000), rate) for name, x, rate in sounds["s1"]]
    sounds["s5"] = [(name, resampled(x, 44100, 16000, "poly"), 16000) for name, x, _ in sounds["s5"]]
    root = tmp_path / "corpus"
    root.mkdir()
    sounds["s2"] = [(f"s2_{c}.mp3", write_mp3(root / f"s2_{c}.mp3", x, rate, 16), rate)
                    for c, (_, x, rate) in enumerate(sounds["s2"])]
    src, out = own_corpus(root, sounds), tmp_path / "shards"
    err = preprocess(capsys, src, out)
    found = re.search(r"clips' sound stops at different frequencies: 3 up to (\d+) Hz, 3 up to (\d+) Hz, 12 up to "
                      r"8000 Hz \(.*; the clips' files: 3 at 16000 Hz, 15 at 44100 Hz\)", err)
    assert found, err
    phone, mp3 = found.groups()
    assert 3800 <= int(phone) <= 4200 and 5000 <= int(mp3) <= 6200
    assert (f"1 of 6 speakers (s1) have every clip up to {phone} Hz; 1 of 6 speakers (s2) have every clip up to "
            f"{mp3} Hz, 0 some of theirs") in err


def test_full_band_clips_at_mixed_rates_and_unknown_ones_say_nothing(tmp_path, capsys):
    """Full-band sound in files at 16, 22.05, 44.1 and 48 kHz (every one's Nyquist frequency at or above the mel
    bands' top) fills every band: nothing said; nor of one speaker's clips too short to measure and another's too
    quiet (unknown: counted, read as half their rate)."""
    rates = {"s1": 16000, "s2": 22050, "s3": 44100, "s4": 48000}
    sounds = {s: [(f"{s}_{c}.wav", speech(10 * i + c, rate), rate) for c in range(3)]
              for i, (s, rate) in enumerate(rates.items())}
    sounds["s5"] = [(f"s5_{c}.wav", upsampled(speech(50 + c, 16000, 0.4), 16000, 8000), 16000) for c in range(3)]
    sounds["s6"] = [(f"s6_{c}.wav", speech(60 + c, 16000, level=3e-4), 16000) for c in range(3)]
    src, out = own_corpus(tmp_path / "corpus", sounds), tmp_path / "shards"
    code = main(["preprocess", "--no-ray", "--src", str(src), "--out", str(out), "data.modality=audio",
                 "data.split.folds=3"])
    printed = capsys.readouterr()
    assert code == 0 and "different frequencies" not in printed.err, printed.err
    summary = json.loads(printed.out)
    assert summary["bandwidths"] == {"8000": 12, "unknown": 6}
    assert summary["source_rates"] == {"16000": 9, "22050": 3, "44100": 3, "48000": 3}


def test_a_few_narrow_clips_of_many_speakers_name_no_speaker_in_a_sentence_of_its_own():
    """One narrow clip in each of three speakers' four: no speaker has only such clips, which the warning said as a
    sentence starting in lower case after the last one's full stop."""
    from avdis.data.bandwidth import bandwidth_cue

    speakers = [f"s{i}" for i in range(8) for _ in range(4)]
    bandwidths = [3910 if i in (1, 4, 6) and c == 0 else 8000 for i in range(8) for c in range(4)]
    cue = bandwidth_cue(speakers, [16000] * 32, bandwidths, FeatureConfig())
    assert cue.startswith("clips' sound stops at different frequencies: 3 up to 3910 Hz, 29 up to 8000 Hz"), cue
    assert "in the manifest). No speaker has only such clips, 3 some of theirs." in cue, cue


def gated(x: np.ndarray, rate: int, share: float) -> np.ndarray:
    """`x` through a hard noise gate: digital silence wherever its level over 10 ms is under `share` of its peak."""
    n = rate // 100
    level = np.convolve(np.abs(x), np.ones(n) / n, mode="same")
    return np.where(level >= share * np.abs(x).max(), x, 0).astype(np.float32)


def test_a_noise_gated_clip_reads_its_band_not_the_clicks_of_its_gate(tmp_path):
    """A gate that cuts to digital silence between words steps the sound to zero and back, a click over every band,
    so speech recorded at 8 kHz, saved at 16 kHz and gated read 8000 Hz (each seed here), as a full-band clip does, and
    a gated corpus's narrow speakers went unsaid. Frames holding such silence are left out of the spectrum: it reads
    its band (within 8% of 4000 Hz), and gated full-band speech still reads 8000; gated so hard that under half a
    second of whole frames is left, either is unknown (taken at half its rate), never the full band."""
    from avdis.data import bandwidth

    for seed in range(3):
        x = speech(seed, 16000, 3.0)
        narrow = bandwidth.measure(gated(upsampled(x, 16000, 8000), 16000, 0.06), 16000, 16000)
        assert narrow is not None and abs(narrow - 4000) <= 320, (seed, narrow)
        assert bandwidth.measure(gated(x, 16000, 0.06), 16000, 16000) == 8000, seed
        assert bandwidth.measure(gated(upsampled(x, 16000, 8000), 16000, 0.15), 16000, 16000) is None, seed
        assert bandwidth.measure(gated(x, 16000, 0.15), 16000, 16000) is None, seed


def band_limited(x: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    """`x` with nothing outside `low`-`high` Hz: a phone line's band, or a recording's low-pass."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, len(x)).astype(np.float32)


def test_a_phone_call_reads_one_band_in_an_8_khz_file_and_saved_at_16_or_44_1_khz(tmp_path, capsys):
    """A call of 300-3400 Hz read 4000 Hz in its 8 kHz file (a cut in the top fifth of a file's band was taken as its
    anti-aliasing filter) and 3420-3440 Hz saved at 16 or 44.1 kHz, so a phone corpus half in 8 kHz files and half
    saved at 16 kHz was warned of as two bands, naming the speakers of one. Each reads the line's band, and such a
    corpus says nothing."""
    calls = [band_limited(speech(seed, 8000, 3.0), 8000, 300, 3400) for seed in range(3)]
    for seed, call in enumerate(calls):
        read = []
        for rate, how in ((8000, None), (16000, "poly"), (44100, "swr")):
            write_clip(tmp_path / "call.wav", None, 0, call if how is None else resampled(call, 8000, rate, how), rate)
            read.append(measured(tmp_path / "call.wav"))
        assert all(3300 <= b <= 3600 for b in read), (seed, read)
    sounds = {s: [(f"{s}_{c}.wav", calls[c], 8000) if i < 3 else (f"{s}_{c}.wav", resampled(calls[c], 8000, 16000,
                                                                                            "poly"), 16000)
                  for c in range(3)] for i, s in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"])}
    err = preprocess(capsys, own_corpus(tmp_path / "corpus", sounds), tmp_path / "shards")
    assert "different frequencies" not in err, err


@pytest.mark.parametrize("sample_rate", [22050, 24000])
def test_a_16_khz_recording_cut_at_7_khz_reads_one_band_in_a_16_and_a_44_1_khz_file(tmp_path, sample_rate):
    """At data.features.sample_rate 22050 or 24000 such a recording read 8000 Hz in its 16 kHz file (the cut lay in
    the top fifth of the file's band) and ~7040 Hz saved at 44.1 or 48 kHz. Each reads its cut (within 10%)."""
    for seed in range(2):
        cut = band_limited(speech(seed, 16000, 3.0), 16000, 0, 7000)
        read = []
        for rate in (16000, 44100, 48000):
            write_clip(tmp_path / "cut.wav", None, 0, cut if rate == 16000 else resampled(cut, 16000, rate, "poly"),
                       rate)
            read.append(measured(tmp_path / "cut.wav", sample_rate))
        assert all(6700 <= b <= 7300 for b in read), (seed, read)


def test_no_bandwidth_under_2_khz_is_read_from_a_dip_below_a_cut_near_it():
    """Nothing under 2 kHz is looked for, yet the edge was sought up to 500 Hz below the first cliff: speech cut at
    2.3 kHz with a dip of 26 dB at 1600-1750 Hz read 1660 Hz, and speech cut at 1.8 kHz 1840-1860 Hz. The edge is
    sought from 2 kHz up: the first reads its cut (within 8%), the second 2 kHz, the lowest band looked for."""
    from avdis.data import bandwidth

    for seed in range(3):
        x = speech(seed, 16000, 3.0)
        spectrum, freqs = np.fft.rfft(band_limited(x, 16000, 0, 2300)), np.fft.rfftfreq(len(x), 1 / 16000)
        spectrum[(freqs > 1600) & (freqs < 1750)] *= 0.05
        dipped = bandwidth.measure(np.fft.irfft(spectrum, len(x)).astype(np.float32), 16000, 16000)
        assert abs(dipped - 2300) <= 0.08 * 2300, (seed, dipped)
        assert bandwidth.measure(band_limited(x, 16000, 0, 1800), 16000, 16000) == bandwidth.LOWEST_HZ, seed


def rolled_off(seed: int, cut: float, order: int) -> np.ndarray:
    """Speech recorded at 8 kHz through an anti-aliasing low-pass (Butterworth) at `cut` Hz: the sound fills the band
    up to it, as most 8 kHz corpora's do (a phone line's 3.4 kHz is not everywhere)."""
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, cut, fs=8000, output="sos"), speech(seed, 8000, 3.0)).astype(np.float32)


def test_an_8_khz_recording_filled_up_to_its_roll_off_reads_one_band_in_its_file_and_saved_at_16_khz(tmp_path,
                                                                                                      capsys):
    """Sound filling an 8 kHz file's band up to its low-pass at 3.7-3.8 kHz read 3730-3970 Hz in its 8 kHz file but
    8000 Hz saved at 16 kHz by scipy's resampler, as full-band sound does: its transition band mirrors the top few
    hundred Hz above 4 kHz only ~20 dB down, within 250 Hz of the cut, where no cliff of 25 dB was then left. A phone
    corpus saved at 16 kHz beside full-band speakers went unsaid, and one half in 8 kHz files was warned of as two
    bands. Each copy reads the band (3.6-4 kHz, within a tenth of each other), and the half-and-half corpus says
    nothing."""
    for seed in range(3):
        for cut, order in ((3700, 8), (3800, 12)):
            x = rolled_off(seed, cut, order)
            read = []
            for rate, how in ((8000, None), (16000, "poly"), (16000, "swr"), (44100, "poly")):
                write_clip(tmp_path / "call.wav", None, 0, x if how is None else resampled(x, 8000, rate, how), rate)
                read.append(measured(tmp_path / "call.wav"))
            assert all(3600 <= b <= 4000 for b in read) and max(read) <= 1.1 * min(read), (seed, cut, read)
    sounds = {s: [(f"{s}_{c}.wav", rolled_off(c, 3700, 8), 8000) if i < 3 else
                  (f"{s}_{c}.wav", resampled(rolled_off(c, 3700, 8), 8000, 16000, "poly"), 16000) for c in range(3)]
              for i, s in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"])}
    err = preprocess(capsys, own_corpus(tmp_path / "corpus", sounds), tmp_path / "shards")
    assert "different frequencies" not in err, err


@pytest.mark.parametrize("sample_rate", [22050, 24000, 48000])
def test_a_noise_gated_clip_reads_its_band_at_any_sample_rate(tmp_path, sample_rate):
    """A frame was a power of two of samples, 64 ms at 16 kHz but 85-93 ms at 22.05-48 kHz, so the clip gated at 6% of
    `test_a_noise_gated_clip_reads_its_band_not_the_clicks_of_its_gate` kept 11-12 frames free of its gate's silence
    at data.features.sample_rate 16000 but 0-7 at these, under the 8 that are half a second at 16 kHz: unknown, taken
    at half its file's rate, the full band. Frames are ~64 ms at any rate: it reads its band (within 8% of 4000 Hz),
    as at 16000."""
    for seed in range(3):
        x = speech(seed, 16000, 3.0)
        write_clip(tmp_path / "gated.wav", None, 0, gated(upsampled(x, 16000, 8000), 16000, 0.06), 16000)
        narrow = measured(tmp_path / "gated.wav", sample_rate)
        assert narrow is not None and abs(narrow - 4000) <= 320, (seed, narrow)
        write_clip(tmp_path / "gated.wav", None, 0, gated(x, 16000, 0.06), 16000)
        assert measured(tmp_path / "gated.wav", sample_rate) == 8000, seed


def test_the_advised_f_max_names_the_n_mels_it_needs_where_the_n_mels_set_is_refused_with_it(tmp_path, capsys):
    """A phone band reads ~3450 Hz, and at data.features.n_mels=160 (16 kHz) an f_max of 3450 leaves 10 mel bands
    without an FFT bin, which preprocessing refuses: the warning advised that f_max alone, the run it advised was
    refused. It names the n_mels to set with it, the one the refusal names, and the two taken say nothing; at the
    default n_mels the advice is as before."""
    sounds = {s: [(f"{s}_{c}.wav", band_limited(speech(10 * i + c, 8000, 3.0), 8000, 300, 3400), 8000) if i < 2 else
                  (f"{s}_{c}.wav", speech(10 * i + c, 16000), 16000) for c in range(3)]
              for i, s in enumerate(["s1", "s2", "s3", "s4", "s5", "s6"])}
    src = own_corpus(tmp_path / "corpus", sounds)
    err = preprocess(capsys, src, tmp_path / "shards", "data.features.n_mels=160")
    found = re.search(r"Set data.features.f_max=(\d+) \(the lowest bandwidth\) and data.features.n_mels=(\d+) "
                      r"\(at 160 that f_max leaves (\d+) mel bands empty, which is refused\)", err)
    assert found, err
    f_max, n_mels, empty = map(int, found.groups())
    assert 3300 <= f_max <= 3600 and empty == media._empty_mel_bands(FeatureConfig(f_max=f_max, n_mels=160), 160) > 0
    with pytest.raises(UsageError, match=f"data.features.n_mels <= {n_mels}, or"):
        media.check_mel_bands(FeatureConfig(f_max=f_max, n_mels=160))
    assert "different frequencies" not in preprocess(capsys, src, tmp_path / "shards", f"data.features.f_max={f_max}",
                                                     f"data.features.n_mels={n_mels}")
    err = preprocess(capsys, src, tmp_path / "default")
    assert f"Set data.features.f_max={f_max} (the lowest bandwidth) to give every clip the same bands" in err, err
