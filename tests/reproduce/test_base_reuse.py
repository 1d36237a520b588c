"""A second run into the same folder reuses the base model's scores of the first (OUT/base/seed<k>.json)
instead of measuring the base again; summary.json records them as base_scores."""

import json

from click.testing import CliRunner

from reproduce_helpers import load_script

from seta.data import synthetic_stream, write_trace
from seta.train.loop import ContinualTrainer


def test_the_second_method_run_reuses_the_first_runs_base_scores(tmp_path, monkeypatch):
    run_all = load_script("run_all", "run_all_base_reuse")
    data = tmp_path / "stream"
    write_trace(synthetic_stream(seed=0, n_train=8, n_eval=4, n_test=4), data)
    out = tmp_path / "out"
    args = ["--quick", "--data-dir", str(data), "--tasks", "C-STANCE,FOMC", "--general-tasks", "", "--out", str(out),
            "--no-progress"]
    first = CliRunner().invoke(run_all.main, args + ["--methods", "seqft-sparse"])
    assert first.exit_code == 0, first.output
    stored = json.loads((out / "base" / "seed0.json").read_text())["values"]

    def no_base_pass(self):
        raise AssertionError("the base was evaluated again")

    monkeypatch.setattr(ContinualTrainer, "evaluate_base", no_base_pass)
    second = CliRunner().invoke(run_all.main, args + ["--methods", "seq-lora"])
    assert second.exit_code == 0, second.output
    lora = json.loads((out / "seq-lora" / "seed0" / "result.json").read_text())
    assert lora["extra"]["base_scores"] == stored["base_scores"] and len(stored["base_scores"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["base_scores"] == [stored["base_scores"]] and list(summary["methods"]) == ["seqft-sparse", "seq-lora"]


def test_a_damaged_base_file_is_measured_again(tmp_path):
    run_all = load_script("run_all", "run_all_base_damaged")
    data = tmp_path / "stream"
    write_trace(synthetic_stream(seed=0, n_train=8, n_eval=4, n_test=4), data)
    out = tmp_path / "out"
    (out / "base").mkdir(parents=True)
    (out / "base" / "seed0.json").write_text("{not json")
    args = ["--quick", "--data-dir", str(data), "--tasks", "C-STANCE", "--general-tasks", "", "--out", str(out),
            "--no-progress", "--methods", "seqft-sparse"]
    result = CliRunner().invoke(run_all.main, args)
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "base" / "seed0.json").read_text())["values"]["base_scores"]) == 1


def test_the_key_ignores_training_settings_but_not_evaluation_settings():
    from dataclasses import replace
    from types import SimpleNamespace

    from seta.experiment import results
    from seta.experiment.presets import QUICK

    tasks = [SimpleNamespace(name="A")]

    def key(cfg):
        return results.base_key(results.run_info(cfg, None, tasks), {"A": "d"}, None)

    tuned = replace(QUICK, train=replace(QUICK.train, lr=3e-4, epochs=(2,)),
                    seta=replace(QUICK.seta, anchor_lambda=3.0), sparse=replace(QUICK.sparse, ratio=0.02))
    assert key(tuned) == key(QUICK)  # the untrained base is measured the same
    assert key(replace(QUICK, train=replace(QUICK.train, max_new_tokens=7))) != key(QUICK)
    assert key(replace(QUICK, train=replace(QUICK.train, max_train_examples=8))) != key(QUICK)  # answer budgets
    assert results.base_key(results.run_info(QUICK, None, tasks), {"A": "other"}, None) != key(QUICK)
