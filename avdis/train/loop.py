"""The per-worker training function: stream shards, train, evaluate, report, checkpoint.

`train_worker` is Ray Train's `train_loop_per_worker`; the single-process trainer calls
`run` with a `LocalReporter`, a one-worker sweep trial with a `TuneReporter`. Same code,
same numbers, whatever the launcher. Each epoch ends with an embedding pass over all clips, metrics + leakage probe on rank 0,
one progress line on rank 0, and one report with a checkpoint (collective: every rank
takes part). A non-finite loss, embedding or objective fails the epoch before anything
is saved (`NonFiniteError`, naming the step, shards and clips): no NaN model is kept.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from pyarrow.fs import FileType

from avdis import runtime, storage
from avdis.config import OBJECTIVES, Config, DataConfig, EmotionMetric, S3Config, selection
from avdis.data.shards import MANIFEST, PreprocessError
from avdis.data.stream import (DatasetInfo, EpochPlan, ShardCache, ShardsRebuilt, SkipStats, check_skip_rate,
                               epoch_batches, open_dataset)
from avdis.errors import AvdisError, UsageError, counted
from avdis.model.disentangle import REGISTRY
from avdis.model.multitask import MODALITY_INPUTS, build_model, count_parameters
from avdis.numbers import finite, json_safe
from avdis.train import checkpoint as ck
from avdis.train.engine import build_engine
from avdis.train.evaluate import evaluate
from avdis.train.step import Stepper, embed, lr_at, seed_epoch, train_prior

OUTPUTS = ("z_emo", "z_id", "emo_logits", "id_logits")


class NonFiniteError(AvdisError):
    """A loss, an embedding or an objective came out NaN or infinite; the epoch saved nothing."""


@contextmanager
def _as_directory(found: Any) -> Iterator[Path | None]:
    """A Ray checkpoint (or None: a fresh start) as a local directory while the block runs."""
    if found is None:
        yield None
        return
    here = storage.local_path(found.filesystem, found.path)  # read in place, as Ray does on its own local filesystem
    with nullcontext(here) if here is not None else found.as_directory() as d:
        yield Path(d)


@contextmanager
def tune_checkpoint(found: Any, s3: S3Config, records_url: str) -> Iterator[Path | None]:
    """The checkpoint Tune restores a trial from, as `_as_directory` gives it; where it has no state.json, the newest
    whole one beside it (`ck.tune_whole_beside`), said aloud, and copied into the folder Tune restores first: Tune
    writes the trial's next checkpoint into the folder after that one, over its files, and where that was the one
    resumed from, a kill part way through left it mixed (a state.json of one epoch, weights of the next) with no other
    to resume from. A checkpoint folder Tune deleted after the killed driver last saved its state is such a folder: the
    resumed sweep put a stand-in there (`ck.stand_in`). A newer checkpoint is safe to resume from: a resumed run reports
    its history again (`run`). Only one the trial's metrics.json (under `records_url`) shows uploaded whole: the kill
    may have cut its newest upload short, its state.json whole beside missing weights. A folder without its state.json
    that is no stand-in (moved aside as `resume.check_trial_runs` says to, or cut short) is said as such, not as
    gone."""
    folder = None
    if found is not None and found.filesystem.get_file_info(f"{found.path}/{ck.STATE}").type == FileType.NotFound:
        folder = storage.url_from_pyarrow(found.filesystem, found.path)
    if folder is None:  # whole, a fresh start, or on a filesystem avdis did not give Ray (its reading names the folder)
        with _as_directory(found) as here:
            yield here
        return
    run_url = folder.rsplit("/", 1)[0]
    stood_in = found.filesystem.get_file_info(f"{found.path}/{ck.STAND_IN}").type != FileType.NotFound
    lacks = ("was gone (deleted after the driver last saved its state)" if stood_in else
             f"has no {ck.STATE} (moved aside, or cut short as it was uploaded or deleted)")
    beside = ck.tune_whole_beside(folder, records_url, s3)
    if beside is None:
        raise ck.unusable(run_url, f"{found.path} {lacks}, and no checkpoint beside it is known to be whole (one "
                                   f"with a whole {ck.STATE}, of an epoch before the last that "
                                   f"{storage.join(records_url, ck.METRICS_FILE)} records)", trial=True, s3=s3)
    print(f"avdis sweep: trial checkpoint {found.path} {lacks}; resuming from the newest whole checkpoint in "
          f"{run_url}, {beside.rsplit('/', 1)[-1]}, copied into {folder.rsplit('/', 1)[-1]} first", flush=True)
    with ck.local(beside, s3) as here:
        ck.upload(here, folder, s3)
        yield here


class LocalReporter:
    """Single process: checkpoints in a `RunStore`, metrics.json beside them."""

    rank, world = 0, 1

    def __init__(self, run_url: str, cfg: Config):
        self.run_url, self.s3 = run_url, cfg.s3
        self.store = ck.RunStore(run_url, cfg.s3)

    def restore(self) -> AbstractContextManager[Path | None]:
        return self.store.latest()

    @property
    def restored(self) -> str | None:
        """The URL of the checkpoint `restore` gave, for a refusal to name."""
        return self.store.restored

    def report(self, metrics: dict[str, Any], directory: Path | None) -> None:
        if directory is not None:
            self.store.save(directory, metrics["epoch"])


def tune_result(metrics: dict[str, Any], emotion: EmotionMetric) -> dict[str, Any]:
    """An epoch's metrics as a sweep trial reports them to Tune: with every selection metric of the sweep's
    `emotion` metric (`config.selection`), None where the epoch did not measure it (no probe between MO-ASHA's rungs:
    `probed`). Tune checks each result for its searcher's metrics and ended the sweep at the first epoch without
    val_leakage; None is "not measured", which MO-ASHA, the searcher (it reads a trial's last result, always probed)
    and the recorder pass over."""
    return {**dict.fromkeys(selection(emotion)), **metrics}


class TuneReporter:
    """A sweep trial that trains in its own process (one worker, any strategy): checkpoints and metrics go to Tune."""

    rank, world = 0, 1
    restored = None  # a trial's refusal names no folder to move aside (`ck.unusable`)

    def __init__(self, run_url: str, cfg: Config):
        self.run_url, self.s3, self.emotion = run_url, cfg.s3, cfg.sweep.emotion_metric

    def restore(self) -> AbstractContextManager[Path | None]:
        import ray.tune

        return tune_checkpoint(ray.tune.get_checkpoint(), self.s3, self.run_url)

    def report(self, metrics: dict[str, Any], directory: Path | None) -> None:
        import ray.tune

        ckpt = ray.tune.Checkpoint.from_directory(str(directory)) if directory is not None else None
        ray.tune.report(tune_result(metrics, self.emotion), checkpoint=ckpt)


class RayReporter:
    """Inside Ray Train: `ray.train.report` with a checkpoint from every rank that wrote one."""

    def __init__(self, run_url: str, cfg: Config):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.run_url, self.s3 = run_url, cfg.s3
        self.pruned = self.rank != 0  # rank 0 removes the folders Ray Train's record lacks, at its first checkpoint
        self.restored: str | None = None  # the URL of the checkpoint `restore` gave

    @contextmanager
    def restore(self) -> Iterator[Path | None]:
        """The checkpoint Ray Train restores, or a newer whole one its record lacks (`ck.unrecorded_point`), said
        aloud; its URL is kept in `restored`, for a refusal to name."""
        import ray.train

        found = ray.train.get_checkpoint()
        recorded = _epoch_of(found) if found is not None else 0
        newer = ck.unrecorded_point(self.run_url, self.s3, after=recorded)
        if newer is None:
            self.restored = (storage.url_from_pyarrow(found.filesystem, found.path) or found.path) if found else None
            with _as_directory(found) as here:
                yield here
            return
        if found is not None and self.rank == 0:
            print(f"avdis train: Ray Train's record of {self.run_url} ends at epoch {recorded}, behind its newer "
                  "checkpoints (a stop cut it short); resuming from the newest whole one", flush=True)
        self.restored = newer[0]
        with ck.local(newer[0], self.s3) as here:
            yield here

    def report(self, metrics: dict[str, Any], directory: Path | None) -> None:
        import ray.train

        has_files = directory is not None and any(directory.iterdir())
        ckpt = ray.train.Checkpoint.from_directory(str(directory)) if has_files else None
        ray.train.report(metrics, checkpoint=ckpt)
        if ckpt is not None and not self.pruned:
            self.pruned = True
            # once Ray Train has recorded this checkpoint, every folder its record lacks is older or superseded
            listed = ray.train.get_all_reported_checkpoints(
                consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
            if any(r.metrics.get("epoch") == metrics["epoch"] for r in listed):
                names = {r.checkpoint.path.rstrip("/").rsplit("/", 1)[-1] for r in listed}
                ck.remove_unlisted(self.run_url, self.s3, names)


def _epoch_of(found: Any) -> int:
    """The epoch a Ray checkpoint's state.json records; -1 where it cannot be read (its restore says why, unless a
    newer whole checkpoint is found)."""
    try:
        with found.filesystem.open_input_stream(f"{found.path}/{ck.STATE}") as f:
            return int(json.loads(f.read()).get("epoch", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1


def _maybe_fail(step: int, rank: int, world: int) -> None:
    """Test hook for fault tolerance: AVDIS_FAIL_AT_STEP (+ AVDIS_FAIL_MARKER, once)."""
    at = os.environ.get("AVDIS_FAIL_AT_STEP")
    if at is None or int(at) != step or rank != world - 1:
        return
    marker = os.environ.get("AVDIS_FAIL_MARKER")
    if marker:
        if os.path.exists(marker):
            return
        Path(marker).write_text(f"killed rank {rank} at step {step}\n")
    print(f"avdis: injected failure: rank {rank} exits at step {step}", flush=True)
    os._exit(1)


def open_checked(data: DataConfig, s3: S3Config, recorded: str | None, trial: bool = False) -> DatasetInfo:
    """`open_dataset`, stopped (ShardsRebuilt, on every rank alike) where the shards this worker opened are not those
    `recorded` names (a sweep trial's: its sweep.json's manifest hash; a run's: the one its driver checked the run's
    checkpoints against) or those its run's other ranks opened, or where a build has removed their manifest since:
    each trial and each rank reads the manifest as it starts, so a sweep's trials started after `avdis preprocess`
    made data.shards again trained on other data than its first trials, and one front mixed the two (a run's ranks,
    one epoch's batches; a run, other shards than its driver checked); one started during the build was told to run
    `avdis preprocess` first. `trial`: this is a sweep's trial, whose `recorded` is its sweep's."""
    try:
        info: DatasetInfo | None = open_dataset(data, s3)
    except PreprocessError as exc:
        if storage.exists(storage.join(data.shards, MANIFEST), s3):  # one that is there but unreadable
            raise
        info, missing = None, exc
    opened: list[Any] = [info.manifest_hash if info is not None else None]
    if dist.is_initialized() and dist.get_world_size() > 1:
        opened = [None] * dist.get_world_size()
        dist.all_gather_object(opened, info.manifest_hash if info is not None else None)
    want = recorded or opened[0]
    if info is not None and set(opened) == {want}:
        return info
    if recorded is None and set(opened) == {None}:  # no shards, and no sweep or driver that saw some
        raise missing
    said = ", ".join(h or "none whole (a build under way, or deleted)" for h in sorted(set(opened) - {want}, key=str))
    if trial:
        when = f"manifest {want} when the sweep started (its sweep.json), {said} when this trial opened them"
    elif recorded:
        when = f"manifest {want} when `avdis train` checked the run, {said} when its workers opened them"
    else:
        when = f"its workers opened manifests {', '.join(h or 'none' for h in sorted(set(opened), key=str))}"
    raise ShardsRebuilt(
        f"{data.shards}: its shards were made again while this {'sweep' if trial else 'run'} ran ({when}). "
        + ("A sweep's trials train on the data it started with, and its front would mix the two: this trial stops "
           "before training; start a new sweep (sweep.name=...) on the shards as they are now; "
           if trial else "A run's workers must read the shards it was checked on, all the same: it stops before "
           "training; run it again once the build is done; ")
        + "do not rebuild shards a run or sweep is reading")


def _broadcast(obj: Any, rank: int) -> Any:
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def _all_ranks(stats: SkipStats) -> SkipStats:
    """A pass's skipped clips summed over the ranks: each reads its own shards, and rank 0's numbers are reported
    (a bad shard read by another rank went uncounted)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, stats)
        return SkipStats.merged(parts)
    return stats


