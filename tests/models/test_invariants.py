"""peft-style invariants of sparse block experts on tiny Llama and Qwen3, fp32 and 4-bit NF4 (CPU)."""

from __future__ import annotations

import pytest
import torch

import seta.models.layer as layer_mod
from seta.core.blocks import block_delta_reference
from seta.models import SparseBlockLinear, SparseBlockLinear4bit
from models_helpers import fresh_base, lm_batch, randomise_blocks, tiny_seta
from seta.models import ExpertConfig, attach_experts


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _base_state(model):
    """Every base tensor (4-bit packed weights and their quantisation state included), cloned."""
    out = {}
    for name, t in model.model.state_dict(keep_vars=False).items():
        if ".blocks" in name or "local_ids" in name:
            continue
        out[name] = t.detach().clone() if torch.is_tensor(t) else t
    return out


def _two_task_model(arch, nf4):
    seta = tiny_seta(arch, nf4)
    n = seta.index.n_blocks
    scores0 = torch.linspace(1.0, 2.0, n, dtype=torch.float64)
    seta.allocate(0, scores0, ratio=0.1, rule="raw")
    s0 = seta.registry.expert(0)
    scores1 = torch.linspace(2.0, 1.0, n, dtype=torch.float64)
    scores1[s0[::2]] = 10.0  # task 1 shares every other block of S_0
    return seta, scores1


def test_output_equals_base_at_init(variant):
    arch, nf4 = variant
    batch = lm_batch()
    base = fresh_base(arch, nf4)
    ref = _logits(base, batch)
    seta = attach_experts(base, ExpertConfig(block_size=16))
    kind = SparseBlockLinear4bit if nf4 else SparseBlockLinear
    assert all(type(l) is kind for l in seta.layers.values())
    assert len(seta.layers) == 2 * 7
    assert torch.equal(_logits(seta, batch), ref)  # attached, nothing allocated
    seta.allocate(0, torch.rand(seta.index.n_blocks, dtype=torch.float64), ratio=0.1)
    seta.set_task(0)
    assert torch.equal(_logits(seta, batch), ref)  # expert routed, zero-initialised blocks


def test_only_expert_and_gate_get_gradients(variant):
    arch, nf4 = variant
    seta, scores1 = _two_task_model(arch, nf4)
    seta.allocate(1, scores1, ratio=0.1, rule="raw")
    s0, s1 = seta.registry.expert(0), seta.registry.expert(1)
    randomise_blocks(seta, seta.allocated_ids())
    seta.train()
    seta.set_task(1)
    batch = lm_batch()
    loss = seta(**batch).loss
    z = seta.routing_features(batch["input_ids"], batch["attention_mask"])
    loss = loss + torch.nn.functional.cross_entropy(seta.router.gate(z), torch.ones(2, dtype=torch.long))
    loss.backward()
    trainable = {id(p) for p in seta.trainable_parameters()}
    for name, p in seta.named_parameters():
        if id(p) not in trainable and p.numel():  # empty stacks of layers without blocks aside
            assert not p.requires_grad and p.grad is None, name
    assert all(p.grad is not None for p in seta.router.gate.parameters())
    # the blocks of S_1 get gradient, blocks only in S_0 get exactly zero
    got = torch.zeros(seta.index.n_blocks, dtype=torch.bool)
    for name, layer in seta.layers.items():
        if layer.n_blocks and layer.blocks.grad is not None:
            nonzero = layer.blocks.grad.flatten(1).ne(0).any(1)
            got[seta.index.to_global(name, layer.local_ids[nonzero])] = True
    assert got[s1].float().mean() > 0.9
    only0 = s0[~torch.isin(s0, s1)]
    assert only0.numel() and not got[only0].any()


