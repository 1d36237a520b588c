"""The block store of a `SetaModel`: one stacked Parameter per layer, addressed by global block id.

    S_t = top-k(T(score) · (1 + β·owned)),  k = ceil(ρ N)          Split-on-Share (`allocate`)

Global ids follow `seta.core.blocks.BlockIndex` over the targeted layers (in module order). A block,
once created, keeps its stack position; `get_blocks` / `set_blocks` read and write by id. While a task
trains, `begin_training` gives each layer a working copy of the task's blocks (the optimizer's
parameters); `end_training` writes them back. The anchors θ*_B, F_B of finished tasks
(`seta.core.anchoring.BlockAnchors`) are read and written here by id as well.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from seta.core.allocation import allocate_blocks, budget
from seta.models.config import DTYPES
from seta.models.layer import SparseBlockLinear

__all__ = ["BlockStore"]


class BlockStore:
    """Mixin of `SetaModel`: blocks by global id, allocation, the working copy, anchors. Uses the
    model's `layers`, `index`, `registry`, `router`, `anchors`, `config` and `device`."""

    # ---- blocks by global id -----------------------------------------------------------------------------------
    def _ids(self, global_ids) -> Tensor:
        ids = torch.as_tensor(global_ids, dtype=torch.long).reshape(-1).cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.index.n_blocks):
            raise ValueError(f"global block ids must lie in [0, {self.index.n_blocks})")
        return ids.unique(sorted=True)

    def add_blocks(self, global_ids) -> Tensor:
        """Create zero-initialised blocks for ids not allocated yet; returns the newly created ids.
        Existing blocks keep their values and positions. Rebuild the optimizer afterwards."""
        ids = self._ids(global_ids)
        new = ids[~torch.isin(ids, self.allocated_ids())]
        for name, local in self.index.split(new).items():
            self.layers[name].add_blocks(local)
        return new

    def stacks(self) -> dict[str, tuple[Tensor, Tensor]]:
        """{layer name: (local_ids (k_l,), blocks (k_l, b, b))} in stack order, for layers with blocks:
        restored by `load_stacks`, a model whose every forward matches bit for bit (same positions)."""
        return {n: (l.local_ids.detach().cpu().clone(), l.blocks.detach().cpu().clone())
                for n, l in self.layers.items() if l.n_blocks}

    @torch.no_grad()
    def load_stacks(self, stacks: dict) -> None:
        """Recreate the stacks of `stacks()` in their saved order (on a model with no blocks there yet)."""
        unknown = sorted(set(stacks) - set(self.layers))
        if unknown:
            raise ValueError(f"saved blocks of layers {unknown[:3]} that this model does not have")
        for name, (local_ids, blocks) in stacks.items():
            layer = self.layers[name]
            if layer.n_blocks:
                raise ValueError(f"layer {name} already has blocks; load stacks into a fresh model")
            layer.add_blocks(local_ids)
            layer.blocks.copy_(blocks.to(layer.blocks))

    def allocated_ids(self) -> Tensor:
        """Global ids that have parameters, sorted."""
        parts = [self.index.to_global(n, l.local_ids.cpu()) for n, l in self.layers.items()]
        return torch.cat(parts).sort().values

    def allocate(self, task: int, scores: Tensor, ratio: float, beta: float = 0.1, rule: str = "matrix-budget"):
        """Split-on-Share for `task`: S_t = top-k(T(score) · (1 + β·owned)), k = ceil(ρ N), T the allocation
        rule (`seta.core.allocation`: raw, matrix-mean, matrix-budget); records ownership, creates the new
        blocks and a gate output. Returns the core `Allocation`."""
        k = budget(self.index.n_blocks, ratio)
        sizes = [g.n_blocks for g in self.index.grids.values()]
        selected = allocate_blocks(scores, k, sizes, rule, self.registry.owned(), beta)
        allocation = self.registry.add_task(task, selected)
        self.add_blocks(allocation.selected)
        self.router.add_task(task)
        return allocation

    def _locate(self, ids: Tensor) -> list[tuple[SparseBlockLinear, Tensor]]:
        """[(layer, stack positions)] in global-id order."""
        return [(self.layers[n], self.layers[n].positions(loc)) for n, loc in self.index.split(ids).items()]

    def get_blocks(self, global_ids) -> Tensor:
        """Differentiable (k, b, b) stack of the blocks of global_ids, sorted by id."""
        parts = [layer.read(pos) for layer, pos in self._locate(self._ids(global_ids))]
        if not parts:
            b = self.config.block_size
            return torch.zeros(0, b, b, dtype=DTYPES[self.config.block_dtype], device=self.device)
        dev = parts[0].device
        return torch.cat([p.to(dev) for p in parts])

    @torch.no_grad()
    def set_blocks(self, global_ids, values: Tensor) -> None:
        """Overwrite the blocks of global_ids (sorted order) with values (k, b, b)."""
        ids, start = self._ids(global_ids), 0
        for layer, pos in self._locate(ids):
            layer.write(pos, values[start : start + pos.numel()])
            start += pos.numel()

    def valid_mask(self, global_ids) -> Tensor:
        """(k, b, b) bool: block entries inside the weight (False on the padding of ragged edges)."""
        b, masks = self.config.block_size, []
        for name, local in self.index.split(self._ids(global_ids)).items():
            grid = self.layers[name].grid
            for lid in local.tolist():
                rs, cs = grid.slices(lid)
                m = torch.zeros(b, b, dtype=torch.bool)
                m[: rs.stop - rs.start, : cs.stop - cs.start] = True
                masks.append(m)
        return torch.stack(masks) if masks else torch.zeros(0, b, b, dtype=torch.bool)

    def block_parameters(self) -> list[nn.Parameter]:
        """Every layer's stacked blocks (the working copies instead while `begin_training` is active).
        Training the whole stack: use weight_decay=0, so blocks outside the current expert (zero
        gradient) stay bit-identical under a fresh Adam(W)."""
        return [l.train_blocks if l.train_blocks is not None else l.blocks
                for l in self.layers.values() if l.n_blocks and (l.train_blocks is not None or l.blocks.requires_grad)]

    def begin_training(self, global_ids) -> list[nn.Parameter]:
        """Train only the blocks of global_ids, each layer's through a working copy (k_t, b, b): returns
        those Parameters, for the optimizer. Gradients and optimizer state then cover the trained blocks,
        not the whole stack; every read (forward, `get_blocks`) sees the working copies. The updates are
        those of training the stack with weight_decay=0 (the other blocks get zero gradient). Call
        `end_training` after the task to write them back."""
        per = self.index.split(self._ids(global_ids))
        params = []
        for name, layer in self.layers.items():
            if name in per:
                p = layer.begin_training(layer.positions(per[name]))
                params += [p] if p is not None else []
            else:
                layer.end_training()
                layer.blocks.requires_grad_(False)  # not trained in this task
        return params

    def end_training(self) -> None:
        """Write every working copy back into its stack; every stack requires grad again."""
        for layer in self.layers.values():
            layer.end_training()
            layer.blocks.requires_grad_(True)

    @contextlib.contextmanager
    def stored_values(self):
        """Within: the model with the values its stacks hold, every working copy set aside; during a
        task that is the model as it was when the task's training began (e.g. LwF's teacher)."""
        with contextlib.ExitStack() as stack:
            for layer in self.layers.values():
                stack.enter_context(layer.stored_values())
            yield self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Blocks + gate: the only parameters that require grad."""
        return self.block_parameters() + list(self.router.gate.parameters())

    # ---- anchors ------------------------------------------------------------------------------------
    def update_anchors(self, global_ids, fisher: Tensor, gamma: float | None = None) -> None:
        """After a task: θ*_B ← current value and F_B ← running mean over owners of fisher_B (or, with
        gamma, F_B ← γ F_B + fisher_B), for B in global_ids (sorted)."""
        ids = self._ids(global_ids)
        if fisher.shape[0] != ids.numel():
            raise ValueError(f"fisher has {fisher.shape[0]} blocks for {ids.numel()} ids")
        self.anchors.update(ids, self.get_blocks(ids).detach(), fisher, gamma)

    def anchor_terms(self, global_ids):
        """For the anchored blocks among global_ids: (ids (m,), θ (m,b,b) differentiable, θ* , F)."""
        ids = self._ids(global_ids)
        found, anchor, fisher = self.anchors.lookup(ids)
        theta = self.get_blocks(ids[found])
        return ids[found], theta, anchor.to(theta), fisher.to(theta)
