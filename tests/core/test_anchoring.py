"""Elastic anchoring / EWC: zero with zero gradient at the anchor, strictly growing away from it,
EWC is the same maths, online Fisher merge, scale-free normalisation."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.anchoring import (
    adaptive_strength,
    elastic_anchor_penalty,
    ewc_penalty,
    mean_fisher,
    merge_fisher,
    normalise_fisher,
)

SPEC = settings(max_examples=200, deadline=None)

blocks = st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31 - 1))  # k, b, seed


def draw(k, b, seed):
    gen = torch.Generator().manual_seed(seed)
    anchor = torch.randn(k, b, b, generator=gen, dtype=torch.float64)
    fisher = torch.rand(k, b, b, generator=gen, dtype=torch.float64) + 0.1  # strictly positive
    owners = torch.randint(1, 4, (k,), generator=gen)
    direction = torch.randn(k, b, b, generator=gen, dtype=torch.float64)
    return anchor, fisher, owners, direction


def explicit(theta, anchor, fisher, strength):
    total = 0.0
    for i in range(theta.shape[0]):
        total += strength[i].item() / 2 * (fisher[i] * (theta[i] - anchor[i]) ** 2).sum().item()
    return total


@SPEC
@given(blocks, st.floats(0.01, 10.0))
def test_penalty_zero_with_zero_gradient_at_anchor(blk, lam):
    anchor, fisher, owners, _ = draw(*blk)
    theta = anchor.clone().requires_grad_(True)
    loss = elastic_anchor_penalty(theta, anchor, fisher, adaptive_strength(owners, lam).double())
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(theta.grad) == 0


@SPEC
@given(blocks, st.floats(0.01, 10.0))
def test_penalty_matches_formula_and_strictly_grows_away_from_anchor(blk, lam):
    anchor, fisher, owners, direction = draw(*blk)
    strength = adaptive_strength(owners, lam).double()
    values = []
    for t in (0.0, 0.5, 1.0, 2.0):
        theta = anchor + t * direction
        value = elastic_anchor_penalty(theta, anchor, fisher, strength)
        assert value.item() == pytest.approx(explicit(theta, anchor, fisher, strength), rel=1e-10, abs=1e-12)
        values.append(value.item())
    assert values[0] == 0.0
    assert all(a < b for a, b in zip(values, values[1:]))
    # quadratic in the distance: L(2d) = 4 L(d)
    assert values[3] == pytest.approx(4 * values[2], rel=1e-10)


@SPEC
@given(blocks, st.floats(0.0, 10.0))
def test_ewc_equals_anchor_penalty_on_the_same_inputs(blk, lam):
    anchor, fisher, _, direction = draw(*blk)
    theta = anchor + direction
    k = theta.shape[0]
    ewc = ewc_penalty(list(theta), list(anchor), list(fisher), lam)
    anchored = elastic_anchor_penalty(theta, anchor, fisher, torch.full((k,), lam, dtype=torch.float64))
    torch.testing.assert_close(ewc, anchored, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ewc.item(), explicit(theta, anchor, fisher, torch.full((k,), lam, dtype=torch.float64)), rtol=1e-10, atol=1e-12)


def test_ewc_gradient_is_fisher_weighted_distance():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    a, f = torch.tensor([0.0, 0.0]), torch.tensor([3.0, 0.5])
    ewc_penalty([p], [a], [f], lam=2.0).backward()
    torch.testing.assert_close(p.grad, 2.0 * f * (p.detach() - a))  # d/dp (lam/2) F (p-a)^2


@SPEC
@given(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=5), st.floats(0.0, 1.0))
def test_online_merge_is_discounted_sum(seeds, gamma):
    per_task = [torch.rand(2, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
    merged = None
    for f in per_task:
        merged = merge_fisher(merged, f, gamma)
    n = len(per_task)
    expected = sum(gamma ** (n - 1 - t) * f for t, f in enumerate(per_task))
    torch.testing.assert_close(merged, expected, rtol=1e-12, atol=1e-12)


@SPEC
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.floats(1e-6, 1e6), st.integers(0, 2**31 - 1))
def test_normalised_fisher_has_unit_mean_and_is_scale_free(sizes, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    fishers = [torch.rand(s, 2, generator=gen, dtype=torch.float64) + 1e-3 for s in sizes]
    before = [f.clone() for f in fishers]
    normed = normalise_fisher(fishers)
    total = sum(f.sum() for f in normed) / sum(f.numel() for f in normed)
    assert total.item() == pytest.approx(1.0, rel=1e-10)
    for a, b in zip(normed, normalise_fisher([scale * f for f in fishers])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=0)
    for f, g in zip(fishers, before):  # input untouched
        assert torch.equal(f, g)


def test_normalise_fisher_mean_is_over_valid_elements_only():
    f = torch.tensor([[2.0, 0.0], [4.0, 0.0]])  # second column = padding of a ragged block
    valid = torch.tensor([[True, False], [True, False]])
    (out,) = normalise_fisher([f], valid=[valid])
    torch.testing.assert_close(out, torch.tensor([[2 / 3, 0.0], [4 / 3, 0.0]]))
    (zero,) = normalise_fisher([torch.zeros(2, 2)])
    assert torch.equal(zero, torch.zeros(2, 2))


def test_adaptive_strength_and_errors():
    torch.testing.assert_close(adaptive_strength(torch.tensor([0, 1, 3]), 0.5), torch.tensor([0.0, 0.5, 1.5]))
    with pytest.raises(ValueError):
        adaptive_strength(torch.tensor([1]), -1.0)
    with pytest.raises(ValueError):
        elastic_anchor_penalty(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), torch.zeros(2, 2, 2), torch.ones(3))
    with pytest.raises(ValueError):
        ewc_penalty([torch.zeros(2)], [torch.zeros(3)], [torch.zeros(2)], 1.0)
    with pytest.raises(ValueError):
        merge_fisher(torch.zeros(2), torch.zeros(3))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_running_mean_fisher_is_the_mean_over_owners(n_owners, seed):
    """F after n owners = (1/n) Σ_j F^(j): it does not grow with the owners, so λ_B F_B is linear in n."""
    g = torch.Generator().manual_seed(seed)
    per_task = [torch.rand(3, 2, 2, generator=g, dtype=torch.float64) for _ in range(n_owners)]
    F = None
    for j, f in enumerate(per_task):
        F = mean_fisher(F, f, j)
    torch.testing.assert_close(F, torch.stack(per_task).mean(0))
    # equal Fisher from every owner: the stiffness λ·n·F grows linearly, F itself stays put
    same = [per_task[0]] * n_owners
    F = None
    for j, f in enumerate(same):
        F = mean_fisher(F, f, torch.full((3,), j))
    torch.testing.assert_close(F, per_task[0])
    stiffness = adaptive_strength(torch.tensor([n_owners]), 2.0).double() * F[0]  # λ_B F_B
    torch.testing.assert_close(stiffness, 2.0 * n_owners * per_task[0][0])


def test_mean_fisher_per_block_counts_and_errors():
    old = torch.tensor([[2.0], [4.0]])
    new = torch.tensor([[4.0], [1.0]])
    assert mean_fisher(old, new, torch.tensor([1, 3])).tolist() == [[3.0], [3.25]]
    with pytest.raises(ValueError, match="needs the old Fisher"):
        mean_fisher(None, new, 2)
    with pytest.raises(ValueError, match=">= 0"):
        mean_fisher(old, new, -1)
