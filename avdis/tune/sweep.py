"""The sweep: Ray Tune over methods and weights, each trial training in its own process (one worker) or
through a distributed TorchTrainer (more; see `avdis.tune.trial`).

Reads top to bottom: check inputs -> shards -> searcher + scheduler -> Tuner (new or
restored) -> fit -> confirm. Outputs under `<sweep.storage>/<sweep.name>/`:
`trials.parquet` and `pareto.json` (the recorder, after every result), `sweep.json` (what
the sweep was started with), `mo_asha.json` (the scheduler's rungs), and under
`checkpoints/` (or `<sweep.checkpoints>/<sweep.name>/`) Tune's experiments, `<name>-search/` and
`<name>-confirm/`, with the trials' checkpoints, and multi-worker trials' runs in `trials/`. Running the
same command again against the same storage resumes the sweep. The report's pages and
gauges sit a floor above: the entry point (`avdis.cli`) passes them in as `listeners` of
the recorder and further Tune `callbacks`, and writes the final report after `run`.
Tune reuses trial processes (`reuse_actors`) where every trial trains in its own process: a one-worker trial on a
process that trained before starts in a fraction of a second instead of paying a fresh process's imports.

Confirm (`sweep.confirm_seeds` = k > 0): once the search ends, the configurations of its
front at full length (`results.search_front`: early-stopped trials are not re-trained)
are trained again at the k seeds after their own (seed + 1..k, past any the search trained
them at: `confirmation.confirm_points`), everything else as searched, in
a second Tune experiment, `<name>-confirm/`: the same trainable, no early stopping (full epochs),
the same callbacks, so its rows (role `confirm`) land in the same trials.parquet and the
report's front becomes seed means with their spread. It resumes like the search: the
experiment is restored and its finished trials report their recorded result.

Beside it in `avdis.tune`: `preflight` (the checks of the space and the data before Ray starts),
`spec` (what sweep.json records, and what a resume may change), `resume` (what a resume finds of the killed or stopped
driver's Tune experiments and trials, and the trials it left that no one will finish), `confirmation` (the front's
points at more seeds, and the searcher that suggests them) and `failures` (the failed trials, listed by the entry
point).
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from ray.tune import Callback
from ray.tune.search import Searcher

from avdis import clusterfit, nodes, results, runtime, storage, storage_lock
from avdis.config import SEEDS, Config, selection, with_overrides
from avdis.data.prepare import as_made, check_source, ensure_shards, to_make
from avdis.data.shards import manifest_hash
from avdis.errors import AvdisError, UsageError, counted
from avdis.results import pareto
from avdis.train import checkpoint as ck
from avdis.train.checkpoint import KEEP_CHECKPOINTS
# FixedPoints, here too: Tune pickles the confirmation's searcher with its experiment by its module's path, and a
# sweep started before it moved to `confirmation` pickled avdis.tune.sweep.FixedPoints, which its resume unpickles
from avdis.tune.confirmation import FixedPoints, confirm_points
from avdis.tune.preflight import (check_accumulation, check_modalities, check_shards_whole, check_space,
                                  check_validation, trial_sizes)
from avdis.tune.records import SEED, Listener, TrialRecorder
from avdis.tune.schedulers import AtMost, MOASHAScheduler, MOSuccessiveHalving, read_state
from avdis.tune.space import DefineByRun, SweepSearch, sampler, space_size, to_overrides
from avdis.tune.spec import check_data, check_restarts_kept, check_spec, record_spec
from avdis.tune.trial import explained_errors_off_the_console, run_trial

if TYPE_CHECKING:
    from avdis.tune.resume import SavedExperiment

CHECKPOINTS_DIR = "checkpoints"  # in the sweep's folder, unless sweep.checkpoints puts them apart


def url_of(cfg: Config) -> str:
    """Where the sweep's outputs live: `<sweep.storage>/<sweep.name>`."""
    return storage.join(cfg.sweep.storage, cfg.sweep.name)


def checkpoints_of(cfg: Config) -> str:
    """Where its trials keep their checkpoints (Tune's experiments, the trials' folders):
    `<sweep.checkpoints>/<sweep.name>`, else `<sweep folder>/checkpoints`."""
    if cfg.sweep.checkpoints:
        return storage.join(cfg.sweep.checkpoints, cfg.sweep.name)
    return storage.join(url_of(cfg), CHECKPOINTS_DIR)


def trial_resources(cfg: Config) -> dict[str, float]:
    """What Tune reserves for a trial's own process, from the same rule the cluster check uses.

    A multi-worker trial's driver needs little; its TorchTrainer workers ask for their own.
    A one-worker trial (any strategy) trains in the trial itself: it takes its worker's bundle (GPU included).
    """
    driver, workers = clusterfit.demand(cfg)
    own = workers[0] if cfg.train.in_process else driver
    return {key.lower(): amount for key, amount in own.items()}


