"""The NumPy path's chunks on several threads: same bits as one thread, nothing left behind."""

from __future__ import annotations

import multiprocessing
import sys
import threading

import numpy as np
import pytest

import gpucnn.cpu._parallel as parallel
import gpucnn.cpu._windows
import gpucnn.cpu.conv
from gpucnn import ops
from tests.helpers import numpy_blas, shuffled_linspace


def _blas_threads():
    return [entry["num_threads"] for entry in numpy_blas()]


def _conv_and_pool(seed=0):
    """Every chunked NumPy op once, float32, on shapes that split into uneven chunks."""
    x = shuffled_linspace((7, 3, 11, 9), np.float32, seed)
    w = shuffled_linspace((5, 3, 3, 3), np.float32, seed + 1)
    b = shuffled_linspace((5,), np.float32, seed + 2)
    y = ops.conv2d_forward(x, w, b, stride=1, padding=1)
    dx, dw, db = ops.conv2d_backward(y, x, w, stride=1, padding=1)
    strided = ops.conv2d_backward(ops.conv2d_forward(x, w, b, stride=2), x, w, stride=2)
    pooled, argmax = ops.max_pool2d_forward(x, 3, stride=2, padding=1)
    return [y, dx, dw, db, *strided, pooled, argmax]


@pytest.mark.parametrize("chunk_bytes", [1, 700, 1 << 21])
def test_results_have_the_same_bits_on_any_number_of_threads(chunk_bytes, monkeypatch):
    monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", chunk_bytes)
    results = {}
    for threads in (1, 2, 3, 8):
        monkeypatch.setenv(parallel.THREADS_VARIABLE, str(threads))
        results[threads] = _conv_and_pool()
    for threads in (2, 3, 8):
        for got, expected in zip(results[threads], results[1], strict=True):
            assert got.dtype == expected.dtype
            assert got.tobytes() == expected.tobytes()


