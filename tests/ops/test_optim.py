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


def _parameters(count, seed):
    """``count`` (param, grad) pairs of assorted shapes and both float dtypes."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (5,), (0,), (2, 2, 3), (1,), (7, 1)]
    pairs = []
    for i in range(count):
        dtype = np.float32 if i % 3 else np.float64
        shape = shapes[i % len(shapes)]
        pairs.append(tuple(rng.standard_normal(shape).astype(dtype) for _ in range(2)))
    return pairs


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_many_is_one_call_per_parameter_in_order(momentum):
    pairs = _parameters(11, 0)
    rates = dict(lr=0.1, momentum=momentum, weight_decay=1e-2, nesterov=bool(momentum))
    expected = [(p.copy(), np.zeros_like(p)) for p, _ in pairs]
    got = [(p.copy(), np.zeros_like(p)) for p, _ in pairs]
    for _ in range(3):
        for (param, velocity), (_, grad) in zip(expected, pairs, strict=True):
            ops.sgd_update(param, grad, velocity if momentum else None, **rates)
        ops.sgd_update_many(
            [p for p, _ in got],
            [g for _, g in pairs],
            [v for _, v in got] if momentum else None,
            **rates,
        )
    for (param, velocity), (want_param, want_velocity) in zip(got, expected, strict=True):
        assert np.array_equal(param, want_param) and param.dtype == want_param.dtype
        assert np.array_equal(velocity, want_velocity)


def test_many_names_the_bad_entry_and_updates_nothing():
    pairs = _parameters(4, 1)
    params, grads = [p.copy() for p, _ in pairs], [g for _, g in pairs]
    before = [p.copy() for p in params]

    def refused(error, words, **changes):
        arguments = dict(params=params, grads=grads, velocities=None, lr=0.1) | changes
        with pytest.raises(error, match=words):
            ops.sgd_update_many(**arguments)
        assert all(np.array_equal(p, b) for p, b in zip(params, before, strict=True))

    refused(ValueError, r"grads\[3\] must have shape", grads=grads[:3] + [np.ones(2)])
    refused(
        TypeError,
        r"grads\[2\] has dtype float64 but params\[2\]",
        grads=grads[:2] + [grads[0], grads[3]],
    )
    refused(ValueError, r"velocities\[0\] is needed when momentum > 0", momentum=0.9)
    refused(
        ValueError,
        r"params, grads and velocities must have one entry per parameter, got 4, 3",
        grads=grads[:3],
    )
    refused(
        TypeError,
        "params must be a list or tuple of arrays, got generator",
        params=(p for p in params),
    )
    refused(TypeError, r"grads\[1\] must be a numpy.ndarray", grads=[grads[0], None, *grads[2:]])
    refused(
        ValueError, r"params\[3\] must be C-contiguous", params=params[:3] + [np.ones((3, 2, 2)).T]
    )
    refused(ValueError, "lr = 1e.39 overflows float32", lr=1e39)  # params[1] is float32


def test_many_of_nothing_is_nothing():
    ops.sgd_update_many([], [], lr=0.1, momentum=0.9)
