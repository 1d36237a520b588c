"""The expandable gate and the routing decisions (top-1, soft top-k, null expert, oracle)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.models import ExpandableGate, Router


def test_adding_an_expert_keeps_old_logits_bit_identical():
    for hidden in (0, 16):
        torch.manual_seed(0)
        gate = ExpandableGate(32, hidden)
        z = torch.randn(7, 32) * 5 + 1
        gate.add_expert()
        with torch.no_grad():
            for p in gate.parameters():
                p.add_(torch.randn(p.shape))
        before = gate(z)
        old = gate.snapshot()
        gate.add_expert()
        after = gate(z)
        assert after.shape == (7, 2)
        assert torch.equal(after[:, :1], before) and torch.equal(after[:, 1], torch.zeros(7))
        assert torch.equal(old(z), before) and not any(p.requires_grad for p in old.parameters())
        assert gate.l2_anchor(old) == 0
        with torch.no_grad():
            gate.heads[0].bias.add_(0.5)
        assert torch.isclose(gate.l2_anchor(old), torch.tensor(0.25))


def test_layer_norm_makes_the_gate_scale_invariant():
    gate = ExpandableGate(8)
    gate.add_expert()
    gate.add_expert()
    with torch.no_grad():
        gate.heads[0].weight.normal_()
    z = torch.randn(4, 8)
    torch.testing.assert_close(gate(z), gate(100 * z), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        gate(torch.randn(3, 9))


def _router_two_tasks():
    router = Router(4, shrinkage=0.1)
    g = torch.Generator().manual_seed(0)
    for t, centre in ((3, -4.0), (7, 4.0)):
        router.add_task(t)
        z = torch.randn(64, 4, generator=g)
        z[:, 0] += centre
        router.observe(t, z)
        router.calibrate_null(t, z, quantile=0.99)
    with torch.no_grad():  # a gate that separates the two clusters along feature 0
        router.gate.heads[0].weight[0, 0] = -3.0
        router.gate.heads[1].weight[0, 0] = 3.0
    return router


def test_top1_soft_null_and_oracle():
    router = _router_two_tasks()
    z = torch.tensor([[-4.0, 0, 0, 0], [4.0, 0, 0, 0], [0.0, 60.0, -60.0, 0]])
    z[:2, 1] = 0.3  # layer norm needs spread
    assert router.probs(z[:2]).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    soft = router.probs(z[:2], mode="soft", k=2)
    torch.testing.assert_close(soft.sum(1), torch.ones(2))
    assert (soft[0, 0] > soft[0, 1]) and (soft[1, 1] > soft[1, 0])
    assert torch.equal(router.probs(z[:2], mode="soft", k=1), router.probs(z[:2]))
    nulled = router.probs(z, null=True)
    assert nulled[2].sum() == 0 and nulled[:2].sum() == 2  # far from both tasks: the base model
    assert router.is_null(z).tolist() == [False, False, True]
    assert router.oracle([7, 3, 7]).tolist() == [[0, 1], [1, 0], [0, 1]]
    with pytest.raises(ValueError, match="unknown task 5"):
        router.oracle([5])
    with pytest.raises(ValueError, match="mode"):
        router.probs(z, mode="top2")
    zs, cols = router.pseudo_features(10, torch.Generator().manual_seed(1))
    assert zs.shape == (20, 4) and cols.tolist() == [0] * 10 + [1] * 10
    assert zs[:10, 0].mean() < -2 and zs[10:, 0].mean() > 2


def test_router_save_dicts_round_trip():
    router = _router_two_tasks()
    back = Router.from_saved(router.config_dict(), router.tensors())
    z = torch.randn(5, 4)
    assert back.tasks == [3, 7] and back.thresholds == router.thresholds
    assert torch.equal(back.gate(z), router.gate(z))
    assert torch.equal(back.distances(z), router.distances(z))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 5), st.integers(0, 10_000))
def test_soft_top_k_is_a_renormalised_top_k(t, n, k, seed):
    """Rows sum to 1, exactly min(k, t) non-zeros, and they are the k *largest* softmax probabilities,
    renormalised."""
    g = torch.Generator().manual_seed(seed)
    gate = ExpandableGate(6)
    for _ in range(t):
        gate.add_expert()
    with torch.no_grad():
        for p in gate.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    router = Router(6)
    router.gate, router.tasks = gate, list(range(t))
    z = torch.randn(n, 6, generator=g)
    p = router.probs(z, mode="soft", k=k)
    full = torch.softmax(gate(z), 1).detach()
    torch.testing.assert_close(p.sum(1), torch.ones(n))
    assert ((p > 0).sum(1) == min(k, t)).all()
    kept = p > 0
    for row_full, row_kept in zip(full, kept):  # every kept expert beats every dropped one
        if (~row_kept).any():
            assert row_full[row_kept].min() >= row_full[~row_kept].max()
    torch.testing.assert_close(p[kept], (full * kept / (full * kept).sum(1, keepdim=True))[kept])
    top1 = router.probs(z)
    assert torch.equal(top1.argmax(1), full.argmax(1)) and (top1.sum(1) == 1).all()


def test_train_gate_keeps_earlier_tasks_routing_with_pseudo_features():
    """After a new task, pseudo-features of the earlier tasks still route to their own expert (the
    routing-aware regularisation); without it (pseudo=False, no KL/L2) the gate forgets them."""
    from seta.train.gate_training import GateTrainConfig, train_gate

    def fit(cfg):
        router = Router(6, shrinkage=0.1)
        g = torch.Generator().manual_seed(0)
        feats, old = {}, None
        for t in range(3):  # task t's features are shifted along feature t
            router.add_task(t)
            z = torch.randn(200, 6, generator=g)
            z[:, t] += 4.0
            feats[t] = z
            router.observe(t, z)
            train_gate(router, t, z, cfg, old)
            old = router.gate.snapshot()
        return router, feats

    cfg = GateTrainConfig(steps=150, seed=0)
    router, feats = fit(cfg)
    for t, z in feats.items():  # held-in real features and fresh pseudo-features of every task
        assert (router.probs(z).argmax(1) == router.column(t)).float().mean() > 0.95
    zs, cols = router.pseudo_features(100, torch.Generator().manual_seed(3), tasks=[0, 1])
    assert (router.probs(zs).argmax(1) == cols).float().mean() > 0.95
    router, feats = fit(GateTrainConfig(steps=150, seed=0, pseudo=False, kl_weight=0.0, l2_weight=0.0))
    assert (router.probs(feats[0]).argmax(1) == router.column(0)).float().mean() < 0.5  # forgotten


def test_cached_covariance_factor_gives_the_same_draws_gate_and_distances_as_refactorising():
    """The gate's pseudo-features with each task's Cholesky factor cached equal the reference that
    re-factorises Σ_j at every step: same draws, same losses, same trained gate (bit for bit)."""
    from seta.train.gate_training import GateTrainConfig, train_gate

    def fit(cached):
        torch.manual_seed(0)
        router = Router(8, hidden=4, shrinkage=0.1)
        g = torch.Generator().manual_seed(0)
        old, losses = None, []
        for t in range(3):
            router.add_task(t)
            z = torch.randn(40, 8, generator=g)
            z[:, t] += 3.0
            router.observe(t, z)
            losses += train_gate(router, t, z, GateTrainConfig(steps=12, seed=1), old, cached_factors=cached)
            old = router.gate.snapshot()
        return router, losses

    fast, lf = fit(True)
    slow, ls = fit(False)
    assert lf == ls
    for a, b in zip(fast.gate.parameters(), slow.gate.parameters()):
        assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(fast.pseudo_features(7, g1)[0], slow.pseudo_features(7, g2, cached=False)[0])
    # the Mahalanobis precision comes from the same cached factor: equal to the direct inverse
    from seta.core.routing_stats import precision_matrix
    for t in fast.tasks:
        torch.testing.assert_close(fast._precision(t), precision_matrix(fast.stats[t].covariance(0.1)))
    # observing more features invalidates the cached factor
    before = fast.factor(0).clone()
    fast.observe(0, torch.randn(10, 8) * 5)
    assert not torch.equal(fast.factor(0), before)
