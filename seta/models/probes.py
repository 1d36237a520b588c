"""Gradient probes on a SetaModel: block sensitivity (docs/method.md §1) and the element-wise
Fisher of an expert's blocks (section 3). Neither updates any weight nor leaves a `.grad` behind.

Sensitivity: per micro-batch, the base model runs with no experts active; a forward hook on every
target layer keeps its input x, a tensor hook on its output receives dy = dL/dy in backward and
hands (x, dy) to `SensitivityAccumulator.add` right away (which forms G = dyᵀx one row-block at a
time), then drops x. So no weight gradient of the whole model ever exists (base weights are frozen;
only activations carry gradients), and a 4-bit base works the same way. To reach every layer's
output, the embedding output is made a leaf that requires grad, and `torch.autograd.grad` is taken
with respect to it (nothing accumulates into `.grad`).

Fisher: F_e = (1/M) Σ_m (∂L_m/∂θ_e)², the empirical Fisher of micro-batch gradients over the M
micro-batches actually seen, for the blocks of one expert, with that expert routed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from seta.core.sensitivity import FisherAccumulator, SensitivityAccumulator
from seta.models.model import SetaModel

__all__ = ["probe_block_sensitivity", "allocate_by_sensitivity", "estimate_block_fisher", "default_loss", "tensors_only"]

LossFn = Callable[[SetaModel, dict], Tensor]


def default_loss(model: SetaModel, batch: dict) -> Tensor:
    """The HF causal-LM loss: batch holds input_ids, attention_mask and labels (-100 = ignored)."""
    out = model(**{k: v.to(model.device) for k, v in batch.items()}, use_cache=False)
    if out.loss is None:
        raise ValueError("the batch has no 'labels'; pass labels or a loss_fn(model, batch)")
    return out.loss


def tensors_only(batch: dict) -> dict:
    """The tensor entries of a batch (a collated batch may carry counts or text beside them)."""
    return {k: v for k, v in batch.items() if torch.is_tensor(v)}


def probe_block_sensitivity(model: SetaModel, batches: Iterable[dict], loss_fn: LossFn | None = None) -> Tensor:
    """score_B = mean over micro-batches of (1/|B|) Σ_{e∈B} (dL/dW_e)², for every global block id.

    batches: micro-batches (dicts of tensors); loss_fn(model, batch) -> scalar (default: LM loss).
    Returns (N,) float64 over global block ids (`model.index` order).
    """
    loss_fn = loss_fn or default_loss
    acc = SensitivityAccumulator({n: l.grid for n, l in model.layers.items()})
    state: dict = {"seen": set(), "leaf": None, "x": {}}
    handles = []

    def make_hook(name):
        def hook(module, args, output):
            if name in state["seen"] or not output.requires_grad:
                return  # a checkpointed layer recomputing in backward: already hooked
            state["seen"].add(name)
            state["x"][name] = args[0].detach()  # (B, T, d_in), dropped as soon as dy arrives

            def on_grad(dy):
                acc.add(name, state["x"].pop(name), dy)
            output.register_hook(on_grad)
        return hook

    def emb_hook(module, args, output):
        leaf = output.detach().requires_grad_(True)
        state["leaf"] = leaf
        return leaf

    handles.append(model.model.get_input_embeddings().register_forward_hook(emb_hook))
    handles += [layer.register_forward_hook(make_hook(n)) for n, layer in model.layers.items()]
    try:
        with model.no_experts(), torch.enable_grad():
            for batch in batches:
                state["seen"], state["leaf"], state["x"] = set(), None, {}
                loss = loss_fn(model, batch)
                if state["leaf"] is None or not loss.requires_grad:
                    raise ValueError("the probe's loss does not depend on the input embeddings")
                torch.autograd.grad(loss, state["leaf"])  # fires the output hooks layer by layer
                acc.end_micro_batch()
    finally:
        for h in handles:
            h.remove()
    if acc.n_micro_batches == 0:
        raise ValueError("probe_block_sensitivity got no batches")
    scores = acc.scores()
    return torch.cat([scores[n].cpu() for n in model.index.names])


def allocate_by_sensitivity(model: SetaModel, task: int, batches: Iterable[dict], ratio: float, beta: float = 0.1,
                            rule: str = "matrix-budget", loss_fn: LossFn | None = None):
    """Probe the base (no expert active), then Split-on-Share for `task`:
    S_task = top-k(T(score) · (1 + β·owned)), k = ceil(ρ N) (`SetaModel.allocate`). Returns the `Allocation`."""
    return model.allocate(task, probe_block_sensitivity(model, batches, loss_fn), ratio, beta, rule)


def estimate_block_fisher(model: SetaModel, global_ids, batches: Iterable[dict],
                          loss_fn: LossFn | None = None) -> Tensor:
    """Element-wise empirical Fisher of the blocks global_ids with that expert routed:
    F = (1/M) Σ_m g_m², g_m = ∂L_m/∂θ. Returns (k, b, b) float32 aligned with sorted global_ids.

    Gradients are taken w.r.t. working copies of these k blocks only (`SetaModel.begin_training`), not
    the layers' whole stored stacks, so the cost does not grow with the blocks earlier tasks stored.
    Any working copy active before the call is written back first; none is left behind.
    """
    loss_fn = loss_fn or default_loss
    ids = model._ids(global_ids)
    b = model.config.block_size
    if ids.numel() == 0:
        return torch.zeros(0, b, b)
    per = model.index.split(ids)  # name -> sorted local ids
    model.end_training()
    params = model.begin_training(ids)  # one (k_l, b, b) Parameter per touched layer, in layer order
    names = [n for n in model.layers if n in per]
    # row of each sorted local id inside its layer's working copy (rows follow sorted stack positions)
    rows = {}
    for name in names:
        pos = model.layers[name].positions(per[name])
        rows[name] = torch.searchsorted(pos.sort().values, pos)
    acc = FisherAccumulator()
    try:
        with model.use_expert(ids), torch.enable_grad():
            for batch in batches:
                loss = loss_fn(model, batch)
                grads = torch.autograd.grad(loss, params, allow_unused=True)  # no .grad is written
                for name, p, g in zip(names, params, grads):
                    g = torch.zeros_like(p) if g is None else g
                    acc.add(name, g.detach().index_select(0, rows[name].to(g.device)).float().square())  # (k_l, b, b)
                acc.end_micro_batch()
    finally:
        model.end_training()
    if acc.n_micro_batches == 0:
        raise ValueError("estimate_block_fisher got no batches")
    mean = acc.mean()
    return torch.cat([mean[n].cpu() for n in names])
