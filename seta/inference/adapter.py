"""A saved SETA adapter, loaded with its base in one call: route prompts, generate, score, merge.

    adapter = SetaAdapter.load("results/tiny/seta/seed0/adapter")      # base + tokenizer from its card
    out = adapter.generate(["Sentence: ... Sentiment:"])                 # routed through the gate
    out[0].text, out[0].task, out[0].probs                               # answer, routed task (None: null
                                                                         # expert = base alone), gate softmax
    adapter.generate(prompts, task="FOMC")                               # force one task's expert
    adapter.evaluate(tasks)                                              # scores and the R row, as training
    adapter.merge("FOMC", "deploy/fomc")                                 # dense HF checkpoint, base + expert

Routing is the trained method's inference routing (top-1 or soft top-k, with the null expert); an
adapter trained with oracle routing (seta-oracle) is routed by its gate's top-1 unless a task is forced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seta.inference.adapter_files import check_adapter
from seta.inference.card import (base_factory_from_card, card_routing, check_base, load_base_from_card,
                                 load_card_tokenizer, read_card)
from seta.inference.deploy import adapter_info, merge_adapter

__all__ = ["Generation", "SetaAdapter", "adapter_info", "merge_adapter", "base_factory_from_card", "load_base_from_card",
           "load_card_tokenizer"]


@dataclass(frozen=True)
class Generation:
    """One prompt's answer and how it was routed."""

    prompt: str
    text: str
    task: str | None
    """The routed task (the expert with the highest weight); None: the null expert (the base model alone)."""
    probs: dict
    """The gate's softmax over the adapter's tasks (before top-1 / null); the forced task gets 1.0."""
    forced: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class SetaAdapter:
    """A SetaModel (base + experts + gate), its tokenizer and its card."""

    def __init__(self, seta, tokenizer, card: dict, directory):
        self.seta, self.tokenizer, self.card, self.directory = seta, tokenizer, card, Path(directory)
        r = card_routing(card)
        self.mode = "top1" if r["mode"] == "oracle" else r["mode"]
        self.soft_k, self.null = r["soft_k"], r["null_expert"]

    @classmethod
    def load(cls, directory, *, base=None, device_map=None) -> "SetaAdapter":
        """Load the adapter in `directory` onto the base its card names (or `base`, checked against the card)."""
        from seta.models import SetaModel
        from seta.train.strategies import strategy_class
        from seta.train.strategies.seta import Seta

        card = read_card(directory)
        if not issubclass(strategy_class(card["method"]), Seta):
            raise ValueError(f"{directory} is an adapter of {card['method']}, which has no gate; routed inference "
                             "needs a SETA adapter (seta or one of its ablations)")
        check_adapter(directory, card)
        model = load_base_from_card(card, base, device_map)
        check_base(card, model, directory)
        seta = SetaModel.from_pretrained(model, directory)
        seta.eval()
        return cls(seta, load_card_tokenizer(card), card, directory)

    # ---- tasks ------------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return [t["name"] for t in self.card["tasks"]]

    def task_index(self, name: str) -> int:
        if name not in self.tasks:
            raise ValueError(f"unknown task {name!r}; the adapter has: {', '.join(self.tasks)}")
        return self.tasks.index(name)

    def _budget(self, task: int | None) -> int:
        """Task's answer budget; for no task (null route, an unknown task) the largest one, which the
        card's prompt cap leaves room for."""
        if task is None:
            return max((int(t["max_new_tokens"]) for t in self.card["tasks"]),
                       default=int(self.card["train_config"].get("max_new_tokens", 16)))
        return int(self.card["tasks"][task]["max_new_tokens"])

    def _stop(self, task: int | None) -> str | None:
        """Task's answer delimiter (cards written before it existed: None, EOS only)."""
        return None if task is None else self.card["tasks"][task].get("stop")

    def _encode(self, prompts) -> list[list[int]]:
        from seta.data import encode_prompt

        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not one string")
        return [encode_prompt(self.tokenizer, p, self.card["prompt_cap"]) for p in prompts]

    # ---- routing ------------------------------------------------------------------------------------
    @torch.no_grad()
    def route(self, prompts, batch_size: int = 32):
        """(route probabilities (N, T): what the experts get, zero rows = null; gate softmax (N, T))."""
        from seta.eval.generate import left_pad

        ids = self._encode(prompts)
        routes, softmax = [], []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        router, dev = self.seta.router, self.seta.device
        for s in range(0, len(ids), batch_size):
            batch = left_pad(ids[s : s + batch_size], pad)
            z = self.seta.routing_features(batch["input_ids"].to(dev), batch["attention_mask"].to(dev))
            routes.append(router.probs(z, self.mode, self.soft_k, self.null))
            softmax.append(torch.softmax(router.gate(z).float(), dim=1).cpu())
        n = len(self.tasks)
        return (torch.cat(routes) if routes else torch.zeros(0, n)), (torch.cat(softmax) if softmax else torch.zeros(0, n))

    def route_callbacks(self, counts: dict | None = None):
        """(route(input_ids, attention_mask), clear()) for `seta.eval.harness.RoutedLM`: every forward routed
        through the gate as `generate` routes (null expert included). counts: a dict that tallies the routed
        task of every row ("null" for the null expert)."""
        def route(input_ids, attention_mask):
            self._route_rows(input_ids, attention_mask, counts)

        return route, self.seta.clear_route

    def _route_rows(self, input_ids, attention_mask, counts: dict | None) -> None:
        """Route a batch through the gate; add each row's routed task (the highest weight, "null" for a zero
        row) to counts."""
        dev = self.seta.device
        probs = self.seta.route_batch(input_ids.to(dev), attention_mask.to(dev), mode=self.mode, k=self.soft_k,
                                      null=self.null)
        if counts is not None:
            for row in probs:
                name = self.tasks[int(row.argmax())] if float(row.sum()) > 0 else "null"
                counts[name] = counts.get(name, 0) + 1

    # ---- generation ---------------------------------------------------------------------------------
    def generate(self, prompts, *, task: str | None = None, max_new_tokens: int | None = None, batch_size: int = 8,
                 progress: bool = False) -> list[Generation]:
        """Greedy answers of `prompts`, each routed through the gate (or to `task`'s expert), in input order.

        Prompts routed to the same task are generated together with that task's answer budget (from its
        training answers, as in evaluation); max_new_tokens overrides it."""
        from seta.eval.generate import generate

        prompts = list(prompts)
        if not prompts:
            return []
        ids = self._encode(prompts)
        if task is not None:
            t = self.task_index(task)
            route = self.seta.router.oracle([t] * len(prompts))
            softmax = route.clone()
        else:
            route, softmax = self.route(prompts)
        routed = [int(r.argmax()) if float(r.sum()) > 0 else None for r in route]
        texts = [""] * len(prompts)
        for group_task in dict.fromkeys(routed):
            members = [i for i, r in enumerate(routed) if r == group_task]
            probs = route[members]

            def before(idx, inputs, probs=probs):
                self.seta.set_routing(probs[idx])

            out = generate(self.seta, self.tokenizer, [ids[i] for i in members], batch_size=batch_size,
                           max_new_tokens=max_new_tokens or self._budget(group_task),
                           stop_text=self._stop(group_task), before_batch=before,
                           after_batch=lambda idx: self.seta.clear_route(), progress=progress)
            for i, text in zip(members, out):
                texts[i] = text
        names = self.tasks
        return [Generation(p, texts[i], None if routed[i] is None else names[routed[i]],
                           {n: round(float(v), 6) for n, v in zip(names, softmax[i])}, task is not None)
                for i, p in enumerate(prompts)]

    # ---- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, tasks, progress: bool = False) -> dict:
        """Score `tasks` (seta.data Tasks, test split) routed as in training's evaluation: the same prompts,
        batches, answer budgets and routing, so the R row equals training's last row.

        Returns {"scores": {task: score}, "R_row": [score per adapter task, None if not given],
        "routing_acc": % of the adapter's tasks' prompts routed to their own task, "routed": {task: {routed: n}}}."""
        from seta.eval.generate import generate
        from seta.eval.scorers import score

        from seta.train.config import TrainConfig

        cfg = TrainConfig.from_dict(self.card["train_config"])  # checked by read_card; missing fields: defaults
        scores, routed_counts, hits, total = {}, {}, 0, 0
        for task in tasks:
            j = self.tasks.index(task.name) if task.name in self.tasks else None
            exs = list(task.test)[: cfg.max_eval_examples] if cfg.max_eval_examples else list(task.test)
            if not exs:
                raise ValueError(f"task {task.name} has no test examples to score")
            prompts = [e.prompt for e in exs]
            counts: dict = {}

            def before(idx, inputs, counts=counts):
                self._route_rows(inputs["input_ids"], inputs["attention_mask"], counts)

            preds = generate(self.seta, self.tokenizer, self._encode(prompts), max_new_tokens=self._budget(j),
                             stop_text=self._stop(j),
                             batch_size=cfg.eval_batch_size, before_batch=before,
                             after_batch=lambda idx: self.seta.clear_route(), progress=progress,
                             desc=f"eval {task.name}")
            scores[task.name] = float(score(task.metric, preds, [e.answer for e in exs], sources=prompts))
            routed_counts[task.name] = counts
            if j is not None:
                hits, total = hits + counts.get(task.name, 0), total + len(exs)
        return {"scores": scores, "R_row": [scores.get(n) for n in self.tasks],
                "routing_acc": 100.0 * hits / total if total else None, "routed": routed_counts}

    # ---- what it holds ------------------------------------------------------------------------------
    def info(self) -> dict:
        return adapter_info(self.directory)

    # ---- deployment ---------------------------------------------------------------------------------
    def merge(self, task: str, out_dir) -> Path:
        """`merge_adapter(self.directory, task, out_dir)`: this adapter and its model stay as they are."""
        return merge_adapter(self.directory, task, out_dir)
