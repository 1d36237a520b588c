"""Sparse-block strategies sharing SETA's adapter and block budget.

All of them attach the same sparse block experts (seta.models) and, before each
task, pick k = ceil(ρ·N) blocks by the sensitivity probe (base only, no expert
active). They differ only in what protects earlier tasks:

- seqft-sparse: nothing. One model; at inference every allocated block acts.
- independent:  a fresh zero-initialised copy of the blocks per task, routed by
                the true task id (isolation upper bound, linear growth).
- mtl:          joint training of one sparse expert with n·k blocks on all tasks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import islice

import torch

from seta.core.allocation import ALLOCATION_RULES
from seta.models import DEFAULT_TARGETS, ExpertConfig, allocate_by_sensitivity, attach_experts, tensors_only
from seta.train.strategies.base import Strategy


@dataclass(frozen=True)
class SparseConfig:
    """The sparse block experts and their budget, shared by every sparse-block method (SETA's own settings are
    `seta.api.SetaOwnConfig`, the two together `seta.api.SetaConfig`; EWC's and LwF's are beside them)."""

    block_size: int = ExpertConfig.block_size
    """b: block side. One default, 256: the paper's setting for the 7B/4B models the method is meant for (a
    4096-wide projection is a 16 x 16 grid of blocks); small models need a smaller side (the tiny preset: 16,
    SmolLM2-135M: 64, which divides all its widths)."""
    ratio: float = 0.01
    """ρ: fraction of all target blocks a task selects (budget k = ceil(ρ N))."""
    target_modules: tuple[str, ...] = tuple(DEFAULT_TARGETS)
    """Names (or regexes) of the linear layers that get experts."""
    probe_batches: int = 8
    """m: micro-batches of the sensitivity probe."""
    allocation: str = "matrix-budget"
    """How scores of different weight matrices are made comparable before the top-k (every sparse-block
    method): raw (one top-k on raw scores, the ablation), matrix-mean (each matrix's scores divided by
    their mean) or matrix-budget (each matrix gets a share of k proportional to its block count; the default,
    chosen on validation streams: docs/validation.md)."""
    fisher_batches: int = 8
    """m': micro-batches of the element-wise Fisher estimate after a task (SETA and EWC)."""

    def __post_init__(self):
        if self.block_size < 1 or not 0 < self.ratio <= 1:
            raise ValueError("SparseConfig: block_size >= 1 and ratio in (0, 1] are required")
        if self.allocation not in ALLOCATION_RULES:
            raise ValueError(f"SparseConfig.allocation must be one of {', '.join(ALLOCATION_RULES)}, got {self.allocation!r}")
        if self.probe_batches < 1 or self.fisher_batches < 1:
            raise ValueError("SparseConfig: probe_batches and fisher_batches must be >= 1")


