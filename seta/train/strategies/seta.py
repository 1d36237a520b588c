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

import torch

from seta.api import SetaConfig, SetaContinualModel, SetaOwnConfig
from seta.models import FeatureCache
from seta.train.strategies.sparse import SparseBlocks


class Seta(SparseBlocks):
    """SETA in the continual loop: a client of `seta.api.SetaContinualModel` (`self.api`), which does the
    method; this class feeds it the stream's tasks and routes evaluation batches (grouped by route)."""

    name = "seta"
    penalty_kind = "anchoring"  # the elastic anchoring is SETA's only regulariser
    config_section = "seta"

    def __init__(self, model, tokenizer, sparse=None, config: SetaOwnConfig | None = None):
        super().__init__(model, tokenizer, sparse, config or SetaOwnConfig())
        self.feature_cache = FeatureCache()  # z of test prompts, reused by every later evaluation
        self._plan: dict[bytes, torch.Tensor] | None = None  # routes of one evaluation (`routing_groups`)

    def attach(self, model, sparse):
        self.api = SetaContinualModel(model, SetaConfig.from_sections(sparse, self.config), self.tokenizer)
        return self.api.experts

    def before_task(self, t, task, probe_batches) -> None:
        self._plan = None
        self._params = self.api.start_task(task.name, probe_batches())
        if self.api.active != t:
            raise RuntimeError(f"task {task.name!r} became task {self.api.active} of the model, not {t}")
        self.current_task, self.allocation = t, self.api.allocation
        self.task_stats[t] = {**self._allocation_stats(self.allocation),
                              "anchored": 0 if self.api.anchored is None else int(self.api.anchored[0].numel())}

    def trainable_parameters(self):
        """Working copies of S_t's blocks (`SetaContinualModel.start_task`)."""
        return self._params

    def loss(self, batch, t, n_tokens=None):
        """(LM loss, Σ_B (λ_B/2) Σ_e F_Be (θ_Be − θ*_Be)² over the anchored shared blocks of S_t)."""
        lm, _ = super().loss(batch, t, n_tokens)
        return lm, (0.0 if self.api.anchored is None else self.api.anchor_penalty())

    def after_task(self, t, task, probe_batches) -> None:
        self._plan = None  # the gate changes
        heldout = [e.prompt for e in task.eval] or None
        self.api.end_task(probe_batches(), [e.prompt for e in task.train], heldout, max_prompt_len=self._prompt_cap())
        self.model.set_task(t)

    def _prompt_cap(self) -> int:
        return self.loop_cfg.max_prompt_len if getattr(self, "loop_cfg", None) else 1024

    def prompt_features(self, prompts: list[str]) -> torch.Tensor:
        """Routing features z of prompts, encoded exactly as at evaluation. (N, d)"""
        return self.api.prompt_features(prompts, self._prompt_cap())

    @staticmethod
    def _key(ids: torch.Tensor) -> bytes:
        return ids.cpu().to(torch.long).numpy().tobytes()  # the attended ids, as FeatureCache keys them

    def routing_groups(self, prompt_ids: list[list[int]], task_id: int) -> list | None:
        """Route every evaluation prompt up front (z through the feature cache, in batches of
        eval_batch_size) and key each by the experts it routes to ((j,) for top-1, () for the null
        expert), so that evaluation batches never mix experts. The routes are kept for `route`, which
        then sets them without a second gate pass. None (no grouping) for oracle routing."""
        cfg, router = self.config, self.model.router
        if not router.tasks or cfg.routing == "oracle":
            return None
        from seta.eval.generate import left_pad

        dev, size = self.model.device, getattr(getattr(self, "loop_cfg", None), "eval_batch_size", 32)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._plan, keys = {}, []
        for s in range(0, len(prompt_ids), size):
            chunk = left_pad(prompt_ids[s : s + size], pad)
            ids, mask = chunk["input_ids"].to(dev), chunk["attention_mask"].to(dev)
            z = self.feature_cache.features(ids, mask, self.model.routing_features)
            probs = router.probs(z, cfg.routing, cfg.soft_k, cfg.null_expert)  # (B, t)
            for x, p in zip(prompt_ids[s : s + size], probs):
                self._plan[self._key(torch.as_tensor(x))] = p
                keys.append(tuple(torch.nonzero(p).reshape(-1).tolist()))
        return keys

    def route(self, inputs, task_id) -> None:
        cfg, router = self.config, self.model.router
        dev = self.model.device
        ids, mask = inputs["input_ids"].to(dev), inputs["attention_mask"].to(dev)
        if not router.tasks:  # before the first task: the base model
            self.model.clear_route()
            return
        if cfg.routing == "oracle":
            if task_id in router.tasks:
                probs = self.api.route(ids, mask, task=task_id)
            else:
                self.model.clear_route()
                probs = torch.zeros(ids.shape[0], len(router.tasks))
        else:
            keep = mask.bool()
            keys = [self._key(ids[i][keep[i]]) for i in range(ids.shape[0])]
            if self._plan is not None and all(k in self._plan for k in keys):  # routed by routing_groups
                probs = torch.stack([self._plan[k] for k in keys])
                self.model.set_routing(probs)
            else:
                probs = self.api.route(ids, mask, cache=self.feature_cache)
        if task_id in router.tasks:  # routing accuracy is measured on tasks the gate knows
            top = probs.argmax(1)
            pred = [router.tasks[int(c)] if float(probs[i].sum()) > 0 else -1 for i, c in enumerate(top)]
            self.routing_log.true.extend([task_id] * len(pred))
            self.routing_log.pred.extend(pred)

    def save_adapter(self, out_dir) -> None:
        self.api.save_pretrained(out_dir)

    def state_dict(self) -> dict:
        r = self.model.router
        return {**super().state_dict(),
                "router": (r.config_dict(), {k: v.clone() for k, v in r.tensors().items()}),
                "old_gate": self.api.old_gate.state_dict() if self.api.old_gate is not None else None,
                "task_ids": dict(self.api.task_ids)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        from seta.models import Router

        self._plan = None
        cfg, tensors = state["router"]
        self.model.router = Router.from_saved(cfg, tensors).to(self.model.device)
        self.api.load_old_gate(state["old_gate"])
        self.api.task_ids = dict(state.get("task_ids") or {str(t): t for t in self.model.registry.tasks})
