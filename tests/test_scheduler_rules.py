"""How the sweep's searcher is told of trials the scheduler stopped, and the sampler settings it is built with."""

from __future__ import annotations

import optuna
import pytest

from avdis import config as C
from avdis.errors import UsageError
from avdis.tune.sweep import scheduler, searcher

State = optuna.trial.TrialState


def told(stopped_as: str, epoch: int, error: bool = False) -> optuna.trial.FrozenTrial:
    cfg = C.load(None, [f"sweep.scheduler.stopped_as={stopped_as}", "train.epochs=9"])
    s = searcher(cfg)
    s.suggest("t0")
    # the test numbers say otherwise: the searcher learns from the validation numbers only (config.SELECTION)
    s.on_trial_complete("t0", result={"epoch": epoch, "val_emotion_acc": 0.6, "val_leakage": 0.4,
                                      "emotion_acc": 0.3, "leakage": 0.8}, error=error)
    return s._ot_study.trials[0]


@pytest.mark.parametrize("stopped_as", ["complete", "pruned"])
def test_a_trial_that_ran_every_epoch_is_complete_with_its_values(stopped_as):
    trial = told(stopped_as, epoch=9)
    assert trial.state == State.COMPLETE and trial.values == [0.6, 0.4]


def told_values(leakage: float) -> list[float]:
    s = searcher(C.load(None, ["train.epochs=9"]))
    s.suggest("t0")
    s.on_trial_complete("t0", result={"epoch": 9, "val_emotion_acc": 0.6, "val_leakage": leakage})
    return s._ot_study.trials[0].values


def test_a_leakage_below_zero_is_told_as_zero_as_the_front_reads_it():
    """Two trials at (0.6, -0.3) and (0.6, 0.0) tie on the front and at MO-ASHA's rungs; told raw, TPE and NSGA-II
    ranked the first strictly better and sampled toward probes that were unlucky."""
    assert told_values(-0.3) == told_values(0.0) == [0.6, 0.0]
    assert told_values(0.25) == [0.6, 0.25]


def test_a_stopped_trial_is_told_as_the_setting_says():
    assert told("complete", epoch=2).values == [0.6, 0.4]  # Ray's OptunaSearch: rung values as if final
    pruned = told("pruned", epoch=2)
    assert pruned.state == State.PRUNED and pruned.values is None
    assert told("pruned", epoch=2, error=True).state == State.COMPLETE  # an error keeps Ray's handling


def test_the_defaults_are_the_replays_winner():
    s = C.load(None).sweep
    assert (s.search, s.scheduler.type, s.scheduler.eta, s.scheduler.grace_epochs, s.scheduler.stopped_as,
            s.scheduler.margin, s.startup_trials) == ("tpe", "mo_asha", 2, 2, "pruned", 0.1, 6)
    assert scheduler(C.load(None)).core.margin == 0.1  # the sweep's scheduler is built with it
    assert searcher(C.load(None, ["sweep.startup_trials=5"]))._sampler._n_startup_trials == 5


def test_a_resumed_sweeps_scheduler_keeps_its_rungs(tmp_path):
    """Tuner.restore unpickles the scheduler the sweep started with, rungs empty (Ray Tune 2.60 never restores a
    scheduler's state): a trial the uninterrupted sweep stopped at its first rung ran to the end."""
    import pickle

    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    cfg = C.load(None, ["train.epochs=8", "sweep.scheduler.margin=0", "sweep.scheduler.eta=2"])

    def result(sched, tid: str, acc: float, leak: float) -> str:
        trial = Trial("trainable", config={}, trial_id=tid, stub=True)
        return sched.on_trial_result(None, trial, {"epoch": 2, "val_emotion_acc": acc, "val_leakage": leak})

    live = scheduler(cfg, str(tmp_path))
    started = pickle.dumps(live)  # what Tuner.restore brings back: the scheduler as the sweep began
    for tid, acc, leak in (("a", 0.9, 0.1), ("b", 0.95, 0.3)):  # a trade-off each: both on the rung's front
        assert result(live, tid, acc, leak) == TrialScheduler.CONTINUE
    restored = pickle.loads(started)
    assert result(restored, "c", 0.6, 0.4) == result(live, "c", 0.6, 0.4) == TrialScheduler.STOP
    assert scheduler(cfg).state_url is None  # the replay's scheduler writes nothing
    # the driver died after the stop was written, before Tune acted on it: the resumed sweep runs "c" again from an
    # earlier checkpoint, and its rung result (which the rung already holds) must stop it again, not let it through
    again = pickle.loads(started)
    assert result(again, "c", 0.6, 0.4) == TrialScheduler.STOP and again.stopped == {"c": 2}


