"""Media -> shards -> stream round trips, locally and through the moto S3 server; skips counted.

Damaged shards (hash mismatch, cut, broken headers, garbage samples) are tested in test_integrity.py.
"""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import s3_denied

from avdis import storage
from avdis.config import DataConfig, FeatureConfig, LoaderConfig, S3Config, SplitConfig
from avdis.data import media, shards, splits, stream

S3 = S3Config()


def data_cfg(src, out, **kw) -> DataConfig:
    return DataConfig(corpus="synthetic", src=str(src), shards=str(out), shard_size=16, **kw)


def all_batches(info, data, split, world=1, epoch=0, batch_size=8, stats=None):
    out = []
    for rank in range(world):
        out += list(stream.epoch_batches(info, data, S3, split, rank=rank, world=world, epoch=epoch, seed=0,
                                         batch_size=batch_size, stats=stats))
    return out


def test_round_trip_returns_the_same_arrays_and_labels(tiny_corpus, tiny_shards):
    data = data_cfg(tiny_corpus, tiny_shards)
    info = stream.open_dataset(data, S3)
    manifest = pq.read_table(f"{tiny_shards}/manifest.parquet").to_pandas().set_index("clip_id")
    batches = all_batches(info, data, None, batch_size=8)
    seen = 0
    for b in batches:
        for i, clip in enumerate(b["clip_id"]):
            row = manifest.loc[clip]
            feats = media.extract(row.audio_path, row.video_path, FeatureConfig())
            np.testing.assert_array_equal(b["audio"][i].numpy(), feats.audio.astype(np.float32))
            np.testing.assert_array_equal(b["video"][i].numpy(), feats.video)
            assert int(b["emotion"][i]) == row.emotion_idx and int(b["speaker"][i]) == row.speaker_idx
            assert int(b["audio_mask"][i].sum()) == row.audio_len
            assert b["shard"][i] == f"{tiny_shards}/shards/{row.shard}"  # errors can name where a clip came from
            seen += 1
            if seen >= 6:  # decoding again is slow; six clips from several shards are enough
                return


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_clip_of_the_split_exactly_once_per_epoch_with_equal_steps(tiny_corpus, tiny_shards, world):
    data = data_cfg(tiny_corpus, tiny_shards)
    info = stream.open_dataset(data, S3)
    for epoch in (0, 1):
        per_rank = [list(stream.epoch_batches(info, data, S3, "train", rank=r, world=world, epoch=epoch, seed=0,
                                              batch_size=5)) for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1  # same number of steps on every rank
        ids = [c for batches in per_rank for b in batches for c in b["clip_id"]]
        assert len(ids) == len(set(ids)) == info.split_counts["train"]
        for batches in per_rank:
            for b in batches:
                assert int(b["valid"].sum()) == len(b["clip_id"])


def test_an_evaluation_pass_pads_no_batch_beyond_its_clips(tiny_corpus, tiny_shards):
    """The embedding pass padded every batch to batch_size: with 2 ranks and batches of 16 the corpus's 72 clips came
    as 96 rows, a rank's last partial batch and a rank's step without clips (16 rows of zeros) run through the model
    for nothing. With pad=False a batch holds its clips (a step without clips, one row), and the model gives every
    clip what it gave it padded."""
    from avdis.config import Config, ModelConfig
    from avdis.model.multitask import build_model
    from avdis.train.engine import build_engine
    from avdis.train.step import embed

    data = data_cfg(tiny_corpus, tiny_shards)
    info = stream.open_dataset(data, S3)
    cfg = Config(model=ModelConfig(emb_dim=8))
    torch.manual_seed(0)
    engine = build_engine(build_model(cfg.model, info.features, len(info.emotions), len(info.speakers)), cfg.train,
                          False)
    rows = []
    for rank in range(2):
        padded, lean = (list(stream.epoch_batches(info, data, S3, None, rank=rank, world=2, epoch=0, seed=0,
                                                  batch_size=16, shuffle=False, pad=pad)) for pad in (True, False))
        assert [b["clip_id"] for b in padded] == [b["clip_id"] for b in lean]
        assert [len(b["valid"]) for b in lean] == [max(len(b["clip_id"]), 1) for b in lean]
        rows += [len(b["valid"]) for b in lean]
        a, b = embed(engine, padded), embed(engine, lean)
        assert list(a["clip_id"]) == list(b["clip_id"])
        for key in ("z_emo", "z_id", "emo_logits", "id_logits"):
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5)  # the same up to float rounding
    assert sum(rows) == 72 + 1  # was 96: a step without clips keeps one row, so every rank runs the model alike


