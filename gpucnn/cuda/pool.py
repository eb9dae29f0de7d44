"""Pooling on the CUDA path: sizes, checks, launches of ``cuda/pool2d.cu``.

Same functions and semantics as ``gpucnn.cpu.pool``; arguments arrive validated by
``gpucnn.ops.pool``. Arrays are CuPy arrays on a GPU or NumPy arrays on the emulator.
"""

from __future__ import annotations

import numpy as np

from .._shapes import Window
from ._launch import contiguous, empty, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "pool2d.cu"
THREADS = 256


def _run(name: str, like, total: int, args) -> None:
    launch(get_kernel(SOURCE, name, like), grid_stride_blocks(total, THREADS), THREADS, args)


def _geometry(window: Window):
    return (*window.size, *window.stride, *window.padding)


def max_pool2d_forward(x, window: Window):
    x = contiguous(x)
    n, c, height, width = x.shape
    out_h, out_w = window.output_shape(height, width)
    y = empty(x, (n, c, out_h, out_w), x.dtype)
    argmax = empty(x, y.shape, np.int32)
    _run(
        "maxpool2d_forward",
        x,
        y.size,
        (x, y, argmax, y.size, height, width, out_h, out_w, *_geometry(window)),
    )
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, window: Window | None):
    dy, argmax = contiguous(dy), contiguous(argmax)
    dx = empty(dy, x_shape, dy.dtype)
    height, width = x_shape[2:]
    out_h, out_w = dy.shape[2:]
    if window is None:
        planes = x_shape[0] * x_shape[1]
        _run(
            "maxpool2d_backward_planes",
            dy,
            planes,
            (dy, argmax, dx, planes, height * width, out_h * out_w),
        )
    else:
        _run(
            "maxpool2d_backward",
            dy,
            dx.size,
            (dy, argmax, dx, dx.size, height, width, out_h, out_w, *_geometry(window)),
        )
    return dx


def avg_pool2d_forward(x, window: Window, count_include_pad: bool):
    x = contiguous(x)
    n, c, height, width = x.shape
    out_h, out_w = window.output_shape(height, width)
    y = empty(x, (n, c, out_h, out_w), x.dtype)
    _run(
        "avgpool2d_forward",
        x,
        y.size,
        (x, y, y.size, height, width, out_h, out_w, *_geometry(window), int(count_include_pad)),
    )
    return y


def avg_pool2d_backward(dy, x_shape, window: Window, count_include_pad: bool):
    dy = contiguous(dy)
    dx = empty(dy, x_shape, dy.dtype)
    height, width = x_shape[2:]
    out_h, out_w = dy.shape[2:]
    _run(
        "avgpool2d_backward",
        dy,
        dx.size,
        (dy, dx, dx.size, height, width, out_h, out_w, *_geometry(window), int(count_include_pad)),
    )
    return dx


def l2_pool2d_forward(x, window: Window):
    x = contiguous(x)
    n, c, height, width = x.shape
    out_h, out_w = window.output_shape(height, width)
    y = empty(x, (n, c, out_h, out_w), x.dtype)
    _run(
        "l2pool2d_forward",
        x,
        y.size,
        (x, y, y.size, height, width, out_h, out_w, *_geometry(window)),
    )
    return y


def l2_pool2d_backward(dy, x, y, window: Window):
    dy, x, y = contiguous(dy), contiguous(x), contiguous(y)
    dx = empty(x, x.shape, x.dtype)
    height, width = x.shape[2:]
    out_h, out_w = dy.shape[2:]
    _run(
        "l2pool2d_backward",
        x,
        dx.size,
        (dy, x, y, dx, dx.size, height, width, out_h, out_w, *_geometry(window)),
    )
    return dx


def global_avg_pool2d_forward(x):
    x = contiguous(x)
    n, c, height, width = x.shape
    y = empty(x, (n, c), x.dtype)
    planes = n * c
    # one warp per plane: 8 planes per 256-thread block
    launch(
        get_kernel(SOURCE, "global_avgpool2d_forward", x),
        grid_stride_blocks(planes, THREADS // 32),
        THREADS,
        (x, y, planes, height * width),
    )
    return y


def global_avg_pool2d_backward(dy, x_shape):
    dy = contiguous(dy)
    dx = empty(dy, x_shape, dy.dtype)
    _run("global_avgpool2d_backward", dy, dx.size, (dy, dx, dx.size, x_shape[2] * x_shape[3]))
    return dx
