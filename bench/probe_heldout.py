"""Held-out leakage: which within_speaker leakage estimator reads what a probe finds on clips the model never saw.

    .venv/bin/python bench/probe_heldout.py      # ~10 min on 2 cores; writes bench/results/probe_heldout.json

Under `data.split.scheme=within_speaker` the leakage probe fits on the clips the model trained on: an encoder that
hid identity on its own training clips alone would read cleaner there than on new ones. Here each generated corpus (8
speakers, the default split of 24 clips each: 14 train, 4 val, 6 test) has 40 more clips per speaker that no model
trains on (the shards hold 64 clips a speaker, split 14 / 24 / 26; 20 of the val and 20 of the test clips of each
speaker, drawn under a fixed seed, are the pool, the rest the run's val and test clips). The REFERENCE is the
probe fitted on the pool and judging the test (or val) clips: identity in embeddings of clips the model never saw.
`reference_matched` fits on 14 pool clips per speaker (as many as the train clips), so it differs from `train`
only in whether the model trained on them.

Estimators of `leakage` (judging the test clips):
- `train`: fit on the train clips (the platform's probe);
- `val`: fit on the val clips;
- `crossfit`: the test clips dealt in folds (one clip of each speaker per fold where it has one), each fold judged by
  a probe fitted on the val clips and the other folds' test clips;
- `train_val`: fit on the train and val clips;
- `crossfit_all`: as `crossfit`, the train clips fitted too.
Estimators of `val_leakage` (judging the val clips; none reads a test clip):
- `train`: fit on the train clips;
- `crossfit`: the val clips in folds, each judged by a probe fitted on the other folds' val clips;
- `crossfit_all`: as `crossfit`, the train clips fitted too.
Every probe is the platform's MLP (`avdis.train.probe.mlp_predict`, its label-only fallback included), 3 probe seeds
averaged; leakage pooled over folds: accuracy over every judged clip against the label-only guess's, each fold's guess
fitted on its fit clips. Models: multitask, adversarial 1.5 and single_task, the tiny preset for 15 epochs
(bench/science.py's settings), train seeds 0 and 1, on `entangled` (entanglement 0.8) and `balanced` (0) corpora.
Reported per estimator: bias (mean estimate minus reference over the models), spread (standard deviation of that
difference) and RMSE.
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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine  # noqa: E402

from avdis import config as C  # noqa: E402
from avdis.config import ProbeConfig  # noqa: E402
from avdis.train import probe as P  # noqa: E402
from avdis.train.evaluate import TEST, TRAIN, VAL  # noqa: E402
from avdis.train.metrics import label_only_speaker_guess, normalised_leakage  # noqa: E402

SPEAKERS, RUN_VAL, RUN_TEST, POOL_HALF = 8, 4, 6, 20
CLIPS = 14 + RUN_VAL + RUN_TEST + 2 * POOL_HALF  # 64: 14 train, 24 val, 26 test
SPLIT = [f"data.split.val_fraction={(RUN_VAL + POOL_HALF) / CLIPS}",
         f"data.split.test_fraction={(RUN_TEST + POOL_HALF) / CLIPS}"]
CORPORA = {"entangled": 0.8, "balanced": 0.0}
METHODS: list[tuple[str, float | None]] = [("multitask", None), ("adversarial", 1.5), ("single_task", None)]
SEEDS = (0, 1)
PROBE_SEEDS = (0, 1, 2)
TRAIN_SETTINGS = ["model.preset=tiny", "model.emb_dim=64", "train.epochs=15", "train.batch_size=32",
                  "train.lr=0.003", "train.probe_every=0", "method.adversary.warmup_epochs=5",
                  "train.strategy=single", "train.zero_stage=0", "train.workers=1"]


def embeddings(cfg: C.Config, run_url: str) -> dict[str, np.ndarray]:
    """Every clip's z_emo from the run's last checkpoint, with its labels and splits."""
    from avdis.data.stream import epoch_batches, open_dataset
    from avdis.model.disentangle import REGISTRY
    from avdis.model.multitask import build_model
    from avdis.train import checkpoint as ck
    from avdis.train.engine import build_engine
    from avdis.train.step import embed

    info = open_dataset(cfg.data, cfg.s3)
    engine = build_engine(build_model(cfg.model, info.features, len(info.emotions), len(info.speakers)), cfg.train,
                          find_unused=not REGISTRY[cfg.method.name].identity_loss)
    with ck.RunStore(run_url, cfg.s3).latest() as found:
        engine.load(found)
    return embed(engine, epoch_batches(info, cfg.data, cfg.s3, None, rank=0, world=1, epoch=0, seed=cfg.train.seed,
                                       batch_size=cfg.train.batch_size, shuffle=False))


def roles(emb: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Masks: the run's train, val and test clips, and the pool (POOL_HALF val and POOL_HALF test clips of each
    speaker, drawn under a fixed seed, which the run's val and test never hold)."""
    split, speaker = emb["within_split"], emb["speaker"]
    rng = np.random.default_rng(0)
    pool = np.zeros(len(split), dtype=bool)
    for s in np.unique(speaker):
        for code in (VAL, TEST):
            idx = np.flatnonzero((speaker == s) & (split == code))
            pool[rng.choice(idx, POOL_HALF, replace=False)] = True
    return {"train": split == TRAIN, "val": (split == VAL) & ~pool, "test": (split == TEST) & ~pool, "pool": pool}


