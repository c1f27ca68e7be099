"""The listing of a sweep's failed trials, its last words (`failures`)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from avdis import results
from avdis.config import Config
from avdis.errors import AvdisError
from avdis.tune import records
from avdis.tune.resume import CLOSED_WHY, SavedExperiment, read_saved, retries_of, retry_refusal
from avdis.tune.space import to_overrides
from avdis.tune.sweep import checkpoints_of, restorable


class TrialsFailed(AvdisError):
    """Trials of the sweep ended in an error: its front stands on the others, and its exit code says so."""


LAST_LINE = 2000  # the most of a failed trial's last line of error the sweep's last words quote


def failures(sweep_url: str, cfg: Config) -> TrialsFailed | None:
    """TrialsFailed naming every trial that errored (a lost trial is not one: Tune drew another in its place), None
    where none did; returned, not raised, so that the sweep's last words can say which it was before it is raised.
    Each trial's last line of error is quoted whole (up to LAST_LINE characters), once: a trial that ended on the same
    line as one before it says so. Cut at 300 characters, it lost what avdis's errors end with, what to do (every
    trial of a sweep on a damaged shard read "...; make the shards again with `avdis")."""
    trials = results.read_trials(sweep_url, cfg.s3)
    said = results.failures_said(trials, sweep_url)
    if said is None:
        return None
    lines, first = [], {}  # a trial's last line of error -> the first trial that ended on it
    for row in trials[results.failed(trials)].itertuples():
        last = (str(row.error).strip().splitlines() or ["no message"])[-1]  # an exception without a message: empty
        quoted = (f"the same error as {first[last]}" if last in first else
                  last if len(last) <= LAST_LINE else f"{last[:LAST_LINE]}... (the rest in its row)")
        first.setdefault(last, row.trial_id)
        lines.append(f"  {row.trial_id} ({_settings(row)}): {quoted}")
    return TrialsFailed(
        f"{said}\n" + "\n".join(lines)
        + f"\nTune's error file is in each trial's folder under {checkpoints_of(cfg)}. A trial's settings, given to "
        f"`avdis train` with the sweep's config, train it alone. {_retries(trials[results.failed(trials)], cfg)}"
    )


def _retries(failed: pd.DataFrame, cfg: Config) -> str:
    """What --retry-failed does with the `failed` trials, by the flag's own rule (`resume.retries_of`, against Tune's
    saved experiments as the flag reads them): each run again from its last checkpoint, but one the saved experiment
    of its role does not hold (started after Tune last saved its state, failed before the driver was killed: cannot),
    one it holds as finished (one that reported a non-finite objective, which Tune took for a finish: cannot), and
    the search's once the front's confirmation has begun (closed); and where the checkpoint of one it runs again fails
    the checks before Ray starts (`resume.retry_refusal`), the flag refuses the rerun until that is seen to, as the
    refusal says. Said of every failed trial, those said 'Rerun the same command with --retry-failed', which then said
    it would not retry them, or refused the rerun, at every rerun. Where the saved experiment of a trial's role cannot
    be read, the trial's error says it: one of a non-finite objective is not run again, the search's are closed once
    the confirmation's experiment exists, the others are run again. Until 2026-12-05 the words had a rule of their own
    beside the flag's, and sent to the flag a trial Tune held as finished whose error was not a non-finite objective,
    said 'the confirmation ... has begun' of a search trial of a non-finite objective (the flag: cannot), and named as
    not run again a trial of a non-finite objective that Tune held as failed (marked by `resume.mark_failed_trials`),
    which the flag ran again."""
    saved: dict[str, SavedExperiment] = {}  # read once per role, as a resume reads them
    role = failed["role"].fillna(results.SEARCH)
    search = role == results.SEARCH
    states = {of: _saved(cfg, of, saved) for of in set(role)}
    read = role.map(lambda of: states[of] is not None).astype(bool)  # the flag's rule tells these
    confirming = restorable(cfg, results.CONFIRM)
    rule = retries_of(failed[read], {of: state for of, state in states.items() if state is not None}, confirming)
    trial = failed["trial_id"]
    non_finite = records.non_finite(failed)
    unknown = read & trial.isin(rule.cannot - rule.finished)
    closed = read & trial.isin(rule.closed) | ~read & search & confirming
    finished = read & trial.isin(rule.finished) | ~read & ~closed & non_finite
    retried = read & trial.isin(set().union(*rule.run.values())) | ~read & ~closed & ~non_finite
    refused = {trial: why for trial, of in zip(failed.loc[retried & read, "trial_id"], role[retried & read])
               if (why := _refusal(cfg, trial, of, saved)) is not None}
    which = ("each failed trial" if retried.all() else
             "each failed confirming trial" if retried.equals(~search) else
             f"each of {_ids(failed, retried)}" if retried.sum() > 1 else _ids(failed, retried))
    head = ("They are not run again, --retry-failed or not" if not retried.any() else
            f"Rerun the same command with --retry-failed once the cause is fixed: {which} is run again from its last "
            "checkpoint (rerun without it, they stay failed)")
    notes = [f"but while trial {trial}'s checkpoint stands as it is, the flag refuses the rerun before Ray starts: "
             f"{why}" for trial, why in refused.items()]
    if unknown.any():
        it, its = _it(unknown)
        notes.append(f"{_ids(failed, unknown)} started after Tune last saved its experiment and failed before the "
                     f"driver was killed, so Tune does not hold {it}: not run again in this sweep (`avdis train` with "
                     f"{its} settings above trains {it} alone, a new sweep.name in a new sweep)")
    if closed.any():
        notes.append(f"the search's failed {_ids(failed, closed)} not: {CLOSED_WHY}" if retried.any() else CLOSED_WHY)
    if (finished & non_finite).any():
        notes.append(f"{_ids(failed, finished & non_finite)} reported a non-finite objective, which Tune took for the "
                     "trial's end (run again, it would meet the same from its last checkpoint): not run again")
    if (finished & ~non_finite).any():
        notes.append(f"Tune's saved experiment holds {_ids(failed, finished & ~non_finite)} as finished, so Tune does "
                     f"not run {_it(finished & ~non_finite)[0]} again: not run again")
    return head + (("; " if retried.any() else ": ") + "; ".join(notes) if notes else "") + "."


def _it(which: pd.Series) -> tuple[str, str]:
    return ("it", "its") if which.sum() == 1 else ("them", "their")


def _saved(cfg: Config, role: str, saved: dict[str, SavedExperiment]) -> SavedExperiment | None:
    """The saved Tune experiment of `role` as the flag's resume reads it (`resume.read_saved`): the state Tune saved
    as this run ended, where a failed trial it holds as unfinished is one the resume marks as failed
    (`resume.mark_failed_trials`) and retries. None where it cannot be read: the flag then says what it finds."""
    try:
        return read_saved(saved, cfg, role)
    except Exception:  # noqa: BLE001 - the sweep's last words are said whatever
        return None


def _refusal(cfg: Config, trial: str, role: str, saved: dict[str, SavedExperiment]) -> str | None:
    """`resume.retry_refusal`; None where the trial's checkpoint cannot be looked at (storage that does not answer):
    the flag then says what it finds."""
    try:
        return retry_refusal(cfg, trial, role, saved)
    except Exception:  # noqa: BLE001 - the sweep's last words are said whatever
        return None


def _ids(failed: pd.DataFrame, which: pd.Series) -> str:
    ids = list(failed.loc[which, "trial_id"])
    return f"{'trial' if len(ids) == 1 else 'trials'} ({', '.join(ids)})"


def _settings(row: Any) -> str:
    """A failed trial's sampled settings as overrides `avdis train` takes (its method alone for a row without them):
    the method says too little to reproduce a failure that one weight or learning rate causes."""
    if not isinstance(row.params, str):
        return str(row.method)
    return " ".join(f"{k}={v}" for k, v in to_overrides(json.loads(row.params)).items() if v is not None)
