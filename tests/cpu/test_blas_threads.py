"""The NumPy path's results do not depend on how many threads OpenBLAS runs: a call made
while another thread's chunked op holds BLAS at one thread gives the same bits as any other
(the standard: same inputs, same bits)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from gpucnn import ops
from tests.helpers import shuffled_linspace


def _calls():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 37, 5, 5)).astype(np.float32)
    images = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    features = shuffled_linspace((7, 400), np.float32)
    weights = shuffled_linspace((120, 400), np.float32, seed=1)
    dy = shuffled_linspace((7, 120), np.float32, seed=2)
    conv_dy = rng.standard_normal((4, 32, 12, 12)).astype(np.float32)
    return {
        "global average pooling": lambda: ops.global_avg_pool2d_forward(x),
        "dense": lambda: (
            ops.dense_forward(features, weights),
            *ops.dense_backward(dy, features, weights, with_bias=False)[:2],
        ),
        # one chunk: the convolution's GEMMs run in the calling thread, BLAS unrestrained
        "conv": lambda: (
            ops.conv2d_forward(images, w, padding=1),
            *ops.conv2d_backward(conv_dy, images, w, padding=1, with_bias=False)[:2],
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
