"""Corrupt data never trains silently: damaged shards are skipped by name, non-finite numbers fail the epoch.

Each test copies the session's tiny shards to tmp_path and damages the copy: random bytes
inside a sample (the tar stays valid), a broken tar header mid-shard, a cut-off shard, a
garbage sample, NaN features behind a manifest that matches them ("resealed").
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avdis import storage
from avdis.config import Config, DataConfig, LoaderConfig, S3Config
from avdis.data import shards, stream
from avdis import results
from avdis.train import launch
from avdis.train.loop import NonFiniteError
from test_train_single import single

S3 = S3Config()


def copy_shards(tiny_shards: str, tmp_path: Path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(tiny_shards, out)
    return out


def shard_file(out: Path, index: int) -> Path:
    return sorted((out / "shards").iterdir())[index]


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def manifest_meta(out: Path) -> dict:
    return json.loads(pq.read_table(out / "manifest.parquet").schema.metadata[b"avdis"])


def reseal(out: Path, path: Path) -> None:
    """Make the manifest promise the shard's bytes as they are now (a damaged shard that passes the hash)."""
    table = pq.read_table(out / "manifest.parquet")
    meta = manifest_meta(out)
    data = path.read_bytes()
    entry = next(s for s in meta["shards"] if s["name"] == path.name)
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    pq.write_table(table.replace_schema_metadata({"avdis": json.dumps(meta)}), out / "manifest.parquet")


def write_random_bytes(path: Path) -> None:
    """4 KiB of seeded random bytes over the array data of one sample; sizes and tar headers unchanged."""
    victim = next(m for m in members(path) if m.name.endswith("video.npy"))
    data = bytearray(path.read_bytes())
    start = victim.offset_data + 256
    data[start : start + 4096] = np.random.default_rng(0).bytes(4096)
    path.write_bytes(bytes(data))


