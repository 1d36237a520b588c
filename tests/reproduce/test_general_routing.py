"""reproduce/general_routing.py: where the gate sends general-ability prompts, on the tiny adapter."""

import math
import sys

import pytest

from reproduce_helpers import ROOT, load_script

sys.path.insert(0, str(ROOT / "tests" / "eval"))
from harness_data import write_general_ability_fixture  # noqa: E402

pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def setup(tiny_adapter, tmp_path_factory):
    from seta.inference.adapter import SetaAdapter

    general = tmp_path_factory.mktemp("general")
    write_general_ability_fixture(general)
    return SetaAdapter.load(tiny_adapter["dir"]), general


def _shares(adapter, general, thresholds):
    script = load_script("general_routing")
    router = adapter.seta.router
    saved = dict(router.thresholds)
    router.thresholds.update({t: thresholds for t in router.tasks})
    try:
        return script.route_shares(adapter, general, ["mmlu", "piqa"], limit=None, batch_size=4, max_gen_toks=4)
    finally:
        router.thresholds.clear()
        router.thresholds.update(saved)


def test_null_rows_are_answered_by_the_base_and_shares_add_up(setup):
    from seta.eval.harness import general_ability_details

    adapter, general = setup
    everything_null = _shares(adapter, general, -1.0)  # every prompt is farther than -1 from every task
    base = general_ability_details(adapter.seta, adapter.tokenizer, general, ["mmlu", "piqa"], batch_size=4)
    for bench in ("mmlu", "piqa"):
        assert everything_null[bench]["shares"] == {"null": 100.0} and everything_null[bench]["rows"] > 0
        assert everything_null[bench]["score"] == pytest.approx(base[bench].score)
    none_null = _shares(adapter, general, math.inf)
    for bench, r in none_null.items():
        assert "null" not in r["shares"] and set(r["shares"]) <= set(adapter.tasks)
        assert sum(r["shares"].values()) == pytest.approx(100.0)
        assert r["rows"] == everything_null[bench]["rows"]  # the same forwards, routed differently
    table = load_script("general_routing").markdown(none_null, adapter.tasks)
    assert table.splitlines()[0] == "| Benchmark | Score | Rows | null | FOMC | C-STANCE |"
    assert table.splitlines()[2].startswith("| mmlu | ") and "| 0% |" in table.splitlines()[2]
