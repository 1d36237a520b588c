"""Generation time with SETA's gate routing vs the base model alone, same prompts, side by side.

    python benchmarks/bench_generate.py                 # mid Llama (hidden 512, 4 layers), CPU fp32
    python benchmarks/bench_generate.py --tiny --block-size 16 --ratio 0.1 --repeats 41 --headline
                                                        # the target's figure alone

SETA: `--tasks` experts allocated at ratio `--ratio` (random sensitivity scores, Split-on-Share as in
training), a gate with random (non-zero) heads so top-1 routing sends different prompts to different
experts; each timed call = `route_batch(prompts, mode='top1')` (a routing-feature forward pass of
the base + the gate) + greedy `generate` of exactly `--new-tokens` tokens. Base: a separate,
identical plain HF model (no wrappers) generating the same tokens count from the same prompts.
Also shown: the SETA-wrapped model with the route cleared (wrapper overhead alone); with --breakdown,
route_batch alone, generate with the route already set, the base's prefill (one new token), and
route_batch + generate with the routing features cached (the same prompts evaluated again).
Every SETA call here runs under no grad. `generate` folds the route into the base weights where the
whole batch has one route and the base is dense fp32/fp64 (`seta.models.fold`); "unfolded" times the
same calls with `fold_routes = False` (the layer's in-place delta path in every layer). `--one-expert`
biases the gate so that every prompt routes to expert 0 (a single prompt always has one route;
evaluation batches mostly do not, see BENCHMARKS.md §2); without it prompts route to different experts.
The delta is plain torch ops (`seta.core.blocks`: gather -> bmm -> index_add); on a GPU its share
of a training step at the paper presets' shapes is what benchmarks/gpu_check.sh measures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import (MID_LLAMA, MID_VOCAB, common_args, fmt_s, interleaved_timing, machine, med, paired_ratio,
                     round_order, setup, sync)

from seta.data import build_tiny_tokenizer
from seta.experiment.presets import TINY
from seta.models import ExpertConfig, FeatureCache, attach_experts, build_tiny_model
from seta.models.config import cache_name
from seta.models.fold import folded


def main():
    p = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--4bit", dest="four_bit", action="store_true", help="NF4 base")
    p.add_argument("--model", default="", help="a local HF checkpoint (e.g. SmolLM2) instead of the mid Llama")
    p.add_argument("--tiny", action="store_true",
                   help="the tiny preset's architecture (hidden 128, 2 layers, its tokenizer's vocab; random weights) "
                        "instead of the mid Llama; pair with --block-size 16 --ratio 0.1 as that preset trains")
    p.add_argument("--batch", type=int, default=4, help="prompts per generate call")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--tasks", type=int, default=3, help="experts allocated before generation")
    p.add_argument("--ratio", type=float, default=0.01, help="block budget per task (fraction of all blocks)")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--one-expert", action="store_true", help="the gate routes every prompt to expert 0")
    p.add_argument("--decode-step", action="store_true",
                   help="also time one decoding step (a forward of one token per row on a KV cache): the base, "
                        "SETA with no expert, SETA with the route on the delta path; per routed layer, the delta's cost")
    p.add_argument("--breakdown", action="store_true",
                   help="also time route_batch alone, generate with the route set, and the base's prefill")
    p.add_argument("--headline", action="store_true",
                   help="time only the base and SETA's route_batch+generate, alternating (the target's figure: "
                        "the fewer contenders, the closer in time each pair of calls on a machine whose speed drifts)")
    p.set_defaults(repeats=5, warmup=1)
    args = p.parse_args()
    device = setup(args)

    shape = TINY.tiny_model if args.tiny else MID_LLAMA  # the random model's architecture (without --model)
    vocab = len(build_tiny_tokenizer()) if args.tiny else MID_VOCAB

    def base():
        if args.model:
            from seta.models import load_base_model
            m = load_base_model(os.path.expanduser(args.model), load_in_4bit=args.four_bit, dtype=args.dtype,
                                device_map=str(device) if args.four_bit else None)
            return (m if args.four_bit else m.to(device)).eval()
        m = build_tiny_model("llama", vocab_size=vocab, seed=args.seed, dtype=args.dtype, load_in_4bit=args.four_bit,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2, **shape)
        return (m if args.four_bit else m.to(device)).eval()

    plain = base()
    if args.model:
        vocab = plain.config.vocab_size
    seta = attach_experts(base(), ExpertConfig(block_size=args.block_size))
    g = torch.Generator().manual_seed(args.seed)
    for t in range(args.tasks):
        seta.allocate(t, torch.rand(seta.index.n_blocks, generator=g, dtype=torch.float64), ratio=args.ratio)
    with torch.no_grad():
        for layer in seta.layers.values():
            if layer.n_blocks:
                layer.blocks.normal_(0, 1e-3, generator=None)
        for head in seta.router.gate.heads:
            head.weight.normal_(0, 1.0)
        if args.one_expert:
            seta.router.gate.heads[0].bias.fill_(1e4)
    seta.eval()

    ids = torch.randint(3, vocab, (args.batch, args.prompt_len), generator=g).to(seta.device)
    mask = torch.ones_like(ids)
    gen_kw = dict(attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                  do_sample=False, pad_token_id=0)
    probs = seta.route_batch(ids, mask, mode="top1")
    with torch.inference_mode(), folded(seta) as n_folded:  # what generate folds for this route
        pass
    routed = probs.argmax(1).tolist()
    routes = [r for r in (layer.get_route() for layer in seta.layers.values()) if r is not None]
    active, with_blocks = sum(int(r[0].numel()) for r in routes), len(routes)  # layers without a route: base only

    def run_plain():
        with torch.inference_mode():
            out = plain.generate(ids, **gen_kw)
        assert out.shape[1] == args.prompt_len + args.new_tokens

    def run_seta():
        with torch.inference_mode():
            seta.route_batch(ids, mask, mode="top1")
            out = seta.generate(ids, **gen_kw)
        assert out.shape[1] == args.prompt_len + args.new_tokens

    def run_seta_unfolded():  # the same, every layer on the delta path
        seta.fold_routes = False
        try:
            run_seta()
        finally:
            seta.fold_routes = True

    def run_cleared():
        with torch.inference_mode(), seta.no_experts():
            seta.generate(ids, **gen_kw)

    def run_route():  # the routing-feature pass (base, no experts) + gate + setting the route
        with torch.inference_mode():
            seta.route_batch(ids, mask, mode="top1")

    def run_routed():  # generate with the route already set (the delta's cost alone)
        with torch.inference_mode():
            seta.generate(ids, **gen_kw)

    def run_prefill():  # the base's prefill: what the routing-feature pass costs at least
        with torch.inference_mode():
            plain.generate(ids, **dict(gen_kw, max_new_tokens=1, min_new_tokens=1))

    cache = FeatureCache()

    def run_seta_cached():  # the same prompts evaluated again (after a later task): z comes from the cache
        with torch.inference_mode():
            seta.route_batch(ids, mask, mode="top1", cache=cache)
            seta.generate(ids, **gen_kw)

    for t in seta.router.tasks:  # routing statistics, for the null-expert contender
        seta.router.observe(t, torch.randn(64, seta.router.gate.feature_dim, generator=g))
        seta.router.thresholds[t] = -1.0  # every prompt is far from every task: the null expert

    def run_seta_null():  # route_batch with the null rule sending the batch to the base: prefill reused
        with torch.inference_mode():
            seta.route_batch(ids, mask, mode="top1", null=True)
            out = seta.generate(ids, **gen_kw)
        assert out.shape[1] == args.prompt_len + args.new_tokens

    fns = {"base": run_plain, "seta": run_seta, "unfolded": run_seta_unfolded, "cleared": run_cleared}
    if args.headline:  # two contenders: every SETA call sits between two base calls
        cpu = {}
        times = interleaved_timing({"base": run_plain, "seta": run_seta}, device, args.warmup, args.repeats, cpu=cpu)
        clock = cpu if device.type == "cpu" else times
        print(f"machine: {machine()}")
        print(f"top-1 routes {routed}; {n_folded} of {len(seta.layers)} layers folded ({with_blocks} have routed blocks)")
        print(f"headline ({'process CPU' if device.type == 'cpu' else 'wall'} time, {args.repeats} rounds of base and "
              f"SETA route_batch+generate, adjacent calls paired): SETA/base {paired_ratio(clock, 'seta'):.3f} "
              f"(target <= 1.2) | ratio of medians {med(clock['seta']) / med(clock['base']):.3f}")
        return
    if args.breakdown:
        fns.update(route=run_route, routed=run_routed, prefill=run_prefill, cached=run_seta_cached, null=run_seta_null)
    cpu = {}
    times = interleaved_timing(fns, device, args.warmup, args.repeats, cpu=cpu)
    tb, ts, tc = med(times["base"]), med(times["seta"]), med(times["cleared"])
    print(f"machine: {machine()}")
    name = (os.path.basename(os.path.expanduser(args.model).rstrip("/")) if args.model else
            f"{'tiny preset Llama' if args.tiny else 'mid Llama'} hidden {shape['hidden_size']} x "
            f"{shape['num_hidden_layers']} layers, vocab {vocab}")
    print(f"base: {name}; "
          f"{'NF4 4-bit' if args.four_bit else args.dtype}; device {device}")
    print(f"prompts {args.batch} x {args.prompt_len} tokens, {args.new_tokens} new tokens (greedy); "
          f"{args.tasks} experts at ratio {args.ratio} (b={args.block_size}); top-1 routes {routed}; "
          f"{active} blocks active in the route")
    print(f"generate time (median of {args.repeats}, {args.warmup} warm-up): base {fmt_s(tb)} | "
          f"SETA route_batch+generate {fmt_s(ts)} | SETA wrappers, no route {fmt_s(tc)}")
    tu = med(times["unfolded"])
    print(f"ratio SETA/base {ts / tb:.3f}  (target <= 1.2) | unfolded (delta path everywhere)/base {tu / tb:.3f} | "
          f"wrappers-only/base {tc / tb:.3f}; {n_folded} of {len(seta.layers)} layers folded for this route "
          f"({with_blocks} have routed blocks)")
    if device.type == "cpu":
        cb, cs, cc = med(cpu["base"]), med(cpu["seta"]), med(cpu["cleared"])
        cu = med(cpu["unfolded"])
        print(f"process CPU time (median): base {fmt_s(cb)} | SETA {fmt_s(cs)} | unfolded {fmt_s(cu)} | "
              f"no route {fmt_s(cc)} | ratio SETA/base {cs / cb:.3f} | unfolded/base {cu / cb:.3f} | "
              f"wrappers-only/base {cc / cb:.3f}")
        print(f"paired (median over the {args.repeats} rounds of each call's CPU time / the base call's of the same "
              f"round; the headline where the machine's speed drifts): SETA/base {paired_ratio(cpu, 'seta'):.3f} | "
              f"unfolded {paired_ratio(cpu, 'unfolded'):.3f} | wrappers-only {paired_ratio(cpu, 'cleared'):.3f}")
    if args.breakdown:
        tr, tg, tp = med(times["route"]), med(times["routed"]), med(times["prefill"])
        print(f"breakdown: route_batch {fmt_s(tr)} ({tr / tb:.3f} of base) | generate with the route set {fmt_s(tg)} "
              f"({tg / tb:.3f}) | base prefill + 1 token {fmt_s(tp)} ({tp / tb:.3f}): the routing-feature pass "
              f"repeats a base prefill, so SETA/base >= about {1 + tp / tb:.3f} here")
        tz = med(times["cached"])
        print(f"same prompts again with z cached (FeatureCache, as in the continual evaluation): {fmt_s(tz)}, "
              f"ratio {tz / tb:.3f}")
        tn = med(times["null"])
        print(f"route_batch(null=True) sending the batch to the null expert + generate (the routing pass's KV "
              f"cache reused as the prefill): {fmt_s(tn)}, ratio {tn / tb:.3f}")
        if device.type == "cpu":
            cb = med(cpu["base"])
            print("process CPU time ratios to the base: " + " | ".join(
                f"{n} {med(cpu[n]) / cb:.3f}" for n in ("seta", "route", "routed", "prefill", "cached", "null")))
    if args.decode_step:
        seta.set_routing(probs)  # the gate's routes of this batch (the null contender above cleared them)
        decode_step_breakdown(plain, seta, ids, mask, args.new_tokens, args.repeats, device)


def decode_step_breakdown(plain, seta, ids, mask, steps: int, repeats: int, device) -> None:
    """Process CPU time (wall on a GPU) of one greedy decoding step, median over `repeats` runs of
    `steps` steps after a prefill, for the base, SETA with no expert (the wrappers alone) and SETA with
    the route on the delta path (no fold); the difference / routed layers is the delta's price per
    layer in the running model (BENCHMARKS.md §2)."""
    name = cache_name()  # `cache` or `past_key_values`, whichever this transformers takes
    clock = time.process_time if device.type == "cpu" else time.perf_counter

    def per_step(model, ctx) -> float:
        with torch.inference_mode(), ctx():
            out = model(input_ids=ids, attention_mask=mask, use_cache=True)
            cache, tok, m = getattr(out, name), out.logits[:, -1:].argmax(-1), mask  # (B, 1) next tokens
            sync(device)
            start = clock()
            for _ in range(steps):
                m = torch.cat([m, torch.ones_like(tok)], 1)
                out = model(input_ids=tok, attention_mask=m, use_cache=True, **{name: cache})
                cache, tok = getattr(out, name), out.logits[:, -1:].argmax(-1)
            sync(device)
            return (clock() - start) / steps

    routed = sum(layer.get_route() is not None for layer in seta.layers.values())
    contenders = {"base": (plain, contextlib.nullcontext), "no expert": (seta, seta.no_experts),
                  "routed": (seta, contextlib.nullcontext)}
    runs = {n: [] for n in contenders}
    for r in range(repeats):  # interleaved as `interleaved_timing`
        for n in round_order(contenders, r):
            runs[n].append(per_step(*contenders[n]))
    tb, tn, tr = (med(runs[n]) for n in contenders)
    print(f"one decoding step ({'CPU' if device.type == 'cpu' else 'wall'} time, median of {repeats} x {steps} steps): "
          f"base {tb * 1e6:.0f} us | SETA, no expert {tn * 1e6:.0f} us | SETA, route on the delta path "
          f"{tr * 1e6:.0f} us ({tr / tb:.3f} of the base) | per routed layer ({routed}): delta {(tr - tn) / routed * 1e6:.1f} us, "
          f"wrappers {(tn - tb) / len(seta.layers) * 1e6:.1f} us per wrapped layer")
    print(f"  paired (median of per-round ratios to the base's step): no expert {paired_ratio(runs, 'no expert'):.3f} | "
          f"routed {paired_ratio(runs, 'routed'):.3f}; delta per routed "
          f"layer {(paired_ratio(runs, 'routed') - paired_ratio(runs, 'no expert')) * tb / routed * 1e6:.1f} us at the "
          "base's median step")


if __name__ == "__main__":
    main()
