"""Each name, default and rule is written once: registries, CLI flags and Ray settings derive from it.

Also the floor plan (data -> model -> train -> results -> tune -> report): a module imports
only from its own floor or lower ones (the entry point, the package avdis/cli/, sits above them all).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from avdis import clusterfit
from avdis import config as C
from avdis.cli import build_parser
from avdis.data.corpora import ADAPTERS
from avdis.model.disentangle import REGISTRY
from avdis.model.multitask import MODALITY_INPUTS, PRESET_SIZES
from avdis.report.view import COLORS
from avdis.train import checkpoint as ck
from avdis.train import launch
from avdis.train.engine import ENGINES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("keys, names", [
    (REGISTRY, C.METHODS), (PRESET_SIZES, C.PRESETS), (MODALITY_INPUTS, C.MODALITIES),
    (ENGINES, C.STRATEGIES), (ADAPTERS, C.CORPORA), (COLORS, C.METHODS),
], ids=["methods", "presets", "modalities", "strategies", "corpora", "plot colours"])
def test_every_registry_is_keyed_by_the_config_names(keys, names):
    assert set(keys) == set(names)


def _subparser(command: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command]


def _flag(command: str, dest: str):
    return next(a for a in _subparser(command)._actions if a.dest == dest)


def test_cli_choices_are_the_config_names():
    assert tuple(_flag("train", "strategy").choices) == C.STRATEGIES
    assert tuple(_flag("preprocess", "corpus").choices) == C.CORPORA


def test_synth_flags_are_synth_config_fields_with_its_defaults_and_ranges(tmp_path, monkeypatch):
    flags = {a.dest: a for a in _subparser("synth")._actions if a.dest in C.SynthConfig.model_fields}
    assert set(flags) == set(C.SynthConfig.model_fields)
    bounds = 0
    for name, action in flags.items():
        field = C.SynthConfig.model_fields[name]
        assert action.default is None  # a flag left out is not passed: the field's own default applies
        assert f"default {field.default}" in action.help
        for bound in field.metadata:  # each pydantic bound (ge/gt/le/lt) of the field is in the help
            for key, shown in (("ge", "{} <= x"), ("gt", "{} < x"), ("le", "x <= {}"), ("lt", "x < {}")):
                if hasattr(bound, key):
                    assert shown.format(getattr(bound, key)) in action.help, (name, action.help)
                    bounds += 1
    assert bounds, "no bounded field was checked"
    from avdis.data import synth

    seen = []
    monkeypatch.setattr(synth, "generate", lambda cfg, out: seen.append(cfg) or Path(out))
    args = build_parser().parse_args(["synth", "--out", str(tmp_path), "--speakers", "3"])
    assert args.func(args) == 0
    assert seen == [C.SynthConfig(speakers=3)]


def test_one_worker_bundle_for_ray_train_and_the_fit_checks():
    cfg = C.load(None, ["train.strategy=ddp", "train.workers=3", "train.cpus_per_worker=2", "train.gpus_per_worker=1"])
    bundle = clusterfit.worker_bundle(cfg.train)
    assert bundle == {"CPU": 2.0, "GPU": 1.0}
    assert launch.scaling_config(cfg).resources_per_worker == bundle
    assert clusterfit.demand(cfg)[1] == [bundle] * 3


def test_ray_train_keeps_as_many_checkpoints_as_the_local_store():
    cfg = C.Config()
    assert launch.run_config(cfg, str(ROOT / "runs"), "x").checkpoint_config.num_to_keep == ck.KEEP_CHECKPOINTS


# ------------------------------------------------------------------ floors

# directly under avdis/ (its modules and packages such as avdis/config/): floor 0; the entry point above every floor
FLOORS = {"data": 1, "model": 2, "train": 3, "results": 4, "tune": 5, "report": 6, "cli": 7}
ENTRY = ("cli", "__main__.py")  # avdis/cli/ and `python -m avdis`: what imports every floor


def _floor(module: str) -> int:
    return FLOORS.get(module.split(".")[1], 0)


def _avdis_imports(path: Path) -> set[str]:
    """Every avdis module the file imports, at the top or inside functions; a relative import by the module it names."""
    found = set()
    package = path.relative_to(ROOT).parent.parts  # ("avdis", "train") for avdis/train/probe.py
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # from ..tune import sweep: avdis.tune
            base = ".".join(package[: len(package) - node.level + 1])
            found.update([f"{base}.{node.module}"] if node.module else (f"{base}.{a.name}" for a in node.names))
        elif isinstance(node, ast.ImportFrom) and node.module == "avdis":
            found.update(f"avdis.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("avdis."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("avdis."))
    return found


@pytest.mark.parametrize("package", ["", "data", "model", "train", "results", "tune", "report"],
                         ids=["base", "data", "model", "train", "results", "tune", "report"])
def test_no_import_runs_up_a_floor(package):
    """Every module of the floor, those of its packages too (avdis/data/shards/, avdis/config/): checking only the
    modules directly in the floor's folder, it passed over each module a split moved into a package."""
    floor = FLOORS.get(package, 0)
    paths = [path for path in (ROOT / "avdis" / package).rglob("*.py")
             if package or path.relative_to(ROOT / "avdis").parts[0] not in (*FLOORS, *ENTRY)]
    assert paths
    upward = {}
    for path in sorted(paths):
        high = sorted(m for m in _avdis_imports(path) if _floor(m) > floor)
        if high:
            upward[path.relative_to(ROOT).as_posix()] = high
    assert not upward
