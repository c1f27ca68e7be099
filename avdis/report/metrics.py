"""Publish a sweep's results as Ray metrics, which Prometheus scrapes and Grafana shows.

Ray exports a gauge made through `ray.util.metrics` named `avdis_trial_leakage` as
`ray_avdis_trial_leakage`; `avdis.report.grafana` queries those exported names.
Gauges are created once per process (Ray refuses a second registration with other
tags). Trials without a value are skipped, and the count is returned; a failed trial's gauges are set to NaN
(no point), so a value it had while running is not left standing as its result.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from avdis.numbers import finite

EMOTION_ACC = "avdis_trial_emotion_acc"
LEAKAGE = "avdis_trial_leakage"
HYPERVOLUME = "avdis_sweep_hypervolume"
TRIAL_TAGS = ("sweep", "trial", "method")
RAY_PREFIX = "ray_"  # what Ray's Prometheus exporter puts before each name

_gauges: dict[str, Any] = {}


def _gauge(name: str, description: str, tags: tuple[str, ...]) -> Any:
    if name not in _gauges:
        from ray.util.metrics import Gauge

        _gauges[name] = Gauge(name, description=description, tag_keys=tags)
    return _gauges[name]


def publish(sweep: str, trials: pd.DataFrame, summary: dict[str, Any]) -> int:
    """Set the per-trial and per-sweep gauges; return how many values were skipped as missing."""
    acc = _gauge(EMOTION_ACC, "final emotion accuracy of a trial (test split)", TRIAL_TAGS)
    leak = _gauge(LEAKAGE, "identity leakage of a trial's z_emo (normalised probe accuracy)", TRIAL_TAGS)
    hv = _gauge(HYPERVOLUME, "hypervolume of the sweep's Pareto front (emotion_acc max, leakage min; test split, the "
                "front chosen on validation clips)", ("sweep",))
    skipped = 0
    for row in trials.itertuples():
        tags = {"sweep": sweep, "trial": str(row.trial_id), "method": str(row.method or "")}
        if row.status == "ERROR":  # its values (a non-finite objective's partner, or mid-training) are no result:
            for gauge in (acc, leak):  # NaN, not its last value, which Grafana's front drew as a trial's
                gauge.set(math.nan, tags=tags)
            continue
        for gauge, value in ((acc, row.emotion_acc), (leak, row.leakage)):
            v = finite(value)
            if v is None:
                skipped += 1
            else:
                gauge.set(v, tags=tags)
    v = finite(summary.get("hypervolume"))
    if v is None:
        skipped += 1
    else:
        hv.set(v, tags={"sweep": sweep})
    return skipped
