"""The unified gating network and routing decisions (docs/method.md §4).

    h(z)      = trunk(LayerNorm(z))                    LayerNorm without affine; trunk = identity or
                                                       Linear(d, hidden) -> GELU      [choice]
    logit_j   = w_j · h(z) + c_j                        one head per task j (adaptive expansion)
    p         = softmax(logits)
    top-1     : P_{n,j} = [j = argmax_j p_{n,j}]
    soft top-k: P_{n,j} = p_{n,j} / Σ_{j' ∈ topk(n)} p_{n,j'} for j in the top k, else 0   [choice]
    null      : P_{n,:} = 0  iff  D_j(z_n) > τ_j for every task j (Mahalanobis, calibrated τ_j)
    oracle    : P_{n,j} = [j = task_n]

A block's routing coefficient is then Σ_j P_{n,j} [B ∈ S_j] (see `SetaModel.set_routing`); a zero row
means the base model alone. Each head is its own tiny Linear(h, 1), so adding a head leaves the old
logits bit-identical (the same floating-point operations run for them).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seta.core.routing_stats import (FeatureStats, covariance_factor, in_task_threshold, is_out_of_distribution,
                                     mahalanobis, precision_from_factor, sample_pseudo_features)

__all__ = ["ExpandableGate", "FeatureCache", "Router", "ROUTING_MODES"]

ROUTING_MODES = ("top1", "soft")


class ExpandableGate(nn.Module):
    """z (N, d) -> logits (N, t); `add_expert()` appends one output, old outputs unchanged."""

    def __init__(self, feature_dim: int, hidden: int = 0):
        super().__init__()
        if feature_dim < 1 or hidden < 0:
            raise ValueError(f"feature_dim must be >= 1 and hidden >= 0, got {feature_dim}, {hidden}")
        self.feature_dim, self.hidden = int(feature_dim), int(hidden)
        self.trunk = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU()) if hidden else nn.Identity()
        self.heads = nn.ModuleList()

    def add_expert(self) -> int:
        """Append a zero-initialised head (new logit 0 for every z); returns its index."""
        width = self.hidden or self.feature_dim
        ref = next(self.parameters(), None)
        head = nn.Linear(width, 1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        if ref is not None:
            head.to(ref.device)
        self.heads.append(head)
        return len(self.heads) - 1

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.feature_dim:
            raise ValueError(f"z must be (N, {self.feature_dim}), got {tuple(z.shape)}")
        ref = next(self.parameters(), None)
        z = z.to(torch.float32 if ref is None else ref.dtype)
        h = self.trunk(F.layer_norm(z, (self.feature_dim,)))  # (N, h)
        if not len(self.heads):
            return h.new_zeros(h.shape[0], 0)
        return torch.cat([head(h) for head in self.heads], dim=1)  # (N, t)

    def snapshot(self) -> "ExpandableGate":
        """A frozen copy (the previous gate, for routing distillation and the L2 anchor)."""
        old = copy.deepcopy(self)
        for p in old.parameters():
            p.requires_grad_(False)
        return old

    def l2_anchor(self, old: "ExpandableGate") -> Tensor:
        """Σ ||θ - θ_old||² over the parameters `old` has (heads added since are free)."""
        old_params = dict(old.named_parameters())
        terms = [(p - old_params[n].detach()).square().sum() for n, p in self.named_parameters() if n in old_params]
        return torch.stack(terms).sum() if terms else torch.zeros(())


class FeatureCache:
    """Routing features z per prompt, so that a prompt pays the routing-feature pass once.

    z depends on the prompt alone (the base is frozen and no expert acts), so evaluating the same test
    prompts after every task (the R matrix) can reuse it. Keyed by the prompt's attended token ids: a z
    computed in another batch (other padding or batch size) equals a fresh one up to float rounding.
    Keeps at most `max_items` rows, on the CPU (oldest dropped first).
    """

    def __init__(self, max_items: int = 100_000):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = int(max_items)
        self._z: dict[bytes, Tensor] = {}

    def __len__(self) -> int:
        return len(self._z)

    def features(self, input_ids: Tensor, attention_mask: Tensor | None, compute) -> Tensor:
        """z (B, d) float32 for the batch; `compute(ids, mask)` runs on the prompts not seen before only."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        ids_cpu, keep = input_ids.cpu(), mask.cpu().bool()
        keys = [ids_cpu[i][keep[i]].numpy().tobytes() for i in range(ids_cpu.shape[0])]
        found = {k: self._z[k] for k in keys if k in self._z}
        new = [i for i, k in enumerate(keys) if k not in found]
        if new:
            rows = torch.tensor(new, device=input_ids.device)
            z_new = compute(input_ids.index_select(0, rows), mask.index_select(0, rows)).float().cpu()
            for i, z in zip(new, z_new):
                found[keys[i]] = self._z[keys[i]] = z
            while len(self._z) > self.max_items:
                self._z.pop(next(iter(self._z)))
        return torch.stack([found[k] for k in keys]).to(input_ids.device)