def test_a_rank_reads_its_shards_in_a_new_order_every_epoch(tiny_shards):
    """Shards are dealt to ranks largest first (to balance their clips); read in that order, a rank saw nearly one
    sequence every epoch (8-9 of its first 10 shards alike on a corpus of 117), which the shuffle buffer, a few
    shards deep, cannot undo."""
    info = stream.open_dataset(data_cfg(None, tiny_shards), S3)
    shards = [stream.ShardRef(f"shard-{i}.tar", {"train": 10 + i % 37}, 1, "") for i in range(120)]
    varied = replace(info, shards=shards)
    for world in (1, 2):
        orders = [stream.EpochPlan.make(varied, "train", world, epoch, 0, 8).per_rank for epoch in range(10)]
        assert all(sorted(s.url for mine in o for s in mine) == sorted(s.url for s in shards) for o in orders)
        firsts = [tuple(s.url for s in o[0][:10]) for o in orders]
        shared = [len(set(a) & set(b)) for a, b in zip(firsts, firsts[1:])]
        assert max(shared) <= 4, f"the first 10 shards of rank 0 in consecutive epochs share {shared}"
        counts = [stream.EpochPlan.make(varied, "train", world, epoch, 0, 8).counts for epoch in range(10)]
        assert all(max(c) - min(c) <= 46 for c in counts)  # still balanced: within one shard's clips


def test_loader_workers_split_shards_without_loss(tiny_corpus, tiny_shards):
    data = data_cfg(tiny_corpus, tiny_shards, loader=LoaderConfig(workers=2))
    info = stream.open_dataset(data, S3)
    ids = [c for b in all_batches(info, data, "train", world=2) for c in b["clip_id"]]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == info.split_counts["train"]


def test_loader_workers_are_not_forks_of_the_trainer(tiny_corpus, tiny_shards):
    """A fork copies the locks the trainer's other threads hold (an import's, OpenSSL's) without the threads: a worker
    forked while a thread imported s3fs waited for ever, and the trainer with it. Workers come from a forkserver."""
    import psutil

    data = data_cfg(tiny_corpus, tiny_shards, loader=LoaderConfig(workers=2))
    info = stream.open_dataset(data, S3)
    batches = stream.epoch_batches(info, data, S3, None, rank=0, world=1, epoch=0, seed=0, batch_size=8)
    ids = next(batches)["clip_id"]  # the workers run until the last batch
    me = psutil.Process()
    forks = [p.pid for p in me.children() if p.cmdline() == me.cmdline()]
    servers = [p for p in me.children() if "multiprocessing.forkserver" in " ".join(p.cmdline())]
    assert not forks and len(servers) == 1 and len(servers[0].children()) == 2
    ids += [c for b in batches for c in b["clip_id"]]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == info.split_counts["all"]


def test_rerun_is_idempotent_and_writes_no_partial_files(tiny_corpus, tiny_shards, tmp_path):
    out = tmp_path / "again"
    data = data_cfg(tiny_corpus, out)
    first = shards.build_shards(data, S3)
    blobs = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    manifest = (out / "manifest.parquet").read_bytes()
    assert shards.build_shards(data, S3)["up_to_date"] is True
    again = shards.build_shards(data, S3, force=True)
    assert again["clips"] == first["clips"]
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == blobs  # identical bytes
    assert (out / "manifest.parquet").read_bytes() == manifest
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_splits_in_the_manifest(tiny_shards):
    manifest = pq.read_table(f"{tiny_shards}/manifest.parquet").to_pandas()
    per_speaker = manifest.groupby("speaker")["split"].apply(set)
    assert all(s == {"train", "val", "test"} for s in per_speaker)  # within_speaker: everyone everywhere
    folds = manifest.groupby("speaker")["fold"].nunique()
    assert (folds == 1).all() and manifest["fold"].nunique() == 4  # speaker_disjoint: a speaker in one fold


