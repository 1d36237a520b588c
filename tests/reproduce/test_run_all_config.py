"""run_all / seta run with --config and --set: the resolved config is what runs, and is recorded everywhere."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from reproduce_helpers import ROOT, load_script

from seta.data import synthetic_stream, write_trace
from seta.train.checkpoint import load_checkpoint
from seta.train.metrics import read_metrics


@pytest.fixture(scope="module")
def run_all():
    return load_script("run_all", "run_all_config")


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "s"
    write_trace(synthetic_stream(seed=0, n_train=20, n_eval=4, n_test=4), path)
    return path


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_file_and_overrides_are_the_config_that_runs_and_is_recorded(run_all, stream_dir, tmp_path):
    (tmp_path / "run.yaml").write_text("train:\n  lr: 0.004\n  batch_size: 4\nsparse:\n  ratio: 0.05\ngate:\n  steps: 5\n")
    out = tmp_path / "out"
    args = ["--quick", "--methods", "seta", "--data-dir", str(stream_dir), "--tasks", "C-STANCE,FOMC",
            "--config", str(tmp_path / "run.yaml"), "--set", "train.lr=0.003", "--set", "sparse.gate.kl_weight=0.5",
            "--out", str(out), "--no-progress"]
    if importlib.util.find_spec("tensorboard") is not None:
        args.append("--tensorboard")
    result = CliRunner().invoke(run_all.main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    run_dir = out / "seta" / "seed0"
    config = json.loads((run_dir / "config.json").read_text())
    # one resolved config: beside the checkpoint, in the checkpoint's identity (the resume check) and in summary.json
    assert summary["methods"]["seta"]["config"] == [config]
    assert json.loads(load_checkpoint(run_dir / "checkpoint.safetensors")["identity"])["config"] == config
    assert config["train_config"]["lr"] == 0.003 and config["train_config"]["batch_size"] == 4  # --set beats the file
    assert config["strategy_config"]["sparse"]["ratio"] == 0.05
    gate = config["strategy_config"]["seta"]["gate"]
    assert gate["steps"] == 5 and gate["kl_weight"] == 0.5
    top = summary["config"]
    assert top["train"]["lr"] == 0.003 and top["seta"]["gate"]["steps"] == 5 and top["name"] == "tiny-quick"
    # ... and it is what ran: the first step's rate is train.lr (no warm-up), 20 examples in batches of 4 = 5 steps
    steps = [r for r in read_metrics(run_dir) if r["kind"] == "step"]
    assert steps[0]["lr"] == 0.003 and [r["task_step"] for r in steps if r["task"] == 0] == [1, 2, 3, 4, 5]
    assert "train.lr (float) = 0.003" in CliRunner().invoke(run_all.main, args + ["--show-settings"]).output
    if importlib.util.find_spec("tensorboard") is not None:  # --tensorboard: the same records as event files
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("files, args, message", [
    ({"bad.yaml": "train:\n  lr: 0.1\n   x: 1\n"}, ["--config", "bad.yaml"], "bad.yaml:3: not valid YAML"),
    ({"bad.json": '{"train": [1]}'}, ["--config", "bad.json"], "section 'train' must be a mapping"),
    ({}, ["--config", "none.yaml"], "config file none.yaml does not exist"),
    ({}, ["--set", "train.lr"], "write --set section.field=value"),
])
def test_config_syntax_errors_come_before_torch_is_imported(tmp_path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["run_all.py", "--out", "o"] + {args!r}
        try:
            runpy.run_path({str(ROOT / "reproduce" / "run_all.py")!r}, run_name="__main__")
        except SystemExit as e:
            print("exit", e.code)
        print("heavy", sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300,
                         cwd=tmp_path)
    assert "exit 2" in out.stdout and "heavy []" in out.stdout, out.stdout + out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "train.lrr=1"], "--set train.lrr: unknown setting 'train.lrr' (did you mean train.lr"),
    (["--set", "gate.steps=many"], "--set gate.steps: gate.steps takes int, got 'many'"),
    (["--set", "sparse.ratio=2"], "--set sparse.ratio: SparseConfig: block_size >= 1 and ratio in (0, 1]"),
])
def test_bad_settings_are_one_line_and_train_nothing(run_all, tmp_path, args, message):
    result = CliRunner().invoke(run_all.main, ["--quick", "--methods", "seta", "--out", str(tmp_path / "o")] + args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_settings_in_a_file_name_the_file_and_field(run_all, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"train": {"batch_size": "8"}}))
    result = CliRunner().invoke(run_all.main, ["--quick", "--config", str(tmp_path / "run.json"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and f'{tmp_path / "run.json"}: train.batch_size takes int, got "8"' in result.output


def test_tensorboard_without_its_package_fails_before_training(run_all, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = CliRunner().invoke(run_all.main, ["--quick", "--tensorboard", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "pip install 'seta[tensorboard]'" in result.output
    assert not (tmp_path / "o").exists()
