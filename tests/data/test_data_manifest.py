"""Stream directories with a `stream.json` manifest, and `load_trace(tasks=...)` selection."""

import json

import pytest

from seta.data import (
    Example,
    Stream,
    Task,
    load_trace,
    read_manifest,
    stream_task_names,
    synthetic_stream,
    write_manifest,
    write_trace,
)


def _task(name, metric="exact_match", n=4):
    ex = [Example(f"{name} question {i}?", f"answer {i}") for i in range(n)]
    return Task(name, metric, ex, ex[:1], ex[1:])


@pytest.fixture()
def stream():
    return Stream([_task("alpha"), _task("beta", "rouge_l"), _task("gamma")], name="mine")


@pytest.fixture()
def stream_dir(tmp_path, stream):
    write_trace(stream, tmp_path / "s")
    write_manifest(stream, tmp_path / "s", source={"kind": "hand-made"})
    return tmp_path / "s"


def test_manifest_dir_loads_any_names_in_manifest_order(stream_dir, stream):
    loaded = load_trace(stream_dir)
    assert loaded == stream and loaded.name == "mine"
    assert [t.metric for t in loaded] == ["exact_match", "rouge_l", "exact_match"]
    assert read_manifest(stream_dir)["source"] == {"kind": "hand-made"}
    assert stream_task_names(stream_dir) == ["alpha", "beta", "gamma"]


def test_tasks_choose_and_order(stream_dir):
    s = load_trace(stream_dir, tasks=["gamma", "alpha"], max_train=2)
    assert s.names == ["gamma", "alpha"] and len(s["alpha"].train) == 2
    assert load_trace(stream_dir, order=["beta"]).names == ["beta"]


def test_tasks_on_a_plain_trace_dir(tmp_path):
    write_trace(synthetic_stream(seed=0, n_train=4, n_eval=2, n_test=2), tmp_path)
    assert load_trace(tmp_path, tasks=["FOMC", "C-STANCE"]).names == ["FOMC", "C-STANCE"]
    assert stream_task_names(tmp_path)[:2] == ["C-STANCE", "FOMC"]
    assert len(load_trace(tmp_path)) == 8  # the plain TRACE behaviour is unchanged


def test_plain_dir_of_other_names_is_still_refused(tmp_path, stream):
    write_trace(stream, tmp_path)
    with pytest.raises(FileNotFoundError, match="no task folder.*C-STANCE"):
        load_trace(tmp_path)  # without a manifest a directory is TRACE's eight tasks


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(tasks=["alpha", "delta"]), ValueError, r"unknown task name\(s\) \['delta'\]; known tasks: \['alpha', 'beta', 'gamma'\]"),
        (dict(tasks=["alpha", "alpha"]), ValueError, "more than once"),
        (dict(tasks=[]), ValueError, "empty"),
        (dict(tasks="alpha"), ValueError, "list of task names"),
        (dict(tasks=["alpha"], order=1), ValueError, "not both"),
        (dict(order=1), ValueError, "unknown task name"),
    ],
)
def test_bad_selection(stream_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_trace(stream_dir, **kwargs)


def test_task_in_manifest_without_folder(stream_dir):
    for f in (stream_dir / "beta").iterdir():
        f.unlink()
    (stream_dir / "beta").rmdir()
    with pytest.raises(FileNotFoundError, match=r"no task folder\(s\) \['beta'\]"):
        load_trace(stream_dir)
    assert load_trace(stream_dir, tasks=["alpha"]).names == ["alpha"]


def test_metric_override(stream_dir):
    assert load_trace(stream_dir, metrics={"alpha": "first_char"})["alpha"].metric == "first_char"


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "malformed JSON at line 1"),
        ([1, 2], "non-empty 'tasks' list"),
        ({"tasks": []}, "non-empty 'tasks' list"),
        ({"tasks": [{"metric": "exact_match"}]}, r"tasks\[0\] needs a non-empty string 'name'"),
        ({"tasks": [{"name": "alpha", "metric": "bleu"}]}, r"tasks\[0\] \('alpha'\): metric 'bleu' is not one of"),
        ({"tasks": [{"name": "alpha", "metric": "exact_match"}] * 2}, "listed twice"),
        ({"format": 9, "tasks": [{"name": "alpha", "metric": "exact_match"}]}, "format 9 is not supported"),
    ],
)
def test_bad_manifest_names_the_file(stream_dir, content, match):
    text = content if isinstance(content, str) else json.dumps(content)
    (stream_dir / "stream.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as e:
        load_trace(stream_dir)
    assert "stream.json" in str(e.value)
