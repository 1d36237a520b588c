"""Resume: only the run a checkpoint belongs to, bit for bit, from files that cannot run code."""

import json
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from seta.data import Example, Task
from seta.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seta.train.loop import CHECKPOINT_NAME, ContinualTrainer, ResumeMismatchError
from seta.train.strategies import build_strategy

from train_helpers import SETA, SPARSE, TRAIN, assert_same_checkpoint, assert_same_state

HERE = Path(__file__).resolve().parent


def _trainer(make_base, tok, tasks, out, name="seqft-sparse", cfg=TRAIN, other_base=False):
    base = make_base()
    if other_base:  # e.g. another fine-tune of the same architecture: one weight of a middle layer differs
        with torch.no_grad():
            base.model.layers[1].mlp.up_proj.weight.view(-1)[::97] += 1e-3
    return ContinualTrainer(build_strategy(name, base, tok, SPARSE, seta=SETA), tasks, cfg, out, progress=False)


def test_kill_in_the_middle_of_a_task_then_resume_is_bit_exact(make_base, tok, tasks, tmp_path):
    """SIGKILL during task 2's training (a real process); the resume restarts task 2 from the checkpoint
    of task 1 and ends with every saved tensor equal to an uninterrupted run's."""
    ref = ContinualTrainer(build_strategy("seta", make_base(), tok, SPARSE, seta=SETA), tasks, TRAIN, tmp_path / "ref", progress=False)
    full = ref.run()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the reference's threads: the same summation order
    proc = subprocess.Popen([sys.executable, str(HERE / "resume_worker.py"), str(tmp_path / "cut"), "--pause-in-task", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.strip() == "PAUSED":
                break
        else:
            pytest.fail("the worker ended before pausing in task 1")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["next_task"] == 1
    strategy = build_strategy("seta", make_base(), tok, SPARSE, seta=SETA)
    resumed = ContinualTrainer(strategy, tasks, TRAIN, tmp_path / "cut", progress=False).run(resume=True)
    assert_same_checkpoint(tmp_path / "ref" / CHECKPOINT_NAME, tmp_path / "cut" / CHECKPOINT_NAME)
    assert json.dumps(resumed.R) == json.dumps(full.R)
    stack_order = [layer.local_ids.tolist() for layer in strategy.model.layers.values()]
    assert stack_order == [layer.local_ids.tolist() for layer in ref.strategy.model.layers.values()]


def test_resume_refuses_a_checkpoint_of_another_run(make_base, tok, tasks, tmp_path):
    two = tasks[:2]
    _trainer(make_base, tok, two, tmp_path).run(stop_after=1)
    saved_config = (tmp_path / "train_config.json").read_text()
    other = [replace(two[0], train=two[0].train[:-1] + (Example("another prompt", "x"),)), two[1]]
    cases = [
        (dict(tasks=other), "data of C-STANCE (train)"),
        (dict(cfg=replace(TRAIN, lr=1e-4)), "train_config.lr"),
        (dict(cfg=replace(TRAIN, seed=1)), "train_config.seed"),
        (dict(name="ewc"), "method"),
        (dict(other_base=True), "base model weights"),
        (dict(tasks=[two[1], two[0]]), "tasks"),
    ]
    for change, field in cases:
        kw = {"tasks": two, **change}
        trainer = _trainer(make_base, tok, kw.pop("tasks"), tmp_path, **kw)
        with pytest.raises(ResumeMismatchError, match="--resume-force") as err:
            trainer.run(resume=True)
        assert field in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "train_config.json").read_text() == saved_config  # nothing rewritten by a refused resume
    res = _trainer(make_base, tok, other, tmp_path).run(resume=True, force_resume=True)
    assert len(res.R) == 2 and res.R[1][1] == res.R[1][1]  # forced: the second task was trained and scored


def test_resume_reuses_the_stored_base_scores(make_base, tok, tasks, tmp_path):
    _trainer(make_base, tok, tasks[:2], tmp_path).run(stop_after=1)
    trainer = _trainer(make_base, tok, tasks[:2], tmp_path)
    trainer.evaluate_base = lambda: pytest.fail("the base was evaluated again on resume")
    res = trainer.run(resume=True)
    assert res.base_scores == load_checkpoint(tmp_path / CHECKPOINT_NAME)["base_scores"]


class _Payload:
    """Unpickling this creates a file: the planted code that must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name, writer", [(CHECKPOINT_NAME, "torch"), (CHECKPOINT_NAME, "pickle"),
                                          ("checkpoint.pt", "torch")])
def test_a_planted_pickle_is_refused_and_never_runs(make_base, tok, tasks, tmp_path, name, writer):
    marker = tmp_path / "pwned"
    payload = {"strategy": _Payload(marker), "next_task": 1}
    if writer == "torch":
        torch.save(payload, tmp_path / name)
    else:
        (tmp_path / name).write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="run code"):
        _trainer(make_base, tok, tasks[:2], tmp_path).run(resume=True)
    if name == CHECKPOINT_NAME:
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_checkpoint_round_trip_keeps_types_and_tensors(tmp_path):
    state = {"R": [[1.5, float("nan")], [float("inf"), 0.0]], "tuple": (1, "a", None, True), 3: {"__x": 1},
             "t": torch.arange(6, dtype=torch.bfloat16).view(2, 3), "empty": torch.zeros(0, 4, 4),
             "same": [torch.ones(2)] * 2}
    save_checkpoint(state, tmp_path / "c.safetensors")
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert_same_state(state, back)
    with pytest.raises(TypeError, match="plain data"):
        save_checkpoint({"x": object()}, tmp_path / "d.safetensors")


def test_partial_checkpoint_files_are_removed_on_the_next_start(make_base, tok, tasks, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / f"{CHECKPOINT_NAME}.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)  # what a SIGKILL during a checkpoint write leaves
    _trainer(make_base, tok, tasks[:2], tmp_path).run(stop_after=1)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
