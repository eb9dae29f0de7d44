"""2-D convolution in NumPy: the reference the CUDA kernels are judged against.

x (N, C, H, W), w (K, C, R, S), y (N, K, P, Q). Cross-correlation, as in every framework:
y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xpad[n, c, p*sh + r*dh, q*sw + s*dw].

im2col is a strided view of the padded input; one copy turns it into the (C*R*S, P*Q) matrix
per image and one batched matmul does the rest. Arguments arrive validated (gpucnn.ops.conv).
"""

from __future__ import annotations

import numpy as np

from .._shapes import Window
from ._windows import add_windows, crop, pad, window_view


def _im2col(x: np.ndarray, window: Window, out_hw: tuple[int, int]) -> np.ndarray:
    """(N, C*R*S, P*Q) matrix of the input windows (a copy: matmul needs it contiguous)."""
    n, c = x.shape[:2]
    r, s = window.size
    view = window_view(pad(x, window, 0.0), window, out_hw)
    return view.reshape(n, c * r * s, out_hw[0] * out_hw[1])


def conv2d_forward(x, w, b, window: Window):
    n, _, height, width = x.shape
    k = w.shape[0]
    out_h, out_w = window.output_shape(height, width)
    cols = _im2col(x, window, (out_h, out_w))
    y = np.matmul(w.reshape(k, -1), cols)  # (K, CRS) @ (N, CRS, PQ) -> (N, K, PQ)
    if b is not None:
        y += b[:, None]
    return y.reshape(n, k, out_h, out_w)


def conv2d_backward(dy, x, w, window: Window, with_bias: bool):
    n, c, height, width = x.shape
    k, _, r, s = w.shape
    out_h, out_w = dy.shape[2:]
    dy_mat = dy.reshape(n, k, out_h * out_w)
    cols = _im2col(x, window, (out_h, out_w))

    # dw[k, crs] = sum over n and pq of dy[n, k, pq] * cols[n, crs, pq]: one GEMM.
    dw = np.tensordot(dy_mat, cols, axes=([0, 2], [0, 2])).reshape(w.shape)

    # dx: each window's gradient (w^T dy) added back where the window read from (col2im).
    dcols = np.matmul(w.reshape(k, -1).T, dy_mat)  # (N, CRS, PQ)
    padded_h = height + 2 * window.padding[0]
    padded_w = width + 2 * window.padding[1]
    dx_padded = np.zeros((n, c, padded_h, padded_w), dtype=x.dtype)
    add_windows(dx_padded, dcols.reshape(n, c, r, s, out_h, out_w), window)
    dx = crop(dx_padded, window, height, width)

    db = dy.sum(axis=(0, 2, 3)) if with_bias else None
    return dx, dw, db
