"""A sweep's results, the floor below both `avdis.tune` and `avdis.report`.

Two files under the sweep's storage URL (local folder or s3://): `trials.parquet` (one row
per trial, this module's SCHEMA) and `pareto.json` (`summarize`). The sweep's recorder
writes both after every trial result (`record`), whole and atomically, so readers (the
report, the dashboard, the gauges) read them and never see half a file. The trial table
is built once, by `write_trials`, which also fills in `disentanglement` (its one
definition, `disentangled`). A sweep that has not reported yet has no
`trials.parquet`: readers get an empty table with the schema, not an error. The front
and hypervolume are `avdis.results.pareto`. A table read back is checked (types, ranges, each
trial once) and its disentanglement worked out again from its rows (`read_trials`). Fronts are
chosen on the validation clips' numbers and report the test clips' (`selected_on`), of the sweep's emotion
metric (`sweep.emotion_metric`: accuracy or UAR, `pareto.Axes`; `axes_of` reads it from sweep.json).

Seeds: a trial's `role` is `search` (drawn by the searcher) or `confirm` (a front
configuration re-trained with another seed, `sweep.confirm_seeds`); `config_id` groups
the seeds of one configuration. Once confirm rows exist, the front is drawn from seed
means over the configurations the search put on its front at full length (`search_front`),
each with its spread: sample std (ddof 1) and the half-width of the 95% Student-t
interval of the mean (`<metric>_std`, `<metric>_ci95`; null for one seed). Without
confirm rows the front is drawn from single trials, each a point of n = 1.
"""

from __future__ import annotations

import json
import reprlib
import threading
import time
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from avdis import storage
from avdis.config import EMOTION_METRICS, EmotionMetric, S3Config
from avdis.errors import AvdisError, UsageError
from avdis.numbers import json_safe
from avdis.results import pareto

TRIALS = "trials.parquet"
PARETO = "pareto.json"
SPEC = "sweep.json"  # what the sweep was started with (written by avdis.tune.spec)

SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("sweep", pa.string()),
    ("method", pa.string()),
    ("weight", pa.float64()),  # null for the baselines
    ("status", pa.string()),  # RUNNING | TERMINATED | STOPPED | ERROR
    ("stop_reason", pa.string()),  # completed | early_stopped_at_epoch_N | error
    ("error", pa.string()),
    ("emotion_acc", pa.float64()),  # final, test split
    ("emotion_uar", pa.float64()),
    ("leakage", pa.float64()),  # MLP probe, normalised (headline)
    ("leakage_linear", pa.float64()),  # logistic-regression probe
    ("speaker_acc", pa.float64()),
    ("probe_acc", pa.float64()),
    ("probe_chance", pa.float64()),
    ("emotion_chance", pa.float64()),  # accuracy's chance: the test clips' majority rate
    ("emotion_uar_chance", pa.float64()),  # UAR's: 1 / the emotions of the test clips
    # final, validation split: what the sweep selects on (`config.selection` of its sweep.emotion_metric: one of the
    # two emotion columns, and val_leakage)
    ("val_emotion_acc", pa.float64()),
    ("val_emotion_uar", pa.float64()),
    ("val_leakage", pa.float64()),
    ("disentanglement", pa.float64()),  # 1 - leakage / leakage(multitask, same seed)
    ("best_emotion_acc", pa.float64()),  # the best of each over the epochs the trial reported, test split: each
    ("best_emotion_uar", pa.float64()),  # emotion metric's, whichever the sweep chooses on (null in a table of an
    ("best_leakage", pa.float64()),  # avdis before best_emotion_uar), and the lowest leakage
    ("epochs", pa.int64()),  # trained so far
    ("probed_epoch", pa.int64()),  # the epoch its metrics are of: its last that ran the leakage probe (`epochs` once
    # finished); a running trial probes only at MO-ASHA's rungs and its last epoch. Null: unknown (an earlier table)
    ("skipped_clips", pa.int64()),  # the most train clips an epoch of it went without (damaged or unreadable
    # shards, within data.loader.max_skip_rate); null: none reported (a table before it)
    ("eval_skipped_clips", pa.int64()),  # clips missing from the evaluation its metrics are of (`probed_epoch`'s)
    ("order", pa.int64()),  # completion order (null while running)
    ("lr", pa.float64()),
    ("emb_dim", pa.int64()),
    ("seed", pa.int64()),
    ("split_id", pa.string()),
    ("manifest_hash", pa.string()),
    ("params", pa.string()),  # JSON: the sampled parameters
    ("config_id", pa.string()),  # hash of params without train.seed (nor other methods' weights): one configuration
    ("role", pa.string()),  # search | confirm (a front configuration re-trained with another seed)
    ("config", pa.string()),  # JSON: the trial's whole config
    ("wall_s", pa.float64()),
    ("train_s", pa.float64()),  # in training steps
    ("work_s", pa.float64()),  # in epochs: steps, embedding pass, evaluation, probe (an epoch run again counts once)
    ("updated_at", pa.float64()),  # unix time of the row's last change
])
COLUMNS = SCHEMA.names
SEARCH, CONFIRM = "search", "confirm"
# the error of a trial the killed driver started after Tune's last save, closed when its experiment ends (no failure)
LOST = ("started when the driver was killed, before Tune saved its experiment state; Tune did not resume it "
        "(its searcher drew another trial in its place)")


