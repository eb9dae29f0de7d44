"""Activations and dropout: NumPy (``gpucnn.cpu.activation``) or one kernel each
(``gpucnn.cuda.activation``: on a GPU, one launch where CuPy array code takes two to sixteen).
"""

from __future__ import annotations

import numbers

import numpy as np

from .._checks import check_float_array, check_probability, check_same_kind, check_shape
from .._device import array_device, array_module
from ._dispatch import backend


def relu_forward(x):
    """max(x, 0), NaN kept."""
    check_float_array(x, "x")
    return backend(x).activation.relu_forward(x)


def relu_backward(dy, x):
    """dy where x > 0, else 0 (the subgradient at 0 is taken as 0)."""
    _check_pair(dy, x, "x")
    return backend(x).activation.relu_backward(dy, x)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), evaluated without overflow for large |x|."""
    check_float_array(x, "x")
    return backend(x).activation.sigmoid_forward(x)


def sigmoid_backward(dy, y):
    """Gradient through the sigmoid given its output y: dy * y * (1 - y)."""
    _check_pair(dy, y, "y")
    return backend(y).activation.sigmoid_backward(dy, y)


def tanh_forward(x):
    check_float_array(x, "x")
    return backend(x).activation.tanh_forward(x)


def tanh_backward(dy, y):
    """Gradient through tanh given its output y: dy * (1 - y^2)."""
    _check_pair(dy, y, "y")
    return backend(y).activation.tanh_backward(dy, y)


# ----------------------------------------------------------------------------- dropout


def dropout_forward(x, p, seed: int, step):
    """Inverted dropout: zero each element with probability p and scale the rest by
    1 / (1 - p). Returns (y, mask), mask holding 0 or 1 / (1 - p) in x's dtype.

    The mask is a pure function of (seed, step, element index) (``gpucnn._random``), so a step
    is reproducible and NumPy and the kernel draw the very same mask. ``step`` is an integer,
    or a step counter: a uint64 array ``[step, 0]`` on x's device, whose step the op advances
    by one (on the device, with no host sync: so a CUDA graph's replays draw a new mask each
    time; the Dropout layer keeps one)."""
    check_float_array(x, "x")
    p = check_probability(p, "p")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if isinstance(step, numbers.Integral) and not isinstance(step, bool):
        counter = array_module(x).array([int(step) % 2**64, 0], np.uint64)
    else:
        counter = step
        try:
            same_device = array_device(counter) == array_device(x)
        except TypeError:
            raise TypeError(
                f"step must be an integer or a step counter array, got {type(step).__name__}"
            ) from None
        if not same_device:
            raise TypeError("step's counter must be on x's device (gpucnn.to_device)")
        if counter.dtype != np.uint64 or counter.shape != (2,) or not counter.flags.c_contiguous:
            raise ValueError(
                "step must be an integer or a step counter (a C-contiguous uint64 array of "
                f"shape (2,)), got a {counter.dtype} array of shape {counter.shape}"
            )
    return backend(x).activation.dropout_forward(x, p, int(seed) % 2**64, counter)


def dropout_backward(dy, mask):
    _check_pair(dy, mask, "mask")
    return backend(dy).activation.dropout_backward(dy, mask)


def _check_pair(dy, saved, saved_name: str) -> None:
    check_float_array(dy, "dy")
    check_float_array(saved, saved_name)
    check_same_kind(saved, saved_name, dy=dy)
    check_shape(dy, "dy", saved.shape)