@dataclass(frozen=True)
class TrialResources:
    """Tune's resource request for each trial, from that trial's own config (`trial_resources`): a space that
    samples train.workers or a worker's CPUs gets each trial's own size. Sized from the sweep's config, a trial
    sampled to 2 workers reserved one in-process bundle and waited for ever for the workers it then asked for."""

    base: dict[str, Any]

    def __call__(self, params: dict[str, Any]) -> Any:
        from ray.tune import PlacementGroupFactory

        own = trial_resources(with_overrides(Config.model_validate(self.base), to_overrides(params)))
        return PlacementGroupFactory([{key.upper(): amount for key, amount in own.items()}])


@dataclass(frozen=True)
class Views:
    """What shows the sweep's results, passed in from above: recorder listeners, then more Tune callbacks."""

    listeners: tuple[Listener, ...] = ()
    callbacks: tuple[Callback, ...] = ()


class WaitSaid(Callback):
    """Says, once a wait has lasted `after_s`, why no trial of the sweep runs: trials wait (PENDING) and none runs, so
    Ray has not the resources a trial asks for free, or a trial that has them is still starting (Tune holds it
    PENDING until its actor runs, its placement group already taken: the two cannot be told apart from the resources
    free, so the note names both). Another job holding a cluster's CPUs (its tasks, actors, another
    sweep's trials) kept the sweep's trials waiting without a word: Tune warns only of a trial the whole cluster could
    never hold (`clusterfit` refuses those before trials start), and its status line, 'Logical resource usage: 0/2
    CPUs', counts its own trials alone, so it read as two CPUs free. Said again after a trial has run and the sweep
    waits anew. Pickled with the experiment (as Tune's callbacks are); a restored experiment gets a new one in its
    place (`restored`), or one where it was begun before this class was."""

    def __init__(self, name: str, after_s: float = 60.0) -> None:
        self.name, self.after_s = name, after_s
        self.since: float | None = None  # when the present wait began (this process's clock)
        self.said = False

    def __getstate__(self) -> dict[str, Any]:  # a wait is this process's: a resumed sweep starts without one
        return {**self.__dict__, "since": None, "said": False}

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        from ray.tune.experiment import Trial

        pending = [t for t in trials if t.status == Trial.PENDING]
        if not pending or any(t.status == Trial.RUNNING for t in trials):
            self.since, self.said = None, False
            return
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        if not self.said and now - self.since >= self.after_s:
            self.said = True
            print(waiting_said(self.name, now - self.since, pending), flush=True)


def waiting_said(name: str, waited_s: float, pending: list[Any]) -> str:
    """Why the sweep `name`'s `pending` trials have waited `waited_s`: the sizes they ask for, smallest first (a
    space that samples train.workers or a worker's CPUs gives its trials several), against what the cluster has free.
    The nodes cannot hold one where they cannot hold the smallest (nor any other). Said of the first alone, a sweep
    whose first waiting trial asked for more than the nodes hold said they could hold none, though the others fit."""
    import ray

    needs = [trial.placement_group_factory.required_resources for trial in pending]
    shown = [key for key in ("CPU", "GPU") if any(need.get(key) for need in needs)] or sorted(set().union(*needs))
    sizes = sorted(collections.Counter(tuple(need.get(key, 0) for key in shown) for need in needs).items())
    free, total = ray.available_resources(), ray.cluster_resources()
    have = ", ".join(f"{free.get(key, 0):g} of {total.get(key, 0):g} {key}" for key in shown)

    def size(amounts: tuple[float, ...]) -> str:
        return ", ".join(f"{amount:g} {key}" for key, amount in zip(shown, amounts) if amount) or "nothing"

    what = "train.workers x train.cpus_per_worker / gpus_per_worker, and its driver's share"
    asks = (f"each asks for {size(sizes[0][0])} ({what})" if len(sizes) == 1 else
            "trials ask for " + " or ".join(f"{size(amounts)} ({counted(n, 'trial')})" for amounts, n in sizes)
            + f", each by its own sampled settings ({what})")
    # each size was checked to fit before trials (`clusterfit`): none fitting now, the nodes are still to come
    if all(any(total.get(key, 0) < amount for key, amount in zip(shown, amounts)) for amounts, _ in sizes):
        why = ("the nodes it has now cannot hold one: the sweep waits for the nodes an autoscaler adds (`ray status` "
               "shows them pending)")
    else:
        why = ("other work holds the rest (another job's tasks or actors, another sweep's trials; `ray status` and "
               "`ray list actors` show them), or a trial of this sweep that holds its share is still starting (its "
               "runtime env being set up, a slow node: `ray list placement-groups` shows this job's). The sweep waits "
               "until they free it (or an autoscaler adds nodes)")
    return f"avdis sweep {name}: no trial has run for {waited_s:.0f} s: {asks}, and the cluster has {have} free: {why}"


