"""The layer's no-grad delta in one C call (fp32, CPU): a fast path of
`seta.core.blocks.delta_add_`, which stays the reference and the path everywhere else.

    y[n, rows_i·b + j] += w_{i,n} · Σ_c x[n, cols_i·b + c] · blocks_t[i, c, j]

Why: while decoding, each routed layer's delta is four small torch ops (gather, bmm, scale,
index_add) whose dispatch costs more than their arithmetic; for a batch whose rows route to
different experts (no fold, `seta.models.fold`) they were most of SETA's price on the CPU
(BENCHMARKS.md §7.3-§7.4). `cpu_kernel.c` does the same sums in one call, four tokens sharing each
load of a block (b = 16, 32, 64: vector accumulators in registers). What stays fixed for a route
(blocks, coordinates, shape) is bound once in a struct, so a call passes six integers. It is used
for at most `MAX_TOKENS` tokens and `MAX_WORK` multiply-adds per call (N·k·b²): within those the
kernel was faster than the torch ops in every cell measured, prefills included (BENCHMARKS.md §7.6;
§7.4 had lower caps for the kernel before its accumulators were vectors); above, unmeasured, the
torch ops.

Built at first use with the system C compiler (`$CC`, a command such as `ccache gcc`, else
`cc`/`gcc`; about 0.2 s) into `<$SETA_CACHE_DIR or ~/.cache/seta>/kernels/` (where that cannot be
written, a new private temporary folder, built again by each process), keyed by the source,
compiler, flags and machine (and Python, for the extension). Where Python's headers are installed it
is built as a CPython extension (`cpu_kernel_py.c`: a call costs ~0.1 µs against ~0.9 µs through
ctypes, paid per routed layer per decoding step), else loaded with ctypes, silently (the same C
loop, the same sums). GCC on x86-64 builds AVX-512, AVX2 and baseline
clones, picked when the library loads; a build without them where the compiler or loader refuses
clones. No compiler or no build that loads: one warning, and the torch ops are used;
`SETA_CPU_KERNEL=0` in the environment: the torch ops, nothing built. Results agree with the torch
ops to rounding (no FMA contraction: the same sums whichever compiler).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from seta.core.blocks import BlockGrid

__all__ = ["MAX_TOKENS", "delta_add_cpu", "disabled", "enabled", "fused_delta", "library"]

MAX_TOKENS = 4096  # most tokens N = x.numel() / d_in per call (BENCHMARKS.md §7.6: measured up to 4096)
MAX_WORK = 1 << 27  # most multiply-adds N·k·b² per call (measured gains up to 2.0e8)
_FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-fPIC", "-shared")  # no FMA contraction: same sums on every compiler
_state = {"on": True}  # switched by `disabled()`


def _off_by_environment() -> bool:
    return os.environ.get("SETA_CPU_KERNEL", "1") == "0"


def enabled() -> bool:
    """Whether layers use the kernel where it applies: not with `SETA_CPU_KERNEL=0` in the environment
    (then it is never built) nor inside `disabled()`."""
    return _state["on"] and not _off_by_environment()


@contextmanager
def disabled():
    """Within the block, layers use the torch ops, in every thread of the process (benchmarks time both
    in one process; plans built before or inside the block keep their kernel for afterwards)."""
    before, _state["on"] = _state["on"], False
    try:
        yield
    finally:
        _state["on"] = before


def _compiler() -> list[str] | None:
    """The compiler command: `$CC` (split like a shell word list: `ccache gcc` works), else cc / gcc."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return shlex.split(cc) if cc else None


def _cache_dir() -> Path | None:
    """`<$SETA_CACHE_DIR or ~/.cache/seta>/kernels`; None without a home (a container's bare uid)."""
    root = os.environ.get("SETA_CACHE_DIR")
    if root is None:
        try:
            root = Path.home() / ".cache" / "seta"
        except RuntimeError:
            return None
    return Path(root) / "kernels"


def _private_dir() -> Path:
    """A new folder only this user can enter (mode 0700), where the cache cannot be used: never a
    shared folder that another user could have put a library in."""
    return Path(tempfile.mkdtemp(prefix="seta-kernels-"))


def _compile(cc: list[str], flags: tuple, source: Path, out: Path) -> None:
    """cc flags -o out source, through a temporary name in out's folder, so that out is whole or absent
    whichever processes and threads build at once."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        subprocess.run([*cc, *flags, "-o", tmp, str(source)], check=True, capture_output=True, text=True, timeout=120)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _python_flags() -> tuple[str, ...]:
    """-I for Python's headers; OSError where they are not installed (the ctypes build needs none)."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise OSError(f"no Python.h in {include}")
    return (f"-I{include}",)


