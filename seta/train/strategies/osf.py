"""osf: sequential fine-tuning with peft's Orthogonal Subspace Fine-tuning (Nayak et al., 2025).

Per task t of n, on each target matrix W (out × in, m = min(out, in)), peft's OSF does:

    W = U_hi S_hi V_hiᵀ + U_lo S_lo V_loᵀ        (SVD; the top k_t directions are preserved, frozen)
    train U_lo, S_lo, V_lo with gradients projected off span(U_hi), span(V_hi)
    W ← U_hi S_hi V_hiᵀ + U_lo' S_lo' V_lo'ᵀ      (merged after the task; the next task decomposes again)

Schedule: k_t = ⌊m (t+1)/(n+1)⌋, peft's documented progressive budget allocation (preserve a growing share
of each matrix as tasks accumulate, train the rest) with n+1 slots: peft's prose freezes t/n (0 for the first
task, which OSF refuses: effective_rank ≥ 1) and its example (t+1)/n (nothing left to train in the last
task); (t+1)/(n+1) keeps both ends usable. Targets: q_proj, v_proj, as the LoRA baselines'. Trainable
parameters in task t: Σ_targets (m − k_t)(out + in + 1), shrinking from task to task.

The merged weights are the model: no adapter is stored beside the base (OSF changes the targets in place).
Dense bases only: OSF decomposes and rewrites the weights, which a 4-bit (NF4) base packs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from peft import OSFConfig, get_peft_model

from seta.train.strategies.base import Strategy


@dataclass(frozen=True)
class OSFSettings:
    """Which matrices OSF adapts (the preserved rank follows the schedule in the module doc)."""

    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the linear layers OSF decomposes and trains (the LoRA baselines' targets)."""


def preserved_fraction(t: int, n_tasks: int) -> float:
    """k_t / m = (t+1)/(n+1): the share of each target's spectrum kept frozen while task t trains."""
    return (t + 1) / (n_tasks + 1)


def _is_4bit(module) -> bool:
    try:
        import bitsandbytes as bnb
    except ImportError:
        return False
    return isinstance(module, bnb.nn.Linear4bit)


class OSF(Strategy):
    name = "osf"

    def __init__(self, model, tokenizer, config: OSFSettings | None = None):
        config = config or OSFSettings()
        targets = {n: m for n, m in model.named_modules() if n.rpartition(".")[2] in config.target_modules}
        if not targets:
            raise ValueError(f"osf: the model has no layer named {', '.join(config.target_modules)}")
        if any(_is_4bit(m) for m in targets.values()):
            raise ValueError("osf needs a dense base: peft's OSF takes an SVD of each target weight and merges its "
                             "update into it, which a 4-bit (NF4) base cannot hold; run osf without --4bit")
        super().__init__(model, tokenizer, config)
        self.targets = [f"{n}.weight" for n in targets]  # the weights OSF rewrites, as the base names them
        self.trainable_per_task: list[int] = []

    def before_task(self, t, task, probe_batches) -> None:
        cfg = OSFConfig(target_modules=list(self.config.target_modules),
                        effective_rank=preserved_fraction(t, self.n_tasks))
        self.model = get_peft_model(self.model, cfg)  # SVD of the current weights; only U_lo, S_lo, V_lo train
        n = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.trainable_per_task[t:] = [n]

    def after_task(self, t, task, probe_batches) -> None:
        # merge_and_unload, not peft's documented `unload()`: in peft 0.22 the update lives beside the base
        # weight (forward = base(x) + delta), and `unload()` would drop it
        self.model = self.model.merge_and_unload()

    # ------------------------------------------------------------ bookkeeping
    def config_dict(self) -> dict:
        return {"osf": {**asdict(self.config), "schedule": "preserved rank = floor(min(out,in) * (t+1)/(n+1))"}}

    def param_counts(self) -> dict:
        """trainable: the first task's (the largest; later tasks train less, see extra); allocated: the
        target weights OSF rewrites (a deployment stores them; nothing is added beside the base)."""
        params = dict(self.model.named_parameters())
        rewritten = sum(params[n].numel() for n in self.targets if n in params)
        return {"trainable_params": max(self.trainable_per_task, default=0), "allocated_params": rewritten,
                "extra": {"trainable_per_task": list(self.trainable_per_task),
                          "preserved_fraction": [preserved_fraction(t, self.n_tasks)
                                                 for t in range(len(self.trainable_per_task))]}}

    def state_dict(self) -> dict:
        """The rewritten target weights (everything else is the base's, untouched)."""
        params = dict(self.model.named_parameters())
        return {"weights": {n: params[n].detach().clone() for n in self.targets},
                "trainable_per_task": list(self.trainable_per_task)}

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in state["weights"].items():
                params[n].copy_(v)
        self.trainable_per_task = list(state["trainable_per_task"])

    def save_adapter(self, out_dir) -> None:
        """The rewritten target weights (safetensors, named as in the base) and the settings (JSON)."""
        import json
        from pathlib import Path

        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().cpu() for k, v in self.state_dict()["weights"].items()},
                  str(out / "osf_weights.safetensors"))
        (out / "osf_config.json").write_text(json.dumps({**self.config_dict(), **self.param_counts()}, indent=1))
