"""From per-task score rows to the R matrix, continual metrics and seed statistics.

R is n x n, 0-based: ``R[i][j]`` = score (0-100) on task j after training
through task i; entries not evaluated are NaN. The maths (OP, BWT, FWT) is in
`seta.core.metrics`; this module assembles R from what the training loop
records, reports NaN where a metric cannot be computed (e.g. FWT when unseen
tasks were not evaluated), and aggregates over seeds: mean and sample standard
deviation (ddof = 1; NaN with a single seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from seta.core.metrics import backward_transfer, forward_transfer, learning_accuracy, overall_performance


# ------------------------------------------------------------------ R matrix
def r_matrix(rows: Sequence[Mapping[str, float] | Sequence[float]], tasks: Sequence[str]) -> np.ndarray:
    """(n, n) R from one row per trained task, in training order.

    ``rows[i]`` is either a mapping task name -> score after training task i
    (any subset of ``tasks``: usually the tasks seen so far), or a sequence of
    scores for tasks 0..k-1 (k <= n). Missing entries are NaN.
    """
    n = len(tasks)
    if n == 0:
        raise ValueError("no tasks: give the stream's task names in training order")
    if len(set(tasks)) != n:
        raise ValueError(f"task names must be unique, got {list(tasks)}")
    if len(rows) != n:
        raise ValueError(f"{len(rows)} score rows for {n} tasks: give one row per trained task (after each task)")
    col = {t: j for j, t in enumerate(tasks)}
    R = np.full((n, n), np.nan)  # (n, n)
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            for t, s in row.items():
                if t not in col:
                    raise ValueError(f"row {i} scores unknown task {t!r}; known tasks: {list(tasks)}")
                R[i, col[t]] = float(s)
        else:
            if len(row) > n:
                raise ValueError(f"row {i} has {len(row)} scores for {n} tasks")
            R[i, : len(row)] = np.asarray(row, dtype=np.float64)
    return R


def r_matrix_from_records(records: Sequence[Mapping], tasks: Sequence[str]) -> np.ndarray:
    """(n, n) R from long-format records ``{"after": task name or index, "task": name, "score": s}``."""
    col = {t: j for j, t in enumerate(tasks)}
    rows: list[dict[str, float]] = [{} for _ in tasks]
    for rec in records:
        after = rec["after"]
        i = col.get(after) if isinstance(after, str) else int(after)
        if i is None or not 0 <= i < len(tasks):
            raise ValueError(f"record {dict(rec)} names an unknown training step {after!r}")
        rows[i][rec["task"]] = rec["score"]
    return r_matrix(rows, tasks)


# ------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class ContinualMetrics:
    """OP, BWT, FWT, LA of one R (scores 0-100); NaN where not computable."""

    OP: float
    BWT: float
    FWT: float
    LA: float = math.nan


def fwt_available(R: np.ndarray, base_scores) -> bool:
    """FWT needs the base scores and every R[j-1][j] (tasks evaluated before being trained)."""
    if base_scores is None:
        return False
    R = np.asarray(R, dtype=np.float64)
    b = np.asarray(base_scores, dtype=np.float64).reshape(-1)
    n = R.shape[0]
    return n > 1 and b.shape == (n,) and not np.isnan(b[1:]).any() and not np.isnan(np.diag(R, 1)).any()


def continual_metrics(R, base_scores=None) -> ContinualMetrics:
    """OP of R (errors if the final row has a NaN); BWT and FWT, or NaN when R lacks the entries
    they read (e.g. MTL, trained jointly, has only a final row)."""
    R = np.asarray(R, dtype=np.float64)
    fwt = forward_transfer(R, base_scores) if fwt_available(R, base_scores) else math.nan
    n = R.shape[0]
    diag = all(np.isfinite(R[j, j]) for j in range(n))
    bwt = backward_transfer(R) if diag else math.nan
    la = learning_accuracy(R) if diag else math.nan
    return ContinualMetrics(OP=overall_performance(R), BWT=bwt, FWT=fwt, LA=la)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std with ddof = 1); std is NaN for fewer than two values; NaNs propagate."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


@dataclass(frozen=True)
class SeedAggregate:
    """Per-seed metrics and their mean / std over seeds."""

    R_mean: np.ndarray  # (n, n) elementwise mean over seeds (NaN where any seed is NaN)
    R_std: np.ndarray  # (n, n) sample std (NaN with one seed)
    final_mean: np.ndarray  # (n,) R_mean[n-1]: final score per task
    final_std: np.ndarray  # (n,)
    OP: float
    OP_std: float
    BWT: float
    BWT_std: float
    FWT: float
    FWT_std: float
    LA: float
    LA_std: float
    per_seed: tuple[ContinualMetrics, ...]


def aggregate_seeds(Rs: Sequence, base_scores=None) -> SeedAggregate:
    """Aggregate one R per seed. ``base_scores``: None, one (n,) vector shared by all
    seeds, or one (n,) vector per seed, shape (S, n)."""
    if len(Rs) == 0:
        raise ValueError("no R matrices: give one R per seed")
    stack = np.stack([np.asarray(R, dtype=np.float64) for R in Rs])  # (S, n, n)
    S, n = stack.shape[0], stack.shape[1]
    if stack.shape != (S, n, n):
        raise ValueError(f"each R must be square n x n, got {stack.shape[1:]}")
    if base_scores is None:
        bases = [None] * S
    else:
        b = np.asarray(base_scores, dtype=np.float64)
        if b.ndim == 1:
            bases = [b] * S
        elif b.shape[0] == S:
            bases = list(b)
        else:
            raise ValueError(f"base_scores must be (n,) or one (n,) row per seed ({S}), got shape {b.shape}")
    per_seed = tuple(continual_metrics(R, b) for R, b in zip(stack, bases))
    op, op_s = mean_std([m.OP for m in per_seed])
    bwt, bwt_s = mean_std([m.BWT for m in per_seed])
    fwt, fwt_s = mean_std([m.FWT for m in per_seed])
    la, la_s = mean_std([m.LA for m in per_seed])
    R_mean = stack.mean(axis=0)
    R_std = stack.std(axis=0, ddof=1) if S > 1 else np.full((n, n), np.nan)
    return SeedAggregate(
        R_mean=R_mean, R_std=R_std, final_mean=R_mean[-1].copy(), final_std=R_std[-1].copy(),
        OP=op, OP_std=op_s, BWT=bwt, BWT_std=bwt_s, FWT=fwt, FWT_std=fwt_s, LA=la, LA_std=la_s, per_seed=per_seed,
    )


# ------------------------------------------------------------------- routing
def confusion_matrix(true_tasks: Sequence[int], pred_tasks: Sequence[int], n_tasks: int) -> np.ndarray:
    """(n_tasks, n_tasks) counts: rows = true task id, columns = routed (predicted) task id."""
    if len(true_tasks) != len(pred_tasks):
        raise ValueError(f"{len(true_tasks)} true task ids but {len(pred_tasks)} predictions")
    C = np.zeros((n_tasks, n_tasks), dtype=np.int64)
    for t, p in zip(true_tasks, pred_tasks):
        if not (0 <= t < n_tasks and 0 <= p < n_tasks):
            raise ValueError(f"task id out of range [0, {n_tasks}): true {t}, predicted {p}")
        C[t, p] += 1
    return C


def routing_accuracy(true_tasks: Sequence[int], pred_tasks: Sequence[int]) -> float:
    """Percentage (0-100) of examples routed to their own task's expert."""
    if len(true_tasks) != len(pred_tasks) or len(true_tasks) == 0:
        raise ValueError("routing accuracy needs equally many (>= 1) true and predicted task ids")
    return 100.0 * sum(int(t == p) for t, p in zip(true_tasks, pred_tasks)) / len(true_tasks)
