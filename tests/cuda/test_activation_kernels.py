"""cuda/activation.cu against the NumPy path, on the emulator (and on a GPU when there is one)."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn import ops
from gpucnn._random import dropout_key
from gpucnn.cpu.activation import dropout_uniform
from tests.helpers import misaligned, rel_error, same_bits, shuffled_linspace

# More elements than the emulator's three 256-thread blocks cover, so every loop loops; an odd
# count; and the values where the functions change branch or are undefined.
SHAPE = (7, 11, 13)
SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -1e-30, 60.0, -60.0, 800.0, -800.0]


def _inputs(dtype, seed=0):
    x = shuffled_linspace(SHAPE, dtype, low=-6, high=6, seed=seed)
    x.flat[: len(SPECIAL)] = SPECIAL
    dy = shuffled_linspace(SHAPE, dtype, low=-2, high=1, seed=seed + 1)
    dy.flat[-3:] = [np.nan, -0.0, np.inf]
    return x, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_and_every_backward_give_numpys_values(backend, dtype):
    x, dy = _inputs(dtype)
    y = np.tanh(x)  # an output in [-1, 1] for the backward passes that read it
    mask = np.where(x > 0, dtype(4 / 3), dtype(0))
    for op, args in [
        (ops.relu_forward, (x,)),
        (ops.relu_backward, (dy, x)),
        (ops.sigmoid_backward, (dy, y)),
        (ops.tanh_backward, (dy, y)),
        (ops.dropout_backward, (dy, mask)),
    ]:
        expected = op(*args)
        got = backend.run(op, *args)
        assert got.dtype == dtype and got.shape == SHAPE
        assert same_bits(got, expected), op.__name__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_within_the_last_bit(backend, dtype):
    x, _ = _inputs(dtype)
    for op in (ops.sigmoid_forward, ops.tanh_forward):
        expected = op(x)
        got = backend.run(op, x)
        assert got.dtype == dtype
        assert rel_error(got, expected) < 4 * np.finfo(dtype).eps, op.__name__
        assert np.all((got >= -1) & (got <= 1) | np.isnan(got))


@pytest.mark.filterwarnings("ignore:invalid value")  # NumPy: inf * 0 where an inf is dropped
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "p, seed, step", [(0.5, 0, 0), (0.25, 7, 3), (0.9, -5, 2**40), (0.0, 1, 1)]
)
def test_dropout_draws_numpys_mask(backend, dtype, p, seed, step):
    x, _ = _inputs(dtype)
    y_ref, mask_ref = ops.dropout_forward(x, p, seed, step)
    y, mask = backend.run(ops.dropout_forward, x, p, seed, step)
    assert same_bits(mask, mask_ref)
    assert same_bits(y, y_ref)
    kept = np.count_nonzero(mask) / mask.size
    assert abs(kept - (1 - p)) < 0.08  # 1001 draws: a wrong generator would miss this


def test_dropout_keeps_an_element_whose_draw_equals_p(backend):
    # An element is kept when its uniform u >= p (NumPy's rule): with p set to one element's
    # own draw, that element must be kept and its neighbours decided as NumPy decides them.
    x = np.ones(SHAPE, np.float32)
    draws = dropout_uniform(SHAPE, dropout_key(11, 4))
    p = float(np.sort(draws, axis=None)[draws.size // 2])  # a draw near the middle
    y_ref, mask_ref = ops.dropout_forward(x, p, 11, 4)
    y, mask = backend.run(ops.dropout_forward, x, p, 11, 4)
    assert mask_ref[draws == p].all() and same_bits(mask, mask_ref) and same_bits(y, y_ref)


def test_dropout_steps_draw_different_masks(backend):
    x = np.ones(SHAPE, np.float32)
    first = backend.run(ops.dropout_forward, x, 0.5, 3, 0)[1]
    second = backend.run(ops.dropout_forward, x, 0.5, 3, 1)[1]
    assert not np.array_equal(first, second)


@pytest.mark.filterwarnings("ignore:invalid value")  # NumPy: inf * 0 where an inf is dropped
def test_a_step_counter_draws_the_steps_masks_and_advances_on_the_device(backend):
    # Three draws through one counter: the masks of steps 5, 6 and 7, the step advanced by
    # the launch's last block (the emulator's grid is three blocks) and the block count back
    # at 0; an empty array advances it too, as on the NumPy path.
    x, _ = _inputs(np.float32)

    def draws(x, counter):
        masks = [ops.dropout_forward(x, 0.5, 9, counter)[1] for _ in range(3)]
        ops.dropout_forward(x[:0], 0.5, 9, counter)
        return (*masks, counter)

    *masks, counter = backend.run(draws, x, np.array([5, 0], np.uint64))
    for step, mask in zip((5, 6, 7), masks, strict=True):
        assert same_bits(mask, ops.dropout_forward(x, 0.5, 9, step)[1]), step
    assert counter.tolist() == [9, 0]
    reference = np.array([5, 0], np.uint64)
    draws(x, reference)
    assert reference.tolist() == [9, 0]


def test_empty_arrays_give_empty_results(backend):
    x = np.zeros((0, 4), np.float32)
    assert backend.run(ops.relu_forward, x).shape == (0, 4)
    assert backend.run(ops.dropout_forward, x, 0.5, 0, 0)[1].shape == (0, 4)


@pytest.mark.gpu
def test_realistic_sizes_on_the_gpu_and_bitwise_reruns(gpu_backend):
    # 64 x 256 x 56 x 56: a ResNet-50 activation, 51 million elements
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 256, 56, 56), dtype=np.float32)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    for op, args in [
        (ops.relu_forward, (x,)),
        (ops.relu_backward, (dy, x)),
        (ops.tanh_backward, (dy, np.tanh(x))),
    ]:
        assert same_bits(gpu_backend.run(op, *args), op(*args)), op.__name__
    y_ref, mask_ref = ops.dropout_forward(x, 0.3, 11, 5)
    first = gpu_backend.run(ops.dropout_forward, x, 0.3, 11, 5)
    assert same_bits(first[1], mask_ref) and same_bits(first[0], y_ref)
    sigmoid = gpu_backend.run(ops.sigmoid_forward, x)
    assert rel_error(sigmoid, ops.sigmoid_forward(x.astype(np.float64))) < 1e-6
    assert same_bits(sigmoid, gpu_backend.run(ops.sigmoid_forward, x))


def test_strided_and_misaligned_inputs_give_the_same_result(backend):
    # The kernels read flat arrays: views are copied to contiguous, aligned ones first.
    x, dy = _inputs(np.float64)
    y = np.tanh(x)
    expected = (ops.relu_backward(dy, x), ops.sigmoid_backward(dy, y))

    def from_views(x, dy, y):
        strided = x.repeat(2, axis=-1)[..., ::2]  # every value twice: [..., ::2] is x
        return ops.relu_backward(misaligned(dy), strided), ops.sigmoid_backward(dy, misaligned(y))

    got = backend.run(from_views, x, dy, y)
    assert all(same_bits(g, e) for g, e in zip(got, expected, strict=True))
