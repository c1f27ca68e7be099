"""The sweep's own record of every trial: a Tune callback that keeps trials.parquet current.

One row per trial, rewritten whole after every result, so the table is right while the
sweep runs, after it ends, and after a killed driver resumes (rows are reloaded from
storage at set-up; nothing finished is ever dropped: a write that storage did not take, at a trial's start, result,
error or end, is said once for the outage, its rows kept and written with the next write storage takes, or as the
experiment ends (`TrialRecorder._kept`), never raised to Tune, which ended the sweep on it, or took a trial's end for
its failure and ran the finished trial again). A trial that errors keeps its row
with the error text; so does one that reported a non-finite objective: it ends as ERROR,
never on the front (objectives are stored as null, never NaN). Early stopping is read off
the epochs: a trial that ended before `train.epochs` was stopped by the scheduler. Each
write is `avdis.results.record`: trials.parquet and its pareto.json together. Whatever
shows them (Ray gauges, the report's pages) is above this floor: the entry point passes them
in as `listeners`, each called with the table and summary just written.

Each row carries its `role` (the recorder's: `search`, or `confirm` for the sweep's
re-training of its front with more seeds) and its `config_id`, the hash of its
parameters without `train.seed` (nor other methods' weights), which groups the seeds of one configuration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import sys
import time
from typing import Any, Callable, Sequence

import pandas as pd
from ray.tune import Callback

from avdis import results
from avdis.config import EMOTION_METRICS, Config, with_overrides
from avdis.errors import AvdisError
from avdis.data.prepare import recorded
from avdis.data.splits import split_id
from avdis.numbers import finite
from avdis.results import pareto
from avdis.storage import StorageError
from avdis.tune.space import own_params, to_overrides

log = logging.getLogger(__name__)
FINAL = ("emotion_acc", "emotion_uar", "leakage", "leakage_linear", "speaker_acc", "probe_acc", "probe_chance",
         "emotion_chance", "emotion_uar_chance", "val_emotion_acc", "val_emotion_uar", "val_leakage", "manifest_hash")
BEST_EMOTION = tuple(f"emotion_{m}" for m in EMOTION_METRICS)  # each its best_ column, whichever a sweep chooses on
SEED = "train.seed"  # the one parameter the seeds of a configuration differ in
Listener = Callable[[pd.DataFrame, dict[str, Any]], None]  # (trials table, pareto summary) just written
NON_FINITE = "non-finite objectives"  # how the row's error of a trial that reported one begins


def non_finite(trials: pd.DataFrame) -> pd.Series:
    """Which rows are of trials that reported a non-finite objective: Tune took that for their finish."""
    errors = trials["error"] if "error" in trials else pd.Series(None, index=trials.index, dtype=object)
    return errors.fillna("").astype(str).str.startswith(NON_FINITE)


def config_id(params: dict[str, Any]) -> str:
    """What groups the seeds of one configuration: a hash of its trial parameters without the seed, and without the
    weights of other methods than its own, which it does not use (under NSGA-II every trial draws every method's
    weight: one configuration, drawn twice, was two, each on the front and each confirmed)."""
    rest = {k: v for k, v in own_params(params).items() if k != SEED}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _error_of(trial: Any) -> str | None:
    """The trial's error text. Tune writes it in the driver's staging folder and uploads it later, so when this
    callback runs `get_error()`, which reads the storage copy, finds nothing: every failure read "trial failed"."""
    if not trial.run_metadata.error_filename:  # no error file written (a trial restored without one)
        return None
    staged = trial.error_file
    if staged:
        try:
            with open(staged, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            pass
    error = trial.get_error()
    return str(error) if error else None


# the line `Trial.handle_error` writes in the trial's error file before each failure's text
_FAILURE_HEAD = re.compile(r"(?:\A|\n)Failure # \d+ \(occurred at [^\n]*\)\n\Z")
# the cause the GCS gives an actor that died with its node (GcsActorManager::GenNodeDiedCause), ActorDiedError's text:
# "The actor died because its node has died. Node Id: ...", then how the node ended (Ray keeps no other trace of it)
_NODE_DIED = "because its node has died"


def _raised(trial: Any) -> BaseException | None:
    """The error of the failure at hand, as Tune pickled it into the driver's staging folder (there when callbacks
    run); None where it is not known. Tune pickles a Ray task's or actor's error alone (`Trial.handle_error`), over the
    last one: a failure of another kind (a TuneError: a callback that raised as Tune stopped the trial) left an earlier
    failure's error there, and a restart after it, or its end, was judged and said by that one ('its process died' for
    a callback's error, after a restart from a dead process). Tune appends every failure's text to the trial's error
    file, so the pickle is the failure at hand's where that file ends with its text. None too where Tune pickled none
    (an error it could not pickle) or the file cannot be read."""
    path, said = trial.pickled_error_file, trial.error_file
    if not path or not said:
        return None
    try:
        with open(path, "rb") as fh:
            error = pickle.load(fh)
        # as Tune wrote it: in the locale's encoding, newlines as they are (an error's own \r kept)
        with open(said, errors="replace", newline="") as fh:  # noqa: PLW1514
            text = fh.read()
    except Exception:  # noqa: BLE001 - a class this process cannot load, a file cut short: judged as no error known
        return None
    if not isinstance(error, BaseException):
        return None
    last = str(error) + "\n"
    return error if text.endswith(last) and _FAILURE_HEAD.search(text[:len(text) - len(last)]) else None


def _process_died(error: BaseException | None) -> bool:
    """Whether the trial's own process died (killed, out of memory, its node lost): Ray's RayActorError."""
    from ray.exceptions import RayActorError

    return isinstance(error, RayActorError)


def _node_lost(error: BaseException | None) -> bool:
    """Whether the trial's process died with its node (crashed, removed, preempted), as Ray's error says."""
    return _process_died(error) and (bool(getattr(error, "preempted", False)) or _NODE_DIED in str(error))


def _died(error: BaseException | None, otherwise: str) -> str:
    """What Ray's error says of the trial's end: its node preempted or lost, else `otherwise`."""
    if not _node_lost(error):
        return otherwise
    return "node was preempted" if getattr(error, "preempted", False) else "node was lost"


def _uncounted(error: BaseException | None) -> bool:
    """Whether Ray counts the trial's failure as none (`Trial._handle_ray_actor_error`): its process died with its node,
    drained by the autoscaler as preempted (a spot instance reclaimed), unless RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE
    is set. Tune restarts such a trial whatever its FailureConfig says, 0 included."""
    from ray.train.constants import RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE

    return (_process_died(error) and bool(getattr(error, "preempted", False))
            and not int(os.environ.get(RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE, "0")))


def _final(row: dict[str, Any]) -> bool:
    """Finished (completed or stopped early): such a row is never changed again."""
    order = row.get("order")
    return order is not None and order == order  # not None, not NaN


def _ended(row: dict[str, Any]) -> bool:
    """Ended, finished or failed: no later write of its own is coming, and a resume reads it as lost where its row in
    storage is not this one (`resume.close_lost_trials`)."""
    return _final(row) or row.get("status") == "ERROR"


class TrialRecorder(Callback):
    """`restarts`: Tune restarts the sweep's trials whose process died up to train.max_failures (every trial trains
    in its own process: `sweep.tune_failures`), so a trial lost to a dead process is listed with the value that would
    have restarted it."""

    END_TRIES = (1.0, 4.0, 15.0)  # seconds before each further try of a write the experiment's end still owes

    def __init__(self, sweep_url: str, cfg: Config, role: str = results.SEARCH, listeners: Sequence[Listener] = (),
                 restarts: bool = False):
        self.sweep_url, self.cfg, self.role, self.listeners = sweep_url, cfg, role, tuple(listeners)
        self.restarts = restarts
        self.rows: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ Tune hooks

    def setup(self, **info: Any) -> None:
        """Reload the rows storage holds. A read that fails here is raised, ending the sweep before its first trial:
        unlike a write (`_kept`), it cannot wait for storage, as with the table unread the next write that passed
        would replace the sweep's record with this run's rows alone."""
        table = results.read_trials(self.sweep_url, self.cfg.s3)
        # an empty cell reads back as NaN, which `x or 0.0` keeps and every later sum inherits: make it None
        table = table.astype(object).where(table.notna(), None)
        self.rows = {r["trial_id"]: r for r in table.to_dict("records")}
        self._synth = recorded(self.cfg)["data"]["synth"]  # the shards' (`_recorded`): read once, here

    def _recorded(self, cfg: Config) -> dict[str, Any]:
        """A trial's config as sweeps record it (`prepare.recorded`): its data.synth is null unless the shards' corpus
        was generated, which the shards say, the same for every trial (no data setting is sampled), so their manifest
        is read once, at set-up (the driver's start or resume, before any trial). Read for each new trial, it was
        storage calls in Tune's loop per trial (on S3, requests on the driver's every trial start), the default corpus's
        settings recorded for a corpus of one's own while its manifest was rebuilt (its build removes it first), and a
        manifest read failing there (damaged, S3 unreachable) raised out of the callback, which stopped the sweep."""
        if "_synth" not in self.__dict__:  # a recorder driven without Tune's set-up
            self._synth = recorded(self.cfg)["data"]["synth"]
        dump = cfg.model_dump(mode="json")
        dump["data"]["synth"] = self._synth
        return dump

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self._row(trial)
        if _final(row):
            return
        row.update(status="RUNNING", stop_reason=None, error=None, order=None)
        row["_started"] = time.time() - (row.get("wall_s") or 0.0)  # a resumed trial's wall time goes on from its row
        self._kept(row, "started", "the trial runs on")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        row = self._row(trial)
        if _final(row):  # a finished trial reported again after a resume: its row stands
            return
        row["status"] = "RUNNING"
        row["epochs"] = int(result.get("epoch", row.get("epochs") or 0))
        # an epoch without the probe (between MO-ASHA's rungs) leaves the row the last probed epoch's values: a running
        # trial's point paired one epoch's accuracy with an earlier epoch's leakage. `probed_epoch` says which epoch
        # they are of: `epochs` ran on past it, and readers paired them with the epoch trained
        for key in FINAL if "leakage" in result else ("manifest_hash",):
            if key in result:
                row[key] = result[key] if key == "manifest_hash" else finite(result[key])
        if "leakage" in result:
            row["probed_epoch"] = row["epochs"]
            if result.get("eval_skipped_samples") is not None:  # the evaluation the row's metrics are of
                row["eval_skipped_clips"] = int(result["eval_skipped_samples"])
        if result.get("skipped_samples") is not None:  # within max_skip_rate: said at the sweep's end (`skips_said`)
            row["skipped_clips"] = max(int(result["skipped_samples"]), int(row.get("skipped_clips") or 0))
        # None: not measured this epoch (`loop.tune_result`); NaN or infinite: measured and broken
        axes = pareto.axes(self.cfg.sweep.emotion_metric)
        bad = {k: result[k] for k in (*axes.measured, *axes.chosen)
               if result.get(k) is not None and finite(result[k]) is None}
        if bad:
            row["error"] = f"{NON_FINITE} {bad} at epoch {row['epochs']}: a result no front can use"
        # each emotion metric's best, named by it: a sweep choosing on UAR recorded only best_emotion_acc. One a row
        # lacks beside another's (a trial of a table written before best_emotion_uar, resumed) stays unknown: begun
        # now, it was the best of the epochs after the resume, recorded as the best of all the trial's
        unkept = {m for m in BEST_EMOTION if row.get(f"best_{m}") is None} if any(
            row.get(f"best_{m}") is not None for m in BEST_EMOTION) else set()
        for key, better in (*((m, max) for m in BEST_EMOTION), ("leakage", min)):
            value, best = finite(result.get(key)), row.get(f"best_{key}")
            if value is not None and key not in unkept:
                row[f"best_{key}"] = value if best is None else better(best, value)
        if "epoch_s_sum" in result:  # the run's sums (avdis.train.loop): an epoch run again after a resume counts once
            row["train_s"], row["work_s"] = float(result["train_s_sum"]), float(result["epoch_s_sum"])
        row["wall_s"] = time.time() - row["_started"] if "_started" in row else row.get("wall_s")
        self._kept(row, f"reported epoch {row['epochs']}", "the trial runs on")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self._row(trial)
        if _final(row):
            return
        if row.get("error"):  # it reported a non-finite objective
            row.update(status="ERROR", stop_reason="error", order=None)
        else:
            full = (row.get("epochs") or 0) >= self.cfg.train.epochs
            row.update(status="TERMINATED" if full else "STOPPED", order=self._next_order(),
                       stop_reason="completed" if full else f"early_stopped_at_epoch_{row.get('epochs') or 0}")
        self._kept(row, f"ended ({row['status']})", "the trial is not run again")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self._row(trial)
        error = _error_of(trial)
        if _final(row):  # a finished trial Tune ran again after a resume (killed before Tune saved): its result stands
            log.warning("trial %s, finished before the driver was killed, failed when Tune ran it again; its recorded "
                        "result is kept: %s", trial.trial_id, error[-500:] if error else "no error given")
            return
        said = error[-2000:] if error else "trial failed (see its error file)"
        self._stop_clock(row)
        raised = _raised(trial) if getattr(self, "restarts", False) else None  # an experiment pickled before: False
        if _process_died(raised):
            n, allowed = trial.num_failures, self.cfg.train.max_failures
            # n counts the trial's failures, not its deaths: one restarted after a storage error died once, not twice
            said += (f"\nthe trial's {_died(raised, 'process died')}{f' (its failure {n})' if n > 1 else ''} ("
                     f"{'' if _node_lost(raised) else 'killed, out of memory, or its node lost; '}restarts allowed: "
                     f"train.max_failures={allowed})")
            if trial.max_failures != allowed:  # lowered by `on_trial_recover`: more would have changed nothing
                said += (": the restart after an error a restart meets again was its last, so no train.max_failures "
                         "would have restarted it")
            else:
                said += f": train.max_failures={n} would have restarted it from its last checkpoint"
        row.update(status="ERROR", stop_reason="error", order=None, error=said)
        self._kept(row, "failed", "the sweep goes on")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Tune restarts the trial from its last checkpoint (train.max_failures; its row stays RUNNING, and goes on
        from the epochs the checkpoint holds). Where it failed of an avdis error that is not `retryable` (a fault in
        its input, which a restart meets again: with train.max_failures=-1 it restarted for ever, as Ray Train did,
        `launch.stop_on_input_fault`), Tune has no hook to pass over the restart: the one it has begun is made the
        trial's last (its own `max_failures`), and it ends on that error again, from its last checkpoint. A trial whose
        node was preempted is restarted whatever train.max_failures says (`_uncounted`), and said so."""
        from avdis.train.launch import input_fault

        self._stop_clock(self._row(trial))  # written by its restart's `on_trial_start`, which goes on from it
        raised = _raised(trial)
        allowed = trial.max_failures
        if raised is not None and input_fault([raised]) is not None:
            trial.max_failures = 0  # its next failure ends it: `Trial.should_recover`
            print(f"avdis sweep: trial {trial.trial_id} failed of an error a restart meets again: its restart, begun "
                  "by Tune, is its last", flush=True)
            return
        if _uncounted(raised):  # a preempted node: restarted, whatever train.max_failures (0 too), as no failure
            print(f"avdis sweep: trial {trial.trial_id}: its node was preempted; restarting it from its last "
                  "checkpoint (Ray counts a preemption as no failure: Tune restarts the trial whatever "
                  f"train.max_failures says; failures so far: {trial.num_failures})", flush=True)
            return
        cause = (f"its {_died(raised, 'process died')}" if _process_died(raised) else
                 "it failed" if raised is None else f"it failed ({type(raised).__name__})")
        print(f"avdis sweep: trial {trial.trial_id}: {cause}; restarting it from its last checkpoint (restart "
              f"{trial.num_failures} of train.max_failures={allowed}{', for ever' if allowed < 0 else ''})",
              flush=True)

    # ------------------------------------------------------------ rows

    @staticmethod
    def _stop_clock(row: dict[str, Any]) -> None:
        """The trial failed: its wall time runs to now, the part of an epoch its dead process lost included, and stops
        (`on_trial_start` of its restart goes on from it). Before, it stood at the trial's last result, and a restart
        went on from there: the compute lost with the process was counted nowhere."""
        if "_started" in row and not _final(row):
            row["wall_s"] = time.time() - row.pop("_started")

    def _next_order(self) -> int:
        return int(max((r["order"] for r in self.rows.values() if _final(r)), default=0)) + 1

    def _row(self, trial: Any) -> dict[str, Any]:
        tid = trial.trial_id
        if tid not in self.rows:
            params = dict(trial.config)
            over = to_overrides(params)
            try:
                cfg = with_overrides(self.cfg, over)
            except AvdisError:  # the trial fails on it and says why; a callback that raised stopped the sweep
                cfg = self.cfg
            self.rows[tid] = {
                "trial_id": tid, "sweep": self.cfg.sweep.name, "method": over["method.name"],
                "weight": finite(over["method.weight"]), "lr": cfg.train.lr, "emb_dim": cfg.model.emb_dim,
                "seed": cfg.train.seed, "split_id": split_id(cfg.data.split),
                "params": json.dumps(params, sort_keys=True, default=str), "config_id": config_id(params),
                "role": self.role,
                "config": json.dumps(self._recorded(cfg), sort_keys=True),  # data.synth null unless generated
            }
        return self.rows[tid]

    @property
    def _owed(self) -> set[str]:
        """The trials whose rows changed since the last write storage took (`_kept`); none in a recorder restored with
        an experiment pickled before."""
        return self.__dict__.setdefault("owed", set())

    def _write(self, changed: dict[str, Any] | None) -> None:
        """Write every row, `changed` stamped with the time: its `updated_at` is its own last change. Each write
        stamped every row, so a trial finished hours before read as changed at the last result of any other. Rows
        `_owed` are written with it; where writes failed before it, it says that storage took one again."""
        if changed is not None:
            changed["updated_at"] = time.time()
            self._owed.add(changed["trial_id"])
        rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in self.rows.values()]
        written = results.record(self.sweep_url, rows, self.cfg.sweep.name, self.cfg.s3, self.cfg.sweep.emotion_metric)
        self._owed.clear()
        outage = self.__dict__.pop("outage", None)
        if outage is not None:
            print(f"avdis sweep: {results.TRIALS} in {self.sweep_url} written again, after {outage['failed']} "
                  f"write{'s' if outage['failed'] > 1 else ''} it did not take over {time.time() - outage['since']:.0f}"
                  " s: the rows they owed are in it", file=sys.stderr, flush=True)
        notify(self.listeners, *written)

    def _kept(self, row: dict[str, Any], event: str, then: str) -> None:
        """Write every row, `row` just changed by its trial's `event` (its start, a result, its failure, its end).
        Where storage does not take the write (StorageError: S3 or a disk that does not answer, refuses, or is full),
        the row is kept, owed (`_owed`), and written with the next write storage takes, of any trial's row, or as the
        experiment ends (`on_experiment_end`, which raises where storage never came back); the first failure of an
        outage is said, the rest not until a write passes again. Raised out of a Tune hook, a storage blip ended the
        sweep: from on_trial_start, on_trial_result and on_trial_error Tune raises it out of its loop
        (`TuneController.step`), and from on_trial_complete it failed the finished trial (`TuneController.stop_trial`)
        and, by train.max_failures, trained it again. Any other error is raised: it is of the rows, not of storage
        (a value the table's schema cannot hold), every later write meets it again, and the sweep would run on with
        nothing recorded."""
        try:
            self._write(row)
        except StorageError as exc:
            if not self._count_untaken_write():  # the outage said at its first write alone
                return
            print(f"avdis sweep: warning: trial {row['trial_id']} {event}, but {results.TRIALS} in {self.sweep_url} "
                  f"could not be written ({exc}); its row is kept and written with the sweep's next write (at the "
                  f"latest as the experiment ends), and {then}; further writes storage does not take are not said "
                  "until one passes", file=sys.stderr, flush=True)

    def _count_untaken_write(self) -> bool:
        """Count a write storage did not take in its outage (ended by the next write it takes: `_write`); whether it is
        the outage's first."""
        outage = self.__dict__.setdefault("outage", {"since": time.time(), "failed": 0})
        outage["failed"] += 1
        return outage["failed"] == 1

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Write the rows still `_owed`, tried again after each of `END_TRIES`' waits; where storage still does not
        answer, raise, giving the rows of the ended trials among them (a resume reads a trial whose row is not written
        as lost). Rows of trials still running alone (an experiment cut short: interrupted, or its driver failed) are
        not waited for: said, not raised (over the interruption's own end), as its resume runs those trials on and
        writes their rows."""
        for wait in (*self.END_TRIES, None):
            if not self._owed:
                return
            try:
                self._write(None)
            except StorageError as exc:  # tried again, then raised below
                self._count_untaken_write()
                ended = sorted(tid for tid in self._owed if _ended(self.rows[tid]))
                if not ended:
                    print(f"avdis sweep: warning: {results.TRIALS} in {self.sweep_url} could not be written as the "
                          f"experiment ended ({exc}): the rows of trials {', '.join(sorted(self._owed))}, still "
                          "running, are behind in it; the sweep's resume runs them on and writes them",
                          file=sys.stderr, flush=True)
                    return
                if wait is None:
                    owed = {tid: {k: v for k, v in self.rows[tid].items() if not k.startswith("_") and k != "config"}
                            for tid in ended}
                    raise results.ResultsError(
                        f"{self.sweep_url}: {results.TRIALS} could not be written as the sweep's experiment ended "
                        f"({exc}): the rows of ended trials {', '.join(owed)} are not in it. Once storage answers, "
                        f"set their rows in it to these before the sweep is resumed, and `avdis report "
                        f"{self.sweep_url}` redraws its front from it: Tune saved them as ended, so a rerun does not "
                        "run them again, and closes their rows, still running, as lost, their results off the front. "
                        f"Their rows, as recorded: {json.dumps(owed, default=str)}") from exc
                time.sleep(wait)


def notify(listeners: Sequence[Listener], frame: pd.DataFrame, summary: dict[str, Any]) -> None:
    """Show the table and summary just written to each listener; one that fails is said once, the sweep goes on."""
    for listener in listeners:
        try:
            listener(frame, summary)
        except Exception as exc:  # noqa: BLE001 - listeners are views; the files are the record
            log.warning("sweep results not shown by %s: %s", getattr(listener, "__name__", listener), exc)
