"""The no-grad path of the adapter layer (in place into the base output, per-route tensors built once)
against the training path (`block_delta` with autograd, itself tested against the dense reference)."""

from __future__ import annotations

import pytest
import torch

from models_helpers import VOCAB, lm_batch, randomise_blocks, tiny_seta

ROUTES = {  # name -> how to set it on a two-task model (2 examples per batch)
    "expert": lambda s: s.set_task(1),
    "top1-mixed": lambda s: s.set_routing(torch.tensor([[1.0, 0.0], [0.0, 1.0]])),
    "top1-same": lambda s: s.set_routing(torch.tensor([[0.0, 1.0], [0.0, 1.0]])),
    "soft": lambda s: s.set_routing(torch.tensor([[0.3, 0.7], [0.6, 0.4]])),
    "soft-same": lambda s: s.set_routing(torch.tensor([[0.3, 0.7], [0.3, 0.7]])),
    "null-row": lambda s: s.set_routing(torch.tensor([[0.0, 1.0], [0.0, 0.0]])),
}


def _two_task(arch="llama", nf4=False, block_size=16):
    seta = tiny_seta(arch, nf4, block_size=block_size)
    n = seta.index.n_blocks
    seta.allocate(0, torch.linspace(1, 2, n, dtype=torch.float64), ratio=0.15, rule="raw")
    scores = torch.linspace(2, 1, n, dtype=torch.float64)
    scores[seta.registry.expert(0)[::2]] = 5.0  # shared blocks
    seta.allocate(1, scores, ratio=0.15, rule="raw")
    randomise_blocks(seta, seta.allocated_ids(), seed=5)
    return seta


def _both_paths(seta, batch):
    x = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        fast = seta(**x).logits
    with torch.enable_grad():
        slow = seta(**x).logits.detach()  # the training path (autograd), same route
    return fast, slow


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_inference_path_equals_training_path(variant, route):
    arch, nf4 = variant
    seta = _two_task(arch, nf4)
    batch = lm_batch(seed=4)
    with seta.no_experts(), torch.no_grad():
        base = seta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ROUTES[route](seta)
    fast, slow = _both_paths(seta, batch)
    assert not torch.allclose(fast, base, atol=1e-3)  # the route changes the output
    tol = dict(rtol=1e-4, atol=1e-5) if not nf4 else dict(rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(fast, slow, **tol)
    if route == "null-row":
        torch.testing.assert_close(fast[1], base[1], rtol=0, atol=0)


def test_ragged_edges_fall_back_and_agree():
    """b = 24 divides neither 64 nor 128 nor 32: every layer has ragged blocks."""
    seta = _two_task(block_size=24)
    assert all(l.grid.out_features % 24 for l in seta.layers.values())
    for route in ("expert", "top1-mixed", "soft"):
        ROUTES[route](seta)
        fast, slow = _both_paths(seta, lm_batch(seed=5))
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_cached_route_tensors_follow_every_change():
    """The no-grad path caches per-route tensors; each way of changing blocks or route must show."""
    seta = _two_task()
    batch = lm_batch(seed=6)
    seta.set_routing(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    first, _ = _both_paths(seta, batch)  # builds the caches
    # 1. an optimizer step (in place on the stacked Parameters)
    opt = torch.optim.SGD(seta.block_parameters(), lr=0.5)
    seta(**batch).loss.backward()
    opt.step()
    fast, slow = _both_paths(seta, batch)
    assert not torch.allclose(fast, first)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    # 2. set_blocks (indexed assignment under no_grad)
    randomise_blocks(seta, seta.registry.expert(0), seed=9, scale=0.5)
    fast, slow = _both_paths(seta, batch)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    # 3. growth: new Parameters, new positions appended, the route kept
    seta.add_blocks(torch.arange(seta.index.n_blocks)[:40])
    fast2, slow2 = _both_paths(seta, batch)
    torch.testing.assert_close(fast2, fast, rtol=0, atol=0)  # new blocks are zero and not routed
    torch.testing.assert_close(fast2, slow2, rtol=1e-4, atol=1e-5)
    # 4. a scoped route and its restoration
    with seta.use_expert(seta.registry.expert(0)):
        inner, inner_slow = _both_paths(seta, batch)
    torch.testing.assert_close(inner, inner_slow, rtol=1e-4, atol=1e-5)
    after, _ = _both_paths(seta, batch)
    torch.testing.assert_close(after, fast2, rtol=0, atol=0)
    # 5. load_state_dict (copy_ into the Parameters)
    state = {k: torch.zeros_like(v) for k, v in seta.state_dict().items() if k.endswith(".blocks")}
    seta.load_state_dict(state, strict=False)
    with seta.no_experts(), torch.no_grad():
        base = seta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    fast, _ = _both_paths(seta, batch)
    torch.testing.assert_close(fast, base, rtol=0, atol=0)


def test_route_cached_in_inference_mode_still_trains():
    seta = _two_task()
    seta.set_task(1)
    with torch.inference_mode():
        seta(**lm_batch())  # builds the per-route caches under inference mode
    seta(**lm_batch()).loss.backward()  # the cached index tensors are usable by autograd
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in seta.block_parameters())


def _greedy_reference(seta, ids, mask, n):
    """Greedy decoding without a KV cache, every step a full forward on the training path."""
    ids, mask = ids.clone(), mask.clone()
    out = []
    for _ in range(n):
        with torch.enable_grad():
            logits = seta(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1].detach()
        nxt = logits.argmax(-1, keepdim=True)
        out.append(logits)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids, torch.stack(out, 1)


@pytest.mark.parametrize("route", ["top1-mixed", "soft", "null-row"])
def test_routed_generation_equals_slow_greedy_reference(route):
    seta = _two_task("qwen3")
    seta.eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(4, VOCAB, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    ROUTES[route](seta)
    ref_ids, ref_logits = _greedy_reference(seta, ids, mask, 8)
    with torch.inference_mode():
        out = seta.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0,
                            output_scores=True, return_dict_in_generate=True)
    assert torch.equal(out.sequences, ref_ids)
    torch.testing.assert_close(torch.stack(out.scores, 1), ref_logits, rtol=1e-4, atol=1e-4)


def test_mixed_route_with_expanded_batch():
    """generate() repeats each example in place (num_return_sequences): each copy keeps its route."""
    seta = _two_task("llama")
    seta.eval()
    ids = torch.randint(4, VOCAB, (2, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    ROUTES["top1-mixed"](seta)
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, pad_token_id=0)
    with torch.inference_mode():
        once = seta.generate(**kw, do_sample=False)
        twice = seta.generate(**kw, do_sample=True, top_k=1, num_return_sequences=2)  # top_k=1: greedy
    assert torch.equal(twice[0::2], once) and torch.equal(twice[1::2], once)
    with pytest.raises(ValueError, match="integer multiple"), torch.no_grad():
        seta(input_ids=ids[:1].repeat(3, 1))


def test_a_scoped_or_cleared_route_leaves_no_delta_behind():
    seta = _two_task()
    batch = lm_batch()
    with seta.no_experts(), torch.no_grad():
        base = seta(**batch).logits
    seta.set_routing(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    with torch.no_grad():
        routed = seta(**batch).logits
        with seta.use_expert(seta.registry.expert(0)):
            scoped = seta(**batch).logits
        assert torch.equal(seta(**batch).logits, routed)  # the route before the scope is back
        seta.clear_route()
        cleared = seta(**batch).logits
    assert not torch.allclose(scoped, routed)
    assert torch.equal(cleared, base)
