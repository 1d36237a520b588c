"""reproduce/targets.py: each target of the real-model table, met or missed, from hand-made run folders."""

import json

from click.testing import CliRunner

from reproduce_helpers import load_script

N = None


def _result(out, method, seed, R, base=(0.0, 0.0), routing=None):
    run = out / method / f"seed{seed}"
    run.mkdir(parents=True)
    record = {"method": method, "seed": seed, "tasks": ["a", "b"], "R": R, "routing_acc": routing,
              "extra": {"base_scores": list(base)}}
    (run / "result.json").write_text(json.dumps(record))


def _general(out, base, after):
    """base: per-seed {task: score}; after: method -> per-seed {task: score}."""
    def cell(scores):
        return {t: {"score": v, "metric": "acc", "n": 200} for t, v in scores.items()}
    harness = {"tasks": ["mmlu", "piqa"], "base": [cell(b) for b in base],
               "after": {m: [cell(s) for s in runs] for m, runs in after.items()}}
    (out / "general_ability.json").write_text(json.dumps({"harness": harness}))


def _rows(out):
    result = CliRunner().invoke(load_script("targets").main, [str(out)])
    assert result.exit_code == 0, result.output
    return {line.split(" | ")[0].lstrip("| "): line for line in result.output.splitlines() if line.startswith("| ")}


def test_every_target_met(tmp_path):
    for seed in (0, 1):
        _result(tmp_path, "seqft-sparse", seed, [[30.0, N], [10.0, 40.0]], base=(5.0, 5.0))  # gain 30, OP 25
        _result(tmp_path, "seta", seed, [[30.0, N], [29.0, 38.0]], routing=95.0)  # OP 33.5, BWT -1, LA 34
        _result(tmp_path, "independent", seed, [[40.0, N], [40.0, 40.0]])  # task id: not compared
        _result(tmp_path, "mtl", seed, [[N, N], [50.0, 50.0]])  # joint: not compared, and has no LA
    _general(tmp_path, base=[{"mmlu": 30.0, "piqa": 60.0}] * 2,
             after={"seta": [{"mmlu": 30.5, "piqa": 59.5}] * 2, "seq-lora": [{"mmlu": 25.0, "piqa": 55.0}] * 2})
    rows = _rows(tmp_path)
    assert "| 30.0 ± 0.0 | met" in rows["seqft-sparse LA − base ≥ 15"]
    op = next(v for k, v in rows.items() if k.startswith("SETA OP"))
    assert "best: seqft-sparse, 25.0 ± 0.0; 1 compared" in op and op.endswith("| met |")
    assert rows["SETA BWT ≥ −2"].endswith("| -1.0 ± 0.0 | met |")
    assert next(v for k, v in rows.items() if k.startswith("SETA LA")).endswith("| 34.0 ± 0.0 | met |")
    assert rows["SETA routing accuracy ≥ 90%"].endswith("| 95.0 ± 0.0 | met |")
    mmlu = next(v for k, v in rows.items() if k.startswith("SETA MMLU"))
    assert "seq-lora: -5.0 ± 0.0" in mmlu and mmlu.endswith("| 0.5 ± 0.0 | met |")


def test_misses_and_what_was_not_measured(tmp_path):
    _result(tmp_path, "seqft-sparse", 0, [[12.0, N], [10.0, 16.0]], base=(0.0, 2.0))  # gain 13: missed
    _result(tmp_path, "lwf", 0, [[40.0, N], [35.0, 40.0]])  # OP 37.5 beats SETA
    _result(tmp_path, "seta", 0, [[15.0, N], [10.0, 5.0]], routing=80.0)  # OP 7.5, BWT -5, LA 10
    rows = _rows(tmp_path)
    assert rows["seqft-sparse LA − base ≥ 15"].endswith("| 13.0 | **missed** |")
    op = next(v for k, v in rows.items() if k.startswith("SETA OP"))
    assert "best: lwf, 37.5; 2 compared" in op and op.endswith("**missed** |")
    assert rows["SETA BWT ≥ −2"].endswith("**missed** |")
    assert next(v for k, v in rows.items() if k.startswith("SETA LA")).endswith("| 10.0 | **missed** |")
    assert rows["SETA routing accuracy ≥ 90%"].endswith("**missed** |")
    assert rows["SETA MMLU after − base within ±1, seq-lora loses more"].endswith("| — | not measured |")


def test_an_empty_folder_is_an_error(tmp_path):
    result = CliRunner().invoke(load_script("targets").main, [str(tmp_path)])
    assert result.exit_code != 0 and "no finished run" in result.output
