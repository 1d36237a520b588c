"""The two examples in examples/ run end to end on the tiny model and leave an adapter that loads."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["train_loop.py", "hf_trainer.py"])
def test_example_trains_two_tasks_and_saves_a_loadable_adapter(script, tmp_path, tok):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "adapter"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--out", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = [line for line in proc.stdout.splitlines() if line.startswith("[")][-1]
    assert len(ast.literal_eval(answers)) == 2  # one generated answer per task's test prompt
    method = json.loads((out / "seta_method.json").read_text())
    assert method["tasks"] == {"FOMC": 0, "C-STANCE": 1}
    from api_helpers import fresh_base
    from seta import SetaContinualModel

    loaded = SetaContinualModel.from_pretrained(fresh_base(tok), out, tokenizer=tok)
    assert loaded.experts.router.tasks == [0, 1] and loaded.experts.registry.allocated().numel() > 0
    if script == "train_loop.py":
        assert proc.stdout.count("trainable params: ") == 2
