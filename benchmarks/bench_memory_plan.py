"""The `--dry-run` memory plan set beside a measured SETA training step of the same shape.

    python benchmarks/bench_memory_plan.py --arch llama2-7b --layers 1 --seq 256 --batch 1     # NF4 slice
    python benchmarks/bench_memory_plan.py --arch qwen3-4b --layers 1 --seq 256 --batch 1
    python benchmarks/bench_memory_plan.py --model ~/.cache/seta/assets/models/SmolLM2-135M-Instruct --no-4bit
    python benchmarks/bench_memory_plan.py --device cuda --arch llama2-7b --seq 1024 --batch 4       # full depth, GPU

The base: a shipped architecture with random weights (`--arch`, optionally truncated to `--layers`
decoder layers), quantised to NF4 in place and prepared as the trainer prepares a 4-bit base
(`prepare_for_kbit_training`: norms, embeddings and head up-cast to fp32; gradient checkpointing), or
a real checkpoint (`--model`, through `seta.models.load_base_model`). SETA experts at `--ratio`
(k = ceil(ρ N) random blocks, b = `--block-size`), trained through the working copy with AdamW, as in
the trainer. The plan is `seta.experiment.memory_plan.plan_components` for the same config, depth, batch and
sequence, one task (`--tasks 1`: no earlier experts stored).

Measured per component:
- weights: bytes of the base's parameters, buffers and 4-bit quantisation states;
- blocks: the stacks + the working copy; grads + AdamW state: their bytes after a step;
- activations: the rise of memory during one step (after a warm-up step, so AdamW state exists), minus
  the gradients it allocates. On a GPU: `torch.cuda.max_memory_allocated` - `memory_allocated` before.
  On the CPU: the peak resident set size (sampled every 2 ms) - RSS before, with glibc's mmap threshold
  fixed at 128 KiB (the script re-executes itself with MALLOC_MMAP_THRESHOLD_ set) so that every large
  tensor is its own mapping, returned to the system when freed: RSS then follows the live tensors.
Writes a JSON line per run with `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # before torch allocates anything
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import common_args, machine, optimizer_state_bytes, setup, synthetic_batch
from bench_train_step import quantize_linears_nf4

from seta.experiment.memory_plan import plan_components

from seta.models import (DEFAULT_TARGETS, ExpertConfig, architecture_config, attach_experts, load_base_model,
                         prepare_for_kbit_training)
from seta.train.memory import rss_bytes

MiB = 2**20


class RssPeak:
    def __init__(self, interval=0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() or 0)
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = rss_bytes() or 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes() or 0)


def tensor_bytes(model) -> int:
    """Parameters + buffers + bitsandbytes quantisation states (absmax, nested absmax, code), each
    storage counted once."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()

    for t in list(model.parameters()) + list(model.buffers()):
        add(t)
        qs = getattr(t, "quant_state", None)
        while qs is not None:
            for name in ("absmax", "code", "offset"):
                add(getattr(qs, name, None))
            qs = getattr(qs, "state2", None)
    return total


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--arch", choices=["llama2-7b", "qwen3-4b"])
    p.add_argument("--model", default="", help="a local HF checkpoint instead of --arch")
    p.add_argument("--layers", type=int, default=0, help="truncate --arch to N decoder layers")
    p.add_argument("--no-4bit", dest="four_bit", action="store_false", help="bf16 base instead of NF4")
    p.add_argument("--no-grad-ckpt", dest="grad_ckpt", action="store_false")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--ratio", type=float, default=0.01)
    p.add_argument("--block-size", type=int, default=0, help="b (default 256 for --arch, 64 for --model)")
    p.add_argument("--compute", choices=["bfloat16", "float32"], default="",
                   help="activation / compute dtype (default: bfloat16 on a GPU, float32 on the CPU, where bf16 "
                        "matmuls without AVX512-BF16 are ~6x slower)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    device = setup(args)
    b = args.block_size or (256 if args.arch else 64)
    cuda = device.type == "cuda"
    compute = getattr(torch, args.compute or ("bfloat16" if cuda else "float32"))

    if args.model:
        path = os.path.expanduser(args.model)
        base = load_base_model(path, load_in_4bit=args.four_bit, dtype=compute, gradient_checkpointing=args.grad_ckpt,
                               device_map=str(device) if (cuda or args.four_bit) else None)
        base = base if args.four_bit else base.to(device)
        config = base.config
        name = os.path.basename(path.rstrip("/"))
    else:
        from transformers import AutoModelForCausalLM

        config = architecture_config(args.arch)
        if args.layers:
            config.num_hidden_layers = args.layers
        torch.manual_seed(args.seed)
        with torch.device(device):
            base = AutoModelForCausalLM.from_config(config, dtype=compute)
        if args.four_bit:
            quantize_linears_nf4(base, device, compute)
            prepare_for_kbit_training(base, gradient_checkpointing=args.grad_ckpt)
        else:
            for q in base.parameters():
                q.requires_grad_(False)
            if args.grad_ckpt:
                from seta.models import enable_gradient_checkpointing
                enable_gradient_checkpointing(base)
        name = f"{args.arch} ({args.layers or config.num_hidden_layers} layer(s))"
    base.train()
    weights = tensor_bytes(base)

    seta = attach_experts(base, ExpertConfig(block_size=b, block_dtype="float32"))
    k = math.ceil(args.ratio * seta.index.n_blocks)
    g = torch.Generator().manual_seed(args.seed)
    expert = torch.randperm(seta.index.n_blocks, generator=g)[:k].sort().values
    seta.add_blocks(expert)
    seta.set_expert(expert)
    params = seta.begin_training(expert)
    with torch.no_grad():
        for q in params:
            q.normal_(0, 1e-3)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    blocks = sum(l.blocks.numel() * 4 for l in seta.layers.values() if l.n_blocks) + sum(q.numel() * 4 for q in params)
    batch = synthetic_batch(config.vocab_size, args.batch, args.seq, device, args.seed)
    grads = {}

    def step():
        loss = seta(**batch, use_cache=False).loss
        loss.backward()
        grads["bytes"] = sum(q.grad.numel() * q.grad.element_size() for q in params)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    step()  # warm-up: AdamW state now exists
    t_step = time.perf_counter() - t0
    optim = optimizer_state_bytes(opt) + grads["bytes"]
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        rise = torch.cuda.max_memory_allocated() - before
        total_peak = torch.cuda.max_memory_allocated()
    else:
        import gc
        gc.collect()
        with RssPeak() as r:
            before = rss_bytes()
            step()
        rise = r.peak - before
        total_peak = r.peak
    act = rise - grads["bytes"]

    plan = plan_components(config, block_size=b, ratio=args.ratio, target_modules=DEFAULT_TARGETS,
                           load_in_4bit=args.four_bit, batch=args.batch, seq=args.seq, n_tasks=1,
                           compute_bytes=torch.finfo(compute).bits // 8)
    if plan["k"] != k:
        print(f"note: plan k={plan['k']}, measured k={k}")
    rows = [("base weights", plan["weights"], weights),
            ("expert blocks (stack + working copy)", plan["blocks_all"] + plan["blocks_now"], blocks),
            ("grads + AdamW state", plan["optim"], optim),
            ("activations (step rise - grads)", plan["activations"], act)]
    print(f"machine: {machine()}")
    print(f"{name}; {'NF4' if args.four_bit else 'dense'}, compute {str(compute)[6:]}; grad-ckpt {args.grad_ckpt}; micro-batch {args.batch} x seq "
          f"{args.seq}; k={k} blocks of {b}x{b}; one step {t_step:.1f} s; device {device}")
    print(f"  {'component':<40} {'plan MiB':>10} {'measured MiB':>13} {'plan/measured':>14}")
    for label, pl, me in rows:
        print(f"  {label:<40} {pl / MiB:10.1f} {me / MiB:13.1f} {pl / me if me else float('nan'):14.3f}")
    print(f"  activation plan parts (MiB): checkpointed inputs {plan['act_ckpt'] / MiB:.1f}, one layer "
          f"{plan['act_layer'] / MiB:.1f}, dequantised weight {plan['act_dequant'] / MiB:.1f}, logits "
          f"{plan['act_logits'] / MiB:.1f}, gathered {plan['act_gathered'] / MiB:.1f}; activations = checkpointed + "
          "gathered + max(logits, layer + dequantised)")
    print(f"  {'peak (' + ('CUDA max allocated' if cuda else 'process RSS') + ')':<40} {'':>10} {total_peak / MiB:13.1f}")
    if cuda:
        print(f"  peak {total_peak / 2**30:.2f} GiB: {'fits' if total_peak < 24e9 * 0.93 else 'does NOT fit'} in one 24 GB GPU "
              "(7 % left for the CUDA context and fragmentation)")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({"model": name, "device": str(device), "batch": args.batch, "seq": args.seq,
                                "four_bit": args.four_bit, "rows": [(l, pl, me) for l, pl, me in rows],
                                "peak": total_peak, "plan_parts": {k2: plan[k2] for k2 in plan if k2.startswith("act_")},
                                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}) + "\n")


if __name__ == "__main__":
    main()
