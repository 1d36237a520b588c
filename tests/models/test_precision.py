"""Every precision a preset can ask for, against the fp32 reference on a tiny Llama: bf16 autocast or
none, over dense fp32 / dense bf16 / 4-bit NF4 bases (and bf16 block storage), for a training step
(loss, block gradients), the sensitivity probe, the Fisher and routed generation.

Reference: the same base kind without autocast in fp32 (dense bases: the fp32 model, of which the bf16
base is a cast; NF4: the same NF4 model, whose 4-bit matmul computes in bf16 either way).

Tolerance: bf16 keeps 8 significant bits, unit roundoff u = 2⁻⁸ ≈ 0.0039 per rounding. Tensors
(logits, gradients, scores, Fisher) are compared by relative error ‖a − ref‖ / ‖ref‖ ≤ TOL = 10u ≈ 0.039:
a 2-layer model rounds activations a few dozen times and the errors partly cancel (measured on the CPU:
0.001-0.017 over every case here), so 10u leaves room for other kernels while a dropped or mis-scaled
delta (which moves the logits by > 100%, see the first test) fails by far. The loss, a mean over tokens, is
compared with rtol u (measured: < 1e-4).
"""

from __future__ import annotations

import contextlib
import copy
import functools

import pytest
import torch

from models_helpers import VOCAB, lm_batch, randomise_blocks
from seta.eval.generate import generate
from seta.models import ExpertConfig, attach_experts, build_tiny_model, estimate_block_fisher, probe_block_sensitivity

U = 2.0**-8  # bf16 unit roundoff
TOL = 10 * U
# name -> (base dtype, NF4 base, bf16 autocast, block dtype); each is compared with its fp32 reference
PRECISIONS = {
    "fp32-base+autocast": ("float32", False, True, "float32"),
    "bf16-base": ("bfloat16", False, False, "float32"),
    "bf16-base+autocast": ("bfloat16", False, True, "float32"),
    "bf16-blocks+autocast": ("float32", False, True, "bfloat16"),
    "nf4-base+autocast": ("float32", True, True, "float32"),
}


@functools.lru_cache(maxsize=None)
def _cached(dtype: str, nf4: bool, block_dtype: str, checkpointing: bool = False):
    base = build_tiny_model("llama", vocab_size=VOCAB, seed=0, dtype=dtype, load_in_4bit=nf4,
                            gradient_checkpointing=checkpointing)
    seta = attach_experts(base, ExpertConfig(block_size=16, block_dtype=block_dtype))
    n = seta.index.n_blocks
    seta.allocate(0, torch.linspace(1, 2, n, dtype=torch.float64), ratio=0.15, rule="raw")
    scores = torch.linspace(2, 1, n, dtype=torch.float64)
    scores[seta.registry.expert(0)[::2]] = 5.0  # shared blocks
    seta.allocate(1, scores, ratio=0.15, rule="raw")
    randomise_blocks(seta, seta.allocated_ids(), seed=5)  # the same values in every precision
    return seta


