"""Tokenisation and batching: loss on answer tokens only, left-padded prompts for generation.

One training sequence is

    input_ids = prompt_ids + answer_ids
    labels    = [-100] * len(prompt_ids) + answer_ids

with `prompt_ids = tokenizer(prompt)` (special tokens added as the tokenizer does, e.g. a
leading `<s>`), left-truncated to `max_prompt` tokens keeping a leading BOS, and
`answer_ids = (tokenizer(answer, no specials) + [eos])[:max_answer]` (the EOS is lost only
when the answer itself is cut). Training batches are right-padded; generation batches hold
prompts only and are left-padded, so every prompt ends at the last column.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seta.data.types import Example

IGNORE_INDEX = -100  # label value ignored by the loss
MAX_PROMPT = 1024  # TRACE's prompt cap (tokens)
MAX_ANSWER = 512  # TRACE's answer cap (tokens)


def _check_caps(max_prompt: int, max_answer: int) -> None:
    if max_prompt < 1 or max_answer < 1:
        raise ValueError(f"max_prompt and max_answer must be >= 1, got {max_prompt}, {max_answer}")


_TAIL_MARGIN = 32  # tokens dropped at the start of a tail window (its first tokens may differ from the whole's)
_CHARS_PER_TOKEN = 8  # a tail window starts at this many characters per token kept


def _cut(ids: list[int], bos: int | None, max_prompt: int) -> list[int]:
    if len(ids) <= max_prompt:
        return ids
    if bos is not None and ids[0] == bos and max_prompt > 1:
        return [bos] + ids[len(ids) - (max_prompt - 1):]
    return ids[len(ids) - max_prompt:]


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])


def encode_prompt(tokenizer, prompt: str, max_prompt: int = MAX_PROMPT) -> list[int]:
    """Prompt token ids, left-truncated to `max_prompt`; a leading BOS is kept when cut.

    A prompt much longer than the cap is never tokenised whole: only a tail window of characters
    is (grown until it yields `max_prompt` tokens beyond a margin whose tokens are dropped), so a
    5 MB prompt costs a few kB of tokens, not the whole string's encoding."""
    bos = tokenizer.bos_token_id
    window = _CHARS_PER_TOKEN * (max_prompt + _TAIL_MARGIN)
    while window < len(prompt):
        ids = _ids(tokenizer, prompt[-window:])
        lead = ids[:1] if bos is not None and ids and ids[0] == bos else []
        if len(ids) - len(lead) >= max_prompt + _TAIL_MARGIN:
            return _cut(lead + ids[len(lead) + _TAIL_MARGIN:], bos, max_prompt)
        window *= 4
    return _cut(_ids(tokenizer, prompt), bos, max_prompt)


def encode_answer(tokenizer, answer: str, max_answer: int = MAX_ANSWER) -> list[int]:
    """Answer token ids followed by EOS, cut to `max_answer` tokens."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; set one so answers can end")
    ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return ids[:max_answer]


def encode_example(
    tokenizer, prompt: str, answer: str, max_prompt: int = MAX_PROMPT, max_answer: int = MAX_ANSWER
) -> dict[str, list[int]]:
    """`{"input_ids", "labels"}` for one example; labels are -100 on every prompt token."""
    _check_caps(max_prompt, max_answer)
    p = encode_prompt(tokenizer, prompt, max_prompt)
    a = encode_answer(tokenizer, answer, max_answer)
    return {"input_ids": p + a, "labels": [IGNORE_INDEX] * len(p) + a}


def collate_train(features: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded examples: input_ids (B, T), attention_mask (B, T), labels (B, T).

    Padding gets attention 0 and label -100. The prompt positions of row i are where
    `attention_mask == 1` and `labels == -100`.
    """
    if not features:
        raise ValueError("collate_train got an empty batch")
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(features), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        if len(f["labels"]) != n:
            raise ValueError(f"feature {i}: input_ids and labels differ in length ({n} vs {len(f['labels'])})")
        ids[i, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
        mask[i, :n] = 1
        labels[i, :n] = torch.as_tensor(f["labels"], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class TrainCollator:
    """Callable form of `collate_train` (for a torch DataLoader's `collate_fn`)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        return collate_train(features, self.pad_token_id)


def generation_batch(tokenizer, prompts: Sequence[str], max_prompt: int = MAX_PROMPT) -> dict[str, torch.Tensor]:
    """Left-padded prompt-only batch: input_ids (B, T) and attention_mask (B, T).

    `attention_mask` is the prompt mask (1 on prompt tokens, 0 on padding); pass both to
    `model.generate`. Prompts are encoded and truncated exactly as in `encode_example`.
    """
    if not prompts:
        raise ValueError("generation_batch got no prompts")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad_token; set one (e.g. to the eos token) to batch prompts")
    _check_caps(max_prompt, 1)
    encoded = [encode_prompt(tokenizer, p, max_prompt) for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, T)
    for i, e in enumerate(encoded):
        ids[i, width - len(e):] = torch.as_tensor(e, dtype=torch.long)
        mask[i, width - len(e):] = 1
    return {"input_ids": ids, "attention_mask": mask}


def tokenize_examples(
    tokenizer, examples: Sequence[Example], max_prompt: int = MAX_PROMPT, max_answer: int = MAX_ANSWER
):
    """A `datasets.Dataset` with columns input_ids, labels (one row per example, same order)."""
    from datasets import Dataset

    _check_caps(max_prompt, max_answer)
    rows = [ex.to_dict() for ex in examples]
    if not rows:
        raise ValueError("tokenize_examples got no examples")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pairs = zip(batch["prompt"], batch["answer"])
        out = [encode_example(tokenizer, p, a, max_prompt, max_answer) for p, a in pairs]
        return {"input_ids": [o["input_ids"] for o in out], "labels": [o["labels"] for o in out]}

    ds = Dataset.from_list(rows)
    return ds.map(encode, batched=True, remove_columns=["prompt", "answer"])
