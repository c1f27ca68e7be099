"""A sweep's result files: `trials.parquet` (one row per trial) and `pareto.json`.

Both live under the sweep's storage URL (local folder or s3://) and are rewritten whole
and atomically after every trial result, so readers (the dashboard, `avdis report`)
never see half a file. A sweep that has not reported yet has no `trials.parquet`:
readers get an empty table with the schema, not an error.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from avdis import storage
from avdis.config import S3Config
from avdis.errors import AvdisError
from avdis.tune import pareto

TRIALS = "trials.parquet"
PARETO = "pareto.json"

SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("sweep", pa.string()),
    ("method", pa.string()),
    ("weight", pa.float64()),  # null for the baselines
    ("status", pa.string()),  # RUNNING | TERMINATED | STOPPED | ERROR
    ("stop_reason", pa.string()),  # completed | early_stopped_at_epoch_N | error
    ("error", pa.string()),
    ("emotion_acc", pa.float64()),  # final, test split
    ("emotion_uar", pa.float64()),
    ("leakage", pa.float64()),  # MLP probe, normalised (headline)
    ("leakage_linear", pa.float64()),  # logistic-regression probe
    ("speaker_acc", pa.float64()),
    ("probe_acc", pa.float64()),
    ("probe_chance", pa.float64()),
    ("emotion_chance", pa.float64()),
    ("disentanglement", pa.float64()),  # 1 - leakage / leakage(multitask, same seed)
    ("best_emotion_acc", pa.float64()),
    ("best_leakage", pa.float64()),
    ("epochs", pa.int64()),
    ("order", pa.int64()),  # completion order (null while running)
    ("lr", pa.float64()),
    ("emb_dim", pa.int64()),
    ("seed", pa.int64()),
    ("split_id", pa.string()),
    ("manifest_hash", pa.string()),
    ("params", pa.string()),  # JSON: the sampled parameters
    ("config", pa.string()),  # JSON: the trial's whole config
    ("wall_s", pa.float64()),
    ("train_s", pa.float64()),  # in training steps
    ("work_s", pa.float64()),  # in epochs: steps, embedding pass, evaluation, probe
    ("updated_at", pa.float64()),  # unix time of the row's last change
])
COLUMNS = SCHEMA.names


class ResultsError(AvdisError):
    """A sweep path that cannot be read; the message names it."""


def empty_trials() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts; missing keys, NaN and infinities become null) -> a table with the schema."""
    frame = pd.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows], columns=COLUMNS)
    frame = frame.replace([np.inf, -np.inf], np.nan)
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


def write_trials(sweep_url: str, rows: list[dict[str, Any]], s3: S3Config | None = None) -> None:
    buf = io.BytesIO()
    pq.write_table(to_table(rows), buf)
    storage.write_bytes(storage.join(sweep_url, TRIALS), buf.getvalue(), s3)


def read_trials(sweep_url: str, s3: S3Config | None = None) -> pd.DataFrame:
    """The trials table; empty (with columns) when the sweep has no results yet.

    Raises ResultsError when the sweep folder itself does not exist or cannot be read.
    """
    if not storage.exists(sweep_url, s3):
        raise ResultsError(f"{sweep_url}: no such sweep folder; pass <storage>/<sweep name> of a sweep that has started")
    url = storage.join(sweep_url, TRIALS)
    if not storage.exists(url, s3):
        return empty_trials()
    data = storage.read_bytes(url, s3)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:  # a foreign or damaged file: say so, don't crash readers
        raise ResultsError(f"{url}: not a readable trials table ({exc})") from exc
    df = table.to_pandas()
    for name in COLUMNS:
        if name not in df:
            df[name] = None
    return df[COLUMNS]


def add_disentanglement(df: pd.DataFrame) -> pd.DataFrame:
    """disentanglement = 1 - leakage / leakage(multitask baseline at the same seed)."""
    df = df.copy()
    base = df[(df["method"] == "multitask") & df["leakage"].notna()].groupby("seed")["leakage"].mean()
    ref = df["seed"].map(base)
    if ref.isna().any() and len(base):
        ref = ref.fillna(base.mean())
    valid = ref.notna() & (ref > 0)
    df["disentanglement"] = np.where(valid, 1.0 - df["leakage"] / ref.where(valid, 1.0), np.nan)
    return df


def summarize(df: pd.DataFrame, sweep: str) -> dict[str, Any]:
    """The content of pareto.json for a trials table."""
    chance = float(df["emotion_chance"].dropna().max()) if df["emotion_chance"].notna().any() else 0.0
    front = pareto.front_of(df[df["order"].notna()] if len(df) else df, chance)
    done = df[(df["method"] == "multitask") & df["leakage"].notna() & df["order"].notna()]
    # The multitask trials trained longest: one stopped at its first rung is no reference for the rest.
    baseline = done[done["epochs"] == done["epochs"].max()]
    return {
        "sweep": sweep,
        "objectives": dict(zip(pareto.OBJECTIVES, ["max" if m else "min" for m in pareto.MAXIMISE])),
        "reference": {"emotion_acc": chance, "leakage": 1.0},
        "front": front.trial_ids,
        "hypervolume": front.hypervolume,
        "hypervolume_history": front.history,
        "n_trials": int(len(df)),
        "n_completed": int(df["order"].notna().sum()) if len(df) else 0,
        "baseline": (
            {"emotion_acc": float(baseline["emotion_acc"].mean()), "leakage": float(baseline["leakage"].mean()),
             "trials": baseline["trial_id"].tolist()}
            if len(baseline) else None
        ),
        "updated_at": time.time(),
    }


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


def write_pareto(sweep_url: str, summary: dict[str, Any], s3: S3Config | None = None) -> None:
    body = json.dumps(json_safe(summary), indent=1, allow_nan=False)
    storage.write_bytes(storage.join(sweep_url, PARETO), body.encode(), s3)


def read_pareto(sweep_url: str, s3: S3Config | None = None) -> dict[str, Any] | None:
    url = storage.join(sweep_url, PARETO)
    if not storage.exists(url, s3):
        return None
    return json.loads(storage.read_bytes(url, s3))
