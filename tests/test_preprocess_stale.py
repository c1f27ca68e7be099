"""`preprocess` is up to date only for unchanged source files and exactly the manifest's shards on disk."""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from avdis import storage, storage_lock
from avdis.config import Config, DataConfig, FeatureConfig, S3Config, SplitConfig, SynthConfig
from avdis.data import prepare, shards, synth
from avdis.data.shards import made_with
from avdis.data.corpora import scan
from avdis.errors import UsageError

S3 = S3Config()
FEAT = FeatureConfig(n_mels=16, window_s=0.5, fps=4, face_size=16)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """16 short clips (4 speakers x 4, 2 emotions): a rebuild takes about a second."""
    from avdis.data import synth

    out = tmp_path_factory.mktemp("corpus")
    synth.generate(SynthConfig(speakers=4, emotions=2, clips_per_speaker=4, duration_s=0.5, seed=1), out)
    return out


def data_cfg(src: Path, out: Path | str, shard_size: int = 4) -> DataConfig:
    return DataConfig(corpus="synthetic", src=str(src), shards=str(out), shard_size=shard_size, features=FEAT)


def manifest(out: Path) -> tuple[list[dict], dict[str, int]]:
    """The manifest's rows and its shards' recorded byte sizes."""
    table, meta = shards.read_manifest(str(out))
    return table.to_pylist(), {s["name"]: s["bytes"] for s in meta["shards"]}


def on_disk(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (out / "shards").iterdir()}


def sample(out: Path, clip_id: str, part: str) -> np.ndarray:
    """One array of one clip, read from the shard the manifest puts it in."""
    rows, _ = manifest(out)
    shard = next(r["shard"] for r in rows if r["clip_id"] == clip_id)
    with tarfile.open(out / "shards" / shard) as tar:
        return np.load(io.BytesIO(tar.extractfile(f"{clip_id}.{part}").read()))


def clip_ids_in_shards(out: Path) -> list[str]:
    ids = []
    for path in sorted((out / "shards").iterdir()):
        with tarfile.open(path) as tar:
            ids += [m.name.split(".")[0] for m in tar.getmembers() if m.name.endswith(".json")]
    return sorted(ids)


