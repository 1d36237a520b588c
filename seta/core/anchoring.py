"""Adaptive elastic anchoring (docs/method.md §3) and EWC as the same maths.

    L_anchor = sum_B (lambda_B / 2) sum_{e in B} F_{B,e} (theta_{B,e} - theta*_{B,e})^2
    lambda_B = lambda * (number of earlier owners of B)
    F        <- F / mean(F over all anchored elements)      (free of the Fisher's scale, not of the loss's)
    SETA:  F_B <- (n_B * F_B + F_B^(t)) / (n_B + 1)          (running mean over B's n_B earlier owners)
    EWC:   F   <- gamma * F + F^(t)                           (online EWC merge after task t)

With F a mean over owners, the stiffness lambda_B * F_B grows linearly with the owners (summing F
and also multiplying by the owner count would give n^2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "BlockAnchors",
    "elastic_anchor_penalty",
    "normalise_fisher",
    "merge_fisher",
    "mean_fisher",
    "adaptive_strength",
    "ewc_penalty",
]


def elastic_anchor_penalty(theta: Tensor, anchor: Tensor, fisher: Tensor, strength: Tensor | float) -> Tensor:
    """L = sum_B (strength_B / 2) sum_e F_{B,e} (theta_{B,e} - anchor_{B,e})^2.

    theta, anchor, fisher: (k, ...) e.g. stacked blocks (k, b, b); strength: (k,) or a scalar.
    anchor and fisher are constants (detached). Returns a 0-dim tensor in theta's dtype.
    """
    if theta.shape != anchor.shape or theta.shape != fisher.shape:
        raise ValueError(
            f"theta {tuple(theta.shape)}, anchor {tuple(anchor.shape)} and fisher {tuple(fisher.shape)} must match"
        )
    if theta.dim() == 0:
        raise ValueError("theta must have a leading block dim (k, ...); use ewc_penalty for plain tensors")
    k = theta.shape[0]
    strength = torch.as_tensor(strength, dtype=theta.dtype, device=theta.device)
    if strength.dim() == 0:
        strength = strength.expand(k)  # (k,)
    if strength.shape != (k,):
        raise ValueError(f"strength must be a scalar or ({k},), got {tuple(strength.shape)}")
    diff = theta - anchor.detach().to(theta.dtype)  # (k, ...)
    per_block = (fisher.detach().to(theta.dtype) * diff.square()).reshape(k, -1).sum(dim=1)  # (k,)
    return 0.5 * (strength * per_block).sum()


def normalise_fisher(fishers: Sequence[Tensor], valid: Sequence[Tensor] | None = None) -> list[Tensor]:
    """F_i <- F_i / mean(F), the mean taken over all anchored elements of all tensors together.

    valid: optional bool masks (same shapes) of the elements that exist, e.g. excluding the padding of
    ragged edge blocks; only those enter the mean (padding keeps its value, normally 0). If the mean is
    0 (no anchoring signal at all) the tensors are returned unchanged (copies).
    """
    fishers = list(fishers)
    if valid is not None and len(valid) != len(fishers):
        raise ValueError(f"valid has {len(valid)} masks for {len(fishers)} Fisher tensors")
    total, count = 0.0, 0
    for i, f in enumerate(fishers):
        if valid is None:
            total += f.detach().double().sum().item()
            count += f.numel()
        else:
            if valid[i].shape != f.shape:
                raise ValueError(f"valid[{i}] {tuple(valid[i].shape)} does not match fisher {tuple(f.shape)}")
            total += f.detach().double()[valid[i]].sum().item()
            count += int(valid[i].sum().item())
    if count == 0 or total == 0.0:
        return [f.clone() for f in fishers]
    mean = total / count
    return [f / mean for f in fishers]


def merge_fisher(old: Tensor | None, new: Tensor, gamma: float = 1.0) -> Tensor:
    """Online Fisher merge: F <- gamma * F_old + F_new (F_old = None means no earlier task: F <- F_new)."""
    if not 0.0 <= gamma:
        raise ValueError(f"gamma must be >= 0 (1.0 = plain sum over tasks), got {gamma}")
    if old is None:
        return new.clone()
    if old.shape != new.shape:
        raise ValueError(f"old {tuple(old.shape)} and new {tuple(new.shape)} Fisher shapes differ")
    return gamma * old + new


def mean_fisher(old: Tensor | None, new: Tensor, n_old: Tensor | int) -> Tensor:
    """Running mean over owners: F <- (n_old * F_old + F_new) / (n_old + 1).

    old, new: (k, ...) (old None or n_old == 0: F <- F_new); n_old: (k,) or an int, the number of
    tasks already averaged into each block's F_old.
    """
    n = torch.as_tensor(n_old, dtype=torch.float64)
    if (n < 0).any():
        raise ValueError("n_old must be >= 0")
    if old is None:
        if bool((n != 0).any()):
            raise ValueError("n_old > 0 needs the old Fisher")
        return new.clone()
    if old.shape != new.shape:
        raise ValueError(f"old {tuple(old.shape)} and new {tuple(new.shape)} Fisher shapes differ")
    n = n.reshape(n.shape + (1,) * (new.dim() - n.dim())).to(new.dtype) if n.dim() else n.to(new.dtype)
    return (n * old + new) / (n + 1)


def adaptive_strength(n_earlier_owners: Tensor, lam: float) -> Tensor:
    """lambda_B = lam * n_B, n_B = number of earlier tasks owning block B. (k,) long -> (k,) float32."""
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    n = torch.as_tensor(n_earlier_owners)
    if (n < 0).any():
        raise ValueError("n_earlier_owners must be >= 0")
    return lam * n.to(torch.float32)


def ewc_penalty(
    params: Sequence[Tensor], anchors: Sequence[Tensor], fishers: Sequence[Tensor], lam: float
) -> Tensor:
    """EWC: L = (lam / 2) sum_i sum_e F_{i,e} (p_{i,e} - a_{i,e})^2.

    The elastic anchoring penalty with every tensor as one block of strength lam.
    """
    if not (len(params) == len(anchors) == len(fishers)):
        raise ValueError(f"got {len(params)} params, {len(anchors)} anchors, {len(fishers)} fishers; they must pair up")
    if not params:
        return torch.zeros(())
    for i, (p, a, f) in enumerate(zip(params, anchors, fishers)):
        if not (p.shape == a.shape == f.shape):
            raise ValueError(f"params[{i}] {tuple(p.shape)}, anchor {tuple(a.shape)}, fisher {tuple(f.shape)} differ")
    terms = [
        elastic_anchor_penalty(p.reshape(1, -1), a.reshape(1, -1), f.reshape(1, -1), lam)
        for p, a, f in zip(params, anchors, fishers)
    ]
    return torch.stack(terms).sum()


class BlockAnchors:
    """θ*_B (value at the end of the last task that trained B), element-wise Fisher F_B and n_B (the
    number of tasks merged into F_B), keyed by global block id (`ids` sorted). After task t, for B ∈ S_t:
    θ*_B ← θ_B and F_B ← (n_B F_B + F_B^(t)) / (n_B + 1) (SETA's running mean over owners), or
    F_B ← γ F_B + F_B^(t) when `gamma` is given (online EWC); n_B ← n_B + 1."""

    def __init__(self, block_size: int):
        b = block_size
        self.ids = torch.zeros(0, dtype=torch.long)
        self.values = torch.zeros(0, b, b)
        self.fisher = torch.zeros(0, b, b)
        self.count = torch.zeros(0, dtype=torch.long)

    def update(self, ids: Tensor, values: Tensor, fisher: Tensor, gamma: float | None = None) -> None:
        """ids (k,) sorted unique; values, fisher (k, b, b). gamma None: running mean; else F ← γF + F_t."""
        ids = ids.cpu()
        all_ids = torch.unique(torch.cat([self.ids, ids]), sorted=True)
        keep = torch.searchsorted(all_ids, self.ids)  # old entries' rows in the new tables
        vals = torch.zeros(all_ids.numel(), *values.shape[1:])
        fish, count = torch.zeros_like(vals), torch.zeros(all_ids.numel(), dtype=torch.long)
        vals[keep], fish[keep], count[keep] = self.values, self.fisher, self.count
        rows = torch.searchsorted(all_ids, ids)
        new_f = fisher.detach().float().cpu()
        n_old = count[rows]
        fish[rows] = (mean_fisher(fish[rows], new_f, n_old) if gamma is None
                      else torch.where((n_old > 0)[:, None, None], merge_fisher(fish[rows], new_f, gamma), new_f))
        vals[rows] = values.detach().float().cpu()
        count[rows] = n_old + 1
        self.ids, self.values, self.fisher, self.count = all_ids, vals, fish, count

    def lookup(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(found (k,) bool, anchor (m, b, b), fisher (m, b, b)) for the found ids, in ids' order."""
        ids = ids.cpu()
        found = torch.isin(ids, self.ids)
        where = torch.searchsorted(self.ids, ids[found])
        return found, self.values[where], self.fisher[where]
