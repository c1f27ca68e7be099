"""Bad command-line input is refused through `avdis.cli.main`: exit 2, a message naming it, no work done."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from avdis.cli import READS, build_parser, main, parse
from avdis import config as C
from avdis.config import SynthConfig
from avdis.data import synth
from avdis import results, storage_lock


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """The smallest generated corpus: 2 speakers x 3 clips of half a second."""
    out = tmp_path_factory.mktemp("corpus")
    synth.generate(SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.5, seed=1), out)
    return str(out)


def refused(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI, assert exit 2 and that stderr holds every expected piece; return stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    for piece in expected:
        assert piece in err
    return err


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("yaml_text, overrides, expected", [
    ("method: adversarial\n", ["method.weight=1"],
     "method is a value (adversarial), not a section; write method: {name: adversarial}"),
    ("train: 5\n", ["train.strategy=single"], "train is a value (5), not a section; write train: {key: value}"),
    ("data:\n  synth: 3\n", ["data.synth.seed=1"], "data.synth is a value (3), not a section"),
    ("train:\n  epochs: 3\n", ["train.epochs.max=5"], "train.epochs is a value (3), not a section; it takes one "
                                                      "value, with no keys under it: give train.epochs=VALUE"),
])
def test_a_scalar_section_touched_by_an_override_is_refused(tmp_path, capsys, yaml_text, overrides, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    refused(capsys, ["train", "--config", str(cfg), *overrides], str(cfg), expected)


@pytest.mark.parametrize("method", ["nullspace", "adversarial"])
@pytest.mark.parametrize("weight", [".inf", "-.inf", ".nan"])
def test_a_non_finite_method_weight_is_refused(tmp_path, capsys, method, weight):
    refused(capsys, ["train", "--storage", str(tmp_path / "runs"), f"method.name={method}", f"method.weight={weight}"],
            "method.weight: Input should be a finite number")
    assert not (tmp_path / "runs").exists()


def test_overrides_may_come_before_and_between_options(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  emb_dim: 16\n")
    assert main(["model", "model.modality=audio", "--config", str(cfg), "model.emb_dim=32"]) == 0
    assert "modality=audio, emb_dim=32" in capsys.readouterr().out
    # the override after --storage is applied (and refused), not rejected as an unknown argument
    refused(capsys, ["train", "train.epochs=2", "--storage", str(tmp_path / "runs"), "train.epochs=0"],
            "train.epochs: Input should be greater than or equal to 1 (got 0)")
    with pytest.raises(SystemExit) as exc:
        main(["train", "train.epochs=2", "--bogus"])
    err = capsys.readouterr().err  # with the options avdis train takes (it gave the list of commands)
    assert exc.value.code == 2 and err.startswith("usage: avdis train [-h] [--workers WORKERS]"), err
    assert err.strip().endswith("avdis train: error: unrecognized arguments: --bogus"), err


# ------------------------------------------------------------------ preprocess


def preprocess(corpus: str, out: str, *flags: str) -> list[str]:
    return ["preprocess", "--corpus", "synthetic", "--src", corpus, "--out", out, "--no-ray", *flags]


@pytest.mark.parametrize("override", ["ray.autoscaling=true", "ray.cluster_file=cluster/aws.yaml"])
def test_preprocessing_on_a_local_ray_refuses_the_cluster_settings(corpus, tmp_path, capsys, monkeypatch, override):
    """`avdis preprocess ray.autoscaling=true` with no Ray to join built on the local Ray it started, as without it:
    only the check of outputs on a cluster that adds nodes reads it, and a local Ray adds none. Refused before any
    work; a config file's (a cluster config, run here) is left alone, and where the build joins a Ray it is read."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    blocker = tmp_path / "afile"  # past the check, the build stops at its next one
    blocker.write_text("not a folder")
    build = preprocess(corpus, str(blocker / "x"))[:-1]  # on Ray: without --no-ray
    setting = override.partition("=")[0]
    refused(capsys, [*build, override], f"{override}: {setting} describes a cluster that adds nodes, and the local "
            f"Ray this build starts (no ray.address or RAY_ADDRESS) adds none, so {setting} would change nothing")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override])))
    refused(capsys, [*build, "--config", str(in_file)], f"{blocker / 'x'}: not writable")
    refused(capsys, [*build, override, "ray.address=10.0.0.1:6379"], f"{blocker / 'x'}: not writable")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    refused(capsys, [*build, override], f"{blocker / 'x'}: not writable")
    # a local Ray named: the refusal says by what (it said "no ray.address or RAY_ADDRESS" where one was given)
    refused(capsys, [*build, override, "ray.address=local"],
            "the local Ray this build starts (ray.address=local) adds none")
    monkeypatch.setenv("RAY_ADDRESS", "local")
    refused(capsys, [*build, override], "the local Ray this build starts (RAY_ADDRESS=local) adds none")


@pytest.mark.parametrize("override", ["ray.autoscaling=true", "ray.cluster_file=cluster/aws.yaml"])
@pytest.mark.parametrize("command, work", [(["train"], "run"), (["sweep"], "sweep")])  # smoke.yaml: deepspeed
def test_training_on_a_local_ray_refuses_the_cluster_settings(tmp_path, capsys, monkeypatch, override, command, work):
    """`avdis train --strategy deepspeed ray.autoscaling=true` (or a sweep) with no Ray to join ran on the local Ray it
    started, which adds no nodes: the fit check judges its nodes whatever the setting says (`clusterfit`), and the
    check of outputs where nodes are added passes over it. Refused before any work, as preprocessing refuses it; a
    config file's (a cluster config, run here) is left alone, and where the command joins a Ray it is read."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(ROOT)  # ray.cluster_file is relative to the tree
    blocker = tmp_path / "afile"  # past the check, the command stops at its next one
    blocker.write_text("not a folder")
    argv = [*command, "--config", SMOKE, "--storage", str(blocker / "x")]
    setting = override.partition("=")[0]
    refused(capsys, [*argv, override], f"{override}: {setting} describes a cluster that adds nodes, and the local "
            f"Ray this {work} starts (no ray.address or RAY_ADDRESS) adds none, so {setting} would change nothing; "
            f"drop it, or give ray.address=<the cluster's> to {work} on it")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump({**yaml.safe_load(Path(SMOKE).read_text()), **C.parse_overrides([override])}))
    refused(capsys, [*argv[:-4], "--config", str(in_file), *argv[-2:]], str(blocker / "x"), ": not writable (")
    refused(capsys, [*argv, override, "ray.address=10.0.0.1:6379"], str(blocker / "x"), ": not writable (")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    refused(capsys, [*argv, override], str(blocker / "x"), ": not writable (")


@pytest.mark.timeout(300)
def test_a_worker_too_big_for_the_local_ray_is_refused_whatever_a_files_cluster_settings_say(tiny_corpus, tiny_shards,
                                                                                             tmp_path):
    """A config file's ray.autoscaling=true made the fit check pass over the local Ray the run started, which adds no
    nodes: `avdis train train.cpus_per_worker=64` on a machine of 2 CPUs waited forever for its worker (with
    ray.autoscaling=false it exits 2). Now it is refused on the local Ray's nodes, exit 2, naming it."""
    config = tmp_path / "autoscaling.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(Path(SMOKE).read_text()),
                                      "ray": {"autoscaling": True, "include_dashboard": False}}))
    ray_tmp = tempfile.mkdtemp(prefix="avr-fit-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": ray_tmp}
    try:
        done = subprocess.run([sys.executable, "-m", "avdis", "train", "--config", str(config),
                               f"data.src={tiny_corpus}", f"data.shards={tiny_shards}", "train.cpus_per_worker=64",
                               f"train.storage={tmp_path / 'runs'}"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=150)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 2, done.stderr[-3000:]
    assert ("avdis train: error: the local Ray this process started: one training worker needs {CPU: 64}"
            in done.stderr), done.stderr[-3000:]
    assert "A local Ray adds no nodes, whatever ray.autoscaling and ray.cluster_file say" in done.stderr


def test_a_data_synth_other_than_the_corpus_was_generated_with_is_refused_before_decoding(corpus, tmp_path, capsys):
    """Preprocessing reads the corpus at data.src as it is: `data.synth.identity_cues=off` made shards of a corpus with
    identity cues, said nothing, and training with that config refused them. The corpus's own settings pass."""
    out = tmp_path / "shards"
    made = "speakers: 2, emotions: 2, clips_per_speaker: 3, duration_s: 0.5, seed: 1"
    refused(capsys, [*preprocess(corpus, str(out)), f"data.synth={{{made}}}", "data.synth.identity_cues=off"],
            f"{corpus}: holds a corpus generated with other settings (data.synth.identity_cues: 'on' there, 'off' "
            "here); preprocessing reads it as it is")
    assert not out.exists()
    assert main([*preprocess(corpus, str(out)), f"data.synth={{{made}}}"]) == 0


def test_shard_size_zero_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "shards"
    refused(capsys, preprocess(corpus, str(out), "--shard-size", "0"), "--shard-size: ", "(got 0)")
    assert not out.exists()


@pytest.mark.parametrize("argv, flag, setting", [
    (["preprocess", "--out", "s3://bkt//x"], "--out", "data.shards"),
    (["preprocess", "--src", "S3://bkt/corpus"], "--src", "data.src"),
    (["train", "--workers", "0"], "--workers", "train.workers"),
    (["train", "--storage", "~nosuchuser-avdis/runs"], "--storage", "train.storage"),
    (["sweep", "--name", "a b"], "--name", "sweep.name"),
    (["synth", "--out", "corpus", "--speakers", "1"], "--speakers", "data.synth.speakers"),
])
def test_a_flags_bad_value_is_named_by_the_flag_given(tmp_path, capsys, monkeypatch, argv, flag, setting):
    """`avdis preprocess --out s3://b//x` was refused as `defaults + flags: data.shards: ...`, a setting the user had
    not typed. A flag's value is named by the flag; the same value given as an override, by its setting."""
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, argv, f"error: {flag}: ")
    assert setting + ":" not in err and "+ flags" not in err, err
    if argv[0] != "synth":  # synth takes its settings as flags only
        refused(capsys, [argv[0], f"{setting}={argv[argv.index(flag) + 1]}"], f"{setting}: ")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_is_refused_before_decoding(corpus, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "shards"
    refused(capsys, preprocess(corpus, str(out)), f"{out}: not writable", "pick an output folder")


@pytest.mark.parametrize("override", ["ray.address=127.0.0.1:1", "ray={include_dashboard: false}"])
def test_preprocessing_in_one_process_refuses_the_ray_settings_it_would_ignore(corpus, tmp_path, capsys, override):
    """`avdis preprocess --no-ray ray.address=...` decoded in this process, exit 0, as without the setting. Refused
    before any work; a config file's ray section (a cluster config's) is left alone: --no-ray chose this process."""
    out = tmp_path / "out"
    refused(capsys, [*preprocess(corpus, str(out)), override], f"{override}: --no-ray decodes in this process, "
            "without Ray, so ray.", "would change nothing; drop it, or drop --no-ray")
    assert not out.exists()
    in_file, blocker = tmp_path / "c.yaml", tmp_path / "afile"
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override])))
    blocker.write_text("not a folder")  # past the check, the build stops at its next one
    refused(capsys, [*preprocess(corpus, str(blocker / "x")), "--config", str(in_file)],
            f"{blocker / 'x'}: not writable")


