"""Shards -> batches of torch tensors, split across Ray Train ranks and DataLoader workers.

Contract per epoch:
- The manifest says how many clips of each split every shard holds. Shards are dealt
  to ranks (seeded shuffle per epoch, then greedy balance by clip count), so every clip
  of the split is read by exactly one rank, once.
- Every rank runs the same number of steps (`EpochPlan.steps`): a rank with fewer clips
  pads with rows marked `valid=False`, so collectives (DDP, ZeRO-3 gathers) never hang.
- Inside a rank, shards are split over DataLoader workers; samples pass a shuffle buffer. The workers are forked
  from a forkserver, never from the trainer: a trainer runs threads (Ray's, gloo's, a Tune trial's), and a fork
  copies the locks they hold without the threads that would release them.
- Integrity: each shard is read whole into memory and checked against the size and sha256
  the manifest promises before any of its samples is used (shards are small; a tar parser
  takes a damaged header mid-shard for the end of the archive, so only the hash catches it).
- A run's `ShardCache` keeps the decoded samples of each shard it found sound (until `CACHE_BYTES`), so that its
  later passes (every epoch's training and embedding pass) read, hash and decode each such shard once per trainer
  process, not twice an epoch; a shard with any problem is read again, and counted, on every pass.
- Skip policy: a shard that cannot be read, fails the check, breaks mid-way or holds fewer
  clips than the manifest says, and a sample that cannot be decoded, are counted
  (`SkipStats`) with the URL and reason, never hidden. Clips the manifest promised but
  that did not arrive count as skipped samples. Above `max_skip_rate` the epoch raises
  `SkipRateExceeded`.
- Every sample and batch row carries the URL of its shard (`shard`), so a later failure
  (a non-finite loss) can name where its clips came from.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_iterator

from avdis import storage
from avdis.config import DataConfig, FeatureConfig, S3Config
from avdis.data import shards as shardlib
from avdis.data.splits import split_of
from avdis.errors import AvdisError, counted

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class SkipRateExceeded(AvdisError):
    """Too many shards or samples were unreadable in one epoch."""


class ShardsRebuilt(AvdisError):
    """The shards a run reads were made again (or are being made) since it opened their manifest."""


@dataclass(frozen=True)
class ShardRef:
    url: str
    counts: dict[str, int]  # clips per split under the configured scheme, plus "all"
    size: int  # bytes, as the manifest promises
    sha256: str
    # the manifest's word on each of its clips, by clip_id: the labels' indices and splits are given there, once
    # every clip was decoded (the sample's json holds the clip's id, label names and lengths)
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    """What a trainer needs to know about a preprocessed corpus, read from its manifest."""

    url: str
    shards: list[ShardRef]
    emotions: list[str]
    speakers: list[str]
    features: FeatureConfig
    modalities: tuple[str, ...]
    split_counts: dict[str, int]
    manifest_hash: str
    # labels of every clip, for chance levels: (speaker_idx, emotion_idx, scheme split, within-speaker split)
    labels: list[tuple[int, int, str, str]]


def open_dataset(data: DataConfig, s3: S3Config) -> DatasetInfo:
    table, meta, digest = shardlib.load_manifest(data.shards, s3)
    shardlib.check_made_with(data, meta)
    rows = table.select(["clip_id", "shard", "split", "fold", "speaker_idx", "emotion_idx"]).to_pylist()
    per_shard: dict[str, Counter] = {}
    clips: dict[str, dict[str, dict[str, Any]]] = {}
    labels = []
    for row in rows:  # the manifest's "split" column is the within-speaker split
        shard, clip_id = row.pop("shard"), row.pop("clip_id")
        scheme_split = split_of(row["split"], row["fold"], data.split)
        per_shard.setdefault(shard, Counter())[scheme_split] += 1
        per_shard[shard]["all"] += 1
        clips.setdefault(shard, {})[clip_id] = {**row, "scheme_split": scheme_split}
        labels.append((row["speaker_idx"], row["emotion_idx"], scheme_split, row["split"]))
    refs = [ShardRef(storage.join(data.shards, shardlib.SHARD_DIR, s["name"]), dict(per_shard.get(s["name"], {})),
                     s["bytes"], s["sha256"], clips.get(s["name"], {})) for s in meta["shards"]]
    totals = Counter()
    for ref in refs:
        totals.update(ref.counts)
    return DatasetInfo(
        url=data.shards, shards=refs, emotions=meta["emotions"], speakers=meta["speakers"],
        features=FeatureConfig(**meta["features"]), modalities=tuple(meta.get("modalities", ("audio", "visual"))),
        split_counts=dict(totals), manifest_hash=digest, labels=labels,
    )


@dataclass(frozen=True)
class EpochPlan:
    """Which shards each rank reads this epoch, and the common number of steps."""

    per_rank: list[list[ShardRef]]
    counts: list[int]
    steps: int

    @classmethod
    def make(cls, info: DatasetInfo, scheme_split: str, world: int, epoch: int, seed: int,
             batch_size: int) -> "EpochPlan":
        shards = [s for s in info.shards if s.counts.get(scheme_split, 0) > 0]
        rng = random.Random(seed * 100_003 + epoch)
        rng.shuffle(shards)
        per_rank: list[list[ShardRef]] = [[] for _ in range(world)]
        counts = [0] * world
        for ref in sorted(shards, key=lambda s: -s.counts[scheme_split]):  # stable sort keeps the shuffle for ties
            r = min(range(world), key=lambda k: (counts[k], k))
            per_rank[r].append(ref)
            counts[r] += ref.counts[scheme_split]
        for mine in per_rank:  # dealt largest first, a rank read its shards in nearly one order every epoch
            rng.shuffle(mine)
        steps = max(-(-c // batch_size) for c in counts) if shards else 0
        return cls(per_rank, counts, steps)


@dataclass
class Skip:
    kind: str  # "shard" | "sample"
    url: str
    reason: str
    unread: bool = False  # a shard storage did not hand over (another try may get it), not one found bad
    rebuilt: str | None = None  # how the manifest differs from the one the run opened, where it does (`_rebuilt`)


@dataclass
class SkipStats:
    expected: int = 0
    delivered: int = 0
    bad_shards: int = 0
    bad_samples: int = 0
    unread_shards: int = 0  # of bad_shards: storage did not hand them over
    reasons: list[str] = field(default_factory=list)  # the first MAX_REASONS, named in errors
    rebuilt: str | None = None  # the first bad shard's `Skip.rebuilt`: the shards were made again under the run
    MAX_REASONS: ClassVar[int] = 20

    @property
    def skipped_samples(self) -> int:
        return max(0, self.expected - self.delivered)

    @property
    def rate(self) -> float:
        return self.skipped_samples / self.expected if self.expected else 0.0

    @classmethod
    def merged(cls, parts: list[SkipStats]) -> SkipStats:
        """The counts of several ranks' stats summed, their first reasons kept."""
        total = cls()
        for part in parts:
            total.expected += part.expected
            total.delivered += part.delivered
            total.bad_shards += part.bad_shards
            total.bad_samples += part.bad_samples
            total.unread_shards += part.unread_shards
            total.rebuilt = total.rebuilt or part.rebuilt
            total.reasons.extend(part.reasons[: cls.MAX_REASONS - len(total.reasons)])
        return total

    def add(self, skip: Skip) -> None:
        if skip.kind == "shard":
            self.bad_shards += 1
            self.unread_shards += skip.unread
            self.rebuilt = self.rebuilt or skip.rebuilt
        else:
            self.bad_samples += 1
        if len(self.reasons) < self.MAX_REASONS:
            self.reasons.append(f"{skip.kind} {skip.url}: {skip.reason}")