def experiment_of(cfg: Config, role: str) -> tuple[Any, str, str]:
    """Tune's experiment of `role` (its state and its trials' folders): (pyarrow filesystem, storage path, name),
    at `<checkpoints_of>/<sweep.name>-<role>`. Never the sweep's own folder, whose files (mo_asha.json,
    pareto.json) Tune copied back over with the ones it found at a restore; named after the sweep, since Ray stages
    a driver's experiment files by name and second."""
    fs, storage_path = storage.pyarrow_filesystem(checkpoints_of(cfg), cfg.s3)
    return fs, storage_path.rstrip("/"), f"{cfg.sweep.name}-{role}"


# the file Ray 2.60's Tune saves its experiment's state in (its trials, the searcher's and scheduler's beside it)
EXPERIMENT_STATE = "experiment_state-"


def begun(cfg: Config, role: str) -> bool:
    """Whether a Tuner of the experiment of `role` was made (its tuner.pkl, what `Tuner.can_restore` looks for),
    whether or not Tune then saved any state of it."""
    from ray import tune

    fs, storage_path, name = experiment_of(cfg, role)
    return tune.Tuner.can_restore(f"{storage_path}/{name}", storage_filesystem=fs)


def restorable(cfg: Config, role: str) -> bool:
    """Whether the experiment of `role` can be restored: its Tuner was made (`begun`) and Tune saved a state of its
    trials (`EXPERIMENT_STATE`). A driver that died between the two (killed as Tune began, or failing in `tune.run`)
    left tuner.pkl alone: restored, Tune found no state and started the experiment over with one sample (Ray 2.60's
    `Tuner.restore` passes no num_samples), so the rerun ran one trial and said the sweep was interrupted, and every
    rerun after it ran none. Such an experiment is started anew (`_experiment`)."""
    return begun(cfg, role) and bool(experiment_states(cfg, role))


def experiment_states(cfg: Config, role: str) -> list[str]:
    """The URLs of the files Tune saved the state of the experiment of `role` in (`EXPERIMENT_STATE`), by name: Tune
    restores the last (`_find_newest_experiment_checkpoint`)."""
    files = storage.list_files(storage.join(checkpoints_of(cfg), experiment_of(cfg, role)[2]), ".json", cfg.s3)
    return sorted(url for url in files if url.rsplit("/", 1)[-1].startswith(EXPERIMENT_STATE))


def tune_failures(cfg: Config, in_process: bool) -> int:
    """How many times Tune restarts a trial that failed (`FailureConfig.max_failures`): train.max_failures where
    every trial trains in its own process (`in_process`, `reuse_processes`), whose death (killed, out of memory, its
    node lost) it otherwise ended in; else 0, where train.max_failures is each multi-worker trial's Ray Train run's
    (it restarts the run's workers) and restarting its trial too would multiply the two. An avdis error that is not
    `retryable` is not retried (`records.TrialRecorder.on_trial_recover`)."""
    return cfg.train.max_failures if in_process else 0


def _experiment(cfg: Config, sweep_url: str, role: str, tune_config: Any, resume: bool, views: Views,
                in_process: bool = False, retry: bool = False):
    """A Tuner for the experiment of `role` under `checkpoints_of` (restored when it was started before).

    Its trials run the same trainable and land in the same trials.parquet, recorded as `role`. Tune restarts a
    failed trial up to `tune_failures` (`in_process`: every trial trains in its own process). Restored with `retry`
    (`--retry-failed`), the trials that ended in an error are run again, each from its latest checkpoint (Tune's
    `resume_errored`), counted against sweep.max_concurrent (`restored`); without it they stay failed.
    """
    from ray import tune

    # Trials on other nodes get the driver's endpoint and region; the callbacks (pickled with the experiment and
    # restored with it) keep resolving them from the driver's environment of the day.
    base = cfg.model_copy(update={"s3": storage.pinned(cfg.s3)}).model_dump(mode="json")
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, sweep_url=sweep_url, checkpoints_url=checkpoints_of(cfg)),
        TrialResources(base))
    if resume and restorable(cfg, role):
        print(f"avdis sweep: resuming {sweep_url} ({role})", flush=True)
        return restored(cfg, role, trainable, retry)
    fs, storage_path, name = experiment_of(cfg, role)
    return tune.Tuner(
        trainable, tune_config=tune_config,
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=fs,
            callbacks=[TrialRecorder(sweep_url, cfg, role, views.listeners, restarts=in_process), *views.callbacks,
                       WaitSaid(cfg.sweep.name)],
            failure_config=tune.FailureConfig(max_failures=tune_failures(cfg, in_process)), verbose=1,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),  # in-process trials' checkpoints
        ),
    )


