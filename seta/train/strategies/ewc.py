"""EWC on the sparse-block adapter: seqft-sparse plus an elastic penalty on every trained block.

    L = LM + (λ/2) Σ_e F_e (θ_e − θ*_e)²     (Kirkpatrick et al., 2017; online Fisher merge F ← γF + F_t)

The same maths as SETA's anchoring (seta.core.anchoring.ewc_penalty), with a constant λ
instead of the owner-adaptive one and no routing: every trained block acts at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from seta.core.anchoring import elastic_anchor_penalty, normalise_fisher
from seta.models import estimate_block_fisher, tensors_only
from seta.train.strategies.sparse import SparseBlocks


@dataclass(frozen=True)
class EWCConfig:
    """EWC's own settings (the blocks and their budget are `SparseConfig`)."""

    lam: float = 1.0
    """λ: strength of the penalty (λ/2) Σ_e F_e (θ_e − θ*_e)²."""
    gamma: float = 1.0
    """γ: online Fisher merge F ← γF + F_t."""

    def __post_init__(self):
        if self.lam < 0 or self.gamma < 0:
            raise ValueError("EWCConfig: lam and gamma must be >= 0")


class EWC(SparseBlocks):
    name = "ewc"
    config_section = "ewc"

    def __init__(self, model, tokenizer, sparse=None, config: EWCConfig | None = None):
        super().__init__(model, tokenizer, sparse, config or EWCConfig())

    def before_task(self, t, task, probe_batches) -> None:
        super().before_task(t, task, probe_batches)
        ids, _, anchor, fisher = self.model.anchor_terms(self.model.registry.expert(t))
        self.anchored = None
        if ids.numel():
            fisher = normalise_fisher([fisher], valid=[self.model.valid_mask(ids).to(fisher.device)])[0]
            self.anchored = (ids, anchor.detach(), fisher.detach())

    def loss(self, batch, t, n_tokens=None):
        lm, _ = super().loss(batch, t, n_tokens)
        if self.anchored is None:
            return lm, 0.0
        ids, anchor, fisher = self.anchored
        return lm, elastic_anchor_penalty(self.model.get_blocks(ids), anchor, fisher, self.config.lam)

    def after_task(self, t, task, probe_batches) -> None:
        super().after_task(t, task, probe_batches)  # the working copy back into the stacks
        s_t = self.model.registry.expert(t)
        batches = (tensors_only(b) for b in islice(probe_batches(), self.sparse.fisher_batches))
        self.model.update_anchors(s_t, estimate_block_fisher(self.model, s_t, batches), self.config.gamma)
        self.model.set_task(t)