def fit_judge(emb: dict[str, np.ndarray], fit: np.ndarray, judged: np.ndarray, cfg: ProbeConfig, seed: int,
              n_spk: int, n_emo: int) -> tuple[np.ndarray, np.ndarray]:
    """(probe right, label-only guess right) for each judged clip, the probe fitted on the `fit` clips."""
    z, s, e = emb["z_emo"], emb["speaker"], emb["emotion"]
    x_fit, x_judged = P.probe_inputs(z[fit], e[fit], z[judged], e[judged], n_emo)
    y = torch.as_tensor(s[fit], dtype=torch.long)
    split = P.cross_fit(s[fit], cfg.folds, seed, e[fit])
    pred = P.mlp_predict(x_fit, y, x_judged, n_spk, cfg, split, (e[fit], e[judged]))
    return pred == s[judged], label_only_speaker_guess(e[fit], s[fit], e[judged]) == s[judged]


def folds_of(emb: dict[str, np.ndarray], clips: np.ndarray, seed: int) -> np.ndarray:
    """Each clip's fold (-1 outside `clips`): a speaker's clips dealt one per fold, in an order drawn under `seed`."""
    fold = np.full(len(clips), -1)
    rng = np.random.default_rng(seed)
    for s in np.unique(emb["speaker"][clips]):
        idx = np.flatnonzero(clips & (emb["speaker"] == s))
        fold[rng.permutation(idx)] = np.arange(len(idx))
    return fold


def leakage(emb: dict[str, np.ndarray], parts: list[tuple[np.ndarray, np.ndarray]], cfg: ProbeConfig, seed: int,
            n_spk: int, n_emo: int) -> float:
    """Leakage pooled over (fit, judged) parts: probe accuracy over every judged clip against the label guess's."""
    right, label = zip(*(fit_judge(emb, fit, judged, cfg, seed, n_spk, n_emo) for fit, judged in parts))
    return normalised_leakage(float(np.concatenate(right).mean()), float(np.concatenate(label).mean()))


