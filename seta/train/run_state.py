"""A run's state on disk: the checkpoint after every task, and what a resume continues from.

The checkpoint (out_dir/checkpoint.safetensors; atomic, safetensors + JSON, never pickled:
`seta.train.checkpoint`) holds everything the loop needs to go on: the resumed run's every tensor
(blocks in stack order, Fisher, anchors, gate, RNG) and R equal an uninterrupted run's bit for bit
(same seed, CPU). A resume first checks that the checkpoint belongs to this run (method and settings,
TrainConfig, tasks, a hash of the data, a fingerprint of the base model: `seta.train.fingerprint`) and
refuses, naming the differing fields, unless forced. A kill mid-task resumes from the last finished
task. The functions take the `seta.train.loop.ContinualTrainer` whose run it is.
"""

from __future__ import annotations

import json
import logging

from seta.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from seta.train.fingerprint import identity_diff

__all__ = ["CHECKPOINT_NAME", "CONFIG_NAME", "LEGACY_CHECKPOINT_NAME", "ResumeMismatchError", "resume_state",
           "restore_state", "save_state"]

log = logging.getLogger("seta.train")


CHECKPOINT_NAME = "checkpoint.safetensors"
CONFIG_NAME = "config.json"
LEGACY_CHECKPOINT_NAME = "checkpoint.pt"  # pickled, written by seta before checkpoint format 2; never opened


class ResumeMismatchError(ValueError):
    """The checkpoint found by a resume belongs to another run (other settings, data or base model)."""


def resume_state(trainer, force: bool = False) -> dict | None:
    """The checkpoint a resume of `trainer` (a `seta.train.loop.ContinualTrainer`) would continue from
    (None if there is none), checked against the run: ResumeMismatchError lists what differs, unless
    `force`. A pickled checkpoint of an older seta is refused, never opened."""
    if not trainer.ckpt_path.exists():
        legacy = trainer.out / LEGACY_CHECKPOINT_NAME
        if legacy.exists():
            raise CheckpointError(
                f"{legacy} is a pickled checkpoint of an older seta and is not opened (unpickling can run "
                "code); delete it and run without --resume to start afresh")
        return None
    ck = load_checkpoint(trainer.ckpt_path)
    if not force:
        saved = json.loads(ck.get("identity", "{}"))
        diff = identity_diff(saved, trainer._identity or trainer.identity())
        if diff:
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise ResumeMismatchError(
                f"{trainer.ckpt_path} belongs to another run, not resumed; differing: {shown}. Rerun with the "
                "settings, data and base model it was written with, start afresh in another output folder, "
                "or pass --resume-force (force_resume=True) to resume anyway")
    return ck


def restore_state(trainer, ck: dict) -> tuple[list, int, float, list | None]:
    """Load checkpoint `ck` into `trainer`: the strategy's state, the task log, the routing log and the RNG
    states. Returns (R, the next task, the wall time so far, the base scores)."""
    trainer.strategy.load_state_dict(ck["strategy"])
    R, start, elapsed, base_scores = ck["R"], ck["next_task"], ck["wall_s"], ck["base_scores"]
    trainer.task_log = {int(k): v for k, v in ck.get("task_log", {}).items()}
    true, pred = ck["routing"]
    trainer.strategy.routing_log.true, trainer.strategy.routing_log.pred = list(true), list(pred)
    set_rng_state(ck["rng"])
    log.info("resumed from %s: tasks 0..%d done", trainer.ckpt_path, start - 1)
    return R, start, elapsed, base_scores


def save_state(trainer, R, next_task: int, wall_s: float, base_scores) -> None:
    """Checkpoint `trainer`'s run after task next_task - 1 (rank 0 only): the strategy's state, R, the
    wall time so far, the base scores, the RNG states, the routing log, the task log and the identity."""
    if trainer.rank != 0:
        return
    rl = trainer.strategy.routing_log
    save_checkpoint(
        {"strategy": trainer.strategy.state_dict(), "R": R, "next_task": next_task, "wall_s": wall_s,
         "base_scores": base_scores, "rng": rng_state(), "routing": (list(rl.true), list(rl.pred)),
         "task_log": trainer.task_log, "identity": json.dumps(trainer._identity or trainer.identity(), sort_keys=True)},
        trainer.ckpt_path,
    )
