"""Data parallelism: two gloo processes on CPU reach the same weights as one process."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_helpers import SETA, SPARSE, TRAIN

from dataclasses import replace


def _train(out_dir, tasks):
    from seta.data import build_tiny_tokenizer
    from seta.models import build_tiny_model
    from seta.train.loop import ContinualTrainer
    from seta.train.strategies import build_strategy

    torch.manual_seed(0)
    tok = build_tiny_tokenizer()
    strategy = build_strategy("seqft-sparse", build_tiny_model("llama", tokenizer=tok, seed=0), tok, SPARSE, seta=SETA)
    cfg = replace(TRAIN, eval_next_task=False, max_eval_examples=2, grad_accum=2)
    ContinualTrainer(strategy, tasks, cfg, out_dir, progress=False).run(base_scores=[0.0] * len(tasks))
    return strategy.model.get_blocks(strategy.model.allocated_ids()).detach()


def _worker(rank, world, port, out_dir, tasks, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        blocks = _train(out_dir, tasks)
        if rank == 0:
            torch.save(blocks, result_path)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one(tasks, tmp_path):
    tasks = tasks[:2]
    single = _train(tmp_path / "one", tasks)
    mp.spawn(_worker, args=(2, _free_port(), tmp_path / "two", tasks, tmp_path / "two.pt"), nprocs=2, join=True)
    double = torch.load(tmp_path / "two.pt")
    assert single.abs().sum() > 0  # something was trained
    torch.testing.assert_close(double, single, atol=1e-5, rtol=1e-4)
