"""Configs: YAML + dotted overrides, validated at the edge with the key path and allowed values."""

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import re

import numpy as np
import pytest

from avdis import config as C
from avdis.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_are_parsed_as_yaml_and_applied():
    cfg = C.load(None, ["train.epochs=3", "method.name=adversarial", "method.weight=0.5", "model.modality=audio"])
    assert cfg.train.epochs == 3 and cfg.method.name == "adversarial" and cfg.method.weight == 0.5
    assert cfg.model.modality == "audio"


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = C.load(None, ["data.shards=shards", "sweep.storage=s3://bucket/sweeps"])
    assert cfg.data.shards == str(tmp_path / "shards")
    assert cfg.sweep.storage == "s3://bucket/sweeps"


@pytest.mark.parametrize("override, expected", [
    ("data.shards=s3:/avb/x", "data.shards: not a local path or s3://bucket/prefix"),  # one slash short
    ("sweep.storage=S3://avb/x", "sweep.storage: not a local path or s3://bucket/prefix"),
    ("train.storage=gs://avb/x", "train.storage: not a local path or s3://bucket/prefix"),
    ("data.shards=s3://", "data.shards: '' is not an S3 bucket name"),
    ("sweep.storage=s3://My_Bucket/x", "sweep.storage: 'My_Bucket' is not an S3 bucket name"),
    ("data.src=s3://avb/corpus", "data.src: not a local folder (copy the corpus out of object storage first)"),
])
def test_a_mistyped_storage_url_is_refused_not_made_a_local_folder(tmp_path, monkeypatch, capsys, override, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(C.ConfigError, match=re.escape(expected)):
        C.load(None, [override])
    if not override.startswith("data.src"):  # the same check for a sweep folder given to report or dashboard
        assert main(["report", override.split("=", 1)[1]]) == 2
        assert expected.split(": ", 1)[1] in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _quoted(names) -> list[str]:
    return [f"'{n}'" for n in names]


@pytest.mark.parametrize("override, expected", [
    ("train.epoch=3", ["train.epoch: unknown key; allowed keys here: ", *C.TrainConfig.model_fields]),
    ("train.epochs=0", ["train.epochs: Input should be greater than or equal to 1 (got 0)"]),
    ("method.name=foo", ["method.name: Input should be ", *_quoted(C.METHODS), "(got 'foo')"]),
    ("model.preset=huge", ["model.preset: Input should be ", *_quoted(C.PRESETS), "(got 'huge')"]),
    ("sweep.emotion_metric=f1", ["sweep.emotion_metric: Input should be ", *_quoted(C.EMOTION_METRICS), "(got 'f1')"]),
    ("method.name=nullspace", ["method 'nullspace' needs method.weight in [{}, {}]".format(*C.WEIGHT_RANGES["nullspace"])]),
    # renamed: it weights the loss logged as loss_speaker, so the message offers speaker_weight
    ("method.identity_weight=2", ["method.identity_weight: unknown key; allowed keys here: ", "speaker_weight"]),
    ("bogus.x=1", ["bogus: unknown key; allowed keys here: ", *C.Config.model_fields]),
    # a key one letter off a setting names it
    ("train.epoch=3", ["train.epoch: unknown key; allowed keys here: ", "; did you mean epochs?"]),
    ("trian.epochs=3", ["trian: unknown key; allowed keys here: ", "; did you mean train?"]),
    ("sweep.scheduler.grace_epoch=1", ["; did you mean grace_epochs?"]),
    # a range's keys, in a mapping setting: they listed no allowed keys ("allowed keys here: ")
    ("sweep.space.weights.adversarial={low: 0.1, hgh: 1}",
     ["sweep.space.weights.adversarial.hgh: unknown key; allowed keys here: high, int, log, low; did you mean high?"]),
    ("sweep.space.params.train.lr={low: 0.001, hgh: 0.1}",
     ["sweep.space.params.train.lr.hgh: unknown key; allowed keys here: high, int, log, low; did you mean high?"]),
    # pydantic takes true as 1: `train.epochs: yes` trained one epoch
    ("train.epochs=yes", ["train.epochs: YAML reads this as a yes/no", "(got True)"]),
    ("train.lr=true", ["train.lr: YAML reads this as a yes/no"]),
    ("train.name=no", ["train.name: YAML reads this as a yes/no", "quote a name"]),
    # 10 ms written in seconds: a hop of round(0.16) = 0 samples, which failed every clip of preprocessing
    ("data.features.hop_ms=0.01", ["data.features.hop_ms: Input should be greater than or equal to 1 (got 0.01)"]),
])
def test_bad_values_name_the_key_and_the_allowed_values(override, expected):
    with pytest.raises(C.ConfigError) as err:
        C.load(None, [override])
    missing = [piece for piece in expected if piece not in str(err.value)]
    assert not missing, (missing, str(err.value))


def test_yes_no_words_still_set_the_settings_that_take_them():
    cfg = C.load(None, ["model.contours=no", "data.synth.identity_cues=off", "sweep.space.params={train.lr: {low: 0.001, high: 0.1, log: yes}}"])
    assert (cfg.model.contours, cfg.data.synth.identity_cues, cfg.sweep.space.params["train.lr"].log) == \
        (False, "off", True)


def test_method_weights_are_checked_against_each_method():
    with pytest.raises(C.ConfigError, match="outside its range"):
        C.load(None, ["method.name=adversarial", "method.weight=50"])
    with pytest.raises(C.ConfigError, match="count of iterations"):
        C.load(None, ["method.name=nullspace", "method.weight=2.5"])
    with pytest.raises(C.ConfigError, match="takes no weight"):
        C.load(None, ["method.name=multitask", "method.weight=1"])
    # 0 is taken here: the command refuses it, but where it resumes a run started with it (the run's workers and a
    # sweep's trials validate their config again; test_cli_inputs)
    for method in ("single_task", "multitask"):
        assert C.load(None, [f"method.name={method}", "method.weight=0"]).method.weight == 0


def test_orthogonal_is_refused_on_batches_too_small_to_correlate():
    """One row has no covariance to fold in: orthogonal trained as multitask, under its own name. Two rows fold one
    direction into the running covariance (`test_model`'s 2-row test): the run was refused though it could train."""
    with pytest.raises(C.ConfigError, match="train.batch_size=1 has no covariance.*batch_size >= 2"):
        C.load(None, ["method.name=orthogonal", "method.weight=1", "train.batch_size=1"])
    assert C.load(None, ["method.name=orthogonal", "method.weight=1", "train.batch_size=2"]).train.batch_size == 2
    assert C.load(None, ["method.name=multitask", "train.batch_size=1"]).train.batch_size == 1


@pytest.mark.parametrize("method", ["adversarial", "confusion"])
def test_a_weight_warmup_as_long_as_training_is_refused(method):
    """warmup_epochs 10 of 4 epochs trained at 0.4 of method.weight at most, recorded at method.weight."""
    with pytest.raises(C.ConfigError, match=r"warmup_epochs=4 ramps .* train.epochs=4, .* method.weight=2 .* "
                                            r"set method.adversary.warmup_epochs < train.epochs"):
        C.load(None, [f"method.name={method}", "method.weight=2", "method.adversary.warmup_epochs=4",
                      "train.epochs=4"])
    assert C.load(None, [f"method.name={method}", "method.weight=2", "method.adversary.warmup_epochs=3",
                         "train.epochs=4"]).method.adversary.warmup_epochs == 3
    assert C.load(None, ["method.name=multitask", "method.adversary.warmup_epochs=9", "train.epochs=4"])


def test_engine_combinations_that_cannot_work_are_refused():
    with pytest.raises(C.ConfigError, match="shards state only under strategy=deepspeed"):
        C.load(None, ["train.strategy=ddp", "train.zero_stage=3"])
    with pytest.raises(C.ConfigError, match="offload_params needs"):
        C.load(None, ["train.strategy=deepspeed", "train.zero_stage=2", "train.offload_params=true"])
    with pytest.raises(C.ConfigError, match="strategy=single runs one process"):
        C.load(None, ["train.workers=2"])
    # a worker trains on one GPU, found as LOCAL_RANK % the GPUs it sees: with 2 per worker, worker 1 took worker 0's
    # second GPU and 2 of the 4 sat idle; with half a GPU each, two workers of one node shared one, which NCCL refuses
    with pytest.raises(C.ConfigError, match="train.gpus_per_worker: Input should be less than or equal to 1"):
        C.load(None, ["train.gpus_per_worker=2"])
    with pytest.raises(C.ConfigError, match="gpus_per_worker=0.5 with workers=2: two workers of one run could share"):
        C.load(None, ["train.strategy=ddp", "train.workers=2", "train.gpus_per_worker=0.5"])
    assert C.load(None, ["train.gpus_per_worker=0.5"]).train.gpus_per_worker == 0.5  # one-worker trials share GPUs
    # DeepSpeed sums micro-batches in bf16 at stage 0 (an update off by ~3e-3 of itself); stages 1-3 sum in fp32
    bf16_accum = ["train.strategy=deepspeed", "train.precision=bf16", "train.grad_accum=2"]
    with pytest.raises(C.ConfigError, match="grad_accum=2 in bf16 at zero_stage=0 sums the micro-batches' gradients"):
        C.load(None, [*bf16_accum, "train.zero_stage=0"])
    assert C.load(None, [*bf16_accum, "train.zero_stage=1"]).train.bf16


def test_a_files_engine_setting_is_left_alone_where_the_command_line_chose_a_mode_that_ignores_it(tmp_path, capsys):
    """`avdis train --config jobs/configs/local.yaml --strategy single` (or ddp; smoke.yaml too) was refused:
    "zero_stage=1 shards state only under strategy=deepspeed", where the README's rule leaves a file's setting alone once the
    command line chose the mode that ignores it. Now the file's zero_stage (and offload_*, DeepSpeed's; workers under
    single) is dropped there, and the run is the one without it: the same config, name and signature. Given on the
    command line too, or with the mode from the file, it is refused as before."""
    import yaml

    from avdis.train import checkpoint as ck
    from avdis.train.launch import run_name

    def without(path: Path, *keys: str) -> Path:
        raw = yaml.safe_load(path.read_text())
        lean = tmp_path / f"{path.stem}-lean.yaml"
        lean.write_text(yaml.safe_dump({**raw, "train": {k: v for k, v in raw["train"].items() if k not in keys}}))
        return lean

    for config in ("local.yaml", "smoke.yaml"):
        path = ROOT / "jobs" / "configs" / config
        lean = without(path, "zero_stage")
        for strategy in ("single", "ddp"):
            for line in ({"values": {"train.strategy": strategy}}, {"overrides": [f"train.strategy={strategy}"]}):
                cfg, bare = C.load(path, **line), C.load(lean, **line)
                assert cfg == bare and cfg.train.zero_stage == 0 and cfg.train.strategy == strategy
                assert run_name(cfg) == run_name(bare) and ck.run_signature(cfg, "") == ck.run_signature(bare, "")
                assert cfg.model_dump(exclude_unset=True) == bare.model_dump(exclude_unset=True)
        with pytest.raises(C.ConfigError, match="zero_stage=3 shards state only under strategy=deepspeed"):
            C.load(path, ["train.strategy=ddp", "train.zero_stage=3"])  # both given: refused
    ddp = tmp_path / "ddp.yaml"
    ddp.write_text("train: {strategy: ddp, zero_stage: 2}\n")
    with pytest.raises(C.ConfigError, match="zero_stage=2 shards state only under strategy=deepspeed"):
        C.load(ddp)  # the mode from the file too
    with pytest.raises(C.ConfigError, match="zero_stage=2 shards state only under strategy=deepspeed"):
        C.load(ddp, [], {"train.strategy": "ddp"})  # a file at odds with its own mode: not left alone
    offload = tmp_path / "offload.yaml"
    offload.write_text("train: {strategy: deepspeed, zero_stage: 3, offload_params: true, offload_optimizer: true}\n")
    assert not {"offload_params", "offload_optimizer"} & C.load(offload, ["train.zero_stage=0"]).train.model_fields_set
    stage2 = C.load(offload, ["train.zero_stage=2"]).train
    assert stage2.offload_optimizer and "offload_params" not in stage2.model_fields_set
    with pytest.raises(C.ConfigError, match="offload_params needs"):
        C.load(offload, ["train.zero_stage=2", "train.offload_params=true"])
    two = tmp_path / "two.yaml"
    two.write_text("train: {strategy: ddp, workers: 2}\n")
    assert C.load(two, [], {"train.strategy": "single"}) == C.load(None, [], {"train.strategy": "single"})
    single = tmp_path / "single.yaml"
    single.write_text("train: {strategy: single}\n")
    with pytest.raises(C.ConfigError, match="strategy=single runs one process"):
        C.load(single, [], {"train.workers": 2})  # the command line's workers under the file's single: refused
    blocker = tmp_path / "afile"  # past the config, the run stops at its next check
    blocker.write_text("not a folder")
    for strategy in ("single", "ddp"):
        assert main(["train", "--config", str(ROOT / "jobs" / "configs" / "local.yaml"), "--strategy", strategy,
                     "--storage", str(blocker / "x")]) == 2
        err = capsys.readouterr().err
        assert f"{blocker / 'x'}: not writable" in err and "zero_stage" not in err, err


def test_search_space_errors():
    with pytest.raises(C.ConfigError, match="unknown method 'foo'"):
        C.load(None, ["sweep.space.methods=[multitask, foo]"])
    with pytest.raises(C.ConfigError, match="empty range"):
        C.load(None, ["sweep.space.weights.adversarial={low: 2, high: 1}"])  # low == high: one value
    # drawn from int(low): 0.5 drew 0, below the range, and 1.5 drew 1
    with pytest.raises(C.ConfigError, match=r"int range needs whole-number ends \(got low=1.5, high=16.0\)"):
        C.load(None, ["sweep.space.weights.nullspace={low: 1.5, high: 16, int: true}"])
    with pytest.raises(C.ConfigError, match="int range needs whole-number ends"):
        C.load(None, ["sweep.space.weights.adversarial={low: 0.5, high: 3, int: true}"])
    assert C.load(None, ["sweep.space.weights.nullspace={low: 2, high: 16, int: true}"]).sweep.space.weights[
        "nullspace"].low == 2
    with pytest.raises(C.ConfigError, match="sweep.modes: unknown key"):  # the objectives are the mission's
        C.load(None, ["sweep.modes=[max, max]"])
    # each entry is one choice of the draw: listed twice, drawn twice as often
    with pytest.raises(C.ConfigError, match="sweep.space.methods lists single_task more than once"):
        C.load(None, ["sweep.space.methods=[single_task, multitask, single_task]"])
    with pytest.raises(C.ConfigError, match=r"sweep.space.params.train.lr: \[0.01, 0.001, 0.01\] holds a value more"):
        C.load(None, ["sweep.space.params.train.lr=[0.01, 0.001, 0.01]"])
    # choices as the setting reads them: YAML reads 1e-4 as a string, which was drawn and recorded as one
    space = C.load(None, ["sweep.space.params={train.lr: [1e-4, 1e-3], train.batch_size: [8, 16]}"]).sweep.space
    assert space.params == {"train.lr": [0.0001, 0.001], "train.batch_size": [8, 16]}
    with pytest.raises(C.ConfigError, match=r"\['1e-3', 0.001\] holds a value more than once"):
        C.load(None, ["sweep.space.params.train.lr=[1e-3, 0.001]"])


@pytest.mark.parametrize("weights, expected", [
    ("{adverserial: 0.5}", "sweep.space.weights.adverserial: no such method; weighted methods: ['adversarial', "
                           "'confusion', 'nullspace', 'orthogonal']; did you mean adversarial?"),
    ("{multitask: {low: 0.1, high: 1}}", "sweep.space.weights.multitask: method takes no weight"),
])
def test_a_weight_for_a_method_that_has_none_is_named_before_its_value_is_read(weights, expected):
    """A misspelt method holding a number was refused as "Input should be a valid dictionary or instance of Range
    (got 0.5)", which named neither the misspelling nor the methods."""
    with pytest.raises(C.ConfigError) as err:
        C.load(None, [f"sweep.space.weights={weights}"])
    assert expected in str(err.value) and "Range" not in str(err.value)


@pytest.mark.parametrize("params, expected", [
    ("{train.foo: [1, 2]}", "'train.foo' is not a setting of data, model, train, method"),
    ("{train: [1]}", "'train' is not a setting of"),
    ("{sweep.num_samples: [1, 2]}", "'sweep.num_samples' is not a setting of"),
    ("{train.batch_size: [0, 32]}", "sweep.space.params.train.batch_size: 0 is not a value it takes (Input should be greater"),
    ("{train.lr: {low: -1, high: 0.1}}", "sweep.space.params.train.lr: -1.0 is not a value it takes"),
    ("{method.name: [multitask]}", "method.name is not sampled here"),
    ("{train.storage: [a, b]}", "train.storage is not sampled here"),
    ("{data.split.seed: [0, 1]}", "data.split.seed is fixed when the shards are made"),
    ("{data.features.fps: [4.0, 8.0]}", "data.features.fps is fixed when the shards are made"),
    # a typo under a section held whole was named as that section's rule ("one setting for the whole sweep")
    ("{probe.epoch: [1, 2]}", "'probe.epoch' is not a setting of"),
    ("{data.synth.speaker: [2, 3]}", "'data.synth.speaker' is not a setting of"),
    ("{train.lrr: [0.1]}", "(write its dotted path, e.g. train.lr); did you mean train.lr?"),
    ("{model.emb: [8]}", "; did you mean model.emb_dim?"),
    # both ends are whole numbers, the draws between them not: the sweep stopped at its first such trial
    ("{model.emb_dim: {low: 8, high: 32}}", "sweep.space.params.model.emb_dim: the setting takes whole numbers, and "
                                            "this range draws between them; add int: true"),
    # one value: refused as "not a valid dictionary or instance of Range", with no word of where it goes
    ("{train.lr: 0.001}", "sweep.space.params: train.lr: 0.001 is one value, not a choice to sample: to hold train.lr "
                          "fixed, set it (train.lr=0.001); to sample it, give choices ([a, b]) or a range"),
    # one end of a range (sweep.space.params.train.lr.low=0.1) was told to hold a setting "train.lr.low" fixed
    ("{train.lr.low: 0.1}", "sweep.space.params: 'train.lr.low' is not a setting but a key inside train.lr's value; a "
                            "range or list of choices is given whole: sweep.space.params.train.lr={low: ..., high: "),
    ("{train.lrr: 0.1}", "sweep.space.params: 'train.lrr' is not a setting of data, model, train, method (write its "
                         "dotted path, e.g. train.lr); did you mean train.lr?"),
])
def test_a_sampled_setting_must_exist_and_take_every_value_before_any_work(params, expected):
    """Found only by the trial recorder once Ray ran, after sweep.json was written (the name was then unusable)."""
    with pytest.raises(C.ConfigError, match=re.escape(expected)):
        C.load(None, [f"sweep.space.params={params}"])


@pytest.mark.parametrize("override", ["sweep.checkpoints=", "sweep.storage=''", "data.shards=' '"])
def test_an_empty_location_is_refused_not_taken_for_the_working_directory(override):
    with pytest.raises(C.ConfigError, match="empty; give a folder or s3://bucket/prefix"):
        C.load(None, [override])


@pytest.mark.parametrize("endpoint", ["localhost:9000", "minio.local", "s3://minio:9000", "http:/minio:9000"])
def test_an_s3_endpoint_without_its_scheme_is_refused_at_the_edge(endpoint):
    """botocore refused `s3.endpoint_url=localhost:9000` ('Invalid endpoint') only when a command first reached S3,
    after its other work, with exit 1."""
    with pytest.raises(C.ConfigError, match=rf"s3.endpoint_url: '{endpoint}' is not an endpoint URL; give it with its "
                                            rf"scheme, e.g. http://{endpoint.rpartition('/')[2]} "):
        C.load(None, [f"s3.endpoint_url={endpoint}"])
    for fine in ("http://localhost:9000", "https://s3.example.com", "HTTPS://s3.example.com", "", "null"):
        C.load(None, [f"s3.endpoint_url={fine}"])


@pytest.mark.parametrize("endpoint", ["http://minio_1:9000", "https://my bucket.example.com", "http://:9000"])
def test_an_s3_endpoint_whose_host_botocore_refuses_is_refused_at_the_edge(endpoint):
    """`s3.endpoint_url=http://minio_1:9000` (a Compose container's name) was taken, and the first S3 call failed as
    'cannot reach storage (ValueError: Invalid endpoint ...)' (exit 1), as AWS_ENDPOINT_URL's was refused at start."""
    with pytest.raises(C.ConfigError, match=rf"s3.endpoint_url: '{endpoint}' is not an endpoint URL botocore takes: "
                                            r"its host must be an IP address or a DNS name"):
        C.load(None, [f"s3.endpoint_url='{endpoint}'"])
    for fine in ("http://minio-1:9000", "http://10.0.0.5:9000", "http://[::1]:9000", "https://s3.example.com."):
        C.load(None, [f"s3.endpoint_url='{fine}'"])


@pytest.mark.parametrize("endpoint", ["http://minio:9000 ", "http://minio:99999", "http://minio:port",
                                      "http://minio:9000?region=x"])
def test_an_s3_endpoint_botocore_cannot_resolve_is_refused_at_the_edge(endpoint):
    """botocore made its client with these and refused them at the first S3 call ('cannot write
    (EndpointResolutionError: Custom endpoint ... was not a valid URI)', exit 1): a port it cannot read (a space after
    it, from an environment variable or a file), or a query."""
    with pytest.raises(C.ConfigError, match=rf"s3.endpoint_url: '{re.escape(endpoint)}' is not an endpoint URL "
                                            r"botocore takes: .*(port|query)"):
        C.load(None, [f"s3.endpoint_url='{endpoint}'"])
    for fine in ("http://minio:9000/", "http://minio:9000/prefix", "http://minio", "http://[::1]:65535"):
        C.load(None, [f"s3.endpoint_url='{fine}'"])


def test_an_s3_endpoint_after_a_space_is_refused_saying_so():
    """Refused as having no scheme, with the advice 'give it with its scheme, e.g. http://  http://localhost:9000'."""
    with pytest.raises(ValueError, match=r"'  http://localhost:9000' is not an endpoint URL; it starts with a space: "
                                         r"remove it \["):
        C.S3Config(endpoint_url="  http://localhost:9000")


@pytest.mark.parametrize("endpoint", ["http://minio:9000\n", "http://minio:9000\r\n", "http://minio:9000/\t"])
def test_an_s3_endpoint_with_a_line_break_is_refused_saying_so(endpoint):
    """botocore refuses a tab or line break anywhere in an endpoint ('Invalid endpoint'); AWS_ENDPOINT_URL from a
    Kubernetes ConfigMap made from a file ends in one. The refusal said its host must be an IP address or a DNS name,
    which it was."""
    with pytest.raises(ValueError, match=r"is not an endpoint URL botocore takes: it holds a line break or tab"):
        C.S3Config(endpoint_url=endpoint)


@pytest.mark.parametrize("region", ["not a region", "eu-west-1 ", "eu_west_1", "-eu", "123", "x" * 64])
def test_an_s3_region_botocore_refuses_is_refused_at_the_edge(region):
    """botocore refused `s3.region='not a region'` (InvalidRegionError) only when a command first reached S3, after
    its other work, said to be a connection fault. Refused as botocore would (one DNS label); the names S3 servers
    other than AWS take (MinIO's us-east-1, Garage's garage, Ceph's default) and none ('') are taken."""
    with pytest.raises(C.ConfigError, match=rf"s3.region: {region!r} is not a region name botocore takes: letters, "
                                            r"digits and '-'"):
        C.load(None, [f"s3.region={region!r}"])
    for fine in ("eu-west-1", "us-gov-west-1", "garage", "default", "", "null"):
        C.load(None, [f"s3.region={fine}"])


def test_an_empty_cluster_file_is_refused_not_taken_for_the_working_directory():
    """`ray.cluster_file=` (to drop a config's) was the working directory, refused only once Ray had started, as a
    cluster file that cannot be read ("Is a directory")."""
    with pytest.raises(C.ConfigError, match=r"ray.cluster_file: empty; give a Ray cluster launcher YAML or KubeRay "
                                            r"manifest, or null for none"):
        C.load(None, ["ray.cluster_file="])
    assert C.load(None, ["ray.cluster_file=null"]).ray.cluster_file is None


def test_a_sampled_setting_may_be_given_as_a_dotted_override_and_keeps_the_default_weights():
    cfg = C.load(None, ["sweep.space.params.train.lr=[0.001, 0.01]", "sweep.space.params.model.dropout=[0.0, 0.2]"])
    assert cfg.sweep.space.params == {"train.lr": [0.001, 0.01], "model.dropout": [0.0, 0.2]}
    assert cfg.sweep.space.weights == C.SearchSpace().weights and "adversarial" in cfg.sweep.space.weights


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "-x", "my sweep"])
def test_a_sweep_name_must_be_one_folder_name(name):
    with pytest.raises(C.ConfigError, match="must be one folder name"):
        C.load(None, [f"sweep.name={name!r}" if name else "sweep.name="])


