"""seta.eval.harness: lm-eval over a tiny random Llama, routing inside the forward, local data."""

import json

import pytest
import torch
import torch.nn.functional as F
from harness_data import BBH_SUBTASKS, MMLU_SUBJECTS, SIZES, Oracle, write_general_ability_fixture
from lm_eval.api.instance import Instance

from seta.data import build_tiny_tokenizer
from seta.eval.harness import RoutedLM, general_ability, general_ability_details, load_general_data
from seta.models import build_tiny_model

FAST = dict(max_gen_toks=12, batch_size=8, progress=False)
ONE_SHOT = {"mmlu": 1}  # MMLU 5-shot fills the tiny model's 256 positions: slow on CPU


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("general")
    return root, write_general_ability_fixture(root, seed=0)


def oracle_run(tok, fixture_dir, which: int, **kwargs):
    root, key = fixture_dir
    model = build_tiny_model(tokenizer=tok)
    oracle = Oracle(model, tok, {m: pair[which] for bench in key.values() for m, pair in bench.items()})
    res = general_ability_details(model, tok, root, route=oracle.route, clear=oracle.clear, num_fewshot=ONE_SHOT,
                                  **FAST, **kwargs)
    return res, oracle


@pytest.fixture(scope="module")
def right(tok, fixture_dir):
    return oracle_run(tok, fixture_dir, 0)


def test_routing_to_the_right_answer_scores_100_on_every_item(right):
    res, _ = right
    for bench in ("mmlu", "bbh", "piqa"):
        assert res[bench].score == 100.0, (bench, res[bench])
        assert res[bench].n == SIZES[bench]  # every item of the fixture was scored
    assert set(res["mmlu"].subsets) == set(MMLU_SUBJECTS) and set(res["bbh"].subsets) == set(BBH_SUBTASKS)
    assert res["piqa"].metric == "acc_norm" and res["piqa"].other["acc"] == 100.0


def test_routing_to_a_wrong_answer_scores_0_and_limit_caps_the_items(tok, fixture_dir):
    res, _ = oracle_run(tok, fixture_dir, 1, limit=5)
    assert {b: r.score for b, r in res.items()} == {"mmlu": 0.0, "bbh": 0.0, "piqa": 0.0}
    assert {b: r.n for b, r in res.items()} == {"mmlu": 5, "bbh": 5, "piqa": 4}  # piqa has only 4


def test_route_precedes_every_forward_with_its_batch_and_sees_the_prompt_only(right, tok):
    _, oracle = right
    events, open_route, forwards = oracle.events, None, 0
    for e in events:
        if e[0] == "route":
            assert open_route is None, "route called twice without clear"
            open_route = e
        elif e[0] == "forward":
            assert open_route is not None, "a forward ran without a route"
            assert e[1] == open_route[1]  # same batch rows as the route
            forwards += 1
        else:
            assert open_route is not None
            open_route = None
    assert open_route is None and forwards > 0
    # log-likelihood rows route on the context without the scored choice; generation on the prompt
    ends = {p.rstrip().rsplit("\n", 1)[-1] for p in oracle.prompts}
    assert ends == {"Answer:", "A:"}, ends
    # every forward row was routed: per MMLU question one row for its one-token choices " A", " B", " C" and one
    # for " D" (two tokens in this tokenizer), 4 PIQA goals x 2 solutions, 6 BBH prompts
    assert [len(tok(f" {c}", add_special_tokens=False)["input_ids"]) for c in "ABCD"] == [1, 1, 1, 2]
    assert len(oracle.prompts) == 6 * 2 + 4 * 2 + 6


def test_base_model_scores_in_range_and_bbh_uses_the_stock_exemplars(tok, fixture_dir, right):
    root, _ = fixture_dir
    res = general_ability(build_tiny_model(tokenizer=tok), tok, root, limit=2, **FAST)  # default shots: 5, 3, 0
    assert set(res) == {"mmlu", "bbh", "piqa"} and all(0.0 <= v <= 100.0 for v in res.values())
    data = load_general_data(root)
    stock = data["bbh"][0]
    assert stock.name == "boolean_expressions" and len(stock.fewshot_docs) == 3
    assert stock.fewshot_docs[0]["input"] == "not ( ( not not True ) ) is"  # lm-eval's bbh_fewshot exemplar
    assert any("Q: not ( ( not not True ) ) is\nA: False\n\n" in p for p in right[1].prompts)


def test_mmlu_prompt_is_lm_eval_stock_format(tok, fixture_dir):
    root, key = fixture_dir
    prompts = []
    model = build_tiny_model(tokenizer=tok)

    def route(ids, mask):
        prompts.extend(tok.decode(i[m.bool()], skip_special_tokens=True) for i, m in zip(ids, mask))

    general_ability(model, tok, root, tasks=("mmlu",), num_fewshot=ONE_SHOT, limit=1, route=route, **FAST)
    dev = json.loads((root / "mmlu" / "arith_minus" / "dev.jsonl").read_text().splitlines()[0])
    test = json.loads((root / "mmlu" / "arith_minus" / "test.jsonl").read_text().splitlines()[0])

    def block(d):
        return d["question"] + "".join(f"\n{c}. {x}" for c, x in zip("ABCD", d["choices"])) + "\nAnswer:"

    want = ("The following are multiple choice questions (with answers) about arith minus.\n\n"
            f"{block(dev)} {'ABCD'[dev['answer']]}\n\n{block(test)}")
    assert prompts == [want] * 2  # every choice under the same prompt: " A", " B", " C" share one row, " D" has two tokens


