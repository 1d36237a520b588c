"""General-ability scoring (lm-evaluation-harness through `seta.eval.harness.RoutedLM`) with one forward row
per distinct forward input (the default: an MMLU question's one-token choices share a row) vs one row per
request (`share_forwards=False`, the reference), side by side.

    python benchmarks/bench_harness_shared.py --model ~/.cache/seta/assets/models/SmolLM2-135M-Instruct \
        --general-data ~/.cache/seta/assets/general --limit 40 --repeats 3

Scores the base model on MMLU (5-shot) and PIQA (0-shot), `--limit` items each, as `seta run` does after a
stream. Prints the median wall and CPU seconds per contender (interleaved rounds), their ratio, and each
benchmark's score and largest per-request log-likelihood difference under both.
"""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import common_args, interleaved_timing, machine, med, setup

from seta.eval import harness


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--model", required=True, help="HF model folder")
    parser.add_argument("--general-data", required=True, help="general-ability folder (mmlu/, piqa/)")
    parser.add_argument("--limit", type=int, default=40, help="items per benchmark")
    parser.add_argument("--tasks", default="mmlu,piqa")
    args = parser.parse_args()
    device = setup(args)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    tasks = tuple(args.tasks.split(","))
    data = harness.load_general_data(args.general_data, tasks, limit=args.limit)
    shared_lm = harness.RoutedLM

    def score(share: bool):
        def run():
            harness.RoutedLM = shared_lm if share else _reference(shared_lm)
            try:
                return harness.general_ability_details(model, tokenizer, data, tasks, progress=False)
            finally:
                harness.RoutedLM = shared_lm
        return run

    fns = {"one row per request": score(False), "shared rows": score(True)}
    results = {name: fn() for name, fn in fns.items()}
    cpu: dict = {}
    wall = interleaved_timing(fns, device, 0, args.repeats, cpu)
    print(machine())
    print(f"{len(tasks)} benchmarks ({', '.join(tasks)}), {args.limit} items each")
    print(f"{'contender':<22} {'wall s':>8} {'CPU s':>8}  " + "  ".join(f"{t:>8}" for t in tasks))
    for name in fns:
        print(f"{name:<22} {med(wall[name]):>8.2f} {med(cpu[name]):>8.2f}  "
              + "  ".join(f"{results[name][t].score:>8.2f}" for t in tasks))
    ref, fast = (results[name] for name in fns)
    same = all(ref[t].score == fast[t].score and ref[t].other == fast[t].other for t in tasks)
    print(f"shared / one row per request, CPU time: {med(cpu['shared rows']) / med(cpu['one row per request']):.3f}; "
          f"scores identical: {same}")


def _reference(cls):
    class OneRowPerRequest(cls):
        def __init__(self, *a, **kw):
            super().__init__(*a, share_forwards=False, **kw)
    return OneRowPerRequest


if __name__ == "__main__":
    main()
