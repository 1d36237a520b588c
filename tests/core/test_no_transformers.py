"""seta.core imports and works in a process where transformers, datasets, peft, bitsandbytes and
accelerate cannot be imported, and it pulls in no other seta layer."""

import json
import subprocess
import sys

CHILD = r'''
import importlib, importlib.abc, json, pkgutil, sys

BLOCKED = {"transformers", "datasets", "peft", "bitsandbytes", "accelerate"}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
for name in BLOCKED:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"blocker failed: {name} imported")

import torch
import seta.core

mods = sorted(m.name for m in pkgutil.iter_modules(seta.core.__path__, "seta.core."))
for m in mods:
    importlib.import_module(m)

calls = []
if "seta.core.blocks" in mods:
    from seta.core.blocks import BlockGrid
    grid = BlockGrid(5, 3, 2)
    assert int(grid.numels().sum()) == 15
    calls.append("blocks")
    if "seta.core.sensitivity" in mods:
        from seta.core.sensitivity import block_fisher_scores
        assert block_fisher_scores(torch.ones(4, 3), torch.ones(4, 5), grid).shape == (grid.n_blocks,)
        calls.append("sensitivity")
if "seta.core.allocation" in mods:
    from seta.core.allocation import budget
    assert budget(100, 0.01) == 1
    calls.append("allocation")
if "seta.core.anchoring" in mods:
    from seta.core.anchoring import elastic_anchor_penalty
    assert float(elastic_anchor_penalty(torch.ones(2, 2, 2), torch.zeros(2, 2, 2), torch.ones(2, 2, 2), torch.ones(2))) == 4.0
    calls.append("anchoring")
if "seta.core.routing_stats" in mods:
    from seta.core.routing_stats import FeatureStats
    assert FeatureStats(3).update(torch.randn(10, 3)).n == 10
    calls.append("routing_stats")
if "seta.core.metrics" in mods:
    from seta.core.metrics import backward_transfer
    assert backward_transfer([[1.0, 0.0], [0.5, 1.0]]) == -0.5
    calls.append("metrics")

leaked = sorted(k for k in sys.modules if k.split(".")[0] in BLOCKED)
upper = sorted(k for k in sys.modules if k.startswith("seta.") and not k.startswith("seta.core"))
print(json.dumps({"modules": mods, "calls": calls, "leaked": leaked, "upper": upper}))
'''


def test_core_works_without_transformers_and_upper_layers():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["leaked"] == [] and report["upper"] == []
    for name in ("blocks", "sensitivity", "anchoring", "routing_stats", "metrics"):
        assert f"seta.core.{name}" in report["modules"]
        assert name in report["calls"]