def failed(trials: pd.DataFrame) -> pd.Series:
    """Which trials ended in an error of their own: a lost one (LOST) is none, Tune drew another in its place."""
    return (trials["status"] == "ERROR") & (trials.get("error") != LOST)


def ended(trials: pd.DataFrame, role: str) -> pd.DataFrame:
    """The trials of `role` (a row recorded without one is the search's) that ended: finished, stopped by the
    scheduler, or failed (`failed`); not one still running, nor one lost with its driver."""
    mine = trials[trials["role"].fillna(SEARCH) == role]
    return mine[mine["order"].notna() | failed(mine)]


def failures_said(trials: pd.DataFrame, sweep_url: str) -> str | None:
    """How many trials failed and what the front stands on, as `avdis report` notes it and a sweep ending with failed
    trials says it (None where none failed). One wording for both: they said it in two, each kept apart."""
    n = int(failed(trials).sum())
    if not n:
        return None
    counted = int((trials["error"] != LOST).sum())  # a lost trial is neither failed nor counted: another took its place
    # by the trials that finished, not by failed against counted: a live sweep's table with one trial failed and the
    # rest running was said to have a front standing on trials that finished, of which there were none
    finished = (trials["order"].notna() & ~failed(trials)).any()
    rest = ("the front and report stand on the trials that finished" if finished else
            "no trial finished, so the front and report are empty")
    return (f"{n} of {counted} trial{'s' if counted > 1 else ''} failed; {rest}. Each row of "
            f"{storage.join(sweep_url, TRIALS)} holds its error.")


def skips_said(trials: pd.DataFrame) -> str | None:
    """How many trials trained or were measured without clips of damaged or unreadable shards (under a
    data.loader.max_skip_rate that let them), as `avdis report` notes it and a sweep says it at its end (None where
    none did). Each trial's epoch lines counted them, in its own log; the sweep's last words and its report said
    nothing."""
    counts = trials[["skipped_clips", "eval_skipped_clips"]].astype(float).fillna(0)
    short = counts.gt(0).any(axis=1) & (trials["status"] != "ERROR")  # failed or lost: no result to doubt
    if not short.any():
        return None
    n, (train, evaluated) = int(short.sum()), (int(counts.loc[short, c].max()) for c in counts)
    return (f"{n} trial{'s' if n > 1 else ''} went without clips of damaged or unreadable shards, as "
            f"data.loader.max_skip_rate let {'them' if n > 1 else 'it'}: up to {train} train "
            f"clip{'s' if train != 1 else ''} an epoch, and {evaluated} missing from the metrics and the probe "
            f"(skipped_clips and eval_skipped_clips in {TRIALS}), so their numbers are of fewer clips than the shards "
            "hold. Make the shards again (`avdis preprocess --force`; or, where storage did not hand them over, check "
            "it) and start a new sweep to measure on every clip")


def stopped(trials: pd.DataFrame) -> pd.Series:
    """Which trials the scheduler stopped at a rung (finished, STOPPED): their metrics are of fewer epochs, on no
    front (`trained_longest`)."""
    return trials["order"].notna() & (trials["status"] == "STOPPED")


def completed(trials: pd.DataFrame) -> pd.Series:
    """Which trials finished by training all their epochs: finished (an `order`), less those `stopped` at a rung.
    pareto.json's `n_completed` and the page's header count these, its `n_stopped` and the header the others."""
    return trials["order"].notna() & ~stopped(trials)


OBJECTIVES = list(pareto.OBJECTIVES)
SPREAD = "error bars: 95% Student-t interval of the seed mean (mean ± t(0.975, n-1)·std/√n, std with ddof 1)"


def point_metrics(axes: pareto.Axes = pareto.ACC) -> tuple[str, ...]:
    """The metrics a front point gives, each a mean over its seeds: the report's, and those it was chosen on."""
    return ("emotion_acc", "leakage", "emotion_uar", "disentanglement", *axes.chosen)


def point_columns(axes: pareto.Axes = pareto.ACC) -> list[str]:
    """A front point's columns: who it is, and each of its `point_metrics` with its seeds' spread."""
    return ["config_id", "trial_id", "method", "weight", "n", "seeds", "trials", "epochs",
            *(f"{k}{s}" for k in point_metrics(axes) for s in ("", "_std", "_ci95"))]


ANY_POINT_COLUMNS = list(dict.fromkeys(c for m in EMOTION_METRICS for c in point_columns(pareto.axes(m))))


