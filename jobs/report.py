"""Write a sweep's pareto.json, pareto.html and pareto.png (also while it runs).

    python jobs/report.py runs/sweeps/local
"""

import os
import sys

import _path  # noqa: F401

from avdis.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]], prog=os.path.basename(sys.argv[0])))
