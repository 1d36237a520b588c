"""Prompts are cut so that training sequences and prompt + generated tokens fit the model's positions."""

from dataclasses import replace

import pytest

from seta.data import Example, Task
from seta.models import max_positions
from seta.train.loop import ContinualTrainer
from seta.train.strategies import build_strategy

from train_helpers import SETA, SPARSE, TRAIN


def _long_task():
    long = " ".join(f"word{i % 50} and more" for i in range(400))  # ~1000 tokens, the tiny model has 256 positions
    ex = [Example(long + f" item {i}\nAnswer:", "yes") for i in range(8)]
    return Task("LONG", "exact_match", tuple(ex), (), tuple(ex[:4]))


def test_prompt_caps_respect_the_models_positions(make_base, tok, tmp_path):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE, seta=SETA)
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


def test_the_prompt_cap_reserves_the_largest_task_budget_not_the_global_cap(make_base, tok, tmp_path):
    """A paper preset's max_new_tokens=256 on a 256-position model: short answers leave room for prompts."""
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE, seta=SETA)
    trainer = ContinualTrainer(strategy, [_long_task()], replace(TRAIN, max_new_tokens=256), tmp_path, progress=False)
    budget = trainer.max_new_tokens(0)
    assert budget < 256 and trainer.prompt_cap == 256 - budget


def test_answers_longer_than_the_positions_allow_are_a_clear_error(make_base, tok, tmp_path):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE, seta=SETA)
    long_answer = " ".join(["word"] * 300)
    ex = [Example(f"item {i}\nAnswer:", long_answer) for i in range(4)]
    task = Task("LONGANS", "exact_match", tuple(ex), (), tuple(ex))
    cfg = replace(TRAIN, max_new_tokens=256, max_answer_len=512)
    with pytest.raises(ValueError, match="answers of up to 256 new tokens .* leave no room"):
        ContinualTrainer(strategy, [task], cfg, tmp_path, progress=False)


def test_answer_delimiter_is_a_newline_for_single_line_tasks_only():
    from seta.train.schedule import answer_delimiter

    assert answer_delimiter(["yes", "no", "a b c"]) == "\n"
    assert answer_delimiter(["yes", "line one\nline two"]) is None
    assert answer_delimiter([]) is None


def test_trainer_stops_single_line_tasks_at_a_newline(make_base, tok, tmp_path):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE, seta=SETA)
    one = Task("ONE", "exact_match", tuple(Example(f"q{i}", "a") for i in range(4)), (),
               tuple(Example(f"q{i}", "a") for i in range(4)))
    multi = Task("MULTI", "exact_match", tuple(Example(f"q{i}", "a\nb") for i in range(4)), (), ())
    trainer = ContinualTrainer(strategy, [one, multi], TRAIN, tmp_path, progress=False)
    assert trainer.answer_stop(0) == "\n" and trainer.answer_stop(1) is None
    seen = []
    inner = strategy.model.generate

    def spy(*a, **kw):
        seen.append(kw.get("stop_strings"))
        return inner(*a, **kw)

    strategy.model.generate = spy
    trainer.evaluate(0)
    assert seen and all(s == ["\n"] for s in seen)
