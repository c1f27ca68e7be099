"""Preprocessing on Ray when the process decoding a shard dies: retried once, and a clip that ends it every time
is a reject of its own, named, while the rest of its shard is made.

The deaths are real: a thread here SIGKILLs this Ray's worker processes while they hold a chosen file open, as a
decoder that crashes on that file (or the kernel's OOM killer) would end them.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from avdis.config import DataConfig, FeatureConfig, S3Config
from avdis.data import corpora, shards
from avdis.data.media import write_clip
from corpus_trees import SR, clip_media

pytestmark = pytest.mark.ray

FEAT = FeatureConfig(n_mels=16, window_s=0.5, fps=4, face_size=16)


class Killer:
    """SIGKILLs this process's Ray workers that have one of `victims` open, at most `times[file]` processes each."""

    def __init__(self, times: dict[str, int]):
        self.times = times
        self.killed: dict[str, list[int]] = {path: [] for path in times}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def workers(self) -> list[int]:
        """This process's Ray workers (titled `ray::<task>` or `ray::IDLE`)."""
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.cmdline()[:1] and proc.cmdline()[0].startswith("ray::") and "Agent" not in proc.cmdline()[0]:
                    found.append(proc.pid)
            except psutil.Error:
                pass
        return found

    def run(self) -> None:
        pids, listed = [], 0.0
        while not self.stop.is_set():
            if time.monotonic() - listed > 0.2:
                pids, listed = self.workers(), time.monotonic()
            for pid in pids:
                try:
                    open_now = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
                except OSError:
                    continue
                for path, pids_killed in self.killed.items():
                    if path in open_now and pid not in pids_killed and len(pids_killed) < self.times[path]:
                        os.kill(pid, signal.SIGKILL)
                        pids_killed.append(pid)
            time.sleep(0.001)


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray in a short temp dir of its own: under pytest's (/tmp/pytest-of-root/pytest-1046/popen-gw0/ray0/...)
    its plasma store's socket path ran past the 107 bytes a unix socket allows, and the fixture failed to start."""
    import ray
    from conftest import shutdown_ray

    temp = tempfile.mkdtemp(prefix="avr-", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield
    shutdown_ray()
    shutil.rmtree(temp, ignore_errors=True)


def cremad_corpus(root: Path) -> None:
    """7 CREMA-D clips of 2 actors, one of them with a wav that does not open and a flv of no sound to stand in."""
    for i, (actor, sentence, emo) in enumerate([("1001", "DFA", "ANG"), ("1001", "IEO", "HAP"), ("1001", "TIE", "SAD"),
                                                ("1002", "DFA", "NEU"), ("1002", "TIE", "SAD"), ("1002", "IEO", "ANG"),
                                                ("1002", "IWW", "FEA")]):
        frames, audio = clip_media(i)
        stem = f"{actor}_{sentence}_{emo}_XX"
        write_clip(root / "VideoFlash" / f"{stem}.flv", frames, 12, audio, SR)
        write_clip(root / "AudioWAV" / f"{stem}.wav", None, 12, audio, SR)
    (root / "AudioWAV" / "1002_IWW_FEA_XX.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_clip(root / "VideoFlash" / "1002_IWW_FEA_XX.flv", clip_media(6)[0], 12, None, SR)


def test_a_clip_whose_process_dies_is_a_named_reject_and_a_retried_shard_counts_its_rejects_once(ray_session, tmp_path):
    root, out = tmp_path / "CREMA-D", tmp_path / "shards"
    cremad_corpus(root)
    data = DataConfig(corpus="cremad", src=str(root), shards=str(out), shard_size=3, features=FEAT)
    records, _ = corpora.scan("cremad", root)
    tasks = shards.plan(records, data)
    broken = next(r for r in records if r.clip_id == "cremad-1002_IWW_FEA_XX")
    # killed once: the shard that also holds the broken clip; killed every time: a clip of another shard
    once = next(r for t in tasks if broken in t.records for r in t.records if r is not broken)
    always = next(r for t in tasks if broken not in t.records for r in t.records)
    # a minute long: open for long enough to be seen (the plan is by names alone); two sounds, as the same bytes under
    # two names make no clip
    for seed, rec in enumerate((once, always), 3):
        frames, audio = clip_media(seed, seconds=60)
        write_clip(rec.video_path, frames, 12, None, SR)  # its sound is the wav's
        write_clip(rec.audio_path, None, 12, audio, SR)

    killer = Killer({once.audio_path: 1, always.audio_path: 100})
    killer.thread.start()
    try:
        summary = shards.build_shards(data, S3Config(), run_tasks=shards.run_on_ray(data, S3Config()))
    finally:
        killer.stop.set()
        killer.thread.join()

    assert len(killer.killed[once.audio_path]) == 1
    assert len(killer.killed[always.audio_path]) >= 4  # the shard's 3 tries, then the clip's own task
    rejects = pq.read_table(out / shards.REJECTS).to_pylist()
    assert [r["source_path"] for r in rejects] == sorted([always.audio_path, broken.audio_path,
                                                          always.video_path, broken.video_path])
    died = [r["reason"] for r in rejects if r["source_path"] in (always.audio_path, always.video_path)]
    assert all(f"the process decoding clip {always.clip_id} died (WorkerCrashedError" in why for why in died)
    table, meta = shards.read_manifest(str(out))
    made = sorted(table.column("clip_id").to_pylist())
    assert made == sorted(r.clip_id for r in records if r not in (broken, always))
    assert summary["clips"] == 5 and summary["rejects"] == 4 and meta["rejects"] == 4
    shard_of = dict(zip(table.column("clip_id").to_pylist(), table.column("shard").to_pylist()))
    home = next(t for t in tasks if always in t.records)
    assert {shard_of[r.clip_id] for r in home.records if r is not always} == {shards.shard_name(home.index)}
    assert shards.build_shards(data, S3Config())["up_to_date"]  # its rejects stand until its files change
