"""2-D pooling: the public functions. They validate once, then hand off to the NumPy
implementation (``gpucnn.cpu.pool``) or the CUDA one (``gpucnn.cuda.pool``).

Layout NCHW. ``kernel_size``, ``stride`` and ``padding`` are ints or (vertical, horizontal)
pairs; ``stride=None`` means the kernel size; ``padding`` is at most half the kernel size and
counts as -inf for max pooling and as zeros for average and L2 pooling. With ``ceil_mode``
the output size rounds up, but a last window that would start inside the right padding is
dropped (PyTorch's rule).
"""

from __future__ import annotations

import numpy as np

from .._checks import (
    check_array,
    check_flag,
    check_float_array,
    check_same_kind,
    check_shape,
    check_shape4,
)
from .._device import array_device, uses_cuda_kernels
from .._shapes import Window, pool_window
from ._dispatch import backend


def _window_for(x_shape, kernel_size, stride, padding, ceil_mode) -> Window:
    window = pool_window(kernel_size, stride, padding, ceil_mode)
    for axis, name in ((0, "height"), (1, "width")):
        padded = x_shape[2 + axis] + 2 * window.padding[axis]
        if window.size[axis] > padded:
            raise ValueError(
                f"kernel_size {window.size[axis]} is larger than the padded input {name} "
                f"{padded} (input shape {tuple(x_shape)})"
            )
    return window


# argmax is int32 and holds h*W + w, so a plane may hold at most this many elements.
ARGMAX_PLANE_LIMIT = 2**31


def _check_argmax_plane(shape, name: str) -> None:
    plane = shape[2] * shape[3]
    if plane > ARGMAX_PLANE_LIMIT:
        raise ValueError(
            f"{name} {tuple(shape)} has planes of H*W = {plane} elements; max pooling's int32 "
            f"argmax indexes at most 2**31"
        )


