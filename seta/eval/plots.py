"""PNG plots of a continual-learning run (matplotlib, Agg canvas, no pyplot state).

Each function draws one figure and writes it to ``path`` (parents created).
NaN entries are left blank; None is treated as NaN.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def _annotate(ax, M: np.ndarray, fmt: str, vmax: float, dark_high: bool) -> None:
    """Write each finite value in its cell, white on the colormap's dark end."""
    if M.size > 400:  # too many cells to read numbers
        return
    for (i, j), v in np.ndenumerate(M):
        if not math.isnan(v):
            dark = v > 0.6 * vmax if dark_high else v < 0.5 * vmax
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7, color="white" if dark else "black")


def _task_heatmap(M, tasks, cmap, dark_high, xlabel, ylabel, title, title_size=None) -> Figure:
    """An annotated (n x n, 0-100) task-by-task heatmap with a colour bar."""
    n = len(tasks)
    fig = Figure(figsize=(max(4.0, 1.5 + 0.6 * n), max(3.5, 1.2 + 0.6 * n)))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(M), vmin=0, vmax=100, cmap=cmap)
    _annotate(ax, M, ".0f", 100, dark_high=dark_high)
    ax.set_xticks(range(n), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), tasks, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def plot_r_heatmap(R, tasks: Sequence[str], path, title: str = "R") -> Path:
    """Heatmap of R (n x n, 0-100): rows = after training task i, columns = evaluated task j."""
    M = np.array([[_nan(v) for v in row] for row in R], dtype=np.float64)  # (n, n)
    fig = _task_heatmap(M, tasks, "viridis", False, "evaluated task", "after training task", title)
    fig.tight_layout()
    return _save(fig, path)