def _open_extension(path: Path):
    """The extension module built at path (its init function is PyInit_seta_cpu_kernel)."""
    spec = importlib.util.spec_from_file_location("seta_cpu_kernel", path)
    if spec is None:
        raise OSError(f"{path} is not an extension module of this Python")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(cc: list[str], source: Path, extension: bool = False):
    """The loaded C function, built unless the cache has it; OSError saying why where no build loads.
    source: cpu_kernel.c (loaded with ctypes), or with `extension` cpu_kernel_py.c (a CPython extension
    that includes cpu_kernel.c from its folder)."""
    errors = []
    sources = [source.read_bytes()] + ([(source.parent / "cpu_kernel.c").read_bytes()] if extension else [])
    python = _python_flags() if extension else ()
    tag = sys.implementation.cache_tag if extension else ""  # an extension loads in its own Python only
    for extra in ((), ("-DSETA_NO_CLONES",)):  # target_clones needs ifunc support (not on musl, say)
        flags = (*_FLAGS, *extra, *python)
        key = hashlib.sha256(b"\0".join([*sources, " ".join(cc).encode(), " ".join(flags).encode(),
                                         platform.machine().encode(), tag.encode()])).hexdigest()[:16]
        for where in (_cache_dir, _private_dir):
            try:
                folder = where()
                if folder is None:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                out = folder / f"cpu_kernel{'_py' if extension else ''}-{key}.so"
                if not out.exists():
                    _compile(cc, flags, source, out)
                if extension:
                    return _open_extension(out).delta_add
                fn = ctypes.CDLL(str(out)).seta_delta_add_f32
                fn.restype = None
                fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2  # (blocks struct, y, x, wt, N, T)
                return fn
            except subprocess.CalledProcessError as e:
                errors.append(f"{' '.join(flags)}: exit status {e.returncode} {e.stderr.strip()[-500:]}".strip())
                break  # the compiler refused these flags: try the next ones
            except (OSError, AttributeError, ImportError) as e:  # a read-only cache, a library that does not load: go on
                errors.append(f"{' '.join(flags)}: {e}")
    raise OSError("; ".join(errors))


_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _library() -> Callable | None:
    if _off_by_environment():
        return None
    cc = _compiler()
    if cc is None:
        warnings.warn("seta: no C compiler found (set CC or install gcc): the sparse delta uses torch ops, "
                      "slower when decoding on the CPU", RuntimeWarning, stacklevel=3)
        return None
    files = resources.files("seta.models")
    try:  # the extension where Python's headers are installed: a cheaper call than ctypes (same C loop)
        with resources.as_file(files / "cpu_kernel_py.c") as source:
            return _load(cc, Path(source), extension=True)
    except (OSError, subprocess.SubprocessError):
        pass  # no headers, or they did not build: ctypes, without a warning (the same results, a µs slower)
    try:
        with resources.as_file(files / "cpu_kernel.c") as source:
            return _load(cc, Path(source))
    except (OSError, subprocess.SubprocessError) as e:
        warnings.warn(f"seta: could not build the CPU delta kernel with {' '.join(cc)} ({e}); the sparse delta "
                      "uses torch ops, slower when decoding on the CPU", RuntimeWarning, stacklevel=3)
        return None


class _Blocks(ctypes.Structure):
    """`seta_blocks` of cpu_kernel.c: what stays fixed for a route, bound once."""

    _fields_ = [("bt", ctypes.c_void_p), ("rows", ctypes.c_void_p), ("cols", ctypes.c_void_p),
                ("k", ctypes.c_int64), ("b", ctypes.c_int64), ("d_out", ctypes.c_int64), ("d_in", ctypes.c_int64)]


def library() -> Callable | None:
    """The kernel's C function, built and loaded once per process (one thread builds, the others wait);
    None (with one warning) where it cannot be built; None, silently, with `SETA_CPU_KERNEL=0`."""
    with _lock:
        return _library()


library.cache_clear = _library.cache_clear  # tests: build again


