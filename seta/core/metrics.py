"""Continual-learning metrics from the score matrix R (docs/method.md §6).

Spec convention (1-based): R[i][j] = score (0-100) on task j after training through task i,
i, j = 1..n, b_j = the base model's score on task j, and

    OP  = (1/n) sum_{j=1..n} R[n][j]
    BWT = 1/(n-1) sum_{j=1..n-1} (R[n][j] - R[j][j])
    FWT = 1/(n-1) sum_{j=2..n} (R[j-1][j] - b_j)
    LA  = (1/n) sum_{j=1..n} R[j][j]            (learning accuracy: plasticity, the just-learned score)
    G   = (1/n) sum_{j=1..n} (R[j][j] - b_j)     (plasticity gain: what training on each task taught it)

Code convention (0-based): R[i][j] with i, j = 0..n-1, so docs/method.md's R[n][j] is R[n-1][j-1] here.
R may be a list of lists or a numpy array; entries never read (e.g. tasks not yet seen) may be NaN.
Functions are pure: they copy their input and never mutate it. A NaN in an entry that is read raises
ValueError, so a missing evaluation cannot silently turn into a number.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["overall_performance", "backward_transfer", "forward_transfer", "learning_accuracy", "plasticity_gain",
           "per_task_rows", "summary"]


def _matrix(R) -> np.ndarray:
    m = np.array(R, dtype=np.float64, copy=True)  # own copy: never touches the caller's data
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square n x n matrix, got shape {m.shape}")
    return m


def _read(m: np.ndarray, i: int, j: int) -> float:
    v = float(m[i, j])
    if math.isnan(v):
        raise ValueError(f"R[{i}][{j}] (0-based) is NaN but is needed; evaluate task {j} after task {i}")
    return v


def _base(base_scores, n: int) -> np.ndarray:
    b = np.array(base_scores, dtype=np.float64, copy=True).reshape(-1)
    if b.shape != (n,):
        raise ValueError(f"base_scores must have one score per task ({n}), got {b.shape[0]}")
    return b


def overall_performance(R) -> float:
    """OP = (1/n) sum_j R[n-1][j] (0-based; spec: mean_j R[n][j]), the mean final score."""
    m = _matrix(R)
    n = m.shape[0]
    return sum(_read(m, n - 1, j) for j in range(n)) / n


def backward_transfer(R) -> float:
    """BWT = 1/(n-1) sum_{j=0..n-2} (R[n-1][j] - R[j][j]) (0-based; spec: j < n, 1-based).
    Negative = forgetting. 0.0 when n == 1."""
    m = _matrix(R)
    n = m.shape[0]
    if n == 1:
        return 0.0
    return sum(_read(m, n - 1, j) - _read(m, j, j) for j in range(n - 1)) / (n - 1)


def learning_accuracy(R) -> float:
    """LA = (1/n) sum_j R[j][j] (0-based and spec alike: the mean score of each task just after
    training it). A method that learns nothing forgets nothing (BWT ≈ 0) but has a low LA."""
    m = _matrix(R)
    n = m.shape[0]
    return sum(_read(m, j, j) for j in range(n)) / n


def plasticity_gain(R, base_scores) -> float:
    """G = (1/n) sum_j (R[j][j] - b_j) (0-based and spec alike): the mean of each task's just-trained
    score minus the base model's score on it, i.e. LA - mean(b). base_scores: (n,)."""
    b = _base(base_scores, _matrix(R).shape[0])
    missing = np.flatnonzero(np.isnan(b))
    if missing.size:
        raise ValueError(f"base_scores[{int(missing[0])}] is NaN but is needed for the plasticity gain")
    return learning_accuracy(R) - float(b.mean())


def forward_transfer(R, base_scores) -> float:
    """FWT = 1/(n-1) sum_{j=1..n-1} (R[j-1][j] - b_j) (0-based; spec: j >= 2, 1-based).
    base_scores: (n,) scores of the base model. NaN when n == 1 (no task has a predecessor)."""
    m = _matrix(R)
    n = m.shape[0]
    b = _base(base_scores, n)
    if n == 1:
        return float("nan")
    terms = []
    for j in range(1, n):
        if math.isnan(b[j]):
            raise ValueError(f"base_scores[{j}] is NaN but is needed for FWT")
        terms.append(_read(m, j - 1, j) - b[j])
    return sum(terms) / (n - 1)


def per_task_rows(R, base_scores=None) -> list[dict]:
    """One row per task j (0-based): final = R[n-1][j], just_trained = R[j][j],
    bwt = final - just_trained (nan for the last task), fwt = R[j-1][j] - b_j (nan for j = 0 or
    without base_scores), base = b_j (nan without base_scores). Unread NaNs pass through."""
    m = _matrix(R)
    n = m.shape[0]
    b = _base(base_scores, n) if base_scores is not None else np.full(n, np.nan)
    rows = []
    for j in range(n):
        final, diag = float(m[n - 1, j]), float(m[j, j])
        rows.append(
            {
                "task": j,
                "final": final,
                "just_trained": diag,
                "bwt": final - diag if j < n - 1 else float("nan"),
                "fwt": float(m[j - 1, j] - b[j]) if j > 0 else float("nan"),
                "base": float(b[j]),
            }
        )
    return rows


def summary(R, base_scores=None) -> dict:
    """{"op", "bwt", "la", "fwt"}; fwt is nan without base_scores."""
    return {
        "op": overall_performance(R),
        "bwt": backward_transfer(R),
        "la": learning_accuracy(R),
        "fwt": forward_transfer(R, base_scores) if base_scores is not None else float("nan"),
    }
