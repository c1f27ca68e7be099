"""Clips recorded at different sample rates: the rate is recorded per clip, a corpus whose rates differ is warned of
(by rate and by speaker), and data.features.f_max gives an 8 kHz and a 16 kHz recording the same mel bands.

The corpora are WAV files written here with the project's own writer, preprocessed by `avdis preprocess --no-ray`."""

from __future__ import annotations

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
    """Two of six speakers recorded at 8 kHz: their clips' mel bands above 4 kHz are empty, so the bandwidth names
    them, and preprocessing said nothing of it."""
    rates = {"s1": 8000, "s2": 8000, "s3": 16000, "s4": 16000, "s5": 16000, "s6": 16000}
    src, out = corpus(tmp_path / "corpus", rates), tmp_path / "shards"
    err = preprocess(capsys, src, out)
    assert "warning: clips recorded at different sample rates: 6 at 8000 Hz, 12 at 16000 Hz" in err
    assert "2 of 6 speakers (s1, s2) have every clip recorded below 16000 Hz, 0 some of theirs" in err
    assert "the bandwidth names the speaker" in err and "Set data.features.f_max=4000 (half the lowest rate)" in err
    table = pq.read_table(out / "manifest.parquet")
    assert dict(zip(table.column("clip_id").to_pylist(), table.column("source_rate").to_pylist())) == {
        f"{s}_{c}": rate for s, rate in rates.items() for c in range(3)}
    assert "clips recorded at different sample rates" in preprocess(capsys, src, out)  # up to date: said again
    # the advice taken: the shards are made again, every clip's bands stop at 4 kHz, and nothing is said
    err = preprocess(capsys, src, out, "data.features.f_max=4000")
    assert "sample rates" not in err
    assert pq.read_table(out / "manifest.parquet").schema.metadata[b"avdis"].count(b'"f_max": 4000.0') == 1


def test_a_corpus_recorded_at_one_rate_says_nothing_of_rates(tmp_path, capsys):
    """Every clip at 8 kHz: all lack the same bands, which tell no speaker from another."""
    src, out = corpus(tmp_path / "corpus", {f"s{i}": 8000 for i in range(6)}), tmp_path / "shards"
    err = preprocess(capsys, src, out)
    assert "sample rates" not in err
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
    shards.build_shards(data, S3Config())
    table, meta = shards.read_manifest(data.shards)  # as an earlier avdis wrote it: no source_rate, no f_max
    assert "f_max" not in meta["features"]
    storage.write_parquet(str(tmp_path / "out" / shards.MANIFEST), table.drop_columns(["source_rate"]), S3Config())
    again = shards.build_shards(data, S3Config())
    assert again["up_to_date"] and "source_rates" not in again and "bandwidth_cue" not in again
    narrow = data.model_copy(update={"features": FeatureConfig(f_max=4000)})
    with pytest.raises(UsageError, match=r"data\.features\.f_max=4000\.0 \(made with None\)"):
        shards.check_made_with(narrow, shards.read_manifest(data.shards)[1])
    made = shards.build_shards(narrow, S3Config())
    assert made["rebuilt_because"] == "changed since the shards were made: data.features.f_max None -> 4000.0"
    assert made["source_rates"] == {"8000": 3, "16000": 6} and "bandwidth_cue" not in made


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
        assert f"warning: {data['shards']}: clips recorded at different sample rates: 3 at 8000 Hz" in err
        assert "Set data.features.f_max=4000" in err
    even = {**data, "src": str(corpus(tmp_path / "even", {"s1": 16000, "s2": 16000, "s3": 16000})),
            "shards": str(tmp_path / "even_shards")}
    for _ in range(2):
        prepare.ensure_shards(C.Config.model_validate({"data": even}))
        assert "sample rates" not in capsys.readouterr().err