class Router(nn.Module):
    """Gate + per-task routing-feature statistics + null-expert thresholds.

    Gate output i belongs to task `tasks[i]`. Statistics are FeatureStats (float64, CPU).
    """

    def __init__(self, feature_dim: int, hidden: int = 0, shrinkage: float = 0.1, diagonal: bool = False):
        super().__init__()
        self.gate = ExpandableGate(feature_dim, hidden)
        self.shrinkage, self.diagonal = float(shrinkage), bool(diagonal)
        self.tasks: list[int] = []
        self.stats: dict[int, FeatureStats] = {}
        self.thresholds: dict[int, float] = {}
        self._factors: dict[int, Tensor] = {}  # Cholesky factor of Σ_α per task: cache, not saved
        self._precisions: dict[int, Tensor] = {}  # cache, not saved

    def add_task(self, task: int) -> int:
        """Expand the gate by one output for `task`; returns its column."""
        task = int(task)
        if task in self.tasks:
            raise ValueError(f"task {task} already has a gate output (tasks: {self.tasks})")
        self.tasks.append(task)
        return self.gate.add_expert()

    def column(self, task: int) -> int:
        if task not in self.tasks:
            raise ValueError(f"unknown task {task}; the gate knows {self.tasks} (call add_task first)")
        return self.tasks.index(task)

    # ---- statistics and the null expert -----------------------------------------------------------
    def observe(self, task: int, z: Tensor) -> None:
        """Merge routing features z (N, d) of `task` into its statistics."""
        self.column(task)
        if task not in self.stats:
            self.stats[task] = FeatureStats(self.gate.feature_dim, diagonal=self.diagonal)
        self.stats[task].update(z)
        self._factors.pop(task, None)
        self._precisions.pop(task, None)

    def factor(self, task: int) -> Tensor:
        """L with L Lᵀ = Σ_α + ε I of task's statistics, factored once (until `observe` changes them):
        the gate's pseudo-feature draws and the Mahalanobis precision both use it."""
        if task not in self._factors:
            self._factors[task] = covariance_factor(self.stats[task], self.shrinkage)
        return self._factors[task]

    def _precision(self, task: int) -> Tensor:
        if task not in self._precisions:
            self._precisions[task] = precision_from_factor(self.factor(task))
        return self._precisions[task]

    def distances(self, z: Tensor, tasks=None) -> Tensor:
        """D_j(z) = Mahalanobis distance to task j's statistics, (N, len(tasks)) float64 (default: all
        tasks, in gate order)."""
        tasks = self.tasks if tasks is None else list(tasks)
        missing = [t for t in tasks if t not in self.stats]
        if missing:
            raise ValueError(f"tasks {missing} have no feature statistics; call observe(task, z) first")
        z = z.detach().to("cpu", torch.float64)
        return torch.stack([mahalanobis(z, self.stats[t].mean, self._precision(t)) for t in tasks], dim=1)

    def calibrate_null(self, task: int, z: Tensor, quantile: float = 0.99) -> float:
        """τ_task = quantile of D_task over held-out in-task features z (N, d)."""
        self.column(task)
        self.thresholds[task] = in_task_threshold(self.distances(z, [task])[:, 0], quantile)
        return self.thresholds[task]

    def is_null(self, z: Tensor) -> Tensor:
        """(N,) bool: far from every task (null expert → base model)."""
        missing = [t for t in self.tasks if t not in self.thresholds]
        if missing:
            raise ValueError(f"tasks {missing} have no null threshold; call calibrate_null(task, z) first")
        tau = torch.tensor([self.thresholds[t] for t in self.tasks], dtype=torch.float64)
        return is_out_of_distribution(self.distances(z), tau)

    def pseudo_features(self, n_per_task: int, generator: torch.Generator | None = None, tasks=None,
                        cached: bool = True):
        """Pseudo-features of earlier tasks from their statistics: (z (M, d) float32, columns (M,) long).

        cached=True draws with each task's factor from `factor` (one Cholesky per task, not one per
        call); cached=False re-factorises every call (the reference: the same draws)."""
        tasks = self.tasks if tasks is None else list(tasks)
        zs, cols = [], []
        for t in tasks:
            factor = self.factor(t) if cached else None
            zs.append(sample_pseudo_features(self.stats[t], n_per_task, generator, shrinkage=self.shrinkage,
                                             factor=factor))
            cols.append(torch.full((n_per_task,), self.column(t), dtype=torch.long))
        if not zs:
            return torch.zeros(0, self.gate.feature_dim), torch.zeros(0, dtype=torch.long)
        return torch.cat(zs), torch.cat(cols)

    # ---- decisions ----------------------------------------------------------------------------------
    def probs(self, z: Tensor, mode: str = "top1", k: int = 2, null: bool = False) -> Tensor:
        """Expert probabilities P (N, t) for routing (rows of zeros = null expert)."""
        if mode not in ROUTING_MODES:
            raise ValueError(f"mode must be one of {ROUTING_MODES}, got {mode!r}")
        if not self.tasks:
            raise ValueError("the gate has no experts yet; add_task first")
        with torch.no_grad():
            p = torch.softmax(self.gate(z).float(), dim=1).cpu()  # (N, t)
        if mode == "top1":
            out = F.one_hot(p.argmax(1), p.shape[1]).float()
        else:
            if k < 1:
                raise ValueError(f"soft top-k needs k >= 1, got {k}")
            top = p.topk(min(k, p.shape[1]), dim=1)
            out = torch.zeros_like(p).scatter_(1, top.indices, top.values)
            out = out / out.sum(1, keepdim=True)
        if null:
            out[self.is_null(z)] = 0.0
        return out

    def oracle(self, task_ids) -> Tensor:
        """P (N, t) one-hot on each example's given task (route by task id)."""
        cols = torch.tensor([self.column(int(t)) for t in torch.as_tensor(task_ids).reshape(-1).tolist()])
        return F.one_hot(cols, len(self.tasks)).float()

    # ---- persistence --------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {"feature_dim": self.gate.feature_dim, "hidden": self.gate.hidden, "shrinkage": self.shrinkage,
                "diagonal": self.diagonal, "tasks": list(self.tasks),
                "thresholds": {str(t): v for t, v in self.thresholds.items()}}

    def tensors(self) -> dict[str, Tensor]:
        out = {f"gate.{n}": p.detach() for n, p in self.gate.state_dict().items()}
        for t, s in self.stats.items():
            out.update({f"stats.{t}.{key}": v for key, v in s.to_dict().items()})
        return out

    @classmethod
    def from_saved(cls, cfg: dict, tensors: dict[str, Tensor]) -> "Router":
        router = cls(cfg["feature_dim"], cfg["hidden"], cfg["shrinkage"], cfg["diagonal"])
        for t in cfg["tasks"]:
            router.add_task(int(t))
        router.gate.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("gate.")})
        for t in cfg["tasks"]:
            prefix = f"stats.{t}."
            part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if part:
                router.stats[int(t)] = FeatureStats.from_dict(part)
        router.thresholds = {int(t): float(v) for t, v in cfg["thresholds"].items()}
        return router
