"""2-D convolution in NumPy: the reference the CUDA kernels are judged against.

x (N, C, H, W), w (K, C, R, S), y (N, K, P, Q). Cross-correlation, as in every framework:
y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xpad[n, c, p*sh + r*dh, q*sw + s*dw].

im2col is a strided view of the padded input; one copy turns it into the (C*R*S, P*Q) matrix
per image and one batched matmul does the rest. The batch is processed in chunks whose
im2col matrix fits in cache (measured on LeNet/CIFAR layers: chunks of ~4 MB are 1.7x faster
than one batch-sized matrix). Arguments arrive validated (gpucnn.ops.conv).
"""

from __future__ import annotations

import numpy as np

from .._shapes import Window
from ._windows import add_windows, crop, pad, window_view

_CHUNK_BYTES = 4 << 20


def _chunks(n: int, bytes_per_image: int):
    step = max(1, _CHUNK_BYTES // max(1, bytes_per_image))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _im2col(padded: np.ndarray, window: Window, out_hw: tuple[int, int]) -> np.ndarray:
    """(N, C*R*S, P*Q) matrix of the windows of an already padded input (a copy)."""
    n, c = padded.shape[:2]
    r, s = window.size
    return window_view(padded, window, out_hw).reshape(n, c * r * s, out_hw[0] * out_hw[1])


def conv2d_forward(x, w, b, window: Window):
    n, c, height, width = x.shape
    k = w.shape[0]
    out_h, out_w = window.output_shape(height, width)
    padded = pad(x, window, 0.0)
    w_mat = w.reshape(k, -1)
    y = np.empty((n, k, out_h * out_w), dtype=x.dtype)
    for part in _chunks(n, w_mat.shape[1] * out_h * out_w * x.itemsize):
        np.matmul(w_mat, _im2col(padded[part], window, (out_h, out_w)), out=y[part])
    if b is not None:
        y += b[:, None]
    return y.reshape(n, k, out_h, out_w)


def conv2d_backward(dy, x, w, window: Window, with_bias: bool, need_dx: bool, need_dw: bool):
    height, width = x.shape[2:]
    dx = _backward_data(dy, w, window, (height, width)) if need_dx else None
    dw = _backward_filter(dy, x, w, window) if need_dw else None
    db = dy.sum(axis=(0, 2, 3)) if with_bias else None
    return dx, dw, db


def _backward_filter(dy, x, w, window: Window):
    """dw[k, crs] = sum over images of dy_n (K, PQ) @ cols_n^T (PQ, CRS), image by image in
    order: one small GEMM each, no transposed copy of the im2col matrix."""
    n, c = x.shape[:2]
    k, _, r, s = w.shape
    out_h, out_w = dy.shape[2:]
    dy_mat = dy.reshape(n, k, out_h * out_w)
    padded = pad(x, window, 0.0)
    dw = np.zeros((k, c * r * s), dtype=x.dtype)
    for part in _chunks(n, c * r * s * out_h * out_w * x.itemsize):
        cols = _im2col(padded[part], window, (out_h, out_w))
        dw += np.matmul(dy_mat[part], cols.transpose(0, 2, 1)).sum(axis=0)
    return dw.reshape(w.shape)


def _backward_data(dy, w, window: Window, hw: tuple[int, int]):
    """dx: with stride 1 and K*H*W at most 4 C*P*Q, a forward convolution of dy with the
    flipped, transposed kernel; otherwise col2im (w^T dy, then R*S strided adds).

    Measured (2 cores): with K = C the transposed convolution is 2.4-4x faster (CIFAR 16->16:
    17 against 68 ms); when its im2col matrix is 5x col2im's (LeNet conv2, 6->16 5x5) col2im is
    25% faster (13.6 against 18.5 ms). A stride > 1 also shrinks col2im's matrix."""
    n, k, out_h, out_w = dy.shape
    _, c, r, s = w.shape
    height, width = hw
    if window.stride == (1, 1) and k * height * width <= 4 * c * out_h * out_w:
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        # dy needs d(R-1) - p zeros around it (or that much cropped, for a larger padding).
        edges = [window.dilation[a] * (window.size[a] - 1) - window.padding[a] for a in (0, 1)]
        cropped = dy[
            :,
            :,
            max(0, -edges[0]) : out_h - max(0, -edges[0]),
            max(0, -edges[1]) : out_w - max(0, -edges[1]),
        ]
        transposed = Window(
            size=(r, s),
            stride=(1, 1),
            padding=(max(0, edges[0]), max(0, edges[1])),
            dilation=window.dilation,
        )
        return conv2d_forward(np.ascontiguousarray(cropped), flipped, None, transposed)
    dcols = np.matmul(w.reshape(k, -1).T, dy.reshape(n, k, out_h * out_w))  # (N, CRS, PQ)
    dx_padded = np.zeros(
        (n, c, height + 2 * window.padding[0], width + 2 * window.padding[1]), dtype=dy.dtype
    )
    add_windows(dx_padded, dcols.reshape(n, c, r, s, out_h, out_w), window)
    return crop(dx_padded, window, height, width)
