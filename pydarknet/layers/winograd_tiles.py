"""Winograd's tile transforms in C (winograd_tiles.c): Bt d B from the NHWC input map, At M A into it.

No library fuses them: as torch calls (pad, gather the tiles, a batched GEMM, scatter, slice) each went
through memory, and they took more time than the products (64 -> 128 on 64x64, F(4x4): 3.0 of 5.2 ms);
in C a tile is read, transformed in vector registers and written in one pass, padding and cropping by
bounds (0.3-0.6 ms; 64 -> 64 on 104x104: 0.3-0.4 ms each way against 2.4 ms of products). The source is
compiled on first use with the machine's C compiler (`$CC`, else `cc`) for this CPU and kept in
`pydarknet.fileio.home()/kernels`, and called through ctypes, its loops shared among torch's threads. Without
a compiler, `available()` is False and the fast variant runs its 3x3 convs direct (a warning says so).
numba compiled these loops as fast, but its LLVM took 140 MB of resident memory.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from pydarknet.fileio import atomic_write, home

_SOURCE = "winograd_tiles.c"
# -fno-trapping-math: the leaky select may compute slope * v for every v, so it vectorises (with branches:
# 3.4 against 0.4 ms on 64x64x128).
_FLAGS = ("-O3", "-std=c99", "-fno-trapping-math", "-fPIC", "-shared")
# Tried in turn, the first the compiler takes: this CPU's vector width (-march=native) and OpenMP (linked
# against libgomp.so.1, which resolves to the copy torch loaded: one thread pool), down to neither.
_OPTIONAL = (("-march=native", "-fopenmp"), ("-fopenmp",), ())
_COMPILE_SECONDS = 120
NOT_BUILT = "Winograd transforms not built: {}; 3x3 convolutions run direct (about 1.3x slower)"


def _cpu() -> str:
    """What -march=native compiles for: the library is kept per CPU (a shared home directory may be
    reached from other machines)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def _compile(source: bytes, compiler: str) -> Path | None:
    """The compiled library (made now unless kept from before), or None when the compiler fails."""
    for flags in (_FLAGS + extra for extra in _OPTIONAL):
        key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(), _cpu().encode()]))
        path = home() / "kernels" / f"winograd_tiles-{key.hexdigest()[:16]}.so"
        if path.exists():
            return path
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / _SOURCE, Path(tmp) / "lib.so"
            src.write_bytes(source)
            try:
                if subprocess.run([compiler, *flags, "-o", str(out), str(src)], capture_output=True,
                                  timeout=_COMPILE_SECONDS).returncode:
                    continue
            except subprocess.TimeoutExpired:
                continue
            atomic_write(path, out.read_bytes())  # processes building at once each rename a whole file
        return path
    return None


@functools.cache
def _library() -> ctypes.CDLL | None:
    compiler = shutil.which(os.environ.get("CC") or "cc")
    source = resources.files(__package__).joinpath(_SOURCE).read_bytes()
    try:
        path = _compile(source, compiler) if compiler else None
        why = f"{compiler} failed on it" if compiler else "no C compiler (set CC or install gcc)"
    except OSError as err:
        path, why = None, f"cannot keep it in {home() / 'kernels'}: {err.strerror or err}"
    if path is None:
        warnings.warn(NOT_BUILT.format(why), RuntimeWarning, stacklevel=2)
        return None
    lib = ctypes.CDLL(str(path))
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float  # the callers' tensors' data pointers
    lib.input_tiles.argtypes = [p, i, i, i, i, i, i, i, p, i]
    lib.output_tiles.argtypes = [p, i, i, i, i, f, p, i, i, i]
    lib.input_tiles.restype = lib.output_tiles.restype = ctypes.c_int
    return lib


def available() -> bool:
    """Whether the transforms could be compiled (the first call builds them; a warning when not)."""
    return _library() is not None


def input_tiles(x: Tensor, m: int, first_row: int, rows: int, v: Tensor) -> None:
    """Fill v[:tiles] ((tiles, t^2, c), t = m + 2) with Winograd F(m x m, 3 x 3)'s transformed tiles of
    `rows` tile rows from `first_row` of the (h, w, c) map x (contiguous, or a channel slice of a contiguous
    map: see `nhwc`); float32 on the CPU."""
    h, w, c = x.shape
    if not nhwc(x):
        raise ValueError("Winograd transforms take an NHWC map or a channel slice of one")
    _raw(v)
    _check(_library().input_tiles(x.data_ptr(), h, w, c, x.stride(1), m, first_row, rows * -(-w // m), v.data_ptr(),
                                  torch.get_num_threads()))


def output_tiles(products: Tensor, m: int, first_row: int, rows: int, slope: float, y: Tensor) -> None:
    """Write F(m x m, 3 x 3)'s output tiles of `rows` tile rows from `first_row` into the (h, w, k) map y
    from their (tiles, t^2, k) products, through leaky_relu(slope) (1: none); all float32, contiguous, on
    the CPU."""
    h, w, k = y.shape
    _raw(products, y)
    _check(_library().output_tiles(products.data_ptr(), k, m, first_row, rows * -(-w // m), slope, y.data_ptr(),
                                   h, w, torch.get_num_threads()))


def nhwc(x: Tensor) -> bool:
    """Whether the input transform reads the (h, w, c) map x as it is: float32 on the CPU, its channels
    contiguous and its pixels evenly spaced (a contiguous map, or a channel slice of one, as a [route]
    group is)."""
    h, w, c = x.shape
    return (x.dtype == torch.float32 and x.device.type == "cpu" and x.stride(2) == 1 and x.stride(1) >= c
            and x.stride(0) == w * x.stride(1))


def _raw(*tensors: Tensor) -> None:
    """The C code reads their memory as packed float32 arrays: refuse anything else (not a silent misread)."""
    if not all(t.is_contiguous() and t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors):
        raise ValueError("Winograd transforms take contiguous float32 CPU tensors")


def _check(failed: int) -> None:
    if failed == 2:
        raise ValueError("Winograd transforms: F(2x2) and F(4x4) only")
    if failed:
        raise MemoryError("Winograd transforms: no memory for a thread's scratch rows")