def test_force_rebuilds_up_to_date_shards(corpus, tmp_path, capsys):
    out = str(tmp_path / "shards")
    assert main(preprocess(corpus, out)) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is False
    assert main(preprocess(corpus, out)) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True
    assert main(preprocess(corpus, out, "--force")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["up_to_date"] is False and summary["rebuilt_because"] == "forced"


# ------------------------------------------------------------------ report and dashboard


@pytest.mark.timeout(60)  # before the fix the dashboard served the empty folder for ever
@pytest.mark.parametrize("command", [["report"], ["dashboard", "--port", "0"]])
def test_a_folder_without_a_sweep_is_refused(tmp_path, capsys, command):
    folder = tmp_path / "not-a-sweep"
    folder.mkdir()
    refused(capsys, [command[0], str(folder), *command[1:]], str(folder), "no trials.parquet")
    assert list(folder.iterdir()) == [], "nothing may be written into it"
    table = folder / "trials.parquet"
    table.write_bytes(b"")  # the table given for its folder: was "no trials.parquet found" (report)
    refused(capsys, [command[0], str(table), *command[1:]], str(table), "a file, not a sweep folder")


def _sweep_folder(tmp_path: Path, where: str, request) -> str:
    return str(tmp_path / "sweep") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/sweeps/s"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_dashboard_waits_for_a_sweep_getting_ready(tmp_path, where, request):
    """A sweep holds its folder's lock while it makes its corpus and shards, before sweep.json: the dashboard refused
    that folder as holding no sweep, where the README says it serves the page while the sweep runs."""
    from avdis import storage_lock
    from avdis.report.dashboard import LiveReport

    url = _sweep_folder(tmp_path, where, request)
    with storage_lock.exclusive(url, "sweep driver"):
        page = LiveReport(url, None, 1.0)
    assert page.snapshot.summary["n_trials"] == 0 and page.snapshot.html


@pytest.mark.timeout(60)  # before the fix the dashboard served the folder for ever
@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_dashboard_refuses_a_folder_whose_sweep_ended_before_its_first_result(tmp_path, capsys, where, request):
    """A sweep refused after it took its lock, or killed before its first result, leaves only `.avdis-lock`, which no
    one holds: the dashboard took it for a sweep getting ready and waited "for the first result" for ever."""
    from avdis import storage, storage_lock

    url = _sweep_folder(tmp_path, where, request)
    with storage_lock.exclusive(url, "sweep driver"):
        pass
    assert storage.exists(storage.join(url, storage_lock.LOCK))
    refused(capsys, ["dashboard", url, "--port", "0"], f"{url}: no sweep is running or has started there",
            "no job holds its lock (.avdis-lock)", "start the sweep")


@pytest.mark.parametrize("command", ["report", "dashboard"])
def test_a_reader_refuses_overrides_it_would_ignore(tmp_path, capsys, command):
    """report and dashboard use only the s3 settings; train.epochs=3 was accepted and changed nothing."""
    sweep = str(tmp_path / "sweep")
    results.write_trials(sweep, [])
    for override in ("train.epochs=3", "sweep={name: x}"):
        refused(capsys, [command, sweep, override], override, "uses only the s3 settings")
    assert not Path(sweep, "pareto.html").exists()


def test_a_report_says_it_rebuilt_a_damaged_pareto_json(tmp_path, capsys):
    """`avdis report` on a finished sweep whose pareto.json was damaged (a field edited by hand) rebuilt it and said
    nothing (files.write_report's `rebuilt` went unprinted): a note on stderr names the file and field, exit 0."""
    from test_report import rows

    sweep = str(tmp_path / "sweep")
    _, summary = results.record(sweep, [r for r in rows() if r["status"] == "TERMINATED"], "demo")
    pareto = Path(sweep, "pareto.json")
    pareto.write_text(json.dumps({**json.loads(pareto.read_text()), "front": "t3"}))
    assert main(["report", sweep]) == 0
    err = capsys.readouterr().err
    assert f"avdis report: note: {pareto}: front: " in err and "; rebuilt it from trials.parquet" in err, err
    assert results.read_pareto(sweep)["front"] == summary["front"]
    assert main(["report", sweep]) == 0 and "rebuilt" not in capsys.readouterr().err  # a sound one: no note


@pytest.mark.parametrize("command, override, elsewhere", [
    ("train", "sweep.num_samples=8", "give it to avdis sweep"),
    ("model", "train.epochs=3", "give it to avdis train or avdis sweep"),
    ("preprocess", "train.epochs=3", "give it to avdis train or avdis sweep"),
    ("preprocess", "sweep={name: x}", "give it to avdis sweep"),
])
def test_commands_refuse_overrides_of_sections_they_do_not_read(tmp_path, capsys, command, override, elsewhere):
    """`avdis train sweep.num_samples=8` was accepted and changed nothing, as was a train setting given to
    preprocess or to `avdis model`: refused before any work, saying where it belongs."""
    out = tmp_path / "out"
    refused(capsys, [command, override, f"data.shards={out}", f"train.storage={out}" if command == "train" else
                     f"data.src={tmp_path}"], override, f"avdis {command} uses only the", elsewhere)
    assert not out.exists()


@pytest.mark.parametrize("override", ["data.loader.workers=8", "data.split.scheme=speaker_disjoint",
                                      "data={loader: {max_skip_rate: 0.5}}", "data.split={fold: 1, folds: 3}"])
def test_preprocess_refuses_the_data_settings_a_run_reads_its_shards_with(tmp_path, capsys, override):
    """Preprocessing reads the data settings that make the shards, not data.loader or data.split.scheme and .fold
    (chosen when training): `avdis preprocess ... data.loader.workers=8` was accepted, changed nothing and exited 0,
    and --help listed them among the settings it reads."""
    out = tmp_path / "out"
    err = refused(capsys, ["preprocess", override, f"data.shards={out}", f"data.src={tmp_path}"], override,
                  "avdis preprocess uses only the data.corpus, ", "would change nothing here (give it to avdis train")
    assert re.search(r"; data\.(loader|split\.scheme|split\.fold)[.a-z_]* would change", err), err
    assert not out.exists()


def test_model_counts_the_heads_of_the_shards_its_config_names(capsys, tiny_shards, tmp_path):
    """`avdis model --config` counted an example's heads (8 emotions, 24 speakers) even for a config naming shards
    whose corpus has its own (the tiny corpus: 4 and 6), so its counts were not the run's. Where the shards are there
    it counts theirs and says so; where they cannot be read it says why and counts the example's."""
    from avdis.model import multitask

    config = tmp_path / "mine.yaml"
    config.write_text(f"data:\n  shards: {tiny_shards}\nmodel:\n  emb_dim: 16\n")
    assert main(["model", "--config", str(config)]) == 0
    header, tiny = capsys.readouterr().out.splitlines()[:2]
    assert f"heads for the 4 emotions and 6 speakers of the shards at {tiny_shards}, emb_dim+1" in header
    cfg = C.load(str(config))
    counts = {sizes: multitask.describe_presets(cfg, *sizes).splitlines()[1] for sizes in ((4, 6), (8, 24))}
    assert tiny.split()[-1] == counts[4, 6].split()[-1] != counts[8, 24].split()[-1]
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.parquet").write_bytes(b"not parquet")
    assert main(["model", "--config", str(config), f"data.shards={damaged}"]) == 0
    out, err = capsys.readouterr()
    assert "heads for an example 8 emotions and 24 speakers" in out.splitlines()[0]
    assert f"avdis model: note: {damaged}: its shards' emotions, speakers and features not read (" in err
    assert err.rstrip().endswith("; the features counted are the config's, the heads an example's")


def test_model_counts_at_the_features_the_shards_its_config_names_were_made_with(capsys, tiny_shards, tmp_path):
    """Since it counted their heads, `avdis model --config` still counted at the config's data.features for a config
    naming shards made with others (another n_mels, window): a run on them has the shards' features, and refuses the
    config's. It counts at the shards', says which of the config's differ, and the header names the sizes it used."""
    from avdis.model import multitask

    config = tmp_path / "mine.yaml"
    config.write_text(f"data:\n  shards: {tiny_shards}\n  features: {{n_mels: 64, window_s: 2.0}}\nmodel:\n  "
                      "emb_dim: 16\n")
    made = C.load(str(config)).model_copy(update={"data": C.DataConfig(shards=tiny_shards)})  # n_mels 40, window 1 s
    assert main(["model", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    header, *rows = out.splitlines()
    assert f"n_mels=40, hop_ms=10, window_s=1, fps=8 and heads for the 4 emotions and 6 speakers of the shards at " \
           f"{tiny_shards}, emb_dim+1" in header
    theirs, configs = (multitask.describe_presets(c, 4, 6, "x").splitlines()[1:] for c in (made, C.load(str(config))))
    assert rows == theirs != configs
    assert f"avdis model: note: the shards at {tiny_shards} were made with other features than the config's: " \
           "data.features.n_mels=64 (made with 40), data.features.window_s=2 (made with 1); counted with theirs" in err
    assert main(["model", "--config", str(config), "data.shards=/nonexistent/shards"]) == 0  # no shards: the config's
    out, err = capsys.readouterr()
    assert "the config's n_mels=64, hop_ms=10, window_s=2, fps=8, heads for an example 8" in out and not err
    assert out.splitlines()[1:] == multitask.describe_presets(C.load(str(config))).splitlines()[1:]


@pytest.mark.parametrize("override, elsewhere", [
    ("data.loader.workers=8", "avdis train or avdis sweep"), ("data.src=/elsewhere", "avdis preprocess or avdis train"),
    ("model.preset=large", "avdis train or avdis sweep"), ("model.dropout=0.5", "avdis train or avdis sweep"),
    ("data={features: {face_size: 96}}", "avdis preprocess or avdis train"),
])
def test_model_refuses_the_settings_the_presets_sizes_do_not_depend_on(capsys, override, elsewhere):
    """`avdis model` took every data and model setting: `avdis model data.loader.workers=8` (or model.preset=large,
    when it lists every preset) was accepted and printed the same table, and preprocess's refusal of data.loader
    sent the user to `avdis model` too. Those that change a count are taken."""
    refused(capsys, ["model", override], override, "avdis model uses only the model.modality, ",
            f"would change nothing here (give it to {elsewhere}")
    refused(capsys, ["preprocess", "data.loader.workers=8"], "(give it to avdis train or avdis sweep)")
    counts = {}
    for overrides in ([], ["model.contours=false"], ["data.features.fps=4"], ["data.features.hop_ms=20"]):
        assert main(["model", "data.shards=/nonexistent/shards", *overrides]) == 0  # shards made here count theirs
        counts[" ".join(overrides)] = capsys.readouterr().out.split("\n", 1)[1]
    assert len(set(counts.values())) == len(counts), counts


@pytest.mark.parametrize("command", ["preprocess", "train", "sweep", "report", "dashboard"])
def test_s3_settings_are_refused_where_no_location_is_on_s3(tmp_path, capsys, monkeypatch, command):
    """`avdis preprocess --out bucket/shards s3.endpoint_url=...` (s3:// left out) wrote the shards into a local folder
    so named, exit 0, and s3.region given to `avdis report <local folder>` changed nothing. Refused before any work;
    with a location on S3 the command goes on, and a config file's s3 section (a cluster config's) is left alone."""
    monkeypatch.chdir(tmp_path)
    sweep = str(tmp_path / "sweep")
    results.write_trials(sweep, [])
    argv = {"preprocess": ["preprocess", "--no-ray", "--src", str(tmp_path), "--out", "bucket/shards"],
            "train": ["train", "--storage", "bucket/runs"], "sweep": ["sweep", "--storage", "bucket/sweeps"],
            "report": ["report", sweep], "dashboard": ["dashboard", sweep, "--port", "0"]}[command]
    refused(capsys, [*argv, "s3.endpoint_url=http://127.0.0.1:1"], "s3.endpoint_url=http://127.0.0.1:1: no location "
            "of this command is on S3 (", "), so s3.endpoint_url would change nothing; give the location as "
            "s3://bucket/prefix, or drop it")
    assert not (tmp_path / "bucket").exists() and not Path(sweep, "pareto.html").exists()
    in_file = tmp_path / "c.yaml"
    in_file.write_text("s3: {region: eu-west-1}\n")
    blocker = tmp_path / "afile"  # past the check, the command stops at its next one
    blocker.write_text("not a folder")
    argv = {"preprocess": ["preprocess", "--no-ray", "--src", str(tmp_path), "--out", str(blocker / "x")],
            "train": ["train", "--storage", str(blocker)], "sweep": ["sweep", "--storage", str(blocker)],
            "report": ["report", str(blocker)], "dashboard": ["dashboard", str(blocker), "--port", "0"]}[command]
    assert "no location" not in refused(capsys, [*argv, "--config", str(in_file)], str(blocker))


@pytest.mark.parametrize("command", ["train", "preprocess", "report"])
def test_a_misspelt_section_is_named_as_unknown_not_sent_to_another_command(tmp_path, capsys, command):
    """`avdis train trian.epochs=3` was told "trian would change nothing here (give it to avdis sweep)", which refuses
    it too: a section Config lacks is an unknown key, with the one it is nearest named."""
    argv = [command, str(tmp_path / "sweep")] if command == "report" else [command]
    err = refused(capsys, [*argv, "trian.epochs=3"], "trian: unknown key", "did you mean train?")
    assert "would change nothing" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["preprocess", "train", "sweep", "model"])
def test_help_lists_every_setting_it_reads_with_its_default(capsys, command):
    """The README names the settings most runs need; --help lists them all, so none is found only in avdis/config/, and
    a command that reads only some sections (`cli.READS`) lists only theirs."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    reads = READS.get(command, tuple(C.Config.model_fields))
    for key, field in C.settings(C.Config):
        default = field.get_default(call_default_factory=True)
        shown = json.dumps(default) if isinstance(default, (str, bool, int, float, type(None))) else ""
        assert (f"\n  {key} = {shown}" in out) == any(key == s or key.startswith(f"{s}.") for s in reads), key
    if command == "preprocess":  # the data settings that make shards, not those a run reads them with
        assert "data.split.folds" in out and "data.loader" not in out and "data.split.scheme" not in out
    if "train" in reads:
        assert "  train.lr_schedule = \"cosine\"  (cosine | constant)\n" in out
        assert "  train.zero_stage = 0  (0 <= x <= 3)\n" in out
        assert "nullspace 1..64; none for the others)" in out


@pytest.mark.parametrize("command", sorted(READS))
def test_help_examples_give_only_settings_the_command_reads(capsys, command):
    """`avdis model --help` gave train.epochs=3 method.name=adversarial as its examples, which it refuses."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    usage = capsys.readouterr().out.split("settings (YAML")[0]
    examples = re.findall(r"\b([a-z0-9_]+\.[a-z0-9_.]+)=", usage)
    assert examples and all(any(e == s or e.startswith(f"{s}.") for s in READS[command]) for e in examples), examples


@pytest.mark.parametrize("command", ["report", "dashboard"])
def test_a_readers_help_lists_the_s3_settings_it_takes(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "\n  s3.endpoint_url = null\n  s3.region = null\n" in out and "train.epochs" not in out


def test_a_command_lists_only_what_it_requires(capsys):
    """key=value overrides are optional; argparse listed them as required."""
    with pytest.raises(SystemExit):
        main(["report"])
    assert capsys.readouterr().err.strip().endswith("the following arguments are required: sweep")


@pytest.mark.parametrize("script", ["preprocess.py", "report.py", "sweep.py", "train.py"])
def test_a_jobs_usage_names_the_script_that_was_run(monkeypatch, capsys, script):
    """`python jobs/sweep.py --help` showed `usage: avdis sweep [-h] ...`, and a bad flag or setting `avdis sweep:
    error: ...`: a command the user had not run (and, without the package installed, cannot). They name the script,
    as argparse names one."""
    import runpy

    monkeypatch.syspath_prepend(str(ROOT / "jobs"))  # as `python jobs/x.py` puts its folder first, for `import _path`
    for argv, stream, first in ((["--help"], "out", f"usage: {script} [-h]"), (["--bogus"], "err", f"usage: {script}")):
        monkeypatch.setattr(sys, "argv", [f"jobs/{script}", *argv])
        with pytest.raises(SystemExit):
            runpy.run_path(str(ROOT / "jobs" / script), run_name="__main__")
        text = getattr(capsys.readouterr(), stream)
        assert text.startswith(first), text[:200]
    assert f"\n{script}: error: " in text, text[-300:]
    # a refusal of avdis's own (a setting's value) named `avdis sweep` too, where argparse's errors named the script
    monkeypatch.setattr(sys, "argv", [f"jobs/{script}", *(["runs/sweeps/x"] if script == "report.py" else []),
                                      "s3.region=[a]"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(ROOT / "jobs" / script), run_name="__main__")
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.startswith(f"{script}: error: ") and "s3.region" in err, err[:300]


def _synopses() -> dict[str, str]:
    """The README's synopsis of each command (its Commands section's first code block), by command."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return {line.split()[1]: line for line in block.splitlines() if line.startswith("avdis ")}


def test_the_readmes_synopsis_of_each_command_gives_its_flags_and_overrides_as_its_parser_takes_them():
    """The README's `avdis preprocess` lacked its key=value overrides, `avdis model` its --config and overrides,
    `avdis grafana push` its --folder-uid, and `avdis synth` showed its optional flags as required. Each line shows
    (its comment may name) every flag and no other, the optional ones in brackets, and overrides where it takes
    them. grafana's actions take different flags (push requires --url), so its brackets are not checked."""
    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    synopses = _synopses()
    assert sorted(synopses) == sorted(commands)
    for name, command in commands.items():
        line = synopses[name]
        shown = line.split("  #", 1)[0]  # what a comment says after it is not part of the usage
        flags = {a.option_strings[-1]: a.required for a in command._actions if a.option_strings and a.dest != "help"}
        assert set(re.findall(r"--[a-z][a-z-]*", line)) == set(flags), (name, line)
        depth, bracketed = 0, {}  # flag -> whether it is shown in brackets
        for token in re.findall(r"\[|\]|--[a-z][a-z-]*", shown):
            depth += {"[": 1, "]": -1}.get(token, 0)
            if token.startswith("--"):
                bracketed.setdefault(token, depth > 0)
        for flag, required in flags.items():
            if flag in bracketed and name != "grafana":  # else named in the comment alone
                assert bracketed[flag] != required, (name, flag, line)
        takes = any(a.dest == "overrides" for a in command._actions)
        assert bool(re.search(r"\[[\w.]*k=v \.\.\.\]", shown)) == takes, (name, line)


@pytest.mark.parametrize("action, flags, other", [
    ("export", ["--url", "http://127.0.0.1:1"], "push"), ("export", ["--overwrite"], "push"),
    ("export", ["--folder-uid", "f", "--token-env", "T"], "push"), ("push", ["--out", "dash.json"], "export")])
def test_grafana_refuses_the_other_actions_flags(tmp_path, capsys, monkeypatch, action, flags, other):
    """`avdis grafana export --url http://grafana:3000 --overwrite` wrote the file, exit 0, and pushed nothing; push
    took --out and wrote no file. Refused before any work, naming the action the flag belongs to."""
    monkeypatch.chdir(tmp_path)
    argv = ["grafana", action, *flags, *(["--url", "http://127.0.0.1:1"] if action == "push" else [])]
    refused(capsys, argv, f"{flags[0]} is a flag of `avdis grafana {other}`, not of {action}, so it would change "
            f"nothing here; drop it, or run `avdis grafana {other}`")
    assert list(tmp_path.iterdir()) == []
    assert main(["grafana", "export", "--out", "-"]) == 0 and capsys.readouterr().out.startswith("{")


@pytest.mark.timeout(60)
def test_dashboard_port_in_use_or_out_of_range_is_refused(tmp_path, capsys):
    sweep = str(tmp_path / "sweep")
    results.write_trials(sweep, [])
    for port in ("70000", "-1"):
        refused(capsys, ["dashboard", sweep, "--port", port], f"port {port} is not a TCP port")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused(capsys, ["dashboard", sweep, "--port", str(port)], f"cannot listen on 127.0.0.1:{port}",
                "pick another --port")
    assert not Path(sweep, "pareto.html").exists()


def test_a_source_that_is_a_file_or_missing_is_refused(tmp_path, capsys):
    (tmp_path / "clips.zip").write_bytes(b"PK")
    for src, why in [(tmp_path / "clips.zip", "not a folder"), (tmp_path / "nope", "source folder does not exist")]:
        refused(capsys, ["preprocess", "--corpus", "ravdess", "--src", str(src), "--out", str(tmp_path / "out"),
                         "--no-ray"], str(src), why, "--src")
    assert not (tmp_path / "out").exists()


def test_a_generated_corpus_not_made_yet_is_said_as_such_by_preprocess(tmp_path, capsys):
    """`avdis preprocess` on jobs/configs/smoke.yaml (a generated corpus, "made on first use"), as an engineer makes its
    shards on S3 before a sweep: told only to give the corpus's top folder, which nothing had made. It says what
    makes one; a real corpus's missing folder is told as before."""
    smoke = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "smoke.yaml"
    src = tmp_path / "corpus"
    refused(capsys, ["preprocess", "--config", str(smoke), "--src", str(src), "--out", str(tmp_path / "out"),
                     "--no-ray"], f"{src}: source folder does not exist", f"`avdis synth --out {src}`",
            "the first `avdis sweep` or `avdis train`")
    capsys.readouterr()
    assert main(["preprocess", "--corpus", "ravdess", "--src", str(src), "--out", str(tmp_path / "out"),
                 "--no-ray"]) == 2
    assert "avdis synth" not in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not src.exists()


def strict_json(text: str) -> dict:
    """JSON as a browser or jq reads it: NaN and Infinity are errors."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_corpus_too_small_for_a_val_split_is_named_and_trains_with_strict_json(tmp_path, capsys):
    src, out = tmp_path / "corpus", str(tmp_path / "shards")
    synth.generate(SynthConfig(speakers=3, emotions=2, clips_per_speaker=3, duration_s=0.5, seed=1), src)
    rows = (src / "ground_truth.csv").read_text().splitlines()
    kept = [rows[0]] + [r for k, r in enumerate(rows[1:]) if k % 3 != 2]  # 2 of each speaker's 3 clips
    assert len(kept) == 7
    (src / "ground_truth.csv").write_text("\n".join(kept) + "\n")
    assert main(preprocess(str(src), out)) == 0
    captured = capsys.readouterr()
    assert strict_json(captured.out)["splits"] == {"train": 3, "val": 0, "test": 3}
    assert "warning: the val split is empty (a speaker needs 3 clips or more" in captured.err
    assert "warning: 3 speakers in data.split.folds=4 give no folds" in captured.err and "needs 6 speakers" in captured.err  # said before a run is refused
    root = Path(__file__).resolve().parents[1]
    made = ["data.synth.speakers=3", "data.synth.emotions=2", "data.synth.clips_per_speaker=3",  # not smoke.yaml's
            "data.synth.entanglement=0.8", "data.synth.duration_s=0.5", "data.synth.seed=1"]
    assert main(["train", "--config", str(root / "jobs" / "configs" / "smoke.yaml"), "--strategy", "single",
                 "--storage", str(tmp_path / "runs"), f"data.shards={out}", "train.epochs=1", "train.workers=1",
                 "train.zero_stage=0", *made]) == 0
    out = capsys.readouterr().out  # epoch lines, then the result
    result = strict_json(out[out.index("\n{") + 1:])  # the val metrics, which have no clips, are null, not NaN
    assert None in result["final"].values()


def test_train_says_validation_clips_of_an_emotion_no_training_clip_has(tmp_path, capsys):
    """`avdis train` reports val_emotion_acc and val_emotion_uar, but said only of test clips that their emotion has no
    training clip (a sweep said it of both). Here a corpus of one's own holds one `surprised` clip, which
    data.split.val_fraction=0.3 deals to validation: every run's validation numbers count it wrong."""
    src, out = tmp_path / "corpus", str(tmp_path / "shards")
    synth.generate(SynthConfig(speakers=3, emotions=2, clips_per_speaker=6, duration_s=0.5, seed=1), src)
    (src / "corpus.json").unlink()  # the generator's mark: now a ground_truth.csv of one's own
    truth = src / "ground_truth.csv"
    rows = [row.split(",") for row in truth.read_text().splitlines()]
    [relabelled] = [row for row in rows if row[1] == "synthetic-spk01-000"]
    relabelled[3] = "surprised"
    truth.write_text("\n".join(",".join(row) for row in rows) + "\n")
    assert main(preprocess(str(src), out, "data.split.val_fraction=0.3")) == 0
    assert strict_json(capsys.readouterr().out)["splits"] == {"train": 6, "val": 6, "test": 6}
    root = Path(__file__).resolve().parents[1]
    assert main(["train", "--config", str(root / "jobs" / "configs" / "smoke.yaml"), "--strategy", "single",
                 "--storage", str(tmp_path / "runs"), f"data.shards={out}", f"data.src={src}",
                 "data.split.val_fraction=0.3", "train.epochs=1", "train.workers=1", "train.zero_stage=0"]) == 0
    said = capsys.readouterr().out
    assert (f"avdis: warning: {out}: 1 of the 6 val clips under data.split.scheme=within_speaker are of emotions no "
            "training clip has (surprised)") in said
    assert said.count("no training clip has") == 1  # the clip is in validation alone


def test_a_sweep_into_storage_it_cannot_write_is_refused_before_ray_starts(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    refused(capsys, ["sweep", "--storage", str(blocker), "--name", "s"], f"{blocker}/s: not writable")


def test_training_into_shards_or_storage_it_cannot_write_is_refused_before_any_decoding(tmp_path, capsys):
    """A data.shards under a file was found only after the corpus was generated and decoded."""
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    fine = {"data.shards": tmp_path / "shards", "train.storage": tmp_path / "runs"}
    for key in fine:
        paths = {**fine, key: blocker / "x"}
        refused(capsys, ["train", "--strategy", "single", f"data.src={tmp_path / 'corpus'}",
                         *(f"{k}={v}" for k, v in paths.items())], f"{blocker / 'x'}: not writable")
        assert not (tmp_path / "corpus").exists()  # nothing generated, nothing decoded


def test_training_on_a_ray_that_does_not_answer_is_refused_before_any_decoding(tmp_path, capsys, monkeypatch):
    """A stale RAY_ADDRESS was refused only once the corpus had been generated and decoded into shards (minutes)."""
    from conftest import refused_port

    with refused_port() as port:
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        refused(capsys, ["train", "--strategy", "ddp", f"data.src={tmp_path / 'corpus'}",
                         f"data.shards={tmp_path / 'shards'}", f"train.storage={tmp_path / 'runs'}"],
                f"Ray address '127.0.0.1:{port}' does not answer")
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "shards").exists()


def test_a_ray_train_run_of_one_worker_refuses_a_placement_strategy(tmp_path, capsys):
    """`avdis train --strategy ddp train.placement_strategy=SPREAD` (one worker) placed its one worker as PACK did:
    Ray Train's placement group held that worker's bundle alone. Refused before any work; with 2 workers, or from a
    config file where the command line chose one worker, taken."""
    blocker = tmp_path / "afile"  # where a run goes on, it stops at its next check, before any decoding
    blocker.write_text("not a folder")
    run = ["train", "--strategy", "ddp", f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}",
           f"train.storage={blocker}"]
    refused(capsys, [*run, "train.placement_strategy=SPREAD"], "train.placement_strategy=SPREAD: with "
            "train.workers=1 the run places one worker, where every placement strategy puts it alike, so "
            "train.placement_strategy would change nothing; drop it, or give train.workers=2 or more (--workers)")
    refused(capsys, [*run, "--workers", "2", "train.placement_strategy=SPREAD"], f"{blocker}: not writable")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump({"train": {"placement_strategy": "SPREAD", "workers": 2}}))
    refused(capsys, [*run, "--config", str(in_file), "--workers", "1"], f"{blocker}: not writable")
    refused(capsys, [*run, "--config", str(in_file), "train.workers=1"], f"{blocker}: not writable")
    in_file.write_text(yaml.safe_dump({"train": {"placement_strategy": "SPREAD"}}))
    refused(capsys, [*run, "--config", str(in_file)], f"{in_file}: train.placement_strategy: with train.workers=1")
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("override, setting", [
    ("train.max_failures=3", "train.max_failures"), ("train.placement_strategy=SPREAD", "train.placement_strategy"),
    ("train.cpus_per_worker=2", "train.cpus_per_worker"), ("ray.address=127.0.0.1:1", "ray.address"),
    ("ray={autoscaling: true}", "ray.autoscaling")])
def test_training_in_one_process_refuses_the_ray_settings_it_would_ignore(tmp_path, capsys, override, setting):
    """strategy single trains in this process and starts no Ray: `avdis train ray.address=... train.max_failures=3`
    was accepted, trained without Ray and restarted nothing. Refused before any work, whether an override or the
    config file gave it; a file's settings for Ray Train are left alone where the command line chose single."""
    blocker = tmp_path / "afile"  # where a run goes on, it stops at its next check, before any decoding
    blocker.write_text("not a folder")
    run = [f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}", f"train.storage={blocker}"]
    refused(capsys, ["train", *run, override], f"{override}: train.strategy=single trains in this process, without "
            f"Ray, so {setting} would change nothing", "give train.strategy=ddp or deepspeed (--strategy)")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override])))
    refused(capsys, ["train", "--config", str(in_file), *run], f"{in_file}: {setting}: train.strategy=single")
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override, "train.strategy=ddp"])))
    for single in (["--strategy", "single"], ["train.strategy=single"]):
        refused(capsys, ["train", "--config", str(in_file), *single, *run], f"{blocker}: not writable")
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("command, override, mode, fix", [
    ("train", "data.split.fold=2", "data.split.scheme=within_speaker", "data.split.scheme=speaker_disjoint"),
    ("preprocess", "data.synth.speakers=3", "data.corpus=ravdess", "data.corpus=synthetic"),
    ("sweep", "sweep.scheduler.eta=3", "sweep.scheduler.type=none", "sweep.scheduler.type=mo_asha"),
    ("sweep", "sweep.startup_trials=3", "sweep.search=random", "sweep.search=tpe"),
    ("sweep", "sweep.scheduler.stopped_as=complete", "sweep.search=random", "sweep.search=tpe"),
    ("train", "model.contours=false", "model.modality=visual", "model.modality=av"),
    ("sweep", "ray.include_dashboard=false", "ray.address=10.255.255.1:6379", "ray.address=local"),
    ("preprocess", "data.features.fps=4", "data.modality=audio", "data.modality=av"),
    ("train", "data.features.face_size=32", "data.modality=audio", "data.modality=av")])