def test_every_shipped_config_validates():
    for path in sorted((ROOT / "jobs" / "configs").glob("*.yaml")):
        C.load(path)


def test_cli_exits_2_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: -1\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and "greater than or equal to 1" in err
    assert not (tmp_path / "runs").exists()
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_console_script_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "avdis", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("synth", "preprocess", "train", "sweep", "report", "dashboard", "model", "grafana"):
        assert command in out


@pytest.mark.parametrize("content, expected", [
    (b"train:\n  epochs: 3\nmodel:\n  emb_dim: 16\ntrain:\n  lr: 0.1\n", "found the key 'train' twice"),
    (b"train:\n  name: caf\xe9\n", "not UTF-8 text (invalid continuation byte at byte 18); save it as UTF-8"),
])
def test_a_config_file_with_a_repeated_key_or_not_utf8_is_refused(tmp_path, content, expected):
    """YAML keeps the last of two `train:` sections silently; a Latin-1 file gave a traceback."""
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(C.ConfigError, match=re.escape(expected)):
        C.load(path)


def test_a_key_given_twice_in_an_overrides_value_is_refused_as_in_a_file():
    """YAML kept the last of the two in silence: `'train={epochs: 3, epochs: 30}'` trained 30 epochs."""
    with pytest.raises(C.ConfigError, match=re.escape("found the key 'epochs' twice")):
        C.load(None, ["train={epochs: 3, epochs: 30}"])


