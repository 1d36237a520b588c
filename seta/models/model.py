"""SETA on a Hugging Face causal LM: attach sparse block experts, route them, save and load.

    y_l = W_l x + Σ_j P_{n,j} Δ_{S_j,l} x          for every target layer l and example n

Global block ids follow `seta.core.blocks.BlockIndex` over the targeted layers (in module order).
The ownership map (`registry`), the gate with its feature statistics (`router`) and the anchors and
Fisher of finished tasks (`anchors`) live here too, so one `save_pretrained` holds everything needed
to evaluate or to continue training.

Routing is state on the model, not a forward kwarg: `set_expert(ids)` (teacher-forced expert S_t;
the other blocks get no gradient), `set_routing(P)` (per-example expert probabilities; a block's
coefficient is the sum of the probabilities of the experts containing it; a zero row is the base
model), `clear_route()`. The `use_expert` / `use_routing` / `no_experts` context managers restore the
previous route on exit. With gradient checkpointing, call backward *inside* the context (or use the
persistent setters): recomputation in backward reads the route current at that moment.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from seta.core.allocation import OwnershipRegistry, allocate_blocks, budget
from seta.core.anchoring import mean_fisher, merge_fisher
from seta.core.blocks import BlockIndex
from seta.models.gate import FeatureCache, Router
from seta.models.layer import SparseBlockLinear, keep_4bit_differentiable, supported_linear, wrap_linear

__all__ = ["ExpertConfig", "SetaModel", "attach_experts", "BlockAnchors", "DEFAULT_TARGETS", "CONFIG_NAME",
           "WEIGHTS_NAME"]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # Llama/Qwen3/Mistral
CONFIG_NAME, WEIGHTS_NAME = "seta_config.json", "seta_model.safetensors"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.lru_cache(maxsize=None)
def _cache_name() -> str:
    """The KV cache's name in model outputs and `generate` kwargs: 'cache' (transformers >= 5.24),
    formerly 'past_key_values'."""
    import dataclasses

    from transformers.modeling_outputs import BaseModelOutputWithPast

    return "cache" if "cache" in {f.name for f in dataclasses.fields(BaseModelOutputWithPast)} else "past_key_values"


@dataclass(frozen=True)
class ExpertConfig:
    """How sparse block experts are attached (saved as JSON next to every checkpoint)."""

    block_size: int = 256
    """b: side of a square block (256 for 7B/4B models, 16-32 for tiny ones); edge blocks may be ragged."""
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    """Linear layers to adapt: a pattern matches a module whose name equals it, ends with '.<pattern>',
    or fully matches it as a regular expression. Every pattern must match at least one linear layer."""
    block_dtype: str = "float32"
    """dtype the trainable blocks are stored (master weights) and trained in ('float32', 'bfloat16',
    'float16'); the delta is computed in it, or in autocast's dtype inside a `torch.autocast` region."""
    gate_hidden: int = 0
    """Hidden width of the gate's MLP trunk; 0 = a linear gate on the normalised routing feature."""
    feature_shrinkage: float = 0.1
    """Covariance shrinkage towards the diagonal for pseudo-features and Mahalanobis distances."""
    diagonal_stats: bool = False
    """Keep only per-feature variances in the routing statistics (for very wide hidden states)."""

    def __post_init__(self):
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {self.block_size!r}")
        targets = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"target_modules must be non-empty strings, got {self.target_modules!r}")
        object.__setattr__(self, "target_modules", targets)
        if self.block_dtype not in _DTYPES:
            raise ValueError(f"block_dtype must be one of {sorted(_DTYPES)}, got {self.block_dtype!r}")
        if self.gate_hidden < 0:
            raise ValueError(f"gate_hidden must be >= 0, got {self.gate_hidden}")
        if not 0.0 <= self.feature_shrinkage <= 1.0:
            raise ValueError(f"feature_shrinkage must lie in [0, 1], got {self.feature_shrinkage}")


