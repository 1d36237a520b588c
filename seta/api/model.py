"""`get_seta_model(model, config)`: the user's causal LM with SETA's sparse block experts and gate, trained
task by task in the user's own loop (plain PyTorch or Hugging Face `Trainer`).

Per task t (method spec §1-§4):

    params = model.start_task(name, batches)    probe (base only) → S_t = top-k(score·(1+β·owned)),
                                                anchors of S_t's shared blocks: λ_B = λ·(earlier owners of B)
    loss = model(**batch).loss + model.anchor_penalty()
                                                y = base(x) + Δ_{S_t} x;  penalty Σ_B (λ_B/2) Σ_e F_Be (θ_Be − θ*_Be)²
    model.end_task(batches, prompts)            Fisher of S_t, θ* ← θ, routing statistics of the prompts,
                                                the gate trained with pseudo-features (+ KL, L2 to the old gate)
    model.generate(input_ids, attention_mask)   routed by the gate (or the null expert), no task id

The pieces are `seta.models` (attach, probe, allocate, Fisher, anchors, routing, save, merge) and
`seta.train.gate_training.train_gate`; the package's own SETA strategy (`seta.train.strategies.seta`)
drives this class, so both run the same code.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from seta.api.config import SetaConfig
from seta.core.anchoring import adaptive_strength, elastic_anchor_penalty, normalise_fisher
from seta.models import allocate_by_sensitivity, attach_experts, estimate_block_fisher, tensors_only
from seta.train.gate_training import GateTrainConfig, train_gate

__all__ = ["SetaContinualModel", "get_seta_model", "METHOD_NAME"]

METHOD_NAME = "seta_method.json"  # beside seta_config.json + seta_model.safetensors: the SetaConfig and task names


class SetaContinualModel(nn.Module):
    """A causal LM with SETA attached. `experts` is the `seta.models.SetaModel` (blocks, ownership, gate,
    anchors); `seta_config` the `SetaConfig`; `config` the base model's own config."""

    def __init__(self, model: nn.Module, config: SetaConfig | None = None, tokenizer=None):
        super().__init__()
        self.seta_config = config or SetaConfig()
        self.experts = attach_experts(model, self.seta_config.expert_config())
        self.tokenizer = tokenizer
        self.task_ids: dict = {}  # task name -> id (ids count 0, 1, ... in the order tasks were learned)
        self.active: int | None = None  # the id of the open task (between start_task and end_task)
        self.allocation = None  # the open (or last) task's `Allocation`: selected, new, reused, split blocks
        self.anchored = None  # (ids, θ*, F normalised, λ_B) of the open (or last) task's anchored shared blocks
        self._params: list[nn.Parameter] = []
        self._frozen = {"old_gate": None}  # the gate after the last task (not a submodule: never trained)

    @property
    def config(self):
        return self.experts.model.config

    @property
    def device(self) -> torch.device:
        return self.experts.device

    # ---- tasks -------------------------------------------------------------------------------------
    def task_id(self, task) -> int:
        """The id of a task learned (or open) by name; an int id is accepted as is."""
        if task in self.task_ids:
            return self.task_ids[task]
        if isinstance(task, int) and task in self.experts.registry.tasks:
            return task
        raise ValueError(f"unknown task {task!r}; this model has learned {list(self.task_ids) or 'no task'}")

    def start_task(self, name, batches, loss_fn=None) -> list[nn.Parameter]:
        """Open task `name`: probe the base's block sensitivity on the first `probe_batches` of `batches`
        (dicts of tensors; the loss is loss_fn(model, batch), default the LM loss on ``labels``), allocate
        S_t (Split-on-Share), route training to S_t and anchor its shared blocks. Returns the parameters to
        optimise: working copies of S_t's blocks (give them to a fresh optimiser)."""
        if self.active is not None:
            raise RuntimeError(f"task {self._name(self.active)!r} is still open; call end_task first")
        if name in self.task_ids:
            raise ValueError(f"task {name!r} was learned already; give a new task a new name")
        cfg, seta = self.seta_config, self.experts
        t = max(seta.registry.tasks, default=-1) + 1
        batches = (tensors_only(b) for b in islice(batches, cfg.probe_batches))
        self.allocation = allocate_by_sensitivity(seta, t, batches, cfg.ratio, cfg.beta, cfg.allocation, loss_fn)
        self.task_ids[name], self.active = t, t
        seta.set_task(t)
        s_t = seta.registry.expert(t)
        ids, _, anchor, fisher = seta.anchor_terms(s_t)
        self.anchored = None
        if ids.numel() and cfg.anchor_lambda > 0:
            fisher = normalise_fisher([fisher], valid=[seta.valid_mask(ids).to(fisher.device)])[0]
            owners = seta.registry.earlier_owners(t)[torch.isin(s_t, ids)]
            strength = adaptive_strength(owners, cfg.anchor_lambda).to(fisher)
            self.anchored = (ids, anchor.detach(), fisher.detach(), strength)
        self._params = seta.begin_training(s_t)
        return list(self._params)

    def anchor_penalty(self) -> torch.Tensor:
        """Σ_B (λ_B/2) Σ_e F_Be (θ_Be − θ*_Be)² over the open task's shared blocks that earlier tasks
        trained (a differentiable scalar; 0 on the first task, when λ = 0 and with no task open): add it
        to the loss."""
        if self.anchored is None or self.active is None:
            return torch.zeros((), device=self.device)
        ids, anchor, fisher, strength = self.anchored
        return elastic_anchor_penalty(self.experts.get_blocks(ids), anchor, fisher, strength)

    def end_task(self, batches, prompts, heldout_prompts=None, loss_fn=None, max_prompt_len: int = 1024) -> list[float]:
        """Close the open task: write the trained blocks back, estimate the element-wise Fisher of S_t on the
        first `fisher_batches` of `batches` and update the anchors (θ* ← θ, F ← mean over owners), record
        the routing statistics of the task's `prompts` (strings; the tokenizer given to `get_seta_model`),
        calibrate the null expert on `heldout_prompts` (default: the last tenth of `prompts`) and train the
        gate with pseudo-features of earlier tasks. Returns the gate's training losses."""
        t = self._require_active("end_task")
        cfg, seta = self.seta_config, self.experts
        seta.end_training()
        s_t = seta.registry.expert(t)
        fisher = estimate_block_fisher(seta, s_t, (tensors_only(b) for b in islice(batches, cfg.fisher_batches)), loss_fn)
        seta.update_anchors(s_t, fisher)
        prompts = list(prompts)
        if not prompts:
            raise ValueError("end_task needs the task's prompts (the gate learns to route them)")
        heldout = list(heldout_prompts or ()) or prompts[-max(1, len(prompts) // 10):]
        z = self.prompt_features(prompts, max_prompt_len)
        seta.router.observe(t, z)
        seta.router.calibrate_null(t, self.prompt_features(heldout, max_prompt_len), cfg.null_quantile)
        losses = train_gate(seta.router, t, z, cfg.gate, self._frozen["old_gate"])
        self._frozen["old_gate"] = seta.router.gate.snapshot()
        self.active, self._params = None, []
        seta.clear_route()
        return losses

    def prompt_features(self, prompts: list[str], max_prompt_len: int = 1024, batch_size: int = 64) -> torch.Tensor:
        """Routing features z (N, d) of prompts: the mean last hidden state of the base over each prompt,
        encoded as `generate` sees it (left-padded, truncated from the left to max_prompt_len)."""
        from seta.data import generation_batch

        if self.tokenizer is None:
            raise ValueError("prompt features need a tokenizer: get_seta_model(model, config, tokenizer=...)")
        out, dev = [], self.device
        for s in range(0, len(prompts), batch_size):
            b = generation_batch(self.tokenizer, prompts[s : s + batch_size], max_prompt=max_prompt_len)
            out.append(self.experts.routing_features(b["input_ids"].to(dev), b["attention_mask"].to(dev)).cpu())
        return torch.cat(out)

    @property
    def old_gate(self) -> nn.Module | None:
        """The gate as it was after the last task (routing distillation and the L2 anchor of the next)."""
        return self._frozen["old_gate"]

    def load_old_gate(self, state: dict | None) -> None:
        """Restore `old_gate` from its state_dict (None: no task learned yet), e.g. when resuming a run."""
        old = None
        if state is not None:
            old = self.experts.router.gate.snapshot()
            old.load_state_dict(state)
        self._frozen["old_gate"] = old

    # ---- routed inference -------------------------------------------------------------------------
    def route(self, input_ids, attention_mask=None, task=None, cache=None) -> torch.Tensor:
        """Set the route of this batch until the next route or `experts.clear_route()`: to `task`'s expert
        if given, else by the gate (top-1 or soft top-k per `routing`, rows far from every task to the null
        expert = the base alone). Returns the expert weights (B, tasks). cache: a `FeatureCache`."""
        seta, cfg = self.experts, self.seta_config
        if task is not None:
            return seta.route_batch(input_ids, attention_mask, tasks=[self.task_id(task)] * input_ids.shape[0])
        if not seta.router.tasks:  # nothing learned yet: the base model
            seta.clear_route()
            return torch.zeros(input_ids.shape[0], 0)
        return seta.route_batch(input_ids, attention_mask, mode=self._gate_mode, k=cfg.soft_k, null=cfg.null_expert,
                                cache=cache)

    @property
    def _gate_mode(self) -> str:
        """top1 or soft: how the gate routes (oracle-trained models too, when no task id is given)."""
        return "top1" if self.seta_config.routing == "oracle" else self.seta_config.routing

    def forward(self, input_ids=None, attention_mask=None, labels=None, task=None, **kwargs):
        """The base model's forward with experts. While a task is open: that task's expert (training).
        Otherwise each example is routed (by `task`, or by the gate on its prompt tokens: those labelled
        -100, or every token when labels are absent) and the previous route is restored after."""
        args = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if self.active is not None and task is None:
            return self.experts(**args)
        with self.experts.no_experts():  # restores the route on exit
            if task is not None or labels is None or not self.experts.router.tasks:
                self.route(input_ids, attention_mask, task)
            else:
                prompt = labels.eq(-100) & (attention_mask.bool() if attention_mask is not None else True)
                prompt[~prompt.any(1)] = True  # no prompt token marked: route on the whole input
                z = self.experts.routing_features(input_ids, attention_mask, prompt)
                cfg = self.seta_config
                self.experts.set_routing(self.experts.router.probs(z, self._gate_mode, cfg.soft_k, cfg.null_expert))
            return self.experts(**args)

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, task=None, **kwargs):
        """`generate` of the base with each prompt routed as in `route` (no task id needed), the route
        fixed for prefill and every decoding step; the previous route is restored after."""
        with self.experts.no_experts():
            self.route(input_ids, attention_mask, task)
            return self.experts.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    # ---- saving, merging, counting -------------------------------------------------------------------
    def save_pretrained(self, directory) -> None:
        """<dir>/seta_config.json + seta_model.safetensors (blocks, ownership, gate, routing statistics,
        anchors; `SetaModel.save_pretrained`) + seta_method.json (this SetaConfig and the task names)."""
        self._require_closed("save_pretrained")
        self.experts.save_pretrained(directory)
        method = {"config": asdict(self.seta_config), "tasks": {str(k): v for k, v in self.task_ids.items()}}
        (Path(directory) / METHOD_NAME).write_text(json.dumps(method, indent=2))

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory, tokenizer=None) -> "SetaContinualModel":
        """`model` (a fresh base of the architecture the experts were trained on) with a saved state loaded:
        routes, generates and continues training (start_task) exactly as the saved model would."""
        path = Path(directory) / METHOD_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{directory} has no {METHOD_NAME}; pass a directory that "
                                    "SetaContinualModel.save_pretrained wrote")
        saved = json.loads(path.read_text())["config"]
        config = SetaConfig(**{**saved, "gate": GateTrainConfig(**saved["gate"])})
        out = cls(model, config, tokenizer)
        out.load_saved_state(directory)
        return out

    def load_saved_state(self, directory) -> None:
        """Load a saved state into this model (no task learned yet, the same SetaConfig's experts): blocks,
        ownership, gate, anchors, and the task names when seta_method.json is there."""
        self.experts.load_saved_state(directory)
        path = Path(directory) / METHOD_NAME
        names = json.loads(path.read_text())["tasks"] if path.is_file() else {}
        self.task_ids = dict(names) or {str(t): t for t in self.experts.registry.tasks}
        self._frozen["old_gate"] = self.experts.router.gate.snapshot() if self.experts.router.tasks else None

    def merge_and_unload(self, task) -> nn.Module:
        """Fold `task`'s expert into the base weights (dense bases) and return the plain model, whose
        forward equals this model's routed to `task`. This model is unusable afterwards."""
        self._require_closed("merge_and_unload")
        return self.experts.merge_and_unload(self.experts.registry.expert(self.task_id(task)))

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(parameters an optimiser trains now: the open task's blocks, or 0; all parameters: the base,
        every stored block and the gate)."""
        layers = self.experts.layers.values()
        blocks = {id(l.blocks) for l in layers} | {id(l.train_blocks) for l in layers if l.train_blocks is not None}
        base = sum(p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)  # 4-bit: two weights a byte
                   for p in self.experts.model.parameters() if id(p) not in blocks)
        stored = sum(l.blocks.numel() for l in layers) + sum(p.numel() for p in self.experts.router.gate.parameters())
        return sum(p.numel() for p in self._params), base + stored

    def print_trainable_parameters(self) -> None:
        """One line, as peft prints it, plus the expert blocks: allocated of all and the open task's."""
        trainable, total = self.get_nb_trainable_parameters()
        reg = self.experts.registry
        line = (f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: "
                f"{100 * trainable / total:.4f} || expert blocks: {int(reg.allocated().numel()):,d} of "
                f"{self.experts.index.n_blocks:,d} allocated")
        if self.active is not None:
            line += f", task {self._name(self.active)!r}: {int(reg.expert(self.active).numel()):,d}"
        print(line)

    # ---- helpers -----------------------------------------------------------------------------------
    def _name(self, t: int):
        return next((k for k, v in self.task_ids.items() if v == t), t)

    def _require_active(self, what: str) -> int:
        if self.active is None:
            raise RuntimeError(f"{what} needs an open task; call start_task first")
        return self.active

    def _require_closed(self, what: str) -> None:
        if self.active is not None:
            raise RuntimeError(f"{what}: task {self._name(self.active)!r} is still open; call end_task first")


def get_seta_model(model: nn.Module, config: SetaConfig | None = None, tokenizer=None) -> SetaContinualModel:
    """Attach SETA's sparse block experts and gate to `model` (in place; do any k-bit preparation first) and
    return it ready for `start_task`. tokenizer: encodes the prompts `end_task` routes on."""
    return SetaContinualModel(model, config, tokenizer)
