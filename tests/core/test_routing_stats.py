"""Routing statistics: streaming moments equal the batch computation for any chunking, pseudo-features
have the stored moments, Mahalanobis equals its formula, the KL distillation term is >= 0 and 0 at
new == old."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.routing_stats import (
    FeatureStats,
    in_task_threshold,
    is_out_of_distribution,
    mahalanobis,
    precision_matrix,
    routing_distillation_kl,
    sample_pseudo_features,
)

SPEC = settings(max_examples=200, deadline=None)


@st.composite
def chunked_data(draw):
    n, d = draw(st.integers(2, 40)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    offset = draw(st.sampled_from([0.0, 1e3, 1e6]))  # large offsets test numerical stability
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d) + offset
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=5)))  # repeated cuts give empty chunks
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, n])]
    return data, chunks


@SPEC
@given(chunked_data(), st.booleans())
def test_streaming_moments_equal_batch_numpy_for_any_chunking(data_chunks, diagonal):
    data, chunks = data_chunks
    stats = FeatureStats(data.shape[1], diagonal=diagonal)
    for c in chunks:
        stats.update(torch.from_numpy(c))
    assert stats.n == data.shape[0]
    np.testing.assert_allclose(stats.mean.numpy(), data.mean(0), rtol=1e-12, atol=1e-9)
    cov = np.atleast_2d(np.cov(data, rowvar=False))
    if diagonal:
        cov = np.diag(np.diag(cov))
    np.testing.assert_allclose(stats.covariance().numpy(), cov, rtol=1e-7, atol=1e-7)
    # merging two halves equals streaming everything
    half = len(chunks) // 2
    a, b = FeatureStats(data.shape[1], diagonal), FeatureStats(data.shape[1], diagonal)
    for c in chunks[:half]:
        a.update(torch.from_numpy(c))
    for c in chunks[half:]:
        b.update(torch.from_numpy(c))
    a.merge(b)
    np.testing.assert_allclose(a.covariance().numpy(), cov, rtol=1e-7, atol=1e-7)
    # round trip through a dict of tensors
    back = FeatureStats.from_dict(stats.to_dict())
    assert back.n == stats.n and back.diagonal == diagonal
    assert torch.equal(back.mean, stats.mean) and torch.equal(back.covariance(), stats.covariance())


@SPEC
@given(chunked_data(), st.floats(0.0, 1.0))
def test_shrinkage_keeps_variances_and_scales_covariances(data_chunks, alpha):
    data, _ = data_chunks
    stats = FeatureStats(data.shape[1]).update(torch.from_numpy(data))
    full, shrunk = stats.covariance(), stats.covariance(shrinkage=alpha)
    torch.testing.assert_close(torch.diagonal(shrunk), torch.diagonal(full))
    off = ~torch.eye(data.shape[1], dtype=torch.bool)
    torch.testing.assert_close(shrunk[off], (1 - alpha) * full[off])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_pseudo_features_have_the_stored_moments(d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.1 * np.eye(d)
    mean = rng.normal(size=d) * 3
    stats = FeatureStats.from_dict(
        {"n": torch.tensor(11), "mean": torch.from_numpy(mean), "m2": torch.from_numpy(cov * 10)}  # cov = m2/(n-1)
    )
    z = sample_pseudo_features(stats, 20000, torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    assert z.shape == (20000, d)
    scale = np.sqrt(np.diag(cov))
    np.testing.assert_allclose((z.mean(0) - mean) / scale, 0.0, atol=0.05)
    emp = np.atleast_2d(np.cov(z, rowvar=False))
    np.testing.assert_allclose(emp / np.outer(scale, scale), cov / np.outer(scale, scale), atol=0.06)


def test_pseudo_features_are_reproducible_and_survive_singular_covariance():
    stats = FeatureStats(3).update(torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]))  # rank-1 covariance
    z1 = sample_pseudo_features(stats, 5, torch.Generator().manual_seed(7))
    z2 = sample_pseudo_features(stats, 5, torch.Generator().manual_seed(7))
    assert torch.equal(z1, z2) and z1.dtype == torch.float32 and torch.isfinite(z1).all()
    one = FeatureStats(2).update(torch.tensor([[1.0, -1.0]]))  # n == 1: zero covariance, jitter only
    assert torch.allclose(sample_pseudo_features(one, 3, torch.Generator().manual_seed(0)), torch.tensor([1.0, -1.0]), atol=1e-2)


@SPEC
@given(st.integers(1, 20), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_mahalanobis_equals_direct_formula(n, d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    mean, z = rng.normal(size=d), rng.normal(size=(n, d)) * 2
    prec = precision_matrix(torch.from_numpy(cov), jitter=0.0)
    np.testing.assert_allclose(prec.numpy(), np.linalg.inv(cov), rtol=1e-8, atol=1e-10)
    got = mahalanobis(torch.from_numpy(z), torch.from_numpy(mean), prec).numpy()
    direct = [np.sqrt((zi - mean) @ np.linalg.solve(cov, zi - mean)) for zi in z]
    np.testing.assert_allclose(got, direct, rtol=1e-8, atol=1e-10)
    eucl = mahalanobis(torch.from_numpy(z), torch.from_numpy(mean), torch.eye(d, dtype=torch.float64))
    np.testing.assert_allclose(eucl.numpy(), np.linalg.norm(z - mean, axis=1), rtol=1e-10)


def test_threshold_and_null_expert_rule():
    dist = torch.arange(101, dtype=torch.float64)
    assert in_task_threshold(dist, 0.9) == pytest.approx(np.quantile(dist.numpy(), 0.9))
    d = torch.tensor([[1.0, 5.0], [3.0, 9.0], [0.5, 0.5]])
    assert is_out_of_distribution(d, torch.tensor([2.0, 4.0])).tolist() == [False, True, False]
    with pytest.raises(ValueError):
        in_task_threshold(dist, 1.5)


@SPEC
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 3), st.floats(0.25, 4.0), st.integers(0, 2**31 - 1))
def test_routing_kl_nonnegative_zero_at_old_and_matches_formula(n, t_old, extra, temp, seed):
    gen = torch.Generator().manual_seed(seed)
    old = torch.randn(n, t_old, generator=gen, dtype=torch.float64) * 3
    new = torch.randn(n, t_old + extra, generator=gen, dtype=torch.float64) * 3
    same = torch.cat([old, torch.randn(n, extra, generator=gen, dtype=torch.float64)], dim=1)
    assert routing_distillation_kl(same, old, temp).item() == pytest.approx(0.0, abs=1e-6)
    kl = routing_distillation_kl(new, old, temp)
    assert kl.item() >= 0.0
    p = torch.softmax(old / temp, 1).numpy()
    q = torch.softmax(new[:, :t_old] / temp, 1).numpy()
    direct = (p * (np.log(p) - np.log(q))).sum(1).mean() * temp**2
    assert kl.item() == pytest.approx(direct, rel=1e-4, abs=1e-5)


def test_routing_kl_gradient_reaches_only_the_new_gate():
    old = torch.randn(3, 2, requires_grad=True)
    new = torch.randn(3, 3, requires_grad=True)
    routing_distillation_kl(new, old).backward()
    assert old.grad is None and torch.count_nonzero(new.grad[:, 2]) == 0
    with pytest.raises(ValueError):
        routing_distillation_kl(torch.zeros(3, 1), torch.zeros(3, 2))