class _Written(BaseModel):
    """Part of pareto.json as `summarize` writes it: types as written (strict: "0.5" is text, not a number), numbers
    finite (written as null otherwise), unknown keys ignored. Every key may be missing: a summary written by an
    earlier avdis lacks the ones added since (selected_on, n_running, n_stopped), and the pages draw without them."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class _PointIds(_Written):
    config_id: str | None = None
    trial_id: str | None = None
    method: str | None = None
    seeds: list[float | None] | None = None  # a seed column with a null is float: 1.0
    trials: list[str] | None = None


FrontPoint = create_model("FrontPoint", __base__=_PointIds,  # the rest of any point_columns: numbers or null
                          **{c: (float | None, None) for c in ANY_POINT_COLUMNS if c not in _PointIds.model_fields})


class HistoryStep(_Written):
    trial_id: str  # the pages index these three (and `stopped`, where there)
    completed: int  # written before `stopped`: it counted the stopped trials too, as n_completed did
    stopped: int | None = None
    hypervolume: float


class Reference(_Written):  # the emotion metric's (one of the two) and leakage's
    emotion_acc: float | None = None
    emotion_uar: float | None = None
    leakage: float | None = None


class Baseline(Reference):
    trials: list[str] | None = None


class Summary(_Written):
    """pareto.json, checked where it is read (`read_pareto`), so no page meets a value of another type."""

    sweep: str | None = None
    objectives: dict[str, Literal["max", "min"]] | None = None
    reference: Reference | None = None
    front: list[str] | None = None
    front_basis: Literal["seed_mean", "trial"] | None = None
    selected_on: Literal["val", "test"] | None = None
    unvalidated: list[str] | None = None
    front_points: list[FrontPoint] | None = None
    spread: str | None = None
    hypervolume: float | None = None
    hypervolume_history: list[HistoryStep] | None = None
    n_trials: int | None = None
    n_completed: int | None = None  # written before n_stopped: it counted the stopped trials too
    n_stopped: int | None = None
    n_failed: int | None = None
    n_running: int | None = None
    n_confirm: int | None = None
    baseline: Baseline | None = None
    updated_at: float | None = None


class ResultsError(AvdisError):
    """A sweep path that cannot be read; the message names it."""


class NoSuchSweep(ResultsError, UsageError):
    """A sweep path given by the user where no sweep folder is: bad input (exit 2), as a folder holding no sweep."""

    exit_code = 2


def empty_trials() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts; missing keys, NaN and infinities become null) -> a table with the schema."""
    frame = pd.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows], columns=COLUMNS)
    frame = frame.replace([np.inf, -np.inf], np.nan)
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


def write_trials(sweep_url: str, rows: list[dict[str, Any]], s3: S3Config | None = None) -> pd.DataFrame:
    """Build the table from rows, disentanglement included, write it; return it (the one build per write)."""
    frame = disentangled(to_table(rows).to_pandas())
    storage.write_parquet(storage.join(sweep_url, TRIALS), pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), s3)
    return frame


def check_folder(sweep_url: str, s3: S3Config | None = None) -> None:
    """NoSuchSweep unless `sweep_url` is a folder (a file given for it, trials.parquet say, is named as one, on S3
    too: there it was told to hold no trials.parquet)."""
    if not storage.exists(sweep_url, s3):
        storage.check_bucket(sweep_url, s3)  # a missing bucket is named as one, not as a missing folder in it
        raise NoSuchSweep(f"{sweep_url}: no such sweep folder; pass <storage>/<sweep name> of a sweep that has started")
    fs, path = storage.filesystem(sweep_url, s3)
    if fs.isfile(path):  # fsspec's isfile says False for what it cannot tell
        raise NoSuchSweep(f"{sweep_url}: a file, not a sweep folder; pass <storage>/<sweep name>, the folder holding "
                          f"{TRIALS}")


SWEEPS_NAMED = 8  # the most sweeps `sweeps_under` names: a storage of hundreds named a few is enough to go on
FOLDERS_LOOKED_IN = 64  # the most folders it looks in (two requests each on S3)


def sweeps_under(url: str, s3: S3Config | None = None) -> str:
    """Where `url` is no sweep folder: the words naming the sweeps directly under it (folders holding TRIALS or SPEC),
    as `avdis report` and `avdis dashboard` say it, or "" for none. A sweep.storage given for <storage>/<name> (its
    sweeps side by side there) was told only that it held no sweep. It looks in folders in name order until it has
    SWEEPS_NAMED, or has looked in FOLDERS_LOOKED_IN, and says where it stopped short."""
    folders = storage.list_files(url, s3=s3)
    found: list[str] = []
    looked = 0
    for folder in folders[:FOLDERS_LOOKED_IN]:
        looked += 1
        if any(storage.exists(storage.join(folder, name), s3) for name in (TRIALS, SPEC)):
            found.append(folder)
            if len(found) == SWEEPS_NAMED:
                break
    if not found:
        return ""
    names = ", ".join(folder.rsplit("/", 1)[-1] for folder in found)
    left = len(folders) - looked
    more = f" (of its first {looked} folders; {left} more not looked in)" if left else ""
    return (f"; it holds the sweep{'s' if len(found) > 1 else ''} {names}{more}: pass one of them, e.g. {found[0]}")


