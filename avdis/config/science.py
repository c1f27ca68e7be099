"""What a run's numbers are and how they are made: its objectives on test, those it is selected by on validation,
and the measures a run or sweep records so that numbers made otherwise are not compared."""

from __future__ import annotations

from typing import Literal

from avdis.config.names import METHODS, SCHEMES, EmotionMetric


def objectives(emotion: EmotionMetric = "acc") -> dict[str, Literal["max", "min"]]:
    """The mission's two objectives on the test split, with `emotion`'s metric: what the report gives for every
    trial and front point."""
    return {f"emotion_{emotion}": "max", "leakage": "min"}


def selection(emotion: EmotionMetric = "acc") -> dict[str, Literal["max", "min"]]:
    """The same two on validation clips: what the searcher learns from, MO-ASHA stops on and the front is chosen by,
    so that no choice a sweep makes has seen the test clips its report is measured on (chosen on test, a front is
    optimistic by the test set's noise)."""
    return {f"val_{name}": mode for name, mode in objectives(emotion).items()}


# Accuracy's, the default's: the two every run measures and checks, whatever a sweep draws its front on.
OBJECTIVES = objectives()
SELECTION = selection()
# How a trial's numbers are made where avdis changed it, so the same trial now gives others: a run and a sweep record
# those of their methods (`measures_of`) and are not resumed under others (old and new numbers would share one front).
MEASURES: dict[str, str] = {
    "leakage": "probes on z_emo with the one-hot emotion beside it, each predicting by the label alone where it does "
               "not beat it out of fold, the MLP training on past probe.epochs while its best out-of-fold epoch lies "
               "in the last quarter of those run (since 2026-12-05: z_emo alone before 2026-12-04, then the probes "
               "always predicting, then the MLP alone falling back, then the MLP stopping at probe.epochs)",
    "orthogonal": "mean squared canonical correlation of z_emo and z_id, its covariances running over batches "
                  "(since 2026-12-04: per coordinate before, then one batch's covariances)",
    "speaker_disjoint": "the probes of a held-out fold judge every clip of it they do not fit on, its within-speaker "
                        "test and validation clips (since 2026-12-05: the test fold's test clips alone for leakage, "
                        "the validation fold's validation clips alone for val_leakage)",
}


def measures_of(methods: list[str], scheme: str) -> dict[str, str]:
    """The `MEASURES` that make the numbers of runs of `methods` under the split `scheme`: one named after a method
    (its penalty) makes that method's alone, one named after a scheme (how its probes judge) that scheme's alone, the
    others (the leakage probe) every run's. A run or sweep records and is checked on these alone: checked on all, a
    change to orthogonal's penalty refused the resume of a run or sweep of any method."""
    return {name: how for name, how in MEASURES.items()
            if (name not in METHODS or name in methods) and (name not in SCHEMES or name == scheme)}


def measured_otherwise(recorded: dict[str, str], now: dict[str, str], whose: str) -> str | None:
    """How a run's or sweep's numbers were made otherwise than this avdis makes them, in words: each of the measures
    `now` (`measures_of`) it `recorded` otherwise, how it is made now and how `whose` were ("not recorded, so the one
    before" where it recorded none: begun before the measure changed). None where none differs. One wording for the
    refusal of a sweep's resume (`spec.check_spec`) and a run's (`checkpoint.check_compatible`): the run's said only
    that its checkpoint "records no measures.speaker_disjoint: an older avdis wrote it"."""
    changed = [f"{name}: {how} ({whose}: {recorded.get(name, 'not recorded, so the one before')})"
               for name, how in now.items() if recorded.get(name) != how]
    return f"measured otherwise than this avdis measures them ({'; '.join(changed)})" if changed else None
