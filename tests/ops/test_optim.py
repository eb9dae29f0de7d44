"""ops.sgd_update on the NumPy path: against a float64 loop reference, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn import ops
from tests.helpers import rel_error, shuffled_linspace


def _loop_reference(param, grad, velocity, lr, momentum, weight_decay, nesterov, steps):
    """``steps`` updates, element by element, in float64."""
    p, v = param.astype(np.float64).ravel(), np.zeros(param.size)
    g0 = grad.astype(np.float64).ravel()
    for _ in range(steps):
        for i in range(p.size):
            g = g0[i] + weight_decay * p[i]
            if momentum:
                v[i] = momentum * v[i] + g
                g = g + momentum * v[i] if nesterov else v[i]
            p[i] -= lr * g
    return p.reshape(param.shape), v.reshape(param.shape)


@pytest.mark.parametrize(
    "momentum, weight_decay, nesterov",
    [
        (0.0, 0.0, False),
        (0.9, 0.0, False),
        (0.9, 1e-2, False),
        (0.5, 1e-3, True),
        (0.0, 1e-2, False),
    ],
)
def test_steps_follow_the_formula(momentum, weight_decay, nesterov):
    param = shuffled_linspace((3, 5, 7), np.float64, 0)
    grad = shuffled_linspace((3, 5, 7), np.float64, 1)
    velocity = np.zeros_like(param) if momentum else None
    expected_p, expected_v = _loop_reference(
        param, grad, velocity, 0.1, momentum, weight_decay, nesterov, steps=3
    )
    for _ in range(3):
        ops.sgd_update(
            param,
            grad,
            velocity,
            lr=0.1,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
    assert rel_error(param, expected_p) < 1e-14
    if momentum:
        assert rel_error(velocity, expected_v) < 1e-14


def test_float32_rates_are_rounded_to_float32():
    # lr = 0.1 is not a float32: the update uses float32(0.1), as the CUDA kernel does.
    param, grad = np.ones(4, np.float32), np.full(4, 3.0, np.float32)
    ops.sgd_update(param, grad, lr=0.1)
    assert param.dtype == np.float32
    assert np.array_equal(param, np.full(4, np.float32(1) - np.float32(0.1) * np.float32(3)))


def test_bad_input_is_named():
    param, grad = np.ones((2, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_update(param, grad, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="grad"):
        ops.sgd_update(param, np.ones((3, 2)), lr=0.1)
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_update(param, grad, np.zeros(6), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="grad"):
        ops.sgd_update(param, grad.astype(np.float32), lr=0.1)
    with pytest.raises(TypeError, match="grad must be a numpy"):
        ops.sgd_update(param, None, lr=0.1)
    with pytest.raises(TypeError, match="velocity must be a numpy"):
        ops.sgd_update(param, grad, grad.tolist(), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="param"):
        ops.sgd_update(param.astype(np.int64), grad, lr=0.1)
    with pytest.raises(TypeError, match="lr"):
        ops.sgd_update(param, grad, lr="0.1")
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        ops.sgd_update(np.ones((3, 2)).T, grad, lr=0.1)


@pytest.mark.parametrize(
    "rates, words",
    [
        ({"lr": float("nan")}, r"lr must be in \[0.0, inf\), got nan"),
        ({"lr": float("inf")}, "lr must be in"),
        ({"lr": -0.1}, "lr must be in"),  # ascent: PyTorch refuses it too
        ({"lr": 0.1, "momentum": 1.0}, r"momentum must be in \[0.0, 1.0\)"),
        ({"lr": 0.1, "momentum": -0.5}, "momentum must be in"),
        ({"lr": 0.1, "weight_decay": float("nan")}, "weight_decay must be in"),
        (
            {"lr": 1e39},
            "lr = 1e.39 overflows float32, the arrays' dtype",
        ),  # finite, but inf once rounded
        ({"lr": 0.1, "weight_decay": 1e39}, "weight_decay = 1e.39 overflows float32"),
    ],
)
def test_rates_that_would_make_nan_or_inf_weights_are_refused(rates, words):
    # Each of these wrote NaN or inf into the parameters (and the velocity) without a word.
    param, grad, velocity = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=words):
        ops.sgd_update(param, grad, velocity, **rates)
    assert np.array_equal(param, np.ones(3)) and np.array_equal(velocity, np.zeros(3))


def test_the_rates_limits_are_inclusive_where_they_should_be():
    param, grad = np.ones(3), np.ones(3)
    ops.sgd_update(param, grad, lr=0.0)  # a schedule may end at 0
    assert np.array_equal(param, np.ones(3))
    ops.sgd_update(param, grad, lr=1e39)  # float64 parameters hold it
    assert np.all(param == 1 - 1e39)
    single = np.ones(3, np.float32)  # float32's largest finite value is a finite rate
    ops.sgd_update(single, np.zeros(3, np.float32), lr=float(np.finfo(np.float32).max))
    assert np.array_equal(single, np.ones(3))
    with pytest.raises(TypeError, match="nesterov must be a bool"):
        ops.sgd_update(param, grad, np.zeros(3), lr=0.1, momentum=0.9, nesterov="no")
