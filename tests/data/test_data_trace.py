"""The TRACE loader: round trip, subsampling, missing eval.json, and every error case."""

import json
import os

import pytest

from seta.data import TRACE_ORDER_2, Example, load_trace, synthetic_stream, write_trace


@pytest.fixture(scope="module")
def small_stream():
    return synthetic_stream(seed=3, n_train=20, n_eval=5, n_test=7)


@pytest.fixture()
def data_dir(tmp_path, small_stream):
    return write_trace(small_stream, tmp_path / "trace")


def _write(path, obj_or_text):
    text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
    path.write_text(text, encoding="utf-8")


def test_written_then_loaded_equals_generated(data_dir, small_stream):
    assert sorted(os.listdir(data_dir)) == sorted(small_stream.names)
    assert sorted(os.listdir(data_dir / "FOMC")) == ["eval.json", "test.json", "train.json"]
    loaded = load_trace(data_dir)
    assert loaded == small_stream
    assert [t.metric for t in loaded] == [t.metric for t in small_stream]
    assert load_trace(data_dir, order=2).names == TRACE_ORDER_2


def test_unicode_round_trip(tmp_path):
    from seta.data import Stream, Task
    ex = [Example("立场：他支持这个政策。\nAnswer:", "A"),
          Example("Vereinfache: Die Straße ist schön.", "Straße ä")]
    s = Stream([Task("C-STANCE", "exact_match", ex, [], ex)])
    write_trace(s, tmp_path)
    assert load_trace(tmp_path, order=["C-STANCE"]) == s


def test_subsampling_is_seeded_ordered_and_capped(data_dir, small_stream):
    a = load_trace(data_dir, max_train=8, max_eval=2, max_test=3, seed=1)
    b = load_trace(data_dir, max_train=8, max_eval=2, max_test=3, seed=1)
    c = load_trace(data_dir, max_train=8, seed=2)
    assert a == b
    for task, full in zip(a, small_stream):
        assert (len(task.train), len(task.eval), len(task.test)) == (8, 2, 3)
        idx = [full.train.index(ex) for ex in task.train]
        assert idx == sorted(idx)  # file order kept
    assert any(x.train != y.train for x, y in zip(a, c))
    assert load_trace(data_dir, max_train=10_000) == small_stream  # a cap above the size keeps all


def test_missing_eval_gives_empty_eval(data_dir, small_stream):
    (data_dir / "MeetingBank" / "eval.json").unlink()
    s = load_trace(data_dir)
    assert s["MeetingBank"].eval == () and s["MeetingBank"].train == small_stream["MeetingBank"].train
    assert s["FOMC"].eval == small_stream["FOMC"].eval


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_trace(tmp_path / "nope")


def test_missing_task_folder_names_it(data_dir):
    (data_dir / "Py150" / "train.json").unlink()
    (data_dir / "Py150" / "test.json").unlink()
    (data_dir / "Py150" / "eval.json").unlink()
    (data_dir / "Py150").rmdir()
    with pytest.raises(FileNotFoundError, match="Py150"):
        load_trace(data_dir)
    assert load_trace(data_dir, order=["FOMC"]).names == ["FOMC"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_missing_required_file(data_dir, split):
    path = data_dir / "FOMC" / f"{split}.json"
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"FOMC.{split}.json"):
        load_trace(data_dir)


def test_malformed_json_names_file_and_position(data_dir):
    bad = '[\n {"prompt": "p", "answer": "a"},\n {"prompt": "p" "answer": "b"}\n]'
    _write(data_dir / "ScienceQA" / "test.json", bad)
    with pytest.raises(ValueError) as e:
        load_trace(data_dir)
    msg = str(e.value)
    assert "ScienceQA" in msg and "test.json" in msg and "line 3" in msg and "column" in msg


