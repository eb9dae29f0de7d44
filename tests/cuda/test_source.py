"""Kernel sources: header inlining with #line, signature parsing, the kernel folder."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import gpucnn
from gpucnn.cuda import warmup
from gpucnn.cuda._source import (
    kernel_dir,
    kernel_files,
    name_expressions,
    parse_kernels,
    read_source,
    resolve_params,
)
from gpucnn.emulator import EmulatedModule, EmulatorCompileError


def test_headers_are_inlined_once_and_lines_point_at_the_real_files(tmp_path):
    (tmp_path / "helpers.cuh").write_text(
        "#pragma once\n__device__ int twice(int v) { return 2 * v; }\n"
    )
    (tmp_path / "k.cu").write_text(
        '#include "helpers.cuh"\n#include "helpers.cuh"\n'
        'extern "C" __global__ void k(int* y) { y[0] = twice(3); }\n'
    )
    source = read_source("k.cu", tmp_path)
    assert source.count("twice(int v)") == 1
    assert source.startswith('#line 1 "k.cu"\n#line 1 "helpers.cuh"\n')
    assert '#line 3 "k.cu"\nextern "C"' in source


def test_compile_errors_name_the_header_and_line(tmp_path):
    (tmp_path / "bad.cuh").write_text("#pragma once\nthis is not C++;\n")
    (tmp_path / "k.cu").write_text('#include "bad.cuh"\nextern "C" __global__ void k(int* y) {}\n')
    with pytest.raises(EmulatorCompileError, match="bad.cuh:2"):
        EmulatedModule(read_source("k.cu", tmp_path), name_expressions=["k"]).compile(False)


def test_signatures_and_name_expressions():
    source = """
    // __global__ void commented_out(int x)
    template <typename T>
    __global__ void __launch_bounds__(256) scale(const T* __restrict__ x, T* y, long long n,
                                                 T alpha) {}
    extern "C" __global__ void count(unsigned int* bins, const int* values, int n) {}
    extern "C" __global__ void no_arguments() {}
    extern "C" __global__ void no_arguments_either(void) {}
    """
    kernels = parse_kernels(source)
    assert set(kernels) == {"scale", "count", "no_arguments", "no_arguments_either"}
    assert kernels["no_arguments"].params == kernels["no_arguments_either"].params == ()
    assert name_expressions(source) == [
        "scale<float>",
        "scale<double>",
        "count",
        "no_arguments",
        "no_arguments_either",
    ]
    x, y, n, alpha = resolve_params(kernels["scale"], ("double",))
    assert (x.dtype, x.pointer, x.const) == (np.float64, True, True)
    assert (y.const, n.dtype, n.pointer, alpha.dtype) == (False, np.int64, False, np.float64)
    bins, values, count = resolve_params(kernels["count"], ())
    assert bins.dtype == np.uint32 and values.const and count.dtype == np.int32


@pytest.mark.parametrize(
    "source, words",
    [
        ("template <int N> __global__ void k(float* x) {}", "only `typename T`"),
        ('extern "C" __global__ void k(float** x) {}', "pointers to pointers"),
        ('extern "C" __global__ void k(half* x) {}', "not one of the supported"),
    ],
)
def test_unsupported_signatures_are_refused(source, words):
    with pytest.raises(ValueError, match=words):
        decl = next(iter(parse_kernels(source).values()))
        resolve_params(decl, ())


def test_the_checkout_kernel_folder():
    assert kernel_dir().name == "cuda" and "pool2d.cu" in kernel_files()


def test_warmup_builds_every_kernel_for_the_emulator(monkeypatch):
    compiled = warmup(on_gpu=False)
    assert "pool2d.cu:maxpool2d_forward<float>" in compiled
    assert all(":" in entry for entry in compiled)
    # By default, for the current device: the emulator's build, never the GPU's, off a GPU.
    gpucnn.set_device("emulator")
    try:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "cupy", None)  # importing it is an ImportError
            assert warmup() == compiled
    finally:
        gpucnn.set_device("cpu")
