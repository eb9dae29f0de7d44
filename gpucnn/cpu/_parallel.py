"""Chunks of a NumPy op on worker threads, one per core up to a cap, BLAS at one thread each.

The NumPy path splits its work into chunks near the L2 cache size (``_windows.chunks``).
NumPy's copies and transposes run on one core and OpenBLAS's small GEMMs scale poorly, so
running whole chunks side by side, each with a single-threaded BLAS, keeps every core busy:
measured on 2 cores, the convolution forward of the benchmark layers 1.3-1.6x faster than
one chunk at a time with a 2-thread BLAS (NumPy releases the GIL inside copies and GEMMs).

Results do not depend on the worker count: chunks are the same either way, each writes its
own slice of the output, reductions across chunks are summed by the caller in chunk order,
and every chunk runs with BLAS at one thread, in a worker or in the calling thread (OpenBLAS
gives other bits on more). ``GPUCNN_CPU_THREADS`` sets the worker count (1: everything in
the calling thread); unset, it is the cores this process may run on, at most DEFAULT_MAX_WORKERS.

While chunks run, BLAS is limited to one thread process-wide (``one_thread_blas``); the
limit is counted, so overlapping calls from several user threads restore it only when the
last ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

THREADS_VARIABLE = "GPUCNN_CPU_THREADS"
# More workers stop paying, and past a point cost. On a 16-core Xeon (the H100 host,
# session 29), forward + backward of CIFAR 16->16 / 64->64 at batch 128, two runs: 4
# workers 20.9 / 14.9 ms and 16.5 / 12.0; 8 workers 21.6 / 15.7 and 18.8 / 16.6; 16 workers
# 28.0 / 22.6 and 23.5 / 28.2 (one worker 52 / 46 and 35 / 33). Its GEMMs alone scaled 14x
# on 16 threads, its copies 7.5x, and an op holds the GIL for only 10-15% of its time (on
# the VM): why the whole op does not scale is not yet pinned down (benchmarks/NOTES.md).
DEFAULT_MAX_WORKERS = 4

_state = threading.local()  # .inside: this thread is a worker (nested calls run inline)
_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid that made it, size, pool)
_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved: list | None = None  # [(library controller, its thread count before the limit)]


def worker_count() -> int:
    """Threads a NumPy op may use: ``GPUCNN_CPU_THREADS``, else the cores this process may
    run on, at most DEFAULT_MAX_WORKERS."""
    setting = _setting()
    if setting:
        try:
            count = int(setting)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {setting!r}")
        return count
    return min(allowed_cores(), DEFAULT_MAX_WORKERS)


def _setting() -> str:
    """GPUCNN_CPU_THREADS as set, "" where unset or blank (blank counts as unset)."""
    return os.environ.get(THREADS_VARIABLE, "").strip()


def allowed_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def worker_count_source() -> str:
    """Where ``worker_count`` came from, for ``gpucnn info``."""
    if _setting():
        return f"set by {THREADS_VARIABLE}"
    return (
        f"of {allowed_cores()} cores, at most {DEFAULT_MAX_WORKERS} unless {THREADS_VARIABLE} says"
    )


def parallel_map(work: Callable, items: Iterable) -> list:
    """``[work(item) for item in items]``, the items spread over the worker threads, BLAS
    at one thread throughout, in the calling thread too: OpenBLAS multiplies by another
    path, with other bits, when it may use more (even a 64x576 by 576x16 product), so a
    chunk run inline with BLAS's threads would give other bits than on a worker."""
    items = list(items)
    threads = worker_count()
    workers = min(threads, len(items))
    if workers <= 1 or getattr(_state, "inside", False):
        with one_thread_blas():
            return [work(item) for item in items]
    # One task per worker, each taking every workers-th item (the chunks are of equal size):
    # a task costs ~10 us to hand over, a chunk one to several ms of work.
    shares = [items[first::workers] for first in range(workers)]
    # NumPy's floating-point error handling is per thread: the workers take the caller's
    as_worker = functools.partial(_as_worker, work, np.geterr())
    with one_thread_blas():
        done = list(_executor(threads).map(as_worker, shares))
    results = [None] * len(items)
    for first, share in enumerate(done):
        results[first::workers] = share
    return results


def _as_worker(work: Callable, errors: dict, share: list) -> list:
    _state.inside = True
    try:
        with np.errstate(**errors):
            return [work(item) for item in share]
    finally:
        _state.inside = False