# ---------------------------------------------------------------------------------------- RoutedLM
def naive_loglikelihood(model, tok, ctx: str, cont: str, max_length: int):
    whole, n_ctx = tok(ctx + cont)["input_ids"], len(tok(ctx)["input_ids"])
    n_cont = len(whole) - n_ctx
    inp = whole[-(max_length + 1):][:-1]
    with torch.no_grad():
        lp = F.log_softmax(model(torch.tensor([inp])).logits[0].float(), -1)  # (T, V)
    target = whole[-n_cont:]
    picked = lp[len(inp) - n_cont:, :]
    return float(picked.gather(1, torch.tensor(target)[:, None]).sum()), picked.argmax(-1).tolist() == target


REQUESTS = [("Q: red cat\nA:", " blue"), ("hello", " world of trees"), ("x", " y"),
            ("the sun " * 30 + "and", " moon"), ("Answer:", " A"),
            ("Answer:", " B"), ("Answer:", " C"),  # one-token choices of one context: one forward row
            ("Q:", " red cat"), ("Q:", " red car")]  # the same tokens but the last: one row


def instances(kind, args):
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_batched_loglikelihood_matches_naive_reference_and_lm_eval_hflm(tok):
    from lm_eval.models.huggingface import HFLM

    model = build_tiny_model(tokenizer=tok)
    kept = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: kept.append((*kw["input_ids"].shape, kw.get("logits_to_keep"))),
                                           with_kwargs=True)
    lm = RoutedLM(model, tok, batch_size=3, max_length=48, progress=False)  # the long context is truncated
    got = lm.loglikelihood(instances("loglikelihood", REQUESTS), disable_tqdm=True)
    hook.remove()
    assert all(k is not None and k < t for _, t, k in kept)  # logits of the scored positions only
    assert [tok(c, add_special_tokens=False)["input_ids"][:-1] for c in (" red cat", " red car")] == [[300, 71, 277]] * 2
    assert sum(b for b, _, _ in kept) == 6  # 9 requests, 6 distinct forward inputs
    for (ctx, cont), (ll, greedy) in zip(REQUESTS, got):
        ref_ll, ref_greedy = naive_loglikelihood(model, tok, ctx, cont, 48)
        assert ll == pytest.approx(ref_ll, abs=1e-4) and greedy == ref_greedy
    one_row_each = RoutedLM(model, tok, batch_size=3, max_length=48, progress=False, share_forwards=False)
    ref = one_row_each.loglikelihood(instances("loglikelihood", REQUESTS), disable_tqdm=True)
    assert [g for _, g in ref] == [g for _, g in got]
    torch.testing.assert_close(torch.tensor([x for x, _ in got]), torch.tensor([x for x, _ in ref]), atol=1e-5, rtol=0)
    hf = HFLM(pretrained=model, tokenizer=tok, batch_size=2, max_length=48)
    ref = hf.loglikelihood(instances("loglikelihood", REQUESTS), disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in ref]
    torch.testing.assert_close(torch.tensor([x for x, _ in got]), torch.tensor([x for x, _ in ref]), atol=1e-4, rtol=0)


def test_rolling_loglikelihood_sums_windows_of_the_whole_text(tok):
    model = build_tiny_model(tokenizer=tok)
    text = "red green blue cat dog " * 6
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = F.log_softmax(model(torch.tensor([[tok.bos_token_id] + ids])).logits[0], -1)
    ref = float(lp[:-1].gather(1, torch.tensor(ids)[:, None]).sum())  # one window holds it all
    lm = RoutedLM(model, tok, progress=False)
    assert len(ids) < lm.max_length
    assert lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]), disable_tqdm=True)[0] == pytest.approx(ref, abs=1e-3)
    short = RoutedLM(model, tok, max_length=16, progress=False)  # several windows: still a finite sum
    assert short.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]), disable_tqdm=True)[0] < 0


def test_batched_generation_matches_one_prompt_at_a_time_cut_at_stop_strings(tok):
    model = build_tiny_model(tokenizer=tok)
    prompts = ["Q: red\nA:", "Q: the sun and the moon\nA:", "hi", "tree"]
    until = ["e", "\n\n"]
    lm = RoutedLM(model, tok, batch_size=3, progress=False)
    got = lm.generate_until(instances("generate_until", [(p, {"until": until, "max_gen_toks": 6}) for p in prompts]))
    for p, g in zip(prompts, got):
        ids = tok(p, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, do_sample=False, max_new_tokens=6, pad_token_id=tok.pad_token_id)
        ref = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        for u in until:
            ref = ref.split(u)[0]
        assert g == ref and "e" not in g
    with pytest.raises(ValueError, match="greedily"):
        lm.generate_until(instances("generate_until", [("hi", {"until": ["\n"], "do_sample": True, "temperature": 0.7})]))


