"""The per-run metrics file: one record per optimiser step and per task, finite, resumable; TensorBoard."""

import json
import math
from dataclasses import replace

import pytest

from seta.train.loop import CONFIG_NAME, ContinualTrainer, cosine_lr_factor
from seta.train.metrics import METRICS_NAME, TB_DIR, read_metrics
from seta.train.strategies import build_strategy

from train_helpers import SETA, SPARSE, TRAIN

CFG = replace(TRAIN, grad_accum=2, warmup_ratio=0.3)  # 3 micro-batches per task -> 2 steps, the last one short


def _run(make_base, tok, tasks, out, name="seta", **kw):
    trainer_kw = {k: kw.pop(k) for k in ("tensorboard",) if k in kw}
    strategy = build_strategy(name, make_base(), tok, SPARSE, seta=SETA)
    trainer = ContinualTrainer(strategy, tasks, CFG, out, progress=False, meta={"preset": "test"}, **trainer_kw)
    return trainer.run(**kw), trainer


def _steps_per_task(tasks, cfg):
    return [math.ceil(math.ceil(len(t.train) / cfg.batch_size) / cfg.grad_accum) for t in tasks]


def test_one_record_per_optimiser_step_and_per_task(make_base, tok, tasks, tmp_path):
    res, trainer = _run(make_base, tok, tasks, tmp_path)
    records = read_metrics(tmp_path)
    steps = [r for r in records if r["kind"] == "step"]
    per_task = _steps_per_task(tasks, CFG)
    assert [trainer.task_log[t]["steps"] for t in range(3)] == per_task
    assert [r["step"] for r in steps] == list(range(1, sum(per_task) + 1))  # global optimiser steps
    for t, n in enumerate(per_task):
        mine = [r for r in steps if r["task"] == t]
        assert [r["task_step"] for r in mine] == list(range(1, n + 1)) and {r["task_name"] for r in mine} == {tasks[t].name}
        warm = int(CFG.warmup_ratio * n)
        for r in mine:  # the rate the step used: the schedule's, not the next one
            assert r["lr"] == pytest.approx(CFG.lr * cosine_lr_factor(r["task_step"] - 1, n, warm))
        assert sum(r["lm_loss"] for r in mine) / n == pytest.approx(trainer.task_log[t]["mean_lm_loss"])
    for r in steps:
        for key in ("lm_loss", "anchor_penalty", "other_penalty", "lr", "tokens_per_s", "examples_per_s"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r)
        assert r["lm_loss"] > 0 and r["anchor_penalty"] >= 0 and r["other_penalty"] == 0.0  # SETA: anchoring only
        assert r["tokens_per_s"] > r["examples_per_s"] > 0
    if any(trainer.strategy.task_stats[t]["anchored"] for t in (1, 2)):
        assert any(r["anchor_penalty"] > 0 for r in steps if r["task"] > 0)
    assert all(r["anchor_penalty"] == 0.0 for r in steps if r["task"] == 0)  # nothing to anchor to yet
    base = [r for r in records if r["kind"] == "base"]
    assert len(base) == 1 and list(base[0]["scores"].values()) == res.base_scores
    done = [r for r in records if r["kind"] == "task"]
    assert [r["task"] for r in done] == [0, 1, 2]
    for r in done:
        t = r["task"]
        assert {k: r[k] for k in ("blocks", "new", "reused", "split", "per_matrix", "anchored")} == \
            trainer.strategy.task_stats[t]
        assert r["steps"] == per_task[t]
        assert list(r["scores"].values()) == [v for v in res.R[t] if v == v]  # R[t][:t+2]
        assert 0 <= r["gate_acc"] <= 100 and set(r["gate_acc_per_task"]) == {x.name for x in tasks[: t + 1]}
        assert set(r["null_per_task"]) == set(r["gate_acc_per_task"])
        assert all(0 <= r["null_per_task"][k] <= 100 - r["gate_acc_per_task"][k] for k in r["null_per_task"])
    # the last record's null shares are the final evaluation's: they add up to the result's null count
    n_eval = [min(len(x.test), CFG.max_eval_examples or len(x.test)) for x in tasks]
    last = done[-1]["null_per_task"]
    assert sum(last[x.name] * n / 100 for x, n in zip(tasks, n_eval)) == pytest.approx(res.extra["null_routed"])
    # the resolved config next to the checkpoint is what the result and the checkpoint's identity hold
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config == res.config == trainer.identity()["config"]
    assert config["train_config"]["grad_accum"] == 2 and config["strategy_config"]["seta"]["gate"]["steps"] == 10
    assert config["preset"] == "test" and config["method"] == "seta"


def test_a_penalty_other_than_anchoring_is_other_penalty(make_base, tok, tasks, tmp_path):
    _run(make_base, tok, tasks[:2], tmp_path, name="ewc")
    steps = [r for r in read_metrics(tmp_path) if r["kind"] == "step"]
    assert all(r["anchor_penalty"] == 0.0 for r in steps)
    assert any(r["other_penalty"] > 0 for r in steps if r["task"] == 1)


def test_a_resumed_run_writes_each_step_once(make_base, tok, tasks, tmp_path):
    _run(make_base, tok, tasks, tmp_path / "full")
    _run(make_base, tok, tasks, tmp_path / "cut", stop_after=1)
    with open(tmp_path / "cut" / METRICS_NAME, "a") as f:  # a task killed midway left records and a cut line
        f.write(json.dumps({"kind": "step", "step": 99, "task": 1, "task_step": 1}) + "\n{\"kind\": \"st")
    _run(make_base, tok, tasks, tmp_path / "cut", resume=True)
    drop = ("time", "tokens_per_s", "examples_per_s")  # wall-clock figures differ between runs
    full, cut = ([{k: v for k, v in r.items() if k not in drop} for r in read_metrics(tmp_path / p)] for p in ("full", "cut"))
    assert cut == full


def test_tensorboard_gets_the_same_numbers(make_base, tok, tasks, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _run(make_base, tok, tasks[:2], tmp_path, tensorboard=True)
    acc = EventAccumulator(str(tmp_path / TB_DIR))
    acc.Reload()
    steps = [r for r in read_metrics(tmp_path) if r["kind"] == "step"]
    lm = acc.Scalars("train/lm_loss")
    assert [e.step for e in lm] == [r["step"] for r in steps]
    assert [e.value for e in lm] == pytest.approx([r["lm_loss"] for r in steps], rel=1e-6)
    task1 = [r for r in read_metrics(tmp_path) if r["kind"] == "task"][1]
    score = acc.Scalars(f"score/{tasks[0].name}")
    assert [e.step for e in score] == [0, 1, 2]  # base, after task 0, after task 1
    assert score[-1].value == pytest.approx(task1["scores"][tasks[0].name], rel=1e-6)
