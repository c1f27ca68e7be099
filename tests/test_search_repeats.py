"""The sweep's searcher trains no configuration twice: training is deterministic, so a second trial of one is a copy.

Driven as Tune drives it (through its ConcurrencyLimiter), with real Optuna samplers and no training: a trial's
result is made up from its number."""

from __future__ import annotations

import itertools
import logging
import pickle
from collections import Counter
import tracemalloc

import optuna
import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from avdis import config as C
from avdis.tune import space
from avdis.tune.space import config_key, configurations, space_size
from avdis.tune.sweep import search_trials, searcher, space_spent

COMPLETE, RUNNING, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                           optuna.trial.TrialState.FAIL)


def sweep_cfg(*overrides: str) -> C.Config:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return C.load(None, ["train.epochs=3", *overrides])


def result(cfg: C.Config, n: int) -> dict:
    """Trial n's last result, as the trial reports it: distinct values per trial, leakage at most 0.4."""
    return {"epoch": cfg.train.epochs, "val_emotion_acc": 0.5 + n / 100, "val_leakage": 0.4 - n / 10}


def drive(search: Searcher, cfg: C.Config, samples: int, concurrent: int = 1, first: int = 0) -> list[dict]:
    """Tune's loop in short: up to `concurrent` trials at a time, each ended (oldest first) before the next is asked
    for once `concurrent` run; stops at `samples` or FINISHED. The suggestions, in order; their trial ids count
    from t<first>."""
    limiter, suggested, running = ConcurrencyLimiter(search, max_concurrent=concurrent), [], []
    while len(suggested) < samples:
        params = limiter.suggest(f"t{first + len(suggested)}")
        if params == Searcher.FINISHED:
            break
        if params is None:  # at its limit: end the oldest
            tid = running.pop(0)
            limiter.on_trial_complete(tid, result(cfg, int(tid[1:])))
            continue
        running.append(f"t{first + len(suggested)}")
        suggested.append(params)
    for tid in running:
        limiter.on_trial_complete(tid, result(cfg, int(tid[1:])))
    return suggested


@pytest.mark.parametrize("search", ["tpe", "random", "nsga2"])
@pytest.mark.parametrize("concurrent", [1, 2])
def test_a_space_of_two_parameterless_methods_trains_each_once_and_ends_the_search(search, concurrent):
    """single_task and multitask have no weight and nothing else is sampled: the space holds 2 configurations.
    The searcher drew them again (with the config's one train.seed): 6 trials, 4 of them copies."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask]", "sweep.num_samples=6", f"sweep.search={search}")
    suggested = drive(searcher(cfg), cfg, 6, concurrent)
    assert sorted(p["method"] for p in suggested) == ["multitask", "single_task"]
    assert space_size(cfg.sweep.space) == search_trials(cfg) == 2  # what the driver waits for, not 6
    said = space_spent(cfg)
    assert "2 trials of sweep.num_samples=6" in said and "holds 2 configurations" in said
    assert "train.seed" in said and "sweep.confirm_seeds" in said


def test_a_spent_space_that_samples_seeds_and_confirms_is_told_to_do_more_of_each():
    """hU4's speaker-disjoint sweep sampled 'train.seed=[0, 1]' with confirm_seeds 1, and its spent space was told
    to "sample train.seed (e.g. ...=[0, 1, 2])" and to "set sweep.confirm_seeds", as if it did neither."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask]", "sweep.num_samples=6",
                    "sweep.space.params.train.seed=[1, 0]", "sweep.confirm_seeds=1")
    said = space_spent(cfg)
    assert "4 trials of sweep.num_samples=6" in said and "holds 4 configurations" in said
    assert "sample more train.seed values than the 2 it samples" in said
    assert "'sweep.space.params.train.seed=[0, 1, 2]'" in said
    assert "raise sweep.confirm_seeds (now 1)" in said and "set sweep.confirm_seeds" not in said
    ranged = sweep_cfg("sweep.space.methods=[multitask]", "sweep.space.params.train.seed={low: 3, high: 5, int: true}")
    said = space_spent(ranged)
    assert "than the 3 it samples" in said and "train.seed={low: 3, high: 8, int: true}" in said
    assert "set sweep.confirm_seeds to re-train" in said
    top = sweep_cfg("sweep.space.methods=[multitask]", f"sweep.space.params.train.seed=[5, {2**31 - 1}]")
    assert f"train.seed=[4, 5, {2**31 - 1}]" in space_spent(top)  # no seed past the last a config takes
    top = sweep_cfg("sweep.space.methods=[multitask]", f"sweep.space.params.train.seed={{low: {2**31 - 3}, "
                    f"high: {2**31 - 1}, int: true}}")
    assert f"train.seed={{low: {2**31 - 6}, high: {2**31 - 1}, int: true}}" in space_spent(top)