def verify(ref: ShardRef, data: bytes) -> str | None:
    """Why `data` is not the shard the manifest describes, or None when it is."""
    if len(data) != ref.size:
        return f"size mismatch: manifest says {ref.size} bytes, read {len(data)}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.sha256:
        return f"sha256 mismatch: manifest says {ref.sha256}, read {digest}"
    return None


def _decode(raw: dict[str, Any], feat: FeatureConfig, visual: bool) -> dict[str, Any]:
    """One sample's arrays, checked against the manifest: its shapes, and its video where the shards hold video (a
    sample without it would train on black frames, as a clip of audio alone does)."""
    if ("video.npy" in raw) != visual:
        raise ValueError("no video.npy, where the manifest's shards hold video" if visual else
                         "a video.npy, where the manifest's shards hold audio alone")
    meta = json.loads(raw["json"])
    audio = np.load(io.BytesIO(raw["audio.npy"]), allow_pickle=False)
    video = np.load(io.BytesIO(raw["video.npy"]), allow_pickle=False) if visual else None
    want_a, want_v = (feat.audio_frames, feat.n_mels), (feat.video_frames, feat.face_size, feat.face_size, 3)
    if audio.shape != want_a or (video is not None and video.shape != want_v):
        raise ValueError(f"shapes audio {audio.shape} video {getattr(video, 'shape', None)}, manifest says {want_a} "
                         f"{want_v}")
    return {"meta": meta, "audio": audio, "video": video}


