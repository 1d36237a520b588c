"""Tokenised training batches for the loop: thin glue over seta.data's encoding and collation."""

from __future__ import annotations

from seta.data import collate_train, encode_example


def encode_examples(tokenizer, examples, cfg) -> list[dict]:
    """Encode {prompt, answer} examples once: input_ids, labels (−100 on the prompt), n_answer."""
    out = []
    for ex in examples:
        enc = encode_example(tokenizer, ex.prompt, ex.answer, max_prompt=cfg.max_prompt_len, max_answer=cfg.max_answer_len)
        enc = dict(enc)
        enc["n_answer"] = sum(1 for v in enc["labels"][1:] if v != -100)
        out.append(enc)
    return out


def batches_of(encoded: list[dict], tokenizer) -> dict:
    """Right-padded (B, T) tensors input_ids, attention_mask, labels, plus n_answer (B,)."""
    batch = collate_train([{k: e[k] for k in ("input_ids", "labels")} for e in encoded], tokenizer.pad_token_id)
    batch["n_answer"] = [e["n_answer"] for e in encoded]
    return batch
