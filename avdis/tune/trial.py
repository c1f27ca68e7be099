"""One sweep trial: the Tune trainable that launches a distributed TorchTrainer (Train V2 pattern).

Its Ray Train run lives under `<sweep>/trials/<trial id>/`, so a trial restarted after a
killed driver resumes from that run's last checkpoint instead of starting over.
"""

from __future__ import annotations

from typing import Any

from avdis import storage
from avdis.config import Config, with_overrides
from avdis.train import launch
from avdis.tune.space import to_overrides

TRIALS_DIR = "trials"


def run_trial(params: dict[str, Any], base: dict[str, Any], sweep_url: str) -> None:
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = with_overrides(Config.model_validate(base), to_overrides(params))
    trial_id = ray.tune.get_context().get_trial_id()
    trainer = launch.trainer(cfg, storage.join(sweep_url, TRIALS_DIR), trial_id, callbacks=[TuneReportCallback()])
    result = trainer.fit()
    if result.error:
        raise result.error
