"""One training step (forward + backward) of the answer-token loss with the output layer on every position
vs only on the positions the loss reads (`seta.train.strategies.base.answer_positions`), side by side.

    python benchmarks/bench_answer_logits.py --model ~/.cache/seta/assets/models/SmolLM2-135M-Instruct \
        --data-dir ~/.cache/seta/assets/streams/default --threads 2

Batches: `--batch` consecutive train examples of each task of the stream, encoded as training encodes
them (`--max-prompt` / `--max-answer` token caps, answer prefix " "), right-padded. Trainable: LoRA r = 8
on q/v (the backward runs through every layer either way). Reports the median wall and CPU seconds
per step over the tasks' batches (interleaved rounds) and the largest loss difference between the two.
"""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import common_args, interleaved_timing, machine, med, setup

from seta.data import collate_train, encode_example, load_trace
from seta.train.strategies.base import Strategy, answer_positions, answer_token_loss


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--model", required=True, help="HF model folder")
    parser.add_argument("--data-dir", required=True, help="stream directory (TRACE layout + stream.json)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-prompt", type=int, default=256)
    parser.add_argument("--max-answer", type=int, default=64)
    args = parser.parse_args()
    device = setup(args)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    strategy = Strategy(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = {}
    for task in load_trace(args.data_dir):
        rows = [encode_example(tokenizer, ex.prompt, " " + ex.answer, args.max_prompt, args.max_answer)
                for ex in task.train[:args.batch]]
        batches[task.name] = {k: v.to(device) for k, v in collate_train(rows, pad).items()}

    def step(batch, kept: bool):
        def run():
            model.zero_grad(set_to_none=True)
            if kept:
                loss, _ = strategy.loss(batch, 0)
            else:
                loss = answer_token_loss(strategy.logits(batch), batch["labels"])
            loss.backward()
            return float(loss.detach())
        return run

    print(machine())
    print(f"{'task':<20} {'B x T':>8} {'kept':>5} {'all pos. s':>11} {'kept s':>8} {'all CPU s':>10} {'kept CPU s':>11} {'|dloss|':>8}")
    ratios = []
    for name, batch in batches.items():
        fns = {"all": step(batch, False), "kept": step(batch, True)}
        diff = abs(fns["all"]() - fns["kept"]())
        cpu: dict = {}
        wall = interleaved_timing(fns, device, args.warmup, args.repeats, cpu)
        b, t = batch["input_ids"].shape
        k = len(answer_positions(batch["labels"]))
        ratios.append(med(cpu["kept"]) / med(cpu["all"]))
        print(flush=True, *[f"{name:<20} {b:>3} x {t:<4} {k:>5} {med(wall['all']):>11.3f} {med(wall['kept']):>8.3f} "
              f"{med(cpu['all']):>10.3f} {med(cpu['kept']):>11.3f} {diff:>8.1e}"])
    print(f"kept / all, CPU time, median over tasks: {med(ratios):.3f}")


if __name__ == "__main__":
    main()
