"""Losses: values against direct formulas, gradients against finite differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gpucnn import ops
from gpucnn.losses import HingeLoss, MSELoss, SoftmaxCrossEntropyLoss
from tests.helpers import numerical_gradient, rel_error, shuffled_linspace

TARGET = np.array([0, 3, 1, 4, 2, 3])


def _numeric_loss_gradient(loss, pred, target):
    return numerical_gradient(lambda p: np.array(loss.forward(p, target)), pred)


def test_softmax_cross_entropy_value_and_gradient():
    pred = shuffled_linspace((6, 5), np.float64, low=-3, high=3)
    loss = SoftmaxCrossEntropyLoss()
    value = loss.forward(pred, TARGET)
    probabilities = np.exp(pred) / np.exp(pred).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probabilities[np.arange(6), TARGET]))
    assert type(value) is float and abs(value - expected) < 1e-14
    grad = loss.backward()
    assert rel_error(grad, _numeric_loss_gradient(SoftmaxCrossEntropyLoss(), pred, TARGET)) < 1e-8


@pytest.mark.parametrize(
    ("loss", "target"),
    [
        (SoftmaxCrossEntropyLoss(), TARGET),
        (MSELoss(), np.ones((6, 5), np.float32)),
        (HingeLoss(), TARGET),
    ],
)
def test_on_the_host_forward_returns_a_python_float_and_keeps_the_array(loss, target):
    # A NumPy scalar would pass isinstance(value, float) (np.float64 subclasses it).
    value = loss.forward(shuffled_linspace((6, 5), np.float32, low=-3, high=3), target)
    assert type(value) is float
    assert isinstance(loss.value, np.ndarray | np.generic) and float(loss.value) == value


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    pred = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], np.float32)
    loss = SoftmaxCrossEntropyLoss()
    value = loss.forward(pred, np.array([0, 0]))
    assert np.isfinite(value) and abs(value - 1e4) < 1  # second row: -log softmax = 2e4 / 2
    assert np.all(np.isfinite(loss.backward()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_of_logits_the_whole_float_range_apart(dtype):
    # max - (-max) overflows to -inf in the stable shift; exp(-inf) = 0 is exact, so the
    # loss and gradient are right and nothing warns.
    top = np.finfo(dtype).max
    pred = np.array([[top, 0, -top], [0, top, -top]], dtype)
    loss = SoftmaxCrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss.forward(pred, np.array([0, 1])) == 0.0
        assert np.array_equal(loss.backward(), np.zeros_like(pred))


def test_mse_is_the_classic_half_sum_averaged_over_the_batch():
    pred = shuffled_linspace((6, 5), np.float64)
    target = shuffled_linspace((6, 5), np.float64, seed=1)
    loss = MSELoss()
    assert abs(loss.forward(pred, target) - 0.5 * ((pred - target) ** 2).sum() / 6) < 1e-15
    assert rel_error(loss.backward(), _numeric_loss_gradient(MSELoss(), pred, target)) < 1e-8
    onehot = np.eye(5)[TARGET]
    assert loss.forward(pred, TARGET) == MSELoss().forward(pred, onehot)


def test_hinge_value_and_gradient():
    pred = shuffled_linspace((6, 5), np.float64, low=-2, high=2)
    loss = HingeLoss(margin=1.0)
    value = loss.forward(pred, TARGET)
    expected = 0.0
    for i, t in enumerate(TARGET):
        expected += sum(max(0.0, pred[i, j] - pred[i, t] + 1.0) for j in range(5) if j != t)
    assert abs(value - expected / 6) < 1e-14
    assert rel_error(loss.backward(), _numeric_loss_gradient(HingeLoss(), pred, TARGET)) < 1e-8


@pytest.mark.parametrize("loss", [SoftmaxCrossEntropyLoss(), MSELoss(), HingeLoss()])
@pytest.mark.parametrize(
    "target, error, words",
    [
        (np.array([0, 1, 2, 3, 4, 5]), ValueError, "class labels in"),
        (np.array([0, 1, 2, 3, 4, -1]), ValueError, "class labels in"),
        (np.array([0, 1, 2]), ValueError, "target must have shape"),
        ([0, 1, 2, 3, 4, 4], TypeError, "target must be"),
    ],
)
def test_bad_targets_are_named(loss, target, error, words):
    with pytest.raises(error, match=words):
        loss.forward(np.zeros((6, 5), np.float32), target)


def test_integer_one_hot_targets_for_mse_get_a_hint():
    one_hot = np.eye(5, dtype=np.int64)[[0, 1, 2, 3, 4, 4]]
    with pytest.raises(TypeError, match="integers are class labels.*one-hot"):
        MSELoss().forward(np.zeros((6, 5), np.float32), one_hot)


def test_float_labels_rejected_for_classification_and_backward_before_forward():
    with pytest.raises(TypeError, match="integer class labels"):
        SoftmaxCrossEntropyLoss().forward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="before forward"):
        HingeLoss().backward()
    for margin in (-1, float("nan"), float("inf")):  # NaN and inf would poison every loss
        with pytest.raises(ValueError, match="margin must be in"):
            HingeLoss(margin=margin)
    with pytest.raises(TypeError, match="margin must be a number"):
        HingeLoss(margin="1")
    assert HingeLoss(margin=np.float32(0.5)).margin == 0.5


def test_the_ops_name_their_own_arguments():
    # The functional ops are public too: their errors name their own arguments.
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match="logits must be 2-D"):
        ops.softmax_cross_entropy_forward(np.zeros(3, np.float32), labels)
    for margin in ((1.0, 2.0), -1.0, float("nan")):  # was NumPy's broadcasting error
        with pytest.raises((TypeError, ValueError), match="margin must be"):
            ops.hinge_forward(np.zeros((2, 3), np.float32), labels, margin)
    # a float64 margin that rounds to inf in float32 made the loss inf
    with pytest.raises(ValueError, match="margin = 1e.39 overflows float32"):
        ops.hinge_forward(np.zeros((2, 3), np.float32), labels, 1e39)
    loss, _ = ops.hinge_forward(np.zeros((2, 3)), labels, 1e39)  # float64 holds it
    assert loss == 2e39


def test_accumulated_scores_count_the_rows_whose_argmax_is_the_target():
    pred = np.array(
        [[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.3, 0.2, 0.1], [0.0, 0.1, 0.9], [0.2, 0.1, 0.3]]
    )
    # right, a tie (the first maximum, 0, is the class), right, wrong, right
    labels = np.array([1, 1, 0, 0, 2])
    totals = np.zeros(2)
    ops.accumulate_scores(totals, 0.5, pred, labels)
    assert totals.tolist() == [2.5, 3.0]
    ops.accumulate_scores(totals, np.float64(0.25), pred, np.eye(3)[labels])  # one-hot
    assert totals.tolist() == [3.75, 6.0]


def test_accumulate_scores_bad_input_is_named():
    pred = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="totals must be float64 of shape"):
        ops.accumulate_scores(np.zeros(3), 0.0, pred, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="totals must be float64 of shape"):
        ops.accumulate_scores(np.zeros(2, np.float32), 0.0, pred, np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="target must hold integer classes"):
        ops.accumulate_scores(np.zeros(2), 0.0, pred, np.zeros(3))
    with pytest.raises(ValueError, match="target must have shape"):
        ops.accumulate_scores(np.zeros(2), 0.0, pred, np.zeros((3, 3)))