def estimates(emb: dict[str, np.ndarray], cfg: ProbeConfig, seed: int, n_spk: int, n_emo: int) -> dict[str, float]:
    """Every estimator and reference of `leakage` and `val_leakage` under one probe seed."""
    m = roles(emb)
    matched = m["pool"] & (folds_of(emb, m["pool"], 100 + seed) < int(m["train"].sum()) // SPEAKERS)
    test_fold, val_fold = folds_of(emb, m["test"], seed), folds_of(emb, m["val"], seed)
    one = {name: [fit_judged] for name, fit_judged in {
        "test/reference": (m["pool"], m["test"]), "test/reference_matched": (matched, m["test"]),
        "test/train": (m["train"], m["test"]), "test/val": (m["val"], m["test"]),
        "val/reference": (m["pool"], m["val"]), "val/reference_matched": (matched, m["val"]),
        "val/train": (m["train"], m["val"])}.items()}
    one["test/crossfit"] = [(m["val"] | (m["test"] & (test_fold != f)), test_fold == f) for f in range(RUN_TEST)]
    one["val/crossfit"] = [(m["val"] & (val_fold != f), val_fold == f) for f in range(RUN_VAL)]
    one["test/train_val"] = [(m["train"] | m["val"], m["test"])]
    one["test/crossfit_all"] = [(m["train"] | m["val"] | (m["test"] & (test_fold != f)), test_fold == f)
                                for f in range(RUN_TEST)]
    one["val/crossfit_all"] = [(m["train"] | (m["val"] & (val_fold != f)), val_fold == f) for f in range(RUN_VAL)]
    out = {}
    for name, parts in one.items():
        t0 = time.perf_counter()
        out[name] = leakage(emb, parts, cfg, seed, n_spk, n_emo)
        out[f"{name}/seconds"] = time.perf_counter() - t0
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per judged split and estimator: bias, spread and RMSE against the reference, over every model and by corpus."""
    summary: dict[str, Any] = {}
    for corpus in [None, *CORPORA]:
        mine = [r for r in rows if corpus is None or r["corpus"] == corpus]
        for judged in ("test", "val"):
            ref = np.array([r[f"{judged}/reference"] for r in mine])
            for name in sorted({k.split("/")[1] for r in mine for k in r if k.startswith(judged + "/")
                                and not k.endswith("seconds")} - {"reference"}):
                diff = np.array([r[f"{judged}/{name}"] for r in mine]) - ref
                summary.setdefault(corpus or "all", {}).setdefault(judged, {})[name] = {
                    "bias": float(diff.mean()), "spread": float(diff.std(ddof=1)),
                    "rmse": float(np.sqrt((diff ** 2).mean())),
                    "seconds": float(np.median([r[f"{judged}/{name}/seconds"] for r in mine]))}
            summary[corpus or "all"][judged]["reference_mean"] = float(ref.mean())
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "probe_heldout.json")
    ap.add_argument("--note", default="", help="said in the machine record (what else ran on it)")
    args = ap.parse_args()
    from avdis.data import shards as shardlib
    from avdis.data.prepare import generate_if_missing
    from avdis.train import launch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="avdis-probe-heldout-") as work:
        for corpus, entanglement in CORPORA.items():
            src, shards = Path(work) / corpus, Path(work) / f"{corpus}_shards"
            corpus_settings = [f"data.src={src}", f"data.shards={shards}", f"data.synth.speakers={SPEAKERS}",
                               f"data.synth.clips_per_speaker={CLIPS}", f"data.synth.entanglement={entanglement}",
                               "data.synth.seed=0", *SPLIT]
            data = C.load(None, corpus_settings).data
            generate_if_missing(data)
            shardlib.build_shards(data, C.S3Config())
            for method, weight in METHODS:
                for seed in SEEDS:
                    name = f"{corpus}-{method}-{seed}"
                    over = [*TRAIN_SETTINGS, *corpus_settings, f"train.storage={work}/runs", f"train.name={name}",
                            f"train.seed={seed}", f"method.name={method}"]
                    over += [f"method.weight={weight}"] if weight is not None else []
                    cfg = C.load(None, over)
                    run = launch.train(cfg)
                    emb = embeddings(cfg, run["run"])
                    n_spk, n_emo = int(emb["speaker"].max()) + 1, int(emb["emotion"].max()) + 1
                    per_seed = [estimates(emb, cfg.probe, p, n_spk, n_emo) for p in PROBE_SEEDS]
                    row = {"corpus": corpus, "method": method, "weight": weight, "seed": seed,
                           "emotion_acc": run["final"]["emotion_acc"], "leakage_platform": run["final"]["leakage"],
                           **{k: float(np.mean([e[k] for e in per_seed])) for k in per_seed[0]}}
                    rows.append(row)
                    print(name, {k: round(v, 3) for k, v in row.items()
                                 if isinstance(v, float) and not k.endswith("seconds")}, flush=True)
    summary = summarise(rows)
    payload = {"settings": {"speakers": SPEAKERS, "clips_per_speaker": CLIPS, "split": SPLIT, "corpora": CORPORA,
                            "methods": METHODS, "seeds": list(SEEDS), "probe_seeds": list(PROBE_SEEDS),
                            "train": TRAIN_SETTINGS, "run_val": RUN_VAL, "run_test": RUN_TEST,
                            "pool_per_speaker": 2 * POOL_HALF},
               "summary": summary, "runs": rows}
    print(json.dumps(summary, indent=1))
    machine.write(args.out, payload, note=args.note)


if __name__ == "__main__":
    main()
