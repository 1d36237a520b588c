"""LwF on the sparse-block adapter: the distillation term, and its teacher (the model before the task)."""

import math

import torch

from seta.train.loop import ContinualTrainer
from seta.train.strategies import build_strategy
from seta.train.strategies.lwf import distillation_kl

from train_helpers import SETA, SPARSE, TRAIN


def test_distillation_kl_by_hand():
    labels = torch.tensor([[-100, 5, 6]])  # positions 0 and 1 predict the answer tokens
    student = torch.zeros(1, 3, 2)
    teacher = torch.zeros(1, 3, 2)
    assert distillation_kl(student, teacher, labels, 2.0) == 0
    teacher[0, 0] = torch.tensor([math.log(3.0) * 2.0, 0.0])  # softmax(teacher/2) = (3/4, 1/4) at position 0
    teacher[0, 2] = torch.tensor([50.0, 0.0])  # position 2 predicts nothing: ignored
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    torch.testing.assert_close(distillation_kl(student, teacher, labels, 2.0), torch.tensor(4.0 * kl / 2))


def test_lwf_teacher_is_the_model_before_the_task(make_base, tok, tasks, tmp_path):
    strategy = build_strategy("lwf", make_base(), tok, SPARSE, seta=SETA)
    trainer = ContinualTrainer(strategy, tasks[:2], TRAIN, tmp_path, progress=False)
    seta = strategy.model
    strategy.before_task(0, tasks[0], lambda: trainer.probe_batches(0))
    trainer._train_task(0, "t0")
    strategy.after_task(0, tasks[0], lambda: trainer.probe_batches(0))
    batch = next(iter(trainer.probe_batches(1)))
    x = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    strategy.before_task(1, tasks[1], lambda: trainer.probe_batches(1))
    assert torch.equal(seta.registry.allocated(), seta.allocated_ids())
    with torch.no_grad():
        before = seta(**x).logits  # every allocated block acts, S_1's new blocks still zero
    params = strategy.trainable_parameters()
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))  # as if some training steps had happened
        moved = seta(**x).logits
        with seta.stored_values():
            teacher = seta(**x).logits
        after = seta(**x).logits
    assert not torch.allclose(moved, before)
    torch.testing.assert_close(teacher, before)
    assert torch.equal(after, moved)  # the working copy is back
    teacher = strategy.teacher_logits({k: v for k, v in batch.items()})
    torch.testing.assert_close(teacher, before)
    lm_only, _ = super(type(strategy), strategy).loss(batch, 1)
    total, _ = strategy.loss(batch, 1)
    assert float(total) > float(lm_only)  # the student moved away from the teacher: KL > 0
    strategy.model.end_training()
