"""summary.json schema and round trip, markdown content, PNGs written and loadable."""

import json
import math

import matplotlib.image as mpimg
import numpy as np
import pytest

from seta.eval.report import (
    METHOD_KEYS,
    BlockMap,
    GrowthCurve,
    MethodResult,
    build_summary,
    load_summary,
    render_markdown,
    write_report,
    write_summary_json,
)

NAN = float("nan")
TASKS = ["stance", "code", "simplify"]
SEEDS = [0, 1]
R_SETA = [[[80, NAN, NAN], [79, 70, NAN], [78, 69, 90]], [[82, NAN, NAN], [81, 72, NAN], [80, 71, 92]]]
R_SEQ = [[[80, 5, NAN], [40, 70, 3], [20, 30, 90]], [[80, 7, NAN], [44, 72, 5], [24, 34, 92]]]


def methods():
    return [
        MethodResult("seta", R_SETA, routing_acc=[97.0, 99.0], trainable_params=12_000,
                     allocated_params=[30_000, 32_000], wall_s=[100.0, 110.0], peak_mem_mb=512.0,
                     routing_confusion=[[10, 0, 0], [1, 9, 0], [0, 0, 10]]),
        MethodResult("seqft-sparse", R_SEQ, base_scores=[1, 2, 3], trainable_params=12_000,
                     wall_s=[80.0, 90.0], peak_mem_mb=[400.0, 420.0]),
    ]


def test_summary_schema_and_values():
    s = build_summary("tiny", TASKS, SEEDS, methods())
    assert set(s) == {"preset", "tasks", "seeds", "methods", "base_scores"}
    assert s["base_scores"] == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]  # seqft's shared row, once per seed
    assert s["preset"] == "tiny" and s["tasks"] == TASKS and s["seeds"] == SEEDS
    assert list(s["methods"]) == ["seta", "seqft-sparse"]
    for entry in s["methods"].values():
        assert tuple(entry) == METHOD_KEYS
        assert all(isinstance(row, list) and len(row) == 3 for row in entry["R"])
        for k in ("OP", "BWT", "OP_std", "BWT_std", "wall_s", "peak_mem_mb"):
            assert isinstance(entry[k], float)
    seta, seq = s["methods"]["seta"], s["methods"]["seqft-sparse"]
    # seta: final rows (78, 69, 90) and (80, 71, 92) -> OP 79 and 81
    assert seta["OP"] == pytest.approx(80.0) and seta["OP_std"] == pytest.approx(2 / math.sqrt(2))
    # BWT seed 0: ((78-80)+(69-70))/2 = -1.5; seed 1: ((80-82)+(71-72))/2 = -1.5
    assert seta["BWT"] == pytest.approx(-1.5) and seta["BWT_std"] == pytest.approx(0.0)
    assert seta["R"][0] == [81.0, None, None] and seta["R"][2] == [79.0, 70.0, 91.0]
    assert seta["FWT"] is None  # no base scores, no R[j-1][j]
    assert seta["routing_acc"] == 98.0 and seta["allocated_params"] == 31_000
    assert isinstance(seta["allocated_params"], int) and isinstance(seta["trainable_params"], int)
    assert seta["peak_mem_mb"] == 512.0 and seta["wall_s"] == 105.0
    # seqft: FWT seed 0 = ((5-2)+(3-3))/2 = 1.5, seed 1 = ((7-2)+(5-3))/2 = 3.5
    assert seq["FWT"] == pytest.approx(2.5)
    # BWT seed 0 = ((20-80)+(30-70))/2 = -50, seed 1 = ((24-80)+(34-72))/2 = -47
    assert seq["BWT"] == pytest.approx(-48.5)
    assert seq["routing_acc"] is None and seq["allocated_params"] is None


def test_json_round_trip_and_strict(tmp_path):
    s = build_summary("tiny", TASKS, SEEDS, methods())
    p = write_summary_json(s, tmp_path / "summary.json")
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert load_summary(p) == s
    assert json.loads(text) == s
    with pytest.raises(FileNotFoundError, match="run the benchmark"):
        load_summary(tmp_path / "missing.json")


def test_base_scores_per_seed_and_absent_when_not_recorded():
    per_seed = [[1, 2, 3], [4, NAN, 6]]
    m = MethodResult("seq-lora", R_SEQ, base_scores=per_seed)
    assert build_summary("tiny", TASKS, SEEDS, [m])["base_scores"] == [[1.0, 2.0, 3.0], [4.0, None, 6.0]]
    assert "base_scores" not in build_summary("tiny", TASKS, SEEDS, methods()[:1])


def test_failed_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "summary.json").mkdir()  # the rename onto it fails after the temporary file is written
    with pytest.raises(OSError):
        write_summary_json({"preset": "tiny"}, tmp_path / "summary.json")
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_single_seed_std_and_nan_extras_are_null():
    m = MethodResult("mtl", [R_SETA[0]], wall_s=[NAN], peak_mem_mb=None)
    s = build_summary("tiny", TASKS, [0], [m])["methods"]["mtl"]
    assert s["OP_std"] is None and s["BWT_std"] is None and s["wall_s"] is None and s["peak_mem_mb"] is None
    assert s["OP"] == pytest.approx((78 + 69 + 90) / 3)


def test_markdown_contains_methods_and_numbers():
    md = render_markdown("tiny", TASKS, SEEDS, methods())
    assert "| seta |" in md and "| seqft-sparse |" in md
    for t in TASKS:
        assert t in md
    assert "80.0 ± 1.4" in md            # seta OP
    assert "-48.5 ± 2.1" in md           # seqft BWT
    assert "98.0 ± 1.4" in md            # seta routing
    assert "31.00K" in md and "12.00K" in md
    assert "79.0 ± 1.4" in md            # seta final score on task 0
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    row = next(line for line in md.splitlines() if line.startswith("| seqft-sparse"))
    assert header.count("|") == row.count("|")
    assert "—" in row                    # routing accuracy not applicable


