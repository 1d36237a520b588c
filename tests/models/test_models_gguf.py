"""GGUF -> HF folder: a tiny Llama written with gguf.GGUFWriter converts with equal logits."""

import json

import pytest
import torch

pytest.importorskip("gguf", reason="GGUF tests need the gguf package (pip install gguf)")

from gguf_helpers import tiny_llama, write_tiny_gguf  # noqa: E402

from seta.models.gguf import STAMP, convert_gguf, greedy_answer, load_gguf, parameter_count  # noqa: E402


@pytest.mark.parametrize("tie", [True, False])
def test_converted_folder_has_the_source_logits(tmp_path, tie):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = tiny_llama(seed=1, tie=tie)
    gguf_path = write_tiny_gguf(source, tmp_path / "tiny.gguf")
    stamp = convert_gguf(gguf_path, tmp_path / "hf")
    assert stamp["parameters"] == parameter_count(source) and stamp["max_abs_logit_diff"] == 0.0
    assert json.loads((tmp_path / "hf" / STAMP).read_text()) == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "tiny.gguf"]  # no partial folder left
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert getattr(model, "hf_quantizer", None) is None and model.config.tie_word_embeddings == tie
    ids = torch.randint(0, source.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=0, atol=0)
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.convert_ids_to_tokens(tok("abcd ab", add_special_tokens=False)["input_ids"]) == ["abcd", "Ġ", "ab"]
    assert tok.eos_token == "</s>"


def test_load_gguf_clears_the_marker_and_answers(tmp_path):
    model, tok = load_gguf(write_tiny_gguf(tiny_llama(), tmp_path / "t.gguf"))
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    assert isinstance(greedy_answer(model, tok, "ab cd", max_new_tokens=3), str)  # no chat template: plain text


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_gguf(tmp_path / "none.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="junk.gguf: transformers could not load"):
        load_gguf(tmp_path / "junk.gguf")
    (tmp_path / "hf").mkdir()
    with pytest.raises(FileExistsError, match="exists already"):
        convert_gguf(tmp_path / "junk.gguf", tmp_path / "hf")
    with pytest.raises(ValueError, match="dtype must be one of"):
        convert_gguf(tmp_path / "junk.gguf", tmp_path / "hf2", dtype="int8")
