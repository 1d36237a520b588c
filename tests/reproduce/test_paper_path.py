"""The paper presets' own path, end to end: `--preset llama2-7b --model FOLDER --data-dir DIR` on a tiny
Llama folder with 256 positions (4-bit NF4 base, bf16 autocast, max_new_tokens 256, TRACE order 1 in
the preset), a two-task stream directory with a manifest."""

import json

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from reproduce_helpers import load_script

from seta.data import Example, Stream, Task, write_manifest, write_trace

pytest.importorskip("bitsandbytes")

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 =+?:.\n")


def _tiny_llama_folder(path):
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _stream_dir(path):
    def task(name, answer):
        ex = tuple(Example(f"{name} item {i}\nanswer:", answer) for i in range(8))
        return Task(name, "exact_match", ex, ex[:2], ex[:4])

    stream = Stream([task("sum", "12"), task("word", "yes")], name="two")
    write_trace(stream, path)
    write_manifest(stream, path)
    return path


def test_llama2_preset_trains_and_evaluates_a_real_folder_in_4bit_bf16(tmp_path):
    run_all = load_script("run_all")
    model, data, out = _tiny_llama_folder(tmp_path / "llama"), _stream_dir(tmp_path / "data"), tmp_path / "out"
    result = CliRunner().invoke(run_all.main, ["--preset", "llama2-7b", "--model", str(model), "--data-dir", str(data),
                                               "--methods", "seta", "--general-tasks", "", "--no-progress",
                                               "--set", "train.epochs=1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["sum", "word"]  # the manifest's order, not the preset's TRACE order
    card = json.loads(next(out.glob("seta/seed0/adapter/seta_adapter.json")).read_text())
    assert card["base"]["load_in_4bit"] is True and card["train_config"]["bf16"] is True
    budgets = [t["max_new_tokens"] for t in card["tasks"]]
    assert max(budgets) < 256 and card["prompt_cap"] == 256 - max(budgets)  # room kept for the longest answer
    assert [t["stop"] for t in card["tasks"]] == ["\n", "\n"]  # single-line answers end at a newline