def _pattern_matches(pattern: str, name: str) -> bool:
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def find_targets(model: nn.Module, patterns) -> list[str]:
    """Names of the linear layers matched by `patterns`, in module order; ValueError listing the
    existing linear layer names when a pattern matches none."""
    linear = [n for n, m in model.named_modules() if supported_linear(m)]
    if any(isinstance(m, SparseBlockLinear) for m in model.modules()):
        raise ValueError("this model already has sparse block experts attached; attach to a fresh base model")
    unmatched = [p for p in patterns if not any(_pattern_matches(p, n) for n in linear)]
    if unmatched:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(f"target_modules {unmatched} match no linear layer of {type(model).__name__}. "
                         f"Linear layer names end in: {suffixes}; e.g. {linear[:4]}. Set ExpertConfig.target_modules.")
    return [n for n in linear if any(_pattern_matches(p, n) for p in patterns)]


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


class SetaModel(nn.Module):
    """An HF causal LM with sparse block experts on its target linear layers, plus the gate."""

    def __init__(self, model: nn.Module, config: ExpertConfig | None = None):
        super().__init__()
        config = config or ExpertConfig()
        names = find_targets(model, config.target_modules)
        for p in model.parameters():  # base frozen (k-bit preparation, if any, must come first)
            p.requires_grad_(False)
        keep_4bit_differentiable(model)
        modules = dict(model.named_modules())
        self.layers: dict[str, SparseBlockLinear] = {}
        for name in names:
            parent_name, _, child = name.rpartition(".")
            layer = wrap_linear(modules[name], config.block_size, _DTYPES[config.block_dtype])
            setattr(modules[parent_name] if parent_name else model, child, layer)
            self.layers[name] = layer
        self.model = model
        self.config = config
        self.index = BlockIndex({n: l.grid for n, l in self.layers.items()})
        self.registry = OwnershipRegistry(self.index.n_blocks)
        emb = model.get_input_embeddings()
        self.router = Router(emb.embedding_dim, config.gate_hidden, config.feature_shrinkage,
                             config.diagonal_stats).to(emb.weight.device)
        self.anchors = BlockAnchors(config.block_size)

    # ---- HF passthrough -----------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        """`model.generate` with the current route, fixed for prefill and every decoding step.

        When `route_batch` just routed this very batch (same input_ids and attention_mask) to the null
        expert for every row, the routed prefill *is* the routing-feature pass (the frozen base, no
        expert), so generation continues from that pass's KV cache (cropped by the last prompt token,
        which is recomputed to give the first logits) instead of running the prefill again.
        """
        prefill, self._null_prefill = getattr(self, "_null_prefill", None), None
        name = _cache_name()
        if prefill is not None and not {name, "past_key_values"} & set(kwargs) and not self._any_route():
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            p_ids, p_mask, cache = prefill
            if (ids is not None and ids.shape == p_ids.shape and ids.shape[1] > 1 and torch.equal(ids, p_ids)
                    and (mask is None) == (p_mask is None) and (mask is None or torch.equal(mask, p_mask))):
                cache.crop(-1)  # drop the last prompt token: generate recomputes it for the first logits
                kwargs[name] = cache
        return self.model.generate(*args, **kwargs)

    def _any_route(self) -> bool:
        return any(layer.get_route() is not None for layer in self.layers.values())

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    # ---- blocks -----------------------------------------------------------------------------------
    def _ids(self, global_ids) -> Tensor:
        ids = torch.as_tensor(global_ids, dtype=torch.long).reshape(-1).cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.index.n_blocks):
            raise ValueError(f"global block ids must lie in [0, {self.index.n_blocks})")
        return ids.unique(sorted=True)

    def add_blocks(self, global_ids) -> Tensor:
        """Create zero-initialised blocks for ids not allocated yet; returns the newly created ids.
        Existing blocks keep their values and positions. Rebuild the optimizer afterwards."""
        ids = self._ids(global_ids)
        new = ids[~torch.isin(ids, self.allocated_ids())]
        for name, local in self.index.split(new).items():
            self.layers[name].add_blocks(local)
        return new

    def stacks(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{layer name: (local_ids (k_l,), blocks (k_l, b, b))} in stack order, for layers with blocks:
        restored by `load_stacks`, a model whose every forward matches bit for bit (same positions)."""
        return {n: (l.local_ids.detach().cpu().clone(), l.blocks.detach().cpu().clone())
                for n, l in self.layers.items() if l.n_blocks}

    @torch.no_grad()
    def load_stacks(self, stacks: dict) -> None:
        """Recreate the stacks of `stacks()` in their saved order (on a model with no blocks there yet)."""
        unknown = sorted(set(stacks) - set(self.layers))
        if unknown:
            raise ValueError(f"saved blocks of layers {unknown[:3]} that this model does not have")
        for name, (local_ids, blocks) in stacks.items():
            layer = self.layers[name]
            if layer.n_blocks:
                raise ValueError(f"layer {name} already has blocks; load stacks into a fresh model")
            layer.add_blocks(local_ids)
            layer.blocks.copy_(blocks.to(layer.blocks))

    def allocated_ids(self) -> Tensor:
        """Global ids that have parameters, sorted."""
        parts = [self.index.to_global(n, l.local_ids.cpu()) for n, l in self.layers.items()]
        return torch.cat(parts).sort().values

    def allocate(self, task: int, scores: Tensor, ratio: float, beta: float = 0.1, rule: str = "matrix-budget"):
        """Split-on-Share for `task`: S_t = top-k(T(score) · (1 + β·owned)), k = ceil(ρ N), T the allocation
        rule (`seta.core.allocation`: raw, matrix-mean, matrix-budget); records ownership, creates the new
        blocks and a gate output. Returns the core `Allocation`."""
        k = budget(self.index.n_blocks, ratio)
        sizes = [g.n_blocks for g in self.index.grids.values()]
        selected = allocate_blocks(scores, k, sizes, rule, self.registry.owned(), beta)
        allocation = self.registry.add_task(task, selected)
        self.add_blocks(allocation.selected)
        self.router.add_task(task)
        return allocation

    def _locate(self, ids: Tensor) -> list[tuple[SparseBlockLinear, Tensor]]:
        """[(layer, stack positions)] in global-id order."""
        return [(self.layers[n], self.layers[n].positions(loc)) for n, loc in self.index.split(ids).items()]

    def get_blocks(self, global_ids) -> Tensor:
        """Differentiable (k, b, b) stack of the blocks of global_ids, sorted by id."""
        parts = [layer.read(pos) for layer, pos in self._locate(self._ids(global_ids))]
        if not parts:
            b = self.config.block_size
            return torch.zeros(0, b, b, dtype=_DTYPES[self.config.block_dtype], device=self.device)
        dev = parts[0].device
        return torch.cat([p.to(dev) for p in parts])

    @torch.no_grad()
    def set_blocks(self, global_ids, values: Tensor) -> None:
        """Overwrite the blocks of global_ids (sorted order) with values (k, b, b)."""
        ids, start = self._ids(global_ids), 0
        for layer, pos in self._locate(ids):
            layer.write(pos, values[start : start + pos.numel()])
            start += pos.numel()

    def valid_mask(self, global_ids) -> Tensor:
        """(k, b, b) bool: block entries inside the weight (False on the padding of ragged edges)."""
        b, masks = self.config.block_size, []
        for name, local in self.index.split(self._ids(global_ids)).items():
            grid = self.layers[name].grid
            for lid in local.tolist():
                rs, cs = grid.slices(lid)
                m = torch.zeros(b, b, dtype=torch.bool)
                m[: rs.stop - rs.start, : cs.stop - cs.start] = True
                masks.append(m)
        return torch.stack(masks) if masks else torch.zeros(0, b, b, dtype=torch.bool)

    def block_parameters(self) -> list[nn.Parameter]:
        """Every layer's stacked blocks (the working copies instead while `begin_training` is active).
        Training the whole stack: use weight_decay=0, so blocks outside the current expert (zero
        gradient) stay bit-identical under a fresh Adam(W)."""
        return [l.train_blocks if l.train_blocks is not None else l.blocks
                for l in self.layers.values() if l.n_blocks and (l.train_blocks is not None or l.blocks.requires_grad)]

    def begin_training(self, global_ids) -> list[nn.Parameter]:
        """Train only the blocks of global_ids, each layer's through a working copy (k_t, b, b): returns
        those Parameters, for the optimizer. Gradients and optimizer state then cover the trained blocks,
        not the whole stack; every read (forward, `get_blocks`) sees the working copies. The updates are
        those of training the stack with weight_decay=0 (the other blocks get zero gradient). Call
        `end_training` after the task to write them back."""
        per = self.index.split(self._ids(global_ids))
        params = []
        for name, layer in self.layers.items():
            if name in per:
                p = layer.begin_training(layer.positions(per[name]))
                params += [p] if p is not None else []
            else:
                layer.end_training()
                layer.blocks.requires_grad_(False)  # not trained in this task
        return params

    def end_training(self) -> None:
        """Write every working copy back into its stack; every stack requires grad again."""
        for layer in self.layers.values():
            layer.end_training()
            layer.blocks.requires_grad_(True)

    @contextlib.contextmanager
    def stored_values(self):
        """Within: the model with the values its stacks hold, every working copy set aside; during a
        task that is the model as it was when the task's training began (e.g. LwF's teacher)."""
        with contextlib.ExitStack() as stack:
            for layer in self.layers.values():
                stack.enter_context(layer.stored_values())
            yield self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Blocks + gate: the only parameters that require grad."""
        return self.block_parameters() + list(self.router.gate.parameters())

    # ---- anchors ------------------------------------------------------------------------------------
    def update_anchors(self, global_ids, fisher: Tensor, gamma: float | None = None) -> None:
        """After a task: θ*_B ← current value and F_B ← running mean over owners of fisher_B (or, with
        gamma, F_B ← γ F_B + fisher_B), for B in global_ids (sorted)."""
        ids = self._ids(global_ids)
        if fisher.shape[0] != ids.numel():
            raise ValueError(f"fisher has {fisher.shape[0]} blocks for {ids.numel()} ids")
        self.anchors.update(ids, self.get_blocks(ids).detach(), fisher, gamma)

    def anchor_terms(self, global_ids):
        """For the anchored blocks among global_ids: (ids (m,), θ (m,b,b) differentiable, θ* , F)."""
        ids = self._ids(global_ids)
        found, anchor, fisher = self.anchors.lookup(ids)
        theta = self.get_blocks(ids[found])
        return ids[found], theta, anchor.to(theta), fisher.to(theta)

    # ---- routing ------------------------------------------------------------------------------------
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
        return z, (getattr(out, _cache_name()) if keep_cache else None)

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

    # ---- deployment -----------------------------------------------------------------------------------
    @torch.no_grad()
    def merge_and_unload(self, global_ids) -> nn.Module:
        """Fold the expert global_ids into the base weights (dense bases only) and return the plain HF
        model. The SetaModel is unusable afterwards; the base weights are changed in place."""
        per = self.index.split(self._ids(global_ids))
        if any(type(self.layers[n]) is not SparseBlockLinear for n in per):  # check before changing anything
            raise ValueError("merge_and_unload needs a dense base; reload the base in bf16/fp32 to merge, "
                             "or keep the adapter and route with set_expert")
        modules = dict(self.model.named_modules())
        for name, layer in self.layers.items():
            pos = layer.positions(per[name]) if name in per else torch.zeros(0, dtype=torch.long)
            base = layer.merged_base(pos) if pos.numel() else layer.base_layer
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else self.model, child, base)
        self.layers = {}
        return self.model

    # ---- save / load ----------------------------------------------------------------------------------
    def save_pretrained(self, directory) -> None:
        """<dir>/seta_config.json + <dir>/seta_model.safetensors (blocks, indices, ownership, gate,
        routing statistics, anchors and Fisher)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {"format": "seta-sparse-block-experts", "version": 1, "expert_config": asdict(self.config),
               "base_model_type": getattr(getattr(self.model, "config", None), "model_type", None),
               "layers": {n: [l.grid.out_features, l.grid.in_features] for n, l in self.layers.items()},
               "registry": self.registry.to_dict(), "router": self.router.config_dict()}
        tensors = {}
        for name, layer in self.layers.items():
            if layer.n_blocks:
                tensors[f"layers.{name}.blocks"] = layer.blocks.detach()
                tensors[f"layers.{name}.local_ids"] = layer.local_ids
        tensors.update({f"router.{k}": v for k, v in self.router.tensors().items()})
        tensors.update({"anchors.ids": self.anchors.ids, "anchors.values": self.anchors.values,
                        "anchors.fisher": self.anchors.fisher, "anchors.count": self.anchors.count})
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / WEIGHTS_NAME))
        (d / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory) -> "SetaModel":
        """Attach experts to `model` (a fresh base of the same architecture) and load a saved state."""
        d = Path(directory)
        if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{d} has no {CONFIG_NAME} + {WEIGHTS_NAME}; pass a SetaModel.save_pretrained directory")
        cfg = json.loads((d / CONFIG_NAME).read_text())
        seta = cls(model, ExpertConfig(**cfg["expert_config"]))
        seta.load_saved_state(d)
        return seta

    def load_saved_state(self, directory) -> None:
        """Load a `save_pretrained` state (blocks in their stack order, ownership, gate, anchors) into this
        model, which must have no blocks yet and the same target layers (e.g. one a strategy attached)."""
        from safetensors.torch import load_file

        d = Path(directory)
        cfg = json.loads((d / CONFIG_NAME).read_text())
        if ExpertConfig(**cfg["expert_config"]) != self.config:
            raise ValueError(f"the experts in {d} were attached with {cfg['expert_config']}, not with this model's "
                             f"{asdict(self.config)}")
        have = {n: [l.grid.out_features, l.grid.in_features] for n, l in self.layers.items()}
        if have != cfg["layers"]:
            diff = [n for n in set(have) | set(cfg["layers"]) if have.get(n) != cfg["layers"].get(n)]
            raise ValueError(f"the saved experts were trained on a base of another shape "
                             f"({cfg.get('base_model_type')}): layer {diff[0]!r} is {cfg['layers'].get(diff[0])} "
                             f"in the checkpoint but {have.get(diff[0])} here ({len(diff)} layers differ). "
                             "Load them onto the same base model they were trained on.")
        tensors = load_file(str(d / WEIGHTS_NAME))
        for name, layer in self.layers.items():
            if f"layers.{name}.blocks" in tensors:
                if layer.n_blocks:
                    raise ValueError(f"layer {name} already has blocks; load a saved state into a fresh model")
                layer.add_blocks(tensors[f"layers.{name}.local_ids"])  # same stack order
                with torch.no_grad():
                    layer.blocks.copy_(tensors[f"layers.{name}.blocks"].to(layer.blocks))
        self.registry = OwnershipRegistry.from_dict(cfg["registry"])
        router = Router.from_saved(cfg["router"], {k[7:]: v for k, v in tensors.items() if k.startswith("router.")})
        self.router = router.to(self.device)
        self.anchors.ids = tensors["anchors.ids"]
        self.anchors.values, self.anchors.fisher = tensors["anchors.values"], tensors["anchors.fisher"]
        self.anchors.count = tensors.get("anchors.count", torch.ones(self.anchors.ids.numel(), dtype=torch.long))


def attach_experts(model: nn.Module, config: ExpertConfig | None = None) -> SetaModel:
    """Wrap the target linear layers of `model` (in place) and return the SetaModel. Do any k-bit
    preparation first (`seta.models.loading.prepare_for_kbit_training`)."""
    return SetaModel(model, config)
