"""Metrics of a frozen model from its embeddings: emotion accuracy/UAR, speaker accuracy, leakage.

Metric names are the ones the sweep uses: `emotion_acc`, `emotion_uar` (test split of
the configured scheme), `speaker_acc` (identity head, within-speaker test clips),
`emotion_chance`, and from the probe on z_emo `leakage` (MLP, headline), `leakage_linear`,
`probe_acc`, `probe_chance`. `val_emotion_acc` and `val_leakage` are the same two objectives
on validation clips: what a sweep searches, stops and selects its front on
(`avdis.config.SELECTION`), so that the test numbers it reports were never used to choose.
For `nullspace` the emotion numbers come from the refit head and the probe sees the
projected z_emo.

The probe judges clips the model never trained on (`probe_clips`): under `speaker_disjoint`
the within-speaker test clips of the training speakers were training clips (an adversary
that removed identity from exactly those clips would look cleaner than it is on new ones),
so there the probe fits and judges the held-out speakers' clips only: the test fold's for
`leakage`, the validation fold's for `val_leakage`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avdis.config import Config
from avdis.data.stream import SPLIT_CODES
from avdis.model.disentangle import NullspaceFit, fit_nullspace
from avdis.train.metrics import accuracy, majority_rate, uar
from avdis.train.probe import leakage_probe

TRAIN, VAL, TEST = (SPLIT_CODES[s] for s in ("train", "val", "test"))


def posthoc(emb: dict[str, np.ndarray], cfg: Config, n_speakers: int, n_emotions: int) -> NullspaceFit | None:
    """The method's post-hoc step (INLP for nullspace, within emotions if conditional), fit on the train split."""
    if cfg.method.name != "nullspace":
        return None
    tr = emb["scheme_split"] == TRAIN  # the clips the model trained on, as the training of any other method
    return fit_nullspace(torch.as_tensor(emb["z_emo"][tr]), torch.as_tensor(emb["speaker"][tr]),
                         torch.as_tensor(emb["emotion"][tr]), n_speakers, n_emotions, int(cfg.method.weight),
                         cfg.method.conditional)


def probe_clips(emb: dict[str, np.ndarray], cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the clips the leakage probe fits on, judges for the report and judges for selection: within-speaker
    train, test and val clips. When the model trained on the other speakers' every clip (speaker_disjoint), only
    the held-out speakers': the probe fits on both held-out folds' train clips, and judges the test fold's test
    clips for the report and the validation fold's val clips for selection (a selection that judged the test
    fold's clips would have seen what the report measures)."""
    fit_on, test, val = (emb["within_split"] == code for code in (TRAIN, TEST, VAL))
    if cfg.data.split.scheme == "speaker_disjoint":
        scheme = emb["scheme_split"]
        return fit_on & (scheme != TRAIN), test & (scheme == TEST), val & (scheme == VAL)
    return fit_on, test, val


def evaluate(emb: dict[str, np.ndarray], cfg: Config, n_speakers: int, n_emotions: int,
             with_probe: bool) -> tuple[dict[str, Any], NullspaceFit | None]:
    fit = posthoc(emb, cfg, n_speakers, n_emotions)
    z_emo, emo_logits = emb["z_emo"], emb["emo_logits"]
    if fit is not None:
        z = torch.as_tensor(z_emo)
        with torch.no_grad():
            z_emo, emo_logits = fit.transform(z).numpy(), fit.emotion_logits(z).numpy()
    emo_pred, spk_pred = emo_logits.argmax(1), emb["id_logits"].argmax(1)
    test, val = emb["scheme_split"] == TEST, emb["scheme_split"] == VAL
    w_test = emb["within_split"] == TEST
    metrics: dict[str, Any] = {
        "emotion_acc": accuracy(emo_pred[test], emb["emotion"][test]),
        "emotion_uar": uar(emo_pred[test], emb["emotion"][test]),
        "val_emotion_acc": accuracy(emo_pred[val], emb["emotion"][val]),
        "emotion_chance": majority_rate(emb["emotion"][test]),
        "speaker_acc": accuracy(spk_pred[w_test], emb["speaker"][w_test]),
        "n_test": int(test.sum()),
    }
    if with_probe:
        fit_on, judge, judge_val = probe_clips(emb, cfg)
        result = leakage_probe(z_emo[fit_on], emb["speaker"][fit_on], emb["emotion"][fit_on],
                               z_emo[judge], emb["speaker"][judge], emb["emotion"][judge],
                               n_speakers, cfg.probe, cfg.train.seed,
                               val=(z_emo[judge_val], emb["speaker"][judge_val], emb["emotion"][judge_val]))
        metrics.update({"leakage": result.leakage, "leakage_linear": result.leakage_linear,
                        "val_leakage": float("nan") if result.val_leakage is None else result.val_leakage,
                        "probe_acc": result.probe_acc, "probe_acc_linear": result.probe_acc_linear,
                        "probe_chance": result.probe_chance, "speaker_chance": result.chance_uniform})
    return metrics, fit