@pytest.mark.parametrize("per_emotion, emotions", [(1, 6), (2, 6), (3, 4), (5, 6)])
def test_within_speaker_splits_give_every_emotion_its_share(per_emotion, emotions):
    """Few clips per speaker: each split holds every emotion at its fraction over the corpus. Dealt from the same
    point in every speaker, 2 clips of each of 6 emotions sent 3 emotions, the same ones, to every test set."""
    cfg = SplitConfig()
    speakers = [f"s{s:02d}" for s in range(12) for _ in range(per_emotion * emotions)]
    labels = [f"e{j}" for _ in range(12) for j in range(emotions) for _ in range(per_emotion)]
    split = splits.within_speaker(speakers, labels, cfg)
    assert split == splits.within_speaker(speakers, labels, cfg)  # the same labels and seed give the same splits
    for name in ("train", "val", "test"):
        assert {s for s, x in zip(speakers, split) if x == name} == set(speakers)  # everyone in every split
        counts = [sum(x == name for x, e in zip(split, labels) if e == j) for j in set(labels)]
        assert max(counts) - min(counts) <= 1  # every emotion has its share, give or take a clip


def dealt_against_shares(speakers: list[str], labels: list[str], cfg: SplitConfig) -> float:
    """The within_speaker split of these clips, checked speaker by speaker (its split sizes, each of its emotions
    dealt as its clips are, rounded down or up); returns how far the furthest emotion's count in a split is from the
    sum of its speakers' shares."""
    split = splits.within_speaker(speakers, labels, cfg)
    clips: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        clips.setdefault(s, []).append(i)
    due: dict[tuple[str, str], float] = {}
    for idx in clips.values():
        sizes = dict(zip(splits.SPLITS, splits.split_sizes(len(idx), cfg)))
        assert {name: sum(split[i] == name for i in idx) for name in splits.SPLITS} == sizes
        for emotion in {labels[i] for i in idx}:
            held = [i for i in idx if labels[i] == emotion]
            for name, size in sizes.items():
                share = len(held) * size / len(idx)
                assert abs(sum(split[i] == name for i in held) - share) < 1
                due[emotion, name] = due.get((emotion, name), 0.0) + share
    return max(abs(sum(x == name and e == emotion for x, e in zip(split, labels)) - share)
               for (emotion, name), share in due.items())


def test_within_speaker_splits_give_every_emotion_its_share_when_speakers_hold_different_emotions():
    """24 speakers with a clip of 3 of 4 emotions each: dealt within each speaker alone, train held 10 clips of one
    emotion and 4 of another where each had 6 due, and test 9 and 3."""
    names = ["ang", "hap", "sad", "neu"]
    speakers = [f"s{s:02d}" for s in range(24) for _ in range(3)]
    labels = [names[(s + k) % 4] for s in range(24) for k in range(3)]
    split = splits.within_speaker(speakers, labels, SplitConfig())
    for name in splits.SPLITS:
        assert [sum(x == name and e == emotion for x, e in zip(split, labels)) for emotion in names] == [6] * 4


def test_within_speaker_splits_stay_within_a_clip_of_every_share_on_random_corpora():
    """Corpora of 1-40 speakers, 2-8 emotions, each speaker a random subset of them with 1-11 clips of each (some
    speakers with 1 or 2 clips): every emotion's count in a split is within one clip of its speakers' shares."""
    for corpus in range(40):
        rng = np.random.default_rng(corpus)
        speakers, labels, emotions = [], [], rng.integers(2, 9)
        for s in range(rng.integers(1, 41)):
            for e in rng.choice(emotions, rng.integers(1, emotions + 1), replace=False):
                n = rng.integers(1, rng.choice([2, 4, 12]))
                speakers += [f"s{s}"] * n
                labels += [f"e{e}"] * n
        assert dealt_against_shares(speakers, labels, SplitConfig(seed=corpus)) < 1


def test_within_speaker_deals_equally_good_roundings_by_an_explicit_tie_break():
    """A speaker with a clip of each of 6 emotions: every dealing of 3 train, 1 val and 2 test clips is equally good.
    The one taken rounds up at the first cell where two differ (emotions in name order, each train, val, test), on
    any install and for any seed; scipy's milp (HiGHS) gave c, a, b test, train, val, a choice of its version."""
    for seed in range(3):
        split = splits.within_speaker(["s"] * 6, ["c", "a", "b", "d", "e", "f"], SplitConfig(seed=seed))
        assert split == ["train", "train", "train", "val", "test", "test"]


