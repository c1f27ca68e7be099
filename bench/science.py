"""The science benchmark: every method across its weight range, 3 seeds, on five generated corpora.

    .venv/bin/python bench/science.py            # ~75 min on 2 cores; writes bench/results/science.json
    .venv/bin/python bench/science.py --table    # the README table from science.json

Corpora (generated, `avdis.data.synth`), each 16 speakers x 40 clips, 4 emotions:
- `entangled`: each speaker mostly shows one emotion (entanglement 0.8), identity in voice and face;
- `balanced`: entanglement 0, every speaker shows every emotion equally (as in RAVDESS and CREMA-D);
- `dynamics`: `cues=dynamics`, emotion only in how the voice moves (rate, tremor, melody), entanglement 0;
- `control`: `identity_cues=off`, no speaker cue in any clip: every method's leakage should be ~0;
- `voice_identity`: `identity_cues=voice`, every face alike: a visual-only model has no identity to leak.
Each (corpus, modality, method, weight, seed) trains the tiny preset in one process for 15 epochs on the
within_speaker split (emotion accuracy/UAR on test clips, leakage from the probe); the AV baselines on
`entangled` and `balanced` train once more on speaker_disjoint fold `seed` (emotion accuracy on unseen
speakers). Methods run with their defaults (`method.conditional` on), each at the middle and the top of its
default sweep range (`avdis.config.SweepConfig.space`), so "no collapse at any weight" is tested where a
sweep goes.
disentanglement = 1 - leakage / leakage(multitask, same corpus, modality and seed), where that baseline leaks
at least MIN_BASELINE_LEAKAGE (without one: the mean baseline of the corpus and modality; the sweep's own
definition, `avdis.results.add_disentanglement`, grouped by corpus, modality and seed); mean ± the 95%
Student-t interval over seeds (`avdis.results.seed_spread`). A method's cost against multitask
(`acc_vs_multitask`, `leakage_vs_multitask`) is paired: the mean of its per-seed differences from the
multitask run of the same corpus, input and seed, with that mean's interval. The methods share each seed's
corpus split, initial weights and data order with their baseline, so comparing two rows' own intervals
(unpaired) understates how sure a difference is where seeds move both alike, and overstates it where they do not.
Finished runs are kept in `<work>/runs.jsonl`: rerunning with the same `--work` skips them; `--resummarise`
recomputes the summary and targets from the runs science.json holds, without training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

from avdis import results  # noqa: E402

BASE = {"speakers": 16, "emotions": 4, "clips_per_speaker": 40}
CORPORA = {
    "entangled": {**BASE, "entanglement": 0.8},
    "balanced": {**BASE, "entanglement": 0.0},
    "dynamics": {**BASE, "entanglement": 0.0, "cues": "dynamics"},
    "control": {**BASE, "entanglement": 0.8, "identity_cues": "off"},
    "voice_identity": {**BASE, "entanglement": 0.8, "identity_cues": "voice"},
}
BASELINES: list[tuple[str, float | None]] = [("single_task", None), ("multitask", None)]
# The middle and the top of each method's default sweep range (below the middle, the methods
# stay within a point of multitask in every earlier run).
SWEPT: list[tuple[str, float | None]] = [
    ("adversarial", 1.5), ("adversarial", 3.0),
    ("confusion", 0.5), ("confusion", 3.0),
    ("orthogonal", 5.0), ("orthogonal", 30.0),
    ("nullspace", 8), ("nullspace", 16),
]
ONE_EACH: list[tuple[str, float | None]] = [
    *BASELINES, ("adversarial", 1.5), ("confusion", 0.5), ("orthogonal", 5.0), ("nullspace", 8)]
MODALITY_BASELINES = [(m, w, mod) for m, w in BASELINES for mod in ("audio", "visual")]
# corpus -> [(method, weight, modality)]
GRID: dict[str, list[tuple[str, float | None, str]]] = {
    "entangled": [(m, w, "av") for m, w in [*BASELINES, *SWEPT]] + MODALITY_BASELINES,
    "balanced": [(m, w, "av") for m, w in [*BASELINES, *SWEPT]] + MODALITY_BASELINES,
    "dynamics": [(m, w, "av") for m, w in ONE_EACH] + MODALITY_BASELINES,
    "control": [(m, w, "av") for m, w in ONE_EACH],
    "voice_identity": [(m, w, "visual") for m, w in ONE_EACH],
}
# AV baselines on these corpora also train on a speaker_disjoint fold (emotion on unseen speakers)
UNSEEN = ("entangled", "balanced")
TRAIN = ["model.preset=tiny", "model.emb_dim=64", "train.epochs=15", "train.batch_size=32", "train.lr=0.003",
         "train.probe_every=0", "method.adversary.warmup_epochs=5", "train.strategy=single"]
KEYS = ("emotion_acc", "emotion_uar", "leakage", "leakage_linear", "speaker_acc", "probe_acc", "probe_chance",
        "speaker_chance", "emotion_chance")
# Disentanglement is a ratio to the multitask baseline's leakage: below this the baseline leaks nothing
# to remove (the control corpus) and the ratio is noise.
MIN_BASELINE_LEAKAGE = 0.1


def job_key(job: dict[str, Any]) -> str:
    return f"{job['corpus']}-{job['modality']}-{job['method']}-{job['weight']}-{job['seed']}"


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from avdis import config as C
    from avdis.train import launch

    name = job_key(job)
    overrides = [*TRAIN, f"data.src={job['src']}", f"data.shards={job['shards']}", f"train.storage={job['storage']}",
                 f"train.seed={job['seed']}", f"method.name={job['method']}", f"train.name={name}",
                 f"model.modality={job['modality']}"]
    if job["weight"] is not None:
        overrides.append(f"method.weight={job['weight']}")
    within = launch.train(C.load(None, overrides))["final"]
    row = {k: job[k] for k in ("corpus", "modality", "method", "weight", "seed")}
    row.update({k: within.get(k) for k in KEYS})
    if job["corpus"] in UNSEEN and job["modality"] == "av" and job["method"] in ("single_task", "multitask"):
        disjoint = launch.train(C.load(None, [*overrides, f"train.name={name}-disjoint",
                                              "data.split.scheme=speaker_disjoint", f"data.split.fold={job['seed']}"]))
        row["emotion_acc_unseen_speakers"] = disjoint["final"]["emotion_acc"]
        row["emotion_uar_unseen_speakers"] = disjoint["final"]["emotion_uar"]
    return row


def prepare(work: Path) -> dict[str, dict[str, str]]:
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards

    paths = {}
    for name, spec in CORPORA.items():
        src, out = work / name, work / f"{name}_shards"
        synthetic_shards(SynthConfig(**spec, seed=0), src, out)
        paths[name] = {"src": str(src), "shards": str(out)}
    return paths


def add_disentanglement(runs: list[dict[str, Any]]) -> None:
    """Each run's disentanglement (None without a usable baseline), set in place."""
    if not runs:
        return
    frame = results.add_disentanglement(pd.DataFrame(runs), by=("corpus", "modality", "seed"),
                                        min_baseline=MIN_BASELINE_LEAKAGE)
    for r, d in zip(runs, frame["disentanglement"]):
        r["disentanglement"] = None if pd.isna(d) else float(d)


