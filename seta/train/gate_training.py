"""Training the unified gate after task t, with routing-aware regularisation and no raw replay.

docs/method.md §4. With Z_t the routing features of task t's training prompts and
Ẑ_j ~ N(μ_j, Σ_j) pseudo-features drawn from the stored statistics of every
earlier task j < t:

    L_gate = CE(g(Z_t), t) + Σ_{j<t} CE(g(Ẑ_j), j)                 (fit the new task, keep old ones)
           + α_kl · KL(g_old(Ẑ) ‖ g(Ẑ)[:, :t])                   (routing distillation)
           + α_l2 · ‖θ_g[old] − θ_g_old‖²                         (anchor on the previous gate)

The gate is the only parameter trained here; the model is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seta.core.routing_stats import routing_distillation_kl


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
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("GateTrainConfig: steps, lr and batch_size must be positive")
        if self.kl_weight < 0 or self.l2_weight < 0:
            raise ValueError("GateTrainConfig: kl_weight and l2_weight must be >= 0")


def train_gate(router, t: int, features_t: torch.Tensor, cfg: GateTrainConfig, old_gate: nn.Module | None = None,
               *, cached_factors: bool = True) -> list[float]:
    """Fit ``router.gate`` (already expanded with task t's output) as in L_gate above; returns the losses.

    router: seta.models.Router holding the FeatureStats of earlier tasks; features_t: (N_t, d) real
    features of task t; old_gate: the gate's snapshot before expansion (None when t is the first task).
    cached_factors: draw Ẑ_j with each earlier task's Cholesky factor of Σ_j computed once
    (`Router.factor`); False re-factorises every Σ_j at every step (the slow reference: the same draws,
    losses and gate, at O(t d³) per step).
    """
    gate = router.gate
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + t)
    opt = torch.optim.AdamW(gate.parameters(), lr=cfg.lr, weight_decay=0.0)
    earlier = [j for j in router.tasks if j != t and j in router.stats] if cfg.pseudo else []
    z_t = features_t.float().cpu()
    col_t = router.column(t)
    dev = next(gate.parameters()).device
    losses = []
    gate.train()
    for _ in range(cfg.steps):
        idx = torch.randint(0, z_t.shape[0], (min(cfg.batch_size, z_t.shape[0]),), generator=gen)
        zp, yp = router.pseudo_features(cfg.batch_size, gen, tasks=earlier, cached=cached_factors)  # (M, d), (M,)
        z = torch.cat([z_t[idx], zp]).to(dev)
        y = torch.cat([torch.full((idx.numel(),), col_t, dtype=torch.long), yp]).to(dev)
        loss = nn.functional.cross_entropy(gate(z), y)
        if old_gate is not None and zp.shape[0] and cfg.kl_weight > 0:
            zp = zp.to(dev)
            with torch.no_grad():
                old_logits = old_gate(zp)
            loss = loss + cfg.kl_weight * routing_distillation_kl(gate(zp), old_logits)
        if old_gate is not None and cfg.l2_weight > 0:
            loss = loss + cfg.l2_weight * gate.l2_anchor(old_gate)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    gate.eval()
    return losses
