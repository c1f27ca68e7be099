"""Decode a corpus into WebDataset shards + manifest.parquet, one Ray task per shard.

    python jobs/preprocess.py --corpus ravdess --src /data/RAVDESS --out s3://bucket/shards/ravdess
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/preprocess.py --corpus cremad --src /data/CREMA-D --out s3://bucket/shards/cremad

The driver scans --src, and the tasks decode its files on whichever nodes Ray puts them (on cluster/aws.yaml the
cpu_worker nodes: the head has no CPUs), so under `ray job submit` --src must be a folder every node sees at that
path (a shared filesystem); a task that does not find its files stops the build. Otherwise preprocess where the
corpus is (`--no-ray`, or no Ray address: a local Ray) with --out s3://...
"""

import os
import sys

import _path  # noqa: F401

from avdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]], prog=os.path.basename(sys.argv[0])))
