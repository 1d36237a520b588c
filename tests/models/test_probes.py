"""Sensitivity probe and Fisher estimate against full-gradient references."""

from __future__ import annotations

import pytest
import torch

from seta.core.sensitivity import blockwise_mean_square
from seta.models import enable_gradient_checkpointing, estimate_block_fisher, probe_block_sensitivity
from models_helpers import lm_batch, randomise_blocks, tiny_seta


def _reference_scores(seta, batches):
    """Unfreeze the dense base weights, take full weight gradients per micro-batch (reference only)."""
    weights = {n: l.base_layer.weight for n, l in seta.layers.items()}
    sums = {n: 0 for n in weights}
    for w in weights.values():
        w.requires_grad_(True)
    try:
        for batch in batches:
            grads = torch.autograd.grad(seta(**batch).loss, list(weights.values()))
            for (n, l), g in zip(seta.layers.items(), grads):
                sums[n] = sums[n] + blockwise_mean_square(g, l.grid)
    finally:
        for w in weights.values():
            w.requires_grad_(False)
    return torch.cat([sums[n] / len(batches) for n in seta.index.names])


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_probe_equals_full_gradient_reference(arch, checkpointing):
    seta = tiny_seta(arch)
    seta.allocate(0, torch.rand(seta.index.n_blocks, dtype=torch.float64), ratio=0.1)
    randomise_blocks(seta, seta.allocated_ids())  # the probe must ignore experts: runs the base alone
    seta.set_task(0)
    if checkpointing:
        enable_gradient_checkpointing(seta.model)
        seta.train()
    batches = [lm_batch(seed=s) for s in range(3)]
    before = {k: v.clone() for k, v in seta.state_dict().items()}
    routes = [layer.get_route() for layer in seta.layers.values()]
    assert any(r is not None for r in routes)
    scores = probe_block_sensitivity(seta, batches)
    assert scores.shape == (seta.index.n_blocks,) and scores.dtype == torch.float64
    assert all(p.grad is None for p in seta.parameters())  # nothing accumulated
    assert all(torch.equal(v, seta.state_dict()[k]) for k, v in before.items())  # nothing updated
    assert all(layer.get_route() is r for layer, r in zip(seta.layers.values(), routes))  # route restored
    with seta.no_experts():
        ref = _reference_scores(seta, batches)
    torch.testing.assert_close(scores, ref, rtol=1e-4, atol=1e-12)
    assert (scores > 0).all()


def test_probe_runs_on_4bit_base():
    seta = tiny_seta("qwen3", nf4=True)
    scores = probe_block_sensitivity(seta, [lm_batch(seed=0), lm_batch(seed=1)])
    assert scores.shape == (seta.index.n_blocks,)
    assert torch.isfinite(scores).all() and (scores > 0).all()  # dy reached every 4-bit layer
    assert all(p.grad is None for p in seta.parameters())


def test_probe_custom_loss_and_errors():
    seta = tiny_seta("llama")
    batch = lm_batch()

    def last_token_loss(model, b):
        return model(input_ids=b["input_ids"]).logits[:, -1].logsumexp(-1).mean()

    scores = probe_block_sensitivity(seta, [batch], loss_fn=last_token_loss)
    assert (scores > 0).any()
    with pytest.raises(ValueError, match="no batches"):
        probe_block_sensitivity(seta, [])
    with pytest.raises(ValueError, match="labels"):
        probe_block_sensitivity(seta, [{"input_ids": batch["input_ids"]}])


@pytest.mark.parametrize("nf4", [False, True])
def test_fisher_equals_mean_squared_microbatch_gradient(nf4):
    seta = tiny_seta("llama", nf4=nf4)
    seta.allocate(0, torch.rand(seta.index.n_blocks, dtype=torch.float64), ratio=0.1)
    ids = seta.registry.expert(0)
    randomise_blocks(seta, ids, seed=2)
    batches = [lm_batch(seed=s) for s in range(3)]
    fisher = estimate_block_fisher(seta, ids, batches)
    assert fisher.shape == (ids.numel(), 16, 16)
    assert all(p.grad is None for p in seta.parameters())
    ref = 0
    with seta.use_expert(ids):
        for batch in batches:
            theta = seta.get_blocks(ids)
            grads = torch.autograd.grad(seta(**batch).loss, seta.block_parameters())
            per_layer = {id(p): gp for p, gp in zip(seta.block_parameters(), grads)}
            g = torch.cat([per_layer[id(layer.blocks)][pos] for layer, pos in seta._locate(ids)])
            assert g.shape == theta.shape
            ref = ref + g.square()
    torch.testing.assert_close(fisher, ref / len(batches), rtol=1e-4, atol=1e-12)
    assert fisher.sum() > 0


def test_fisher_of_a_later_task_equals_the_whole_stack_reference():
    """S_1's blocks sit at stack positions that do not follow their ids (task 0's blocks came first):
    the Fisher through working copies of S_1 only equals the whole-stack gradients' (the reference),
    row for row in sorted-id order, and leaves no working copy behind."""
    seta = tiny_seta("llama")
    n = seta.index.n_blocks
    # every matrix: task 0 takes its highest local ids, task 1 (appended after them) its lowest
    seta.allocate(0, torch.linspace(1.0, 2.0, n, dtype=torch.float64), ratio=0.1, beta=0.0, rule="matrix-budget")
    seta.allocate(1, torch.linspace(2.0, 1.0, n, dtype=torch.float64), ratio=0.1, beta=0.0, rule="matrix-budget")
    pos = [layer.positions(loc) for layer, loc in ((seta.layers[nm], l) for nm, l in seta.index.split(seta.registry.expert(1)).items())]
    assert any(p.numel() > 1 and int(p.min()) > 0 for p in pos)  # some layer: rows after task 0's, ids below them
    randomise_blocks(seta, seta.allocated_ids(), seed=3)
    ids = seta.registry.expert(1)
    batches = [lm_batch(seed=s) for s in range(2)]
    fisher = estimate_block_fisher(seta, ids, batches)
    assert all(layer.train_blocks is None and layer.blocks.requires_grad for layer in seta.layers.values())
    ref = 0
    with seta.use_expert(ids):
        for batch in batches:
            grads = torch.autograd.grad(seta(**batch).loss, seta.block_parameters(), allow_unused=True)
            per_layer = {id(p): gp for p, gp in zip(seta.block_parameters(), grads)}
            g = torch.cat([per_layer[id(layer.blocks)][pos] for layer, pos in seta._locate(ids)])
            ref = ref + g.square()
    torch.testing.assert_close(fisher, ref / len(batches), rtol=1e-4, atol=1e-12)
    assert fisher.sum() > 0
