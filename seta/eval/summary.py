"""The results of a report as data: `MethodResult` per method, the SETA extras, ``summary.json``.

``summary.json`` schema (issue 6), NaN written as null:

    {"preset": str, "tasks": [str], "seeds": [int], "config": {...} (the resolved settings, when given),
     "base_scores": [per seed: [per task: float]] (the base model's scores, when a method recorded them),
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    base = _base_scores(methods, len(seeds), len(tasks))
    if base is not None:
        out["base_scores"] = base
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


def _base_scores(methods: Sequence[MethodResult], n_seeds: int, n_tasks: int) -> list | None:
    """The base model's score per seed and task, (S, n), from the first method that recorded them for
    every seed of the report (a shared (n,) row is repeated per seed); None when none did."""
    for m in methods:
        if m.base_scores is None or m.seeds is not None:
            continue
        rows = np.asarray(m.base_scores, dtype=np.float64)
        if rows.shape == (n_tasks,):
            rows = np.tile(rows, (n_seeds, 1))
        if rows.shape == (n_seeds, n_tasks):
            return _json_clean(rows.tolist())
    return None


def write_summary_json(summary: Mapping, path: str | os.PathLike) -> Path:
    """Write atomically (temporary file, then rename); strict JSON (no NaN)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(_json_clean(dict(summary)), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no .tmp behind
    return path


def load_summary(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no summary at {path}: run the benchmark first (reproduce/run_all.py)")
    return json.loads(path.read_text())
