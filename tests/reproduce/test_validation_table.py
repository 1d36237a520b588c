"""reproduce/validation_table.py: the sizing rule's gain (mean LA_i - base_i) from run folders, and its curve."""

import json

from click.testing import CliRunner

from reproduce_helpers import load_script

table = load_script("validation_table")

NONE = None


def _run_folder(path, cap, diag_seqft, diag_lora, base_rows):
    cfg = {"train": {"max_train_examples": cap, "batch_size": 4, "grad_accum": 1, "epochs": [1], "lr": 1e-3},
           "seta": {"anchor_lambda": 0.3}, "sparse": {"block_size": 64, "ratio": 0.01}}
    def method(diag):
        R = [[diag[0], 0.0], [diag[0] - 5, diag[1]]]
        return {"R": R, "OP": sum(R[1]) / 2, "BWT": -5.0, "LA": sum(diag) / 2}
    summary = {"preset": "smollm2", "tasks": ["a", "b"], "seeds": [1000] * len(base_rows), "config": cfg,
               "base_scores": base_rows, "methods": {"seqft-sparse": method(diag_seqft), "seq-lora": method(diag_lora)}}
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(summary))
    return str(path)


def test_gain_is_mean_of_la_minus_base_per_task(tmp_path):
    # base per task: mean over the two seed rows = (10, 20); seqft diag (40, 30): gains 30 and 10 -> 20
    s8 = _run_folder(tmp_path / "steps8", 32, (40, 30), (12, 22), [[8, 20], [12, 20]])
    s16 = _run_folder(tmp_path / "steps16", 64, (50, 40), (20, 30), [[10, 20], [10, 20]])
    png = tmp_path / "curve.png"
    res = CliRunner().invoke(table.main, [s8, s16, "--curve", str(png)])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("| steps")]
    assert lines == ["| steps8 | 8 | seqft-sparse | 32.5 | -5.0 | 35.0 | 20.0 |",
                     "| steps8 | 8 | seq-lora | 14.5 | -5.0 | 17.0 | 2.0 |",
                     "| steps16 | 16 | seqft-sparse | 42.5 | -5.0 | 45.0 | 30.0 |",
                     "| steps16 | 16 | seq-lora | 22.5 | -5.0 | 25.0 | 10.0 |"]
    assert png.stat().st_size > 1000


def test_a_folder_without_summary_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(table.main, [str(tmp_path / "empty")])
    assert res.exit_code != 0 and "summary.json: not found" in res.output and "Traceback" not in res.output
