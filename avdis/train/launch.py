"""Launch one training run: in this process (strategy single) or as a Ray Train job.

The Ray objects (ScalingConfig, RunConfig, FailureConfig) are built here from the typed
config, in one place, and the sweep reuses them for each multi-worker trial's TorchTrainer.
A run that already has checkpoints resumes only with the data and settings it started with,
and a Ray Train run must fit the cluster (`clusterfit.check_cluster`, the sweep's check):
both are checked here, before any worker or engine starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from avdis import clusterfit, nodes, runtime, storage, storage_lock
from avdis.config import Config
from avdis.errors import AvdisError
from avdis.data.prepare import ensure_shards, to_make
from avdis.data.shards import HELD, manifest_hash
from avdis.data.stream import open_dataset
from avdis.train.evaluate import check_leakage_defined, warn_few_judged, warn_unseen_emotions
from avdis.train import checkpoint as ck
from avdis.train import loop


class TrainInterrupted(AvdisError):
    """Ctrl-C (SIGINT) aborted a Ray Train run: it is not done, and its rerun resumes it."""

    exit_code = 130  # what a shell reports for a process ended by SIGINT

    def __init__(self, run_url: str):
        super().__init__(f"{run_url}: interrupted; rerun the same command to resume from its last whole checkpoint")


def _avdis_error(failures: Iterable[BaseException], context: bool = True) -> AvdisError | None:
    """The first avdis error in the failures' chains: a worker's error reaches the driver wrapped by Ray (a
    ControllerError's controller_failure, a Ray task's error's cause, an error raised from it). With `context`, also
    one being handled where the failure was raised (its __context__): a fault in the input that a restart meets
    again, however its handling failed, and whose message says what to do."""
    for failure in failures:
        seen: BaseException | None = failure
        while seen is not None:
            if isinstance(seen, AvdisError):
                return seen
            # a ControllerError's cause; a Ray task's error (as the cause's type, `RayTaskError.as_instanceof_cause`)
            wrapped = [getattr(seen, name, None) for name in ("controller_failure", "cause")]
            seen = next((w for w in wrapped if isinstance(w, BaseException)),
                        seen.__cause__ or (seen.__context__ if context else None))
    return None


def input_fault(failures: Iterable[BaseException]) -> AvdisError | None:
    """The avdis error in the failures' chains (`_avdis_error`) where it is not `retryable`: a fault in the input
    (corrupt shards, a non-finite loss, a checkpoint of another model) that a restart meets again. Storage that did not
    answer may answer the next time: None, as for any other failure."""
    found = _avdis_error(failures)
    return found if found is not None and not found.retryable else None


def _explained_end(error: BaseException) -> bool:
    """Whether `error` itself, inside Ray's wrappers, is an avdis error that ends the run (not `retryable`), which the
    command says in one line: its tracebacks are kept off the console. Not an error raised while one was handled (a
    bug in the handling), whose traceback is all that tells of it."""
    found = _avdis_error([error], context=False)
    return found is not None and not found.retryable


class _ExplainedOffTheConsole(logging.Filter):
    """Drops a record of an error that ends the run and that avdis explains (`_explained_end`) from Ray Train's console
    output, where Ray logs it with its traceback in each worker ("Error in training function") and in the controller
    ("Error in control loop iteration", "[FailurePolicy] RAISE"): streamed to the driver, those pages came before the
    command's one-line error. Ray Train's log files (logs/train in Ray's session folder) still get it. A worker's
    record carries no exception, but the error's traceback as text, logged while the error is handled: that one is
    dropped, not another record logged meanwhile."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            return not _explained_end(record.exc_info[1])
        handled = sys.exc_info()[1]
        if handled is None or not _explained_end(handled):
            return True
        said = "".join(traceback.format_exception_only(handled)).strip()
        return not record.getMessage().rstrip().endswith(said)


def _keep_explained_off_the_console() -> None:
    """Put `_ExplainedOffTheConsole` on the console handler Ray Train gives its `ray.train` logger in this process (a
    worker's or the controller's, set as it starts)."""
    from ray._private.log import PlainRayHandler

    for handler in logging.getLogger("ray.train").handlers:
        if isinstance(handler, PlainRayHandler) and not any(
                isinstance(f, _ExplainedOffTheConsole) for f in handler.filters):
            handler.addFilter(_ExplainedOffTheConsole())


def train_worker(config: dict[str, Any]) -> None:
    """`loop.train_worker` with an avdis error that ends the run kept off the console (`_ExplainedOffTheConsole`)
    and naming the log where Ray Train wrote its traceback instead: the driver's one-line error says where it is."""
    import ray
    from ray.train.v2._internal.logging.logging import get_train_application_worker_log_path

    _keep_explained_off_the_console()
    try:
        loop.train_worker(config)
    except AvdisError as exc:
        log = get_train_application_worker_log_path()
        if not exc.retryable and log:
            exc.traceback_log = f"{log} on node {ray.util.get_node_ip_address()}"
        raise


def _explained(error: Exception, run_url: str) -> AvdisError:
    """What a failed Ray Train run tells its user, in one line that says how to go on: an avdis error a worker raised
    as it is (its message names the file and what to do), not inside Ray's WorkerGroupError or ControllerError
    (`StopOnInputFault`); a worker lost otherwise (killed, out of memory); else Ray Train's own failure (its controller
    failed, or died as it started: a record of the run's checkpoints it could not read), named by its cause. Ray's
    exceptions reached the user as a traceback of Ray's internals, the cause at its end."""
    failures = list(getattr(error, "worker_failures", {}).values())
    found = _avdis_error([*failures, *filter(None, [getattr(error, "controller_failure", None)])])
    if found is not None:
        return found
    if failures:
        first = str(failures[0]).strip().splitlines()
        return AvdisError(f"{run_url}: a training worker failed ({type(failures[0]).__name__}"
                          f"{': ' + first[0] if first else ''}); rerun the same command to resume from the last "
                          "checkpoint, or set train.max_failures for Ray Train to restart the workers within the run")
    cause = getattr(error, "controller_failure", None) or error
    # a Ray task's or actor's error ends with its own cause's 'Type: message', after the traceback
    said = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return AvdisError(f"{run_url}: Ray Train failed ({type(cause).__name__}{': ' + said[-1] if said else ''}); "
                      "Ray's output above and its session logs (session_latest/logs in Ray's temp dir, /tmp/ray by "
                      "default) say more: fix what they name, then rerun the same command to resume from the last "
                      "checkpoint")


def stop_on_input_fault():
    """A Ray Train callback that ends the run when a worker raises an avdis error that is not `retryable`.

    Ray Train restarts the workers after any worker error, up to train.max_failures (for ever at -1). Such an error
    names a fault in the run's input (corrupt shards, a non-finite loss, a checkpoint of another model), which a
    restart meets again: with max_failures=-1 the run would restart for ever, saying nothing. Storage that did not
    answer may answer the next time, and is retried. Raised in this callback, which runs in Ray Train's controller,
    the error becomes a ControllerError, which Ray 2.60's failure policy does not retry."""
    from ray.train import UserCallback

    class StopOnInputFault(UserCallback):
        def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
            found = input_fault(worker_exceptions.values())
            if found is not None:
                _keep_explained_off_the_console()  # Ray logs the error raised here with its traceback
                raise found

    return StopOnInputFault()


def run_name(cfg: Config) -> str:
    """`train.name`, else one from the method, its weight, the seed and a hash of where the data is and of every
    setting that shapes the result: the same command (more `train.epochs` included) finds its run again, and a
    changed lr names a new one. Settings a run may change (`checkpoint.MAY_CHANGE`) leave the name as it is."""
    if cfg.train.name:
        return cfg.train.name
    weight = "" if cfg.method.weight is None else f"-w{cfg.method.weight:g}"
    shaping = {**ck.run_signature(cfg, manifest_hash=""), "data.shards": cfg.data.shards}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.method.name}{weight}-seed{cfg.train.seed}-{digest}"


def scaling_config(cfg: Config):
    from ray.train import ScalingConfig

    t = cfg.train
    return ScalingConfig(num_workers=t.workers, use_gpu=t.gpus_per_worker > 0,
                         resources_per_worker=clusterfit.worker_bundle(t), placement_strategy=t.placement_strategy)


def worker_env() -> dict[str, str]:
    """Environment for training workers: the project's variables (`runtime.WORKER_ENV`) as this process has them,
    else avdis's defaults, and this process's AVDIS_* settings. As this process has them: in a sweep trial (a Ray
    worker of the job) the job's own values are in its environment, while the job's config, which
    `runtime.project_env` reads, is the driver's alone; Ray Train puts these over the job's, so its workers got
    avdis's defaults instead of the job's values."""
    env = {k: v for k, v in os.environ.items() if k.startswith("AVDIS_")}
    return {**{k: os.environ.get(k, v) for k, v in runtime.WORKER_ENV.items()}, **env}


def run_config(cfg: Config, storage_url: str, name: str, callbacks: list | None = None):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    fs, path = storage.pyarrow_filesystem(storage_url, cfg.s3)
    return RunConfig(
        name=name, storage_path=path, storage_filesystem=fs, callbacks=callbacks,
        failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=ck.KEEP_CHECKPOINTS),
        worker_runtime_env={"env_vars": worker_env()},
    )


