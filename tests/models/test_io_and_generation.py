"""Save/load round-trip, generation with a route fixed at prefill, merge for deployment."""

from __future__ import annotations

import json

import pytest
import torch

from seta.models import CONFIG_NAME, SetaModel, build_tiny_model
from models_helpers import VOCAB, fresh_base, lm_batch, randomise_blocks, two_task_seta


def _trained_two_task(arch="llama", nf4=False):
    seta = two_task_seta(arch, nf4, shared_score=5.0)
    randomise_blocks(seta, seta.allocated_ids(), seed=7)
    g = torch.Generator().manual_seed(0)
    for t in (0, 1):
        z = torch.randn(12, 64, generator=g) + 3 * t
        seta.router.observe(t, z)
        seta.router.calibrate_null(t, z, quantile=0.9)
        with torch.no_grad():
            for p in seta.router.gate.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        ids = seta.registry.expert(t)
        seta.update_anchors(ids, torch.rand(ids.numel(), 16, 16, generator=g))
    return seta


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_save_load_round_trip_exact(variant, tmp_path):
    arch, nf4 = variant
    seta = _trained_two_task(arch, nf4)
    batch = lm_batch(seed=5)
    probs = torch.tensor([[0.6, 0.4], [0.0, 1.0]])
    outs = {}
    for key, ctx in {"t0": lambda m: m.use_expert(m.registry.expert(0)),
                     "mix": lambda m: m.use_routing(probs), "none": lambda m: m.no_experts()}.items():
        with ctx(seta):
            outs[key] = _logits(seta, batch)
    z = torch.randn(5, 64)
    gate_logits = seta.router.gate(z).detach()
    seta.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert cfg["expert_config"]["block_size"] == 16 and cfg["router"]["tasks"] == [0, 1]

    loaded = SetaModel.from_pretrained(fresh_base(arch, nf4), tmp_path)
    for key, ctx in {"t0": lambda m: m.use_expert(m.registry.expert(0)),
                     "mix": lambda m: m.use_routing(probs), "none": lambda m: m.no_experts()}.items():
        with ctx(loaded):
            assert torch.equal(_logits(loaded, batch), outs[key]), key
    assert torch.equal(loaded.router.gate(z), gate_logits)
    assert loaded.registry.to_dict() == seta.registry.to_dict()
    assert torch.equal(loaded.anchors.ids, seta.anchors.ids)
    assert torch.equal(loaded.anchors.fisher, seta.anchors.fisher)
    assert torch.equal(loaded.anchors.values, seta.anchors.values)
    assert loaded.router.thresholds == seta.router.thresholds
    assert torch.equal(loaded.router.distances(z), seta.router.distances(z))
    for name, layer in seta.layers.items():
        assert torch.equal(loaded.layers[name].local_ids, layer.local_ids)
    assert [p.requires_grad for p in loaded.trainable_parameters()] == [True] * len(loaded.trainable_parameters())


def test_load_onto_other_shape_is_a_clear_error(tmp_path):
    _trained_two_task("llama").save_pretrained(tmp_path)
    other = build_tiny_model("llama", vocab_size=VOCAB, intermediate_size=96)
    with pytest.raises(ValueError, match="base of another shape.*mlp"):
        SetaModel.from_pretrained(other, tmp_path)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        SetaModel.from_pretrained(fresh_base(), tmp_path / "nothing")


def _generate(model, batch, n=6):
    with torch.no_grad():
        return model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              max_new_tokens=n, do_sample=False, use_cache=True, pad_token_id=0)


@pytest.mark.parametrize("arch,nf4", [("llama", False), ("qwen3", True)])
def test_generation_with_route_fixed_at_prefill(arch, nf4):
    seta = _trained_two_task(arch, nf4)
    seta.eval()
    g = torch.Generator().manual_seed(1)
    prompt = {"input_ids": torch.randint(4, VOCAB, (2, 5), generator=g), "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    prompt["attention_mask"][1, 0] = 0  # left padding
    with seta.no_experts():
        base_out = _generate(seta, prompt)
    with seta.use_expert(seta.registry.expert(1)):
        fixed_out = _generate(seta, prompt)
    assert not torch.equal(fixed_out, base_out)  # the expert changes the continuation
    with seta.use_routing(torch.tensor([[0.0, 1.0], [0.0, 1.0]])):  # top-1 on task 1 for both
        assert torch.equal(_generate(seta, prompt), fixed_out)
    with seta.use_routing(torch.zeros(2, 2)):  # null expert for both: the base model
        assert torch.equal(_generate(seta, prompt), base_out)
    with seta.use_routing(torch.tensor([[0.0, 1.0], [0.0, 0.0]])):  # per example: expert 1, null
        mixed = _generate(seta, prompt)
    assert torch.equal(mixed[0], fixed_out[0]) and torch.equal(mixed[1], base_out[1])
    # oracle routing through the gate API, two return sequences per prompt (batch expanded in place)
    probs = seta.route_batch(prompt["input_ids"], prompt["attention_mask"], tasks=[1, 1])
    assert probs.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    with torch.no_grad():
        twice = seta.generate(**prompt, max_new_tokens=6, do_sample=True, top_k=1, num_return_sequences=2,
                              pad_token_id=0)  # top_k=1 sampling is greedy
    assert torch.equal(twice[0::2], fixed_out) and torch.equal(twice[1::2], fixed_out)


def test_merge_and_unload_equals_routed_model():
    seta = _trained_two_task("qwen3")
    batch = lm_batch(seed=2)
    with seta.use_expert(seta.registry.expert(1)):
        routed = _logits(seta, batch)
    merged = seta.merge_and_unload(seta.registry.expert(1))
    assert not any("blocks" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, batch), routed, rtol=1e-4, atol=1e-5)
    four = _trained_two_task("llama", nf4=True)
    with pytest.raises(ValueError, match="dense base"):
        four.merge_and_unload(four.registry.expert(0))
    assert len(four.layers) == 14 and all(".base_layer" in n for n, _ in four.model.named_modules() if n.endswith("q_proj.base_layer"))
    with four.use_expert(four.registry.expert(0)):
        four(**batch)  # still a working SetaModel


