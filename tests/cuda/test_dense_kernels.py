"""cuda/dense.cu against the NumPy path: forward, backward-data and backward-filter, on the
emulator (sanitized, outputs poisoned, tiny grids) and on a GPU, where the kernels are forced
(GPUCNN_DENSE_ALGORITHM=gemm: a GPU's eager path would take cuBLAS)."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn import ops
from gpucnn.cuda.dense import ALGORITHM_VARIABLE, dense_algorithm

from ..helpers import record_launches, rel_error

# (N, in, out), each crossing an edge: odd sizes (scalar loads), multiples of 4 (vector
# loads), the 32-row tile (M <= 64) and the 128-row one, a single row or column, reductions
# long enough to be split over blocks and summed (with the bias) by dense_sum_splits, and
# outputs larger than the emulator's three-block grid so its grid-stride loop wraps.
SHAPES = [
    (5, 7, 3),
    (1, 5, 1),
    (130, 33, 70),
    (8, 400, 120),
    (40, 1000, 50),
    (256, 84, 10),
    (3, 1001, 9),
]
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def kernels(backend, monkeypatch):
    monkeypatch.setenv(ALGORITHM_VARIABLE, "gemm")
    return backend


def _inputs(n, features, outputs, dtype):
    rng = np.random.default_rng(n * 1000 + features)
    return (
        rng.standard_normal((n, features)).astype(dtype),
        rng.standard_normal((outputs, features)).astype(dtype),
        rng.standard_normal(outputs).astype(dtype),
        rng.standard_normal((n, outputs)).astype(dtype),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_numpy(kernels, shape, dtype, with_bias):
    x, w, b, dy = _inputs(*shape, dtype)
    b = b if with_bias else None

    def on_device(x, w, b, dy):
        y = ops.dense_forward(x, w, b)
        return (y, *ops.dense_backward(dy, x, w, with_bias=with_bias))

    got = kernels.run(on_device, x, w, b, dy)
    wide = [a.astype(np.float64) for a in (x, w, dy)]
    x64, w64, dy64 = wide
    expected = (
        x64 @ w64.T + (0 if b is None else b.astype(np.float64)),
        dy64 @ w64,
        dy64.T @ x64,
        dy64.sum(axis=0) if with_bias else None,
    )
    for name, value, reference in zip(("y", "dx", "dw", "db"), got, expected, strict=True):
        if reference is None:
            assert value is None
            continue
        assert value.dtype == dtype and value.shape == reference.shape, name
        assert rel_error(value, reference) < TOLERANCE[dtype], name


@pytest.mark.parametrize("shape", [(40, 1000, 50), (130, 33, 70)], ids=str)
def test_same_bits_every_run(kernels, shape):
    # (40, 1000, 50): the forward's and backward-filter's reductions are split over blocks
    x, w, b, dy = _inputs(*shape, np.float32)

    def on_device(x, w, b, dy):
        return (ops.dense_forward(x, w, b), *ops.dense_backward(dy, x, w))

    first = kernels.run(on_device, x, w, b, dy)
    second = kernels.run(on_device, x, w, b, dy)
    for a, c in zip(first, second, strict=True):
        assert np.array_equal(a, c)


def test_no_input_gradient_when_not_needed(kernels):
    x, w, _, dy = _inputs(6, 9, 4, np.float32)
    dx, dw, db = kernels.run(
        lambda dy, x, w: ops.dense_backward(dy, x, w, need_input_grad=False), dy, x, w
    )
    assert dx is None
    assert rel_error(dw, dy.astype(np.float64).T @ x) < 1e-5
    assert rel_error(db, dy.astype(np.float64).sum(axis=0)) < 1e-5


@pytest.mark.parametrize("shape", [(3, 0, 2), (0, 4, 2), (2, 4, 0)], ids=str)
def test_empty_sizes(kernels, shape):
    # no features: y is the bias and dw empty; no rows or no outputs: empty results
    n, features, outputs = shape
    x, w = np.ones((n, features), np.float32), np.ones((outputs, features), np.float32)
    b, dy = np.full(outputs, 2, np.float32), np.ones((n, outputs), np.float32)

    def on_device(x, w, b, dy):
        return (ops.dense_forward(x, w, b), *ops.dense_backward(dy, x, w))

    y, dx, dw, db = kernels.run(on_device, x, w, b, dy)
    assert np.array_equal(y, np.full((n, outputs), 2, np.float32))
    assert dx.shape == x.shape and dw.shape == w.shape and np.array_equal(db, np.full(outputs, n))


@pytest.mark.parametrize("backend", ["emulator"], indirect=True)
def test_auto_gives_only_cupy_arrays_to_cublas(backend, monkeypatch):
    # "auto" (the default) sends a GPU's eager products to cuBLAS; the emulator's NumPy
    # arrays must still run the kernels, or its tests would test NumPy's matmul.
    import gpucnn.cuda.dense as cuda_dense

    monkeypatch.delenv(ALGORITHM_VARIABLE, raising=False)
    launched = record_launches(monkeypatch, cuda_dense)
    x, w, b, dy = _inputs(5, 7, 3, np.float32)
    backend.run(
        lambda *a: (ops.dense_forward(*a[:3]), ops.dense_backward(a[3], *a[:2])), x, w, b, dy
    )
    assert launched and all(name.startswith("dense_") for name in launched)


def test_unknown_algorithm_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(ALGORITHM_VARIABLE, "cudnn")
    with pytest.raises(ValueError, match=ALGORITHM_VARIABLE):
        dense_algorithm()


@pytest.mark.gpu
def test_realistic_sizes_on_the_gpu_and_bitwise_reruns(gpu_backend, monkeypatch):
    # LeNet's and the CIFAR CNN's dense layers at their benchmark batches, and a wide one
    monkeypatch.setenv(ALGORITHM_VARIABLE, "gemm")
    for shape in [(256, 400, 120), (128, 4096, 256), (1024, 2048, 1000)]:
        x, w, b, dy = _inputs(*shape, np.float32)

        def on_device(x, w, b, dy):
            return (ops.dense_forward(x, w, b), *ops.dense_backward(dy, x, w))

        got = gpu_backend.run(on_device, x, w, b, dy)
        x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
        expected = (x64 @ w64.T + b, dy64 @ w64, dy64.T @ x64, dy64.sum(axis=0))
        for name, value, reference in zip(("y", "dx", "dw", "db"), got, expected, strict=True):
            assert rel_error(value, reference) < 1e-5, (shape, name)
        again = gpu_backend.run(on_device, x, w, b, dy)
        assert all(np.array_equal(a, c) for a, c in zip(got, again, strict=True)), shape