def test_a_dotted_key_in_a_config_file_is_told_to_be_nested_not_called_unknown(tmp_path):
    """`train.epochs: 5` in a file (as on the command line) read "train.epochs: unknown key", a setting --help lists."""
    path = tmp_path / "c.yaml"
    path.write_text("train.epochs: 5\nsweep:\n  space.methods: [multitask]\n")
    with pytest.raises(C.ConfigError) as err:
        C.load(path)
    assert f"{path}: train.epochs: YAML reads a dotted key as one name" in str(err.value), str(err.value)
    assert "write train: {epochs: ...}" in str(err.value) and "write space: {methods: ...}" in str(err.value)
    assert "unknown key" not in str(err.value)


@pytest.mark.parametrize("base, params", [
    (["train.strategy=ddp", "train.workers=2"], "{train.workers: [2, 4]}"),
    (["train.strategy=deepspeed"], "{train.zero_stage: [1, 2, 3]}"),
])
def test_a_sampled_value_valid_with_the_configs_other_settings_is_accepted(base, params):
    """Each value is checked against its own type and bounds; rules tying it to other settings hold per trial."""
    C.load(None, [*base, f"sweep.space.params={params}"])


def test_yaml_merge_keys_still_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sweep:\n  space:\n    weights:\n      adversarial: &w {low: 0.1, high: 1.0, log: true}\n"
                    "      confusion: {<<: *w, high: 2.0}\n      orthogonal: {low: 0.1, high: 30.0}\n"
                    "      nullspace: {low: 1, high: 16, int: true}\n")
    weights = C.load(path).sweep.space.weights
    assert (weights["confusion"].low, weights["confusion"].high, weights["confusion"].log) == (0.1, 2.0, True)