def test_a_space_of_choices_is_counted_and_walked_as_the_sampler_draws_it():
    cfg = sweep_cfg("sweep.space.methods=[multitask, nullspace]",
                    "sweep.space.weights.nullspace={low: 1, high: 3, int: true}",
                    "sweep.space.params.train.seed=[0, 1]", "sweep.space.params.train.lr=[0.001, 0.01]",
                    "sweep.num_samples=40")
    every = list(configurations(cfg.sweep.space))
    assert len(every) == space_size(cfg.sweep.space) == (1 + 3) * 2 * 2 == len({config_key(p) for p in every})
    assert search_trials(cfg) == 16 and search_trials(C.with_overrides(cfg, {"sweep.num_samples": 12})) == 12
    suggested = drive(searcher(C.with_overrides(cfg, {"sweep.search": "random"})), cfg, 40, 2)
    assert sorted(map(config_key, suggested)) == sorted(map(config_key, every))  # each once, then FINISHED
    endless = sweep_cfg("sweep.space.methods=[multitask, adversarial]")  # adversarial's weight: a real-number range
    assert space_size(endless.sweep.space) is None and configurations(endless.sweep.space) is None
    assert search_trials(endless) == endless.sweep.num_samples


def test_a_repeated_draw_is_told_the_earlier_values_and_trains_nothing():
    """In a space where two methods are one configuration each and a third draws a real-number weight, random search
    draws the parameterless ones again and again: the first such draw of each reaches the study with the earlier
    trial's values, later ones as failed (`test_repeats_grow_the_study_by_a_bounded_number_of_draws`), and the trials
    Tune runs are each a configuration of their own."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask, adversarial]", "sweep.search=random")
    search = searcher(cfg)
    suggested = drive(search, cfg, 12)
    keys = [config_key(p) for p in suggested]
    assert len(suggested) == 12 and len(set(keys)) == 12
    study = search._ot_study.trials
    ran = {search._ot_trials[f"t{i}"].number: i for i in range(12)}
    told = {config_key(study[n].params): study[n].values for n in ran}
    repeats = [t for t in study if t.number not in ran]
    assert len(repeats) >= 3  # multitask and single_task drawn again, the draws told without a trial
    for i, t in enumerate(repeats):
        assert t.params["method"] in ("single_task", "multitask")
        if config_key(t.params) in {config_key(r.params) for r in repeats[:i]}:
            assert t.state == FAIL
        else:
            assert t.state == COMPLETE and t.values == told[config_key(t.params)]


@pytest.mark.parametrize("search", ["tpe", "random", "nsga2"])
def test_repeats_grow_the_study_by_a_bounded_number_of_draws(search):
    """Where the method without a weight wins and no real-number knob is sampled, the sampler keeps drawing its few
    configurations: each suggestion made 10 draws that repeated one tried, each told to the study as COMPLETE with
    the earlier values, so at 100 trials the study held some 420 trials (TPE's 'start-up' trials among them) and a
    suggestion took 0.1-0.3 s (bench/search_repeats.py). Now a configuration's first repeat is told its values and
    later ones as failed (samplers leave them out), and after 3 draws that repeat the untried configuration nearest
    the last is trained: the study holds at most one completed repeat per configuration and 4 draws per trial."""
    cfg = sweep_cfg("sweep.space.methods=[multitask, adversarial, orthogonal]", f"sweep.search={search}",
                    "sweep.space.weights.adversarial={low: 1, high: 5, int: true}",
                    "sweep.space.weights.orthogonal={low: 1, high: 5, int: true}",
                    "sweep.space.params.train.lr=[0.001, 0.003, 0.01]", "sweep.space.params.train.seed=[0, 1, 2]",
                    "sweep.num_samples=60")

    def made_up(params: dict) -> dict:  # multitask the best there is in accuracy, a weight trading it for leakage
        w = params.get(f"weight_{params['method']}", 0)
        return {"epoch": cfg.train.epochs, "val_emotion_acc": 0.8 - 0.02 * w - abs(params["train.lr"] - 0.003),
                "val_leakage": 0.3 - 0.01 * w + params["train.seed"] / 100}

    search, trials = searcher(cfg), 60
    for i in range(trials):
        params = search.suggest(f"t{i}")
        search.on_trial_complete(f"t{i}", made_up(params))
    study = search._ot_study.trials
    trained = [search._ot_trials[f"t{i}"].number for i in range(trials)]
    assert len({config_key(study[n].params) for n in trained}) == trials
    completed = Counter(config_key(t.params) for t in study if t.state == COMPLETE)
    assert len(completed) == trials and max(completed.values()) <= 2  # the trial, and its first repeat at most
    assert len(study) <= (space.MAX_ASKS + 1) * trials and space.MAX_ASKS == 3
    assert all(t.state.is_finished() for t in study)


def test_a_draw_of_a_configuration_still_training_waits_for_its_values():
    """A draw equal to a trial still running is not trained beside it: it stays running in the study, as that trial
    is, and is told that trial's values when it ends (leakage below 0 told as 0, as the trial itself)."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask, nullspace]", "sweep.search=random",
                    "sweep.space.weights.nullspace={low: 1, high: 2, int: true}")
    search = searcher(cfg)
    first = [search.suggest(f"t{i}") for i in range(4)]  # all 4 configurations, running
    assert len({config_key(p) for p in first}) == 4
    assert search.suggest("t4") == Searcher.FINISHED  # every configuration tried (running counts)
    waiting = {tid: [w.number for w in ws] for tid, ws in search._waiting.items()}
    assert waiting  # the draws that repeated a running trial
    tid, numbers = next(iter(waiting.items()))
    ran = search._ot_trials[tid].number
    assert all(search._ot_study.trials[n].state == RUNNING for n in numbers)
    assert all(search._ot_study.trials[n].params == search._ot_study.trials[ran].params for n in numbers)
    search.on_trial_complete(tid, {"epoch": 3, "val_emotion_acc": 0.7, "val_leakage": -0.2})
    for n in [ran, *numbers]:
        assert search._ot_study.trials[n].state == COMPLETE and search._ot_study.trials[n].values == [0.7, 0.0]


