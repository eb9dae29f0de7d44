"""The NumPy path's results do not depend on how many threads OpenBLAS runs: a call made
while another thread's chunked op holds BLAS at one thread gives the same bits as any other
(the standard: same inputs, same bits)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from gpucnn import ops
from gpucnn.cpu._parallel import blas_threads_controlled
from tests.helpers import numpy_blas, shuffled_linspace


def _calls():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 37, 5, 5)).astype(np.float32)
    images = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    features = shuffled_linspace((7, 400), np.float32)
    weights = shuffled_linspace((120, 400), np.float32, seed=1)
    dy = shuffled_linspace((7, 120), np.float32, seed=2)
    conv_dy = rng.standard_normal((4, 32, 12, 12)).astype(np.float32)
    cifar_x, cifar_dy = rng.standard_normal((2, 8, 64, 8, 8)).astype(np.float32)
    cifar_w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    return {
        "global average pooling": lambda: ops.global_avg_pool2d_forward(x),
        "dense": lambda: (
            ops.dense_forward(features, weights),
            *ops.dense_backward(dy, features, weights, with_bias=False)[:2],
        ),
        # one chunk: the convolution's GEMMs run in the calling thread
        "conv": lambda: (
            ops.conv2d_forward(images, w, padding=1),
            *ops.conv2d_backward(conv_dy, images, w, padding=1, with_bias=False)[:2],
        ),
        # CIFAR's 64 channels at 8x8, 8 images, one chunk: its contiguous 64x576 by 576x16
        # blocks are products OpenBLAS runs by another path, with other bits, on 2 threads
        "conv 64@8": lambda: (
            ops.conv2d_forward(cifar_x, cifar_w, padding=1),
            *ops.conv2d_backward(cifar_dy, cifar_x, cifar_w, padding=1, with_bias=False)[:2],
        ),
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_same_bits_with_one_to_four_blas_threads(name):
    call = _calls()[name]
    results = []
    for threads in (1, 2, 3, 4):
        with threadpool_limits(threads, user_api="blas"):
            out = call()
        results.append(out if isinstance(out, tuple) else (out,))
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other, strict=True))


class _BlasThreadSpy(np.ndarray):
    """An array that records how many threads BLAS may use at each product it is part of."""

    seen: list[int] = []

    def __matmul__(self, other):
        _BlasThreadSpy.seen.append(_blas_threads())
        return np.ndarray.__matmul__(self, other)


def _blas_threads() -> int:
    return max(info["num_threads"] for info in numpy_blas())


@pytest.mark.skipif(not blas_threads_controlled(), reason="threadpoolctl finds no BLAS here")
def test_dense_products_never_wake_blas_threads():
    # A threaded OpenBLAS call leaves its threads spinning for ~0.1 s, on the cores the
    # convolution's workers need next (gpucnn/cpu/dense.py): the CIFAR step 1.6x slower.
    x, w, dy = (shuffled_linspace(shape, np.float32) for shape in ((7, 40), (12, 40), (7, 12)))
    spy = [a.view(_BlasThreadSpy) for a in (x, w, dy)]
    _BlasThreadSpy.seen = []
    with threadpool_limits(2, user_api="blas"):
        assert _blas_threads() == 2  # the user's setting, restored after each product
        ops.dense_forward(spy[0], spy[1])
        ops.dense_backward(spy[2], spy[0], spy[1], with_bias=False)
        assert _blas_threads() == 2
    assert _BlasThreadSpy.seen == [1, 1, 1]
