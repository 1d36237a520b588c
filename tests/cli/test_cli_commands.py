"""`seta` itself: run is run_all's command, plan prints the memory plan, argument errors stay fast."""

import pytest
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from seta.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_every_sub_command_is_there():
    assert sorted(main.commands) == ["eval", "export", "fetch", "generate", "info", "merge", "plan", "run", "train"]


def test_run_is_the_command_of_reproduce_run_all():
    sys.path.insert(0, str(ROOT / "tests" / "reproduce"))
    from reproduce_helpers import load_script

    script = load_script("run_all", "run_all_cli_check")
    assert script.main is main.commands["run"]
    assert [p.name for p in script.main.params][:3] == ["preset", "methods", "seeds"]
    result = CliRunner().invoke(main, ["run", "--seeds", "-1"])
    assert result.exit_code == 2 and "seeds must lie in 0..4294967295" in result.output


def test_plan_prints_the_dry_run_memory_plan():
    result = CliRunner().invoke(main, ["plan", "--preset", "qwen3-4b"])
    assert result.exit_code == 0, result.output
    dry = CliRunner().invoke(main, ["run", "--preset", "qwen3-4b", "--dry-run"])
    assert result.output == dry.output and "base weights (NF4" in result.output
    assert "one 80 GB GPU" in result.output
    bad = CliRunner().invoke(main, ["plan", "--preset", "qwen3-4b", "--quick"])
    assert bad.exit_code == 2 and "--quick exists for smollm2 and tiny only" in bad.output



@pytest.mark.parametrize("quick", [[], ["--quick"]])
def test_plan_of_the_tiny_preset_sizes_its_own_model(quick):
    """The tiny preset has no shipped architecture: its plan is of the model it builds (fp32, b = 16)."""
    from seta.data import build_tiny_tokenizer
    from seta.experiment.presets import TINY
    from seta.models.loading import build_tiny_model

    result = CliRunner().invoke(main, ["plan", "--preset", "tiny", *quick])
    assert result.exit_code == 0, result.output
    assert "base weights (fp32)" in result.output and "b=16" in result.output
    model = build_tiny_model(TINY.arch, tokenizer=build_tiny_tokenizer(), **TINY.tiny_model)
    b = TINY.sparse.block_size
    n_blocks = sum((m.out_features // b) * (m.in_features // b) for name, m in model.named_modules()
                   if name.rsplit(".", 1)[-1] in TINY.sparse.target_modules)
    assert f"of {n_blocks} blocks, b={b}" in result.output, result.output


def test_argument_errors_come_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom seta.cli import main\ntry:\n    main(['info', sys.argv[1]])\nexcept SystemExit as e:\n"
            "    print('exit', e.code)\nprint('heavy', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nope")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert "exit 1" in out.stdout and "heavy []" in out.stdout, out.stdout + out.stderr
    assert "adapter folder" in out.stderr and "does not exist" in out.stderr
