"""Generation with the route folded into the base weights (`seta.models.fold`) against the delta path
(the reference: base output + block delta), on tiny Llama and Qwen3: values, greedy tokens, exact
restoration of the base weights, and the layers that must stay on the delta path."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models_helpers import VOCAB, fresh_base, randomise_blocks, tiny_seta, two_task_seta
from seta.models.fold import can_fold, folded


def _model(arch="llama", nf4=False):
    seta = two_task_seta(arch, nf4)
    randomise_blocks(seta, seta.allocated_ids(), seed=3, scale=0.5)
    return seta.eval()


def _ids(batch=3, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    return ids, mask


def _base_weights(seta):
    return {n: layer.base_layer.weight.detach().clone() for n, layer in seta.layers.items()}


def _routed_layers(seta):
    return [n for n, layer in seta.layers.items() if layer.get_route() is not None]


ROUTES = {
    "expert": lambda s: s.set_task(1),
    "uniform mixture": lambda s: s.set_routing(torch.tensor([[0.3, 0.7]] * 3)),
    "mixed batch": lambda s: s.set_routing(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])),
}


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_folded_logits_and_tokens_equal_the_delta_path(arch, route):
    seta = _model(arch)
    ids, mask = _ids()
    ROUTES[route](seta)
    before = _base_weights(seta)
    with torch.inference_mode():
        ref = seta(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        with folded(seta) as n:
            fast = seta(input_ids=ids, attention_mask=mask).logits
    uniform = [w is None or bool((w == w[:1]).all()) for w in (seta.layers[nm].get_route()[1] for nm in _routed_layers(seta))]
    assert n == sum(uniform)  # a mixed batch folds only layers whose route is the same for every row
    if route != "mixed batch":
        assert n == len(_routed_layers(seta)) > 0
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    kw = dict(attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        tokens_fast = seta.generate(ids, **kw)
        seta.fold_routes = False
        tokens_ref = seta.generate(ids, **kw)
    assert torch.equal(tokens_fast, tokens_ref)
    for nm, w in before.items():  # restored bit for bit
        assert torch.equal(seta.layers[nm].base_layer.weight, w), nm


def test_the_route_acts_inside_the_fold():
    """Folding is not a no-op: the base model holding the folded weights (no seta wrappers, no delta)
    gives the routed logits, which differ from the base's."""
    seta = _model()
    ids, mask = _ids()
    seta.set_task(0)
    with torch.inference_mode():
        routed = seta(input_ids=ids, attention_mask=mask).logits
        with seta.no_experts():
            base = seta(input_ids=ids, attention_mask=mask).logits
        with folded(seta):
            weights = {n: layer.base_layer.weight.clone() for n, layer in seta.layers.items()}
    plain = fresh_base()
    with torch.no_grad():
        for n, w in weights.items():
            plain.get_submodule(n).weight.copy_(w)
        inside = plain(input_ids=ids, attention_mask=mask).logits
    assert (routed - base).abs().max() > 1e-3
    torch.testing.assert_close(inside, routed, rtol=1e-5, atol=1e-5)


def test_weights_restored_when_generation_raises():
    seta = _model()
    seta.set_task(1)
    before = _base_weights(seta)
    with pytest.raises(KeyError):
        with folded(seta) as n:
            assert n > 0
            assert any(not torch.equal(seta.layers[k].base_layer.weight, w) for k, w in before.items())
            raise KeyError("boom")
    for nm, w in before.items():
        assert torch.equal(seta.layers[nm].base_layer.weight, w), nm
    assert all(layer._folded is None for layer in seta.layers.values())


def test_training_or_rerouting_inside_the_fold_is_refused():
    seta = _model()
    ids, mask = _ids()
    seta.set_task(1)
    with folded(seta):
        with pytest.raises(RuntimeError, match="folded"):
            seta(input_ids=ids, attention_mask=mask)  # gradients on
        with pytest.raises(RuntimeError, match="outside the `folded` block"):
            seta.set_task(0)
    seta.set_task(0)  # fine once unfolded


def test_layers_that_stay_on_the_delta_path(variant):
    arch, nf4 = variant
    seta = _model(arch, nf4)
    seta.set_task(1)
    with torch.no_grad(), folded(seta) as n:
        assert n == (0 if nf4 else len(_routed_layers(seta)))  # NF4 packs its weight: never folded
    if nf4:
        return
    with torch.autocast("cpu", dtype=torch.bfloat16), folded(seta) as n:
        assert n == 0  # autocast casts the weight: the delta path's precision rules apply
    a = seta.layers[_routed_layers(seta)[0]]
    other = next(layer for layer in seta.layers.values()
                 if layer is not a and layer.base_layer.weight.shape == a.base_layer.weight.shape)
    other.base_layer.weight = a.base_layer.weight  # tied: folding a would change other as well
    with folded(seta) as n:
        assert n == len(_routed_layers(seta)) - 1 and a._folded is None


def _one_expert_seta(**kwargs):
    """A tiny SetaModel with one expert (the top 20 % of blocks by a fixed score), routed to it."""
    seta = tiny_seta(**kwargs)
    seta.allocate(0, torch.linspace(1.0, 2.0, seta.index.n_blocks, dtype=torch.float64), ratio=0.2, rule="raw")
    seta.set_task(0)
    return seta


def test_ragged_grid_is_not_folded():
    seta = _one_expert_seta(block_size=24)  # 64 and 128 are not multiples of 24
    assert not any(can_fold(layer) for layer in seta.layers.values())


def test_offloaded_weights_are_not_folded():
    """An accelerate-offloaded layer (meta weight, or a hook that loads the weight per forward) keeps the
    delta path: folding into the placeholder would silently drop the expert."""
    seta = _one_expert_seta()
    layers = [seta.layers[name] for name in _routed_layers(seta)]
    assert len(layers) >= 2 and all(can_fold(layer) for layer in layers)
    hooked, meta = layers[0], layers[1]
    hooked.base_layer._hf_hook = object()  # what accelerate's add_hook_to_module sets
    meta.base_layer.weight = torch.nn.Parameter(torch.empty_like(meta.base_layer.weight, device="meta"),
                                                requires_grad=False)
    assert not can_fold(hooked) and not can_fold(meta)
    with folded(seta) as n_folded:
        assert n_folded == len(layers) - 2


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0.05, 1.0), q=st.floats(0.0, 1.0), scale=st.floats(0.01, 2.0), seed=st.integers(0, 2**16))
def test_property_fold_equals_delta_and_restores_exactly(p, q, scale, seed):
    """For any batch-uniform mixture of the two experts and any block values: folded forward = the
    delta path (fp32 rounding), and the base weights are bit-identical afterwards."""
    seta = _BASE.copy()
    randomise_blocks(seta, seta.allocated_ids(), seed=seed, scale=scale)
    seta.set_routing(torch.tensor([[p, q]] * 2))
    ids, mask = _ids(batch=2, seed=seed)
    before = _base_weights(seta)
    with torch.inference_mode():
        ref = seta(input_ids=ids, attention_mask=mask).logits
        with folded(seta) as n:
            fast = seta(input_ids=ids, attention_mask=mask).logits
    assert n == len(_routed_layers(seta))
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4 * max(1.0, scale))
    for nm, w in before.items():
        assert torch.equal(seta.layers[nm].base_layer.weight, w), nm


class _Base:
    """One two-task model for the property test (the blocks are overwritten per example)."""

    _m = None

    def copy(self):
        if self._m is None:
            type(self)._m = _model()
        return self._m


_BASE = _Base()
