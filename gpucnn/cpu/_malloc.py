"""glibc's malloc kept from handing the NumPy path's memory back to the OS after every op.

Each op allocates its scratch (lowered operands, GEMM products) and its outputs afresh, from
a few hundred KB to a few MB, and frees the scratch on return. With glibc's defaults such
sizes are mmapped or taken from a heap whose top is trimmed back to the OS when freed, so
the next op page-faults all of it in again. Measured on the 2-core dev VM, LeNet conv2's
forward at batch 64: 2.4 ms with the defaults, 0.74 ms with the heap kept (mmap only past
MMAP_THRESHOLD, trimming only past TRIM_THRESHOLD of free memory at the top).

Applied once, when the NumPy backend is first imported, where the C library is glibc. It
is process-wide, so ``GPUCNN_CPU_MALLOC_TUNING=0`` turns it off; its cost is up to
TRIM_THRESHOLD of freed memory per malloc arena kept by the process instead of returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from .._checks import env_flag

VARIABLE = "GPUCNN_CPU_MALLOC_TUNING"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 64 << 20

_applied: bool | None = None  # None: not tried yet


def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds (once); whether they are in effect."""
    global _applied
    if _applied is None:
        _applied = _tune()
    return _applied


def _tune() -> bool:
    if not env_flag(VARIABLE, default=True) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success (glibc refuses an mmap threshold past 32 MB on 64-bit)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
