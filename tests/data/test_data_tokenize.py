"""Tiny tokenizer, encode_example label masks, truncation invariants, collators, datasets path."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from seta.data import (
    IGNORE_INDEX, TrainCollator, build_tiny_tokenizer, collate_train, encode_example, generation_batch,
    synthetic_stream, tokenize_examples,
)

SPEC = settings(max_examples=200, deadline=None)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@pytest.fixture(scope="module")
def stream():
    return synthetic_stream(seed=0, n_train=20, n_eval=2, n_test=5)


# --- tokenizer -------------------------------------------------------------------------

def test_tokenizer_specials_and_autotokenizer_path(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok("ana backs the park")["input_ids"][0] == tok.bos_token_id
    assert tok.bos_token_id not in tok("ana", add_special_tokens=False)["input_ids"]
    assert 300 < len(tok) <= 1024
    tok.save_pretrained(tmp_path)  # the same code path as a real model's tokenizer
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert again("Stance task: x")["input_ids"] == tok("Stance task: x")["input_ids"]


def test_tokenizer_is_compact_on_the_synthetic_stream(tiny_tokenizer, stream):
    for task in stream:
        for ex in task.train:
            assert len(tiny_tokenizer(ex.prompt)["input_ids"]) <= 48
            assert len(tiny_tokenizer(ex.answer, add_special_tokens=False)["input_ids"]) <= 16


@SPEC
@given(text=texts)
def test_tokenizer_round_trip(tiny_tokenizer, text):
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text


def test_tokenizer_build_is_deterministic_and_cached(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("SETA_CACHE_DIR", str(tmp_path / "cache"))
    a = build_tiny_tokenizer()  # into the cache
    (cached,) = list((tmp_path / "cache").iterdir())
    assert cached.name.startswith("tiny-tokenizer-")
    assert a.get_vocab() == tiny_tokenizer.get_vocab()
    stamp = (cached / "tokenizer.json").stat().st_mtime_ns
    build_tiny_tokenizer()  # reused, not rebuilt
    assert (cached / "tokenizer.json").stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no temporary leftovers


def test_tokenizer_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a seta tokenizer"):
        build_tiny_tokenizer(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_tokenizer_replaces_a_stale_build(tiny_tokenizer, tmp_path):
    d = tmp_path / "tok"
    build_tiny_tokenizer(d)
    stamp = json.loads((d / "seta_tokenizer.json").read_text())
    (d / "seta_tokenizer.json").write_text(json.dumps({**stamp, "fingerprint": "old"}))
    tok = build_tiny_tokenizer(d)
    assert json.loads((d / "seta_tokenizer.json").read_text())["fingerprint"] == stamp["fingerprint"]
    assert tok.get_vocab() == tiny_tokenizer.get_vocab()


# --- encode_example --------------------------------------------------------------------

def test_labels_cover_exactly_the_answer_tokens(tiny_tokenizer, stream):
    tok = tiny_tokenizer
    for task in stream:
        for ex in task.train[:5]:
            enc = encode_example(tok, ex.prompt, ex.answer)
            ids, labels = enc["input_ids"], enc["labels"]
            assert len(ids) == len(labels)
            n_prompt = sum(1 for x in labels if x == IGNORE_INDEX)
            assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt  # masked part is a prefix
            assert labels[n_prompt:] == ids[n_prompt:]  # unmasked part is the answer, as inputs
            assert ids[:n_prompt] == tok(ex.prompt)["input_ids"]
            assert ids[-1] == tok.eos_token_id
            assert tok.decode(ids[n_prompt:-1]) == ex.answer
            assert tok.decode(ids[:n_prompt], skip_special_tokens=True) == ex.prompt


@SPEC
@given(prompt=texts, answer=texts, max_prompt=st.integers(1, 40), max_answer=st.integers(1, 20))
def test_truncation_invariants(tiny_tokenizer, prompt, answer, max_prompt, max_answer):
    tok = tiny_tokenizer
    full_p = tok(prompt)["input_ids"]
    full_a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    enc = encode_example(tok, prompt, answer, max_prompt=max_prompt, max_answer=max_answer)
    labels = enc["labels"]
    n_p = sum(1 for x in labels if x == IGNORE_INDEX)
    p, a = enc["input_ids"][:n_p], enc["input_ids"][n_p:]
    assert len(p) == min(len(full_p), max_prompt)  # prompt cap respected, nothing dropped needlessly
    assert a == full_a[:max_answer]  # answer kept up to its cap, from its start
    assert labels[n_p:] == a and all(x != IGNORE_INDEX for x in a)
    if len(full_p) <= max_prompt:
        assert p == full_p
    elif max_prompt > 1:
        assert p[0] == tok.bos_token_id and p[1:] == full_p[len(full_p) - max_prompt + 1:]  # keeps the end
    else:
        assert p == full_p[-1:]


def test_long_prompt_keeps_its_end(tiny_tokenizer):
    prompt = "ana backs the park. " * 200 + "Question: which? Answer:"
    enc = encode_example(tiny_tokenizer, prompt, "A", max_prompt=16)
    n_p = enc["labels"].count(IGNORE_INDEX)
    assert n_p == 16
    assert tiny_tokenizer.decode(enc["input_ids"][1:n_p]).endswith("Question: which? Answer:")


def test_bad_caps(tiny_tokenizer):
    with pytest.raises(ValueError, match="max_prompt"):
        encode_example(tiny_tokenizer, "p", "a", max_prompt=0)


# --- batching --------------------------------------------------------------------------

def test_train_collator_right_pads(tiny_tokenizer, stream):
    tok = tiny_tokenizer
    feats = [encode_example(tok, ex.prompt, ex.answer) for ex in stream["Py150"].train[:4] + stream["FOMC"].train[:2]]
    batch = TrainCollator(tok.pad_token_id)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == (6, max(len(f["input_ids"]) for f in feats))
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == f["input_ids"]
        assert batch["labels"][i, :n].tolist() == f["labels"]
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all() and (batch["input_ids"][i, n:] == tok.pad_token_id).all()
    with pytest.raises(ValueError):
        collate_train([], tok.pad_token_id)
    with pytest.raises(ValueError, match="differ in length"):
        collate_train([{"input_ids": [1, 2], "labels": [1]}], tok.pad_token_id)


def test_generation_batch_left_pads_prompts(tiny_tokenizer, stream):
    tok = tiny_tokenizer
    prompts = [stream["20Minuten"].test[0].prompt, stream["ScienceQA"].test[0].prompt, "hi"]
    batch = generation_batch(tok, prompts, max_prompt=30)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert set(batch) == {"input_ids", "attention_mask"} and ids.dtype == mask.dtype == torch.long
    for i, p in enumerate(prompts):
        enc = encode_example(tok, p, "x", max_prompt=30)
        want = enc["input_ids"][:enc["labels"].count(IGNORE_INDEX)]
        n = int(mask[i].sum())
        assert n == len(want) <= 30
        assert ids[i, ids.shape[1] - n:].tolist() == want  # every prompt ends at the last column
        assert mask[i].tolist() == [0] * (ids.shape[1] - n) + [1] * n
        assert (ids[i, : ids.shape[1] - n] == tok.pad_token_id).all()
    with pytest.raises(ValueError):
        generation_batch(tok, [])


def test_tokenize_examples_matches_encode_example(tiny_tokenizer, stream):
    exs = stream["MeetingBank"].train[:6]
    ds = tokenize_examples(tiny_tokenizer, exs, max_prompt=20, max_answer=4)
    assert ds.column_names == ["input_ids", "labels"] and len(ds) == 6
    for row, ex in zip(ds, exs):
        assert row == encode_example(tiny_tokenizer, ex.prompt, ex.answer, max_prompt=20, max_answer=4)
    batch = collate_train([ds[i] for i in range(3)], tiny_tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 3
