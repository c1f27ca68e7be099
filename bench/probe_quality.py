"""Probe quality: how strong and how stable the leakage probe is on real embeddings, against the probe it replaced.

    .venv/bin/python bench/probe_quality.py      # ~30 s on 2 cores; writes bench/results/probe_quality.json

Leakage is the front's second axis. A probe weaker than it could be under-reports leakage (every disentanglement
method looks better than it is); one whose answer moves with its own seed puts noise into every point of the front.
This measures both for the probe the platform uses, beside the one it used before, on the embeddings of real
trained models.

For each corpus (the demo's, `jobs/configs/local.yaml`, and the tests' tiny one, `jobs/configs/smoke.yaml`) and
method (multitask, adversarial 0.5, single_task, nullspace 4), a model is trained in one process, its last
checkpoint embedded, and the probe's inputs built as `avdis.train.evaluate` builds them (nullspace: the projected
z_emo). Each probe runs with seeds 0-4:
- `crossfit` (avdis.train.probe, what the platform uses): `probe.folds` MLPs, one per fold of the train clips,
  trained at once; the epoch is the one with the best pooled out-of-fold accuracy (every train clip judged by the
  copy that did not fit it), and the test clips are predicted by the copies' mean softmax at that epoch;
- `holdout` (the platform's probe until 2026-11-30, kept here as the reference): one MLP picks its epoch count on a
  held-out fifth of the train clips, then refits on all of them.
Reported per corpus and variant: mean probe test accuracy (higher: a stronger adversary), the seed-to-seed standard
deviation of leakage (mean over models), the mean leakage, and seconds per probe (one thread).
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
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine  # noqa: E402

from avdis import config as C  # noqa: E402
from avdis.config import ProbeConfig  # noqa: E402
from avdis.train import probe as P  # noqa: E402
from avdis.train.metrics import accuracy, label_only_speaker_chance, normalised_leakage  # noqa: E402

CORPORA = {"local": (ROOT / "jobs" / "configs" / "local.yaml", 3), "tiny": (ROOT / "jobs" / "configs" / "smoke.yaml", 4)}
METHODS: list[tuple[str, float | None]] = [("multitask", None), ("adversarial", 0.5), ("single_task", None),
                                           ("nullspace", 4)]
SEEDS = range(5)


def _train_mlp(x: torch.Tensor, y: torch.Tensor, n_classes: int, cfg: ProbeConfig, epochs: int, seed: int,
               x_eval: torch.Tensor | None = None, y_eval: torch.Tensor | None = None) -> tuple[nn.Module, list[float]]:
    """Full-batch Adam; returns the model and, with eval data, accuracy after every epoch."""
    gen = torch.Generator().manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(x.shape[1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n_classes))
    for p in mlp.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / np.sqrt(p.shape[-1])) if p.dim() > 1 else 0 * p)
    opt = torch.optim.Adam(mlp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curve = []
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(mlp(x), y).backward()
        opt.step()
        if x_eval is not None:
            with torch.no_grad():
                curve.append(float((mlp(x_eval).argmax(1) == y_eval).float().mean()))
    return mlp, curve


def holdout_predict(x: torch.Tensor, y: torch.Tensor, x_te: torch.Tensor, n_classes: int, cfg: ProbeConfig,
                    seed: int) -> np.ndarray:
    """The reference: the platform's MLP probe until 2026-11-30 (epoch count on a held-out fifth, then a refit)."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, len(x) // 5)
    hold, fit = perm[:n_hold], perm[n_hold:]
    _, curve = _train_mlp(x[fit], y[fit], n_classes, cfg, cfg.epochs, seed, x[hold], y[hold])
    mlp, _ = _train_mlp(x, y, n_classes, cfg, int(np.argmax(curve)) + 1, seed)
    with torch.no_grad():
        return mlp(x_te).argmax(1).numpy()


