"""Every kernel in cuda/ compiles with NVRTC (what CuPy uses at run time) for sm_70, sm_80
and sm_90, every template instantiation, without errors or warnings; no GPU needed."""

from __future__ import annotations

import functools

import pytest

from gpucnn.cuda._loader import NVRTC_OPTIONS
from gpucnn.cuda._source import kernel_files, kernel_source, name_expressions, parse_kernels
from gpucnn.cuda.nvrtc import compile_source, find_nvrtc

REQUIRED_ARCHS = (70, 80, 90)

NVRTCS = find_nvrtc()


def test_nvrtc_covers_every_required_architecture():
    assert NVRTCS, "no NVRTC found: install the test extra (pip install -e '.[test]')"
    covered = {arch for nvrtc in NVRTCS for arch in REQUIRED_ARCHS if nvrtc.supports(arch)}
    assert covered == set(REQUIRED_ARCHS), (
        f"NVRTC {[n.version for n in NVRTCS]} cannot build {set(REQUIRED_ARCHS) - covered}: "
        "sm_70 needs CUDA 12's NVRTC (nvidia-cuda-nvrtc-cu12)"
    )


def test_what_gpucnn_nvrtc_names_that_is_not_nvrtc_is_passed_over(monkeypatch, tmp_path):
    # NVRTC's -builtins library loads but has no nvrtcVersion, and a plain C library neither.
    import ctypes.util
    import glob
    import os

    builtins = glob.glob(os.path.join(os.path.dirname(NVRTCS[0].path), "libnvrtc-builtins*"))
    assert builtins, "the NVRTC wheel's -builtins library is where it used to be"
    not_nvrtc = [*builtins, ctypes.util.find_library("m"), str(tmp_path / "missing.so")]
    monkeypatch.setenv("GPUCNN_NVRTC", os.pathsep.join(not_nvrtc))
    assert find_nvrtc() == NVRTCS


def test_each_nvrtc_builds_what_its_cuda_supports():
    # CUDA 13 dropped every architecture before Turing (sm_75); CUDA 12 builds Maxwell
    # (sm_50) on. Which NVRTC builds which sm_ in the tests below follows from this.
    from gpucnn.cuda.nvrtc import Nvrtc

    cuda13, cuda12 = Nvrtc("libnvrtc.so.13", (13, 0)), Nvrtc("libnvrtc.so.12", (12, 9))
    assert [a for a in (70, 72, 75, 80, 90, 100) if cuda13.supports(a)] == [75, 80, 90, 100]
    assert [a for a in (35, 37, 50, 52, 70, 90) if cuda12.supports(a)] == [50, 52, 70, 90]


# CUDA 13 dropped sm_70: each NVRTC builds the architectures it supports.
TARGETS = [
    pytest.param(nvrtc, arch, id=f"nvrtc{nvrtc.version[0]}.{nvrtc.version[1]}-sm_{arch}")
    for nvrtc in NVRTCS
    for arch in (70, 75, 80, 90)
    if nvrtc.supports(arch)
]


@pytest.mark.parametrize("filename", kernel_files())
@pytest.mark.parametrize("nvrtc, arch", TARGETS)
def test_kernels_compile_cleanly(filename, nvrtc, arch):
    source = kernel_source(filename)
    expressions = name_expressions(source)
    assert expressions, f"{filename} declares no kernels"
    result = compile_source(nvrtc, source, filename, arch, expressions, NVRTC_OPTIONS, cubin=True)
    assert result.ok, result.log
    assert not result.warnings, result.log
    assert set(result.lowered_names) == set(expressions)


@pytest.mark.parametrize("filename", kernel_files())
def test_kernel_signatures_follow_the_conventions(filename):
    """Every parameter of every instantiation maps to a NumPy type (see _source.py)."""
    from gpucnn.cuda._source import resolve_params, split_name_expression

    decls = parse_kernels(kernel_source(filename))
    for expression in name_expressions(kernel_source(filename)):
        name, args = split_name_expression(expression)
        params = resolve_params(decls[name], args)
        assert params, expression


# The convolution GEMM tiles: ptxas holds the float ones to 128 (narrow: 64) registers, two
# blocks per SM, at the price of some spill, which varies with the NVRTC version (sm_90
# backward-data: 12 bytes with 13.5, 76 with the 13.0 of CuPy's wheel on the H100 machine).
# Measured on an H100 (benchmarks/NOTES.md): lifting the cap (__launch_bounds__(256, 1): ~155
# registers, no spill, one block per SM) made them 5-20% slower. A larger spill, or one
# anywhere else, is a regression.
SMALL_SPILL_ALLOWED = ("conv2d.cu:conv2d_forward", "conv2d.cu:conv2d_backward_")
SMALL_SPILL_BYTES = 128


@functools.cache
def _sm90_resources() -> dict:
    from benchmarks.kernel_resources import collect

    return collect([90])


def test_ptxas_reports_every_kernel_without_spills():
    report = _sm90_resources()
    expected = {f"{f}:{e}" for f in kernel_files() for e in name_expressions(kernel_source(f))}
    assert set(report["kernels"]) == expected
    for kernel, per_arch in report["kernels"].items():
        resources = per_arch["sm_90"]
        assert resources["registers"] > 0, kernel
        allowed = SMALL_SPILL_BYTES if kernel.startswith(SMALL_SPILL_ALLOWED) else 0
        spill = max(resources["spill_store_bytes"], resources["spill_load_bytes"])
        assert spill <= allowed, (kernel, resources)


@pytest.mark.parametrize("kernel", ["maxpool2d_forward_pairs", "avgpool2d_forward_tiled"])
def test_memory_bound_pool_forwards_fill_an_sm90_with_warps(kernel):
    # Their launch bounds ask for 8 blocks of 256 threads an SM on sm_90 (float): 32
    # registers, which took the paired max forward from 83% to 97% of copy bandwidth on an
    # H100 (cuda/pool2d.cu).
    resources = _sm90_resources()["kernels"][f"pool2d.cu:{kernel}<float>"]["sm_90"]
    assert resources["registers"] <= 32, resources


def test_the_skinny_hopfield_product_fits_two_blocks_an_sm90():
    # Its launch bounds ask for two blocks of 256 threads an SM for float (cuda/hopfield.cu's
    # SkinnyBounds): 128 registers at most. Unbounded, ptxas took 168: one block of 8 warps an
    # SM, too few loads of W in flight for a product bound by reading W.
    resources = _sm90_resources()["kernels"]["hopfield.cu:hopfield_product_skinny<float>"]
    assert resources["sm_90"]["registers"] <= 128, resources
