"""Train -> Tune: each Ray Train report of a trial's TorchTrainer becomes one Tune result.

Why not Ray's `TuneReportCallback`: in Ray 2.60 it hands results to the trial's *main*
thread through a one-slot queue. When the training function returns right after the last
Train report, Tune's own end-of-function report (from the training thread) and the main
thread's hand-off of that last result race for the same one-slot queue, whose only
consumer is the main thread: if the end report wins, the trial deadlocks and stays
RUNNING forever. It happened to concurrent trials finishing together on a busy machine.

Here the trial's own thread makes every report (`ray.tune.report`, Tune's ordinary path):
the TorchTrainer fits in a helper thread, its controller puts each report on a one-slot
queue, and the trial thread reports them in order, all of them before it returns. The
one-slot queue keeps Train in step with Tune, so a scheduler's stop takes effect at once.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ray.train import UserCallback
from ray.util.queue import Empty, Queue

from avdis.config import EmotionMetric
from avdis.train.loop import tune_result

POLL_S = 1.0


class TrainToTune(UserCallback):
    """Pass to the TorchTrainer's callbacks, then `run(trainer.fit)` in the Tune trial; `emotion`: the sweep's
    emotion metric, whose selection metrics each result carries (`loop.tune_result`)."""

    def __init__(self, emotion: EmotionMetric) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the trial's own node: elsewhere it could keep an idle node from scaling in, or go with it.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(maxsize=1, actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.emotion = emotion

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        # Runs in Train's controller; blocks until the trial thread has taken the previous report.
        self.queue.put(dict(metrics[0]))

    def run(self, fit: Callable[[], Any]) -> Any:
        """Fit in a helper thread and report each Train result to Tune from this thread; returns fit()'s result."""
        import ray.tune

        outcome: dict[str, Any] = {}

        def fitting() -> None:
            try:
                outcome["result"] = fit()
            except BaseException as exc:  # re-raised in the trial thread below
                outcome["error"] = exc

        helper = threading.Thread(target=fitting, name="avdis-train-fit", daemon=True)
        helper.start()
        try:
            while True:
                try:
                    metrics = self.queue.get(timeout=POLL_S)
                except Empty:
                    # fit() returns only after its controller's last put: once it has, an empty queue is final.
                    if helper.is_alive() or not self.queue.empty():
                        continue
                    break
                ray.tune.report(tune_result(metrics, self.emotion))
        finally:
            self.queue.shutdown()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]