def test_routing_features_ignore_experts_and_padding():
    seta = _trained_two_task("llama")
    batch = lm_batch(seed=3)
    prompt_mask = (batch["labels"] == -100).long()
    seta.set_task(0)
    z = seta.routing_features(batch["input_ids"], batch["attention_mask"], prompt_mask)
    with seta.no_experts():
        h = seta.model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    m = (batch["attention_mask"] * prompt_mask).float()
    ref = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    torch.testing.assert_close(z, ref)
    # the route in force is untouched by feature extraction
    seta.set_task(0)
    route = [l.get_route() for l in seta.layers.values()]
    seta.routing_features(batch["input_ids"])
    assert all(l.get_route() is r for l, r in zip(seta.layers.values(), route))


def test_soft_routing_coefficients_are_sums_over_experts():
    seta = _trained_two_task("llama")
    s0, s1 = seta.registry.expert(0), seta.registry.expert(1)
    shared = s0[torch.isin(s0, s1)]
    assert shared.numel()
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.0, 0.0]])
    seta.set_routing(probs)
    expect = torch.zeros(3, seta.index.n_blocks)
    expect[:, s0] += probs[:, :1]
    expect[:, s1] += probs[:, 1:]
    for name, layer in seta.layers.items():
        route = layer.get_route()
        got = torch.zeros(3, seta.index.n_blocks)
        if route is not None:
            pos, w = route
            got[:, seta.index.to_global(name, layer.local_ids[pos])] = w
        gids = seta.index.to_global(name, torch.arange(layer.grid.n_blocks))
        assert torch.equal(got[:, gids], expect[:, gids]), name
    assert torch.allclose(expect[0, shared], torch.ones(shared.numel()))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        seta.set_routing(torch.ones(2, 3))
    with pytest.raises(ValueError, match=">= 0"):
        seta.set_routing(-torch.ones(2, 2))


def test_feature_cache_reuses_z_per_prompt():
    from seta.models import FeatureCache

    seta = _trained_two_task("llama")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(4, VOCAB, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[2, :2] = 0  # left padding
    calls = []
    hook = seta.model.model.register_forward_hook(lambda m, a, kw, out: calls.append(kw["input_ids"].shape[0]),
                                                  with_kwargs=True)
    try:
        cache = FeatureCache()
        plain = seta.route_batch(ids, mask, mode="soft")
        assert calls == [3]
        first = seta.route_batch(ids, mask, mode="soft", cache=cache)
        again = seta.route_batch(ids, mask, mode="soft", cache=cache)
        assert calls == [3, 3] and len(cache) == 3  # the second call ran no base pass
        assert torch.equal(first, plain) and torch.equal(again, plain)
        # a batch with one new prompt: only that row goes through the base
        mixed = torch.stack([ids[1], torch.randint(4, VOCAB, (6,), generator=g)])
        z = cache.features(mixed, torch.ones_like(mixed), seta.routing_features)
        assert calls == [3, 3, 1] and len(cache) == 4
        torch.testing.assert_close(z, seta.routing_features(mixed, torch.ones_like(mixed)))
        # the same prompt with other padding hits the cache (z depends on the attended tokens only)
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids[:1]], 1)
        pmask = torch.cat([torch.zeros(1, 3, dtype=torch.long), mask[:1]], 1)
        n = len(calls)
        z0 = cache.features(padded, pmask, seta.routing_features)
        assert len(calls) == n  # no new pass
        torch.testing.assert_close(z0, seta.routing_features(padded, pmask), rtol=1e-4, atol=1e-5)
    finally:
        hook.remove()
    small = FeatureCache(max_items=2)
    small.features(ids, mask, seta.routing_features)  # 3 prompts: returned, then the oldest dropped
    assert len(small) == 2
    with pytest.raises(ValueError, match="max_items"):
        FeatureCache(0)
