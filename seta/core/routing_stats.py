"""Routing statistics (docs/method.md §4): per-task feature moments, pseudo-features,
Mahalanobis distances for the null expert, and the KL routing-distillation term.

Streaming moments (Chan et al. parallel merge of (n, mean, M2), float64 accumulators):

    n = n_a + n_b,  delta = mu_b - mu_a,  mu = mu_a + delta * n_b / n
    M2 = M2_a + M2_b + delta delta^T * n_a n_b / n,        Sigma = M2 / (n - 1)

Shrinkage towards the diagonal [choice]: Sigma_alpha = (1 - alpha) Sigma + alpha diag(Sigma),
which keeps the variances and damps the off-diagonal covariances, so Sigma_alpha is positive definite
for alpha > 0 whenever every variance is > 0, even with fewer samples than dimensions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FeatureStats",
    "covariance_factor",
    "sample_pseudo_features",
    "precision_matrix",
    "precision_from_factor",
    "mahalanobis",
    "in_task_threshold",
    "is_out_of_distribution",
    "routing_distillation_kl",
]


class FeatureStats:
    """Streaming mean and covariance of routing features z (d,) of one task.

    diagonal=True keeps only the variances (M2 as (d,)), for large d.
    """

    def __init__(self, dim: int, diagonal: bool = False):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.diagonal = bool(diagonal)
        self.n = 0
        self._mean = torch.zeros(dim, dtype=torch.float64)  # (d,)
        self._m2 = torch.zeros(dim if diagonal else (dim, dim), dtype=torch.float64)  # (d,) or (d, d)

    def _merge(self, n_b: int, mean_b: Tensor, m2_b: Tensor) -> None:
        if n_b == 0:
            return
        n_a, n = self.n, self.n + n_b
        delta = mean_b - self._mean  # (d,)
        self._mean = self._mean + delta * (n_b / n)
        corr = delta.square() if self.diagonal else torch.outer(delta, delta)
        self._m2 = self._m2 + m2_b + corr * (n_a * n_b / n)
        self.n = n

    def update(self, z: Tensor) -> "FeatureStats":
        """Merge a chunk z (N, d) into the running moments (Chan merge, float64). Returns self."""
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must be (N, {self.dim}), got {tuple(z.shape)}")
        z = z.detach().to(device="cpu", dtype=torch.float64)  # (N, d)
        if z.shape[0] == 0:
            return self
        mean_b = z.mean(dim=0)  # (d,)
        zc = z - mean_b  # (N, d)
        m2_b = zc.square().sum(dim=0) if self.diagonal else zc.T @ zc  # (d,) or (d, d)
        self._merge(z.shape[0], mean_b, m2_b)
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Merge another FeatureStats of the same dim and form into this one. Returns self."""
        if other.dim != self.dim or other.diagonal != self.diagonal:
            raise ValueError("can only merge FeatureStats with the same dim and diagonal flag")
        self._merge(other.n, other._mean, other._m2)
        return self

    @property
    def mean(self) -> Tensor:
        """mu, (d,) float64."""
        return self._mean.clone()

    def covariance(self, shrinkage: float = 0.0) -> Tensor:
        """Sigma_alpha = (1 - alpha) M2/(n-1) + alpha diag(M2/(n-1)), (d, d) float64 (zeros if n == 1)."""
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage}")
        if self.n == 0:
            raise ValueError("no features seen yet; call update(z) first")
        cov = self._m2 / max(self.n - 1, 1)
        if self.diagonal:
            return torch.diag(cov)
        return (1.0 - shrinkage) * cov + shrinkage * torch.diag(torch.diagonal(cov))

    def to_dict(self) -> dict[str, Tensor]:
        """Plain dict of tensors (safetensors-compatible)."""
        return {
            "n": torch.tensor(self.n, dtype=torch.int64),
            "mean": self._mean.clone(),
            "m2": self._m2.clone(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> "FeatureStats":
        mean, m2 = d["mean"], d["m2"]
        out = cls(mean.shape[0], diagonal=m2.dim() == 1)
        if m2.shape != out._m2.shape:
            raise ValueError(f"m2 {tuple(m2.shape)} does not fit mean {tuple(mean.shape)}")
        out.n = int(d["n"])
        out._mean = mean.to(torch.float64).clone()
        out._m2 = m2.to(torch.float64).clone()
        return out


def _cholesky_with_jitter(cov: Tensor, jitter: float) -> Tensor:
    """L with L L^T = cov + eps I, eps = jitter * mean(diag(cov)) (or jitter if that is 0), grown x10
    until the factorisation succeeds (at most 8 tries)."""
    d = cov.shape[0]
    scale = torch.diagonal(cov).mean().item()
    eps = jitter * (scale if scale > 0 else 1.0)
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    for _ in range(8):
        chol, info = torch.linalg.cholesky_ex(cov + eps * eye)
        if int(info) == 0:
            return chol
        eps *= 10.0
    raise ValueError("covariance is not positive semi-definite even with jitter; check the statistics")


def covariance_factor(stats: FeatureStats, shrinkage: float = 0.0, jitter: float = 1e-6) -> Tensor:
    """L with L L^T = Sigma_alpha + eps_j I (Cholesky with jitter), (d, d) float64.

    It depends on the statistics alone, so factor once per task and reuse it for every draw
    (`sample_pseudo_features(..., factor=L)`) and for the precision P = (L L^T)^{-1}
    (`precision_from_factor`): O(d^3) once instead of at every gate step."""
    return _cholesky_with_jitter(stats.covariance(shrinkage), jitter)


def sample_pseudo_features(
    stats: FeatureStats,
    n: int,
    generator: torch.Generator | None = None,
    shrinkage: float = 0.0,
    jitter: float = 1e-6,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    factor: Tensor | None = None,
) -> Tensor:
    """Pseudo-features z = mu + L eps, eps ~ N(0, I), L L^T = Sigma_alpha + eps_j I (Cholesky with jitter).

    generator: a CPU torch.Generator for reproducible draws (sampling runs on the CPU, so draws do not
    depend on the device). factor: L from `covariance_factor(stats, shrinkage, jitter)`, computed
    here when None (the same draws either way). Returns (n, d) in dtype, moved to device (default CPU).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chol = covariance_factor(stats, shrinkage, jitter) if factor is None else factor  # (d, d)
    if chol.shape != (stats.dim, stats.dim):
        raise ValueError(f"factor must be ({stats.dim}, {stats.dim}), got {tuple(chol.shape)}")
    eps = torch.randn(n, stats.dim, generator=generator, dtype=torch.float64)  # (n, d)
    return (stats.mean + eps @ chol.T).to(device=device, dtype=dtype)


def precision_matrix(cov: Tensor, jitter: float = 1e-6) -> Tensor:
    """P = (Sigma + eps_j I)^{-1} via Cholesky (same jitter rule as sampling). (d, d) -> (d, d)."""
    return precision_from_factor(_cholesky_with_jitter(cov.to(torch.float64), jitter))


def precision_from_factor(factor: Tensor) -> Tensor:
    """P = (L L^T)^{-1} from a Cholesky factor L (d, d), e.g. `covariance_factor`'s."""
    return torch.cholesky_inverse(factor)


def mahalanobis(z: Tensor, mean: Tensor, precision: Tensor) -> Tensor:
    """D(z) = sqrt((z - mu)^T P (z - mu)) per row. z (N, d), mean (d,), precision (d, d) -> (N,).

    Computed on z's device in precision's dtype (mean and precision are moved there)."""
    if z.dim() != 2 or mean.shape != (z.shape[1],) or precision.shape != (z.shape[1], z.shape[1]):
        raise ValueError(f"z (N, d), mean (d,), precision (d, d) expected; got {tuple(z.shape)}, "
                         f"{tuple(mean.shape)}, {tuple(precision.shape)}")
    precision = precision.to(z.device)
    diff = z.to(precision.dtype) - mean.to(device=z.device, dtype=precision.dtype)  # (N, d)
    sq = ((diff @ precision) * diff).sum(dim=1)  # (N,)
    return sq.clamp_min(0.0).sqrt()


def in_task_threshold(distances: Tensor, quantile: float = 0.99) -> float:
    """tau = q-quantile of in-task Mahalanobis distances (linear interpolation); calibrate it on
    held-out features of the task so that a fraction ~(1 - q) of in-task inputs falls above it."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
    if distances.numel() == 0:
        raise ValueError("need at least one in-task distance to calibrate a threshold")
    return float(torch.quantile(distances.detach().to(torch.float64).reshape(-1), quantile))


def is_out_of_distribution(distances: Tensor, thresholds: Tensor) -> Tensor:
    """Null expert rule: route to the base model iff D_j(z) > tau_j for every task j.
    distances (N, t), thresholds (t,) -> (N,) bool."""
    thresholds = torch.as_tensor(thresholds, dtype=distances.dtype, device=distances.device)
    if distances.dim() != 2 or thresholds.shape != (distances.shape[1],):
        raise ValueError(f"distances (N, t) and thresholds (t,) expected, got {tuple(distances.shape)}, "
                         f"{tuple(thresholds.shape)}")
    return (distances > thresholds).all(dim=1)


def routing_distillation_kl(new_logits: Tensor, old_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """T^2 * mean_i KL(softmax(old_i / T) || softmax(new_i[:t_old] / T)).

    new_logits (N, t) with t >= t_old, old_logits (N, t_old) (the previous gate, a constant target).
    Only the old experts' logits of the new gate enter, renormalised over those experts.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if new_logits.dim() != 2 or old_logits.dim() != 2 or new_logits.shape[0] != old_logits.shape[0]:
        raise ValueError(f"new_logits (N, t), old_logits (N, t_old) expected, got {tuple(new_logits.shape)}, "
                         f"{tuple(old_logits.shape)}")
    t_old = old_logits.shape[1]
    if new_logits.shape[1] < t_old:
        raise ValueError(f"new gate has {new_logits.shape[1]} outputs, fewer than the old gate's {t_old}")
    log_q = F.log_softmax(new_logits[:, :t_old].float() / temperature, dim=1)  # (N, t_old)
    log_p = F.log_softmax(old_logits.detach().float() / temperature, dim=1)  # (N, t_old)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1).clamp_min(0.0)  # (N,); >= 0 up to rounding
    return kl.mean() * temperature**2
