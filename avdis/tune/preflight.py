"""The checks of a sweep's space and data before Ray starts, each refusing what every trial would otherwise fail on
once the sweep had started, its name spent: the trial configs at the space's edges (`check_space`) and one per size
among them for the cluster (`trial_sizes`), the model.modality against the shards (`check_modalities`), shards
missing or cut short (`check_shards_whole`), no validation clips (`check_validation`) and a train.grad_accum that
does not divide an epoch's steps (`check_accumulation`)."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

from avdis import clusterfit, storage
from avdis.config import EMOTION_WORDS, Config, Range, with_overrides
from avdis.data.shards import HELD, MANIFEST, SHARD_DIR, read_manifest, unsound_shards
from avdis.data.stream import open_dataset
from avdis.errors import AvdisError, UsageError, counted
from avdis.train import loop
from avdis.train.evaluate import check_leakage_defined, scheme_of, warn_few_judged, warn_unseen_emotions
from avdis.tune.space import corners, to_overrides

CORNERS_CHECKED = 4096  # trial configs built at the space's edges before any work (each takes 1-4 ms)


def check_space(cfg: Config) -> list[Config]:
    """What the space asks that no trial could do, found before any work: every trial config at the space's edges
    is built (`space.corners`) and returned. A trial's own config is otherwise checked only when it starts, and one
    the space made invalid (nullspace's iterations against a sampled model.emb_dim, zero_stage against a sampled
    strategy) stopped the whole sweep there, with trials running, under a name that could then not be resumed. A
    space of more edges than `CORNERS_CHECKED` is checked in part (every method at each end of its weight, with
    every value of each knob: `corners`), and says so."""
    edges = []
    found = corners(cfg.sweep.space)
    for params in itertools.islice(found, CORNERS_CHECKED):
        try:
            edges.append(with_overrides(cfg, to_overrides(params)))
        except AvdisError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in to_overrides(params).items() if v is not None)
            why = str(exc).removeprefix("config + trial parameters: ").removeprefix("<root>: ")
            raise UsageError(f"sweep.space samples trials no run could take: at {shown}: {why}; narrow "
                             "sweep.space") from None
    if next(found, None) is not None:
        print(f"avdis sweep: note: sweep.space has more edges than the {CORNERS_CHECKED} built before any work (each "
              "method at each end of its weight with every value of each knob, and as many of their combinations as "
              "fit): a trial at another combination may still be refused when it starts, which ends the sweep, or "
              "not fit the cluster", flush=True)
    return edges


def trial_sizes(edges: list[Config]) -> list[Config]:
    """One trial config per size among the space's edges (`check_space`'s): each is checked on the cluster."""
    sizes: dict[str, Config] = {}
    for trial in edges:
        sizes.setdefault(json.dumps(clusterfit.demand(trial), sort_keys=True), trial)
    return list(sizes.values())


def check_validation(cfg: Config) -> None:
    """Refuse data with no validation clips where a trial needs them: the searcher, MO-ASHA and the front choose on
    validation numbers (`config.selection`), so that the test numbers reported were never used to choose. Without
    such clips every trial would end in error, with the sweep's compute spent. The split is one for the whole sweep
    (`config.PER_SWEEP`)."""
    info = open_dataset(cfg.data, cfg.s3)
    labels = info.labels
    scored = sum(scheme == "val" for _, _, scheme, _ in labels)  # the emotion metric
    probed = sum(scheme == "val" and within == "val" for _, _, scheme, within in labels)  # the probe
    if not (scored and probed):
        raise UsageError(
            f"{cfg.data.shards}: no validation clips under {scheme_of(cfg)} ({scored} for emotion "
            f"{EMOTION_WORDS[cfg.sweep.emotion_metric]}, {probed} "
            "for the leakage probe); a sweep chooses its trials and front on them, not on the test clips it "
            "reports. A speaker has validation clips only with 3 clips or more (then at least one, whatever "
            "data.split.val_fraction); under speaker_disjoint, the validation fold's speakers need them. Use a "
            "corpus with more clips per speaker, or data.split.scheme=speaker_disjoint with fewer folds")
    check_leakage_defined(info, cfg, ("test", "val"))
    warn_unseen_emotions(info, cfg)
    warn_few_judged(info, cfg, ("test", "val"))


STEPS_SET_BY = ("train.batch_size", "train.workers", "train.grad_accum", "train.epochs")  # with the data


def check_accumulation(cfg: Config) -> None:
    """Refuse, before any trial starts, a train.grad_accum that does not divide the steps of every epoch of every
    trial the sweep can run (`loop.check_accumulation`, which `avdis train` runs before Ray starts): each trial failed
    on it once its workers had started, and the sweep's name was spent on failed trials. Every value sweep.space can
    give the settings that set the steps is tried, not only the space's edges (batches of 8 and 12 may divide where 10
    does not). A trial's seed orders only shards of the same size (`EpochPlan.make`): it does not change the steps."""
    space = cfg.sweep.space.params
    values = {key: _every(space[key]) if key in space else [getattr(cfg.train, key.removeprefix("train."))]
              for key in STEPS_SET_BY}
    if max(values["train.grad_accum"]) <= 1:
        return
    info = open_dataset(cfg.data, cfg.s3)
    for combo in itertools.product(*values.values()):
        given = dict(zip(STEPS_SET_BY, combo))
        trial = cfg.train.model_copy(update={key.removeprefix("train."): v for key, v in given.items()})
        try:
            loop.check_accumulation(info, cfg.model_copy(update={"train": trial}), trial.workers)
        except UsageError as exc:
            sampled = [f"{key}={v}" for key, v in given.items() if key in space]
            if not sampled:
                raise
            raise UsageError(f"sweep.space samples trials no run could take: at {', '.join(sampled)}: {exc}; narrow "
                             "sweep.space or pick another train.grad_accum") from None