def plot_op_bwt(names: Sequence[str], op, op_std, bwt, bwt_std, path) -> Path:
    """Bars of OP and BWT per method with +- std error bars (None std -> no bar)."""
    x = np.arange(len(names))
    fig = Figure(figsize=(max(5.0, 2 + 1.2 * len(names)), 3.6))
    for k, (vals, errs, label) in enumerate([(op, op_std, "OP"), (bwt, bwt_std, "BWT")]):
        ax = fig.add_subplot(1, 2, k + 1)
        v = np.array([_nan(a) for a in vals])
        e = np.array([0.0 if a is None or math.isnan(a) else a for a in errs])
        ax.bar(x, np.nan_to_num(v), yerr=e, capsize=3, color=["C0" if not math.isnan(a) else "none" for a in v])
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(label)
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep(param: str, values: Sequence[float | str], op, op_std, bwt, bwt_std, path,
               references: Mapping[str, tuple[float, float]] | None = None) -> Path:
    """OP and BWT of one method as a setting varies (log x when every value is > 0; evenly spaced and
    labelled when the values are names, e.g. allocation rules), ± std bars.

    references: {name: (OP, BWT)} of other methods, drawn as dashed horizontal lines."""
    if not (len(values) == len(op) == len(bwt) == len(op_std) == len(bwt_std)):
        raise ValueError(f"need one OP/BWT per value: {len(values)} values, {len(op)} OP, {len(bwt)} BWT")
    names = [str(v) for v in values] if any(isinstance(v, str) for v in values) else None
    x = np.arange(len(values), dtype=np.float64) if names else np.asarray(values, dtype=np.float64)
    fig = Figure(figsize=(8.5, 3.6))
    for k, (vals, errs, label) in enumerate([(op, op_std, "OP"), (bwt, bwt_std, "BWT")]):
        ax = fig.add_subplot(1, 2, k + 1)
        e = np.array([0.0 if a is None or math.isnan(a) else a for a in errs])
        ax.errorbar(x, [_nan(a) for a in vals], yerr=e, fmt="o-", capsize=3, color="C0", label="this sweep")
        for i, (name, ref) in enumerate((references or {}).items()):
            ax.axhline(_nan(ref[k]), linestyle="--", linewidth=1, color=f"C{i + 1}", label=name)
        if names:
            ax.set_xticks(x, names)
        elif (x > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_title(label)
        if label == "BWT":
            ax.axhline(0, color="black", linewidth=0.6)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_param_growth(tasks: Sequence[str], seta: Sequence[int], independent: Sequence[int], path,
                      cumulative: bool = True) -> Path:
    """Allocated parameters after each task: SETA vs independent experts.

    ``seta[t]`` / ``independent[t]``: parameters after task t (``cumulative=True``) or
    added by task t (``cumulative=False``, summed here)."""
    if not (len(tasks) == len(seta) == len(independent)):
        raise ValueError(f"need one count per task: {len(tasks)} tasks, {len(seta)} SETA, {len(independent)} independent")
    s = np.asarray(seta, dtype=np.float64)
    ind = np.asarray(independent, dtype=np.float64)
    if not cumulative:
        s, ind = np.cumsum(s), np.cumsum(ind)
    x = np.arange(1, len(tasks) + 1)
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    ax.plot(x, ind, "o--", color="C1", label="independent experts")
    ax.plot(x, s, "o-", color="C0", label="SETA (shared + unique blocks)")
    ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("allocated parameters")
    if ind[-1] > 0:
        ax.set_title(f"growth ratio at the end: {s[-1] / ind[-1]:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _short_names(names: Sequence[str]) -> list[str]:
    prefix = os.path.commonprefix(list(names)) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind(".") + 1]
    return [n[len(prefix):] or n for n in names]


def _owner_grid(name: str, shape: tuple[int, int], counts) -> np.ndarray:
    c = np.asarray(counts).reshape(-1)
    if c.size != shape[0] * shape[1]:
        raise ValueError(f"{name}: {c.size} owner counts for a {shape[0]} x {shape[1]} block grid")
    return c.reshape(shape)


def plot_block_map(grids: Mapping[str, tuple[int, int]], owner_counts: Mapping[str, Sequence[int]], path,
                   max_panels: int = 64) -> Path:
    """One panel per layer matrix: free (0 owners), unique (1) and shared (>= 2) blocks.

    ``grids``: layer name -> (n_rows, n_cols) block grid; ``owner_counts``: layer name ->
    per-block owner counts, (n_rows * n_cols,) row-major or (n_rows, n_cols). Only the
    first ``max_panels`` layers are drawn (the title says how many)."""
    names = list(grids)[:max_panels]
    if not names:
        raise ValueError("no layers to draw: grids is empty")
    cols = min(len(names), 7)
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(1.8 * cols, 1.7 * rows + 0.8))
    cmap = ListedColormap(["#eeeeee", "#1f77b4", "#ff7f0e"])
    for k, (name, short) in enumerate(zip(names, _short_names(names))):
        G = _owner_grid(name, grids[name], owner_counts[name])
        cat = np.minimum(G, 2)
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(cat, cmap=cmap, vmin=0, vmax=2, interpolation="nearest", aspect="auto")
        ax.set_title(f"{short}\nu={int((G == 1).sum())} s={int((G >= 2).sum())}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    shown = f"{len(names)} of {len(grids)} layers" if len(grids) > len(names) else f"{len(names)} layers"
    fig.suptitle(f"SETA block map ({shown})", fontsize=9)
    fig.legend(handles=[Patch(color=c, label=l) for c, l in zip(cmap.colors, ["free", "unique", "shared"])],
               loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(fig, path)


def plot_block_usage(grids: Mapping[str, tuple[int, int]], owner_counts: Mapping[str, Sequence[int]], path) -> Path:
    """Stacked horizontal bars per layer matrix: unique and shared block counts."""
    names = list(grids)
    if not names:
        raise ValueError("no layers to draw: grids is empty")
    Gs = [_owner_grid(n, grids[n], owner_counts[n]) for n in names]
    uniq = np.array([(G == 1).sum() for G in Gs])
    shared = np.array([(G >= 2).sum() for G in Gs])
    y = np.arange(len(names))
    fig = Figure(figsize=(6, 1 + 0.22 * len(names)))
    ax = fig.add_subplot()
    ax.barh(y, uniq, color="#1f77b4", label="unique")
    ax.barh(y, shared, left=uniq, color="#ff7f0e", label="shared")
    ax.set_yticks(y, _short_names(names), fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("allocated blocks")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_routing_confusion(confusion, tasks: Sequence[str], path, title: str = "routing") -> Path:
    """Row-normalised routing confusion (%, rows = true task, columns = routed task)."""
    C = np.asarray(confusion, dtype=np.float64)  # (n, n)
    n = len(tasks)
    if C.shape != (n, n):
        raise ValueError(f"confusion must be {n} x {n} (tasks x tasks), got {C.shape}")
    totals = C.sum(axis=1, keepdims=True)
    P = np.divide(100 * C, totals, out=np.full_like(C, np.nan), where=totals > 0)
    acc = 100 * np.trace(C) / C.sum() if C.sum() > 0 else math.nan
    fig = _task_heatmap(P, tasks, "Blues", True, "routed to expert of task", "true task",
                        f"{title} (accuracy {acc:.1f}%)", title_size=10)
    fig.tight_layout()
    return _save(fig, path)
