"""Base model loading, tiny models, shipped architecture configs, ExpertConfig validation, GPU checks."""

from __future__ import annotations

import pytest
import torch

from seta.models import (ExpertConfig, architecture_config, attach_experts, build_from_architecture,
                         build_tiny_model, load_base_model, load_tokenizer)
from models_helpers import VOCAB, lm_batch

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_missing_local_dir_and_offline_hub_id_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_base_model(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load_base_model("seta-tests/definitely-not-cached", local_files_only=True)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_base_model(tmp_path)  # exists but holds no model
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load_tokenizer("seta-tests/definitely-not-cached", local_files_only=True)


def test_local_dir_round_trip_and_4bit_preparation(tmp_path):
    tiny = build_tiny_model("llama", vocab_size=VOCAB)
    tiny.save_pretrained(tmp_path)
    dense = load_base_model(tmp_path, dtype="float32")
    batch = lm_batch()
    with torch.no_grad():
        assert torch.equal(dense(batch["input_ids"]).logits, tiny(batch["input_ids"]).logits)
    assert not any(p.requires_grad for p in dense.parameters())
    q = load_base_model(tmp_path, load_in_4bit=True, device_map="cpu", gradient_checkpointing=True)
    assert getattr(q, "is_activation_checkpointing", None) or q.is_gradient_checkpointing
    assert type(q.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert all(p.dtype in (torch.float32, torch.uint8) for p in q.parameters())  # norms/embeddings up-cast
    seta = attach_experts(q, ExpertConfig(block_size=32))  # experts after k-bit preparation
    seta.allocate(0, torch.rand(seta.index.n_blocks, dtype=torch.float64), ratio=0.2)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in seta.block_parameters())
    seta.train()
    seta.set_task(0)
    seta(**batch).loss.backward()  # through checkpointed 4-bit layers, route persists into recompute
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in seta.block_parameters())


def test_tiny_models_and_architectures():
    qwen = build_tiny_model("qwen3", vocab_size=50, num_hidden_layers=1)
    assert qwen.config.model_type == "qwen3" and qwen.config.hidden_size == 64 and qwen.config.num_hidden_layers == 1
    with pytest.raises(ValueError, match="arch"):
        build_tiny_model("gpt2", vocab_size=50)
    with pytest.raises(ValueError, match="vocab_size"):
        build_tiny_model("llama")
    cfg = architecture_config("qwen3-4b")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim) == (2560, 36, 8, 128)
    assert architecture_config("llama2-7b").intermediate_size == 11008
    with pytest.raises(ValueError, match="shipped"):
        architecture_config("gpt-5")
    meta = build_from_architecture("llama2-7b")  # no weights: block counts for planning
    seta = attach_experts(meta, ExpertConfig(block_size=256))
    per_layer = 4 * 16 * 16 + 3 * 43 * 16  # q,k,v,o: 4096² ; gate,up,down: 11008 x 4096 (ragged 43rd)
    assert seta.index.n_blocks == 32 * per_layer


def test_expert_config_validation():
    assert ExpertConfig(target_modules="q_proj").target_modules == ("q_proj",)
    for bad in (dict(block_size=0), dict(target_modules=()), dict(block_dtype="int8"),
                dict(gate_hidden=-1), dict(feature_shrinkage=2.0)):
        with pytest.raises(ValueError):
            ExpertConfig(**bad)
    with pytest.raises(Exception):
        ExpertConfig().block_size = 3  # frozen


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("nf4", [False, True])
def test_gpu_invariants(nf4):
    """On CUDA: output equals base at init, fast path equals reference, only blocks change."""
    import seta.models.layer as layer_mod
    from seta.core.blocks import block_delta_reference

    base = build_tiny_model("qwen3", vocab_size=VOCAB, load_in_4bit=nf4, dtype="bfloat16")
    if not nf4:
        base = base.to("cuda")
    batch = {k: v.cuda() for k, v in lm_batch().items()}
    with torch.no_grad():
        ref = base(**batch).logits
    seta = attach_experts(base, ExpertConfig(block_size=16))
    seta.allocate(0, torch.rand(seta.index.n_blocks, dtype=torch.float64), ratio=0.2)
    seta.set_task(0)
    with torch.no_grad():
        assert torch.equal(seta(**batch).logits, ref)
    assert all(p.device.type == "cuda" for p in seta.trainable_parameters())
    with torch.no_grad():
        for p in seta.block_parameters():
            p.normal_(0, 0.05)
    fast = torch.autograd.grad(seta(**batch).loss, seta.block_parameters())
    orig = layer_mod.block_delta
    layer_mod.block_delta = block_delta_reference
    try:
        slow = torch.autograd.grad(seta(**batch).loss, seta.block_parameters())
    finally:
        layer_mod.block_delta = orig
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-4)
