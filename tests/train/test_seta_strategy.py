"""The SETA strategy's own logic, driven through allocate → train → after_task over random short streams
(docs/method.md §2-§3), checked against bookkeeping kept here, independently of the registry:

- the stack holds exactly the allocated ids, and new blocks start at zero;
- the anchored set of task t is S_t ∩ ∪_{j<t} S_j, with strength λ · (earlier owners);
- θ* of a block equals its value when its last owner's task ended;
- F of a block is the mean of its owners' Fisher estimates (linear stiffness, not n²);
- blocks outside S_t (unique blocks of earlier tasks included) are bit-identical after task t.

The probe's scores are drawn by hypothesis (few distinct values, so ties and sharing are frequent);
training, Fisher, anchoring and the gate are the real ones.
"""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seta.core.allocation import ALLOCATION_RULES
from seta.models import build_tiny_model
from seta.models.probes import estimate_block_fisher
from seta.train.loop import ContinualTrainer
from seta.train.strategies import build_strategy

from train_helpers import SETA, SPARSE, TRAIN

N_BLOCKS = 288  # the tiny Llama's target blocks at b = 16 (checked below)


def _drive(tok, tasks, scores, rule, ratio, beta, lam, tmp):
    """Run SETA over len(scores) tasks with the given probe scores; check every invariant per task."""
    torch.manual_seed(0)
    sparse, cfg = replace(SPARSE, allocation=rule, ratio=ratio), replace(SETA, beta=beta, anchor_lambda=lam)
    strategy = build_strategy("seta", build_tiny_model("llama", tokenizer=tok, seed=0), tok, sparse, seta=cfg)
    seta = strategy.model
    assert seta.index.n_blocks == N_BLOCKS
    trainer = ContinualTrainer(strategy, tasks[: len(scores)], TRAIN, tmp, progress=False)
    experts: list[set[int]] = []  # S_j, kept here
    theta_end: dict[int, torch.Tensor] = {}  # block -> value when its last owner's task ended
    fishers: dict[int, list[torch.Tensor]] = {}  # block -> the Fisher estimates of its owners
    real_fisher = estimate_block_fisher

    def recording_fisher(model, ids, batches, loss_fn=None):
        f = real_fisher(model, ids, batches, loss_fn)
        for g, v in zip(model._ids(ids).tolist(), f):
            fishers.setdefault(g, []).append(v.clone())
        return f

    score_iter = iter(scores)
    with mock.patch("seta.models.probes.probe_block_sensitivity", lambda *a, **k: next(score_iter)), \
         mock.patch("seta.api.model.estimate_block_fisher", recording_fisher):
        for t, task in enumerate(trainer.tasks):
            ids_before = seta.allocated_ids()
            before = seta.get_blocks(ids_before).detach().clone()
            strategy.before_task(t, task, lambda t=t: trainer.probe_batches(t))
            s_t = set(seta.registry.expert(t).tolist())
            earlier = set().union(*experts) if experts else set()
            # the stack holds exactly the allocated ids; new blocks are zero
            assert seta.allocated_ids().tolist() == sorted(earlier | s_t)
            new = sorted(s_t - earlier)
            assert strategy.allocation.new.tolist() == new
            assert torch.count_nonzero(seta.get_blocks(new)) == 0
            # anchored = S_t ∩ ∪_{j<t} S_j with λ · (earlier owners), θ* = value at the last owner's end
            shared = sorted(s_t & earlier)
            if lam > 0 and shared:
                a_ids, a_theta, _, strength = strategy.api.anchored
                assert a_ids.tolist() == shared
                owners = torch.tensor([sum(b in s for s in experts) for b in shared], dtype=torch.float32)
                torch.testing.assert_close(strength.cpu(), lam * owners)
                assert torch.equal(a_theta.cpu(), torch.stack([theta_end[b] for b in shared]))
            else:
                assert strategy.api.anchored is None
            trainer._train_task(t, "test")
            strategy.after_task(t, task, lambda t=t: trainer.probe_batches(t))
            experts.append(s_t)
            # blocks outside S_t did not move
            keep = [i for i, g in enumerate(ids_before.tolist()) if g not in s_t]
            if keep:
                now = seta.get_blocks(ids_before[keep]).detach()
                assert torch.equal(now, before[keep])
            # θ* and F of S_t: the value now, and the mean of the owners' Fisher estimates
            for g, v in zip(sorted(s_t), seta.get_blocks(sorted(s_t)).detach()):
                theta_end[g] = v.clone()
            found, anchor, fisher = seta.anchors.lookup(torch.tensor(sorted(s_t)))
            assert bool(found.all())
            assert torch.equal(anchor, torch.stack([theta_end[g] for g in sorted(s_t)]))
            mean_f = torch.stack([torch.stack(fishers[g]).mean(0) for g in sorted(s_t)])
            torch.testing.assert_close(fisher, mean_f, rtol=1e-5, atol=1e-12)
            counts = seta.anchors.count[torch.searchsorted(seta.anchors.ids, torch.tensor(sorted(s_t)))]
            assert counts.tolist() == [sum(g in s for s in experts) for g in sorted(s_t)]
    return strategy, experts


@st.composite
def streams(draw):
    n_tasks = draw(st.integers(2, 3))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    scores = [levels[torch.randint(0, 5, (N_BLOCKS,), generator=g)] for _ in range(n_tasks)]
    return dict(scores=scores, rule=draw(st.sampled_from(ALLOCATION_RULES)),
                ratio=draw(st.sampled_from([0.02, 0.05, 0.1])), beta=draw(st.sampled_from([0.0, 0.1, 1.0])),
                lam=draw(st.sampled_from([0.0, 0.5, 3.0])))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=streams())
def test_seta_strategy_invariants_on_random_streams(s, tok, tasks, tmp_path):
    _drive(tok, tasks, s["scores"], s["rule"], s["ratio"], s["beta"], s["lam"], tmp_path)


def test_stiffness_is_linear_in_the_owners(tok, tasks, tmp_path):
    """Three tasks that all want the same hot blocks: at task 3 those blocks have 2 earlier owners,
    so their strength is 2λ (a constant λ, or λ·n² from summed Fisher, would fail above)."""
    hot = torch.zeros(N_BLOCKS, dtype=torch.float64)
    hot[:4] = 10.0  # 4 blocks of the first matrix: every task takes them
    scores = [hot + 0.01 * torch.rand(N_BLOCKS, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
              for t in range(3)]
    strategy, experts = _drive(tok, tasks, scores, "raw", 0.02, 0.1, 1.5, tmp_path)
    ids, _, _, strength = strategy.api.anchored
    assert set(range(4)) <= set(ids.tolist())
    pos = [ids.tolist().index(b) for b in range(4)]
    assert strength[pos].tolist() == [3.0] * 4  # λ · 2 earlier owners