def fused_delta(blocks_t: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid,
                max_tokens: int | None = MAX_TOKENS) -> Callable | None:
    """For fixed blocks, the kernel bound to them: `call(y, x, wt)` adds the delta into y and returns
    True, or returns False (y untouched) where the kernel does not apply to these inputs (more than
    `max_tokens` tokens or `MAX_WORK` multiply-adds (None: any number; benchmarks), another dtype,
    not contiguous, or turned off). None where it never applies to these blocks (not fp32 on the CPU,
    b not dividing both sides, even one token over `MAX_WORK`, no kernel built). ValueError for blocks
    that do not fit the grid (checked here, once, so that the C loop stays within y and x).

    blocks_t: (k, b, b) blocksᵀ, copied to contiguous memory once; rows, cols: (k,) block coordinates.
    y and x must not overlap (the layer's y is the base's fresh output).
    """
    b, k = grid.block_size, blocks_t.shape[0]
    if blocks_t.shape != (k, b, b) or rows.shape != (k,) or cols.shape != (k,):
        raise ValueError(f"blocks_t {tuple(blocks_t.shape)}, rows {tuple(rows.shape)}, cols {tuple(cols.shape)} "
                         f"do not match (k, b, b), (k,), (k,) with b = {b}")
    if blocks_t.device.type != "cpu" or rows.device.type != "cpu" or cols.device.type != "cpu":
        return None
    if k and bool((rows < 0).any() | (rows >= grid.n_rows).any() | (cols < 0).any() | (cols >= grid.n_cols).any()):
        raise ValueError(f"a block coordinate is outside the grid {grid}")
    tokens = None if max_tokens is None else min(max_tokens, MAX_WORK // max(k * b * b, 1))
    if tokens == 0 or blocks_t.dtype != torch.float32 or grid.in_features % b or grid.out_features % b or library() is None:
        return None
    fn = library()
    bt = blocks_t.contiguous()  # (k, b, b)
    rc = rows.to(torch.int64).contiguous(), cols.to(torch.int64).contiguous()  # kept alive with the call
    d_out, d_in = grid.out_features, grid.in_features
    fixed = _Blocks(bt.data_ptr(), rc[0].data_ptr(), rc[1].data_ptr(), k, b, d_out, d_in)
    fixed_at = ctypes.addressof(fixed)
    limit = float("inf") if tokens is None else tokens * d_in  # most x.numel()

    f32, tracing = torch.float32, torch._C._is_tracing  # (a trace would not record the C call)

    def call(y: Tensor, x: Tensor, wt: Tensor | None) -> bool:
        """y: (B, ..., d_out), x: (B, ..., d_in) fp32 CPU, contiguous; wt: None or (k, B, 1, 1) fp32."""
        n_x = x.numel()  # the cheap checks first
        if (n_x > limit or not _state["on"] or x.dtype is not f32 or y.dtype is not f32 or not (x.is_cpu and y.is_cpu)
                or not (x.is_contiguous() and y.is_contiguous()) or y.requires_grad or tracing()):
            return False
        n = n_x // d_in
        examples = x.shape[0] if x.dim() > 1 else 1
        # what the C loop reads and writes must be there: a wrong shape is a bug upstream, not a fallback
        if x.shape[-1] != d_in or y.numel() != n * d_out or (wt is not None and (
                wt.shape != (k, examples, 1, 1) or not (wt.is_cpu and wt.dtype is f32 and wt.is_contiguous()))):
            raise ValueError(f"CPU kernel: x {tuple(x.shape)}, y {tuple(y.shape)}, wt "
                             f"{None if wt is None else (tuple(wt.shape), wt.dtype)} do not fit {k} blocks of {grid}")
        if n == 0:  # no tokens: nothing to add (checked all the same: the layer's next step trusts this call)
            return True
        fn(fixed_at, y.data_ptr(), x.data_ptr(), 0 if wt is None else wt.data_ptr(), n, n // examples)
        return True

    def run(y_ptr: int, x_ptr: int, wt_ptr: int, n: int, tokens_per_example: int) -> bool:
        """The C call alone, for a caller that has made `call`'s checks for these arguments already
        (the layer, at its next decoding step: `SparseBlockLinear._decode_again`); False when turned off."""
        if not _state["on"]:
            return False
        fn(fixed_at, y_ptr, x_ptr, wt_ptr, n, tokens_per_example)
        return True

    call.run, call.max_numel = run, limit  # most x.numel() per call
    call.keep = (bt, rc, fixed)  # the pointers above stay valid as long as the call lives
    return call


def delta_add_cpu(y: Tensor, x: Tensor, blocks_t: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid,
                  wt: Tensor | None = None) -> Tensor:
    """`seta.core.blocks.delta_add_(y, x, blocks_t, rows, cols, grid, wt, None)` through the kernel,
    with its shapes checked; ValueError where the kernel does not apply (see `fused_delta`).

    y: (B, ..., d_out) fp32; x: (B, ..., d_in) fp32; blocks_t: (k, b, b); wt: None or (k, B, 1, 1).
    """
    if x.shape[:-1] != y.shape[:-1] or x.shape[-1] != grid.in_features or y.shape[-1] != grid.out_features:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} do not fit the grid {grid}")
    k = blocks_t.shape[0]
    if wt is not None and wt.shape != (k, x.shape[0], 1, 1):
        raise ValueError(f"wt must be {(k, x.shape[0], 1, 1)}, got {tuple(wt.shape)}")
    call = fused_delta(blocks_t, rows, cols, grid)
    if call is None or not call(y, x, wt):
        raise ValueError("the CPU kernel does not apply here: fp32 CPU tensors, contiguous, b dividing both "
                         f"sides, at most MAX_TOKENS = {MAX_TOKENS} tokens and MAX_WORK = {MAX_WORK} multiply-adds, "
                         "kernel built and enabled")
    return y
