"""Configuration of a continual run: frozen dataclasses, validated on construction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


def _positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if value is None or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How every strategy is trained and evaluated (the same for all, so methods compare fairly)."""

    epochs: tuple[int, ...] = (1,)
    """Epochs per task, in stream order; one value is used for every task."""
    batch_size: int = 8
    """Examples per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate of AdamW (cosine decay to 0 within each task)."""
    warmup_ratio: float = 0.0
    """Fraction of a task's steps spent warming the learning rate up linearly."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: parameters outside the current expert stay bit-identical)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables)."""
    max_prompt_len: int = 1024
    """Prompt token cap (prompts are truncated from the left)."""
    max_answer_len: int = 512
    """Answer token cap."""
    answer_prefix: str = ""
    """Text put before every answer when it is encoded for training (and for its answer budget): "" joins
    prompt and answer as they are (the tiny preset's byte-level tokenizer); " " is the plain format of
    word-level BPE models (SmolLM2), whose words carry their leading space, so "A:" + " Paris" is
    tokenised the way the model read text in pre-training. Scorers strip the generated text."""
    max_new_tokens: int = 32
    """Cap on greedy decoding length at evaluation. Task j decodes at most
    min(max_new_tokens, ceil(1.5 · L_j) + 4) new tokens, L_j = the longest tokenised answer (EOS
    included) among j's *train* examples, so short-answer tasks get a short budget; decoding also
    stops earlier once every sequence has produced EOS."""
    eval_batch_size: int = 32
    """Prompts per generation batch."""
    max_train_examples: int | None = None
    """Cap on the training examples of each task: the first this-many of its train split (None: all).
    With one epoch of batch B this fixes the optimiser steps per task at ceil(N / B)."""
    max_eval_examples: int | None = None
    """Cap on test examples scored per task (None: all)."""
    eval_next_task: bool = True
    """Also score task t+1 after task t, so forward transfer (FWT) can be computed."""
    seed: int = 0
    """Seed for data order, initialisation and everything random."""
    bf16: bool = False
    """bf16 autocast for training (use on GPUs that support it)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (for 7B/4B models)."""

    def __post_init__(self):
        epochs = (self.epochs,) if isinstance(self.epochs, int) else tuple(self.epochs)
        object.__setattr__(self, "epochs", epochs)
        if not epochs or any(int(e) < 1 for e in epochs):
            raise ValueError(f"TrainConfig.epochs must be positive ints, got {self.epochs!r}")
        _positive(self, "batch_size", "grad_accum", "lr", "max_prompt_len", "max_answer_len", "max_new_tokens", "eval_batch_size")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("TrainConfig.weight_decay and max_grad_norm must be >= 0")
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1 or None")

    def epochs_for(self, task_index: int) -> int:
        return int(self.epochs[task_index] if len(self.epochs) > 1 else self.epochs[0])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epochs"] = list(self.epochs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{**d, "epochs": tuple(d.get("epochs", (1,)))})


def save_json(obj, path) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
