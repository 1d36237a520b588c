"""train.max_train_examples: each task trains on the first N examples of its train split, ceil(N / B) steps."""

from dataclasses import replace

import numpy as np
import pytest

from seta.train.config import TrainConfig
from seta.train.loop import ContinualTrainer
from seta.train.metrics import read_metrics
from seta.train.strategies import build_strategy

from train_helpers import SPARSE, TRAIN


def _run(make_base, tok, tasks, cfg, out):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE)
    return ContinualTrainer(strategy, tasks, cfg, out, progress=False).run()


def test_capped_run_equals_a_run_on_the_first_examples(make_base, tok, tasks, tmp_path):
    cap = 12  # batch 8: 2 steps per task, the second short
    capped = _run(make_base, tok, tasks, replace(TRAIN, max_train_examples=cap), tmp_path / "capped")
    steps = [r for r in read_metrics(tmp_path / "capped") if r["kind"] == "step"]
    assert [sum(r["task"] == t for r in steps) for t in range(len(tasks))] == [2] * len(tasks)
    cut = [replace(t, train=tuple(t.train)[:cap]) for t in tasks]
    by_hand = _run(make_base, tok, cut, TRAIN, tmp_path / "by_hand")
    np.testing.assert_array_equal(np.array(capped.R), np.array(by_hand.R))  # NaN above the diagonal in both
    assert all(len(t.train) > cap for t in tasks)  # the cap did cut something


def test_uncapped_run_trains_every_example(make_base, tok, tasks, tmp_path):
    _run(make_base, tok, tasks[:1], TRAIN, tmp_path)
    steps = [r for r in read_metrics(tmp_path) if r["kind"] == "step"]
    assert len(steps) == -(-len(tasks[0].train) // TRAIN.batch_size)


@pytest.mark.parametrize("bad", [0, -3])
def test_cap_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_train_examples"):
        TrainConfig(max_train_examples=bad)
