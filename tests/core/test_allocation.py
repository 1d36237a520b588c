"""Split-on-Share invariants (docs/method.md §2) under random task sequences, budgets, scores and ties."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.allocation import OwnershipRegistry, budget, select_blocks

SPEC = settings(max_examples=200, deadline=None)


@st.composite
def task_sequences(draw):
    n_blocks = draw(st.integers(1, 60))
    ratio = draw(st.floats(0.01, 1.0))
    beta = draw(st.sampled_from([0.0, 0.1, 0.5, 2.0]))
    n_tasks = draw(st.integers(1, 6))
    # few distinct values so that ties are frequent
    scores = [
        torch.tensor(draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.05, 2.0, 3.0]), min_size=n_blocks, max_size=n_blocks)))
        for _ in range(n_tasks)
    ]
    return n_blocks, ratio, beta, scores


def _run(n_blocks, ratio, beta, scores):
    reg = OwnershipRegistry(n_blocks)
    k = budget(n_blocks, ratio)
    history = []
    for t, s in enumerate(scores):
        owners_before = reg.owner_counts()
        alloc = reg.add_task(t, select_blocks(s, k, reg.owned(), beta))
        history.append((owners_before, alloc, {j: reg.expert(j) for j in reg.tasks}))
    return reg, k, history


def _set(t):
    return set(t.tolist())


@SPEC
@given(task_sequences())
def test_split_on_share_invariants(seq):
    n_blocks, ratio, beta, scores = seq
    reg, k, history = _run(*seq)
    counts = reg.owner_counts()
    tasks = reg.tasks
    # unique sets pairwise disjoint
    for a in tasks:
        for b in tasks:
            if a < b:
                assert not (_set(reg.unique(a)) & _set(reg.unique(b)))
    # shared == {B: |O(B)| >= 2}; union of S_j == allocated
    assert _set(reg.shared()) == {i for i in range(n_blocks) if counts[i] >= 2}
    union = set().union(*(_set(reg.expert(j)) for j in tasks))
    assert union == _set(reg.allocated())
    # |allocated| <= sum |S_j|, equality iff nothing shared
    total = sum(reg.expert(j).numel() for j in tasks)
    assert reg.allocated().numel() <= total
    assert (reg.allocated().numel() == total) == (reg.shared().numel() == 0)
    assert reg.growth_ratio() == pytest.approx(reg.allocated().numel() / total)
    # |S_t| == min(k, N)
    assert all(reg.expert(j).numel() == min(k, n_blocks) for j in tasks)
    # ownership only grows and S_j never changes afterwards
    for owners_before, alloc, experts in history:
        assert bool((counts >= owners_before).all())
        for j, s in experts.items():
            assert torch.equal(reg.expert(j), s)
        # new/split/reused partition what the task selected
        assert _set(alloc.new) | _set(alloc.reused) == _set(alloc.selected)
        assert not (_set(alloc.new) & _set(alloc.reused))
        assert _set(alloc.split) <= _set(alloc.reused)
        assert all(owners_before[i] == 1 for i in alloc.split.tolist())


@SPEC
@given(task_sequences())
def test_selection_is_deterministic_and_round_trips(seq):
    reg1, _, _ = _run(*seq)
    reg2, _, _ = _run(*seq)
    assert reg1.to_dict() == reg2.to_dict()
    data = json.loads(json.dumps(reg1.to_dict()))
    back = OwnershipRegistry.from_dict(data)
    assert back.to_dict() == reg1.to_dict()
    assert torch.equal(back.owner_counts(), reg1.owner_counts())


@SPEC
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=50), st.data())
def test_select_blocks_is_top_k_with_lower_id_tie_break(values, data):
    scores = torch.tensor(values, dtype=torch.float64)
    owned = torch.tensor(data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values))))
    beta = data.draw(st.floats(0, 1))
    k = data.draw(st.integers(1, len(values)))
    chosen = select_blocks(scores, k, owned, beta)
    boosted = [v * (1 + beta * o) for v, o in zip(values, owned.tolist())]
    expected = sorted(sorted(range(len(values)), key=lambda i: (-boosted[i], i))[:k])
    assert chosen.tolist() == expected


def test_reuse_bonus_prefers_owned_blocks_of_comparable_score():
    scores = torch.tensor([1.0, 1.05, 0.2, 0.1])
    owned = torch.tensor([True, False, False, False])
    assert select_blocks(scores, 1, owned, beta=0.0).tolist() == [1]
    assert select_blocks(scores, 1, owned, beta=0.1).tolist() == [0]


def test_split_moves_unique_block_to_shared_pool():
    reg = OwnershipRegistry(6)
    reg.add_task(0, torch.tensor([0, 1, 2]))
    alloc = reg.add_task(1, torch.tensor([2, 3, 4]))
    assert alloc.split.tolist() == [2] and alloc.new.tolist() == [3, 4]
    assert reg.unique(0).tolist() == [0, 1]
    assert reg.unique(1).tolist() == [3, 4]
    assert reg.shared().tolist() == [2]
    assert reg.earlier_owners(1).tolist() == [1, 0, 0]
    assert reg.growth_ratio() == pytest.approx(5 / 6)


def test_budget_and_errors():
    assert budget(1000, 0.01) == 10
    assert budget(7, 0.01) == 1
    assert budget(7, 1.0) == 7
    with pytest.raises(ValueError, match="ρ"):
        budget(10, 0.0)
    reg = OwnershipRegistry(4)
    reg.add_task(0, torch.tensor([1]))
    with pytest.raises(ValueError, match="never changes"):
        reg.add_task(0, torch.tensor([2]))
    with pytest.raises(ValueError, match="duplicates"):
        reg.add_task(1, torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="unknown task"):
        reg.expert(5)
    with pytest.raises(ValueError, match="NaN"):
        select_blocks(torch.tensor([float("nan")]), 1)
