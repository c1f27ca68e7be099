"""Metric values as JSON can carry them: the lowest floor, so every package may import it.

Training writes metrics.json and the sweep writes pareto.json with the same rules: a
NaN or infinite metric becomes None (strict JSON that browsers parse), never a string.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def finite(value: Any) -> float | None:
    """A metric as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def json_safe(obj: Any) -> Any:
    """A copy with NaN/inf as None and numpy scalars as Python ones: strict JSON that browsers parse."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
