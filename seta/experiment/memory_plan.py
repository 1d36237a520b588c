"""Memory plan of a preset: weights, expert blocks, optimizer states, Fisher and anchors, activations.

The architecture is built on the meta device (no memory, no download) to count parameters exactly;
the rest follows from the preset. Estimates, in GiB, against one 80 GB GPU and two 24 GB GPUs
(data parallel: every GPU holds a full replica and half the batch).

`plan_components` gives the same figures for any shape (a config, a layer count, a micro-batch and a
sequence length), so that `benchmarks/bench_memory_plan.py` can set each beside a measured step.
Activation model of one training step with gradient checkpointing (bf16 compute):

    checkpointed layer inputs   B·T·d·2 bytes per layer                     (kept for the whole step)
    one recomputed layer        B·T·(10 d + 4 d_ff)·2 + B·heads·T·4           (SDPA; in backward)
    logits                      B·T·V·(2 + 4 + 4 + 4) with a bf16 head          (bf16 logits, their fp32 copy,
                                                                                log-softmax, its grad);
                                B·T·V·(4 + 4 + 4) with an fp32 head             (4-bit bases: the head is up-cast)
    gathered input columns      B·T·b·2 · k / (#target layers) per layer       (SETA's saved x[:, cols])
    dequantised weight          max_l (d_out·d_in)·2                           (4-bit: one target weight
                                                                                dequantised for its matmul)

The logits live in the forward's tail and the head's backward, a recomputed layer (with its
dequantised weight) later in backward, so the peak is

    activations = checkpointed inputs + gathered columns + max(logits, one layer + dequantised weight)

(checked against measured steps in BENCHMARKS.md §7: summing the two phases overstated the peak
of logits-bound shapes, and leaving out the dequantised weight understated layer-bound ones).
"""

from __future__ import annotations

import math

GiB = 2**30


