"""The CUDA emulator's own semantics, each pinned by a small kernel in kernels/checks.cu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpucnn.cuda._source import name_expressions, read_source
from gpucnn.emulator import (
    EmulatedModule,
    EmulatorCompileError,
    KernelError,
    LaunchError,
    set_sanitize,
    set_thread_order,
    thread_order,
)
from gpucnn.emulator.build import compiler

KERNELS = Path(__file__).parent / "kernels"

try:
    compiler()
except EmulatorCompileError as exc:  # CI installs g++; a bare machine may not have one
    pytest.skip(f"no C++ compiler for the emulator: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def checks():
    source = read_source("checks.cu", KERNELS)
    return EmulatedModule(source, name_expressions=name_expressions(source))


@pytest.fixture(params=[False, True], ids=["in-process", "sanitized"])
def mode(request):
    set_sanitize(request.param)
    yield request.param
    set_sanitize(None)


@pytest.fixture
def sanitized():
    set_sanitize(True)
    yield
    set_sanitize(None)


@pytest.mark.parametrize("dtype, name", [(np.float32, "float"), (np.float64, "double")])
def test_block_barrier_holds_and_templates_instantiate(checks, mode, dtype, name):
    rows, n = 5, 200
    x = np.random.default_rng(0).random((rows, n)).astype(dtype)
    out = np.full(rows, np.nan, dtype)
    checks.get_function(f"block_reduce<{name}>")((rows,), (256,), (x, out, np.int32(n)))
    assert np.allclose(out, x.sum(axis=1), rtol=1e-5)


def test_a_missing_barrier_gives_a_wrong_answer(checks):
    x = np.ones((3, 256), np.float32)
    out = np.full(3, np.nan, np.float32)
    checks.get_function("racy_block_reduce")((3,), (256,), (x, out, np.int32(256)))
    # Thread 0 runs ahead of the others and reads slots they have not summed yet.
    assert not np.any(out == 256.0)


def test_a_race_between_stores_shows_in_one_thread_order(checks, mode):
    racy = checks.get_function("racy_overlapping_stores")
    results = {}
    for order in ("forward", "reverse"):
        set_thread_order(order)
        try:
            results[order] = np.full(64, np.nan, np.float32)
            racy((1,), (64,), (results[order],))
        finally:
            set_thread_order(None)
    wanted = np.arange(1, 65, dtype=np.float32)
    assert np.array_equal(results["forward"], wanted)  # thread 1 stored last
    assert results["reverse"][1] == 0 and np.array_equal(results["reverse"][2:], wanted[2:])


def test_a_race_free_kernel_gives_the_same_bits_in_either_thread_order(checks, mode):
    x = np.random.default_rng(1).random((5, 300)).astype(np.float32)
    results = []
    for order in ("forward", "reverse"):
        set_thread_order(order)
        try:
            out = np.full(5, np.nan, np.float32)
            checks.get_function("block_reduce<float>")((5,), (256,), (x, out, np.int32(300)))
            results.append(out)
        finally:
            set_thread_order(None)
    assert np.array_equal(results[0], results[1])


def test_the_thread_order_setting(monkeypatch):
    monkeypatch.delenv("GPUCNN_EMULATOR_THREAD_ORDER", raising=False)
    assert thread_order() == "forward"
    for value, order in (("reverse", "reverse"), (" forward ", "forward"), ("", "forward")):
        monkeypatch.setenv("GPUCNN_EMULATOR_THREAD_ORDER", value)
        assert thread_order() == order
    monkeypatch.setenv("GPUCNN_EMULATOR_THREAD_ORDER", "backwards")
    with pytest.raises(ValueError, match="GPUCNN_EMULATOR_THREAD_ORDER"):
        thread_order()
    set_thread_order("forward")  # the override wins over the variable
    try:
        assert thread_order() == "forward"
    finally:
        set_thread_order(None)
    with pytest.raises(ValueError, match="order"):
        set_thread_order("random")


def test_shared_memory_belongs_to_its_block(checks, monkeypatch):
    monkeypatch.setenv("GPUCNN_EMULATOR_WORKERS", "4")  # blocks really run side by side
    blocks, threads = 16, 64
    out = np.full(blocks * threads, -1, np.int32)
    checks.get_function("shared_is_per_block")((blocks,), (threads,), (out,))
    assert np.array_equal(
        out.reshape(blocks, threads), np.repeat(np.arange(blocks), threads).reshape(blocks, threads)
    )


def test_dynamic_shared_memory(checks, mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.zeros_like(x)
    checks.get_function("reverse_rows")((3,), (8,), (x, y, np.int32(4)), shared_mem=4 * 4)
    assert np.array_equal(y, x[:, ::-1])


def test_atomics_under_contention(checks, monkeypatch):
    monkeypatch.setenv("GPUCNN_EMULATOR_WORKERS", "4")
    values = np.random.default_rng(1).integers(0, 7, 5000).astype(np.int32)
    bins = np.zeros(7, np.uint32)
    largest = np.array([-1], np.int32)
    counter = np.zeros(1, np.int32)
    checks.get_function("histogram")(
        (6,), (128,), (values, np.int64(values.size), bins, largest, counter)
    )
    assert np.array_equal(bins, np.bincount(values, minlength=7))
    assert largest[0] == values.max() and counter[0] == values.size


def test_warp_shuffles_and_ballot(checks, mode):
    x = np.random.default_rng(2).standard_normal(96).astype(np.float32)
    down = np.zeros(3, np.float32)
    butterfly = np.zeros(96, np.float32)
    ballots = np.zeros(3, np.uint32)
    checks.get_function("warp_sums")((1,), (96,), (x, down, butterfly, ballots))
    sums = x.reshape(3, 32).sum(axis=1)
    assert np.allclose(down, sums, rtol=1e-5)
    assert np.allclose(butterfly.reshape(3, 32), sums[:, None], rtol=1e-5)
    expected = [sum(1 << i for i in range(32) if row[i] > 0) for row in x.reshape(3, 32)]
    assert ballots.tolist() == expected


def test_3d_grids_and_blocks(checks):
    out = np.full((2 * 3 * 2) * (4 * 2 * 3) * 4, -1, np.int32)
    checks.get_function("coordinates")((2, 3, 2), (4, 2, 3), (out,))
    records = out.reshape(2, 3, 2, 3, 2, 4, 4)  # bz by bx tz ty tx field
    assert np.array_equal(records[..., 0], np.broadcast_to(np.arange(4), records.shape[:-1]))
    assert np.array_equal(records[1, 2, 1, 2, 1, :, 3], np.full(4, 1 + 20 + 100))


def test_sanitizer_catches_an_out_of_bounds_write_and_names_the_kernel(checks, sanitized):
    y = np.zeros(100, np.float32)
    # the report trimmed to its SUMMARY line, which it keeps
    words = r"(?s)write_past_end.*heap-buffer-overflow.*checks.cu:.*SUMMARY: AddressSanitizer"
    with pytest.raises(KernelError, match=words):
        checks.get_function("write_past_end")((1,), (128,), (y, np.int32(100)))


def test_sanitizer_catches_a_static_shared_array_overflow(checks, sanitized):
    with pytest.raises(KernelError, match=r"(?s)shared_out_of_bounds.*out of bounds"):
        checks.get_function("shared_out_of_bounds")((1,), (33,), (np.zeros(33, np.int32),))


def test_divergent_barriers_are_reported_as_a_deadlock(checks, mode):
    with pytest.raises(KernelError, match=r"(?s)divergent_barriers.*deadlock.*16 threads wait"):
        checks.get_function("divergent_barriers")((1,), (32,), (np.zeros(32, np.int32),))


@pytest.mark.parametrize(
    "grid, block, shared, words",
    [
        ((1,), (1025,), 0, "exceeds 1024 threads"),
        ((1,), (1, 1, 65), 0, "exceeds 1024 threads"),
        ((0,), (32,), 0, "is 0"),
        ((1,), (0,), 0, "is 0"),
        ((1, 65536), (32,), 0, "grid exceeds"),
        ((1, -1), (32,), 0, "1 to 3 non-negative ints"),
        ((1, 1, 1, 1), (32,), 0, "1 to 3 non-negative ints"),
        ((2**32,), (32,), 0, r"grid \(4294967296, 1, 1\) out of range"),
        ((1,), (32,), 49 * 1024, "48 KiB"),
    ],
)
def test_invalid_launches_raise_what_cuda_would(checks, mode, grid, block, shared, words):
    with pytest.raises(LaunchError, match=f"CUDA_ERROR_INVALID_VALUE.*{words}"):
        checks.get_function("reverse_rows")(
            grid,
            block,
            (np.zeros(4, np.float32), np.zeros(4, np.float32), np.int32(4)),
            shared_mem=shared,
        )


def test_arguments_are_checked_against_the_signature(checks):
    kernel = checks.get_function("reverse_rows")
    x, y = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="n must be a numpy int32 scalar"):
        kernel((1,), (4,), (x, y, 4))
    with pytest.raises(TypeError, match="x must be a C-contiguous float32"):
        kernel((1,), (4,), (x.astype(np.float64), y, np.int32(4)))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        kernel((1,), (4,), (x, y))
    y.flags.writeable = False
    with pytest.raises(ValueError, match="y is written but read-only"):
        kernel((1,), (4,), (x, y, np.int32(4)))
    with pytest.raises(KeyError, match="not among"):
        checks.get_function("reverse_rows<float>")


def test_inline_ptx_fails_to_compile_with_a_clear_message():
    source = '#line 1 "ptx.cu"\nextern "C" __global__ void k(int* x) { asm volatile("trap;"); }\n'
    with pytest.raises(EmulatorCompileError, match="ptx.cu:1:.*inline PTX cannot run on the CPU"):
        EmulatedModule(source, name_expressions=["k"]).compile(sanitize=False)


def test_the_test_kernels_are_valid_cuda():
    from gpucnn.cuda.nvrtc import compile_source, find_nvrtc

    found = find_nvrtc()
    if not found:
        pytest.fail("no NVRTC found: install the test extra (pip install -e '.[test]')")
    source = read_source("checks.cu", KERNELS)
    result = compile_source(
        found[0], source, "checks.cu", 80, name_expressions(source), ("--std=c++17",)
    )
    assert result.ok, result.log


def test_tensor_core_code_fails_to_compile_with_a_clear_message():
    source = (
        '#line 1 "mma.cu"\n'
        'extern "C" __global__ void k(float* x) {\n'
        "    using namespace nvcuda;\n"
        "    wmma::fragment<wmma::matrix_a, 16, 16, 16, float, wmma::row_major> a;\n"
        "}\n"
    )
    with pytest.raises(EmulatorCompileError, match="tensor-core wmma cannot run on the CPU"):
        EmulatedModule(source, name_expressions=["k"]).compile(sanitize=False)
