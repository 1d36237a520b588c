"""The embedded synthetic stream and generic corpus: determinism, shape, no leakage, task identity."""

import re

import pytest

from seta.data import (
    METRIC_KEYS, TRACE_METRICS, TRACE_ORDER_1, TRACE_ORDER_2, generic_corpus, synthetic_stream, synthetic_task,
)
from seta.data.synthetic import GENERATORS, PROPERTIES


@pytest.fixture(scope="module")
def stream():
    return synthetic_stream(seed=0, n_train=200, n_eval=20, n_test=40)


def test_deterministic_for_a_seed(stream):
    assert synthetic_stream(seed=0, n_train=200, n_eval=20, n_test=40) == stream
    other = synthetic_stream(seed=1, n_train=200, n_eval=20, n_test=40)
    assert all(a.train != b.train for a, b in zip(stream, other))


def test_tasks_names_metrics_and_sizes(stream):
    assert stream.names == TRACE_ORDER_1
    for task in stream:
        assert task.metric == TRACE_METRICS[task.name] and task.metric in METRIC_KEYS
        assert (len(task.train), len(task.eval), len(task.test)) == (200, 20, 40)


def test_task_content_does_not_depend_on_order_or_sizes(stream):
    s2 = synthetic_stream(seed=0, n_train=200, n_eval=20, n_test=40, order=2)
    assert s2.names == TRACE_ORDER_2 and all(s2[n] == stream[n] for n in stream.names)
    # the first examples are the same whatever the split sizes
    assert synthetic_task("FOMC", seed=0, n_train=10, n_eval=0, n_test=1).train == stream["FOMC"].train[:10]


def test_prompts_unique_within_task_no_train_test_leakage(stream):
    for task in stream:
        prompts = [ex.prompt for split in ("train", "eval", "test") for ex in task.split(split)]
        assert len(prompts) == len(set(prompts)), task.name


def test_instruction_prefix_identifies_the_task(stream):
    """A task-agnostic router can tell tasks apart from the prompt: each task has its own first line."""
    firsts = {t.name: {ex.prompt.split("\n", 1)[0] for ex in t.train} for t in stream}
    for name, heads in firsts.items():
        assert len(heads) == 1, name
    assert len({next(iter(h)) for h in firsts.values()}) == len(stream)


def test_prompts_and_answers_are_short(stream):
    for task in stream:
        for ex in task.train:
            assert len(ex.prompt.split()) <= 40 and len(ex.answer.split()) <= 12, (task.name, ex)


def test_answers_follow_the_task_rules(stream):
    for ex in stream["C-STANCE"].test + stream["FOMC"].test:
        assert ex.answer in ("A", "B", "C")
    for ex in stream["ScienceQA"].test:
        letter, obj, prop = re.fullmatch(r"([AB])\. because (.+) is (\w+)", ex.answer).groups()
        assert obj in PROPERTIES[prop] and f"{letter}. {prop}" in ex.prompt
    for ex in stream["NumGLUE-cm"].test:
        a, b = map(int, re.findall(r"has (\d+)", ex.prompt))
        assert ex.answer == str(a + b)
    for ex in stream["NumGLUE-ds"].test:
        a, b = map(int, re.findall(r"(\d+) (?:bags|\w+ in each)", ex.prompt))
        assert ex.answer == str(a * b)
    for ex in stream["MeetingBank"].test:
        who, rest = ex.answer.split(" will ")
        assert f"{who} agreed to {rest}" in ex.prompt
    for ex in stream["20Minuten"].test:
        assert ex.answer.split()[0] in ex.prompt and ex.answer.endswith(".")


def test_tasks_conflict_on_shared_inputs():
    """C-STANCE and FOMC label the same kind of sentence by different words: the labels disagree often."""
    import random
    from seta.data.synthetic import _c_stance, _fomc
    a, b = random.Random(5), random.Random(5)
    pairs = [(_c_stance(a), _fomc(b)) for _ in range(300)]
    def text(ex):
        return ex.prompt.split("Text: ")[1].split("\n")[0]
    assert all(text(x) == text(y) for x, y in pairs)
    disagree = sum(x.answer != y.answer for x, y in pairs) / len(pairs)
    assert 0.5 < disagree < 0.85  # independent 3-way labels disagree about 2/3 of the time


@pytest.mark.parametrize("kw", [{"n_train": 0}, {"n_test": 0}, {"n_eval": -1}, {"n_train": 2.5}])
def test_bad_sizes(kw):
    with pytest.raises(ValueError):
        synthetic_stream(**kw)


def test_too_many_examples_is_a_clear_error(monkeypatch):
    from seta.data import Example
    monkeypatch.setitem(GENERATORS, "FOMC", lambda rng: Example(f"p{rng.randrange(5)}", "A"))
    with pytest.raises(ValueError, match="distinct prompts"):
        synthetic_task("FOMC", n_train=10, n_eval=0, n_test=1)


def test_unknown_synthetic_task():
    with pytest.raises(ValueError, match="known tasks"):
        synthetic_task("SQuAD")


def test_generic_corpus_deterministic_and_heldout_disjoint():
    c = generic_corpus(seed=0, n_train=300, n_heldout=50)
    assert c == generic_corpus(seed=0, n_train=300, n_heldout=50)
    assert c != generic_corpus(seed=1, n_train=300, n_heldout=50)
    assert len(c.train) == 300 and len(c.heldout) == 50 and not set(c.train) & set(c.heldout)
    assert generic_corpus(seed=0, n_train=100, n_heldout=0).train == c.train[:100]


def test_generic_corpus_holds_no_task_prompt(stream):
    c = generic_corpus(seed=0, n_train=500, n_heldout=50)
    heads = {ex.prompt.split("\n", 1)[0] for t in stream for ex in t.train[:1]}
    assert not any(h in doc for h in heads for doc in c.train + c.heldout)
    assert not any("Answer:" in doc for doc in c.train)
