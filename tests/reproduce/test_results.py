"""reproduce/results.py: reports are rebuilt from every finished result in the folder; another run's
results are refused, never mixed in."""

import json
from types import SimpleNamespace

import pytest


TASKS = ["A", "B"]


@pytest.fixture(scope="module")
def results():
    from seta.experiment import results  # moved from reproduce/results.py

    return results


@pytest.fixture(scope="module")
def presets(results):
    from seta.experiment import presets  # moved from reproduce/presets.py

    return presets


def _result(method, R):
    res = SimpleNamespace(method=method, tasks=TASKS, R=R, base_scores=[10.0, 10.0], routing_acc=None,
                          routing_confusion=None, trainable_params=100, allocated_params=None, wall_s=1.0,
                          peak_mem_mb=5.0, extra={"per_task": [{"task": "A"}, {"task": "B"}]})
    res.OP, res.BWT = sum(R[-1]) / 2, R[-1][0] - R[0][0]
    return res


def _write(results, out, method, seed, R, info, data="d"):
    run_dir = out / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    results.write_result(run_dir, _result(method, R), seed, info, {"A": data})


def test_a_second_run_with_other_methods_and_seeds_adds_to_the_report(results, presets, tmp_path):
    info = results.run_info(presets.QUICK, None, [SimpleNamespace(name=t) for t in TASKS])
    _write(results, tmp_path, "seta", 0, [[50.0, 20.0], [40.0, 60.0]], info)  # first run: seta, seed 0
    _write(results, tmp_path, "ewc", 0, [[30.0, 10.0], [20.0, 50.0]], info)  # second run: ewc, seeds 0 and 1
    _write(results, tmp_path, "ewc", 1, [[32.0, 12.0], [22.0, 52.0]], info)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "R_lwf.png").write_bytes(b"stale")  # a method no longer in the folder
    results.write_reports(tmp_path, "tiny-quick", results.read_results(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["methods"]) == ["seta", "ewc"] and summary["seeds"] == [0, 1]
    assert summary["methods"]["seta"]["seeds"] == [0] and "seeds" not in summary["methods"]["ewc"]
    assert summary["methods"]["ewc"]["R"][1] == [21.0, 51.0]  # mean over its two seeds
    assert "Seeds per method where not all: seta 0." in (tmp_path / "summary.md").read_text()
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["R_ewc.png", "R_seta.png", "op_bwt.png"]


def test_results_of_another_run_are_refused_with_the_reason(results, presets, tmp_path):
    tasks = [SimpleNamespace(name=t) for t in TASKS]
    quick = results.run_info(presets.QUICK, None, tasks)
    _write(results, tmp_path, "seta", 0, [[1.0, 2.0], [3.0, 4.0]], quick)
    full = results.run_info(presets.PRESETS["tiny"], None, tasks)
    found = results.read_results(tmp_path)
    with pytest.raises(ValueError, match=r"seta/seed0: its preset and preset settings differ .*use another --out"):
        results.check_compatible(tmp_path, found, full, {0: {"A": "d"}})
    with pytest.raises(ValueError, match=r"its data \(seed 0\) differ"):
        results.check_compatible(tmp_path, found, quick, {0: {"A": "other"}})
    results.check_compatible(tmp_path, found, quick, {0: {"A": "d"}, 1: {"A": "x"}})  # same run: fine
    results.check_compatible(tmp_path, found, full, {0: {"A": "d"}}, rerun={("seta", 0)})  # replaced by this run
    legacy = tmp_path / "ewc" / "seed0"
    legacy.mkdir(parents=True)
    (legacy / "result.json").write_text(json.dumps({"method": "ewc", "R": [[1.0]]}))
    with pytest.raises(ValueError, match="older run_all"):
        results.check_compatible(tmp_path, results.read_results(tmp_path), quick, {0: {"A": "d"}})