def test_a_weight_range_given_for_one_method_leaves_the_others_at_their_defaults(tmp_path):
    """Refused before: the YAML's weights replaced the defaults whole, so narrowing adversarial alone, with every
    method swept, read "sweep.space.weights.confusion is missing", though `--help` lists its default range."""
    path = tmp_path / "c.yaml"
    path.write_text("sweep:\n  space:\n    weights:\n      adversarial: {low: 0.1, high: 1.0}\n")
    weights = C.load(path).sweep.space.weights
    assert (weights["adversarial"].low, weights["adversarial"].high, weights["adversarial"].log) == (0.1, 1.0, False)
    assert {m: weights[m] for m in ("confusion", "orthogonal", "nullspace")} == {
        m: C.SearchSpace().weights[m] for m in ("confusion", "orthogonal", "nullspace")}
    assert C.load(None, ["sweep.space.weights.orthogonal={low: 1, high: 5}"]).sweep.space.weights["confusion"] == \
        C.SearchSpace().weights["confusion"]


def test_a_path_given_as_a_bare_tilde_is_the_home_folder_not_yamls_null(tmp_path):
    """`train.storage=~` was YAML's null, refused as "not a valid string (got None)", where the README says `~` is
    expanded, quoted or not. A setting whose null means something keeps it: sweep.checkpoints' is the sweep folder."""
    home = os.path.expanduser("~")
    cfg = C.load(None, ["train.storage=~", "sweep.storage= ~", "data.shards=~", "data.src=~"])
    assert (cfg.train.storage, cfg.sweep.storage, cfg.data.shards, cfg.data.src) == (home,) * 4
    assert C.load(None, ["sweep.checkpoints=/x", "sweep.checkpoints=~"]).sweep.checkpoints is None
    assert C.load(None, ["train.name=~"]).train.name is None  # no path: YAML's null, the default name
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  storage: ~\n")  # a file's ~ stays YAML's null, refused saying how to mean home
    with pytest.raises(C.ConfigError, match=r"train.storage: .*got None.*quoted, '~' is the home folder"):
        C.load(path)


