"""Example / Task / Stream validation, orders and metric keys."""

import pytest

from seta.data import (
    METRIC_KEYS, TRACE_METRICS, TRACE_ORDER_1, TRACE_ORDER_2, Example, Stream, Task, resolve_order,
)


def _task(name="t", metric="exact_match", n=2):
    ex = [Example(f"p{i}", f"a{i}") for i in range(n)]
    return Task(name, metric, ex, ex[:1], ex)


def test_metric_keys_are_the_eval_contract():
    assert METRIC_KEYS == ("exact_match", "first_char", "rouge_l", "edit_sim", "sari", "numeric")
    from seta.eval.scorers import SCORERS

    assert set(METRIC_KEYS) == set(SCORERS)  # every key a task may declare has a scorer
    assert set(TRACE_METRICS.values()) <= set(METRIC_KEYS)
    assert TRACE_METRICS["Py150"] == "edit_sim" and TRACE_METRICS["ScienceQA"] == "first_char"
    assert TRACE_METRICS["MeetingBank"] == "rouge_l" and TRACE_METRICS["20Minuten"] == "sari"
    for name in ("C-STANCE", "FOMC", "NumGLUE-cm", "NumGLUE-ds"):
        assert TRACE_METRICS[name] == "exact_match"


def test_trace_orders():
    assert TRACE_ORDER_1 == ["C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA",
                             "NumGLUE-cm", "NumGLUE-ds", "20Minuten"]
    assert TRACE_ORDER_2 == ["NumGLUE-cm", "NumGLUE-ds", "FOMC", "20Minuten", "C-STANCE",
                             "Py150", "MeetingBank", "ScienceQA"]
    assert sorted(TRACE_ORDER_1) == sorted(TRACE_ORDER_2) == sorted(TRACE_METRICS)


@pytest.mark.parametrize("order,expected", [(1, TRACE_ORDER_1), ("order2", TRACE_ORDER_2), ("2", TRACE_ORDER_2),
                                            (["FOMC", "Py150"], ["FOMC", "Py150"])])
def test_resolve_order(order, expected):
    assert resolve_order(order) == expected


@pytest.mark.parametrize("order,match", [(3, "order must be"), ("ord", "order must be"), ([], "empty"),
                                         (["FOMC", "FOMC"], "more than once"), (["Nope"], "known tasks")])
def test_resolve_order_errors(order, match):
    with pytest.raises(ValueError, match=match):
        resolve_order(order)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError) as e:
        resolve_order(["C-STANCE", "CSTANCE"])
    assert "CSTANCE" in str(e.value) and "20Minuten" in str(e.value)


@pytest.mark.parametrize("prompt,answer", [("", "a"), ("p", ""), ("  \n", "a"), (None, "a"), ("p", 3)])
def test_example_rejects_empty_or_non_str(prompt, answer):
    with pytest.raises(ValueError):
        Example(prompt, answer)


def test_task_validation_and_tuples():
    t = _task()
    assert isinstance(t.train, tuple) and t.split("eval") == t.eval
    with pytest.raises(ValueError, match="unknown metric"):
        _task(metric="accuracy")
    with pytest.raises(ValueError, match="not an Example"):
        Task("t", "exact_match", [{"prompt": "p", "answer": "a"}])
    with pytest.raises(ValueError, match="unknown split"):
        t.split("dev")


def test_stream_access_reorder_and_equality():
    s = Stream([_task("a"), _task("b"), _task("c")], name="x")
    assert s.names == ["a", "b", "c"] and len(s) == 3 and s["b"].name == "b" and s[2].name == "c"
    assert s.reorder(["c", "a"]).names == ["c", "a"]
    assert s == Stream([_task("a"), _task("b"), _task("c")], name="other")  # name ignored by ==
    with pytest.raises(KeyError):
        s["zz"]
    with pytest.raises(ValueError, match="known tasks"):
        s.reorder(["a", "zz"])
    with pytest.raises(ValueError, match="distinct"):
        Stream([_task("a"), _task("a")])
    with pytest.raises(ValueError, match="at least one"):
        Stream([])