@pytest.mark.parametrize("saved_by", ["this", "an_older_avdis"])
def test_a_restored_searcher_still_knows_what_was_trained(tmp_path, saved_by):
    """Tune saves the searcher with its experiment and restores it on resume: a driver killed after both
    configurations of the space were suggested (one ended, one running) resumes with a searcher that suggests
    neither again. One saved by an avdis that kept no record of configurations learns them from its study."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask]", "sweep.num_samples=6")
    search = searcher(cfg)
    a, b = search.suggest("t0"), search.suggest("t1")
    assert a != b
    search.on_trial_complete("t0", result(cfg, 0))
    path = tmp_path / "searcher-state.pkl"
    search.save(str(path))
    if saved_by == "an_older_avdis":
        with open(path, "rb") as fh:
            state = pickle.load(fh)
        state = {k: v for k, v in state.items() if k not in ("_told", "_running", "_waiting")}
        with open(path, "wb") as fh:
            pickle.dump(state, fh)
    restored = searcher(cfg)
    restored.restore(str(path))
    assert restored.suggest("t2") == Searcher.FINISHED
    restored.on_trial_complete("t1", result(cfg, 1))  # the running trial, resumed, ends
    assert len(restored._told) == 2 and not restored._running
    assert restored.suggest("t3") == Searcher.FINISHED


@pytest.mark.parametrize("search", ["tpe", "nsga2"])
def test_draws_that_keep_repeating_give_way_to_an_untried_configuration(monkeypatch, search):
    """Where every draw of a suggestion repeats a configuration tried (one draw allowed here, `MAX_ASKS`), an untried
    one is enqueued and trained, in an endless space too (a random draw of adversarial's weight)."""
    monkeypatch.setattr(space, "MAX_ASKS", 1)
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask, adversarial]", f"sweep.search={search}",
                    "sweep.num_samples=15")
    search = searcher(cfg)
    suggested = drive(search, cfg, 15)
    assert len({config_key(p) for p in suggested}) == 15
    assert all(t.state.is_finished() for t in search._ot_study.trials)  # every repeat told, none left waiting


