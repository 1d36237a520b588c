"""Data parallelism on torch.distributed (launched with torchrun; gloo on CPU, nccl on GPU).

Each process takes a contiguous shard of every global micro-batch; the loss of
each process is its summed answer-token loss divided by the *global* token
count, so summing gradients over processes (all_reduce SUM) gives exactly the
gradient of the single-process run on the whole batch.

Everything else is replicated: every process holds the whole model and runs the same probes,
Fisher estimates and gate training on the same data (deterministic, so they stay equal). Rank 0
alone evaluates (the scores are broadcast) and writes files: checkpoints, logs, metrics, adapters,
results and reports.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside torchrun."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Initialise the process group if launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on GPU,
    from torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and LOCAL_RANK. The collective timeout is
    SETA_DIST_TIMEOUT_MIN minutes (default 240: the other ranks wait while rank 0 evaluates)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    from datetime import timedelta

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    minutes = float(os.environ.get("SETA_DIST_TIMEOUT_MIN", "240"))
    dist.init_process_group(backend, timeout=timedelta(minutes=minutes))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def shard(items: list, rank: int, world_size: int) -> list:
    """Contiguous shard of a global micro-batch for this rank."""
    n = len(items)
    lo, hi = n * rank // world_size, n * (rank + 1) // world_size
    return items[lo:hi]


def global_sum(value: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def sum_gradients(params) -> None:
    """∇ ← Σ_ranks ∇ for every parameter with a gradient (no-op in one process)."""
    if not is_distributed():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def broadcast_object(obj, src: int = 0):
    """`obj` of rank `src` on every rank (picklable plain data; returned as is in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (a no-op outside torchrun)."""
    if is_distributed():
        dist.destroy_process_group()