def test_the_dealing_of_a_fixed_corpus_is_pinned():
    """Both split schemes of one fixed corpus (30 speakers holding 1 to 6 of 7 emotions, 1-9 clips of each, every
    fourth speaker 1 or 2 of each, so that equally good roundings are met; made by plain arithmetic, not a random
    generator) and seed, pinned by the sha256 of its sorted (clip, split, fold) rows.
    A split must depend on the clips, the settings and the seed alone, on every install (a solver's or numpy's
    version) and rerun. A change here means every corpus is split otherwise: shards must be made again (bump
    shards.DECODING, so preprocess rebuilds them) and the README's tables measured again on the new splits."""
    speakers, labels, clips = [], [], []
    for s in range(30):
        for e in range(7):
            if (5 * s + 3 * e) % 7 <= s % 6:
                for k in range(1 + (7 * s + 11 * e) % 9 if s % 4 else 1 + s % 2):
                    speakers.append(f"s{s:02d}")
                    labels.append(f"e{e}")
                    clips.append(f"s{s:02d}_e{e}_{k}")
    cfg = SplitConfig(seed=3)
    rows = sorted(zip(clips, splits.within_speaker(speakers, labels, cfg), splits.speaker_folds(speakers, cfg)))
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    assert (len(rows), digest) == (408, "fdcd6c69cd2e2fd80712c66a1a80012280a9456f8cab3e3294cf5ca81f5b4e9f")


def test_speaker_disjoint_scheme_keeps_test_speakers_out_of_train(tiny_corpus, tiny_shards):
    data = data_cfg(tiny_corpus, tiny_shards, split=SplitConfig(scheme="speaker_disjoint", fold=1))
    info = stream.open_dataset(data, S3)
    train = {int(s) for b in all_batches(info, data, "train") for s, ok in zip(b["speaker"], b["valid"]) if ok}
    test = {int(s) for b in all_batches(info, data, "test") for s, ok in zip(b["speaker"], b["valid"]) if ok}
    assert train and test and train.isdisjoint(test)


def test_shards_through_the_s3_server(tiny_corpus, s3_bucket):
    url = f"{s3_bucket}/shards/tiny"
    data = data_cfg(tiny_corpus, url)
    summary = shards.build_shards(data, S3)
    assert storage.exists(f"{url}/manifest.parquet") and storage.exists(f"{url}/rejects.parquet")
    assert len(storage.list_files(f"{url}/shards", ".tar")) == summary["shards"]
    info = stream.open_dataset(data, S3)
    ids = [c for b in all_batches(info, data, "train", world=2) for c in b["clip_id"]]
    assert len(ids) == len(set(ids)) == info.split_counts["train"]


def test_missing_bucket_fails_loudly(tiny_corpus, s3_server):
    data = data_cfg(tiny_corpus, "s3://no-such-bucket-avdis/shards")
    with pytest.raises(storage.StorageError, match="no-such-bucket-avdis"):
        shards.build_shards(data, S3)


def test_unreachable_shards_count_as_bad_shards(tiny_corpus, tiny_shards, tmp_path):
    import shutil

    out = tmp_path / "gone"
    shutil.copytree(tiny_shards, out)
    first = sorted((out / "shards").iterdir())[0]
    first.unlink()
    data = data_cfg(tiny_corpus, out, loader=LoaderConfig(max_skip_rate=1.0))
    info = stream.open_dataset(data, S3)
    stats = stream.SkipStats()
    all_batches(info, data, None, stats=stats)
    assert stats.bad_shards == 1 and "cannot open" in stats.reasons[0] and first.name in stats.reasons[0]
    meta = json.loads(pq.read_table(out / "manifest.parquet").schema.metadata[b"avdis"])
    assert stats.skipped_samples == next(s["clips"] for s in meta["shards"] if s["name"] == first.name)


def test_one_shard_made_again_under_a_run_is_told_in_the_singular(tmp_path):
    """One shard of a pass made again under the run was told '1 shards of split 'all' are no longer those the run
    started on'."""
    stats = stream.SkipStats(expected=4, delivered=2, bad_shards=1, reasons=["shard-000001.tar: size mismatch"],
                             rebuilt="manifest a when the run opened them, b now")
    with pytest.raises(stream.ShardsRebuilt, match=r"\(manifest a when the run opened them, b now\): 1 shard of split "
                                                   r"'all' is no longer as the run found it \(first: shard-000001"):
        stream.check_skip_rate(stats, data_cfg(tmp_path / "src", tmp_path / "out"), "all")


