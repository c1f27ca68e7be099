"""What a resumed sweep finds of the Tune experiments and trials of the driver that was killed or stopped: the
experiments where they should be (`check_experiments`), its unfinished trials' checkpoints (`check_trial_runs`), what
a saved experiment lists (`saved_experiment`, read once a resume: `read_saved`), its failed trials
(`mark_failed_trials`, `retried_trials`), what its ConcurrencyLimiter counts as running once restored
(`count_restored_trials`), the trials that ended apart from it (`ended_apart`), and the trials no one will finish,
closed and their checkpoints removed (`close_lost_trials`)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Collection, Mapping, NamedTuple, Sequence

import pandas as pd

from avdis import results, storage
from avdis.config import Config
from avdis.errors import AvdisError, UsageError
from avdis.train import checkpoint as ck
from avdis.tune import records
from avdis.tune.records import Listener, notify
from avdis.tune.sweep import (  # sweep imports this module in its functions
    begun, checkpoints_of, experiment_of, experiment_states, restorable)
from avdis.tune.trial import TRIALS_DIR, run_trial


def check_experiments(sweep_url: str, cfg: Config, resume: bool) -> None:
    """Refuse a Tune experiment that is where it should not be, or not where it should be. A new sweep finding one
    (sweep.checkpoints is shared by sweep name; a sweep folder deleted without its checkpoints) would write its
    state beside another sweep's and resume from the newer; a resumed sweep whose experiment is gone (expired by a
    lifecycle rule, deleted) would start its trials over beside the ones it recorded."""
    where = checkpoints_of(cfg)
    if not resume:
        held = [role for role in (results.SEARCH, results.CONFIRM) if begun(cfg, role)]
        if held:
            raise UsageError(f"{where} holds a Tune experiment ({experiment_of(cfg, held[0])[2]}) but {sweep_url} "
                             "no sweep: it is another sweep's of this name, or what is left of one deleted. Give "
                             "another sweep.name, or move that folder aside")
        return
    done = _finished_roles(results.read_trials(sweep_url, cfg.s3))
    gone = [role for role in (results.SEARCH, results.CONFIRM) if role in done and not restorable(cfg, role)]
    if gone:
        raise UsageError(f"{sweep_url}: its Tune experiment {experiment_of(cfg, gone[0])[2]} is gone from {where} "
                         "(expired by a lifecycle rule, or deleted), so it cannot resume: its trials would start over "
                         f"beside the ones it recorded. `avdis report {sweep_url}` still reads it; search again under "
                         "a new sweep.name")


def check_trial_runs(sweep_url: str, cfg: Config, saved: dict[str, SavedExperiment] | None = None,
                     retried: Collection[str] = ()) -> list[str]:
    """Refuse, before Ray starts, a resumed sweep's unfinished trial that cannot resume, saying what to move aside:
    refused in the trial, it failed (and failed again at each retry). A multi-worker trial's Ray Train
    run (under `<checkpoints>/trials/`) whose record lists a checkpoint folder that is gone (deleted, expired by a
    lifecycle rule), which Ray Train will not load (the trial ended in Ray's CheckpointManagerInitializationError); a
    checkpoint the trial restores (its Ray Train run's, or Tune's for a trial in its own process) that lacks a file
    every checkpoint holds (`ck.fault`); a Tune checkpoint that is gone with no whole one beside it. Finished trials
    are not trained again, failed ones are run again only where `retried` names them (`retried_trials`, under
    `--retry-failed`): those are checked as the unfinished are, the others not, and a retried one's refusal adds that
    a rerun without the flag leaves it failed. Returns the Tune checkpoint folders that are
    gone, for `ck.stand_in`: Tune deletes one as its trial saves newer ones, and a driver killed before it saved its
    state again left the state naming it, as the one the trial restores from (with a whole one beside it) or as one
    it keeps beside that, which Tune deletes in turn: Ray's deletion of a folder that is gone raised, logged with its
    traceback, before Tune advanced the trial's checkpoint index, and the trial's next restore wrote its first
    checkpoint over the one it restored from. `saved`: the saved experiments this resume has read (`read_saved`),
    filled with those it reads."""
    trials = results.read_trials(sweep_url, cfg.s3)
    resumed = trials[trials["order"].isna() & ((trials["status"] != "ERROR") | trials["trial_id"].isin(list(retried)))]
    saved = {} if saved is None else saved
    gone = []
    for trial_id, role in zip(resumed["trial_id"], resumed["role"].fillna(results.SEARCH)):
        try:
            gone.extend(_check_trial_run(cfg, trial_id, role, saved))
        except ck.CheckpointError as exc:
            if trial_id not in retried:
                raise
            # failed, it need not be run again: the refusal's "start a new sweep" alone gave up the whole sweep
            raise ck.CheckpointError(f"{exc}; or rerun without --retry-failed, which leaves trial {trial_id} failed "
                                     "and the rest of the sweep as it is") from None
    return gone


def retry_refusal(cfg: Config, trial_id: str, role: str, saved: dict[str, SavedExperiment]) -> str | None:
    """Why `check_trial_runs` refuses, before Ray starts, a resume that `--retry-failed` runs the failed `trial_id` of
    `role` again in (its checkpoint cannot be restored, and the refusal says what to move aside), without the words
    the refusal adds; None where its checkpoint passes the checks. The sweep's last words (`failures`) say it: they
    sent such a trial to the flag at every rerun, which refused it each time."""
    try:
        _check_trial_run(cfg, trial_id, role, saved)
    except ck.CheckpointError as exc:
        return str(exc)
    return None


def _check_trial_run(cfg: Config, trial_id: str, role: str, saved: dict[str, SavedExperiment]) -> list[str]:
    """`check_trial_runs` of one trial: the gone Tune checkpoint folders it returns of it, or its refusal."""
    gone: list[str] = []
    run_url = storage.join(checkpoints_of(cfg), TRIALS_DIR, trial_id)
    ck.check_ray_record(run_url, cfg.s3, "start a new sweep (sweep.name=...)")
    folder = ck.ray_restored(run_url, cfg.s3)
    if folder is not None:
        why = ck.fault(folder, cfg.s3)
        if why is not None:
            raise ck.unusable(run_url, why, folder, s3=cfg.s3)
        return gone
    restored = read_saved(saved, cfg, role).restored.get(trial_id)
    if restored is None:
        return gone
    folder, kept = restored
    gone.extend(other for other in kept if other != folder and not storage.exists(other, cfg.s3))
    if not storage.exists(folder, cfg.s3):
        if ck.tune_whole_beside(folder, run_url, cfg.s3) is None:
            raise ck.tune_unusable(folder, trial_id, "it is gone", run_url, cfg.s3)
        gone.append(folder)
    # without a state.json the trial resumes from the newest whole checkpoint beside it (`loop.tune_checkpoint`)
    elif storage.exists(storage.join(folder, ck.STATE), cfg.s3):
        why = ck.fault(folder, cfg.s3)
        if why is not None:  # Tune fails a trial whose checkpoint folder is gone: it must stay where it is
            raise ck.tune_unusable(folder, trial_id, why, run_url, cfg.s3)
    return gone


@dataclass(frozen=True)
class SavedExperiment:
    """What the saved Tune experiment of a role lists (`saved_experiment`)."""

    known: frozenset[str]  # the ids of its trials
    # by trial id, the URL of the checkpoint Tune restores the trial from (its latest in the saved state) and the URLs
    # of those it keeps of the trial (`KEEP_CHECKPOINTS`, that one among them)
    restored: dict[str, tuple[str, list[str]]]
    status: dict[str, str] = field(default_factory=dict)  # by trial id, its status in the saved state (Tune's)
    exists: bool = True  # whether the role's experiment was saved at all (begun)

    @property
    def errored(self) -> frozenset[str]:
        """Its trials that ended in an error (Tune's ERROR): those `Tuner.restore(resume_errored=True)` runs again."""
        return frozenset(trial for trial, status in self.status.items() if status == "ERROR")


def saved_experiment(cfg: Config, role: str) -> SavedExperiment:
    """The trials the saved Tune experiment of `role` lists, their status, and the checkpoints it restores them from;
    none without a saved experiment. Each call opens it (`ExperimentAnalysis`: on S3 a listing and a read of its
    state): a resume reads it once per role (`read_saved`)."""
    from ray.tune import ExperimentAnalysis

    if not restorable(cfg, role):
        return SavedExperiment(frozenset(), {}, exists=False)
    fs, storage_path, name = experiment_of(cfg, role)
    trials = ExperimentAnalysis(f"{storage_path}/{name}", storage_filesystem=fs).trials
    restored = {}
    for trial in trials:
        if trial.checkpoint is not None:
            kept = [r.checkpoint.path for r in trial.run_metadata.checkpoint_manager.best_checkpoint_results]
            restored[trial.trial_id] = (storage.url_from_pyarrow(fs, trial.checkpoint.path) or trial.checkpoint.path,
                                        [storage.url_from_pyarrow(fs, path) or path for path in kept])
    return SavedExperiment(frozenset(t.trial_id for t in trials), restored, {t.trial_id: t.status for t in trials})


def read_saved(saved: dict[str, SavedExperiment], cfg: Config, role: str) -> SavedExperiment:
    """`saved_experiment` of `role` as this resume read it before Ray started, read into `saved` (one resume's, by
    role) where it has not been: the checks before Ray starts (`check_trial_runs`) and the trials counted apart
    (`ended_apart`) each opened it. Not for after the role's experiment has run again (`lost_checkpoint_folders`),
    whose state Tune has saved anew."""
    if role not in saved:
        saved[role] = saved_experiment(cfg, role)
    return saved[role]


# the TuneController's decisions on a trial held back (until its checkpoint is saved) or queued, in its saved state
DECISIONS = ("_cached_trial_decisions", "_queued_trial_decisions")


UNFINISHED = ("RUNNING", "PENDING", "PAUSED")  # a trial's status in Tune's saved state that a restore resumes
# the statuses Tune's saved state may hold a trial of a non-finite objective in that `mark_failed_trials` marks finished
ENDED_FROM = (*UNFINISHED, "ERROR")


def mark_failed_trials(sweep_url: str, cfg: Config) -> None:
    """Make the saved Tune experiment of each role hold as ERROR the trials the sweep's record has as failed
    (`results.failed`: not one lost with its driver) that it holds as unfinished. Ray 2.60 writes a
    trial into its saved state only where it marked the trial to be saved, and a trial whose process died (killed, out
    of memory, its node lost) ends in ERROR unmarked: the state kept it RUNNING, and every rerun resumed it as an
    unfinished trial, with or without `--retry-failed`, though the sweep had listed it as failed and said a failed
    trial is not retried (a trial that raised was saved as ERROR, and never retried). So is one that failed after Tune
    last saved its state, before its driver was killed. Marked, each is run again under `--retry-failed` alone, as
    every failed trial is (`retried_trials`). Written whole in place of the newest state file, which Tune restores.
    The decisions Tune holds on a trial its state holds as ERROR are dropped there too (`DECISIONS`): a process that
    died while Tune saved its checkpoint left Tune's stop of the failed trial held until that save
    (`_cached_trial_decisions`, saved and restored with the controller), and `--retry-failed` ran the trial again only
    to its first checkpoint, where that stop was carried out: the trial ended as stopped early at that epoch, which
    MO-ASHA had not stopped, its later epochs untrained, no longer failed, so not retried again. Each trial marked
    has its count of failures (Tune's `num_failures`, which train.max_failures counts against) raised by the failure
    its saved state was saved before: that state held the count as it stood before it, so a retried trial that failed
    again said the count one short (a trial killed under train.max_failures=0, retried and killed again: 'train.
    max_failures=1 would have restarted it', not its failure 2, which one that raised first, saved as ERROR with its
    failure counted, said). A trial saved PAUSED is not: `schedulers.AtMost` held it (a retried trial waiting for a
    place under sweep.max_concurrent as Tune saved it), so it had not run since the failure counted; where it then
    started and failed again before Tune's next save, its driver killed, its count stays one short. A count two or
    more short (a trial restarted and failed again after Tune's last save, its driver killed then) stays short by the
    rest: the state holds no trace of them. A failed trial the record has as one that reported a non-finite objective
    (its driver killed after the recorder wrote its end, before Tune saved it) is marked TERMINATED instead, as Tune
    saves such a trial, whose end it takes for a finish: marked ERROR, `--retry-failed` trained it again from its
    checkpoint, to meet the same values, where the flag runs none that Tune saw end so. So is one an avdis before
    2026-12-06 marked ERROR."""
    trials = results.read_trials(sweep_url, cfg.s3)
    lost = results.failed(trials) & trials["order"].isna()
    non_finite = records.non_finite(trials)
    failed, ended = set(trials.loc[lost & ~non_finite, "trial_id"]), set(trials.loc[lost & non_finite, "trial_id"])
    for role in (results.SEARCH, results.CONFIRM):
        states = experiment_states(cfg, role) if (failed or ended) and begun(cfg, role) else []
        if not states:  # no experiment (`restorable`)
            continue
        newest = states[-1]  # Tune's pick
        try:
            state = json.loads(storage.read_bytes(newest, cfg.s3))
            changed, errored = [], set()
            for entry in state["trial_data"]:
                trial = json.loads(entry[0])
                if trial.get("trial_id") in ended and trial.get("status") in ENDED_FROM:
                    trial["status"] = "TERMINATED"  # as Tune saves one whose end it saw
                    entry[0] = json.dumps(trial, indent=2)
                    changed.append(trial["trial_id"])
                elif trial.get("trial_id") in failed and trial.get("status") in UNFINISHED:
                    held = trial["status"] == "PAUSED"  # held by `schedulers.AtMost` since its failure: not run
                    trial["status"] = "ERROR"
                    entry[0] = json.dumps(trial, indent=2)
                    if not held:
                        run = json.loads(entry[1])  # its run's metadata: saved before the failure was counted
                        run["num_failures"] = int(run["num_failures"]) + 1
                        entry[1] = json.dumps(run, indent=2)
                    changed.append(trial["trial_id"])
                if trial.get("status") == "ERROR":
                    errored.add(trial.get("trial_id"))
            controller = state.get("runner_data") or {}
            held = [(decisions, trial) for decisions in (controller.get(name) or {} for name in DECISIONS)
                    for trial in errored & set(decisions)]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # another Ray's layout
            print(f"avdis sweep: warning: {newest} is not laid out as Ray 2.60's saved experiment state ({exc!r}): a "
                  "failed trial it holds as unfinished is resumed by this rerun, --retry-failed or not",
                  file=sys.stderr, flush=True)
            continue
        for decisions, trial in held:
            del decisions[trial]
        if changed or held:
            storage.write_bytes(newest, json.dumps(state).encode(), cfg.s3)


LIMITER = "name:ConcurrencyLimiter"  # the limiter's entry in Tune's saved search state (`SearchGenerator.save_to_dir`)


def count_restored_trials(cfg: Config, role: str, retry: bool) -> None:
    """Make the saved ConcurrencyLimiter of the experiment of `role` (`sweep.max_concurrent`) count as running
    (`live_trials`) the trials Tune runs as it restores the experiment, and those alone: the trials its saved state
    holds as unfinished and, with `retry` (`--retry-failed`: `resume_errored`), those it holds as failed. Tune starts
    restored trials without asking its searcher, and the limiter, which counts the trials it suggested, had let a
    failed trial go at its failure: a retried trial ran beside a new suggestion (with sweep.max_concurrent=1, two
    trials on a GPU box sized for one: out of memory, the very failure retried), and its end was not passed on to the
    searcher (the limiter passes on the completions of the trials it counts). A failed trial it still counted (one
    that failed after Tune last saved its state, before its driver was killed: `mark_failed_trials`) is not run by a
    plain rerun, and would hold its place for ever. Run before each restore (`sweep.restored`): written whole in place
    of the newest saved search state, which Tune restores (`_load_newest_checkpoint`: by name), where it changes.
    Tune starts every restored trial as it adds it; the sweep's scheduler (`schedulers.AtMost`) holds those past
    sweep.max_concurrent back until a place frees."""
    import ray.cloudpickle as cloudpickle

    states = storage.list_files(storage.join(checkpoints_of(cfg), experiment_of(cfg, role)[2]), ".json", cfg.s3)
    states = [url for url in states if url.rsplit("/", 1)[-1].startswith("search_gen_state-")]
    if not states:
        return
    status = saved_experiment(cfg, role).status
    run = {trial for trial, said in status.items() if said in UNFINISHED or (retry and said == "ERROR")}
    newest = max(states)
    try:
        state = cloudpickle.loads(storage.read_bytes(newest, cfg.s3))
        limiter = state[LIMITER]
        if set(limiter["live_trials"]) == run and limiter["num_unfinished_live_trials"] == len(run):
            return
        limiter["live_trials"], limiter["num_unfinished_live_trials"] = set(run), len(run)
    except (KeyError, TypeError, ValueError, EOFError, AttributeError, cloudpickle.pickle.UnpicklingError) as exc:
        print(f"avdis sweep: warning: {newest} is not laid out as Ray 2.60's saved search state ({exc!r}): "
              "sweep.max_concurrent may not count the trials this rerun resumes or retries", file=sys.stderr,
              flush=True)
        return
    storage.write_bytes(newest, cloudpickle.dumps(state), cfg.s3)


# why `--retry-failed` leaves the search's failed trials failed once the front's confirmation has begun
# (`retried_trials`: closed), as the flag and the sweep's last words (`failures`) say it
CLOSED_WHY = ("the confirmation of the search's front has begun, and re-trains the front it began on, which a retried "
              "search trial could change (a new sweep.name runs them in a new sweep)")


class Retries(NamedTuple):
    """What `--retry-failed` does with a resumed sweep's failed trials (`retries_of`)."""

    run: dict[str, set[str]]  # by role, those Tune runs again
    cannot: set[str]  # those Tune's saved experiment does not hold as failed: not at all, or as finished (`finished`)
    closed: set[str]  # the search's, once its front's confirmation has begun
    finished: frozenset[str] = frozenset()  # of `cannot`, those it holds as finished (TERMINATED)


def retried_trials(sweep_url: str, cfg: Config, saved: dict[str, SavedExperiment]) -> Retries:
    """Under `--retry-failed`: the failed trials the resume runs again, by role (`results.SEARCH`, `results.CONFIRM`),
    and those of the sweep's failed trials (`results.failed`) it does not, by `retries_of` against the saved
    experiments of both roles. `saved`: the saved experiments this resume has read (`read_saved`)."""
    trials = results.read_trials(sweep_url, cfg.s3)
    states = {role: read_saved(saved, cfg, role) for role in (results.SEARCH, results.CONFIRM)}
    return retries_of(trials[results.failed(trials)], states, states[results.CONFIRM].exists)


def retries_of(failed: pd.DataFrame, states: Mapping[str, SavedExperiment], confirming: bool) -> Retries:
    """The rule of `--retry-failed` (`retried_trials`), which the sweep's last words (`failures`) say by too: what the
    flag does with the `failed` trials (rows of the sweep's record, `results.failed`) as the saved Tune experiments
    of their roles (`states`, by role, as `read_saved` reads them) hold them. Tune runs again each trial its saved
    experiment holds as ERROR (`Tuner.restore(resume_errored=True)`), from its latest checkpoint (from its start where
    it has none), and so each failed trial it holds as unfinished (UNFINISHED), which `mark_failed_trials` marks as
    ERROR before the restore (the last words read the state before that), but one that reported a non-finite
    objective, which it marks as finished (`ENDED_FROM`: held as ERROR too, as an avdis before 2026-12-06 marked it).
    It cannot run again a failed trial its saved experiment does not list (one that a killed driver started after Tune
    last saved its state, failed before the kill: `ended_apart`) nor one it holds as finished (`finished`: one that
    reported a non-finite objective, Tune took its end for a finish, and the recorder made it an error). With
    `confirming` (the front's confirmation has begun: its experiment was saved), the search's trials it would run are
    closed: the restored confirmation re-trains the front it began on, with as many trials as it began with, and a
    retried trial could change that front (the confirmation's count then read as a sweep interrupted, at every
    rerun). The failed trials of a role not in `states` are in none of the sets."""
    role = failed["role"].fillna(results.SEARCH)
    run: dict[str, set[str]] = {}
    cannot: set[str] = set()
    finished: set[str] = set()
    ended = set(failed.loc[records.non_finite(failed), "trial_id"])
    for of, state in states.items():
        held = {trial: state.status.get(trial) for trial in failed.loc[role == of, "trial_id"]}
        held |= {trial: "TERMINATED" for trial, status in held.items() if trial in ended and status in ENDED_FROM}
        run[of] = (set(state.errored) - ended) | {trial for trial, status in held.items() if status in UNFINISHED}
        cannot |= {trial for trial, status in held.items() if status in (None, "TERMINATED")}
        finished |= {trial for trial, status in held.items() if status == "TERMINATED"}
    closed = set(run.get(results.SEARCH, ())) if confirming else set()
    if results.SEARCH in run:
        run[results.SEARCH] -= closed
    return Retries(run, cannot, closed, frozenset(finished))


def _finished_roles(trials: pd.DataFrame) -> set[str]:
    return set(trials.loc[trials["order"].notna(), "role"].fillna(results.SEARCH))


def close_lost_trials(sweep_url: str, cfg: Config, role: str, listeners: Sequence[Listener] = ()) -> pd.DataFrame:
    """Once the experiment of `role` has ended, a row of that role still RUNNING is a trial the killed driver started
    after Tune's last save: no one will finish it. Mark it ERROR, saying why, instead of showing it as running for
    ever, and show the closed table to the listeners too (the gauges kept its mid-training values on Grafana's
    front). Rows of the other role are left: a confirmation running when the driver was killed is resumed by the
    confirm experiment, which starts after the search's has ended."""
    trials = results.read_trials(sweep_url, cfg.s3)
    lost = (trials["status"] == "RUNNING") & (trials["role"].fillna(results.SEARCH) == role)
    # stamped as the recorder stamps each change (`updated_at`: the row's last change), not left at its last epoch's
    trials.loc[lost, ["status", "stop_reason", "error", "updated_at"]] = ["ERROR", "error", results.LOST, time.time()]
    frame, summary = results.record(sweep_url, trials.to_dict("records"), cfg.sweep.name, cfg.s3,
                                    cfg.sweep.emotion_metric)
    notify(listeners, frame, summary)
    # every lost trial of the role, closed now or by an earlier run: a removal that failed then is tried again
    closed = (trials["error"] == results.LOST) & (trials["role"].fillna(results.SEARCH) == role)
    if closed.any():
        remove_lost_checkpoints(cfg, role, set(trials.loc[closed, "trial_id"]))
    return frame


def remove_lost_checkpoints(cfg: Config, role: str, lost: set[str]) -> None:
    """Remove the checkpoint folders of the `lost` trials of `role` (`close_lost_trials`), once its experiment has
    ended: they stayed in storage for ever, a model's weights each (`lost_checkpoint_folders`). Best effort: a folder
    storage refuses to delete (a transient S3 error, a denied delete) is kept with a warning naming it, where it
    refuses even to look for them the warning names the lost trials, and the sweep goes on, its rerun trying again
    (until 2026-12-05 it ended in that error, after the trial's row was closed, so no rerun tried again)."""
    try:
        folders = lost_checkpoint_folders(cfg, role, lost)
    except (AvdisError, OSError) as exc:  # not the folder's to delete by hand: it holds every trial's checkpoints
        print(f"avdis sweep: warning: the checkpoints of lost trial{'s' if len(lost) > 1 else ''} "
              f"{', '.join(sorted(lost))} could not be looked for in {checkpoints_of(cfg)} ({exc}); the sweep goes "
              "on, and its rerun tries again", file=sys.stderr, flush=True)
        return
    for folder in folders:
        try:
            ck.remove_unlisted(folder, cfg.s3, set())
        except (AvdisError, OSError) as exc:
            _kept(folder, exc)


def lost_checkpoint_folders(cfg: Config, role: str, lost: set[str]) -> list[str]:
    """The folders the checkpoints of the `lost` trials of `role` are in: a trial's Tune trial folder (a trial in its
    own process) and its Ray Train run (`TRIALS_DIR`, a trial of more workers). Tune's saved state does not know
    them, so no trial is restored from them and neither Tune nor Ray Train deletes them. A trial the state lists is
    left to Tune."""
    if not restorable(cfg, role):  # no saved experiment: no folder of its trials either
        return []
    unknown = lost - saved_experiment(cfg, role).known  # as Tune saved it this run
    name = experiment_of(cfg, role)[2]
    prefixes = tuple(f"{run_trial.__name__}_{trial}_" for trial in unknown)  # Tune's <trainable>_<id>_<tag>
    tune_folders = [folder for folder in storage.list_files(storage.join(checkpoints_of(cfg), name), s3=cfg.s3)
                    if folder.rsplit("/", 1)[-1].startswith(prefixes)]
    return tune_folders + [storage.join(checkpoints_of(cfg), TRIALS_DIR, trial) for trial in sorted(unknown)]


def ended_apart(sweep_url: str, cfg: Config, role: str, saved: dict[str, SavedExperiment] | None = None) -> set[str]:
    """The trials of `role` recorded in trials.parquet as ended (finished, or failed) that the saved Tune experiment
    of `role` does not list: a killed driver started them after Tune last saved its state, and they ended before it
    was killed. Tune never resumes nor counts them; on resume the search's searcher learns them
    (`SweepSearch.learn_recorded`) and the confirmation's passes over their points (`confirmation.FixedPoints`).
    `saved`: the saved experiments this resume has read (`read_saved`)."""
    mine = results.ended(results.read_trials(sweep_url, cfg.s3), role)
    return set(mine["trial_id"]) - read_saved({} if saved is None else saved, cfg, role).known if len(mine) else set()


def _kept(folder: str, exc: BaseException) -> None:
    """Say that `folder`'s lost-trial checkpoints stay, why, and how they go."""
    print(f"avdis sweep: warning: {folder}: the checkpoints of a lost trial could not be deleted ({exc}); the sweep "
          "goes on, and its rerun tries again, or delete it by hand (its checkpoint_* folders: no trial resumes from "
          "them)", file=sys.stderr, flush=True)
