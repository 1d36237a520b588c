"""Run reports: ``summary.json``, ``summary.md`` and PNG plots in the output directory.

The trainer fills one `MethodResult` per method (one R per seed plus extras)
and, for SETA, optionally a `GrowthCurve` and a `BlockMap`; `write_report`
does the rest. ``summary.json`` schema (issue 6), NaN written as null:

    {"preset": str, "tasks": [str], "seeds": [int], "config": {...} (the resolved settings, when given),
     "methods": {NAME: {"R": [[float|null]] (mean over seeds), "OP", "BWT", "FWT", "LA",
                        "OP_std", "BWT_std", "LA_std", "routing_acc", "trainable_params",
                        "allocated_params", "wall_s", "peak_mem_mb",
                        "per_task": [per seed: [per task: {...}]] (what the strategy logged),
                        "config": [per seed: the run's resolved config (its config.json)]}}}

LA (learning accuracy) = mean_j R[j][j], the plasticity beside OP and BWT.

Scores, OP/BWT/FWT and routing accuracy are on a 0-100 scale; stds are sample
stds over seeds (null with one seed); per-seed extras are averaged.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seta.eval import plots
from seta.eval.continual import SeedAggregate, aggregate_seeds

METHOD_KEYS = ("R", "OP", "BWT", "FWT", "LA", "OP_std", "BWT_std", "LA_std", "routing_acc", "trainable_params",
               "allocated_params", "wall_s", "peak_mem_mb")

PerSeed = float | Sequence[float] | None


@dataclass
class MethodResult:
    """Everything measured for one method, one entry per seed where it varies."""

    name: str
    """Method name as shown in tables (e.g. "seta", "seqft-sparse")."""
    R: Sequence
    """One n x n score matrix per seed (0-100, NaN where not evaluated), in the report's seed order."""
    base_scores: Sequence | None = None
    """Base model's score per task for FWT: (n,) shared or (S, n) per seed; None -> FWT null."""
    routing_acc: PerSeed = None
    """Routing accuracy in percent (0-100), per seed or one number; None where no routing."""
    trainable_params: int | None = None
    """Parameters updated by the optimizer (per task)."""
    allocated_params: PerSeed = None
    """Parameters held by the method's experts at the end (SETA, independent); None elsewhere."""
    wall_s: PerSeed = None
    """Wall-clock seconds of the whole stream, per seed or one number."""
    peak_mem_mb: PerSeed = None
    """Peak memory in MB (GPU if used, else CPU RSS), per seed or one number."""
    routing_confusion: Sequence | None = None
    """(n, n) routing counts summed over seeds, rows = true task, columns = routed task."""
    per_task: Sequence | None = None
    """Per seed, one dict per task of what the run logged (losses, allocation figures); None if none."""
    seeds: Sequence[int] | None = None
    """The seeds of this method's R matrices, when they are not all the report's seeds (None: all)."""
    config: Sequence | None = None
    """Per seed, the run's resolved config (the config.json beside its checkpoint); None if not recorded."""

    def __post_init__(self):
        if not self.name:
            raise ValueError("a method needs a non-empty name")
        if len(self.R) == 0:
            raise ValueError(f"method {self.name!r} has no R matrix: give one per seed")
        if self.routing_acc is not None:
            for a in np.atleast_1d(np.asarray(self.routing_acc, dtype=np.float64)):
                if not (math.isnan(a) or 0.0 <= a <= 100.0):
                    raise ValueError(f"method {self.name!r}: routing_acc {a} is not a percentage in [0, 100]")


@dataclass
class GrowthCurve:
    """Allocated parameters after each task (cumulative), SETA vs independent experts."""

    seta: Sequence[int]
    independent: Sequence[int]


