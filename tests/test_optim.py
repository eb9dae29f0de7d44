"""SGD against hand-computed updates (PyTorch's formulation) and the schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpucnn.layers import Dense
from gpucnn.optim import SGD, ConstantLR, CosineLR, StepLR


def _layer_with_grads(weight, grad):
    layer = Dense(2, 1, bias=False, dtype=np.float64)
    layer.params["weight"][...] = weight
    layer.grads["weight"] = np.array(grad, np.float64)
    return layer


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_weight_decay_and_nesterov_follow_the_formula(nesterov):
    w0, g = np.array([[1.0, -2.0]]), np.array([[0.5, 0.25]])
    lr, mu, wd = 0.1, 0.9, 0.01
    layer = _layer_with_grads(w0, g)
    opt = SGD(layer, lr, momentum=mu, weight_decay=wd, nesterov=nesterov)
    w, v = w0.copy(), None
    for _ in range(3):
        opt.step()
        d = g + wd * w
        v = d.copy() if v is None else mu * v + d
        w = w - lr * (d + mu * v if nesterov else v)
        assert np.allclose(layer.params["weight"], w, rtol=0, atol=1e-15)


def test_plain_sgd_step():
    layer = _layer_with_grads([[1.0, 1.0]], [[2.0, -4.0]])
    SGD(layer, 0.5).step()
    assert np.array_equal(layer.params["weight"], [[0.0, 3.0]])


def test_step_without_gradients_is_an_error():
    with pytest.raises(RuntimeError, match="no gradient"):
        SGD(Dense(2, 2), 0.1).step()


def test_schedules():
    assert ConstantLR()(0.1, 7) == 0.1
    step = StepLR(step_size=2, gamma=0.5)
    assert [step(1.0, e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = CosineLR(total_epochs=4, min_lr=0.1)
    values = [cosine(1.0, e) for e in range(5)]
    assert values[0] == 1.0 and math.isclose(values[2], 0.55) and math.isclose(values[4], 0.1)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[3] > 0.1  # the last epoch of the run still learns
    opt = SGD(Dense(2, 2), 1.0, schedule=step)
    assert opt.set_epoch(4) == 0.25 and opt.lr == 0.25
    with pytest.raises(ValueError, match="step_size"):
        StepLR(0)
    with pytest.raises(ValueError, match="total_epochs"):
        CosineLR(0)


@pytest.mark.parametrize(
    "rate, error",
    [(-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("1", TypeError)],
)
def test_a_schedules_bad_rate_is_refused_with_the_epoch(rate, error):
    opt = SGD(Dense(2, 2), 1.0, schedule=lambda base_lr, epoch: rate if epoch == 3 else base_lr)
    assert opt.set_epoch(2) == 1.0
    with pytest.raises(error, match="at epoch 3: the learning rate must be"):
        opt.set_epoch(3)
    assert SGD(Dense(2, 2), 1.0, schedule=lambda base_lr, epoch: 0).set_epoch(0) == 0.0  # frozen


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(lr=0), ValueError, "lr"),
        (dict(lr=-1), ValueError, "lr"),
        (dict(lr="0.1"), TypeError, "lr"),
        (dict(lr=0.1, momentum=1.0), ValueError, "momentum"),
        (dict(lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
        (dict(lr=0.1, weight_decay=math.nan), ValueError, "weight_decay"),
        (dict(lr=0.1, momentum=math.nan), ValueError, "momentum"),
        (dict(lr=0.1, nesterov=True), ValueError, "nesterov"),
        (dict(lr=0.1, schedule=3), TypeError, "schedule"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, words):
    with pytest.raises(error, match=words):
        SGD(Dense(2, 2), **kwargs)


def test_the_model_must_have_params_and_grads():
    import types

    for model in (types.SimpleNamespace(params={}), types.SimpleNamespace(grads={}), 3):
        with pytest.raises(TypeError, match="model must be a gpucnn layer or Sequential"):
            SGD(model, lr=0.1)
