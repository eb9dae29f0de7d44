"""cuda/pool2d.cu against the NumPy path, on the emulator (and on a GPU when there is one)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpucnn import ops
from gpucnn.cuda import pool as cuda_pool
from tests.helpers import (
    draw_pool_case,
    draw_special_values,
    misaligned,
    record_launches,
    rel_error,
    shuffled_linspace,
)
from tests.ops.test_pool import CASES, _geometry

TOLERANCE = {np.float32: 1e-6, np.float64: 1e-13}


def _special_input(kind: str, shape, dtype):
    x = shuffled_linspace(shape, dtype, seed=3)
    rng = np.random.default_rng(4)
    if kind == "ties":
        return rng.integers(0, 3, size=shape).astype(dtype)
    if kind == "nan":
        x[rng.random(shape) < 0.2] = np.nan
    if kind == "-inf":
        x[rng.random(shape) < 0.7] = -np.inf
    return x


def _tiles_the_image(case) -> bool:
    """Whether a case's windows tile its image exactly (stride = window, no padding, nothing
    left over): where the _tiled kernels must run, and only there."""
    shape, kernel, stride, padding, _ = case
    size = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    step = size if stride is None else (stride, stride) if isinstance(stride, int) else stride
    pad = (padding, padding) if isinstance(padding, int) else tuple(padding)
    return tuple(step) == size and pad == (0, 0) and shape[2] % size[0] == shape[3] % size[1] == 0


def _pairs_the_windows(case) -> bool:
    """Whether a case's windows are 3x3 at column stride 2: where the forward _pairs kernels
    must run (unless the windows tile the image), and only there."""
    _, kernel, stride, _, _ = case
    step = 3 if stride is None else stride if isinstance(stride, int) else stride[1]
    return kernel == 3 and step == 2


def _forward_kernel(case) -> str:
    """The suffix of the forward kernel a case must launch."""
    return "_tiled" if _tiles_the_image(case) else "_pairs" if _pairs_the_windows(case) else ""


def _quads_the_inputs(case) -> bool:
    """Whether a case's windows are 3x3 at stride 2 both ways: where the max-pool backward's
    _quads kernel must run, and only there."""
    _, kernel, stride, _, _ = case
    return kernel == 3 and stride in (2, (2, 2))


def _backward_kernel(case, staged: bool) -> str:
    """The suffix of the max-pool backward kernel a case must launch."""
    if _tiles_the_image(case):
        return "_tiled"
    if _quads_the_inputs(case):
        return "_quads"
    return "_shared" if staged else ""


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("staged", [True, False], ids=["planes-in-shared", "global"])
def test_max_pool_matches_numpy(backend, monkeypatch, case, dtype, staged):
    # Overlapping windows' backward runs the _shared kernel (a plane per block, staged in
    # shared memory) where a plane fits, else the global-memory one: both, on every case
    # but 3x3/2 (the _quads kernel).
    if not staged:
        monkeypatch.setattr(cuda_pool, "SHARED_PLANE_BYTES", 0)
    launched = record_launches(monkeypatch, cuda_pool)
    x = shuffled_linspace(case[0], dtype)
    geometry = _geometry(case)
    y_ref, argmax_ref = ops.max_pool2d_forward(x, **geometry)
    y, argmax = backend.run(ops.max_pool2d_forward, x, **geometry)
    assert np.array_equal(y, y_ref) and np.array_equal(argmax, argmax_ref)

    dy = shuffled_linspace(y_ref.shape, dtype, seed=5)
    dx_ref = ops.max_pool2d_backward(dy, argmax_ref, x.shape, **geometry)
    dx = backend.run(ops.max_pool2d_backward, dy, argmax_ref, x.shape, **geometry)
    assert rel_error(dx, dx_ref) < TOLERANCE[dtype]
    # without the window geometry: the plane-by-plane kernel, same answer
    dx_planes = backend.run(ops.max_pool2d_backward, dy, argmax_ref, x.shape)
    assert rel_error(dx_planes, dx_ref) < TOLERANCE[dtype]
    assert launched[0] == "maxpool2d_forward" + _forward_kernel(case)
    assert launched[1] == "maxpool2d_backward" + _backward_kernel(case, staged)


@pytest.mark.parametrize(
    "geometry",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=1, padding=1),
    ],
    ids=["tiled", "quads", "gather"],
)
@pytest.mark.parametrize("pixel", [(0, 2), (2, 0), (5, 7)], ids=["right", "below", "last"])
def test_an_index_outside_its_window_is_dropped_only_with_the_window(backend, geometry, pixel):
    # As max_pool2d_backward's docstring says: window (0, 0) (rows and columns 0-1 for 2x2,
    # -1 to 1 for 3x3 padded) made to point at a pixel outside it: just right of it (in the
    # gather's 4-input segment), just below, or the last. The NumPy path and the kernel
    # without the window route it there; the kernels given the window drop it.
    x = shuffled_linspace((1, 1, 6, 8), np.float32)
    _, argmax = ops.max_pool2d_forward(x, **geometry)
    argmax[0, 0, 0, 0] = pixel[0] * x.shape[3] + pixel[1]
    dy = np.ones(argmax.shape, np.float32)
    routed = ops.max_pool2d_backward(dy, argmax, x.shape)
    assert np.array_equal(backend.run(ops.max_pool2d_backward, dy, argmax, x.shape), routed)
    dropped = routed.copy()
    dropped[(0, 0, *pixel)] -= 1
    got = backend.run(ops.max_pool2d_backward, dy, argmax, x.shape, **geometry)
    assert np.array_equal(got, dropped)


@pytest.mark.parametrize(
    ("geometry", "given"),
    [
        (dict(kernel_size=3, stride=2, padding=1), False),
        (dict(kernel_size=2), True),
        (dict(kernel_size=3, stride=2, padding=1), True),
    ],
    ids=["planes", "tiled", "gather"],
)
def test_an_index_out_of_range_is_never_followed(backend, geometry, given):
    # The NumPy path refuses argmax values outside [0, H*W); the kernels skip that check (on
    # a GPU a host sync) but never index with one: its gradient goes nowhere. H*W in the
    # first plane would land in the second plane's first pixel, in the last plane past dx.
    x = shuffled_linspace((2, 1, 6, 8), np.float32)
    _, argmax = ops.max_pool2d_forward(x, **geometry)
    dy = shuffled_linspace(argmax.shape, np.float32, seed=5)
    plane = x.shape[2] * x.shape[3]
    bad = [(0, 0, 0, 0, -1), (0, 0, 0, 1, plane), (1, 0, -1, -1, plane), (1, 0, 0, 0, 2**31 - 1)]
    kept = dy.copy()
    for *where, value in bad:
        argmax[tuple(where)], kept[tuple(where)] = value, 0
    expected = ops.max_pool2d_backward(kept, np.clip(argmax, 0, plane - 1), x.shape)
    window = geometry if given else {}
    got = backend.run(ops.max_pool2d_backward, dy, argmax, x.shape, **window)
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match="argmax"):
        ops.max_pool2d_backward(dy, argmax, x.shape, **window)


@pytest.mark.parametrize("kind", ["ties", "nan", "-inf"])
@pytest.mark.parametrize("case", CASES)
def test_max_pool_special_values_match_exactly(backend, case, kind):
    x = _special_input(kind, case[0], np.float32)
    y_ref, argmax_ref = ops.max_pool2d_forward(x, **_geometry(case))
    y, argmax = backend.run(ops.max_pool2d_forward, x, **_geometry(case))
    assert np.array_equal(y, y_ref, equal_nan=True)
    assert np.array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_numpy(backend, monkeypatch, case, dtype, count_include_pad):
    launched = record_launches(monkeypatch, cuda_pool)
    x = shuffled_linspace(case[0], dtype)
    geometry = dict(_geometry(case), count_include_pad=count_include_pad)
    y_ref = ops.avg_pool2d_forward(x, **geometry)
    assert rel_error(backend.run(ops.avg_pool2d_forward, x, **geometry), y_ref) < TOLERANCE[dtype]
    assert launched[0] == "avgpool2d_forward" + _forward_kernel(case)
    dy = shuffled_linspace(y_ref.shape, dtype, seed=5)
    dx_ref = ops.avg_pool2d_backward(dy, x.shape, **geometry)
    dx = backend.run(ops.avg_pool2d_backward, dy, x.shape, **geometry)
    assert rel_error(dx, dx_ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l2_pool_matches_numpy(backend, case, dtype):
    x = shuffled_linspace(case[0], dtype)
    x[0, 0] = 0  # an all-zero plane: windows with y = 0 pass no gradient
    geometry = _geometry(case)
    y_ref = ops.l2_pool2d_forward(x, **geometry)
    y = backend.run(ops.l2_pool2d_forward, x, **geometry)
    assert rel_error(y, y_ref) < TOLERANCE[dtype]
    dy = shuffled_linspace(y_ref.shape, dtype, seed=5)
    dx_ref = ops.l2_pool2d_backward(dy, x, y_ref, **geometry)
    dx = backend.run(ops.l2_pool2d_backward, dy, x, y_ref, **geometry)
    assert np.all(np.isfinite(dx)) and rel_error(dx, dx_ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 1, 1), (3, 5, 8, 8), (2, 2, 13, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_matches_numpy(backend, shape, dtype):
    x = shuffled_linspace(shape, dtype)
    y_ref = ops.global_avg_pool2d_forward(x)
    assert rel_error(backend.run(ops.global_avg_pool2d_forward, x), y_ref) < TOLERANCE[dtype]
    dy = shuffled_linspace(y_ref.shape, dtype, seed=1)
    dx = backend.run(ops.global_avg_pool2d_backward, dy, shape)
    assert rel_error(dx, ops.global_avg_pool2d_backward(dy, shape)) < TOLERANCE[dtype]


def test_non_contiguous_input(backend):
    x = np.asfortranarray(shuffled_linspace((2, 3, 7, 7), np.float32))
    y_ref, argmax_ref = ops.max_pool2d_forward(x, 3, 2, 1)
    y, argmax = backend.run(ops.max_pool2d_forward, x, 3, 2, 1)
    assert np.array_equal(y, y_ref) and np.array_equal(argmax, argmax_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_off_the_vector_boundary_give_the_same_result(backend, dtype):
    # 2x2 windows tiling an even width: the tiled kernels read and write rows as pairs, but
    # these views start one element into their allocations, so they are copied first.
    # (The emulator hands kernels its own aligned copies: the GPU run is the real test here;
    # tests/emulator/test_launch.py checks the copy itself.)
    x = shuffled_linspace((2, 3, 4, 6), dtype)
    y_ref, argmax_ref = ops.max_pool2d_forward(x, 2)
    dy = shuffled_linspace(y_ref.shape, dtype, seed=5)
    dx_ref = ops.max_pool2d_backward(dy, argmax_ref, x.shape, 2)

    def shifted(x, dy):
        y, argmax = ops.max_pool2d_forward(misaligned(x), 2)
        dx = ops.max_pool2d_backward(misaligned(dy), misaligned(argmax), x.shape, 2)
        return y, argmax, dx, ops.avg_pool2d_forward(misaligned(x), 2)

    y, argmax, dx, avg = backend.run(shifted, x, dy)
    assert np.array_equal(y, y_ref) and np.array_equal(argmax, argmax_ref)
    assert np.array_equal(dx, dx_ref)
    assert rel_error(avg, ops.avg_pool2d_forward(x, 2)) < TOLERANCE[dtype]


def test_empty_batch_launches_nothing(backend):
    x = np.zeros((0, 3, 8, 8), np.float32)
    y, argmax = backend.run(ops.max_pool2d_forward, x, 2)
    assert y.shape == (0, 3, 4, 4) and argmax.shape == (0, 3, 4, 4)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "shape, kernel, stride, padding", [((32, 64, 56, 56), 3, 2, 1), ((64, 16, 28, 28), 2, 2, 0)]
)
def test_realistic_sizes_on_the_gpu_and_bitwise_reruns(gpu_backend, shape, kernel, stride, padding):
    backend = gpu_backend
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    geometry = dict(kernel_size=kernel, stride=stride, padding=padding)
    y_ref, argmax_ref = ops.max_pool2d_forward(x.astype(np.float64), **geometry)
    y, argmax = backend.run(ops.max_pool2d_forward, x, **geometry)
    assert rel_error(y, y_ref) < 1e-7 and np.array_equal(argmax, argmax_ref)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx_ref = ops.max_pool2d_backward(dy.astype(np.float64), argmax_ref, shape, **geometry)
    first = backend.run(ops.max_pool2d_backward, dy, argmax_ref, shape, **geometry)
    again = backend.run(ops.max_pool2d_backward, dy, argmax_ref, shape, **geometry)
    assert rel_error(first, dx_ref) < 1e-6 and np.array_equal(first, again)
    avg = backend.run(ops.avg_pool2d_forward, x, **geometry)
    assert rel_error(avg, ops.avg_pool2d_forward(x.astype(np.float64), **geometry)) < 1e-6


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_geometry_and_values_match_numpy(backend, data):
    # The fixed cases above, generalised: random geometry (ceil_mode, padding up to
    # kernel // 2, strides below, at and past the kernel) and values with ties, NaN and -inf;
    # max pooling forward and both backward kernels, average and L2 pooling both ways.
    draw = data.draw
    shape, geometry = draw_pool_case(draw)
    special = draw_special_values(draw, shape)
    y_ref, argmax_ref = ops.max_pool2d_forward(special, **geometry)
    y, argmax = backend.run(ops.max_pool2d_forward, special, **geometry)
    assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(argmax, argmax_ref)

    # Positive values: sums of values symmetric about 0 can cancel to rounding noise, whose
    # relative error means nothing (hypothesis found a window summing to 3e-17).
    x = shuffled_linspace(shape, np.float64, draw(st.integers(0, 100)), low=0.1, high=1.1)
    y_ref, argmax_ref = ops.max_pool2d_forward(x, **geometry)
    dy = shuffled_linspace(y_ref.shape, np.float64, seed=5, low=0.1, high=1.1)
    dx_ref = ops.max_pool2d_backward(dy, argmax_ref, shape, **geometry)
    assert (
        rel_error(backend.run(ops.max_pool2d_backward, dy, argmax_ref, shape, **geometry), dx_ref)
        < 1e-13
    )
    assert rel_error(backend.run(ops.max_pool2d_backward, dy, argmax_ref, shape), dx_ref) < 1e-13
    avg = ops.avg_pool2d_forward(x, **geometry)
    assert rel_error(backend.run(ops.avg_pool2d_forward, x, **geometry), avg) < 1e-13
    dx_ref = ops.avg_pool2d_backward(dy, shape, **geometry)
    assert rel_error(backend.run(ops.avg_pool2d_backward, dy, shape, **geometry), dx_ref) < 1e-13
    l2 = ops.l2_pool2d_forward(x, **geometry)
    assert rel_error(backend.run(ops.l2_pool2d_forward, x, **geometry), l2) < 1e-13
    dx_ref = ops.l2_pool2d_backward(dy, x, l2, **geometry)
    assert rel_error(backend.run(ops.l2_pool2d_backward, dy, x, l2, **geometry), dx_ref) < 1e-13


@pytest.mark.parametrize("padding", [1, 0])
def test_quads_sum_each_input_in_window_order(backend, padding):
    # Every other input between window centres (rows and columns padding, padding + 4, ...)
    # is the largest of the four windows around it, so the _quads kernel adds four gradients
    # to each; the plane-by-plane kernel adds them in window order (p, then q). Random
    # gradients round differently in another order: the sums must match bit for bit.
    x = np.zeros((2, 3, 11, 12))
    winners = slice(padding, None, 4)
    x[:, :, winners, winners] = 1 + np.arange(x[:, :, winners, winners].size).reshape(
        x[:, :, winners, winners].shape
    )
    geometry = dict(kernel_size=3, stride=2, padding=padding)
    _, argmax = ops.max_pool2d_forward(x, **geometry)
    dy = np.random.default_rng(7).standard_normal(argmax.shape)
    dx = backend.run(ops.max_pool2d_backward, dy, argmax, x.shape, **geometry)
    assert np.array_equal(dx, backend.run(ops.max_pool2d_backward, dy, argmax, x.shape))
    assert np.all(dx[:, :, winners, winners] != 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_paired_windows_match_numpy_exactly(backend, monkeypatch, data):
    # The forward _pairs kernels read positions outside the image as the nearest input (max)
    # or as 0 (average): random 3x3 geometries at column stride 2 (padding, ceil_mode
    # overhangs, odd numbers of outputs a row); max pooling with ties, NaN and -inf, bit
    # for bit. At stride 2 both ways, the backward's _quads kernel against the plane-by-plane
    # one, which sums in the same window order: bit for bit.
    launched = record_launches(monkeypatch, cuda_pool)
    draw = data.draw
    shape, geometry = draw_pool_case(draw, pairs=True)
    special = draw_special_values(draw, shape)
    y_ref, argmax_ref = ops.max_pool2d_forward(special, **geometry)
    y, argmax = backend.run(ops.max_pool2d_forward, special, **geometry)
    assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(argmax, argmax_ref)
    quads = geometry["stride"] == (2, 2)
    if quads:
        dy = np.random.default_rng(draw(st.integers(0, 100))).standard_normal(y_ref.shape)
        dx = backend.run(ops.max_pool2d_backward, dy, argmax_ref, shape, **geometry)
        dx_planes = backend.run(ops.max_pool2d_backward, dy, argmax_ref, shape)
        assert np.array_equal(dx, dx_planes, equal_nan=True)
    include_pad = draw(st.booleans())
    x = shuffled_linspace(shape, np.float64, draw(st.integers(0, 100)), low=0.1, high=1.1)
    avg_ref = ops.avg_pool2d_forward(x, **geometry, count_include_pad=include_pad)
    avg = backend.run(ops.avg_pool2d_forward, x, **geometry, count_include_pad=include_pad)
    assert rel_error(avg, avg_ref) < 1e-13  # NumPy sums in another order
    backward = ["maxpool2d_backward_quads", "maxpool2d_backward_planes"] if quads else []
    assert launched == ["maxpool2d_forward_pairs", *backward, "avgpool2d_forward_pairs"]