def restored(cfg: Config, role: str, trainable: Any, retry: bool = False):
    """The Tuner of the saved experiment of `role`, restored to run `trainable`: its unfinished trials resumed and,
    with `retry`, its failed ones run again (`resume_errored`), each counted against sweep.max_concurrent
    (`resume.count_restored_trials`: Tune starts them without asking the searcher) and no more than it run at once
    (its scheduler, an `AtMost`, given the limit here: Tune starts every restored trial as it adds it)."""
    from ray import tune

    from avdis.tune.resume import count_restored_trials  # it imports this module

    count_restored_trials(cfg, role, retry)
    fs, storage_path, name = experiment_of(cfg, role)
    tuner = tune.Tuner.restore(f"{storage_path}/{name}", trainable, resume_unfinished=True, resume_errored=retry,
                               restart_errored=False, storage_filesystem=fs)
    # the scheduler and callbacks Tune restores with the experiment, pickled as it began: one begun before `AtMost`
    # had none, or one without its limit, and one begun before `WaitSaid` waited without a word (a Ray Client's tuner
    # runs on the cluster, with the ones pickled)
    local = getattr(tuner, "_local_tuner", None)
    if local is not None:
        tune_config, run_config = local._tune_config, local._run_config
        if not isinstance(tune_config.scheduler, AtMost):
            tune_config.scheduler = AtMost()
        tune_config.scheduler.max_concurrent = cfg.sweep.max_concurrent
        run_config.callbacks = [*(c for c in run_config.callbacks or () if not isinstance(c, WaitSaid)),
                                WaitSaid(cfg.sweep.name)]
    return tuner


class SweepInterrupted(AvdisError):
    """Tune caught a Ctrl-C (SIGINT) or a stop (SIGTERM), saved its state and returned early: the sweep is not done."""

    exit_code = 130  # what a shell reports for a process ended by SIGINT