def trainer(cfg: Config, storage_url: str, name: str, callbacks: list | None = None,
            data_hash: str | None = None, trial: bool = False):
    """The TorchTrainer for one run (a sweep `trial` builds the same); its ranks check the shards they open against
    `data_hash` (`loop.open_checked`): the manifest hash the driver checked the run against, or a trial's sweep's."""
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.model_dump(mode="json"), "run_url": storage.join(storage_url, name),
                           "manifest_hash": data_hash, "trial": trial},
        scaling_config=scaling_config(cfg),
        run_config=run_config(cfg, storage_url, name, [stop_on_input_fault(), *(callbacks or [])]),
    )


def _fit(cfg: Config, name: str, run_url: str, data_hash: str, own_ray: bool = False) -> list[dict[str, Any]]:
    """Train the checked run, in this process or on Ray Train, on the shards of manifest `data_hash` (those it was
    checked on: rebuilt since, the run stops before training); its history. The caller holds the run's folder: a
    second driver of the same run (the same command submitted twice, or again while a stopped job still wound down)
    resumed from the first's newest checkpoint and trained beside it, each writing checkpoints and metrics.json into
    the one folder (and deleting the other's), and both said they had finished. `own_ray`: the caller connected this
    process to Ray for the run, and a failed run lets it go (`_let_go_of_ray`)."""
    if cfg.train.strategy == "single":
        return loop.run(cfg, loop.LocalReporter(run_url, cfg), data_hash)
    from ray.exceptions import RayError
    from ray.train import TrainingFailedError

    try:
        with _own_sigint():
            trainer(cfg, cfg.train.storage, name, data_hash=data_hash).fit()
    except SystemExit:  # Ray Train's own Ctrl-C handler aborts the run, then may end the process with sys.exit
        raise TrainInterrupted(run_url) from None
    except (TrainingFailedError, RayError) as exc:  # RayError: the Train controller died as it started
        if own_ray:
            _let_go_of_ray()
        raise _explained(exc, run_url) from None
    history = json.loads(storage.read_bytes(storage.join(run_url, ck.METRICS_FILE), cfg.s3))["history"]
    if len(history) < cfg.train.epochs:  # aborted by Ctrl-C without an error
        raise TrainInterrupted(run_url)
    return history


