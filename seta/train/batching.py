"""Tokenised training batches for the loop: thin glue over seta.data's encoding and collation."""

from __future__ import annotations

from seta.data import collate_train, encode_answer, encode_prompt


def prompt_cap(cfg, max_positions: int | None, need: int) -> int:
    """Prompt tokens kept at evaluation: max_prompt_len, and room for `need` new tokens (the largest answer
    budget of the stream's tasks) within the model's positions. ValueError when that leaves no room."""
    if max_positions is None:
        return cfg.max_prompt_len
    room = max_positions - need
    if room < 1:
        raise ValueError(f"answers of up to {need} new tokens (TrainConfig.max_new_tokens={cfg.max_new_tokens}, "
                         f"and the longest training answer) leave no room for a prompt in the model's "
                         f"{max_positions} positions: lower max_new_tokens (e.g. --set train.max_new_tokens="
                         f"{max(1, max_positions // 4)}) or max_answer_len")
    return min(cfg.max_prompt_len, room)


def encode_examples(tokenizer, examples, cfg, max_positions: int | None = None) -> list[dict]:
    """Encode {prompt, answer} examples once: input_ids, labels (−100 on the prompt), n_answer.

    The answer is cut to max_answer_len, the prompt (from the left) to max_prompt_len and to the
    positions the answer leaves within `max_positions` (the model's context), so no training
    sequence is longer than the model was built for."""
    answer_cap = cfg.max_answer_len if max_positions is None else min(cfg.max_answer_len, max_positions - 1)
    out = []
    for ex in examples:
        a = encode_answer(tokenizer, cfg.answer_prefix + ex.answer, answer_cap)
        cap = cfg.max_prompt_len if max_positions is None else min(cfg.max_prompt_len, max_positions - len(a))
        p = encode_prompt(tokenizer, ex.prompt, cap)
        labels = [-100] * len(p) + a
        out.append({"input_ids": p + a, "labels": labels, "n_answer": sum(1 for v in labels[1:] if v != -100)})
    return out


def batches_of(encoded: list[dict], tokenizer) -> dict:
    """Right-padded (B, T) tensors input_ids, attention_mask, labels, plus n_answer (B,)."""
    batch = collate_train([{k: e[k] for k in ("input_ids", "labels")} for e in encoded], tokenizer.pad_token_id)
    batch["n_answer"] = [e["n_answer"] for e in encoded]
    return batch