def test_a_setting_its_mode_does_not_read_is_refused(tmp_path, capsys, monkeypatch, command, override, mode, fix):
    """Each was accepted and changed nothing: data.split.fold under within_speaker (trained the same model),
    data.synth on a RAVDESS corpus (built the same shards), MO-ASHA's settings under sweep.scheduler.type=none,
    TPE's startup_trials under another search, how a stopped trial is told to a random search (which draws the
    same trials either way), the audio encoder's contours under model.modality=visual,
    ray.include_dashboard where the command joins a Ray at ray.address rather than start one, and the video frames'
    settings for shards of audio alone (recorded in the manifest, so training had to repeat them). Refused before any
    work, given by an override or the config file; a file's are left alone where the command line chose the mode."""
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "afile"  # where the command goes on, it stops at its next check, before any work
    blocker.write_text("not a folder")
    base = {"train": [f"data.src={tmp_path}", f"data.shards={tmp_path / 'shards'}", f"train.storage={blocker}"],
            "preprocess": ["--no-ray", "--src", str(tmp_path), "--out", str(blocker / "x")],
            "sweep": ["--storage", str(blocker), "--name", "s"]}[command]
    setting, goes_on = override.partition("=")[0], f"{blocker}{dict(sweep='/s', preprocess='/x').get(command, '')}"
    refused(capsys, [command, *base, mode, override], f"{override}: ", f"; under {mode} {setting} would change "
            f"nothing: drop it, or give {fix}")
    refused(capsys, [command, *base, fix, override], f"{goes_on}: not writable")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override, mode])))
    refused(capsys, [command, "--config", str(in_file), *base], f"{in_file}: {setting}: ", f"under {mode}")
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override])))
    refused(capsys, [command, "--config", str(in_file), *base, mode], f"{goes_on}: not writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c.yaml"]