def break_header(path: Path) -> None:
    """Overwrite the tar header of a member in the middle of the shard."""
    m = members(path)
    victim = m[len(m) // 2]
    data = bytearray(path.read_bytes())
    data[victim.offset : victim.offset + 512] = b"\xab" * 512
    path.write_bytes(bytes(data))


def nan_audio(path: Path, split: str | None = None) -> list[str]:
    """Set the audio features of the shard's clips (of one within-speaker split, or all) to NaN, in place."""
    with tarfile.open(path) as tar:
        found = {m.name: (m, tar.extractfile(m).read()) for m in tar.getmembers()}
    manifest = pq.read_table(path.parent.parent / shards.MANIFEST).to_pandas()
    wanted = set(manifest.clip_id[manifest.split == split]) if split else set(manifest.clip_id)
    data = bytearray(path.read_bytes())
    clips = []
    for name, (m, blob) in found.items():
        if not name.endswith(".json") or json.loads(blob)["clip_id"] not in wanted:
            continue
        key = name[: -len(".json")]
        audio_member, audio = found[f"{key}.audio.npy"]
        buf = io.BytesIO()
        np.save(buf, np.full_like(np.load(io.BytesIO(audio)), np.nan))
        assert len(buf.getvalue()) == audio_member.size
        data[audio_member.offset_data : audio_member.offset_data + audio_member.size] = buf.getvalue()
        clips.append(json.loads(blob)["clip_id"])
    path.write_bytes(bytes(data))
    return clips


def data_cfg(tiny_corpus, out, **loader) -> DataConfig:
    return DataConfig(corpus="synthetic", src=str(tiny_corpus), shards=str(out), shard_size=16,
                      loader=LoaderConfig(**loader))


def read_all(data: DataConfig, stats: stream.SkipStats | None = None) -> set[str]:
    info = stream.open_dataset(data, S3)
    batches = stream.epoch_batches(info, data, S3, None, rank=0, world=1, epoch=0, seed=0, batch_size=8, stats=stats)
    return {c for b in batches for c in b["clip_id"]}


def clips_of(out: Path, shard: str) -> set[str]:
    table = pq.read_table(out / "manifest.parquet", columns=["clip_id", "shard"]).to_pandas()
    return set(table[table["shard"] == shard]["clip_id"])


def strict_json(path: Path) -> dict:
    def refuse(token: str):
        raise AssertionError(f"{path} holds bare {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ------------------------------------------------------------------ the stream


@pytest.mark.parametrize("where", ["local, 2 loader workers", "s3, 2 loader workers"])
def test_random_bytes_in_a_shard_skip_it_by_name_and_reason(tiny_corpus, tiny_shards, tmp_path, where, request):
    """Counted in loader workers, named in the trainer. The S3 case runs after the local one has started the loader's
    forkserver, before the S3 server's variables were set: its workers read with the trainer's environment of now."""
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 1)
    promised = next(s["sha256"] for s in manifest_meta(out)["shards"] if s["name"] == bad.name)
    write_random_bytes(bad)
    url = str(out)
    if where.startswith("s3"):
        url = f"{request.getfixturevalue('s3_bucket')}/shards"
        fs, path = storage.filesystem(url)
        fs.put(f"{out}/", f"{path}/", recursive=True)
    stats = stream.SkipStats()
    got = read_all(data_cfg(tiny_corpus, url, workers=2, max_skip_rate=1.0), stats)
    assert stats.bad_shards == 1 and stats.bad_samples == 0
    assert got.isdisjoint(clips_of(out, bad.name)) and stats.skipped_samples == len(clips_of(out, bad.name))
    assert stats.reasons == [f"shard {url}/shards/{bad.name}: sha256 mismatch: manifest says {promised}, "
                             f"read {hashlib.sha256(bad.read_bytes()).hexdigest()}"]
    with pytest.raises(stream.SkipRateExceeded, match=rf"{bad.name}: sha256 mismatch"):
        read_all(data_cfg(tiny_corpus, url, workers=2, max_skip_rate=0.01))


def test_only_shards_storage_did_not_hand_over_make_the_error_worth_a_restart(tiny_corpus, tiny_shards, tmp_path):
    """Ray Train restarts a run only for an error that may pass (`retryable`): a shard found bad comes back at every
    restart (train.max_failures=-1 restarted such a run for ever), one storage did not hand over may not."""
    out = copy_shards(tiny_shards, tmp_path)
    shard_file(out, 0).unlink()  # as a read storage refused
    with pytest.raises(stream.SkipRateExceeded, match="cannot open") as unread:
        read_all(data_cfg(tiny_corpus, out))
    assert unread.value.retryable
    write_random_bytes(shard_file(out, 1))
    with pytest.raises(stream.SkipRateExceeded, match="sha256 mismatch") as bad:
        read_all(data_cfg(tiny_corpus, out))
    assert not bad.value.retryable


def test_a_broken_tar_header_mid_shard_is_named(tiny_corpus, tiny_shards, tmp_path):
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 0)
    break_header(bad)
    stats = stream.SkipStats()
    read_all(data_cfg(tiny_corpus, out, max_skip_rate=1.0), stats)
    assert stats.bad_shards == 1 and len(stats.reasons) == 1
    assert bad.name in stats.reasons[0] and "sha256 mismatch" in stats.reasons[0]
    with pytest.raises(stream.SkipRateExceeded, match=rf"first problems: shard \S+{bad.name}: sha256 mismatch"):
        read_all(data_cfg(tiny_corpus, out))


def test_a_shard_with_fewer_clips_than_its_manifest_lists_is_named(tiny_corpus, tiny_shards, tmp_path):
    """Even where the hash matches, a tar that ends early (tarfile reads a bad header as the end) is a named skip."""
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 0)
    break_header(bad)
    reseal(out, bad)
    stats = stream.SkipStats()
    got = read_all(data_cfg(tiny_corpus, out, max_skip_rate=1.0), stats)
    n = len(clips_of(out, bad.name))
    assert stats.skipped_samples == n - len(got & clips_of(out, bad.name)) > 0
    assert stats.reasons == [f"shard {out}/shards/{bad.name}: ended after {n - stats.skipped_samples} of the {n} "
                             f"clips the manifest lists"]


def test_cut_shard_and_garbage_sample_are_counted_not_hidden(tiny_corpus, tiny_shards, tmp_path):
    out = copy_shards(tiny_shards, tmp_path)
    cut, garbled = shard_file(out, 0), shard_file(out, 1)
    cut.write_bytes(cut.read_bytes()[: members(cut)[7].offset_data + 100])  # cut in the middle of a sample
    with tarfile.open(garbled) as tar:
        found = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    victim = next(m.name for m, _ in found if m.name.endswith("video.npy"))
    with tarfile.open(garbled, "w") as tar:
        for m, blob in found:
            if m.name == victim:
                blob = b"not an npy file"
                m.size = len(blob)
            tar.addfile(m, io.BytesIO(blob))
    reseal(out, garbled)  # preprocess wrote it so: the manifest matches, the sample is still garbage
    stats = stream.SkipStats()
    got = read_all(data_cfg(tiny_corpus, out, max_skip_rate=1.0), stats)
    assert stats.bad_shards == 1 and stats.bad_samples == 1
    assert stats.skipped_samples == len(clips_of(out, cut.name)) + 1 == 72 - len(got)
    assert any(f"{cut.name}: size mismatch: manifest says" in r for r in stats.reasons)
    assert any(f"{garbled.name}: {victim.split('.')[0]}: " in r for r in stats.reasons)  # the bad sample is named
    with pytest.raises(stream.SkipRateExceeded, match="did not arrive"):
        read_all(data_cfg(tiny_corpus, out))


