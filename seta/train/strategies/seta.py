"""SETA: Split-on-Share sparse experts + adaptive elastic anchoring + a task-agnostic gate.

Per task t (docs/method.md §1-§4):
  before: sensitivity probe (base only) → scores made comparable across matrices (allocation rule)
          → S_t = top-k(score·(1+β·owned)) → new blocks, gate output;
          anchors of S_t's shared blocks, λ_B = λ · (earlier owners of B), F normalised by its mean.
  train:  y = base(x) + Δ_{S_t} x;  L = LM + Σ_B (λ_B/2) Σ_e F_Be (θ_Be − θ*_Be)².
  after:  element-wise Fisher of S_t, F ← running mean over owners, θ* ← θ;  routing statistics;
          the gate trained with pseudo-features of earlier tasks (+ KL to the old gate, L2 anchor).
  infer:  z = mean prompt hidden state of the base → gate → top-1 (or soft top-k) expert, or the
          null expert (base alone) when z is far from every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice

import torch

from seta.core.anchoring import adaptive_strength, elastic_anchor_penalty, normalise_fisher
from seta.models import FeatureCache, estimate_block_fisher
from seta.train.gate_training import GateTrainConfig, train_gate
from seta.train.strategies.sparse import SparseBlocks, _tensors


@dataclass(frozen=True)
class SetaConfig:
    """SETA's own settings (the blocks and their budget are `SparseConfig`, shared with the baselines)."""

    beta: float = 0.1
    """β: reuse bonus for already-owned blocks (0 = the no-reuse ablation)."""
    anchor_lambda: float = 1.0
    """λ: elastic anchoring strength (λ_B = λ · earlier owners; 0 = the no-anchoring ablation)."""
    routing: str = "top1"
    """Inference routing: top1, soft (top-k mixture) or oracle (true task id)."""
    soft_k: int = 2
    """k of the soft top-k mixture."""
    null_expert: bool = True
    """Route inputs far from every task's features to the base model alone."""
    null_quantile: float = 0.99
    """In-task quantile of Mahalanobis distances that calibrates the null threshold."""
    gate: GateTrainConfig = field(default_factory=GateTrainConfig)
    """How the gate is trained after each task."""

    def __post_init__(self):
        if self.beta < 0 or self.anchor_lambda < 0:
            raise ValueError("SetaConfig: beta and anchor_lambda must be >= 0")
        if self.routing not in ("top1", "soft", "oracle"):
            raise ValueError(f"SetaConfig.routing must be top1, soft or oracle, got {self.routing!r}")
        if self.soft_k < 1:
            raise ValueError("SetaConfig.soft_k must be >= 1")
        if not 0 < self.null_quantile <= 1:
            raise ValueError("SetaConfig.null_quantile must lie in (0, 1]")


