"""Split-on-Share allocation: budgeted top-k with a reuse bonus, and block ownership.

docs/method.md §2. Block ids here are global ids (see ``BlockIndex``).

    k        = ceil(ρ · N)                                    (budget per task)
    ŝ_B      = T(score)_B                                      (comparable across matrices, below)
    score'_B = ŝ_B · (1 + β · [B already owned])              (reuse bonus)
    S_t      = top-k of score' (ties → lower block id)
    O(B)    ← O(B) ∪ {t}  for B ∈ S_t
    unique_t = {B ∈ S_t : O(B) = {t}},  shared = {B : |O(B)| ≥ 2}
    growth   = |∪_j S_j| / Σ_j |S_j|                          (1.0 = independent experts)

Comparable scores (docs/method.md §2, revised). Raw squared gradients differ 10-100x between matrices,
so one model-wide top-k on them puts the whole budget into one or two matrices. The rule T:
    raw           ŝ_B = s_B                                     (the old rule, kept as an ablation)
    matrix-mean   ŝ_B = s_B / mean_{B' ∈ M(B)} s_B'             (M(B): the blocks of B's weight matrix)
    matrix-budget each matrix m gets k_m ∝ |m| blocks (largest remainder, Σ_m k_m = k), top-k_m inside m
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def budget(total_blocks: int, ratio: float) -> int:
    """k = clamp(ceil(ρ · N), 1, N)."""
    if total_blocks < 1:
        raise ValueError(f"total_blocks must be >= 1, got {total_blocks}")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"block ratio ρ must lie in (0, 1], got {ratio}")
    return max(1, min(total_blocks, math.ceil(ratio * total_blocks - 1e-9)))


def select_blocks(scores: Tensor, k: int, owned: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """S = top-k of score · (1 + β · owned); ties broken by lower id. Sorted ascending.

    scores: (N,) non-negative sensitivities; owned: (N,) bool or None.
    Deterministic: the order is a stable sort on (-score', id).
    """
    scores = torch.as_tensor(scores)
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (N,), got shape {tuple(scores.shape)}")
    if beta < 0:
        raise ValueError(f"reuse bonus β must be >= 0, got {beta}")
    if not torch.isfinite(scores).all():
        raise ValueError("sensitivity scores contain NaN or inf; check the probe's loss")
    s = scores.double()
    if owned is not None:
        owned = torch.as_tensor(owned, dtype=torch.bool)
        if owned.shape != s.shape:
            raise ValueError(f"owned must match scores' shape {tuple(s.shape)}, got {tuple(owned.shape)}")
        s = s * (1.0 + beta * owned.double())
    k = min(int(k), s.numel())
    order = torch.sort(-s, stable=True).indices  # stable: equal scores keep id order
    return order[:k].sort().values


ALLOCATION_RULES = ("raw", "matrix-mean", "matrix-budget")


def _check_sizes(sizes, n: int) -> list[int]:
    sizes = [int(v) for v in sizes]
    if any(v < 1 for v in sizes) or sum(sizes) != n:
        raise ValueError(f"matrix sizes must be positive and sum to the {n} scores, got {sizes}")
    return sizes


def matrix_mean_normalise(scores: Tensor, sizes) -> Tensor:
    """ŝ_B = s_B / mean_{B' ∈ M(B)} s_B' for each weight matrix M (a matrix whose scores are all 0 stays 0).

    scores: (N,) with the blocks of each matrix contiguous (global ids, `BlockIndex` order);
    sizes: blocks per matrix, in that order. Invariant to a positive rescaling of any one matrix.
    """
    s = torch.as_tensor(scores).double()
    out = []
    for part in torch.split(s, _check_sizes(sizes, s.numel())):
        mean = part.mean()
        out.append(part / mean if float(mean) > 0 else part.clone())
    return torch.cat(out)


def matrix_budgets(k: int, sizes) -> list[int]:
    """k_m = ⌊k·|m|/N⌋ plus one for the largest remainders (ties → earlier matrix); Σ_m k_m = min(k, N)."""
    sizes = _check_sizes(sizes, sum(int(v) for v in sizes))
    n = sum(sizes)
    k = min(int(k), n)
    quota = [k * v / n for v in sizes]
    ks = [min(v, math.floor(q + 1e-9)) for v, q in zip(sizes, quota)]
    order = sorted(range(len(sizes)), key=lambda m: (-(quota[m] - ks[m]), m))
    i = 0
    while sum(ks) < k:  # hand out the rest by largest remainder, skipping full matrices
        m = order[i % len(order)]
        if ks[m] < sizes[m]:
            ks[m] += 1
        i += 1
    return ks


def allocate_blocks(scores: Tensor, k: int, sizes, rule: str = "matrix-budget", owned: Tensor | None = None,
                    beta: float = 0.0) -> Tensor:
    """S_t under allocation rule T (see the module docstring): raw / matrix-mean → one model-wide
    top-k of T(s)·(1 + β·owned); matrix-budget → top-k_m of s·(1 + β·owned) inside each matrix m.
    scores (N,), sizes: blocks per matrix (contiguous in id order). Returns sorted global ids."""
    if rule not in ALLOCATION_RULES:
        raise ValueError(f"allocation rule must be one of {ALLOCATION_RULES}, got {rule!r}")
    scores = torch.as_tensor(scores)
    sizes = _check_sizes(sizes, scores.numel())
    if rule == "raw":
        return select_blocks(scores, k, owned, beta)
    if rule == "matrix-mean":
        if not torch.isfinite(scores).all():
            raise ValueError("sensitivity scores contain NaN or inf; check the probe's loss")
        return select_blocks(matrix_mean_normalise(scores, sizes), k, owned, beta)
    owned_parts = torch.split(torch.as_tensor(owned, dtype=torch.bool), sizes) if owned is not None else [None] * len(sizes)
    picked, start = [], 0
    for part, own, k_m in zip(torch.split(scores, sizes), owned_parts, matrix_budgets(k, sizes)):
        if k_m:
            picked.append(select_blocks(part, k_m, own, beta) + start)
        start += part.numel()
    return torch.cat(picked).sort().values if picked else torch.zeros(0, dtype=torch.long)


@dataclass(frozen=True)
class Allocation:
    """What adding task t did to the ownership map."""

    task: int
    selected: Tensor  # S_t, sorted
    new: Tensor  # blocks nobody owned before: new zero-initialised parameters
    split: Tensor  # blocks unique to one earlier task, now moved into the shared pool
    reused: Tensor  # blocks already owned before (split ⊆ reused)


class OwnershipRegistry:
    """The ownership map O: block -> set of tasks that selected it."""

    def __init__(self, n_blocks: int):
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        self.n_blocks = int(n_blocks)
        self._experts: dict[int, Tensor] = {}  # task -> S_task (sorted), insertion-ordered

    @property
    def tasks(self) -> list[int]:
        return list(self._experts)

    def owner_counts(self) -> Tensor:
        """|O(B)| for every block, (N,) long."""
        counts = torch.zeros(self.n_blocks, dtype=torch.long)
        for s in self._experts.values():
            counts[s] += 1
        return counts

    def owned(self) -> Tensor:
        """(N,) bool: |O(B)| ≥ 1."""
        return self.owner_counts() > 0

    def add_task(self, task: int, selected) -> Allocation:
        """O(B) ← O(B) ∪ {t} for B ∈ S_t; S_t is frozen from now on."""
        task = int(task)
        if task in self._experts:
            raise ValueError(f"task {task} already has an expert; S_j never changes after task j")
        sel = torch.as_tensor(selected, dtype=torch.long).reshape(-1)
        if sel.unique().numel() != sel.numel():
            raise ValueError("selected blocks contain duplicates")
        if sel.numel() and (int(sel.min()) < 0 or int(sel.max()) >= self.n_blocks):
            raise ValueError(f"selected block ids must lie in [0, {self.n_blocks})")
        sel = sel.sort().values
        before = self.owner_counts()[sel]
        self._experts[task] = sel.clone()
        return Allocation(task, sel.clone(), sel[before == 0], sel[before == 1], sel[before >= 1])

    def expert(self, task: int) -> Tensor:
        """S_task: the blocks task selected (unique + shared), sorted."""
        if task not in self._experts:
            raise ValueError(f"unknown task {task}; known tasks: {self.tasks}")
        return self._experts[task].clone()

    def unique(self, task: int) -> Tensor:
        """unique_task = {B ∈ S_task : O(B) = {task}}."""
        s = self.expert(task)
        return s[self.owner_counts()[s] == 1]

    def shared(self) -> Tensor:
        """{B : |O(B)| ≥ 2}."""
        return torch.nonzero(self.owner_counts() >= 2).reshape(-1)

    def allocated(self) -> Tensor:
        """∪_j S_j."""
        return torch.nonzero(self.owned()).reshape(-1)

    def earlier_owners(self, task: int) -> Tensor:
        """For B ∈ S_task: |O(B) ∩ {tasks before task}|, aligned with expert(task)."""
        s = self.expert(task)
        counts = torch.zeros(s.numel(), dtype=torch.long)
        for t, other in self._experts.items():
            if t == task:
                break
            counts += torch.isin(s, other).long()
        return counts

    def growth_ratio(self) -> float:
        """|∪_j S_j| / Σ_j |S_j| (1.0 when nothing is shared; nan with no task)."""
        total = sum(s.numel() for s in self._experts.values())
        return float("nan") if total == 0 else self.allocated().numel() / total

    def to_dict(self) -> dict:
        """Plain JSON-able data."""
        return {"n_blocks": self.n_blocks, "experts": [[t, s.tolist()] for t, s in self._experts.items()]}

    @classmethod
    def from_dict(cls, data: dict) -> "OwnershipRegistry":
        reg = cls(int(data["n_blocks"]))
        for task, ids in data["experts"]:
            reg.add_task(int(task), torch.tensor(ids, dtype=torch.long))
        return reg