def _let_go_of_ray() -> None:
    """Disconnect from Ray (shutting down the local Ray this process started) once a run has failed, so that its
    error, which the caller prints, is the last line the user sees. Ray streams its workers' and Train controller's
    output to this console seconds late (and its count of repeated lines after 5 s more): their tracebacks of the
    error came after avdis's one-line error, burying it. Those lines stay in Ray's session logs."""
    import ray

    ray.shutdown()


@contextmanager
def _own_sigint() -> Iterator[None]:
    """Give Ctrl-C back to the caller once `fit()` returns: Ray Train's handler stays installed after the run (it
    aborted a finished controller, and a script or IPython session calling `train` could not be interrupted)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def train(cfg: Config, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one model; returns where its metrics and checkpoints are and its final metrics. `names`: the option the
    user gave train.storage by where it is not that setting (`--storage`), for a refusal to name."""
    out = (names or {}).get("train.storage", "train.storage")
    cfg = cfg.model_copy(update={"s3": storage.pinned(cfg.s3)})  # workers on other nodes: the driver's endpoint
    storage.check_buckets(cfg.s3, cfg.data.shards, cfg.train.storage)
    made = to_make(cfg)
    runtime.check_kept({out: cfg.train.storage, **made})
    for url in dict.fromkeys([cfg.train.storage, *made.values()]):  # before any decoding: found in a second
        storage.check_writable(url, cfg.s3)
    if cfg.train.strategy != "single":
        runtime.check_address(cfg.ray)  # before any decoding too; connected after the data checks
    if made:  # shards still to make (or preprocess): what data.modality will put in them is known now
        loop.check_modalities(cfg.model.modality, HELD[cfg.data.modality], cfg.data.shards)
    ensure_shards(cfg)
    name = run_name(cfg)
    run_url = storage.join(cfg.train.storage, name)
    data_hash = manifest_hash(cfg.data.shards, cfg.s3)  # what the run is checked against, and its workers' shards
    ck.check_resume(run_url, ck.run_signature(cfg, data_hash), cfg.s3, cfg.train.epochs,
                    ray_train=cfg.train.strategy != "single")
    print(f"avdis train: {cfg.method.name} strategy={cfg.train.strategy} workers={cfg.train.workers} "
          f"zero_stage={cfg.train.zero_stage} -> {run_url}", flush=True)
    info = open_dataset(cfg.data, cfg.s3)
    loop.check_modalities(cfg.model.modality, info.modalities, info.url)
    check_leakage_defined(info, cfg)
    warn_unseen_emotions(info, cfg)
    warn_few_judged(info, cfg)
    own_ray = False  # whether this call connected to Ray (a run that fails lets go of it)
    if cfg.train.strategy != "single":
        loop.check_accumulation(info, cfg, cfg.train.workers)  # before Ray starts
        nodes.check_added_nodes({out: cfg.train.storage, "data.shards": cfg.data.shards}, cfg.ray)
        own_ray = runtime.connect(cfg.ray) != "existing"
        nodes.check_shared({out: cfg.train.storage, "data.shards": cfg.data.shards})
        nodes.check_node_credentials({out: cfg.train.storage, "data.shards": cfg.data.shards})
        runtime.pin_train_coordinator()
        clusterfit.check_cluster(cfg, standalone=True)
    with storage_lock.exclusive(run_url, "training run", s3=cfg.s3):
        history = _fit(cfg, name, run_url, data_hash, own_ray)
    return {"run": run_url, "metrics_file": storage.join(run_url, ck.METRICS_FILE), "final": history[-1]}
