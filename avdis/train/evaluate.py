"""Metrics of a frozen model from its embeddings: emotion accuracy/UAR, speaker accuracy, leakage.

Metric names are the ones the sweep uses: `emotion_acc`, `emotion_uar` (test split of
the configured scheme), `speaker_acc` (identity head, within-speaker test clips; under `speaker_disjoint` the training
folds' speakers', clips it trained on: the held-out speakers are no class it knows),
`emotion_chance` and `emotion_uar_chance` (what naming every clip the majority emotion scores), and from the probe
on z_emo and the emotion label `leakage` (MLP, headline), `leakage_linear`, `probe_acc`, `probe_chance`.
`val_emotion_acc`, `val_emotion_uar` and `val_leakage` are the same on validation clips: what a sweep searches, stops
and selects its front on (`avdis.config.selection`, of its `sweep.emotion_metric`), so that the test numbers it
reports were never used to choose.
For `nullspace` the emotion numbers come from the refit head and the probe sees the
projected z_emo.

The probe judges clips the model never trained on (`probe_clips`): under `speaker_disjoint`
the within-speaker test clips of the training speakers were training clips (an adversary
that removed identity from exactly those clips would look cleaner than it is on new ones),
so there a probe fits and judges one held-out fold's speakers only: the test fold's for
`leakage`, the validation fold's for `val_leakage`, each fold on its own, judging every clip of
the fold it does not fit on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from avdis.config import MIN_FOLDS, Config
from avdis.data.splits import held_out_fold, split_of
from avdis.data.stream import SPLIT_CODES, DatasetInfo
from avdis.errors import UsageError, counted
from avdis.model.disentangle import NullspaceFit, fit_nullspace
from avdis.train.metrics import (accuracy, label_only_speaker_chance, label_only_speaker_guess, majority_rate, uar,
                                 uar_chance)
from avdis.train.probe import Clips, ProbeResult, leakage_probe

TRAIN, VAL, TEST = (SPLIT_CODES[s] for s in ("train", "val", "test"))


def posthoc(emb: dict[str, np.ndarray], cfg: Config, n_speakers: int, n_emotions: int,
            said: int | None = None) -> NullspaceFit | None:
    """The method's post-hoc step (INLP for nullspace, within emotions if conditional), fit on the train split; says
    so when INLP found fewer speaker directions than method.weight asks (the numbers are of the ones it removed),
    unless `said` (the directions of the run's previous fit: a run fits every epoch) is that number already."""
    if cfg.method.name != "nullspace":
        return None
    tr = emb["scheme_split"] == TRAIN  # the clips the model trained on, as the training of any other method
    fit = fit_nullspace(torch.as_tensor(emb["z_emo"][tr]), torch.as_tensor(emb["speaker"][tr]),
                        torch.as_tensor(emb["emotion"][tr]), n_speakers, n_emotions, int(cfg.method.weight),
                        cfg.method.conditional)
    if fit.directions < int(cfg.method.weight) and fit.directions != said:
        within = " minus their emotion's mean" if cfg.method.conditional else ""
        print(f"avdis: warning: nullspace removed {fit.directions} of the method.weight={int(cfg.method.weight)} "
              f"speaker directions: the {int(tr.sum())} train clips' z_emo{within} have no spread, or none that "
              "tells speakers apart, beyond them; a further direction would be arbitrary and erase what it holds. "
              "The numbers are those of the directions removed", flush=True)
    return fit


Masks = tuple[np.ndarray, np.ndarray]  # (the clips a probe fits on, the clips it judges)


def probe_clips(emb: dict[str, np.ndarray], cfg: Config) -> tuple[Masks, Masks]:
    """The leakage probes' clips: (fit, judged) for the report's `leakage` and for the selection's `val_leakage`:
    within-speaker train clips, and test or val clips. When the model trained on the other speakers' every clip
    (speaker_disjoint), each held-out fold on its own: a probe fits on the test fold's train clips and judges the
    rest of that fold for the report, another fits on the validation fold's train clips and judges the rest of it for
    selection (a selection that judged the test fold's clips would have seen what the report measures). One probe
    over both folds named speakers of either, and its label-only chance guessed, for each emotion, a speaker of one
    fold or the other (a tie by index): an embedding without identity read about +0.1 leakage on one fold and -0.1
    on the other. A held-out fold's clips are all new to the model (the emotion metrics read them all), so its probe
    judges every one it does not fit on, its within-speaker validation clips beside its test clips: judging one of
    the two alone, a fold of few speakers gave leakage on a handful of clips. The folds stay apart: the report's probe
    judges no clip of the validation fold, selection's none of the test fold."""
    fit_on, test, val = (emb["within_split"] == code for code in (TRAIN, TEST, VAL))
    if cfg.data.split.scheme == "speaker_disjoint":
        scheme, held = emb["scheme_split"], test | val
        return (fit_on & (scheme == TEST), held & (scheme == TEST)), (fit_on & (scheme == VAL), held & (scheme == VAL))
    return (fit_on, test), (fit_on, val)


def labelled(info: DatasetInfo) -> dict[str, np.ndarray]:
    """The columns of `probe_clips` from the shards' labels alone: what a probe will fit on and judge, known before
    any training."""
    speaker, emotion, scheme, within = (np.array(column) for column in zip(*info.labels))
    return {"speaker": speaker, "emotion": emotion, "scheme_split": np.array([SPLIT_CODES[s] for s in scheme]),
            "within_split": np.array([SPLIT_CODES[s] for s in within])}


def check_leakage_defined(info: DatasetInfo, cfg: Config, splits: tuple[str, ...] = ("test",)) -> None:
    """Refuse, before any training, data on which no probe can measure leakage for `splits` ("test": `leakage`,
    "val": `val_leakage`): no test clips to judge, a speaker_disjoint fold of one speaker, or judged clips whose
    emotion label alone names their speaker (probe chance 1). Known from the labels; found at the first probe, it cost
    an epoch at least (with `train.probe_every=0` every epoch, and a rerun resumed into the same failure)."""
    emb = labelled(info)
    speaker, emotion = emb["speaker"], emb["emotion"]
    split = cfg.data.split
    n = len(info.speakers)
    for name, (fit, judged) in zip(("test", "val"), probe_clips(emb, cfg)):
        if name not in splits:
            continue
        if not judged.any():
            if name == "test":  # every run probes its last epoch: it would train to the end and fail there
                raise UsageError(
                    f"{cfg.data.shards}: no test clip for the leakage probe to judge under {scheme_of(cfg)}: a speaker "
                    "has one only with 2 clips or more (under speaker_disjoint, the test fold's speakers need them), "
                    "so training would stop at its first probe; use a corpus with more clips per speaker")
            continue  # no validation clips: a run trains without them, a sweep refuses them (`check_validation`)
        held = np.unique(speaker[fit])
        if split.scheme == "speaker_disjoint" and len(held) < 2:
            fix = (f"Preprocess again with data.split.folds <= {n // 2}" if n // 2 >= MIN_FOLDS else
                   f"It needs {2 * MIN_FOLDS} speakers or more: use data.split.scheme=within_speaker")
            raise UsageError(
                f"{cfg.data.shards}: the {name} fold of data.split.scheme=speaker_disjoint, fold {split.fold}, holds "
                f"{len(held)} speaker; leakage is how well a probe tells a held-out fold's speakers apart, so training "
                f"would stop at its first probe. {fix} (this corpus has {n} speakers)")
        if len(held) < 2:  # within_speaker: every speaker has train clips, so the corpus holds one speaker
            raise UsageError(
                f"{cfg.data.shards}: the corpus holds {n} speaker; leakage is how well a probe tells speakers apart "
                "from z_emo, so training would stop at its first probe; use a corpus of 2 speakers or more")
        if label_only_speaker_chance(emotion[fit], speaker[fit], emotion[judged], speaker[judged]) >= 1.0:
            # more clips help only where the speakers of the probe's clips share the judged clips' emotions at all
            pool = fit | judged
            shared = any(len(np.unique(speaker[pool & (emotion == e)])) > 1 for e in np.unique(emotion[judged]))
            why, fix = (("too few clips for two speakers to share an emotion", "with more clips per speaker and "
                         "emotion") if shared else
                        ("no emotion of theirs is shown by two of their speakers", "whose speakers share emotions (a "
                         "generated one: data.synth.entanglement below 1, or more speakers than emotions)"))
            fix = (_other_folds(info, cfg, splits, name, [info.speakers[i] for i in np.unique(speaker[pool])])
                   if split.scheme == "speaker_disjoint" else f"use a corpus {fix}")
            raise UsageError(
                f"{cfg.data.shards}: the emotion label alone names the speaker of every {name} clip the leakage "
                f"probe judges ({why}), so leakage is undefined there and training would stop at its first probe; "
                f"{fix}")


def _other_folds(info: DatasetInfo, cfg: Config, splits: tuple[str, ...], name: str, held: list[str]) -> str:
    """What to do where a speaker_disjoint fold's probe has nothing to measure (`check_leakage_defined`): its speakers
    are named, and so is each data.split.fold of these shards whose probes (of `splits`) can measure leakage. Said
    as a fault of the corpus ("use a corpus whose speakers share emotions"), it sent away a corpus of one's own whose
    other folds measure it, where only the few speakers of one fold were the matter."""
    split = cfg.data.split
    fold = held_out_fold(split, name)
    rows = [clip for ref in info.shards for clip in ref.clips.values()]
    speaker, emotion = (np.array([row[key] for row in rows], dtype=np.int64) for key in ("speaker_idx", "emotion_idx"))
    within = np.array([SPLIT_CODES[row["split"]] for row in rows])
    measured = []
    for k in range(split.folds):
        other = cfg.model_copy(update={"data": cfg.data.model_copy(update={"split": split.model_copy(
            update={"fold": k})})})
        scheme = np.array([SPLIT_CODES[split_of(row["split"], row["fold"], other.data.split)] for row in rows])
        emb = {"speaker": speaker, "emotion": emotion, "scheme_split": scheme, "within_split": within}
        if all(judged.any() and len(np.unique(speaker[fit])) > 1
               and label_only_speaker_chance(emotion[fit], speaker[fit], emotion[judged], speaker[judged]) < 1.0
               for each, (fit, judged) in zip(("test", "val"), probe_clips(emb, other)) if each in splits):
            measured.append(str(k))
    fewer = (f"preprocess again with fewer data.split.folds (more speakers a fold; {split.folds} now)"
             if split.folds > MIN_FOLDS else "use data.split.scheme=within_speaker")
    where = "test and validation folds" if len(splits) > 1 else "test fold"
    pick = (f"pick data.split.fold={' or '.join(measured)}, whose {where} it can measure, or {fewer}" if measured else
            f"no data.split.fold of these shards gives a {where} it can measure: {fewer}" if rows else
            f"pick another data.split.fold, or {fewer}")  # labels without the manifest's clips: no fold to try
    return (f"under data.split.scheme=speaker_disjoint the probe reads the {name} fold's speakers alone (fold {fold}: "
            f"{', '.join(held)}): {pick}")


MIN_JUDGED = 20  # clips a leakage probe judges beyond the emotion label's guess, below which one moves leakage by
# more than 5 points


def warn_few_judged(info: DatasetInfo, cfg: Config, splits: tuple[str, ...] = ("test",)) -> None:
    """Say where a leakage probe judges fewer than MIN_JUDGED clips beyond those the emotion label alone names
    (`splits`: "test" for `leakage`, "val" for `val_leakage`). Leakage is (acc - chance) / (1 - chance): of n judged
    clips, the m the label's guess misses are all it is read on, each 1/m of it, so it then differs between trials
    by chance by as much as methods move it, and a front drawn on it ranks luck (hU3's corpus of one's own: 3-5
    clips, leakage read 0 or 1 epoch to epoch and -1.0 on the test clips). Counting the judged clips alone missed
    where the label names most of them: a speaker_disjoint fold of 2 entangled speakers judged 20 clips, 18 named
    by the label, and a multitask model read leakage -1.5 on test and 1.0 on validation, unwarned. A warning, not a
    refusal: the numbers are right, only noisy."""
    emb = labelled(info)
    split = cfg.data.split
    speaker, emotion = emb["speaker"], emb["emotion"]
    for name, (fit, judged) in zip(("test", "val"), probe_clips(emb, cfg)):
        n = int(judged.sum())
        if name not in splits or not n or len(np.unique(speaker[fit])) < 2:
            continue  # nothing judged, or no probe: `check_leakage_defined` refuses what it must
        named = int((label_only_speaker_guess(emotion[fit], speaker[fit], emotion[judged]) == speaker[judged]).sum())
        m = n - named  # where the label names every clip, leakage is undefined: refused by `check_leakage_defined`
        if 0 < m < MIN_JUDGED:
            more, whose = "", ""
            if split.scheme == "speaker_disjoint":  # the val probe's fold is not data.split.fold: name which it is
                fold = held_out_fold(split, name)
                speakers = len(np.unique(speaker[judged]))
                whose = (f" (the {counted(speakers, 'speaker')} of its "
                         f"{'test' if name == 'test' else 'validation'} fold, {fold})")
                more = ", or preprocess with fewer data.split.folds (more speakers a fold)"
            measure = "leakage" if name == "test" else "val_leakage"
            other = "the other one is all" if m == 1 else f"each of the other {m} is {100 / m:.0f}%"
            label = (f"; the emotion label alone names the speaker of {named} of them, and {measure} counts only "
                     f"what a probe names beyond that: {other} of it" if named else "")
            print(f"avdis: warning: {cfg.data.shards}: the leakage probe judges {counted(n, f'{name} clip')} under "
                  f"{scheme_of(cfg)}{whose}: each is {100 / n:.0f}% of its accuracy{label}, so {measure} differs "
                  f"between trials by chance as much as methods move it; a corpus with more clips per speaker judges "
                  f"more{more}", flush=True)


def warn_unseen_emotions(info: DatasetInfo, cfg: Config) -> None:
    """Say which emotions the test and validation clips hold that no training clip does: the model cannot learn them,
    so every such clip is an error in emotion accuracy, and its emotion's recall is 0 in UAR (a fold that drew a rare
    emotion's only speakers, an emotion with too few clips per speaker to reach train). Both splits, for `avdis train`
    as for a sweep: a run reports val_emotion_acc and val_emotion_uar beside the test numbers (until 2026-12-06 a run
    said nothing of validation clips). A warning, not a refusal: the numbers are right, only lower than expected."""
    trained = {emotion for _, emotion, scheme, _ in info.labels if scheme == "train"}
    for name in ("test", "val"):
        unseen = Counter(info.emotions[emotion] for _, emotion, scheme, _ in info.labels
                         if scheme == name and emotion not in trained)
        if unseen:
            clips = sum(scheme == name for _, _, scheme, _ in info.labels)
            print(f"avdis: warning: {cfg.data.shards}: {sum(unseen.values())} of the {clips} {name} clips under "
                  f"{scheme_of(cfg)} are of emotions no training clip has ({', '.join(sorted(unseen))}); the model "
                  "cannot learn them, so each is an error in emotion accuracy, and each such emotion's recall in UAR "
                  "is 0", flush=True)


def scheme_of(cfg: Config) -> str:
    split = cfg.data.split
    return (f"data.split.scheme=speaker_disjoint, fold {split.fold}" if split.scheme == "speaker_disjoint"
            else "data.split.scheme=within_speaker")


def evaluate(emb: dict[str, np.ndarray], cfg: Config, n_speakers: int, n_emotions: int,
             with_probe: bool, said: int | None = None) -> tuple[dict[str, Any], NullspaceFit | None]:
    fit = posthoc(emb, cfg, n_speakers, n_emotions, said)
    z_emo, emo_logits = emb["z_emo"], emb["emo_logits"]
    if fit is not None:
        z = torch.as_tensor(z_emo)
        with torch.no_grad():
            z_emo, emo_logits = fit.transform(z).numpy(), fit.emotion_logits(z).numpy()
    emo_pred, spk_pred = emo_logits.argmax(1), emb["id_logits"].argmax(1)
    test, val = emb["scheme_split"] == TEST, emb["scheme_split"] == VAL
    w_test = emb["within_split"] == TEST
    if cfg.data.split.scheme == "speaker_disjoint":  # the identity head names only the speakers it trained on (and
        w_test &= emb["scheme_split"] == TRAIN  # on their every clip: there it scores clips it saw)
    metrics: dict[str, Any] = {
        "emotion_acc": accuracy(emo_pred[test], emb["emotion"][test]),
        "emotion_uar": uar(emo_pred[test], emb["emotion"][test]),
        "val_emotion_acc": accuracy(emo_pred[val], emb["emotion"][val]),
        "val_emotion_uar": uar(emo_pred[val], emb["emotion"][val]),
        "emotion_chance": majority_rate(emb["emotion"][test]),
        "emotion_uar_chance": uar_chance(emb["emotion"][test]),
        "speaker_acc": accuracy(spk_pred[w_test], emb["speaker"][w_test]),
        "n_test": int(test.sum()),
    }
    if with_probe:
        (fit_on, judge), (fit_val, judge_val) = probe_clips(emb, cfg)

        def clips(mask: np.ndarray) -> Clips:
            return z_emo[mask], emb["speaker"][mask], emb["emotion"][mask]

        if np.array_equal(fit_on, fit_val):  # one fit judges both (a second would cost a second probe per epoch)
            result = _probe(clips(fit_on), clips(judge), n_speakers, n_emotions, cfg, val=clips(judge_val))
            val_leakage = result.val_leakage
        else:
            result = _probe(clips(fit_on), clips(judge), n_speakers, n_emotions, cfg)
            val_leakage = (_probe(clips(fit_val), clips(judge_val), n_speakers, n_emotions, cfg, linear=False).leakage
                           if judge_val.any() else None)  # selection reads the MLP alone: no linear fits
        metrics.update({"leakage": result.leakage, "leakage_linear": result.leakage_linear,
                        "val_leakage": float("nan") if val_leakage is None else val_leakage,
                        "probe_acc": result.probe_acc, "probe_acc_linear": result.probe_acc_linear,
                        "probe_chance": result.probe_chance, "speaker_chance": result.chance_uniform})
    return metrics, fit


def _probe(fit: Clips, judged: Clips, n_speakers: int, n_emotions: int, cfg: Config,
           val: Clips | None = None, linear: bool = True) -> ProbeResult:
    """`leakage_probe` on these clips, or NaN leakage where they leave none to measure: fit clips of fewer than 2
    speakers (a speaker_disjoint fold of one, or clips missing at run time) or no clip to judge. The training loop
    explains the NaN on every rank alike (`leakage_probe` refused on rank 0 alone, blaming the split, and the other
    ranks waited for its metrics until Ray tore the run down). probe_chance is the label-only chance of the clips there
    are (NaN without judged ones); speaker_chance is 1.0 with one speaker."""
    speakers = np.unique(fit[1])
    if len(speakers) < 2 or not len(judged[0]):
        nan = float("nan")
        chance = label_only_speaker_chance(fit[2], fit[1], judged[2], judged[1]) if len(speakers) else nan
        return ProbeResult(nan, nan, chance, 1.0 / len(speakers) if len(speakers) else nan, nan, nan, None)
    return leakage_probe(*fit, *judged, n_speakers, n_emotions, cfg.probe, cfg.train.seed, val=val, linear=linear)
