"""Brief causal-LM pre-training of the tiny base on the stream's generic text, cached on disk.

Every method of the embedded default starts from the same pre-trained base; the
cache key hashes the model config, the corpus, the tokenizer's vocabulary and
the pre-training settings, so a second run loads it instead of paying again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from seta.train.checkpoint import seed_everything
from seta.train.loop import cosine_lr_factor

log = logging.getLogger("seta.train")


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of the base's pre-training."""

    steps: int = 600
    """Optimizer steps."""
    batch_size: int = 32
    """Sequences per step."""
    seq_len: int = 64
    """Tokens per sequence (texts are concatenated, separated by eos, and chunked)."""
    lr: float = 3e-3
    """Peak AdamW learning rate (cosine decay, 5% warm-up)."""
    seed: int = 0
    """Seed of initialisation and batch order."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "seq_len", "lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PretrainConfig.{name} must be > 0")


def _chunks(tokenizer, texts: list[str], seq_len: int) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"the pre-training corpus has {len(ids)} tokens, fewer than one sequence of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)  # (n, seq_len)


def pretrain(model, tokenizer, texts: list[str], cfg: PretrainConfig, progress: bool = True) -> list[float]:
    """Train every parameter of ``model`` on next-token prediction; returns the loss curve."""
    seed_everything(cfg.seed)
    data = _chunks(tokenizer, texts, cfg.seq_len)
    for p in model.parameters():  # a freshly built base may come frozen
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr_factor(s, cfg.steps, warm))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    for step in (bar := tqdm(range(cfg.steps), desc="pre-train base", disable=not progress, leave=False)):
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        batch = data[idx]
        loss = model(input_ids=batch, labels=batch).loss
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"pre-training loss is {loss.item()} at step {step}; lower PretrainConfig.lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], seq_len: int = 64, batch_size: int = 32) -> float:
    """exp(mean token NLL) over chunked held-out text."""
    data = _chunks(tokenizer, texts, seq_len)
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for s in range(0, data.shape[0], batch_size):
        batch = data[s : s + batch_size].to(next(model.parameters()).device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        total, count = total + nll.item(), count + batch[:, 1:].numel()
    model.train(was)
    return math.exp(total / count)


def cache_key(model_config: dict, tokenizer, texts: list[str], cfg: PretrainConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(model_config, sort_keys=True, default=str).encode())
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cached_pretrained_base(build_model, model_config: dict, tokenizer, texts: list[str], cfg: PretrainConfig, cache_dir, progress=True):
    """Load the pre-trained base from ``cache_dir/<key>`` or build, pre-train and save it (atomically).

    build_model(): returns a freshly initialised HF causal LM (seeded by the caller's seed).
    Returns (model, path).
    """
    from transformers import AutoModelForCausalLM

    path = Path(cache_dir) / f"tiny-base-{cache_key(model_config, tokenizer, texts, cfg)}"
    if (path / "config.json").is_file():
        log.info("loading cached pre-trained base from %s", path)
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), path
    seed_everything(cfg.seed)
    model = build_model()
    losses = pretrain(model, tokenizer, texts, cfg, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + "."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "pretrain.json").write_text(json.dumps({"config": asdict(cfg), "losses": losses[:: max(1, len(losses) // 50)], "final_loss": losses[-1]}, indent=1))
        if not path.exists():  # else another process won the race
            os.replace(tmp, path)
    finally:  # a full disk or Ctrl-C leaves no half-written folder in the cache
        shutil.rmtree(tmp, ignore_errors=True)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), path
