"""Make `import avdis` work when a job runs from a checkout (`python jobs/x.py`, `ray job submit`)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
