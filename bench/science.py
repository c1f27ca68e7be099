"""The science benchmark: every method at a few weights, 3 seeds, on an entangled corpus and its control.

    .venv/bin/python bench/science.py            # ~50 min on 2 cores; writes bench/results/science.json
    .venv/bin/python bench/science.py --table    # the README table from science.json

Corpora (generated, `avdis.data.synth`): `entangled` = 16 speakers x 40 clips, 4 emotions,
entanglement 0.8, identity cues on; `control` = the same with `--identity-cues off` (no
speaker cue in any clip: every method's leakage should be ~0, the probe's calibration; one
weight per method there).
Each (corpus, method, weight, seed) trains the tiny preset in one process for 15 epochs
on the within_speaker split (emotion accuracy/UAR on test clips, leakage from the probe),
and once more on speaker_disjoint fold `seed` (emotion accuracy on unseen speakers).
disentanglement = 1 - leakage / leakage(multitask, same corpus and seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

CORPORA = {
    "entangled": {"speakers": 16, "emotions": 4, "clips_per_speaker": 40, "entanglement": 0.8, "identity_cues": True},
    "control": {"speakers": 16, "emotions": 4, "clips_per_speaker": 40, "entanglement": 0.8, "identity_cues": False},
}
GRID: list[tuple[str, float | None]] = [
    ("single_task", None), ("multitask", None),
    ("adversarial", 0.5), ("adversarial", 1.0), ("adversarial", 2.0),
    ("confusion", 0.1), ("confusion", 0.3), ("confusion", 1.0),
    ("orthogonal", 1.0), ("orthogonal", 3.0), ("orthogonal", 10.0),
    ("nullspace", 4), ("nullspace", 12), ("nullspace", 24),
]
# On the control corpus there is nothing to remove: one weight per method checks the probe's calibration.
CONTROL_GRID = [("single_task", None), ("multitask", None), ("adversarial", 1.0), ("confusion", 0.3),
                ("orthogonal", 3.0), ("nullspace", 12)]
TRAIN = ["model.preset=tiny", "model.emb_dim=64", "train.epochs=15", "train.batch_size=32", "train.lr=0.003",
         "train.probe_every=0", "method.adversary.warmup_epochs=5", "train.strategy=single"]


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from avdis import config as C
    from avdis.train import launch

    overrides = [*TRAIN, f"data.src={job['src']}", f"data.shards={job['shards']}", f"train.storage={job['storage']}",
                 f"train.seed={job['seed']}", f"method.name={job['method']}", f"train.name={job['name']}"]
    if job["weight"] is not None:
        overrides.append(f"method.weight={job['weight']}")
    within = launch.train(C.load(None, overrides))["final"]
    disjoint = launch.train(C.load(None, [*overrides, f"train.name={job['name']}-disjoint",
                                          "data.split.scheme=speaker_disjoint", f"data.split.fold={job['seed']}"]))["final"]
    keys = ("emotion_acc", "emotion_uar", "leakage", "leakage_linear", "speaker_acc", "probe_acc", "probe_chance",
            "speaker_chance", "emotion_chance")
    return {"corpus": job["corpus"], "method": job["method"], "weight": job["weight"], "seed": job["seed"],
            **{k: within.get(k) for k in keys}, "emotion_acc_unseen_speakers": disjoint["emotion_acc"],
            "emotion_uar_unseen_speakers": disjoint["emotion_uar"]}


def prepare(work: Path) -> dict[str, dict[str, str]]:
    from avdis.config import DataConfig, S3Config, SynthConfig
    from avdis.data import shards, synth

    paths = {}
    for name, spec in CORPORA.items():
        src, out = work / name, work / f"{name}_shards"
        synth.generate(SynthConfig(**spec, seed=0), src)
        shards.preprocess(DataConfig(corpus="synthetic", src=str(src), shards=str(out)), S3Config())
        paths[name] = {"src": str(src), "shards": str(out)}
    return paths


def add_disentanglement(runs: list[dict[str, Any]]) -> None:
    base = {(r["corpus"], r["seed"]): r["leakage"] for r in runs if r["method"] == "multitask"}
    for r in runs:
        ref = base.get((r["corpus"], r["seed"]))
        r["disentanglement"] = (1 - r["leakage"] / ref) if ref and ref > 0 else None


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["corpus"], r["method"], r["weight"]), []).append(r)
    out = []
    for (corpus, method, weight), rs in groups.items():
        row: dict[str, Any] = {"corpus": corpus, "method": method, "weight": weight, "seeds": len(rs)}
        for k in ("emotion_acc", "emotion_uar", "leakage", "disentanglement", "emotion_acc_unseen_speakers"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            row[k] = float(np.mean(vals)) if vals else None
            row[f"{k}_std"] = float(np.std(vals)) if vals else None
        out.append(row)
    return out


def targets(summary: list[dict[str, Any]]) -> dict[str, Any]:
    ent = [s for s in summary if s["corpus"] == "entangled"]
    mt = next(s for s in ent if s["method"] == "multitask")
    st = next(s for s in ent if s["method"] == "single_task")
    good = {}
    for method in ("adversarial", "confusion", "orthogonal"):
        hits = [s for s in ent if s["method"] == method and (s["disentanglement"] or 0) >= 0.30
                and s["emotion_acc"] >= mt["emotion_acc"] - 0.02]
        good[method] = [s["weight"] for s in hits]
    beats_single = [
        {"method": s["method"], "weight": s["weight"]} for s in ent
        if s["method"] not in ("single_task", "multitask")
        and s["emotion_acc"] > st["emotion_acc"] and s["leakage"] <= st["leakage"]
    ]
    control = [s for s in summary if s["corpus"] == "control"]
    return {
        "multitask_leakage_at_least_0.5": {"value": mt["leakage"], "met": mt["leakage"] >= 0.5},
        "two_of_three_methods_30pct_within_2_points": {
            "weights_meeting_it": good, "met": sum(bool(v) for v in good.values()) >= 2},
        "control_leakage_at_most_0.05": {
            "worst": max(s["leakage"] for s in control), "met": all(s["leakage"] <= 0.05 for s in control)},
        "disentangled_multitask_beating_single_task": beats_single,
    }


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    lines = ["| corpus | method | weight | emotion acc | UAR | leakage | disentanglement | acc, unseen speakers |",
             "|---|---|---|---|---|---|---|---|"]

    def f(row, key, pct=False):
        v, s = row[key], row[f"{key}_std"]
        if v is None:
            return "-"
        return f"{100 * v:.0f}% ± {100 * s:.0f}" if pct else f"{v:.3f} ± {s:.3f}"

    for row in data["summary"]:
        weight = "-" if row["weight"] is None else f"{row['weight']:g}"
        lines.append(f"| {row['corpus']} | {row['method']} | {weight} | {f(row, 'emotion_acc')} | "
                     f"{f(row, 'emotion_uar')} | {f(row, 'leakage')} | {f(row, 'disentanglement', True)} | "
                     f"{f(row, 'emotion_acc_unseen_speakers')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", action="store_true", help="print the README table from the last results")
    args = parser.parse_args()
    result_path = machine.RESULTS / "science.json"
    if args.table:
        print(table(result_path))
        return
    work = Path(tempfile.mkdtemp(prefix="avdis-science-"))
    paths = prepare(work)
    jobs = [{"corpus": c, "method": m, "weight": w, "seed": s, **paths[c], "storage": str(work / "runs"),
             "name": f"{c}-{m}-{w}-{s}"} for c in CORPORA
            for m, w in (GRID if c == "entangled" else CONTROL_GRID) for s in args.seeds]
    os.environ["OMP_NUM_THREADS"] = "1"
    log = work / "runs.jsonl"  # kept if the summary step fails, so no run is lost
    with ProcessPoolExecutor(args.jobs) as pool, log.open("w") as out:
        runs = []
        for r in pool.map(_run, jobs):
            runs.append(r)
            out.write(json.dumps(r) + "\n")
            out.flush()
            print(f"{r['corpus']:>9} {r['method']:>11} {str(r['weight']):>5} seed {r['seed']}: acc {r['emotion_acc']:.3f} "
                  f"leakage {r['leakage']:.3f} unseen-speaker acc {r['emotion_acc_unseen_speakers']:.3f}", flush=True)
    add_disentanglement(runs)
    summary = summarise(runs)
    machine.write("science", {"settings": {"corpora": CORPORA, "grid": GRID, "control_grid": CONTROL_GRID, "train": TRAIN, "seeds": args.seeds},
                              "runs": runs, "summary": summary, "targets": targets(summary)})
    print(table(result_path))


if __name__ == "__main__":
    main()
