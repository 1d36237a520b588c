"""Prompts are cut so that training sequences and prompt + generated tokens fit the model's positions."""

from dataclasses import replace

import pytest

from seta.data import Example, Task
from seta.models import max_positions
from seta.train.loop import ContinualTrainer
from seta.train.strategies import build_strategy

from train_helpers import SPARSE, TRAIN


def _long_task():
    long = " ".join(f"word{i % 50} and more" for i in range(400))  # ~1000 tokens, the tiny model has 256 positions
    ex = [Example(long + f" item {i}\nAnswer:", "yes") for i in range(8)]
    return Task("LONG", "exact_match", tuple(ex), (), tuple(ex[:4]))


def test_prompt_caps_respect_the_models_positions(make_base, tok, tmp_path):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE)
    n_pos = max_positions(strategy.model)
    assert n_pos == 256
    cfg = replace(TRAIN, max_prompt_len=1024, max_new_tokens=8)
    trainer = ContinualTrainer(strategy, [_long_task()], cfg, tmp_path, progress=False)
    assert trainer.prompt_cap == n_pos - 8
    lengths = [len(e["input_ids"]) for e in trainer._train_encoding(0)]
    assert max(lengths) == n_pos  # the prompt gave way to the answer, nothing beyond the positions
    seen = []
    inner = strategy.model.generate

    def generate(*a, **kw):
        seen.append(kw["input_ids"].shape[1] + kw["max_new_tokens"])
        return inner(*a, **kw)

    strategy.model.generate = generate
    trainer.evaluate(0)
    assert seen and max(seen) <= n_pos


def test_more_new_tokens_than_positions_is_a_clear_error(make_base, tok, tmp_path):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE)
    with pytest.raises(ValueError, match="max_new_tokens=256 leaves no room"):
        ContinualTrainer(strategy, [_long_task()], replace(TRAIN, max_new_tokens=256), tmp_path, progress=False)
