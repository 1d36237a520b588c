"""LwF on the sparse-block adapter: seqft-sparse plus distillation towards the previous model.

    L = LM + α · T² · (1/N_ans) Σ_{answer positions} KL( softmax(z_old / T) ‖ softmax(z / T) )
    (Li & Hoiem, 2017; the LLM form used by TRACE's baselines)

z_old are the logits of the model as it was before task t (the stored blocks, every block allocated
so far acting), on task t's own inputs; z those of the model being trained. The student is the model
the method deploys: every allocated block acts in its forward (only S_t's blocks train), so the
teacher and the student are the same function at the start of each task. Same blocks, budget and
allocation as seqft-sparse: only the protection differs. No task id at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from seta.train.strategies.base import answer_token_loss
from seta.train.strategies.sparse import SparseBlocks


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                    n_tokens=None) -> torch.Tensor:
    """T² Σ_{answer positions} KL(softmax(teacher/T) ‖ softmax(student/T)) / n_tokens.

    student, teacher: (B, T, V) logits; labels (B, T), −100 = not an answer token. The logits at
    position i predict token i+1, as in the LM loss. n_tokens defaults to this batch's answer tokens.
    """
    mask = labels[:, 1:] != -100  # (B, T-1)
    s = student[:, :-1][mask].float() / temperature  # (N, V)
    t = teacher[:, :-1][mask].float() / temperature
    kl = (F.softmax(t, -1) * (F.log_softmax(t, -1) - F.log_softmax(s, -1))).sum()
    count = mask.sum().clamp(min=1) if n_tokens is None else n_tokens
    return temperature**2 * kl / count


@dataclass(frozen=True)
class LwFConfig:
    """LwF's own settings (the blocks and their budget are `SparseConfig`)."""

    alpha: float = 1.0
    """α: weight of the distillation term."""
    temperature: float = 2.0
    """T: softmax temperature of the distillation (the term is scaled by T²)."""

    def __post_init__(self):
        if self.alpha < 0 or self.temperature <= 0:
            raise ValueError("LwFConfig: alpha must be >= 0 and temperature > 0")


class LwF(SparseBlocks):
    name = "lwf"
    config_section = "lwf"

    def __init__(self, model, tokenizer, sparse=None, config: LwFConfig | None = None):
        super().__init__(model, tokenizer, sparse, config or LwFConfig())

    def before_task(self, t, task, probe_batches) -> None:
        super().before_task(t, task, probe_batches)
        self.model.set_expert(self.model.allocated_ids())  # the student is the deployed model

    def teacher_logits(self, batch) -> torch.Tensor:
        """z_old: the logits of the model before task t (the stored blocks), without gradients. (B, T, V)"""
        with torch.no_grad(), self.model.stored_values():
            return self.logits(batch)

    def loss(self, batch, t, n_tokens=None):
        """(LM + α · distillation to the model before task t, 0.0): the distillation is a data term."""
        teacher = self.teacher_logits(batch) if t > 0 and self.config.alpha > 0 else None
        logits = self.logits(batch)
        lm = answer_token_loss(logits, batch["labels"], n_tokens)
        if teacher is None:
            return lm, 0.0
        kd = distillation_kl(logits, teacher, batch["labels"], self.config.temperature, n_tokens)
        return lm + self.config.alpha * kd, 0.0
