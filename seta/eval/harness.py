"""General ability through lm-evaluation-harness: MMLU, BBH and PIQA from local files, routed.

`RoutedLM` is an lm-eval model over an already-loaded HF causal LM whose optional
``route(input_ids, attention_mask)`` callback runs before every forward or ``generate``
and ``clear()`` after it, so that a method's routing (SETA's gate, an adapter, nothing for
the base) is inside the forward. The route sees the prompt only, left-padded (B, T), with
B the rows of the forward that follows: for a log-likelihood row the context without the
continuation scored (every choice of a question is scored under the same route), for
generation the prompt (the route is held while decoding).

`general_ability` builds lm-eval tasks (`seta.eval.harness_tasks`) over the local files that
`seta.eval.general_data.load_general_data` reads (its docstring gives the layout) and returns a
score per benchmark (0-100). Prompts follow lm-eval's stock tasks ``mmlu`` (5-shot from dev), ``bbh_fewshot`` (3-shot,
direct answer; exemplars from ``fewshot.jsonl``, else the stock task's three) and ``piqa``
(0-shot on validation). Metrics: MMLU acc, BBH exact match after stripping surrounding
whitespace, PIQA acc_norm (acc kept in the details). A benchmark's score is the mean over
all its items scored (lm-eval's size-weighted group mean). Greedy decoding only.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from seta.eval.general_data import BENCHMARKS, DEFAULT_FEWSHOT, SPLITS, Subset, load_general_data
from seta.eval.generate import cut_at_stop, left_pad
from seta.eval.harness_tasks import BBH_STOP, HEADLINE, MMLU_PROMPT, build_task

try:
    import lm_eval
    from lm_eval.api.model import TemplateLM
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("seta.eval.harness needs lm-evaluation-harness: pip install 'seta[harness]'") from err

__all__ = ["RoutedLM", "BenchmarkScore", "general_ability", "general_ability_details", "load_general_data", "Subset",
           "BENCHMARKS", "DEFAULT_FEWSHOT", "HEADLINE", "SPLITS", "MMLU_PROMPT", "BBH_STOP", "Route"]

Route = Callable[[torch.Tensor, torch.Tensor], None]


class RoutedLM(TemplateLM):
    """lm-eval LM over a loaded HF causal LM, with ``route``/``clear`` around every forward."""

    def __init__(self, model, tokenizer, *, route: Route | None = None, clear: Callable[[], None] | None = None,
                 batch_size: int = 8, max_length: int | None = None, max_gen_toks: int = 256, progress: bool = True,
                 share_forwards: bool = True):
        super().__init__()
        if batch_size < 1 or max_gen_toks < 1:
            raise ValueError(f"batch_size and max_gen_toks must be >= 1, got {batch_size} and {max_gen_toks}")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token: lm-eval needs one to condition empty contexts")
        self.model, self.tokenizer = model, tokenizer
        self.route, self.clear = route, clear
        self.batch_size, self.max_gen_toks, self.progress = batch_size, max_gen_toks, progress
        self.share_forwards = share_forwards  # False: one forward row per request (the reference path)
        hf = next((m for m in model.modules() if hasattr(m, "get_input_embeddings")), None)  # wrappers hold one
        if hf is None:
            raise ValueError(f"{type(model).__name__} holds no HF model (no get_input_embeddings)")
        self.max_length = max_length or getattr(hf.config, "max_position_embeddings", None)
        if not self.max_length:
            raise ValueError("the model's config has no max_position_embeddings: pass max_length")
        self._device = hf.get_input_embeddings().weight.device
        # logits only for the positions scored (HF causal LMs since transformers 4.50; wrappers pass it on)
        self._keep = any("logits_to_keep" in inspect.signature(m.forward).parameters for m in model.modules())
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return self.eot_token_id if bos is None else bos

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        if add_special_tokens is None:  # the tokenizer's default (a bos for Llama), unless already there
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return list(self.tokenizer(string, add_special_tokens=add_special_tokens)["input_ids"])

    def _routed(self, prompts: list[list[int]], call: Callable[[], torch.Tensor]):
        """route(left-padded prompts) -> call() -> clear(), with the model in eval mode."""
        if self.route is not None:
            p = left_pad(prompts, self.pad_id)
            self.route(p["input_ids"].to(self.device), p["attention_mask"].to(self.device))
        try:
            with torch.no_grad():
                return call()
        finally:
            if self.clear is not None:
                self.clear()

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), continuation is the greedy one) per request.

        Requests whose forward input is the same (the same context and, before the last scored token, the same
        continuation tokens) share one forward row: the four one-token choices of an MMLU question are one row.
        Causal attention makes this exact: appending the last token changes no logit before it
        (``share_forwards=False``: one row per request, the reference path)."""
        rows = []
        for _, ctx, cont in requests:
            if not 0 < len(cont) <= self.max_length:
                raise ValueError(f"a continuation of {len(cont)} tokens does not fit the model's {self.max_length}")
            full = (list(ctx) + list(cont))[-(self.max_length + 1):]  # left-truncated
            rows.append((full, len(full) - len(cont)))  # (tokens, how many of them are context)
        members: dict[tuple, list[int]] = {}  # (forward input, n_ctx) -> the requests it scores
        for i, (full, n_ctx) in enumerate(rows):
            members.setdefault((tuple(full[:-1]), n_ctx) if self.share_forwards else (i,), []).append(i)
        groups = sorted(members.values(), key=lambda g: -len(rows[g[0]][0]))
        out: list[tuple[float, bool] | None] = [None] * len(rows)
        was_training = self.model.training
        self.model.eval()
        try:
            for s in tqdm(range(0, len(groups), self.batch_size), desc="loglikelihood",
                          disable=disable_tqdm or not self.progress, leave=False):
                batch = groups[s : s + self.batch_size]
                heads = [rows[g[0]] for g in batch]  # (tokens, n_ctx) of each forward row
                inps = [full[:-1] for full, _ in heads]
                t = max(len(x) for x in inps)
                ids = torch.full((len(batch), t), self.pad_id, dtype=torch.long)  # (B, T) right-padded
                mask = torch.zeros((len(batch), t), dtype=torch.long)  # (B, T)
                for r, x in enumerate(inps):
                    ids[r, : len(x)] = torch.tensor(x)
                    mask[r, : len(x)] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                kw = {"logits_to_keep": t - min(n_ctx for _, n_ctx in heads) + 1} if self._keep else {}
                logits = self._routed([full[:n_ctx] for full, n_ctx in heads],
                                      lambda: self.model(input_ids=ids, attention_mask=mask, **kw).logits)  # (B, K, V)
                off = t - logits.shape[1]  # logits hold the last K of the T positions
                for r, group in enumerate(batch):
                    full, n_ctx = heads[r]
                    lp = F.log_softmax(logits[r, n_ctx - 1 - off : len(full) - 1 - off].float(), dim=-1)  # (C, V)
                    greedy = lp.argmax(-1)  # (C,)
                    for i in group:
                        cont = torch.tensor(rows[i][0][n_ctx:], device=logits.device)  # (C,)
                        out[i] = (float(lp.gather(1, cont[:, None]).sum()), bool((greedy == cont).all()))
        finally:
            self.model.train(was_training)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole strings in disjoint windows of the model's length."""
        out = []
        for (string,) in [r.args for r in requests]:
            tokens = self.tok_encode(string, add_special_tokens=False)
            windows = get_rolling_token_windows(token_list=tokens, prefix_token=self.prefix_token_id,
                                                max_seq_len=self.max_length, context_len=1)
            reqs = [(None, c, t) for c, t in map(make_disjoint_window, windows)]
            out.append(sum(s for s, _ in self._loglikelihood_tokens(reqs, disable_tqdm=True)))
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations cut at the request's ``until`` strings (and the eos token)."""
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        was_training = self.model.training
        self.model.eval()
        try:
            for idxs in groups.values():
                kw = dict(requests[idxs[0]].args[1])
                until = kw.pop("until", None) or []
                until = [until] if isinstance(until, str) else [u for u in until if u]
                max_new = int(kw.pop("max_gen_toks", self.max_gen_toks))
                if kw.pop("do_sample", False) or float(kw.pop("temperature", 0.0) or 0.0) > 0:
                    raise ValueError("RoutedLM decodes greedily only: set do_sample false / temperature 0")
                if max_new >= self.max_length:
                    raise ValueError(f"max_gen_toks {max_new} leaves no room for a prompt in {self.max_length} tokens")
                ctxs = {i: self.tok_encode(requests[i].args[0])[-(self.max_length - max_new):] for i in idxs}
                order = sorted(idxs, key=lambda i: -len(ctxs[i]))
                for s in tqdm(range(0, len(order), self.batch_size), desc="generate_until",
                              disable=disable_tqdm or not self.progress, leave=False):
                    idx = order[s : s + self.batch_size]
                    prompts = [ctxs[i] for i in idx]
                    inputs = {k: v.to(self.device) for k, v in left_pad(prompts, self.pad_id).items()}
                    stop = {"stop_strings": until, "tokenizer": self.tokenizer} if until else {}
                    gen = self._routed(prompts, lambda: self.model.generate(
                        **inputs, do_sample=False, max_new_tokens=max_new, pad_token_id=self.pad_id,
                        eos_token_id=self.eot_token_id, **stop, **kw))  # (B, T + new)
                    for i, toks in zip(idx, gen[:, inputs["input_ids"].shape[1]:].tolist()):
                        text = self.tokenizer.decode(cut_at_stop(toks, {self.eot_token_id}), skip_special_tokens=True)
                        for u in until:
                            text = text.split(u)[0]
                        out[i] = text
        finally:
            self.model.train(was_training)
        return out