def read_trials(sweep_url: str, s3: S3Config | None = None) -> pd.DataFrame:
    """The trials table; empty (with columns) when the sweep has no results yet.

    Raises ResultsError when the sweep folder itself does not exist or cannot be read.
    """
    check_folder(sweep_url, s3)
    url = storage.join(sweep_url, TRIALS)
    if not storage.exists(url, s3):
        return empty_trials()
    try:
        table = storage.read_parquet(url, s3)
    except (pa.ArrowInvalid, OSError) as exc:  # a foreign or damaged file: say so, don't crash readers
        raise ResultsError(f"{url}: not a readable trials table ({exc}); avdis writes it whole, so it was cut short "
                           "or replaced elsewhere: copy it again whole (a running sweep rewrites it with its next "
                           "result)") from exc
    return _checked(table, url)


REQUIRED = ("trial_id", "method", "status", *OBJECTIVES)
IN_UNIT = ("emotion_acc", "emotion_uar", "speaker_acc", "probe_acc", "probe_chance", "emotion_chance",
           "emotion_uar_chance", "val_emotion_acc", "val_emotion_uar", "best_emotion_acc",
           "best_emotion_uar")  # in [0, 1]
AT_MOST_ONE = ("leakage", "leakage_linear", "val_leakage", "best_leakage")  # (acc - chance) / (1 - chance) <= 1;
# below 0 where a probe does worse than chance, but finite: -inf only where chance is 1, where leakage is undefined


def _checked(table: pa.Table, url: str) -> pd.DataFrame:
    """The table in SCHEMA's types, with disentanglement worked out from it again, or a ResultsError naming what
    is wrong: a foreign table (a manifest copied in), a column of another type (accuracy as text), an accuracy
    given in percent, a trial twice. Read as it was, each gave a wrong front with exit 0, or a traceback."""
    missing = [name for name in REQUIRED if name not in table.column_names]
    if missing:
        raise ResultsError(f"{url}: not a trials table (no column {', '.join(missing)})")
    columns = {}
    for field in SCHEMA:
        if field.name not in table.column_names:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
            continue
        try:
            columns[field.name] = table.column(field.name).cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ResultsError(f"{url}: column {field.name} is {table.schema.field(field.name).type}, not "
                               f"{field.type} ({exc})") from None
    df = pa.table(columns, schema=SCHEMA).to_pandas()
    for name in IN_UNIT:
        bad = df[(df[name] < 0) | (df[name] > 1)]
        if len(bad):
            raise ResultsError(f"{url}: {name} of trial {bad['trial_id'].iloc[0]} is {bad[name].iloc[0]}, outside "
                               "[0, 1] (a share, not a percentage)")
    for name in AT_MOST_ONE:
        bad = df[df[name] > 1]
        if len(bad):
            raise ResultsError(f"{url}: {name} of trial {bad['trial_id'].iloc[0]} is {bad[name].iloc[0]}, above 1, "
                               "the most a normalised leakage can be (a share, not a percentage)")
        bad = df[df[name] == -np.inf]
        if len(bad):  # read on, it counted as leakage 0 on the front, and as an axis limit it crashed pareto.png
            raise ResultsError(f"{url}: {name} of trial {bad['trial_id'].iloc[0]} is -inf, which no probe reads (its "
                               "label-only chance was 1, where leakage is undefined); leave the value empty")
    done = df["status"].isin(["TERMINATED", "STOPPED"])
    placed = df["order"].notna() & df[OBJECTIVES].notna().all(axis=1)  # what fronts and baselines are drawn from
    for name, lacking, but in (("order", done & df["order"].isna(), "the trial finished"),
                               ("epochs", placed & df["epochs"].isna(), "the trial has a result and an order")):
        if lacking.any():  # read on, the trial fell out of every front and baseline: an empty front, exit 0
            raise ResultsError(f"{url}: {name} of trial {df['trial_id'][lacking].iloc[0]} is empty, but {but} "
                               f"(status {df['status'][lacking].iloc[0]}); fronts are drawn from the trials trained "
                               f"longest, in completion order: fill in {name}, or leave the trial out")
    # a table written before `probed_epoch`: a finished trial's metrics are of its last epoch, which always probes
    df["probed_epoch"] = df["probed_epoch"].fillna(df["epochs"].where(df["order"].notna()))
    twice = df["trial_id"][df["trial_id"].duplicated()].unique().tolist()
    if twice:
        raise ResultsError(f"{url}: trial_id {', '.join(map(str, twice[:5]))} on more than one row; a table of one "
                           "sweep has each trial once (two tables appended?)")
    return disentangled(df)


# A sweep trial's multitask reference: the same split (another fold puts trials on other speakers, judged by another
# probe) and seed; without one on its split a trial has no disentanglement. A confirming seed's: the same split.
SAME_RUN = ("split_id", "seed")


