"""``summary.md``: the report's tables (OP/BWT/FWT/LA ± std per method, final R, per-task figures)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from seta.eval.continual import SeedAggregate
from seta.eval.summary import MethodResult, PerSeed, _check, _mean, aggregate

__all__ = ["render_markdown"]


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