CACHE_BYTES = 256 * 2**20
"""The most bytes of decoded arrays a `ShardCache` keeps (per trainer process): the embedded default's whole corpus
is 26 MB; a larger corpus keeps the shards read first and reads the rest on every pass, as without a cache."""


class ShardCache:
    """The decoded samples of the shards a run found sound, for its later passes over them: each epoch read, hashed
    and decoded every shard twice (its training pass, then the embedding pass over all clips), most of the data time
    of a small corpus's epoch. A shard is kept only when it passed the size and sha256 check and every one of its
    clips decoded and is in the manifest, and while the arrays kept stay within `limit` bytes; any other shard is read
    and checked again on every pass, its problems counted there, as without a cache. One cache serves one run (one
    `DatasetInfo`: a kept sample holds the manifest's labels and splits for it) in one process; the samples it hands
    out are shared, so their readers copy them (`collate`) and never write to them."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit, self.held = limit, 0
        self._shards: dict[str, list[dict[str, Any]]] = {}

    def get(self, url: str) -> list[dict[str, Any]] | None:
        return self._shards.get(url)

    def room(self) -> int:
        """Bytes still free."""
        return self.limit - self.held

    def put(self, url: str, samples: list[dict[str, Any]]) -> None:
        size = sum(map(_nbytes, samples))
        if url not in self._shards and size <= self.room():
            self._shards[url] = samples
            self.held += size


def _nbytes(sample: dict[str, Any]) -> int:
    return sample["audio"].nbytes + (sample["video"].nbytes if sample["video"] is not None else 0)


class SampleStream(IterableDataset):
    """Decoded samples (or `Skip` events) from a list of shards; split over DataLoader workers. With a `cache` (worker
    processes get none: it would be copied into each of them every epoch and filled in vain), a shard it holds is
    not read again. `opened`: the shards' URL and the hash of the manifest the run opened, against which a shard
    that fails is told from one made again under the run (`_rebuilt`)."""

    def __init__(self, shards: list[ShardRef], s3: S3Config, feat: FeatureConfig, visual: bool, wanted: str | None,
                 shuffle_buffer: int, seed: int, opened: tuple[str, str], cache: ShardCache | None = None):
        self.shards, self.s3, self.feat, self.visual, self.wanted = shards, s3, feat, visual, wanted
        self.shuffle_buffer, self.seed, self.opened, self.cache = shuffle_buffer, seed, opened, cache

    def _rebuilt(self) -> str | None:
        """How the shards' manifest differs from the one the run opened (its hash now, or none there: a build under
        way removes it first); None where it is that one, or cannot be read now (storage: the skip says so). A build
        writes each shard in place of the last one's under its name, so a run that read them on found the new ones
        damaged (their hash is not the run's manifest's), and was told to make them again with --force."""
        url, digest = self.opened
        try:
            now = shardlib.load_manifest(url, self.s3)[2]
        except (shardlib.PreprocessError, FileNotFoundError):  # none there (or gone as it was read), or not whole
            return f"manifest {digest} when the run opened them, none whole now: a build is under way"
        except AvdisError:
            return None
        return None if now == digest else f"manifest {digest} when the run opened them, {now} now"

    def _shard(self, ref: ShardRef, events: list[Skip]) -> Iterator[dict[str, Any]]:
        """The shard's samples of the wanted split, in the shard's order, from the cache where it holds them."""
        kept = self.cache.get(ref.url) if self.cache is not None else None
        for sample in self._read(ref, events) if kept is None else kept:
            if self.wanted is None or sample["meta"]["scheme_split"] == self.wanted:
                yield {**sample, "shard": ref.url}

    def _read(self, ref: ShardRef, events: list[Skip]) -> Iterator[dict[str, Any]]:
        """Every sample of the shard that the manifest lists, read and checked; cached when the shard was sound."""
        url, sound = ref.url, True
        samples: list[dict[str, Any]] | None = [] if self.cache is not None else None  # None: not to be kept
        room = self.cache.room() if self.cache is not None else 0

        def skip(kind: str, reason: str, unread: bool = False) -> None:
            nonlocal sound
            sound = False
            events.append(Skip(kind, url, reason, unread, self._rebuilt() if kind == "shard" else None))

        try:
            data = storage.read_bytes(url, self.s3)
        except Exception as exc:  # noqa: BLE001 - counted and reported, see module docstring
            skip("shard", f"cannot open ({type(exc).__name__}: {exc})", unread=True)
            return
        problem = verify(ref, data)
        if problem:
            skip("shard", problem)
            return
        n = 0
        files = ({**f, "__url__": url} for f in tar_file_iterator(io.BytesIO(data)))
        try:
            for raw in group_by_keys(files):
                n += 1
                try:
                    sample = _decode(raw, self.feat, self.visual)
                except Exception as exc:  # noqa: BLE001
                    skip("sample", f"{raw.get('__key__')}: {type(exc).__name__}: {exc}")
                    continue
                m = sample["meta"]
                listed = ref.clips.get(m.get("clip_id"))
                if listed is None:  # the shard's hash matched: a manifest and shards that do not belong together
                    skip("sample", f"{raw.get('__key__')}: not in the manifest")
                    continue
                m.update(listed)  # m["split"]: the within-speaker split; m["scheme_split"]: the configured scheme's
                if samples is not None:  # given up once past the cache's room: a shard is kept whole or not at all
                    room -= _nbytes(sample)
                    if room >= 0:
                        samples.append(sample)
                    else:
                        samples = None
                yield sample
        except Exception as exc:  # noqa: BLE001 - a corrupt tar (written so by preprocess: its hash matched)
            skip("shard", f"unreadable after {counted(n, 'sample')} ({type(exc).__name__}: {exc})")
            return
        if n < ref.counts.get("all", 0):
            skip("shard", f"ended after {n} of the {ref.counts['all']} clips the manifest lists")
        if sound and samples is not None and self.cache is not None:
            self.cache.put(url, samples)

    def __iter__(self) -> Iterator[dict[str, Any] | Skip]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(self.seed * 7919 + wid)
        buffer: list[dict[str, Any]] = []
        events: list[Skip] = []
        for ref in self.shards[wid::nw]:
            for sample in self._shard(ref, events):
                yield from events
                events.clear()
                buffer.append(sample)
                if len(buffer) >= self.shuffle_buffer:
                    yield buffer.pop(rng.randrange(len(buffer)))
            yield from events
            events.clear()
        rng.shuffle(buffer)
        yield from buffer


def _adopt_environment(env: dict[str, str], worker_id: int) -> None:
    """A forkserver's workers start with the environment the server started with: take the trainer's as it is now
    (AWS variables set after the first epoch, as a notebook or the tests' S3 server does)."""
    os.environ.clear()
    os.environ.update(env)


def _worker_options(workers: int) -> dict[str, Any]:
    """DataLoader options for `workers` worker processes, forked from a forkserver (one per trainer process, started by
    the first loader in about 3 s: it imports this module; a loader then starts in 0.1-0.2 s as with fork, 0.8-1 s
    against 0.3 in a Ray worker, measured on 2 cores). Forked from the trainer, a
    worker forked while another thread held a lock (an import's, OpenSSL's) waited for it for ever, and the trainer
    with it; a 2-worker test hung 600 s in one run of the suite."""
    if not workers:
        return {}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__])  # __main__: the forkserver's own default
    return {"multiprocessing_context": context, "worker_init_fn": partial(_adopt_environment, dict(os.environ))}


