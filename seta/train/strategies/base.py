"""The small protocol every continual-learning strategy implements.

A method writes four hooks (like a mammoth method file); the base class gives every other step a default:

    strategy.before_task(t, task, probe_batches)   # e.g. SETA's sensitivity probe + allocation
    params = strategy.trainable_parameters()       # a fresh AdamW is built on these
    for batch in training data of strategy.train_examples(t, stream):
        data_term, penalty = strategy.loss(batch, t)   # step loss = data terms + penalty (once per step)
    strategy.after_task(t, task, probe_batches)    # e.g. Fisher, anchors, routing statistics, gate
    strategy.route(prompt_batch, task_id)          # evaluation: route the way the method routes
    model.generate(...); strategy.clear_route()

Defaults: ``bind`` (the stream's length and the loop's settings), ``train_examples`` (task t's own
examples), ``trainable_parameters`` (what requires grad), ``routing_groups`` (no grouping), and the
bookkeeping ``config_dict``, ``param_counts``, ``state_dict`` / ``load_state_dict``, ``save_adapter``.
A strategy owns its model (base + adapters) as ``self.model``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass

import torch
from torch import nn


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """The positions j (0 <= j < T-1) whose next token is an answer token in some row: the only
    positions whose logits the answer-token loss reads. labels: (B, T) -> (K,) ascending."""
    return (labels[:, 1:] != -100).any(dim=0).nonzero().flatten()


def answer_token_loss(logits: torch.Tensor, labels: torch.Tensor, n_tokens: float | None = None,
                      positions: torch.Tensor | None = None) -> torch.Tensor:
    """L = Σ_{answer tokens} −log p(y_t | y_<t) / n_tokens (labels −100 are ignored).

    logits: (B, T, V), or (B, K, V) at `positions` only (`answer_positions`: the model computed no
    others; then the label of logit k is labels[:, positions[k] + 1]); labels: (B, T).
    ``n_tokens`` defaults to this batch's answer tokens; the data-parallel loop passes the global
    count so that summed gradients across processes equal the single-process gradient.
    """
    if positions is None:
        shift_logits = logits[:, :-1].float()  # (B, T-1, V)
        shift_labels = labels[:, 1:]  # (B, T-1)
    else:
        shift_logits, shift_labels = logits.float(), labels[:, positions + 1]  # (B, K, V), (B, K)
    total = nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = (shift_labels != -100).sum().clamp(min=1) if n_tokens is None else n_tokens
    return total / count


@dataclass
class RoutingLog:
    """Predicted vs true task ids of every routed evaluation example."""

    true: list[int] = field(default_factory=list)
    pred: list[int] = field(default_factory=list)  # -1 = null expert (base model alone)

    def accuracy(self) -> float | None:
        if not self.true:
            return None
        return 100.0 * sum(int(a == b) for a, b in zip(self.true, self.pred)) / len(self.true)


class Strategy:
    """Base class: sequential fine-tuning of whatever ``trainable_parameters`` returns."""

    name = "base"
    uses_task_id_at_inference = False  # True for oracle-routed methods (independent experts)

    def __init__(self, model: nn.Module, tokenizer, config=None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.routing_log = RoutingLog()

    # ----------------------------------------------------------------- training
    joint = False  # True: one training stage on every task at once (MTL)

    def bind(self, tasks: list, loop_config) -> None:
        """Called by the loop before anything else: the stream's length and the loop's settings."""
        self.n_tasks = len(tasks)
        self.loop_cfg = loop_config

    def before_task(self, t: int, task, probe_batches) -> None:
        """Called once before training on task t (0-based)."""

    def train_examples(self, t: int, tasks: list) -> list:
        """The examples trained on during task t (replay and MTL override this)."""
        return list(tasks[t].train)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    penalty_kind = "other"  # how the metrics file names the penalty: "anchoring" (SETA) or "other"

    def loss(self, batch: dict, t: int, n_tokens=None) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(data term, penalty) of one training micro-batch of task t.

        The data term is the answer-token LM loss over ``n_tokens`` (the step's answer tokens; LwF adds
        its distillation to it); the penalty is the method's regulariser (SETA's anchoring, EWC, O-LoRA's
        orthogonality; 0.0 for plain fine-tuning), which the loop adds once per optimiser step."""
        positions = answer_positions(batch["labels"])  # the output layer runs on these positions only
        return answer_token_loss(self.logits(batch, positions), batch["labels"], n_tokens, positions), 0.0

    def logits(self, batch: dict, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the model as routed for training (a helper of `loss`, not a hook): (B, T, V), or
        (B, K, V) at `positions` (K,) only (the output layer skips the others)."""
        keep = {} if positions is None else {"logits_to_keep": positions}
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                          **keep).logits

    def after_task(self, t: int, task, probe_batches) -> None:
        """Called once after training on task t (sparse strategies first write their working copy of the
        trained blocks back)."""

    # ---------------------------------------------------------------- inference
    def route(self, inputs: dict, task_id: int) -> None:
        """Fix the model's route for one prompt batch, before generation (held during decoding).

        inputs: left-padded {"input_ids": (B, T), "attention_mask": (B, T)}; task_id is
        the true task of the batch: only methods with ``uses_task_id_at_inference``
        (oracle baselines) may route by it; task-agnostic methods use it only to
        log routing accuracy in ``self.routing_log``.
        """

    def clear_route(self) -> None:
        """Undo ``route`` after the batch."""

    def routing_groups(self, prompt_ids: list[list[int]], task_id: int) -> list | None:
        """A key per evaluation prompt (token ids, as `route` will see them) such that prompts with the
        same key route alike, so that evaluation batches them together; None: no grouping."""
        return None

    # ------------------------------------------------------------ bookkeeping
    def config_dict(self) -> dict:
        """The method's settings as JSON-ready data (part of the run identity a resume checks)."""
        return asdict(self.config) if is_dataclass(self.config) else {}

    def param_counts(self) -> dict:
        """trainable_params: parameters updated by training; allocated_params: None if n/a."""
        n = sum(p.numel() for p in self.trainable_parameters())
        return {"trainable_params": n, "allocated_params": None}

    def state_dict(self) -> dict:
        """Everything needed to continue after the last finished task (tensors, plain data)."""
        return {"trainable": {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}}

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in state["trainable"].items():
                params[n].copy_(v)

    def save_adapter(self, out_dir) -> None:
        """Write the method's adapter (safetensors + JSON) to out_dir."""
