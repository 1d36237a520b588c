"""reproduce/run_all.py: bad input ends with a clear message and a non-zero exit; --dry-run plans memory."""

import sys

import pytest
from click.testing import CliRunner

from reproduce_helpers import ROOT, load_script


@pytest.fixture(scope="module")
def cli():
    return load_script("run_all").main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "seta,bogus"], "unknown method"),
        (["--seeds", "a,b"], "comma-separated integers"),
        (["--model", "/no/such/model"], "does not exist"),
        (["--data-dir", "/no/such/dir"], "does not exist"),
        (["--preset", "llama2-7b"], "needs --model"),
        (["--preset", "nope"], "Invalid value"),
        (["--general-data", "/no/such/dir"], "does not exist"),
        (["--general-limit", "3"], "--general-limit needs --general-data"),
        (["--general-limit", "0"], "Invalid value"),
        (["--methods", ""], "give at least one method"),
        (["--methods", " , "], "give at least one method"),
        (["--seeds", "-1"], "seeds must lie in 0..4294967295"),
        (["--seeds", str(2**32)], "seeds must lie in 0..4294967295"),
        (["--seeds", ","], "give at least one seed"),
        (["--data-dir", str(ROOT / "README.md")], "is a file, not a directory"),
        (["--model", str(ROOT / "README.md")], "is a file, not a directory"),
        (["--general-data", str(ROOT / "README.md")], "is a file, not a directory"),
        (["--quick", "--preset", "qwen3-4b"], "--quick exists for smollm2 and tiny only, not --preset qwen3-4b"),
        (["--4bit"], "--4bit loads a real base model"),
    ],
)
def test_bad_arguments_exit_non_zero_without_traceback(cli, args, message, tmp_path):
    result = CliRunner().invoke(cli, args + ["--out", str(tmp_path)])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_malformed_data_file_is_a_clear_error_and_creates_nothing(cli, tmp_path):
    from seta.data import synthetic_stream, write_trace

    write_trace(synthetic_stream(seed=0, n_train=4, n_eval=2, n_test=2), tmp_path / "data")
    (tmp_path / "data" / "FOMC" / "train.json").write_text('[{"prompt": "p", "answer": ')
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "--methods", "seta", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "train.json" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # no empty output folder left behind


def test_out_that_is_a_file_or_unwritable_is_refused_before_any_work(cli, tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    result = CliRunner().invoke(cli, ["--methods", "seta", "--out", str(tmp_path / "f" / "sub")])
    assert result.exit_code == 2 and "is a file; choose another folder" in result.output
    from seta.experiment import failures

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(failures.tempfile, "TemporaryFile", refuse)  # a read-only folder (root ignores chmod)
    result = CliRunner().invoke(cli, ["--methods", "seta", "--out", str(tmp_path / "ro" / "out")])
    assert result.exit_code == 2 and "cannot write to" in result.output and "choose a writable folder" in result.output
    assert not (tmp_path / "ro").exists()


@pytest.mark.parametrize("preset", ["llama2-7b", "qwen3-4b"])
def test_dry_run_prints_memory_plan(cli, preset):
    result = CliRunner().invoke(cli, ["--preset", preset, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "base weights (NF4" in result.output
    assert "one 80 GB GPU" in result.output and "two 24 GB GPUs" in result.output


@pytest.mark.parametrize("tasks, message", [("mmlu,bbh,piqa", "validation.jsonl"), ("mmlu,hellaswag", "unknown benchmark")])
def test_bad_general_data_fails_before_training(cli, tmp_path, tasks, message):
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from harness_data import write_general_ability_fixture

    write_general_ability_fixture(tmp_path / "general")
    (tmp_path / "general" / "piqa" / "validation.jsonl").write_text('{"goal": "g"}\n')
    result = CliRunner().invoke(cli, ["--quick", "--general-data", str(tmp_path / "general"), "--general-tasks", tasks,
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing was trained


def _capture_run(monkeypatch):
    """Replace the training entry point of `seta run` by a recorder of its arguments."""
    from seta.experiment import command

    calls = []
    monkeypatch.setattr(command, "run", lambda cfg, names, *a, **k: calls.append((cfg, names, a, k)))
    return calls


def test_empty_general_tasks_skip_general_ability(cli, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tests" / "eval"))
    from harness_data import write_general_ability_fixture

    write_general_ability_fixture(tmp_path / "general")
    (tmp_path / "general" / "piqa" / "validation.jsonl").write_text('{"goal": "g"}\n')  # would fail if read
    calls = _capture_run(monkeypatch)
    result = CliRunner().invoke(cli, ["--quick", "--general-data", str(tmp_path / "general"), "--general-tasks", "",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0][2][6] is None  # general=None: nothing read, nothing scored


def test_a_given_data_dir_replaces_the_asset_presets_task_list(cli, tmp_path, monkeypatch):
    (tmp_path / "a" / "models" / "SmolLM2-135M-Instruct").mkdir(parents=True)
    (tmp_path / "a" / "streams" / "default").mkdir(parents=True)
    (tmp_path / "a" / "streams" / "mine").mkdir(parents=True)
    monkeypatch.setenv("SETA_ASSETS_DIR", str(tmp_path / "a"))
    calls = _capture_run(monkeypatch)
    result = CliRunner().invoke(cli, ["--preset", "smollm2", "--methods", "seta", "--general-tasks", "",
                                      "--data-dir", str(tmp_path / "a" / "streams" / "mine"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    from seta.experiment.presets import PRESETS

    assert "tasks" not in calls[0][0].stream and calls[0][0].stream["max_test"] == PRESETS["smollm2"].stream["max_test"]
    assert calls[0][0].train.max_train_examples == PRESETS["smollm2"].train.max_train_examples  # the train cap stays
    calls.clear()
    result = CliRunner().invoke(cli, ["--preset", "smollm2", "--methods", "seta", "--general-tasks", "",
                                      "--out", str(tmp_path / "o")])  # the fetched stream: the preset's six tasks
    assert result.exit_code == 0, result.output
    from seta.experiment.presets import SMOLLM2_TASKS

    assert calls[0][0].stream["tasks"] == SMOLLM2_TASKS