def test_a_seed_sampled_over_its_whole_range_is_counted_without_listing_every_value():
    """`train.seed` sampled over its whole range ({low: 0, high: 2147483647, int: true}), as the sweep advises where
    a space is spent: `space_size` listed every value of an int range, at the sweep's start (`search_trials`) and at
    every suggestion (`SweepSearch.exhausted`): a million seeds took 40 MB and 70 ms per suggestion, the whole range
    2**31 ints (some 80 GB) before the first trial. Counted from the range's ends, walked lazily."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask]",
                    "sweep.space.params.train.seed={low: 0, high: 1000000, int: true}")
    tracemalloc.start()
    try:
        assert space_size(cfg.sweep.space) == 2 * 1_000_001
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak / 1e6:.0f} MB to count the space"
    whole = sweep_cfg("sweep.space.methods=[single_task, multitask]", "sweep.num_samples=6", "sweep.search=random",
                      "sweep.space.params.train.seed={low: 0, high: 2147483647, int: true}")
    assert space_size(whole.sweep.space) == 2 * 2**31 and search_trials(whole) == 6
    assert list(itertools.islice(configurations(whole.sweep.space), 2)) == [
        {"method": "single_task", "train.seed": 0}, {"method": "single_task", "train.seed": 1}]
    suggested = drive(searcher(whole), whole, 6, 2)
    assert len({config_key(p) for p in suggested}) == 6


@pytest.mark.parametrize("ended", ["t0", "t1"])
def test_a_searcher_an_older_avdis_saved_beside_a_copy_still_running_goes_on_to_the_untried_configuration(
        tmp_path, ended):
    """An avdis that kept no record of configurations trained copies: saved with single_task trained twice, one of the
    two ended and the other running, the restored searcher counted single_task as told and as running, two
    configurations of a space of two, and ended the search (FINISHED) before multitask was ever trained."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask]", "sweep.num_samples=6")
    old = searcher(cfg)
    for tid in ("t0", "t1"):  # that avdis's suggest (OptunaSearch's), which drew single_task twice
        old._ot_study.enqueue_trial({"method": "single_task"})
        assert OptunaSearch.suggest(old, tid) == {"method": "single_task"}
    OptunaSearch.on_trial_complete(old, ended, result(cfg, int(ended[1:])))
    state = {k: v for k, v in old.__dict__.items() if k not in ("_told", "_running", "_waiting")}
    path = tmp_path / "searcher-state.pkl"
    path.write_bytes(pickle.dumps(state))
    restored = searcher(cfg)
    restored.restore(str(path))
    assert restored.suggest("t2") == {"method": "multitask"}
    for tid in ("t0", "t1", "t2"):
        restored.on_trial_complete(tid, result(cfg, int(tid[1:])))  # the one that had ended: a second completion
    assert restored.suggest("t3") == Searcher.FINISHED
    assert all(t.state.is_finished() for t in restored._ot_study.trials)


