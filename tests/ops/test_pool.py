"""Pooling on the NumPy path: against loop references, finite differences and edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpucnn.cpu._windows
import gpucnn.cpu.pool
from gpucnn import ops
from tests.helpers import (
    avg_pool2d_loop,
    draw_pool_case,
    draw_special_values,
    l2_pool2d_loop,
    max_pool2d_loop,
    numerical_gradient,
    rel_error,
    shuffled_linspace,
)

# (x shape, kernel, stride, padding, ceil_mode): overlapping windows, padding, ceil_mode with
# an overhang, the dropped last window (5x5, k2 s2 p1), asymmetric pairs, 1x1 planes.
CASES = [
    ((2, 3, 7, 7), 3, 2, 1, False),
    ((2, 3, 7, 7), 3, 2, 1, True),
    ((1, 2, 8, 8), 2, None, 0, False),
    ((1, 2, 9, 9), 2, None, 0, True),
    ((1, 1, 5, 6), (3, 2), (2, 1), (1, 1), True),
    ((2, 2, 1, 1), 1, 1, 0, False),
    ((1, 1, 6, 6), 4, 3, 2, True),
    ((1, 1, 5, 5), 2, 2, 1, True),
    ((1, 2, 10, 10), 3, 3, 1, True),
    # a ceil_mode overhang as wide as the padding, on both axes and on the rows only
    ((1, 1, 6, 6), 3, 2, 1, True),
    ((1, 2, 6, 7), 3, 2, 1, True),
    # overlapping windows on rows a multiple of 4 wide (the CUDA gather's vector stores): the
    # usual 3x3/2, whose windows its unrolled path bounds, and 3x3/1, read at run time
    ((2, 3, 8, 12), 3, 2, 1, False),
    ((1, 2, 6, 8), 3, 1, 1, True),
    # the gather's unrolled 2 x 3 windows a 4-input segment, each bound passed alone: three
    # window rows hold an input row, then four window columns a segment (read at run time)
    ((1, 2, 7, 8), (3, 1), (1, 2), (1, 0), False),
    ((1, 2, 6, 12), (2, 5), 2, (1, 2), True),
    # windows that tile the image exactly (the CUDA path's _tiled kernels): 2x2 above, 3x3
    # (both unrolled), rectangular (sizes read at run time)
    ((2, 3, 6, 9), (3, 1), None, 0, True),
    ((1, 2, 4, 6), (2, 3), None, 0, False),
    ((1, 2, 6, 4), (3, 2), None, 0, False),
    ((2, 2, 4, 6), 2, None, 0, False),  # 2x2 with an odd number of windows a row
    ((2, 2, 9, 6), 3, None, 0, False),
    # ... and windows that miss tiling it by one condition each: overlapping, padded, a
    # row or a column left over
    ((1, 1, 6, 6), 3, 2, 0, False),
    ((1, 2, 4, 4), 2, 2, 1, False),
    ((1, 2, 5, 4), 2, None, 0, False),
    ((1, 2, 4, 5), 2, None, 0, False),
    # 3x3 windows at column stride 2 (the CUDA path's _pairs kernels, two outputs a thread):
    # an odd number of outputs a row, and with it another row stride, no column padding and
    # a ceil_mode overhang
    ((1, 2, 5, 9), 3, 2, 1, False),
    ((2, 1, 7, 10), 3, (3, 2), (1, 0), True),
]


def _geometry(case):
    _, kernel, stride, padding, ceil_mode = case
    return dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)


def _loop_geometry(case):
    _, kernel, stride, padding, ceil_mode = case
    return dict(kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)


def _scatter_loop(dy, argmax, x_shape):
    dx = np.zeros(x_shape, np.float64)
    width = x_shape[3]
    for n, c, p, q in np.ndindex(dy.shape):
        h, w = divmod(int(argmax[n, c, p, q]), width)
        dx[n, c, h, w] += dy[n, c, p, q]
    return dx


# ----------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_forward_matches_loop(case, dtype):
    x = shuffled_linspace(case[0], dtype)
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    y_ref, argmax_ref = max_pool2d_loop(x, **_loop_geometry(case))
    assert y.dtype == dtype and argmax.dtype == np.int32
    assert np.array_equal(y, y_ref) and np.array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("case", CASES)
def test_max_forward_ties_go_to_the_first_element(case):
    x = np.random.default_rng(1).integers(0, 3, size=case[0]).astype(np.float32)
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    y_ref, argmax_ref = max_pool2d_loop(x, **_loop_geometry(case))
    assert np.array_equal(y, y_ref) and np.array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("case", CASES)
def test_max_forward_nan_propagates_and_is_pointed_at(case):
    x = shuffled_linspace(case[0], np.float32, seed=3)
    x[np.random.default_rng(2).random(x.shape) < 0.2] = np.nan
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    y_ref, argmax_ref = max_pool2d_loop(x, **_loop_geometry(case))
    assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(argmax, argmax_ref)
    planes = x.reshape(*x.shape[:2], -1)
    picked = np.take_along_axis(planes, argmax.reshape(*argmax.shape[:2], -1), axis=2)
    assert np.isnan(y).any()
    assert np.array_equal(np.isnan(picked), np.isnan(y.reshape(picked.shape)))


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2]])
def test_max_forward_in_one_plane_chunks(case, monkeypatch):
    # The NumPy path pools in cache-sized chunks of planes; NaN in one plane only, so chunks
    # differ in whether they take the NaN path.
    monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", 1)
    x = np.random.default_rng(4).integers(0, 3, size=case[0]).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    y_ref, argmax_ref = max_pool2d_loop(x, **_loop_geometry(case))
    assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(argmax, argmax_ref)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_max_forward_any_geometry_and_values_match_the_loop(data):
    # Random geometry (ceil_mode, padding up to kernel // 2, strides below, at and past the
    # kernel), few distinct values (ties), NaN and -inf, and chunk edges anywhere.
    draw = data.draw
    shape, geometry = draw_pool_case(draw)
    x = draw_special_values(draw, shape, np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", draw(st.integers(1, 2048)))
        y, argmax = ops.max_pool2d_forward(x, **geometry)
    y_ref, argmax_ref = max_pool2d_loop(
        x,
        kernel=geometry["kernel_size"],
        stride=geometry["stride"],
        padding=geometry["padding"],
        ceil_mode=geometry["ceil_mode"],
    )
    assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("kernel", [11, 12])  # R*S = 121 and 144: the choice counted in int8
def test_max_forward_large_windows_match_the_loop(kernel):  # and in int32 past 127 offsets
    # Few distinct values (ties), NaN in some windows, -inf everywhere else in one plane, and
    # padding with ceil_mode, so every branch of the choice and the padding fix-up runs.
    rng = np.random.default_rng(kernel)
    x = rng.integers(0, 3, size=(2, 2, 17, 15)).astype(np.float32)
    x[0, 1] = -np.inf
    x[1, 0, rng.integers(0, 17, 3), rng.integers(0, 15, 3)] = np.nan
    y, argmax = ops.max_pool2d_forward(x, kernel, 3, kernel // 2, ceil_mode=True)
    y_ref, argmax_ref = max_pool2d_loop(x, kernel, 3, kernel // 2, ceil_mode=True)
    assert np.isnan(y).any() and np.isneginf(y).any()
    assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("case", CASES)
def test_max_forward_all_minus_inf_points_inside(case):
    x = np.full(case[0], -np.inf, np.float32)
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    _, argmax_ref = max_pool2d_loop(x, **_loop_geometry(case))
    assert np.all(y == -np.inf)
    assert np.array_equal(argmax, argmax_ref)
    assert argmax.min() >= 0 and argmax.max() < x.shape[2] * x.shape[3]


@pytest.mark.parametrize("case", CASES)
def test_max_backward_routes_through_argmax(case):
    x = shuffled_linspace(case[0], np.float64)
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    dy = shuffled_linspace(y.shape, np.float64, seed=5, low=-0.3, high=1.1)
    dx = ops.max_pool2d_backward(dy, argmax, x.shape, **_geometry(case))
    assert rel_error(dx, _scatter_loop(dy, argmax, x.shape)) < 1e-15
    numeric = numerical_gradient(
        lambda x_: ops.max_pool2d_forward(x_, **_geometry(case))[0] * dy, x
    )
    assert rel_error(dx, numeric) < 1e-8
    # the window arguments are optional and change nothing
    assert np.array_equal(dx, ops.max_pool2d_backward(dy, argmax, x.shape))


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[10]])
def test_max_backward_on_the_workers_in_chunks(case, monkeypatch):
    # A large dx is zeroed and scattered into by chunks of planes on the worker threads: here
    # every dx is "large" and every chunk one plane, with overlapping windows (sums).
    monkeypatch.setattr(gpucnn.cpu.pool, "SCATTER_ON_WORKERS_BYTES", 0)
    monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", 1)
    x = shuffled_linspace(case[0], np.float32)
    y, argmax = ops.max_pool2d_forward(x, **_geometry(case))
    dy = shuffled_linspace(y.shape, np.float32, seed=6, low=-0.3, high=1.1)
    dx = ops.max_pool2d_backward(dy, argmax, x.shape, **_geometry(case))
    assert rel_error(dx, _scatter_loop(dy, argmax, x.shape)) < 1e-7
    monkeypatch.setattr(gpucnn.cpu.pool, "SCATTER_ON_WORKERS_BYTES", 1 << 62)
    assert np.array_equal(dx, ops.max_pool2d_backward(dy, argmax, x.shape, **_geometry(case)))


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 0, 8, 8)])
@pytest.mark.parametrize("on_workers_from", [0, 1 << 62])
def test_max_pooling_of_no_planes(shape, on_workers_from, monkeypatch):
    monkeypatch.setattr(gpucnn.cpu.pool, "SCATTER_ON_WORKERS_BYTES", on_workers_from)
    x = np.zeros(shape, np.float32)
    y, argmax = ops.max_pool2d_forward(x, 3, 2, 1)
    dx = ops.max_pool2d_backward(y, argmax, x.shape, 3, 2, 1)
    assert y.shape == argmax.shape == (*shape[:2], 4, 4) and dx.shape == shape


def test_max_backward_float32_sums_overlaps_deterministically():
    x = shuffled_linspace((2, 3, 9, 9), np.float32)
    y, argmax = ops.max_pool2d_forward(x, 3, 1, 1)
    dy = shuffled_linspace(y.shape, np.float32, seed=4)
    dx = ops.max_pool2d_backward(dy, argmax, x.shape, 3, 1, 1)
    assert dx.dtype == np.float32
    assert rel_error(dx, _scatter_loop(dy, argmax, x.shape)) < 1e-7
    assert np.array_equal(dx, ops.max_pool2d_backward(dy, argmax, x.shape, 3, 1, 1))


# ------------------------------------------------------------------ average and L2 pooling


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_forward_matches_loop(case, count_include_pad):
    x = shuffled_linspace(case[0], np.float64)
    y = ops.avg_pool2d_forward(x, **_geometry(case), count_include_pad=count_include_pad)
    ref = avg_pool2d_loop(x, **_loop_geometry(case), count_include_pad=count_include_pad)
    assert rel_error(y, ref) < 1e-14


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_backward_matches_finite_differences(case, count_include_pad):
    x = shuffled_linspace(case[0], np.float64)
    geometry = dict(_geometry(case), count_include_pad=count_include_pad)
    y = ops.avg_pool2d_forward(x, **geometry)
    dy = shuffled_linspace(y.shape, np.float64, seed=5, low=-0.3, high=1.1)
    dx = ops.avg_pool2d_backward(dy, x.shape, **geometry)
    numeric = numerical_gradient(lambda x_: ops.avg_pool2d_forward(x_, **geometry) * dy, x)
    assert rel_error(dx, numeric) < 1e-8


@pytest.mark.parametrize("case", CASES)
def test_l2_forward_matches_loop(case):
    x = shuffled_linspace(case[0], np.float64)
    assert (
        rel_error(
            ops.l2_pool2d_forward(x, **_geometry(case)), l2_pool2d_loop(x, **_loop_geometry(case))
        )
        < 1e-14
    )


@pytest.mark.parametrize("case", CASES)
def test_l2_backward_matches_finite_differences(case):
    x = shuffled_linspace(case[0], np.float64, low=0.2, high=1.0)
    y = ops.l2_pool2d_forward(x, **_geometry(case))
    dy = shuffled_linspace(y.shape, np.float64, seed=5, low=-0.3, high=1.1)
    dx = ops.l2_pool2d_backward(dy, x, y, **_geometry(case))
    numeric = numerical_gradient(lambda x_: ops.l2_pool2d_forward(x_, **_geometry(case)) * dy, x)
    assert rel_error(dx, numeric) < 1e-7


def test_l2_all_zero_window_passes_zero_gradient_not_nan():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 0] = 3.0  # only the first 2x2 window is non-zero
    y = ops.l2_pool2d_forward(x, 2)
    dx = ops.l2_pool2d_backward(np.ones_like(y), x, y, 2)
    assert y[0, 0, 0, 0] == 3.0 and np.all(y.ravel()[1:] == 0)
    assert np.all(np.isfinite(dx))
    assert dx[0, 0, 0, 0] == 1.0 and np.count_nonzero(dx) == 1


def test_l2_window_whose_squares_underflow_passes_zero_gradient_without_warnings():
    # 1e-30 squared is 0 in float32: y = 0 although x is not, and y = 0 means no gradient
    # (as the kernel's `norm > 0`), not x * dy / 0 or a division warning.
    x = np.full((1, 1, 2, 4), 1e-30, np.float32)
    x[..., 2:] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ops.l2_pool2d_forward(x, 2)
        dx = ops.l2_pool2d_backward(np.ones_like(y), x, y, 2)
    assert y.ravel().tolist() == [0.0, 2.0]
    assert np.all(dx[..., :2] == 0) and np.array_equal(dx[..., 2:], np.full((1, 1, 2, 2), 0.5))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_avg_and_l2_any_geometry_and_chunking_match_the_loop(data):
    # Average and L2 pooling run on cache-sized chunks of planes, written into np.empty
    # buffers: random geometry, chunk edges anywhere, and every np.empty poisoned with NaN,
    # so an element no chunk wrote shows. The backward is checked as the forward's adjoint.
    draw = data.draw
    shape, geometry = draw_pool_case(draw)
    count_include_pad = draw(st.booleans())
    seed = draw(st.integers(0, 1000))
    x = shuffled_linspace(shape, np.float64, seed, low=0.1, high=1.1)
    loop = dict(
        kernel=geometry["kernel_size"],
        stride=geometry["stride"],
        padding=geometry["padding"],
        ceil_mode=geometry["ceil_mode"],
    )
    avg = dict(geometry, count_include_pad=count_include_pad)
    unpoisoned_empty = np.empty

    def poisoned_empty(*args, **kwargs):
        out = unpoisoned_empty(*args, **kwargs)
        if out.dtype.kind == "f":  # NumPy's own integer scratch stays as it is
            out.fill(np.nan)
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", draw(st.integers(1, 2048)))
        patch.setattr(np, "empty", poisoned_empty)
        y = ops.avg_pool2d_forward(x, **avg)
        dy = shuffled_linspace(y.shape, np.float64, seed + 1, low=0.1, high=1.1)
        dx = ops.avg_pool2d_backward(dy, x.shape, **avg)
        l2 = ops.l2_pool2d_forward(x, **geometry)
        l2_dx = ops.l2_pool2d_backward(dy, x, l2, **geometry)
    assert rel_error(y, avg_pool2d_loop(x, **loop, count_include_pad=count_include_pad)) < 1e-14
    total = float((dy * y).sum())  # avg pooling is linear: <dy, avg(x)> = <dx, x>
    assert abs(float((dx * x).sum()) - total) <= 1e-12 * total
    assert rel_error(l2, l2_pool2d_loop(x, **loop)) < 1e-14
    # L2 pooling is homogeneous of degree 1: <dx, x> = <dy, y> (Euler), no window all zero
    assert abs(float((l2_dx * x).sum()) - float((dy * l2).sum())) <= 1e-12 * float((dy * l2).sum())


def test_global_avg_pool():
    x = shuffled_linspace((2, 3, 5, 4), np.float64)
    y = ops.global_avg_pool2d_forward(x)
    assert y.shape == (2, 3) and rel_error(y, x.mean(axis=(2, 3))) < 1e-15
    dy = shuffled_linspace((2, 3), np.float64, seed=1, low=-0.3, high=1.1)
    dx = ops.global_avg_pool2d_backward(dy, x.shape)
    numeric = numerical_gradient(lambda x_: ops.global_avg_pool2d_forward(x_) * dy, x)
    assert dx.flags.c_contiguous and rel_error(dx, numeric) < 1e-9
    with pytest.raises(ValueError, match="x must have non-empty planes"):
        ops.global_avg_pool2d_forward(np.zeros((2, 3, 0, 4)))
    with pytest.raises(ValueError, match="x_shape must have non-empty planes"):
        ops.global_avg_pool2d_backward(dy, (2, 3, 5, 0))


@pytest.mark.parametrize("plane", [(1, 1), (1, 2), (15, 17), (16, 16), (30, 31)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_sums_each_plane_on_both_paths(plane, dtype):
    # 2 to 255 elements a plane: a GEMV at one BLAS thread; 1 or 256 up: einsum
    x = shuffled_linspace((3, 5, *plane), dtype, low=-1.0, high=2.0)
    reference = x.astype(np.float64).sum(axis=(2, 3)) / (plane[0] * plane[1])
    y = ops.global_avg_pool2d_forward(x)
    assert y.shape == (3, 5) and y.dtype == dtype
    assert rel_error(y, reference) < (1e-6 if dtype == np.float32 else 1e-15)
    # a non-contiguous view of the same values: the same bits
    strided = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    assert np.array_equal(ops.global_avg_pool2d_forward(strided), y)


# -------------------------------------------------------------------------------- errors

X = np.zeros((2, 3, 6, 6), np.float32)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: ops.max_pool2d_forward(X, 3, padding=2), ValueError, "padding must be at most"),
        (lambda: ops.max_pool2d_forward(X, 8), ValueError, "larger than the padded input"),
        (lambda: ops.max_pool2d_forward(X, 0), ValueError, "kernel_size"),
        (lambda: ops.max_pool2d_forward(X, 2, stride=0), ValueError, "stride"),
        (lambda: ops.max_pool2d_forward(X, 2, ceil_mode=1), TypeError, "ceil_mode"),
        (lambda: ops.max_pool2d_forward(X[0], 2), ValueError, "x must be 4-D"),
        (lambda: ops.max_pool2d_forward(X.astype(np.int64), 2), TypeError, "float32"),
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int64), X.shape
            ),
            TypeError,
            "argmax must be int32",
        ),
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 2, 3), np.int32), X.shape
            ),
            ValueError,
            "argmax must have shape",
        ),
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.full((2, 3, 3, 3), 36, np.int32), X.shape
            ),
            ValueError,
            "outside",
        ),
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int32), (2, 4, 6, 6)
            ),
            ValueError,
            "x_shape",
        ),
        # an x_shape of the wrong length alone; of floats or strings (int() took 6.9 as 6)
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int32), (2, 3, 6)
            ),
            ValueError,
            "x_shape must be a tuple of 4",
        ),
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int32), (2, 3, 6.9, 6)
            ),
            TypeError,
            "x_shape must be a tuple of 4 ints",
        ),
        (
            lambda: ops.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), "2366", 2),
            TypeError,
            "x_shape must be a tuple of 4 ints",
        ),
        # plain-int tuples take a fast path: a negative size or a bool must still be refused
        (
            lambda: ops.global_avg_pool2d_backward(np.zeros((2, 3), np.float32), (2, 3, -1, 4)),
            ValueError,
            "x_shape must be a tuple of 4 non-negative ints",
        ),
        (
            lambda: ops.global_avg_pool2d_backward(np.zeros((2, 3), np.float32), (2, 3, True, 4)),
            TypeError,
            "x_shape must be a tuple of 4 ints",
        ),
        (
            lambda: ops.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), b"2366", 2),
            TypeError,
            "x_shape must be a tuple of 4 ints",
        ),
        (
            lambda: ops.max_pool2d_backward(
                np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int32), X.shape, 3, 1
            ),
            ValueError,
            "dy must have shape",
        ),
        (
            lambda: ops.max_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), None, X.shape),
            TypeError,
            "argmax must be a numpy",
        ),
        (lambda: ops.max_pool2d_forward(X, 2, stride=2**70), ValueError, "stride must be < 2"),
        (
            lambda: ops.avg_pool2d_forward(X, 2, count_include_pad="yes"),
            TypeError,
            "count_include_pad",
        ),
        (
            lambda: ops.l2_pool2d_backward(np.zeros((2, 3, 3, 3)), X, np.zeros((2, 3, 3, 3)), 2),
            TypeError,
            "dy has dtype",
        ),
        (
            lambda: ops.global_avg_pool2d_backward(np.zeros((2, 4), np.float32), X.shape),
            ValueError,
            "dy must have shape",
        ),
    ],
)
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_planes_past_the_int32_argmax_are_refused_not_wrapped():
    # argmax holds h*W + w as int32: at 46341 x 46341 (2**31 + 30,277 elements) the last
    # indices wrapped to negative values. A broadcast view makes the plane without the 8 GB.
    big = np.broadcast_to(np.float32(1), (1, 1, 46341, 46341))
    with pytest.raises(ValueError, match=r"x \(1, 1, 46341, 46341\) has planes of H\*W"):
        ops.max_pool2d_forward(big, 1, (46340, 1))
    dy, argmax = np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int32)
    with pytest.raises(ValueError, match="x_shape .* int32 argmax indexes at most 2"):
        ops.max_pool2d_backward(dy, argmax, big.shape)
    # 2**31 elements exactly is the largest plane the indices 0 .. 2**31 - 1 cover
    edge = np.broadcast_to(np.float32(1), (1, 1, 2, 2**30))
    y, argmax = ops.max_pool2d_forward(edge, 1, (1, 2**30 - 1))
    assert argmax.max() == 2**31 - 1 and argmax.min() == 0


def test_l2_pooling_of_a_ceil_mode_window_is_the_norm_of_what_it_covers():
    # Not PyTorch's lp_pool2d, which scales a partial window's sum by area / covered count
    # (differential fuzzing against it found every ceil_mode case apart, and only those).
    x = np.random.default_rng(0).standard_normal((1, 1, 6, 2))
    y = ops.l2_pool2d_forward(x, (5, 2), (4, 2), 0, ceil_mode=True)
    full, partial = np.sqrt((x[0, 0, :5] ** 2).sum()), np.sqrt((x[0, 0, 4:] ** 2).sum())
    assert y.shape == (1, 1, 2, 1)
    assert rel_error(y.ravel(), [full, partial]) < 1e-15