def test_base_and_other_experts_unchanged_after_steps(variant):
    arch, nf4 = variant
    seta, scores1 = _two_task_model(arch, nf4)
    batch = lm_batch()
    before = _base_state(seta)
    ref = _logits(seta, batch)  # no route yet: base output
    seta.train()
    seta.set_task(0)
    opt = torch.optim.AdamW(seta.trainable_parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        seta(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    trained0 = seta.get_blocks(seta.registry.expert(0)).detach().clone()
    assert trained0.abs().sum() > 0
    seta.allocate(1, scores1, ratio=0.1, rule="raw")  # growth: new Parameters, so a fresh optimizer
    assert torch.equal(seta.get_blocks(seta.registry.expert(0)), trained0)
    seta.set_task(1)
    opt = torch.optim.AdamW(seta.trainable_parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        seta(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    s0, s1 = seta.registry.expert(0), seta.registry.expert(1)
    only0 = s0[~torch.isin(s0, s1)]
    after0 = seta.get_blocks(s0).detach()
    keep = torch.isin(s0, only0)
    assert torch.equal(after0[keep], trained0[keep])  # task-0 unique blocks bit-identical
    assert not torch.equal(after0[~keep], trained0[~keep])  # shared ones were trained by task 1
    after = _base_state(seta)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]) if torch.is_tensor(before[k]) else before[k] == after[k], k
    seta.eval()
    with seta.no_experts():
        assert torch.equal(_logits(seta, batch), ref)


@pytest.mark.parametrize("per_example", [False, True])
def test_fast_path_equals_dense_reference_in_model(variant, per_example, monkeypatch):
    arch, nf4 = variant
    seta, scores1 = _two_task_model(arch, nf4)
    seta.allocate(1, scores1, ratio=0.1, rule="raw")
    randomise_blocks(seta, seta.allocated_ids(), seed=3)
    batch = lm_batch(seed=1)
    if per_example:
        seta.set_routing(torch.tensor([[0.7, 0.3], [0.0, 1.0]]))
    else:
        seta.set_task(1)

    def run():
        loss = seta(**batch).loss
        params = seta.block_parameters()
        grads = torch.autograd.grad(loss, params)
        return loss.detach(), grads

    loss_fast, g_fast = run()
    monkeypatch.setattr(layer_mod, "block_delta", block_delta_reference)
    loss_ref, g_ref = run()
    tol = dict(rtol=1e-4, atol=1e-6) if not nf4 else dict(rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(loss_fast, loss_ref, **tol)
    assert any(g.abs().sum() > 0 for g in g_fast)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, **tol)


def test_pattern_mismatch_lists_existing_names():
    base = fresh_base("llama")
    with pytest.raises(ValueError, match=r"c_attn.*q_proj"):
        attach_experts(base, ExpertConfig(block_size=16, target_modules=("c_attn", "q_proj")))
    seta = attach_experts(base, ExpertConfig(block_size=16, target_modules=(r"model\.layers\.1\..*_proj",)))
    assert list(seta.layers) == [n for n in seta.layers if n.startswith("model.layers.1.")]
    assert len(seta.layers) == 7
    with pytest.raises(ValueError, match="already has sparse block experts"):
        attach_experts(base)


def test_growth_keeps_old_blocks_and_positions():
    seta = tiny_seta("qwen3")
    layer = seta.layers["model.layers.0.mlp.down_proj"]
    g = seta.index.to_global("model.layers.0.mlp.down_proj", [5, 1])
    assert seta.add_blocks(g).tolist() == sorted(g.tolist())
    old_param = layer.blocks
    randomise_blocks(seta, g, seed=4)
    vals = layer.blocks.detach().clone()
    ids_before = layer.local_ids.clone()
    new = seta.add_blocks(torch.cat([g, g + 2]))  # 1, 5 exist; 3, 7 are new
    assert new.tolist() == sorted((g + 2).tolist())
    assert layer.blocks is not old_param and layer.blocks.requires_grad  # a new Parameter
    assert torch.equal(layer.blocks[:2], vals)  # old values and positions kept
    assert torch.equal(layer.local_ids[:2], ids_before)
    assert layer.blocks[2:].abs().sum() == 0  # new blocks zero-initialised
    assert torch.equal(seta.allocated_ids(), torch.sort(torch.cat([g, g + 2])).values)
    with pytest.raises(ValueError, match="add_blocks first"):
        seta.set_expert(seta.index.to_global("model.layers.0.mlp.down_proj", [0]))


def test_route_set_under_inference_mode_still_trains():
    seta = tiny_seta("llama")
    seta.allocate(0, torch.rand(seta.index.n_blocks, dtype=torch.float64), ratio=0.1)
    with torch.inference_mode():
        seta.set_routing(torch.ones(2, 1))  # e.g. set by an evaluation hook
    seta(**lm_batch()).loss.backward()
    assert any(p.grad is not None for p in seta.block_parameters())