def _every(choice: Range | list[Any]) -> list[Any]:
    """Every value a knob of sweep.space can take: its list, or each whole number of an int range."""
    return choice if isinstance(choice, list) else list(range(int(choice.low), int(choice.high) + 1))


def check_modalities(cfg: Config, edges: list[Config]) -> None:
    """Refuse, before Ray starts, a model.modality (the config's, or one sweep.space.params samples) whose inputs the
    shards do not hold: each trial failed on it in its worker, and the sweep's name was spent on failed trials. The
    shards' `modalities` are the manifest's, or those of the shards this sweep will make (`ensure_shards`)."""
    manifest = storage.join(cfg.data.shards, MANIFEST)
    held = (read_manifest(cfg.data.shards, cfg.s3)[1].get("modalities", HELD["av"])
            if storage.exists(manifest, cfg.s3) else HELD[cfg.data.modality])
    for modality in dict.fromkeys(trial.model.modality for trial in edges):
        where = "" if modality == cfg.model.modality else " (sampled by sweep.space.params)"
        loop.check_modalities(modality, held, cfg.data.shards, where)


def check_shards_whole(cfg: Config) -> None:
    """Refuse, before Ray starts, shards of data.shards that are missing or cut short (their size against the
    manifest's: one listing) where their clips are more of the train split, or of all clips, than
    data.loader.max_skip_rate lets an epoch go without; warn where it lets them. With a shard truncated on S3 every
    trial failed its first epoch on it, one after another, and the sweep's name was spent on failed trials (which a
    resume retries only under --retry-failed). Shards still to make (`to_make`) are not looked at."""
    if not storage.exists(storage.join(cfg.data.shards, MANIFEST), cfg.s3):
        return
    bad = unsound_shards(cfg.data.shards, cfg.s3)
    if not bad:
        return
    info = open_dataset(cfg.data, cfg.s3)
    held = {ref.url.rsplit("/", 1)[-1]: ref.counts for ref in info.shards}
    lost = {split: sum(held.get(name, {}).get(split, 0) for name in bad) for split in ("train", "all")}
    rate = cfg.data.loader.max_skip_rate
    over = [f"{lost[split]} of {info.split_counts[split]} {'train' if split == 'train' else 'evaluated'} clips"
            for split in lost if info.split_counts.get(split) and lost[split] / info.split_counts[split] > rate]
    named = "; ".join(f"{storage.join(cfg.data.shards, SHARD_DIR, name)}: {why}" for name, why in list(bad.items())[:5])
    if over:
        raise UsageError(f"{cfg.data.shards}: {counted(len(bad), 'shard')} missing or cut short ({named}), "
                         f"{' and '.join(over)}, more than data.loader.max_skip_rate={rate} lets an epoch go without: "
                         f"every trial would fail its first epoch. `avdis preprocess --out {cfg.data.shards}` makes "
                         "them again (it compares their sizes with the manifest); or raise data.loader.max_skip_rate "
                         "to train without their clips")
    print(f"avdis sweep: warning: {cfg.data.shards}: {counted(len(bad), 'shard')} missing or cut short ({named}): "
          f"trials will train and be measured without {lost['all']} of its {info.split_counts['all']} clips, as "
          f"data.loader.max_skip_rate={rate} lets them", file=sys.stderr, flush=True)
