"""One task's training: the optimiser loop of `seta.train.loop.ContinualTrainer` (its `TaskTraining` base)."""

from __future__ import annotations

import logging
import math
import time

import torch
from tqdm.auto import tqdm

from seta.train import distributed as dist
from seta.train.batching import batches_of
from seta.train.schedule import cosine_lr_factor

__all__ = ["NonFiniteLossError", "TaskTraining"]

log = logging.getLogger("seta.train")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class TaskTraining:
    """Base of `ContinualTrainer`: `_train_task`. Uses the trainer's strategy, cfg, tasks, rank, world,
    progress, metrics, ckpt_path, task_log and its `_train_encoding` / `_epoch_batches`."""

    def _train_task(self, t: int, bar_desc: str) -> float:
        """Train `self.strategy` on task t: a fresh AdamW over the strategy's trainable parameters,
        cosine schedule with warmup, gradient accumulation over micro-batches, the step loss

            loss = data term (mean over the step's answer tokens) + penalty     (per optimiser step; `Strategy.loss`)

        with the penalty added once per step (spread over the micro-batches and ranks). Writes one metrics
        record per step and the task's loss figures to `self.task_log[t]`; returns the last step's loss.
        """
        s, cfg = self.strategy, self.cfg
        examples = self._train_encoding(t)
        epochs = cfg.epochs_for(t)
        params = s.trainable_parameters()
        if not params:
            raise ValueError(f"strategy {s.name!r} has no trainable parameters for task {t}")
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        micro = [self._epoch_batches(examples, t, e) for e in range(epochs)]
        n_micro = sum(len(m) for m in micro)
        total = math.ceil(n_micro / cfg.grad_accum)
        warmup = int(cfg.warmup_ratio * total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: cosine_lr_factor(st, total, warmup))
        s.model.train()
        device = next(s.model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        bar = tqdm(total=total, desc=bar_desc, disable=not self.progress or self.rank != 0, leave=False)
        step, last = 0, float("nan")
        sums = {"lm": 0.0, "penalty": 0.0}  # per-step values summed over the task's steps
        flat = [b for m in micro for b in m]
        anchoring = getattr(s, "penalty_kind", "other") == "anchoring"
        for start in range(0, n_micro, cfg.grad_accum):
            t_step = time.perf_counter()
            group = flat[start : start + cfg.grad_accum]
            n_tokens = max(1, sum(e["n_answer"] for g in group for e in g))  # global answer tokens of the step
            running = running_lm = 0.0
            for g in group:
                batch = batches_of(dist.shard(g, self.rank, self.world), s.tokenizer)
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                with autocast:
                    lm, reg = s.loss(batch, t, n_tokens)
                    loss = lm + reg / (len(group) * self.world)
                loss.backward()
                running += float(dist.global_sum(loss.detach().float()))
                running_lm += float(dist.global_sum(lm.detach().float()))
            if not math.isfinite(running):
                raise NonFiniteLossError(
                    f"non-finite loss ({running}) at step {step} of task {t} ({self.tasks[t].name}); "
                    f"the last good checkpoint ({self.ckpt_path}) is kept: lower the learning rate or check the data, "
                    "then rerun with --resume"
                )
            dist.sum_gradients(params)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            lr = sched.get_last_lr()[0]  # the rate of this step
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            last = running
            sums["lm"] += running_lm
            sums["penalty"] += running - running_lm
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2e}")
            bar.update()
            self._global_step += 1
            secs = max(time.perf_counter() - t_step, 1e-9)
            penalty = running - running_lm
            self.metrics.write({
                "kind": "step", "step": self._global_step, "task": t, "task_name": self.tasks[t].name,
                "task_step": step, "lm_loss": running_lm, "anchor_penalty": penalty if anchoring else 0.0,
                "other_penalty": 0.0 if anchoring else penalty, "lr": lr,
                "tokens_per_s": sum(len(e["input_ids"]) for g in group for e in g) / secs,
                "examples_per_s": sum(len(g) for g in group) / secs, "time": secs})
            if step % 20 == 0 or step == total:
                log.info("task %d step %d/%d loss %.4f (lm %.4f, penalty %.4f)", t, step, total, running,
                         running_lm, running - running_lm)
        bar.close()
        self.task_log[t] = {"steps": step, "final_loss": last, "final_lm_loss": running_lm,
                            "final_penalty": last - running_lm, "mean_lm_loss": sums["lm"] / max(1, step),
                            "mean_penalty": sums["penalty"] / max(1, step)}
        return last
