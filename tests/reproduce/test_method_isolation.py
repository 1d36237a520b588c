"""A method's result does not depend on which methods ran before it in the same process, so a table run in
pieces (`--methods`) equals the one-command table."""

from click.testing import CliRunner
from safetensors.torch import load_file

from reproduce_helpers import load_script

from seta.data import synthetic_stream, write_trace


def _adapter_tensors(run_dir):
    files = sorted((run_dir / "adapter").rglob("*.safetensors"))
    assert files, f"no adapter weights under {run_dir}"
    return {f"{f.relative_to(run_dir)}:{k}": v for f in files for k, v in load_file(str(f)).items()}


def test_o_lora_alone_equals_o_lora_after_another_method(tmp_path):
    run_all = load_script("run_all", "run_all_isolation")
    data = tmp_path / "stream"
    write_trace(synthetic_stream(seed=0, n_train=8, n_eval=4, n_test=4), data)
    common = ["--quick", "--data-dir", str(data), "--tasks", "C-STANCE,FOMC", "--general-tasks", "", "--no-progress"]
    for out, methods in (("alone", "o-lora"), ("after", "seqft-sparse,o-lora")):
        result = CliRunner().invoke(run_all.main, common + ["--out", str(tmp_path / out), "--methods", methods])
        assert result.exit_code == 0, result.output
    alone = _adapter_tensors(tmp_path / "alone" / "o-lora" / "seed0")
    after = _adapter_tensors(tmp_path / "after" / "o-lora" / "seed0")
    assert alone.keys() == after.keys() and any("task1" in k for k in alone)
    differing = [k for k in alone if not (alone[k] == after[k]).all()]
    assert not differing, f"o-lora's weights depend on the method run before it: {differing[:3]}"
