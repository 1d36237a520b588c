"""`RunResult`: what one strategy's run over a stream produced (R, base scores, routing, sizes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from seta.core.metrics import overall_performance
from seta.eval.continual import continual_metrics

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """What one strategy's run over a stream produced."""

    method: str
    tasks: list[str]
    R: list[list[float]]  # (n, n); NaN where not evaluated
    base_scores: list[float] | None
    routing_acc: float | None = None
    routing_confusion: list[list[int]] | None = None
    trainable_params: int = 0
    allocated_params: int | None = None
    wall_s: float = 0.0
    peak_mem_mb: float = 0.0
    extra: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the resolved config (config.json of the run)

    @property
    def OP(self) -> float:
        return overall_performance(self.R)

    @property
    def BWT(self) -> float:
        """NaN when R lacks the diagonal (MTL is trained once, on every task)."""
        return continual_metrics(self.R, self.base_scores).BWT

    @property
    def FWT(self) -> float:
        return continual_metrics(self.R, self.base_scores).FWT
