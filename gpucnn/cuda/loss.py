"""Softmax cross-entropy on the CUDA path: launches of ``cuda/loss.cu``.

Same functions and semantics as ``gpucnn.cpu.loss``; arguments arrive validated by
``gpucnn.ops.loss``. Three launches per training step where the array code took about
seventeen CuPy operations (each a launch and 16-23 us of host time on an H100's host).
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


def softmax_cross_entropy_forward(logits, target):
    n, classes = logits.shape
    logits, target = contiguous(logits), _targets(target)
    probabilities = empty(logits, logits.shape, logits.dtype)
    row_loss = empty(logits, (n,), logits.dtype)
    loss = empty(logits, (), logits.dtype)
    launch(
        get_kernel(SOURCE, "softmax_cross_entropy_forward", logits),
        grid_stride_blocks(n, ROWS_PER_BLOCK),
        THREADS,
        (logits, target, probabilities, row_loss, n, classes),
    )
    launch(
        get_kernel(SOURCE, "softmax_cross_entropy_mean", logits),
        1,
        MEAN_THREADS,
        (row_loss, loss, n),
    )
    return loss, probabilities


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
