"""Publish a sweep's results as Ray metrics, which Prometheus scrapes and Grafana shows.

Ray exports a gauge made through `ray.util.metrics` named `avdis_trial_leakage` as
`ray_avdis_trial_leakage`; `avdis.report.grafana` queries those exported names.
Gauges are created once per process (Ray refuses a second registration with other
tags). Trials without a value are skipped, and the count is returned. A failed trial's
`avdis_trial_failed` is 1 (0 for every other trial), and the dashboard's trial panels leave
out the trials whose latest value of it is 1: its accuracy and leakage gauges are set to NaN,
but Ray 2.60 exports no sample for a NaN gauge, so Prometheus kept the value it reported while
running, and the panels (which read each series' last value in range) showed it as its result.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from avdis.numbers import finite

EMOTION_ACC = "avdis_trial_emotion_acc"
LEAKAGE = "avdis_trial_leakage"
HYPERVOLUME = "avdis_sweep_hypervolume"
FAILED = "avdis_trial_failed"
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
    failed = _gauge(FAILED, "1 for a failed trial (its accuracy and leakage are no result), else 0", TRIAL_TAGS)
    skipped = 0
    for row in trials.itertuples():
        tags = {"sweep": sweep, "trial": str(row.trial_id), "method": str(row.method or "")}
        failed.set(1.0 if row.status == "ERROR" else 0.0, tags=tags)
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
