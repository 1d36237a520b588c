"""Training the unified gate after task t, with routing-aware regularisation and no raw replay.

Method spec §4. With Z_t the routing features of task t's training prompts and
Ẑ_j ~ N(μ_j, Σ_j) pseudo-features drawn from the stored statistics of every
earlier task j < t:

    L_gate = CE(g(Z_t), t) + Σ_{j<t} CE(g(Ẑ_j), j)                 (fit the new task, keep old ones)
           + α_kl · KL(g_old(Ẑ) ‖ g(Ẑ)[:, :t])                   (routing distillation)
           + α_l2 · ‖θ_g[old] − θ_g_old‖²                         (anchor on the previous gate)

The gate is the only parameter trained here; the model is untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from seta.core.routing import FeatureStats, routing_distillation_kl, sample_pseudo_features


@dataclass(frozen=True)
class GateTrainConfig:
    """How the gate is trained after each task."""

    steps: int = 300
    """Optimizer steps per task."""
    lr: float = 1e-2
    """AdamW learning rate."""
    batch_size: int = 64
    """Features per class per step."""
    kl_weight: float = 1.0
    """α_kl: weight of the routing-distillation KL on pseudo-features (0 disables)."""
    l2_weight: float = 1e-2
    """α_l2: weight of the L2 anchor on the previous gate's parameters (0 disables)."""
    pseudo: bool = True
    """Draw pseudo-features of earlier tasks (False: the gate sees only the current task: the ablation)."""
    shrinkage: float = 0.1
    """Covariance shrinkage towards the diagonal for pseudo-feature sampling."""
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("GateTrainConfig: steps, lr and batch_size must be positive")
        if self.kl_weight < 0 or self.l2_weight < 0 or not 0 <= self.shrinkage <= 1:
            raise ValueError("GateTrainConfig: kl_weight, l2_weight >= 0 and shrinkage in [0, 1]")


def _old_param_l2(gate: nn.Module, old: nn.Module) -> torch.Tensor:
    """‖θ − θ_old‖² over the entries the old gate had (new outputs are free)."""
    total = 0.0
    old_params = dict(old.named_parameters())
    for name, p in gate.named_parameters():
        q = old_params.get(name)
        if q is None:
            continue
        sl = tuple(slice(0, s) for s in q.shape)
        total = total + (p[sl] - q.detach()).pow(2).sum()
    return total


def train_gate(gate: nn.Module, t: int, features_t: torch.Tensor, stats: dict[int, FeatureStats], cfg: GateTrainConfig, old_gate: nn.Module | None = None) -> list[float]:
    """Fit ``gate`` (already expanded to t+1 outputs) as in L_gate above; returns the loss curve.

    features_t: (N_t, d) real features of task t; stats: task -> FeatureStats for tasks < t.
    old_gate: the gate before expansion (t outputs); None when t == 0.
    """
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + t)
    old = copy.deepcopy(old_gate).eval() if old_gate is not None else None
    if old is not None:
        for p in old.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(gate.parameters(), lr=cfg.lr, weight_decay=0.0)
    earlier = [j for j in sorted(stats) if j < t] if cfg.pseudo else []
    z_t = features_t.float()
    losses = []
    gate.train()
    for _ in range(cfg.steps):
        idx = torch.randint(0, z_t.shape[0], (min(cfg.batch_size, z_t.shape[0]),), generator=gen)
        zs, ys = [z_t[idx]], [torch.full((idx.numel(),), t, dtype=torch.long)]
        pseudo = []
        for j in earlier:
            pj = sample_pseudo_features(stats[j], cfg.batch_size, gen, shrinkage=cfg.shrinkage)  # (bs, d)
            pseudo.append(pj)
            zs.append(pj), ys.append(torch.full((cfg.batch_size,), j, dtype=torch.long))
        z, y = torch.cat(zs), torch.cat(ys)
        loss = nn.functional.cross_entropy(gate(z), y)
        if old is not None and pseudo and cfg.kl_weight > 0:
            zp = torch.cat(pseudo)
            loss = loss + cfg.kl_weight * routing_distillation_kl(gate(zp), old(zp))
        if old is not None and cfg.l2_weight > 0:
            loss = loss + cfg.l2_weight * _old_param_l2(gate, old)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    gate.eval()
    return losses
