"""Training step (forward + backward + AdamW step) time and peak memory: SETA vs peft LoRA at equal
trainable parameter count, same base weights, same batch, measured side by side in one process.

    python benchmarks/bench_train_step.py                       # mid Llama (hidden 512, 4 layers), CPU fp32
    python benchmarks/bench_train_step.py --4bit                # NF4 base: SETA vs QLoRA
    python benchmarks/bench_train_step.py --device cuda --arch llama2-7b --4bit --grad-ckpt --seq 1024 --batch 4
    python benchmarks/bench_train_step.py --model ~/.cache/seta/assets/models/SmolLM2-135M-Instruct --block-size 64
    python benchmarks/bench_train_step.py --arch llama2-7b --layers 1 --4bit --compute-dtype float32 --grad-ckpt  # CPU
    python benchmarks/bench_train_step.py --device cuda --arch llama2-7b --4bit --grad-ckpt --seq 1024 --delta-share

`--delta-share`: also times SETA's step with the block delta (`block_delta`: gather -> bmm -> index_add,
forward, backward and checkpoint recomputation) replaced by zeros of its shape; (SETA - that) / SETA
is the delta's share of a step. Above 10%, a fused kernel from a maintained library (or Triton, as an
optional dependency) is the next step for the delta; below, the base's matmuls dominate.

LoRA rank r on the target layers fixes the budget n = Σ r·(in+out); SETA gets k = round(n / b²)
blocks of b x b, chosen at random among all blocks (seeded), allocated and routed with set_expert.
Peak memory: on GPU, torch.cuda.max_memory_allocated during the step minus what was allocated
before it, plus the contender's own resident bytes (its base + adapter + optimizer state). On CPU
(no allocator statistics): bytes of unique tensor storages autograd saves for backward (activations,
model parameters excluded) + adapter parameters + their gradients + AdamW state; the frozen base is
reported separately (identical for both).
"""

from __future__ import annotations

import argparse
import sys
from unittest import mock

import torch
from torch import nn

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import (DTYPES, MID_LLAMA, MID_VOCAB, common_args, fmt_bytes, fmt_s, interleaved_timing, machine, med,
                     optimizer_state_bytes, saved_tensor_bytes, setup, storage_ptrs, synthetic_batch)

import seta.models.layer as layer_module
from seta.models import (DEFAULT_TARGETS, ExpertConfig, architecture_config, attach_experts, build_tiny_model,
                         enable_gradient_checkpointing, prepare_for_kbit_training)


def quantize_linears_nf4(model: nn.Module, device, compute_dtype=torch.bfloat16) -> nn.Module:
    """Replace every nn.Linear except the LM head by a bitsandbytes NF4 Linear4bit (double quantisation,
    `compute_dtype` compute, bf16 by default), quantising the random weights in place: a QLoRA-style
    base without a checkpoint."""
    import bitsandbytes as bnb

    head = model.get_output_embeddings()
    modules = dict(model.named_modules())
    for name, m in list(modules.items()):
        if type(m) is not nn.Linear or m is head:
            continue
        q = bnb.nn.Linear4bit(m.in_features, m.out_features, bias=m.bias is not None, compute_dtype=compute_dtype,
                              compress_statistics=True, quant_type="nf4", device="meta")
        q.weight = bnb.nn.Params4bit(m.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4")
        if m.bias is not None:
            q.bias = nn.Parameter(m.bias.data, requires_grad=False)
        q = q.to(device)
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child, q)
        del m
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return model