@dataclass
class BlockMap:
    """SETA's block ownership at the end of the stream."""

    grids: Mapping[str, tuple[int, int]]
    """layer name -> (n_rows, n_cols) of its block grid, in model order."""
    owner_counts: Mapping[str, Sequence[int]]
    """layer name -> per-block owner counts, (n_rows * n_cols,) row-major or (n_rows, n_cols)."""

    @classmethod
    def from_block_index(cls, index, owner_counts) -> "BlockMap":
        """From a `seta.core.blocks.BlockIndex` and the registry's global (N,) owner counts."""
        counts = np.asarray(owner_counts).reshape(-1)
        if counts.size != index.n_blocks:
            raise ValueError(f"{counts.size} owner counts for {index.n_blocks} blocks in the index")
        grids = {n: (g.n_rows, g.n_cols) for n, g in index.grids.items()}
        per = {n: counts[index.offsets[n] : index.offsets[n] + index.grids[n].n_blocks] for n in index.names}
        return cls(grids=grids, owner_counts=per)


@dataclass
class ReportFiles:
    summary_json: Path
    summary_md: Path
    plots: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------- helpers
def _mean(x: PerSeed) -> float | None:
    if x is None:
        return None
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if v.size == 0 or np.isnan(v).any():
        return None
    return float(v.mean())


