"""`seta generate / eval / merge / info / train --from` on a tiny trained adapter (tests/conftest.py)."""

import json
import shutil

import pytest
from click.testing import CliRunner

from seta.cli import main
from seta.inference.card import CARD_NAME


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_prints_the_result_and_where_the_adapter_is(tiny_adapter):
    out = tiny_adapter["output"]
    assert "seta: tasks FOMC, C-STANCE" in out and f"adapter: {tiny_adapter['dir']}" in out
    assert f"routing {tiny_adapter['result']['routing_acc']:.1f}%" in out
    assert f"wrote {tiny_adapter['run']}/: result.json" in out and "(" not in out.splitlines()[1]  # no raw floats, reprs
    assert sorted(p.name for p in tiny_adapter["dir"].iterdir()) == sorted([CARD_NAME, "seta_config.json", "seta_method.json",
                                                                             "seta_model.safetensors"])


def test_generate_jsonl_in_and_out_routes_to_the_oracle_task(tiny_adapter, tiny_tasks, tmp_path):
    rows = [{"prompt": e.prompt, "oracle": t.name, "id": i} for t in tiny_tasks for i, e in enumerate(t.test)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    result = _run("generate", tiny_adapter["dir"], "--file", path)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    assert [(o["prompt"], o["oracle"], o["id"]) for o in out] == [(r["prompt"], r["oracle"], r["id"]) for r in rows]
    assert all(o["task"] in (o["oracle"], None) for o in out)
    assert sum(o["task"] == o["oracle"] for o in out) >= 0.8 * len(out)
    assert all(isinstance(o["answer"], str) and set(o["probs"]) == {"FOMC", "C-STANCE"} for o in out)


def test_generate_a_prompt_prints_the_routed_task_and_the_answer(tiny_adapter, tiny_tasks):
    from seta.inference.adapter import SetaAdapter

    prompt = tiny_tasks[1].test[1].prompt
    g = SetaAdapter.load(tiny_adapter["dir"]).generate([prompt])[0]
    result = _run("generate", tiny_adapter["dir"], prompt)
    assert result.exit_code == 0 and result.output == f"[{g.task or 'null'}] {g.text}\n"
    forced = _run("generate", tiny_adapter["dir"], prompt, "--task", "FOMC", "--jsonl")
    row = json.loads(forced.output)
    assert row["task"] == "FOMC" and row["forced"] is True and row["prompt"] == prompt


def test_eval_prints_scores_routing_and_the_R_row_of_training(tiny_adapter, tiny_tasks, tmp_path):
    from seta.data import Stream, write_trace

    write_trace(Stream(tiny_tasks, name="two"), tmp_path / "data")
    result = _run("eval", tiny_adapter["dir"], "--data-dir", tmp_path / "data", "--json")
    assert result.exit_code == 0, result.output
    res = json.loads(result.output)
    assert res["R_row"] == pytest.approx(tiny_adapter["result"]["R"][-1])
    assert res["routing_acc"] == pytest.approx(tiny_adapter["result"]["routing_acc"])
    text = _run("eval", tiny_adapter["dir"]).output  # default: the adapter's own stream, from its card
    row = [round(v, 2) for v in tiny_adapter["result"]["R"][-1]]
    assert f"R row (adapter's task order): {json.dumps(row)}" in text and "routing accuracy: " in text
    assert text.splitlines()[1].startswith("FOMC") and "exact_match" in text


def test_merge_writes_a_checkpoint_transformers_loads(tiny_adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    result = _run("merge", tiny_adapter["dir"], "--task", "FOMC", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {tmp_path / 'm'}: the base with the expert of FOMC folded in")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert type(model).__name__ == "LlamaForCausalLM"
    again = _run("merge", tiny_adapter["dir"], "--task", "FOMC", "--out", tmp_path / "m")
    assert again.exit_code == 1 and "is not an empty folder" in again.output


def test_info_lists_tasks_blocks_sharing_growth_and_routing(tiny_adapter):
    from seta.inference.adapter import adapter_info

    d = adapter_info(tiny_adapter["dir"])
    result = _run("info", tiny_adapter["dir"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{tiny_adapter['dir']}: seta (preset tiny-quick), 2 tasks"
    assert d["base"]["config_hash"] in lines[1] and d["base"]["weights_hash"] in lines[1]
    fomc = lines[3].split()
    assert fomc[:4] == ["FOMC", str(d["tasks"][0]["blocks"]), str(d["tasks"][0]["unique"]), str(d["tasks"][0]["shared"])]
    assert f"growth |∪S|/Σ|S| = {d['growth_ratio']:.3f}" in result.output
    assert f"accuracy in training {tiny_adapter['result']['routing_acc']:.1f}%" in result.output
    assert json.loads(_run("info", tiny_adapter["dir"], "--json").output)["tasks"] == d["tasks"]


def test_train_from_adds_a_task_and_leaves_the_adapter_alone(tiny_adapter, tmp_path):
    from seta.inference.adapter import SetaAdapter

    before = {p.name: p.read_bytes() for p in tiny_adapter["dir"].iterdir()}
    old = SetaAdapter.load(tiny_adapter["dir"]).seta
    result = _run("train", "--from", tiny_adapter["dir"], "--tasks", "ScienceQA", "--out", tmp_path / "grown",
                  "--no-progress")
    assert result.exit_code == 0, result.output
    assert "seta: tasks FOMC, C-STANCE, ScienceQA" in result.output
    grown = SetaAdapter.load(tmp_path / "grown" / "adapter")
    assert grown.tasks == ["FOMC", "C-STANCE", "ScienceQA"]
    for t in (0, 1):  # the earlier experts keep their blocks; the new task got its own allocation
        assert grown.seta.registry.expert(t).tolist() == old.registry.expert(t).tolist()
    assert grown.seta.registry.expert(2).numel() == old.registry.expert(0).numel()
    assert {p.name: p.read_bytes() for p in tiny_adapter["dir"].iterdir()} == before
    R = json.loads((tmp_path / "grown" / "result.json").read_text())["R"]
    assert [r[:2] for r in R[:2]] == tiny_adapter["result"]["R"]  # the rows the adapter's own run measured
    assert all(v == v for v in R[2])  # the new last row: every task scored
    again = _run("train", "--from", tmp_path / "grown" / "adapter", "--tasks", "FOMC", "--out", tmp_path / "g2")
    assert again.exit_code == 1 and "already has task(s) ['FOMC']" in again.output


def _one_line_error(result, code=None):
    assert result.exit_code != 0 and (code is None or result.exit_code == code)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines()[-1].startswith("Error: ")


def test_bad_input_is_one_line_and_a_non_zero_exit(tiny_adapter, tmp_path):
    ad = tiny_adapter["dir"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n\n{"prompt": 3}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "fine"}\n{"prompt": \n')
    four = tmp_path / "four"
    shutil.copytree(ad, four)
    card = json.loads((four / CARD_NAME).read_text())
    card["base"]["load_in_4bit"] = True
    (four / CARD_NAME).write_text(json.dumps(card))
    gateless = tmp_path / "gateless"
    shutil.copytree(ad, gateless)
    (gateless / CARD_NAME).write_text(json.dumps({**card, "method": "seqft-sparse"}))
    cases = [
        (["generate", gateless, "hi"], "is an adapter of seqft-sparse, which has no gate"),
        (["generate", tmp_path / "nope", "hi"], "adapter folder"),
        (["info", tmp_path / "nope"], "does not exist"),
        (["info", tmp_path], "is not a SETA adapter folder"),
        (["eval", tmp_path], "is not a SETA adapter folder"),
        (["generate", ad, "hi", "--task", "nope"], "unknown task 'nope'; the adapter has: FOMC, C-STANCE"),
        (["merge", ad, "--task", "nope", "--out", tmp_path / "m"], "unknown task 'nope'"),
        (["merge", four, "--task", "FOMC", "--out", tmp_path / "m"], "its base is 4-bit"),
        (["generate", ad, "--file", bad], f"{bad} line 3: expected an object with a \"prompt\" string"),
        (["generate", ad, "--file", broken], f"{broken} line 2: not valid JSON"),
        (["generate", ad, "--file", tmp_path / "none.jsonl"], "does not exist"),
        (["generate", ad], "give at least one PROMPT"),
        (["eval", ad, "--tasks", "nope"], "unknown task(s) ['nope']"),
        (["train", "--from", ad, "--out", tmp_path / "o"], "--from needs --tasks"),
        (["train", "--tasks", "NOPE", "--quick", "--out", tmp_path / "o"], "NOPE"),
        (["train", "--method", "bogus", "--out", tmp_path / "o"], "unknown method"),
    ]
    for args, message in cases:
        result = _run(*args)
        _one_line_error(result)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()