def test_a_resumed_searcher_learns_the_trials_recorded_after_tunes_last_save_and_trains_none_again(tmp_path):
    """A driver killed after trials that started after Tune's last save had ended: they are in trials.parquet (the
    recorder writes it after every result) but not in the searcher Tune restores, whose seeded sampler drew them
    again, each trained again (its epochs spent on a bitwise copy). Restored now, it learns them from the table as Tune
    would have told them (finished: its values, leakage below 0 as 0; stopped: pruned; failed: FAIL), so none is
    trained again. One recorded as running was lost with the driver (no result): its configuration is drawn again.
    The table is the recorder's, of Tune trials; the study a real seeded one."""
    from ray.tune.experiment import Trial

    from avdis import results
    from avdis.tune.records import TrialRecorder

    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask, nullspace]", "sweep.search=random",
                    "sweep.space.weights.nullspace={low: 1, high: 6, int: true}", "sweep.num_samples=20")
    url = str(tmp_path)  # the sweep's folder
    recorder = TrialRecorder(url, cfg)
    recorder.setup()
    search = searcher(cfg, url)
    tune_trials = {}

    def run(tid: str, epochs: int | None, leakage: float = 0.3) -> dict:
        """Trial `tid`, suggested, recorded and told (ended at `epochs`; failed where None)."""
        params = search.suggest(tid)
        tune_trials[tid] = trial = Trial("trainable", config=params, trial_id=tid, stub=True)
        recorder.on_trial_start(0, [], trial)
        if epochs is None:
            trial.set_status(Trial.ERROR)
            recorder.on_trial_error(1, [], trial)
            search.on_trial_complete(tid, error=True)
            return params
        reported = {"epoch": epochs, "emotion_acc": 0.6, "leakage": leakage, "val_emotion_acc": 0.5 + int(tid[1:]) / 100,
                    "val_leakage": leakage}
        recorder.on_trial_result(1, [], trial, reported)
        recorder.on_trial_complete(2, [], trial)
        search.on_trial_complete(tid, reported)
        return params

    first = run("t0", 3)
    saved = tmp_path / "searcher-state.pkl"
    search.save(str(saved))  # Tune's last save; then the killed driver ran on
    finished, stopped, failed = run("t1", 3, leakage=-0.1), run("t2", 1), run("t3", None)
    lost = search.suggest("t4")
    recorder.on_trial_start(0, [], Trial("trainable", config=lost, trial_id="t4", stub=True))
    assert results.read_trials(url).set_index("trial_id")["status"].to_dict() == {
        "t0": "TERMINATED", "t1": "TERMINATED", "t2": "STOPPED", "t3": "ERROR", "t4": "RUNNING"}

    restored = searcher(cfg, url)
    restored.restore(str(saved))
    again = drive(restored, cfg, 20, first=5)  # the resumed sweep: until the space is spent
    trained = Counter(config_key(p) for p in (first, finished, stopped, failed, *again))
    assert trained == Counter(config_key(p) for p in configurations(cfg.sweep.space))  # each once
    assert config_key(lost) in map(config_key, again)
    study = restored._ot_study.get_trials(deepcopy=False)
    told = {tid: study[restored._ot_trials[tid].number] for tid in ("t1", "t2", "t3")}
    assert [config_key(told[t].params) for t in told] == [config_key(p) for p in (finished, stopped, failed)]
    assert (told["t1"].state, told["t1"].values) == (COMPLETE, [0.51, 0.0])
    assert told["t2"].state == optuna.trial.TrialState.PRUNED and told["t3"].state == optuna.trial.TrialState.FAIL


