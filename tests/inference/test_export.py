"""`seta export`: one task's expert as a peft SHiRA adapter that plain peft loads, equal to SETA routed to it."""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from seta.inference.adapter import SetaAdapter
from seta.inference.card import CARD_NAME
from seta.inference.export import export_adapter, export_expert

# runs in a fresh interpreter where `import seta` fails: the folder must load with transformers + peft alone
PLAIN_PEFT = textwrap.dedent("""
    import sys
    sys.modules["seta"] = None  # any import of seta raises ImportError
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM
    base_dir, adapter_dir, io = sys.argv[1:4]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir)
    inputs = load_file(io + "/inputs.safetensors")
    with torch.no_grad():
        logits = model(**inputs).logits
    save_file({"logits": logits.contiguous()}, io + "/logits.safetensors")
    assert not [m for m in sys.modules if m.startswith("seta.")]
""")


@pytest.fixture(scope="module")
def adapter(tiny_adapter):
    return SetaAdapter.load(tiny_adapter["dir"])


def _inputs(adapter):
    enc = adapter.tokenizer(["Stance task: give the author's stance.\nText: ben", "Answer: A"], return_tensors="pt",
                            padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_export_loads_in_plain_peft_and_equals_seta_routed_to_the_task(tiny_adapter, adapter, tmp_path):
    before = _digest(tiny_adapter["dir"])
    out = export_adapter(tiny_adapter["dir"], "C-STANCE", tmp_path / "peft")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "SHIRA"
    inputs = _inputs(adapter)
    save_file(inputs, str(tmp_path / "inputs.safetensors"))
    base_dir = read_base(tiny_adapter)
    proc = subprocess.run([sys.executable, "-c", PLAIN_PEFT, base_dir, str(out), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = load_file(str(tmp_path / "logits.safetensors"))["logits"]
    with torch.no_grad(), adapter.seta.use_expert(adapter.seta.registry.expert(1)):
        want = adapter.seta(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with torch.no_grad(), adapter.seta.no_experts():
        base = adapter.seta(**inputs).logits
    assert (got - base).abs().max() > 1e-3  # the expert is in the adapter
    assert _digest(tiny_adapter["dir"]) == before
    note = json.loads((out / "seta_export.json").read_text())
    assert note["task"] == "C-STANCE" and note["stored_entries"] >= note["block_elements"] > 0


def read_base(tiny_adapter) -> str:
    return json.loads((tiny_adapter["dir"] / CARD_NAME).read_text())["base"]["model"]


def test_export_refuses_a_4bit_base_an_unknown_task_and_a_used_folder(tiny_adapter, tmp_path):
    copy = tmp_path / "adapter"
    shutil.copytree(tiny_adapter["dir"], copy)
    card = json.loads((copy / CARD_NAME).read_text())
    card["base"]["load_in_4bit"] = True
    (copy / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="its base is 4-bit") as err:
        export_adapter(copy, "FOMC", tmp_path / "e")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown task 'X'"):
        export_adapter(tiny_adapter["dir"], "X", tmp_path / "e")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "f").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_adapter(tiny_adapter["dir"], "FOMC", tmp_path / "used")
    assert not (tmp_path / "e").exists()


def test_export_refuses_a_4bit_layer_in_one_line(tok_and_nf4_seta, tmp_path):
    seta = tok_and_nf4_seta
    with pytest.raises(ValueError, match="not a dense nn.Linear") as err:
        export_expert(seta, 0, tmp_path / "e")
    assert "\n" not in str(err.value) and not (tmp_path / "e").exists()


@pytest.fixture
def tok_and_nf4_seta():
    from seta.data import build_tiny_tokenizer
    from seta.models import ExpertConfig, attach_experts, build_tiny_model

    base = build_tiny_model("llama", tokenizer=build_tiny_tokenizer(), seed=0, load_in_4bit=True)
    seta = attach_experts(base, ExpertConfig(block_size=16))
    seta.allocate(0, torch.rand(seta.index.n_blocks), 0.05)
    return seta


def test_the_export_command(tiny_adapter, tmp_path):
    from seta.cli import main

    res = CliRunner().invoke(main, ["export", str(tiny_adapter["dir"]), "--task", "FOMC", "--out", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    assert "PeftModel.from_pretrained" in res.output and (tmp_path / "x" / "adapter_model.safetensors").is_file()
    res = CliRunner().invoke(main, ["export", str(tiny_adapter["dir"]), "--task", "nope", "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and res.output.count("\n") == 1 and res.output.startswith("Error:")
    assert "unknown task 'nope'" in res.output and not (tmp_path / "y").exists()
    (tmp_path / "file").write_text("not a folder")
    res = CliRunner().invoke(main, ["export", str(tiny_adapter["dir"]), "--task", "FOMC", "--out", str(tmp_path / "file" / "z")])
    assert res.exit_code == 2 and "--out" in res.output and "is a file" in res.output
    assert (tmp_path / "file").read_text() == "not a folder"


def test_export_on_smollm2_equals_seta_routed_to_the_task(tmp_path):
    """SmolLM2-135M (fetched assets): random blocks of one expert, exported and loaded with plain peft."""
    from seta.assets import SMOLLM2, default_assets_dir

    folder = default_assets_dir() / "models" / SMOLLM2.folder
    if not folder.is_dir():
        pytest.skip(f"no SmolLM2 under {folder.parent}: run `python reproduce/fetch_assets.py`")
    from peft import PeftModel

    from seta.models import ExpertConfig, attach_experts, load_base_model, load_tokenizer
    from seta.models.fold import folded

    seta = attach_experts(load_base_model(str(folder), dtype="float32"), ExpertConfig(block_size=64))
    torch.manual_seed(0)
    ids = seta.allocate(0, torch.rand(seta.index.n_blocks), 0.01).selected
    seta.set_blocks(ids, 0.02 * torch.randn(ids.numel(), 64, 64))
    out = export_expert(seta, 0, tmp_path / "peft")
    enc = load_tokenizer(str(folder))(["Q: What is the capital of France?\nA:"], return_tensors="pt")
    with torch.no_grad(), seta.use_expert(ids):
        with folded(seta) as n:  # SETA's generation path for one expert on a dense base: W + Δ folded in
            want = seta(**enc).logits
        delta_path = seta(**enc).logits  # W x + Δ x
    plain = PeftModel.from_pretrained(load_base_model(str(folder), dtype="float32"), out)
    with torch.no_grad():
        got = plain(**enc).logits
    assert n > 0
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # (W + Δ) x against W x + Δ x: float32 rounding over 30 layers, as between SETA's own two paths
    torch.testing.assert_close(got, delta_path, atol=1e-4, rtol=0)
