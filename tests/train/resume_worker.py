"""A training run in its own process, for the kill-in-the-middle-of-a-task test (not a test file).

    python resume_worker.py OUT [--pause-in-task K]

Trains SETA on the tests' tiny stream into OUT (resuming when OUT has a checkpoint). With
--pause-in-task K it prints PAUSED and sleeps at the first training step of task K, so the test
can SIGKILL it mid-task.
"""

import sys
import time

import torch

from seta.data import build_tiny_tokenizer, synthetic_stream
from seta.models import build_tiny_model
from seta.train.loop import ContinualTrainer
from seta.train.strategies import build_strategy

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from train_helpers import SETA, SPARSE, TRAIN  # noqa: E402


def make_run(out, name="seta"):
    tok = build_tiny_tokenizer()
    tasks = list(synthetic_stream(seed=0, n_train=24, n_eval=6, n_test=6))[:3]
    torch.manual_seed(0)
    strategy = build_strategy(name, build_tiny_model("llama", tokenizer=tok, seed=0), tok, SPARSE, seta=SETA)
    return strategy, ContinualTrainer(strategy, tasks, TRAIN, out, progress=False)


if __name__ == "__main__":
    out = sys.argv[1]
    pause = int(sys.argv[sys.argv.index("--pause-in-task") + 1]) if "--pause-in-task" in sys.argv else None
    strategy, trainer = make_run(out)
    if pause is not None:
        inner = strategy.loss

        def loss(batch, t, n_tokens=None):
            if t == pause:
                print("PAUSED", flush=True)
                time.sleep(600)
            return inner(batch, t, n_tokens)

        strategy.loss = loss
    trainer.run(resume=True)
    print("DONE", flush=True)
