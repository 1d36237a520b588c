"""The layer computes its base output with `F.linear` directly only where calling the base module
would run exactly that (a plain `nn.Linear`, no hooks, forward not replaced, no trace); anything
that changes what the call does (a hook of the layer's own or a global one, an accelerate-style
replaced forward, a subclass) is honoured through the module call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seta.models.layer as layer_module
from seta.models.layer import SparseBlockLinear, _plain_linear


def _layer(cls: type = nn.Linear) -> SparseBlockLinear:
    """The same layer every call (seeded): base weights, blocks and the route's weights."""
    torch.manual_seed(0)
    layer = SparseBlockLinear(cls(32, 16), 8)
    layer.add_blocks(torch.arange(0, 8, 3))
    with torch.no_grad():
        layer.blocks.normal_()
    layer.set_route(torch.arange(layer.n_blocks), torch.rand(2, layer.n_blocks))  # a mixed route
    return layer


class Doubling(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_what_the_base_call_would_do_is_what_the_layer_adds_to(grad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32)

    def out(layer):
        with torch.set_grad_enabled(grad):
            return layer(x)

    plain = _layer()
    assert _plain_linear(plain.base_layer)
    delta = out(plain) - plain.base_layer(x)  # the route's delta, whichever way the base ran

    hooked = _layer()
    hooked.base_layer.register_forward_hook(lambda m, inp, y: y + 1.0)
    assert not _plain_linear(hooked.base_layer)
    torch.testing.assert_close(out(hooked), hooked.base_layer(x) + delta)  # base(x) + 1 + delta

    pre = _layer()
    pre.base_layer.register_forward_pre_hook(lambda m, inp: (inp[0] * 0,))
    torch.testing.assert_close(out(pre), pre.base_layer.bias.expand(2, 3, 16) + delta)

    replaced = _layer()  # accelerate puts a wrapper in the instance's __dict__
    original = replaced.base_layer.forward
    replaced.base_layer.forward = lambda inp: original(inp) - 3.0
    assert not _plain_linear(replaced.base_layer)
    torch.testing.assert_close(out(replaced), plain.base_layer(x) - 3.0 + delta)

    views = _layer()  # FSDP (flat parameters) sets the weight as a plain tensor attribute, not a Parameter
    weight = views.base_layer._parameters.pop("weight")
    views.base_layer.weight = weight.detach() * 0.5
    assert not _plain_linear(views.base_layer)
    torch.testing.assert_close(out(views), nn.functional.linear(x, weight * 0.5, plain.base_layer.bias) + delta)

    sub = _layer(Doubling)
    assert not _plain_linear(sub.base_layer)
    torch.testing.assert_close(out(sub), 2 * plain.base_layer(x) + delta)


def test_a_global_module_hook_sees_the_base_call():
    layer = _layer()
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, inp, y: seen.append(type(m)))
    try:
        assert not _plain_linear(layer.base_layer)
        with torch.no_grad():
            layer(torch.randn(2, 1, 32))
    finally:
        handle.remove()
    assert seen == [nn.Linear, SparseBlockLinear]  # the base's call ran inside the layer's
    assert _plain_linear(layer.base_layer)


def test_the_plain_path_skips_the_module_call_and_a_patched_class_forward_is_honoured(monkeypatch):
    layer = _layer()
    x = torch.randn(2, 1, 32)
    calls = []
    impl = nn.Linear._call_impl
    monkeypatch.setattr(nn.Linear, "_call_impl", lambda self, *a, **kw: calls.append(1) or impl(self, *a, **kw))
    with torch.no_grad():
        expected = layer(x)
        assert calls == []  # F.linear directly: the base module's call did not run
        layer.base_layer.register_forward_hook(lambda m, inp, y: None)  # a hook that changes nothing
        torch.testing.assert_close(layer(x), expected)
        assert calls == [1]  # with a hook, through the module call
    monkeypatch.setattr(nn.Linear, "forward", lambda self, inp: torch.zeros(*inp.shape[:-1], self.out_features))
    fresh = _layer()
    assert not _plain_linear(fresh.base_layer)
    with torch.no_grad():
        fresh.blocks.zero_()  # no delta: the output is the base call's alone
        assert torch.equal(fresh(x), torch.zeros(2, 1, 16))  # the patched forward's zeros, not F.linear's
    assert layer_module._LINEAR_FORWARD is not nn.Linear.forward
