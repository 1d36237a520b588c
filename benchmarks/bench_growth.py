"""How SETA's costs grow with the stream: per task t = 1 … T on one model, in one process.

    python benchmarks/bench_growth.py                      # mid Llama (hidden 512, 4 layers), T = 32, CPU fp32
    python benchmarks/bench_growth.py --tasks 4 --quick    # smoke run

The real SETA strategy object (`seta.train.strategies.Seta`) is driven task by task, as the training
loop drives it, on synthetic data: task j's prompts draw their tokens from the j-th band of the
vocabulary, so their routing features differ and the gate can learn them. The probe's scores are
random (seeded): Split-on-Share then shares few blocks, so the stored stack grows about as fast as it
can (the worst case for memory). Measured at every t:

- step: one training step (forward + backward + AdamW on S_t's working copy, anchor penalty included);
- probe: `probe_block_sensitivity` on one micro-batch;
- fisher: `estimate_block_fisher` on one micro-batch (gradients w.r.t. working copies of S_t), and
  the whole-stack layout (gradients w.r.t. every layer's whole stored stack, then S_t's rows): the
  layout before working copies, as the reference (values checked equal);
- gate: `train_gate` with each earlier task's covariance factored once (cached) and, at the t in
  `--uncached-at`, re-factorised at every step (the code before the cache; same gate, checked);
- eval: the routed evaluation after task t of every task so far (t test sets), batches grouped by
  routed expert (`routing_groups`) and per-batch routing (the reference; same generations, checked);
- memory: stored blocks (the stacks), anchors (θ* + Fisher), routing statistics, grads + AdamW state,
  and the size of `save_pretrained`'s safetensors file.

Times are medians of `--repeats` interleaved calls. Writes JSON (`--out`) and a PNG (`--png`).
`--gate-dim D` instead times only the gate at feature width D (e.g. 4096, a 7B model's hidden size)
with `--tasks` earlier tasks of random statistics, cached vs uncached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from types import SimpleNamespace
from unittest import mock

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import MID_LLAMA, MID_VOCAB, common_args, interleaved_timing, machine, med, optimizer_state_bytes, setup

from seta.models import build_tiny_model, estimate_block_fisher, probe_block_sensitivity
from seta.models.gate import Router
from seta.train.gate_training import GateTrainConfig, train_gate
from seta.train.strategies import SetaOwnConfig, SparseConfig, build_strategy


class StubTokenizer:
    """Prompts are given as token ids; generation needs only eos / pad ids and a decode."""

    eos_token_id, pad_token_id = 2, 0

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def task_ids(j: int, n: int, seq: int, bands: int, g: torch.Generator) -> torch.Tensor:
    """(n, seq) token ids from the j-th vocabulary band (wrapping after `bands` tasks)."""
    width = (MID_VOCAB - 3) // bands
    lo = 3 + (j % bands) * width
    return torch.randint(lo, lo + width, (n, seq), generator=g)


def lm_batch(ids: torch.Tensor) -> dict:
    labels = ids.clone()
    labels[:, : ids.shape[1] // 2] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def fisher_whole_stack(seta, global_ids, batches):
    """Reference layout: F = (1/M) Σ g², g w.r.t. every layer's whole stack, S_t's rows kept."""
    ids = seta._ids(global_ids)
    per = seta.index.split(ids)
    seta.end_training()
    names = [n for n in seta.layers if n in per]
    stacks = [seta.layers[n].blocks for n in names]
    pos = [seta.layers[n].positions(per[n]) for n in names]
    acc, m = [torch.zeros(p.numel(), *s.shape[1:]) for p, s in zip(pos, stacks)], 0
    with seta.use_expert(ids), torch.enable_grad():
        for batch in batches:
            loss = seta(**batch, use_cache=False).loss
            grads = torch.autograd.grad(loss, stacks, allow_unused=True)
            for a, g, p in zip(acc, grads, pos):
                a += g.index_select(0, p).square()
            m += 1
    return torch.cat([a / m for a in acc])


def gate_only(args):
    """Gate training at feature width D with T earlier tasks: cached factors vs re-factorised."""
    d, g = args.gate_dim, torch.Generator().manual_seed(0)
    router = Router(d, shrinkage=0.1)
    for t in range(args.tasks + 1):
        router.add_task(t)
        base = torch.randn(d, generator=g)
        router.observe(t, base + torch.randn(2 * args.gate_feats, d, generator=g))
    z = torch.randn(args.gate_feats, d, generator=g)
    old = router.gate.snapshot()
    cfg = GateTrainConfig(steps=args.gate_steps, batch_size=args.gate_batch)
    state = {k: v.clone() for k, v in router.gate.state_dict().items()}

    f0 = time.perf_counter()
    for t in router.tasks[:-1]:  # factor once per task (what the cache costs, once per gate training)
        router.factor(t)
    t_factor = (time.perf_counter() - f0) / args.tasks

    def run(cached):  # steady state: the cached run finds the factors, the reference recomputes them
        router.gate.load_state_dict(state)
        train_gate(router, args.tasks, z, cfg, old, cached_factors=cached)

    train_gate(router, args.tasks, z, replace(cfg, steps=1), old)  # first AdamW: one-time imports (seconds)
    times = interleaved_timing({"cached": lambda: run(True), "uncached": lambda: run(False)}, torch.device("cpu"),
                               0, args.repeats)
    c, u = med(times["cached"]), med(times["uncached"])
    print(f"machine: {machine()}")
    print(f"gate training at d = {d}, {args.tasks} earlier tasks, {args.gate_steps} steps x {args.gate_batch} "
          f"features per class (median of {args.repeats}): cached factors {c:.3f} s | re-factorised every step "
          f"{u:.3f} s | uncached/cached {u / c:.2f}")
    print(f"factoring one task's covariance (paid once per task with the cache, at every step without): "
          f"{t_factor:.3f} s; per gate step: cached {c / args.gate_steps:.3f} s, re-factorised "
          f"{u / args.gate_steps:.3f} s; a {GateTrainConfig().steps}-step gate training with {args.tasks} earlier "
          f"tasks: cached ~{args.tasks * t_factor + GateTrainConfig().steps * c / args.gate_steps:.0f} s, "
          f"re-factorised ~{GateTrainConfig().steps * u / args.gate_steps:.0f} s")


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--tasks", type=int, default=32, help="T: tasks in the stream")
    p.add_argument("--ratio", type=float, default=0.01)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=2, help="training / probe / Fisher micro-batch")
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--train-prompts", type=int, default=32, help="prompts per task for the routing statistics")
    p.add_argument("--test-prompts", type=int, default=4, help="test prompts per task (evaluated after every task)")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--gate-steps", type=int, default=30)
    p.add_argument("--gate-batch", type=int, default=64)
    p.add_argument("--gate-feats", type=int, default=64, help="--gate-dim: features per task")
    p.add_argument("--uncached-at", default="1,2,4,8,16,24,32", help="t at which the uncached gate is timed too")
    p.add_argument("--bands", type=int, default=8, help="vocabulary bands (distinct prompt distributions)")
    p.add_argument("--gate-dim", type=int, default=0, help="only time the gate at this feature width")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke run)")
    p.add_argument("--out", default="", help="write the per-task figures as JSON here")
    p.add_argument("--png", default="", help="plot the curves into this PNG")
    p.add_argument("--plot-from", default="", help="only redraw --png from a JSON written by --out")
    p.set_defaults(repeats=3, warmup=1)
    args = p.parse_args()
    if args.quick:
        args.repeats, args.gate_steps = 1, 5
    if args.plot_from:
        with open(args.plot_from) as f:
            return plot(json.load(f)["rows"], args.png)
    device = setup(args)
    if args.gate_dim:
        return gate_only(args)
    if device.type != "cpu":
        sys.exit("bench_growth.py runs on the CPU (its figures are ratios and curves)")

    torch.manual_seed(args.seed)
    base = build_tiny_model("llama", vocab_size=MID_VOCAB, seed=args.seed, dtype=args.dtype, pad_token_id=0,
                            bos_token_id=1, eos_token_id=2, **MID_LLAMA)
    sparse = SparseConfig(block_size=args.block_size, ratio=args.ratio)
    cfg = SetaOwnConfig(gate=GateTrainConfig(steps=args.gate_steps))
    tok = StubTokenizer()
    strategy = build_strategy("seta", base, tok, sparse, seta=cfg)
    strategy.n_tasks = args.tasks
    seta = strategy.model
    seta.eval()
    g = torch.Generator().manual_seed(args.seed)
    uncached_at = {int(x) for x in args.uncached_at.split(",") if x}
    tests = {}
    rows = []
    old_gate = None
    from seta.eval.generate import generate

    for t in range(args.tasks):
        T = t + 1
        train_ids = task_ids(t, args.train_prompts, args.prompt_len, args.bands, g)
        tests[t] = [x.tolist() for x in task_ids(t, args.test_prompts, args.prompt_len, args.bands, g)]
        batch = lm_batch(task_ids(t, args.batch, args.seq, args.bands, g))
        row = {"t": T}

        # probe (one micro-batch), then allocation from random scores (little sharing: worst-case growth)
        times = interleaved_timing({"probe": lambda: probe_block_sensitivity(seta, [batch])}, device, 0, 1)
        row["probe_s"] = med(times["probe"])
        scores = torch.rand(seta.index.n_blocks, generator=g, dtype=torch.float64)
        with mock.patch("seta.models.probes.probe_block_sensitivity", lambda *a, **k: scores):
            strategy.before_task(t, SimpleNamespace(name=f"task{t}"), lambda: iter([batch]))

        # training steps on S_t's working copy
        params = strategy.trainable_parameters()
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        seta.train()

        def step():
            lm, reg = strategy.loss(batch, t)
            loss = lm + reg
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

        row["step_s"] = med(interleaved_timing({"step": step}, device, args.warmup, args.repeats)["step"])
        row["optimizer_bytes"] = optimizer_state_bytes(opt) + sum(p.grad.numel() * p.grad.element_size() for p in params)
        seta.eval()
        seta.end_training()  # the working copy back (what SetaContinualModel.end_task does first)
        del opt

        # Fisher of S_t: working copies (the code) vs the whole stack (the layout before)
        s_t = seta.registry.expert(t)
        fish = {}
        times = interleaved_timing({
            "fisher": lambda: fish.__setitem__("a", estimate_block_fisher(seta, s_t, [batch])),
            "fisher_whole": lambda: fish.__setitem__("b", fisher_whole_stack(seta, s_t, [batch])),
        }, device, 0, args.repeats)
        torch.testing.assert_close(fish["a"], fish["b"], rtol=1e-4, atol=1e-12)
        row["fisher_s"], row["fisher_whole_stack_s"] = med(times["fisher"]), med(times["fisher_whole"])
        seta.update_anchors(s_t, fish["a"])

        # routing statistics and the gate (as SetaContinualModel.end_task, with the timing split out)
        with torch.no_grad():
            z = seta.routing_features(train_ids, torch.ones_like(train_ids))
        seta.router.observe(t, z)
        seta.router.calibrate_null(t, z[-max(1, len(z) // 4):], cfg.null_quantile)
        # 32 features in d = 512 put every unseen prompt past an in-sample threshold, i.e. on the null
        # expert (the base); keep the null test's cost (distances to every task) but never fire it
        seta.router.thresholds[t] = float("inf")
        state = {k: v.clone() for k, v in seta.router.gate.state_dict().items()}
        gate_fns = {"gate": lambda: (seta.router.gate.load_state_dict(state), seta.router._factors.clear(),
                                     train_gate(seta.router, t, z, cfg.gate, old_gate))}
        if T in uncached_at and t > 0:
            gate_fns["gate_uncached"] = lambda: (seta.router.gate.load_state_dict(state),
                                                 train_gate(seta.router, t, z, cfg.gate, old_gate, cached_factors=False))
        times = interleaved_timing(gate_fns, device, 0, 1)
        row["gate_s"] = med(times["gate"])
        row["gate_uncached_s"] = med(times["gate_uncached"]) if "gate_uncached" in times else None
        seta.router.gate.load_state_dict(state)
        train_gate(seta.router, t, z, cfg.gate, old_gate)
        old_gate = seta.router.gate.snapshot()
        strategy.api.load_old_gate(old_gate.state_dict())
        strategy.api.active = None  # the task is closed (what SetaContinualModel.end_task does last)
        seta.set_task(t)

        # evaluation of every task so far: grouped by routed expert vs per-batch routing
        outs = {}

        def evaluate(grouped):
            res = []
            strategy._plan = None  # the reference routes every batch itself
            for j in range(T):
                res.append(generate(seta, tok, tests[j], max_new_tokens=args.new_tokens, batch_size=args.eval_batch,
                                    before_batch=lambda idx, inputs, j=j: strategy.route(inputs, j),
                                    after_batch=lambda idx: strategy.clear_route(), progress=False,
                                    group_by=(lambda ids, j=j: strategy.routing_groups(ids, j)) if grouped else None,
                                    eos_token_id=MID_VOCAB + 1))  # never generated: exactly new_tokens
            outs[grouped] = res

        for j in range(T):  # z of the new test prompts into the cache first, as at every later evaluation
            strategy.routing_groups(tests[j], j)
        strategy.routing_log.true.clear(), strategy.routing_log.pred.clear()
        times = interleaved_timing({"eval": lambda: evaluate(True), "eval_per_batch": lambda: evaluate(False)},
                                   device, 0, 1)
        row["eval_s"], row["eval_per_batch_s"] = med(times["eval"]), med(times["eval_per_batch"])
        row["eval_same"] = outs[True] == outs[False]
        n = len(strategy.routing_log.true)
        row["routing_acc"] = 100.0 * sum(a == b for a, b in zip(strategy.routing_log.true, strategy.routing_log.pred)) / max(n, 1)

        # memory
        row["stored_blocks_bytes"] = sum(l.blocks.numel() * l.blocks.element_size() for l in seta.layers.values() if l.n_blocks)
        row["anchor_bytes"] = sum(x.numel() * x.element_size() for x in (seta.anchors.values, seta.anchors.fisher))
        row["router_stats_bytes"] = sum(v.numel() * v.element_size() for k, v in seta.router.tensors().items()
                                        if k.startswith("stats."))
        with tempfile.TemporaryDirectory() as tmp:
            seta.save_pretrained(tmp)
            row["checkpoint_bytes"] = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        row["allocated_blocks"] = int(seta.allocated_ids().numel())
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)

    print(f"machine: {machine()}")
    print(f"mid Llama hidden 512 x 4 layers, {seta.index.n_blocks} target blocks of {args.block_size}x{args.block_size}, "
          f"k = {seta.registry.expert(0).numel()} per task; micro-batch {args.batch} x {args.seq}; "
          f"{args.test_prompts} test prompts x {args.prompt_len} tokens per task, {args.new_tokens} new tokens")
    first, last = rows[0], rows[-1]
    for key in ("step_s", "probe_s", "fisher_s", "fisher_whole_stack_s", "gate_s", "eval_s", "eval_per_batch_s",
                "stored_blocks_bytes", "optimizer_bytes", "checkpoint_bytes"):
        print(f"  {key:<22} t=1 {first[key]:.4g}   t={last['t']} {last[key]:.4g}   ratio {last[key] / first[key]:.2f}")
    for r in rows:
        if r["gate_uncached_s"]:
            print(f"  gate t={r['t']}: uncached {r['gate_uncached_s']:.3f} s / cached {r['gate_s']:.3f} s = "
                  f"{r['gate_uncached_s'] / r['gate_s']:.2f}")
    print(f"  evaluation grouped vs per-batch generations identical at every t: {all(r['eval_same'] for r in rows)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)
    if args.png:
        plot(rows, args.png)


def plot(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = [r["t"] for r in rows]
    fig = Figure(figsize=(13, 6.5))
    # on a shared machine absolute times follow the load; each cost divided by the training step
    # measured at the same t (minutes apart at most) shows the growth without it
    panels = [
        ("training step (s, absolute: follows the load)", [("step_s", "SETA step")]),
        ("probe / step", [("probe_s", "probe, 1 micro-batch")]),
        ("Fisher of S_t / step", [("fisher_s", "working copy of S_t"), ("fisher_whole_stack_s", "whole stack (before)")]),
        ("gate training / step", [("gate_s", "factor cached"), ("gate_uncached_s", "re-factorised (before)")]),
        ("evaluation of tasks 1..t / step", [("eval_s", "grouped by expert"), ("eval_per_batch_s", "per batch")]),
        ("stored blocks (MiB)", [("stored_blocks_bytes", "block stacks"), ("anchor_bytes", "anchors + Fisher")]),
        ("grads + AdamW state (MiB)", [("optimizer_bytes", "S_t working copy")]),
        ("checkpoint (MiB)", [("checkpoint_bytes", "save_pretrained"), ("router_stats_bytes", "routing statistics")]),
    ]
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(2, 4, i + 1)
        for key, label in series:
            norm = key.endswith("_s") and key != "step_s"
            pts = [(r["t"], r[key] / (r["step_s"] if norm else 1.0)) for r in rows if r.get(key) is not None]
            scale = 2**20 if key.endswith("bytes") else 1.0
            ax.plot([a for a, _ in pts], [b / scale for _, b in pts], marker="." if len(pts) < len(t) else None, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("task t", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle("SETA cost per task along a stream of tasks (mid Llama, CPU, bench_growth.py)", fontsize=10)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
