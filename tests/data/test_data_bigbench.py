"""BIG-bench task.json -> {prompt, answer} tasks, on hand-made task files (no BIG-bench text here)."""

import io
import json
import tarfile

import pytest

from seta.data.bigbench import (
    BBH_TASKS,
    DEFAULT_STREAM,
    DEFAULT_VALIDATION,
    bigbench_examples,
    bigbench_task,
    read_bigbench_tasks,
    split_counts,
)

COLOURS = ["red", "green", "blue", "black"]


def choice_task(n=20, fixed=True, **extra):
    """A hand-made multiple-choice task: which colour is named in the input."""
    examples = []
    for i in range(n):
        right = COLOURS[i % 4]
        keys = COLOURS if fixed else [right] + [c for c in COLOURS if c != right]  # right one first
        examples.append({"input": f"item {i} is {right}", "target_scores": {c: int(c == right) for c in keys}})
    return {"examples": examples, "task_prefix": "Name the colour.\n", "example_input_prefix": "\nItem: ",
            "example_output_prefix": "\nColour: ", "metrics": ["multiple_choice_grade"], **extra}


def gen_task(targets, **extra):
    return {"examples": [{"input": f"question {i}", "target": t} for i, t in enumerate(targets)], **extra}


def test_choice_prompt_format_and_fixed_labels_keep_order():
    metric, ex = bigbench_examples("colours", choice_task(4), "t.json")
    assert metric == "exact_match"
    assert ex[1].prompt == "Name the colour.\n\nItem: item 1 is green\nColour:\nA. red\nB. green\nC. blue\nD. black\nAnswer:"
    assert [e.answer for e in ex] == ["A", "B", "C", "D"]


def test_varying_choices_are_shuffled_deterministically_and_stay_right():
    data = choice_task(40, fixed=False)
    _, a = bigbench_examples("colours", data, "t.json", seed=0)
    _, b = bigbench_examples("colours", data, "t.json", seed=0)
    _, c = bigbench_examples("colours", data, "t.json", seed=1)
    assert a == b and a != c
    assert len({e.answer for e in a}) > 1  # the right one (first in the file) does not stay "A"
    for i, e in enumerate(a):
        line = next(x for x in e.prompt.splitlines() if x.startswith(e.answer + ". "))
        assert line == f"{e.answer}. {COLOURS[i % 4]}"


def test_several_best_choices_keep_one_and_many_choices_are_capped():
    ex = {"input": "q", "target_scores": {"x": 1, "y": 1, "z": 0}}
    _, [e] = bigbench_examples("t", {"examples": [ex]}, "t.json")
    assert e.prompt == "Q: q\nA. x\nB. z\nAnswer:" and e.answer == "A"  # one letter is right
    many = {"input": "q", "target_scores": {f"c{j}": int(j == 30) for j in range(40)}}
    _, [e] = bigbench_examples("t", {"examples": [many]}, "t.json")
    options = [x for x in e.prompt.splitlines() if x[1:3] == ". "]
    assert len(options) == 26 and f"{e.answer}. c30" in options


def test_generative_target_prefix_defaults_and_first_of_a_list():
    data = gen_task([["Paris", "paris"], " Rome "], metrics=["exact_str_match"])
    metric, ex = bigbench_examples("caps", data, "t.json")
    assert metric == "exact_match"
    assert ex[0].prompt == "Q: question 0\nA:" and [e.answer for e in ex] == ["Paris", "Rome"]


@pytest.mark.parametrize(
    "targets, extra, metric",
    [
        (["one two three four five six"] * 3, {"preferred_score": "exact_str_match"}, "exact_match"),
        (["short"] * 3, {"metrics": ["bleu", "exact_str_match"], "preferred_score": "bleu"}, "exact_match"),
        (["a long free text answer here"] * 3, {"metrics": ["bleu", "exact_str_match"]}, "rouge_l"),
        (["short"] * 3, {"metrics": ["bleu", "rouge"]}, "rouge_l"),
    ],
)
def test_generative_metric_rule(targets, extra, metric):
    assert bigbench_examples("t", gen_task(targets, **extra), "t.json")[0] == metric


