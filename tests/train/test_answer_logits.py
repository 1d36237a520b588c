"""The training loss computes logits only at the positions the answer-token loss reads: same loss and
gradients as the full (B, T, V) logits, for the plain model and a LoRA-wrapped one."""

import pytest
import torch

from seta.models import build_tiny_model
from seta.train.strategies.base import Strategy, answer_positions, answer_token_loss


def _batch():
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 0, 0], [1, 5, 6, 7, 8, 9, 10, 11]])  # right-padded, (B, T)
    labels = torch.full_like(ids, -100)
    labels[0, 4:6] = ids[0, 4:6]  # row 0: answer tokens at 4, 5
    labels[1, 6:8] = ids[1, 6:8]  # row 1: answer tokens at 6, 7
    return {"input_ids": ids, "attention_mask": (torch.arange(8) < torch.tensor([[6], [8]])).long(), "labels": labels}


def test_answer_positions_are_the_union_of_the_rows_answer_predictors():
    assert answer_positions(_batch()["labels"]).tolist() == [3, 4, 5, 6]


@pytest.mark.parametrize("wrap", [False, True])
def test_loss_and_gradients_match_the_full_logits(wrap):
    torch.manual_seed(0)
    model = build_tiny_model("llama", vocab_size=32).requires_grad_(True)
    if wrap:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    strategy, batch = Strategy(model, tokenizer=None), _batch()
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(loss):
        return [g.clone() for g in torch.autograd.grad(loss, params)]

    full = answer_token_loss(strategy.logits(batch), batch["labels"])
    kept, _ = strategy.loss(batch, 0)
    assert strategy.logits(batch, answer_positions(batch["labels"])).shape[:2] == (2, 4)  # 4 of 8 positions
    torch.testing.assert_close(kept, full, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads(kept), grads(full)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(full) > 0