def build_base(args, device):
    """A fresh base with identical weights on every call (seeded)."""
    compute = DTYPES[args.compute_dtype]
    if args.model:  # real weights (e.g. SmolLM2): fp32 from the folder, quantised here for --4bit
        from seta.models import load_base_model

        model = load_base_model(args.model, dtype="float32", device_map=str(device))
        if args.four_bit:
            quantize_linears_nf4(model, device, compute)
            prepare_for_kbit_training(model, gradient_checkpointing=args.grad_ckpt)
        elif args.grad_ckpt:
            enable_gradient_checkpointing(model)
        vocab = model.config.vocab_size
    elif args.arch:
        from transformers import AutoModelForCausalLM

        cfg = architecture_config(args.arch)
        if args.layers:
            cfg.num_hidden_layers = args.layers
        torch.manual_seed(args.seed)
        dtype = torch.bfloat16 if args.four_bit else DTYPES[args.dtype]
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        if args.four_bit:
            quantize_linears_nf4(model, device, compute)
            prepare_for_kbit_training(model, gradient_checkpointing=args.grad_ckpt)
        else:
            for p in model.parameters():
                p.requires_grad_(False)
            if args.grad_ckpt:
                enable_gradient_checkpointing(model)
        vocab = cfg.vocab_size
    else:
        over = dict(MID_LLAMA)
        if args.layers:
            over["num_hidden_layers"] = args.layers
        model = build_tiny_model("llama", vocab_size=MID_VOCAB, seed=args.seed, dtype=args.dtype,
                                 load_in_4bit=args.four_bit, gradient_checkpointing=args.grad_ckpt, **over)
        if not args.four_bit:
            model = model.to(device)
        vocab = MID_VOCAB
    model.train()
    return model, vocab


class _ZeroDelta(torch.autograd.Function):
    """`block_delta`'s stand-in for --delta-share: zeros of the delta's shape, zero gradients (no
    gather, bmm or index_add), so the blocks still get a gradient and the optimizer a step."""

    @staticmethod
    def forward(ctx, x, blocks, d_out):
        ctx.inputs = (x.shape, x.dtype, blocks.shape, blocks.dtype)
        return x.new_zeros(*x.shape[:-1], d_out)

    @staticmethod
    def backward(ctx, gy):
        x_shape, x_dtype, b_shape, b_dtype = ctx.inputs
        gx = gy.new_zeros(x_shape, dtype=x_dtype) if ctx.needs_input_grad[0] else None
        gb = gy.new_zeros(b_shape, dtype=b_dtype) if ctx.needs_input_grad[1] else None
        return gx, gb, None


def zero_delta(x, blocks, rows, cols, grid, weights=None):
    return _ZeroDelta.apply(x, blocks, grid.out_features)