def test_examples_with_both_fields_follow_the_preferred_score():
    data = choice_task(4)
    for ex in data["examples"]:
        ex["target"] = ex["input"].split()[-1]
    assert bigbench_examples("t", data, "t.json")[1][0].answer == "A"
    data["preferred_score"] = "exact_str_match"
    assert bigbench_examples("t", data, "t.json")[1][0].answer == "red"


def test_repeated_and_blank_inputs_are_dropped():
    data = gen_task(["a", "b", "c"])
    data["examples"][1]["input"] = "question 0"
    data["examples"].append({"input": "  ", "target": "d"})
    assert [e.answer for e in bigbench_examples("t", data, "t.json")[1]] == ["a", "c"]


def test_splits_are_seeded_disjoint_capped_and_test_ignores_the_train_cap():
    data = gen_task([f"ans {i}" for i in range(50)])
    t = bigbench_task("t", data, seed=3)
    assert (len(t.train), len(t.eval), len(t.test)) == (35, 5, 10) == split_counts(50, 1000, 100, 200)
    assert bigbench_task("t", data, seed=3) == t and bigbench_task("t", data, seed=4).test != t.test
    prompts = [e.prompt for split in (t.train, t.eval, t.test) for e in split]
    assert len(set(prompts)) == 50
    small = bigbench_task("t", data, seed=3, max_train=7, max_eval=0, max_test=4)
    assert (len(small.train), len(small.eval), len(small.test)) == (7, 0, 4)
    assert set(small.test) <= set(t.test)  # test is drawn first from one seeded order
    assert bigbench_task("t", data, seed=3, max_train=7).test == t.test
    idx = [int(e.prompt.split()[-2]) for e in t.train]
    assert idx == sorted(idx)  # file order kept inside a split


@pytest.mark.parametrize(
    "data, match",
    [
        ({"metrics": []}, "'examples' list"),
        ({"examples": []}, "'examples' is empty"),
        ({"examples": [{"target": "x"}]}, r"examples\[0\] needs an 'input'"),
        ({"examples": [{"input": "q"}]}, r"examples\[0\] needs an 'input' and a 'target' or 'target_scores'"),
        (gen_task(["ok", ""]), r"examples\[1\]: 'target' must be a non-empty string"),
        (gen_task(["ok", []]), r"examples\[1\]: 'target' is an empty list"),
        (gen_task(["ok", 3]), r"examples\[1\]: 'target' must be a non-empty string"),
        ({"examples": [{"input": "q", "target_scores": {}}]}, "'target_scores' must be a non-empty object"),
        ({"examples": [{"input": "q", "target_scores": {"a": 0, "b": 0}}]}, "one with a positive score"),
        ({"examples": [{"input": "q", "target_scores": {"a": "1", "b": 0}}]}, "must be a number"),
        ({"examples": [{"input": 5, "target": "x"}]}, r"'input' must be a string"),
        ({"examples": [{"input": "q", "target": "x"}, {"input": "r", "target_scores": {"a": 1}}]}, "mixes"),
        ({"examples": [{"input": "q", "target": "x"}], "task_prefix": 3}, "'task_prefix' must be a string"),
    ],
)
def test_bad_task_is_one_clear_error_naming_the_file(data, match, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "task.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=match) as e:
        where, parsed = read_bigbench_tasks(tmp_path, ["bad"])["bad"]
        bigbench_task("bad", parsed, where)
    assert str(tmp_path / "bad" / "task.json") in str(e.value)


def test_too_few_examples_and_bad_caps():
    with pytest.raises(ValueError, match="too few"):
        bigbench_task("t", gen_task(["a", "b"]))
    with pytest.raises(ValueError, match="max_train must be a positive int"):
        bigbench_task("t", gen_task(["a"] * 10), max_train=0)
    with pytest.raises(ValueError, match="test_fraction"):
        bigbench_task("t", gen_task(["a"] * 10), test_fraction=0)


def test_bbh_tasks_are_refused_unless_allowed():
    with pytest.raises(ValueError, match="BIG-Bench Hard"):
        bigbench_task("navigate", gen_task(["a"] * 10))
    assert bigbench_task("navigate", gen_task(["a"] * 10), allow_bbh=True).name == "navigate"


def test_default_lists_are_non_bbh_disjoint_and_long_enough():
    assert len(DEFAULT_STREAM) >= 6 and len(set(DEFAULT_STREAM)) == len(DEFAULT_STREAM)
    assert not set(DEFAULT_STREAM) & set(BBH_TASKS) and not set(DEFAULT_VALIDATION) & set(BBH_TASKS)
    assert not set(DEFAULT_STREAM) & set(DEFAULT_VALIDATION)


def _archive(path, tasks: dict, nested=()):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in tasks.items():
            raw = json.dumps(data).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        for name in nested:
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/sub/task.json")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return path


def test_read_from_archive_and_unknown_names_list_known(tmp_path):
    arc = _archive(tmp_path / "bb.tar.gz", {"colours": choice_task(8), "caps": gen_task(["x"] * 8)}, nested=["sums"])
    found = read_bigbench_tasks(arc, ["caps", "colours"])
    assert sorted(found) == ["caps", "colours"] and found["caps"][0].endswith("benchmark_tasks/caps/task.json")
    with pytest.raises(ValueError) as e:
        read_bigbench_tasks(arc, ["caps", "nope", "sums"])
    msg = str(e.value)
    assert "['nope', 'sums']" in msg and "['caps', 'colours']" in msg and "sub-task" in msg and "bb.tar.gz" in msg


def test_malformed_json_in_archive_and_bad_archive(tmp_path):
    arc = tmp_path / "bb.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        info = tarfile.TarInfo("bigbench/benchmark_tasks/bad/task.json")
        info.size = 5
        tar.addfile(info, io.BytesIO(b'{"ex"'))
    with pytest.raises(ValueError, match=r"bb.tar.gz:bigbench/benchmark_tasks/bad/task.json: malformed JSON at line 1"):
        read_bigbench_tasks(arc, ["bad"])
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="junk.tar.gz: not a readable BIG-bench source archive"):
        read_bigbench_tasks(tmp_path / "junk.tar.gz", ["bad"])
    with pytest.raises(FileNotFoundError, match="no BIG-bench archive"):
        read_bigbench_tasks(tmp_path / "missing.tar.gz", ["bad"])


