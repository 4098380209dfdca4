"""The C heap told to keep freed activations for the next batch (glibc only).

PyTorch's CPU tensors come straight from malloc, and every batch allocates its
activations afresh: megabytes each. With glibc's defaults such blocks are mapped from
the kernel and handed back when freed, or trimmed off the heap's top, so every batch
faults its pages in again: 16,000 page faults per pass of 512 digits through conv-dense
on this project's machine, and the pass took 50 instead of 29 ms whenever other work
loaded the machine (a fault's cost varies with the host; ONNX Runtime, which keeps its
own arena, did not vary). With the two thresholds below, blocks up to 32 MiB come from
the heap, and its free top is handed back only past 256 MiB, so the next batch reuses
them: no faults, 29 ms, the same peak memory.

It is a setting of the whole process, made the first time a network trains or scores.
``AE_ANOMALY_KEEP_FREED_MEMORY=0`` leaves glibc's defaults. Elsewhere (macOS, Windows,
musl) there is no mallopt, and nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap instead of their own mapping: glibc's
# largest allowed value on 64-bit machines (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD = 32 * 2**20
# Free memory on the heap's top is handed back only above this: the working set of a
# few batches, which a process that scores or trains will need again.
TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds, once per process; whether they were set."""
    if os.environ.get("AE_ANOMALY_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Both or neither: setting one switches off glibc's adjustment of the other.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