@pytest.mark.parametrize("command", ["sweep", "train"])
def test_ray_include_dashboard_is_refused_where_ray_address_names_the_ray_joined(tmp_path, capsys, monkeypatch,
                                                                                  command):
    """Refused where ray.address named the Ray a command joins, ray.include_dashboard was taken where only RAY_ADDRESS
    named it, and changed nothing there either: one rule. A config file's is left alone there, as RAY_ADDRESS, not
    the file, chose the Ray (`ray job submit` sets it for a job whose file may also serve local runs)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", "10.255.255.1:6379")
    blocker = tmp_path / "afile"  # where the command goes on, it stops at its next check, before any work
    blocker.write_text("not a folder")
    base = {"train": [f"data.src={tmp_path}", f"data.shards={tmp_path / 'shards'}", f"train.storage={blocker}",
                      "train.strategy=ddp"],
            "sweep": ["--storage", str(blocker), "--name", "s"]}[command]
    goes_on = f"{blocker}{'/s' if command == 'sweep' else ''}: not writable"
    refused(capsys, [command, *base, "ray.include_dashboard=false"], "ray.include_dashboard=false: "
            "ray.include_dashboard is for the local Ray a command starts (runtime.connect), not one it joins; under "
            "RAY_ADDRESS=10.255.255.1:6379 ray.include_dashboard would change nothing: drop it, or give "
            "ray.address=local")
    refused(capsys, [command, *base, "ray.address=local", "ray.include_dashboard=false"], goes_on)
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump({"ray": {"include_dashboard": False}}))
    refused(capsys, [command, "--config", str(in_file), *base], goes_on)
    monkeypatch.setenv("RAY_ADDRESS", "")  # none: a local Ray, which reads it
    refused(capsys, [command, *base, "ray.include_dashboard=false"], goes_on)


@pytest.mark.parametrize("command", ["preprocess", "train"])
def test_ray_include_dashboard_without_ray_is_refused_by_the_no_ray_rule_under_ray_address(tmp_path, capsys,
                                                                                           monkeypatch, command):
    """Under RAY_ADDRESS, `avdis preprocess --no-ray ray.include_dashboard=false` (and `avdis train --strategy single`)
    was told to "give ray.address=local", which the --no-ray (single) rule then refused: the command uses no Ray at
    all, so its no-Ray rule speaks, whatever Ray RAY_ADDRESS names."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", "10.255.255.1:6379")
    argv = {"preprocess": ["preprocess", "--corpus", "synthetic", "--src", str(tmp_path), "--out",
                           str(tmp_path / "out"), "--no-ray"],
            "train": ["train", f"data.src={tmp_path}", f"data.shards={tmp_path / 'shards'}",
                      f"train.storage={tmp_path / 'runs'}", "--strategy", "single"]}[command]
    said = {"preprocess": "--no-ray decodes in this process, without Ray, so ray.include_dashboard would change "
                          "nothing; drop it, or drop --no-ray",
            "train": "train.strategy=single trains in this process, without Ray, so ray.include_dashboard would "
                     "change nothing; drop it, or give train.strategy=ddp or deepspeed"}[command]
    err = refused(capsys, [*argv, "ray.include_dashboard=false"], f"ray.include_dashboard=false: {said}")
    assert "give ray.address" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_or_run_started_with_a_setting_now_refused_is_still_resumed(tmp_path, capsys, monkeypatch):
    """A sweep or run started, before they were refused, with a setting that changes nothing was resumed by neither
    the same command (refused) nor the one without it (the sweep's recorded settings, or the run's name, whose hash
    holds it, no longer matched): the refusal stands aside, with a warning, for the sweep or run it resumes."""
    from avdis.train import launch
    from avdis.tune import spec, sweep

    class Ran(Exception):
        pass

    def ran(*args, **kwargs):
        raise Ran

    monkeypatch.setattr(sweep, "run", ran)
    monkeypatch.setattr(launch, "train", ran)
    started = ["sweep.search=random", "sweep.startup_trials=3"]
    base = [f"sweep.storage={tmp_path / 'sweeps'}", "sweep.name=s", f"data.src={tmp_path / 'c'}",
            f"data.shards={tmp_path / 'sh'}"]
    refused(capsys, ["sweep", *base, *started], "sweep.startup_trials=3: ", "would change nothing")
    old = C.load(None, [*base, *started])
    spec.record_spec(sweep.url_of(old), old, "0123456789abcdef")  # as an avdis before the refusal left it
    with pytest.raises(Ran):
        main(["sweep", *base, *started])
    assert (f"sweep.startup_trials=3: TPE draws sweep.startup_trials trials at random before it models the results; "
            f"under sweep.search=random sweep.startup_trials would change nothing: drop it, or give sweep.search=tpe; "
            f"kept, as the sweep at {sweep.url_of(old)} it resumes was started with it") in capsys.readouterr().err
    run = [f"data.src={tmp_path / 'c'}", f"data.shards={tmp_path / 'sh'}", f"train.storage={tmp_path / 'runs'}",
           "method.conditional=false"]
    refused(capsys, ["train", *run], "method.conditional=false: method multitask does not read")
    (tmp_path / "runs" / launch.run_name(C.load(None, run))).mkdir(parents=True)  # the run, with its checkpoints
    with pytest.raises(Ran):
        main(["train", *run])
    assert "kept, as the run at" in capsys.readouterr().err
    # refused by the command, not where a config is validated (as they were): there a sweep's resumed trials and a
    # run's workers, which validate their config again, refused them too
    run = [*run[:-1], "method.weight=0"]
    refused(capsys, ["train", *run], "method.weight=0: method multitask takes no weight, so method.weight=0 would "
            "change nothing")
    (tmp_path / "runs" / launch.run_name(C.load(None, run))).mkdir(parents=True)
    with pytest.raises(Ran):
        main(["train", *run])
    assert "kept, as the run at" in capsys.readouterr().err
    started = ["sweep.name=t", "sweep.space.methods=[multitask,orthogonal]",
               "sweep.space.params.method.adversary.steps=[1,5]"]
    refused(capsys, ["sweep", *base, *started], "sweep.space.params.method.adversary.steps=[1,5]: "
            "method.adversary.steps is read only by adversarial, confusion")
    old = C.load(None, [*base, *started])
    spec.record_spec(sweep.url_of(old), old, "0123456789abcdef")
    with pytest.raises(Ran):
        main(["sweep", *base, *started])
    assert f"kept, as the sweep at {sweep.url_of(old)} it resumes" in capsys.readouterr().err
    from avdis.tune.space import to_overrides  # as each of its trials reads its config (`tune.trial.run_trial`)

    trial = C.with_overrides(C.Config.model_validate(old.model_dump(mode="json")),
                             to_overrides({"method": "multitask", "method.adversary.steps": 5}))
    assert trial.method.adversary.steps == 5


def test_a_files_method_weight_0_is_refused_by_train_and_left_alone_by_a_sweep(tmp_path, capsys):
    """A config file's method.weight=0 for a method without a weight was refused under `avdis sweep` as under train,
    saying "it trains as without it, under a run name of its own", where a sweep draws each trial's method and weight
    from sweep.space and never reads the file's (a file's method.weight=0.5 is left alone there): now only
    train, which reads it, refuses it; a sweep goes on to its next check."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(Path(SMOKE).read_text()),
                                      "method": {"name": "multitask", "weight": 0}}))
    blocker = tmp_path / "afile"  # past the check, the command stops at its next one
    blocker.write_text("not a folder")
    refused(capsys, ["train", "--config", str(config), "--storage", str(blocker / "x")],
            f"{config}: method.weight: method multitask takes no weight, so method.weight=0 would change nothing (it "
            "trains as without it, under a run name of its own)")
    err = refused(capsys, ["sweep", "--config", str(config), "--storage", str(blocker / "x")], str(blocker / "x"),
                  ": not writable (")
    assert "method.weight" not in err
    refused(capsys, ["sweep", "--config", str(config), "method.weight=0"], "method.weight=0: a sweep draws "
            "method.weight for each trial from sweep.space.methods and sweep.space.weights")


def test_a_setting_read_under_a_value_a_sweep_samples_is_taken(tmp_path, capsys, monkeypatch):
    """model.contours under a model.modality that sweep.space.params samples: the av trials read it."""
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    refused(capsys, ["sweep", "--config", SMOKE, "model.modality=visual", "model.contours=false",
                     "sweep.space.params.model.modality=[visual, av]", "--storage", str(blocker), "--name", "s"],
            f"{blocker}/s: not writable")
    refused(capsys, ["model", "model.modality=visual", "model.contours=false"], "model.contours=false: ")


@pytest.mark.parametrize("method, override, readers", [
    ("multitask", "method.adversary.steps=2", "adversarial, confusion"),
    ("orthogonal", "method={adversary: {lr: 0.01}}", "adversarial, confusion"),
    ("multitask", "method.conditional=false", "adversarial, confusion, nullspace"),
    ("single_task", "method.speaker_weight=2", "multitask, adversarial, confusion, orthogonal, nullspace")])
def test_a_run_refuses_the_method_settings_its_method_does_not_read(tmp_path, capsys, method, override, readers):
    """`avdis train method.adversary.steps=2` (multitask: no adversary) trained the same model as without it, as did
    method.conditional under multitask and method.speaker_weight under single_task (no speaker loss). Refused before
    any work, given by an override or the config file; a file's are left alone where the command line chose the
    method (a file may hold the adversary of its adversarial runs)."""
    blocker = tmp_path / "afile"  # where a run goes on, it stops at its next check, before any decoding
    blocker.write_text("not a folder")
    weight = ["method.weight=1"] if method == "orthogonal" else []
    run = [f"data.src={tmp_path / 'corpus'}", f"data.shards={tmp_path / 'shards'}", f"train.storage={blocker}"]
    setting = override.partition("=")[0] if "{" not in override else "method.adversary.lr"
    refused(capsys, ["train", *run, f"method.name={method}", *weight, override],
            f"{override}: method {method} does not read {setting} (only {readers} do), so it would change nothing")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump(C.parse_overrides([override])))
    refused(capsys, ["train", "--config", str(in_file), *run, *weight, f"method.name={method}"],
            f"{blocker}: not writable")
    if method == "multitask":
        refused(capsys, ["train", "--config", str(in_file), *run], f"{in_file}: {setting}: method multitask")
    reader = readers.split(", ")[0]
    refused(capsys, ["train", *run, f"method.name={reader}",
                     *(["method.weight=1"] if reader in C.WEIGHT_RANGES else []), override], f"{blocker}: not writable")
    assert not (tmp_path / "corpus").exists()


def test_synth_into_a_path_it_cannot_write_is_refused(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    refused(capsys, ["synth", "--out", str(blocker / "corpus")], f"{blocker / 'corpus'}: not writable")


def test_synth_refuses_a_folder_of_files_it_did_not_generate(tmp_path, capsys, corpus):
    """A corpus of the user's own (its ground_truth.csv) or other files are never written over; the generator's own
    corpus is (the rule `data.corpus: synthetic` follows when it generates on first use)."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "ground_truth.csv").write_text("file,clip_id,speaker,emotion\na.mp4,a,s1,happy\n")
    refused(capsys, ["synth", "--out", str(own), "--speakers", "2", "--clips-per-speaker", "3", "--duration", "0.3"],
            f"{own}: holds files but no corpus the generator wrote")
    assert sorted(p.name for p in own.iterdir()) == ["ground_truth.csv"]
    assert (own / "ground_truth.csv").read_text() == "file,clip_id,speaker,emotion\na.mp4,a,s1,happy\n"
    again = tmp_path / "again"
    shutil.copytree(corpus, again)
    assert main(["synth", "--out", str(again), "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "3",
                 "--duration", "0.5", "--seed", "1"]) == 0


