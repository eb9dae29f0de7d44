"""Softmax cross-entropy in NumPy: the reference the fused kernels (``cuda/loss.cu``) are
judged against. Arguments arrive validated (gpucnn.ops.loss)."""

from __future__ import annotations

import numpy as np


def log_softmax(logits):
    """log softmax along axis 1, stable: the max is subtracted before exp."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy_forward(logits, target):
    log_probs = log_softmax(logits)
    picked = np.take_along_axis(log_probs, target[:, None].astype(np.int64), axis=1)
    return -picked.mean(), np.exp(log_probs)


def softmax_cross_entropy_backward(probabilities, target):
    grad = probabilities.copy()
    grad[np.arange(grad.shape[0]), target] -= 1
    return grad / grad.dtype.type(grad.shape[0])


def accumulate_scores(totals, loss, pred, labels) -> None:
    totals[0] += float(loss) * pred.shape[0]
    totals[1] += np.count_nonzero(pred.argmax(axis=1) == labels)