PAIRED = {"acc_vs_multitask": "emotion_acc", "leakage_vs_multitask": "leakage"}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["corpus"], r["modality"], r["method"], r["weight"]), []).append(r)
    baseline = {(r["corpus"], r["modality"], r["seed"]): r for r in runs if r["method"] == "multitask"}
    out = []
    for (corpus, modality, method, weight), rs in groups.items():
        row: dict[str, Any] = {"corpus": corpus, "modality": modality, "method": method, "weight": weight,
                               "seeds": len(rs)}
        for k in ("emotion_acc", "emotion_uar", "leakage", "disentanglement", "emotion_acc_unseen_speakers"):
            s = results.seed_spread(pd.Series([r.get(k) for r in rs], dtype=float))
            row[k], row[f"{k}_std"], row[f"{k}_ci95"] = s["mean"], s["std"], s["ci95"]
        if method != "multitask":
            pairs = [(r, baseline.get((corpus, modality, r["seed"]))) for r in rs]
            for name, k in PAIRED.items():
                s = results.seed_spread(pd.Series([r[k] - b[k] for r, b in pairs if b is not None], dtype=float))
                row[name], row[f"{name}_std"], row[f"{name}_ci95"] = s["mean"], s["std"], s["ci95"]
        out.append(row)
    order = {c: i for i, c in enumerate(CORPORA)}
    return sorted(out, key=lambda s: (order[s["corpus"]], s["modality"] != "av", s["modality"],
                                      s["method"] not in ("single_task", "multitask"), s["method"], s["weight"] or 0))


def _find(summary: list[dict[str, Any]], corpus: str, method: str, modality: str = "av") -> dict[str, Any] | None:
    return next((s for s in summary if (s["corpus"], s["method"], s["modality"]) == (corpus, method, modality)), None)


