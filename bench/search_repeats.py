"""What the sweep's searcher pays for draws that repeat a configuration tried, and what it finds.

    .venv/bin/python bench/search_repeats.py                       # ~2 min on 2 cores; bench/results/search_repeats.json
    .venv/bin/python bench/search_repeats.py --seeds 3 --trials 60 --search tpe

A space of choices only: jobs/configs/smoke.yaml's methods with their weights as whole numbers (1 to 5), `train.lr` and
`train.seed` as lists, (1 + 5 + 5) x 3 x 5 = 165 configurations. multitask, the method without a weight, wins: it is
the best there is in emotion accuracy at moderate leakage, so TPE is drawn to it, and its 15 configurations are spent
early. No training: a configuration's validation numbers are made up from it (`made_up`), the same in every run.

The searcher is the sweep's (`avdis.tune.sweep.searcher`), driven one trial at a time as Tune drives it. Per seed:
the study's size after `--trials` trials (trials trained + draws told without training), seconds per suggestion
(mean and max, over the last 10 suggestions too), and how many of the first `--first` trials are on the front of
the whole space (every configuration's numbers, known here: how fast the search finds the good ones).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's avdis, whatever is installed
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from avdis import config as C  # noqa: E402
from avdis.results import pareto  # noqa: E402
from avdis.tune.space import config_key, configurations  # noqa: E402
from avdis.tune.sweep import searcher  # noqa: E402

SPACE = ["sweep.space.weights.adversarial={low: 1, high: 5, int: true}",
         "sweep.space.weights.orthogonal={low: 1, high: 5, int: true}",
         "sweep.space.params.train.lr=[0.001, 0.003, 0.01]",
         "sweep.space.params.train.seed=[0, 1, 2, 3, 4]"]


def made_up(params: dict) -> tuple[float, float]:
    """(val_emotion_acc, val_leakage) of a configuration: by method and weight, a best lr, and a seed's noise."""
    noise = int(hashlib.sha256(config_key(params).encode()).hexdigest()[:8], 16) / 2**32 - 0.5
    lr = abs(np.log10(params["train.lr"]) + 2.5)  # 0.003 is best
    method = params["method"]
    if method == "multitask":
        acc, leak = 0.80, 0.30
    else:  # a weight trades accuracy for leakage, never reaching multitask's accuracy
        w = params[f"weight_{method}"]
        scale = 0.06 if method == "adversarial" else 0.025
        acc, leak = 0.74 - scale * np.log1p(w), 0.45 - 0.1 * np.log1p(w) - (0.03 if method == "orthogonal" else 0)
    return acc - 0.05 * lr + 0.02 * noise, leak + 0.02 * lr + 0.02 * noise


def run(search_kind: str, seed: int, trials: int, first: int, methods: str) -> dict:
    cfg = C.load(None, ["train.epochs=3", f"sweep.search={search_kind}", f"sweep.seed={seed}",
                        f"sweep.num_samples={trials}", f"sweep.space.methods=[{methods}]", *SPACE])
    every = list(configurations(cfg.sweep.space))
    values = np.array([made_up(p) for p in every])
    front = {config_key(p) for p, on in zip(every, pareto.nondominated(values[:, 0], values[:, 1])) if on}
    search = searcher(cfg)
    seconds, keys = [], []
    for i in range(trials):
        start = time.perf_counter()
        params = search.suggest(f"t{i}")
        seconds.append(time.perf_counter() - start)
        if params == "FINISHED":
            break
        acc, leak = made_up(params)
        keys.append(config_key(params))
        search.on_trial_complete(f"t{i}", {"epoch": 3, "val_emotion_acc": acc, "val_leakage": leak})
    study = search._ot_study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in study) for s in optuna.trial.TrialState}
    return {"seed": seed, "trials": len(keys), "distinct": len(set(keys)), "study": len(study),
            "complete": states["COMPLETE"], "fail": states["FAIL"],
            "s_mean": statistics.mean(seconds), "s_max": max(seconds), "s_last10": statistics.mean(seconds[-10:]),
            "on_front_first": sum(k in front for k in keys[:first]), "front": len(front)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--search", default="tpe")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--first", type=int, default=30)
    ap.add_argument("--methods", default="multitask, adversarial, orthogonal",
                    help="their order: the order of the space's configurations")
    ap.add_argument("--out", type=Path, help="write the JSON here instead of bench/results/search_repeats.json")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = [run(args.search, seed, args.trials, args.first, args.methods) for seed in range(args.seeds)]
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    summary = {"search": args.search, "methods": args.methods, "trials": args.trials, "first": args.first, **{
        f"mean_{k}": round(statistics.mean(r[k] for r in rows), 4)
        for k in ("study", "complete", "fail", "s_mean", "s_max", "s_last10", "on_front_first")}}
    print(json.dumps(summary))
    machine.write(args.out or "search_repeats", {"summary": summary, "seeds": rows})


if __name__ == "__main__":
    main()
