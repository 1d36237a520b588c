"""Helpers of the API tests: the tiny config, batches, one task's plain training loop."""

import torch

from seta import SetaConfig
from seta.data import collate_train, encode_example
from seta.models import build_tiny_model
from seta.train.gate_training import GateTrainConfig

CONFIG = SetaConfig(block_size=16, ratio=0.1, probe_batches=2, fisher_batches=2, beta=100.0, anchor_lambda=1.0,
                    gate=GateTrainConfig(steps=60))  # β large: task 2 reuses task 1's blocks, so some are anchored


def batches_of(tok, examples, size=8):
    return [collate_train([encode_example(tok, e.prompt, e.answer) for e in examples[i : i + size]], tok.pad_token_id)
            for i in range(0, len(examples), size)]


def fresh_base(tok):
    return build_tiny_model("llama", tokenizer=tok, seed=0)


def train_task(model, tok, task, lr=1e-2, record=None):
    """start_task, one pass over the task's batches with the anchoring penalty, end_task."""
    data = batches_of(tok, task.train)
    params = model.start_task(task.name, data)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for batch in data:
        penalty = model.anchor_penalty()
        if record is not None:
            record.append(float(penalty))
        (model(**batch).loss + penalty).backward()
        opt.step()
        opt.zero_grad()
    model.end_task(data, [e.prompt for e in task.train])
    return params
