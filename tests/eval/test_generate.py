"""Batched greedy generation on a tiny random Llama with an inline char-level tokenizer."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from seta.eval.generate import cut_at_stop, generate, left_pad

CHARS = list("abcdefghij =+?")


def make_tokenizer():
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({c: i + 4 for i, c in enumerate(CHARS)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        initializer_range=0.3, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    return LlamaForCausalLM(cfg).float()


PROMPTS = ["abc", "a+b=", "hello ij", "j", "gg hh ii", "ab"]


def test_tokenizer_round_trip(tok):
    ids = tok("ab c", add_special_tokens=False)["input_ids"]
    assert ids == [4, 5, 14, 6] and tok.decode(ids) == "ab c"


def test_left_pad_shapes_and_mask():
    out = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_cut_at_stop():
    assert cut_at_stop([5, 6, 2, 7], {2}) == [5, 6]
    assert cut_at_stop([2, 5], {2}) == []
    assert cut_at_stop([5, 6], {2}) == [5, 6]


def test_batched_left_padded_equals_single_example(model, tok):
    batched = generate(model, tok, PROMPTS, max_new_tokens=6, batch_size=4, progress=False)
    single = [generate(model, tok, [p], max_new_tokens=6, batch_size=1, progress=False)[0] for p in PROMPTS]
    assert batched == single
    assert len(batched) == len(PROMPTS)
    assert all(isinstance(s, str) and len(s) <= 6 for s in batched)
    assert len(set(batched)) > 1  # the random model is not constant


def test_deterministic_and_order_independent_of_sorting(model, tok):
    a = generate(model, tok, PROMPTS, max_new_tokens=5, batch_size=3, progress=False)
    b = generate(model, tok, PROMPTS, max_new_tokens=5, batch_size=3, progress=False)
    c = generate(model, tok, PROMPTS, max_new_tokens=5, batch_size=2, sort_by_length=False, progress=False)
    assert a == b == c


def test_decodes_only_new_tokens(model, tok):
    # the continuation equals what the model's own generate appends to the prompt
    ids = tok("abc", return_tensors="pt")
    out = model.generate(**ids, do_sample=False, max_new_tokens=4, pad_token_id=0, eos_token_id=2)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    expect = tok.decode(cut_at_stop(new, {2}), skip_special_tokens=True)
    assert generate(model, tok, ["abc"], max_new_tokens=4, progress=False) == [expect]


def test_hooks_receive_original_indices_and_inputs(model, tok):
    seen, after = [], []

    def before(indices, inputs):
        assert inputs["input_ids"].shape == inputs["attention_mask"].shape
        assert inputs["input_ids"].shape[0] == len(indices)
        # left padding: the last column is always a real token
        assert bool(inputs["attention_mask"][:, -1].all())
        seen.append(indices)

    generate(model, tok, PROMPTS, max_new_tokens=2, batch_size=4, before_batch=before,
             after_batch=after.append, progress=False)
    assert sorted(i for b in seen for i in b) == list(range(len(PROMPTS)))
    assert seen == after and [len(b) for b in seen] == [4, 2]
    # longest prompts first when sorting by length
    assert seen[0][0] == PROMPTS.index("hello ij")


def test_training_mode_restored_and_token_id_prompts(model, tok):
    model.train()
    ids = [tok(p)["input_ids"] for p in PROMPTS[:3]]
    from_ids = generate(model, tok, ids, max_new_tokens=3, progress=False)
    assert model.training
    model.eval()
    assert from_ids == generate(model, tok, PROMPTS[:3], max_new_tokens=3, progress=False)


class _StubModel(torch.nn.Module):
    """Appends a fixed continuation to every row, eos in the middle."""

    def __init__(self, cont):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.cont = cont

    def generate(self, input_ids, attention_mask, **kw):
        assert kw["do_sample"] is False
        tail = torch.tensor(self.cont).expand(input_ids.shape[0], -1)
        return torch.cat([input_ids, tail], dim=1)


def test_strip_at_eos_with_stub(tok):
    a, b = tok.convert_tokens_to_ids(["a", "b"])
    out = generate(_StubModel([a, b, 2, a, 0]), tok, ["abc", "j"], max_new_tokens=5, progress=False)
    assert out == ["ab", "ab"]
    out = generate(_StubModel([a, b, 2, a]), tok, ["abc"], eos_token_id=[b], progress=False)
    assert out == ["a"]


def test_bad_arguments(model, tok):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tok, ["a"], max_new_tokens=0, progress=False)
    with pytest.raises(ValueError, match="no tokens"):
        generate(model, tok, [[]], progress=False)
    assert generate(model, tok, [], progress=False) == []


def test_evaluate_generation_scores_predictions(tok):
    from seta.eval.generate import evaluate_generation

    a, b = tok.convert_tokens_to_ids(["a", "b"])
    s, preds = evaluate_generation(_StubModel([a, b, 2]), tok, ["abc", "j"], ["ab", "a"], "exact_match",
                                   progress=False)
    assert preds == ["ab", "ab"] and s == 50.0
    s, _ = evaluate_generation(_StubModel([a, b, 2]), tok, ["x"], ["ab"], "first_char", progress=False)
    assert s == 100.0
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_generation(_StubModel([a]), tok, ["x"], ["a"], "bleu", progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generate_on_cuda_moves_inputs(model, tok):
    import copy

    m = copy.deepcopy(model).cuda()
    out = generate(m, tok, PROMPTS, max_new_tokens=4, batch_size=4, progress=False)
    assert len(out) == len(PROMPTS) and all(isinstance(s, str) for s in out)


def test_group_by_keeps_groups_apart_and_the_output_order(model, tok):
    """With group_by, each key's prompts are batched contiguously (a batch spans two keys only at a
    boundary), the number of batches is unchanged, and the generations equal those without grouping
    (one prompt per batch: the padding-free reference), in input order."""
    keys = ["x", "y", "x", "y", "y", "x"]
    batches = []
    out = generate(model, tok, PROMPTS, max_new_tokens=5, batch_size=2, progress=False,
                   group_by=lambda ids: keys, before_batch=lambda idx, inputs: batches.append(idx))
    single = generate(model, tok, PROMPTS, max_new_tokens=5, batch_size=1, progress=False)
    assert out == single
    flat = [keys[i] for b in batches for i in b]
    assert flat == sorted(flat, key=flat.index) and len(batches) == 3  # x x x y y y, in 3 batches of 2
    assert sorted(i for b in batches for i in b) == list(range(len(PROMPTS)))
    with pytest.raises(ValueError, match="keys"):
        generate(model, tok, PROMPTS, max_new_tokens=2, progress=False, group_by=lambda ids: ["x"])


def test_stop_text_equals_the_full_answer_cut_at_its_first_occurrence(model, tok):
    """Reference: generate without a delimiter, cut the text at the first stop_text by hand."""
    full = generate(model, tok, PROMPTS, max_new_tokens=12, batch_size=4, progress=False)
    for stop in ("a", "=", " "):
        cut = generate(model, tok, PROMPTS, max_new_tokens=12, batch_size=4, stop_text=stop, progress=False)
        assert cut == [f.split(stop, 1)[0] for f in full]
    assert any("a" in f for f in full)  # the random model emits the stop text somewhere: the cut is exercised


def test_stop_text_stops_the_row_generating(model, tok):
    """transformers' stop_strings end a row at its delimiter: fewer new tokens than without it."""
    lengths = {}
    inner = model.generate

    def spy(*a, **kw):
        out = inner(*a, **kw)
        lengths[kw.get("stop_strings") is not None] = out.shape[1] - kw["input_ids"].shape[1]
        return out

    model.generate = spy
    try:
        full = generate(model, tok, ["abc"], max_new_tokens=12, progress=False)[0]
        generate(model, tok, ["abc"], max_new_tokens=12, stop_text=full[0], progress=False)
    finally:
        del model.generate
    assert lengths[True] < lengths[False]