@dataclass(frozen=True)
class BenchmarkScore:
    """One benchmark's result: ``score`` (0-100) is ``metric`` averaged over the ``n`` items scored."""

    score: float
    metric: str
    n: int
    subsets: dict[str, float]
    """Per-subset score (0-100): MMLU subjects, BBH subtasks, ``piqa``."""
    other: dict[str, float] = field(default_factory=dict)
    """Other metrics over the same items (0-100): PIQA's ``acc``."""


def general_ability_details(model, tokenizer, data, tasks: Sequence[str] | None = None, *, route: Route | None = None,
                            clear: Callable[[], None] | None = None, limit: int | None = None, batch_size: int = 8,
                            num_fewshot: Mapping[str, int] | None = None, max_gen_toks: int | None = None,
                            max_length: int | None = None, progress: bool = True) -> dict[str, BenchmarkScore]:
    """Score ``model`` on ``tasks`` (default: all three, or all in ``data``) of ``data``: a directory, or
    `load_general_data`'s result (then ``limit`` and the few-shot counts were fixed when loading it).

    route/clear: called around every forward and ``generate`` (see `RoutedLM`); limit: items per
    benchmark; num_fewshot: overrides of `DEFAULT_FEWSHOT`; max_gen_toks: BBH generation cap (256);
    max_length: prompt + continuation tokens (default the model's max_position_embeddings).
    """
    from lm_eval.tasks import TaskManager

    shots = {**DEFAULT_FEWSHOT, **(num_fewshot or {})}
    if not isinstance(data, Mapping):
        data = load_general_data(data, tasks or BENCHMARKS, limit=limit, num_fewshot=shots)
    elif limit is not None:
        raise ValueError("limit applies while loading: pass it to load_general_data, or pass a directory")
    tasks = tuple(tasks or data)
    missing = [t for t in tasks if t not in data]
    if missing:
        raise ValueError(f"benchmark(s) {missing} were not loaded; pass them to load_general_data")
    short = [f"{t}/{s.name}" for t in tasks for s in data[t] if len(s.fewshot_docs) < shots[t]]
    if short:
        raise ValueError(f"{short[:3]} hold fewer few-shot examples than {({t: shots[t] for t in tasks})}: "
                         "load the data with the same num_fewshot")
    lm = RoutedLM(model, tokenizer, route=route, clear=clear, batch_size=batch_size, max_length=max_length,
                  progress=progress, **({"max_gen_toks": max_gen_toks} if max_gen_toks else {}))
    log = logging.getLogger("lm_eval")
    level = log.level
    log.setLevel(logging.ERROR)  # lm-eval warns once per task about custom datasets
    try:
        task_objs = {t: [build_task(s, shots[t], max_gen_toks) for s in data[t]] for t in tasks}
        res = lm_eval.simple_evaluate(model=lm, tasks=[x for ts in task_objs.values() for x in ts],
                                      task_manager=TaskManager(include_defaults=False), bootstrap_iters=0,
                                      log_samples=False)
    finally:
        log.setLevel(level)
    out = {}
    for bench in tasks:
        key = HEADLINE[bench] + (",strip" if bench == "bbh" else ",none")
        subsets, other, total, n = {}, {}, 0.0, 0
        for s in data[bench]:
            name = f"{bench}_{s.name}"
            r, k = res["results"][name], int(res["n-samples"][name]["effective"])
            subsets[s.name] = 100.0 * float(r[key])
            if bench == "piqa":
                other["acc"] = 100.0 * float(r["acc,none"])
            total, n = total + float(r[key]) * k, n + k
        out[bench] = BenchmarkScore(100.0 * total / n, HEADLINE[bench], n, subsets, other)
    return out


def general_ability(model, tokenizer, data, tasks: Sequence[str] | None = None, **kwargs) -> dict[str, float]:
    """Score per benchmark (0-100): MMLU acc, BBH exact match, PIQA acc_norm; see `general_ability_details`."""
    return {k: v.score for k, v in general_ability_details(model, tokenizer, data, tasks, **kwargs).items()}
