"""What a run prints at the end: a short table (method, OP, BWT, LA, routing, time) and the report's files in
words; the R matrices only with --verbose; no Python reprs."""

import re

import pytest
from click.testing import CliRunner

from reproduce_helpers import load_script

from seta.data import synthetic_stream, write_trace
from seta.experiment.run_output import results_table


def test_the_table_has_one_row_per_method_with_mean_and_std_and_no_dashes_invented():
    summary = {"preset": "tiny", "tasks": ["A", "B"], "seeds": [0, 1, 2], "methods": {
        "seta": {"OP": 47.71, "OP_std": 9.6, "BWT": -0.62, "BWT_std": 1.0, "LA": 48.2, "LA_std": 10.04,
                 "routing_acc": 97.52, "wall_s": 402.4},
        "mtl": {"OP": 45.5, "OP_std": 6.0, "BWT": None, "BWT_std": None, "LA": None, "LA_std": None,
                "routing_acc": None, "wall_s": 59.4}}}
    lines = results_table(summary, {"seta": [8.1, 8.3, None], "mtl": [9.0, 9.2, 9.4]}).splitlines()
    assert lines[0] == "tiny, 2 tasks, mean ± std over seeds 0, 1, 2"
    assert lines[1].split() == ["method", "OP", "BWT", "LA", "routing", "time", "ppl", "after"]
    assert lines[2].split() == ["seta", "47.7", "±", "9.6", "-0.6", "±", "1.0", "48.2", "±", "10.0", "97.5%",
                                "6", "min", "42", "s", "—"]
    assert lines[3].split() == ["mtl", "45.5", "±", "6.0", "—", "—", "—", "59", "s", "9.20"]
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns


@pytest.mark.slow
def test_a_run_ends_with_the_short_table_and_the_report_files_in_words(tmp_path):
    run_all = load_script("run_all", "run_all_output")
    data = tmp_path / "stream"
    write_trace(synthetic_stream(seed=0, n_train=12, n_eval=4, n_test=4), data)
    out = tmp_path / "out"
    args = ["--quick", "--methods", "seta,seqft-sparse", "--data-dir", str(data), "--tasks", "C-STANCE,FOMC",
            "--set", "gate.steps=5", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(run_all.main, args)
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"\w+\(\w+=", text), text  # no dataclass repr such as ReportFiles(summary_json=...)
    assert "R matrices" not in text and "| after \\ eval |" not in text  # the matrices stay in summary.md
    table = text[text.index("tiny-quick, 2 tasks, seed 0"):].splitlines()
    assert table[1].split() == ["method", "OP", "BWT", "LA", "routing", "time", "ppl", "after"]
    assert [row.split()[0] for row in table[2:4]] == ["seta", "seqft-sparse"]
    assert re.fullmatch(r"seta\s+[\d.]+\s+-?[\d.]+\s+[\d.]+\s+[\d.]+%\s+(\d+ min )?\d+ s\s+[\d.]+", table[2]), table[2]
    assert re.fullmatch(r"seqft-sparse\s+[\d.]+\s+-?[\d.]+\s+[\d.]+\s+—\s+(\d+ min )?\d+ s\s+[\d.]+", table[3]), table[3]
    for name in ("summary.md", "summary.json", "general_ability.json"):
        assert f"{out / name}: " in text and (out / name).is_file()
    assert f"{out / 'plots'}/: " in text
    assert "R matrices" in (out / "summary.md").read_text()
    verbose = CliRunner().invoke(run_all.main, args + ["--resume", "--verbose"])  # both finished: only the report
    assert verbose.exit_code == 0, verbose.output
    assert "## R matrices" in verbose.output and "| after \\ eval |" in verbose.output
