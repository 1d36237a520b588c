"""Experience replay on the sparse-block adapter: seqft-sparse whose task-t data also holds a
small buffer of raw examples of earlier tasks (a fixed fraction of each earlier task's training
set, drawn once with the run's seed)."""

from __future__ import annotations

import random

from seta.train.strategies.sparse import SparseBlocks


class Replay(SparseBlocks):
    name = "replay"
    buffer_fraction = 0.02  # 1-2% of earlier raw examples, as in the protocol

    def train_examples(self, t, tasks):
        seed = self.loop_cfg.seed if getattr(self, "loop_cfg", None) else 0
        buffer = []
        for j in range(t):
            train = list(tasks[j].train)
            n = max(1, round(self.buffer_fraction * len(train)))
            buffer += random.Random(seed * 7 + j).sample(train, n)
        return list(tasks[t].train) + buffer