def probe_inputs(cfg: C.Config, run_url: str) -> dict[str, Any]:
    """The last checkpoint's embeddings, as evaluate() hands them to the probe."""
    from avdis.model.disentangle import REGISTRY
    from avdis.model.multitask import build_model
    from avdis.data.stream import epoch_batches, open_dataset
    from avdis.train import checkpoint as ck
    from avdis.train.engine import build_engine
    from avdis.train.evaluate import posthoc, probe_clips
    from avdis.train.step import embed

    info = open_dataset(cfg.data, cfg.s3)
    n_emo, n_spk = len(info.emotions), len(info.speakers)
    engine = build_engine(build_model(cfg.model, info.features, n_emo, n_spk), cfg.train,
                          find_unused=not REGISTRY[cfg.method.name].identity_loss)
    with ck.RunStore(run_url, cfg.s3).latest() as found:
        engine.load(found)
    emb = embed(engine, epoch_batches(info, cfg.data, cfg.s3, None, rank=0, world=1, epoch=0, seed=cfg.train.seed,
                                      batch_size=cfg.train.batch_size, shuffle=False))
    z = emb["z_emo"]
    fit = posthoc(emb, cfg, n_spk, n_emo)
    if fit is not None:
        with torch.no_grad():
            z = fit.transform(torch.as_tensor(z)).numpy()
    (tr, te), _ = probe_clips(emb, cfg)
    return {"z_tr": z[tr], "s_tr": emb["speaker"][tr], "e_tr": emb["emotion"][tr], "z_te": z[te],
            "s_te": emb["speaker"][te], "e_te": emb["emotion"][te], "n_speakers": n_spk, "n_emotions": n_emo}


def run_probe(variant: str, inp: dict[str, Any], cfg: ProbeConfig, seed: int) -> tuple[float, float, float]:
    """(probe test accuracy, leakage, seconds) of one variant and seed."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x_tr, x_te = P.probe_inputs(inp["z_tr"], inp["e_tr"], inp["z_te"], inp["e_te"], inp["n_emotions"])
    y_tr = torch.as_tensor(inp["s_tr"], dtype=torch.long)
    if variant == "crossfit":  # today's probe, the label-only guess among its candidates
        pred = P.crossfit_mlp_predict(x_tr, y_tr, x_te, inp["n_speakers"], cfg, seed,
                                      emotion=(inp["e_tr"], inp["e_te"]))
    else:
        pred = holdout_predict(x_tr, y_tr, x_te, inp["n_speakers"], cfg, seed)
    acc = accuracy(pred, inp["s_te"])
    chance = label_only_speaker_chance(inp["e_tr"], inp["s_tr"], inp["e_te"], inp["s_te"])
    return acc, normalised_leakage(acc, chance), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "probe_quality.json")
    args = ap.parse_args()
    from avdis.train import launch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="avdis-probe-quality-") as work:
        for corpus, (config, epochs) in CORPORA.items():
            for method, weight in METHODS:
                name = f"{corpus}-{method}"
                over = [f"method.name={method}", "train.strategy=single", "train.zero_stage=0", "train.workers=1",
                        f"train.epochs={epochs}", "train.probe_every=0", f"train.storage={work}", f"train.name={name}"]
                cfg = C.load(config, over + ([f"method.weight={weight}"] if weight is not None else []))
                run = launch.train(cfg)
                inp = probe_inputs(cfg, run["run"])
                for variant in ("holdout", "crossfit"):
                    for seed in SEEDS:
                        acc, leak, secs = run_probe(variant, inp, cfg.probe, seed)
                        rows.append({"corpus": corpus, "method": method, "weight": weight, "variant": variant,
                                     "seed": seed, "probe_acc": acc, "leakage": leak, "seconds": secs,
                                     "train_clips": int(len(inp["z_tr"])), "test_clips": int(len(inp["z_te"])),
                                     "probe_epochs": cfg.probe.epochs})
                print(f"{name}: {len(inp['z_tr'])} train / {len(inp['z_te'])} test clips probed", flush=True)
    summary = {}
    for corpus in CORPORA:
        for variant in ("holdout", "crossfit"):
            mine = [r for r in rows if r["corpus"] == corpus and r["variant"] == variant]
            per_model = [[r["leakage"] for r in mine if r["method"] == m] for m, _ in METHODS]
            summary.setdefault(corpus, {})[variant] = {
                "probe_acc_mean": float(np.mean([r["probe_acc"] for r in mine])),
                "leakage_mean": float(np.mean([r["leakage"] for r in mine])),
                "leakage_seed_sd": float(np.mean([np.std(v, ddof=1) for v in per_model])),
                "seconds_per_probe": float(np.median([r["seconds"] for r in mine])),
                "train_clips": mine[0]["train_clips"], "test_clips": mine[0]["test_clips"],
            }
    payload = {"methods": METHODS, "seeds": list(SEEDS), "folds": ProbeConfig().folds,
               "summary": summary, "runs": rows}
    print(json.dumps(summary, indent=1))
    machine.write(args.out, payload)


if __name__ == "__main__":
    main()
