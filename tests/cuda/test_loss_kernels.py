"""cuda/loss.cu against the NumPy path, on the emulator (and on a GPU when there is one)."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn import ops
from tests.helpers import misaligned, rel_error, same_bits, shuffled_linspace

TOLERANCE = {np.float32: 1e-6, np.float64: 1e-13}


def _case(n: int, classes: int, dtype, label_dtype=np.int64, seed: int = 0):
    logits = shuffled_linspace((n, classes), dtype, low=-8, high=8, seed=seed)
    target = np.random.default_rng(seed).integers(0, classes, n).astype(label_dtype)
    return logits, target


# Rows: one, and more than the emulator's three-block grid covers at eight rows per block (so
# the row loop loops), and more than the mean's 256 threads. Classes: one, a few, a warp and
# one more (lanes loop), many.
@pytest.mark.parametrize("n, classes", [(1, 1), (1, 10), (5, 3), (70, 33), (300, 10), (9, 100)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy(backend, n, classes, dtype):
    logits, target = _case(n, classes, dtype)
    loss_ref, prob_ref = ops.softmax_cross_entropy_forward(logits, target)
    loss, prob = backend.run(ops.softmax_cross_entropy_forward, logits, target)
    assert loss.shape == () and loss.dtype == dtype and prob.dtype == dtype
    assert rel_error(loss, loss_ref) < TOLERANCE[dtype]
    assert rel_error(prob, prob_ref) < TOLERANCE[dtype]
    # backward from the same probabilities: the same two roundings, the same bits
    grad_ref = ops.softmax_cross_entropy_backward(prob_ref, target)
    grad = backend.run(ops.softmax_cross_entropy_backward, prob_ref, target)
    assert same_bits(grad, grad_ref)


@pytest.mark.parametrize("n, classes", [(1, 1), (5, 3), (70, 33), (300, 10), (9, 100)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squared_error_and_hinge_match_numpy(backend, n, classes, dtype):
    # The squared error against labels (one-hot) and against a dense target; the hinge; each
    # forward within rounding of NumPy's sum, each saved array and backward the same bits.
    pred, target = _case(n, classes, dtype)
    dense = shuffled_linspace((n, classes), dtype, low=-1, high=1, seed=3)
    for name, forward, backward, args in [
        ("mse labels", ops.mse_forward, ops.mse_backward, (pred, target)),
        ("mse dense", ops.mse_forward, ops.mse_backward, (pred, dense)),
        ("hinge", ops.hinge_forward, None, (pred, target, 0.5)),
    ]:
        loss_ref, saved_ref = forward(*args)
        loss, saved = backend.run(forward, *args)
        assert loss.shape == () and loss.dtype == dtype, name
        assert rel_error(loss, loss_ref) < 10 * TOLERANCE[dtype], name
        assert same_bits(saved, saved_ref), name
        if backward is None:  # the hinge's backward needs the labels too
            grad_ref = ops.hinge_backward(saved_ref, target)
            grad = backend.run(ops.hinge_backward, saved_ref, target)
        else:
            grad_ref, grad = backward(saved_ref), backend.run(backward, saved_ref)
        assert same_bits(grad, grad_ref), name


def test_hinge_keeps_nan_and_counts_only_violations(backend):
    pred = np.array([[0.0, 2.0, -3.0, np.nan], [1.0, 1.0, 1.0, 1.0]], np.float32)
    target = np.array([0, 3])
    loss_ref, violations_ref = ops.hinge_forward(pred, target)
    loss, violations = backend.run(ops.hinge_forward, pred, target)
    assert same_bits(violations, violations_ref)
    assert np.isnan(loss) and np.isnan(loss_ref)
    grad = backend.run(ops.hinge_backward, violations_ref, target)
    assert same_bits(grad, ops.hinge_backward(violations_ref, target))


@pytest.mark.parametrize("label_dtype", [np.int32, np.uint8, np.int16])
def test_any_integer_labels(backend, label_dtype):
    logits, target = _case(12, 7, np.float32, label_dtype)
    loss_ref, _ = ops.softmax_cross_entropy_forward(logits, target.astype(np.int64))
    loss, _ = backend.run(ops.softmax_cross_entropy_forward, logits, target)
    assert rel_error(loss, loss_ref) < 1e-6
    grad = backend.run(
        lambda x, t: ops.softmax_cross_entropy_backward(
            ops.softmax_cross_entropy_forward(x, t)[1], t
        ),
        logits,
        target,
    )
    assert np.all(grad[np.arange(12), target] < 0)  # the target's column lost its 1 / N


def test_huge_logits_nan_and_determinism(backend):
    logits = np.array(
        [[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0], [1.0, np.nan, 2.0], [0.0, 0.0, 0.0]],
        np.float32,
    )
    target = np.array([0, 0, 2, 1])
    loss_ref, prob_ref = ops.softmax_cross_entropy_forward(logits, target)
    loss, prob = backend.run(ops.softmax_cross_entropy_forward, logits, target)
    assert np.isnan(loss_ref) and np.isnan(loss)  # a NaN row makes the batch's loss NaN
    assert rel_error(prob, prob_ref) < 1e-6  # NaN in the same places, the rest finite
    assert np.all(np.isfinite(prob[[0, 1, 3]]))
    clean = logits[[0, 1, 3]]
    first = backend.run(ops.softmax_cross_entropy_forward, clean, target[[0, 1, 3]])
    again = backend.run(ops.softmax_cross_entropy_forward, clean, target[[0, 1, 3]])
    assert abs(float(first[0]) - (2e4 + np.log(3)) / 3) < 1e-2  # rows: 0, 2e4, log 3
    assert all(same_bits(a, b) for a, b in zip(first, again, strict=True))


@pytest.mark.parametrize(
    "forward",
    [ops.softmax_cross_entropy_forward, ops.mse_forward, ops.hinge_forward],
    ids=["softmax-cross-entropy", "mse", "hinge"],
)
@pytest.mark.parametrize("row", [0, 1, 3])
@pytest.mark.parametrize("label", [-1, 5, 2**40])
def test_unchecked_bad_label_gives_nan_not_a_stray_read(backend, forward, row, label):
    # With check_targets=False the caller promises valid labels; a broken promise yields a
    # NaN loss on the CUDA path, and the sanitized emulator proves nothing is read out of
    # bounds. One bad label at a time, so no other row's NaN can hide a row that read a
    # neighbour's logit instead (label C = 5 in the last row reads past the array).
    logits, _ = _case(4, 5, np.float32)
    target = np.array([0, 4, 1, 2])
    target[row] = label
    loss, _ = backend.run(forward, logits, target, check_targets=False)
    assert np.isnan(loss)
    target[row] = 3
    loss, _ = backend.run(forward, logits, target, check_targets=False)
    assert np.isfinite(loss)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one class"):
        ops.softmax_cross_entropy_forward(np.zeros((3, 0), np.float32), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="integer class labels"):
        ops.softmax_cross_entropy_backward(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="target must have shape"):
        ops.softmax_cross_entropy_backward(np.zeros((2, 3)), np.array([0, 1, 2]))


@pytest.mark.gpu
@pytest.mark.parametrize("n, classes", [(256, 10), (4096, 1000), (100_000, 3)])
def test_realistic_sizes_on_the_gpu_and_bitwise_reruns(gpu_backend, n, classes):
    logits, target = _case(n, classes, np.float32)
    loss_ref, prob_ref = ops.softmax_cross_entropy_forward(logits.astype(np.float64), target)
    first = gpu_backend.run(ops.softmax_cross_entropy_forward, logits, target)
    again = gpu_backend.run(ops.softmax_cross_entropy_forward, logits, target)
    assert rel_error(first[0], loss_ref) < 1e-6 and rel_error(first[1], prob_ref) < 1e-6
    assert all(same_bits(a, b) for a, b in zip(first, again, strict=True))
    grad = gpu_backend.run(ops.softmax_cross_entropy_backward, first[1], target)
    assert same_bits(grad, ops.softmax_cross_entropy_backward(first[1], target))
    for forward, args in [
        (ops.mse_forward, (logits, target)),
        (ops.hinge_forward, (logits, target)),
    ]:
        _, saved_ref = forward(*args)
        loss, saved = gpu_backend.run(forward, *args)
        assert rel_error(loss, forward(logits.astype(np.float64), target)[0]) < 1e-6
        assert same_bits(saved, saved_ref), forward.__name__
        assert same_bits(loss, gpu_backend.run(forward, *args)[0]), forward.__name__


def test_strided_and_misaligned_inputs_give_the_same_result(backend):
    logits, target = _case(9, 6, np.float64)
    expected = ops.softmax_cross_entropy_forward(logits, target)

    def from_views(logits, target):
        wide = misaligned(logits.repeat(2, axis=1))  # every value twice: [:, ::2] is logits
        return ops.softmax_cross_entropy_forward(wide[:, ::2], misaligned(target))

    got = backend.run(from_views, logits, target)
    assert rel_error(got[0], expected[0]) < 1e-13 and rel_error(got[1], expected[1]) < 1e-13


def _scores_case(n: int, classes: int, dtype):
    # few distinct values, so rows tie; some rows with NaN, one all -inf
    rng = np.random.default_rng(n)
    pred = rng.integers(-2, 3, (n, classes)).astype(dtype)
    pred[rng.random(n) < 0.2, rng.integers(0, classes)] = np.nan
    pred[n // 2] = -np.inf
    target = rng.integers(0, classes, n)
    target[: n // 3] = pred[: n // 3].argmax(axis=1)  # some rows right, ties and NaN included
    return pred, target


@pytest.mark.parametrize("n, classes", [(1, 1), (7, 3), (70, 33), (300, 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulated_scores_match_numpy(backend, n, classes, dtype):
    pred, target = _scores_case(n, classes, dtype)
    dense = np.eye(classes)[target].astype(dtype)  # one-hot targets take their argmax
    expected = np.zeros(2)
    for t in (target, target.astype(np.uint8) if classes < 256 else target, dense):
        ops.accumulate_scores(expected, 0.25, pred, t)

    def on_device(pred, target, dense, totals):
        for t in (target, target.astype(np.uint8) if classes < 256 else target, dense):
            ops.accumulate_scores(totals, 0.25, pred, t)
        return totals

    got = backend.run(on_device, pred, target, dense, np.zeros(2))
    assert same_bits(got, expected)
    assert expected[0] == 3 * 0.25 * n and expected[1] == 3 * np.count_nonzero(
        pred.argmax(axis=1) == target
    )


def test_accumulated_scores_take_a_device_loss_and_ignore_out_of_range_labels(backend):
    pred, target = _scores_case(12, 4, np.float32)
    target[0] = 7  # no row's argmax: counted wrong (fit refuses such labels up front)

    def on_device(pred, target, zeros, totals):
        loss = ops.softmax_cross_entropy_forward(zeros, target % 4)[0]  # log 4, on the device
        ops.accumulate_scores(totals, loss, pred, target)
        return totals

    got = backend.run(on_device, pred, target, np.zeros((12, 4), np.float32), np.zeros(2))
    assert abs(got[0] - 12 * np.log(4)) < 1e-5
    assert got[1] == np.count_nonzero(pred.argmax(axis=1) == target)
