"""Loss functions, forward and backward, each averaged over the batch.

Softmax cross-entropy, the loss classifiers train with, dispatches like the other ops: NumPy
(``gpucnn.cpu.loss``) or fused kernels (``gpucnn.cuda.loss``: on a GPU three launches where
array code would take about seventeen CuPy operations per step). MSE and hinge are written
once against the array API NumPy and CuPy share. Losses return 0-d arrays of the input's
device, so that on the GPU reading the value (a host sync) is the caller's choice.
"""

from __future__ import annotations

import numpy as np

from .._checks import (
    check_array,
    check_finite_in,
    check_float_array,
    check_number,
    check_same_kind,
    check_shape,
)
from .._device import array_device
from ._dispatch import backend


def _check_target_array(target, pred) -> None:
    if check_array(target, "target") != array_device(pred):
        raise TypeError("target and pred must be on the same device (see gpucnn.to_device)")


def check_class_targets(target, pred, check_range: bool = True) -> None:
    """``target`` holds one integer class in [0, C) per row of ``pred`` (N, C).

    The range check reads the labels' extremes: on a GPU that is a host sync, which a caller
    that validated every label up front (``fit`` does) skips with ``check_range=False``.
    """
    _check_target_array(target, pred)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class labels, got dtype {target.dtype}")
    check_shape(target, "target", (pred.shape[0],))
    if target.size and check_range:
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= pred.shape[1]:
            raise ValueError(
                f"target holds class labels in [{low}, {high}] but pred has "
                f"{pred.shape[1]} classes (valid labels are 0 to {pred.shape[1] - 1})"
            )


def _check_pred(pred, name: str = "pred") -> None:
    check_float_array(pred, name, ndim=2)
    if pred.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example")
    if pred.shape[1] == 0:
        raise ValueError(f"{name} must have at least one class (column)")


def softmax_cross_entropy_forward(logits, target, check_targets: bool = True):
    """Mean over the batch of -log softmax(logits)[target], with log-sum-exp (the row's max
    subtracted before exp, so large logits never overflow); returns (loss, probabilities).
    A row holding NaN gives a NaN loss."""
    _check_pred(logits, "logits")
    check_class_targets(target, logits, check_targets)
    return backend(logits).loss.softmax_cross_entropy_forward(logits, target)


def softmax_cross_entropy_backward(probabilities, target):
    """(softmax - onehot(target)) / N."""
    check_float_array(probabilities, "probabilities", ndim=2)
    check_class_targets(target, probabilities, check_range=False)
    return backend(probabilities).loss.softmax_cross_entropy_backward(probabilities, target)


def mse_forward(pred, target, check_targets: bool = True):
    """The classic squared error 1/2 * sum_j (y_j - d_j)^2 per example, averaged over the
    batch; returns (loss, diff = y - d). ``target`` is a float array shaped like pred, or
    integer classes (one-hot)."""
    _check_pred(pred)
    _check_target_array(target, pred)
    if target.dtype.kind in "iu":
        if target.ndim == 2:  # most likely one-hot rows as integers
            raise TypeError(
                f"target: integers are class labels, shape (N,); got integer target of shape "
                f"{tuple(target.shape)}: pass one-hot or real-valued targets as {pred.dtype}"
            )
        check_class_targets(target, pred, check_targets)
    else:
        check_float_array(target, "target")
        check_same_kind(pred, "pred", target=target)
        check_shape(target, "target", pred.shape)
    return backend(pred).loss.mse_forward(pred, target)


def mse_backward(diff):
    """(y - d) / N."""
    check_float_array(diff, "diff", ndim=2)
    return backend(diff).loss.mse_backward(diff)


def hinge_forward(pred, target, margin=1.0, check_targets: bool = True):
    """Multiclass hinge (Weston-Watkins, as in CS231n): per example
    sum over j != t of max(0, pred_j - pred_t + margin), averaged over the batch.
    Returns (loss, violations): each class's violation, 0 at the target (saved for backward)."""
    _check_pred(pred)
    check_class_targets(target, pred, check_targets)
    margin = check_number(margin, "margin", 0.0)
    check_finite_in(margin, "margin", pred.dtype)
    return backend(pred).loss.hinge_forward(pred, target, pred.dtype.type(margin))


def hinge_backward(violations, target):
    """+1 for every violating class, minus their count at the target class; / N."""
    check_float_array(violations, "violations", ndim=2)
    check_class_targets(target, violations, check_range=False)
    return backend(violations).loss.hinge_backward(violations, target)


def accumulate_scores(totals, loss, pred, target) -> None:
    """A training loop's running scores, in place: ``totals`` (float64, shape (2,), pred's
    device) += (loss * N, the number of rows of ``pred`` (N, C) whose argmax is the target
    class). ``target`` is (N,) integer classes or (N, C), whose argmax is the class; ``loss``
    the batch's mean loss (a number, or a 0-d array of pred's device). On a GPU one launch and
    no host sync, where the array code took six operations."""
    _check_pred(pred)
    _check_target_array(target, pred)
    check_float_array(totals, "totals", ndim=1)
    if totals.dtype != np.float64 or totals.shape != (2,):
        raise ValueError(f"totals must be float64 of shape (2,), got {totals.dtype} {totals.shape}")
    if array_device(totals) != array_device(pred):
        raise TypeError("totals and pred must be on the same device (see gpucnn.to_device)")
    if target.ndim == 2:
        check_shape(target, "target", pred.shape)
        labels = target.argmax(axis=1)
    elif target.dtype.kind in "iu":
        check_shape(target, "target", (pred.shape[0],))
        labels = target
    else:
        raise TypeError(
            f"target must hold integer classes (N,) or be shaped like pred, got {target.dtype} "
            f"{tuple(target.shape)}"
        )
    backend(pred).loss.accumulate_scores(totals, loss, pred, labels)
