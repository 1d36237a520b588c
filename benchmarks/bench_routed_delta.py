"""Inference (no grad) delta of ONE layer for a top-1 routed batch that mixes several experts:

    union    seta.core.blocks.block_delta_add_: the union of the batch's experts' blocks, each example
             weighting the blocks outside its expert by 0; added in place into the base output y
             (the layer's no-grad path)
    grouped  one block_delta_add_ per expert on the rows routed to it (index_select rows -> delta ->
             index_copy rows): no zero-weight work, but the ops are repeated per expert
    sorted   as grouped, with the batch sorted by expert beforehand, so each expert's rows are a
             contiguous slice and its delta goes in place into a view (grouping at its cheapest)
    before   y + block_delta(x, union, weights) out of place: the layer's path before issue 7 §3

    python benchmarks/bench_routed_delta.py                      # decode step: 4 examples x 1 token
    python benchmarks/bench_routed_delta.py --tokens 64          # prefill of 64-token prompts
    python benchmarks/bench_routed_delta.py --experts 8 --batch 8 --k 64 --tokens 512 --b 256 --din 4096 --dout 4096

Experts: `--experts` sets of `--k` random blocks each (they may overlap, as shared blocks do);
example n is routed to expert n mod E. All contenders are checked against the dense reference first.
"""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import DTYPES, common_args, interleaved_timing, machine, med, setup

from seta.core.blocks import BlockGrid, block_delta, block_delta_add_, block_delta_reference


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--batch", type=int, default=4, help="examples")
    p.add_argument("--tokens", type=int, default=1, help="tokens per example (1 = a decoding step)")
    p.add_argument("--din", type=int, default=512)
    p.add_argument("--dout", type=int, default=512)
    p.add_argument("--b", type=int, default=32, help="block size")
    p.add_argument("--k", type=int, default=5, help="blocks per expert in this layer")
    p.add_argument("--experts", type=int, default=2, help="distinct experts in the batch")
    p.set_defaults(repeats=11, warmup=3)
    args = p.parse_args()
    device = setup(args)
    dtype = DTYPES[args.dtype]
    if args.experts > args.batch:
        sys.exit("--experts must be <= --batch (each expert gets at least one example)")

    grid = BlockGrid(args.dout, args.din, args.b)
    g = torch.Generator().manual_seed(args.seed)
    experts = [torch.randperm(grid.n_blocks, generator=g)[: args.k] for _ in range(args.experts)]
    union = torch.cat(experts).unique(sorted=True)  # (u,) block ids
    values = torch.randn(grid.n_blocks, args.b, args.b, generator=g) * 0.02  # a value for every block id
    route = torch.arange(args.batch) % args.experts  # example -> expert
    w = torch.stack([torch.isin(union, experts[int(e)]).to(dtype) for e in route]).to(device)  # (B, u)
    rows, cols = (t.to(device) for t in grid.rows_cols(union))
    blocks = values[union].to(device, dtype)
    groups = []
    for e, ids in enumerate(experts):
        r, c = grid.rows_cols(ids.sort().values)
        groups.append((torch.nonzero(route == e).reshape(-1).to(device), values[ids.sort().values].to(device, dtype),
                       r.to(device), c.to(device)))
    x = torch.randn(args.batch, args.tokens, args.din, generator=g).to(device, dtype)
    y0 = torch.randn(args.batch, args.tokens, args.dout, generator=g).to(device, dtype)

    def run_union():
        return block_delta_add_(y0.clone(), x, blocks, rows, cols, grid, w)

    def run_grouped():
        y = y0.clone()
        for ex, blk, r, c in groups:
            part = block_delta_add_(y.index_select(0, ex), x.index_select(0, ex), blk, r, c, grid)
            y.index_copy_(0, ex, part)
        return y

    segments = []  # the batch sorted by expert: (start, stop) rows of each expert
    for e, (ex, blk, r, c) in enumerate(groups):
        start = sum(int((route == j).sum()) for j in range(e))
        segments.append((start, start + ex.numel(), blk, r, c))
    order = torch.argsort(route, stable=True).to(device)
    xs, ys = x.index_select(0, order), y0.index_select(0, order)

    def run_sorted():
        y = ys.clone()
        for start, stop, blk, r, c in segments:
            block_delta_add_(y[start:stop], xs[start:stop], blk, r, c, grid)
        return y

    def run_before():
        return y0 + block_delta(x, blocks, rows, cols, grid, w)

    with torch.no_grad():
        ref = y0 + block_delta_reference(x.double(), blocks.double(), rows, cols, grid, w.double()).to(dtype)
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=1e-2)
        for name, fn in (("union", run_union), ("grouped", run_grouped), ("before", run_before)):
            torch.testing.assert_close(fn(), ref, **tol, msg=lambda m, name=name: f"{name}: {m}")
        torch.testing.assert_close(run_sorted(), ref.index_select(0, order), **tol)
        times = interleaved_timing({"union": run_union, "grouped": run_grouped, "sorted": run_sorted,
                                    "before": run_before}, device, args.warmup, args.repeats)
    tu, tg, ts, tb = (med(times[n]) for n in ("union", "grouped", "sorted", "before"))
    flops_union = args.batch * args.tokens * union.numel() * args.b**2
    flops_grouped = args.batch * args.tokens * args.k * args.b**2
    print(f"machine: {machine()}")
    print(f"layer {args.din} -> {args.dout}, b={args.b}; {args.batch} examples x {args.tokens} token(s); {args.dtype}; "
          f"{args.experts} experts of {args.k} blocks, union {union.numel()} blocks (union/expert work "
          f"{flops_union / flops_grouped:.2f}x)")
    us = lambda t: f"{t * 1e6:9.1f} us"  # noqa: E731
    print(f"no-grad delta incl. a copy of y (median of {args.repeats}): union {us(tu)} | grouped {us(tg)} | "
          f"sorted {us(ts)} | before {us(tb)}")
    print(f"ratio grouped/union {tg / tu:.3f} | sorted/union {ts / tu:.3f} | before/union {tb / tu:.3f}")


if __name__ == "__main__":
    main()