def test_a_source_clip_overwritten_in_place_is_read_again(corpus, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(corpus, src)
    data = data_cfg(src, out)
    shards.build_shards(data, S3)
    rows, _ = manifest(out)
    victim = rows[0]
    donor = next(r for r in rows if r["speaker"] != victim["speaker"] and r["emotion"] != victim["emotion"])
    before, donor_audio = sample(out, victim["clip_id"], "audio.npy"), sample(out, donor["clip_id"], "audio.npy")
    Path(victim["source_path"]).write_bytes(Path(donor["source_path"]).read_bytes())  # new content, same name

    again = shards.build_shards(data, S3)
    assert again["up_to_date"] is False  # it said "source files, settings or decoding changed" for any of them
    assert again["rebuilt_because"] == ("changed since the shards were made: the corpus (a clip added, removed or "
                                        "relabelled, or a source file's size, time or whether the user can read it "
                                        "changed)")
    after = sample(out, victim["clip_id"], "audio.npy")
    assert np.array_equal(after, donor_audio) and not np.array_equal(after, before)
    assert shards.build_shards(data, S3)["up_to_date"] is True


def test_interrupted_shard_size_change_then_original_rerun_rebuilds_without_loss(corpus, tmp_path):
    out = tmp_path / "out"
    data = data_cfg(corpus, out, shard_size=4)
    shards.build_shards(data, S3)
    # A rerun with shard_size=3 killed before its manifest: it rewrote shard 0 (3 clips now) and added shard 5.
    other = data_cfg(corpus, out, shard_size=3)
    records, _ = scan(other.corpus, other.src)
    tasks = shards.plan(records, other)
    for task in (tasks[0], tasks[5]):
        shards.write_shard(task, str(out), other.features, S3)

    again = shards.build_shards(data, S3)
    assert again["up_to_date"] is False
    assert "shard-000000.tar has" in again["rebuilt_because"]
    assert "shard-000005.tar is not in the manifest" in again["rebuilt_because"]
    rows, listed = manifest(out)
    assert on_disk(out) == listed  # every listed shard at its recorded size, and nothing else
    assert clip_ids_in_shards(out) == sorted(r["clip_id"] for r in rows) == sorted(r.clip_id for r in records)
    assert shards.build_shards(data, S3)["up_to_date"] is True


def test_an_interrupted_rebuild_leaves_no_manifest_nor_old_rejects_beside_new_shards(corpus, tmp_path):
    out = tmp_path / "out"
    data = data_cfg(corpus, out, shard_size=4)
    shards.build_shards(data, S3)
    other = data_cfg(corpus, out, shard_size=3)

    def killed_after_one_shard(tasks):
        yield shards.write_shard(tasks[0], str(out), other.features, S3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shards.build_shards(other, S3, run_tasks=killed_after_one_shard)
    assert not (out / shards.MANIFEST).exists()  # nothing claims the mixed shards are a dataset
    assert not (out / shards.REJECTS).exists()  # nor that the old build's rejects are this one's
    assert shards.build_shards(data, S3)["rebuilt_because"] == "no manifest"
    assert on_disk(out) == manifest(out)[1]


def test_force_rebuilds_and_deletes_shard_files_the_manifest_does_not_list(corpus, tmp_path):
    out = tmp_path / "out"
    cfg = Config(data=data_cfg(corpus, out))
    prepare.preprocess(cfg, use_ray=False, generate=False)
    before = on_disk(out)
    (out / "shards" / "shard-000099.tar").write_bytes(b"left by an older build")

    forced = prepare.preprocess(cfg, use_ray=False, generate=False, force=True)
    assert on_disk(out) == before == manifest(out)[1]
    assert forced["up_to_date"] is False and forced["rebuilt_because"] == "forced"
    assert prepare.preprocess(cfg, use_ray=False, generate=False)["up_to_date"] is True


@pytest.mark.parametrize("force", [True, False])
def test_a_damaged_manifest_is_rebuilt_and_named_where_it_is_read(corpus, tmp_path, force):
    """A manifest cut short (a copy that stopped, a full disk) raised a bare ArrowInvalid from preprocess, with
    --force too, the README's way out; a trainer reading it got the same."""
    out = tmp_path / "out"
    cfg = Config(data=data_cfg(corpus, out))
    prepare.preprocess(cfg, use_ray=False, generate=False)
    whole = (out / shards.MANIFEST).read_bytes()
    (out / shards.MANIFEST).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(shards.ManifestUnreadable, match=rf"{out / shards.MANIFEST}: holds no avdis manifest "
                                                        r"\(ArrowInvalid: .*avdis preprocess --out .* --force"):
        shards.read_manifest(str(out))
    rebuilt = prepare.preprocess(cfg, use_ray=False, generate=False, force=force)
    assert rebuilt["up_to_date"] is False
    assert rebuilt["rebuilt_because"].startswith("forced" if force else "manifest unreadable")
    assert (out / shards.MANIFEST).read_bytes() != whole[: len(whole) // 2] and on_disk(out) == manifest(out)[1]


def test_a_build_deletes_only_its_own_shard_files(corpus, tmp_path):
    """Files of the user's own in shards/ (notes, another tool's tars) were deleted by the first build."""
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "NOTES.txt").write_text("mine")
    (out / "shards" / "train-000000.tar").write_bytes(b"another tool's")
    cfg = Config(data=data_cfg(corpus, out))
    prepare.preprocess(cfg, use_ray=False, generate=False)
    assert (out / "shards" / "NOTES.txt").read_text() == "mine"
    assert (out / "shards" / "train-000000.tar").read_bytes() == b"another tool's"
    assert prepare.preprocess(cfg, use_ray=False, generate=False)["up_to_date"] is True  # and they make it no stale


def test_shards_into_the_source_folder_itself_are_refused(corpus, tmp_path):
    """Its manifest, rejects and shards would be read as the corpus's files at the next run."""
    with pytest.raises(UsageError, match="is the source folder itself"):
        prepare.preprocess(Config(data=data_cfg(corpus, corpus)), use_ray=False, generate=False)


def test_a_users_own_ground_truth_is_never_generated_over(tmp_path):
    """corpus=synthetic reads any folder with a ground_truth.csv; the generator wrote its corpus into such a folder
    (it had no corpus.json), replacing the user's rows."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\nx.mp4,x,s1,happy\n")
    data = DataConfig(corpus="synthetic", src=str(own), shards=str(tmp_path / "out"))
    prepare.generate_if_missing(data)
    assert sorted(p.name for p in own.iterdir()) == ["ground_truth.csv"]
    (own / "ground_truth.csv").unlink()
    (own / "x.mp4").write_bytes(b"a clip of the user's")
    with pytest.raises(UsageError, match="holds files but no ground_truth.csv"):
        prepare.generate_if_missing(data)
    assert sorted(p.name for p in own.iterdir()) == ["x.mp4"]


def test_a_shared_checks_marker_left_in_an_empty_folder_is_no_file_of_its_own(tmp_path):
    """A shared-storage check killed before its cleanup (`ray job stop`, the OOM killer) leaves its marker: in an
    empty data.src, an avdis before it named its host, or another host's on NFS, which no check here removes. The
    folder was refused as holding files, though `ls` showed it empty."""
    src = tmp_path / "src"
    src.mkdir()
    for name in (".avdis-shared-check-4242-0123abcd", ".avdis-shared-check-otherhost-1-0123abcd"):
        (src / name).write_text(name)
    synth.check_target(src)
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"),
                      synth=SynthConfig(speakers=2, emotions=2, clips_per_speaker=3))
    prepare.generate_if_missing(data)
    assert synth.settings_of(src) is not None


SPEC = SynthConfig(speakers=4, emotions=2, clips_per_speaker=5, duration_s=0.5, seed=2)
BUILDER = f"""
import json, sys
from avdis.config import Config, DataConfig, FeatureConfig, SynthConfig
from avdis.data import prepare
data = DataConfig(corpus="synthetic", src=sys.argv[1], shards=sys.argv[2], shard_size=4,
                  features=FeatureConfig(**{FEAT.model_dump()!r}), synth=SynthConfig(**{SPEC.model_dump()!r}))
print(json.dumps(prepare.ensure_shards(Config(data=data))), flush=True)
"""


def _builder(tmp_path: Path) -> subprocess.Popen:
    """A job making the corpus and shards under `tmp_path`, once it says it is generating the corpus (in the lock)."""
    job = subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path / "src"), str(tmp_path / "shards")],
                           stdout=subprocess.PIPE, text=True)
    assert job.stdout.readline().startswith("generating synthetic corpus in ")
    return job


def test_a_second_job_making_the_same_corpus_and_shards_waits_for_the_first_then_uses_them(tmp_path, capsys):
    """Two jobs (two sweeps submitted on a fresh cluster) on a corpus and shards not made yet each generated the
    corpus and built the shards, over the other's files as it read them; the second now waits, saying for whom."""
    first = _builder(tmp_path)
    try:
        data = DataConfig(corpus="synthetic", src=str(tmp_path / "src"), shards=str(tmp_path / "shards"),
                          shard_size=4, features=FEAT, synth=SPEC)
        second = prepare.ensure_shards(Config(data=data))
        made = json.loads(first.stdout.read())
    finally:
        first.kill()
        first.wait(30)
    holder = f"(pid {first.pid} on {socket.gethostname()}); waiting for it to end"
    said = capsys.readouterr().err.splitlines()  # then on the shards, unless it took their lock first
    assert said[0] == (f"avdis: {tmp_path / 'src'}: another job generating this corpus or building shards from it is "
                       f"running there {holder}")
    assert said[1:] in ([], [f"avdis: {tmp_path / 'shards'}: another build of these shards is running there {holder}"])
    assert {made["up_to_date"], second["up_to_date"]} == {False, True} and made["clips"] == second["clips"] == 20


def test_a_builder_killed_mid_generation_leaves_no_lock_that_blocks_the_next_job(tmp_path):
    """The OS lets go of a killed builder's lock (SIGKILL, `ray job stop`, the OOM killer), though its file stays,
    naming it: the next job neither waits for it nor refuses, and makes again the corpus it left cut short."""
    first = _builder(tmp_path)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert synth.settings_of(tmp_path / "src") is None  # cut short
    assert (tmp_path / "src" / storage_lock.LOCK).read_text() == f"pid {first.pid} on {socket.gethostname()}"
    second = subprocess.run([sys.executable, "-c", BUILDER, str(tmp_path / "src"), str(tmp_path / "shards")],
                            capture_output=True, text=True, timeout=120)
    said, summary = second.stdout.splitlines()
    assert second.stderr == "" and said.startswith("generating synthetic corpus in ")
    assert (json.loads(summary)["clips"], synth.is_generated(SPEC, tmp_path / "src")) == (20, True)


PREPROCESSOR = f"""
import sys
from avdis.config import DataConfig, FeatureConfig, S3Config
from avdis.data import shards
data = DataConfig(corpus="synthetic", src=sys.argv[1], shards=sys.argv[2], shard_size=2,
                  features=FeatureConfig(**{FEAT.model_dump()!r}))

def tasks(planned):  # run in the build's lock, its old manifest (if any) removed
    print("building", flush=True)
    return (shards.write_shard(task, data.shards, data.features, S3Config()) for task in planned)

shards.build_shards(data, S3Config(), run_tasks=tasks)
"""


def test_a_run_that_finds_its_shards_being_made_takes_them_as_made(corpus, tmp_path, capsys):
    """A training run or a sweep started while `avdis preprocess data.shard_size=2` made its shards found no manifest,
    waited for the build, then made them again with its own config's data.shard_size over those just made; started
    after it, it takes shards as they are made. It now does so after waiting too."""
    out = tmp_path / "shards"
    job = subprocess.Popen([sys.executable, "-c", PREPROCESSOR, str(corpus), str(out)], stdout=subprocess.PIPE,
                           text=True)
    try:
        assert job.stdout.readline() == "building\n"
        spec = SynthConfig(speakers=4, emotions=2, clips_per_speaker=4, duration_s=0.5, seed=1)  # the corpus's
        data = DataConfig(corpus="synthetic", src=str(corpus), shards=str(out), shard_size=4, features=FEAT,
                          synth=spec)
        took = prepare.ensure_shards(Config(data=data))
    finally:
        job.kill()
        job.wait(30)
    assert f"avdis: {out}: another build of these shards is running there (pid {job.pid}" in capsys.readouterr().err
    assert took == {"url": str(out), "up_to_date": True, "clips": 16, "shards": 8}
    assert shards.read_manifest(str(out))[1]["shard_size"] == 2


RAVDESS_PREPROCESSOR = """
import sys
from avdis.config import DataConfig, S3Config, SplitConfig
from avdis.data import shards
data = DataConfig(corpus="ravdess", src=sys.argv[1], shards=sys.argv[2], shard_size=2,
                  split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))

def tasks(planned):  # run in the build's lock, its old manifest (if any) removed
    print("building", flush=True)
    sys.stdin.readline()  # until the test has started its run
    return (shards.write_shard(task, data.shards, data.features, S3Config()) for task in planned)

shards.build_shards(data, S3Config(), run_tasks=tasks)
"""


def test_a_run_on_a_corpus_it_cannot_make_waits_for_its_shards_build_under_way(tmp_path, capsys, monkeypatch):
    """`avdis train` on RAVDESS started while `avdis preprocess` built its shards was told 'no manifest; run `avdis
    preprocess` first' while that build ran. It now waits for the build, saying whose, as a run that makes its
    synthetic shards does, and takes the shards as made; with no build there it is refused as before, making no
    folder."""
    from corpus_trees import ravdess_tree

    ravdess_tree(tmp_path / "RAVDESS")
    out = tmp_path / "shards"
    data = DataConfig(corpus="ravdess", src=str(tmp_path / "RAVDESS"), shards=str(out), shard_size=2,
                      split=SplitConfig(folds=3, val_fraction=0.2, test_fraction=0.2))
    with pytest.raises(shards.PreprocessError, match=f"{tmp_path / 'nowhere'}: no manifest; run `avdis preprocess"):
        prepare.ensure_shards(Config(data=data.model_copy(update={"shards": str(tmp_path / "nowhere")})))
    assert not (tmp_path / "nowhere").exists()
    job = subprocess.Popen([sys.executable, "-c", RAVDESS_PREPROCESSOR, data.src, str(out)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline() == "building\n"
        busy = storage_lock._busy  # the build goes on once the run below says it waits for it

        def said_then_go(*args):
            busy(*args)
            job.stdin.close()

        monkeypatch.setattr(storage_lock, "_busy", said_then_go)
        took = prepare.ensure_shards(Config(data=data))
        assert job.wait(60) == 0
    finally:
        job.kill()
        job.wait(30)
    said = capsys.readouterr().err
    assert f"avdis: {out}: another build of these shards is running there (pid {job.pid} on " in said, said
    assert took == {"url": str(out), "up_to_date": True, "clips": shards.read_manifest(str(out))[0].num_rows,
                    "shards": len(shards.read_manifest(str(out))[1]["shards"])} and took["clips"] > 0


def test_preprocess_into_a_missing_bucket_names_it_and_says_to_create_it(corpus, s3_server, capsys):
    """`avdis preprocess --out s3://<missing bucket>/...` said 'not writable (The specified bucket does not exist);
    pick an output folder or bucket you can write to', where train and sweep name the bucket and how to make it."""
    from avdis.cli import main

    out = "s3://avdis-no-such-bucket/shards"
    assert main(["preprocess", "--corpus", "synthetic", "--src", str(corpus), "--out", out, "--no-ray"]) == 2
    assert f"{out}: bucket 'avdis-no-such-bucket' does not exist; create it (python infra/storage/create_bucket.py " \
           "avdis-no-such-bucket) or fix the URL" in capsys.readouterr().err


def test_shards_on_s3_of_another_size_or_unlisted_are_rebuilt(corpus, s3_bucket):
    url = f"{s3_bucket}/shards/stale"
    data = data_cfg(corpus, url)
    shards.build_shards(data, S3)
    first = f"{url}/shards/shard-000000.tar"
    storage.write_bytes(first, storage.read_bytes(first)[:1024])
    storage.write_bytes(f"{url}/shards/shard-000042.tar", b"stray")

    again = shards.build_shards(data, S3)
    assert again["up_to_date"] is False
    assert "shard-000000.tar has 1024 bytes" in again["rebuilt_because"]
    assert "shard-000042.tar is not in the manifest" in again["rebuilt_because"]
    table, meta = shards.read_manifest(url, S3)
    assert [u.rsplit("/", 1)[-1] for u in storage.list_files(f"{url}/shards")] == [s["name"] for s in meta["shards"]]
    assert table.num_rows == 16
    assert shards.build_shards(data, S3)["up_to_date"] is True


def test_splits_and_label_sets_are_given_to_the_clips_that_decoded(tmp_path):
    """Clips rejected at decoding (CREMA-D ships empty wavs): a speaker whose every clip was broken kept a fold of
    its own (an empty test set under speaker_disjoint) and a speaker class nobody had, and a speaker that lost its
    one train clip had none. Splits and label indices now come after decoding, in the manifest, which the stream
    reads them from."""
    from avdis.config import SplitConfig
    from avdis.data import stream, synth

    src = tmp_path / "corpus"
    synth.generate(SynthConfig(speakers=4, emotions=2, clips_per_speaker=4, duration_s=0.5, seed=1), src)
    broken = sorted((src / "spk03").iterdir()) + [sorted((src / "spk00").iterdir())[0]]
    for path in broken:
        path.write_bytes(b"")
    data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / "out"), shard_size=4, features=FEAT,
                      split=SplitConfig(folds=3))
    summary = shards.build_shards(data, S3)
    assert summary["rejects"] == len(broken)
    table, meta = shards.read_manifest(data.shards)
    rows = table.to_pandas()
    assert meta["speakers"] == ["spk00", "spk01", "spk02"]
    assert (rows.speaker.map(meta["speakers"].index) == rows.speaker_idx).all()
    assert (rows.groupby("speaker").split.nunique() == 3).all()  # spk00 has 3 clips left, each in its own split
    assert sorted(rows.fold.unique()) == [0, 1, 2]  # every fold has a speaker
    info = stream.open_dataset(data, S3)
    seen = {}
    for batch in stream.epoch_batches(info, data, S3, None, rank=0, world=1, epoch=0, seed=0, batch_size=4):
        for i, clip in enumerate(batch["clip_id"]):
            seen[clip] = (int(batch["speaker"][i]), int(batch["within_split"][i]))
    assert seen == {r.clip_id: (r.speaker_idx, stream.SPLIT_CODES[r.split]) for r in rows.itertuples()}


def test_shards_made_by_another_decoding_are_made_again(corpus, tmp_path, monkeypatch):
    """A change to how clips are decoded (the channel downmix, a video's last frame) changes the features: shards
    made before it must not count as up to date and be mixed with new ones."""
    data = data_cfg(corpus, tmp_path / "out")
    shards.build_shards(data, S3)
    assert shards.build_shards(data, S3)["up_to_date"]
    monkeypatch.setattr(made_with, "DECODING", made_with.DECODING + 1)
    assert shards.build_shards(data, S3)["rebuilt_because"] == (
        f"changed since the shards were made: decoding {made_with.DECODING - 1} -> {made_with.DECODING}")


def test_a_rebuild_names_the_settings_that_changed(corpus, tmp_path):
    """A rebuild of a large corpus takes hours; "source files, settings or decoding changed" left the user to guess
    which, and a manifest made before the parts were kept still rebuilds with that message."""
    out = tmp_path / "out"
    shards.build_shards(data_cfg(corpus, out, shard_size=4), S3)
    other = data_cfg(corpus, out, shard_size=3).model_copy(update={"features": FEAT.model_copy(update={"n_mels": 8})})
    assert shards.build_shards(other, S3)["rebuilt_because"] == (
        "changed since the shards were made: data.shard_size 4 -> 3; data.features.n_mels 16 -> 8")
    table, meta = shards.read_manifest(str(out))  # as a manifest of an earlier avdis: no parts kept
    old = {k: v for k, v in meta.items() if k not in ("sources", "shard_size", "decoding")}
    storage.write_parquet(str(out / shards.MANIFEST), table.replace_schema_metadata({"avdis": json.dumps(old)}), S3)
    assert shards.build_shards(data_cfg(corpus, out, shard_size=4), S3)["rebuilt_because"] == (
        "changed since the shards were made: data.features.n_mels 8 -> 16")
    assert shards.build_shards(data_cfg(corpus, out, shard_size=4), S3)["up_to_date"] is True


def test_the_fold_and_scheme_training_chooses_do_not_rebuild_the_shards(corpus, tmp_path):
    """The manifest holds both schemes and every fold; a cross-validation job that preprocesses with its own fold's
    config re-decoded the whole corpus each time (hours for CREMA-D), deleting the manifest other folds' jobs read."""
    out = tmp_path / "out"
    made = shards.build_shards(data_cfg(corpus, out), S3)
    assert made["up_to_date"] is False
    for update in ({"scheme": "speaker_disjoint", "fold": 1}, {"fold": 2}):
        data = data_cfg(corpus, out).model_copy(update={"split": SplitConfig(**update)})
        assert shards.build_shards(data, S3)["up_to_date"] is True, update
    seeded = data_cfg(corpus, out).model_copy(update={"split": SplitConfig(scheme="speaker_disjoint", seed=7)})
    assert shards.build_shards(seeded, S3)["rebuilt_because"] == (  # a setting the shards hold still rebuilds them
        "changed since the shards were made: data.split.seed 0 -> 7")


def built_where_moved(data: DataConfig, move: Callable[[], None]) -> str:
    """The error of a build whose shard tasks run on a local Ray after `move` (run once the driver's scan is done),
    as on a node that does not see what moved; none may be written."""
    import ray
    from conftest import shutdown_ray

    temp = tempfile.mkdtemp(prefix="avr-seen-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        on_ray = shards.run_on_ray(data, S3)

        def on_a_node_without_it(tasks):
            move()
            yield from on_ray(tasks)

        with pytest.raises(shards.PreprocessError) as caught:
            shards.build_shards(data, S3, run_tasks=on_a_node_without_it)
    finally:
        shutdown_ray()
        shutil.rmtree(temp, ignore_errors=True)
    assert not (Path(data.shards) / shards.MANIFEST).exists()
    return str(caught.value)


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_ray_tasks_on_a_node_that_does_not_see_the_corpus_stop_the_build(corpus, tmp_path):
    """`ray job submit ... jobs/preprocess.py --src /data/...` on cluster/aws.yaml: the driver scans the head's
    folder, the tasks run on CPU worker nodes (the head has no CPUs) where it is not. Every clip became a reject
    ("cannot open") and the build failed only as 'every clip was rejected'; where some tasks ran on the node that holds
    the corpus, a manifest of just their clips was written. Here the tasks run after the corpus moved away, as on such
    a node: the build stops, naming the file, the node and the fix, and writes no manifest."""
    src = tmp_path / "corpus"
    shutil.copytree(corpus, src)
    message = built_where_moved(data_cfg(src, tmp_path / "shards"), lambda: src.rename(tmp_path / "elsewhere"))
    assert message.startswith(str(src / "")) and "not found on node" in message, message
    assert "shared filesystem" in message and "--no-ray" in message and "Traceback" not in message


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_ray_tasks_on_a_node_that_does_not_see_a_clips_separate_audio_file_stop_the_build(tmp_path):
    """A CREMA-D clip is listed by its VideoFlash/ file and made of its AudioWAV/ file's sound. A node that saw the
    videos but not AudioWAV/ (a corpus split over mounts) made every clip of its video's sound, each WAV a reject read
    as damaged media ('copy it again'). The build stops, naming the WAV, the node and the fix."""
    from corpus_trees import cremad_tree

    src = tmp_path / "cremad"
    cremad_tree(src)
    data = DataConfig(corpus="cremad", src=str(src), shards=str(tmp_path / "shards"))
    message = built_where_moved(data, lambda: (src / "AudioWAV").rename(tmp_path / "elsewhere"))
    assert message.startswith(f"{src / 'AudioWAV'}/") and message.split(" and ")[0].endswith(".wav"), message
    assert "more file" in message and "not found on node" in message and "shared filesystem" in message, message


def test_the_same_source_folder_spelt_otherwise_is_up_to_date(corpus, tmp_path, monkeypatch):
    """Shards made with `--src corpus` (the config's relative default), then `--src $PWD/corpus` (the README's sweep
    example) or through a link: every shard was made again, hours for CREMA-D, the rebuild saying the corpus had
    changed. A corpus that did change is still read again."""
    shutil.copytree(corpus, tmp_path / "src")
    (tmp_path / "link").symlink_to(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    assert shards.build_shards(data_cfg(Path("src"), "out"), S3)["up_to_date"] is False
    for spelt in (tmp_path / "src", tmp_path / "link", Path("./src/")):
        assert shards.build_shards(data_cfg(spelt, tmp_path / "out"), S3)["up_to_date"] is True, spelt
    rows, _ = manifest(tmp_path / "out")
    Path(rows[0]["source_path"]).write_bytes(Path(rows[1]["source_path"]).read_bytes())
    again = shards.build_shards(data_cfg(tmp_path / "src", tmp_path / "out"), S3)
    assert again["rebuilt_because"] == ("changed since the shards were made: the corpus (a clip added, removed or "
                                        "relabelled, or a source file's size, time or whether the user can read it "
                                        "changed)")
    assert manifest(tmp_path / "out")[0][0]["source_path"].startswith(str(tmp_path / "src"))  # as spelt this time
    assert shards.build_shards(data_cfg(Path("src"), "out"), S3)["up_to_date"] is True


def test_a_ravdess_or_cremad_folder_given_as_the_synthetic_corpus_is_named_as_such(tmp_path):
    """`avdis preprocess --src <a RAVDESS copy>` says to give --corpus ravdess; `avdis train data.src=<it>` (and a
    sweep), without data.corpus, were told to add a ground_truth.csv to use its files as a corpus."""
    from corpus_trees import cremad_tree, ravdess_tree

    for corpus, tree in (("ravdess", ravdess_tree), ("cremad", cremad_tree)):
        src = tmp_path / corpus
        tree(src)
        data = DataConfig(corpus="synthetic", src=str(src), shards=str(tmp_path / f"{corpus}_out"))
        with pytest.raises(UsageError, match=rf"{src}: holds files but no ground_truth.csv, read as "
                                             rf"data.corpus=synthetic; these are .* files: preprocess them with "
                                             rf"--corpus {corpus} \(data.corpus={corpus}\)"):
            prepare.generate_if_missing(data)


def test_a_sweep_whose_shards_are_its_own_folder_and_a_build_there_do_not_wait_for_each_other(tmp_path):
    """A sweep holds its folder's lock, then makes its shards; with data.shards that folder, it held the shards folder
    and waited for the corpus, while `avdis preprocess` into it held the corpus and waited for the shards folder: both
    waited for ever. The corpus is now held inside the build's own lock on its shards folder, never around it."""
    import threading

    src, out = tmp_path / "corpus", tmp_path / "sweeps" / "x"
    made = SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=4)
    synth.generate(made, src)
    cfg = Config(data=DataConfig(corpus="synthetic", src=str(src), shards=str(out), shard_size=2, synth=made))
    done: list[object] = []
    with storage_lock.exclusive(str(out), "sweep driver"):
        other = subprocess.Popen([sys.executable, "-m", "avdis", "preprocess", "--corpus", "synthetic", "--src",
                                  str(src), "--out", str(out), "--shard-size", "2", "--no-ray"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in other.stderr:  # it waits for the shards folder (the old code: holding the corpus)
            if "waiting for it to end" in line:
                break
        maker = threading.Thread(target=lambda: done.append(prepare.ensure_shards(cfg)), daemon=True)
        maker.start()
        maker.join(120)
    try:
        assert done, "the sweep's build waited for the corpus that the waiting preprocess holds"
        assert other.wait(120) == 0, other.stderr.read()[-3000:]  # then finds the shards made
    finally:
        other.kill()
        other.wait(30)
    assert (out / shards.MANIFEST).is_file()
