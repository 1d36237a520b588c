"""Micro-benchmark of the sparse block delta, forward + backward, at equal trainable parameters:

    fast       seta.core.blocks.block_delta            (gather -> bmm -> index_add, custom autograd)
    reference  seta.core.blocks.block_delta_reference  (builds the dense ΔW; the correctness oracle)
    lora       x @ A @ B, A (d_in, r), B (r, d_out)    (dense LoRA-style product, r·(d_in+d_out) params)

    python benchmarks/bench_block_delta.py                          # 4096 tokens, 1024 x 1024, r=8, b=32
    python benchmarks/bench_block_delta.py --din 4096 --dout 11008 --b 256 --device cuda --dtype bfloat16

k = round(r·(d_in+d_out) / b²) blocks at random distinct positions. Gradients w.r.t. x and the
adapter parameters (as inside a model, where x carries gradient from the layers above).
"""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import DTYPES, common_args, fmt_s, interleaved_timing, machine, med, setup

from seta.core.blocks import BlockGrid, block_delta, block_delta_reference


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--tokens", type=int, default=4096, help="N = batch x seq")
    p.add_argument("--din", type=int, default=1024)
    p.add_argument("--dout", type=int, default=1024)
    p.add_argument("--r", type=int, default=8, help="LoRA rank fixing the parameter budget")
    p.add_argument("--b", type=int, default=32, help="block size")
    p.add_argument("--weighted", action="store_true", help="per-example block weights (routing path), 8 examples")
    p.add_argument("--no-reference", action="store_true", help="skip the slow dense reference")
    p.set_defaults(repeats=11, warmup=3)
    args = p.parse_args()
    device = setup(args)
    dtype = DTYPES[args.dtype]

    grid = BlockGrid(args.dout, args.din, args.b)
    n_lora = args.r * (args.din + args.dout)
    k = max(1, round(n_lora / args.b**2))
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randperm(grid.n_blocks, generator=g)[:k].sort().values
    rows, cols = (t.to(device) for t in grid.rows_cols(ids))
    n_ex = 8 if args.weighted else args.tokens
    x = torch.randn(n_ex, args.tokens // n_ex, args.din, generator=g).to(device, dtype).requires_grad_(True)
    blocks = (torch.randn(k, args.b, args.b, generator=g) * 0.02).to(device, dtype).requires_grad_(True)
    w = torch.rand(n_ex, k, generator=g).to(device, dtype).requires_grad_(True) if args.weighted else None
    A = (torch.randn(args.din, args.r, generator=g) * 0.02).to(device, dtype).requires_grad_(True)
    B = (torch.randn(args.r, args.dout, generator=g) * 0.02).to(device, dtype).requires_grad_(True)
    gy = torch.randn(n_ex, args.tokens // n_ex, args.dout, generator=g).to(device, dtype)

    def clear():
        for t in (x, blocks, A, B, w):
            if t is not None:
                t.grad = None

    def fast():
        clear()
        block_delta(x, blocks, rows, cols, grid, w).backward(gy)

    def reference():
        clear()
        block_delta_reference(x, blocks, rows, cols, grid, w).backward(gy)

    def lora():
        clear()
        (x @ A @ B).backward(gy)

    fns = {"fast": fast, "lora": lora}
    if not args.no_reference:
        fns["reference"] = reference
    if args.weighted and not args.no_reference:
        print("note: the reference builds one dense ΔW per example with --weighted (slow)")
    times = interleaved_timing(fns, device, args.warmup, args.repeats)
    tf, tl = med(times["fast"]), med(times["lora"])
    print(f"machine: {machine()}")
    print(f"x ({args.tokens} tokens, {args.din}) -> {args.dout}; {args.dtype}; device {device}; "
          f"{'per-example weights (8 examples)' if args.weighted else 'no weights'}")
    print(f"params: blocks {k * args.b**2:,} (k={k} of {args.b}x{args.b}, {grid.n_blocks} in the grid) | "
          f"LoRA {n_lora:,} (r={args.r})")
    line = f"fwd+bwd (median of {args.repeats}): block_delta {fmt_s(tf)} | x@A@B {fmt_s(tl)}"
    if "reference" in times:
        tr = med(times["reference"])
        line += f" | reference {fmt_s(tr)}"
    print(line)
    print(f"ratio block_delta / x@A@B {tf / tl:.3f}" +
          (f" | reference / block_delta {med(times['reference']) / tf:.2f}" if "reference" in times else ""))


if __name__ == "__main__":
    main()