def test_a_sample_without_its_video_in_shards_of_video_is_named_not_trained_on_black_frames(tiny_corpus, tiny_shards,
                                                                                          tmp_path):
    """A shard written without one clip's video.npy (by a writer of the user's own, so the hash matches): that clip
    is a named bad sample. Before, it was decoded as a clip of audio alone and trained with black frames."""
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 1)
    with tarfile.open(bad) as tar:
        found = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    victim = next(m.name for m, _ in found if m.name.endswith("video.npy"))
    with tarfile.open(bad, "w") as tar:
        for m, blob in found:
            if m.name != victim:
                tar.addfile(m, io.BytesIO(blob))
    reseal(out, bad)
    stats = stream.SkipStats()
    got = read_all(data_cfg(tiny_corpus, out, max_skip_rate=1.0), stats)
    key = victim.removesuffix(".video.npy")
    assert stats.bad_samples == 1 and stats.skipped_samples == 1 and len(got) == 71
    assert stats.reasons == [f"sample {out}/shards/{bad.name}: {key}: ValueError: no video.npy, where the manifest's "
                             f"shards hold video"]


# ------------------------------------------------------------------ training


def train_on(out: Path, tmp_path: Path, *overrides: str):
    return launch.train(single(str(out), tmp_path / "runs", "train.epochs=1", "probe.epochs=20", *overrides))


def test_training_past_a_corrupt_shard_gives_finite_metrics(tiny_shards, tmp_path, capsys):
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 2)
    write_random_bytes(bad)
    result = train_on(out, tmp_path, "data.loader.max_skip_rate=0.5")
    final = result["final"]
    assert final["skipped_shards"] == 1 and final["skipped_samples"] > 0
    # the evaluation pass reads every split: all of the shard's clips are missing from the metrics, and it says so
    assert final["eval_skipped_samples"] == len(clips_of(out, bad.name))
    assert (f", skipped {final['skipped_samples']} clips (1 bad shard), {final['eval_skipped_samples']} clips "
            "missing from the evaluation") in capsys.readouterr().out
    for key in ("loss", "emotion_acc", "leakage"):
        assert np.isfinite(final[key]), key
    assert -1.0 <= final["leakage"] <= 1.0
    assert strict_json(Path(result["metrics_file"]))["history"][0]["skipped_shards"] == 1


def test_nan_features_fail_the_step_naming_it_and_save_nothing(tiny_shards, tmp_path):
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 0)
    clips = nan_audio(bad)
    reseal(out, bad)  # the hash matches: only the loss check can catch it
    with pytest.raises(NonFiniteError, match=r"epoch 1, step \d+ of \d+: non-finite \{.*'loss': nan") as err:
        train_on(out, tmp_path)
    message = str(err.value)
    assert any(f"{c} in {bad}" in message.split("non-finite audio features in")[1] for c in clips)
    assert "No checkpoint was saved" in message
    run = tmp_path / "runs" / "run"
    assert not list(run.glob("checkpoint_epoch_*")) and not (run / "metrics.json").exists()


def test_nan_features_under_orthogonal_fail_the_step_naming_it_not_in_a_cholesky_traceback(tiny_shards, tmp_path):
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 0)
    nan_audio(bad)
    reseal(out, bad)
    with pytest.raises(NonFiniteError, match=r"epoch 1, step \d+ of \d+: non-finite \{.*'loss': nan"):
        train_on(out, tmp_path, "method.name=orthogonal", "method.weight=1.0")