def collate(samples: list[dict[str, Any]], rows: int, feat: FeatureConfig) -> dict[str, Any]:
    """Stack samples into a batch of `rows` rows; rows past len(samples) are padding (valid=False)."""
    b, n = rows, len(samples)
    audio = np.zeros((b, feat.audio_frames, feat.n_mels), np.float32)
    video = np.zeros((b, feat.video_frames, feat.face_size, feat.face_size, 3), np.uint8)
    alen = np.zeros(b, np.int64)
    vlen = np.zeros(b, np.int64)
    emo = np.zeros(b, np.int64)
    spk = np.zeros(b, np.int64)
    scheme = np.full(b, -1, np.int64)
    within = np.full(b, -1, np.int64)
    for i, s in enumerate(samples):
        m = s["meta"]
        audio[i] = s["audio"]
        if s["video"] is not None:  # else left black, video_len 0: shards of audio alone
            video[i] = s["video"]
        alen[i], vlen[i] = m["audio_len"], m["video_len"]
        emo[i], spk[i] = m["emotion_idx"], m["speaker_idx"]
        scheme[i], within[i] = SPLIT_CODES[m["scheme_split"]], SPLIT_CODES[m["split"]]
    valid = np.arange(b) < n
    return {
        "audio": torch.from_numpy(audio),
        "audio_mask": torch.from_numpy(np.arange(feat.audio_frames)[None] < alen[:, None]),
        "video": torch.from_numpy(video),
        "video_mask": torch.from_numpy(np.arange(feat.video_frames)[None] < vlen[:, None]),
        "emotion": torch.from_numpy(emo),
        "speaker": torch.from_numpy(spk),
        "scheme_split": torch.from_numpy(scheme),  # the configured scheme's split (data.split)
        "within_split": torch.from_numpy(within),  # the within-speaker split, whatever the scheme
        "valid": torch.from_numpy(valid),
        "clip_id": [s["meta"]["clip_id"] for s in samples],
        "shard": [s["shard"] for s in samples],
    }


