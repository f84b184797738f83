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
# Blocks up to this size come from the heap: every activation of these networks (yolov2-voc's largest:
# 22 MB at batch 1, 177 MB at batch 8). Larger ones are still mapped and returned on free, so that a huge
# image does not stay resident (12000 x 12000: 432 MB decoded, 1.7 GB as floats; `detect`'s peak RSS 2.37
# GB with this, 2.80 GB with 1 GiB).
_MMAP_THRESHOLD = 256 << 20
# Free memory the heap keeps at its top. At most 1 << 31 - 1: mallopt takes a C int, which ctypes would
# silently truncate a larger Python int to.
_TRIM_THRESHOLD = 1 << 30


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        return ctypes.CDLL(ctypes.util.find_library("c"))
    return None


def keep_freed_memory() -> bool:
    """Let glibc serve blocks up to 256 MB from the heap and keep the pages it frees, for the whole process.

    By default glibc maps every block over its (dynamic) mmap threshold on allocation and unmaps it on
    free, and trims the heap's top: every forward pass then page-faults its activations in again
    (yolov2-voc at batch 1 on 2 cores: 141 ms a pass against 118 with this setting). The price is that
    memory freed by the process is kept for reuse, not returned to the OS. Call it once the network is
    loaded: the weights freed while packing would otherwise leave holes in the heap that the passes'
    blocks then scatter into (yolov2-voc, peak RSS after 5 passes: 669 MB called after `load`, 703
    before). Returns whether it applied (glibc only)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) & bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                       _TRIM_THRESHOLD))


def trim_heap() -> None:
    """Return the heap's free pages to the OS (glibc's malloc_trim). Packing replaces weights layer by
    layer; each replaced tensor leaves a hole the next one may not fit in, which would stay resident."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
