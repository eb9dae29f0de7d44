"""Activations, dense and dropout: finite differences in float64 and their edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpucnn.cpu._windows
from gpucnn import ops
from tests.helpers import numerical_gradient, rel_error, shuffled_linspace


@pytest.mark.parametrize(
    "forward, backward, uses_output",
    [
        (ops.relu_forward, ops.relu_backward, False),
        (ops.sigmoid_forward, ops.sigmoid_backward, True),
        (ops.tanh_forward, ops.tanh_backward, True),
    ],
)
def test_activation_gradients(forward, backward, uses_output):
    # distinct values kept away from 0, where ReLU has its kink
    x = shuffled_linspace((3, 4, 5), np.float64, low=-2, high=2)
    x[np.abs(x) < 0.05] += 0.1
    dy = shuffled_linspace(x.shape, np.float64, seed=1, low=-0.3, high=1.1)
    y = forward(x)
    dx = backward(dy, y if uses_output else x)
    assert rel_error(dx, numerical_gradient(lambda x_: forward(x_) * dy, x)) < 1e-8


def test_activation_values():
    x = np.array([-3.0, -0.0, 0.0, 2.5], np.float32)
    assert np.array_equal(ops.relu_forward(x), [0, 0, 0, 2.5])
    assert ops.relu_forward(x).dtype == np.float32
    assert rel_error(ops.sigmoid_forward(x), 1 / (1 + np.exp(-x.astype(np.float64)))) < 1e-7
    assert rel_error(ops.tanh_forward(x), np.tanh(x.astype(np.float64))) < 1e-7


def test_relu_passes_no_gradient_at_zero():
    # The subgradient at 0 (and -0) is 0, as PyTorch's: only x > 0 passes dy.
    x = np.array([-1.0, -0.0, 0.0, np.finfo(np.float32).tiny, 2.0], np.float32)
    dy = np.full(x.shape, 3.0, np.float32)
    assert np.array_equal(ops.relu_backward(dy, x), [0, 0, 0, 3, 3])


@pytest.mark.parametrize("chunk_bytes", [None, 40])  # one chunk; chunks of a few elements
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gives_the_bits_of_its_plain_numpy_formulas(dtype, chunk_bytes, monkeypatch):
    # The NumPy path computes them another way for speed, in chunks on the workers; NaN, -0,
    # inf and denormals must come out as np.maximum(x, 0) and dy * (x > 0) give them, on
    # strided views too.
    if chunk_bytes:
        monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setenv("GPUCNN_CPU_THREADS", "3")
    info = np.finfo(dtype)
    special = [np.nan, -np.nan, -0.0, 0.0, np.inf, -np.inf, info.tiny, -info.tiny]
    special += [info.smallest_subnormal, -info.smallest_subnormal, info.max, -1.5, 2.5]
    x = np.array(special * 9, dtype).reshape(13, 9)
    dy = np.roll(x, 5)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    for xs, dys in ((x, dy), (x[::2, 1::3], dy[::2, 2::3]), (x.T, dy.T)):
        assert np.array_equal(ops.relu_forward(xs).view(bits), np.maximum(xs, 0).view(bits))
        with np.errstate(invalid="ignore"):  # inf * 0, on both sides
            expected = dys * (xs > 0)
            got = ops.relu_backward(dys, xs)
        assert np.array_equal(got.view(bits), expected.view(bits))


@pytest.mark.parametrize("chunk_bytes", [None, 40])
def test_sigmoid_and_tanh_gradients_give_the_bits_of_their_formulas(chunk_bytes, monkeypatch):
    if chunk_bytes:
        monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setenv("GPUCNN_CPU_THREADS", "3")
    y = shuffled_linspace((7, 11, 5), np.float32, low=-1, high=1)
    y.flat[:6] = [np.nan, np.inf, -np.inf, -0.0, 1.0, np.finfo(np.float32).tiny]
    dy = shuffled_linspace(y.shape, np.float32, seed=1, low=-3, high=3)
    with np.errstate(invalid="ignore"):
        pairs = [
            (ops.sigmoid_backward(dy, y), dy * y * (1 - y)),
            (ops.tanh_backward(dy, y), dy * (1 - y * y)),
            (ops.tanh_forward(dy), np.tanh(dy)),
        ]
    for got, expected in pairs:
        assert got.dtype == np.float32
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1000.0, -80.0, 80.0, 1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        y = ops.sigmoid_forward(x)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    assert y[0] == 0.0 and y[-1] == 1.0


def test_dense_gradients():
    x = shuffled_linspace((4, 5), np.float64)
    w = shuffled_linspace((3, 5), np.float64, seed=1)
    b = shuffled_linspace((3,), np.float64, seed=2)
    dy = shuffled_linspace((4, 3), np.float64, seed=3, low=-0.3, high=1.1)
    y = ops.dense_forward(x, w, b)
    assert rel_error(y, x @ w.T + b) < 1e-15
    dx, dw, db = ops.dense_backward(dy, x, w)
    assert rel_error(dx, numerical_gradient(lambda x_: ops.dense_forward(x_, w, b) * dy, x)) < 1e-8
    assert rel_error(dw, numerical_gradient(lambda w_: ops.dense_forward(x, w_, b) * dy, w)) < 1e-8
    assert rel_error(db, numerical_gradient(lambda b_: ops.dense_forward(x, w, b_) * dy, b)) < 1e-8
    assert ops.dense_backward(dy, x, w, with_bias=False)[2] is None


def test_dropout_masks_scale_and_reproduce():
    x = np.ones((64, 128), np.float32)
    y, mask = ops.dropout_forward(x, 0.25, seed=3, step=0)
    kept = mask != 0
    assert np.allclose(y[kept], 1 / 0.75) and np.all(y[~kept] == 0)
    assert abs(kept.mean() - 0.75) < 0.02  # 8192 draws: 5 standard deviations is 0.024
    again, _ = ops.dropout_forward(x, 0.25, seed=3, step=0)
    other_step, _ = ops.dropout_forward(x, 0.25, seed=3, step=1)
    other_seed, _ = ops.dropout_forward(x, 0.25, seed=4, step=0)
    assert np.array_equal(y, again)
    assert not np.array_equal(y, other_step) and not np.array_equal(y, other_seed)
    dy = shuffled_linspace(x.shape, np.float32, seed=1)
    assert np.array_equal(ops.dropout_backward(dy, mask), dy * mask)


def test_dropout_keeps_an_element_whose_draw_equals_p():
    # The rule is keep where u >= p: with p set to one element's own draw, it is kept, and
    # exactly the elements with a smaller draw are dropped.
    from gpucnn._random import dropout_key
    from gpucnn.cpu.activation import dropout_uniform

    x = np.ones((16, 33), np.float32)
    draws = dropout_uniform(x.shape, dropout_key(11, 4))
    p = float(np.sort(draws, axis=None)[draws.size // 2])
    _, mask = ops.dropout_forward(x, p, seed=11, step=4)
    assert mask[draws == p].all()
    assert np.array_equal(mask != 0, draws >= p)


def test_the_dropout_step_counter_wraps_at_2_to_the_64_silently():
    # As the kernel's uint64 does; NumPy's scalar add warned of an overflow here.
    x = np.ones((4, 8), np.float32)
    counter = np.array([2**64 - 1, 0], np.uint64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        last, _ = ops.dropout_forward(x, 0.5, seed=3, step=counter)
        assert counter[0] == 0
        assert np.array_equal(last, ops.dropout_forward(x, 0.5, seed=3, step=-1)[0])
        assert np.array_equal(
            ops.dropout_forward(x, 0.5, seed=3, step=counter)[0],
            ops.dropout_forward(x, 0.5, seed=3, step=0)[0],
        )


def test_a_step_counter_must_be_a_c_contiguous_pair_of_uint64():
    x = np.ones(3, np.float32)
    # each wrong in one way only: the dtype, the shape, the layout
    for counter in (np.zeros(2, np.int64), np.zeros(3, np.uint64), np.zeros(4, np.uint64)[::2]):
        with pytest.raises(ValueError, match="step counter"):
            ops.dropout_forward(x, 0.5, 0, counter)
    with pytest.raises(TypeError, match="step must be an integer or a step counter"):
        ops.dropout_forward(x, 0.5, 0, [0, 0])


def test_dropout_seed_and_step_must_be_integers():
    for seed in (1.5, True):
        with pytest.raises(TypeError, match="seed must be an integer"):
            ops.dropout_forward(np.ones(3, np.float32), 0.5, seed, 0)
    with pytest.raises(TypeError, match="step must be an integer"):
        ops.dropout_forward(np.ones(3, np.float32), 0.5, 0, None)


def test_dropout_uniform_is_uniform():
    from gpucnn._random import dropout_key
    from gpucnn.cpu.activation import dropout_uniform

    u = dropout_uniform((200_000,), dropout_key(seed=0, step=0))
    assert u.min() >= 0 and u.max() < 1
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    expected = len(u) / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30  # 9 degrees of freedom: p < 0.001 beyond 27.9


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: ops.dropout_forward(np.ones(3, np.float32), 1.0, 0, 0), ValueError, "p must be"),
        (lambda: ops.dropout_forward(np.ones(3, np.float32), -0.1, 0, 0), ValueError, "p must"),
        (lambda: ops.relu_backward(np.ones(3), np.ones(4)), ValueError, "dy must have shape"),
        (lambda: ops.dense_forward(np.ones((2, 3)), np.ones((4, 5))), ValueError, "features"),
        (
            lambda: ops.dense_forward(np.ones((2, 3), np.float32), np.ones((4, 3))),
            TypeError,
            "dtype",
        ),
        (lambda: ops.relu_forward(np.ones(3, np.int32)), TypeError, "x must be float32"),
    ],
)
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error, match=words):
        call()