def test_one_end_of_a_default_weight_range_given_alone_keeps_the_rest_of_it(tmp_path):
    """`sweep.space.weights.adversarial.low=0.1` over the defaults was refused ("high: Field required"): the override
    replaced the method's whole range with {low: 0.1}."""
    weights = C.load(None, ["sweep.space.weights.adversarial.low=0.1", "sweep.space.weights.nullspace.high=8"]
                     ).sweep.space.weights
    assert weights["adversarial"] == C.Range(low=0.1, high=3.0, log=True)
    assert weights["nullspace"] == C.Range(low=1, high=8, int=True)
    path = tmp_path / "c.yaml"  # over a file's range: its other fields, as the file gave them
    path.write_text("sweep:\n  space:\n    weights:\n      adversarial: {low: 0.2, high: 1.0}\n")
    assert C.load(path, ["sweep.space.weights.adversarial.low=0.1"]).sweep.space.weights["adversarial"] == \
        C.Range(low=0.1, high=1.0)
    with pytest.raises(C.ConfigError, match="empty range"):  # the default's other end still checked against
        C.load(None, ["sweep.space.weights.adversarial.low=5"])


def test_a_number_as_a_methods_weight_holds_it_fixed_in_every_trial(tmp_path):
    """Refused before ("empty range" for low == high, "valid dictionary" for a number): a sweep of other settings at
    one weight could not be written."""
    import optuna

    from avdis.tune.space import DefineByRun

    path = tmp_path / "c.yaml"
    path.write_text("sweep:\n  space:\n    methods: [adversarial, nullspace, orthogonal]\n    weights:\n"
                    "      adversarial: 0.5\n      nullspace: 4\n      orthogonal: {low: 2, high: 2, log: true}\n"
                    "    params:\n      train.lr: {low: 0.001, high: 0.01, log: true}\n")
    space = C.load(path).sweep.space
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True))
    drawn = []
    for i in range(6):
        trial = study.ask()
        DefineByRun(space)(trial)
        method = trial.params["method"]
        drawn.append((method, trial.params[f"weight_{method}"]))
        study.tell(trial, [0.5 + i / 20, 0.5])
    fixed = {"adversarial": 0.5, "nullspace": 4, "orthogonal": 2}
    assert {m for m, _ in drawn} >= {"nullspace", "orthogonal"}, drawn  # the checks below see both kinds of weight
    assert all(w == fixed[m] and type(w) is (int if m == "nullspace" else float) for m, w in drawn), drawn
    with pytest.raises(C.ConfigError, match=r"empty range: low=2.0 must be <= high=1.0"):
        C.load(None, ["sweep.space.weights.orthogonal={low: 2, high: 1}"])
    with pytest.raises(C.ConfigError, match=r"sweep.space.weights.confusion: \[20.0, 20.0\] leaves the method's range"):
        C.load(None, ["sweep.space.weights.confusion=20"])
    # YAML 1.1 reads 5e-1 as a string (its floats need a '.'): refused as "not a valid Range", where method.weight
    # took it
    path.write_text("sweep:\n  space:\n    weights:\n      adversarial: 5e-1\n")
    assert C.load(path).sweep.space.weights["adversarial"] == C.Range(low=0.5, high=0.5)
    assert C.load(None, ["sweep.space.weights.confusion=1E-1"]).sweep.space.weights["confusion"].high == 0.1


