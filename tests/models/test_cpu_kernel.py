"""The CPU kernel (`seta.models.cpu_kernel`) against its reference, `seta.core.blocks.delta_add_` (and
the dense ΔW product): values for any grid, blocks, repeated row blocks, tokens and weights; where it
does not apply it leaves y untouched; the layer takes it at decoding sizes only; it builds, caches,
and falls back (with a warning) where no compiler works; generation gives the same tokens either way."""

from __future__ import annotations

import copy
import os
import shutil
import stat
import threading
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seta.models.cpu_kernel as ck
import seta.models.layer as layer_module
from models_helpers import VOCAB, randomise_blocks, two_task_seta
from seta.core.blocks import BlockGrid, blocks_to_dense, delta_add_
from seta.models.layer import SparseBlockLinear

HAS_COMPILER = bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))
needs_kernel = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler on this machine")


def test_a_machine_with_a_compiler_builds_the_kernel():
    if not HAS_COMPILER:
        pytest.skip("no C compiler on this machine: the layers use the torch ops")
    assert ck.library() is not None  # else every test below would test the fallback only


def _inputs(d_out, d_in, b, k, batch, tokens, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    grid = BlockGrid(d_out, d_in, b)
    ids = torch.randint(0, grid.n_rows * grid.n_cols, (k,), generator=g)  # repeats: one block summed twice
    rows, cols = ids // grid.n_cols, ids % grid.n_cols
    blocks = torch.randn(k, b, b, generator=g)  # (k, b_out, b_in)
    x = torch.randn(batch, tokens, d_in, generator=g)  # (B, T, d_in)
    y = torch.randn(batch, tokens, d_out, generator=g)  # (B, T, d_out), the base output
    wt = torch.rand(k, batch, 1, 1, generator=g) if weighted else None
    return grid, rows, cols, blocks, x, y, wt


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(b=st.sampled_from([1, 2, 3, 4, 8, 16, 32, 48, 64]), n_out=st.integers(1, 4), n_in=st.integers(1, 4),
       k=st.integers(1, 12), batch=st.integers(1, 5), tokens=st.integers(1, 12), weighted=st.booleans(),
       seed=st.integers(0, 10_000))
def test_property_kernel_equals_the_reference(b, n_out, n_in, k, batch, tokens, weighted, seed):
    assert batch * tokens <= ck.MAX_TOKENS  # up to 60 tokens: every remainder of the four-token loop
    k = max(1, min(k, ck.MAX_WORK // (b * b * batch * tokens)))  # b = 48, 64: within MAX_WORK multiply-adds
    grid, rows, cols, blocks, x, y, wt = _inputs(n_out * b, n_in * b, b, k, batch, tokens, weighted, seed)
    blocks_t = blocks.transpose(1, 2)
    ref = delta_add_(y.clone(), x, blocks_t, rows, cols, grid, wt, None)
    fast = ck.delta_add_cpu(y.clone(), x, blocks_t, rows, cols, grid, wt)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    w = torch.ones(batch, k) if wt is None else wt[:, :, 0, 0].t()  # (B, k)
    dense = torch.stack([blocks_to_dense(blocks * w[n][:, None, None], rows, cols, grid) for n in range(batch)])
    torch.testing.assert_close(fast, y + torch.einsum("btc,boc->bto", x.double(), dense.double()).float(),
                               rtol=1e-4, atol=1e-4)


def _built(tmp_path, name: str, *extra: str):
    """The kernel's C function compiled with extra flags into tmp_path (not the cache)."""
    import ctypes
    from importlib import resources
    out = tmp_path / f"{name}.so"
    with resources.as_file(resources.files("seta.models") / "cpu_kernel.c") as source:
        ck._compile(ck._compiler(), (*ck._FLAGS, *extra), source, out)
    fn = ctypes.CDLL(str(out)).seta_delta_add_f32
    fn.restype, fn.argtypes = None, [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2
    return fn


@needs_kernel
def test_vector_loop_is_bit_identical_to_the_generic_loop(tmp_path):
    """b = 16, 32, 64 run the vector loop (`delta16`); built without it (-DSETA_NO_VECTORS) they run the
    generic loop. The same sums in the same order: equal to the bit, for every token remainder of the
    four-token loop, several tokens per example, weights or none."""
    import ctypes
    vec, generic = _built(tmp_path, "vec"), _built(tmp_path, "generic", "-DSETA_NO_VECTORS")
    for seed, (b, k, batch, tokens, weighted) in enumerate(
            [(16, 12, 4, 1, True), (16, 7, 1, 7, False), (32, 9, 3, 2, True), (64, 5, 2, 3, True), (64, 3, 5, 1, False)]):
        grid, rows, cols, blocks, x, y, wt = _inputs(3 * b, 2 * b, b, k, batch, tokens, weighted, seed)
        bt = blocks.transpose(1, 2).contiguous()
        fixed = ck._Blocks(bt.data_ptr(), rows.data_ptr(), cols.data_ptr(), k, b, grid.out_features, grid.in_features)
        outs = []
        for fn in (vec, generic):
            yy = y.clone()
            fn(ctypes.addressof(fixed), yy.data_ptr(), x.data_ptr(), 0 if wt is None else wt.data_ptr(),
               batch * tokens, tokens)
            outs.append(yy)
        assert torch.equal(outs[0], outs[1]), (b, k, batch, tokens, weighted)
        ref = delta_add_(y.clone(), x, bt, rows, cols, grid, wt, None)
        torch.testing.assert_close(outs[0], ref, rtol=1e-5, atol=1e-5)
        assert not torch.equal(outs[0], y)  # the delta was added


@needs_kernel
def test_where_the_kernel_does_not_apply_y_is_untouched():
    grid, rows, cols, blocks, x, y, wt = _inputs(32, 48, 8, 5, 4, 4, True, 0)
    call = ck.fused_delta(blocks.transpose(1, 2), rows, cols, grid)
    assert call is not None
    over = ck.MAX_TOKENS // 4 + 1
    big_x, big_y = torch.randn(4, over, 48), torch.randn(4, over, 32)  # 4 (MAX_TOKENS / 4 + 1) tokens > MAX_TOKENS
    refused = [(big_y, big_x, wt), (y.double(), x.double(), wt), (y, x.transpose(0, 1).contiguous().transpose(0, 1), wt)]
    for yy, xx, ww in refused:
        before = yy.clone()
        assert not call(yy, xx, ww)
        assert torch.equal(yy, before)
    for yy, ww in [(y[:, :2].contiguous(), wt), (y, wt[:, :3].contiguous()), (y, wt.double())]:
        with pytest.raises(ValueError, match="do not fit"):  # never a read or write out of bounds
            call(yy, x, ww)
    with ck.disabled():
        assert not ck.enabled() and not call(y, x, wt)
    assert ck.enabled() and call(y.clone(), x, wt)
    assert call(y.clone(), x, wt)  # the same weights again: accepted
    with pytest.raises(ValueError, match="do not fit"):  # the same weights for a batch of another size: refused
        call(y[:2].clone(), x[:2].contiguous(), wt)
    assert ck.fused_delta(blocks.double().transpose(1, 2), rows, cols, grid) is None  # fp64: the torch ops
    assert ck.fused_delta(blocks.transpose(1, 2), rows, cols, BlockGrid(32, 44, 8)) is None  # ragged input edge
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ck, "MAX_WORK", 64 * len(blocks) - 1)  # one token already over MAX_WORK multiply-adds
        assert ck.fused_delta(blocks.transpose(1, 2), rows, cols, grid) is None
        mp.setattr(ck, "MAX_WORK", 64 * len(blocks) * 3)  # three tokens' worth: four are refused
        three = ck.fused_delta(blocks.transpose(1, 2), rows, cols, grid)
        assert three(y[:3, :1].clone(), x[:3, :1].contiguous(), wt[:, :3].contiguous())
        assert not three(y.clone(), x, wt)
    capped = ck.fused_delta(blocks.transpose(1, 2), rows, cols, grid, max_tokens=None)  # benchmarks: no cap
    assert capped(big_y, big_x, wt)
    with pytest.raises(ValueError, match="does not apply"):
        ck.delta_add_cpu(big_y, big_x, blocks.transpose(1, 2), rows, cols, grid, wt)
    with pytest.raises(ValueError, match="wt must be"):
        ck.delta_add_cpu(y, x, blocks.transpose(1, 2), rows, cols, grid, wt[:, :2])
    with pytest.raises(ValueError, match="outside the grid"):
        ck.delta_add_cpu(y, x, blocks.transpose(1, 2), rows + grid.n_rows, cols, grid, wt)
    with pytest.raises(ValueError, match="outside the grid"):  # checked once, when the call is bound
        ck.fused_delta(blocks.transpose(1, 2), rows, cols - 1 - cols.max(), grid)
    with pytest.raises(ValueError, match="do not match"):
        ck.fused_delta(blocks.transpose(1, 2), rows[:-1], cols, grid)
    with pytest.raises(ValueError, match="do not match"):
        ck.fused_delta(blocks[:, :4, :4].transpose(1, 2), rows, cols, grid)  # b = 4 blocks on a b = 8 grid
    assert ck.fused_delta(blocks.transpose(1, 2), rows.to("meta"), cols, grid) is None
    needs_grad = y.clone().requires_grad_()
    assert not call(needs_grad, x, wt)  # the torch ops raise there, as for any in-place write on a leaf


@needs_kernel
def test_empty_inputs_and_two_dimensional_inputs():
    grid, rows, cols, blocks, x, y, wt = _inputs(32, 48, 8, 5, 4, 1, True, 1)
    call = ck.fused_delta(blocks.transpose(1, 2), rows, cols, grid)
    for shape in [(4, 0), (0, 1)]:  # no tokens per example; no examples
        yy = torch.zeros(*shape, 32)
        ww = None if shape[0] == 0 else wt
        assert call(yy, torch.zeros(*shape, 48), ww) and yy.numel() == 0
    flat_x, flat_y = x[:, 0].contiguous(), y[:, 0].contiguous()  # (B, d_in), (B, d_out)
    ref = delta_add_(flat_y.clone(), flat_x, blocks.transpose(1, 2), rows, cols, grid, wt, None)
    torch.testing.assert_close(ck.delta_add_cpu(flat_y.clone(), flat_x, blocks.transpose(1, 2), rows, cols, grid, wt),
                               ref, rtol=1e-5, atol=1e-5)
    layer = SparseBlockLinear(torch.nn.Linear(64, 32, bias=False), 8)
    layer.add_blocks(torch.arange(0, 32, 5))
    layer.set_route(torch.arange(layer.n_blocks), torch.rand(4, layer.n_blocks))
    with torch.no_grad():
        assert layer(torch.randn(4, 0, 64)).shape == (4, 0, 32)


@needs_kernel
def test_a_trace_records_the_torch_ops_not_the_c_call():
    layer = SparseBlockLinear(torch.nn.Linear(64, 32, bias=False), 8)
    layer.add_blocks(torch.arange(0, 32, 3))
    with torch.no_grad():
        layer.blocks.normal_()
    layer.set_route(torch.arange(layer.n_blocks), torch.rand(4, layer.n_blocks))
    x, other = torch.randn(4, 1, 64), torch.randn(4, 1, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values
        traced = torch.jit.trace(layer, x, check_trace=False)
        torch.testing.assert_close(traced(other), layer(other), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(traced(other), layer.base_layer(other))  # the delta is in the trace


def test_a_deep_copy_of_a_layer_never_reads_the_original_plan_blocks():
    layer = SparseBlockLinear(torch.nn.Linear(32, 32, bias=False), 8)
    layer.add_blocks(torch.arange(6))
    layer.set_route(torch.arange(6))
    x = torch.randn(2, 1, 32)
    with torch.no_grad():
        layer.blocks.normal_()
        layer(x)  # builds the plan's no-grad tensors at the stack's current version
        twin = copy.deepcopy(layer)  # its stack's version counter starts again from 0
        while twin.blocks._version < layer._plan.no_grad.version:
            twin.blocks.mul_(2.0)  # in-place writes until the versions agree
        with ck.disabled():
            expected = twin.base_layer(x) + torch.einsum("btc,oc->bto", x, twin.dense_delta(torch.arange(6)))
        torch.testing.assert_close(twin(x), expected, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_the_layer_takes_the_kernel_up_to_max_tokens_and_the_torch_ops_above(monkeypatch):
    layer = SparseBlockLinear(torch.nn.Linear(64, 32, bias=False), 8)
    layer.add_blocks(torch.arange(0, 32, 3))
    with torch.no_grad():
        layer.blocks.normal_()
    k = layer.n_blocks
    layer.set_route(torch.arange(k), torch.rand(4, k))  # a mixed route: rows differ
    over = ck.MAX_TOKENS // 4 + 1
    inputs = [torch.randn(4, 1, 64), torch.randn(4, 20, 64), torch.randn(4, over, 64)]  # decode, prefill, too long
    with torch.inference_mode():
        with ck.disabled():
            refs = [layer(x) for x in inputs]
        calls = []
        monkeypatch.setattr(layer_module, "delta_add_", lambda *a, **kw: calls.append(a[1].shape) or delta_add_(*a, **kw))
        fast = [layer(x) for x in inputs]
    assert calls == [inputs[2].shape]  # the decoding step and the 80-token prefill went through the kernel
    for f, r in zip(fast[:2], refs[:2]):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast[2], refs[2])


@needs_kernel
@pytest.mark.parametrize("nf4", [False, True], ids=["fp32", "nf4"])
def test_greedy_tokens_equal_with_and_without_the_kernel(nf4, monkeypatch):
    seta = two_task_seta("llama", nf4)  # NF4 on the CPU computes in fp32: the kernel applies too
    randomise_blocks(seta, seta.allocated_ids(), seed=3, scale=0.5)
    seta.eval()
    ids = torch.randint(4, VOCAB, (3, 7), generator=torch.Generator().manual_seed(1))
    seta.set_routing(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.4, 0.6]]))  # mixed: not folded
    kw = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    torch_op_calls = []
    monkeypatch.setattr(layer_module, "delta_add_", lambda *a, **k: torch_op_calls.append(1) or delta_add_(*a, **k))
    with torch.inference_mode():
        fast = seta.generate(ids, **kw)
        assert torch_op_calls == []  # prefill (21 tokens) and every step through the kernel
        with ck.disabled():
            ref = seta.generate(ids, **kw)
    assert len(torch_op_calls) > 0 and torch.equal(fast, ref)


@pytest.fixture
def fresh_library(tmp_path, monkeypatch):
    """An empty kernel cache and no library loaded yet; the process's own library is restored after."""
    monkeypatch.setenv("SETA_CACHE_DIR", str(tmp_path))
    ck.library.cache_clear()
    yield tmp_path
    ck.library.cache_clear()


@needs_kernel
def test_built_once_then_read_from_the_cache(fresh_library, monkeypatch):
    assert ck.library() is not None
    built = list((fresh_library / "kernels").glob("cpu_kernel*.so"))
    assert len(built) == 1  # the extension where Python's headers are, else the ctypes library
    ck.library.cache_clear()

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(ck.subprocess, "run", no_compiling)
    assert ck.library() is not None  # same source, compiler and flags: the cached build


@needs_kernel
def test_an_unwritable_cache_builds_in_a_private_folder(fresh_library, monkeypatch):
    blocker = fresh_library / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SETA_CACHE_DIR", str(blocker / "below"))  # cannot be created
    made = []
    real_mkdtemp = ck.tempfile.mkdtemp
    monkeypatch.setattr(ck.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    assert ck.library() is not None
    assert len(made) == 1 and stat.S_IMODE(os.stat(made[0]).st_mode) == 0o700  # this user's, fresh
    assert list(ck.Path(made[0]).glob("cpu_kernel*.so"))


@needs_kernel
def test_no_home_directory_builds_in_a_private_folder(fresh_library, monkeypatch):
    monkeypatch.delenv("SETA_CACHE_DIR")

    def no_home():
        raise RuntimeError("Could not determine home directory.")  # what pathlib says for a bare uid

    monkeypatch.setattr(ck.Path, "home", staticmethod(no_home))
    assert ck.library() is not None


@needs_kernel
def test_a_compiler_command_with_arguments_and_one_refusing_target_clones(fresh_library, monkeypatch):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    monkeypatch.setenv("CC", f"{cc} -w")  # a command with an argument, as `ccache gcc` is
    assert ck.library() is not None
    ck.library.cache_clear()
    picky = fresh_library / "picky-cc"  # compiles only the build without target_clones
    picky.write_text(f'#!/bin/sh\ncase "$*" in *SETA_NO_CLONES*) exec {cc} "$@";; *) exit 1;; esac\n')
    picky.chmod(0o755)
    monkeypatch.setenv("CC", str(picky))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ck.library() is not None


@needs_kernel
def test_threads_building_at_once_all_get_the_kernel(fresh_library):
    got, start = [], threading.Barrier(6)

    def first_use():
        start.wait()
        got.append(ck.library())

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and got[0] is not None and all(g is got[0] for g in got)
    assert len(list((fresh_library / "kernels").glob("*cpu_kernel*"))) == 1  # no temporary file left


HAS_HEADERS = (ck.Path(ck.sysconfig.get_paths()["include"]) / "Python.h").exists()


@needs_kernel
def test_the_extension_and_the_ctypes_library_give_the_same_sums(fresh_library, monkeypatch):
    """With Python's headers the kernel loads as a CPython extension (a cheaper call); without them,
    silently, through ctypes. The same C loop: equal to the bit."""
    grid, rows, cols, blocks, x, y, wt = _inputs(64, 48, 16, 7, 3, 2, True, 5)
    bt = blocks.transpose(1, 2)
    if HAS_HEADERS:
        assert type(ck.library()).__name__ == "builtin_function_or_method"  # the extension
    fast = ck.delta_add_cpu(y.clone(), x, bt, rows, cols, grid, wt)
    ck.library.cache_clear()

    def no_headers():
        raise OSError("no Python.h")

    monkeypatch.setattr(ck, "_python_flags", no_headers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the fallback
        assert type(ck.library()).__name__ == "_FuncPtr"  # ctypes
    assert torch.equal(ck.delta_add_cpu(y.clone(), x, bt, rows, cols, grid, wt), fast)
    assert not torch.equal(fast, y)


@pytest.mark.skipif(not (HAS_COMPILER and HAS_HEADERS), reason="no C compiler or no Python headers here")
def test_the_extension_refuses_bad_arguments():
    fn = ck.library()
    with pytest.raises(TypeError, match="6 integers"):
        fn(1, 2, 3)
    with pytest.raises(ValueError, match="null pointer"):
        fn(0, 0, 0, 0, 4, 1)  # never reaches the C loop
    with pytest.raises(TypeError):
        fn("a", 1, 1, 0, 4, 1)


def test_no_working_compiler_warns_once_and_the_layer_uses_the_torch_ops(fresh_library, monkeypatch):
    monkeypatch.setenv("CC", "false")
    with pytest.warns(RuntimeWarning, match="could not build the CPU delta kernel"):
        assert ck.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ck.library() is None  # cached: no second warning
        grid, rows, cols, blocks, x, y, wt = _inputs(16, 16, 4, 3, 2, 1, False, 0)
        assert ck.fused_delta(blocks.transpose(1, 2), rows, cols, grid) is None


def test_turned_off_by_the_environment_without_building(fresh_library, monkeypatch):
    monkeypatch.setenv("SETA_CPU_KERNEL", "0")
    monkeypatch.setenv("CC", "false")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ck.library() is None and not ck.enabled()
    assert not (fresh_library / "kernels").exists()
