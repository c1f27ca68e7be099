"""Train one model: in this process (train.strategy=single) or on Ray Train workers (ddp, deepspeed).

    python jobs/train.py --config jobs/configs/smoke.yaml train.workers=2
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/train.py --config jobs/configs/smoke.yaml --storage /shared/runs

metrics.json and checkpoints land under <train.storage>/<run name>/.
"""

import sys

import _path  # noqa: F401

from avdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
