"""Activations and dropout on the CUDA path: one launch of ``cuda/activation.cu`` each.

Same functions and semantics as ``gpucnn.cpu.activation``; arguments arrive validated by
``gpucnn.ops.activation``.
"""

from __future__ import annotations

from ._launch import contiguous, empty, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "activation.cu"
THREADS = 256


def _map(name: str, inputs, outputs: int = 1, extra=(), min_blocks: int = 0):
    """Run the element-wise kernel ``name`` over ``inputs`` (same shape); returns its fresh
    outputs, shaped like the first input."""
    inputs = [contiguous(a) for a in inputs]
    like = inputs[0]
    results = [empty(like, like.shape, like.dtype) for _ in range(outputs)]
    launch(
        get_kernel(SOURCE, name, like),
        max(min_blocks, grid_stride_blocks(like.size, THREADS)),
        THREADS,
        (*inputs, *results, like.size, *extra),
    )
    return results[0] if outputs == 1 else tuple(results)


def relu_forward(x):
    return _map("relu_forward", (x,))


def relu_backward(dy, x):
    return _map("relu_backward", (dy, x))


def sigmoid_forward(x):
    return _map("sigmoid_forward", (x,))


def sigmoid_backward(dy, y):
    return _map("sigmoid_backward", (dy, y))


def tanh_forward(x):
    return _map("tanh_forward", (x,))


def tanh_backward(dy, y):
    return _map("tanh_backward", (dy, y))


def dropout_forward(x, p: float, seed: int, counter):
    scale = x.dtype.type(1.0 / (1.0 - p))  # rounded to x's dtype, as the NumPy path's
    # (one block at least: the launch advances the step even with no elements)
    return _map("dropout_forward", (x,), 2, (seed, counter, p, scale), min_blocks=1)


def dropout_backward(dy, mask):
    return _map("dropout_backward", (dy, mask))
