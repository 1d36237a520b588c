"""--preset smollm2: the real-model preset over the fetched assets (SmolLM2-135M-Instruct, the default real stream)."""

import json

import pytest
from click.testing import CliRunner

from reproduce_helpers import load_script


@pytest.fixture(scope="module")
def cli():
    return load_script("run_all").main


def test_missing_assets_say_how_to_fetch_them(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SETA_ASSETS_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli, ["--preset", "smollm2", "--quick", "--methods", "seta", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"no model folder at {tmp_path / 'empty' / 'models' / 'SmolLM2-135M-Instruct'}" in result.output
    assert "python reproduce/fetch_assets.py" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_the_preset_fits_smollm2_and_runs_the_default_real_stream():
    from seta.assets.sources import DEFAULT_STREAM, VALIDATION_STREAM
    from seta.experiment.presets import PRESETS, QUICKS
    from seta.models.loading import architecture_config

    cfg = architecture_config("smollm2-135m")
    for preset in (PRESETS["smollm2"], QUICKS["smollm2"]):
        b = preset.sparse.block_size
        dims = (cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * cfg.head_dim)
        assert all(d % b == 0 for d in dims), (preset.name, dims, b)  # no ragged blocks on any projection
        assert preset.assets and preset.dtype == "float32" and not preset.train.bf16
    from seta.experiment.choices import ASSET_PRESETS, QUICK_PRESETS

    assert ASSET_PRESETS == [n for n, p in PRESETS.items() if p.assets] and sorted(QUICKS) == sorted(QUICK_PRESETS)
    quick, full = QUICKS["smollm2"].stream["tasks"], PRESETS["smollm2"].stream["tasks"]
    assert list(full) == [t.name for t in DEFAULT_STREAM] and set(quick) <= set(full)
    assert not set(full) & {t.name for t in VALIDATION_STREAM}  # settings are chosen on other tasks
    assert PRESETS["smollm2"].stream["max_test"] >= 100 and PRESETS["smollm2"].general_limit >= 200


@pytest.mark.slow
def test_seta_trains_and_generates_on_the_real_smollm2(cli, tmp_path):
    """A few SETA steps + routed generation on the fetched SmolLM2 and the real stream (skips without them)."""
    from seta.assets import SMOLLM2, default_assets_dir

    cache = default_assets_dir()
    for path in (cache / "models" / SMOLLM2.folder, cache / "streams" / "default"):
        if not path.is_dir():
            pytest.skip(f"no {path}: run `python reproduce/fetch_assets.py` (or set SETA_ASSETS_DIR to a fetched cache)")
    out = tmp_path / "run"
    args = ["--preset", "smollm2", "--quick", "--methods", "seta", "--tasks", "sarcasm,anagrams", "--general-tasks", "",
            "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    res = json.loads((out / "seta" / "seed0" / "result.json").read_text())
    assert len(res["R"]) == 2 and all(0 <= x <= 100 for row in res["R"] for x in row if x is not None)
    assert (out / "seta" / "seed0" / "adapter").is_dir()
    from seta.inference.adapter import SetaAdapter

    adapter = SetaAdapter.load(out / "seta" / "seed0" / "adapter")
    [reply] = adapter.generate(["Find the anagram of the input word (output is a single word)\n\ntca\nAnswer:"])
    assert isinstance(reply.text, str) and reply.task in (None, "sarcasm", "anagrams")
