"""A trained method's routing inside someone else's forward: lm-eval, perplexity, generation.

A strategy routes a prompt batch with ``strategy.route(inputs, -1)`` (no task id: what a user's
prompt looks like) and undoes it with ``strategy.clear_route()``. These helpers put that pair
around the forwards that general-ability measurements make.
"""

from __future__ import annotations


def strategy_route(strategy):
    """(route, clear) callbacks for the harness: the method routes each prompt batch as at inference,
    without the task id (``strategy.route(inputs, -1)``), and ``clear_route`` undoes it."""
    def route(input_ids, attention_mask):
        strategy.route({"input_ids": input_ids, "attention_mask": attention_mask}, -1)

    return route, strategy.clear_route


def heldout_ppl(strategy, tokenizer, seed: int) -> float:
    """Held-out perplexity of the generic text, routed the way the method routes (general ability)."""
    import torch

    from seta.data import generic_corpus
    from seta.train.pretrain import perplexity

    texts = list(generic_corpus(seed).heldout)

    class Routed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = strategy.model

        def forward(self, input_ids):
            strategy.route({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, -1)
            try:
                return strategy.model(input_ids=input_ids)
            finally:
                strategy.clear_route()

    return perplexity(Routed(), tokenizer, texts)


def general_ability(model, tokenizer, data, cfg, progress: bool, strategy=None, max_gen_toks=None) -> dict:
    """MMLU/BBH/PIQA scores through lm-evaluation-harness, routed the way the method routes.
    cfg: a preset (its ``train.eval_batch_size``); max_gen_toks: BBH generation cap (None: lm-eval's 256)."""
    from seta.eval.harness import general_ability_details

    route, clear = strategy_route(strategy) if strategy is not None else (None, None)
    res = general_ability_details(model, tokenizer, data, route=route, clear=clear, progress=progress,
                                  batch_size=cfg.train.eval_batch_size, max_gen_toks=max_gen_toks)
    return {b: {"score": r.score, "metric": r.metric, "n": r.n, "subsets": r.subsets, **r.other} for b, r in res.items()}
