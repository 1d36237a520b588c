"""Routing of a `SetaModel`: which blocks act on which example, as state on the model.

    coefficient_{n,B} = Σ_j P_{n,j} · [B ∈ S_j]       P from the gate (`route_batch`) or one-hot
    z_n = mean over prompt tokens of the frozen base's last hidden state   (the gate's input)

`set_expert(ids)` (teacher-forced expert S_t; the other blocks get no gradient), `set_routing(P)`
(per-example expert probabilities; a zero row is the base model), `clear_route()`. The `use_expert` /
`use_routing` / `no_experts` context managers restore the previous route on exit. With gradient
checkpointing, call backward *inside* the context (or use the persistent setters): recomputation in
backward reads the route current at that moment. Where the gate decides: `seta.models.gate.Router.probs`.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from seta.models.config import cache_name
from seta.models.fold import folded
from seta.models.gate import FeatureCache

__all__ = ["Routing"]


class Routing:
    """Mixin of `SetaModel`: routes, routing features, gate routing, and `generate` under a route."""

    fold_routes = True  # generate with the route folded into dense fp32/fp64 base weights (seta.models.fold)

    # ---- routes ------------------------------------------------------------------------------------
    def clear_route(self) -> None:
        """No expert: exactly the base model."""
        for layer in self.layers.values():
            layer.set_route(None)

    def set_expert(self, global_ids) -> None:
        """Teacher-forced route: the blocks of global_ids act with weight 1 on every example."""
        per = self.index.split(self._ids(global_ids))
        for name, layer in self.layers.items():
            layer.set_route(layer.positions(per[name]) if name in per else None)

    def set_task(self, task: int) -> None:
        """set_expert(S_task)."""
        self.set_expert(self.registry.expert(task))

    def set_routing(self, probs: Tensor, experts: list | None = None) -> None:
        """Per-example mixture: coefficient_{n,B} = Σ_j probs[n, j] · [B ∈ experts[j]].

        probs (B, E); experts: E global-id tensors (default: S_task for the router's tasks, in gate order).
        A zero row routes that example to the base model alone.
        """
        if experts is None:
            experts = [self.registry.expert(t) for t in self.router.tasks]
        probs = torch.as_tensor(probs, dtype=torch.float32).cpu()
        if probs.dim() != 2 or probs.shape[1] != len(experts):
            raise ValueError(f"probs must be (B, {len(experts)}) for {len(experts)} experts, got {tuple(probs.shape)}")
        if (probs < 0).any() or not torch.isfinite(probs).all():
            raise ValueError("expert probabilities must be finite and >= 0")
        coef = torch.zeros(probs.shape[0], self.index.n_blocks)  # (B, N)
        for j, ids in enumerate(experts):
            coef[:, self._ids(ids)] += probs[:, j : j + 1]
        missing = self._ids(torch.nonzero(coef.ne(0).any(0)).reshape(-1))
        missing = missing[~torch.isin(missing, self.allocated_ids())]
        if missing.numel():
            raise ValueError(f"routed blocks {missing[:8].tolist()} have no parameters; add_blocks first")
        for name, layer in self.layers.items():
            w = coef[:, self.index.to_global(name, layer.local_ids.cpu())]  # (B, k_l)
            active = torch.nonzero(w.ne(0).any(0)).reshape(-1)
            layer.set_route(active if active.numel() else None, w[:, active])

    def _snapshot(self):
        return [layer.get_route() for layer in self.layers.values()]

    def _restore(self, routes) -> None:
        for layer, route in zip(self.layers.values(), routes):
            layer.restore_route(route)

    @contextlib.contextmanager
    def _scoped(self, setter, *args):
        saved = self._snapshot()
        try:
            setter(*args)
            yield self
        finally:
            self._restore(saved)

    def use_expert(self, global_ids):
        return self._scoped(self.set_expert, global_ids)

    def use_routing(self, probs, experts=None):
        return self._scoped(self.set_routing, probs, experts)

    def no_experts(self):
        return self._scoped(self.clear_route)

    # ---- routing features and gate routing ---------------------------------------------------------
    @torch.no_grad()
    def routing_features(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                         prompt_mask: Tensor | None = None) -> Tensor:
        """z_n = mean of the frozen base's last hidden state over example n's prompt tokens, (B, d) fp32.

        Experts are off, so z depends only on the prompt: cache it per example. prompt_mask (B, T)
        marks prompt tokens (e.g. labels == -100 & attention); default: every attended token.
        Positions count attended tokens (as `generate` numbers a left-padded prompt); with rotary
        embeddings only position differences matter, so z does not depend on the padding.
        """
        return self._routing_pass(input_ids, attention_mask, prompt_mask)[0]

    @torch.no_grad()
    def _routing_pass(self, input_ids, attention_mask=None, prompt_mask=None, keep_cache: bool = False):
        """(z (B, d), the base's KV cache of the prompt or None)."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if prompt_mask is not None:
            mask = mask * prompt_mask.to(mask.dtype)
        kw = {}
        if attention_mask is not None:  # the positions `generate` gives a left-padded prompt
            kw["position_ids"] = (attention_mask.long().cumsum(-1) - 1).masked_fill_(attention_mask == 0, 1)
        with self.no_experts():
            out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=keep_cache, **kw)
        h = out.last_hidden_state.float()  # (B, T, d)
        m = mask.to(h.device, h.dtype).unsqueeze(-1)  # (B, T, 1)
        z = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, d)
        return z, (getattr(out, cache_name()) if keep_cache else None)

    def route_batch(self, input_ids: Tensor, attention_mask: Tensor | None = None, *, mode: str = "top1",
                    k: int = 2, null: bool = False, tasks=None, cache: FeatureCache | None = None) -> Tensor:
        """Fix the route for this batch (call before `generate`): gate routing from the routing
        features, or the oracle when `tasks` (B,) is given. Returns the expert probabilities (B, t).
        cache: reuse the routing features of prompts seen before (e.g. the same test set after every task).
        Without one, when `null` sends every row to the null expert, the next `generate` of this batch
        continues from the routing pass's KV cache (the routed prefill would repeat it exactly)."""
        self._null_prefill = None
        kv = None
        if tasks is not None:
            probs = self.router.oracle(tasks)
        else:
            if cache is None:  # keep the pass's KV cache only where a null route can reuse it
                z, kv = self._routing_pass(input_ids, attention_mask, keep_cache=null)
            else:
                z = cache.features(input_ids, attention_mask, self.routing_features)
            probs = self.router.probs(z, mode, k, null)
        self.set_routing(probs)
        if kv is not None and not self._any_route():  # every row on the null expert: see `generate`
            self._null_prefill = (input_ids, attention_mask, kv)
        return probs

    # ---- generation under a route -------------------------------------------------------------
    def generate(self, *args, **kwargs):
        """`model.generate` with the current route, fixed for prefill and every decoding step.

        When `route_batch` just routed this very batch (same input_ids and attention_mask) to the null
        expert for every row, the routed prefill *is* the routing-feature pass (the frozen base, no
        expert), so generation continues from that pass's KV cache (cropped by the last prompt token,
        which is recomputed to give the first logits) instead of running the prefill again.

        With `fold_routes` (the default), layers whose route is the same for every row of the batch and
        whose base is a dense fp32/fp64 weight decode with the route folded into that weight
        (`seta.models.fold`: W + ΔW, restored exactly afterwards), at the base's cost; the others, and
        every layer with `fold_routes = False`, add the block delta to the base output.
        """
        prefill, self._null_prefill = getattr(self, "_null_prefill", None), None
        name = cache_name()
        if prefill is not None and not {name, "past_key_values"} & set(kwargs) and not self._any_route():
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            p_ids, p_mask, cache = prefill
            if (ids is not None and ids.shape == p_ids.shape and ids.shape[1] > 1 and torch.equal(ids, p_ids)
                    and (mask is None) == (p_mask is None) and (mask is None or torch.equal(mask, p_mask))):
                cache.crop(-1)  # drop the last prompt token: generate recomputes it for the first logits
                kwargs[name] = cache
        if not self.fold_routes:
            return self.model.generate(*args, **kwargs)
        with folded(self):
            return self.model.generate(*args, **kwargs)

    def _any_route(self) -> bool:
        return any(layer.get_route() is not None for layer in self.layers.values())
