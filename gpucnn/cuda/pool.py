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
SEGMENT = 4  # inputs per thread in the max-pool backward gather (pool::kSegment)
# The max-pool backward with overlapping windows stages each plane of dy and argmax in
# shared memory when it fits in this much (the default without an opt-in): 6.1 KB for
# 28 x 28 float32 outputs.
SHARED_PLANE_BYTES = 48 * 1024


def _run(name: str, like, total: int, args) -> None:
    launch(get_kernel(SOURCE, name, like), grid_stride_blocks(total, THREADS), THREADS, args)


def _geometry(window: Window):
    return (*window.size, *window.stride, *window.padding)


def _tiles(window: Window, height: int, width: int) -> bool:
    """Whether the windows tile the image exactly (stride = window, no padding, nothing left
    over): the ``_tiled`` kernels then locate a window with one division."""
    return (
        window.stride == window.size
        and window.padding == (0, 0)
        and window.dilation == (1, 1)
        and height % window.size[0] == 0
        and width % window.size[1] == 0
    )


def _pairs(window: Window) -> bool:
    """Whether the windows are 3x3 at column stride 2 (the overlapping pooling of ResNet and
    AlexNet, any row stride and padding): the ``_pairs`` kernels then give each thread two
    neighbouring outputs of a row, which share a column of inputs."""
    return window.size == (3, 3) and window.stride[1] == 2 and window.dilation == (1, 1)


def _quads(window: Window) -> bool:
    """Whether the windows are 3x3 at stride 2 both ways (any padding): the max-pool
    backward's ``_quads`` kernel then gives each thread the four inputs around a window's
    centre."""
    return window.size == (3, 3) and window.stride == (2, 2) and window.dilation == (1, 1)


def _forward(name: str, x, window: Window, *extra, with_argmax: bool = False, twins=False):
    """Launch a forward kernel: one thread per output element, y (and argmax) allocated.
    With ``twins``, the kernel's ``_tiled`` twin where the windows tile the image, else its
    ``_pairs`` twin where they are 3x3 at column stride 2 (one thread per pair of outputs)."""
    x = contiguous(x)
    n, c, height, width = x.shape
    out_hw = window.output_shape(height, width)
    y = empty(x, (n, c, *out_hw), x.dtype)
    outputs = (y, empty(x, y.shape, np.int32)) if with_argmax else (y,)
    if twins and _tiles(window, height, width):
        _run(f"{name}_tiled", x, y.size, (x, *outputs, y.size, width, *out_hw, *window.size))
    elif twins and _pairs(window):
        pairs = n * c * out_hw[0] * -(-out_hw[1] // 2)
        geometry = (height, width, *out_hw, window.stride[0], *window.padding, *extra)
        _run(f"{name}_pairs", x, pairs, (x, *outputs, pairs, *geometry))
    else:
        geometry = (height, width, *out_hw, *_geometry(window), *extra)
        _run(name, x, y.size, (x, *outputs, y.size, *geometry))
    return outputs if with_argmax else y


def _backward(name: str, inputs, x_shape, out_hw, window: Window, *extra):
    """Launch a backward gather: one thread per input element, dx allocated."""
    inputs = tuple(contiguous(a) for a in inputs)
    dx = empty(inputs[0], x_shape, inputs[0].dtype)
    _run(
        name,
        inputs[0],
        dx.size,
        (*inputs, dx, dx.size, *x_shape[2:], *out_hw, *_geometry(window), *extra),
    )
    return dx


def _plane_threads(*work: int) -> int:
    """Threads for a block that owns a plane: enough for its largest loop (a warp at least,
    THREADS at most), so that small planes do not leave most of a block idle."""
    return min(THREADS, max(32, -(-max(work) // 32) * 32))


def max_pool2d_forward(x, window: Window):
    return _forward("maxpool2d_forward", x, window, with_argmax=True, twins=True)


def max_pool2d_backward(dy, argmax, x_shape, window: Window | None):
    dy, argmax = contiguous(dy), contiguous(argmax)
    dx = empty(dy, x_shape, dy.dtype)
    n, c, height, width = x_shape
    if window is not None and _tiles(window, height, width):
        # one thread per output writes its window: each input lies in exactly one
        _run(
            "maxpool2d_backward_tiled",
            dy,
            dy.size,
            (dy, argmax, dx, dy.size, width, *dy.shape[2:], *window.size),
        )
    elif window is not None and _quads(window):
        pad_h, pad_w = window.padding
        quads = n * c * ((height + 2 - pad_h) // 2) * ((width + 2 - pad_w) // 2)
        _run(
            "maxpool2d_backward_quads",
            dy,
            quads,
            (dy, argmax, dx, quads, height, width, *dy.shape[2:], pad_h, pad_w),
        )
    elif window is not None:
        # one thread per SEGMENT consecutive inputs of a row, reading dy and argmax from
        # shared memory where a plane of both fits
        per_plane = height * -(-width // SEGMENT)
        geometry = (height, width, *dy.shape[2:], *_geometry(window))
        outputs = dy.shape[2] * dy.shape[3]
        shared = outputs * (dy.itemsize + 4)
        if shared <= SHARED_PLANE_BYTES:
            launch(
                get_kernel(SOURCE, "maxpool2d_backward_shared", dy),
                grid_stride_blocks(n * c, 1),  # a block per plane, looping past the cap
                _plane_threads(per_plane, outputs),
                (dy, argmax, dx, n * c, *geometry),
                shared,
            )
        else:
            segments = n * c * per_plane
            _run("maxpool2d_backward", dy, segments, (dy, argmax, dx, segments, *geometry))
    else:
        planes = n * c
        _run(
            "maxpool2d_backward_planes",
            dy,
            planes,
            (dy, argmax, dx, planes, height * width, dy.shape[2] * dy.shape[3]),
        )
    return dx


def avg_pool2d_forward(x, window: Window, count_include_pad: bool):
    return _forward("avgpool2d_forward", x, window, int(count_include_pad), twins=True)


def avg_pool2d_backward(dy, x_shape, window: Window, count_include_pad: bool):
    return _backward(
        "avgpool2d_backward", (dy,), x_shape, dy.shape[2:], window, int(count_include_pad)
    )


def l2_pool2d_forward(x, window: Window):
    return _forward("l2pool2d_forward", x, window)


def l2_pool2d_backward(dy, x, y, window: Window):
    return _backward("l2pool2d_backward", (dy, x, y), x.shape, dy.shape[2:], window)


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
