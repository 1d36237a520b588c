"""--preset smollm2: the real-model preset over the fetched assets (SmolLM2-135M-Instruct, BIG-bench)."""

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


def test_the_preset_fits_smollm2_and_keeps_bbh_out_of_the_stream():
    from seta.data.bigbench import BBH_TASKS, DEFAULT_BBH, DEFAULT_STREAM
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
    assert set(quick) <= set(DEFAULT_STREAM) and not set(DEFAULT_STREAM) & set(BBH_TASKS)
    assert len(full) >= 6 and len(set(full)) == len(full) and set(full) <= set(DEFAULT_STREAM)
    assert set(DEFAULT_BBH) <= set(BBH_TASKS)


@pytest.mark.slow
def test_seta_trains_and_generates_on_the_real_smollm2(cli, tmp_path):
    """A few SETA steps + routed generation on the fetched SmolLM2 (skips without the assets)."""
    from seta.assets import SMOLLM2, default_assets_dir

    cache = default_assets_dir()
    if not (cache / "models" / SMOLLM2.folder).is_dir() or not (cache / "streams" / "bigbench").is_dir():
        pytest.skip(f"no SmolLM2 / BIG-bench stream under {cache}: run `python reproduce/fetch_assets.py`")
    out = tmp_path / "run"
    args = ["--preset", "smollm2", "--quick", "--methods", "seta", "--tasks", "qa_wikidata,word_unscrambling",
            "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    res = json.loads((out / "seta" / "seed0" / "result.json").read_text())
    assert len(res["R"]) == 2 and all(0 <= x <= 100 for row in res["R"] for x in row if x is not None)
    assert (out / "seta" / "seed0" / "adapter").is_dir()
    from seta.inference.adapter import SetaAdapter

    adapter = SetaAdapter.load(out / "seta" / "seed0" / "adapter")
    [reply] = adapter.generate(["Q: The word tca is a scrambled version of the English word\nA:"])
    assert isinstance(reply.text, str) and reply.task in (None, "qa_wikidata", "word_unscrambling")