def epoch_batches(
    info: DatasetInfo, data: DataConfig, s3: S3Config, scheme_split: str | None, *, rank: int, world: int,
    epoch: int, seed: int, batch_size: int, shuffle: bool = True, stats: SkipStats | None = None,
    pad: bool = True, cache: ShardCache | None = None,
) -> Iterator[dict[str, Any]]:
    """Exactly `plan.steps` batches of `scheme_split` clips for this rank (None: every clip, e.g. to embed all).

    Each batch has `batch_size` rows, or with `pad=False` only the rows of its clips (one padding row in a step
    without clips): an evaluation pass (no dropout) then spends no compute on padding, which a last partial batch
    and the padding-only steps of a rank dealt fewer clips (a small corpus under a large batch_size: most of its
    rows) filled. Training keeps one shape every step: dropout draws for each row, so the random stream a run
    follows stays the one it had.
    Fills `stats` as it goes. A caller that passes `stats` judges the rate itself (`check_skip_rate`: the training
    loop, on every rank's stats merged); without, it raises SkipRateExceeded at the end of the epoch when too many
    clips did not arrive. `cache`: the run's `ShardCache`, used where the clips are read in this process
    (`data.loader.workers` 0).
    """
    key = scheme_split or "all"
    plan = EpochPlan.make(info, key, world, epoch if shuffle else 0, seed, batch_size)
    mine = plan.per_rank[rank] if plan.steps else []
    judged_here = stats is None
    stats = stats if stats is not None else SkipStats()
    stats.expected += plan.counts[rank] if plan.steps else 0
    workers = min(data.loader.workers, len(mine))
    stream = SampleStream(mine, s3, info.features, "visual" in info.modalities, scheme_split,
                          data.loader.shuffle_buffer if shuffle else 1, seed * 1_000_003 + epoch * 101 + rank,
                          (info.url, info.manifest_hash), None if workers else cache)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, persistent_workers=False,
                        **_worker_options(workers))
    pending: list[dict[str, Any]] = []
    emitted = 0
    for item in loader:
        if isinstance(item, Skip):
            stats.add(item)
            continue
        pending.append(item)
        stats.delivered += 1
        if len(pending) == batch_size and emitted < plan.steps:
            yield collate(pending, batch_size, info.features)
            pending, emitted = [], emitted + 1
    while emitted < plan.steps:
        yield collate(pending, batch_size if pad else max(len(pending), 1), info.features)
        pending, emitted = [], emitted + 1
    if judged_here:
        check_skip_rate(stats, data, key)


