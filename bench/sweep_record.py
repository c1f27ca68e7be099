"""Record full learning curves over the demo sweep's space, for the replay benchmark (bench/sweep_replay.py).

    .venv/bin/python bench/sweep_record.py --jobs 2          # resumable; ~30 min on 2 cores

Every configuration is a point of a Latin hypercube over its method's knobs (the method's
weight and `train.lr`, log-scaled where the space says so), `--per-method` of them for each
method of `jobs/configs/local.yaml`'s space, each trained with `--seeds` seeds to the
config's full length with the leakage probe every epoch. Trials train in this process's
workers with `train.strategy=single` and one thread each: the curves are what is recorded;
the start-up cost of a real trial is measured apart (bench/sweep_replay.py adds it).
`--corpus balanced` records on the same corpus with emotion and speaker independent
(synth entanglement 0). One row per trial and epoch goes to bench/results/sweep_curves.csv
(sweep_curves_balanced.csv), appended as each trial ends; a rerun with the same `--per-method` skips the (config, seed) pairs the file holds, so the recording can be spread
over several runs.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avdis.errors import UsageError  # noqa: E402

CONFIG = ROOT / "jobs" / "configs" / "local.yaml"
RESULTS = ROOT / "bench" / "results"
CORPORA = {"entangled": {}, "balanced": {"entanglement": 0.0}}  # changes to local.yaml's data.synth
COLUMNS = ("config_id", "method", "weight", "lr", "seed", "epoch", "emotion_acc", "leakage", "emotion_uar",
           "loss", "train_s", "epoch_s")


def _scale(u: float, low: float, high: float, log: bool, integer: bool) -> float:
    x = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if log else low + u * (high - low)
    return float(round(x)) if integer else float(x)


def design(per_method: int, seed: int = 0) -> list[dict[str, Any]]:
    """`per_method` Latin-hypercube points for each method: (weight if it has one, train.lr)."""
    from avdis import config as C

    space = C.load(CONFIG, []).sweep.space
    lr = space.params["train.lr"]
    rng = np.random.default_rng(seed)
    points = []
    for method in space.methods:
        w = space.weights.get(method)
        dims = 2 if w is not None else 1
        u = np.stack([(rng.permutation(per_method) + rng.random(per_method)) / per_method for _ in range(dims)], 1)
        for i in range(per_method):
            weight = _scale(u[i, 0], w.low, w.high, w.log, w.int) if w is not None else None
            points.append({"config_id": f"{method}-{i:02d}", "method": method, "weight": weight,
                           "lr": _scale(u[i, -1], lr.low, lr.high, lr.log, False)})
    return points


class _Keep:
    """A reporter that keeps nothing: no checkpoints, nothing to resume from."""

    rank, world = 0, 1

    def __init__(self, run_url: str):
        self.run_url = run_url

    def restore(self):
        return nullcontext(None)

    def report(self, metrics: dict[str, Any], directory: Path | None) -> None:
        pass


def _train(job: dict[str, Any]) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    from avdis import config as C
    from avdis.train import loop

    overrides = [f"data.shards={job['shards']}", f"data.src={job['src']}", "train.strategy=single", "train.zero_stage=0",
                 "train.probe_every=1", f"train.seed={job['seed']}", f"train.lr={job['lr']}",
                 f"method.name={job['method']}"]
    if job["weight"] is not None:
        overrides.append(f"method.weight={job['weight']}")
    cfg = C.load(CONFIG, overrides)
    with tempfile.TemporaryDirectory() as run:
        history = loop.run(cfg, _Keep(run))
    return [{**{k: job[k] for k in ("config_id", "method", "weight", "lr", "seed")},
             **{k: h.get(k) for k in ("epoch", "emotion_acc", "leakage", "emotion_uar", "loss", "train_s", "epoch_s")}}
            for h in history]


def todo(points: list[dict[str, Any]], seeds: int, path: Path) -> list[tuple[dict[str, Any], int]]:
    """The (configuration, seed) pairs the file does not hold yet. A configuration it holds at other values than
    this design gives its id (recorded with another --per-method) is refused: a seed of it recorded now would pair
    two configurations under one id, which the replay averages as seeds of one."""
    rows = []
    if path.exists():
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
    done = {(r["config_id"], int(r["seed"])) for r in rows}
    held = {r["config_id"]: r for r in rows}
    missing = [(p, s) for s in range(seeds) for p in points if (p["config_id"], s) not in done]
    for p, _ in missing:
        r = held.get(p["config_id"])
        weight = None if r is None or r["weight"] == "" else float(r["weight"])
        if r is not None and (r["method"] != p["method"] or (weight is None) != (p["weight"] is None)
                              or not math.isclose(float(r["lr"]), p["lr"], rel_tol=1e-9)
                              or (weight is not None and not math.isclose(weight, p["weight"], rel_tol=1e-9))):
            raise UsageError(f"{path}: {p['config_id']} is recorded at weight {weight}, lr {float(r['lr']):g}, where "
                             f"this --per-method puts it at weight {p['weight']}, lr {p['lr']:g}: record with the "
                             "--per-method the file was recorded with, or into another --out")
    return missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-method", type=int, default=30, help="configurations per method (default 30)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per configuration (default 2)")
    ap.add_argument("--jobs", type=int, default=2, help="trials trained at once, one thread each (default 2)")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many trials (0: all); rerun to go on")
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="entangled",
                    help="entangled: local.yaml's corpus as it is; balanced: the same with entanglement 0")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "avdis-sweep-record",
                    help="where the corpus and its shards are kept between runs")
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/sweep_curves.csv (entangled) or sweep_curves_<corpus>.csv")
    args = ap.parse_args()
    args.out = args.out or RESULTS / ("sweep_curves.csv" if args.corpus == "entangled" else
                                      f"sweep_curves_{args.corpus}.csv")

    from avdis import config as C
    from avdis.data.prepare import synthetic_shards

    try:
        missing = todo(design(args.per_method), args.seeds, args.out)
    except UsageError as exc:
        ap.error(str(exc))
    data = C.load(CONFIG, []).data
    spec = data.synth.model_copy(update=CORPORA[args.corpus])
    src, shards = args.work / args.corpus / "corpus", args.work / args.corpus / "shards"
    synthetic_shards(spec, src, shards, data.shard_size)
    jobs = [{**p, "seed": s, "src": str(src), "shards": str(shards)} for p, s in missing]
    if args.limit:
        jobs = jobs[: args.limit]
    print(f"sweep_record: {len(missing)} trials to record, {len(jobs)} in this run -> {args.out}", flush=True)
    new = not args.out.exists()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", newline="") as fh, get_context("spawn").Pool(args.jobs, maxtasksperchild=20) as pool:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for i, rows in enumerate(pool.imap_unordered(_train, jobs), 1):
            writer.writerows(rows)
            fh.flush()
            last = rows[-1]
            print(f"[{i}/{len(jobs)}] {last['config_id']} seed {last['seed']}: acc {last['emotion_acc']:.3f} "
                  f"leak {last['leakage']:.3f} ({sum(r['epoch_s'] for r in rows):.0f} s)", flush=True)


if __name__ == "__main__":
    main()
