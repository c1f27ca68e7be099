"""Sweep efficiency: hypervolume against cumulative trial-epochs for four search setups, 3 seeds each.

    .venv/bin/python bench/sweep_efficiency.py      # ~22 min on 2 cores

Setups: random search without early stopping; Optuna TPE alone; TPE + MO-ASHA; NSGA-II +
MO-ASHA. Every sweep uses the same generated corpus, the tiny preset and one-process
trials (`train.strategy=single`: the search and the scheduler are what is measured here),
`--samples` trials of up to `--epochs` epochs, 2 trials at a time. Then the platform's
per-trial overhead (wall time minus training time) for short distributed trials: a
smoke sweep of 1-worker DeepSpeed trials. Targets (issue): TPE + scheduler reaches 95%
of the best hypervolume found by any run with <= 1/3 of the trial-epochs random search
needs and <= 1/2 of TPE alone; overhead < 5% of sweep wall time.
Writes bench/results/sweep_efficiency.json and sweep_efficiency.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402

SETUPS = {
    "random": ["sweep.search=random", "sweep.scheduler.type=none"],
    "tpe": ["sweep.search=tpe", "sweep.scheduler.type=none"],
    "tpe+mo_asha": ["sweep.search=tpe", "sweep.scheduler.type=mo_asha"],
    "nsga2+mo_asha": ["sweep.search=nsga2", "sweep.scheduler.type=mo_asha"],
}


def curve(sweep_url: str) -> dict[str, Any]:
    """Hypervolume after each completed trial against the trial-epochs spent so far."""
    from avdis import results

    df = results.read_trials(sweep_url)
    df = df[df["order"].notna()].sort_values("order")
    summary = results.summarize(df, "bench")
    epochs = np.cumsum(df["epochs"].to_numpy())
    hv = [h["hypervolume"] for h in summary["hypervolume_history"]]
    return {"trial_epochs": epochs.tolist(), "hypervolume": hv, "final": hv[-1] if hv else 0.0,
            "wall_s": float(df["wall_s"].sum()), "train_s": float(df["train_s"].sum()),
            "work_s": float(df["work_s"].sum())}


def epochs_to_reach(c: dict[str, Any], level: float) -> float:
    for e, h in zip(c["trial_epochs"], c["hypervolume"]):
        if h >= level:
            return float(e)
    return float("inf")


def overhead(work: Path, shards: str) -> dict[str, float]:
    """Wall time of a sweep of short distributed trials against the time spent training inside them.

    Two readings: against training steps only, and against the trials' whole epochs
    (steps + embedding pass + evaluation + probe, work a trial does on any platform).
    """
    from avdis import config as C
    from avdis.tune import sweep

    cfg = C.load(Path(__file__).resolve().parents[1] / "jobs" / "configs" / "smoke.yaml", [
        f"data.shards={shards}", f"sweep.storage={work / 'overhead'}", "sweep.name=overhead", "train.epochs=1",
        "sweep.num_samples=4", "sweep.scheduler.type=none", "probe.epochs=50"])
    t0 = time.perf_counter()
    sweep.run(cfg)
    wall = time.perf_counter() - t0
    c = curve(str(work / "overhead" / "overhead"))
    slots = cfg.sweep.max_concurrent * wall  # trial-seconds the sweep had room for
    return {"sweep_wall_s": wall, "trials": 4, "concurrent": cfg.sweep.max_concurrent,
            "trial_wall_s_sum": c["wall_s"], "train_s_sum": c["train_s"], "work_s_sum": c["work_s"],
            "overhead_share_of_sweep_wall": 1 - c["train_s"] / slots,
            "overhead_share_of_sweep_wall_vs_whole_epochs": 1 - c["work_s"] / slots,
            "per_trial_overhead_s": (c["wall_s"] - c["train_s"]) / 4,
            "per_trial_overhead_s_vs_whole_epochs": (c["wall_s"] - c["work_s"]) / 4}


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=150)
    for i, (setup, runs) in enumerate(curves.items()):
        for j, c in enumerate(runs):
            ax.step(c["trial_epochs"], c["hypervolume"], where="post", color=f"C{i}", alpha=0.8,
                    label=setup if j == 0 else None)
    ax.set_xlabel("cumulative trial-epochs")
    ax.set_ylabel("hypervolume (emotion_acc max, leakage min)")
    ax.set_title("Sweep efficiency, 3 seeds per setup")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--resummarise", action="store_true", help="recompute the summary of the last results")
    args = parser.parse_args()
    if args.resummarise:
        resummarise()
        return
    import ray

    from avdis import config as C
    from avdis.config import SynthConfig
    from avdis.data.prepare import synthetic_shards
    from avdis.tune import sweep

    work = Path(tempfile.mkdtemp(prefix="avdis-bench-sweep-"))
    synthetic_shards(SynthConfig(speakers=10, clips_per_speaker=24, entanglement=0.8, seed=4), work / "corpus",
                     work / "shards", shard_size=32)
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    base = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "local.yaml"
    curves: dict[str, list[dict]] = {}
    for setup, extra in SETUPS.items():
        for seed in args.seeds:
            name = f"{setup.replace('+', '_')}-s{seed}"
            cfg = C.load(base, [f"data.shards={work / 'shards'}", f"sweep.storage={work / 'sweeps'}",
                                f"sweep.name={name}", f"sweep.seed={seed}", f"sweep.num_samples={args.samples}",
                                f"train.epochs={args.epochs}", "train.strategy=single", "train.zero_stage=0",
                                "probe.epochs=100", *extra])
            sweep.run(cfg)
            curves.setdefault(setup, []).append(curve(str(work / "sweeps" / name)))
            print(setup, seed, curves[setup][-1]["final"], curves[setup][-1]["trial_epochs"][-1], flush=True)
    over = overhead(work, str(work / "shards"))
    ray.shutdown()
    plot(curves, machine.RESULTS / "sweep_efficiency.png")
    settings = {"samples": args.samples, "epochs": args.epochs, "seeds": args.seeds, "setups": SETUPS}
    summary = summarise(curves)
    machine.write("sweep_efficiency", {"settings": settings, **summary, "curves": curves, "overhead": over,
                                       "targets": targets(summary, over)})


def summarise(curves: dict[str, list[dict]]) -> dict[str, Any]:
    """Derived figures from the curves (None where a run never got there: strict JSON)."""
    best = max(c["final"] for runs in curves.values() for c in runs)
    need = {s: [epochs_to_reach(c, 0.95 * best) for c in runs] for s, runs in curves.items()}
    mean_need = {s: float(np.mean(v)) if np.isfinite(v).all() else None for s, v in need.items()}
    ratio = {f"vs_{ref}": mean_need["tpe+mo_asha"] / mean_need[ref] if mean_need["tpe+mo_asha"] and mean_need[ref]
             else None for ref in ("random", "tpe")}
    budgets = sorted({int(c["trial_epochs"][-1]) for runs in curves.values() for c in runs})
    # Mean hypervolume each setup had reached within a budget of trial-epochs (the fairer view when
    # seeds differ more than setups do).
    at_budget = {s: {str(b): float(np.mean([hv_within(c, b) for c in runs])) for b in budgets} for s, runs in curves.items()}
    return {"best_hypervolume": best,
            "trial_epochs_to_95pct_of_best": {s: [v if np.isfinite(v) else None for v in vs] for s, vs in need.items()},
            "mean_trial_epochs_to_95pct": mean_need, "tpe_mo_asha_ratio": ratio,
            "mean_hypervolume_within_trial_epochs": at_budget,
            "mean_final_hypervolume": {s: float(np.mean([c["final"] for c in runs])) for s, runs in curves.items()},
            "mean_trial_epochs": {s: float(np.mean([c["trial_epochs"][-1] for c in runs])) for s, runs in curves.items()}}


def hv_within(c: dict[str, Any], budget: float) -> float:
    reached = [h for e, h in zip(c["trial_epochs"], c["hypervolume"]) if e <= budget]
    return reached[-1] if reached else 0.0


def targets(summary: dict[str, Any], over: dict[str, float]) -> dict[str, bool]:
    ratio = summary["tpe_mo_asha_ratio"]
    return {"vs_random_at_most_1/3": ratio["vs_random"] is not None and ratio["vs_random"] <= 1 / 3,
            "vs_tpe_at_most_1/2": ratio["vs_tpe"] is not None and ratio["vs_tpe"] <= 1 / 2,
            "overhead_below_5pct": over["overhead_share_of_sweep_wall"] < 0.05}


def resummarise() -> None:
    """Recompute the derived figures of the last results from their curves (no training)."""
    path = machine.RESULTS / "sweep_efficiency.json"
    data = json.loads(path.read_text())
    summary = summarise(data["curves"])
    machine.write("sweep_efficiency", {**data, **summary, "targets": targets(summary, data["overhead"])})

if __name__ == "__main__":
    main()
