"""Refuse a layer that would need more memory than the machine has, before anything is allocated.

A typo such as `filters=2000000000` or `width=200000` asks for hundreds of GB: torch's allocator then
raises a traceback or, where Linux overcommits, hands out pages that kill the process when touched.
`build_layer` runs each builder under `refuse_large_tensors` (every CPU tensor a builder creates is
checked before it exists) and then `check_activations` (every layer's output so far, at batch 1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from pydarknet.cfg import Section
from pydarknet.errors import DarknetError

_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn}
_FLOAT_BYTES = 4


def available_bytes() -> int | None:
    """Memory this process can still take: Linux's MemAvailable (or the physical memory elsewhere),
    capped by a cgroup v2 limit; None where the platform does not say."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if found is None and hasattr(os, "sysconf"):
        try:
            found = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int((cgroup / "memory.current").read_text())
            found = left if found is None else min(found, left)
    except (OSError, ValueError):
        pass
    return found


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _refusal(section: Section, what: str, need: int, available: int) -> DarknetError:
    return section.error(f"{what} would take {format_bytes(need)}, more than the {format_bytes(available)} "
                         f"of memory available")


def _size(args: Sequence) -> tuple[int, ...] | None:
    """The size argument of a factory call: torch.zeros(2, 3) or torch.zeros((2, 3)), torch.full((2, 3), v)."""
    if args and isinstance(args[0], (tuple, list, torch.Size)):
        args = args[0]
    return tuple(args) if all(isinstance(a, int) for a in args) else None


class _TensorSizeGuard(TorchFunctionMode):
    def __init__(self, section: Section, available: int) -> None:
        super().__init__()
        self.section, self.available = section, available

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in _FACTORIES and (size := _size(args)) is not None:
            device = torch.device(kwargs.get("device") or torch.get_default_device())
            itemsize = (kwargs.get("dtype") or torch.get_default_dtype()).itemsize
            need = itemsize * math.prod(size)
            if device.type == "cpu" and need > self.available:  # a meta (shape-only) build allocates nothing
                shape = "x".join(map(str, size))
                raise _refusal(self.section, f"a {shape} parameter tensor", need, self.available)
        return func(*args, **kwargs)


@contextmanager
def refuse_large_tensors(section: Section) -> Iterator[None]:
    """Refuse (section.error) any CPU tensor created inside that is larger than the memory available."""
    available = available_bytes()
    if available is None:
        yield
        return
    with _TensorSizeGuard(section, available):
        yield


def check_activations(section: Section, outputs: Sequence) -> None:
    """Refuse the layer at which the outputs of the layers so far (float32, batch 1; Darknet allocates
    every layer's output, `layer_outputs` returns them all) no longer fit in the memory available. Not for
    a build on another default device (`with torch.device("meta")`: shapes only)."""
    if torch.get_default_device().type != "cpu":
        return
    need = sum(s.size for s in outputs) * _FLOAT_BYTES
    available = available_bytes()
    if available is not None and need > available:
        last = outputs[-1]
        raise _refusal(section, f"the outputs of the layers up to this one ({last.c}x{last.h}x{last.w} here, "
                       "batch 1)", need, available)
