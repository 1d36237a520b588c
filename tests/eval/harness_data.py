"""A tiny synthetic MMLU/BBH/PIQA in `seta.eval.harness`'s layout, and an oracle route for tests.

Every scored item carries a unique marker ``[key]`` in its prompt; `write_general_ability_fixture`
returns, per marker, the right continuation and a wrong one, as lm-eval scores them.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import torch

MMLU_SUBJECTS = ("arith_plus", "arith_minus")
BBH_SUBTASKS = ("boolean_expressions", "echo_words")  # a stock subtask (stock exemplars) and a custom one
WORDS = ("red", "green", "blue", "cat", "dog", "sun", "moon", "tree")
SIZES = {"mmlu": 2 * 3, "bbh": 2 * 3, "piqa": 4}  # items scored per benchmark


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_general_ability_fixture(root, seed: int = 0) -> dict[str, dict[str, tuple[str, str]]]:
    """Write mmlu (2 subjects: 5 dev, 3 test), bbh (2 subtasks: 3 test; 3 exemplars for the custom
    one) and piqa (4 validation, 2 train) under root. Returns {benchmark: {marker: (right, wrong)}}
    where right/wrong are the texts lm-eval scores after the prompt: " A"-style letters for MMLU,
    " " + solution for PIQA, and for BBH " " + target + the stop string "\n\n" to generate."""
    rng = random.Random(seed)
    root = Path(root)
    key: dict[str, dict[str, tuple[str, str]]] = {"mmlu": {}, "bbh": {}, "piqa": {}}
    for s, subject in enumerate(MMLU_SUBJECTS):
        for split, n in (("dev", 5), ("test", 3)):
            rows = []
            for i in range(n):
                a, b = rng.randint(1, 9), rng.randint(1, 9)
                answer = rng.randrange(4)
                right = a + b if s == 0 else a - b
                choices = [str(right + d) for d in (1, 2, 3)]
                choices.insert(answer, str(right))
                marker = f"m{s}{split[0]}{i}"
                rows.append({"question": f"[{marker}] {a} {'+-'[s]} {b} =", "choices": choices, "answer": answer})
                if split == "test":
                    key["mmlu"][marker] = (" " + "ABCD"[answer], " " + "ABCD"[(answer + 1) % 4])
            _jsonl(root / "mmlu" / subject / f"{split}.jsonl", rows)
    for s, sub in enumerate(BBH_SUBTASKS):
        rows = []
        for i in range(3):
            if sub == "boolean_expressions":
                value = rng.choice([True, False])
                text, target = f"not {not value} is", str(value)
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(2))
                target = text
            marker = f"b{s}t{i}"
            rows.append({"input": f"[{marker}] {text}", "target": target})
            key["bbh"][marker] = (f" {target}\n\n", f" {target} x\n\n")
        _jsonl(root / "bbh" / sub / "test.jsonl", rows)
        if sub == "echo_words":
            _jsonl(root / "bbh" / sub / "fewshot.jsonl", [{"input": f"say {w}", "target": w} for w in WORDS[:3]])
    for split, n in (("validation", 4), ("train", 2)):
        rows = []
        for i in range(n):
            w1, w2 = rng.sample(WORDS, 2)
            label = rng.randrange(2)
            marker = f"p{split[0]}{i}"
            rows.append({"goal": f"[{marker}] pick", "sol1": f"{w1} first", "sol2": f"{w2} second", "label": label})
            if split == "validation":
                sols = (rows[-1]["sol1"], rows[-1]["sol2"])
                key["piqa"][marker] = (" " + sols[label], " " + sols[1 - label])
        _jsonl(root / "piqa" / f"{split}.jsonl", rows)
    return key


class Oracle:
    """A route that makes the model say a chosen continuation of each prompt.

    ``route`` reads the marker of the prompt's last ``[key]`` and picks ``answers[key]`` (the right
    or the wrong continuation); a hook on the LM head then adds ``boost`` to the logit of the
    continuation's j-th token at the j-th position after the prompt, in a log-likelihood forward
    (prompt at the start of the row) and during generation (prompt at the end, then one step at a time).
    """

    def __init__(self, model, tokenizer, answers: dict[str, str], boost: float = 50.0):
        self.model, self.tok, self.answers, self.boost = model, tokenizer, answers, boost
        self.events: list[tuple] = []  # ("route", B, T) / ("forward", B, T) / ("clear",)
        self.prompts: list[str] = []
        self.rows = None
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.get_output_embeddings().register_forward_hook(self._post)

    def route(self, input_ids, attention_mask):
        self.events.append(("route", *input_ids.shape))
        self.rows, self.step = [], 0
        for ids, m in zip(input_ids, attention_mask):
            ctx = ids[m.bool()].tolist()
            text = self.tok.decode(ctx, skip_special_tokens=True)
            self.prompts.append(text)
            marker = re.findall(r"\[(\w+)\]", text)[-1]
            tgt = self.tok(self.answers[marker], add_special_tokens=False)["input_ids"]
            self.rows.append((ctx, tgt + [self.tok.eos_token_id]))

    def clear(self):
        self.events.append(("clear",))
        self.rows = None

    def _pre(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.events.append(("forward", *ids.shape))
        self.ids = ids

    def _post(self, module, inputs, logits):  # logits (B, T, V)
        if self.rows is None:
            return None
        logits = logits.clone()
        t, n = self.ids.shape[1], logits.shape[1]  # input length; logits for its last n positions
        for r, (ctx, tgt) in enumerate(self.rows):
            if t == 1 and self.step > 0:  # a decoding step: the step-th token after the prompt
                if self.step < len(tgt):
                    logits[r, -1, tgt[self.step]] += self.boost
                continue
            c = len(ctx)
            start = 0 if self.ids[r, :c].tolist() == ctx else t - c  # right- or left-padded prompt
            for j, tok in enumerate(tgt):
                if t - n <= start + c - 1 + j < t:
                    logits[r, start + c - 1 + j - (t - n), tok] += self.boost
        self.step += 1
        return logits
