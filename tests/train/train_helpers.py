"""Small settings shared by the training tests."""

from seta.train.config import TrainConfig
from seta.train.gate_training import GateTrainConfig
from seta.train.strategies import SparseConfig

TRAIN = TrainConfig(epochs=(1,), batch_size=8, lr=5e-3, max_new_tokens=4, eval_batch_size=16)
SPARSE = SparseConfig(block_size=16, ratio=0.05, probe_batches=2, fisher_batches=2, gate=GateTrainConfig(steps=10))
