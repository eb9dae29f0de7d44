"""The losses in NumPy: the reference the kernels of ``cuda/loss.cu`` are judged against.
Arguments arrive validated (gpucnn.ops.loss)."""

from __future__ import annotations

import numpy as np


def log_softmax(logits):
    """log softmax along axis 1, stable: the max is subtracted before exp. Logits more than
    the float range apart overflow that subtraction to -inf, whose exp is exactly the 0 it
    should be, so NumPy's overflow warning is silenced there."""
    with np.errstate(over="ignore"):
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


def mse_forward(pred, target):
    if target.dtype.kind in "iu":  # class labels, one-hot encoded
        dense = np.zeros(pred.shape, pred.dtype)
        dense[np.arange(pred.shape[0]), target] = 1
    else:
        dense = target
    diff = pred - dense
    return 0.5 * (diff * diff).sum() / pred.shape[0], diff


def mse_backward(diff):
    return diff / diff.dtype.type(diff.shape[0])


def hinge_forward(pred, target, margin):
    rows = np.arange(pred.shape[0])
    correct = pred[rows, target][:, None]
    violations = np.maximum(pred - correct + margin, 0)
    violations[rows, target] = 0
    return violations.sum() / pred.shape[0], violations


def hinge_backward(violations, target):
    active = (violations > 0).astype(violations.dtype)
    rows = np.arange(violations.shape[0])
    active[rows, target] = -active.sum(axis=1)
    return active / active.dtype.type(violations.shape[0])


def accumulate_scores(totals, loss, pred, labels) -> None:
    totals[0] += float(loss) * pred.shape[0]
    totals[1] += np.count_nonzero(pred.argmax(axis=1) == labels)
