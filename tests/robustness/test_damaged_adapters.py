"""Damaged and hostile adapter folders through every command that reads one: one `Error:` line each, before
any model is loaded, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from seta.inference.card import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

from robustness_helpers import edit_card, rehash, run_bounded, run_in_process, tree

W = WEIGHTS_NAME


def _truncate(d):
    data = (d / W).read_bytes()
    (d / W).write_bytes(data[: len(data) // 2])


def _header_junk(d):
    data = bytearray((d / W).read_bytes())
    data[8:40] = b"\xff{not json at all, not utf-8 \x00\x01"[:32]
    (d / W).write_bytes(bytes(data))


def _header_length(d):
    data = (d / W).read_bytes()
    (d / W).write_bytes((2**62).to_bytes(8, "little") + data[8:])


def _nan_blocks(d):
    tensors = load_file(str(d / W))
    name = next(k for k in tensors if k.endswith(".blocks"))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(d / W))


def _config(change):
    def damage(d):
        cfg = json.loads((d / CONFIG_NAME).read_text())
        change(cfg)
        (d / CONFIG_NAME).write_text(json.dumps(cfg))
    return damage


def _card(change):
    return lambda d: edit_card(d, change)


def _task_name(name):
    return _card(lambda c: c["tasks"][0].__setitem__("name", name))


def _then_rehash(damage):
    def both(d):
        damage(d)
        rehash(d)
    return both


CASES = {  # name: (damage, a fragment of the one Error line)
    "truncated weights": (_truncate, "sha256 differs"),
    "truncated weights, rehashed": (_then_rehash(_truncate), "does not fit the file"),
    "header not JSON, rehashed": (_then_rehash(_header_junk), "header is not valid JSON"),
    "header length 2^62, rehashed": (_then_rehash(_header_length), "header claims"),
    "NaN blocks": (_nan_blocks, "sha256 differs"),
    "NaN blocks, rehashed": (_then_rehash(_nan_blocks), "NaN or infinite"),
    "no hashes, NaN blocks": (lambda d: (_nan_blocks(d), edit_card(d, lambda c: c.pop("sha256"))), "NaN or infinite"),
    "tasks a string": (_card(lambda c: c.__setitem__("tasks", "FOMC")), "tasks must be a list"),
    "tasks numbers": (_card(lambda c: c.__setitem__("tasks", [1, 2])), "tasks[0] must be an object"),
    "base empty": (_card(lambda c: c.__setitem__("base", {})), "base.kind must be"),
    "card nests 200000 levels": (lambda d: (d / CARD_NAME).write_text("[" * 200_000), "nests too deeply"),
    "card not UTF-8": (lambda d: (d / CARD_NAME).write_bytes(b'{"format": "\xff\xfe"}'), "not UTF-8"),
    "card of 5 MiB": (lambda d: (d / CARD_NAME).write_text(" " * (5 << 20) + "{}"), "more than a card can hold"),
    "card a list": (lambda d: (d / CARD_NAME).write_text("[]"), "not a list"),
    "task name newline": (_task_name("FO\nMC"), "tasks[0].name must be"),
    "task name ANSI": (_task_name("\x1b[31mFOMC"), "tasks[0].name must be"),
    "task name bidi": (_task_name("FOMC\u202eCMOF"), "tasks[0].name must be"),
    "tasks twice": (_card(lambda c: c["tasks"][1].__setitem__("name", "FOMC")), "distinct names"),
    "max_new_tokens text": (_card(lambda c: c["tasks"][0].__setitem__("max_new_tokens", "x")), "max_new_tokens must be"),
    "source unknown kwarg": (_card(lambda c: c["tasks"][0]["source"]["synthetic"].__setitem__("bogus", 1)), "synthetic must be"),
    "train_config lr text": (_card(lambda c: c["train_config"].__setitem__("lr", "x")), "train_config.lr must be float"),
    "routing unknown": (_card(lambda c: c["seta_config"].__setitem__("routing", "x")), "seta_config.routing must be"),
    "method unknown": (_card(lambda c: c.__setitem__("method", "rm -rf")), "method must be one of"),
    "sha256 wrong type": (_card(lambda c: c.__setitem__("sha256", ["x"])), "sha256 must be"),
    "registry wrong types, rehashed": (_then_rehash(_config(lambda c: c["registry"].__setitem__("n_blocks", "x"))),
                                       "registry must be"),
    "block size changed, rehashed": (_then_rehash(_config(lambda c: c["expert_config"].__setitem__("block_size", 8))),
                                     "does not match seta_config.json"),
    "config deleted": (lambda d: (d / CONFIG_NAME).unlink(), "seta_config.json is missing"),
    "config nests, rehashed": (_then_rehash(lambda d: (d / CONFIG_NAME).write_text("[" * 100_000)), "nests too deeply"),
}


def _commands(d, tmp):
    return {"info": ["info", d], "generate": ["generate", d, "hi"], "eval": ["eval", d],
            "merge": ["merge", d, "--task", "C-STANCE", "--out", tmp / "merged"],
            "train --from": ["train", "--from", d, "--tasks", "MeetingBank", "--out", tmp / "grown", "--no-progress"]}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_adapter_is_one_error_line_in_every_command(case, tiny_adapter, tmp_path):
    damage, expect = CASES[case]
    d = tmp_path / "adapter"
    shutil.copytree(tiny_adapter["dir"], d)
    damage(d)
    before, original = tree(tmp_path), tree(tiny_adapter["dir"])
    for name, args in _commands(d, tmp_path).items():
        line = run_in_process(args, expect)
        assert str(d) in line or "adapter" in line, (name, line)
    assert tree(tmp_path) == before and tree(tiny_adapter["dir"]) == original  # nothing written, nothing changed
    assert not (tmp_path / "merged").exists() and not (tmp_path / "grown").exists()


def test_hostile_files_stay_within_memory_and_time(tiny_adapter, tmp_path):
    """The nesting bomb in a card, through the real entry point with 3 GiB of address space."""
    d = tmp_path / "adapter"
    shutil.copytree(tiny_adapter["dir"], d)
    (d / CARD_NAME).write_text("[" * 2_000_000)
    run_bounded(["info", d], tmp_path, "nests too deeply", timeout=60)


def test_info_on_a_gateless_baseline_says_it_has_no_routing_and_merge_refuses(tiny_adapter, tmp_path):
    d = tmp_path / "lwf"
    shutil.copytree(tiny_adapter["dir"], d)
    edit_card(d, lambda c: (c.__setitem__("method", "lwf"), c.pop("seta_config")))
    from click.testing import CliRunner

    from seta.cli import main

    result = CliRunner().invoke(main, ["info", str(d)])
    assert result.exit_code == 0, result.output
    assert "routing: none (lwf has no gate" in result.output and "FOMC" in result.output
    assert json.loads(CliRunner().invoke(main, ["info", str(d), "--json"]).output)["routing"] is None
    run_in_process(["merge", d, "--task", "FOMC", "--out", tmp_path / "m"], "lwf, which has no gate")
    assert not (tmp_path / "m").exists()