@contextmanager
def _watching_signals() -> Iterator[dict[str, bool]]:
    """While `tuner.fit()` runs: say afterwards whether Tune's SIGINT handler fired, and make SIGTERM (what `ray job
    stop` sends) do what SIGINT does, on which Tune saves its state before it returns (killed, it restarts trials
    from older checkpoints). Tune puts its handler over the one it finds and, on the first SIGINT, puts that one
    back: a marker installed here is back in place afterwards exactly when Tune was interrupted. (Its grid cannot
    tell: the trials it stopped then read TERMINATED.) SIGTERM calls the SIGINT handler in place: a SIGINT sent to
    this process would stay pending in a `ray job submit` driver, where Ray blocks SIGINT in every process it
    starts, so `ray job stop` killed the driver 3 s later without Tune's save."""
    seen = {"interrupted": False}
    # Tune catches no signal off the main thread, nor in a Ray Client process (its tuner runs on the cluster)
    if threading.current_thread() is not threading.main_thread() or runtime.is_ray_client():
        yield seen
        return

    def marker(sig: int, frame: Any) -> None:
        raise KeyboardInterrupt  # Tune installed no handler of its own (TUNE_DISABLE_SIGINT_HANDLER): Ctrl-C as ever

    def stop(sig: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIG_IGN (a driver started with SIGINT ignored) or SIG_DFL: as SIGINT would leave it
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.signal(signal.SIGINT, marker), signal.signal(signal.SIGTERM, stop)
    try:
        yield seen
    finally:
        tune_catches = not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0"))
        seen["interrupted"] = tune_catches and signal.getsignal(signal.SIGINT) is marker
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def fit(tuner: Any, trials: int, sweep_url: str, noun: str = "trial") -> None:
    """`tuner.fit()`, raising SweepInterrupted when it was interrupted or returned with trials still to run: on
    SIGINT Tune saves its state and returns normally, and the rest of the sweep (confirmation, final report) must
    not run on the part. `trials` is how many the experiment runs in all, each a `noun` (the confirmation's are
    confirming trials: said as trials, a sweep stopped while confirming its front of 2 configurations x 1 seed read
    'interrupted before its 2 trials ended' after its search's 16 had).

    Tune snapshots its experiment state whenever a trial has saved `KEEP_CHECKPOINTS` checkpoints since the last one
    (so that a restored sweep never points at a deleted checkpoint), and warned at each snapshot within 5 s of another
    that it "may become a bottleneck": two dozen times in the demo's output, for snapshots of some 20 ms each. Quiet
    unless its threshold is set (under Ray Client, Tune's controller runs on the cluster and still warns)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with _watching_signals() as seen, explained_errors_off_the_console():
        grid = tuner.fit()
    ended = grid.num_terminated + grid.num_errors
    if seen["interrupted"] or ended < len(grid) or ended < trials:
        raise SweepInterrupted(f"{sweep_url}: interrupted before its {counted(trials, noun)} ended; Tune saved its "
                               "state: rerun the same command to resume")


def searcher(cfg: Config, sweep_url: str | None = None) -> Searcher:
    """The sweep's search algorithm (Optuna over `sweep.space`); the replay benchmark drives this same object. With
    `sweep_url`, restored on resume it learns the trials recorded there that its saved state does not know
    (`SweepSearch.learn_recorded`). It ends the search at `sweep.num_samples` trials, those learned among them."""
    s = cfg.sweep
    return SweepSearch(full_epochs=cfg.train.epochs, stopped_as=s.scheduler.stopped_as,
                       space=DefineByRun(s.space, every_weight=s.search == "nsga2"),
                       metric=list(selection(s.emotion_metric)), mode=list(selection(s.emotion_metric).values()),
                       sampler=sampler(s.search, s.seed, s.startup_trials), num_samples=s.num_samples,
                       trials_at=None if sweep_url is None else (sweep_url, cfg.s3))


def search_trials(cfg: Config, apart: int = 0) -> int:
    """How many trials the search's Tune experiment runs: `sweep.num_samples`, or fewer where the space holds fewer
    configurations (`space.space_size`): the searcher trains each once (training is deterministic) and then ends the
    search. A resumed search's searcher also learned `apart` trials Tune does not count (`resume.ended_apart`): they
    are of the sweep's trials, and the searcher ends the search once it has suggested or learned `sweep.num_samples`
    (or spent the space), so Tune runs that many fewer. Tune's own count, restored with its experiment, is still
    `sweep.num_samples` (the trials apart were drawn after its last save): until 2026-12-05, when the searcher did not
    end the search at it, a resumed sweep whose space was not spent first trained that many Tune trials besides them."""
    size = space_size(cfg.sweep.space)
    share = cfg.sweep.num_samples if size is None else min(size, cfg.sweep.num_samples)
    return max(0, share - apart)


def space_spent(cfg: Config) -> str:
    """What the sweep says, once, where its search ended before `sweep.num_samples` for want of configurations. Its
    advice is of what the sweep does not do already: a space that samples train.seed is told to sample more seeds, a
    sweep that confirms its front to confirm it with more (told to sample train.seed and to set confirm_seeds, a sweep
    that did both read as if it had done neither)."""
    s = cfg.sweep
    size = search_trials(cfg)
    seeds = s.space.params.get(SEED)
    if seeds is None:
        more_seeds = f"sample {SEED} (e.g. 'sweep.space.params.{SEED}=[0, 1, 2]')"
    else:
        held = sorted(int(v) for v in seeds) if isinstance(seeds, list) else range(int(seeds.low), int(seeds.high) + 1)
        # seeds the space does not hold, next to its own (below its first where its last is the last a config takes)
        fresh = (v for v in itertools.chain(range(held[-1] + 1, SEEDS), range(held[0] - 1, -1, -1)) if v not in held)
        add = list(itertools.islice(fresh, 1 if isinstance(seeds, list) else len(held)))
        wider = (f"[{', '.join(str(v) for v in sorted([*held, *add]))}]" if isinstance(seeds, list) else
                 f"{{low: {min(held[0], *add)}, high: {max(held[-1], *add)}, int: true}}")
        more_seeds = (f"sample more {SEED} values than the {len(held)} it samples (e.g. "
                      f"'sweep.space.params.{SEED}={wider}')")
    confirm = (f"raise sweep.confirm_seeds (now {s.confirm_seeds}) to re-train the front with more seeds"
               if s.confirm_seeds else "set sweep.confirm_seeds to re-train the front with more seeds")
    return (f"avdis sweep {s.name}: the search ended after {counted(size, 'trial')} of sweep.num_samples="
            f"{s.num_samples}: its space holds {counted(size, 'configuration')} (sweep.space: methods, weights and "
            f"params, {SEED} included) and each was trained once (training is deterministic: another trial of "
            f"one would only copy it). For more, {more_seeds} or a real-number range (e.g. train.lr), or {confirm}")


SCHEDULER_STATE = "mo_asha.json"  # under the sweep's URL: MO-ASHA's rungs, for a resumed sweep


def scheduler(cfg: Config, sweep_url: str | None = None) -> AtMost:
    """The sweep's trial scheduler: MO-ASHA, or (`sweep.scheduler.type=none`) one under which every trial runs its
    full epochs; either runs no more than sweep.max_concurrent trials at once (`AtMost`). The replay drives it too.
    With `sweep_url` MO-ASHA keeps its rungs there, for a resumed sweep."""
    s = cfg.sweep
    if s.scheduler.type == "mo_asha":
        k = s.scheduler
        state = storage.join(sweep_url, SCHEDULER_STATE) if sweep_url else None
        return MOASHAScheduler(cfg.train.epochs, k.grace_epochs, k.eta, k.margin, state_url=state, s3=cfg.s3,
                               on=tuple(selection(s.emotion_metric)), max_concurrent=s.max_concurrent)
    return AtMost(s.max_concurrent)


def scheduler_plan(cfg: Config) -> str:
    """The scheduler as the sweep's first line states it: where MO-ASHA judges, or that it never will (a short sweep
    under the default grace ran every trial to the end while its first line said mo_asha)."""
    k = cfg.sweep.scheduler
    if k.type != "mo_asha":
        return k.type
    rungs = list(MOSuccessiveHalving(cfg.train.epochs, k.grace_epochs, k.eta).rungs)
    if not rungs:
        return (f"mo_asha with no rung below train.epochs={cfg.train.epochs}, so it stops no trial (lower "
                f"sweep.scheduler.grace_epochs={k.grace_epochs}, or set sweep.scheduler.type=none)")
    return f"mo_asha (rungs at epoch{'s' if len(rungs) > 1 else ''} {', '.join(map(str, rungs))})"


def plan(cfg: Config, address: str, sweep_url: str) -> str:
    """The sweep's first line: what it will run, where, and where its outputs go."""
    s, t, n = cfg.sweep, cfg.train, search_trials(cfg)
    fewer = f" (the space holds {counted(n, 'configuration')})" if n < s.num_samples else ""
    return (f"avdis sweep {s.name}: {counted(n, 'trial')}{fewer}, search={s.search}, "
            f"scheduler={scheduler_plan(cfg)}, confirm_seeds={s.confirm_seeds}, {s.max_concurrent} at a time; each "
            f"trial {t.workers} x {t.strategy} worker{'s' if t.workers > 1 else ''} (zero_stage={t.zero_stage}, "
            f"{t.cpus_per_worker} CPU, {t.gpus_per_worker} GPU); ray={address}; outputs -> {sweep_url}")


