"""lm-eval's `--model seta --model_args adapter=DIR`: the saved adapter scores with SETA's routing, equal to
the RoutedLM path of `seta run`'s general-ability measurement (the trained strategy, routed by its own route)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(tiny_adapter):
    """RoutedLM over the Seta strategy of the adapter's run, restored from its final checkpoint and routed by
    `seta.inference.routed.strategy_route` (what `seta run --general-data` does after training)."""
    from transformers import AutoModelForCausalLM

    from seta.eval.harness import RoutedLM
    from seta.inference.card import card_configs, read_card
    from seta.inference.routed import strategy_route
    from seta.models import load_tokenizer
    from seta.train.checkpoint import load_checkpoint
    from seta.train.strategies import build_strategy

    card = read_card(tiny_adapter["dir"])
    sparse, seta_cfg = card_configs(card)
    base = AutoModelForCausalLM.from_pretrained(card["base"]["model"], dtype="float32")
    tok = load_tokenizer(card["base"]["tokenizer"])
    strategy = build_strategy("seta", base, tok, sparse, seta=seta_cfg)
    strategy.load_state_dict(load_checkpoint(tiny_adapter["run"] / "checkpoint.safetensors")["strategy"])
    strategy.model.eval()
    route, clear = strategy_route(strategy)
    return {"lm": RoutedLM(strategy.model, tok, route=route, clear=clear, batch_size=4, progress=False),
            "base": RoutedLM(strategy.model, tok, route=lambda i, m: strategy.model.clear_route(), batch_size=4,
                             progress=False)}


def _requests(tiny_tasks):
    pairs = [(e.prompt, " " + e.answer) for t in tiny_tasks for e in list(t.test)[:6]]
    pairs += [("The weather today is", " sunny and warm."), ("Once upon a time", " there was a king.")]
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


def test_the_registered_model_scores_like_the_routed_strategy(tiny_adapter, tiny_tasks, reference):
    from lm_eval.api.registry import get_model

    import seta.inference.harness_model  # noqa: F401  (registers "seta")

    lm = get_model("seta").create_from_arg_string(f"adapter={tiny_adapter['dir']}", {"batch_size": "4", "device": None})
    reqs = _requests(tiny_tasks)
    got, want = lm.loglikelihood(reqs, disable_tqdm=True), reference["lm"].loglikelihood(reqs, disable_tqdm=True)
    assert [g[1] for g in got] == [w[1] for w in want]
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-5)
    base = reference["base"].loglikelihood(reqs, disable_tqdm=True)
    assert max(abs(g[0] - b[0]) for g, b in zip(got, base)) > 1e-2  # the routing acts: not the base model's scores
    forced = get_model("seta").create_from_arg_string(f"adapter={tiny_adapter['dir']},task=FOMC")
    assert forced.loglikelihood(reqs, disable_tqdm=True) != got  # task=FOMC: every prompt to FOMC's expert
    with pytest.raises(ValueError, match="adapter=DIR"):
        get_model("seta").create_from_arg_string("")
    with pytest.raises(ValueError, match="unknown model_args"):
        get_model("seta").create_from_arg_string(f"adapter={tiny_adapter['dir']},adaptr=x")


@pytest.mark.slow
def test_the_lm_eval_command_line_with_model_seta(tiny_adapter, tiny_tasks, reference, tmp_path):
    """lm-eval's own CLI (`seta-lm-eval` = `python -m seta.inference.harness_model`) on a local task file:
    the per-sample log-likelihoods it logs are RoutedLM's."""
    docs = [{"goal": e.prompt, "sol1": " " + e.answer, "sol2": " " + o.answer}
            for e, o in zip(list(tiny_tasks[0].test)[:4], list(tiny_tasks[1].test)[:4])]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "seta_tiny.yaml").write_text(
        "task: seta_tiny\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    validation: {tmp_path / 'docs.jsonl'}\nvalidation_split: validation\noutput_type: multiple_choice\n"
        "doc_to_text: '{{goal}}'\ndoc_to_target: 0\ndoc_to_choice: '{{[sol1, sol2]}}'\ntarget_delimiter: ''\n"
        "metric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "seta.inference.harness_model", "--model", "seta", "--model_args",
           f"adapter={tiny_adapter['dir']}", "--tasks", "seta_tiny", "--include_path", str(tmp_path / "tasks"),
           "--batch_size", "4", "--output_path", str(tmp_path / "out"), "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "seta_tiny" in proc.stdout and "acc" in proc.stdout
    samples = [json.loads(line) for p in (tmp_path / "out").rglob("samples_seta_tiny_*.jsonl")
               for line in p.read_text().splitlines()]
    assert len(samples) == len(docs)
    got, pairs = [], []
    for s in samples:
        for arg, resp in zip(s["arguments"].values(), s["resps"]):
            pairs.append((arg["arg_0"], arg["arg_1"]))
            got.append(float(resp[0][0]))
    want = reference["lm"].loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)],
                                         disable_tqdm=True)
    assert got == pytest.approx([w[0] for w in want], abs=1e-4)


def test_the_entry_point_names_the_model_class():
    """pyproject declares `seta` in lm-eval's plugin group; the entry point loads to the registered class."""
    import importlib.metadata as md
    import tomllib

    from lm_eval.api.registry import get_model

    import seta.inference.harness_model as plugin

    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]
    assert md.EntryPoint("seta", eps["seta"], "lm_eval.models").load() is plugin.SetaLM is get_model("seta")
