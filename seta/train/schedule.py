"""Small pure schedules of the loop: the learning rate, the decoding budget and the answer delimiter."""

from __future__ import annotations

import math

__all__ = ["cosine_lr_factor", "answer_budget", "answer_delimiter", "ANSWER_BUDGET_FACTOR", "ANSWER_BUDGET_SLACK",
           "ANSWER_DELIMITER"]


def cosine_lr_factor(step: int, total: int, warmup: int) -> float:
    """lr(s)/lr_max = s/warmup for s < warmup, else ½(1 + cos(π (s − warmup)/(total − warmup)))."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


ANSWER_BUDGET_FACTOR, ANSWER_BUDGET_SLACK = 1.5, 4


def answer_budget(answer_lengths, cap: int) -> int:
    """max_new_tokens of a task: min(cap, ceil(1.5 · L) + 4), L = longest answer in tokens; cap without answers."""
    lengths = list(answer_lengths)
    if not lengths:
        return cap
    return min(cap, math.ceil(ANSWER_BUDGET_FACTOR * max(lengths)) + ANSWER_BUDGET_SLACK)


ANSWER_DELIMITER = "\n"


def answer_delimiter(answers) -> str | None:
    """Where a task's generated answer ends besides EOS: at the first newline when none of its
    *training* answers holds one (a single-line task), else nowhere (None: EOS or the budget)."""
    answers = list(answers)
    if not answers or any(ANSWER_DELIMITER in a for a in answers):
        return None
    return ANSWER_DELIMITER
