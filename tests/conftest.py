"""Fixtures shared across test folders."""

import json

import pytest


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory):
    """A SETA adapter on two synthetic tasks (FOMC, C-STANCE), trained once per session by `seta train
    --quick` (the tiny-quick preset: a briefly pre-trained tiny Llama base): {"dir", "run", "result", "output"}."""
    from click.testing import CliRunner

    from seta.cli import main

    run = tmp_path_factory.mktemp("adapter") / "seta"
    result = CliRunner().invoke(main, ["train", "--quick", "--tasks", "FOMC,C-STANCE", "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    return {"dir": run / "adapter", "run": run, "result": json.loads((run / "result.json").read_text()),
            "output": result.output}


@pytest.fixture(scope="session")
def tiny_tasks():
    """The two tasks of `tiny_adapter`, as it trained and scored them."""
    from seta.data import synthetic_stream
    from seta.experiment.presets import QUICK

    return list(synthetic_stream(seed=0, order=["FOMC", "C-STANCE"], **QUICK.stream))
