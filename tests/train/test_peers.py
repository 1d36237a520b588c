"""The peers from peft in the continual loop: arrow (per-task LoRAs + peft's Arrow router) and osf (peft's OSF)."""

import json

import numpy as np
import pytest
import torch

from seta.models import build_tiny_model
from seta.train.checkpoint import load_checkpoint
from seta.train.loop import CHECKPOINT_NAME, ContinualTrainer
from seta.train.strategies import build_strategy
from seta.train.strategies.osf import preserved_fraction

from train_helpers import TRAIN, assert_same_checkpoint


def _run(name, base, tok, tasks, out, **kw):
    strategy = build_strategy(name, base, tok)
    return ContinualTrainer(strategy, tasks, TRAIN, out, progress=False).run(**kw), strategy


@pytest.mark.parametrize("name", ["arrow", "osf"])
def test_resume_is_bit_exact_at_a_task_boundary(name, make_base, tok, tasks, tmp_path):
    full, _ = _run(name, make_base(), tok, tasks, tmp_path / "full")
    _run(name, make_base(), tok, tasks, tmp_path / "cut", stop_after=2)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["next_task"] == 2
    resumed, _ = _run(name, make_base(), tok, tasks, tmp_path / "cut", resume=True)
    assert json.dumps(resumed.R) == json.dumps(full.R)
    assert resumed.routing_acc == full.routing_acc
    assert_same_checkpoint(tmp_path / "full" / CHECKPOINT_NAME, tmp_path / "cut" / CHECKPOINT_NAME)


def test_arrow_keeps_the_base_routes_without_the_task_id_and_grows_linearly(make_base, tok, tasks, tmp_path):
    base = make_base()
    params = list(base.parameters())  # the base's own tensors: peft wraps their modules in place
    before = [p.detach().clone() for p in params]
    res, strategy = _run("arrow", base, tok, tasks, tmp_path)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert np.isfinite(np.array(res.R[-1], dtype=float)).all()
    # routing is logged for the evaluations of trained tasks only, and is a real prediction
    assert res.routing_acc is not None and 0 <= res.routing_acc <= 100
    assert set(strategy.routing_log.pred) <= {0, 1, 2} and len(strategy.routing_log.true) > 0
    # stored parameters: one LoRA per task
    assert res.extra["growth"] == [res.trainable_params] * 3 and res.allocated_params == 3 * res.trainable_params
    # the output does not depend on the task id given to route(): Arrow never sees it
    ids = tok(["Sentence: the rate rises. Label:", "Text: the fox"], return_tensors="pt", padding=True)
    inputs = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
    outs = []
    for task_id in (0, 2, -1):
        strategy.route(inputs, task_id)
        with torch.no_grad():
            outs.append(strategy.model(**inputs).logits)
        strategy.clear_route()
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    with torch.no_grad(), strategy.model.disable_adapter():
        plain = strategy.model(**inputs).logits
    assert (outs[0] - plain).abs().max() > 1e-4  # the routed experts act
    strategy.save_adapter(tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["task_0", "task_1", "task_2"]


def test_arrow_records_the_expert_its_router_weights_most(make_base, tok, tasks, tmp_path):
    """An expert whose LoRA is zeroed has a zero prototype, so peft's router gives it the smaller coefficient
    on every token: the recorded route of every prompt is then the other expert, whatever the true task."""
    res, strategy = _run("arrow", make_base(), tok, tasks[:2], tmp_path)
    strategy.experts[0] = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in strategy.experts[0].items()}
    strategy._written = 0
    strategy._build_router()
    ids = tok(["Sentence: the rate rises. Label:", "Text: the fox"], return_tensors="pt", padding=True)
    inputs = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
    strategy.routing_log.true.clear(), strategy.routing_log.pred.clear()
    for task_id in (0, 1, 5):  # 5: a task Arrow has no expert for, not logged
        strategy.route(inputs, task_id)
        with torch.no_grad():
            strategy.model(**inputs)
        strategy.clear_route()
    assert strategy.routing_log.true == [0, 0, 1, 1] and strategy.routing_log.pred == [1, 1, 1, 1]
    assert strategy.routing_log.accuracy() == 50.0


