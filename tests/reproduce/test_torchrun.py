"""torchrun --nproc_per_node 2 reproduce/run_all.py (gloo on CPU) gets the R of one process; rank 0 writes once."""

import json
import os
import subprocess
import sys

import pytest

from reproduce_helpers import ROOT

from seta.data import synthetic_stream, write_trace
from seta.train.metrics import read_metrics

TASKS = "C-STANCE,Py150,20Minuten"  # three tasks of the quick stream the tiny model scores well above 0


def _run(args, out, nproc=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    launch = [sys.executable] if nproc is None else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     "--nproc_per_node", str(nproc)]
    proc = subprocess.run(launch + [str(ROOT / "reproduce" / "run_all.py")] + args + ["--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_get_the_same_R(tmp_path):
    data = tmp_path / "stream"
    write_trace(synthetic_stream(seed=0, n_train=120, n_eval=16, n_test=16), data)  # the --quick stream's sizes
    args = ["--quick", "--methods", "seta,seqft-sparse", "--data-dir", str(data), "--tasks", TASKS, "--no-progress"]
    _run(args, tmp_path / "one")  # also caches the pre-trained tiny base in tmp_path/.cache
    two = _run(args, tmp_path / "two", nproc=2)
    one_s, two_s = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert two_s["tasks"] == TASKS.split(",")
    for method in ("seta", "seqft-sparse"):
        a, b = one_s["methods"][method], two_s["methods"][method]
        assert json.dumps(b["R"]) == json.dumps(a["R"]), method  # the same scores, entry for entry
        assert b["routing_acc"] == a["routing_acc"]
        assert b["config"] == a["config"]
    assert max(v for row in one_s["methods"]["seta"]["R"] for v in row if v is not None) > 50  # not a run of zeros
    assert one_s["methods"]["seta"]["R"] != one_s["methods"]["seqft-sparse"]["R"]
    # rank 0 alone wrote the files: each line once, the step records of one process's run
    assert two.stdout.count("[seed 0] seta ...") == 1 and two.stdout.count("Report in ") == 1
    run_one, run_two = tmp_path / "one" / "seta" / "seed0", tmp_path / "two" / "seta" / "seed0"
    log = (run_two / "train.log").read_text()
    assert all(log.count(f"task {t} (") == 1 for t in range(3))
    steps = [[(r["task"], r["step"]) for r in read_metrics(d) if r["kind"] == "step"] for d in (run_one, run_two)]
    assert steps[1] == steps[0] and len(steps[0]) > 0