def test_route_and_clear_run_around_the_forward_even_when_it_fails(tok):
    calls = []
    model = build_tiny_model(tokenizer=tok)

    def boom(*args):
        raise RuntimeError("boom")

    model.register_forward_pre_hook(boom)
    lm = RoutedLM(model, tok, route=lambda i, m: calls.append(("route", tuple(i.shape))), clear=lambda: calls.append(("clear",)),
                  progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        lm.loglikelihood(instances("loglikelihood", [("hello", " world")]), disable_tqdm=True)
    assert calls == [("route", (1, len(tok("hello")["input_ids"]))), ("clear",)]


# ------------------------------------------------------------------------------------------- data
def test_limit_is_spread_evenly_over_subsets(fixture_dir):
    root, _ = fixture_dir
    data = load_general_data(root, limit=5)
    assert [len(s.eval_docs) for s in data["mmlu"]] == [3, 2] and [len(s.eval_docs) for s in data["bbh"]] == [3, 2]
    assert [len(s.eval_docs) for s in load_general_data(root, ("mmlu",), limit=1)["mmlu"]] == [1]


def test_parquet_and_save_to_disk_exports_read_like_jsonl(tmp_path, fixture_dir):
    import datasets

    root, _ = fixture_dir
    want = load_general_data(root, ("mmlu", "piqa"))
    for sub in MMLU_SUBJECTS:  # a datasets.save_to_disk export per subject, cais/mmlu style with `all` beside
        rows = {s: [json.loads(x) for x in (root / "mmlu" / sub / f"{s}.jsonl").read_text().splitlines()] for s in ("dev", "test")}
        datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in rows.items()}).save_to_disk(str(tmp_path / "mmlu" / sub))
    datasets.DatasetDict({"test": datasets.Dataset.from_list([{"question": "x", "choices": ["a"], "answer": 0}])}).save_to_disk(
        str(tmp_path / "mmlu" / "all"))  # skipped: malformed on purpose
    (tmp_path / "piqa").mkdir()
    for s in ("validation", "train"):
        datasets.Dataset.from_list([json.loads(x) for x in (root / "piqa" / f"{s}.jsonl").read_text().splitlines()]) \
            .to_parquet(str(tmp_path / "piqa" / f"{s}-00000-of-00001.parquet"))
    got = load_general_data(tmp_path, ("mmlu", "piqa"))
    assert got == want


@pytest.mark.parametrize("break_it, error, words", [
    (lambda r: __import__("shutil").rmtree(r / "piqa"), FileNotFoundError, ["piqa", "does not exist"]),
    (lambda r: (r / "bbh" / "echo_words" / "test.jsonl").write_text('{"input": "a", "target": "b"}\n{"input": '),
     ValueError, ["echo_words/test.jsonl:2", "not valid JSON"]),
    (lambda r: (r / "piqa" / "validation.jsonl").write_text('{"goal": "g", "sol1": "a", "label": 0}\n'),
     ValueError, ["validation.jsonl", "item 1", "sol2"]),
    (lambda r: (r / "mmlu" / "arith_plus" / "test.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n'),
     ValueError, ["arith_plus/test.jsonl", "4 strings"]),
    (lambda r: (r / "mmlu" / "arith_plus" / "dev.jsonl").write_text('{"question": "q", "choices": ["a", "b", "c", "d"], "answer": "B"}\n'),
     ValueError, ["mmlu/arith_plus has 1 few-shot", "dev.jsonl"]),
    (lambda r: (r / "bbh" / "echo_words" / "fewshot.jsonl").unlink(), ValueError, ["bbh/echo_words", "fewshot.jsonl"]),
    (lambda r: (r / "mmlu" / "arith_plus" / "test.jsonl").unlink(), FileNotFoundError, ["arith_plus/test.jsonl is missing"]),
])
def test_bad_data_is_an_error_naming_the_file(tmp_path, break_it, error, words):
    write_general_ability_fixture(tmp_path)
    break_it(tmp_path)
    with pytest.raises(error) as info:
        load_general_data(tmp_path)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_missing_directory_and_unknown_benchmark(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_general_data(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_general_data(tmp_path, ("mmlu", "hellaswag"))


def test_preloaded_data_keeps_its_limit_and_shots(tok, fixture_dir):
    root, _ = fixture_dir
    data = load_general_data(root, ("bbh",), num_fewshot={"bbh": 0})  # no exemplars loaded
    model = build_tiny_model(tokenizer=tok)
    with pytest.raises(ValueError, match="fewer few-shot examples"):
        general_ability(model, tok, data)  # 3-shot BBH by default
    with pytest.raises(ValueError, match="limit applies while loading"):
        general_ability(model, tok, data, num_fewshot={"bbh": 0}, limit=2)


def test_seta_eval_imports_no_model_or_training_layer():
    """Layering: seta/eval uses seta.core at most (routing comes in as callables)."""
    import ast
    from pathlib import Path

    import seta.eval

    for path in Path(seta.eval.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("seta.models", "seta.train", "seta.data")) for n in names), (path.name, names)