class SparseBlocks(Strategy):
    """Base of the sparse strategies; as is, it is seqft-sparse."""

    name = "seqft-sparse"
    beta = 0.0  # seqft-sparse picks its top-k with no reuse bonus

    config_section = None  # the run settings' section of the method's own config ("seta", "ewc", "lwf")

    def __init__(self, model, tokenizer, sparse: SparseConfig | None = None, config=None):
        """sparse: the blocks and their budget; config: the method's own settings (None for the baselines
        that have none)."""
        sparse = sparse or SparseConfig()
        super().__init__(model, tokenizer, config)
        self.sparse = sparse
        self.model = self.attach(model, sparse)  # the SetaModel: the base with experts attached
        self.block_numel = sparse.block_size**2
        self.task_stats: dict[int, dict] = {}  # task -> allocation figures (and SETA's anchoring)

    def attach(self, model, sparse: SparseConfig):
        """Attach the sparse block experts to `model` (in place); returns the `SetaModel`."""
        return attach_experts(model, ExpertConfig(block_size=sparse.block_size, target_modules=sparse.target_modules))

    def config_dict(self) -> dict:
        own = {self.config_section: asdict(self.config)} if self.config is not None else {}
        return {"sparse": asdict(self.sparse), **own}

    def budget_ratio(self, n_tasks: int) -> float:
        return self.sparse.ratio

    def before_task(self, t, task, probe_batches) -> None:
        batches = (tensors_only(b) for b in islice(probe_batches(), self.sparse.probe_batches))
        self.allocation = allocate_by_sensitivity(self.model, t, batches, self.budget_ratio(self.n_tasks), self.beta,
                                                  self.sparse.allocation)
        self.current_task = t
        self.task_stats[t] = self._allocation_stats(self.allocation)
        self.model.set_task(t)

    def _allocation_stats(self, allocation) -> dict:
        """What the allocation of one task did: new / reused / split blocks and blocks per matrix."""
        per = self.model.index.split(allocation.selected)
        return {"blocks": int(allocation.selected.numel()), "new": int(allocation.new.numel()),
                "reused": int(allocation.reused.numel()), "split": int(allocation.split.numel()),
                "per_matrix": {n: int(v.numel()) for n, v in per.items()}}

    def trainable_parameters(self):
        """The current task's blocks, through per-layer working copies (`SetaModel.begin_training`):
        gradients and AdamW state cover S_t only, not every block earlier tasks allocated."""
        return self.model.begin_training(self.model.registry.expert(self.current_task))

    def after_task(self, t, task, probe_batches) -> None:
        self.model.end_training()  # the trained working copy back into the block stacks

    def route(self, inputs, task_id) -> None:
        self.model.set_expert(self.model.allocated_ids())  # one model: every block trained so far acts

    def clear_route(self) -> None:
        self.model.clear_route()

    def param_counts(self) -> dict:
        tasks = self.model.registry.tasks
        per_task = max((self.model.registry.expert(t).numel() for t in tasks), default=0)
        return {"trainable_params": per_task * self.block_numel,
                "allocated_params": int(self.model.registry.allocated().numel()) * self.block_numel,
                "extra": {"growth": [int(self.model.registry.expert(t).numel()) for t in tasks],
                          "allocated_curve": self._allocated_curve()}}

    def _allocated_curve(self) -> list[int]:
        """|∪_{j≤t} S_j| after each task t."""
        seen: set[int] = set()
        curve = []
        for t in self.model.registry.tasks:
            seen |= set(self.model.registry.expert(t).tolist())
            curve.append(len(seen))
        return curve

    def state_dict(self) -> dict:
        """Plain data and tensors; the block stacks in their stack order (bit-exact resume)."""
        a = self.model.anchors
        return {"registry": self.model.registry.to_dict(), "stacks": self.model.stacks(),
                "anchors": (a.ids.clone(), a.values.clone(), a.fisher.clone(), a.count.clone()),
                "task_stats": {int(k): v for k, v in self.task_stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        from seta.core.allocation import OwnershipRegistry

        reg = OwnershipRegistry.from_dict(state["registry"])
        for t in reg.tasks:
            self.model.registry.add_task(t, reg.expert(t))
            self.model.router.add_task(t)
        self.model.load_stacks(state["stacks"])
        a = self.model.anchors
        a.ids, a.values, a.fisher, a.count = (v.clone() for v in state["anchors"])
        self.task_stats = {int(k): v for k, v in state.get("task_stats", {}).items()}

    def save_adapter(self, out_dir) -> None:
        self.model.save_pretrained(out_dir)


class Independent(SparseBlocks):
    """A fresh sparse expert per task, routed by the true task id."""

    name = "independent"
    uses_task_id_at_inference = True

    def __init__(self, model, tokenizer, sparse=None, config=None):
        super().__init__(model, tokenizer, sparse, config)
        self.experts: dict[int, torch.Tensor] = {}  # task -> trained values of its own blocks (k, b, b)

    def before_task(self, t, task, probe_batches) -> None:
        super().before_task(t, task, probe_batches)
        ids = self.model.registry.expert(t)
        self.model.set_blocks(ids, torch.zeros(ids.numel(), self.sparse.block_size, self.sparse.block_size))

    def after_task(self, t, task, probe_batches) -> None:
        super().after_task(t, task, probe_batches)
        self.experts[t] = self.model.get_blocks(self.model.registry.expert(t)).detach().clone()

    def route(self, inputs, task_id) -> None:
        if task_id not in self.experts:  # a task not trained yet has no expert: the base model
            self.model.clear_route()
            return
        ids = self.model.registry.expert(task_id)
        self.model.set_blocks(ids, self.experts[task_id])
        self.model.set_expert(ids)

    def param_counts(self) -> dict:
        counts = super().param_counts()
        counts["allocated_params"] = sum(v.shape[0] for v in self.experts.values()) * self.block_numel
        return counts

    def state_dict(self) -> dict:
        return {**super().state_dict(), "experts": {k: v.clone() for k, v in self.experts.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.experts = {int(k): v.clone() for k, v in state["experts"].items()}


class MTL(SparseBlocks):
    """Joint multi-task training of one sparse expert with n·k blocks (upper bound)."""

    name = "mtl"
    joint = True

    def budget_ratio(self, n_tasks: int) -> float:
        return min(1.0, self.sparse.ratio * n_tasks)

    def train_examples(self, t, tasks):
        return [ex for task in tasks[: t + 1] for ex in task.train]