def targets(summary: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    methods = ("adversarial", "confusion", "orthogonal", "nullspace")
    tie = 1e-9  # seed means of clip counts: a method exactly 10 (or 2) points off is not "over" it by float rounding
    for corpus in ("entangled", "balanced"):
        mt, st = _find(summary, corpus, "multitask"), _find(summary, corpus, "single_task")
        if mt is None or st is None:
            continue
        swept = [s for s in summary if s["corpus"] == corpus and s["modality"] == "av" and s["method"] in methods]
        good = {m: [s["weight"] for s in swept if s["method"] == m and (s["disentanglement"] or 0) >= 0.30
                    and s["emotion_acc"] >= mt["emotion_acc"] - 0.02 - tie] for m in methods}
        collapsed = [{"method": s["method"], "weight": s["weight"], "emotion_acc": s["emotion_acc"]}
                     for s in swept if s["emotion_acc"] < mt["emotion_acc"] - 0.10 - tie]
        out[corpus] = {
            "multitask": {"emotion_acc": mt["emotion_acc"], "leakage": mt["leakage"]},
            "two_methods_30pct_within_2_points": {"weights_meeting_it": good,
                                                  "met": sum(bool(v) for v in good.values()) >= 2},
            "no_collapse_over_10_points": {"collapsed": collapsed, "met": not collapsed},
            "beating_single_task": [{"method": s["method"], "weight": s["weight"]} for s in swept
                                    if s["emotion_acc"] > st["emotion_acc"] and s["leakage"] <= st["leakage"]],
        }
    control = [s for s in summary if s["corpus"] == "control"]
    voice = [s for s in summary if s["corpus"] == "voice_identity"]
    if control:
        out["control_leakage_at_most_0.05"] = {"worst": max(s["leakage"] for s in control),
                                               "met": all(s["leakage"] <= 0.05 for s in control)}
    if voice:
        out["visual_only_on_voice_identity_leakage_at_most_0.05"] = {
            "worst": max(s["leakage"] for s in voice), "met": all(s["leakage"] <= 0.05 for s in voice)}
    audio = _find(summary, "dynamics", "multitask", "audio")
    if audio:
        out["dynamics_audio_only_emotion_acc_at_least_0.9"] = {"value": audio["emotion_acc"],
                                                               "met": audio["emotion_acc"] >= 0.9}
    return out


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    lines = ["| corpus | input | method | weight | emotion acc | UAR | leakage | disentanglement | acc, unseen speakers "
             "| acc − multitask (paired) | leakage − multitask (paired) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(row: dict[str, Any], key: str, pct: bool = False) -> str:
        v, ci = row.get(key), row.get(f"{key}_ci95")
        if v is None:
            return "-"
        ci = ci or 0.0
        return f"{100 * v:.0f}% ± {100 * ci:.0f}" if pct else f"{v:.3f} ± {ci:.3f}"

    for row in data["summary"]:
        weight = "-" if row["weight"] is None else f"{row['weight']:g}"
        lines.append(f"| {row['corpus']} | {row['modality']} | {row['method']} | {weight} | {f(row, 'emotion_acc')} | "
                     f"{f(row, 'emotion_uar')} | {f(row, 'leakage')} | {f(row, 'disentanglement', True)} | "
                     f"{f(row, 'emotion_acc_unseen_speakers')} | {f(row, 'acc_vs_multitask')} | "
                     f"{f(row, 'leakage_vs_multitask')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--work", default="/tmp/avdis-science",
                        help="corpora, runs and runs.jsonl; a rerun with the same folder skips finished runs")
    parser.add_argument("--table", action="store_true", help="print the README table from the last results")
    parser.add_argument("--resummarise", action="store_true",
                        help="recompute science.json's summary and targets from its runs (no training); its machine "
                             "and commit stay the runs', the commit that summarised is added")
    args = parser.parse_args()
    result_path = machine.RESULTS / "science.json"
    if args.table:
        print(table(result_path))
        return
    if args.resummarise:
        data = json.loads(result_path.read_text())
        add_disentanglement(data["runs"])
        summary = summarise(data["runs"])
        now = machine.describe()
        data.update(summary=summary, targets=targets(summary),
                    summarised={"date": now["date"], "commit": now["commit"]})
        result_path.write_text(json.dumps(data, indent=1) + "\n")
        print(table(result_path))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare(work)
    log = work / "runs.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {job_key(r) for r in runs}
    jobs = [{"corpus": c, "method": m, "weight": w, "modality": mod, "seed": s, **paths[c],
             "storage": str(work / "runs")} for c in args.corpora for m, w, mod in GRID[c] for s in args.seeds]
    todo = [j for j in jobs if job_key(j) not in done]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done in {log}", flush=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    # spawned, not forked: the corpora were just made in this process (encoder threads), and a child forked from a
    # process with threads can hang for good on a lock one of them held (a fresh --work did, importing torch)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool, log.open("a") as out:
        for future in as_completed([pool.submit(_run, j) for j in todo]):
            r = future.result()
            runs.append(r)
            out.write(json.dumps(r) + "\n")
            out.flush()
            print(f"{job_key(r)}: acc {r['emotion_acc']:.3f} leakage {r['leakage']:.3f}", flush=True)
    wanted = {job_key(j) for j in jobs}
    runs = [r for r in runs if job_key(r) in wanted]
    add_disentanglement(runs)
    summary = summarise(runs)
    machine.write("science", {"settings": {"corpora": CORPORA, "grid": GRID, "train": TRAIN, "seeds": args.seeds},
                              "runs": runs, "summary": summary, "targets": targets(summary)})
    print(table(result_path))


if __name__ == "__main__":
    main()
