"""The dense layer on the CUDA path: cuBLAS for eager GPU work, ``cuda/dense.cu`` elsewhere.

Same functions and semantics as ``gpucnn.cpu.dense``; arguments arrive validated by
``gpucnn.ops.dense``. On a GPU the products go to cuBLAS (``cupy.matmul``), which is what
it is best at, except while a stream captures a CUDA graph (``gpucnn.cuda.graph``): CuPy
refuses cuBLAS calls there, so the captured step runs our GEMM tile instead. The emulator
always runs the kernels (it has no cuBLAS). ``GPUCNN_DENSE_ALGORITHM=gemm`` takes the
kernels on a GPU too (the GPU tests check them that way); the default is ``auto``.
"""

from __future__ import annotations

import os

from .._device import is_cupy_array
from ._gemm import NARROW_ROWS, THREADS, WIDE_ROWS, grid, split_reduction
from ._launch import contiguous, empty, grid_stride_blocks, launch
from ._loader import get_kernel
from .conv import backward_bias
from .graph import capturing

SOURCE = "dense.cu"
ALGORITHM_VARIABLE = "GPUCNN_DENSE_ALGORITHM"
ALGORITHMS = ("auto", "gemm")
NARROW_UP_TO = 64  # rows of C (M) up to which the 32-row tile serves, as for convolutions


def dense_algorithm() -> str:
    """``GPUCNN_DENSE_ALGORITHM``: "auto" (the default) or "gemm"."""
    value = os.environ.get(ALGORITHM_VARIABLE, "auto").strip().lower() or "auto"
    if value not in ALGORITHMS:
        raise ValueError(f"{ALGORITHM_VARIABLE} must be one of {ALGORITHMS}, got {value!r}")
    return value


def _cublas(like) -> bool:
    """Whether this product goes to cuBLAS: on a GPU, outside a capture, unless told not to."""
    return dense_algorithm() == "auto" and is_cupy_array(like) and not capturing()


def _gemm(a, b, out_shape, reduction, strides, bias=None):
    """C (M x COLS) = A B over ``reduction`` indices through the tile (see cuda/dense.cu):
    ``strides`` are A's (row, reduction) and B's (reduction, column) element strides;
    returns a new C."""
    m, cols = out_shape
    if m > 2**31 - 1:
        raise ValueError(f"a dense product of {m} rows is too large: rows must stay below 2^31")
    out = empty(a, out_shape, a.dtype)
    if m == 0 or cols == 0:
        return out  # (a reduction over nothing still writes C: zeros, or the bias)
    tile_rows = NARROW_ROWS if m <= NARROW_UP_TO else WIDE_ROWS
    name = "dense_gemm_narrow" if m <= NARROW_UP_TO else "dense_gemm"
    column_tiles, row_tiles, _ = grid(cols, m, tile_rows)
    splits, chunk = split_reduction(reduction, column_tiles * row_tiles)
    partial = out if splits == 1 else empty(a, (splits, m, cols), a.dtype)
    launch(
        get_kernel(SOURCE, name, a),
        grid(cols, m, tile_rows, splits),
        THREADS,
        (a, b, bias if splits == 1 else None, partial, m, cols, reduction, *strides, chunk),
    )
    if splits > 1:
        launch(
            get_kernel(SOURCE, "dense_sum_splits", a),
            grid_stride_blocks(m * cols, THREADS),
            THREADS,
            (partial, bias, out, splits, m * cols, cols),
        )
    return out


def dense_forward(x, w, b):
    if _cublas(x):
        y = x @ w.T
        if b is not None:
            y += b
        return y
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    n, features = x.shape
    outputs = w.shape[0]
    # y[n, o] = sum_i x[n, i] w[o, i]: A = x (rows of I), B[i, o] = w[o, i]
    return _gemm(x, w, (n, outputs), features, (features, 1, 1, features), b)


def dense_backward(dy, x, w, with_bias: bool, need_dx: bool):
    if _cublas(x):
        db = dy.sum(axis=0) if with_bias else None
        return dy @ w if need_dx else None, dy.T @ x, db
    dy, x, w = contiguous(dy), contiguous(x), contiguous(w)
    n, features = x.shape
    outputs = w.shape[0]
    dx = None
    if need_dx:  # dx[n, i] = sum_o dy[n, o] w[o, i]: A = dy, B = w
        dx = _gemm(dy, w, (n, features), outputs, (outputs, 1, features, 1))
    # dw[o, i] = sum_n dy[n, o] x[n, i]: A[o, n] = dy[n, o], B = x
    dw = _gemm(dy, x, (outputs, features), n, (1, outputs, features, 1))
    db = backward_bias(dy.reshape(n, outputs, 1, 1)) if with_bias else None
    return dx, dw, db