def test_the_data_layer_imports_no_model_code():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, seta.data.bigbench, seta.data.trace\n"
            "print([m for m in sys.modules if m.startswith(('seta.models', 'transformers'))])")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ BBH -> general-ability rows
def test_bbh_rows_drop_the_cues_and_keep_the_letter_target():
    from seta.data.bigbench import bbh_general

    data = choice_task(30, fixed=False, example_input_prefix="\nQ: ", example_output_prefix="")
    data.pop("task_prefix")
    test, shots = bbh_general("hyperbaton", data, "t.json", n_test=10, n_shots=3)
    assert len(test) == 10 and len(shots) == 3
    assert not {r["input"] for r in test} & {r["input"] for r in shots}  # few-shot rows never scored
    for r in test + shots:
        assert not r["input"].startswith("Q:") and not r["input"].rstrip().endswith("Answer:")
        number = int(r["input"].split()[1])
        assert f"{r['target']}. {COLOURS[number % 4]}" in r["input"].splitlines()  # the right letter
    again, _ = bbh_general("hyperbaton", data, "t.json", n_test=10, n_shots=3)
    assert again == test  # seeded
    gen_test, _ = bbh_general("object_counting", gen_task([f"n{i}" for i in range(20)]), "t.json", n_test=4)
    assert gen_test[0]["target"].startswith("n") and not gen_test[0]["input"].endswith("A:")


def test_bbh_rows_refuse_non_bbh_tasks_and_too_few_examples():
    from seta.data.bigbench import bbh_general

    with pytest.raises(ValueError, match="not a BIG-Bench Hard task; known: boolean_expressions"):
        bbh_general("qa_wikidata", gen_task(["a", "b", "c"]), "t.json")
    with pytest.raises(ValueError, match=r"t.json: 2 example\(s\) left for 3 few-shot rows"):
        bbh_general("navigate", gen_task(["a", "b", "c", "d"]), "t.json", n_test=2, n_shots=3)