def test_shards_made_again_under_a_run_are_said_to_be_so_not_damaged(tmp_path):
    """A build writes its shards in place of the last one's, under their names: a run reading them on (a second
    `avdis preprocess` with another data.shard_size, a DECODING bump) found them damaged, and was told to make them
    again with --force, or, under max_skip_rate, trained on without them. It now stops, saying that they were made
    again, whatever the rate; the same while the build is under way (its manifest removed first)."""
    from avdis.config import SynthConfig
    from avdis.data import synth

    synth.generate(SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=5), tmp_path / "src")
    data = data_cfg(tmp_path / "src", tmp_path / "out", loader=LoaderConfig(max_skip_rate=1.0)).model_copy(
        update={"shard_size": 2})
    shards.build_shards(data, S3)
    info = stream.open_dataset(data, S3)
    assert len(all_batches(info, data, None)) == 1  # read whole
    shards.build_shards(data.model_copy(update={"shard_size": 3}), S3)
    now = shards.manifest_hash(str(tmp_path / "out"))
    with pytest.raises(stream.ShardsRebuilt, match=rf"{tmp_path / 'out'}: its shards were made again while this run "
                                                   rf"read them \(manifest {info.manifest_hash} when the run opened "
                                                   rf"them, {now} now\): \d shards of split 'all' are no longer"):
        all_batches(info, data, None)
    (tmp_path / "out" / shards.MANIFEST).unlink()
    with pytest.raises(stream.ShardsRebuilt, match="none whole now: a build is under way"):
        all_batches(info, data, None)


def test_clip_ids_with_dots_come_back_whole(tmp_path):
    """A ground_truth.csv may use file names as ids: WebDataset would split `c1.mp4` into fields; none is lost."""
    from corpus_trees import clip_media

    ids = ["c1.mp4", "s1.clip.02", "c%2E3", "c.3", "plain"]  # "c%2E3" and "c.3" must stay two clips
    rows = ["file,clip_id,speaker,emotion"]
    for i, clip_id in enumerate(ids):
        frames, audio = clip_media(i, seconds=1.0)
        media.write_clip(tmp_path / "src" / f"f{i}.mp4", frames, 12, audio, 16000)
        rows.append(f"f{i}.mp4,{clip_id},s{i % 2},{('happy', 'sad')[i // 2 % 2]}")
    (tmp_path / "src" / "ground_truth.csv").write_text("\n".join(rows) + "\n")
    data = data_cfg(tmp_path / "src", tmp_path / "out")
    summary = shards.build_shards(data, S3)
    assert summary["clips"] == len(ids) and summary["rejects"] == 0
    stats = stream.SkipStats()
    batches = all_batches(stream.open_dataset(data, S3), data, None, batch_size=2, stats=stats)
    assert sorted(c for b in batches for c in b["clip_id"]) == sorted(ids)
    assert stats.bad_samples == 0 and stats.bad_shards == 0 and stats.delivered == len(ids)


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(
        torch.equal(x[k], y[k]) if isinstance(x[k], torch.Tensor) else x[k] == y[k] for k in x) for x, y in zip(a, b))


def test_a_runs_cache_reads_each_sound_shard_once_and_a_bad_one_on_every_pass(tiny_corpus, tiny_shards, tmp_path):
    """Each epoch read, hashed and decoded every shard twice (training, then the embedding pass); with the run's
    `ShardCache` a sound shard is read once and its passes are the ones it had, while a damaged shard is read and
    counted again on every pass. A cache with no room for a shard keeps none."""
    import shutil

    out = tmp_path / "shards"
    shutil.copytree(tiny_shards, out)
    files = sorted((out / "shards").iterdir())
    damaged = bytearray(files[0].read_bytes())
    damaged[-1] ^= 1  # same size, other sha256
    files[0].write_bytes(bytes(damaged))
    data = data_cfg(tiny_corpus, out, loader=LoaderConfig(max_skip_rate=1.0))
    info = stream.open_dataset(data, S3)

    def passes(cache, stats):
        return [list(stream.epoch_batches(info, data, S3, split, rank=0, world=1, epoch=epoch, seed=0, batch_size=8,
                                          shuffle=split == "train", stats=stats, pad=split == "train", cache=cache))
                for epoch in (0, 1) for split in ("train", None)]

    plain = stream.SkipStats()
    before = passes(None, plain)
    cache = stream.ShardCache()
    first = passes(cache, stream.SkipStats())
    for f in files[1:]:  # the sound shards are kept: gone from storage, their clips still come
        f.unlink()
    stats = stream.SkipStats()
    again = passes(cache, stats)
    assert all(same_batches(x, y) for x, y in zip(before, first)) and all(map(same_batches, before, again))
    assert (stats.bad_shards, stats.skipped_samples) == (plain.bad_shards, plain.skipped_samples)
    assert stats.bad_shards == 4 and stats.skipped_samples > 16  # the damaged shard, on each of the 4 passes
    assert all("sha256 mismatch" in r and files[0].name in r for r in stats.reasons)  # counted on every pass
    assert stats.unread_shards == 0
    small = stream.ShardCache(limit=cache.held // 8)  # less than any shard's clips (16, 16, 16 and 8)
    assert passes(small, stream.SkipStats()) and small.held == 0


def recorded_reads(monkeypatch) -> list[str]:
    """The URLs storage.read_bytes reads from here on, in order."""
    reads, real = [], storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda url, s3=None: reads.append(url) or real(url, s3))
    return reads