def test_synth_over_its_own_corpus_leaves_only_the_new_clips(tmp_path, corpus):
    """Regenerated with other settings, a generated corpus held the old clips beside the new ones, each a reject
    ("not listed in ground_truth.csv") at every preprocess; a file it did not write stays."""
    out = tmp_path / "regen"
    shutil.copytree(corpus, out)
    (out / "notes.txt").write_text("mine")
    assert main(["synth", "--out", str(out), "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "3",
                 "--duration", "0.3", "--seed", "7", "--entanglement", "0"]) == 0
    listed = {row.split(",")[0] for row in (out / "ground_truth.csv").read_text().splitlines()[1:]}
    assert {str(p.relative_to(out)) for p in out.rglob("*.mp4")} == listed
    assert (out / "notes.txt").read_text() == "mine"
    assert synth.is_generated(SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=7,
                                          entanglement=0), out)


def test_synth_over_its_own_corpus_keeps_clips_the_user_listed_there(tmp_path, corpus):
    """Only clips under the generator's own names go: a clip the user added to a generated corpus and listed in its
    ground_truth.csv (or any file a hand-edited ground truth names) was deleted when the corpus was regenerated."""
    out = tmp_path / "extended"
    shutil.copytree(corpus, out)
    (out / "extra").mkdir()
    (out / "extra" / "take1.mp4").write_bytes(b"the user's recording")
    (out / "notes.txt").write_text("mine")
    with open(out / "ground_truth.csv", "a") as fh:
        fh.write("extra/take1.mp4,mine-1,spk00,happy,0.5\nnotes.txt,mine-2,spk00,happy,0.5\n")
    assert main(["synth", "--out", str(out), "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "4",
                 "--duration", "0.3", "--seed", "7"]) == 0
    assert (out / "extra" / "take1.mp4").read_bytes() == b"the user's recording"
    assert (out / "notes.txt").read_text() == "mine"
    listed = {row.split(",")[0] for row in (out / "ground_truth.csv").read_text().splitlines()[1:]}
    assert {str(p.relative_to(out)) for p in out.rglob("spk*/*.mp4")} == listed  # the old generated clips went


GENERATOR = """
import sys
from avdis import storage_lock
from avdis.config import SynthConfig
from avdis.data import synth
with storage_lock.exclusive(sys.argv[1], synth.HELD_FOR):
    print("held", flush=True)
    sys.stdin.read()  # until the test has seen the synth below wait: else it could find the corpus made, unwaited
    synth.generate(SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=4), sys.argv[1])
"""


def _go_on_once_waited(monkeypatch, holder: subprocess.Popen) -> None:
    """Let `holder` go on (its stdin closed) once the command under test says it waits for it: not before, or the
    command could find the work done without waiting."""
    busy = storage_lock._busy

    def said_then_go(*args):
        busy(*args)
        holder.stdin.close()

    monkeypatch.setattr(storage_lock, "_busy", said_then_go)


def test_synth_waits_for_a_generation_under_way_and_keeps_the_corpus_it_made(tmp_path, capsys, monkeypatch):
    """`avdis synth` took no lock, where a sweep generating its corpus does: two generations into one folder wrote
    their clips over each other's in place, leaving one's settings over a mix of both corpora's clips. It now waits,
    then keeps the corpus made meanwhile (rewritten, each clip's new time would rebuild the shards made of it)."""
    out = tmp_path / "corpus"
    holder = subprocess.Popen([sys.executable, "-c", GENERATOR, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    _go_on_once_waited(monkeypatch, holder)  # the generation goes on once the synth below says it waits
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(["synth", "--out", str(out), "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "3",
                     "--duration", "0.3", "--seed", "4"]) == 0
    finally:
        holder.kill()
        holder.wait(30)
    said = capsys.readouterr()
    assert "another job generating this corpus or building shards from it is running there" in said.err
    assert f"corpus: {out} already holds this corpus (6 clips), kept as it is" in said.out
    assert synth.is_generated(SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=4), out)


BUILDER = """
import sys
from avdis.cli import main
from avdis.data.shards import build
written = build.write_shard
def held(*args):  # the build's first shard waits until the test has seen the synth below wait for the build
    print("building", flush=True)
    sys.stdin.read()
    return written(*args)
build.write_shard = held
sys.exit(main(sys.argv[1:]))
"""


def test_synth_waits_for_a_build_of_shards_from_its_corpus(tmp_path, capsys, monkeypatch):
    """`avdis synth` with other settings, run while `avdis preprocess` built shards from that corpus, waited only for
    another generation: it replaced the corpus under the build reading it (the manifest recorded the new corpus's
    settings over clips labelled from the old one's ground truth). It now waits for the build, as a build waits for a
    generation."""
    src, out = tmp_path / "corpus", tmp_path / "shards"
    made = SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=4)
    synth.generate(made, src)
    builder = subprocess.Popen([sys.executable, "-c", BUILDER, "preprocess", "--corpus", "synthetic", "--src", str(src),
                                "--out", str(out), "--shard-size", "2", "--no-ray"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _go_on_once_waited(monkeypatch, builder)  # the build goes on once the synth below says it waits for it
    try:
        assert builder.stdout.readline() == "building\n"
        assert main(["synth", "--out", str(src), "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "3",
                     "--duration", "0.3", "--seed", "5"]) == 0
        if not builder.stdin.closed:  # the old code: no wait
            builder.stdin.close()
        built = builder.wait(120)
    finally:
        builder.kill()
        builder.wait(30)
    said = capsys.readouterr()
    assert f"{src}: another job generating this corpus or building shards from it is running there" in said.err
    assert built == 0, builder.stderr.read()[-3000:]
    assert _synth_of_shards(out) == made.model_dump()  # the shards are the old corpus's, whole
    assert synth.is_generated(made.model_copy(update={"seed": 5}), src)


def _synth_of_shards(shards_url: Path) -> dict:
    """The generator settings the manifest at `shards_url` records."""
    from avdis.data import shards

    return shards.read_manifest(str(shards_url), C.S3Config())[1]["synth"]


def test_a_generation_cut_short_is_the_generators_folder_and_no_corpus(tmp_path, monkeypatch):
    spec = SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.3, seed=2)
    out = tmp_path / "cut"
    calls = []

    def write_clip(path, *args):  # the second clip's encoding is interrupted
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"clip")
    monkeypatch.setattr(synth, "write_clip", write_clip)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(spec, out)
    assert synth.made_here(out) and not synth.is_generated(spec, out)
    synth.check_target(out)  # avdis synth may write there again


@pytest.mark.parametrize("refresh", ["0", "0.001", "-1", "nan", "inf", "soon"])
def test_a_dashboard_refresh_must_be_seconds_of_a_tenth_or_more(tmp_path, capsys, refresh):
    with pytest.raises(SystemExit) as caught:
        main(["dashboard", str(tmp_path), "--refresh", refresh])
    assert caught.value.code == 2 and "argument --refresh" in capsys.readouterr().err


# ------------------------------------------------------------------ inside a `ray job submit` driver

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "jobs" / "configs" / "smoke.yaml")  # relative data.src, data.shards and storage


def as_ray_job(monkeypatch, root: Path, working_dir: bool = True) -> Path:
    """The environment Ray's job supervisor gives a driver (its job config, runtime env included), run in the copy
    of its working dir that Ray unpacked under `root` (as under /tmp/ray/session_*/); that copy."""
    env = {"working_dir": "gcs://_ray_pkg_0123456789abcdef.zip"} if working_dir else {}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": env, "metadata": {}}))
    copy = root / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123456789abcdef"
    copy.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(copy)
    return copy


@pytest.mark.parametrize("argv, named", [
    (["sweep", "--config", SMOKE], ["sweep.storage=runs/sweeps", "data.shards=runs/shards/smoke",
                                    "data.src=runs/corpus/smoke"]),
    (["train", "--config", SMOKE, "--storage", "file://out"], ["--storage=out", "data.shards=runs/shards/smoke",
                                                                "data.src=runs/corpus/smoke"]),
    (["sweep", "--config", SMOKE, "--storage", "out"], ["--storage=out", "data.shards=runs/shards/smoke"]),
    (["synth", "--out", "corpus"], ["--out=corpus"]),
])
def test_a_ray_job_driver_refuses_outputs_in_its_copy_of_the_working_dir_naming_all(
        tmp_path, capsys, monkeypatch, argv, named):
    """Under `ray job submit --working-dir` the driver runs in Ray's copy of it: a relative output would be lost
    there (and a corpus made there made again by every job). Every such path is named at once; nothing is written."""
    copy = as_ray_job(monkeypatch, tmp_path)
    err = refused(capsys, argv, *named, f"in {copy}, Ray's unpacked copy of --working-dir", "=$PWD/")
    assert list(copy.iterdir()) == []
    if "--storage" in argv:  # named by the flag given, not by a setting the user did not type
        assert "train.storage" not in err and "sweep.storage" not in err


def test_a_ray_job_driver_reads_shards_already_in_its_copy_and_names_only_its_outputs(
        corpus, tmp_path, capsys, monkeypatch):
    """Shards with a manifest are read, not written: a relative data.shards that has them is no refusal, nor is an
    absolute output outside the copy."""
    made = tmp_path / "made-before"
    assert main(preprocess(corpus, str(made))) == 0  # uploaded with the tree
    copy = as_ray_job(monkeypatch, tmp_path)
    shutil.copytree(made, copy / "shards")
    err = refused(capsys, ["sweep", "--config", SMOKE, "data.shards=shards", "data.src=corpus"],
                  "sweep.storage=runs/sweeps: in ")
    assert "data.shards" not in err and "data.src" not in err
    refused(capsys, preprocess(corpus, "more"), "--out=more: in ")
    assert main(preprocess(corpus, str(tmp_path / "elsewhere"))) == 0
    # a corpus of the user's own, uploaded with the tree, is read, not written: only the shards made of it are named
    shutil.copytree(corpus, copy / "mine")
    (copy / "mine" / "corpus.json").unlink()  # the generator's mark: now a ground_truth.csv of one's own
    err = refused(capsys, ["sweep", "--config", SMOKE, "--storage", str(tmp_path / "out"), "data.src=mine",
                           "data.shards=made"], "data.shards=made: in ")
    assert "data.src" not in err


def test_a_refusal_of_the_shards_folder_names_it_as_preprocess_was_given_it(corpus, tmp_path, capsys, monkeypatch):
    """`avdis preprocess --out DIR` for a cluster that adds nodes was refused as `data.shards=DIR (ext4): on this
    machine's own disk`, naming a setting the user had not given; and data.shards of the config or an override,
    relative in a `ray job submit` driver, as `--out=...`, a flag they had not given. Each is named as given."""
    from avdis import nodes

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "shards"
    kind = nodes.filesystem_type(str(out))
    if kind not in nodes.MACHINE_FILESYSTEMS:
        pytest.skip(f"pytest's temp folder is on {kind}, not a filesystem known to be one machine's own")
    base = ["preprocess", "--corpus", "synthetic", "--src", corpus]
    cluster = ["ray.address=10.0.0.1:6379", "ray.autoscaling=true"]  # refused before Ray is asked
    err = refused(capsys, [*base, "--out", str(out), *cluster], f"--out={out} ({kind}): on this machine's own disk")
    assert "data.shards" not in err
    refused(capsys, [*base, f"data.shards={out}", *cluster], f"data.shards={out} ({kind}): on this machine's own disk")
    copy = as_ray_job(monkeypatch, tmp_path)
    err = refused(capsys, [*base, "--no-ray", "data.shards=more"], "data.shards=more: in ")
    assert "--out" not in err
    assert not out.exists() and list(copy.iterdir()) == []


def test_a_refusal_of_the_sweeps_storage_names_it_as_the_sweep_was_given_it(tmp_path, capsys, monkeypatch):
    """`avdis sweep --storage DIR` for a cluster that adds nodes was refused as `sweep.storage=DIR (ext4)`, a setting
    the user had not given; given as sweep.storage=DIR, it is named so."""
    from avdis import nodes

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "sweeps"
    kind = nodes.filesystem_type(str(out))
    if kind not in nodes.MACHINE_FILESYSTEMS:
        pytest.skip(f"pytest's temp folder is on {kind}, not a filesystem known to be one machine's own")
    base = ["sweep", "--config", SMOKE, "ray.address=10.0.0.1:6379", "ray.autoscaling=true"]  # refused before Ray
    own = "on this machine's own disk"
    err = refused(capsys, [*base, "--storage", str(out)], f"error: --storage={out} ({kind})", own)
    assert "sweep.storage" not in err
    refused(capsys, [*base, f"sweep.storage={out}"], f"error: sweep.storage={out} ({kind})", own)


