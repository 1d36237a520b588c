"""Shared helpers for the benchmark scripts (not part of the seta package).

Every script measures its contenders side by side in ONE process, interleaving their repeats
(A B A B ...) so that load from other processes on a shared machine hits both alike, and prints
medians and ratios. Absolute times depend on the machine; the ratios are the figures of record.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager

import torch

# Measure the seta of THIS checkout: `python benchmarks/x.py` puts benchmarks/ first on sys.path, not the
# repository root, so an editable install of another checkout would otherwise be imported instead.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path[:2]:
    sys.path.insert(1, ROOT)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# A mid-sized Llama (hidden 512, 4 layers) so the adapter's cost is visible next to the base's.
MID_LLAMA = dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=8, max_position_embeddings=2048)
MID_VOCAB = 4096


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:0 ...")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                        help="dtype of the base weights (non-4-bit) and of the trainable adapters")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up iterations per contender")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per contender (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def setup(args) -> torch.device:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was asked for but torch sees no GPU; rerun with --device cpu")
    return device


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    seta_dir = os.path.dirname(os.path.dirname(sys.modules["seta"].__file__)) if "seta" in sys.modules else "?"
    return (f"CPU {cpu}, {torch.get_num_threads()} torch thread(s); {gpu}; torch {torch.__version__}; "
            f"python {platform.python_version()}; seta from {seta_dir}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_timing(fns: dict, device, warmup: int, repeats: int, cpu: dict | None = None) -> dict[str, list[float]]:
    """Run each callable `warmup` times, then `repeats` rounds of one call each (interleaved, the order
    reversed every other round, so that a drift of the machine's speed within a round weighs on every
    callable alike); returns name -> list of wall-clock seconds, in round order. If `cpu` is a dict, it
    receives name -> list of this process's CPU seconds for the same calls (on a shared CPU machine,
    time spent descheduled by other jobs does not count there; on a GPU it means nothing)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    if cpu is not None:
        cpu.update({name: [] for name in fns})
    for r in range(repeats):
        for name in round_order(fns, r):
            fn = fns[name]
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu[name].append(time.process_time() - c0)
    return times


def round_order(names, r: int) -> list:
    """The contenders' order in round r: as given in even rounds, reversed in odd ones."""
    names = list(names)
    return names if r % 2 == 0 else names[::-1]


def med(xs) -> float:
    return statistics.median(xs)


def paired_ratio(times: dict, name: str, ref: str = "base") -> float:
    """Median over rounds of times[name][r] / times[ref][r]: each call against the reference's call of
    the same round (`interleaved_timing`), robust where the machine's speed drifts between rounds
    (on a shared VM process CPU time of one computation was seen to vary 2x within minutes)."""
    return med([a / b for a, b in zip(times[name], times[ref])])


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:9.2f} MiB"


@contextmanager
def saved_tensor_bytes(exclude_ptrs: set[int]):
    """Count the bytes of the unique tensor storages autograd saves for backward inside the block.

    Storages whose data pointer is in `exclude_ptrs` (the model's own parameters and buffers,
    which exist anyway) are not counted. Yields a dict; its 'bytes' is filled on exit.
    """
    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr not in exclude_ptrs and ptr not in seen:
                seen[ptr] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses without storage
            pass
        return t

    out = {"bytes": 0}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield out
    out["bytes"] = sum(seen.values())


def storage_ptrs(module: torch.nn.Module) -> set[int]:
    ptrs = set()
    for t in list(module.parameters()) + list(module.buffers()):
        try:
            ptrs.add(t.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError):
            pass
    return ptrs


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total


def synthetic_batch(vocab: int, batch: int, seq: int, device, seed: int = 0) -> dict:
    """Random token ids; labels = inputs with the first half (the 'prompt') masked out (-100)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    labels = ids.clone()
    labels[:, : seq // 2] = -100
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}
