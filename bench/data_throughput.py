"""Data pipeline throughput: streaming shards (local folder, S3 server) against decoding raw media.

    .venv/bin/python bench/data_throughput.py [--speakers 8 --clips 40]

Measures, into one process (one Ray Train worker's view):
- raw decode: `avdis.data.media.extract` per clip (what training would do without shards);
- shard streaming from a local folder and from moto's S3 server on 127.0.0.1 (started here,
  stopped by PID), with 0 and 2 DataLoader workers: samples/s and MB/s (every shard is
  verified against the manifest's size and sha256 as it is read: that is always on);
- verification: the shards' read rate with and without that check, and its share of the
  streaming time;
- peak RSS of `avdis preprocess --no-ray` (via /usr/bin/time -v) at two corpus sizes: it
  must not grow with the corpus.
Target (issue): shard streaming >= 20x raw decode. Writes bench/results/data_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

from avdis import storage  # noqa: E402
from avdis.config import DataConfig, LoaderConfig, S3Config, SynthConfig  # noqa: E402
from avdis.data import corpora, media, shards, stream, synth  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_rate(data: DataConfig, repeats: int = 3) -> dict[str, float]:
    info = stream.open_dataset(data, S3Config())
    n_bytes = sum(s["bytes"] for s in shards.read_manifest(data.shards)[1]["shards"])
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        n = sum(int(b["valid"].sum()) for b in stream.epoch_batches(info, data, S3Config(), None, rank=0, world=1,
                                                                     epoch=r, seed=0, batch_size=32))
        best = min(best, time.perf_counter() - t0)
    return {"samples": n, "seconds": best, "samples_per_s": n / best, "mb_per_s": n_bytes / 1e6 / best}


def verify_rate(data: DataConfig, stream_seconds: float, repeats: int = 3) -> dict[str, float]:
    """Reading every shard whole, then checking it against the manifest (`stream.verify`): MB/s of each."""
    info = stream.open_dataset(data, S3Config())
    mb = sum(ref.size for ref in info.shards) / 1e6
    read = check = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        blobs = [storage.read_bytes(ref.url) for ref in info.shards]
        t1 = time.perf_counter()
        assert all(stream.verify(ref, blob) is None for ref, blob in zip(info.shards, blobs))
        read, check = min(read, t1 - t0), min(check, time.perf_counter() - t1)
    return {"mb": mb, "read_mb_per_s": mb / read, "read_rate_with_verification_mb_per_s": mb / (read + check),
            "sha256_mb_per_s": mb / check, "verification_share_of_stream_time": check / stream_seconds}


def decode_rate(src: Path, data: DataConfig, limit: int) -> dict[str, float]:
    records, _ = corpora.scan("synthetic", src)
    records = records[:limit]
    media.extract(records[0].audio_path, records[0].video_path, data.features)  # warm-up (librosa import)
    t0 = time.perf_counter()
    for r in records:
        media.extract(r.audio_path, r.video_path, data.features)
    dt = time.perf_counter() - t0
    return {"samples": len(records), "seconds": dt, "samples_per_s": len(records) / dt}


def preprocess_peak_rss(src: Path, out: Path) -> dict[str, float]:
    cmd = ["/usr/bin/time", "-v", str(Path(sys.executable).with_name("avdis")), "preprocess", "--corpus", "synthetic",
           "--src", str(src), "--out", str(out), "--no-ray"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"clips": len(corpora.scan("synthetic", src)[0]), "peak_rss_mib": kib / 1024, "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--clips", type=int, default=40, help="clips per speaker of the main corpus")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="avdis-bench-data-"))
    small, big = work / "small", work / "big"
    synth.generate(SynthConfig(speakers=args.speakers, clips_per_speaker=args.clips // 4, seed=1), small)
    synth.generate(SynthConfig(speakers=args.speakers, clips_per_speaker=args.clips, seed=1), big)
    rss = [preprocess_peak_rss(small, work / "small_shards"), preprocess_peak_rss(big, work / "big_shards")]
    local = DataConfig(corpus="synthetic", src=str(big), shards=str(work / "big_shards"))
    results: dict = {"corpus": {"clips": rss[1]["clips"], "features": local.features.model_dump()}}
    results["raw_decode"] = decode_rate(big, local, limit=80)
    results["stream_local"] = stream_rate(local)
    results["stream_local_2_loader_workers"] = stream_rate(local.model_copy(update={"loader": LoaderConfig(workers=2)}))
    results["verification_local"] = verify_rate(local, results["stream_local"]["seconds"])

    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    moto = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        os.environ.update({**{k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
                           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="bench")
        fs, _ = storage.filesystem("s3://bench")
        fs.put(str(work / "big_shards") + "/", "bench/shards/", recursive=True)
        s3 = local.model_copy(update={"shards": "s3://bench/shards"})
        results["stream_s3"] = stream_rate(s3)
        results["stream_s3_2_loader_workers"] = stream_rate(s3.model_copy(update={"loader": LoaderConfig(workers=2)}))
        results["verification_s3"] = verify_rate(s3, results["stream_s3"]["seconds"])
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(10)
    results["preprocess_peak_rss"] = rss
    raw = results["raw_decode"]["samples_per_s"]
    speedups = {k: round(v["samples_per_s"] / raw, 1) for k, v in results.items() if k.startswith("stream_")}
    results["speedup_over_raw_decode"] = speedups
    results["target"] = {"stream_over_raw_decode": 20, "met": {k: v >= 20 for k, v in speedups.items()},
                         "rss_growth_ratio": round(rss[1]["peak_rss_mib"] / rss[0]["peak_rss_mib"], 2)}
    machine.write("data_throughput", results)
    for k, v in results.items():
        print(k, v)


if __name__ == "__main__":
    main()