def test_nan_features_of_test_clips_fail_the_embedding_pass(tiny_shards, tmp_path):
    """Test clips never reach the loss; their NaN outputs once made the probe report leakage -5."""
    out = copy_shards(tiny_shards, tmp_path)
    bad = shard_file(out, 1)
    clips = nan_audio(bad, split="test")
    reseal(out, bad)
    with pytest.raises(NonFiniteError, match=rf"epoch 1: the model gave non-finite outputs for {len(clips)} clips"
                                             rf" in the embedding pass") as err:
        train_on(out, tmp_path)
    assert bad.name in str(err.value) and clips[0] in str(err.value)
    assert not list((tmp_path / "runs" / "run").glob("checkpoint_epoch_*"))


def test_one_clip_with_non_finite_outputs_is_counted_as_one_clip():
    """The embedding pass's error read 'non-finite outputs for 1 clips' where one clip gave them."""
    from avdis.train.loop import OUTPUTS, _check_embeddings

    emb = {k: np.zeros((3, 2), np.float32) for k in OUTPUTS}
    emb["z_emo"][1, 0] = np.nan
    emb.update(clip_id=np.array(["a", "b", "c"]), shard=np.array(["s0", "s0", "s1"]))
    with pytest.raises(NonFiniteError, match=r"non-finite outputs for 1 clip in the embedding pass \(first: \['b'\]\)"):
        _check_embeddings(emb, 0)


# ------------------------------------------------------------------ the sweep's record


def test_a_trial_with_a_non_finite_objective_is_an_error_never_on_the_front(tmp_path):
    from ray.tune.experiment import Trial

    from avdis.tune.records import TrialRecorder

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    cfg = Config()
    recorder = TrialRecorder(str(sweep), cfg)
    recorder.setup()
    for tid, leakage, val_leakage in (("good", 0.3, 0.4), ("nan", float("nan"), 0.4), ("nan-val", 0.3, float("nan"))):
        trial = Trial("trainable", config={"method": "multitask"}, trial_id=tid, stub=True)
        recorder.on_trial_start(0, [], trial)
        recorder.on_trial_result(1, [], trial, {"epoch": cfg.train.epochs, "emotion_acc": 0.6, "leakage": leakage,
                                                "val_emotion_acc": 0.5, "val_leakage": val_leakage,
                                                "emotion_chance": 0.25})
        recorder.on_trial_complete(2, [], trial)
    table = results.read_trials(str(sweep)).set_index("trial_id")
    assert table.loc["good", "status"] == "TERMINATED"
    for tid in ("nan", "nan-val"):  # a validation number the front is chosen on counts as an objective
        assert table.loc[tid, "status"] == "ERROR" and "non-finite objectives" in table.loc[tid, "error"]
    assert table.loc["nan", "leakage"] is None or np.isnan(table.loc["nan", "leakage"])
    summary = results.summarize(table.reset_index(), "s")
    assert summary["front"] == ["good"] and summary["selected_on"] == "val"


def _count_skips_on(rank: int, world: int, store: str, out) -> None:
    import torch.distributed as dist

    from avdis.data.stream import SkipStats
    from avdis.train.loop import _all_ranks

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    mine = SkipStats(expected=10, delivered=10 - 3 * rank, bad_shards=rank, reasons=[f"shard {rank}"] * rank)
    total = _all_ranks(mine)
    out.put((rank, total.expected, total.skipped_samples, total.bad_shards, total.reasons))
    dist.destroy_process_group()


def test_skipped_clips_are_summed_over_ranks(tmp_path):
    """Rank 1 read the bad shard: rank 0, which reports, used to say nothing was skipped."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_count_skips_on, args=(r, 2, str(tmp_path / "store"), out)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert got == [(0, 20, 3, 1, ["shard 1"]), (1, 20, 3, 1, ["shard 1"])]


def test_the_skip_error_says_to_rebuild_a_shard_damaged_in_place_with_force(tiny_corpus, tiny_shards, tmp_path):
    """A shard whose bytes changed but not its size: a preprocess rerun calls it up to date (it compares sizes), so
    the error must say --force, or the user reruns preprocess, is told nothing changed, and fails the same way."""
    out = copy_shards(tiny_shards, tmp_path)
    write_random_bytes(shard_file(out, 1))
    data = data_cfg(tiny_corpus, out)
    assert shards.build_shards(data, S3)["up_to_date"] is True
    with pytest.raises(stream.SkipRateExceeded, match=rf"sha256 mismatch.*`avdis preprocess --out {out} --force`"):
        read_all(data)
    shard_file(out, 1).unlink()
    with pytest.raises(stream.SkipRateExceeded, match=r"cannot open.*check that storage holds those shards") as exc:
        read_all(data)
    assert "--force" not in str(exc.value)
