"""Damaged and hostile config files and --set values through `seta train`, `seta run` and reproduce/run_all.py:
one `Error:` line each, before any training, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustness_helpers import assert_one_error, run_bounded, run_in_process, tree

ROOT = Path(__file__).resolve().parents[2]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + \
       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ntrain:\n  epochs: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"

CASES = {  # file name: (content, a fragment of the one Error line)
    "bomb.yaml": (BOMB, "anchors and aliases"),
    "twice.yaml": ("train:\n  lr: 0.1\n  lr: 0.2\n", "key 'lr' is given twice"),
    "twice.json": ('{"train": {"lr": 0.1, "lr": 0.2}}', "key 'lr' is given twice"),
    "nan.yaml": ("train:\n  lr: .nan\n", "train.lr takes float (a finite number), got NaN"),
    "inf.json": ('{"train": {"lr": Infinity}}', "got Infinity"),
    "latin1.yaml": (b"train:\n  answer_prefix: \xe9\n", "is not UTF-8 text"),
    "deep.json": ("[" * 100_000, "nested more than 8 levels"),
    "deep.yaml": ("train: " + "[" * 100_000, "nested more than 8 levels"),
    "big.yaml": ("#" * (2 << 20), "a config file holds at most"),
    "list.yaml": ("- 1\n- 2\n", "expected a mapping of sections"),
    "ansi.yaml": ("\"\\e[31mtrain\": {}\n", "unknown section '\\x1b[31mtrain'"),
    "digits.json": ('{"train": {"epochs": ' + "9" * 5000 + "}}", "a value cannot be read"),
    "type.yaml": ("train:\n  epochs: \"" + "3" * 500 + "\"\n", "train.epochs takes list of int, got \"333"),
    "key.yaml": ("? [a, b]\n: 1\n", "a key must be a name"),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("command", ["train", "run"])
def test_a_damaged_config_is_one_error_line(name, command, tmp_path):
    content, expect = CASES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree(tmp_path)
    line = run_in_process([command, "--quick", "--config", path, "--out", tmp_path / "out"], expect)
    assert name in line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_set_refuses_non_finite_floats(value, tmp_path):
    run_in_process(["train", "--quick", "--set", f"train.lr={value}", "--out", tmp_path / "out"], "a finite number")
    assert not (tmp_path / "out").exists()


def test_the_alias_bomb_stays_within_memory_and_time_in_run_all(tmp_path):
    """reproduce/run_all.py in a subprocess of 1 GiB address space: the bomb is refused in a second."""
    (tmp_path / "bomb.yaml").write_text(BOMB)
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    r = subprocess.run([sys.executable, str(ROOT / "reproduce" / "run_all.py"), "--quick", "--config", "bomb.yaml",
                        "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=60, preexec_fn=limit)
    assert_one_error(r.stdout + r.stderr, r.returncode, expect="anchors and aliases")
    run_bounded(["train", "--config", "bomb.yaml", "--out", "out"], tmp_path, "anchors and aliases", memory_gib=1,
                timeout=60)
    assert not (tmp_path / "out").exists()


def test_a_block_larger_than_every_matrix_is_refused(tiny_adapter):
    """sparse.block_size 4096 on 128 x 256 matrices: refused once the base is known, before any training
    (the tiny base comes from the session adapter's cache, next to it)."""
    out = tiny_adapter["run"].parent / "blocks-4096"
    run_in_process(["train", "--quick", "--set", "sparse.block_size=4096", "--out", out, "--no-progress"],
                   "sparse.block_size 4096 is larger than every target matrix of the model (largest dimension 256)")
    assert not out.exists()
    assert json.loads((tiny_adapter["dir"] / "seta_adapter.json").read_text())["sparse_config"]["block_size"] == 16
