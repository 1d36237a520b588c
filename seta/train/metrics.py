"""The per-run metrics file: one JSON object per line, and the same records as TensorBoard scalars.

    OUT/metrics.jsonl
    {"kind": "step", "step": 12, "task": 0, "task_name": "C-STANCE", "task_step": 12, "lm_loss": 2.31,
     "anchor_penalty": 0.0, "other_penalty": 0.0, "lr": 0.0098, "tokens_per_s": 5120.4,
     "examples_per_s": 210.3, "time": 3.2}
    {"kind": "base", "scores": {"C-STANCE": 12.5, ...}}                      # before any training
    {"kind": "task", "task": 0, "task_name": "C-STANCE", "steps": 15, "mean_lm_loss": ...,
     "blocks": 40, "new": 40, "reused": 0, "split": 0, "per_matrix": {...}, "anchored": 0,
     "gate_acc": 93.8, "gate_acc_per_task": {"C-STANCE": 93.8}, "scores": {"C-STANCE": 40.0, ...}}

``step`` counts optimiser steps over the whole stream (1, 2, ...); ``task_step`` within the task.
``lm_loss`` is the strategy's data term (LwF's includes its distillation); ``anchor_penalty`` is
SETA's elastic anchoring, ``other_penalty`` every other regulariser (EWC, O-LoRA). Throughput is
over the step's global batch (all processes): answer-and-prompt tokens and examples per second.
A ``task`` record holds the strategy's per-task figures (allocation: blocks, new, reused, split,
per matrix; SETA's anchored blocks), the gate's routing accuracy over the evaluations after that
task (overall and per task, null where the method does not route) and the scores R[t][j].

With ``tensorboard=True`` (the ``tensorboard`` extra) the same numbers go to OUT/tensorboard:
``train/<field>`` at the global step, ``task/<field>`` and ``score/<task>`` at the task index.
Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_NAME = "metrics.jsonl"
TB_DIR = "tensorboard"


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class MetricsLog:
    """Appends records to OUT/metrics.jsonl (and TensorBoard); a no-op when ``enabled`` is False."""

    def __init__(self, out_dir, *, enabled: bool = True, tensorboard: bool = False):
        self.path = Path(out_dir) / METRICS_NAME
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError("TensorBoard output needs the tensorboard package: pip install 'seta[tensorboard]'") from err
            self.tb = SummaryWriter(str(Path(out_dir) / TB_DIR))

    def truncate(self, keep_tasks_before: int) -> None:
        """Start afresh (0), or on resume keep only the records of tasks < keep_tasks_before (a task killed
        midway is trained again from its start, so its step records are written again)."""
        if not self.enabled:
            return
        kept = []
        if keep_tasks_before > 0 and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if rec.get("kind") == "base" or rec.get("task", keep_tasks_before) < keep_tasks_before:
                    kept.append(line)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(k + "\n" for k in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        record = _clean(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=False) + "\n")
        if self.tb is not None:
            self._to_tensorboard(record)

    def _to_tensorboard(self, rec: dict) -> None:
        kind = rec.get("kind")
        if kind == "step":
            for k, v in rec.items():
                if k not in ("kind", "step", "task", "task_step") and isinstance(v, (int, float)) and v is not None:
                    self.tb.add_scalar(f"train/{k}", v, rec["step"])
        elif kind in ("task", "base"):
            at = rec.get("task", -1) + 1  # base: 0, after task t: t + 1
            for k, v in rec.items():
                if k not in ("kind", "task") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"task/{k}", v, at)
            for name, v in (rec.get("scores") or {}).items():
                if v is not None:
                    self.tb.add_scalar(f"score/{name}", v, at)
            for name, v in (rec.get("gate_acc_per_task") or {}).items():
                if v is not None:
                    self.tb.add_scalar(f"gate_acc/{name}", v, at)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def read_metrics(path) -> list[dict]:
    """The records of a metrics file (a directory: its metrics.jsonl)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