def test_pieces_for_more_workers_than_chunks_keep_the_bits(monkeypatch):
    # A host with more workers than chunks cuts each chunk into pieces of whole GEMM blocks
    # (the forward, and backward-data as a forward) or whole images (col2im at a stride, a
    # 1x1 filter), every piece made worth the hand-over here: 40 images in four chunks of
    # 10, blocks of 2 images (Q = 22), cut for 16 workers into pieces of 2, 2, 2 and 4
    # images. A piece of 4 would choose blocks of 4 by itself, and a GEMM of other width
    # gives other bits: the piece must keep its chunk's blocks.
    windows = gpucnn.cpu._windows
    monkeypatch.setattr(windows, "CHUNK_MIN_FLOPS", 1)
    monkeypatch.setattr(windows, "CHUNK_BYTES", 150_000)
    cuts = []

    def counted_pieces(parts, *args):
        parts = list(parts)
        tasks = windows.pieces(parts, *args)
        cuts.append((len(parts), len(tasks)))
        return tasks

    monkeypatch.setattr(gpucnn.cpu.conv, "pieces", counted_pieces)
    x = shuffled_linspace((40, 9, 4, 22), np.float32)
    w, pointwise = (shuffled_linspace((9, 9, k, k), np.float32, 1) for k in (3, 1))
    b = shuffled_linspace((9,), np.float32, 2)

    def convolutions():
        out = []
        for weight, geometry in (
            (w, {"padding": 1}),
            (w, {"stride": 2, "padding": 1}),
            (pointwise, {}),
        ):
            y = ops.conv2d_forward(x, weight, b, **geometry)
            out += [y, *ops.conv2d_backward(y, x, weight, **geometry)]
        return out

    results = {}
    for threads in (1, 2, 3, 8, 16):
        monkeypatch.setenv(parallel.THREADS_VARIABLE, str(threads))
        cuts.clear()
        results[threads] = convolutions()
        if threads <= 4:
            assert all(tasks == chunks for chunks, tasks in cuts)
    # forward and backward-data of the 3x3, its forward and col2im at stride 2, both of the 1x1
    assert len(cuts) == 6 and all(chunks == 4 and tasks > 4 for chunks, tasks in cuts), cuts
    for threads in (2, 3, 8, 16):
        for got, expected in zip(results[threads], results[1], strict=True):
            assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    "geometry",
    [
        {"padding": 2},  # bands at the top and bottom read padding rows
        {},  # no padding: each band's rows are a view of the image
        {"stride": 2, "padding": 1},
        {"dilation": 2, "padding": 1},  # two phases of output rows
        {"stride": (3, 1)},  # a stride past the kernel: a lowered row for each (p, r)
    ],
)
@pytest.mark.parametrize("images", [1, 3])
def test_row_bands_for_more_workers_than_tasks_keep_the_bits(geometry, images, monkeypatch):
    # A forward of one to three images, worth splitting (every band made worth the
    # hand-over here), runs each image as bands of output rows on the idle workers, as does
    # backward-data at stride 1, a forward of dy.
    windows = gpucnn.cpu._windows
    monkeypatch.setattr(gpucnn.cpu.conv, "CHUNK_MIN_FLOPS", 1)
    monkeypatch.setattr(windows, "CHUNK_MIN_FLOPS", 1)
    bands, row_bands = [], gpucnn.cpu.conv._row_bands

    def counted_bands(*args):
        cut = row_bands(*args)
        bands.append(len(cut))
        return cut

    monkeypatch.setattr(gpucnn.cpu.conv, "_row_bands", counted_bands)
    x = shuffled_linspace((images, 9, 13, 10), np.float32)
    w = shuffled_linspace((10, 9, 2, 3), np.float32, 1)
    b = shuffled_linspace((10,), np.float32, 2)
    results = {}
    for threads in (1, 2, 7, 16):
        monkeypatch.setenv(parallel.THREADS_VARIABLE, str(threads))
        bands.clear()
        y = ops.conv2d_forward(x, w, b, **geometry)
        results[threads] = (y, *ops.conv2d_backward(y, x, w, **geometry))
        assert bands[0] == (1 if threads <= images else min(-(-threads // images), y.shape[2]))
    for threads in (2, 7, 16):
        for got, expected in zip(results[threads], results[1], strict=True):
            assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("workers", [1, 2, 16])
def test_a_forward_gets_bands_for_idle_workers_from_four_chunks_worth_of_work(workers, monkeypatch):
    conv = gpucnn.cpu.conv
    monkeypatch.setattr(conv, "worker_count", lambda: workers)
    least = conv.CHUNK_MULTIPLE * conv.CHUNK_MIN_FLOPS
    assert conv._idle_worker_bands(1, least - 1) == 1
    assert conv._idle_worker_bands(1, least) == min(workers, conv.CHUNK_MULTIPLE)
    assert conv._idle_worker_bands(1, 100 * least) == workers
    assert conv._idle_worker_bands(3, 100 * least) == -(-workers // 3)  # three images
    assert conv._idle_worker_bands(workers, 100 * least) == 1  # no worker idle


def test_a_filter_gradient_gets_four_bands_from_four_chunks_worth_in_fewer_chunks():
    conv = gpucnn.cpu.conv
    least = conv.CHUNK_MULTIPLE * conv.CHUNK_MIN_FLOPS
    assert [conv._filter_bands(chunks, least) for chunks in (1, 3, 4, 8)] == [4, 4, 1, 1]
    assert conv._filter_bands(1, least - 1) == 1


def test_one_worker_gives_the_bits_of_several_at_a_realistic_size(monkeypatch):
    # CIFAR's 64 channels at 8x8, 128 images: four chunks whose GEMMs OpenBLAS would run by
    # another path, with other bits, were it left more than one thread in the calling thread.
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 128, 64, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        monkeypatch.setenv(parallel.THREADS_VARIABLE, str(threads))
        y = ops.conv2d_forward(x, w, padding=1)
        results[threads] = (y, *ops.conv2d_backward(dy, x, w, padding=1)[:2])
    for got, expected in zip(results[2], results[1], strict=True):
        assert got.tobytes() == expected.tobytes()


def test_work_really_runs_on_several_threads(monkeypatch):
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "3")
    barrier = threading.Barrier(3, timeout=10)

    def meet(item):  # fails with BrokenBarrierError unless three items run at once
        barrier.wait()
        return item * 2, threading.current_thread().name

    results = parallel.parallel_map(meet, range(3))
    assert [value for value, _ in results] == [0, 2, 4]
    assert all(name.startswith("gpucnn-cpu") for _, name in results)


def test_workers_take_the_callers_floating_point_error_handling(monkeypatch):
    # np.errstate is per thread: an `invalid="raise"` around an op must reach its chunks
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    zeros = np.zeros(4)
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        parallel.parallel_map(lambda _: zeros / zeros, range(2))
    with np.errstate(all="ignore"):
        settings = parallel.parallel_map(lambda _: np.geterr(), range(2))
    assert settings == [np.geterr() | dict.fromkeys(np.geterr(), "ignore")] * 2


def test_blas_runs_on_one_thread_inside_and_is_restored_after(monkeypatch):
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    before = _blas_threads()
    inside = parallel.parallel_map(lambda _: _blas_threads(), range(2))
    assert inside == [[1] * len(before)] * 2
    assert _blas_threads() == before


def test_an_error_in_a_chunk_reaches_the_caller_and_restores_blas(monkeypatch):
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    before = _blas_threads()

    def fail_on_odd(item):
        if item % 2:
            raise RuntimeError(f"chunk {item}")
        return item

    with pytest.raises(RuntimeError, match="chunk 1"):
        parallel.parallel_map(fail_on_odd, range(4))
    assert _blas_threads() == before
    assert parallel.parallel_map(fail_on_odd, [0, 2]) == [0, 2]  # the pool still works


def test_nested_calls_run_inline_instead_of_waiting_on_the_pool(monkeypatch):
    # Two workers, each asking the same pool for more work, would wait on each other forever:
    # on a fresh pool of exactly two threads (an earlier test may have left a bigger one, with
    # threads to spare), in a thread of its own, so that a deadlock fails instead of hanging.
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    monkeypatch.setattr(parallel, "_pool", None)

    def outer(item):
        return parallel.parallel_map(lambda inner: (item, inner), range(3))

    results = []
    caller = threading.Thread(
        target=lambda: results.append(parallel.parallel_map(outer, range(2))), daemon=True
    )
    caller.start()
    caller.join(timeout=60)
    deadlocked = caller.is_alive()
    if deadlocked:  # cancel the queued inner tasks, so the workers and the process can end
        parallel._pool[2].shutdown(wait=False, cancel_futures=True)
    assert not deadlocked, "nested parallel_map calls deadlocked on the pool"
    assert results == [[[(i, j) for j in range(3)] for i in range(2)]]


def test_a_pool_is_replaced_when_the_worker_count_changes(monkeypatch):
    # Bigger, for more workers; smaller too, since idle threads beyond the count slowed the
    # tasks that ran (gpucnn/cpu/_parallel.py). The old pool is shut down: its threads end.
    monkeypatch.setattr(parallel, "_pool", None)
    small = parallel._executor(2)
    assert parallel._executor(2) is small
    bigger = parallel._executor(3)
    smaller = parallel._executor(1)
    assert len({id(small), id(bigger), id(smaller)}) == 3
    for old in (small, bigger):
        with pytest.raises(RuntimeError, match="shutdown"):
            old.submit(int)
    smaller.shutdown()


def test_a_call_on_fewer_workers_than_before_runs_on_a_pool_of_that_many(monkeypatch):
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "5")
    assert parallel.parallel_map(lambda item: item, range(5)) == list(range(5))
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    names = parallel.parallel_map(lambda _: threading.current_thread().name, range(4))
    assert parallel._pool[1] == 2 and len(parallel._pool[2]._threads) <= 2
    assert len(set(names)) <= 2


def test_overlapping_calls_from_user_threads_restore_blas_once_all_end(monkeypatch):
    monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", 700)
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    expected = _conv_and_pool()
    before = _blas_threads()
    outputs, errors = [None] * 4, []

    def user(index):
        try:
            outputs[index] = _conv_and_pool()
        except Exception as error:  # reported below; a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for result in outputs:
        assert [a.tobytes() for a in result] == [a.tobytes() for a in expected]
    assert _blas_threads() == before


def _child_runs_chunks(queue):
    queue.put(parallel.parallel_map(lambda item: item + 1, range(4)))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method: Linux only")
# Forking a process with threads is the point of this test; Python 3.12+ warns of it.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_pool(monkeypatch):
    # The child inherits the parent's pool object but none of its threads: reusing it would
    # hang. It must build its own.
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "2")
    assert parallel.parallel_map(lambda item: item, range(2)) == [0, 1]  # the parent's pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_runs_chunks, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [1, 2, 3, 4]


@pytest.mark.parametrize("setting", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_named(setting, monkeypatch):
    monkeypatch.setenv(parallel.THREADS_VARIABLE, setting)
    with pytest.raises(ValueError, match=parallel.THREADS_VARIABLE):
        parallel.worker_count()


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 2), (4, 4), (16, 4), (64, 4)])
def test_without_a_setting_every_allowed_core_is_used_up_to_the_cap(monkeypatch, cores, workers):
    monkeypatch.delenv(parallel.THREADS_VARIABLE, raising=False)
    monkeypatch.setattr(
        parallel.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False
    )
    assert parallel.worker_count() == workers == min(cores, parallel.DEFAULT_MAX_WORKERS)