def _model(name: str, checkpointing: bool = False):
    """(model, autocast context factory) for a precision name, or its reference with name="ref" + kind."""
    if name in ("ref-dense", "ref-nf4"):
        return copy.deepcopy(_cached("float32", name == "ref-nf4", "float32", checkpointing)), contextlib.nullcontext
    dtype, nf4, autocast, block_dtype = PRECISIONS[name]
    seta = copy.deepcopy(_cached(dtype, nf4, block_dtype, checkpointing))
    ctx = (lambda: torch.autocast(seta.device.type, dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    return seta, ctx  # NF4 bases sit on the GPU when there is one, so autocast follows the model's device


def _ref(name: str) -> str:
    return "ref-nf4" if PRECISIONS[name][1] else "ref-dense"


def _batch(seta, **kw) -> dict:
    return {k: v.to(seta.device) for k, v in lm_batch(**kw).items()}


def rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def _train_step(seta, ctx, task=1):
    """One trainer-style step on task's expert (working copy, train mode): (loss, block gradients)."""
    seta.train()
    params = seta.begin_training(seta.registry.expert(task))
    seta.set_task(task)
    with ctx():
        loss = seta(**_batch(seta, seed=1, batch=4, length=12)).loss
    loss.backward()
    assert all(p.dtype == seta.layers[next(iter(seta.layers))].blocks.dtype for p in params)
    grads = torch.cat([p.grad.reshape(-1).float() for p in params])
    seta.end_training()
    return loss.detach().float(), grads


def test_the_delta_is_far_above_the_tolerance():
    """The comparisons below can fail: routing the expert moves the logits by much more than TOL."""
    seta, _ = _model("ref-dense")
    batch = _batch(seta, seed=1, batch=4, length=12)
    with torch.no_grad():
        with seta.no_experts():
            base = seta(**batch).logits
        seta.set_task(1)
        routed = seta(**batch).logits
    assert rel(routed, base) > 10 * TOL


@pytest.mark.parametrize("name", sorted(PRECISIONS))
def test_training_step_matches_fp32(name):
    seta, ctx = _model(name)
    ref, ref_ctx = _model(_ref(name))
    loss, grads = _train_step(seta, ctx)
    ref_loss, ref_grads = _train_step(ref, ref_ctx)
    assert torch.isfinite(loss) and torch.isfinite(grads).all()
    torch.testing.assert_close(loss, ref_loss, rtol=U, atol=0)
    assert 0 < rel(grads, ref_grads) <= TOL  # > 0: the precision really differs from the reference
    blocks = [l.blocks for l in seta.layers.values()]
    assert all(b.dtype == getattr(torch, PRECISIONS[name][3]) for b in blocks)  # master weights kept


def test_gradient_checkpointing_under_autocast_gives_the_same_step():
    """The paper presets: NF4 base, bf16 autocast, checkpointing (the delta is recomputed in backward)."""
    plain, ctx = _model("nf4-base+autocast")
    ckpt, _ = _model("nf4-base+autocast", checkpointing=True)
    loss, grads = _train_step(plain, ctx)
    loss_c, grads_c = _train_step(ckpt, ctx)
    torch.testing.assert_close(loss_c, loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads_c, grads, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(PRECISIONS))
def test_sensitivity_probe_matches_fp32(name):
    batches = [lm_batch(seed=s, batch=4, length=12) for s in (2, 3)]
    scores = {}
    for key in (name, _ref(name)):
        seta, ctx = _model(key)
        with ctx():
            scores[key] = probe_block_sensitivity(seta, batches)
    s = scores[name]
    assert s.dtype == torch.float64 and torch.isfinite(s).all() and (s > 0).any()
    assert rel(s, scores[_ref(name)]) <= TOL


@pytest.mark.parametrize("name", sorted(PRECISIONS))
def test_fisher_matches_fp32(name):
    batches = [lm_batch(seed=s, batch=4, length=12) for s in (2, 3)]
    fisher = {}
    for key in (name, _ref(name)):
        seta, ctx = _model(key)
        with ctx():
            fisher[key] = estimate_block_fisher(seta, seta.registry.expert(1), batches)
    f = fisher[name]
    assert f.dtype == torch.float32 and torch.isfinite(f).all() and (f > 0).any()
    assert 0 < rel(f, fisher[_ref(name)]) <= TOL


ROUTES = {"expert": None, "soft": torch.tensor([[0.3, 0.7], [1.0, 0.0], [0.0, 1.0]])}


def _set(seta, route, rows=slice(None)):
    seta.set_task(1) if ROUTES[route] is None else seta.set_routing(ROUTES[route][rows])


def _prompts():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(4, VOCAB, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    mask[2, :1] = 0
    return ids, mask


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("name", sorted(PRECISIONS))
def test_routed_generation_matches_fp32(name, route):
    """Scores of every decoding step (no-grad in-place path, KV cache) against the fp32 reference
    run on the same sequences in one full forward."""
    seta, ctx = _model(name)
    ref, _ = _model(_ref(name))
    ids, mask = (t.to(seta.device) for t in _prompts())
    for m in (seta, ref):
        m.eval()
        _set(m, route)
    with torch.inference_mode(), ctx():
        out = seta.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0,
                            eos_token_id=VOCAB + 1, output_scores=True, return_dict_in_generate=True)
    scores = torch.stack(out.scores, 1).float()  # (B, 6, V)
    full_mask = torch.cat([mask, torch.ones_like(mask)], 1)
    with torch.no_grad():
        ref_logits = ref(input_ids=out.sequences.to(ref.device), attention_mask=full_mask.to(ref.device),
                         use_cache=False).logits.to(scores.device)
    ref_logits = ref_logits[:, ids.shape[1] - 1 : -1].float()  # (B, 6, V): the logits that chose each new token
    assert 0 < rel(scores, ref_logits) <= TOL


@pytest.mark.parametrize("name", [n for n, p in PRECISIONS.items() if p[2]])
def test_inference_path_matches_training_path_under_autocast(name):
    seta, ctx = _model(name)
    batch = {k: v for k, v in _batch(seta, seed=4, batch=3).items() if k != "labels"}
    _set(seta, "soft")
    with torch.no_grad():
        before = seta(**batch).logits  # fp32 plan
    with ctx():
        with torch.no_grad():
            fast = seta(**batch).logits  # in place, the plan rebuilt for bf16
        slow = seta(**batch).logits.detach()  # training path
    assert rel(fast, slow) <= TOL
    with torch.no_grad():
        after = seta(**batch).logits  # back to an fp32 plan: exactly the first result
    torch.testing.assert_close(after, before, rtol=0, atol=0)


class _IdTokenizer:
    """Token ids as text: the generate() wrapper needs eos/pad ids and decode."""

    eos_token_id, pad_token_id = 2, 0

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids)


@pytest.mark.parametrize("name", ["fp32-base+autocast", "nf4-base+autocast"])
def test_generate_wrapper_stops_at_eos_under_autocast(name):
    """seta.eval.generate.generate with a route set per batch: decoding ends at the eos token."""
    seta, ctx = _model(name)
    prompt = [[5, 17, 33, 41, 60]]
    calls = []
    seta.model.register_forward_pre_hook(lambda *a: calls.append(1))
    hooks = dict(before_batch=lambda idx, inputs: _set(seta, "expert"), after_batch=lambda idx: seta.clear_route(),
                 progress=False)
    with ctx():
        free = generate(seta, _IdTokenizer(), prompt, max_new_tokens=8, eos_token_id=VOCAB + 1, **hooks)[0]
    toks = [int(t) for t in free.split()]
    assert len(toks) == 8 and len(calls) == 8  # no eos: the whole budget, one forward per token
    k = next(i for i in range(1, 8) if toks[i] not in toks[:i])  # a token that first appears at step k
    calls.clear()
    with ctx():
        cut = generate(seta, _IdTokenizer(), prompt, max_new_tokens=8, eos_token_id=toks[k], **hooks)[0]
    assert cut == " ".join(map(str, toks[:k]))  # the eos itself is dropped
    assert len(calls) == k + 1  # and decoding stopped there
    assert all(layer.get_route() is None for layer in seta.layers.values())  # after_batch ran
