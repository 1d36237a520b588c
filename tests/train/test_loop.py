"""The continual loop: every strategy end to end, resume, NaN handling, schedule, checkpoints."""

import json
import math

import numpy as np
import pytest
import torch

from seta.train.checkpoint import load_checkpoint, save_checkpoint
from seta.train.config import TrainConfig
from seta.train.loop import CHECKPOINT_NAME, ContinualTrainer, NonFiniteLossError, cosine_lr_factor
from seta.train.strategies import STRATEGIES, build_strategy

from train_helpers import SETA, SPARSE, TRAIN, assert_same_checkpoint


def _run(name, make_base, tok, tasks, out, **kw):
    strategy = build_strategy(name, make_base(), tok, SPARSE, seta=SETA)
    return ContinualTrainer(strategy, tasks, TRAIN, out, progress=False).run(**kw), strategy


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_end_to_end(name, make_base, tok, tasks, tmp_path):
    res, strategy = _run(name, make_base, tok, tasks, tmp_path)
    R = np.array(res.R, dtype=float)
    assert R.shape == (3, 3)
    assert np.isfinite(R[-1]).all() and ((R[-1] >= 0) & (R[-1] <= 100)).all()
    if not strategy.joint:
        assert all(np.isfinite(R[i, : i + 1]).all() for i in range(3))  # every seen task scored
        assert np.isfinite(res.BWT)
    assert res.trainable_params > 0
    assert (tmp_path / CHECKPOINT_NAME).is_file() and (tmp_path / "train.log").is_file()
    strategy.save_adapter(tmp_path / "adapter")
    assert any((tmp_path / "adapter").iterdir())


@pytest.mark.parametrize("name", ["seta", "seqft-sparse", "ewc", "independent", "o-lora", "lwf"])
def test_resume_is_bit_exact_at_a_task_boundary(name, make_base, tok, tasks, tmp_path):
    full, _ = _run(name, make_base, tok, tasks, tmp_path / "full")
    _run(name, make_base, tok, tasks, tmp_path / "cut", stop_after=2)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["next_task"] == 2
    resumed, _ = _run(name, make_base, tok, tasks, tmp_path / "cut", resume=True)
    assert json.dumps(resumed.R) == json.dumps(full.R)
    # bit for bit: blocks in stack order, Fisher, anchors, counts, gate, LoRA weights, RNG, routing log
    assert_same_checkpoint(tmp_path / "full" / CHECKPOINT_NAME, tmp_path / "cut" / CHECKPOINT_NAME)


def test_seta_protects_base_and_routes(make_base, tok, tasks, tmp_path):
    base = make_base()
    params = list(base.parameters())  # the base's own tensors, wrapped in place by the adapter
    before = [p.detach().clone() for p in params]
    strategy = build_strategy("seta", base, tok, SPARSE, seta=SETA)
    res = ContinualTrainer(strategy, tasks, TRAIN, tmp_path, progress=False).run()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert not any(p.requires_grad for p in params)
    assert res.routing_acc is not None and 0 <= res.routing_acc <= 100
    assert len(strategy.model.router.tasks) == 3
    assert 0 < strategy.model.registry.growth_ratio() <= 1


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(make_base, tok, tasks, tmp_path):
    strategy = build_strategy("seqft-sparse", make_base(), tok, SPARSE, seta=SETA)
    trainer = ContinualTrainer(strategy, tasks, TRAIN, tmp_path, progress=False)
    trainer.run(stop_after=1)
    good = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    fresh = build_strategy("seqft-sparse", make_base(), tok, SPARSE, seta=SETA)  # a new process, as after a crash
    inner = fresh.loss
    fresh.loss = lambda batch, t, n=None: (inner(batch, t, n)[0], torch.tensor(float("nan")))  # a NaN penalty
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        ContinualTrainer(fresh, tasks, TRAIN, tmp_path, progress=False).run(resume=True)
    kept = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert kept["next_task"] == good["next_task"] == 1


def test_cosine_schedule():
    assert cosine_lr_factor(0, 10, 0) == pytest.approx(1.0)
    assert cosine_lr_factor(5, 10, 0) == pytest.approx(0.5)
    assert cosine_lr_factor(10, 10, 0) == pytest.approx(0.0, abs=1e-12)
    assert [cosine_lr_factor(s, 10, 4) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    values = [cosine_lr_factor(s, 50, 5) for s in range(5, 51)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_atomic_save_leaves_no_partial_file(tmp_path):
    path = tmp_path / "ck.safetensors"
    save_checkpoint({"a": 1}, path)

    class Boom:
        pass

    with pytest.raises(TypeError, match="plain data"):
        save_checkpoint({"a": Boom()}, path)
    assert load_checkpoint(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]


def test_config_validation():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=(0,))
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown method"):
        build_strategy("nope", None, None)
    cfg = TrainConfig(epochs=(1, 2))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and cfg.epochs_for(1) == 2
    assert math.isfinite(cfg.lr)


@pytest.mark.parametrize("name", ["seta", "ewc"])
def test_working_copy_trains_like_the_whole_stack(name, make_base, tok, tasks, tmp_path):
    """The trainer's per-task working copies (optimizer state for S_t only) reach the weights and R of
    the reference that puts every layer's whole stack in AdamW (weight decay 0: other blocks get zero
    gradient)."""
    fast, s_fast = _run(name, make_base, tok, tasks, tmp_path / "fast")

    strategy = build_strategy(name, make_base(), tok, SPARSE, seta=SETA)
    strategy.trainable_parameters = strategy.model.block_parameters  # the whole stacks, no working copy
    ref = ContinualTrainer(strategy, tasks, TRAIN, tmp_path / "ref", progress=False).run()
    ids = strategy.model.allocated_ids()
    assert torch.equal(ids, s_fast.model.allocated_ids()) and ids.numel() > 0
    torch.testing.assert_close(s_fast.model.get_blocks(ids), strategy.model.get_blocks(ids), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.array(fast.R, float), np.array(ref.R, float), atol=1e-6)
