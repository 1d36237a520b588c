"""Evaluation batched by routed expert (`Strategy.routing_groups`) against the per-batch reference."""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import torch

import seta.train.loop as loop_mod
from seta.train.loop import ContinualTrainer
from seta.train.strategies import build_strategy

from train_helpers import SETA, SPARSE, TRAIN


def test_grouping_by_routed_expert_gives_the_same_generations_scores_and_routes(make_base, tok, tasks, tmp_path):
    """After a 3-task SETA run, with a gate that sends one task's prompts to several experts, evaluation with batches grouped by routed expert gives the same generations,
    scores and routing log as routing each batch on its own (routing_groups disabled), in as many
    batches, with each route's prompts contiguous (the reference interleaves them)."""
    torch.manual_seed(0)
    strategy = build_strategy("seta", make_base(), tok, SPARSE, seta=replace(SETA, null_expert=False))
    trainer = ContinualTrainer(strategy, tasks, replace(TRAIN, eval_batch_size=4), tmp_path, progress=False)
    trainer.run(base_scores=[0.0] * len(tasks))
    seta = strategy.model
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for layer in seta.layers.values():  # experts that change the generations
            if layer.n_blocks:
                layer.blocks.normal_(0, 0.5, generator=g)
        # a gate that splits every task's prompts into three regions of one direction of h = LN(z):
        # logit_j = K (j s - c_j), s = h·v, switching at midpoints between prompts (no ties)
        prompts = [e.prompt for task in tasks for e in task.test]
        h = torch.nn.functional.layer_norm(strategy.prompt_features(prompts), (seta.router.gate.feature_dim,))
        per_task = h.reshape(len(tasks), -1, h.shape[1])
        within = (per_task - per_task.mean(1, keepdim=True)).reshape(h.shape)  # spread inside each task
        v = torch.linalg.svd(within, full_matrices=False).Vh[0]
        s = (h @ v).sort().values
        n = s.numel()
        q1, q2 = float(s[n // 3 - 1] + s[n // 3]) / 2, float(s[2 * n // 3 - 1] + s[2 * n // 3]) / 2
        for j, (head, c) in enumerate(zip(seta.router.gate.heads, (0.0, q1, q1 + q2))):
            head.weight.copy_(50.0 * j * v[None])
            head.bias.fill_(-50.0 * c)

    def run(grouped: bool):
        preds, routes, per_task = [], [], []
        real_generate, real_set = loop_mod.generate, seta.set_routing

        def capture(*a, **k):
            start = len(routes)
            out = real_generate(*a, **k)
            preds.append(out)
            per_task.append([row for batch in routes[start:] for row in batch])  # routes in batch order
            return out

        def record(probs, experts=None):
            routes.append([tuple(torch.nonzero(row).reshape(-1).tolist()) for row in probs])
            real_set(probs, experts)

        strategy.routing_log.true.clear(), strategy.routing_log.pred.clear()
        patches = [mock.patch.object(loop_mod, "generate", capture), mock.patch.object(seta, "set_routing", record)]
        if not grouped:
            patches.append(mock.patch.object(strategy, "routing_groups", lambda ids, j: None))
        with patches[0], patches[1], (patches[2] if len(patches) > 2 else mock.patch.object(strategy, "name", "seta")):
            scores = [trainer.evaluate(j) for j in range(len(tasks))]
        log = sorted(zip(strategy.routing_log.true, strategy.routing_log.pred))
        return scores, preds, log, [set(r) for r in routes], per_task

    s_g, p_g, log_g, r_g, seq_g = run(True)
    s_r, p_r, log_r, r_r, seq_r = run(False)
    assert s_g == s_r and p_g == p_r and log_g == log_r
    assert len(r_g) == len(r_r)  # as many generate calls
    assert sum(map(len, r_g)) <= sum(map(len, r_r))  # no more experts per batch than the reference
    for seq in seq_g:  # within a task, each route's prompts are contiguous
        assert seq == sorted(seq, key=seq.index)
    assert any(seq != sorted(seq, key=seq.index) for seq in seq_r)  # the reference interleaves them
    assert len(set().union(*r_g)) > 1
