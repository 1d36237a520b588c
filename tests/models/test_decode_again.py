"""The layer's next-decoding-step path (`SparseBlockLinear._decode_again`: the kernel call of the
plan's last no-grad forward again, with only the checks whose answers can change) against the full
path with the torch ops, over any sequence of what can change between steps: the batch and tokens,
the stack's values, the route, autocast, gradients, the kernel switched off."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import seta.models.cpu_kernel as ck
from seta.models.layer import SparseBlockLinear

needs_kernel = pytest.mark.skipif(ck.library() is None, reason="the CPU kernel could not be built here")


def _layer(seed: int = 0) -> SparseBlockLinear:
    torch.manual_seed(seed)
    layer = SparseBlockLinear(nn.Linear(48, 32), 8)
    layer.add_blocks(torch.arange(0, 24, 2))
    with torch.no_grad():
        layer.blocks.normal_()
    return layer


def _reference(layer: SparseBlockLinear, x: torch.Tensor) -> torch.Tensor:
    """base(x) + Σ_i w_{n,i} ΔW_i x from the dense ΔW of each routed block (no kernel, no plan tensors)."""
    positions, weights = layer.get_route()
    w = torch.ones(x.shape[0], positions.numel()) if weights is None else weights  # (B, k)
    if w.shape[0] != x.shape[0]:
        w = w.repeat_interleave(x.shape[0] // w.shape[0], 0)
    out = layer.base_layer(x)
    for i, p in enumerate(positions.tolist()):
        dense = layer.dense_delta(torch.tensor([p]))  # (d_out, d_in)
        out = out + w[:, i].view(-1, *[1] * (x.dim() - 1)) * (x @ dense.t())
    return out


OPS = st.sampled_from(["step", "step", "step", "other batch", "prefill", "write blocks", "new route",
                       "one expert", "autocast", "grad", "kernel off", "no tokens"])


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(OPS, min_size=1, max_size=14), seed=st.integers(0, 1000))
def test_property_any_sequence_of_steps_equals_the_reference(ops, seed):
    layer = _layer(seed)
    g = torch.Generator().manual_seed(seed)
    k = layer.n_blocks
    layer.set_route(torch.arange(k), torch.rand(4, k, generator=g))  # a mixed batch of 4
    short = []  # what `_decode_again` answered, per call
    real = SparseBlockLinear._decode_again

    def spy(self, *a):
        short.append(real(self, *a))
        return short[-1]

    previous, kernel_batch = None, 4
    for op in ["step", *ops]:
        batch, tokens = 4, 1
        if op == "other batch":
            batch = 8  # twice the route's examples: weights repeated (beams)
        elif op == "prefill":
            tokens = ck.MAX_TOKENS // 4 + 1  # over MAX_TOKENS: the torch ops
        elif op == "no tokens":
            tokens = 0
        elif op == "write blocks":
            with torch.no_grad():
                layer.blocks.mul_(-0.5)  # in place: the version counter moves
        elif op == "new route":
            layer.set_route(torch.arange(0, k, 2), torch.rand(4, len(range(0, k, 2)), generator=g))
        elif op == "one expert":
            layer.set_route(torch.arange(1, k, 3))
        x = torch.randn(batch, tokens, 48, generator=g)
        expected = _reference(layer, x)
        extra = {"autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16), "kernel off": ck.disabled}.get(
            op, contextlib.nullcontext)
        short.clear()
        with torch.set_grad_enabled(op == "grad"), extra(), mock.patch.object(SparseBlockLinear, "_decode_again", spy):
            out = layer(x)
        if op == "autocast":  # bf16 matmuls: the delta in bf16 too
            torch.testing.assert_close(out.float(), expected, rtol=5e-2, atol=1e-1)
        else:
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
            assert out.requires_grad == (op == "grad")
        if op == "step" and previous == "step":  # nothing changed since a kernel step: the short path took it
            assert short == [True]
        batch_changed = batch != kernel_batch  # rows other than the last kernel step's (8 after 4, or 4 after 8)
        if op in ("write blocks", "autocast", "grad", "kernel off", "prefill", "no tokens") or batch_changed:
            assert True not in short  # something it must not skip changed: the full path decided
        previous = op
        if op in ("step", "other batch", "write blocks", "new route", "one expert", "no tokens"):  # the kernel took it
            kernel_batch = batch


@needs_kernel
def test_the_second_step_takes_the_short_path_and_a_swapped_weight_never_reaches_the_c_loop(monkeypatch):
    layer = _layer()
    layer.set_route(torch.arange(layer.n_blocks), torch.rand(2, layer.n_blocks))
    x = torch.randn(2, 1, 48)
    runs = []
    with torch.no_grad():
        layer(x)
        plan = layer._plan
        assert plan.decode[-1] is plan.no_grad.fused.run  # the kernel's run, recorded with the checks
        plan.decode = (*plan.decode[:-1], lambda *a: runs.append(a[3:]) or False)
        layer(x)  # the patched run reports "not applied": the full path adds the delta instead
    assert runs == [(2, 1)]  # n tokens, tokens per example
    torch.testing.assert_close(layer(x), _reference(layer, x), rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    with torch.no_grad():
        layer.base_layer.weight = nn.Parameter(torch.randn(40, 48))  # another output width than the grid's
        layer.base_layer.bias = nn.Parameter(torch.zeros(40))
        with pytest.raises(ValueError, match="do not fit"):  # the full path's check, not a write out of bounds
            layer(x)
