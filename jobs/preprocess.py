"""Decode a corpus into WebDataset shards + manifest.parquet, one Ray task per shard.

    python jobs/preprocess.py --corpus ravdess --src /data/RAVDESS --out s3://bucket/shards/ravdess
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/preprocess.py --corpus cremad --src /data/CREMA-D --out s3://bucket/shards/cremad
"""

import sys

import _path  # noqa: F401

from avdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
