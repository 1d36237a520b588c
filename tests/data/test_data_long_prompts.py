"""A prompt far longer than the cap is cut without tokenising it whole, to the same ids as cutting the whole."""

import random

import pytest

from seta.data import encode_prompt, synthetic_stream


def _reference(tok, prompt, cap):
    """Tokenise everything, then cut from the left keeping a leading BOS (the definition)."""
    ids = list(tok(prompt, add_special_tokens=True, verbose=False)["input_ids"])
    if len(ids) <= cap:
        return ids
    if ids[0] == tok.bos_token_id and cap > 1:
        return [ids[0]] + ids[len(ids) - cap + 1:]
    return ids[len(ids) - cap:]


def _long_texts():
    rng = random.Random(0)
    words = [e.prompt for t in synthetic_stream(seed=0, n_train=30, n_eval=1, n_test=1) for e in t.train]
    english = " ".join(rng.choice(words) for _ in range(300))
    return [english, "数据集中的长文本。" * 3000, "a  b\n\n\t c" * 4000, "x" * 50_000, "🙂 é ß " * 6000]


@pytest.mark.parametrize("cap", [1, 2, 16, 100, 1024])
def test_long_prompts_are_cut_to_the_same_ids_as_the_whole(tiny_tokenizer, cap):
    for text in _long_texts():
        assert encode_prompt(tiny_tokenizer, text, cap) == _reference(tiny_tokenizer, text, cap), text[:20]


class _Recording:
    """The tiny tokenizer, recording the length of every string it is asked to encode."""

    def __init__(self, tok):
        self.tok, self.lengths = tok, []

    def __call__(self, text, **kw):
        self.lengths.append(len(text))
        return self.tok(text, **kw)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_a_5mb_prompt_is_never_tokenised_whole(tiny_tokenizer):
    prompt = ("The committee noted that inflation remained elevated. " * 100_000)[:5_000_000] + "Answer:"
    rec = _Recording(tiny_tokenizer)
    ids = encode_prompt(rec, prompt, 1024)
    assert len(ids) == 1024 and ids[0] == tiny_tokenizer.bos_token_id
    assert max(rec.lengths) < 100_000  # a tail window, not the 5 MB string
    tail = prompt[-200_000:]  # the same ids as the whole (checked on a tail: tokenising 5 MB here would cost ~1 GB)
    assert ids == _reference(tiny_tokenizer, tail, 1024)