def lora_param_count(model, targets, r) -> int:
    from seta.models import find_targets

    mods = dict(model.named_modules())
    return sum(r * (mods[n].in_features + mods[n].out_features) for n in find_targets(model, targets))


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--4bit", dest="four_bit", action="store_true", help="NF4 base (SETA vs QLoRA)")
    p.add_argument("--arch", choices=["llama2-7b", "qwen3-4b"], help="random-weight real architecture (GPU)")
    p.add_argument("--model", help="local HF model folder (real weights) instead of a random base")
    p.add_argument("--compute-dtype", choices=["bfloat16", "float32"], default="bfloat16",
                   help="NF4 compute dtype for --arch/--model --4bit (float32: CPUs without bf16 matmul units)")
    p.add_argument("--layers", type=int, default=0, help="truncate depth to N decoder layers")
    p.add_argument("--grad-ckpt", action="store_true", help="non-reentrant gradient checkpointing")
    p.add_argument("--batch", type=int, default=4, help="micro-batch size")
    p.add_argument("--seq", type=int, default=256, help="sequence length")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--block-size", type=int, default=0, help="b (default 32 for the mid model, 256 for --arch)")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated target layer names")
    p.add_argument("--prior-tasks", type=int, default=0,
                   help="extra allocated-but-unrouted expert-sized block sets (earlier tasks); in the optimizer "
                        "as after earlier tasks (stored, not routed, not trained)")
    p.add_argument("--whole-stack", action="store_true",
                   help="put every layer's whole block stack in AdamW (the layout before working copies) "
                        "instead of the trainer's working copy of the current expert")
    p.add_argument("--delta-share", action="store_true",
                   help="also time SETA's step with the block delta replaced by zeros: the delta's share of a step")
    args = p.parse_args()
    device = setup(args)
    if args.arch and device.type != "cuda" and not args.layers:
        sys.exit(f"--arch {args.arch} builds a full-size model: only sensible on a GPU (--device cuda). "
                 "On a CPU pass --layers N (e.g. --layers 1) to truncate it.")
    targets = tuple(t for t in args.targets.split(",") if t)
    b = args.block_size or (256 if args.arch else 32)

    # ---- SETA -------------------------------------------------------------------------------------
    base_s, vocab = build_base(args, device)
    seta = attach_experts(base_s, ExpertConfig(block_size=b, target_modules=targets, block_dtype="float32"))
    # ---- LoRA -------------------------------------------------------------------------------------
    from peft import LoraConfig, get_peft_model

    base_l, _ = build_base(args, device)
    n_lora = lora_param_count(base_l, targets, args.lora_r)
    lora = get_peft_model(base_l, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
                                             target_modules=list(targets), bias="none", task_type="CAUSAL_LM"))
    lora.train()
    lora_params = [q for q in lora.parameters() if q.requires_grad]
    assert sum(q.numel() for q in lora_params) == n_lora, "LoRA count mismatch"

    k = max(1, round(n_lora / (b * b)))
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(seta.index.n_blocks, generator=g)
    if (1 + args.prior_tasks) * k > perm.numel():
        sys.exit(f"{(1 + args.prior_tasks) * k} blocks asked for, the model has {perm.numel()}")
    expert = perm[:k].sort().values
    seta.add_blocks(perm[: (1 + args.prior_tasks) * k])
    with torch.no_grad():  # non-zero blocks (values do not change the cost)
        for layer in seta.layers.values():
            if layer.n_blocks:
                layer.blocks.normal_(0, 1e-3)
    seta.set_expert(expert)
    seta.model.train()
    # as the trainer: a working copy of the current expert's blocks (optimizer state for those only)
    seta_params = seta.block_parameters() if args.whole_stack else seta.begin_training(expert)
    n_seta = k * b * b
    stacks = [layer.blocks for layer in seta.layers.values() if layer.n_blocks]
    n_seta_alloc = sum(q.numel() for q in stacks)
    seta_adapter = list({id(q): q for q in stacks + seta_params}.values())  # every block tensor stored

    opt_s = torch.optim.AdamW(seta_params, lr=1e-4, weight_decay=0.0)
    opt_l = torch.optim.AdamW(lora_params, lr=1e-4, weight_decay=0.0)
    batch = synthetic_batch(vocab, args.batch, args.seq, device, args.seed)

    def step(model, opt):
        def run():
            loss = model(**batch, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    fns = {"seta": step(seta, opt_s), "lora": step(lora, opt_l)}
    if args.delta_share:
        def seta_without_delta():
            with mock.patch.object(layer_module, "block_delta", zero_delta):
                fns["seta"]()
        fns["seta, zero delta"] = seta_without_delta
    times = interleaved_timing(fns, device, args.warmup, args.repeats)

    # ---- memory (one more step each, after the timed ones: optimizer state exists) ----------------
    mem = {}
    models = {"seta": (seta.model, opt_s, seta_params, seta_adapter), "lora": (lora, opt_l, lora_params, lora_params)}
    for name, (model, opt, params, stored) in models.items():
        resident = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        if device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fns[name]()
            torch.cuda.synchronize()
            transient = torch.cuda.max_memory_allocated() - before
            mem[name] = dict(peak=resident + optimizer_state_bytes(opt) + transient, resident=resident,
                             transient=transient)
        else:
            with saved_tensor_bytes(storage_ptrs(model)) as saved:
                loss = model(**batch, use_cache=False).loss
            loss.backward()
            grads = sum(q.grad.numel() * q.grad.element_size() for q in params if q.grad is not None)
            opt.step()
            opt.zero_grad(set_to_none=True)
            adapter = sum(q.numel() * q.element_size() for q in stored)
            ostate = optimizer_state_bytes(opt)
            frozen = resident - adapter
            mem[name] = dict(saved=saved["bytes"], adapter=adapter, grads=grads, opt=ostate, frozen=frozen,
                             total=saved["bytes"] + adapter + grads + ostate)

    # ---- report ------------------------------------------------------------------------------------
    kind = f"model {args.model}" if args.model else f"arch {args.arch} ({'--layers ' + str(args.layers) if args.layers else 'full depth'})" if args.arch \
        else f"mid Llama hidden 512 x {args.layers or MID_LLAMA['num_hidden_layers']} layers, vocab {MID_VOCAB}"
    print(f"machine: {machine()}")
    print(f"base: {kind}; {'NF4 4-bit, ' + args.compute_dtype + ' compute' if args.four_bit else args.dtype}; grad-ckpt {args.grad_ckpt}; "
          f"device {device}; batch {args.batch} x seq {args.seq}; targets {','.join(targets)}")
    print(f"trainable params: SETA {n_seta:,} (k={k} blocks of {b}x{b}; allocated {n_seta_alloc:,} incl. "
          f"{args.prior_tasks} prior task(s)) | LoRA {n_lora:,} (r={args.lora_r}) | SETA/LoRA {n_seta / n_lora:.4f}")
    print("SETA's AdamW holds: " + ("every layer's whole block stack (--whole-stack)" if args.whole_stack
                                    else "a working copy of the current expert's blocks (as the trainer)"))
    ts, tl = med(times["seta"]), med(times["lora"])
    print(f"step time (median of {args.repeats}, {args.warmup} warm-up): SETA {fmt_s(ts)} | "
          f"{'QLoRA' if args.four_bit else 'LoRA'} {fmt_s(tl)} | ratio SETA/LoRA {ts / tl:.3f}  (target <= 1.15)")
    if args.delta_share:
        tz = med(times["seta, zero delta"])
        share = (ts - tz) / ts
        print(f"delta share of a SETA step: {share:.1%} (step {fmt_s(ts)}, with the delta replaced by zeros "
              f"{fmt_s(tz)}); {'above' if share > 0.10 else 'within'} 10%: "
              + ("a fused delta kernel (maintained library or Triton) is the next step" if share > 0.10
                 else "the gather/bmm/index_add ops are not where a step's time goes"))
    if device.type == "cuda":
        ms, ml = mem["seta"]["peak"], mem["lora"]["peak"]
        print(f"peak memory [resident own model + optimizer state + max_memory_allocated rise during a step]: "
              f"SETA {fmt_bytes(ms)} | LoRA {fmt_bytes(ml)} | ratio {ms / ml:.3f}  (target <= 1.10 vs QLoRA)")
        print(f"  SETA peak {ms / 2**30:.2f} GiB (24 GB fit target: {'fits' if ms < 24e9 else 'does NOT fit'})")
    else:
        for name in ("seta", "lora"):
            m = mem[name]
            print(f"  {name:4s} CPU memory proxy: saved-for-backward {fmt_bytes(m['saved'])} + adapter {fmt_bytes(m['adapter'])}"
                  f" + grads {fmt_bytes(m['grads'])} + AdamW state {fmt_bytes(m['opt'])} = {fmt_bytes(m['total'])}"
                  f"   (frozen base, not counted: {fmt_bytes(m['frozen'])})")
        ms, ml = mem["seta"]["total"], mem["lora"]["total"]
        print(f"memory proxy ratio SETA/LoRA (saved activations + adapter + grads + AdamW state): {ms / ml:.3f}")
        print(f"  same incl. frozen base: {(ms + mem['seta']['frozen']) / (ml + mem['lora']['frozen']):.3f}")


if __name__ == "__main__":
    main()