def test_opening_the_data_reads_its_manifest_once_and_records_the_hash_of_that_read(tiny_corpus, tiny_shards,
                                                                                     monkeypatch):
    """Every trial worker opens the data: it downloaded manifest.parquet twice, once for the table and once for the
    hash its run records, which then was that of another read than the one it trained on (a manifest rewritten
    between the two). One read gives both."""
    from avdis.data.shards import manifest

    reads = recorded_reads(monkeypatch)
    monkeypatch.setattr(manifest, "_READ", {})  # none read before in this process
    info = stream.open_dataset(data_cfg(tiny_corpus, tiny_shards), S3)
    assert reads == [f"{tiny_shards}/manifest.parquet"]
    assert info.manifest_hash == shards.manifest_hash(tiny_shards)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_manifest_is_downloaded_again_only_once_it_changed(tiny_corpus, tmp_path, monkeypatch, request, where):
    """The start of a run read manifest.parquet 4 times (its checks, the resume check's hash, the data it opens,
    the loop's), a sweep's 5: each a download of a file that is megabytes for a large corpus on S3. It is read once,
    and again when it was written since (a rebuild), which the next read then sees."""
    from avdis.data.shards import manifest

    url = f"{request.getfixturevalue('s3_bucket')}/shards" if where == "s3" else str(tmp_path / "shards")
    data = data_cfg(tiny_corpus, url)
    shards.build_shards(data, S3)
    reads = recorded_reads(monkeypatch)
    monkeypatch.setattr(manifest, "_READ", {})
    table, meta = shards.read_manifest(url, S3)
    meta["emotions"].append("scribbled on")  # a caller's change to what it was given is its own
    first = shards.manifest_hash(url, S3)
    assert stream.open_dataset(data, S3).manifest_hash == first and shards.read_manifest(url, S3)[1] != meta
    assert len(reads) == 1
    made = shards.build_shards(data.model_copy(update={"shard_size": 3}), S3)
    reads.clear()  # the build's own (the old manifest and rejects, kept should no clip decode)
    assert not made["up_to_date"] and shards.manifest_hash(url, S3) != first and len(reads) == 1
    assert shards.read_manifest(url, S3)[1]["shard_size"] == 3 and len(reads) == 1


def test_a_rebuild_where_deletes_are_refused_stops_naming_the_file(tiny_corpus, tiny_shards, s3_bucket):
    """A rebuild deleted the old manifest and stray shards with s3fs's rm, whose DeleteObjects answers 200 with a
    refusal per key that s3fs drops: where s3:DeleteObject is denied (a bucket policy, a role; a sweep that makes its
    shards does not check) it went on as if they were gone, and the stray shard left beside the new ones rebuilt
    every later run's shards again. Now the first delete refused stops it, naming the file and the permission, with
    the old manifest in place. moto enforces the bucket policy's Deny as AWS does."""
    url = f"{s3_bucket}/shards"
    fs, path = storage.filesystem(url)
    fs.put(tiny_shards + "/", path + "/", recursive=True)
    fs.pipe_file(f"{path}/{shards.SHARD_DIR}/shard-000099.tar", b"left by an older build")
    manifest = storage.read_bytes(f"{url}/{shards.MANIFEST}")
    with s3_denied(s3_bucket, "s3:DeleteObject"), pytest.raises(storage.StorageError) as refused:
        shards.build_shards(data_cfg(tiny_corpus, url), S3)
    said = str(refused.value)
    assert said.startswith(f"{url}/{shards.MANIFEST}: cannot delete") and "s3:DeleteObject" in said, said
    assert storage.read_bytes(f"{url}/{shards.MANIFEST}") == manifest
