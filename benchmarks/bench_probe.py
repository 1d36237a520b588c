"""The sensitivity probe's cost as a fraction of one task's training time, measured in one process.

    python benchmarks/bench_probe.py                    # mid Llama (hidden 512, 4 layers), CPU fp32

Probe: `probe_block_sensitivity(seta, m micro-batches)` (no experts active, as at the start of a task).
Training: SETA training steps (forward + backward + AdamW) on the same micro-batches with an expert
of ratio `--ratio` routed. Per-micro-batch costs are measured interleaved; the task's training time
is steps x step time with steps = ceil(train_examples / batch) x epochs (defaults: 1000 examples per
task as in the embedded stream, micro-batch 8, 5 epochs = TRACE's typical per-task count).

    fraction = m · t_probe_per_micro_batch / (steps · t_step)
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import MID_LLAMA, MID_VOCAB, common_args, fmt_s, interleaved_timing, machine, med, setup, synthetic_batch

from seta.models import ExpertConfig, attach_experts, build_tiny_model, probe_block_sensitivity


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--4bit", dest="four_bit", action="store_true", help="NF4 base")
    p.add_argument("--m", type=int, default=32, help="probe micro-batches")
    p.add_argument("--batch", type=int, default=8, help="micro-batch size (probe and training)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--train-examples", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--ratio", type=float, default=0.01)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--full-probe", action="store_true", help="also time one real probe call over all m micro-batches")
    p.set_defaults(repeats=5, warmup=1)
    args = p.parse_args()
    device = setup(args)

    model = build_tiny_model("llama", vocab_size=MID_VOCAB, seed=args.seed, dtype=args.dtype,
                             load_in_4bit=args.four_bit, **MID_LLAMA)
    model = model if args.four_bit else model.to(device)
    seta = attach_experts(model, ExpertConfig(block_size=args.block_size))
    batch = synthetic_batch(MID_VOCAB, args.batch, args.seq, device, args.seed)
    scores = probe_block_sensitivity(seta, [batch])
    seta.allocate(0, scores, ratio=args.ratio)
    seta.set_task(0)
    seta.model.train()
    opt = torch.optim.AdamW(seta.trainable_parameters(), lr=1e-4, weight_decay=0.0)

    def probe_one():
        probe_block_sensitivity(seta, [batch])

    def train_one():
        loss = seta(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = interleaved_timing({"probe": probe_one, "step": train_one}, device, args.warmup, args.repeats)
    tp, ts = med(times["probe"]), med(times["step"])
    steps = math.ceil(args.train_examples / args.batch) * args.epochs
    print(f"machine: {machine()}")
    print(f"base: mid Llama hidden 512 x {MID_LLAMA['num_hidden_layers']} layers, vocab {MID_VOCAB}; "
          f"{'NF4 4-bit' if args.four_bit else args.dtype}; device {device}; micro-batch {args.batch} x seq {args.seq}; "
          f"expert {seta.registry.expert(0).numel()} blocks of {args.block_size}x{args.block_size} (ratio {args.ratio})")
    print(f"per micro-batch (median of {args.repeats}): probe {fmt_s(tp)} | training step {fmt_s(ts)} | "
          f"probe/step {tp / ts:.3f}")
    print(f"task: {args.train_examples} examples / {args.batch} x {args.epochs} epochs = {steps} steps -> "
          f"training {steps * ts:.1f} s; probe over m={args.m} micro-batches {args.m * tp:.2f} s")
    print(f"probe cost as a fraction of the task's training time: {args.m * tp / (steps * ts):.4f} "
          f"({100 * args.m * tp / (steps * ts):.2f} %)")
    if args.full_probe:
        t0 = time.perf_counter()
        probe_block_sensitivity(seta, [batch] * args.m)
        print(f"one real probe call over {args.m} micro-batches: {time.perf_counter() - t0:.2f} s "
              f"(vs {args.m} x per-batch median {args.m * tp:.2f} s)")


if __name__ == "__main__":
    main()
