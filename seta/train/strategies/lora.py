"""LoRA-family baselines on peft: sequential LoRA (seq-lora) and orthogonal LoRA (o-lora).

seq-lora: one LoRA adapter fine-tuned task after task (r=8, α=32, dropout 0.1,
q/v targets, as in TRACE's LoRA baselines).

o-lora (Wang et al., 2023): a new LoRA adapter per task; earlier adapters are
frozen and stay active (their outputs add up). The new adapter's down-projection
A_t is pushed orthogonal to the earlier ones:

    L_orth = λ₁ Σ_{i<t} Σ_layers ‖A_i A_tᵀ‖₁       (λ₁ = 0.5; sum of |entries|, as O-LoRA does)
    L_l2   = λ₂ Σ_layers ‖θ_t‖²                     (λ₂ = 0 by default)
"""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from seta.train.strategies.base import Strategy

LORA_DEFAULTS = dict(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])


def _lora_config(**overrides) -> LoraConfig:
    return LoraConfig(task_type="CAUSAL_LM", **{**LORA_DEFAULTS, **overrides})


class SeqLoRA(Strategy):
    name = "seq-lora"

    def __init__(self, model, tokenizer, config=None, **lora):
        self.lora = lora
        super().__init__(get_peft_model(model, _lora_config(**lora)), tokenizer, config)

    def param_counts(self) -> dict:
        n = sum(p.numel() for n_, p in self.model.named_parameters() if "lora_" in n_)
        return {"trainable_params": n, "allocated_params": None}

    def config_dict(self) -> dict:
        return {"lora": {**LORA_DEFAULTS, **self.lora}}

    def save_adapter(self, out_dir) -> None:
        self.model.save_pretrained(out_dir)


class OLoRA(Strategy):
    name = "o-lora"

    def __init__(self, model, tokenizer, config=None, lambda_orth: float = 0.5, lambda_l2: float = 0.0, **lora):
        if lambda_orth < 0 or lambda_l2 < 0:
            raise ValueError("o-lora: lambda_orth and lambda_l2 must be >= 0")
        self.lora = lora
        self.lambda_orth, self.lambda_l2 = lambda_orth, lambda_l2
        super().__init__(get_peft_model(model, _lora_config(**lora), adapter_name="task0"), tokenizer, config)
        self.n_adapters = 1

    def _names(self, t: int) -> list[str]:
        return [f"task{i}" for i in range(t + 1)]

    def _ensure_adapters(self, t: int) -> None:
        while self.n_adapters <= t:
            self.model.add_adapter(f"task{self.n_adapters}", _lora_config(**self.lora))
            self.n_adapters += 1

    def before_task(self, t, task, probe_batches) -> None:
        self._ensure_adapters(t)
        self.model.base_model.set_adapter(self._names(t))  # every adapter so far is active
        for name, p in self.model.named_parameters():  # only the newest one trains
            p.requires_grad_(f".task{t}." in name and "lora_" in name)

    def loss(self, batch, t, n_tokens=None):
        lm, _ = super().loss(batch, t, n_tokens)
        return lm, self.penalty(t)

    def penalty(self, t: int):
        """λ₁ Σ_{i<t} ‖A_i A_tᵀ‖₁ + λ₂ ‖θ_t‖² (0.0 for the first task without L2)."""
        if t == 0 and self.lambda_l2 == 0:
            return 0.0
        orth = l2 = 0.0
        for module in self.model.modules():
            if isinstance(module, LoraLayer) and f"task{t}" in module.lora_A:
                a_t = module.lora_A[f"task{t}"].weight  # (r, d_in)
                for i in range(t):
                    orth = orth + (module.lora_A[f"task{i}"].weight.detach() @ a_t.T).abs().sum()
                if self.lambda_l2:
                    l2 = l2 + a_t.pow(2).sum() + module.lora_B[f"task{t}"].weight.pow(2).sum()
        return self.lambda_orth * orth + self.lambda_l2 * l2

    def param_counts(self) -> dict:
        n = sum(p.numel() for n_, p in self.model.named_parameters() if "lora_" in n_)
        return {"trainable_params": n, "allocated_params": None}

    def config_dict(self) -> dict:
        return {"lora": {**LORA_DEFAULTS, **self.lora}, "lambda_orth": self.lambda_orth, "lambda_l2": self.lambda_l2}

    def state_dict(self) -> dict:
        lora = {n: p.detach().clone() for n, p in self.model.named_parameters() if "lora_" in n}
        return {"n_adapters": self.n_adapters, "lora": lora}

    def load_state_dict(self, state: dict) -> None:
        self._ensure_adapters(state["n_adapters"] - 1)
        self.model.base_model.set_adapter(self._names(state["n_adapters"] - 1))
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in state["lora"].items():
                params[n].copy_(v)

    def save_adapter(self, out_dir) -> None:
        self.model.save_pretrained(out_dir)
