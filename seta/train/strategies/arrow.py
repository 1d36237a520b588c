"""arrow: one LoRA per task, routed at inference by peft's Arrow router, without the task id.

Training (task t): a fresh LoRA (seq-lora's settings: r=8, α=32, dropout 0.1, q/v targets) on the
untouched base, trained alone with the loop's optimiser and step budget: independent LoRA experts.
Inference after task t: peft's `create_arrow_model` loads the trained LoRAs task_0..task_t onto the base
and adds its router (Ostapenko et al., 2024, "Towards Modular LLMs by Building and Reusing a Library of
LoRAs"), per token x and adapted layer:

    p_e   = top right singular vector of B_e A_e                 (prototype of expert e, training-free)
    c(x)  = softmax over the top-k experts of |⟨x, p_e⟩| / τ     (k = min(top_k, experts), τ = temperature)
    y     = W x + Σ_e c_e(x) · (α/r) B_e A_e x

Routing record: peft computes c(x) inside each layer's forward and keeps none of it, so there is no
per-example route to read. What it exposes are the prototypes, top_k and τ of each router layer; a
forward hook re-evaluates c(x) from them on each prompt's prefill (the formula above, as a measurement
only: the generation itself runs peft's code) and logs, per example, the expert with the largest mean
coefficient over the prompt's tokens and every Arrow layer, as SETA logs its gate's top-1.
Parameters: every task adds one LoRA, so the stored adapters grow linearly with the tasks.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import ArrowConfig, LoraConfig, PeftModel, create_arrow_model, get_peft_model
from peft.utils import SAFETENSORS_WEIGHTS_NAME, get_peft_model_state_dict

from seta.train.strategies.base import Strategy
from seta.train.strategies.lora import LORA_DEFAULTS

ROUTER = "arrow_router"  # the adapter name create_arrow_model gives its router


@dataclass(frozen=True)
class ArrowSettings:
    """The experts (LoRA, as seq-lora's) and peft's router settings (its defaults)."""

    lora: dict = field(default_factory=lambda: dict(LORA_DEFAULTS))
    """LoraConfig fields of every task's expert."""
    top_k: int = 3
    """Experts mixed per token (peft's default; capped at the number trained so far)."""
    temperature: float = 1.0
    """τ of the router's softmax."""
    rng_seed: int = 0
    """Seed of the prototypes' power iteration (fixed: the routes do not depend on the global RNG)."""


class Arrow(Strategy):
    name = "arrow"

    def __init__(self, model, tokenizer, config: ArrowSettings | None = None):
        super().__init__(model, tokenizer, config or ArrowSettings())
        self.experts: list[dict[str, torch.Tensor]] = []  # task -> its LoRA (peft's state-dict keys), CPU
        self._folder = tempfile.TemporaryDirectory(prefix="seta-arrow-")  # adapters as create_arrow_model reads them
        self._written = 0
        self._hooks: list = []
        self._capture: dict | None = None

    def _lora_config(self) -> LoraConfig:
        return LoraConfig(task_type="CAUSAL_LM", **self.config.lora)

    def _base(self):
        """The base model alone (any LoRA or router removed; its weights were never changed)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return self.model.unload() if isinstance(self.model, PeftModel) else self.model

    # ----------------------------------------------------------------- training
    def before_task(self, t, task, probe_batches) -> None:
        self.model = get_peft_model(self._base(), self._lora_config())  # a fresh LoRA: only it trains

    def after_task(self, t, task, probe_batches) -> None:
        self.experts.append({k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.model).items()})
        self._build_router()

    # ---------------------------------------------------------------- inference
    def _write_experts(self) -> list[str]:
        """One peft adapter folder per trained expert (adapter_config.json + adapter_model.safetensors)."""
        from safetensors.torch import save_file

        root = Path(self._folder.name)
        for i in range(self._written, len(self.experts)):
            d = root / f"task_{i}"
            self._lora_config().save_pretrained(d)
            save_file({k: v.contiguous() for k, v in self.experts[i].items()}, str(d / SAFETENSORS_WEIGHTS_NAME))
        self._written = len(self.experts)
        return [str(root / f"task_{i}") for i in range(len(self.experts))]

    def _build_router(self) -> None:
        """The base with every expert so far and peft's Arrow router on top (the model evaluation uses)."""
        base = self._base()
        paths = self._write_experts()
        cfg = ArrowConfig(top_k=min(self.config.top_k, len(paths)), router_temperature=self.config.temperature,
                          rng_seed=self.config.rng_seed)
        device = next(base.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the router's unused LoRA init
            self.model = create_arrow_model(base, paths, cfg, torch_device=str(device))
        self.model.eval()
        for module in self.model.modules():
            arrow = getattr(module, "lora_arrow", None)
            if arrow is not None and ROUTER in arrow:
                self._hooks.append(arrow[ROUTER].register_forward_hook(self._record))
        self._n_layers = len(self._hooks)

    @torch.no_grad()
    def _record(self, layer, args, output) -> None:
        """Forward hook of a router layer: its per-token coefficients c(x) on the prompt (prefill only)."""
        cap = self._capture
        if cap is None or cap["calls"] >= self._n_layers:
            return
        cap["calls"] += 1
        x, mask = args[0], cap["mask"]
        if x.dim() != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
            return
        tok = x.reshape(-1, x.shape[-1]).to(layer.prototypes.dtype)  # (B·T, d)
        sim = (tok @ layer.prototypes.T).abs()  # (B·T, E)
        top_v, idx = torch.topk(sim, layer.top_k, dim=1)
        score = torch.full_like(sim, float("-inf")).scatter_(1, idx, top_v)
        coeff = torch.softmax(score / layer.temperature, dim=1).view(*mask.shape, -1)  # (B, T, E)
        m = mask.to(coeff.device, coeff.dtype).unsqueeze(-1)
        mean = (coeff * m).sum(1) / m.sum(1).clamp(min=1)  # (B, E)
        order = [int(n.rsplit("_", 1)[1]) for n in layer.task_adapter_names]  # expert e -> task id
        per_task = torch.zeros(mean.shape[0], len(self.experts), dtype=torch.float32)
        per_task[:, order] = mean.float().cpu()
        cap["sum"] = per_task if cap["sum"] is None else cap["sum"] + per_task

    def route(self, inputs, task_id) -> None:
        """Nothing to set: Arrow routes every token itself. The prompt's coefficients are recorded."""
        self._capture = {"mask": inputs["attention_mask"], "task": task_id, "calls": 0, "sum": None}

    def clear_route(self) -> None:
        cap, self._capture = self._capture, None
        if cap is None or cap["sum"] is None or not 0 <= cap["task"] < len(self.experts):
            return  # untrained task (next-task evaluation) or no task id: nothing to score
        pred = cap["sum"].argmax(1).tolist()
        self.routing_log.true.extend([cap["task"]] * len(pred))
        self.routing_log.pred.extend(int(p) for p in pred)

    # ------------------------------------------------------------ bookkeeping
    def config_dict(self) -> dict:
        return {"arrow": asdict(self.config)}

    def param_counts(self) -> dict:
        """trainable: one task's LoRA; allocated: every stored expert (linear in the tasks)."""
        sizes = [sum(v.numel() for v in e.values()) for e in self.experts]
        return {"trainable_params": max(sizes, default=0), "allocated_params": sum(sizes),
                "extra": {"growth": sizes, "stored_curve": [sum(sizes[: i + 1]) for i in range(len(sizes))]}}

    def state_dict(self) -> dict:
        return {"experts": [dict(e) for e in self.experts]}

    def load_state_dict(self, state: dict) -> None:
        self.experts = [{k: v.clone() for k, v in e.items()} for e in state["experts"]]
        self._written = 0
        if self.experts:
            self._build_router()

    def save_adapter(self, out_dir) -> None:
        """out_dir/task_<i>: one standard peft LoRA folder per task; `create_arrow_model(base, those
        folders, ArrowConfig(...))` rebuilds the routed model."""
        import shutil

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for p in self._write_experts():
            shutil.copytree(p, out / Path(p).name, dirs_exist_ok=True)
