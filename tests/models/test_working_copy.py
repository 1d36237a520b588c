"""Training through per-layer working copies (`begin_training`) against training the whole stack.

The reference is the plain path: every layer's whole stack is one Parameter in AdamW (weight decay 0),
so blocks outside the current expert get zero gradient and stay put. The working copy must give the
same gradients and the same weights, with optimizer state for the trained blocks only.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models_helpers import lm_batch, randomise_blocks, two_task_seta
from seta.core.anchoring import elastic_anchor_penalty


def _two_tasks(arch="llama", nf4=False):
    """Task 0 and task 1 allocated (task 1 shares every other block of task 0), blocks randomised."""
    seta = two_task_seta(arch, nf4)
    randomise_blocks(seta, seta.allocated_ids())
    seta.train()
    seta.set_task(1)
    return seta


def _loss(seta, batch, anchor):
    """LM loss + an elastic anchor on task 1's shared blocks (read through get_blocks, as SETA does)."""
    ids, theta_star, fisher = anchor
    return seta(**batch).loss + elastic_anchor_penalty(seta.get_blocks(ids), theta_star, fisher, 3.0)


def _train(seta, params, steps, anchor):
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    grads = []
    for i in range(steps):
        _loss(seta, lm_batch(seed=i), anchor).backward()
        grads.append(_expert_grad(seta))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt, grads


def _expert_grad(seta):
    """Gradient of task 1's blocks in global-id order, from the stack or the working copies."""
    out = []
    for layer, pos in seta._locate(seta.registry.expert(1)):
        if layer.train_blocks is not None:
            g = layer.train_blocks.grad
            out.append(g.index_select(0, layer._train_slot[pos]))
        else:
            out.append(layer.blocks.grad.index_select(0, pos))
    return torch.cat(out).clone()


@pytest.mark.parametrize("nf4", [False, True], ids=["fp32", "nf4"])
def test_same_gradients_and_weights_as_training_the_stack(nf4):
    ref, fast = _two_tasks(nf4=nf4), _two_tasks(nf4=nf4)
    assert torch.equal(ref.get_blocks(ref.allocated_ids()), fast.get_blocks(fast.allocated_ids()))
    s0, s1 = ref.registry.expert(0), ref.registry.expert(1)
    shared = s1[torch.isin(s1, s0)]
    anchor = (shared, ref.get_blocks(shared).detach() + 0.05, torch.rand(shared.numel(), 16, 16))

    opt_ref, g_ref = _train(ref, ref.block_parameters(), 3, anchor)
    params = fast.begin_training(s1)
    assert sum(p.numel() for p in params) == s1.numel() * 16 * 16
    assert not any(l.blocks.requires_grad for l in fast.layers.values())
    opt_fast, g_fast = _train(fast, params, 3, anchor)
    for a, b in zip(g_ref, g_fast):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    # reads see the working copy before it is written back
    torch.testing.assert_close(fast.get_blocks(s1), ref.get_blocks(s1), rtol=1e-5, atol=1e-6)
    fast.end_training()
    all_ids = ref.allocated_ids()
    torch.testing.assert_close(fast.get_blocks(all_ids), ref.get_blocks(all_ids), rtol=1e-5, atol=1e-6)
    only0 = s0[~torch.isin(s0, s1)]
    assert only0.numel() and torch.equal(fast.get_blocks(only0), ref.get_blocks(only0))  # untouched
    # optimizer state: the whole stack for the reference, the trained blocks only for the working copy
    state = lambda opt: sum(v.numel() for s in opt.state.values() for k, v in s.items() if k != "step")
    assert state(opt_fast) == 2 * s1.numel() * 256
    assert state(opt_ref) == 2 * all_ids.numel() * 256
    assert all(l.blocks.requires_grad for l in fast.layers.values() if l.n_blocks)
    assert all(l.train_blocks is None for l in fast.layers.values())


def test_generation_during_training_sees_the_working_copy():
    seta = _two_tasks()
    s1 = seta.registry.expert(1)
    params = seta.begin_training(s1)
    with torch.no_grad():
        for p in params:
            p.add_(0.1)  # the working copy moves away from the stack
    batch = lm_batch()
    seta.eval()
    with torch.no_grad():
        during = seta(**batch).logits
    seta.end_training()
    with torch.no_grad():
        after = seta(**batch).logits  # the in-place inference path, from the written-back stack
    torch.testing.assert_close(during, after, rtol=1e-5, atol=1e-5)


def test_growth_while_training_is_refused():
    seta = _two_tasks()
    seta.begin_training(seta.registry.expert(1))
    free = torch.tensor([i for i in range(seta.index.n_blocks) if i not in set(seta.allocated_ids().tolist())][:2])
    with pytest.raises(RuntimeError, match="allocate before training"):
        seta.add_blocks(free)
    seta.end_training()
    assert seta.add_blocks(free).numel() == 2


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_read_and_write_merge_stack_and_working_copy(data):
    """read(pos) = the stack with the trained rows replaced by the working copy; write updates both."""
    seta = _model()
    layer = max(seta.layers.values(), key=lambda l: l.n_blocks)
    k = layer.n_blocks
    trained = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    asked = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    stack = layer.blocks.detach().clone()
    copy = layer.begin_training(torch.tensor(trained))
    try:
        with torch.no_grad():
            copy.normal_()
        expect = stack.clone()
        expect[torch.tensor(sorted(trained))] = copy.detach()
        pos = torch.tensor(asked)
        got = layer.read(pos)
        assert torch.equal(got, expect[pos])
        assert got.requires_grad == any(a in trained for a in asked)
        vals = torch.randn(len(asked), *stack.shape[1:])
        layer.write(pos, vals)
        expect[pos] = vals
        assert torch.equal(layer.read(torch.arange(k)), expect)
    finally:
        layer.end_training()
    assert torch.equal(layer.blocks.detach(), expect)  # the working copy was written back
    with torch.no_grad():
        layer.blocks.copy_(stack)


@functools.cache
def _model():
    return _two_tasks()
