"""The route plan of `SparseBlockLinear`: after every change of what a plan was built from, the no-grad
forward (in place, from tensors kept between calls) and the differentiable one equal the dense
reference, base + x ΔWᵀ of the routed blocks (`dense_delta`), with the per-example weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seta.models import SparseBlockLinear

D_IN, D_OUT, B = 48, 32, 16  # a 2 x 3 grid of blocks
ROUTES = {  # name -> (positions, weights (2, k) | None) over the 4 allocated blocks
    "whole-stack": (torch.arange(4), None),  # unweighted: the no-grad blocksᵀ are a view of the stack
    "uniform": (torch.tensor([1, 3]), torch.tensor([[0.5, 2.0], [0.5, 2.0]])),  # folded into a copy
    "per-example": (torch.tensor([0, 1, 3]), torch.tensor([[0.3, 0.0, 1.0], [0.7, 0.2, 0.0]])),
}


def _layer(route: str) -> SparseBlockLinear:
    torch.manual_seed(0)
    layer = SparseBlockLinear(nn.Linear(D_IN, D_OUT), block_size=B)
    layer.add_blocks(torch.tensor([0, 2, 4, 5]))
    layer.write(torch.arange(4), 0.3 * torch.randn(4, B, B))
    layer.set_route(*ROUTES[route])
    return layer


def _x(layer) -> torch.Tensor:
    return torch.randn(2, 5, D_IN, generator=torch.Generator().manual_seed(1)).to(layer.blocks.dtype)


def _reference(layer, x):
    """base(x) + Σ_i w_{n,i} · x ΔW_iᵀ, ΔW_i (d_out, d_in) the dense delta of routed block i."""
    pos, w = layer.get_route()
    dw = torch.stack([layer.dense_delta(p[None]) for p in pos]).to(x.dtype)  # (k, d_out, d_in)
    w = torch.ones(x.shape[0], pos.numel()) if w is None else w
    with torch.no_grad():
        return layer.base_layer(x) + torch.einsum("ntj,nk,koj->nto", x, w.to(x.dtype), dw)


def _check(layer):
    """The no-grad forward (in place, from tensors kept between calls) and the differentiable one
    both equal the reference."""
    x = _x(layer)
    with torch.no_grad():
        got = layer(x)
    tol = dict(rtol=1e-12, atol=1e-12) if x.dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, _reference(layer, x), **tol)
    torch.testing.assert_close(layer(x).detach(), _reference(layer, x), **tol)


def _grow(layer):
    layer.add_blocks(torch.tensor([1, 3]))  # a new Parameter (version 0); the route keeps its positions
    layer.write(layer.get_route()[0], 0.3 * torch.randn(layer.get_route()[0].numel(), B, B))


def _optimizer_step(layer):
    opt = torch.optim.AdamW([layer.blocks], lr=0.1, weight_decay=0.0)
    layer(_x(layer)).square().sum().backward()  # the differentiable path, same plan
    opt.step()


CHANGES = {
    "growth": _grow,
    "set_blocks": lambda l: l.write(torch.tensor([1, 3]), torch.randn(2, B, B)),  # what set_blocks calls
    "optimizer-step": _optimizer_step,
    "to-float64": lambda l: l.to(torch.float64),
    "load_state_dict": lambda l: l.load_state_dict({k: 2 * v if k == "blocks" else v
                                                    for k, v in l.state_dict().items()}),
    "load_state_dict-assign": lambda l: l.load_state_dict({k: 2 * v if k == "blocks" else v
                                                           for k, v in l.state_dict().items()}, assign=True),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_no_grad_forward_follows_each_change(change, route):
    layer = _layer(route)
    _check(layer)  # builds the no-grad tensors
    before = layer(_x(layer)).detach()
    CHANGES[change](layer)
    _check(layer)
    if change != "to-float64":
        assert not torch.allclose(layer(_x(layer)), before)  # the change shows in the output


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_grad_forward_follows_the_working_copy(route):
    layer = _layer(route)
    _check(layer)
    train = layer.begin_training(torch.tensor([1, 2]))  # stack positions 1, 2
    opt = torch.optim.SGD([train], lr=0.5)
    layer(_x(layer)).square().sum().backward()
    opt.step()
    _check(layer)  # reads the working copy (the differentiable path: no in-place path with one)
    with layer.stored_values():
        _check(layer)  # the stack as training began, in place again
    layer.end_training()
    _check(layer)  # the stack with the trained values written back
    assert torch.equal(layer.blocks[1:3], train.detach())


def test_the_same_route_set_again_gives_the_same_output():
    layer = _layer("uniform")
    x = _x(layer)
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(layer(x), first)  # the second call reads what the first built
        layer.restore_route(layer.get_route())
        assert torch.equal(layer(x), first)
        layer.set_route(*ROUTES["uniform"])
        assert torch.equal(layer(x), first)
        layer.set_route(None)
        assert torch.equal(layer(x), layer.base_layer(x))  # no route: the base alone