def test_osf_preserves_the_top_subspace_and_leaves_other_weights_alone(make_base, tok, tasks, tmp_path):
    base = make_base()
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    name = "model.layers.0.self_attn.q_proj.weight"
    W = before[name].double()
    U, S, Vt = torch.linalg.svd(W, full_matrices=False)
    k = int(min(W.shape) * preserved_fraction(0, 2))  # task 0 of a 2-task stream keeps the top third
    res, strategy = _run("osf", base, tok, tasks[:2], tmp_path, stop_after=1)
    after = dict(strategy.model.named_parameters())
    targets = set(strategy.targets)
    assert targets and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in targets)
    assert all(torch.equal(after[n].detach(), v) for n, v in before.items() if n not in targets)
    W1 = after[name].detach().double()
    assert (W1 - W).abs().max() > 1e-5  # task 0 trained the weight
    # the preserved directions W' v_i ≈ s_i u_i (top k): peft projects the gradients off them, but AdamW's
    # per-coordinate scaling moves a part of each update back in (docs/peers.md, Fidelity notes: ~13% here)
    drift = (W1 @ Vt[:k].T - U[:, :k] * S[:k]).norm()
    assert drift < 0.25 * (W1 - W).norm()
    counts = strategy.param_counts()
    assert counts["trainable_params"] == counts["extra"]["trainable_per_task"][0] > 0


def test_osf_trains_less_as_the_preserved_rank_grows(make_base, tok, tasks, tmp_path):
    res, strategy = _run("osf", make_base(), tok, tasks, tmp_path)
    per = res.extra["trainable_per_task"]
    assert len(per) == 3 and per[0] > per[1] > per[2] > 0
    assert [round(f, 4) for f in res.extra["preserved_fraction"]] == [0.25, 0.5, 0.75]


def test_osf_refuses_a_4bit_base_in_one_line(tok):
    base = build_tiny_model("llama", tokenizer=tok, seed=0, load_in_4bit=True)
    with pytest.raises(ValueError, match="osf needs a dense base") as err:
        build_strategy("osf", base, tok)
    assert "\n" not in str(err.value) and "4-bit" in str(err.value)


def test_arrow_trains_and_routes_on_a_4bit_base(tok, tasks, tmp_path):
    base = build_tiny_model("llama", tokenizer=tok, seed=0, load_in_4bit=True)
    res, strategy = _run("arrow", base, tok, tasks[:2], tmp_path)
    assert np.isfinite(np.array(res.R[-1], dtype=float)).all() and res.routing_acc is not None
    assert res.allocated_params == 2 * res.trainable_params > 0


def test_every_default_method_list_holds_the_peers():
    from seta.experiment.choices import ALL_METHODS

    assert {"arrow", "osf"} <= set(ALL_METHODS)


def test_osf_by_name_on_a_4bit_preset_stops_in_one_line_before_loading(tmp_path):
    from click.testing import CliRunner

    from seta.experiment.command import main

    (tmp_path / "model").mkdir(), (tmp_path / "data").mkdir()
    args = ["--preset", "llama2-7b", "--model", str(tmp_path / "model"), "--data-dir", str(tmp_path / "data"),
            "--methods", "seta,osf", "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "osf needs a dense base" in res.output and "4-bit" in res.output
    assert not (tmp_path / "out").exists()


def test_the_default_method_list_leaves_osf_out_on_a_4bit_preset_and_says_so(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from seta.experiment import command

    calls = []
    monkeypatch.setattr(command, "run", lambda cfg, names, *a, **k: calls.append(names))
    (tmp_path / "model").mkdir(), (tmp_path / "data").mkdir()
    args = ["--preset", "llama2-7b", "--model", str(tmp_path / "model"), "--data-dir", str(tmp_path / "data"),
            "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(command.main, args)
    assert res.exit_code == 0, res.output
    assert "osf left out" in res.output and "4-bit" in res.output
    assert "osf" not in calls[0] and "arrow" in calls[0]
