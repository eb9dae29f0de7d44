"""Activations and dropout in NumPy: the reference the kernels in ``cuda/activation.cu`` are
judged against. Arguments arrive validated (gpucnn.ops.activation)."""

from __future__ import annotations

import numpy as np

from .._random import GOLDEN, MIX1, MIX2, dropout_key
from ._parallel import parallel_map
from ._windows import chunks


def _by_chunks(work, out, *arrays):
    """``work(out_part, *parts)`` on cache-sized chunks of the flattened arrays, on the
    workers; returns ``out``. The ops are elementwise, so the bits do not depend on the
    chunks. On one thread in the calling thread, ReLU's backward of a CIFAR CNN's first
    activation (batch 128, 32 channels at 32x32: 4M floats) took 1.4 ms while the other
    cores idled, ~11% of the training step with the forward."""
    flat_out, flats = out.reshape(-1), [a.reshape(-1) for a in arrays]

    def elementwise_chunk(part: slice) -> None:
        work(flat_out[part], *(flat[part] for flat in flats))

    bytes_per_element = out.itemsize + sum(a.itemsize for a in arrays)  # all of it in L2
    parallel_map(elementwise_chunk, chunks(flat_out.size, bytes_per_element))
    return out


def relu_forward(x):
    """max(x, 0) against an array of zeros, written in place: NumPy takes its SIMD loop for
    two arrays but a generic one for an array and a scalar (1M float32 elements, one thread:
    0.39 ms as np.maximum(x, 0), 0.18 this way; the same bits, NaN and -0 included)."""

    def relu_chunk(y, v):
        y.fill(0)
        np.maximum(v, y, out=y)

    return _by_chunks(relu_chunk, np.empty(x.shape, x.dtype), x)


def relu_backward(dy, x):
    """dy * (x > 0), the mask made as 0/1 floats: multiplying by a bool array casts it in
    a buffered loop (1M float32 elements: 0.40 -> 0.31 ms; the same bits)."""

    def relu_backward_chunk(dx, g, v):
        np.greater(v, 0, out=dx)
        np.multiply(g, dx, out=dx)

    return _by_chunks(relu_backward_chunk, np.empty(x.shape, dy.dtype), dy, x)


def sigmoid_forward(x):
    """1 / (1 + e) where x >= 0, else e / (1 + e), with e = exp(-|x|) in (0, 1]: never
    overflows. On L2-sized chunks on the workers, in place: the whole-array version made
    eight batch-sized temporaries and chose between its two branches with np.where, which
    took 4 ns an element on random signs (N=128, C=64, 32x32, two workers, medians of 15:
    74-76 -> 10-14 ms, PyTorch 12-13; the same bits, NaN, infinities and signed zeros
    included)."""

    def sigmoid_chunk(y, v):
        e = np.abs(v)
        np.exp(np.negative(e, out=e), out=e)
        denominator = e + 1
        # The numerator, 1 where x >= 0, else e: max(e, x >= 0), as e <= 1, exact and
        # branch-free (masked copies ran 15x slower on random signs); NaN stays NaN.
        np.maximum(e, v >= 0, out=e)
        np.divide(e, denominator, out=y)

    return _by_chunks(sigmoid_chunk, np.empty(x.shape, x.dtype), x)


def sigmoid_backward(dy, y):
    """dy * y * (1 - y), in that order (the same bits as the formula)."""

    def sigmoid_backward_chunk(dx, g, v):
        np.multiply(g, v, out=dx)
        np.multiply(dx, np.subtract(1, v), out=dx)

    return _by_chunks(sigmoid_backward_chunk, np.empty(y.shape, np.result_type(dy, y)), dy, y)


def tanh_forward(x):
    return _by_chunks(lambda y, v: np.tanh(v, out=y), np.empty(x.shape, x.dtype), x)


def tanh_backward(dy, y):
    """dy * (1 - y * y) (the same bits as the formula)."""

    def tanh_backward_chunk(dx, g, v):
        np.multiply(v, v, out=dx)
        np.subtract(1, dx, out=dx)
        np.multiply(g, dx, out=dx)

    return _by_chunks(tanh_backward_chunk, np.empty(y.shape, np.result_type(dy, y)), dy, y)


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
