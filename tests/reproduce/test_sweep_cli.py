"""reproduce/sweep.py: one run per value, the value reaches the strategy, clear errors on bad input."""

import json

import pytest
from click.testing import CliRunner

from reproduce_helpers import load_script


@pytest.fixture(scope="module")
def cli():
    return load_script("sweep").main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--param", "block_size"], "Invalid value"),
        (["--values", "1,x"], "comma-separated numbers"),
        (["--values", "-1"], "anchor_lambda"),
        (["--method", "bogus"], "unknown method"),
        (["--preset", "llama2-7b"], "tiny preset only"),
    ],
)
def test_bad_arguments_exit_non_zero_without_traceback(cli, args, message, tmp_path):
    result = CliRunner().invoke(cli, args + ["--out", str(tmp_path), "--quick", "--references", ""])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_sweep_runs_each_value_and_writes_table_and_plot(cli, tmp_path):
    out = tmp_path / "sweep"
    args = ["--quick", "--values", "0,100", "--seeds", "0", "--references", "", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    sweep = json.loads((out / "sweep.json").read_text())
    assert [p["value"] for p in sweep["points"]] == [0.0, 100.0]
    for point in sweep["points"]:
        run = json.loads((out / f"anchor_lambda={point['value']:g}" / "summary.json").read_text())["methods"]["seta"]
        assert point["OP"] == pytest.approx(run["OP"]) and point["BWT"] == pytest.approx(run["BWT"])
    # λ = 0 and λ = 100 train the shared blocks differently, so the final rows differ
    rows = [json.loads((out / f"anchor_lambda={v}" / "summary.json").read_text())["methods"]["seta"]["R"][-1]
            for v in ("0", "100")]
    assert rows[0] != rows[1]
    assert (out / "sweep.png").stat().st_size > 1000
    assert "| 100 |" in (out / "sweep.md").read_text()
