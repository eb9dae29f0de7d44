"""cuda/optim.cu against the NumPy path: the same bits, on the emulator (and on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn import ops
from tests.helpers import same_bits


def _update(param, grad, velocity, **rates):
    """Three steps; returns (param, velocity) after them."""
    for _ in range(3):
        ops.sgd_update(param, grad, velocity, **rates)
    return param, velocity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "rates",
    [
        dict(lr=0.1),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, weight_decay=5e-4),
        dict(lr=0.01, momentum=0.5, weight_decay=1e-2, nesterov=True),
        dict(lr=0.3, weight_decay=1e-3),
    ],
)
def test_same_bits_as_numpy(backend, dtype, rates):
    # 1000 elements: more than the emulator's three-block grid covers, so the loop loops.
    rng = np.random.default_rng(0)
    param = rng.standard_normal(1000).astype(dtype)
    grad = rng.standard_normal(1000).astype(dtype)

    def fresh_velocity():
        return np.zeros_like(param) if rates.get("momentum") else None

    expected = _update(param.copy(), grad, fresh_velocity(), **rates)

    def on_device(param, grad):
        velocity = None if not rates.get("momentum") else param * 0
        return _update(param, grad, velocity, **rates)

    got = backend.run(on_device, param.copy(), grad)
    assert got[0].dtype == dtype
    assert same_bits(got[0], expected[0])
    if expected[1] is not None:
        assert same_bits(got[1], expected[1])


def test_an_empty_parameter_launches_nothing(backend):
    param = np.zeros(0)
    got = backend.run(lambda p: _update(p, p.copy(), None, lr=0.1)[0], param)
    assert got.shape == (0,)
