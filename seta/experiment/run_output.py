"""What `seta run` (and reproduce/run_all.py) prints when it ends: a short table and where the report is.

The full tables and every R matrix are in summary.md; the terminal gets one row per method
(OP, BWT, LA, routing accuracy, wall time; mean ± std where there are several seeds) and the
report's files named in words. `--verbose` prints summary.md after it.
"""

from __future__ import annotations

import math
from pathlib import Path


def _pm(mean, std) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:.1f}" if std is None or not math.isfinite(std) else f"{mean:.1f} ± {std:.1f}"


def _time(seconds) -> str:
    if seconds is None:
        return "—"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def results_table(summary: dict, ppl_after: dict | None = None) -> str:
    """One line per method of a summary.json dict: OP, BWT, LA, routing accuracy, wall time (mean over
    seeds). ppl_after: {method: [held-out perplexity per seed]}, shown as a column when given."""
    seeds = summary.get("seeds", [])
    head = ["method", "OP", "BWT", "LA", "routing", "time"]
    with_ppl = bool(ppl_after) and any(v and all(x is not None for x in v) for v in ppl_after.values())
    if with_ppl:
        head.append("ppl after")
    rows = [head]
    for name, m in summary["methods"].items():
        acc = m.get("routing_acc")
        row = [name, _pm(m.get("OP"), m.get("OP_std")), _pm(m.get("BWT"), m.get("BWT_std")),
               _pm(m.get("LA"), m.get("LA_std")), "—" if acc is None else f"{acc:.1f}%", _time(m.get("wall_s"))]
        if with_ppl:
            vals = (ppl_after or {}).get(name) or []
            row.append(f"{sum(vals) / len(vals):.2f}" if vals and None not in vals else "—")  # all seeds, or none
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    over = f"mean ± std over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else ""
    title = f"{summary.get('preset', '')}, {len(summary.get('tasks', []))} tasks, {over}".strip(", ")
    return "\n".join([title, *lines])


def report_paths(out_dir: Path, plots: dict, general: bool) -> str:
    """The report's files, in words."""
    out = Path(out_dir)
    lines = [f"Report in {out}/:",
             f"  {out / 'summary.md'}: every table, each method's R matrix, allocation per task",
             f"  {out / 'summary.json'}: the same figures and the resolved settings, as JSON"]
    if plots:
        lines.append(f"  {out / 'plots'}/: {len(plots)} figures (R heat maps, OP/BWT"
                     + (", parameter growth, block map" if "block_map" in plots else "") + ")")
    lines.append(f"  {out / 'general_ability.json'}: " + ("scores before and after each method" if general
                                                         else "held-out perplexity and growth ratio"))
    lines.append(f"  {out}/<method>/seed<k>/: each run's result.json, metrics.jsonl, checkpoint"
                 " and (SETA) adapter/")
    return "\n".join(lines)
