"""Test helpers: tiny Llama / Qwen3 bases (fp32 and 4-bit NF4 on the CPU), built once and deep-copied per test."""

from __future__ import annotations

import copy
import functools

import torch

from seta.models import ExpertConfig, attach_experts, build_tiny_model

VOCAB = 96
VARIANTS = [("llama", False), ("llama", True), ("qwen3", False), ("qwen3", True)]
VARIANT_IDS = [f"{a}-{'nf4' if q else 'fp32'}" for a, q in VARIANTS]


@functools.lru_cache(maxsize=None)
def _cached_base(arch: str, nf4: bool):
    return build_tiny_model(arch, vocab_size=VOCAB, seed=0, load_in_4bit=nf4)


def fresh_base(arch: str = "llama", nf4: bool = False):
    """A private copy of the cached tiny base (frozen, eval mode)."""
    return copy.deepcopy(_cached_base(arch, nf4))


def tiny_seta(arch="llama", nf4=False, block_size=16, **kw):
    return attach_experts(fresh_base(arch, nf4), ExpertConfig(block_size=block_size, **kw))


def lm_batch(seed: int = 0, batch: int = 2, length: int = 9, prompt: int = 4) -> dict:
    """Random token batch; the first `prompt` tokens are prompt (labels -100), one row right-padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, -2:] = 0
    labels = ids.clone()
    labels[:, :prompt] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def randomise_blocks(model, ids, seed=0, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    ids = torch.as_tensor(ids).unique()
    b = model.config.block_size
    model.set_blocks(ids, scale * torch.randn(ids.numel(), b, b, generator=g))


def two_task_seta(arch="llama", nf4=False, shared_score=10.0):
    """Tasks 0 and 1 allocated at ratio 0.1; task 1 takes every other block of task 0 (shared) by giving
    those blocks `shared_score`. Blocks still zero."""
    seta = tiny_seta(arch, nf4)
    n = seta.index.n_blocks
    seta.allocate(0, torch.linspace(1.0, 2.0, n, dtype=torch.float64), ratio=0.1, rule="raw")
    scores1 = torch.linspace(2.0, 1.0, n, dtype=torch.float64)
    scores1[seta.registry.expert(0)[::2]] = shared_score
    seta.allocate(1, scores1, ratio=0.1, rule="raw")
    return seta
