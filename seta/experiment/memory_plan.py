"""Memory plan of a preset: weights, expert blocks, optimizer states, Fisher and anchors, activations.

The architecture is built on the meta device (no memory, no download) to count parameters exactly;
the rest follows from the preset. Estimates, in GiB, against one 80 GB GPU and two 24 GB GPUs
(data parallel: every GPU holds a full replica and half the batch).
"""

from __future__ import annotations

import math

GiB = 2**30


def memory_plan(preset) -> str:
    from torch import nn

    from seta.core.blocks import BlockGrid
    from seta.models import build_from_architecture, find_targets

    model = build_from_architecture(preset.arch, device="meta")
    cfg = model.config
    sp, tr = preset.sparse, preset.train
    targets = find_targets(model, sp.target_modules)
    modules = dict(model.named_modules())
    lin = sum(modules[n].weight.numel() for n in targets)
    total = sum(p.numel() for p in model.parameters())
    other = total - lin
    n_blocks = sum(BlockGrid(modules[n].out_features, modules[n].in_features, sp.block_size).n_blocks for n in targets)
    k = math.ceil(sp.ratio * n_blocks)
    n_tasks = len(tr.epochs) if len(tr.epochs) > 1 else 8
    b2 = sp.block_size**2
    w_bytes = (lin * (0.5 + 0.5 / 64 * 1.03) if preset.load_in_4bit else lin * 2) + other * 2  # NF4 + double-quant scales
    blocks_now = k * b2 * 4  # fp32 blocks of the current expert
    blocks_all = n_tasks * k * b2 * 4  # worst case: nothing shared
    optim = k * b2 * 4 * 3  # grads + AdamW m and v of the trained blocks
    fisher_anchor = 2 * blocks_all
    T = tr.max_prompt_len + tr.max_answer_len
    B, d, L = tr.batch_size, cfg.hidden_size, cfg.num_hidden_layers
    inter = cfg.intermediate_size
    ckpt = B * T * d * 2 * L  # checkpointed layer inputs (bf16)
    one_layer = B * T * (10 * d + 4 * inter) * 2 + B * cfg.num_attention_heads * T * 4  # recomputed layer (SDPA)
    logits = B * T * cfg.vocab_size * (2 + 4 + 4)  # bf16 logits + fp32 copy + grad
    gathered = B * T * sp.block_size * 2 * k // max(1, len(targets))  # saved gathered columns (per layer avg)
    act = ckpt + one_layer + logits + gathered * L
    rows = [
        ("base weights" + (" (NF4, double quant)" if preset.load_in_4bit else " (bf16)"), w_bytes),
        (f"expert blocks, current task (k={k} of {n_blocks} blocks, b={sp.block_size}, fp32)", blocks_now),
        (f"expert blocks, all {n_tasks} tasks, worst case (no sharing)", blocks_all),
        ("grads + AdamW states of the trained blocks", optim),
        ("Fisher + anchors (worst case)", fisher_anchor),
        (f"activations (micro-batch {B}, seq {T}, checkpointing)", act),
    ]
    peak = w_bytes + blocks_all + optim + fisher_anchor + act
    half = w_bytes + blocks_all + optim + fisher_anchor + act / 2 * 1.0
    lines = [f"Memory plan for --preset {preset.name} ({preset.arch}: {total / 1e9:.2f}B parameters, "
             f"{len(targets)} target layers)"]
    lines += [f"  {name:<78} {b / GiB:8.2f} GiB" for name, b in rows]
    lines.append(f"  {'total, one GPU':<78} {peak / GiB:8.2f} GiB  -> one 80 GB GPU: {'fits' if peak < 80e9 * 0.93 else 'does NOT fit'}")
    lines.append(f"  {'per GPU, two GPUs (data parallel, micro-batch split in two)':<78} {half / GiB:8.2f} GiB  -> "
                 f"two 24 GB GPUs: {'fits' if half < 24e9 * 0.93 else 'does NOT fit'}")
    lines.append("  (estimates; CUDA context and allocator fragmentation, ~1-2 GiB per GPU, are not included)")
    return "\n".join(lines)
