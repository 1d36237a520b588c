"""Batched greedy generation for a HF causal LM.

Prompts are left-padded so every row's last prompt token sits at the same
position and new tokens are appended in lock-step; only the new tokens are
decoded, cut at the first stop (eos) token and, when given, at the first
``stop_text`` (a task's answer delimiter, e.g. a newline). Decoding is greedy
(``do_sample=False``): a documented deviation from TRACE's temperature 0.1.

A routed model (SETA) fixes its route per batch at prefill: ``before_batch``
is called with the batch's positions in the caller's ``prompts`` list and the
padded inputs, before ``model.generate``; ``after_batch`` after it. With
``group_by`` (e.g. each prompt's routed expert) the prompts of a group are
batched contiguously, so a routed batch runs one expert's blocks (two at a
group boundary) instead of the union of several; the number of batches is
unchanged (partitioning by group instead would add part-filled batches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

BatchHook = Callable[[list[int], dict[str, torch.Tensor]], None]


def _encode(tokenizer, prompts: Sequence[str | Sequence[int]], add_special_tokens: bool) -> list[list[int]]:
    ids = []
    for p in prompts:
        if isinstance(p, str):
            ids.append(list(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]))
        else:
            ids.append([int(t) for t in p])
    return ids


def left_pad(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad token id lists: ``input_ids`` and ``attention_mask``, both (B, T_max)."""
    t = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), t), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(ids), t), dtype=torch.long)  # (B, T)
    for i, x in enumerate(ids):
        if len(x):
            input_ids[i, t - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[i, t - len(x) :] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def cut_at_stop(tokens: Sequence[int], stop_ids: set[int]) -> list[int]:
    """Tokens before the first stop token (the stop token itself is dropped)."""
    out = []
    for t in tokens:
        if t in stop_ids:
            break
        out.append(int(t))
    return out


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str | Sequence[int]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_prompt_tokens: int | None = None,
    add_special_tokens: bool = True,
    sort_by_length: bool = True,
    before_batch: BatchHook | None = None,
    after_batch: Callable[[list[int]], None] | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    progress: bool = True,
    desc: str = "generate",
    group_by: Callable[[list[list[int]]], Sequence | None] | None = None,
    stop_text: str | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts``, one string per prompt, in input order.

    prompts: strings (encoded with ``tokenizer``) or already-encoded id lists.
    max_prompt_tokens: keep only the last this-many prompt tokens (None: all).
    sort_by_length: batch prompts of similar length together (less padding);
        the output order is unchanged, and hooks get the original positions.
    before_batch(indices, inputs): called before each batch's ``generate``
        with ``inputs = {"input_ids": (B, T), "attention_mask": (B, T)}``.
    after_batch(indices): called after each batch.
    eos_token_id: stop token(s); default the tokenizer's eos.
    group_by(ids): given every prompt's (capped) token ids, a hashable key per prompt (or None for no
        grouping); prompts are ordered by key (keys in order of their first prompt after the length
        sort, lengths sorted within a key) and then cut into batches, so a batch spans at most two
        keys when a key's prompts fill whole batches. Output order is unchanged.
    stop_text: the answer ends before its first occurrence in the decoded text (the row also stops
        generating there, through transformers' ``stop_strings``); None: EOS and the budget only.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1 or None, got {max_prompt_tokens}")
    if len(prompts) == 0:
        return []

    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    if eos is None:
        raise ValueError("no eos token: give the tokenizer an eos_token or pass eos_token_id")
    stop_ids = {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop_ids)

    ids = _encode(tokenizer, prompts, add_special_tokens)
    if max_prompt_tokens is not None:
        ids = [x[-max_prompt_tokens:] for x in ids]
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        raise ValueError(f"prompts {empty[:5]} encode to no tokens: give non-empty prompts (or a tokenizer that adds a bos)")
    order = list(range(len(ids)))
    if sort_by_length:
        order.sort(key=lambda i: -len(ids[i]))  # stable: ties keep input order
    keys = group_by(ids) if group_by is not None else None
    if keys is not None:
        if len(keys) != len(ids):
            raise ValueError(f"group_by returned {len(keys)} keys for {len(ids)} prompts")
        groups: dict = {}
        for i in order:
            groups.setdefault(keys[i], []).append(i)
        order = [i for g in groups.values() for i in g]  # each key's prompts contiguous
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: list[str] = [""] * len(ids)
    stop = {"stop_strings": [stop_text], "tokenizer": tokenizer} if stop_text else {}
    try:
        for idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
            inputs = left_pad([ids[i] for i in idx], pad_id)
            if before_batch is not None:
                before_batch(list(idx), inputs)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            out = model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=sorted(stop_ids),
                **stop,
            )  # (B, T + new)
            new = out[:, inputs["input_ids"].shape[1] :].tolist()  # (B, <= max_new_tokens)
            for i, toks in zip(idx, new):
                text = tokenizer.decode(cut_at_stop(toks, stop_ids), skip_special_tokens=True)
                outputs[i] = text.split(stop_text, 1)[0] if stop_text else text
            if after_batch is not None:
                after_batch(list(idx))
    finally:
        model.train(was_training)
    return outputs


def evaluate_generation(
    model,
    tokenizer,
    prompts: Sequence[str | Sequence[int]],
    references: Sequence,
    metric: str,
    *,
    sources: Sequence[str] | None = None,
    **generate_kwargs,
) -> tuple[float, list[str]]:
    """Greedy-generate for ``prompts`` and score against ``references`` with ``metric``
    (a key of `seta.eval.scorers.SCORERS`). Returns (score 0-100, predictions)."""
    from seta.eval.scorers import SCORERS, score

    if metric not in SCORERS:  # fail before spending time on generation
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(SCORERS)}")
    preds = generate(model, tokenizer, prompts, **generate_kwargs)
    return score(metric, preds, references, sources), preds
