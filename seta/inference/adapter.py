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

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seta.inference.card import check_base, read_card


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


def load_card_tokenizer(card: dict):
    from seta.models import load_tokenizer

    return load_tokenizer(card["base"]["tokenizer"])


def load_base_from_card(card: dict, base=None, device_map=None):
    """A fresh copy of the adapter's base, loaded the way training loaded it. base: another path or id."""
    from seta.models import load_base_model

    src = card["base"]
    name = str(base) if base is not None else src["model"]
    if src["kind"] == "tiny" and base is None and not Path(name).is_dir():
        raise FileNotFoundError(f"the adapter's tiny base {name} no longer exists (it is built by `seta run` / "
                                "`seta train` under <out>/../.cache); rerun training, or pass the base with --base")
    if device_map is None:
        device_map = "auto" if torch.cuda.is_available() and src["kind"] == "hf" else None
    return load_base_model(name, load_in_4bit=bool(src.get("load_in_4bit")), dtype=src.get("dtype", "bfloat16"),
                           device_map=device_map)


def base_factory_from_card(card: dict):
    def factory():
        return load_base_from_card(card)

    factory.source = {k: v for k, v in card["base"].items() if k not in ("config_hash", "weights_hash", "model_type")}
    return factory


class SetaAdapter:
    """A SetaModel (base + experts + gate), its tokenizer and its card."""

    def __init__(self, seta, tokenizer, card: dict, directory):
        self.seta, self.tokenizer, self.card, self.directory = seta, tokenizer, card, Path(directory)
        sp = card["sparse_config"]
        self.mode = "top1" if sp["routing"] == "oracle" else sp["routing"]
        self.soft_k, self.null = int(sp["soft_k"]), bool(sp["null_expert"])

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
        if task is None:
            return int(self.card["train_config"]["max_new_tokens"])
        return int(self.card["tasks"][task]["max_new_tokens"])

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

    def route_callbacks(self):
        """(route(input_ids, attention_mask), clear()) for `seta.eval.harness.RoutedLM`: every forward routed
        through the gate as `generate` routes (null expert included)."""
        def route(input_ids, attention_mask):
            dev = self.seta.device
            self.seta.route_batch(input_ids.to(dev), attention_mask.to(dev), mode=self.mode, k=self.soft_k,
                                  null=self.null)

        return route, self.seta.clear_route

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
                           max_new_tokens=max_new_tokens or self._budget(group_task), before_batch=before,
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

        cfg = self.card["train_config"]
        scores, routed_counts, hits, total = {}, {}, 0, 0
        for task in tasks:
            j = self.tasks.index(task.name) if task.name in self.tasks else None
            exs = list(task.test)[: cfg["max_eval_examples"]] if cfg.get("max_eval_examples") else list(task.test)
            if not exs:
                raise ValueError(f"task {task.name} has no test examples to score")
            prompts = [e.prompt for e in exs]
            counts: dict = {}

            def before(idx, inputs, counts=counts):
                dev = self.seta.device
                probs = self.seta.route_batch(inputs["input_ids"].to(dev), inputs["attention_mask"].to(dev),
                                              mode=self.mode, k=self.soft_k, null=self.null)
                for row in probs:
                    name = self.tasks[int(row.argmax())] if float(row.sum()) > 0 else "null"
                    counts[name] = counts.get(name, 0) + 1

            preds = generate(self.seta, self.tokenizer, self._encode(prompts), max_new_tokens=self._budget(j),
                             batch_size=int(cfg["eval_batch_size"]), before_batch=before,
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


def merge_adapter(adapter_dir, task: str, out_dir) -> Path:
    """A dense HF checkpoint in out_dir: the adapter's base with `task`'s expert folded into its weights
    (W + Δ_{S_task}), loadable by plain `transformers`, equal in outputs to SETA with `task` routed.

    A fresh copy of the base is loaded for it: the adapter folder, and any model loaded from it, are left
    untouched. Dense bases only: a 4-bit base cannot hold W + Δ exactly (ValueError)."""
    from seta.models import SetaModel

    card = read_card(adapter_dir)
    names = [t["name"] for t in card["tasks"]]
    if task not in names:
        raise ValueError(f"unknown task {task!r}; the adapter has: {', '.join(names)}")
    if card["base"].get("load_in_4bit"):
        raise ValueError(f"cannot merge {adapter_dir}: its base is 4-bit (NF4), whose weights cannot hold W + Δ "
                         "exactly; keep the adapter and route with `seta generate --task`, or retrain on a dense base")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder")
    model = load_base_from_card(card)
    check_base(card, model, adapter_dir)
    seta = SetaModel.from_pretrained(model, adapter_dir)
    t = names.index(task)
    dense = seta.merge_and_unload(seta.registry.expert(t))
    out.mkdir(parents=True, exist_ok=True)
    dense.save_pretrained(out)
    load_card_tokenizer(card).save_pretrained(out)
    (out / "seta_merge.json").write_text(json.dumps(
        {"adapter": str(Path(adapter_dir).resolve()), "task": task, "blocks": int(seta.registry.expert(t).numel()),
         "base": card["base"]}, indent=1))
    return out


def adapter_info(adapter_dir) -> dict:
    """What an adapter holds, read from its files (no base model is loaded): tasks, blocks per task (unique
    to it / shared with other tasks), growth |∪S_j| / Σ|S_j|, routing statistics of the gate, and, when the
    training run's result.json sits next to the folder, the routing accuracy measured in training."""
    from safetensors import safe_open

    from seta.core.allocation import OwnershipRegistry
    from seta.models import CONFIG_NAME, WEIGHTS_NAME, Router

    d = Path(adapter_dir)
    card = read_card(d)
    cfg = json.loads((d / CONFIG_NAME).read_text())
    reg = OwnershipRegistry.from_dict(cfg["registry"])
    with safe_open(str(d / WEIGHTS_NAME), framework="pt") as f:
        router = Router.from_saved(cfg["router"], {k[7:]: f.get_tensor(k) for k in f.keys() if k.startswith("router.")})
    counts = reg.owner_counts()
    rows = []
    for t, entry in enumerate(card["tasks"]):
        s = reg.expert(t)
        unique = int((counts[s] == 1).sum())
        stats = router.stats.get(t)
        rows.append({"task": entry["name"], "metric": entry["metric"], "blocks": int(s.numel()), "unique": unique,
                     "shared": int(s.numel()) - unique, "max_new_tokens": entry["max_new_tokens"],
                     "features_seen": None if stats is None else int(stats.n),
                     "null_threshold": router.thresholds.get(t)})
    sp = card["sparse_config"]
    info = {"adapter": str(d), "method": card["method"], "preset": card.get("preset"), "base": card["base"],
            "tasks": rows, "block_size": cfg["expert_config"]["block_size"], "blocks_total": reg.n_blocks,
            "blocks_allocated": int(reg.allocated().numel()), "blocks_shared": int(reg.shared().numel()),
            "sum_of_experts": sum(r["blocks"] for r in rows), "growth_ratio": reg.growth_ratio(),
            "routing": {"mode": sp["routing"], "soft_k": sp["soft_k"], "null_expert": sp["null_expert"]}}
    result = d.parent / "result.json"
    if result.is_file():
        try:
            r = json.loads(result.read_text())
            info["routing"].update(train_routing_acc=r.get("routing_acc"), train_null_routed=r.get("extra", {}).get("null_routed"))
        except ValueError:
            pass
    return info
