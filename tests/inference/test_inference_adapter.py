"""seta.inference: a saved adapter loads with its base in one call, routes and generates, scores as
training did, refuses the wrong base, and merges into a dense checkpoint plain transformers loads."""

import hashlib
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from seta.inference.adapter import SetaAdapter, adapter_info, merge_adapter
from seta.inference.card import CARD_NAME, base_hashes, read_card


@pytest.fixture(scope="module")
def adapter(tiny_adapter):
    return SetaAdapter.load(tiny_adapter["dir"])


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_card_says_which_base_tokenizer_tasks_and_settings(tiny_adapter, adapter):
    from transformers import AutoModelForCausalLM

    from seta.experiment.presets import QUICK

    card = read_card(tiny_adapter["dir"])
    base = card["base"]
    assert base["kind"] == "tiny" and (tiny_adapter["run"].parent / ".cache").resolve() in Path(base["model"]).parents
    fresh = AutoModelForCausalLM.from_pretrained(base["model"], dtype=torch.float32)
    assert {k: base[k] for k in ("config_hash", "weights_hash")} == base_hashes(fresh)
    assert base_hashes(adapter.seta.model) == base_hashes(fresh)  # same with experts attached
    assert base["tokenizer"] == base["model"] and (Path(base["model"]) / "tokenizer.json").is_file()
    assert [t["name"] for t in card["tasks"]] == ["FOMC", "C-STANCE"] == adapter.tasks
    assert card["method"] == "seta" and card["preset"] == "tiny-quick"
    assert json.loads(json.dumps(asdict(QUICK.sparse))) == card["sparse_config"]  # every config, the gate's included
    want = asdict(replace(QUICK.seta, gate=replace(QUICK.seta.gate, seed=0)))
    assert json.loads(json.dumps(want)) == card["seta_config"]
    assert card["train_config"]["epochs"] == [1] and card["train_config"]["seed"] == 0
    assert all(t["max_new_tokens"] >= 1 and t["source"]["seed"] == 0 for t in card["tasks"])


def test_generate_routes_each_prompt_to_its_task(adapter, tiny_tasks):
    prompts = [(e.prompt, t.name) for t in tiny_tasks for e in t.test]
    out = adapter.generate([p for p, _ in prompts])
    routed = [g.task for g in out]
    assert all(r in (None, o) for r, (_, o) in zip(routed, prompts))  # never the other task's expert
    assert sum(r == o for r, (_, o) in zip(routed, prompts)) >= 0.8 * len(prompts)
    for g in out:
        assert set(g.probs) == {"FOMC", "C-STANCE"} and abs(sum(g.probs.values()) - 1) < 1e-4 and not g.forced
        assert g.task is None or g.task == max(g.probs, key=g.probs.get)


def test_a_forced_task_gives_what_routing_to_it_gives(adapter, tiny_tasks):
    prompts = [e.prompt for e in tiny_tasks[0].test]
    routed = adapter.generate(prompts)
    forced = adapter.generate(prompts, task="FOMC")
    assert all(g.forced and g.task == "FOMC" and g.probs == {"FOMC": 1.0, "C-STANCE": 0.0} for g in forced)
    same = [(r.text, f.text) for r, f in zip(routed, forced) if r.task == "FOMC"]
    assert same and all(a == b for a, b in same)
    with pytest.raises(ValueError, match="unknown task 'nope'; the adapter has: FOMC, C-STANCE"):
        adapter.generate(prompts, task="nope")


def test_evaluate_reproduces_the_last_row_of_training(adapter, tiny_adapter, tiny_tasks):
    res = adapter.evaluate(tiny_tasks)
    assert res["R_row"] == pytest.approx(tiny_adapter["result"]["R"][-1], abs=1e-9)
    assert res["routing_acc"] == pytest.approx(tiny_adapter["result"]["routing_acc"])


def test_info_counts_blocks_sharing_and_routing(tiny_adapter, adapter):
    info = adapter_info(tiny_adapter["dir"])
    reg = adapter.seta.registry
    assert [r["blocks"] for r in info["tasks"]] == [int(reg.expert(t).numel()) for t in (0, 1)]
    shared = set(reg.expert(0).tolist()) & set(reg.expert(1).tolist())
    assert [r["shared"] for r in info["tasks"]] == [len(shared)] * 2
    assert info["blocks_allocated"] == len(set(reg.expert(0).tolist()) | set(reg.expert(1).tolist()))
    assert info["growth_ratio"] == pytest.approx(info["blocks_allocated"] / info["sum_of_experts"])
    assert [r["features_seen"] for r in info["tasks"]] == [120, 120]
    assert info["routing"]["train_routing_acc"] == tiny_adapter["result"]["routing_acc"]


