"""Property tests: per-example block coefficients are sums of the probabilities of the experts
containing the block; a one-hot route is exactly the fixed expert; a zero route is exactly the base."""

from __future__ import annotations

import functools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models_helpers import lm_batch, randomise_blocks, tiny_seta


@functools.lru_cache(maxsize=1)
def _model():
    seta = tiny_seta("llama", block_size=32)  # 2 layers x 7 projections, 72 blocks
    seta.add_blocks(torch.arange(seta.index.n_blocks))
    randomise_blocks(seta, torch.arange(seta.index.n_blocks), seed=11, scale=0.1)
    return seta


def _coefficients(seta):
    out = torch.zeros(2, seta.index.n_blocks)
    for name, layer in seta.layers.items():
        route = layer.get_route()
        if route is not None:
            pos, w = route
            out[:, seta.index.to_global(name, layer.local_ids[pos])] = w
    return out


experts_st = st.lists(st.lists(st.integers(0, 71), min_size=1, max_size=12, unique=True), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(experts_st, st.data())
def test_block_coefficient_is_sum_over_experts(experts, data):
    seta = _model()
    e = len(experts)
    probs = torch.tensor(data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0]), min_size=e,
                                                         max_size=e), min_size=2, max_size=2)))
    ids = [torch.tensor(x) for x in experts]
    expect = torch.zeros(2, seta.index.n_blocks)
    for j, x in enumerate(ids):
        expect[:, x] += probs[:, j : j + 1]
    with seta.use_routing(probs, ids):
        assert torch.equal(_coefficients(seta), expect)
    assert all(layer.get_route() is None for layer in seta.layers.values())  # context restored


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 71), min_size=1, max_size=20, unique=True))
def test_one_hot_route_is_the_fixed_expert_and_zero_route_the_base(expert):
    seta = _model()
    batch = lm_batch(seed=len(expert))
    x = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        with seta.use_expert(expert):
            fixed = seta(**x).logits
        with seta.use_routing(torch.ones(2, 1), [torch.tensor(expert)]):
            assert torch.equal(seta(**x).logits, fixed)
        with seta.no_experts():
            base = seta(**x).logits
        with seta.use_routing(torch.zeros(2, 1), [torch.tensor(expert)]):
            assert torch.equal(seta(**x).logits, base)
        with seta.use_routing(torch.tensor([[1.0], [0.0]]), [torch.tensor(expert)]):
            mixed = seta(**x).logits
    assert torch.equal(mixed[0], fixed[0]) and torch.equal(mixed[1], base[1])


@settings(max_examples=40, deadline=None)
@given(experts_st, st.data())
def test_inference_path_equals_training_path_for_any_routing(experts, data):
    """No-grad forward (in place, cached per route) == the autograd path, for any mixture."""
    seta = _model()
    e = len(experts)
    probs = torch.tensor(data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.3, 0.5, 1.0]), min_size=e, max_size=e),
                                            min_size=2, max_size=2)))
    batch = lm_batch(seed=e)
    x = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with seta.use_routing(probs, [torch.tensor(ids) for ids in experts]):
        with torch.no_grad():
            fast = seta(**x).logits
        slow = seta(**x).logits.detach()
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
