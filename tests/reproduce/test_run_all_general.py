"""run_all --general-data: the method's routing inside the lm-eval forward, results and table."""

import json
import sys

import pytest
import torch

from reproduce_helpers import ROOT  # noqa: E402
sys.path.insert(0, str(ROOT / "tests" / "eval"))
from harness_data import write_general_ability_fixture  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from seta.data import build_tiny_tokenizer  # noqa: E402
from seta.eval.harness import RoutedLM, load_general_data  # noqa: E402
from seta.experiment.presets import PRESETS  # noqa: E402
from seta.experiment.results import general_table  # noqa: E402
from seta.inference.routed import general_ability, strategy_route  # noqa: E402
from seta.models import build_tiny_model  # noqa: E402
from seta.train.strategies import SparseConfig, build_strategy  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture
def strategy(tok):
    """seqft-sparse on a tiny Llama with 12 large random blocks: its route (every block on) changes the model."""
    s = build_strategy("seqft-sparse", build_tiny_model(tokenizer=tok, seed=0), tok, SparseConfig(block_size=16))
    ids = s.model.add_blocks(torch.arange(0, 48, 4))
    torch.manual_seed(0)
    s.model.set_blocks(ids, torch.randn(len(ids), 16, 16))
    return s


def test_strategy_route_is_inside_the_forward_and_cleared_after(strategy, tok):
    reqs = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in
            enumerate([("Q: red cat\nA:", " blue"), ("hello", " world of trees"), ("Answer:", " A")])]
    calls = []
    route, clear = strategy_route(strategy)
    inner = strategy.route
    strategy.route = lambda inputs, t: (calls.append((sorted(inputs), t)), inner(inputs, t))[1]
    routed = RoutedLM(strategy.model, tok, route=route, clear=clear, progress=False).loglikelihood(reqs, disable_tqdm=True)
    assert calls and all(c == (["attention_mask", "input_ids"], -1) for c in calls)  # no task id
    base = RoutedLM(strategy.model, tok, progress=False).loglikelihood(reqs, disable_tqdm=True)  # cleared: the base
    strategy.model.set_expert(strategy.model.allocated_ids())
    always = RoutedLM(strategy.model, tok, progress=False).loglikelihood(reqs, disable_tqdm=True)
    strategy.model.clear_route()
    torch.testing.assert_close(torch.tensor([x for x, _ in routed]), torch.tensor([x for x, _ in always]))
    assert all(abs(r[0] - b[0]) > 1e-3 for r, b in zip(routed, base))


def test_general_ability_results_and_table(strategy, tok, tmp_path):
    write_general_ability_fixture(tmp_path)
    data = load_general_data(tmp_path, ("mmlu", "piqa"), limit=2)
    cfg = PRESETS["tiny"]
    after = general_ability(strategy.model, tok, data, cfg, False, strategy)
    base = general_ability(build_tiny_model(tokenizer=tok, seed=0), tok, data, cfg, False)
    for res in (after, base):
        assert set(res) == {"mmlu", "piqa"} and json.loads(json.dumps(res)) == res
        assert res["mmlu"]["metric"] == "acc" and res["mmlu"]["n"] == 2 and res["piqa"]["n"] == 2
        assert 0 <= res["piqa"]["score"] <= 100 and "acc" in res["piqa"]
    harness = {"tasks": ["mmlu", "piqa"], "num_fewshot": {"mmlu": 5, "piqa": 0}, "base": [base],
               "after": {"seqft-sparse": [after, after]}}
    table = general_table(harness).splitlines()
    assert "| Model | MMLU acc (n=2) | PIQA acc_norm (n=2) |" in table
    assert f"| base | {base['mmlu']['score']:.1f} | {base['piqa']['score']:.1f} |" in table
    assert f"| seqft-sparse | {after['mmlu']['score']:.1f} | {after['piqa']['score']:.1f} |" in table