def test_the_wrong_base_is_refused_naming_both_hashes(tiny_adapter, tmp_path):
    from seta.data import build_tiny_tokenizer
    from seta.models import build_tiny_model
    from seta.experiment.presets import QUICK

    want = read_card(tiny_adapter["dir"])["base"]
    tok = build_tiny_tokenizer()
    other = build_tiny_model("llama", tokenizer=tok, seed=1, **QUICK.tiny_model)  # same shapes, other weights
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="another base model: its weights hash is") as err:
        SetaAdapter.load(tiny_adapter["dir"], base=tmp_path / "other")
    assert want["weights_hash"] in str(err.value) and base_hashes(other)["weights_hash"] in str(err.value)
    wider = build_tiny_model("llama", tokenizer=tok, seed=0, **{**QUICK.tiny_model, "intermediate_size": 192})
    wider.save_pretrained(tmp_path / "wider")
    with pytest.raises(ValueError, match="architecture config hash is") as err:
        SetaAdapter.load(tiny_adapter["dir"], base=tmp_path / "wider")
    assert want["config_hash"] in str(err.value) and base_hashes(wider)["config_hash"] in str(err.value)


def test_merge_equals_seta_with_the_task_routed_and_leaves_the_source_alone(tiny_adapter, adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before_files = _digest(tiny_adapter["dir"])
    before = {n: p.detach().clone() for n, p in adapter.seta.state_dict().items()}
    out = adapter.merge("C-STANCE", tmp_path / "merged")
    dense = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)  # plain transformers
    assert not any("blocks" in n for n, _ in dense.named_parameters())
    ids = AutoTokenizer.from_pretrained(out)(["Stance task: give the author's stance.\nText: ben", "Answer: A"],
                                             return_tensors="pt", padding=True)
    with torch.no_grad(), adapter.seta.use_expert(adapter.seta.registry.expert(1)):
        want = adapter.seta(**ids).logits
    got = dense(**ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with torch.no_grad(), adapter.seta.no_experts():
        base = adapter.seta(**ids).logits
    assert (got - base).abs().max() > 1e-3  # the expert is really in the merged weights
    assert _digest(tiny_adapter["dir"]) == before_files
    after = adapter.seta.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "seta_merge.json").read_text())["task"] == "C-STANCE"


def test_merge_says_why_not_for_a_4bit_base_or_an_unknown_task(tiny_adapter, tmp_path):
    copy = tmp_path / "adapter"
    shutil.copytree(tiny_adapter["dir"], copy)
    card = json.loads((copy / CARD_NAME).read_text())
    card["base"]["load_in_4bit"] = True
    (copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="its base is 4-bit"):
        merge_adapter(copy, "FOMC", tmp_path / "m")
    with pytest.raises(ValueError, match="unknown task 'X'"):
        merge_adapter(tiny_adapter["dir"], "X", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_folder_that_is_not_an_adapter_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_card(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a SETA adapter folder"):
        read_card(tmp_path)


def test_the_card_module_names_the_files_seta_models_writes():
    from seta import models
    from seta.inference import card

    assert (card.CONFIG_NAME, card.WEIGHTS_NAME) == (models.CONFIG_NAME, models.WEIGHTS_NAME)


def test_route_callbacks_route_a_forward_as_generate_does(adapter, tiny_tasks):
    from seta.eval.generate import left_pad

    prompt = tiny_tasks[0].test[0].prompt
    g = adapter.generate([prompt])[0]
    batch = left_pad(adapter._encode([prompt]), adapter.tokenizer.pad_token_id)
    counts = {}
    route, clear = adapter.route_callbacks(counts)
    with torch.no_grad():
        route(batch["input_ids"], batch["attention_mask"])
        assert counts == {g.task or "null": 1}  # the tally names the route generate took
        got = adapter.seta(**batch).logits
        clear()
        ids = adapter.seta.registry.expert(adapter.task_index(g.task)) if g.task else []
        with adapter.seta.use_expert(ids):
            want = adapter.seta(**batch).logits
        base = adapter.seta(**batch).logits  # cleared: the base
    torch.testing.assert_close(got, want)
    assert g.task is None or (got - base).abs().max() > 0


def test_the_package_exports_the_adapter_classes():
    """`from seta.inference import SetaAdapter` (as the package docstring shows) is the adapter module's class."""
    import seta.inference as inference
    from seta.inference import Generation, SetaAdapter
    from seta.inference import adapter

    assert SetaAdapter is adapter.SetaAdapter and Generation is adapter.Generation
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        inference.Nope
