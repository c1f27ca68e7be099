"""What a benchmark ran on, recorded beside every figure it writes."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def describe() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        mem_gib = round(kib / 1024**2, 1)
    except (OSError, StopIteration):
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "gpus": gpus,
        "python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
        "commit": commit,
    }


def write(where: str | Path, payload: dict[str, Any], **about: Any) -> Path:
    """A benchmark's results as JSON, the machine that measured them first (with `about`, such as a note, added to
    its description): `where` is a name (bench/results/<name>.json) or a path of its own (a benchmark's --out)."""
    path = RESULTS / f"{where}.json" if isinstance(where, str) else where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": {**describe(), **about}, **payload}, indent=1) + "\n")
    print(f"wrote {path}")
    return path