def test_a_range_given_over_a_files_choices_or_fixed_weight_replaces_them(tmp_path):
    """Refused before as "sweep.space.params.train.lr is a value ([0.001, 0.01]), not a section; write
    sweep.space.params.train.lr: {key: value}", the very range given: a space's entry may be a range or choices."""
    path = tmp_path / "c.yaml"
    path.write_text("sweep:\n  space:\n    methods: [multitask, adversarial]\n    weights:\n      adversarial: 0.5\n"
                    "    params:\n      train.lr: [0.001, 0.01]\n")
    space = C.load(path, ["sweep.space.params.train.lr={low: 1e-4, high: 1e-2, log: true}",
                          "sweep.space.weights.adversarial={low: 0.1, high: 1.0}"]).sweep.space
    assert space.params == {"train.lr": C.Range(low=1e-4, high=1e-2, log=True)}
    assert space.weights["adversarial"] == C.Range(low=0.1, high=1.0)
    later = C.load(None, ["sweep.space.weights.adversarial=0.5", "sweep.space.weights.adversarial={low: 0.2, high: 2}"])
    assert later.sweep.space.weights["adversarial"] == C.Range(low=0.2, high=2.0)


def test_nullspace_may_not_remove_more_directions_than_z_emo_has():
    """Capped silently before: a run recorded as weight 64 removed 4 directions."""
    with pytest.raises(C.ConfigError, match=r"method.weight=64: nullspace removes at most model.emb_dim - 1 = 3 "
                                              r"directions of z_emo \(model.emb_dim=4\)"):
        C.load(None, ["method.name=nullspace", "method.weight=64", "model.emb_dim=4"])
    # every direction (found by hU3): z_emo empty, every clip one emotion, leakage 0; such a trial was a sweep's front
    with pytest.raises(C.ConfigError, match=r"method.weight=16: nullspace removes at most model.emb_dim - 1 = 15 "
                                              r"directions .* leave it empty"):
        C.load(None, ["method.name=nullspace", "method.weight=16", "model.emb_dim=16"])
    assert C.load(None, ["method.name=nullspace", "method.weight=15", "model.emb_dim=16"]).method.weight == 15
    from avdis.errors import UsageError
    from avdis.tune.preflight import check_space

    C.load(None, ["model.emb_dim=8"])  # one model of another method: the sweep's space is not its business
    with pytest.raises(UsageError, match=r"at method.name=nullspace, method.weight=16: method.weight=16: nullspace "
                                         r"removes at most model.emb_dim - 1 = 7 directions of z_emo "
                                         r"\(model.emb_dim=8\); .*narrow sweep.space"):
        check_space(C.load(None, ["model.emb_dim=8"]))
    check_space(C.load(None, ["model.emb_dim=8", "sweep.space.methods=[multitask, nullspace]",
                               "sweep.space.weights.nullspace={low: 1, high: 7, int: true}"]))


