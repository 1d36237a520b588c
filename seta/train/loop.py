"""The continual loop: for each task, before-task step, training, after-task step, evaluation.

One row of R per task (R[i][j] = score on task j after training through task i,
0-based here), a checkpoint after every task (atomic, safetensors + JSON, never pickled),
resumable with ``resume=True``: the resumed run's every tensor and R equal an uninterrupted run's bit
for bit (same seed, CPU); a resume first checks that the checkpoint belongs to this run and refuses,
naming the differing fields, unless ``force_resume=True``. The checkpoint, its check and its restore
are in `seta.train.run_state`; one task's optimiser loop in `seta.train.train_task.TaskTraining`.

Files in out_dir: checkpoint.safetensors, config.json (the resolved config: method, its settings,
TrainConfig, the caller's meta; the part of the identity a resume compares first), train_config.json,
train.log, metrics.jsonl (one record per optimiser step and per task: `seta.train.metrics`) and,
with ``tensorboard=True``, tensorboard/. Under torchrun rank 0 alone evaluates and writes them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path


from seta.data import encode_answer, encode_prompt
from seta.eval.generate import generate
from seta.eval.scorers import score
from seta.train import distributed as dist
from seta.models import max_positions
from seta.train.batching import batches_of, encode_examples, prompt_cap
from seta.train import run_state
from seta.train.checkpoint import remove_stale_temp_files, seed_everything
from seta.train.config import TrainConfig, save_json
from seta.train.fingerprint import run_config, run_identity
from seta.train.memory import PeakMemory
from seta.train.metrics import MetricsLog
from seta.train.result import RunResult
from seta.train.run_state import CHECKPOINT_NAME, CONFIG_NAME, LEGACY_CHECKPOINT_NAME, ResumeMismatchError  # noqa: F401
from seta.train.schedule import (ANSWER_BUDGET_FACTOR, ANSWER_BUDGET_SLACK, answer_budget, answer_delimiter,
                                 cosine_lr_factor)
from seta.train.strategies.base import Strategy
from seta.train.train_task import NonFiniteLossError, TaskTraining

__all__ = ["ContinualTrainer", "RunResult", "NonFiniteLossError", "ResumeMismatchError", "cosine_lr_factor",
           "answer_budget", "ANSWER_BUDGET_FACTOR", "ANSWER_BUDGET_SLACK", "CHECKPOINT_NAME", "CONFIG_NAME"]

log = logging.getLogger("seta.train")


class ContinualTrainer(TaskTraining):
    """Runs one strategy over a stream of tasks.

    tasks: list of seta.data Task (name, metric, train/eval/test lists of Example).
    out_dir: where the log, checkpoints and the adapter go.
    """

    def __init__(self, strategy: Strategy, tasks: list, config: TrainConfig, out_dir, *, progress: bool = True,
                 meta: dict | None = None, metrics: bool = True, tensorboard: bool = False):
        """meta: JSON-ready facts about the run beyond the strategy, config, tasks, data and base model
        (e.g. {"preset": "tiny"}); they are part of the resolved config and of the identity that a resume
        checks. metrics: write out_dir/metrics.jsonl; tensorboard: the same records to out_dir/tensorboard
        (needs the tensorboard package)."""
        if not tasks:
            raise ValueError("the stream has no tasks")
        self.strategy = strategy
        cap = config.max_train_examples  # the first `cap` training examples of each task (None: all)
        self.tasks = [replace(task, train=tuple(task.train)[:cap]) if cap else task for task in tasks]
        self.cfg = config
        self.out = Path(out_dir)
        self.meta = dict(meta or {})
        self.joint = strategy.joint  # MTL: one training stage on every task, only the final row of R
        self.max_positions = max_positions(strategy.model)
        self._budgets: dict[int, int] = {}
        self.prompt_cap = prompt_cap(  # evaluation: prompt + the largest task's answer budget fit the model
            config, self.max_positions, max(self.max_new_tokens(j) for j in range(len(self.tasks))))
        strategy.bind(self.tasks, replace(config, max_prompt_len=self.prompt_cap))
        self.progress = progress
        self.rank, self.world = dist.world()
        self.ckpt_path = self.out / CHECKPOINT_NAME
        self.task_log: dict[int, dict] = {}  # task -> LM loss and penalty of its training (see _train_task)
        self._encoded: tuple[int, list[dict]] | None = None  # the current task's encoded training examples
        self._identity: dict | None = None  # run_identity, taken when run() starts
        self.metrics = MetricsLog(self.out, enabled=metrics and self.rank == 0, tensorboard=tensorboard)
        self._global_step = 0  # optimiser steps over the stream so far (the metrics' "step")

    # ------------------------------------------------------------------ data
    def _epoch_batches(self, examples: list, t: int, epoch: int) -> list[list[dict]]:
        order = list(range(len(examples)))
        random.Random(self.cfg.seed * 1_000_003 + t * 1009 + epoch).shuffle(order)
        return [
            [examples[i] for i in order[s : s + self.cfg.batch_size]]
            for s in range(0, len(order), self.cfg.batch_size)
        ]

    def _train_encoding(self, t: int) -> list[dict]:
        """Task t's training examples, tokenised once per task (training, probes and Fisher reuse them)."""
        if self._encoded is None or self._encoded[0] != t:
            examples = self.strategy.train_examples(t, self.tasks)
            self._encoded = (t, encode_examples(self.strategy.tokenizer, examples, self.cfg, self.max_positions))
        return self._encoded[1]

    def probe_batches(self, t: int):
        """Deterministic training micro-batches of task t (for probes, Fisher, routing statistics)."""
        enc = self._train_encoding(t)
        for group in self._epoch_batches(enc, t, epoch=-1):
            yield batches_of(group, self.strategy.tokenizer)

    # ------------------------------------------------------------- training
    # ----------------------------------------------------------- evaluation
    def max_new_tokens(self, j: int) -> int:
        """Decoding budget of task j: `answer_budget` over its *train* answers (tokenised as in training,
        EOS included), capped at cfg.max_new_tokens. Test answers are never looked at."""
        if j not in self._budgets:
            tok, cap = self.strategy.tokenizer, self.cfg.max_answer_len
            lengths = [len(encode_answer(tok, self.cfg.answer_prefix + e.answer, cap)) for e in self.tasks[j].train]
            self._budgets[j] = answer_budget(lengths, self.cfg.max_new_tokens)
        return self._budgets[j]

    def answer_stop(self, j: int) -> str | None:
        """Task j's answer delimiter (`answer_delimiter` over its train answers): a newline for single-line tasks."""
        return answer_delimiter(e.answer for e in self.tasks[j].train)

    def evaluate(self, j: int) -> float:
        """Score on task j's test split, routed the way the strategy routes at inference."""
        task, s, cfg = self.tasks[j], self.strategy, self.cfg
        exs = list(task.test)[: cfg.max_eval_examples] if cfg.max_eval_examples else list(task.test)
        prompts = [e.prompt for e in exs]
        preds = generate(
            s.model, s.tokenizer, [encode_prompt(s.tokenizer, p, self.prompt_cap) for p in prompts],
            max_new_tokens=self.max_new_tokens(j), stop_text=self.answer_stop(j), batch_size=cfg.eval_batch_size,
            before_batch=lambda idx, inputs: s.route(inputs, j), after_batch=lambda idx: s.clear_route(),
            progress=self.progress and self.rank == 0, desc=f"eval {task.name}",
            group_by=lambda ids: s.routing_groups(ids, j),  # SETA: batches of one routed expert
        )
        return float(score(task.metric, preds, [e.answer for e in exs], sources=prompts))

    def evaluate_base(self) -> list[float]:
        """b_j: every task scored before any training (experts empty = the base model)."""
        return [self.evaluate(j) for j in range(len(self.tasks))]

    def _evaluate_on_rank0(self, fn):
        """fn() on rank 0, its result on every rank (one process: fn())."""
        return dist.broadcast_object(fn() if self.rank == 0 else None)

    # -------------------------------------------------------------------- run
    def run(self, resume: bool = False, base_scores: list[float] | None = None, stop_after: int | None = None,
            force_resume: bool = False, start_task: int = 0) -> RunResult:
        """Train through the stream; ``stop_after=k`` stops after k tasks (for tests of resume).

        start_task: the strategy already holds tasks 0..start_task-1 (e.g. loaded from a saved adapter):
        training starts with task start_task (the rows of R before it stay NaN; no base scores are taken).
        resume: continue from the checkpoint in out_dir, if there is one, after checking it belongs to
        this run (ResumeMismatchError lists what differs); ``force_resume=True`` skips that check.
        base_scores: the base model's scores (computed when None and needed; a resume reuses the stored ones).
        ``peak_mem_mb`` of the result: the CUDA allocator's peak, or the process RSS peak sampled
        during this call (``seta.train.memory.PeakMemory``)."""
        with PeakMemory() as mem:
            result = self._run(resume, base_scores, stop_after, force_resume, start_task)
        result.peak_mem_mb = mem.peak_mb
        return result

    def run_config(self) -> dict:
        """The resolved config of this run (`seta.train.fingerprint.run_config`), written as config.json."""
        return run_config(self.strategy, self.cfg, self.meta)

    def identity(self) -> dict:
        """What this run is (`seta.train.fingerprint.run_identity`): compared on resume."""
        return run_identity(self.strategy, self.tasks, self.cfg, config=self.run_config())

    def resume_state(self, force: bool = False) -> dict | None:
        """The checkpoint a resume would continue from (None if there is none), checked against this run
        (`seta.train.run_state.resume_state`)."""
        return run_state.resume_state(self, force)

    def _run(self, resume, base_scores, stop_after, force_resume=False, start_task=0) -> RunResult:
        n = len(self.tasks)
        self.out.mkdir(parents=True, exist_ok=True)
        self._setup_log()
        if self.rank == 0:
            remove_stale_temp_files(self.out, CHECKPOINT_NAME)
        self._identity = self.identity()  # of the base as given, before any state is loaded into it
        ck = self.resume_state(force_resume) if resume else None  # before anything in out_dir is rewritten
        if self.rank == 0:
            save_json(self.cfg.to_dict(), self.out / "train_config.json")
            save_json(self._identity["config"], self.out / CONFIG_NAME)
        R = [[float("nan")] * n for _ in range(n)]
        start, elapsed = start_task, 0.0
        seed_everything(self.cfg.seed)
        if ck is not None:
            R, start, elapsed, base_scores = run_state.restore_state(self, ck)
        self.metrics.truncate(start if ck is not None else 0)  # a fresh run (or a grown adapter) starts the file afresh
        self._global_step = sum(int(v["steps"]) for v in self.task_log.values())
        t0 = time.perf_counter() - elapsed
        if base_scores is None and self.cfg.eval_next_task and start == 0 and not self.joint:
            base_scores = self._evaluate_on_rank0(self.evaluate_base)
            self.strategy.routing_log = type(self.strategy.routing_log)()  # base pass is not routing
        if start == 0 and base_scores is not None:
            self.metrics.write({"kind": "base", "scores": dict(zip([x.name for x in self.tasks], base_scores))})
        stages = [n - 1] if self.joint else list(range(n))
        for t in stages:
            if t < start:
                continue
            task = self.tasks[t]
            self.strategy.before_task(t, task, lambda t=t: self.probe_batches(t))
            loss = self._train_task(t, f"{self.strategy.name} · task {t + 1}/{n} {task.name}")
            self.strategy.after_task(t, task, lambda t=t: self.probe_batches(t))
            self._encoded = None
            upto = t + 1 + int(self.cfg.eval_next_task and t + 1 < n and not self.joint)
            self.strategy.routing_log.true.clear(), self.strategy.routing_log.pred.clear()
            R[t][:upto] = self._evaluate_on_rank0(lambda: [self.evaluate(j) for j in range(upto)])
            log.info("task %d (%s) done, final loss %.4f, R[%d] = %s", t, task.name, loss, t, [round(v, 2) for v in R[t][:upto]])
            stats = getattr(self.strategy, "task_stats", {}).get(t)
            if stats:
                log.info("task %d allocation: %s", t, stats)
            if not math.isfinite(loss):
                raise NonFiniteLossError(f"non-finite loss after task {t}")
            self.metrics.write(self._task_record(t, R[t][:upto]))
            run_state.save_state(self, R, t + 1, time.perf_counter() - t0, base_scores)
            if stop_after is not None and t + 1 >= stop_after:
                break
        self.metrics.close()
        return self._result(R, base_scores, time.perf_counter() - t0)

    def _task_record(self, t: int, scores: list[float]) -> dict:
        """The metrics record of task t: its loss figures, the strategy's (allocation), gate accuracy, scores."""
        rl = self.strategy.routing_log  # the routings of the evaluations after task t
        per: dict[str, float] = {}
        null: dict[str, float] = {}  # % of the task's items the null expert took (the base alone)
        for j in sorted(set(rl.true)):
            routed = [b for a, b in zip(rl.true, rl.pred) if a == j]
            per[self.tasks[j].name] = 100.0 * sum(int(b == j) for b in routed) / len(routed)
            null[self.tasks[j].name] = 100.0 * sum(int(b < 0) for b in routed) / len(routed)
        stats = getattr(self.strategy, "task_stats", {}).get(t, {})
        return {"kind": "task", "task": t, "task_name": self.tasks[t].name, **self.task_log.get(t, {}), **stats,
                "gate_acc": rl.accuracy(), "gate_acc_per_task": per or None, "null_per_task": null or None,
                "scores": {self.tasks[j].name: v for j, v in enumerate(scores)}}

    def _result(self, R, base_scores, wall_s) -> RunResult:
        counts = self.strategy.param_counts()
        rl = self.strategy.routing_log
        confusion = None
        if rl.true:
            n = len(self.tasks)
            confusion = [[0] * n for _ in range(n)]  # rows: true task, columns: routed task
            for a, b in zip(rl.true, rl.pred):
                if b >= 0:  # null-expert routings count as errors and are reported in extra
                    confusion[a][b] += 1
        return RunResult(
            method=self.strategy.name, tasks=[t.name for t in self.tasks], R=R, base_scores=base_scores,
            routing_acc=rl.accuracy(), routing_confusion=confusion,
            trainable_params=counts["trainable_params"], allocated_params=counts["allocated_params"],
            wall_s=wall_s,
            extra={**counts.get("extra", {}), "null_routed": sum(1 for b in rl.pred if b < 0),
                   "per_task": self._per_task()},
            config=(self._identity or self.identity())["config"],
        )

    def _per_task(self) -> list[dict]:
        """One dict per trained task: the loop's loss figures and the strategy's own (allocation,
        anchoring), e.g. {"task", "mean_lm_loss", "mean_penalty", "new", "reused", "anchored", ...}."""
        stats = getattr(self.strategy, "task_stats", {})
        return [{"task": self.tasks[t].name, **self.task_log[t], **stats.get(t, {})} for t in sorted(self.task_log)]

    def _setup_log(self) -> None:
        if self.rank != 0:
            return
        handler = logging.FileHandler(self.out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.handlers = [h for h in log.handlers if not isinstance(h, logging.FileHandler)] + [handler]
        log.setLevel(logging.INFO)