def reuse_processes(edges: list[Config]) -> bool:
    """Whether Tune may reuse trial processes: only where every trial trains in its own (`train.in_process`). A trial
    whose TorchTrainer runs in a helper thread is not told when a scheduler stops it on a process kept for reuse
    (Ray 2.60 caches the actor and calls nothing on it): its worker group trained on, up to two more epochs, then
    held its resources (GPUs) until the process took another trial. Killed, a trial takes its worker group along."""
    return all(trial.train.in_process for trial in edges)


def _tuner(cfg: Config, sweep_url: str, resume: bool, views: Views, reuse: bool, retry: bool = False):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    s = cfg.sweep
    search = ConcurrencyLimiter(searcher(cfg, sweep_url), max_concurrent=s.max_concurrent)
    tune_config = tune.TuneConfig(search_alg=search,
                                  scheduler=scheduler(cfg, sweep_url), num_samples=s.num_samples, reuse_actors=reuse)
    return _experiment(cfg, sweep_url, results.SEARCH, tune_config, resume, views, in_process=reuse, retry=retry)


def confirm(cfg: Config, sweep_url: str, resume: bool, views: Views, reuse: bool,
            saved: dict[str, SavedExperiment] | None = None, retry: bool = False) -> None:
    """Re-train the search front's configurations with sweep.confirm_seeds more seeds each (full epochs). `saved`: the
    saved experiments this resume has read (`resume.read_saved`); `retry`: its failed confirming trials are run again
    (`--retry-failed`)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from avdis.tune.resume import ended_apart  # resume imports this module

    s = cfg.sweep
    points = confirm_points(results.read_trials(sweep_url, cfg.s3), s.confirm_seeds, pareto.axes(s.emotion_metric))
    if not points:
        print(f"avdis sweep {s.name}: no finished trial on the front, nothing to confirm", flush=True)
        return
    configs = len(points) // s.confirm_seeds
    print(f"avdis sweep {s.name}: confirming the front: {configs} configuration{'s' if configs > 1 else ''} x "
          f"{s.confirm_seeds} more seed{'s' if s.confirm_seeds > 1 else ''}, full {cfg.train.epochs} "
          f"epoch{'s' if cfg.train.epochs > 1 else ''}", flush=True)
    fixed = FixedPoints(points, (sweep_url, cfg.s3))
    tune_config = tune.TuneConfig(search_alg=ConcurrencyLimiter(fixed, max_concurrent=s.max_concurrent),
                                  scheduler=AtMost(s.max_concurrent), num_samples=len(points), reuse_actors=reuse)
    # the confirming trials a killed driver ran after Tune's last save are not Tune's, nor trained again (FixedPoints)
    apart = len(ended_apart(sweep_url, cfg, results.CONFIRM, saved)) if resume else 0
    fit(_experiment(cfg, sweep_url, results.CONFIRM, tune_config, resume, views, in_process=reuse, retry=retry),
        len(points) - apart, sweep_url, "confirming trial")


def outputs_of(cfg: Config, names: dict[str, str] | None = None) -> dict[str, str]:
    """The sweep's own output locations, by option name: the one the user gave it by (`names`, e.g. `--storage`),
    else its setting."""
    return {(names or {}).get("sweep.storage", "sweep.storage"): cfg.sweep.storage,
            **({"sweep.checkpoints": cfg.sweep.checkpoints} if cfg.sweep.checkpoints else {})}


def run(cfg: Config, views: Views = Views(), names: dict[str, str] | None = None, retry_failed: bool = False) -> str:
    """Run (or resume) the sweep; returns its URL (trials.parquet and pareto.json are there). `names`: the option the
    user gave sweep.storage by where it is not that setting (`--storage`), for a refusal to name. `retry_failed`
    (`--retry-failed`): a resume runs the trials that ended in an error again, each from its last checkpoint
    (`resume.retried_trials`); a new sweep has none, and says so."""
    check_tune_environment(cfg)
    storage.check_buckets(cfg.s3, cfg.sweep.storage, cfg.data.shards, *filter(None, [cfg.sweep.checkpoints]))
    runtime.check_kept({**outputs_of(cfg, names), **to_make(cfg)})
    # two drivers on one sweep would each write its tables
    with storage_lock.exclusive(url_of(cfg), "sweep driver", s3=cfg.s3):
        return _run(cfg, views, names, retry_failed)


# Variables of Ray's older storage layout: Ray Tune 2.60 reads neither, and refuses to run while either is set in the
# driver's environment (`tune.run` raises DeprecationWarning)
TUNE_REFUSES = ("TUNE_RESULT_DIR", "RAY_AIR_LOCAL_CACHE_DIR")


def check_tune_environment(cfg: Config) -> None:
    """Refuse, before any work, a driver whose environment holds a variable Tune refuses (`TUNE_REFUSES`): the sweep
    ended in Tune's traceback (DeprecationWarning, exit 1) once its corpus and shards were made and Ray had started.
    Such a variable is in the shell a user ran the command from, or, under `ray job submit`, in the job's runtime env
    or the environment its head's `ray start` ran in. Not under Ray Client (`ray://`): there Tune runs on the cluster
    (the Tuner is an actor on its head), in the cluster's environment, which this process's variables do not reach,
    so a sweep refused for them ran."""
    if runtime.asks_ray_client(cfg.ray):
        return
    found = {key: os.environ[key] for key in TUNE_REFUSES if os.environ.get(key)}
    if found:
        raise UsageError(
            f"{', '.join(f'{k}={v}' for k, v in found.items())} in this process's environment: Ray Tune 2.60 no longer "
            "reads it, and refuses to run a sweep while it is set. The sweep keeps its results, checkpoints "
            f"included, under sweep.storage/sweep.name ({url_of(cfg)}; sweep.checkpoints puts the checkpoints apart): "
            f"unset {' and '.join(found)} (under `ray job submit`: in the job's runtime env, or where the head's "
            "`ray start` ran) and run the command again")


def probing(cfg: Config) -> Config:
    """Under MO-ASHA, trials probe at every rung: it decides on the rung's validation leakage. Rungs sit at
    grace * eta^k epochs, multiples of the first, so `train.probe_every` = grace_epochs probes each (and the last
    epoch, always probed) and no epoch between: the probe took 0.7 s of the demo's 1.9 s epoch."""
    if cfg.sweep.scheduler.type != "mo_asha":
        return cfg
    return with_overrides(cfg, {"train.probe_every": cfg.sweep.scheduler.grace_epochs})