def test_errors_for_bad_inputs():
    with pytest.raises(ValueError, match="one per seed"):
        build_summary("tiny", TASKS, [0, 1, 2], methods())
    with pytest.raises(ValueError, match="expected 2 x 2"):
        build_summary("tiny", TASKS[:2], SEEDS, methods())
    with pytest.raises(ValueError, match="unique"):
        build_summary("tiny", TASKS, SEEDS, methods() * 2)
    with pytest.raises(ValueError, match="percentage"):
        MethodResult("x", R_SETA, routing_acc=[0.97, 120.0])
    with pytest.raises(ValueError, match="no R"):
        MethodResult("x", [])


def _assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert float(np.ptp(img[..., :3])) > 0  # not blank


def test_write_report_files_and_plots(tmp_path):
    grids = {f"model.layers.{i}.self_attn.{m}": (2, 3) for i in range(2) for m in ("q_proj", "v_proj")}
    owners = {n: [0, 1, 2, 1, 0, 3] for n in grids}
    owners["model.layers.0.self_attn.q_proj"] = np.array([[0, 0, 0], [1, 1, 1]])
    files = write_report(
        tmp_path / "run", "tiny", TASKS, SEEDS, methods(),
        growth=GrowthCurve(seta=[10, 15, 18], independent=[10, 20, 30]),
        block_map=BlockMap(grids, owners),
    )
    assert load_summary(files.summary_json)["preset"] == "tiny"
    assert "| seta |" in files.summary_md.read_text()
    expect = {"R_seta", "R_seqft-sparse", "op_bwt", "param_growth", "block_map", "block_usage", "routing_seta"}
    assert set(files.plots) == expect
    for p in files.plots.values():
        _assert_png(p)
    assert (tmp_path / "run" / "plots" / "R_seqft-sparse.png").is_file()


def test_plot_input_errors(tmp_path):
    from seta.eval import plots

    with pytest.raises(ValueError, match="owner counts"):
        plots.plot_block_map({"a": (2, 2)}, {"a": [0, 1, 2]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="one count per task"):
        plots.plot_param_growth(TASKS, [1, 2], [1, 2, 3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="confusion"):
        plots.plot_routing_confusion([[1]], TASKS, tmp_path / "x.png")
    # per-task increments are summed when cumulative=False; NaN-only heatmap rows still draw
    _assert_png(plots.plot_param_growth(TASKS, [10, 5, 3], [10, 10, 10], tmp_path / "g.png", cumulative=False))
    _assert_png(plots.plot_r_heatmap([[NAN, None, 1], [2, 3, 4], [5, 6, 7]], TASKS, tmp_path / "r.png"))


def test_block_map_from_core_block_index():
    import torch

    from seta.core.allocation import OwnershipRegistry
    from seta.core.blocks import BlockGrid, BlockIndex

    index = BlockIndex({"q": BlockGrid(4, 6, 2), "v": BlockGrid(3, 2, 2)})  # 2x3 and 2x1 blocks
    reg = OwnershipRegistry(index.n_blocks)
    reg.add_task(0, torch.tensor([0, 1, 6]))
    reg.add_task(1, torch.tensor([1, 7]))
    bm = BlockMap.from_block_index(index, reg.owner_counts())
    assert bm.grids == {"q": (2, 3), "v": (2, 1)}
    assert list(bm.owner_counts["q"]) == [1, 2, 0, 0, 0, 0] and list(bm.owner_counts["v"]) == [1, 1]
    with pytest.raises(ValueError, match="owner counts"):
        BlockMap.from_block_index(index, [0, 1])


def test_la_and_per_task_table():
    """LA = mean of R's diagonal, with its std; the per-task allocation table of a block method."""
    per_task = [[{"task": "stance", "mean_lm_loss": 1.5, "mean_penalty": 0.0, "blocks": 4, "new": 4, "reused": 0,
                  "anchored": 0, "per_matrix": {"q": 3, "v": 1}},
                 {"task": "code", "mean_lm_loss": 1.25, "mean_penalty": 0.5, "blocks": 4, "new": 1, "reused": 3,
                  "anchored": 3, "per_matrix": {"q": 2, "v": 1, "o": 1}}]] * 2
    ms = methods()
    ms[0].per_task = per_task
    summary = build_summary("tiny", TASKS, SEEDS, ms)
    seta = summary["methods"]["seta"]
    assert seta["LA"] == pytest.approx(np.mean([(80 + 70 + 90) / 3, (82 + 72 + 92) / 3]))
    assert seta["LA_std"] == pytest.approx(np.std([80, 82], ddof=1))  # each seed's LA differs by 2
    assert seta["per_task"] == per_task and "per_task" not in summary["methods"]["seqft-sparse"]
    md = render_markdown("tiny", TASKS, SEEDS, ms)
    assert "| OP | BWT | LA | FWT |" in md
    assert "| code | 1.250 | 0.500 | 4 | 1 | 3 | 3 | 3 | 75% |" in md


def test_sweep_plot_takes_named_values(tmp_path):
    from seta.eval.plots import plot_sweep

    path = plot_sweep("allocation", ["raw", "matrix-mean"], [20.0, 50.0], [1.0, None], [-2.0, 0.0], [0.5, None],
                      tmp_path / "s.png", references={"independent": (40.0, 0.0)})
    assert mpimg.imread(path).shape[0] > 100
