"""Every way `SparseBlockLinear.forward` computes base(x) + delta, against the dense oracle

    y_n = base(x_n) + Σ_i w_{n,i} · x_n ΔW_iᵀ,    ΔW_i = the dense (d_out, d_in) matrix of routed block i

(built with `blocks_to_dense`, differentiable): outputs with and without autograd (the no-grad path
adds in place, the differentiable one out of place), gradients w.r.t. the input, the stack and a
working copy, ragged grids, the fold of a one-route batch into the base weight, deep copies and traces.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from seta.core.blocks import blocks_to_dense
from seta.models import SparseBlockLinear
from seta.models.fold import can_fold, fold_layer, unfold_layer

ROUTES = {  # name -> (positions, weights (B=3, k) | None) over 5 allocated blocks
    "whole-stack": (torch.arange(5), None),
    "uniform": (torch.tensor([1, 3, 4]), torch.tensor([[0.5, 2.0, -1.0]] * 3)),
    "per-example": (torch.tensor([0, 1, 3]), torch.tensor([[0.3, 0.0, 1.0], [0.7, 0.2, 0.0], [1.0, 1.0, 1.0]])),
}
SHAPES = {"even": (32, 48, 16), "ragged": (30, 44, 16)}  # (d_out, d_in, b): b | both, and b | neither


def _layer(route="per-example", shape="even", dtype=torch.float32, seed=0) -> SparseBlockLinear:
    d_out, d_in, b = SHAPES[shape]
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(d_in, d_out).to(dtype)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d_out, d_in, generator=g))
        base.bias.copy_(torch.randn(d_out, generator=g))
    layer = SparseBlockLinear(base, block_size=b, dtype=dtype)
    layer.add_blocks(torch.tensor([0, 2, 3, 4, 5]))
    layer.write(torch.arange(5), 0.3 * torch.randn(5, b, b, generator=g, dtype=dtype))
    positions, weights = ROUTES[route]
    layer.set_route(positions, None if weights is None else weights.to(dtype))
    return layer


def _x(layer, seed=1, requires_grad=False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, layer.in_features, generator=g, dtype=layer.blocks.dtype)
    return x.requires_grad_(requires_grad)


def _oracle(layer, x, routed_blocks):
    """base(x) + Σ_i w_{n,i} x ΔW_iᵀ from the dense ΔW_i of `routed_blocks` (k, b, b), differentiable."""
    pos, w = layer.get_route()
    rows, cols = layer._rows[pos], layer._cols[pos]
    dense = torch.stack([blocks_to_dense(routed_blocks[i:i + 1], rows[i:i + 1], cols[i:i + 1], layer.grid)
                         for i in range(pos.numel())])  # (k, d_out, d_in)
    w = torch.ones(x.shape[0], pos.numel(), dtype=x.dtype) if w is None else w.to(x.dtype)
    return layer.base_layer(x) + torch.einsum("ntj,nk,koj->nto", x, w, dense)


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_grad_output_equals_the_dense_oracle(route, shape, dtype):
    layer = _layer(route, shape, dtype)
    x = _x(layer)
    with torch.no_grad():
        expected = _oracle(layer, x, layer.read(layer.get_route()[0]))
        got = layer(x)
        again = layer(x)  # the second call reads what the first built
    assert not torch.allclose(expected, layer.base_layer(x))  # the route changes the output
    torch.testing.assert_close(got, expected, **_tol(dtype))
    assert torch.equal(again, got)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), expected, **_tol(dtype))


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_outputs_and_gradients_equal_the_dense_oracle(route, shape):
    layer = _layer(route, shape, torch.float64)
    pos = layer.get_route()[0]
    x = _x(layer, requires_grad=True)
    y = layer(x)
    g_out = torch.randn_like(y)
    gx, gstack = torch.autograd.grad(y, (x, layer.blocks), g_out)
    leaf = layer.blocks.detach()[pos].clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = _oracle(layer, x_ref, leaf)
    gx_ref, gblocks_ref = torch.autograd.grad(y_ref, (x_ref, leaf), g_out)
    torch.testing.assert_close(y, y_ref, **_tol(torch.float64))
    torch.testing.assert_close(gx, gx_ref, **_tol(torch.float64))
    torch.testing.assert_close(gstack[pos], gblocks_ref, **_tol(torch.float64))
    unrouted = torch.ones(layer.n_blocks, dtype=torch.bool)
    unrouted[pos] = False
    assert bool((gstack[unrouted] == 0).all())  # blocks outside the route get no gradient
    assert bool((gblocks_ref.abs().sum((1, 2)) > 0).all())


def test_gradients_reach_the_working_copy_as_the_oracle_says():
    layer = _layer("per-example", "even", torch.float64)
    train = layer.begin_training(torch.tensor([1, 2]))  # stack positions 1 and 2; the route holds 0, 1, 3
    with torch.no_grad():
        train.mul_(-2.0)  # the working copy's values differ from the stack's
    x = _x(layer)
    y = layer(x)
    g_out = torch.randn_like(y)
    (g_train,) = torch.autograd.grad(y, (train,), g_out)
    routed = layer.read(layer.get_route()[0]).detach().clone().requires_grad_(True)  # stack 0, copy 1, stack 3
    (g_ref,) = torch.autograd.grad(_oracle(layer, x, routed), (routed,), g_out)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _oracle(layer, x, routed), **_tol(torch.float64))
    torch.testing.assert_close(y, _oracle(layer, x, routed), **_tol(torch.float64))
    torch.testing.assert_close(g_train[0], g_ref[1], **_tol(torch.float64))  # position 1: routed and trained
    assert bool((g_train[1] == 0).all())  # position 2: trained, not routed


def test_bf16_base_output_under_autocast_is_close_to_the_oracle():
    layer = _layer("per-example")
    x = _x(layer)
    with torch.no_grad():
        expected = _oracle(layer, x, layer.read(layer.get_route()[0]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = layer(x)
        with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            slow = layer(x).detach()
    assert fast.dtype == slow.dtype == torch.bfloat16
    scale = float(expected.abs().max())
    for got in (fast, slow):
        torch.testing.assert_close(got.float(), expected, rtol=0, atol=4 * 2**-8 * scale)


@pytest.mark.parametrize("route", ["whole-stack", "uniform"])
def test_a_folded_route_gives_the_oracle_and_unfolding_restores_the_weight(route):
    layer = _layer(route)
    x = _x(layer)
    weight = layer.base_layer.weight.detach().clone()
    with torch.no_grad():
        expected = _oracle(layer, x, layer.read(layer.get_route()[0]))
        assert can_fold(layer)
        fold_layer(layer)
        try:
            folded = layer(x)
            base_alone = layer.base_layer(x)  # W + ΔW: the route is in the weight
        finally:
            unfold_layer(layer)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base_alone, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(layer.base_layer.weight, weight)  # bit for bit
    assert not can_fold(_layer("per-example"))  # rows of a mixed batch differ: no single W'


def test_a_deep_copy_computes_with_its_own_blocks():
    layer = _layer("whole-stack")
    x = _x(layer)
    with torch.no_grad():
        original = layer(x)  # the original's no-grad tensors are built
        twin = copy.deepcopy(layer)
        for _ in range(3):  # in-place writes to the twin's stack only
            twin.blocks.mul_(2.0)
        expected = _oracle(twin, x, twin.read(twin.get_route()[0]))
        torch.testing.assert_close(twin(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer(x), original, rtol=0, atol=0)


def test_a_trace_records_the_delta():
    layer = _layer("per-example")
    x, other = _x(layer, seed=1), _x(layer, seed=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values
        traced = torch.jit.trace(layer, x, check_trace=False)
        expected = _oracle(layer, other, layer.read(layer.get_route()[0]))
        torch.testing.assert_close(traced(other), expected, rtol=1e-5, atol=1e-5)