def test_relative_paths_are_the_users_own_outside_a_ray_job_or_its_copy(tmp_path, capsys, monkeypatch):
    """Without --working-dir, a job's driver runs in the folder its Ray node was started from, as a plain run
    runs in the user's; a driver that moved out of Ray's copy (`cd /srv/x && python ...`) is where it chose to be:
    a relative path is theirs."""
    synth_argv = ["synth", "--speakers", "2", "--clips-per-speaker", "3", "--emotions", "2", "--duration", "0.5"]
    as_ray_job(monkeypatch, tmp_path, working_dir=False)
    assert main([*synth_argv, "--out", "corpus"]) == 0
    as_ray_job(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)  # moved out of the copy
    assert main([*synth_argv, "--out", "corpus2"]) == 0
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert main([*synth_argv, "--out", "corpus3"]) == 0
    for made in ("runtime_resources/working_dir_files/_ray_pkg_0123456789abcdef/corpus", "corpus2", "corpus3"):
        assert (tmp_path / made / "ground_truth.csv").is_file()


@pytest.mark.parametrize("argv, named", [
    (["sweep", "--config", SMOKE, "--name", "a/b", "sweep.name=cx"], "sweep.name is given twice, by --name a/b and by "
                                                                      "sweep.name=cx; give it once"),
    (["train", "--config", SMOKE, "--workers", "2", "train.workers=1"], "train.workers is given twice, by --workers 2"),
    (["sweep", "--config", SMOKE, "--name", "a/b", "sweep={name: cx}"], "sweep.name is given twice, by --name a/b and by "
                                                                         "sweep={name: cx}; give it once"),
])
def test_a_flag_and_an_override_of_one_setting_are_refused(tmp_path, capsys, monkeypatch, argv, named):
    """The override won in silence (and the flag's value went unchecked: --name a/b is no folder name)."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, argv, named)
    assert list(tmp_path.iterdir()) == []


def test_a_section_given_as_a_value_keeps_what_earlier_overrides_set_in_it(tmp_path, capsys):
    """`train.epochs=3 train={lr: 0.1}` trained the default 4 epochs: the section replaced what the first override set
    (the other order kept both). Overrides merge in order, as they merge into the file; a setting given again takes
    the later value."""
    cfg = C.load(None, ["train.epochs=3", "train={lr: 0.1}", "sweep.space.params.train.lr=[0.1]",
                        "sweep.space.params={model.emb_dim: [8, 16]}", "train.seed=1", "train={seed: 2}"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.seed) == (3, 0.1, 2)
    assert cfg.sweep.space.params == {"train.lr": [0.1], "model.emb_dim": [8, 16]}
    refused(capsys, ["train", f"train.storage={tmp_path}/runs", "method=adversarial", "method.weight=1"],
            "override 'method.weight=1': method is a value (adversarial), not a section; write method: {name: "
            "adversarial}")
    assert list(tmp_path.iterdir()) == []


def test_a_name_yaml_reads_as_a_number_is_refused_saying_to_quote_it(tmp_path, capsys, monkeypatch):
    """`sweep.name=007` was refused as "Input should be a valid string (got 7)": neither what was typed nor the fix.
    So was a sweep named by its day (`sweep.name=2026-12-03`, "got datetime.date(2026, 12, 3)"), with no fix."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, ["sweep", "sweep.name=007"], "sweep.name: Input should be a valid string (got 7); YAML read the "
            "value as a number: quote it to keep it as written ('007' in a file, \"sweep.name='007'\" on the command")
    refused(capsys, ["sweep", "sweep.name=2026-12-03"], "YAML read the value as a date: quote it to keep it as "
            "written ('2026-12-03' in a file, \"sweep.name='2026-12-03'\" on the command line)")
    refused(capsys, ["sweep", "sweep.name=2026-12-03T10:00:00"], "YAML read the value as a date and time: quote it to "
            "keep it as text, in a file or on the command line (\"sweep.name='...'\")")  # its text is lost
    assert list(tmp_path.iterdir()) == []
    assert C.load(None, ["sweep.name='007'"]).sweep.name == "007"
    assert C.load(None, ["sweep.name='2026-12-03'"]).sweep.name == "2026-12-03"


