"""Routed generation that continues from the routing pass's KV cache when every row routes to the null
expert, against the reference (a fresh prefill), on tiny Llama and Qwen3, fp32 and NF4."""

from __future__ import annotations

import pytest
import torch

from models_helpers import VOCAB, randomise_blocks, two_task_seta


def _routed_model(arch, nf4):
    seta = two_task_seta(arch, nf4)
    randomise_blocks(seta, seta.allocated_ids(), seed=3, scale=0.5)
    g = torch.Generator().manual_seed(0)
    d = seta.router.gate.feature_dim
    for t in (0, 1):
        seta.router.observe(t, torch.randn(40, d, generator=g))
        seta.router.calibrate_null(t, torch.randn(10, d, generator=g))
    with torch.no_grad():
        seta.router.gate.heads[1].weight.normal_(0, 1.0, generator=g)
    return seta.eval()


def _prompts():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    ids[1, :3] = 0
    return ids, mask


@pytest.mark.parametrize("case", ["null", "routed", "fixed"])
def test_null_route_reuses_the_routing_prefill_token_identically(variant, case):
    arch, nf4 = variant
    seta = _routed_model(arch, nf4)
    ids, mask = _prompts()
    kw = dict(attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    thresholds = dict(seta.router.thresholds)
    if case == "null":  # every row farther than tau from every task: the base model alone
        seta.router.thresholds = {t: -1.0 for t in thresholds}
    else:  # never null
        seta.router.thresholds = {t: float("inf") for t in thresholds}
    calls = []
    real = seta.model.generate

    def spy(*a, **k):
        calls.append("past_key_values" in k or "cache" in k)
        return real(*a, **k)

    seta.model.generate = spy
    with torch.inference_mode():
        if case == "fixed":
            seta.route_batch(ids, mask, tasks=[1, 1, 1])
        else:
            seta.route_batch(ids, mask, mode="top1", null=True)
        fast = seta.generate(ids, **kw)
        route = [layer.get_route() for layer in seta.layers.values()]
        # reference: the same route, a fresh prefill (what generate did before the reuse)
        if case == "fixed":
            seta.route_batch(ids, mask, tasks=[1, 1, 1])
        else:
            seta.route_batch(ids, mask, mode="top1", null=True)
        seta._null_prefill = None
        slow = seta.generate(ids, **kw)
        with seta.no_experts():
            base = seta.generate(ids, **kw)
    assert calls == [case == "null", False, False]
    assert torch.equal(fast, slow)
    if case == "null":
        assert all(r is None for r in route) and torch.equal(fast, base)
    else:
        assert any(r is not None for r in route)


def test_the_kept_prefill_is_used_once_and_only_for_the_same_batch():
    seta = _routed_model("llama", False)
    seta.router.thresholds = {t: -1.0 for t in seta.router.thresholds}
    ids, mask = _prompts()
    kw = dict(attention_mask=mask, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        seta.route_batch(ids, mask, null=True)
        assert seta._null_prefill is not None
        other = ids.clone()
        other[0, -1] = (other[0, -1] + 1) % VOCAB
        a = seta.generate(other, **kw)  # another batch: a fresh prefill, and the kept one is dropped
        assert seta._null_prefill is None
        with seta.no_experts():
            assert torch.equal(a, seta.generate(other, **kw))
        seta.route_batch(ids, mask, null=False)  # no null routing: nothing kept
        assert seta._null_prefill is None