def test_a_setting_overrides_the_cores_and_the_cap(monkeypatch):
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setenv(parallel.THREADS_VARIABLE, " 3 ")
    assert parallel.worker_count() == 3
    monkeypatch.setenv(parallel.THREADS_VARIABLE, "16")
    assert parallel.worker_count() == 16
    assert parallel.worker_count_source() == "set by GPUCNN_CPU_THREADS"
    monkeypatch.setenv(parallel.THREADS_VARIABLE, " ")  # set but empty is unset
    assert parallel.worker_count() == 4
    assert parallel.worker_count_source() == (
        "of 4 cores, at most 4 unless GPUCNN_CPU_THREADS says"
    )


AVX512 = ["fma", "avx2", *parallel.AVX512_FLAGS]


def _openblas(kernels):
    return {"internal_api": "openblas", "version": "0.3.31", "architecture": kernels}


@pytest.mark.parametrize("kernels", ["Haswell", "Zen", "Sandybridge"])
def test_avx2_kernels_on_an_avx512_cpu_get_advice(kernels, monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    advice = parallel.blas_kernel_advice([_openblas(kernels)], AVX512)
    assert f"its {kernels} kernels" in advice and "OPENBLAS_CORETYPE=SkylakeX" in advice


def test_advice_names_an_openblas_coretype_that_holds_the_kernels_back(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    advice = parallel.blas_kernel_advice([_openblas("Haswell")], AVX512)
    assert advice.startswith("OPENBLAS_CORETYPE=Haswell in the environment holds")
    assert "unset it, or set SkylakeX," in advice


@pytest.mark.parametrize(
    "libraries, flags",
    [
        ([_openblas("SkylakeX")], AVX512),  # already the AVX-512 kernels
        ([_openblas("SapphireRapids")], AVX512),
        ([_openblas("Haswell")], ["fma", "avx2"]),  # a CPU without AVX-512
        ([_openblas("Haswell")], ["avx512f", "avx2"]),  # without all SkylakeX needs
        ([{"internal_api": "mkl", "version": "2024", "architecture": None}], AVX512),
        ([], AVX512),  # no BLAS found
    ],
)
def test_no_advice_where_nothing_would_help(libraries, flags):
    assert parallel.blas_kernel_advice(libraries, flags) is None


def test_the_cpu_flags_come_from_proc_cpuinfo_where_there_is_one():
    flags = parallel._cpu_flags()
    assert isinstance(flags, set)
    if sys.platform == "linux":
        assert "fpu" in flags or not flags  # x86 lists fpu; other CPUs have no "flags" line