@pytest.mark.parametrize("space_of", ["endless", "more_than_num_samples"])
def test_a_resumed_search_ends_with_num_samples_trials_those_learned_apart_among_them(tmp_path, space_of):
    """Two trials started after Tune's last save ended before the driver was killed, and a third was running: the
    resumed searcher learns the two (`ended_apart`), the third is lost (no result: drawn again). Tune restores its own
    count, of the trial it saved alone, and asks for trials until it has `sweep.num_samples` of its own: the searcher
    went on suggesting them, and a sweep of 7 ended with 9 trials (7 Tune trials and the 2 learned). The searcher now
    ends the search at 7 suggested or learned: 5 Tune trials, the count `fit` waits for. A fresh search still
    suggests 7. Driven as Tune drives it: its saved count, a real recorder's table."""
    from ray.tune.experiment import Trial

    from avdis import results
    from avdis.tune.records import TrialRecorder

    space = (["sweep.space.methods=[multitask, adversarial]"] if space_of == "endless" else  # a real-number weight
             ["sweep.space.methods=[single_task, multitask, nullspace]",  # 2 + 6 = 8 configurations
              "sweep.space.weights.nullspace={low: 1, high: 6, int: true}"])
    cfg = sweep_cfg(*space, "sweep.search=random", "sweep.num_samples=7")
    assert len(drive(searcher(cfg), cfg, 20)) == 7  # fresh: sweep.num_samples, no fewer
    url = str(tmp_path)
    recorder = TrialRecorder(url, cfg)
    recorder.setup()
    search = searcher(cfg, url)
    saved = tmp_path / "searcher-state.pkl"

    def run(searched: Searcher, n: int, end: bool = True) -> bool:
        """Trial t<n>, suggested, recorded and (where `end`) told; False where the searcher ended the search."""
        params = searched.suggest(f"t{n}")
        if params == Searcher.FINISHED:
            return False
        trial = Trial("trainable", config=params, trial_id=f"t{n}", stub=True)
        recorder.on_trial_start(0, [], trial)
        if end:
            recorder.on_trial_result(1, [], trial, {**result(cfg, n), "leakage": 0.3, "emotion_acc": 0.6})
            recorder.on_trial_complete(2, [], trial)
            searched.on_trial_complete(f"t{n}", result(cfg, n))
        return True

    for n in range(4):  # t0 before Tune's last save, t1 and t2 after it, t3 running when the driver was killed
        assert run(search, n, end=n < 3)
        if n == 0:
            search.save(str(saved))
    restored = searcher(cfg, url)
    restored.restore(str(saved))
    tune_trials = 1  # Tune's restored count: the trials it saved
    while tune_trials < cfg.sweep.num_samples and run(restored, 3 + tune_trials):  # Tune's: to its count, or FINISHED
        tune_trials += 1
    assert tune_trials == search_trials(cfg, apart=2) == 5  # of Tune's experiment: what `fit` waits for
    ended = results.ended(results.read_trials(url), results.SEARCH)
    assert len(ended) == cfg.sweep.num_samples and "t3" not in set(ended["trial_id"])


def test_a_searcher_tune_pickled_before_it_was_given_num_samples_still_suggests():
    """Tune restores a sweep's searcher from the object it pickled at the sweep's start: one pickled by an avdis whose
    SweepSearch had no `num_samples` raised AttributeError at its first suggestion on resume. It suggests, unbounded
    (Tune's own count ends it)."""
    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask, adversarial]", "sweep.num_samples=2")
    old = searcher(cfg)
    del old.__dict__["num_samples"]
    restored = pickle.loads(pickle.dumps(old))
    assert len(drive(restored, cfg, 3)) == 3


