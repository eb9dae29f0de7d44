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