def test_python_dash_m_avdis_is_the_avdis_command(tmp_path):
    """Where the venv's scripts folder is not on PATH (a Ray job's `python -m ...`), the module runs the command."""
    out = subprocess.run([sys.executable, "-m", "avdis", "train", "--workers", "0"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("avdis train: error: --workers: ")


def test_flag_values_are_taken_as_given_not_as_yaml(tmp_path):
    """`--storage "runs #3"` lost " #3" (a YAML comment) and wrote into the folder of other runs; `--name 007` was
    the number 7 and refused; an override's comment is refused rather than dropped."""
    from avdis.cli import build_parser, load_config

    args = build_parser().parse_args(["train", "--name", "007", "--storage", str(tmp_path / "runs #3")])
    cfg = load_config(args, {f"train.{f}": (f"--{f}", getattr(args, f)) for f in ("workers", "strategy", "storage", "name")})
    assert (cfg.train.name, cfg.train.storage) == ("007", str(tmp_path / "runs #3"))
    with pytest.raises(C.ConfigError, match=r"'#3' is a YAML comment, so the value would be '/tmp/runs'; quote the"):
        C.load(None, ["train.storage=/tmp/runs #3"])
    assert C.load(None, ['train.storage="/tmp/runs #3"']).train.storage == "/tmp/runs #3"
    assert C.load(None, ["sweep.space.params.train.lr=[0.001, 0.01]"]).sweep.space.params["train.lr"] == [0.001, 0.01]


@pytest.mark.parametrize("value, expected", [
    ("s3://bkt/x", "not a local folder"),
    ("S3://bkt/x", "not a local folder"),
])
def test_synth_writes_local_folders_only_and_storage_urls_have_one_spelling(tmp_path, capsys, value, expected):
    """`avdis synth --out s3://...` crashed in the encoder and left a local folder named `s3:`; a trailing '/' on an
    S3 prefix, or a local path through '..', named another run of the same data."""
    refused(capsys, ["synth", "--out", value], expected)
    assert not list(tmp_path.iterdir())
    assert C.load(None, ["data.shards=s3://bkt/x/"]).data.shards == "s3://bkt/x"
    with pytest.raises(C.ConfigError, match=r"holds an empty folder name \('//'\)"):  # every write lost at the end
        C.load(None, ["data.shards=s3://bkt//x"])
    for dots, named in (("a/./x", "'.'"), ("a/../x", "'..'"), ("./x/..", "'.' and '..'")):  # S3 keeps them as names
        with pytest.raises(C.ConfigError, match=rf"holds {named} as a folder name, which S3 keeps as a name"):
            C.load(None, [f"sweep.checkpoints=s3://bkt/{dots}"])  # Ray's storage wrote a/./x's checkpoints to a/x
    assert C.load(None, ["train.storage=s3://bkt/.runs/..x"]).train.storage == "s3://bkt/.runs/..x"
    for prefix in ("exp[1]", "run*", "a?b"):  # deleted by pattern: a prune under exp[1] removed exp1's checkpoints
        with pytest.raises(C.ConfigError, match=r"s3fs reads as a pattern when it deletes"):
            C.load(None, [f"train.storage=s3://bkt/{prefix}/runs"])
    assert C.load(None, [f"train.storage={tmp_path}/exp[1]"]).train.storage == f"{tmp_path}/exp[1]"  # local: no glob
    assert C.load(None, [f"data.shards={tmp_path}/a/../b"]).data.shards == str(tmp_path / "b")
    with pytest.raises(C.ConfigError, match="data.src: ~nosuchuser-avdis/x: .*give the folder's full path"):
        C.load(None, ["data.src=~nosuchuser-avdis/x"])


def test_a_quoted_tilde_path_is_the_home_folder_for_every_command(tmp_path, capsys, monkeypatch):
    """`avdis synth --out "~/my corpus"` wrote ./~/my corpus, and `avdis report "~/..."` found no sweep there."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "--out", "~/my corpus", "--speakers", "2", "--emotions", "2", "--clips-per-speaker", "3",
                 "--duration", "0.3"]) == 0
    assert (tmp_path / "my corpus" / "ground_truth.csv").is_file() and not (tmp_path / "~").exists()
    refused(capsys, ["report", "~/no sweep"], str(tmp_path / "no sweep"))


@pytest.mark.parametrize("left", [synth.UNDER_WAY, '{"speakers": 2, "emo'])
def test_a_generation_cut_after_its_ground_truth_is_made_again(tmp_path, corpus, left):
    """Its settings file still the placeholder (refused as made "with other settings", every one named) or cut
    mid-write (a JSONDecodeError traceback): it is an unfinished corpus, and training makes it again."""
    from avdis.data import prepare

    cut = tmp_path / "cut"
    shutil.copytree(corpus, cut)
    (cut / synth.SETTINGS).write_text(left)
    spec = SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.5, seed=1)
    prepare.generate_if_missing(C.DataConfig(corpus="synthetic", src=str(cut), shards=str(tmp_path / "s"), synth=spec))
    assert synth.is_generated(spec, cut)


def test_training_never_generates_over_a_corpus_made_with_other_settings(tmp_path, corpus):
    """A corpus made with `avdis synth` and given as data.src was replaced by one with data.synth's defaults (288
    clips for the user's 12), and trained on in its place."""
    from avdis.data import prepare
    from avdis.errors import UsageError

    mine = tmp_path / "mine"
    shutil.copytree(corpus, mine)
    before = sorted(p.name for p in mine.rglob("*"))
    data = C.DataConfig(corpus="synthetic", src=str(mine), shards=str(tmp_path / "shards"))
    with pytest.raises(UsageError, match=r"holds a corpus generated with other settings \(data.synth.speakers: 2 "
                                         r"there, 12 here; .*it is not generated over"):
        prepare.generate_if_missing(data)
    assert sorted(p.name for p in mine.rglob("*")) == before
    same = data.model_copy(update={"synth": SynthConfig(speakers=2, emotions=2, clips_per_speaker=3, duration_s=0.5,
                                                        seed=1)})
    prepare.generate_if_missing(same)  # its own settings: read as it is
    assert sorted(p.name for p in mine.rglob("*")) == before


def _documented_job_submits() -> list[tuple[str, list[str]]]:
    """(file, argv after `python jobs/<x>.py`) of every `ray job submit` in the docstrings of jobs/*.py."""
    import ast
    import shlex

    found = []
    for script in sorted((ROOT / "jobs").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        for command in doc.replace("\\\n", " ").splitlines():
            if command.strip().startswith("ray job submit"):
                argv = shlex.split(command, comments=True)
                entry = argv.index("--") + 1
                assert argv[entry:entry + 2] == ["python", f"jobs/{script.name}"], command
                found.append((script.name, argv[entry + 2:]))
    return found


class _Checked(BaseException):
    """Raised once the driver has passed the working-dir check: nothing after it runs."""


def test_the_documented_ray_job_submits_with_local_outputs_pass_the_working_dir_check(tmp_path, monkeypatch, capsys):
    """jobs/train.py's docstring showed `ray job submit --working-dir . -- python jobs/train.py --config
    jobs/configs/smoke.yaml --storage /shared/runs`, which the driver refuses: smoke.yaml's relative data.shards and
    data.src land in Ray's copy of the working dir. Each documented command without s3:// is run, in a driver's
    environment, up to that check (the real one), which it must pass."""
    from avdis import runtime

    def on_s3(argv: list[str]) -> bool:  # its locations, given or in its --config file
        config = argv[argv.index("--config") + 1] if "--config" in argv else None
        return any("s3://" in a for a in argv) or bool(config and "s3://" in (ROOT / config).read_text())

    commands = [(name, argv) for name, argv in _documented_job_submits() if not on_s3(argv)]
    assert commands, "no documented `ray job submit` with local outputs"
    copy = as_ray_job(monkeypatch, tmp_path)
    (copy / "jobs").symlink_to(ROOT / "jobs")  # the uploaded tree, as the relative --config reads it
    real = runtime.check_kept

    def check_then_stop(paths: dict[str, str]) -> None:
        real(paths)
        raise _Checked

    monkeypatch.setattr(runtime, "check_kept", check_then_stop)
    for name, argv in commands:
        with pytest.raises(_Checked):
            main([name.removesuffix(".py"), *argv])
        assert "Ray's unpacked copy" not in capsys.readouterr().err


def _interrupted(argv: list[str], cwd: Path, started: Callable[[], bool],
                 sig: signal.Signals = signal.SIGINT) -> subprocess.CompletedProcess:
    """`python -m avdis argv`, sent Ctrl-C (SIGINT) once `started()`, or SIGTERM as `ray job stop` sends a job's
    driver, where Ray starts it with SIGINT ignored; its exit code and output."""
    blocked = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sig == signal.SIGTERM else None
    proc = subprocess.Popen([sys.executable, "-m", "avdis", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_ADDRESS": ""},
                            preexec_fn=blocked)
    try:
        deadline = time.monotonic() + 240
        while not started():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.timeout(400)
def test_ctrl_c_says_how_to_go_on(tiny_corpus, tiny_shards, tmp_path):
    """Ctrl-C in one-process training or in preprocessing said only "interrupted": not that the rerun resumes from
    the last checkpoint (Ray Train's runs and sweeps said so), nor that a cut build is rebuilt by its rerun."""
    run = tmp_path / "runs" / "cut"
    done = _interrupted(["train", "--storage", str(tmp_path / "runs"), "--name", "cut", f"data.shards={tiny_shards}",
                         "train.epochs=500", "probe.epochs=5"], tmp_path, (run / "latest.json").exists)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis train: interrupted; rerun the same command to resume from its last "
                                        "whole checkpoint"), done.stderr[-3000:]
    shards = tmp_path / "shards"
    done = _interrupted(["preprocess", "--corpus", "synthetic", "--src", str(tiny_corpus), "--out", str(shards),
                         "--shard-size", "1", "--no-ray"], tmp_path, (shards / storage_lock.LOCK).exists)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis preprocess: interrupted; rerun the same command to build the shards "
                                        "again (a build cut short leaves no manifest, so no run reads its shards)")
    assert not (shards / "manifest.parquet").exists()


SWALLOWING = """
import importlib, os, signal, sys
from avdis.cli import main
where, when = sys.argv[1], sys.argv[2]  # module:attribute (a class's too), and on which call (an expression of args)
module, _, name = where.partition(":")
owner, _, attr = name.rpartition(".")
holder = importlib.import_module(module)
for part in filter(None, owner.split(".")):
    holder = getattr(holder, part)
called, dropped = getattr(holder, attr), []
def swallowing(*args):  # as numba's compiler does through llvmlite's ctypes callbacks: the Ctrl-C is dropped
    if not dropped and eval(when):
        dropped.append(True)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between two bytecodes
                pass
        except KeyboardInterrupt:
            pass
    return called(*args)
setattr(holder, attr, swallowing)
sys.exit(main(sys.argv[3:]))
"""


def _swallowed(where: str, when: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`avdis argv` where the call of `where` (module:attribute) for which `when` (an expression of its `args`) is
    first true sends this process a Ctrl-C and drops its KeyboardInterrupt, as a library's C callback does."""
    return subprocess.run([sys.executable, "-c", SWALLOWING, where, when, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})


def test_a_ctrl_c_a_library_swallows_still_stops_the_build(tiny_corpus, tmp_path):
    """A Ctrl-C while numba compiled librosa's functions (a shard's first clip) was printed as 'Exception ignored on
    calling ctypes callback function: ... KeyboardInterrupt' and dropped: the build ran to its end, exit 0. It now
    stops after the shard under way, as an interrupted build (no manifest), exit 130."""
    shards = tmp_path / "shards"
    done = _swallowed("avdis.data.shards.build:write_shard", "True", ["preprocess", "--corpus", "synthetic", "--src",
                      str(tiny_corpus), "--out", str(shards), "--shard-size", "1", "--no-ray"], tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis preprocess: interrupted; rerun the same command to build the shards "
                                        "again (a build cut short leaves no manifest, so no run reads its shards)")
    assert not (shards / "manifest.parquet").exists()
    assert len(list(shards.rglob("*.tar"))) == 1  # the shard under way, then no other


IN_COMPILED_CODE = """
import os, runpy, signal
from avdis.data.shards import build
write_shard = build.write_shard
def interrupted_in_compiled_code(*args):  # as a Ctrl-C that lands while an import makes a dataclass or namedtuple
    exec("os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(1000): pass")  # the handler runs in the loop
    return write_shard(*args)
build.write_shard = interrupted_in_compiled_code
runpy.run_module("avdis", run_name="__main__", alter_sys=True)  # what `python -m avdis` runs
"""


def test_a_ctrl_c_in_code_python_compiled_from_a_string_still_exits_130(tiny_corpus, tmp_path):
    """`python -m avdis preprocess --no-ray`, sent Ctrl-C as its build began, said it was interrupted and then died
    of SIGINT (exit -2, not 130; 2 in 163 runs under load): the Ctrl-C had landed in code Python compiled from a
    string (a lazy import making a dataclass or namedtuple), whose KeyboardInterrupt leaves CPython's flag of a
    Ctrl-C no one handled set, and `python -m` ends such a process by SIGINT after its exit. The `avdis` script and
    jobs/*.py were not affected (a script's `sys.exit` does not look at the flag)."""
    (tmp_path / "in_compiled_code.py").write_text(IN_COMPILED_CODE)
    shards = tmp_path / "shards"
    done = subprocess.run([sys.executable, "-m", "in_compiled_code", "preprocess", "--corpus", "synthetic", "--src",
                           str(tiny_corpus), "--out", str(shards), "--shard-size", "1", "--no-ray"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis preprocess: interrupted; rerun the same command to build the shards "
                                        "again (a build cut short leaves no manifest, so no run reads its shards)")
    assert not (shards / "manifest.parquet").exists()


CRASHING = """
import ctypes, importlib, sys
from avdis.cli import main
module, _, name = sys.argv[1].partition(":")
def crashing(*args):  # a crash in native code, as a decoder's: a read of address 0
    ctypes.string_at(0)
setattr(importlib.import_module(module), name, crashing)
sys.exit(main(sys.argv[2:]))
"""


def test_a_crash_in_native_code_prints_the_stacks(tiny_corpus, tmp_path):
    """`avdis preprocess` that died of a segmentation fault (once in CI, sent Ctrl-C as the build began) said nothing:
    exit -11, stderr empty. The CLI turns Python's faulthandler on, so it prints where each thread was. Run as a user
    runs it: no PYTHONFAULTHANDLER, no -X faulthandler."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    done = subprocess.run([sys.executable, "-c", CRASHING, "avdis.data.shards.build:write_shard", "preprocess",
                           "--corpus", "synthetic", "--src", str(tiny_corpus), "--out", str(tmp_path / "shards"),
                           "--shard-size", "1", "--no-ray"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**env, "RAY_ADDRESS": ""})
    assert done.returncode == -signal.SIGSEGV, done.stderr[-3000:]
    assert "Fatal Python error: Segmentation fault" in done.stderr
    stack = done.stderr[done.stderr.index("Current thread"):]
    assert re.search(r'line \d+ in crashing\n.*line \d+ in _build\n', stack, re.S), done.stderr[-3000:]


def test_a_ctrl_c_a_library_swallows_still_stops_the_generation(tmp_path):
    """The corpus generator and one-process training did not look for a Ctrl-C a library dropped (PyAV's encoder
    and logging callbacks, as numba's do in a build): `avdis synth` wrote every clip and said the corpus was made,
    exit 0. It now stops after the clip under way, its corpus not whole (made again by its rerun), exit 130."""
    out = tmp_path / "corpus"
    done = _swallowed("avdis.data.synth:write_clip", "True", ["synth", "--out", str(out), "--speakers", "2",
                      "--emotions", "2", "--clips-per-speaker", "3", "--duration", "0.3"], tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis synth: interrupted; rerun the same command to generate the corpus "
                                        "again")
    assert len(list(out.rglob("*.mp4"))) == 1 and synth.settings_of(out) is None  # the clip under way, no corpus


@pytest.mark.timeout(300)
def test_a_ctrl_c_a_library_swallows_still_stops_one_process_training(tiny_shards, tmp_path):
    """As the generation: one-process training (a sweep's trial in its own process trains the same loop) ran all its
    epochs and exited 0. It now stops before its next step, exit 130, and resumes from its last checkpoint."""
    run = tmp_path / "runs" / "cut"
    done = _swallowed("avdis.train.step:Stepper.train_step", "args[2] >= 1",  # epoch 2's first step
                      ["train", "--storage", str(tmp_path / "runs"), "--name", "cut", f"data.shards={tiny_shards}",
                       "train.epochs=3", "probe.epochs=5"], tmp_path)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis train: interrupted; rerun the same command to resume from its last "
                                        "whole checkpoint"), done.stderr[-3000:]
    assert json.loads((run / "latest.json").read_text()) == {"checkpoint": "checkpoint_epoch_0001"}
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 1


@pytest.mark.timeout(300)
def test_a_job_stop_of_one_process_training_says_how_to_go_on(tiny_shards, tmp_path):
    """`ray job stop` (SIGTERM, in a driver with SIGINT ignored) of a run that trains in its own process, without
    Ray, killed it at once: no word on resuming, and the job's last line was whatever the run had printed."""
    run = tmp_path / "runs" / "cut"
    done = _interrupted(["train", "--storage", str(tmp_path / "runs"), "--name", "cut", f"data.shards={tiny_shards}",
                         "train.epochs=500", "probe.epochs=5"], tmp_path, (run / "latest.json").exists,
                        signal.SIGTERM)
    assert done.returncode == 130, done.stderr[-3000:]
    assert done.stderr.strip().endswith("avdis train: interrupted; rerun the same command to resume from its last "
                                        "whole checkpoint"), done.stderr[-3000:]


def test_train_help_says_which_strategy_trains_where(capsys):
    """--workers said more than 1 worker runs on Ray Train, but the strategy decides: ddp or deepspeed with one
    worker runs there too (launch.train), and more than 1 under strategy single is refused."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "training workers (train.workers); more than 1 needs --strategy ddp or deepspeed" in out
    assert ("train.strategy: single trains in this process; ddp and deepspeed train on Ray Train workers, one or more"
            in out)
    with pytest.raises(C.ConfigError, match="strategy=single runs one process"):
        C.load(None, ["train.workers=2"])


def test_the_sweep_jobs_help_names_the_config_it_reads_by_default(tmp_path):
    """`python jobs/sweep.py` reads jobs/configs/local.yaml when given no --config, but its --help said only that
    defaults fill what a config leaves out, as if it read none."""
    local = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "local.yaml"
    out = subprocess.run([sys.executable, str(local.parents[2] / "jobs" / "sweep.py"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"without --config: {local}" in " ".join(out.stdout.split()), out.stdout
    from avdis.cli import parse

    assert parse(["sweep"], default_config=str(local)).config == str(local)
    assert parse(["sweep", "--config=other.yaml"], default_config=str(local)).config == "other.yaml"
    assert parse(["sweep"]).config is None


@pytest.mark.parametrize("overrides", [["method.name=adversarial", "method.weight=0.5"], ["method.weight=0.5"],
                                       ["method={name: orthogonal, weight: 1}"]])
def test_a_sweep_refuses_a_method_override_it_would_ignore(tmp_path, capsys, monkeypatch, overrides):
    """`avdis sweep method.name=adversarial` (its --help's example) was refused for lacking a weight, and with one
    swept every method in sweep.space.methods: the trials draw the method and weight from sweep.space."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, ["sweep", "--config", SMOKE, *overrides], overrides[0], "a sweep draws method.",
            "sweep.space.methods=[adversarial] 'sweep.space.weights={adversarial: 0.5}'")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "e.g. sweep.num_samples=8 sweep.space.methods=[multitask,adversarial]" in " ".join(
        capsys.readouterr().out.split())
    cfg = C.load(SMOKE, ["sweep.space.methods=[adversarial]", "sweep.space.weights={adversarial: 0.5}"])
    assert cfg.sweep.space.methods == ["adversarial"] and cfg.sweep.space.weights["adversarial"].high == 0.5


@pytest.mark.parametrize("override", ["train.probe_every=5", "train={probe_every: 3, epochs: 4}"])
def test_a_sweep_under_mo_asha_refuses_a_probe_every_it_would_ignore(tmp_path, capsys, monkeypatch, override):
    """`avdis sweep train.probe_every=5` was accepted and changed nothing: under MO-ASHA (the default scheduler) the
    sweep probes its trials at every multiple of grace_epochs. Refused before any work; without MO-ASHA it is read."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, ["sweep", "--config", SMOKE, override], override, "so train.probe_every would change nothing",
            "sweep.scheduler.type=none to probe every train.probe_every epochs")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "afile"  # without MO-ASHA the sweep goes on, to the next check
    blocker.write_text("not a folder")
    refused(capsys, ["sweep", "--config", SMOKE, override, "sweep.scheduler.type=none", "--storage", str(blocker),
                     "--name", "s"], f"{blocker}/s: not writable")


def test_a_sweep_refuses_the_method_settings_none_of_its_methods_reads(tmp_path, capsys, monkeypatch):
    """`avdis sweep sweep.space.methods=[multitask,orthogonal] method.adversary.steps=2` was accepted: no trial trains
    an adversary. Refused before any work; with a method that reads it in the space, the sweep goes on."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, ["sweep", "--config", SMOKE, "sweep.space.methods=[multitask,orthogonal]",
                     "method.adversary.steps=2"], "method.adversary.steps=2: no method of sweep.space.methods=["
            "multitask, orthogonal] reads method.adversary.steps (only adversarial, confusion do)")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    refused(capsys, ["sweep", "--config", SMOKE, "method.adversary.steps=2", "--storage", str(blocker),
                     "--name", "s"], f"{blocker}/s: not writable")  # smoke.yaml sweeps adversarial


@pytest.mark.parametrize("methods, param, readers", [
    ("[multitask, orthogonal]", "method.adversary.steps=[1, 5]", "adversarial, confusion"),
    ("[multitask]", "method.conditional=[true, false]", "adversarial, confusion, nullspace"),
    ("[single_task]", "method.speaker_weight={low: 0.5, high: 2}",
     "multitask, adversarial, confusion, orthogonal, nullspace"),
])
def test_a_sampled_method_setting_no_swept_method_reads_is_refused(tmp_path, capsys, monkeypatch, methods, param,
                                                                   readers):
    """Sampled for a space without the methods that read it, a setting set trials apart that trained alike (the
    searcher learned noise): refused before any work, on the command line or in the file. With one that reads it,
    it is sampled."""
    monkeypatch.chdir(tmp_path)
    setting = param.partition("=")[0]
    space = f"sweep.space.params.{param}"
    said = f"{setting} is read only by {readers}, none of which sweep.space.methods={methods} holds"
    refused(capsys, ["sweep", "--config", SMOKE, f"sweep.space.methods={methods}", space], f"{space}: {said}")
    in_file = tmp_path / "c.yaml"
    sampled = {setting: yaml.safe_load(param.partition("=")[2])}
    in_file.write_text(yaml.safe_dump({"sweep": {"space": {"methods": yaml.safe_load(methods), "params": sampled}}}))
    refused(capsys, ["sweep", "--config", str(in_file)], f"{in_file}: sweep.space.params.{setting}: {said}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    reader = readers.split(", ")[0]
    refused(capsys, ["sweep", "--config", SMOKE, f"sweep.space.methods={methods[:-1]}, {reader}]", space,
                     "--storage", str(blocker), "--name", "s"], f"{blocker}/s: not writable")


@pytest.mark.parametrize("mode, param, said, fix", [
    ("model.modality=visual", "model.contours=[true, false]", "model.contours are features of the audio encoder; "
     "under model.modality=visual sampling model.contours would change nothing", "model.modality=av"),
    ("train.workers=1", "train.placement_strategy=[PACK, SPREAD]", "with train.workers=1 every trial trains in its "
     "own process, not as a Ray Train run, so sampling train.placement_strategy would change nothing",
     "train.workers=2"),
    ("train.workers=1", "train.max_failures=[0, 2]", "with train.workers=1 every trial trains in its own process, "
     "which Tune restarts (its process died) up to the sweep's train.max_failures, one value for every trial, so "
     "sampling train.max_failures would change nothing",
     "sweep.space.params.train.workers=[1, 2]")])
def test_a_sampled_setting_no_trial_reads_is_refused(tmp_path, capsys, monkeypatch, mode, param, said, fix):
    """`avdis sweep model.modality=visual sweep.space.params.model.contours=[true,false]` (no trial has an audio
    encoder), and Ray Train's settings sampled for trials that each train in their own process, set trials apart that
    trained alike, as the settings given were (refused). Refused before any work; where a trial reads it, sampled."""
    monkeypatch.chdir(tmp_path)
    space = f"sweep.space.params.{param}"
    refused(capsys, ["sweep", "--config", SMOKE, mode, space], f"{space}: {said}")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    fixed = [fix, "train.strategy=deepspeed"] if fix.startswith("train.workers") else [fix]
    refused(capsys, ["sweep", "--config", SMOKE, space, *fixed, "--storage", str(blocker), "--name", "s"],
            f"{blocker}/s: not writable")


@pytest.mark.parametrize("mode, sample, reads, unread", [
    ("train.workers=1", {"train.max_failures": [0, 2]}, {"train": {"strategy": "ddp", "workers": 2}},
     {"train": {"strategy": "ddp", "workers": 1}}),
    ("model.modality=visual", {"model.contours": [True, False]}, {}, {"model": {"modality": "visual"}}),
    ("sweep.space.methods=[multitask, orthogonal]", {"method.adversary.steps": [1, 5]}, {},
     {"sweep": {"space": {"methods": ["multitask", "orthogonal"]}}}),
])
def test_a_files_sample_is_left_alone_where_the_command_line_chose_what_leaves_it_unread(tmp_path, capsys,
                                                                                       monkeypatch, mode, sample,
                                                                                       reads, unread):
    """A config file's sweep.space.params, sampling a setting its own sweeps read, is left alone where the command
    line chose the mode that leaves it unread (`reads`: the file's mode; `unread`: one that leaves it unread), as a
    file's other settings are: `avdis sweep --config <file sampling train.max_failures> train.workers=1` was
    refused for the file's sample. A file whose own mode leaves its sample unread is refused still."""
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump(C.merge(reads, {"sweep": {"space": {"params": sample}}})))
    for line in ([], [mode]):  # the file's own sweep; the command line's, which leaves the sample unread
        refused(capsys, ["sweep", "--config", str(in_file), *line, "--storage", str(blocker), "--name", "s"],
                f"{blocker}/s: not writable")
    at_odds = tmp_path / "odd.yaml"
    at_odds.write_text(yaml.safe_dump(C.merge(unread, {"sweep": {"space": {"params": sample}}})))
    refused(capsys, ["sweep", "--config", str(at_odds)], f"{at_odds}: sweep.space.params.{next(iter(sample))}: ")


@pytest.mark.parametrize("held, sampled", [({"placement_strategy": "SPREAD"}, {}), ({}, {"train.max_failures": [0, 2]})])
def test_a_sweep_under_a_command_line_strategy_single_leaves_a_files_ray_train_settings_alone(tmp_path, capsys,
                                                                                          monkeypatch, held,
                                                                                          sampled):
    """`avdis sweep train.strategy=single` on a file of two-worker DDP trials leaves the file's workers alone (one
    worker: each trial trains in its own process), and so its Ray Train settings, held or sampled, as
    train.workers=1 does: they were refused, "with train.workers=1 ... give train.workers=2 or more", for a
    choice the command line made. A file of strategy single holding them is refused still."""
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    sample = {"sweep": {"space": {"params": sampled}}}
    in_file = tmp_path / "c.yaml"
    in_file.write_text(yaml.safe_dump({"train": {"strategy": "ddp", "workers": 2, **held}, **sample}))
    refused(capsys, ["sweep", "--config", str(in_file), "train.strategy=single", "--storage", str(blocker),
                     "--name", "s"], f"{blocker}/s: not writable")
    in_file.write_text(yaml.safe_dump({"train": {"strategy": "single", **held}, **sample}))
    refused(capsys, ["sweep", "--config", str(in_file)], f"{in_file}: ", "with train.workers=1 every trial trains in "
            "its own process")


@pytest.mark.parametrize("override", ["train.placement_strategy=SPREAD", "sweep.trial_cpus=0.5"])
def test_a_sweep_of_one_worker_trials_refuses_the_ray_train_settings_it_would_ignore(tmp_path, capsys, monkeypatch,
                                                                                     override):
    """A one-worker trial trains in its Tune trial's own process, with no Ray Train run (one bundle to place; no
    TorchTrainer driver for sweep.trial_cpus to size): `avdis sweep train.placement_strategy=SPREAD` ran its sweep as
    without it. Refused before any work; with trials of several workers, sampled or not, taken. (Not
    train.max_failures: Tune restarts such a trial whose process died by it, the next test.)"""
    monkeypatch.chdir(tmp_path)
    setting = override.partition("=")[0]
    refused(capsys, ["sweep", "--config", SMOKE, override], f"{override}: with train.workers=1 every trial trains in "
            f"its own process, not as a Ray Train run, so {setting} would change nothing")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    for workers in ("train.workers=2", "sweep.space.params.train.workers=[1, 2]"):
        refused(capsys, ["sweep", "--config", SMOKE, override, workers, "--storage", str(blocker), "--name", "s"],
                f"{blocker}/s: not writable")


def test_a_sweep_of_one_worker_trials_takes_train_max_failures(tmp_path, capsys, monkeypatch):
    """Tune restarts a one-worker trial whose process died up to train.max_failures (`sweep.tune_failures`): it was
    refused ("with train.workers=1 ... would change nothing"), and such a trial ended as ERROR, never retried. Taken
    now (the sweep goes on to its storage, refused here as not writable)."""
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    refused(capsys, ["sweep", "--config", SMOKE, "train.max_failures=2", "--storage", str(blocker), "--name", "s"],
            f"{blocker}/s: not writable")


@pytest.mark.parametrize("override", ["sweep.space.weights.adversarial=0.5",
                                      "sweep.space.weights={adversarial: {low: 0.1, high: 1}}"])
def test_a_sweep_refuses_a_weight_for_a_method_it_does_not_sweep(tmp_path, capsys, monkeypatch, override):
    """`avdis sweep sweep.space.methods=[multitask,orthogonal] sweep.space.weights.adversarial=0.5` ran its sweep: a
    trial draws the weight of its own method only. Refused before any work; with the method swept, taken."""
    monkeypatch.chdir(tmp_path)
    refused(capsys, ["sweep", "--config", SMOKE, "sweep.space.methods=[multitask,orthogonal]", override],
            f"{override}: sweep.space.methods=[multitask, orthogonal] does not sweep adversarial, so "
            "sweep.space.weights.adversarial would change nothing; add adversarial to sweep.space.methods")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    refused(capsys, ["sweep", "--config", SMOKE, "sweep.space.methods=[multitask,orthogonal]", "--storage",
                     str(blocker), "--name", "s"], f"{blocker}/s: not writable")  # smoke.yaml's adversarial: left
    refused(capsys, ["sweep", "--config", SMOKE, override, "--storage", str(blocker), "--name", "s"],
            f"{blocker}/s: not writable")


@pytest.mark.parametrize("override", ["train.storage=s3://bucket/train", "train.name=mine",
                                      "train={storage: elsewhere, epochs: 2}"])
def test_a_sweep_refuses_a_train_storage_or_name_it_would_ignore(tmp_path, capsys, monkeypatch, override):
    """The cluster configs told users to override train.storage=s3://... for a sweep, which keeps its trials'
    checkpoints under sweep.checkpoints and names its trials itself: accepted, it changed nothing, and the
    checkpoints were looked for under a prefix never written."""
    monkeypatch.chdir(tmp_path)
    key = "train.storage" if "storage" in override else "train.name"
    refused(capsys, ["sweep", "--config", SMOKE, override], override, f"so {key} would change nothing",
            "sweep.checkpoints=s3://bucket/trials")
    assert list(tmp_path.iterdir()) == []


def test_preprocess_takes_the_corpus_and_folders_of_its_config(tiny_corpus, tmp_path, capsys):
    """`avdis preprocess --config X.yaml` asked again for --corpus, --src and --out, which X sets (data.corpus,
    data.src, data.shards): repeated by hand, --out could differ from the data.shards that train and sweep read."""
    shards = tmp_path / "shards"
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"data": {"corpus": "synthetic", "src": str(tiny_corpus), "shards": str(shards)}}))
    assert main(["preprocess", "--config", str(config), "--no-ray"]) == 0
    assert json.loads(capsys.readouterr().out)["url"] == str(shards) and (shards / "manifest.parquet").exists()


def test_a_report_or_dashboard_override_before_the_sweep_folder_is_read_as_an_override():
    """`avdis report s3.endpoint_url=... <sweep>` told the user their folder was a malformed override: argparse took
    the first word for the sweep."""
    for command in ("report", "dashboard"):
        args = parse([command, "s3.region=eu-west-1", "sweeps/local", "s3.endpoint_url=http://127.0.0.1:9000"])
        assert (args.sweep, args.overrides) == ("sweeps/local", ["s3.region=eu-west-1",
                                                                 "s3.endpoint_url=http://127.0.0.1:9000"])
        assert parse([command, "s3://b/a=b", "s3.region=x"]).sweep == "s3://b/a=b"  # a folder with '=' stays one
    done = subprocess.run([sys.executable, "-m", "avdis", "report", "s3.region=eu-west-1"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2 and "no sweep folder given: pass <storage>/<sweep name>" in done.stderr


@pytest.mark.parametrize("command", [["grafana", "export", "--out", "-"], ["model", "--list"]], ids=["long", "short"])
def test_output_to_a_reader_that_went_away_ends_without_a_traceback(command):
    """`avdis grafana export | head`: a reader that stops reading is not the command's failure. Python ignores
    SIGPIPE, so the write raised BrokenPipeError and the command ended in a traceback (and another at exit); an
    output shorter than stdout's buffer failed only in Python's flush at exit ('Exception ignored', exit 120)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a shell runs it
    try:
        done = subprocess.run([sys.executable, "-m", "avdis", *command], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120, cwd=ROOT, env=buffered)
    finally:
        os.close(write)
    assert done.returncode == 141 and "Traceback" not in done.stderr and "Exception" not in done.stderr, \
        done.stderr[-2000:]


def test_a_broken_pipe_is_taken_for_a_reader_gone_only_where_stdout_is_that_pipe(monkeypatch):
    """A BrokenPipeError from a pipe of the command's own (a child's, a socket) is its failure, said with its
    traceback; only stdout closed by its reader ends the command quietly."""
    from avdis.cli import stdout_gone

    read, write = os.pipe()
    try:
        monkeypatch.setattr(sys, "stdout", os.fdopen(write, "w", closefd=False))
        assert not stdout_gone()  # its reader is there
        os.close(read)
        read = None
        assert stdout_gone()
    finally:
        os.close(write)
        if read is not None:
            os.close(read)


def test_model_says_its_head_sizes_are_an_example_not_the_configs_corpus(capsys):
    """`avdis model` headed its table "8 emotions, 24 speakers" (RAVDESS's) whatever the config's corpus, as if they
    were its: smoke.yaml's synthetic corpus has 4 and 6. They are an example, said as one, and each one more adds
    the emb_dim+1 parameters the header says."""
    from avdis.model import multitask

    assert main(["model", "--config", SMOKE, "data.shards=/nonexistent/shards"]) == 0  # none made: an example's
    header = capsys.readouterr().out.splitlines()[0]
    assert "heads for an example 8 emotions and 24 speakers: a run's follow its shards" in header
    cfg = C.load(SMOKE)
    tiny = [int(multitask.describe_presets(cfg, *sizes).splitlines()[1].split()[-1].replace(",", ""))
            for sizes in ((8, 24), (9, 24), (8, 25))]
    assert tiny[1] - tiny[0] == tiny[2] - tiny[0] == cfg.model.emb_dim + 1
