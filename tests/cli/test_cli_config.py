"""seta train --config / --set: the settings that train are the ones given, recorded in config.json and the card."""

import json

from click.testing import CliRunner

from seta.cli import main
from seta.inference.card import read_card
from seta.train.metrics import read_metrics


def test_train_takes_a_config_file_and_overrides(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"train": {"lr": 0.004}, "gate": {"steps": 5}}))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--quick", "--tasks", "FOMC", "--config", str(tmp_path / "run.json"),
                                       "--set", "train.lr=0.002", "--set", "sparse.ratio=0.05", "--out", str(out),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["train_config"]["lr"] == 0.002 and config["strategy_config"]["sparse"]["ratio"] == 0.05
    assert config["strategy_config"]["seta"]["gate"]["steps"] == 5
    card = read_card(out / "adapter")
    assert card["train_config"] == config["train_config"] and card["sparse_config"] == config["strategy_config"]["sparse"]
    assert card["seta_config"] == config["strategy_config"]["seta"]
    assert [r for r in read_metrics(out) if r["kind"] == "step"][0]["lr"] == 0.002


def test_train_refuses_bad_settings_before_training(tmp_path):
    bad = CliRunner().invoke(main, ["train", "--quick", "--set", "gate.stepz=5", "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "unknown setting 'gate.stepz' (did you mean gate.steps" in bad.output
    assert not (tmp_path / "a").exists()
