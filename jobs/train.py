"""Train one model: in this process (train.strategy=single) or on Ray Train workers (ddp, deepspeed).

    python jobs/train.py --config jobs/configs/smoke.yaml train.workers=2
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/train.py --config jobs/configs/smoke.yaml --storage /shared/runs \\
        data.shards=/shared/shards/smoke data.src=/shared/corpus/smoke

metrics.json and checkpoints land under <train.storage>/<run name>/. Under `ray job submit` every local location is
absolute and seen by every node (/shared here, or s3://): the job runs in Ray's copy of --working-dir, and the
driver refuses relative outputs, which would land in that copy (smoke.yaml's data.shards and data.src are relative).
"""

import os
import sys

import _path  # noqa: F401

from avdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog=os.path.basename(sys.argv[0])))