def disentangled(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a sweep's table with its disentanglement: each search trial against the multitask baseline of its
    run (SAME_RUN), each confirming seed against its split's. Both the write and the read use it: the write measured
    a confirming seed against a search trial of the same seed number, so the sweep's own pareto.json and its views
    gave the confirmed points another disentanglement than `avdis report` rebuilt from the same table."""
    baseline = baseline_trials(df)
    out = add_disentanglement(df, by=SAME_RUN, baseline=baseline)
    confirm = (df["role"] == CONFIRM).to_numpy()
    if confirm.any():  # the search's seeds hold no reference for a confirming seed: its split's, whatever the seed
        out.loc[confirm, "disentanglement"] = add_disentanglement(
            df[confirm], by=("split_id",), baseline=baseline)["disentanglement"]
    return out


def add_disentanglement(df: pd.DataFrame, by: tuple[str, ...] = ("seed",), min_baseline: float = 0.0,
                        baseline: pd.DataFrame | None = None) -> pd.DataFrame:
    """A copy with disentanglement = 1 - leakage / leakage(multitask baseline of the same `by` group).

    The baseline rows are `baseline` (a sweep's: `baseline_trials`), else df's multitask rows (runs that all
    trained to the end, as the science benchmark's). A group without a baseline takes the mean baseline of its
    wider group (`by` less its last key; the whole table for one key). A baseline at or below 0, or under
    `min_baseline`, gives none: a ratio to a baseline that barely leaks measures noise.
    """
    df = df.copy()
    keys = list(by)
    rows = df[df["method"] == "multitask"] if baseline is None else baseline
    base = rows[rows["leakage"].notna()].groupby(keys, dropna=False)["leakage"].mean()  # no split_id: one table
    ref = _lookup(df, base.rename("ref").reset_index(), keys)
    if ref.isna().any() and len(base):
        wider = keys[:-1]
        fallback = (pd.Series(base.mean(), index=df.index) if not wider else
                    _lookup(df, base.groupby(level=wider, dropna=False).mean().rename("ref").reset_index(), wider))
        ref = ref.fillna(fallback)
    valid = ref.notna() & (ref > 0) & (ref >= min_baseline)
    df["disentanglement"] = np.where(valid, 1.0 - df["leakage"] / ref.where(valid, 1.0), np.nan)
    return df


def _lookup(df: pd.DataFrame, refs: pd.DataFrame, keys: list[str]) -> pd.Series:
    """`refs["ref"]` for each row of df, matched on keys (NaN where none matches), indexed like df."""
    matched = df[keys].merge(refs, on=keys, how="left")["ref"]
    return pd.Series(matched.to_numpy(float), index=df.index)


def _keyed(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with their configuration's key: a trial without one (a table of an earlier avdis) is its own."""
    return df.assign(config_id=df["config_id"].fillna(df["trial_id"]))


def _finished(df: pd.DataFrame, axes: pareto.Axes = pareto.ACC) -> pd.DataFrame:
    """Completed or early-stopped trials with both objectives, configurations keyed."""
    done = df[df["order"].notna()].dropna(subset=list(axes.measured)).sort_values("order", kind="stable")
    return _keyed(done).assign(role=done["role"].fillna(SEARCH))


def trained_longest(done: pd.DataFrame) -> pd.Series:
    """Which finished trials count for fronts and baselines: those trained longest. A trial stopped at an early
    rung has metrics from fewer epochs, and its low leakage is often just less training: on a front it stood for a
    trade-off its configuration does not give at full length (and padded the hypervolume), as a baseline it made
    every method look leakier. One the scheduler stopped (STOPPED) never counts: until the sweep's first trial
    had trained all its epochs, the longest finished ones were those stopped at a rung, and they were the front."""
    return (done["epochs"] == done["epochs"].max()) & (done["status"] != "STOPPED")


def baseline_trials(df: pd.DataFrame, axes: pareto.Axes = pareto.ACC) -> pd.DataFrame:
    """The multitask trials a sweep is measured against: the search's, finished (a running trial's values are
    mid-training) and trained as long as the longest finished trials of any method, which are what the front holds.
    Where MO-ASHA stopped every multitask trial at a rung there is none: a baseline of fewer epochs leaks less
    because it learned less, and every full-length method measured against it read less disentangled than it is.
    Confirming seeds are not: they re-train the front, so a multitask configuration among them is there because it
    leaked least, and only when it made the front (a confirmed point's disentanglement then hung on whether it had)."""
    done = _finished(df, axes)
    multitask = done[trained_longest(done)]
    return multitask[(multitask["method"] == "multitask") & (multitask["role"] == SEARCH)]


def selected_on(done: pd.DataFrame, axes: pareto.Axes = pareto.ACC) -> tuple[str, ...]:
    """The columns a front is chosen on: the validation clips' (`axes.chosen`) when a finished trial has them, or
    none has finished (a sweep of today, in its first minutes or with every trial failed: said to choose on test, its
    page marked the test columns as chosen on), else the test clips' (a table recorded before avdis selected on
    validation, whose trials have none). Those finished without them are then on no front (`unvalidated`): one of
    them chose the whole front on test."""
    chosen = list(axes.chosen)
    has = set(chosen) <= set(done.columns) and done[chosen].notna().all(axis=1).any()
    return axes.chosen if has or not len(done) else axes.measured


def selectable(done: pd.DataFrame, on: tuple[str, ...]) -> pd.Series:
    """Which finished trials have the numbers a front is chosen `on`."""
    return done[list(on)].notna().all(axis=1)


def unvalidated(df: pd.DataFrame, axes: pareto.Axes = pareto.ACC) -> list[str]:
    """The finished trials left off the front for want of validation numbers while others have them: of those a front
    counts (`trained_longest`), as one stopped at a rung is on no front whatever its numbers. No sweep of
    today's records one: its recorder ends a trial whose validation numbers are not finite in ERROR, and it refuses to
    resume a sweep an avdis that chose on test started (`spec.check_spec`). They are rows of such an avdis in a table
    put together by hand with today's, which `avdis report` reads as any other."""
    done = _finished(df, axes)
    return done["trial_id"].astype(str)[trained_longest(done) & ~selectable(done, selected_on(done, axes))].tolist()


def unvalidated_said(ids: list[str], axes: pareto.Axes = pareto.ACC) -> str | None:
    """The `unvalidated` trials (pareto.json's), as `avdis report` notes them and the pages show them (None: none)."""
    if not ids:
        return None
    shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    return (f"{len(ids)} finished trial{'s have' if len(ids) > 1 else ' has'} no validation numbers ("
            f"{' or '.join(axes.chosen)}: rows of an avdis before validation selection, or edited) and "
            f"{'are' if len(ids) > 1 else 'is'} on no front, which is chosen on the validation numbers of the "
            f"others: {shown}")


def search_front(df: pd.DataFrame, axes: pareto.Axes = pareto.ACC) -> pd.DataFrame:
    """The search's front at full length (its trials trained longest), chosen on `selected_on` among the trials that
    have those numbers: its first trial per configuration, in completion order; what `sweep.confirm_seeds`
    re-trains."""
    finished = _finished(df, axes)
    on = selected_on(finished, axes)
    done = finished[finished["role"] == SEARCH]
    done = done[trained_longest(done) & selectable(done, on)]
    return done[pareto.chosen(done, on)].drop_duplicates("config_id")


def seed_spread(values: pd.Series) -> dict[str, float | None]:
    """Mean, sample std and the 95% Student-t half-width of the mean (std and interval None for one value)."""
    # here: scipy.stats, about 0.6 s of CPU to import, is read for this quantile alone, and every reader of a sweep's
    # results (the sweep's driver, `avdis report`, the dashboard, each trial's process) imports this module
    from scipy import stats

    v = values.dropna().to_numpy(float)
    if len(v) == 0:
        return {"mean": None, "std": None, "ci95": None}
    if len(v) == 1:
        return {"mean": float(v[0]), "std": None, "ci95": None}
    std = float(np.std(v, ddof=1))
    return {"mean": float(v.mean()), "std": std, "ci95": float(stats.t.ppf(0.975, len(v) - 1) * std / np.sqrt(len(v)))}


def seed_means(done: pd.DataFrame, configs: pd.DataFrame, axes: pareto.Axes = pareto.ACC) -> pd.DataFrame:
    """One point per configuration of `configs` (its trial stands for it) from its seeds in `done` trained longest."""
    points = []
    for rep in configs.itertuples():
        runs = done[done["config_id"] == rep.config_id]
        runs = runs[runs["epochs"] == runs["epochs"].max()]
        runs = runs.drop_duplicates("seed")  # a configuration drawn again with the same seed is the same run, not n+1
        point = {"config_id": rep.config_id, "trial_id": rep.trial_id, "method": rep.method, "weight": rep.weight,
                 "n": len(runs), "seeds": runs["seed"].tolist(), "trials": runs["trial_id"].tolist(),
                 "epochs": runs["epochs"].max()}
        for key in point_metrics(axes):
            spread = seed_spread(runs.get(key, pd.Series(dtype=float)))  # a table made by hand may lack val columns
            point[key], point[f"{key}_std"], point[f"{key}_ci95"] = spread["mean"], spread["std"], spread["ci95"]
        points.append(point)
    return pd.DataFrame(points, columns=point_columns(axes))


def confirm_seeds(config: Any) -> float:
    """sweep.confirm_seeds in a row's `config` JSON; NaN where it holds none (a table of an earlier avdis, by hand)."""
    try:
        return float(json.loads(config)["sweep"]["confirm_seeds"])
    except (TypeError, ValueError, KeyError):
        return np.nan


def confirmations_ended(df: pd.DataFrame) -> set[str]:
    """The configurations whose confirming seeds have all ended (finished or failed): none running, and as many
    seeds started as the sweep asked for (sweep.confirm_seeds, in their rows' config; for a table without it, as
    many as any configuration has). A confirmation not started has no row yet: counted against the most any
    configuration had, a sweep stopped when each had ended one seed and none had started the next read as
    confirmed, with means of one seed, for good. One that waits is off the front: a lucky seed of three could push
    a configuration confirmed at every seed off it, while the sweep runs, or for good after an interrupt. Seeds, not
    rows: a seed the killed driver had started after Tune's last save is started again on resume, under a new trial
    id, and its first row counted as one more seed took every other configuration off the front."""
    rows = _keyed(df[df["role"] == CONFIRM])
    started = rows.groupby("config_id")["seed"].nunique()
    if not len(started):
        return set()
    running = rows[rows["status"] == "RUNNING"].groupby("config_id").size().reindex(started.index, fill_value=0)
    asked = rows["config"].map(confirm_seeds).groupby(rows["config_id"]).max().reindex(started.index)
    return set(started.index[(running == 0) & (started >= asked.fillna(started.max()))])


def summarize(df: pd.DataFrame, sweep: str, axes: pareto.Axes = pareto.ACC) -> dict[str, Any]:
    """The content of pareto.json for a trials table.

    `hypervolume_history` follows the search (single trials in completion order); `front`,
    `front_points` and `hypervolume` come from the confirming seeds' means once confirmation rows exist. Only
    trials trained longest are on a front (`trained_longest`). A front is chosen on the validation clips' numbers
    (`selected_on`) and its points and hypervolume are their test numbers: chosen on the test numbers themselves, a
    front stood where the test set's noise had been kind. The emotion metric is `axes`' (the sweep's
    `sweep.emotion_metric`, `axes_of`), its chance the box's corner. Its shape is `Summary`, which `read_pareto` checks.
    """
    chance = float(df[axes.chance].dropna().max()) if df[axes.chance].notna().any() else 0.0
    done = _finished(df, axes)
    on = selected_on(done, axes)
    searched = done[done["role"] == SEARCH]
    search = pareto.front_of(searched, chance, counted=trained_longest(searched), on=on, stopped=stopped(searched),
                             measured=axes.measured)
    # any confirming row, not only a finished one: while every confirming seed ran (the confirmation's first minutes,
    # or a driver killed then) or once each had failed, the front was the search's single trials (front_basis
    # "trial"), the lucky seeds the confirmation is there to discount, where a configuration waits off it
    confirmed = bool((df["role"] == CONFIRM).any())
    if confirmed:
        # the confirming seeds' means only: the search trial is on the search's front because its seed was lucky
        # as much as because its configuration is good, and counted in, its luck stayed in the mean
        points = seed_means(done[done["role"] == CONFIRM], search_front(df, axes), axes)
        points = points[(points["n"] > 0) & points["config_id"].isin(confirmations_ended(df)) & selectable(points, on)]
        front = points[pareto.chosen(points, on)]
        hv = pareto.hypervolume(front[axes.emotion], front["leakage"], chance)
    else:
        singles = done.assign(config_id=done["trial_id"])
        front = seed_means(singles, singles[singles["trial_id"].isin(search.trial_ids)], axes)
        hv = search.hypervolume
    baseline = baseline_trials(df, axes)
    return {
        "sweep": sweep,
        "objectives": dict(zip(axes.measured, ["max" if m else "min" for m in pareto.MAXIMISE])),
        "reference": {axes.emotion: chance, "leakage": 1.0},
        "front": front["trial_id"].tolist(),
        "front_basis": "seed_mean" if confirmed else "trial",
        "selected_on": "val" if on == axes.chosen else "test",
        "unvalidated": unvalidated(df, axes),
        "front_points": front.to_dict("records"),
        "spread": SPREAD,
        "hypervolume": hv,
        "hypervolume_history": search.history,
        "n_trials": int(len(df)),
        "n_completed": int(completed(df).sum()) if len(df) else 0,
        "n_stopped": int(stopped(df).sum()) if len(df) else 0,
        # a lost trial is no failure: Tune drew another in its place
        "n_failed": int(failed(df).sum()) if len(df) else 0,
        "n_lost": int((df["error"] == LOST).sum()) if len(df) else 0,
        "n_running": int((df["status"] == "RUNNING").sum()) if len(df) else 0,
        "n_confirm": int((df["role"] == CONFIRM).sum()) if len(df) else 0,
        "baseline": (
            {axes.emotion: float(baseline[axes.emotion].mean()), "leakage": float(baseline["leakage"].mean()),
             "trials": baseline["trial_id"].tolist()}
            if len(baseline) else None
        ),
        "updated_at": time.time(),
    }


def write_pareto(sweep_url: str, summary: dict[str, Any], s3: S3Config | None = None) -> None:
    body = json.dumps(json_safe(summary), indent=1, allow_nan=False)
    storage.write_bytes(storage.join(sweep_url, PARETO), body.encode(), s3)


def read_pareto(sweep_url: str, s3: S3Config | None = None) -> dict[str, Any] | None:
    """The sweep's summary (pareto.json), checked against `Summary`; None before it is written."""
    url = storage.join(sweep_url, PARETO)
    if not storage.exists(url, s3):
        return None
    rebuild = f"rebuild it from {TRIALS} with `avdis report {sweep_url}`"
    try:
        summary = json.loads(storage.read_bytes(url, s3))
    except ValueError as exc:  # written whole by avdis, so damaged elsewhere
        raise ResultsError(f"{url}: not readable JSON ({exc}); {rebuild}") from None
    if not isinstance(summary, dict):  # JSON, but not a summary: the readers' .get() crashed with a traceback
        raise ResultsError(f"{url}: holds a JSON {type(summary).__name__}, not a sweep summary (an object); {rebuild}")
    try:
        Summary.model_validate(summary)
    except ValidationError as exc:  # e.g. a point's emotion_acc as text: the pages crashed on it with a traceback
        err = exc.errors()[0]
        field = ".".join(map(str, err["loc"]))
        got = "" if err["type"] == "missing" else f" (got {reprlib.repr(err['input'])})"
        raise ResultsError(f"{url}: {field}: {err['msg']}{got}; not a sweep summary as avdis writes it, "
                           f"{rebuild}") from None
    return summary


RECORDING = threading.Lock()  # held by `record` while it writes the pair, and by a reader in its process that needs
# the two files of one write (`avdis.report.files.write_pages`, run in the sweep's report thread): each file is whole
# (atomic writes), but read while the recorder wrote, a table could be drawn with the summary of the write before it
# or after it


def record(sweep_url: str, rows: list[dict[str, Any]], sweep: str, s3: S3Config | None = None,
           emotion: EmotionMetric = "acc") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write trials.parquet and its pareto.json (on `emotion`'s axes) from the rows; return the table and the summary
    written. A reader holding `RECORDING` reads both before or both after."""
    with RECORDING:
        frame = write_trials(sweep_url, rows, s3)
        summary = summarize(frame, sweep, pareto.axes(emotion))
        write_pareto(sweep_url, summary, s3)
    return frame, summary


def axes_of(sweep_url: str, s3: S3Config | None = None) -> pareto.Axes:
    """The axes the sweep at `sweep_url` draws its front on: those of the emotion metric its sweep.json records it
    chooses on (`selection`, from `sweep.emotion_metric`); accuracy's where it names none (a sweep of an avdis before
    the setting). One that is no sweep record as avdis writes it (not JSON, no object with a `spec`, a `selection` of
    no metric this avdis knows: a newer avdis's, or edited) is refused, naming it: drawn on accuracy, a UAR sweep's
    front read as accuracy's, and `avdis report` wrote that over its pareto.json. Where there is none (results copied
    without it), the metric of the sweep's own pareto.json (`written_axes`)."""
    url = storage.join(sweep_url, SPEC)
    if not storage.exists(url, s3):
        return written_axes(sweep_url, s3)
    try:
        record = json.loads(storage.read_bytes(url, s3))
    except ValueError as exc:
        raise _unknown_metric(url, f"not readable JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
        raise _unknown_metric(url, "no sweep record (an object with the config the sweep started with under 'spec')")
    chose = record.get("selection")
    if chose is None:
        return pareto.ACC
    known = {m: list(pareto.axes(m).chosen) for m in EMOTION_METRICS}
    metric = next((m for m, names in known.items() if chose == names), None)
    if metric is None:
        told = "; ".join(f"{m}: {names}" for m, names in known.items())
        raise _unknown_metric(url, f"selection {reprlib.repr(chose)} is of no emotion metric this avdis knows ({told})",
                              "report it with the newer avdis that ran the sweep, or restore it from a copy where it "
                              "was edited")
    return pareto.axes(metric)


def _unknown_metric(url: str, why: str,
                    fix: str = "restore it from a copy (avdis writes it whole when the sweep starts)") -> ResultsError:
    """The refusal of a sweep.json `axes_of` cannot read the sweep's emotion metric from."""
    return ResultsError(f"{url}: {why}, so which emotion metric this sweep's front is drawn on "
                        f"(sweep.emotion_metric) is unknown; {fix}")


def written_axes(sweep_url: str, s3: S3Config | None = None) -> pareto.Axes:
    """The axes the pareto.json at `sweep_url` names (`summary_axes`): what the sweep drew its front on, where no
    sweep.json says (results copied without it were redrawn on accuracy, a UAR sweep's too). Accuracy's where there is
    no pareto.json, or one too damaged to read (`avdis report` rebuilds it and says what was wrong)."""
    try:
        return summary_axes(read_pareto(sweep_url, s3) or {})
    except ResultsError:
        return pareto.ACC


def summary_axes(summary: dict[str, Any]) -> pareto.Axes:
    """The axes a pareto.json was drawn on, by the emotion metric its `objectives` name (accuracy's where they name
    none: a summary of an avdis before `objectives`)."""
    named = set(summary.get("objectives") or {})
    return next((pareto.axes(m) for m in EMOTION_METRICS if pareto.axes(m).emotion in named), pareto.ACC)
