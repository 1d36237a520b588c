"""The settings of the SETA method, as one frozen dataclass: `SetaConfig`.

    config = SetaConfig(block_size=64, ratio=0.01, beta=0.1, anchor_lambda=0.3)
    model = get_seta_model(base, config)

`SetaConfig` is the union of two parts that the package's runs keep as separate sections (so that a
run's ``--set sparse.ratio=...`` also sets the sparse-block baselines, while ``--set seta.beta=...`` is
SETA's alone): `SparseConfig` (the blocks and their budget, shared with the baselines;
`seta.train.strategies.sparse`) and `SetaOwnConfig` (β, λ, routing, the null expert and the gate's
training, `GateTrainConfig`). `SetaConfig.from_sections` joins them, `sections` splits them again, and
`expert_config` derives how the experts are attached (`seta.models.ExpertConfig`). Each field has one
default and its docstring is its help (`seta run --show-settings` prints them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from seta.models import ExpertConfig
from seta.train.gate_training import GateTrainConfig
from seta.train.strategies.sparse import SparseConfig

__all__ = ["SetaConfig", "SetaOwnConfig"]

ROUTINGS = ("top1", "soft", "oracle")


@dataclass(frozen=True)
class SetaOwnConfig:
    """SETA's own settings (the ``seta`` section of a run; the blocks and their budget are `SparseConfig`)."""

    beta: float = 0.1
    """β: reuse bonus for already-owned blocks (0 = the no-reuse ablation)."""
    anchor_lambda: float = 1.0
    """λ: elastic anchoring strength (λ_B = λ · earlier owners; 0 = the no-anchoring ablation)."""
    routing: str = "top1"
    """Inference routing: top1, soft (top-k mixture) or oracle (true task id)."""
    soft_k: int = 2
    """k of the soft top-k mixture."""
    null_expert: bool = True
    """Route inputs far from every task's features to the base model alone."""
    null_quantile: float = 0.99
    """In-task quantile of Mahalanobis distances that calibrates the null threshold."""
    gate: GateTrainConfig = field(default_factory=GateTrainConfig)
    """How the gate is trained after each task."""

    def __post_init__(self):
        if self.beta < 0 or self.anchor_lambda < 0:
            raise ValueError("SetaConfig: beta and anchor_lambda must be >= 0")
        if self.routing not in ROUTINGS:
            raise ValueError(f"SetaConfig.routing must be top1, soft or oracle, got {self.routing!r}")
        if self.soft_k < 1:
            raise ValueError("SetaConfig.soft_k must be >= 1")
        if not 0 < self.null_quantile <= 1:
            raise ValueError("SetaConfig.null_quantile must lie in (0, 1]")


@dataclass(frozen=True)
class SetaConfig(SetaOwnConfig, SparseConfig):
    """Every setting of the SETA method: the sparse blocks and their budget (`SparseConfig`'s fields:
    block_size, ratio, target_modules, probe_batches, allocation, fisher_batches), SETA's own
    (`SetaOwnConfig`'s: beta, anchor_lambda, routing, soft_k, null_expert, null_quantile, gate) and how the
    experts and the gate are built (below)."""

    block_dtype: str = "float32"
    """dtype the trainable blocks are stored and trained in ('float32', 'bfloat16', 'float16')."""
    gate_hidden: int = 0
    """Hidden width of the gate's MLP trunk; 0 = a linear gate on the normalised routing feature."""
    feature_shrinkage: float = 0.1
    """Covariance shrinkage towards the diagonal for pseudo-features and Mahalanobis distances."""
    diagonal_stats: bool = False
    """Keep only per-feature variances in the routing statistics (for very wide hidden states)."""

    def __post_init__(self):
        if isinstance(self.target_modules, str):
            object.__setattr__(self, "target_modules", (self.target_modules,))
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        SparseConfig.__post_init__(self)
        SetaOwnConfig.__post_init__(self)
        self.expert_config()  # checks block_dtype, gate_hidden, feature_shrinkage

    def expert_config(self) -> ExpertConfig:
        """How the experts are attached (`seta.models.attach_experts`)."""
        return ExpertConfig(block_size=self.block_size, target_modules=self.target_modules,
                            block_dtype=self.block_dtype, gate_hidden=self.gate_hidden,
                            feature_shrinkage=self.feature_shrinkage, diagonal_stats=self.diagonal_stats)

    @classmethod
    def from_sections(cls, sparse: SparseConfig, own: SetaOwnConfig, **attach) -> "SetaConfig":
        """A run's ``sparse`` and ``seta`` sections joined (attach: block_dtype, gate_hidden, ...)."""
        return cls(**_values(sparse, SparseConfig), **_values(own, SetaOwnConfig), **attach)

    def sections(self) -> tuple[SparseConfig, SetaOwnConfig]:
        """(SparseConfig, SetaOwnConfig): this config as a run's ``sparse`` and ``seta`` sections."""
        return SparseConfig(**_values(self, SparseConfig)), SetaOwnConfig(**_values(self, SetaOwnConfig))


def _values(obj, cls) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(cls)}
