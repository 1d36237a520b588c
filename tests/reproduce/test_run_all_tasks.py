"""reproduce/run_all.py --tasks: choosing and ordering tasks of a stream directory, checked before training."""

import pytest
from click.testing import CliRunner

from reproduce_helpers import load_script

from seta.data import Example, Stream, Task, synthetic_stream, write_manifest, write_trace
from seta.experiment.presets import PRESETS, with_tasks


@pytest.fixture(scope="module")
def run_all():
    return load_script("run_all")


@pytest.fixture()
def stream_dir(tmp_path):
    ex = [Example("q?", "a")] * 3
    stream = Stream([Task(n, "exact_match", ex, ex, ex) for n in ("alpha", "beta", "gamma")], name="s")
    write_trace(stream, tmp_path / "s")
    write_manifest(stream, tmp_path / "s")
    return tmp_path / "s"


def test_tasks_choose_and_order_the_stream(run_all, stream_dir, tmp_path):
    cfg = with_tasks(PRESETS["llama2-7b"], "gamma, alpha", stream_dir)
    assert "order" not in cfg.stream
    assert [t.name for t in run_all._load_stream(cfg, stream_dir, seed=0)] == ["gamma", "alpha"]
    assert [t.name for t in run_all._load_stream(PRESETS["tiny"], stream_dir, seed=0)] == ["alpha", "beta", "gamma"]
    write_trace(synthetic_stream(seed=0, n_train=2, n_eval=1, n_test=1), tmp_path / "trace")
    cfg = with_tasks(PRESETS["tiny"], "FOMC", tmp_path / "trace")
    assert [t.name for t in run_all._load_stream(cfg, tmp_path / "trace", seed=0)] == ["FOMC"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "alpha,nope"], "unknown task(s) ['nope']"),
        (["--tasks", " , "], "no task names given"),
    ],
)
def test_bad_tasks_fail_before_training(run_all, stream_dir, tmp_path, args, message):
    result = CliRunner().invoke(run_all.main, ["--data-dir", str(stream_dir), "--out", str(tmp_path / "o")] + args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert "alpha, beta, gamma" in result.output
    assert not (tmp_path / "o").exists()  # nothing was trained


def test_tasks_need_a_data_dir(run_all, tmp_path):
    result = CliRunner().invoke(run_all.main, ["--tasks", "alpha", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "--tasks needs --data-dir" in result.output
