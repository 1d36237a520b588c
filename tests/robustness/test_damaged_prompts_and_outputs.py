"""Prompts that are not text, answer budgets past the model's positions, outputs that cannot be written:
one `Error:` line each, nothing left behind."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from robustness_helpers import run_bounded, run_in_process, tree


def test_invalid_utf8_on_the_command_line(tiny_adapter, tmp_path):
    """Undecodable bytes in a PROMPT argument (a subprocess: argv holds bytes), refused before the model loads."""
    run_bounded(["generate", tiny_adapter["dir"], b"fine", b"Sentence: \xff\xfe Sentiment:"], tmp_path,
                "PROMPT argument 2: the prompt is not UTF-8 text", timeout=60)


@pytest.mark.parametrize("content, expect", [
    ('{"prompt": "fine"}\n{"prompt": "\\ud800 lone"}\n', "line 2: the prompt is not UTF-8 text"),
    (b'{"prompt": "caf\xe9"}\n', "is not UTF-8 text (byte 15)"),
    ('{"prompt": ' + "[" * 100_000 + "\n", "line 1: its JSON nests too deeply"),
    ('{"prompt": ["a"]}\n', 'expected an object with a "prompt" string'),
])
def test_a_damaged_prompt_file(content, expect, tiny_adapter, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    run_in_process(["generate", tiny_adapter["dir"], "--file", f], expect)
    run_in_process(["generate", tiny_adapter["dir"], "--file", "-"], expect.replace("p.jsonl", "-"),
                   input=f.read_bytes())


def test_an_answer_budget_past_the_positions_is_refused(tiny_adapter):
    run_in_process(["generate", tiny_adapter["dir"], "--max-new-tokens", "2000", "Sentence: fine. Sentiment:"],
                   "of the model's 256 positions, which leaves room for at most")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc refuses new files on Linux")
def test_unwritable_outputs_are_refused_before_any_model_loads(tiny_adapter, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    before = tree(tmp_path)
    for out in ("/proc/seta-out", blocker / "sub"):
        run_in_process(["merge", tiny_adapter["dir"], "--task", "FOMC", "--out", out], "--out")
        run_in_process(["train", "--quick", "--out", out, "--no-progress"], "--out")
        run_in_process(["run", "--quick", "--methods", "seta", "--out", out, "--no-progress"], "--out")
    assert tree(tmp_path) == before


def test_a_full_disk_leaves_no_folder_in_the_base_cache(tmp_path, monkeypatch):
    """Saving the pre-trained tiny base fails with ENOSPC: the error propagates once, the cache holds nothing."""
    from seta.data import build_tiny_tokenizer, generic_corpus
    from seta.models import build_tiny_model
    from seta.train.pretrain import PretrainConfig, cached_pretrained_base

    tok = build_tiny_tokenizer(tmp_path / "tok")
    model = build_tiny_model("llama", tokenizer=tok, seed=0, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2)

    def full(self, *args, **kwargs):
        (args[0] / "part.bin").write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))

    monkeypatch.setattr(type(model), "save_pretrained", full)
    cache = tmp_path / ".cache"
    with pytest.raises(OSError, match="No space left"):
        cached_pretrained_base(lambda: model, {"k": 1}, tok, list(generic_corpus(0).train)[:20],
                               PretrainConfig(steps=1, batch_size=2, seq_len=8), cache, progress=False)
    assert list(cache.iterdir()) == []