def test_a_failed_trial_tune_runs_again_is_learned_by_the_searcher_and_is_no_extra_trial(tmp_path, caplog):
    """`avdis sweep --retry-failed`: Tune runs a failed trial again, from its checkpoint, under the same trial id. The
    searcher told it as failed (FAIL) and Tune's ConcurrencyLimiter closed it at its failure: its second completion
    was dropped there, so the searcher never learned the result and went on suggesting as if the trial had failed.
    Restored, the limiter counts it again (as `resume.count_restored_trials` leaves its saved state: it takes the one
    place while it runs) and passes its end on: the trial's configuration is told its values. The trial stays one of
    `sweep.num_samples`: the search still ends at 4 Tune trials. Recorded finished when the searcher is restored (it
    finished after Tune last saved its state), it is learned from trials.parquet; nothing raises on a second
    completion, and a retried trial that fails again stays failed."""
    from ray.tune.experiment import Trial

    from avdis import results
    from avdis.tune.records import TrialRecorder

    cfg = sweep_cfg("sweep.space.methods=[single_task, multitask, nullspace]", "sweep.search=random",
                    "sweep.space.weights.nullspace={low: 1, high: 6, int: true}", "sweep.num_samples=4")
    url = str(tmp_path)
    recorder = TrialRecorder(url, cfg)
    recorder.setup()

    def start(limiter: ConcurrencyLimiter, tid: str) -> Trial:
        params = limiter.suggest(tid)
        assert isinstance(params, dict), params
        trial = Trial("trainable", config=params, trial_id=tid, stub=True)
        recorder.on_trial_start(0, [], trial)
        return trial

    def finish(limiter: ConcurrencyLimiter, trial: Trial) -> dict:
        reported = {**result(cfg, int(trial.trial_id[1:])), "emotion_acc": 0.6, "leakage": 0.3}
        limiter.on_trial_result(trial.trial_id, reported)
        recorder.on_trial_result(1, [], trial, reported)
        recorder.on_trial_complete(2, [], trial)
        limiter.on_trial_complete(trial.trial_id, reported)
        return reported

    search = searcher(cfg, url)
    limiter = ConcurrencyLimiter(search, max_concurrent=1)
    failed = start(limiter, "t0")
    failed.set_status(Trial.ERROR)
    recorder.on_trial_error(1, [], failed)
    limiter.on_trial_complete("t0", error=True)
    finish(limiter, start(limiter, "t1"))
    saved = tmp_path / "searcher-state.pkl"
    search.save(str(saved))  # Tune's save at the sweep's end (exit 1, t0 listed)

    # the rerun with --retry-failed: Tune restores searcher and limiter (counting t0), and runs t0 again
    restored = searcher(cfg, url)
    restored.restore(str(saved))
    again = ConcurrencyLimiter(restored, max_concurrent=1)
    again.set_state({**limiter.get_state(), "live_trials": {"t0"}, "num_unfinished_live_trials": 1})
    recorder.on_trial_start(0, [], failed)
    assert results.read_trials(url).set_index("trial_id").loc["t0", "status"] == "RUNNING"
    assert again.suggest("t2") is None  # t0 takes the one place
    reported = finish(again, failed)
    key = config_key(failed.config)
    study = restored._ot_study.get_trials(deepcopy=False)
    assert (study[restored._ot_trials["t0"].number].state, restored._told[key][0]) == (COMPLETE, COMPLETE)
    assert study[restored._ot_trials["t0"].number].values == [reported["val_emotion_acc"], reported["val_leakage"]]
    suggested = [start(again, "t2")]
    assert config_key(suggested[0].config) != key
    finish(again, suggested[0])
    suggested.append(start(again, "t3"))
    finish(again, suggested[-1])
    assert again.suggest("t4") == Searcher.FINISHED  # 4 Tune trials: t0 retried is none extra
    assert len(restored._ot_trials) == cfg.sweep.num_samples
    restored.on_trial_complete("t0", reported)  # a second completion passed on: nothing raises, nothing changes
    assert restored._told[key][0] == COMPLETE and len(restored._ot_trials) == 4

    # recorded finished when the searcher is restored from the state saved before the retry: learned from the table
    alone = searcher(cfg)
    alone.restore(str(saved))
    trials = alone._ot_study.get_trials(deepcopy=False)
    assert (trials[alone._ot_trials["t0"].number].state, alone._told[key][0]) == (COMPLETE, COMPLETE)
    assert len(alone._ot_trials) == 4  # t2 and t3, ended after the save, learned from the table too

    # retried and failed again: it stays failed, with nothing said of a second completion
    unseen = tmp_path / "searcher-state-unseen.pkl"  # the saved state, without the table to learn from
    unseen.write_bytes(pickle.dumps({**pickle.loads(saved.read_bytes()), "trials_at": None}))
    again_failed = searcher(cfg)
    again_failed.restore(str(unseen))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again_failed.on_trial_complete("t0", error=True)
    assert again_failed._told[key][0] == FAIL and not caplog.records
