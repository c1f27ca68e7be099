"""Keep a running sweep's report fresh: a Ray Tune callback that redraws its pages.

It only reads `trials.parquet` and `pareto.json` (the sweep's recorder writes both) and
rewrites pareto.html/png (`files.write_pages`): within `every_s` seconds of a result or a
trial's end, no more often than that, and at once when Tune reports a trial failed and when the
experiment ends. A render takes about a second of the driver's CPU (the PNG most of it), which
the trials beside it lose: forced at every trial's end, a sweep of 16 trials rendered 16 times or
more, where 30 s apart the demo's 2-minute sweep needs about 5. A change that came within
`every_s` of the last render is drawn by Tune's next loop step past it (`on_step_end`), not left
for the next result, which can be minutes away. The live page (`avdis dashboard`) renders on its
own. The entry point (`avdis.cli`) hands it to the sweep after the recorder, so it renders the
newest files. A failed render is logged and counted, never fatal: a sweep must not die because
its report could not be written.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.tune import Callback

from avdis import results, storage
from avdis.config import S3Config
from avdis.errors import AvdisError
from avdis.report import files

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    pending = False  # a change came since the last render, within every_s of it (a class value too: a sweep resumes
    # with the callback its Tune experiment pickled, and one an avdis before this attribute pickled has none)

    def __init__(self, sweep_url: str, s3: S3Config | None = None, every_s: float = 30.0) -> None:
        self.sweep_url, self.s3, self.every_s = sweep_url, s3, every_s
        self.last_render = float("-inf")
        self.pending = False
        self.renders = 0
        self.failures = 0

    def refresh(self, force: bool = False) -> bool:
        """Re-render unless throttled (then the change is pending); True when the report was written.

        Before any trial has reported (a sweep interrupted in its first seconds) there is no trials.parquet and nothing
        to draw: that is no failure, so it is neither counted nor logged; a missing sweep folder or bucket is."""
        if not force and time.monotonic() - self.last_render < self.every_s:
            self.pending = True
            return False
        self.last_render, self.pending = time.monotonic(), False
        try:
            if not storage.exists(storage.join(self.sweep_url, results.TRIALS), self.s3):
                results.check_folder(self.sweep_url, self.s3)
                return False
            files.write_pages(self.sweep_url, self.s3)
        except AvdisError as exc:
            self.failures += 1
            log.warning("report for %s not refreshed (%d failures so far): %s", self.sweep_url, self.failures, exc)
            return False
        self.renders += 1
        return True

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.refresh()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.pending:
            self.refresh()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.refresh(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.refresh(force=True)