def check_skip_rate(stats: SkipStats, data: DataConfig, split: str) -> None:
    """Raise SkipRateExceeded when more of a pass's clips did not arrive than `data.loader.max_skip_rate` allows, and
    ShardsRebuilt, whatever the rate, where a shard failed because the shards were made again under the run.
    A multi-worker epoch is judged on every rank's stats merged, on every rank alike: judged per rank, one bad shard
    failed a run with 3 workers that passed with 1 (its rank's share was 2.5x the epoch's), and only that rank
    raised while the others waited for it."""
    if stats.rebuilt:  # the shards are sound: the run's data is gone, and another build would not bring it back
        raise ShardsRebuilt(
            f"{data.shards}: its shards were made again while this run read them ({stats.rebuilt}): "
            f"{counted(stats.bad_shards, 'shard')} of split {split!r} {'is' if stats.bad_shards == 1 else 'are'} no "
            f"longer as the run found {'it' if stats.bad_shards == 1 else 'them'} (first: "
            f"{'; '.join(stats.reasons[:2])}). A run trains on the data it started with: run it again on the shards "
            "as they are now under another name (train.name, or a new sweep.name; its resume is refused on other "
            "data), or make the shards as they were; do not rebuild shards a run or sweep is reading")
    if stats.rate > data.loader.max_skip_rate:
        unread_only = stats.unread_shards == stats.bad_shards and not stats.bad_samples  # storage, not the data
        exc = SkipRateExceeded(
            f"{stats.skipped_samples}/{stats.expected} clips of split {split!r} did not arrive "
            f"({counted(stats.bad_shards, 'bad shard')}, {counted(stats.bad_samples, 'bad sample')}; "
            f"data.loader.max_skip_rate={data.loader.max_skip_rate}); first problems: {'; '.join(stats.reasons[:5])}; "
            f"{_skip_fix(data, unread_only)}"
        )
        exc.retryable = unread_only
        raise exc


def _skip_fix(data: DataConfig, unread_only: bool) -> str:
    """What to do about an epoch's missing clips. Shards found bad need `--force`: a plain preprocess rerun compares
    only the shards' sizes with the manifest, so it called a shard damaged in place (same size) up to date and kept
    it, and the next training run failed the same way."""
    if unread_only:
        return ("check that storage holds those shards and this node can read them (`avdis preprocess --out "
                f"{data.shards}` makes missing ones again)")
    return (f"make the shards again with `avdis preprocess --out {data.shards} --force` (without --force a rerun "
            "checks only their sizes and keeps a shard damaged in place), or raise data.loader.max_skip_rate to "
            "train without those clips")
