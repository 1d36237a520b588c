"""The library API as a user sees it: get_seta_model, a task at a time, routed inference, save, merge."""

import re
from dataclasses import replace

import pytest
import torch

from api_helpers import CONFIG, batches_of, fresh_base, train_task
from seta import SetaConfig, SetaContinualModel, get_seta_model
from seta.api import SetaOwnConfig
from seta.data import generation_batch
from seta.experiment.presets import TINY
from seta.train.strategies.sparse import SparseConfig


def _blocks(model):
    ids = model.experts.allocated_ids()
    return ids, model.experts.get_blocks(ids).detach().clone()


def test_a_task_changes_only_its_own_blocks_and_never_the_base(tok, stream):
    torch.manual_seed(0)
    model = get_seta_model(fresh_base(tok), replace(CONFIG, beta=0.0), tokenizer=tok)  # S_2 differs from S_1
    train_task(model, tok, stream[0])
    base = {n: p.detach().clone() for n, p in model.experts.model.named_parameters() if "blocks" not in n}
    ids_before, before = _blocks(model)
    train_task(model, tok, stream[1])
    s_2 = set(model.experts.registry.expert(model.task_id(stream[1].name)).tolist())
    ids_after, after = _blocks(model)
    kept = [i for i, g in enumerate(ids_before.tolist()) if g not in s_2]
    moved = [i for i, g in enumerate(ids_after.tolist()) if g in s_2]
    assert kept and moved
    assert torch.equal(after[[ids_after.tolist().index(ids_before[i].item()) for i in kept]], before[kept])
    assert any(not torch.equal(after[i], torch.zeros_like(after[i])) for i in moved)  # task 2 trained its blocks
    for name, p in model.experts.model.named_parameters():
        if name in base:
            assert torch.equal(p, base[name]), name


def test_penalty_is_zero_on_the_first_task_and_grows_once_shared_blocks_move(trained, stream):
    _, penalties = trained
    first, second = penalties[stream[0].name], penalties[stream[1].name]
    assert first == [0.0] * len(first)
    assert second[0] == 0.0  # θ = θ* before the first step of task 2
    assert all(p > 0 for p in second[1:]) and len(second) > 1


def test_routed_generate_without_task_id_equals_generate_routed_to_the_true_task(trained, tok, stream):
    model, _ = trained
    checked = 0
    for task in stream:
        inputs = generation_batch(tok, [e.prompt for e in task.train[:6]])
        probs = model.route(**inputs)
        model.experts.clear_route()
        right = probs.argmax(1).eq(model.experts.router.column(model.task_id(task.name))) & probs.sum(1).gt(0)
        assert int(right.sum()) >= 3, f"the gate routes too few prompts of {task.name} to it: {probs}"
        rows = {k: v[right] for k, v in inputs.items()}
        routed = model.generate(**rows, max_new_tokens=6, do_sample=False)
        forced = model.generate(**rows, task=task.name, max_new_tokens=6, do_sample=False)
        assert torch.equal(routed, forced)
        base_out = model.experts.model.generate(**rows, max_new_tokens=6, do_sample=False)  # no route: base alone
        checked += int(not torch.equal(forced, base_out))
        train = batches_of(tok, [e for e, ok in zip(task.train[:6], right.tolist()) if ok], size=6)[0]
        with torch.no_grad():  # forward with labels: routed by the gate on the prompt tokens (labels -100)
            assert torch.equal(model(**train).logits, model(**train, task=task.name).logits)
    assert checked >= 1  # the experts change what is generated, so the equality above is not the base's twice


def test_save_and_from_pretrained_give_the_same_logits(trained, tok, stream, tmp_path):
    model, _ = trained
    model.save_pretrained(tmp_path)
    loaded = SetaContinualModel.from_pretrained(fresh_base(tok), tmp_path, tokenizer=tok)
    assert loaded.seta_config == model.seta_config and loaded.task_ids == model.task_ids
    batch = batches_of(tok, stream[0].test + stream[1].test)[0]
    with torch.no_grad():
        for task in (None, stream[0].name, stream[1].name):
            assert torch.equal(loaded(**batch, task=task).logits, model(**batch, task=task).logits)


def test_merge_and_unload_equals_the_model_routed_to_that_task(trained, tok, stream, tmp_path):
    model, _ = trained
    model.save_pretrained(tmp_path)
    copy = SetaContinualModel.from_pretrained(fresh_base(tok), tmp_path, tokenizer=tok)
    batch = batches_of(tok, stream[1].test)[0]
    with torch.no_grad():
        routed = model(**batch, task=stream[1].name).logits
        merged = copy.merge_and_unload(stream[1].name)
        assert type(merged).__name__ == type(fresh_base(tok)).__name__
        plain = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base = fresh_base(tok)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(plain, routed, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(plain, base, rtol=1e-4, atol=1e-5)


def test_print_trainable_parameters_counts_the_open_task_blocks(tok, stream, capsys):
    model = get_seta_model(fresh_base(tok), CONFIG, tokenizer=tok)
    base_total = sum(p.numel() for p in fresh_base(tok).parameters())
    params = model.start_task(stream[0].name, batches_of(tok, stream[0].train))
    model.print_trainable_parameters()
    line = capsys.readouterr().out.strip()
    k = model.experts.registry.expert(0).numel()
    gate = sum(p.numel() for p in model.experts.router.gate.parameters())
    assert sum(p.numel() for p in params) == k * 16 * 16
    m = re.fullmatch(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+) \|\| "
                     r"expert blocks: (\d+) of (\d+) allocated, task 'FOMC': (\d+)", line)
    assert m, line
    trainable, total = (int(m.group(i).replace(",", "")) for i in (1, 2))
    assert trainable == k * 256 and total == base_total + k * 256 + gate
    assert float(m.group(3)) == pytest.approx(100 * trainable / total, abs=1e-4)
    assert int(m.group(4)) == int(m.group(6)) == k and int(m.group(5)) == model.experts.index.n_blocks


def test_task_order_mistakes_are_refused_with_what_to_do(tok, stream):
    model = get_seta_model(fresh_base(tok), CONFIG, tokenizer=tok)
    data = batches_of(tok, stream[0].train)
    with pytest.raises(RuntimeError, match="call start_task first"):
        model.end_task(data, ["x"])
    with pytest.raises(ValueError, match="unknown task 'nope'; this model has learned no task"):
        model.merge_and_unload("nope")
    model.start_task("a", data)
    with pytest.raises(RuntimeError, match="task 'a' is still open; call end_task first"):
        model.start_task("b", data)
    with pytest.raises(RuntimeError, match="still open"):
        model.save_pretrained("unused")


def test_one_config_joins_the_run_sections_and_rejects_bad_values():
    cfg = TINY.method_config()
    sparse, own = cfg.sections()
    assert (sparse, own) == (TINY.sparse, TINY.seta)
    assert cfg.expert_config().block_size == TINY.sparse.block_size == 16
    assert SetaConfig().block_size == SparseConfig().block_size == SetaConfig().expert_config().block_size == 256
    assert SetaConfig.from_sections(SparseConfig(), SetaOwnConfig()) == SetaConfig()
    with pytest.raises(ValueError, match="routing must be top1, soft or oracle"):
        SetaConfig(routing="best")
    with pytest.raises(ValueError, match="block_dtype"):
        SetaConfig(block_dtype="int8")
