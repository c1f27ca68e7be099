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

Renders run in a thread of their own, one at a time and in the order asked (`schedule`): drawn
in Tune's callback, on the driver's loop, each one held up that loop (results, trial starts) for
its second, and Ray said so every 30 s ("The `callbacks.on_trial_result` operation took 0.8 s,
which may be a performance bottleneck", past Ray's 0.5 s). A render asked for while one is under
way starts after it and reads the files as they are then, so no render draws files older than
the one before it, and each reads the table and summary of one write of the recorder
(`results.RECORDING`); every write is whole (`avdis.storage`), so none reads half a file. The
experiment's end waits for the render under way and draws the files the sweep ended with before
it returns. Tune pickles the callback with its experiment: the thread is left out and made again
at the first render of a resumed sweep.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
    _renderer: ThreadPoolExecutor | None = None  # the report thread, made at the first render; never pickled
    # (`__getstate__`), and, like `pending`, a class value for a callback an avdis before it pickled
    _last: Future | None = None  # the render handed to it last

    def __init__(self, sweep_url: str, s3: S3Config | None = None, every_s: float = 30.0) -> None:
        self.sweep_url, self.s3, self.every_s = sweep_url, s3, every_s
        self.last_render = float("-inf")
        self.pending = False
        self.renders = 0
        self.failures = 0

    def __getstate__(self) -> dict[str, Any]:
        """What Tune pickles with its experiment: all but the thread and its render (a thread pickles not; a resumed
        sweep makes its own at its first render)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_renderer", "_last")}

    def schedule(self, force: bool = False) -> Future | None:
        """Hand a render to the report thread unless throttled (then the change is pending and this is None); the
        render that will draw the files as they are now. One waiting to start is that render: it reads them when it
        starts, so a second would draw the same files."""
        if not force and time.monotonic() - self.last_render < self.every_s:
            self.pending = True
            return None
        self.last_render, self.pending = time.monotonic(), False
        last = self._last
        if last is not None and not last.running() and not last.done():
            return last
        if self._renderer is None:
            self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avdis-report")
        self._last = self._renderer.submit(self._render)
        return self._last

    def refresh(self, force: bool = False) -> bool:
        """Re-render unless throttled (then the change is pending), and wait for it; True when the report was written.

        Before any trial has reported (a sweep interrupted in its first seconds) there is no trials.parquet and nothing
        to draw: that is no failure, so it is neither counted nor logged; a missing sweep folder or bucket is."""
        render = self.schedule(force)
        return render is not None and render.result()

    def wait(self) -> None:
        """Return once every render handed to the report thread is done (it runs them one at a time, in order)."""
        if self._last is not None:
            self._last.result()

    def close(self) -> None:
        """Wait for the renders handed over, then end the report thread (a later render makes another)."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.shutdown(wait=True)
        self._last = None

    def _render(self) -> bool:
        """One render, in the report thread: `refresh`'s."""
        try:
            if not storage.exists(storage.join(self.sweep_url, results.TRIALS), self.s3):
                results.check_folder(self.sweep_url, self.s3)
                return False
            files.write_pages(self.sweep_url, self.s3)
        except Exception as exc:  # noqa: BLE001 - in its own thread nothing above would see it; the sweep goes on
            self.failures += 1
            log.warning("report for %s not refreshed (%d failures so far): %s", self.sweep_url, self.failures, exc,
                        exc_info=not isinstance(exc, AvdisError))  # avdis's errors say what is wrong; others: where
            return False
        self.renders += 1
        return True

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.schedule()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.schedule()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.pending:
            self.schedule()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.schedule(force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.refresh(force=True)
        self.close()
