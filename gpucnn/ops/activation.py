"""Activations, dense (fully connected) and dropout.

Written once against the array API that NumPy and CuPy share (Chainer's way): on the GPU
these run as CuPy's elementwise kernels and cuBLAS, which is the right tool for them.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_float_array, check_probability, check_same_kind, check_shape
from .._device import array_module


def relu_forward(x):
    check_float_array(x, "x")
    return array_module(x).maximum(x, 0)


def relu_backward(dy, x):
    """dy where x > 0, else 0 (the subgradient at 0 is taken as 0)."""
    _check_pair(dy, x, "x")
    return dy * (x > 0)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), evaluated without overflow for large |x|."""
    check_float_array(x, "x")
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dy, y):
    """Gradient through the sigmoid given its output y: dy * y * (1 - y)."""
    _check_pair(dy, y, "y")
    return dy * y * (1 - y)


def tanh_forward(x):
    check_float_array(x, "x")
    return array_module(x).tanh(x)


def tanh_backward(dy, y):
    """Gradient through tanh given its output y: dy * (1 - y^2)."""
    _check_pair(dy, y, "y")
    return dy * (1 - y * y)


def dense_forward(x, w, b=None):
    """y = x w^T + b: x (N, in), w (out, in), b (out,) -> y (N, out)."""
    check_float_array(x, "x", ndim=2)
    check_float_array(w, "w", ndim=2)
    check_same_kind(x, "x", w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[1]}")
    y = x @ w.T
    if b is not None:
        check_shape(b, "b", (w.shape[0],))
        y += b
    return y


def dense_backward(dy, x, w, with_bias=True):
    """Gradients of ``dense_forward``: (dx, dw, db); db is None unless with_bias."""
    check_float_array(x, "x", ndim=2)
    check_float_array(w, "w", ndim=2)
    check_float_array(dy, "dy", ndim=2)
    check_same_kind(x, "x", w=w, dy=dy)
    check_shape(dy, "dy", (x.shape[0], w.shape[0]))
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[1]}")
    db = dy.sum(axis=0) if with_bias else None
    return dy @ w, dy.T @ x, db


# ----------------------------------------------------------------------------- dropout
#
# The mask is a pure function of (seed, step, element index): a counter-based generator
# (SplitMix64's finaliser over the counter), so a step is reproducible, and NumPy and CuPy
# draw the very same mask from the same seed.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def dropout_uniform(xp, shape, seed: int, step: int):
    """Uniform [0, 1) numbers of ``shape`` (float64), a pure function of (seed, step, index)."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed % 2**64) * _GOLDEN + np.uint64(step % 2**64))
        counter = xp.arange(int(np.prod(shape)), dtype=np.uint64)
        bits = _splitmix64(counter * _GOLDEN + key)
    return ((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def dropout_forward(x, p, seed: int, step: int):
    """Inverted dropout: zero each element with probability p and scale the rest by
    1 / (1 - p). Returns (y, mask), mask holding 0 or 1 / (1 - p) in x's dtype."""
    check_float_array(x, "x")
    p = check_probability(p, "p")
    xp = array_module(x)
    keep = dropout_uniform(xp, x.shape, seed, step) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, mask):
    _check_pair(dy, mask, "mask")
    return dy * mask


def _check_pair(dy, saved, saved_name: str) -> None:
    check_float_array(dy, "dy")
    check_float_array(saved, saved_name)
    check_same_kind(saved, saved_name, dy=dy)
    check_shape(dy, "dy", saved.shape)