@pytest.mark.parametrize("overrides, message", [
    (["sweep.space.params={model.emb_dim: [4, 16]}", "sweep.space.weights.nullspace={low: 1, high: 8, int: true}"],
     r"at method.name=nullspace, method.weight=8, model.emb_dim=4: .*nullspace removes at most model.emb_dim - 1 = 3"),
    (["sweep.space.params={train.strategy: [single, deepspeed]}", "train.strategy=deepspeed", "train.zero_stage=1"],
     r"at method.name=single_task, train.strategy=single: train: zero_stage=1 shards state only under "
     r"strategy=deepspeed"),
    # both ends of 0..1 pass; a draw between them (0.4) was refused when its trial started, stopping the sweep
    (["sweep.space.params={train.gpus_per_worker: {low: 0.0, high: 1.0}}", "train.strategy=ddp", "train.workers=2"],
     r"at method.name=single_task, train.gpus_per_worker=5e-324: .*two workers of one run could share a GPU"),
])
def test_a_space_whose_edges_no_trial_could_take_is_refused_before_any_work(overrides, message):
    """Found when such a trial started, it stopped the whole sweep with trials running, under a name that could
    then be neither resumed (the same trial came back) nor fixed (a new space is another sweep's)."""
    from avdis.errors import UsageError
    from avdis.tune.preflight import check_space

    with pytest.raises(UsageError, match=message):
        check_space(C.load(None, ["sweep.space.methods=[single_task, multitask, nullspace]", *overrides]))


def test_a_space_of_more_edges_than_are_built_has_each_method_checked_and_says_it_was_cut(monkeypatch, capsys):
    """Built method by method, the edges a sweep checks before any work (CORNERS_CHECKED) ran out within the first
    methods of a space of a few knobs, silently: nullspace's iterations against a sampled model.emb_dim went
    unchecked, and the sweep stopped when such a trial started."""
    from avdis.errors import UsageError
    from avdis.tune import preflight

    monkeypatch.setattr(preflight, "CORNERS_CHECKED", 40)  # 6 methods x 18 knob corners (x 2-3 weight ends) are more
    knobs = ("sweep.space.params={model.emb_dim: [4, 16], train.lr: {low: 0.001, high: 0.01}, "
             "train.batch_size: [16, 32, 64]}")
    with pytest.raises(UsageError, match=r"at method.name=nullspace, method.weight=8, model.emb_dim=4"):
        preflight.check_space(C.load(None, [knobs, "sweep.space.weights.nullspace={low: 1, high: 8, int: true}"]))
    preflight.check_space(C.load(None, [knobs, "sweep.space.weights.nullspace={low: 1, high: 3, int: true}"]))
    assert "sweep.space has more edges than the 40 built before any work" in capsys.readouterr().out
    # every value of every knob in each block (a method at one weight), the first knob's too (the sweep checks
    # modalities and trial sizes on these edges), before their combinations; every edge once
    from avdis.tune.space import corners, weight_key

    space = C.load(None, ["sweep.space.params={model.modality: [av, audio, visual], train.workers: [1, 4], "
                          "model.emb_dim: [16, 64], train.batch_size: [16, 32, 64]}"]).sweep.space
    every = list(corners(space))
    blocks = {(e["method"], e.get(weight_key(e["method"]))) for e in every}
    assert len({tuple(sorted(e.items())) for e in every}) == len(every) == len(blocks) * 3 * 2 * 2 * 3
    edges = every[:len(blocks) * (1 + 2 + 1 + 1 + 2)]  # each block's knobs one at a time
    for method, weight in blocks:
        mine = [e for e in edges if (e["method"], e.get(weight_key(method))) == (method, weight)]
        assert {e["model.modality"] for e in mine} == {"av", "audio", "visual"}
        assert {e["train.workers"] for e in mine} == {1, 4} and {e["train.batch_size"] for e in mine} == {16, 32, 64}


@pytest.mark.parametrize("overrides, message", [
    (["sweep.space.weights.nullspace={low: 1, high: 8, int: false}"],
     "sweep.space.weights.nullspace: the weight is a count of iterations; add int: true"),
    (["sweep.space.weights.orthogonal={low: 0, high: 2, log: false}"],
     r"sweep.space.weights.orthogonal: \[0.0, 2.0\] leaves the method's range \(0.0, 100.0\]"),
    (["sweep.space.params={train.epochs: [1, 2, 3]}"],
     "train.epochs is one setting for the whole sweep: MO-ASHA's rungs and the searcher judge every trial against it"),
    (["sweep.space.params={data.split.scheme: [within_speaker, speaker_disjoint]}"],
     "data.split.scheme is one setting for the whole sweep: a within-speaker test holds speakers the model trained on"),
    # accepted before: the searcher and MO-ASHA learned which fold read well, and one front mixed the folds
    (["data.split.scheme=speaker_disjoint", "sweep.space.params={data.split.fold: [0, 1, 2]}"],
     "data.split.fold is one setting for the whole sweep: each fold tests other speakers"),
    # accepted before: a trial sampled to probe every 3 epochs reached its rungs without val_leakage, and MO-ASHA let
    # it run to the end however far behind it was
    (["sweep.space.params={train.probe_every: [1, 3]}"],
     "train.probe_every is one setting for the whole sweep: MO-ASHA decides at each rung"),
])
def test_space_settings_a_trial_cannot_take_are_refused(overrides, message):
    """Accepted before: a weight of 3.7 iterations or 0 failed the trial that drew it (and with it the sweep); a
    trial sampled to 2 of 3 epochs was recorded as stopped early and told to the searcher as pruned."""
    with pytest.raises(C.ConfigError, match=message):
        C.load(None, overrides)