def _run(cfg: Config, views: Views, names: dict[str, str] | None, retry_failed: bool = False) -> str:
    from avdis.tune.resume import (check_experiments, check_trial_runs, close_lost_trials,  # it imports this module
                                   ended_apart, mark_failed_trials)

    edges = check_space(cfg)
    check_modalities(cfg, edges)
    cfg = as_made(probing(cfg))  # recorded, and compared on resume, with the data.synth its trials train on
    sweep_url = url_of(cfg)
    record = check_spec(sweep_url, cfg)
    resume = record is not None
    if resume:
        read_state(storage.join(sweep_url, SCHEDULER_STATE), cfg.s3)  # a damaged one is refused here, not in Tune
        check_restarts_kept(sweep_url, cfg, record, reuse_processes(edges))
    check_source(cfg)
    # resumed too: a role or bucket policy may have changed; and the shards (and corpus) still to make, as train
    # checks them: a read-only data.shards failed once Ray had started and the corpus was generated
    for url in dict.fromkeys([sweep_url, checkpoints_of(cfg), *to_make(cfg).values()]):
        storage.check_writable(url, cfg.s3)  # before Ray starts: a wrong storage fails in a second
    check_experiments(sweep_url, cfg, resume)
    saved: dict[str, SavedExperiment] = {}  # the Tune experiments this resume read, by role (`resume.read_saved`)
    retried: dict[str, set[str]] = {}  # by role, the failed trials run again (`--retry-failed`)
    said = f"no sweep to resume at {url_of(cfg)}, so no failed trial to retry; starting it"
    if resume:
        mark_failed_trials(sweep_url, cfg)  # before `saved` is read: failed, run again under --retry-failed alone
        if retry_failed:
            retried, said = _retried(sweep_url, cfg, saved)
        for folder in check_trial_runs(sweep_url, cfg, saved, set().union(*retried.values())):
            ck.stand_in(folder, cfg.s3)
    if retry_failed:  # once the retried trials' checkpoints passed the checks: a refusal retries none
        print(f"avdis sweep {cfg.sweep.name}: --retry-failed: {said}", flush=True)
    check_shards_whole(cfg)
    nodes.check_added_nodes({**outputs_of(cfg, names), "data.shards": cfg.data.shards}, cfg.ray)
    address = runtime.connect(cfg.ray)
    # shards to make: preprocess checks
    nodes.check_shared({**outputs_of(cfg, names), "data.shards": cfg.data.shards})
    nodes.check_node_credentials({**outputs_of(cfg, names), "data.shards": cfg.data.shards}, trials=True)
    runtime.pin_train_coordinator()
    for size in trial_sizes(edges):  # trials that never fit would wait forever
        clusterfit.check_cluster(size)
    ensure_shards(cfg, use_ray=True)
    check_validation(cfg)
    check_accumulation(cfg)
    if resume:
        check_data(sweep_url, cfg, record)
    else:
        record_spec(sweep_url, cfg, manifest_hash(cfg.data.shards, cfg.s3))
    print(plan(cfg, address, sweep_url), flush=True)
    reuse = reuse_processes(edges)
    # trials the searcher learned from trials.parquet (`SweepSearch.learn_recorded`) are not Tune's, and count toward
    # sweep.num_samples (the searcher ends the search at it): Tune's end short by them, and the sweep read as
    # interrupted at every rerun where they were counted as Tune's
    apart = len(ended_apart(sweep_url, cfg, results.SEARCH, saved)) if resume else 0
    fit(_tuner(cfg, sweep_url, resume, views, reuse, retry=bool(retried.get(results.SEARCH))),
        search_trials(cfg, apart), sweep_url)
    if search_trials(cfg) < cfg.sweep.num_samples:
        print(space_spent(cfg), flush=True)
    close_lost_trials(sweep_url, cfg, results.SEARCH, views.listeners)  # not left RUNNING through the confirmation
    if cfg.sweep.confirm_seeds:
        confirm(cfg, sweep_url, resume, views, reuse, saved, retry=bool(retried.get(results.CONFIRM)))
        close_lost_trials(sweep_url, cfg, results.CONFIRM, views.listeners)
    return sweep_url


