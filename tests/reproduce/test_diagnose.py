"""reproduce/diagnose.py: per-task scores, routing and the training/routing split, on hand-made run folders."""

import json

from click.testing import CliRunner

from reproduce_helpers import load_script

N = None


def _run(out, method, seed, R, losses=(1.0, 2.0), routing=None):
    """routing: per stage, ({task: % own expert}, {task: % null}) or None (no task records)."""
    run = out / method / f"seed{seed}"
    run.mkdir(parents=True)
    record = {"method": method, "seed": seed, "tasks": ["a", "b"], "R": R,
              "extra": {"per_task": [{"final_lm_loss": v} for v in losses]}}
    (run / "result.json").write_text(json.dumps(record))
    if routing is not None:
        lines = [json.dumps({"kind": "base", "scores": {"a": 0.0, "b": 0.0}})]
        for t, (acc, null) in enumerate(routing):
            lines.append(json.dumps({"kind": "task", "task": t, "gate_acc_per_task": acc, "null_per_task": null}))
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _invoke(out, *args):
    return CliRunner().invoke(load_script("diagnose").main, [str(out), *args])


def test_scores_routing_and_the_exact_split(tmp_path):
    for seed, shift in ((0, 0.0), (1, 2.0)):
        _run(tmp_path, "seqft-sparse", seed, [[50.0 + shift, N], [48.0, 40.0]], losses=(0.5, 1.5))
        _run(tmp_path, "seta-oracle", seed, [[46.0 + shift, N], [46.0, 38.0]])
        _run(tmp_path, "seta", seed, [[40.0 + shift, N], [45.0, 30.0]], losses=(0.5, 1.7),
             routing=[({"a": 90.0}, {"a": 10.0}), ({"a": 100.0, "b": 80.0}, {"a": 0.0, "b": 4.0 + shift})])
    _run(tmp_path, "seta", 2, [[0.0, N], [0.0, 0.0]])  # a seed the others lack: left out
    result = _invoke(tmp_path, "--save", str(tmp_path / "d.md"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Seeds: 0, 1 ")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result.output.splitlines() if line.startswith("| ")}
    assert rows["a"] == "| a | 51.0 | 47.0 | 41.0 | 90 / 10 | 100 / 0 | 0.500 / 0.500 |"
    assert rows["b"] == "| b | 40.0 | 38.0 | 30.0 | 80 / 5 | 80 / 5 | 1.700 / 1.500 |"
    # LA: seta (41 + 30)/2 = 35.5, oracle (47 + 38)/2 = 42.5, reference (51 + 40)/2 = 45.5
    assert "- LA: seta 35.5 − seqft-sparse 45.5 = -10.0 = -3.0 from training" in result.output
    assert "-7.0 from routing" in result.output
    # OP: seta (45 + 30)/2 = 37.5, oracle (46 + 38)/2 = 42.0, reference (48 + 40)/2 = 44.0
    assert "- OP: seta 37.5 − seqft-sparse 44.0 = -6.5 = -2.0 from training" in result.output
    assert (tmp_path / "d.md").read_text() == result.output


def test_without_the_oracle_or_the_metrics_file(tmp_path):
    _run(tmp_path, "seqft-sparse", 0, [[50.0, N], [48.0, 40.0]])
    _run(tmp_path, "seta", 0, [[40.0, N], [45.0, 30.0]])  # an older run: no metrics.jsonl
    result = _invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert "| a | 50.0 | — | 40.0 | — / — | — / — |" in result.output
    assert "(seta-oracle not run: training and routing cannot be told apart)" in result.output


def test_a_missing_method_is_one_clear_error(tmp_path):
    _run(tmp_path, "seta", 0, [[40.0, N], [45.0, 30.0]])
    result = _invoke(tmp_path)
    assert result.exit_code != 0
    assert "no finished run of seqft-sparse" in result.output and "Traceback" not in result.output
