"""Config files and --set overrides: typed against the dataclass fields, one-line errors naming the field."""

import json

import pytest

from seta.train.config import TrainConfig
from seta.train.gate_training import GateTrainConfig
from seta.train.run_config import (ConfigError, field_docs, read_config_file, resolve, resolved_dict,
                                   settings_help)
from seta.train.strategies.ewc import EWCConfig
from seta.train.strategies.lwf import LwFConfig
from seta.api import SetaOwnConfig
from seta.train.strategies.sparse import SparseConfig

BASE = {"train": TrainConfig(lr=1e-2), "sparse": SparseConfig(ratio=0.1), "seta": SetaOwnConfig(gate=GateTrainConfig(steps=200)),
        "ewc": EWCConfig(), "lwf": LwFConfig()}
CLASSES = {k: type(v) for k, v in BASE.items()}


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text", [
    ("run.yaml", "train:\n  lr: 0.005\n  epochs: [2, 3]\nsparse:\n  target_modules: [q_proj, v_proj]\n"
                 "seta:\n  null_expert: false\ngate:\n  steps: 7\n"),
    ("run.json", json.dumps({"train": {"lr": 0.005, "epochs": [2, 3]}, "sparse": {
        "target_modules": ["q_proj", "v_proj"]}, "seta": {"null_expert": False, "gate": {"steps": 7}}})),
])
def test_a_file_then_overrides_resolve_every_section(tmp_path, name, text):
    data = read_config_file(_write(tmp_path, name, text))
    got = resolve(BASE, data, ["train.batch_size=4", "sparse.gate.kl_weight=0", "gate.pseudo=false",
                               "train.max_eval_examples=none", "train.lr=2e-3", "ewc.lam=0.5"], source=name)
    train, sparse, seta = got["train"], got["sparse"], got["seta"]
    assert train == TrainConfig(lr=2e-3, epochs=(2, 3), batch_size=4, max_eval_examples=None)  # --set wins
    assert sparse == SparseConfig(ratio=0.1, target_modules=("q_proj", "v_proj"))
    assert seta == SetaOwnConfig(null_expert=False, gate=GateTrainConfig(steps=7, kl_weight=0.0, pseudo=False))
    assert got["ewc"] == EWCConfig(lam=0.5)
    base = resolved_dict(BASE)
    assert resolved_dict(got) == json.loads(json.dumps(
        {"train": {**BASE["train"].to_dict(), **train.to_dict()},
         "sparse": {**base["sparse"], "target_modules": ["q_proj", "v_proj"]},
         "seta": {**base["seta"], "null_expert": False,
                  "gate": {**base["seta"]["gate"], "steps": 7, "kl_weight": 0.0, "pseudo": False}},
         "ewc": {**base["ewc"], "lam": 0.5}, "lwf": base["lwf"]}))


def test_nothing_given_changes_nothing():
    assert resolve(BASE) == BASE


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "--set train.lrr: unknown setting 'train.lrr' (did you mean train.lr"),
    ("lr=1", "unknown setting 'lr' (did you mean train.lr"),
    ("gate.stepz=3", "(did you mean gate.steps"),
    ("train.batch_size=3.5", "--set train.batch_size: train.batch_size takes int, got '3.5'"),
    ("train.bf16=maybe", "train.bf16 takes bool, got 'maybe'"),
    ("train.epochs=1,x", "train.epochs takes list of int"),
    ("train.lr=-1", "--set train.lr: TrainConfig.lr must be > 0, got -1.0"),
    ("seta.routing=bogus", "--set seta.routing: SetaConfig.routing must be top1, soft or oracle"),
    ("seta.gate.steps=0", "--set gate.steps: GateTrainConfig: steps"),
    ("sparse.anchor_lambda=1", "unknown setting 'sparse.anchor_lambda' (did you mean seta.anchor_lambda"),
    ("lwf.alpha=-1", "--set lwf.alpha: LwFConfig: alpha must be >= 0"),
    ("gate.steps=0", "--set gate.steps: GateTrainConfig: steps"),
    ("train.lr", "write --set section.field=value"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as err:
        resolve(BASE, None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, text, message", [
    ("a.yaml", "train:\n  lr: 0.1\n   batch_size: 3\n", "a.yaml:3: not valid YAML"),
    ("a.json", '{"train": {"lr": 0.1,}}', "a.json:1: not valid JSON"),
    ("a.yaml", "trian:\n  lr: 0.1\n", "unknown section 'trian' (did you mean train?)"),
    ("a.yaml", "- 1\n- 2\n", "expected a mapping of sections"),
    ("a.yaml", "train: 3\n", "section 'train' must be a mapping"),
    ("a.toml", "", "name it .json, .yaml or .yml"),
])
def test_bad_files_name_the_file_and_line(tmp_path, name, text, message):
    with pytest.raises(ConfigError) as err:
        read_config_file(_write(tmp_path, name, text))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("data, message", [
    ({"train": {"batch_size": "8"}}, 'run.yaml: train.batch_size takes int, got "8"'),
    ({"train": {"batch_size": True}}, "train.batch_size takes int, got true"),
    ({"sparse": {"ratio": 2.0}}, "run.yaml: SparseConfig: block_size >= 1 and ratio in (0, 1]"),
    ({"sparse": {"rato": 0.2}}, "run.yaml: unknown setting 'sparse.rato' (did you mean sparse.ratio"),
    ({"sparse": {"gate": 3}}, "sparse.gate must be a mapping"),
    ({"seta": {"null_expert": 1}}, "seta.null_expert takes bool, got 1"),
    ({"sparse": {"null_expert": False}}, "unknown setting 'sparse.null_expert' (did you mean seta.null_expert"),
])
def test_bad_values_in_a_file_name_the_file_and_field(data, message):
    with pytest.raises(ConfigError) as err:
        resolve(BASE, data, [], source="run.yaml")
    assert message in str(err.value)


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml")


def test_field_docstrings_are_the_help_text():
    docs = field_docs(TrainConfig)
    assert docs["lr"].startswith("Peak learning rate of AdamW") and len(docs) == len(TrainConfig.__dataclass_fields__)
    text = settings_help(CLASSES, BASE)
    assert "train.lr (float) = 0.01\n    Peak learning rate of AdamW" in text
    assert "gate.steps (int) = 200\n    Optimizer steps per task." in text  # the current value, not the default
    assert "sparse.gate " not in text and "seta.gate " not in text and "sparse.max_eval_examples" not in text
    assert "seta.anchor_lambda (float) = 1.0" in text and "ewc.lam (float)" in text
    assert "train.max_eval_examples (int or none) = null" in text