WINDOW_LOSSES = ("adversary",)
"""Losses a step logs once per accumulation window, as a mean over the window's clips (the adversary trains on the
z_emo of all its micro-batches): weighed by the window's valid clips, not by the micro-batch that logged them."""


def _epoch_losses(logs: list[dict[str, float]], rows: list[int], windows: list[int],
                  keys: tuple[str, ...]) -> dict[str, float]:
    """Each logged loss's mean over the epoch's clips on every rank, a step weighed by its valid clips (`rows`; for
    `WINDOW_LOSSES`, its accumulation window's, `windows`): as a mean of rank 0's steps, the padding steps of a rank
    dealt fewer clips (losses of 0) pulled it down, and the other ranks' clips were not in it. A loss no step logged
    is left out (the adversary logs one per encoder step)."""
    sums = torch.zeros(2, len(keys), dtype=torch.float64)
    for step, row, window in zip(logs, rows, windows):
        for j, key in enumerate(keys):
            if key in step:
                n = window if key in WINDOW_LOSSES else row
                sums[0, j] += step[key] * n
                sums[1, j] += n
    if dist.is_initialized() and dist.get_world_size() > 1:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        sums = sums.to(device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    return {key: float(total / n) for key, total, n in zip(keys, *sums.tolist()) if n}


def check_modalities(modality: str, held: Sequence[str], url: str, where: str = "") -> None:
    """Refuse a model.modality whose inputs the shards at `url` do not hold (`held`, the manifest's `modalities`:
    shards of audio alone have no video). The drivers call it before Ray starts: in a worker it failed each run, and
    every trial of a sweep, with Ray's tracebacks around it. `where` names a setting the modality came from."""
    missing = [m for m in MODALITY_INPUTS[modality] if m not in held]
    if missing:
        fits = [m for m, inputs in MODALITY_INPUTS.items() if set(inputs) <= set(held)]
        raise UsageError(f"model.modality={modality}{where} needs {missing} but the shards at {url} hold only "
                         f"{list(held)}; set model.modality={' or '.join(fits)}, or, for a model that sees video, "
                         "make shards of the corpus with it (`avdis preprocess ... data.modality=av --out <another "
                         "folder>`) and train on those (data.shards=<it> data.modality=av)")


def _check_step(logs: dict[str, float], batch: dict[str, Any], epoch: int, step: int, steps: int) -> None:
    """Fail on a non-finite loss, naming the step and the batch's shards and clips (and which hold bad inputs)."""
    bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
    if not bad:
        return
    finite_audio = torch.isfinite(batch["audio"]).flatten(1).all(1).tolist()
    bad_inputs = [f"{c} in {s}" for c, s, ok in zip(batch["clip_id"], batch["shard"], finite_audio) if not ok]
    hint = (f"non-finite audio features in {bad_inputs}: fix their sources and re-run `avdis preprocess`"
            if bad_inputs else "training diverged: lower train.lr or method.weight")
    raise NonFiniteError(
        f"epoch {epoch + 1}, step {step + 1} of {steps}: non-finite {bad} on a batch from shards "
        f"{sorted(set(batch['shard']))}, clips {batch['clip_id']}; {hint}. No checkpoint was saved for this epoch."
    )


def _check_embeddings(emb: dict[str, np.ndarray], epoch: int) -> None:
    """Fail when the model gives NaN/inf for any clip: a probe on such outputs reports garbage leakage."""
    bad = ~np.all([np.isfinite(emb[k]).all(1) for k in OUTPUTS], axis=0)
    if bad.any():
        clips, shards = emb["clip_id"][bad].tolist(), sorted(set(emb["shard"][bad].tolist()))
        raise NonFiniteError(
            f"epoch {epoch + 1}: the model gave non-finite outputs for {counted(len(clips), 'clip')} in the embedding "
            f"pass (first: {clips[:10]}) from shards {shards[:10]}; check those clips' features (re-run `avdis "
            f"preprocess`). No checkpoint was saved for this epoch."
        )


def _check_objectives(metrics: dict[str, Any], epoch: int, seen: SkipStats, data: DataConfig) -> None:
    """Fail when an objective the report gives (`config.OBJECTIVES`, test clips) is not a finite number. The
    validation numbers a sweep chooses on are not checked here: a run without validation clips still trains, and a
    sweep refuses such data before it starts (`avdis.tune.preflight.check_validation`). The launchers refuse data whose
    labels leave an objective undefined before training (`check_leakage_defined`), so here it is the clips that did
    not arrive for the embedding pass (`seen`, every rank's) that took away what the check counted on."""
    bad = {k: metrics[k] for k in OBJECTIVES if k in metrics and finite(metrics[k]) is None}
    if not bad:
        return
    if metrics.get("probe_chance") == 1.0:
        what, labels = ("the emotion label alone names the speaker of every clip the leakage probe judged "
                        "(probe_chance 1.0), so leakage is undefined there", "a speaker_disjoint fold of one speaker, "
                        "or test clips whose emotion no two of the probe's speakers share")
    elif metrics.get("speaker_chance") == 1.0:
        what, labels = ("the leakage probe's train clips were of one speaker (speaker_chance 1.0): it had no "
                        "speakers to tell apart, so leakage is undefined", "a corpus, or a speaker_disjoint fold, of "
                        "one speaker")
    else:
        what = ("no test clip was left for the leakage probe to judge (under speaker_disjoint, the test fold's "
                "within-speaker test and validation clips)" if metrics.get("n_test") else
                "no test clip was left to score")
        labels = "a split that deals no clip to test"
    if seen.skipped_samples:
        why = (f"{seen.skipped_samples} of the {seen.expected} clips did not arrive for the evaluation (within "
               f"data.loader.max_skip_rate={data.loader.max_skip_rate}; first problems: "
               f"{'; '.join(seen.reasons[:3])}), and among those that did {what}; the evaluation needs them: "
               + ("check that storage holds those shards and this node can read them"
                  if seen.unread_shards == seen.bad_shards and not seen.bad_samples else
                  f"make the shards again with `avdis preprocess --out {data.shards} --force`"))
    else:  # a caller that did not check the data first
        why = (f"{what}: the data's labels leave it so ({labels}); `avdis train` and `avdis sweep` refuse such "
               "data before training and say what to change")
    raise NonFiniteError(f"epoch {epoch + 1}: non-finite {bad} from {metrics.get('n_test')} test clips; {why}. "
                         "No checkpoint was saved for this epoch.")


def _epoch_line(metrics: dict[str, Any], epochs: int) -> str:
    """One progress line: epoch, loss, emotion_acc, leakage when probed, seconds, skipped clips if any."""
    parts = [f"epoch {metrics['epoch']}/{epochs}", f"loss {metrics['loss']:.4f}",
             f"emotion_acc {metrics['emotion_acc']:.3f}"]
    if "leakage" in metrics:
        parts.append(f"leakage {metrics['leakage']:.3f}")
    parts.append(f"{metrics['epoch_s']:.1f} s")
    if metrics["skipped_samples"]:
        parts.append(f"skipped {counted(metrics['skipped_samples'], 'clip')} "
                     f"({counted(metrics['skipped_shards'], 'bad shard')})")
    if metrics.get("eval_skipped_samples"):
        parts.append(f"{counted(metrics['eval_skipped_samples'], 'clip')} missing from the evaluation")
    return "avdis train: " + ", ".join(parts)


def probed(cfg: Config, epoch: int) -> bool:
    """Whether epoch (from 1) runs the leakage probe: every `train.probe_every`-th, and the last always."""
    every = cfg.train.probe_every
    return epoch == cfg.train.epochs or bool(every and epoch % every == 0)


def run(cfg: Config, reporter: LocalReporter | TuneReporter | RayReporter,
        recorded: str | None = None, trial: bool = False) -> list[dict[str, Any]]:
    """Train `cfg` on this worker; returns the metric history (one dict per epoch). `recorded`: the manifest hash
    of the data this run's shards must still hold: for a sweep's trial (`trial`), the one its sweep started on (its
    sweep.json's); for `avdis train`, the one its driver checked the run against."""
    rank, world = reporter.rank, reporter.world
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    if not isinstance(reporter, LocalReporter):
        # a Ray worker or trial uses the CPUs it reserved: left to the process it was started in, the thread count
        # varies from run to run, and so do the last bits of every training sum
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    info = open_checked(cfg.data, cfg.s3, recorded, trial)
    check_modalities(cfg.model.modality, info.modalities, info.url)
    n_emo, n_spk = len(info.emotions), len(info.speakers)
    model = build_model(cfg.model, info.features, n_emo, n_spk)
    n_params = count_parameters(model)
    method = REGISTRY[cfg.method.name]
    engine = build_engine(model, cfg.train, find_unused=not method.identity_loss)
    stepper = Stepper(engine, method, cfg, n_spk, train_prior(info))
    signature = ck.run_signature(cfg, info.manifest_hash)
    start, history = 0, []
    with reporter.restore() as found:
        if found is not None:
            # the refusal names the folder to move aside, a Ray Train run's with its record (`ck.unusable`)
            aside = dict(folder=reporter.restored, trial=trial, ray_train=isinstance(reporter, RayReporter),
                         s3=reporter.s3)
            try:
                state = ck.read_state(found)
            except (OSError, ValueError) as exc:
                raise ck.unusable(reporter.run_url, f"{ck.STATE}: {exc}", **aside) from None
            ck.check_compatible(ck.saved_signature(state), signature, reporter.run_url)
            if not (found / ck.ADVERSARY).exists():  # every checkpoint has one: resuming without it resets the adversary
                raise ck.unusable(reporter.run_url, f"{ck.ADVERSARY} is missing", **aside)
            try:
                engine.load(found)
                stepper.load(found / ck.ADVERSARY)
            except (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as exc:
                raise ck.unusable(reporter.run_url, f"{type(exc).__name__}: {exc}", **aside) from None
            start, history = state["epoch"], state["history"]
            if rank == 0:
                print(f"avdis train: resuming from epoch {start} of {cfg.train.epochs} ({reporter.run_url})", flush=True)
                _say_schedule_change(cfg, start, state.get("epochs"))
    # A resumed run says again what it had done, without checkpoints: its driver may have died before hearing it. A
    # multi-worker sweep trial's Train run reports through a queue behind Tune and can be epochs ahead of it, and a
    # rung epoch MO-ASHA never saw would never be judged (repeats are ignored). A finished run says it finished.
    for done in history if start < cfg.train.epochs else history[-1:]:
        reporter.report(done, None)
    train_clips = info.split_counts.get("train", 0)
    check_accumulation(info, cfg, world)
    directions: int | None = None  # the last nullspace fit's: a shortfall is said as it shows or changes
    cache = ShardCache()  # each sound shard read, checked and decoded once in this run, not twice an epoch
    for epoch in range(start, cfg.train.epochs):
        seed_epoch(cfg.train.seed, epoch, rank)
        stats = SkipStats()
        t0 = time.perf_counter()
        wait = 0.0
        logs: list[dict[str, float]] = []
        rows: list[int] = []  # each step's valid clips
        windows: list[int] = []  # each step's accumulation window's valid clips
        batches = epoch_batches(info, cfg.data, cfg.s3, "train", rank=rank, world=world, epoch=epoch,
                                seed=cfg.train.seed, batch_size=cfg.train.batch_size, stats=stats, cache=cache)
        steps = EpochPlan.make(info, "train", world, epoch, cfg.train.seed, cfg.train.batch_size).steps or 1
        window: list[dict[str, Any]] = []  # the rest of this accumulation window's micro-batches
        held, i = 0, 0
        while True:
            if not window:  # a window's batches are read first: each micro-batch's loss is weighed by its clips
                tw = time.perf_counter()
                window = list(itertools.islice(batches, cfg.train.grad_accum))
                wait += time.perf_counter() - tw
                if not window:
                    break
                held = sum(int(b["valid"].sum()) for b in window)
            batch = window.pop(0)
            runtime.check_interrupted()  # a Ctrl-C a library swallowed stops the run here: it resumes from its checkpoint
            _maybe_fail(epoch * steps + i, rank, world)
            logs.append(stepper.train_step(batch, epoch + i / steps, held))
            rows.append(int(batch["valid"].sum()))
            windows.append(held)
            _check_step(logs[-1], batch, epoch, i, steps)
            i += 1
        train_s = time.perf_counter() - t0
        seen = SkipStats()
        emb = embed(engine, epoch_batches(info, cfg.data, cfg.s3, None, rank=rank, world=world, epoch=epoch,
                                          seed=cfg.train.seed, batch_size=cfg.train.batch_size, shuffle=False,
                                          stats=seen, pad=False, cache=cache))
        stats, seen = _all_ranks(stats), _all_ranks(seen)
        losses = _epoch_losses(logs, rows, windows, ("loss", "emotion", "speaker", cfg.method.name, "adversary"))
        check_skip_rate(stats, cfg.data, "train")  # the epoch's rate: every rank's clips, on every rank alike
        check_skip_rate(seen, cfg.data, "all")
        _check_embeddings(emb, epoch)
        metrics, fit = (evaluate(emb, cfg, n_spk, n_emo, probed(cfg, epoch + 1), directions) if rank == 0
                        else (None, None))
        directions = fit.directions if fit is not None else None
        metrics = _broadcast(metrics, rank)
        _check_objectives(metrics, epoch, seen, cfg.data)
        metrics.update({
            "epoch": epoch + 1, "steps": i, "train_s": train_s, "epoch_s": time.perf_counter() - t0,
            "samples_per_s": train_clips / max(train_s, 1e-9),
            "data_wait_frac": wait / max(train_s, 1e-9), "loss": losses.get("loss", float("nan")),
            "skipped_samples": stats.skipped_samples, "skipped_shards": stats.bad_shards,
            "eval_skipped_samples": seen.skipped_samples,  # clips missing from the metrics and the probe
            "manifest_hash": info.manifest_hash, "params": n_params, "world_size": world,
        })
        # over the run's epochs so far, restored ones with their recorded times: an epoch re-run after a resume
        # counts once, as the sweep's record of a trial's work should
        metrics["train_s_sum"] = train_s + sum(h["train_s"] for h in history)
        metrics["epoch_s_sum"] = metrics["epoch_s"] + sum(h["epoch_s"] for h in history)
        metrics.update({f"loss_{key}": value for key, value in losses.items() if key != "loss"})
        history.append(metrics)
        if rank == 0:
            print(_epoch_line(metrics, cfg.train.epochs), flush=True)
        with ck.scratch_dir() as d:
            engine.save(d)  # collective under DeepSpeed
            if rank == 0:
                ck.write_state(d, {"epoch": epoch + 1, "epochs": cfg.train.epochs, "history": history, ck.SIGNATURE: signature,
                                   "data_position": {"epoch": epoch + 1, "step_in_epoch": 0}})
                torch.save(stepper.state_dict(), d / ck.ADVERSARY)
                if fit is not None:
                    torch.save({"projection": fit.projection, "mean": fit.mean, "emo_head": fit.emo_head.state_dict()},
                               d / "posthoc.pt")
                storage.write_bytes(storage.join(reporter.run_url, ck.METRICS_FILE),
                                    json.dumps(json_safe({"history": history}), indent=1, allow_nan=False).encode(), cfg.s3)
            reporter.report(metrics, d)
    return history


def _say_schedule_change(cfg: Config, start: int, planned: int | None) -> None:
    """A run resumed with other `train.epochs` follows the new cosine schedule from where it is: say what that does."""
    if cfg.train.lr_schedule != "cosine" or planned in (None, cfg.train.epochs) or start >= cfg.train.epochs:
        return
    print(f"avdis train: train.epochs changed from {planned} to {cfg.train.epochs}: the cosine learning rate follows "
          f"the {cfg.train.epochs}-epoch schedule from epoch {start + 1}, so it moves from "
          f"{lr_at(cfg, start, planned):.3g} to {lr_at(cfg, start):.3g}; the run differs from one trained for "
          f"{counted(cfg.train.epochs, 'epoch')} from the start", flush=True)


def check_accumulation(info: DatasetInfo, cfg: Config, world: int) -> None:
    """Refuse a train.grad_accum that does not divide every epoch's steps (shards are dealt whole, so ranks and
    epochs may differ): the last, partial accumulation would carry into the next epoch and be lost on resume."""
    accum = cfg.train.grad_accum
    for epoch in range(cfg.train.epochs) if accum > 1 else ():
        steps = EpochPlan.make(info, "train", world, epoch, cfg.train.seed, cfg.train.batch_size).steps
        if steps % accum:
            raise UsageError(
                f"train.grad_accum={accum} does not divide the {steps} steps of epoch {epoch + 1} (batches of "
                f"{cfg.train.batch_size} on {world} worker(s)): its last, partial accumulation would carry into the "
                "next epoch and be lost on resume; pick a grad_accum that divides it, or another batch_size")


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; `config` = {"config": Config as JSON dict, "run_url": str, "manifest_hash": the one
    its shards must hold (`run`'s `recorded`), "trial": whether it is a sweep's trial}."""
    cfg = Config.model_validate(config["config"])
    run(cfg, RayReporter(config["run_url"], cfg), config["manifest_hash"], config["trial"])
