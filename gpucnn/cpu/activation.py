"""Activations and dropout in NumPy: the reference the kernels in ``cuda/activation.cu`` are
judged against. Arguments arrive validated (gpucnn.ops.activation)."""

from __future__ import annotations

import numpy as np

from .._random import GOLDEN, MIX1, MIX2, dropout_key


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, x):
    return dy * (x > 0)


def sigmoid_forward(x):
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dy, y):
    return dy * (1 - y * y)


def _splitmix64(z):
    """gpucnn._random.splitmix64 over a uint64 array (NumPy's uint64 wraps by itself)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def dropout_uniform(shape, key: int):
    """Uniform [0, 1) numbers of ``shape`` (float64): element i is
    (splitmix64(i * GOLDEN + key) >> 11) * 2^-53 (see gpucnn._random)."""
    with np.errstate(over="ignore"):
        counter = np.arange(int(np.prod(shape)), dtype=np.uint64)
        bits = _splitmix64(counter * np.uint64(GOLDEN) + np.uint64(key))
    return ((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def dropout_forward(x, p: float, seed: int, counter):
    """The step is ``counter[0]``, advanced by one (what the kernel does on the device)."""
    key = dropout_key(seed, int(counter[0]))
    with np.errstate(over="ignore"):  # the step wraps at 2^64, as the kernel's does
        counter[0] += np.uint64(1)
    keep = dropout_uniform(x.shape, key) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, mask):
    return dy * mask
