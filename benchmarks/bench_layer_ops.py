"""What one sparse block layer's no-grad delta costs at a decoding step, op by op (CPU, one thread).

    python benchmarks/bench_layer_ops.py

A `SparseBlockLinear` over a square `nn.Linear` with k routed blocks and a mixed route (per-example
weights, so no fold applies), input (B, 1, d): the base linear alone, the layer's forward, the base
plus `delta_add_` called directly, and each op of the delta (gather of the input columns, bmm with the
blocksᵀ, the per-example scale, the scatter-add into the output) on its own; then the layer's forward
and the delta alone through the CPU kernel (`seta.models.cpu_kernel`, one C call). Process CPU time per
call, in microseconds; the layer is small enough that everything stays in cache (in a running model the
same delta costs more: `bench_generate.py --decode-step`). BENCHMARKS.md §7.3-§7.4.

    python benchmarks/bench_layer_ops.py --tokens 1,2,4,8,16,32     # kernel vs torch ops by tokens per row

`--tokens`: for each width and each T in the list, the delta alone on B x T tokens, `delta_add_`
(torch ops) against the kernel, side by side: where the kernel stops paying (`MAX_TOKENS`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import machine

from seta.core.blocks import delta_add_
from seta.models import cpu_kernel
from seta.models.layer import SparseBlockLinear


def per_call_us(fn, n: int) -> float:
    for _ in range(n // 10):
        fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def _layer_with_blocks(d: int, b: int, k: int) -> SparseBlockLinear:
    """A square d x d layer with k random blocks of b x b allocated, values N(0, 1); no route yet."""
    layer = SparseBlockLinear(torch.nn.Linear(d, d, bias=False), b)
    layer.add_blocks(torch.randperm(layer.grid.n_rows * layer.grid.n_cols)[:k])
    with torch.no_grad():
        layer.blocks.normal_()
    return layer


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="128:16:18,512:32:12,576:64:6", help="d:b:k,... (width, block size, routed blocks)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--tokens", default="", help="T,T,...: the token sweep instead of the op-by-op table")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.tokens:
        return token_sweep(args)
    print(f"machine: {machine()}; batch {args.batch}, one token per row; microseconds per call")
    for spec in args.shapes.split(","):
        d, b, k = (int(v) for v in spec.split(":"))
        layer = _layer_with_blocks(d, b, k)
        weights = (torch.rand(args.batch, k) > 0.5).float()
        weights[0] = 1.0  # rows differ: a mixed route
        layer.set_route(torch.arange(k), weights)
        x = torch.randn(args.batch, 1, d)  # (B, T, d_in)
        base = layer.base_layer
        with torch.inference_mode():
            layer(x)
            plan, g = layer._plan, layer.grid
            ng = plan.no_grad_tensors(layer.blocks, torch.float32, g)
            xg = x.reshape(-1, g.n_cols, b).index_select(1, plan.cols).transpose(0, 1)  # (k, N, b)
            out = torch.bmm(xg, ng.blocks_t)  # (k, N, b)
            yr = base(x).view(-1, g.n_rows, b)  # (N, n_rows, b)
            t = {
                "base linear": lambda: base(x),
                "layer forward": lambda: layer(x),
                "base + delta_add_": lambda: delta_add_(base(x), x, ng.blocks_t, plan.rows, plan.cols, g, ng.wt, None),
                "gather": lambda: x.reshape(-1, g.n_cols, b).index_select(1, plan.cols).transpose(0, 1),
                "bmm": lambda: torch.bmm(xg, ng.blocks_t),
                "scale": lambda: out.view(k, args.batch, -1, b).mul_(ng.wt),
                "scatter-add": lambda: yr.index_add_(1, plan.rows, out.transpose(0, 1)),
                "layer forward, CPU kernel": lambda: layer(x),
                "base + kernel": lambda: ng.fused(base(x), x, ng.wt),
            }
            times = {}
            for name, fn in t.items():
                with contextlib.nullcontext() if "kernel" in name else cpu_kernel.disabled():
                    times[name] = per_call_us(fn, args.calls)
        ops = sum(times[n] for n in ("gather", "bmm", "scale", "scatter-add"))
        print(f"d {d}, b {b}, k {k}: " + " | ".join(f"{n} {v:.1f}" for n, v in times.items())
              + f" | the 4 ops together {ops:.1f}; the rest of the layer's price (Python, views, checks) "
              f"{times['layer forward'] - times['base linear'] - ops:.1f}")


def token_sweep(args) -> None:
    """The delta alone on (B, T, d) inputs: torch ops and the kernel, one after the other per cell."""
    print(f"machine: {machine()}; batch {args.batch}; microseconds per call of the delta alone "
          f"(into a fixed output); kernel takes up to MAX_TOKENS = {cpu_kernel.MAX_TOKENS} tokens")
    for spec in args.shapes.split(","):
        d, b, k = (int(v) for v in spec.split(":"))
        layer = _layer_with_blocks(d, b, k)
        layer.set_route(torch.arange(k), torch.rand(args.batch, k))
        plan, g = layer._plan, layer.grid
        ng = plan.no_grad_tensors(layer.blocks, torch.float32, g)
        unlimited = cpu_kernel.fused_delta(ng.blocks_t, plan.rows, plan.cols, g, max_tokens=None)
        cells = []
        for tokens in (int(v) for v in args.tokens.split(",")):
            x, y = torch.randn(args.batch, tokens, d), torch.zeros(args.batch, tokens, d)  # (B, T, d)
            torch_ops = per_call_us(lambda: delta_add_(y, x, ng.blocks_t, plan.rows, plan.cols, g, ng.wt, None,
                                                       autocast_on=False), args.calls // 5)
            kernel = per_call_us(lambda: unlimited(y, x, ng.wt), args.calls // 5)
            cells.append(f"N={args.batch * tokens}: torch ops {torch_ops:.1f}, kernel {kernel:.1f}")
        print(f"d {d}, b {b}, k {k}: " + " | ".join(cells))



if __name__ == "__main__":
    main()
