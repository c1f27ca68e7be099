"""Connecting to Ray: the cluster at an address, or a local one started here.

One place decides the address (config, then RAY_ADDRESS, else local) and the
environment every Ray worker gets, so jobs behave the same under `python jobs/...`,
`avdis ...` and `ray job submit`.
"""

from __future__ import annotations

import os

from avdis.config import RayConfig
from avdis.errors import UsageError

# Environment for every worker process: quiet Ray Train prints, DeepSpeed on the CPU
# accelerator where no GPU is visible (set per worker in avdis.train.engine too).
WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "PYTHONUNBUFFERED": "1"}


def connect(cfg: RayConfig) -> str:
    """Initialise Ray once per process; return the address used ("local" for a new local Ray)."""
    import ray

    if ray.is_initialized():
        return "existing"
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    runtime_env = {"env_vars": dict(WORKER_ENV)}
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            raise UsageError(
                f"Ray address {address!r} does not answer ({type(exc).__name__}: {exc}); "
                "check ray.address / RAY_ADDRESS, or unset both to start a local Ray"
            ) from None
        return address
    ray.init(include_dashboard=cfg.include_dashboard, runtime_env=runtime_env, log_to_driver=True)
    return "local"


def pin_train_coordinator() -> None:
    """Create Ray Train's autoscaling coordinator here (the driver's node) before any trainer does.

    Ray 2.60's TrainController creates a detached `AutoscalingCoordinator` actor on its own
    node the first time it runs. Inside a sweep that node is a worker node the autoscaler
    added, and a detached actor keeps it from ever becoming idle: the node (a GPU node, on
    a cluster) would never be removed. Created first from the driver, the actor lives on
    the driver's node (the head, for `ray job submit`), and every trainer reuses it.
    """
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:  # private API; other Ray versions may not have (or need) it
        return
    get_or_create_autoscaling_coordinator()
