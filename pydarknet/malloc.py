"""glibc malloc settings for inference: process-wide, so only ever made by an explicit call.

`keep_freed_memory()` is opt-in for library users; the pydarknet CLI makes it for its own process in the
inference commands. Measurements: benchmarks/README.md ("glibc keeps freed memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# 1 GiB, not more: mallopt takes a C int, which ctypes would silently truncate a larger Python int to.
_KEEP = 1 << 30


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        return ctypes.CDLL(ctypes.util.find_library("c"))
    return None


def keep_freed_memory() -> bool:
    """Let glibc serve large blocks from the heap and keep the pages it frees, for the whole process.

    By default glibc maps every block over its (dynamic) mmap threshold on allocation and unmaps it on
    free, and trims the heap's top: every forward pass then page-faults its activations in again
    (yolov2-voc at batch 1 on 2 cores: 141 ms a pass against 118 with this setting). The price is that
    memory freed by the process is kept for reuse, not returned to the OS. Returns whether it applied
    (glibc only)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt(_M_MMAP_THRESHOLD, _KEEP)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP)
    return True


def trim_heap() -> None:
    """Return the heap's free pages to the OS (glibc's malloc_trim). Packing replaces weights layer by
    layer; each replaced tensor leaves a hole the next one may not fit in, which would stay resident."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
