"""cuda/optim.cu against the NumPy path: the same bits, on the emulator (and on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn.cuda.optim
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


def _many(params, grads, steps=3, **rates):
    """``steps`` of ops.sgd_update_many; returns params + velocities."""
    velocities = [p * 0 for p in params] if rates.get("momentum") else None
    for _ in range(steps):
        ops.sgd_update_many(params, grads, velocities, **rates)
    return tuple(params) + tuple(velocities or ())


def _one_at_a_time(params, grads, steps=3, **rates):
    """The same steps, one ops.sgd_update per parameter, on NumPy."""
    params = [p.copy() for p in params]
    velocities = [np.zeros_like(p) for p in params] if rates.get("momentum") else None
    for _ in range(steps):
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            ops.sgd_update(param, grad, velocities[i] if velocities else None, **rates)
    return tuple(params) + tuple(velocities or ())


def _arrays(sizes, dtypes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(d) for n, d in zip(sizes, dtypes, strict=True)]


# Twenty parameters, one of them empty: seventeen float32 (a launch of sixteen and one of
# one) and two float64 (one launch).
SIZES = [1000, 1, 7, 0, 300, 64, 5, 3, 129, 2, 17, 33, 4, 9, 1, 70, 8, 6, 2, 11]
DTYPES = [np.float64 if i in (2, 6) else np.float32 for i in range(len(SIZES))]


@pytest.mark.parametrize(
    "rates", [dict(lr=0.1), dict(lr=0.01, momentum=0.5, weight_decay=1e-2, nesterov=True)]
)
def test_many_parameters_give_the_bits_of_one_at_a_time(backend, rates):
    params, grads = _arrays(SIZES, DTYPES, 0), _arrays(SIZES, DTYPES, 1)
    expected = _one_at_a_time(params, grads, **rates)
    count = len(params)
    got = backend.run(
        lambda *arrays: _many(list(arrays[:count]), list(arrays[count:]), **rates),
        *(p.copy() for p in params),
        *grads,
    )
    assert len(got) == len(expected)
    for array, want in zip(got, expected, strict=True):
        assert same_bits(array, want)


def _launches(monkeypatch) -> list:
    """The sgd_update launches made from now on, as the number of parameters each took."""
    made = []
    launch = gpucnn.cuda.optim.launch

    def counting(kernel, grid, block, args, shared_mem=0):
        made.append(sum(1 for size in args[7::4] if size))
        return launch(kernel, grid, block, args, shared_mem)

    monkeypatch.setattr(gpucnn.cuda.optim, "launch", counting)
    return made


def test_sixteen_parameters_of_a_dtype_share_a_launch(backend, monkeypatch):
    params, grads = _arrays(SIZES, DTYPES, 0), _arrays(SIZES, DTYPES, 1)
    made = _launches(monkeypatch)
    count = len(params)
    backend.run(
        lambda *arrays: _many(list(arrays[:count]), list(arrays[count:]), steps=1, lr=0.1),
        *params,
        *grads,
    )
    assert made == [16, 1, 2]


def test_overlapping_parameters_are_updated_one_after_another(backend, monkeypatch):
    # One launch would race on these; the update must be that of separate calls in order.
    a, b, g1, g2 = _arrays([500] * 4, [np.float32] * 4, 2)
    made = _launches(monkeypatch)

    # an array listed twice, whose update is a later parameter's gradient
    def listed_twice(a, b, g1, g2):
        _many([a, a, b], [g1, g2, a], steps=2, lr=0.1)
        return a, b

    want_a, want_b = a.copy(), b.copy()
    for _ in range(2):
        for param, grad in ((want_a, g1), (want_a, g2), (want_b, want_a)):
            ops.sgd_update(param, grad, lr=0.1)
    got = backend.run(listed_twice, a.copy(), b.copy(), g1, g2)
    assert made == [1] * 6
    assert same_bits(got[0], want_a) and same_bits(got[1], want_b)

    # a parameter that is the gradient of the one before it
    made.clear()
    want_a, want_b = a.copy(), b.copy()
    for _ in range(2):
        ops.sgd_update(want_a, want_b, lr=0.1)
        ops.sgd_update(want_b, g1, lr=0.1)
    got = backend.run(
        lambda a, b, g1: _many([a, b], [b, g1], steps=2, lr=0.1), a.copy(), b.copy(), g1
    )
    assert made == [1] * 4
    assert same_bits(got[0], want_a) and same_bits(got[1], want_b)


def test_disjoint_sees_any_shared_byte():
    from gpucnn.cuda.optim import _disjoint

    base = np.zeros(16, np.float32)

    def slots(*arrays):
        return [(array, None, None, array.size) for array in arrays]

    assert _disjoint(slots(base[:8], base[8:]))  # touching ends share nothing
    assert not _disjoint(slots(base[:9], base[8:]))
    assert not _disjoint(slots(base, base[3:5]))  # one inside the other
    assert not _disjoint([(np.zeros(4), base[6:10], None, 4), *slots(base[:7])])  # a gradient
    assert _disjoint(slots(np.zeros(4), np.zeros(4)))