@pytest.mark.parametrize(
    "content,match",
    [
        ({"prompt": "p", "answer": "a"}, "expected a JSON list"),
        ([{"prompt": "p", "answer": "a"}, ["p", "a"]], r"item \[1\] must be an object"),
        ([{"prompt": "p", "answer": "a"}, {"prompt": "p"}], r"item \[1\] has no 'answer'"),
        ([{"answer": "a"}], r"item \[0\] has no 'prompt'"),
        ([{"prompt": "p", "answer": "a"}, {"prompt": "p", "answer": 7}], r"item \[1\]: 'answer' must be a string"),
        ([{"prompt": None, "answer": "a"}], r"item \[0\]: 'prompt' must be a string"),
        ([{"prompt": "p", "answer": "a"}] * 3 + [{"prompt": "  ", "answer": "a"}], r"item \[3\]: 'prompt' is empty"),
        ([{"prompt": "p", "answer": ""}], r"item \[0\]: 'answer' is empty"),
        ([], "empty list"),
    ],
)
def test_bad_content_is_rejected_with_file_and_index(data_dir, content, match):
    _write(data_dir / "NumGLUE-ds" / "train.json", content)
    with pytest.raises(ValueError, match=match) as e:
        load_trace(data_dir)
    assert "NumGLUE-ds" in str(e.value) and "train.json" in str(e.value)


def test_not_utf8(data_dir):
    (data_dir / "FOMC" / "test.json").write_bytes(b'[{"prompt": "\xff", "answer": "a"}]')
    with pytest.raises(ValueError, match="UTF-8"):
        load_trace(data_dir)


def test_a_utf8_byte_order_mark_is_accepted(data_dir):
    (data_dir / "FOMC" / "test.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"prompt": "p", "answer": "a"}]).encode())
    assert load_trace(data_dir)["FOMC"].test == (Example("p", "a"),)


def test_a_key_twice_in_one_object_is_rejected_naming_key_and_file(data_dir):
    _write(data_dir / "FOMC" / "train.json", '[{"prompt": "p", "answer": "a", "answer": "b"}]')
    with pytest.raises(ValueError, match="'answer' twice") as e:
        load_trace(data_dir)
    assert "FOMC" in str(e.value) and "train.json" in str(e.value)


def test_a_file_given_as_the_directory_is_named_as_such(data_dir):
    with pytest.raises(ValueError, match="is a file, not a directory"):
        load_trace(data_dir / "FOMC" / "train.json")


def test_empty_eval_list_is_allowed(data_dir):
    _write(data_dir / "FOMC" / "eval.json", [])
    assert load_trace(data_dir)["FOMC"].eval == ()


def test_extra_fields_are_ignored(data_dir):
    _write(data_dir / "FOMC" / "test.json", [{"prompt": "p", "answer": "a", "id": 3}])
    assert load_trace(data_dir)["FOMC"].test == (Example("p", "a"),)


def test_unknown_task_name_lists_known(data_dir):
    with pytest.raises(ValueError) as e:
        load_trace(data_dir, order=["FOMC", "Fomc"])
    assert "Fomc" in str(e.value) and "C-STANCE" in str(e.value)


def test_custom_task_with_metric(data_dir, small_stream):
    (data_dir / "FOMC").rename(data_dir / "MyTask")
    s = load_trace(data_dir, order=["MyTask", "C-STANCE"], metrics={"MyTask": "rouge_l"})
    assert s["MyTask"].metric == "rouge_l" and s["MyTask"].test == small_stream["FOMC"].test
    with pytest.raises(ValueError, match="not one of"):
        load_trace(data_dir, order=["MyTask"], metrics={"MyTask": "bleu"})
    s2 = load_trace(data_dir, order=["C-STANCE"], metrics={"C-STANCE": "rouge_l"})  # override a TRACE metric
    assert s2["C-STANCE"].metric == "rouge_l"


@pytest.mark.parametrize("kw", [{"max_train": 0}, {"max_eval": -1}, {"max_test": 1.5}])
def test_bad_caps(data_dir, kw):
    with pytest.raises(ValueError, match="positive int"):
        load_trace(data_dir, **kw)


def test_nothing_half_loaded_on_late_error(data_dir):
    """The last task's bad file aborts the whole load (no partial stream is returned)."""
    _write(data_dir / "20Minuten" / "test.json", "[")
    result = None
    with pytest.raises(ValueError, match="20Minuten"):
        result = load_trace(data_dir)
    assert result is None
