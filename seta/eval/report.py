"""Run reports: ``summary.json``, ``summary.md`` and PNG plots in the output directory.

The data and summary.json: `seta.eval.summary`; the tables: `seta.eval.markdown`; the figures:
`seta.eval.plots`; `write_report` here writes all three.

The trainer fills one `MethodResult` per method (one R per seed plus extras)
and, for SETA, optionally a `GrowthCurve` and a `BlockMap`; `write_report`
does the rest. The ``summary.json`` schema is in `seta.eval.summary`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from seta.eval import plots
from seta.eval.markdown import render_markdown
from seta.eval.summary import (METHOD_KEYS, BlockMap, GrowthCurve, MethodResult, PerSeed, ReportFiles, _check,
                               aggregate, build_summary, load_summary, write_summary_json)

__all__ = ["METHOD_KEYS", "BlockMap", "GrowthCurve", "MethodResult", "PerSeed", "ReportFiles", "aggregate",
           "build_summary", "load_summary", "render_markdown", "write_report", "write_summary_json"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_report(out_dir: str | os.PathLike, preset: str, tasks: Sequence[str], seeds: Sequence[int],
                 methods: Sequence[MethodResult], *, growth: GrowthCurve | None = None,
                 block_map: BlockMap | None = None, make_plots: bool = True, config: Mapping | None = None) -> ReportFiles:
    """Write ``summary.json``, ``summary.md`` and (``make_plots``) PNGs under ``out_dir/plots``:
    ``R_<method>.png`` each, ``op_bwt.png``, ``param_growth.png`` (with ``growth``),
    ``block_map.png`` + ``block_usage.png`` (with ``block_map``), ``routing_<method>.png``
    for each method with a routing confusion. PNGs of an earlier report that this one does not
    draw are removed, so the folder never shows stale plots beside new ones. config: the run's resolved
    settings, written into summary.json."""
    out = Path(out_dir)
    _check(tasks, seeds, methods)
    aggs = aggregate(methods)
    files = ReportFiles(
        summary_json=write_summary_json(build_summary(preset, tasks, seeds, methods, aggs, config),
                                        out / "summary.json"),
        summary_md=out / "summary.md",
    )
    files.summary_md.write_text(render_markdown(preset, tasks, seeds, methods, aggs) + "\n")
    if not make_plots:
        return files
    pd, p = out / "plots", files.plots
    for old in pd.glob("*.png") if pd.is_dir() else ():
        old.unlink()
    for m in methods:
        p[f"R_{m.name}"] = plots.plot_r_heatmap(aggs[m.name].R_mean, tasks, pd / f"R_{_slug(m.name)}.png",
                                                 title=f"R: {m.name}")
    p["op_bwt"] = plots.plot_op_bwt([m.name for m in methods], *zip(*[
        (aggs[m.name].OP, aggs[m.name].OP_std, aggs[m.name].BWT, aggs[m.name].BWT_std) for m in methods]),
        pd / "op_bwt.png")
    if growth is not None:
        p["param_growth"] = plots.plot_param_growth(tasks, growth.seta, growth.independent, pd / "param_growth.png")
    if block_map is not None:
        p["block_map"] = plots.plot_block_map(block_map.grids, block_map.owner_counts, pd / "block_map.png")
        p["block_usage"] = plots.plot_block_usage(block_map.grids, block_map.owner_counts, pd / "block_usage.png")
    for m in methods:
        if m.routing_confusion is not None:
            p[f"routing_{m.name}"] = plots.plot_routing_confusion(
                m.routing_confusion, tasks, pd / f"routing_{_slug(m.name)}.png", title=f"routing: {m.name}")
    return files
