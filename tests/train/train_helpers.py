"""Small settings shared by the training tests, and bit-exact comparison of checkpoints."""

import torch

from seta.train.checkpoint import load_checkpoint
from seta.train.config import TrainConfig
from seta.train.gate_training import GateTrainConfig
from seta.train.strategies import SetaOwnConfig, SparseConfig

TRAIN = TrainConfig(epochs=(1,), batch_size=8, lr=5e-3, max_new_tokens=4, eval_batch_size=16)
SPARSE = SparseConfig(block_size=16, ratio=0.05, probe_batches=2, fisher_batches=2)
SETA = SetaOwnConfig(gate=GateTrainConfig(steps=10))  # SETA's own settings (the other methods ignore them)


def assert_same_state(a, b, where="state"):
    """Every tensor equal bit for bit (same dtype and shape), every other value equal (NaN == NaN)."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max |diff| {(a.double() - b.double()).abs().max().item()}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_checkpoint(path_a, path_b):
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    a.pop("wall_s"), b.pop("wall_s")
    assert_same_state(a, b)