@pytest.mark.parametrize("text", ['{"rungs": {"2": {"a": [0.9, 0.', '{"rungs": {}}', '{"rungs": {"2": {"a": 0.9}}, "stopped": {}}',
                                  "[]"])
def test_a_damaged_mo_asha_json_is_refused_naming_it(tmp_path, text):
    """Cut short or edited, mo_asha.json ended a resumed MO-ASHA sweep inside Tune at its first result
    (JSONDecodeError, KeyError, TypeError): the restored scheduler reads it there, the sweep's driver before Ray."""
    import pickle

    from ray.tune.experiment import Trial

    cfg = C.load(None, ["train.epochs=8"])
    restored = pickle.loads(pickle.dumps(scheduler(cfg, str(tmp_path))))
    (tmp_path / "mo_asha.json").write_text(text)
    trial = Trial("trainable", config={}, trial_id="a", stub=True)
    with pytest.raises(UsageError, match=rf"{tmp_path}/mo_asha.json: not MO-ASHA's rungs .*cut short or edited.*"
                                         "delete it to resume with empty rungs"):
        restored.on_trial_result(None, trial, {"epoch": 2, "val_emotion_acc": 0.9, "val_leakage": 0.1})


def test_mo_asha_stops_on_the_validation_numbers_never_the_test_ones():
    """A trial clearly beaten on its validation clips stops though its test numbers would lead the rung: a scheduler
    that read the test numbers chose on what the report measures."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    sched = scheduler(C.load(None, ["train.epochs=8", "sweep.scheduler.margin=0.05"]))

    def result(tid: str, val: tuple[float, float], test: tuple[float, float]) -> str:
        trial = Trial("trainable", config={}, trial_id=tid, stub=True)
        return sched.on_trial_result(None, trial, {"epoch": 2, **dict(zip(C.SELECTION, val)),
                                                   **dict(zip(C.OBJECTIVES, test))})

    assert result("a", (0.9, 0.1), (0.5, 0.6)) == TrialScheduler.CONTINUE
    assert result("b", (0.5, 0.6), (0.99, 0.0)) == TrialScheduler.STOP


def test_a_uar_sweep_searches_and_stops_on_validation_uar():
    """Under sweep.emotion_metric=uar the searcher learns from val_emotion_uar and MO-ASHA ranks its rungs on it: a
    trial that names most clips the majority emotion leads on accuracy, and must not lead a UAR sweep by it. Under
    the default (acc) it stays on the rung's front."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    cfg = C.load(None, ["train.epochs=8", "sweep.scheduler.margin=0.05", "sweep.emotion_metric=uar"])
    s = searcher(cfg)
    s.suggest("t0")
    s.on_trial_complete("t0", result={"epoch": 8, "val_emotion_acc": 0.9, "val_emotion_uar": 0.3, "val_leakage": 0.4})
    assert s._ot_study.trials[0].values == [0.3, 0.4]

    def decisions(overrides: list[str]) -> list[str]:
        sched = scheduler(C.load(None, ["train.epochs=8", "sweep.scheduler.margin=0.05", *overrides]))
        return [sched.on_trial_result(None, Trial("trainable", config={}, trial_id=tid, stub=True),
                                      {"epoch": 2, "val_emotion_acc": acc, "val_emotion_uar": uar, "val_leakage": leak})
                for tid, acc, uar, leak in (("balanced", 0.6, 0.7, 0.2), ("majority", 0.9, 0.3, 0.3))]

    assert decisions(["sweep.emotion_metric=uar"]) == [TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert decisions([]) == [TrialScheduler.CONTINUE, TrialScheduler.CONTINUE]
