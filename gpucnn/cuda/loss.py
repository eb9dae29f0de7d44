"""The losses on the CUDA path: launches of ``cuda/loss.cu``.

Same functions and semantics as ``gpucnn.cpu.loss``; arguments arrive validated by
``gpucnn.ops.loss``. Softmax cross-entropy takes three launches per training step where the
array code took about seventeen CuPy operations (each a launch and 16-23 us of host time on
an H100's host); every loss is kernels only, so a training step can be a CUDA graph.
"""

from __future__ import annotations

import numpy as np

from .._device import array_module
from ._launch import contiguous, empty, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "loss.cu"
THREADS = 256
MEAN_THREADS = 256  # loss::kMeanThreads
ROWS_PER_BLOCK = THREADS // 32  # one warp per row


def _targets(target):
    """The labels as the kernels' int64, C-contiguous (no copy when they already are)."""
    if target.dtype != np.int64:
        target = target.astype(np.int64)
    return contiguous(target)


def _rows(name: str, pred, inputs, extra=()):
    """A loss's row kernel ``name`` over pred (N, C), then the mean of its row losses:
    returns (loss, the row kernel's (N, C) output)."""
    n, classes = pred.shape
    per_element = empty(pred, pred.shape, pred.dtype)
    row_loss = empty(pred, (n,), pred.dtype)
    loss = empty(pred, (), pred.dtype)
    launch(
        get_kernel(SOURCE, name, pred),
        grid_stride_blocks(n, ROWS_PER_BLOCK),
        THREADS,
        (pred, *inputs, per_element, row_loss, n, classes, *extra),
    )
    launch(get_kernel(SOURCE, "loss_mean", pred), 1, MEAN_THREADS, (row_loss, loss, n))
    return loss, per_element


def softmax_cross_entropy_forward(logits, target):
    return _rows("softmax_cross_entropy_forward", contiguous(logits), (_targets(target),))


def mse_forward(pred, target):
    pred = contiguous(pred)
    if target.dtype.kind in "iu":
        return _rows("mse_forward", pred, (None, _targets(target)))
    return _rows("mse_forward", pred, (contiguous(target), None))


def mse_backward(diff):
    diff = contiguous(diff)
    grad = empty(diff, diff.shape, diff.dtype)
    launch(
        get_kernel(SOURCE, "loss_divide", diff),
        grid_stride_blocks(diff.size, THREADS),
        THREADS,
        (diff, grad, diff.size, diff.shape[0]),
    )
    return grad


def hinge_forward(pred, target, margin):
    return _rows("hinge_forward", contiguous(pred), (_targets(target),), (margin,))


def hinge_backward(violations, target):
    violations = contiguous(violations)
    grad = empty(violations, violations.shape, violations.dtype)
    n, classes = violations.shape
    launch(
        get_kernel(SOURCE, "hinge_backward", violations),
        grid_stride_blocks(n, ROWS_PER_BLOCK),
        THREADS,
        (violations, _targets(target), grad, n, classes),
    )
    return grad


def softmax_cross_entropy_backward(probabilities, target):
    n, classes = probabilities.shape
    probabilities, target = contiguous(probabilities), _targets(target)
    grad = empty(probabilities, probabilities.shape, probabilities.dtype)
    launch(
        get_kernel(SOURCE, "softmax_cross_entropy_backward", probabilities),
        grid_stride_blocks(grad.size, THREADS),
        THREADS,
        (probabilities, target, grad, grad.size, n, classes),
    )
    return grad


def accumulate_scores(totals, loss, pred, labels) -> None:
    if not hasattr(loss, "dtype"):  # a number (the emulator's losses are host floats)
        loss = array_module(pred).asarray(loss, pred.dtype)
    launch(
        get_kernel(SOURCE, "accumulate_scores", pred),
        1,
        MEAN_THREADS,
        (
            contiguous(loss.astype(pred.dtype, copy=False)),
            contiguous(pred),
            _targets(labels),
            totals,
            pred.shape[0],
            pred.shape[1],
        ),
    )