def _json_clean(x):
    """numpy -> Python, NaN/inf -> None, recursively."""
    if isinstance(x, dict):
        return {str(k): _json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_json_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def _check(tasks: Sequence[str], seeds: Sequence[int], methods: Sequence[MethodResult]) -> None:
    n = len(tasks)
    if n == 0:
        raise ValueError("no tasks: give the stream's task names in training order")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    for m in methods:
        own = seeds if m.seeds is None else m.seeds
        if m.seeds is not None and not set(m.seeds) <= set(seeds):
            raise ValueError(f"method {m.name!r} has seeds {list(m.seeds)} outside the report's seeds {list(seeds)}")
        if len(m.R) != len(own):
            raise ValueError(f"method {m.name!r} has {len(m.R)} R matrices for {len(own)} seeds: give one per seed")
        for R in m.R:
            if np.shape(R) != (n, n):
                raise ValueError(f"method {m.name!r}: R has shape {np.shape(R)}, expected {n} x {n} for {n} tasks")


def aggregate(methods: Sequence[MethodResult]) -> dict[str, SeedAggregate]:
    """Seed aggregate (mean, std, OP/BWT/FWT) per method name."""
    return {m.name: aggregate_seeds(m.R, m.base_scores) for m in methods}


def build_summary(preset: str, tasks: Sequence[str], seeds: Sequence[int], methods: Sequence[MethodResult],
                  aggregates: Mapping[str, SeedAggregate] | None = None, config: Mapping | None = None) -> dict:
    """The ``summary.json`` dict (JSON-ready: NaN already replaced by None); config: the run's resolved
    settings (stored as they are)."""
    _check(tasks, seeds, methods)
    aggs = aggregates or aggregate(methods)
    out = {"preset": str(preset), "tasks": [str(t) for t in tasks], "seeds": [int(s) for s in seeds], "methods": {}}
    if config is not None:
        out["config"] = dict(config)
    for m in methods:
        a = aggs[m.name]
        alloc = _mean(m.allocated_params)
        entry = {
            "R": a.R_mean, "OP": a.OP, "BWT": a.BWT, "FWT": a.FWT, "LA": a.LA, "OP_std": a.OP_std,
            "BWT_std": a.BWT_std, "LA_std": a.LA_std,
            "routing_acc": _mean(m.routing_acc),
            "trainable_params": None if m.trainable_params is None else int(m.trainable_params),
            "allocated_params": None if alloc is None else int(round(alloc)),
            "wall_s": _mean(m.wall_s), "peak_mem_mb": _mean(m.peak_mem_mb),
        }
        if m.per_task is not None:
            entry["per_task"] = list(m.per_task)
        if m.seeds is not None:
            entry["seeds"] = [int(x) for x in m.seeds]
        if m.config is not None:
            entry["config"] = list(m.config)
        out["methods"][m.name] = _json_clean(entry)
    return out


def write_summary_json(summary: Mapping, path: str | os.PathLike) -> Path:
    """Write atomically (temporary file, then rename); strict JSON (no NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_json_clean(dict(summary)), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def load_summary(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no summary at {path}: run the benchmark first (reproduce/run_all.py)")
    return json.loads(path.read_text())


# ------------------------------------------------------------------ markdown
def _pm(mean, std, digits: int = 1) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    s = f"{mean:.{digits}f}"
    if std is not None and math.isfinite(std):
        s += f" ± {std:.{digits}f}"
    return s


def _params(p) -> str:
    if p is None:
        return "—"
    p = float(p)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if p >= div:
            return f"{p / div:.2f}{unit}"
    return f"{int(p)}"


def _per_seed_pm(x: PerSeed, digits: int = 1) -> str:
    if x is None:
        return "—"
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    std = float(v.std(ddof=1)) if v.size > 1 else None
    return _pm(_mean(x), std, digits)


def render_markdown(preset: str, tasks: Sequence[str], seeds: Sequence[int], methods: Sequence[MethodResult],
                    aggregates: Mapping[str, SeedAggregate] | None = None) -> str:
    """Paper-style table: methods x (final per-task scores, OP, BWT, FWT, routing accuracy,
    parameters, time, memory), mean ± std over seeds; then each method's mean R."""
    _check(tasks, seeds, methods)
    aggs = aggregates or aggregate(methods)
    head = [*tasks, "OP", "BWT", "LA", "FWT", "Routing acc.", "Trainable", "Allocated", "Time (s)", "Peak mem (MB)"]
    lines = [
        f"# Results: preset `{preset}`",
        "",
        f"Tasks in training order: {', '.join(tasks)}. Seeds: {', '.join(map(str, seeds))}. "
        "Scores 0–100, final per-task scores after the whole stream; mean ± sample std over seeds "
        "(no std with one seed); LA = mean just-learned score R[j][j] (plasticity); "
        "— = not applicable or not measured.",
        "",
    ]
    fewer = [m for m in methods if m.seeds is not None and list(m.seeds) != list(seeds)]
    if fewer:
        lines += ["Seeds per method where not all: " + "; ".join(f"{m.name} {', '.join(map(str, m.seeds))}"
                                                             for m in fewer) + ".", ""]
    lines += [
        "| Method | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(head),
    ]
    for m in methods:
        a = aggs[m.name]
        cells = [_pm(v, s) for v, s in zip(a.final_mean, a.final_std)]
        cells += [_pm(a.OP, a.OP_std), _pm(a.BWT, a.BWT_std), _pm(a.LA, a.LA_std), _pm(a.FWT, a.FWT_std), _per_seed_pm(m.routing_acc),
                  _params(m.trainable_params), _params(_mean(m.allocated_params)), _per_seed_pm(m.wall_s, 0),
                  _per_seed_pm(m.peak_mem_mb, 0)]
        lines.append(f"| {m.name} | " + " | ".join(cells) + " |")
    lines += _per_task_tables(methods, seeds)
    lines += ["", "## R matrices (mean over seeds; row = after training task, column = evaluated task)", ""]
    for m in methods:
        R = aggs[m.name].R_mean
        lines += [f"### {m.name}", "", "| after \\ eval | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for t, row in zip(tasks, R):
            lines.append(f"| {t} | " + " | ".join(_pm(v, None) for v in row) + " |")
        lines.append("")
    return "\n".join(lines)


def _per_task_tables(methods: Sequence[MethodResult], seeds: Sequence[int]) -> list[str]:
    """Per task of the first seed, for methods that allocate blocks: LM loss and penalty (means over the
    task's steps), new / reused / anchored blocks, how many matrices the task's blocks fall in and the
    share of the two fullest."""
    out = []
    for m in methods:
        rows = (m.per_task or [None])[0]
        if not rows or "blocks" not in rows[0]:
            continue
        out += ["", f"## Per task: {m.name} (seed {seeds[0]})", "",
                "| Task | LM loss | Penalty | Blocks | New | Reused | Anchored | Matrices | Top-2 share |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            per = sorted(r.get("per_matrix", {}).values(), reverse=True)
            share = sum(per[:2]) / max(1, sum(per))
            out.append(f"| {r['task']} | {r['mean_lm_loss']:.3f} | {r['mean_penalty']:.3f} | {r['blocks']} | "
                       f"{r['new']} | {r['reused']} | {r.get('anchored', 0)} | {len(per)} | {100 * share:.0f}% |")
    return out


# -------------------------------------------------------------------- report
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