def _validate_dy(dy, x_shape, window: Window | None, reference=None) -> None:
    check_float_array(dy, "dy", ndim=4)
    if reference is not None:
        check_same_kind(reference, "x", dy=dy)
    if tuple(dy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(
            f"dy has shape {tuple(dy.shape)} but x_shape {tuple(x_shape)} has another N or C"
        )
    if window is not None:
        expected = (*x_shape[:2], *window.output_shape(x_shape[2], x_shape[3]))
        check_shape(dy, "dy", expected)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling: returns (y, argmax), both (N, C, P, Q).

    argmax (int32) holds h*W + w of the chosen element inside its (n, c) plane, in unpadded
    coordinates (PyTorch's layout). Ties go to the first element in row-major window order;
    a window holding NaN outputs NaN and points at its first NaN; a window whose elements are
    all -inf points at its first in-bounds element.
    """
    check_float_array(x, "x", ndim=4)
    _check_argmax_plane(x.shape, "x")
    window = _window_for(x.shape, kernel_size, stride, padding, ceil_mode)
    return backend(x).pool.max_pool2d_forward(x, window)


def max_pool2d_backward(
    dy, argmax, x_shape, kernel_size=None, stride=None, padding=0, ceil_mode=False
):
    """Route each dy[n, c, p, q] to x[n, c] at argmax[n, c, p, q], summing where windows
    overlap; returns dx of shape ``x_shape``.

    The window arguments are optional: given (as the MaxPool2D layer does), they are checked
    against dy's shape and let the GPU gather each input's gradient from just the windows that
    hold it; without them the GPU walks each plane's outputs in order. Same result either way
    for the argmax that max_pool2d_forward gives with that window, whose every index points
    inside its own window. An index outside its window is routed to where it points by the
    NumPy path and by the GPU without the window, but dropped by the GPU with it (which never
    reads or writes out of bounds). Every index must lie in [0, H*W); the NumPy path checks.
    """
    x_shape = check_shape4(x_shape, "x_shape")
    _check_argmax_plane(x_shape, "x_shape")
    window = None
    if kernel_size is not None:
        window = _window_for(x_shape, kernel_size, stride, padding, ceil_mode)
    _validate_dy(dy, x_shape, window)
    if check_array(argmax, "argmax") != array_device(dy):
        raise TypeError("argmax and dy must be on the same device")
    if argmax.dtype != np.int32:
        raise TypeError(f"argmax must be int32, got {argmax.dtype}")
    check_shape(argmax, "argmax", dy.shape)
    plane = x_shape[2] * x_shape[3]
    # The NumPy path indexes with argmax, so it checks the range (one cheap pass). The kernels
    # never index with it (they compare against it), so a bad value cannot write out of
    # bounds there, and they skip the check: on a GPU it would cost a host sync, and inside a
    # CUDA graph's capture (gpucnn.cuda.graph) argmax holds no values yet.
    if (
        not uses_cuda_kernels(argmax)
        and argmax.size
        and (argmax.min() < 0 or argmax.max() >= plane)
    ):
        raise ValueError(f"argmax holds values outside [0, H*W) = [0, {plane})")
    return backend(dy).pool.max_pool2d_backward(dy, argmax, x_shape, window)


def avg_pool2d_forward(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
):
    """Average pooling: y (N, C, P, Q). With count_include_pad (the default) the padding
    counts in the divisor; the ceil_mode overhang past the padding never does."""
    check_float_array(x, "x", ndim=4)
    window = _window_for(x.shape, kernel_size, stride, padding, ceil_mode)
    count_include_pad = check_flag(count_include_pad, "count_include_pad")
    return backend(x).pool.avg_pool2d_forward(x, window, count_include_pad)


def avg_pool2d_backward(
    dy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
):
    """Gradient of ``avg_pool2d_forward`` with respect to x; returns dx of shape x_shape."""
    x_shape = check_shape4(x_shape, "x_shape")
    window = _window_for(x_shape, kernel_size, stride, padding, ceil_mode)
    _validate_dy(dy, x_shape, window)
    count_include_pad = check_flag(count_include_pad, "count_include_pad")
    return backend(dy).pool.avg_pool2d_backward(dy, x_shape, window, count_include_pad)


def l2_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """L2 pooling: y = sqrt(sum of x^2 over the window); padding contributes zeros, and so
    does the part of a ceil_mode window past the input: y is the L2 norm of what the window
    covers. (PyTorch's lp_pool2d, built from avg_pool2d, scales such a window's sum by the
    kernel's area over the elements it covers, so the two differ there and only there.)"""
    check_float_array(x, "x", ndim=4)
    window = _window_for(x.shape, kernel_size, stride, padding, ceil_mode)
    return backend(x).pool.l2_pool2d_forward(x, window)


def l2_pool2d_backward(dy, x, y, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Gradient of ``l2_pool2d_forward``: dx = sum over windows of dy * x / y, where a window
    with y = 0 (all zeros) passes no gradient instead of NaN."""
    check_float_array(x, "x", ndim=4)
    window = _window_for(x.shape, kernel_size, stride, padding, ceil_mode)
    _validate_dy(dy, x.shape, window, reference=x)
    check_same_kind(x, "x", y=y)
    check_shape(y, "y", dy.shape)
    return backend(x).pool.l2_pool2d_backward(dy, x, y, window)


def global_avg_pool2d_forward(x):
    """Mean of each (n, c) plane: (N, C, H, W) -> (N, C)."""
    check_float_array(x, "x", ndim=4)
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"x must have non-empty planes, got shape {tuple(x.shape)}")
    return backend(x).pool.global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(dy, x_shape):
    """Gradient of ``global_avg_pool2d_forward``: dy (N, C) spread evenly over each plane."""
    x_shape = check_shape4(x_shape, "x_shape")
    check_float_array(dy, "dy", ndim=2)
    check_shape(dy, "dy", x_shape[:2])
    if x_shape[2] * x_shape[3] == 0:
        raise ValueError(f"x_shape must have non-empty planes, got {x_shape}")
    return backend(dy).pool.global_avg_pool2d_backward(dy, x_shape)