class Seta(SparseBlocks):
    name = "seta"
    penalty_kind = "anchoring"  # the elastic anchoring is SETA's only regulariser
    config_section = "seta"

    def __init__(self, model, tokenizer, sparse=None, config: SetaConfig | None = None):
        super().__init__(model, tokenizer, sparse, config or SetaConfig())
        self.feature_cache = FeatureCache()  # z of test prompts, reused by every later evaluation
        self._plan: dict[bytes, torch.Tensor] | None = None  # routes of one evaluation (`routing_groups`)

    @property
    def beta(self) -> float:
        return self.config.beta

    def before_task(self, t, task, probe_batches) -> None:
        self._plan = None
        super().before_task(t, task, probe_batches)
        s_t = self.seta.registry.expert(t)
        ids, _, anchor, fisher = self.seta.anchor_terms(s_t)
        self.anchored = None
        if ids.numel() and self.config.anchor_lambda > 0:
            fisher = normalise_fisher([fisher], valid=[self.seta.valid_mask(ids).to(fisher.device)])[0]
            owners = self.seta.registry.earlier_owners(t)[torch.isin(s_t, ids)]
            strength = adaptive_strength(owners, self.config.anchor_lambda).to(fisher)
            self.anchored = (ids, anchor.detach(), fisher.detach(), strength)
        self.task_stats[t]["anchored"] = int(ids.numel()) if self.anchored is not None else 0

    def loss(self, batch, t, n_tokens=None):
        """(LM loss, Σ_B (λ_B/2) Σ_e F_Be (θ_Be − θ*_Be)² over the anchored shared blocks of S_t)."""
        lm, _ = super().loss(batch, t, n_tokens)
        if self.anchored is None:
            return lm, 0.0
        ids, anchor, fisher, strength = self.anchored
        return lm, elastic_anchor_penalty(self.seta.get_blocks(ids), anchor, fisher, strength)

    def after_task(self, t, task, probe_batches) -> None:
        super().after_task(t, task, probe_batches)  # the working copy back into the stacks
        self._plan = None  # the gate changes below
        cfg = self.config
        s_t = self.seta.registry.expert(t)
        batches = (_tensors(b) for b in islice(probe_batches(), self.sparse.fisher_batches))
        fisher = estimate_block_fisher(self.seta, s_t, batches)
        self.seta.update_anchors(s_t, fisher)  # running mean over owners
        # routing statistics and the gate
        train_prompts = [e.prompt for e in task.train]
        heldout = [e.prompt for e in task.eval] or train_prompts[-max(1, len(train_prompts) // 10):]
        z_train = self.prompt_features(train_prompts)
        self.seta.router.observe(t, z_train)
        self.seta.router.calibrate_null(t, self.prompt_features(heldout), cfg.null_quantile)
        old = self.old_gate if t > 0 else None
        train_gate(self.seta.router, t, z_train, cfg.gate, old)
        self.old_gate = self.seta.router.gate.snapshot()
        self.seta.set_task(t)

    @staticmethod
    def _key(ids: torch.Tensor) -> bytes:
        return ids.cpu().to(torch.long).numpy().tobytes()  # the attended ids, as FeatureCache keys them

    def routing_groups(self, prompt_ids: list[list[int]], task_id: int) -> list | None:
        """Route every evaluation prompt up front (z through the feature cache, in batches of
        eval_batch_size) and key each by the experts it routes to ((j,) for top-1, () for the null
        expert), so that evaluation batches never mix experts. The routes are kept for `route`, which
        then sets them without a second gate pass. None (no grouping) for oracle routing."""
        cfg, router = self.config, self.seta.router
        if not router.tasks or cfg.routing == "oracle":
            return None
        from seta.eval.generate import left_pad

        dev, size = self.seta.device, getattr(getattr(self, "loop_cfg", None), "eval_batch_size", 32)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._plan, keys = {}, []
        for s in range(0, len(prompt_ids), size):
            chunk = left_pad(prompt_ids[s : s + size], pad)
            ids, mask = chunk["input_ids"].to(dev), chunk["attention_mask"].to(dev)
            z = self.feature_cache.features(ids, mask, self.seta.routing_features)
            probs = router.probs(z, cfg.routing, cfg.soft_k, cfg.null_expert)  # (B, t)
            for x, p in zip(prompt_ids[s : s + size], probs):
                self._plan[self._key(torch.as_tensor(x))] = p
                keys.append(tuple(torch.nonzero(p).reshape(-1).tolist()))
        return keys

    def route(self, inputs, task_id) -> None:
        cfg, router = self.config, self.seta.router
        dev = self.seta.device
        ids, mask = inputs["input_ids"].to(dev), inputs["attention_mask"].to(dev)
        if not router.tasks:  # before the first task: the base model
            self.seta.clear_route()
            return
        if cfg.routing == "oracle":
            if task_id in router.tasks:
                probs = self.seta.route_batch(ids, mask, tasks=[task_id] * ids.shape[0])
            else:
                self.seta.clear_route()
                probs = torch.zeros(ids.shape[0], len(router.tasks))
        else:
            keep = mask.bool()
            keys = [self._key(ids[i][keep[i]]) for i in range(ids.shape[0])]
            if self._plan is not None and all(k in self._plan for k in keys):  # routed by routing_groups
                probs = torch.stack([self._plan[k] for k in keys])
                self.seta.set_routing(probs)
            else:
                probs = self.seta.route_batch(ids, mask, mode=cfg.routing, k=cfg.soft_k, null=cfg.null_expert,
                                              cache=self.feature_cache)
        if task_id in router.tasks:  # routing accuracy is measured on tasks the gate knows
            top = probs.argmax(1)
            pred = [router.tasks[int(c)] if float(probs[i].sum()) > 0 else -1 for i, c in enumerate(top)]
            self.routing_log.true.extend([task_id] * len(pred))
            self.routing_log.pred.extend(pred)

    def state_dict(self) -> dict:
        r = self.seta.router
        return {**super().state_dict(),
                "router": (r.config_dict(), {k: v.clone() for k, v in r.tensors().items()}),
                "old_gate": self.old_gate.state_dict() if getattr(self, "old_gate", None) is not None else None}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        from seta.models import Router

        self._plan = None
        cfg, tensors = state["router"]
        self.seta.router = Router.from_saved(cfg, tensors).to(self.seta.device)
        if state["old_gate"] is not None:
            self.old_gate = self.seta.router.gate.snapshot()
            self.old_gate.load_state_dict(state["old_gate"])