def _retried(sweep_url: str, cfg: Config, saved: dict[str, SavedExperiment]) -> tuple[dict[str, set[str]], str]:
    """The failed trials `--retry-failed` runs again in a resumed sweep, by role (`resume.retried_trials`), and what
    to say of them in one line, with those it does not."""
    from avdis.tune.resume import CLOSED_WHY, retried_trials  # it imports this module

    retries = retried_trials(sweep_url, cfg, saved)
    n = sum(map(len, retries.run.values()))
    roles = ", ".join(f"{len(ids)} {role}" for role, ids in retries.run.items() if ids)
    said = (f"retrying {counted(n, 'failed trial')} ({roles}), each from its last checkpoint (from its start where it "
            "has none)" if n else "no failed trial to retry")
    unheld = retries.cannot - retries.finished
    if unheld:
        said += (f"; {counted(len(unheld), 'failed trial')} ({', '.join(sorted(unheld))}) cannot be: Tune's saved "
                 "experiment does not hold it (it started after Tune last saved its state and failed before the driver "
                 "was killed; `avdis train` with its settings trains it alone, a new sweep.name in a new sweep)")
    if retries.finished:
        said += (f"; {counted(len(retries.finished), 'failed trial')} ({', '.join(sorted(retries.finished))}) "
                 "cannot be: Tune's saved experiment holds it as finished (it reported a non-finite objective, which "
                 "Tune took for its end)")
    if retries.closed:
        said += (f"; the search's {counted(len(retries.closed), 'failed trial')} ({', '.join(sorted(retries.closed))}) "
                 f"not: {CLOSED_WHY}")
    return retries.run, said