def plan_components(config, *, block_size: int, ratio: float, target_modules, load_in_4bit: bool, batch: int,
                    seq: int, n_tasks: int = 8, layers: int | None = None, compute_bytes: int = 2) -> dict[str, float]:
    """Bytes per component for one training step of `config` (an HF config) truncated to `layers`
    decoder layers (None: all), SETA experts at `ratio` with b = `block_size`. Keys: weights, blocks_now,
    blocks_all, optim, fisher_anchor, act_ckpt, act_layer, act_logits, act_gathered, activations, k,
    n_blocks, n_targets, total_params (act_* are the activation parts). compute_bytes: bytes per activation element (2: bf16, the GPU
    runs; 4: fp32, e.g. the CPU check)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from seta.core.blocks import BlockGrid
    from seta.models import find_targets

    cfg = copy.deepcopy(config)
    if layers:
        cfg.num_hidden_layers = layers
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    targets = find_targets(model, target_modules)
    modules = dict(model.named_modules())
    lin = sum(modules[n].weight.numel() for n in targets)
    total = sum(p.numel() for p in model.parameters())
    other = total - lin
    n_blocks = sum(BlockGrid(modules[n].out_features, modules[n].in_features, block_size).n_blocks for n in targets)
    k = math.ceil(ratio * n_blocks)
    b2 = block_size**2
    # NF4 + double-quant scales; a 4-bit base has its other weights (embeddings, head, norms) up-cast to
    # fp32 by prepare_for_kbit_training
    weights = lin * (0.5 + 0.5 / 64 * 1.03) + other * 4 if load_in_4bit else (lin + other) * compute_bytes
    blocks_now = k * b2 * 4  # fp32 blocks of the current expert (its working copy)
    blocks_all = n_tasks * k * b2 * 4  # worst case: nothing shared
    B, T, d, L = batch, seq, cfg.hidden_size, cfg.num_hidden_layers
    a = compute_bytes
    act_ckpt = B * T * d * a * L
    act_layer = B * T * (10 * d + 4 * cfg.intermediate_size) * a + B * cfg.num_attention_heads * T * 4
    head_fp32 = load_in_4bit or compute_bytes == 4  # prepare_for_kbit_training up-casts the head
    act_logits = B * T * cfg.vocab_size * (4 + 4 + 4 if head_fp32 else 2 + 4 + 4 + 4)
    act_gathered = B * T * block_size * a * k // max(1, len(targets)) * L
    act_dequant = max(modules[n].weight.numel() for n in targets) * a if load_in_4bit else 0
    return dict(weights=weights, blocks_now=blocks_now, blocks_all=blocks_all, optim=k * b2 * 4 * 3,
                fisher_anchor=2 * blocks_all, anchors_now=2 * blocks_now,
                router_stats=n_tasks * cfg.hidden_size**2 * 8, act_ckpt=act_ckpt, act_layer=act_layer, act_logits=act_logits,
                act_gathered=act_gathered, act_dequant=act_dequant,
                activations=act_ckpt + act_gathered + max(act_logits, act_layer + act_dequant), k=k,
                n_blocks=n_blocks, n_targets=len(targets), total_params=total)


def memory_plan(preset) -> str:
    from seta.models import architecture_config

    sp, tr = preset.sparse, preset.train
    if "tasks" in preset.stream:
        n_tasks = len(preset.stream["tasks"])
    elif preset.assets:  # the default real stream
        from seta.assets.sources import DEFAULT_STREAM

        n_tasks = len(DEFAULT_STREAM)
    else:
        n_tasks = len(tr.epochs) if len(tr.epochs) > 1 else 8
    tiny = preset.pretrain is not None  # the tiny presets build an fp32 model from a config
    fp32 = (tiny or preset.dtype == "float32") and not preset.load_in_4bit and not tr.bf16  # weights and activations
    if tiny:  # its config, with the tiny tokenizer's vocabulary
        from seta.data import build_tiny_tokenizer
        from seta.models.loading import tiny_config

        config = tiny_config(preset.arch, tokenizer=build_tiny_tokenizer(), **preset.tiny_model)
    else:
        config = architecture_config(preset.arch)
    c = plan_components(config, block_size=sp.block_size, ratio=sp.ratio,
                        target_modules=sp.target_modules, load_in_4bit=preset.load_in_4bit, batch=tr.batch_size,
                        seq=tr.max_prompt_len + tr.max_answer_len, n_tasks=n_tasks, compute_bytes=4 if fp32 else 2)
    T, B = tr.max_prompt_len + tr.max_answer_len, tr.batch_size
    rows = [
        ("base weights" + (" (NF4, double quant)" if preset.load_in_4bit else " (fp32)" if fp32 else " (bf16)"),
         c["weights"]),
        (f"expert blocks, current task's working copy (k={c['k']} of {c['n_blocks']} blocks, b={sp.block_size}, fp32)",
         c["blocks_now"]),
        (f"expert blocks, all {n_tasks} tasks, worst case (no sharing)", c["blocks_all"]),
        ("grads + AdamW states of the trained blocks", c["optim"]),
        ("anchors θ* + Fisher of S_t's shared blocks, on the device (worst case: all of S_t)", c["anchors_now"]),
        (f"activations (micro-batch {B}, seq {T}, checkpointing)", c["activations"]),
    ]
    host = [("Fisher + anchors of every block, all tasks, worst case", c["fisher_anchor"]),
            (f"routing statistics (a float64 d x d moment per task, {n_tasks} tasks)",
             c["router_stats"])]
    fixed = c["weights"] + c["blocks_all"] + c["blocks_now"] + c["optim"] + c["anchors_now"]
    peak = fixed + c["activations"]
    half = fixed + c["activations"] / 2
    lines = [f"Memory plan for --preset {preset.name} ({preset.arch}: {c['total_params'] / 1e9:.2f}B parameters, "
             f"{c['n_targets']} target layers)"]
    lines += [f"  {name:<78} {b / GiB:8.2f} GiB" for name, b in rows]
    lines.append(f"  {'total, one GPU':<78} {peak / GiB:8.2f} GiB  -> one 80 GB GPU: {'fits' if peak < 80e9 * 0.93 else 'does NOT fit'}")
    lines.append(f"  {'per GPU, two GPUs (data parallel, micro-batch split in two)':<78} {half / GiB:8.2f} GiB  -> "
                 f"two 24 GB GPUs: {'fits' if half < 24e9 * 0.93 else 'does NOT fit'}")
    lines.append("  host RAM (kept on the CPU, not on the GPU):")
    lines += [f"    {name:<76} {b / GiB:8.2f} GiB" for name, b in host]
    lines.append("  (estimates; CUDA context and allocator fragmentation, ~1-2 GiB per GPU, are not included)")
    return "\n".join(lines)