def test_the_methods_said_to_read_a_setting_are_the_ones_that_do():
    """`C.READ_BY_METHODS` against the methods' registry: the adversary is theirs that train one, the speaker loss's
    weight theirs that train z_id; conditional is the adversary's and INLP's (nullspace)."""
    from avdis.model.disentangle import REGISTRY

    assert set(C.READ_BY_METHODS["method.adversary"]) == {m for m, spec in REGISTRY.items() if spec.adversary}
    assert set(C.READ_BY_METHODS["method.speaker_weight"]) == {m for m, spec in REGISTRY.items() if spec.identity_loss}
    assert set(C.READ_BY_METHODS["method.conditional"]) == {*C.READ_BY_METHODS["method.adversary"], "nullspace"}


@pytest.mark.parametrize("name", ["../escaped", "a/b", ""])
def test_a_train_run_name_must_be_one_folder_name(name):
    with pytest.raises(C.ConfigError, match="train.name .* must be one folder name"):
        C.load(None, [f"train.name={name!r}"])


@pytest.mark.parametrize("params", ["{probe.epochs: {low: 2, high: 300, int: true}}", "{probe.hidden: [1, 128]}",
                                    "{probe.folds: [2, 5]}"])
def test_the_leakage_probe_is_one_judge_for_the_whole_sweep(params):
    """Accepted before: a sweep could sample the probe that measures every trial's leakage, and a searcher minimising
    leakage then tunes the judge. On one embedding the default probe reads leakage 0.92, one of 2 epochs and 1 hidden
    unit 0.05: the front held the trials judged most leniently."""
    from avdis.config import ProbeConfig
    from avdis.train.probe import leakage_probe

    rng = np.random.default_rng(0)
    spk, emo = rng.integers(0, 8, 600), rng.integers(0, 4, 600)
    z = rng.normal(size=(600, 12)) + rng.normal(size=(8, 12))[spk]
    strict, lenient = (leakage_probe(z[:420], spk[:420], emo[:420], z[420:], spk[420:], emo[420:], 8, 4, probe, 0).leakage
                       for probe in (ProbeConfig(epochs=300), ProbeConfig(epochs=2, hidden=1)))
    assert strict > 0.8 and lenient < 0.2  # why the judge must not be a sampled setting
    with pytest.raises(C.ConfigError, match="is one setting for the whole sweep: the leakage probe judges every trial"):
        C.load(None, [f"sweep.space.params={params}"])


def test_a_config_path_that_is_a_folder_or_bad_yaml_names_the_file_and_its_line(tmp_path):
    """A folder given as --config was "not found"; a YAML error pointed at `"<unicode string>", line 2`."""
    with pytest.raises(C.ConfigError, match=re.escape(f"{tmp_path}: is a folder, not a config file; pass --config")):
        C.load(tmp_path)
    path = tmp_path / "c.yaml"
    for text in ("train:\n\tepochs: 3\n", "train:\n  epochs: 3\ntrain:\n  lr: 0.1\n"):
        path.write_text(text)
        with pytest.raises(C.ConfigError) as err:
            C.load(path)
        assert f'in "{path}", line ' in str(err.value) and "<unicode string>" not in str(err.value), str(err.value)
        assert str(err.value).endswith(f"\n{path}: indent with spaces; YAML takes no tabs there") == ("\t" in text)


def test_a_sampled_setting_or_weight_list_left_empty_in_a_file_keeps_its_default(tmp_path):
    """local.yaml with its one sampled setting (train.lr) commented out was refused: "sweep.space.params: Input
    should be a valid dictionary (got None)", where a space left out samples nothing besides the methods."""
    path = tmp_path / "c.yaml"
    path.write_text((ROOT / "jobs/configs/local.yaml").read_text().replace("      train.lr:", "#      train.lr:"))
    assert C.load(path).sweep.space.params == {}
    path.write_text("sweep:\n  space:\n    weights:\n#     adversarial: 0.5\n")
    assert C.load(path).sweep.space.weights == C.SearchSpace().weights


def test_a_section_left_empty_in_a_file_keeps_its_defaults(tmp_path):
    """`train:` with every line under it commented out is YAML's null: refused as "not a valid dictionary", where a
    section left out keeps its defaults. A null given as an override still replaces nothing in silence."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n#  epochs: 3\nmethod:\n  adversary:\n  name: multitask\nsweep:\n  checkpoints:\n")
    cfg = C.load(path)
    assert cfg.train == C.load(None).train and cfg.method.adversary == C.AdversaryConfig()
    assert cfg.sweep.checkpoints is None  # a setting's null is its own
    path.write_text("train:\n  epochs: 3\n")
    with pytest.raises(C.ConfigError, match="train: Input should be a valid dictionary"):
        C.load(path, ["train=null"])


FLOAT_SETTINGS = [path for path, field in C.settings(C.Config) if float in (field.annotation, *get_args(field.annotation))]


@pytest.mark.parametrize("value", [".inf", "-.inf", "1e400", ".nan"])
def test_no_float_setting_takes_infinity_or_nan(value):
    """probe.lr=1e400 (YAML reads it as infinity), train.weight_decay=.inf or method.adversary.lr=.nan were taken: a
    run trained on NaN weights, a probe read leakage from its random initialisation. Every float setting, and a sampled
    one's choices and range, now refuses them, naming the setting."""
    assert {"probe.lr", "probe.weight_decay", "train.weight_decay", "method.adversary.lr",
            "train.cpus_per_worker"} <= set(FLOAT_SETTINGS)
    for path in FLOAT_SETTINGS:
        with pytest.raises(C.ConfigError, match=re.escape(f"{path}: Input should be a finite number")):
            C.load(None, [f"{path}={value}"])
    for space in (f"sweep.space.params={{train.weight_decay: [0.0, {value}]}}",
                  f"sweep.space.params={{train.weight_decay: {{low: 0.0, high: {value}}}}}",
                  f"sweep.space.weights.adversarial={{low: 0.1, high: {value}}}"):
        with pytest.raises(C.ConfigError, match="finite number"):
            C.load(None, [space])