def _executor(threads: int) -> ThreadPoolExecutor:
    """The shared pool of ``threads`` workers, made again after a fork (the child has none of
    the parent's threads) or when the worker count changes. A pool bigger than the count
    made work slower: two tasks on a pool of 16 threads (idle but two), on the 2-vCPU VM, ran
    one at full speed and the other at half (one 64-channel 56x56 image in two bands: 2.2-2.5
    ms against 1.2-1.3 on a pool of two), so a smaller count gets a pool of its own."""
    global _pool
    with _pool_lock:
        pid = os.getpid()
        if _pool is None or _pool[0] != pid or _pool[1] != threads:
            if _pool is not None and _pool[0] == pid:
                _pool[2].shutdown(wait=False)
            _pool = (pid, threads, ThreadPoolExecutor(threads, thread_name_prefix="gpucnn-cpu"))
        return _pool[2]


# Found once, at first use: NumPy's BLAS is loaded by then (gpucnn imports NumPy first), and
# a BLAS loaded later (SciPy's, with scikit-learn) never runs the NumPy path's products.
@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def blas_libraries() -> list[dict]:
    """NumPy's BLAS as threadpoolctl sees it: per library, its implementation, version, CPU
    kernels and thread count (what decides the NumPy path's GEMM speed on a host)."""
    facts = ("internal_api", "version", "architecture", "num_threads")
    return [
        {key: library.info().get(key) for key in facts}
        for library in _blas_controller().lib_controllers
    ]


# OpenBLAS's kernels that use AVX-512 (its DYNAMIC_ARCH names), and the CPU flags they need.
AVX512_KERNELS = ("SkylakeX", "Cooperlake", "SapphireRapids")
AVX512_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def blas_kernel_advice(libraries: list[dict] | None = None, cpu_flags=None) -> str | None:
    """What to change where OpenBLAS runs kernels without AVX-512 on a CPU with AVX-512,
    else None: most often an OPENBLAS_CORETYPE in the environment, which overrides
    OpenBLAS's own choice (session 26's VM, a Zen 5, set it to Haswell: sgemm at 132 GFLOP/s
    a core against 247 with SkylakeX kernels, OpenBLAS's pick without the variable; CIFAR
    64->64's forward + backward 11.1 -> 7.3 ms). ``libraries``: ``blas_libraries()``;
    ``cpu_flags``: the CPU's flags (Linux: /proc/cpuinfo; elsewhere unknown, so no advice)."""
    libraries = blas_libraries() if libraries is None else libraries
    flags = _cpu_flags() if cpu_flags is None else set(cpu_flags)
    if not all(flag in flags for flag in AVX512_FLAGS):
        return None
    for library in libraries:
        kernels = library.get("architecture")
        if library.get("internal_api") == "openblas" and kernels not in AVX512_KERNELS:
            forced = os.environ.get("OPENBLAS_CORETYPE")
            change = (
                f"OPENBLAS_CORETYPE={forced} in the environment holds OpenBLAS to its "
                f"{kernels} kernels on a CPU with AVX-512: unset it, or set SkylakeX,"
                if forced
                else f"OpenBLAS runs its {kernels} kernels on a CPU with AVX-512: set "
                "OPENBLAS_CORETYPE=SkylakeX"
            )
            return f"{change} before NumPy is imported (about twice the GEMM speed)"
    return None


def cpu_info() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ("model name", "cpu family", "flags",
    ...); empty where there is none (not Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():  # the end of the first processor's block
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_flags() -> set[str]:
    return set(cpu_info().get("flags", "").split())


def blas_threads_controlled() -> bool:
    """Whether ``one_thread_blas`` reaches NumPy's BLAS (threadpoolctl found it)."""
    return bool(_blas_controller().lib_controllers)


@contextlib.contextmanager
def one_thread_blas():
    """BLAS at one thread process-wide while the body runs. Each library's count is read and
    set directly: threadpoolctl's ``limit()`` first gathers every library's info, ~11 us a
    call on the 2-core dev VM, against ~4 us here."""
    global _blas_users, _blas_saved
    with _blas_lock:
        if _blas_users == 0:
            libraries = _blas_controller().lib_controllers
            _blas_saved = [(library, library.get_num_threads()) for library in libraries]
            for library in libraries:
                library.set_num_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for library, threads in _blas_saved:
                    library.set_num_threads(threads)
                _blas_saved = None
