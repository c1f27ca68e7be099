"""Sweep methods and weights; the product's main job.

    python jobs/sweep.py                                  # embedded default: jobs/configs/local.yaml
    python jobs/sweep.py --config jobs/configs/smoke.yaml sweep.num_samples=4
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python jobs/sweep.py --config jobs/configs/aws-gpu.yaml

With no Ray address (ray.address / RAY_ADDRESS) it starts a local Ray. Running the
same command again against the same storage resumes the sweep; with --retry-failed, it also runs the
sweep's failed trials again from their last checkpoints, once their cause is fixed.
"""

import os
import sys

import _path  # noqa: F401

from avdis.cli import main

DEFAULT = str(_path.ROOT / "jobs" / "configs" / "local.yaml")

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]], default_config=DEFAULT, prog=os.path.basename(sys.argv[0])))
