"""conv2d forward/backward on the NumPy path: against a loop reference and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpucnn.cpu._windows
import gpucnn.cpu.conv
from gpucnn import ops
from tests.helpers import (
    conv2d_loop,
    draw_conv_case,
    numerical_gradient,
    rel_error,
    shuffled_linspace,
)

# (N, C, H, W, K, R, S, stride, padding, dilation, bias): odd sizes, strides with a remainder,
# asymmetric pairs, dilation, 1x1 and 5x5 kernels, a single image; both ways of computing dx.
CASES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 0, 1, True),
    (1, 2, 8, 6, 3, 3, 3, 2, 1, 1, True),
    (2, 1, 9, 9, 2, 5, 5, 1, 2, 1, False),
    (1, 3, 10, 7, 2, 3, 2, (2, 3), (1, 0), (2, 1), True),
    (3, 2, 5, 5, 1, 1, 1, 1, 0, 1, True),
    (1, 1, 4, 4, 1, 5, 5, 1, 1, 1, True),
    (2, 2, 11, 13, 3, 3, 3, 3, 2, 2, True),
    (1, 4, 6, 6, 5, 2, 2, 2, 0, 1, False),
    (2, 2, 8, 8, 12, 3, 3, 1, 0, 1, True),  # K >> C
    (3, 3, 9, 8, 4, 1, 1, 2, 0, 1, True),  # 1x1 at stride 2: a subsampled GEMM, a column unread
    (2, 3, 10, 9, 4, 2, 2, 3, 0, 1, True),  # stride > R: disjoint windows, elements unread
    (2, 3, 10, 9, 4, 2, 2, (3, 1), 0, 1, True),  # stride > R down only: rows never lowered
    (2, 3, 12, 10, 4, 3, 3, 3, 1, 1, True),  # patches with padding, the last row unread
    (1, 2, 9, 8, 3, 2, 3, (2, 3), 0, 1, True),  # 2x3 patches, a row and two columns unread
    (2, 2, 8, 8, 3, 4, 4, 4, 0, 1, False),  # patches tiling the input exactly
    (2, 2, 9, 9, 3, 2, 2, 3, 0, 2, True),  # dilated windows, disjoint, with holes
    (2, 2, 2, 3, 2, 3, 3, 1, 3, 1, True),  # padding past R: first/last rows only padding
    (2, 3, 9, 7, 2, 3, 3, 2, (3, 1), 1, True),  # stride 2, padding as wide as R
    (2, 10, 3, 5, 6, 1, 1, 1, 0, 2, True),  # 1x1 (one GEMM an image), a dilation that cannot act
    (2, 5, 4, 6, 3, 1, 1, 1, 1, 1, False),  # 1x1 with padding: a border that sees only zeros
    # 5x1 at stride (3, 1): rows 8 and 9 unread, and the last lies past every tap's phase row
    (1, 2, 10, 6, 2, 5, 1, (3, 1), 0, 1, True),
]


def _inputs(case, dtype, seed=0):
    n, c, h, w, k, r, s, *_ = case
    x = shuffled_linspace((n, c, h, w), dtype, seed)
    wt = shuffled_linspace((k, c, r, s), dtype, seed + 1)
    b = shuffled_linspace((k,), dtype, seed + 2) if case[-1] else None
    return x, wt, b


def _geometry(case):
    return dict(stride=case[7], padding=case[8], dilation=case[9])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_forward_matches_loop_reference(case, dtype, tol):
    x, w, b = _inputs(case, dtype)
    y = ops.conv2d_forward(x, w, b, **_geometry(case))
    assert y.dtype == dtype
    assert rel_error(y, conv2d_loop(x, w, b, **_geometry(case))) < tol


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_finite_differences(case):
    x, w, b = _inputs(case, np.float64)
    geometry = _geometry(case)
    y = ops.conv2d_forward(x, w, b, **geometry)
    dy = shuffled_linspace(y.shape, np.float64, seed=7, low=-0.3, high=1.1)  # sum far from 0
    dx, dw, db = ops.conv2d_backward(dy, x, w, with_bias=b is not None, **geometry)

    def loss_x(x_):
        return ops.conv2d_forward(x_, w, b, **geometry) * dy

    def loss_w(w_):
        return ops.conv2d_forward(x, w_, b, **geometry) * dy

    assert rel_error(dx, numerical_gradient(loss_x, x)) < 1e-8
    assert rel_error(dw, numerical_gradient(loss_w, w)) < 1e-8
    if b is None:
        assert db is None
    else:
        loss_b = lambda b_: ops.conv2d_forward(x, w, b_, **geometry) * dy  # noqa: E731
        assert rel_error(db, numerical_gradient(loss_b, b)) < 1e-8


@pytest.mark.parametrize("case", [CASES[0], CASES[6], CASES[-1]])
def test_one_image_chunks_match_one_batch_chunk(case, monkeypatch):
    # The NumPy path lowers the batch in cache-sized chunks; chunk edges must not show.
    x, w, b = _inputs(case, np.float64)
    geometry = _geometry(case)
    y = ops.conv2d_forward(x, w, b, **geometry)
    grads = ops.conv2d_backward(y, x, w, **geometry)
    monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", 1)
    assert rel_error(ops.conv2d_forward(x, w, b, **geometry), y) < 1e-14
    for chunked, whole in zip(ops.conv2d_backward(y, x, w, **geometry), grads, strict=True):
        assert rel_error(chunked, whole) < 1e-14


@pytest.mark.parametrize("rows_max_channels", [0, 1 << 30])  # dx by transposed conv / rows
@pytest.mark.parametrize("case", CASES)
def test_every_uninitialised_buffer_is_written(case, rows_max_channels, monkeypatch):
    # Outputs and GEMM blocks are written into np.empty buffers chunk by chunk and block by
    # block. Fresh memory is often zero, and a zero can look right, so every np.empty is
    # poisoned with NaN: an element no chunk or block wrote shows.
    x, w, b = _inputs(case, np.float64)
    geometry = _geometry(case)
    y = ops.conv2d_forward(x, w, b, **geometry)
    dy = shuffled_linspace(y.shape, np.float64, seed=9)
    clean = ops.conv2d_backward(dy, x, w, with_bias=b is not None, **geometry)
    unpoisoned_empty = np.empty

    def poisoned_empty(*args, **kwargs):
        out = unpoisoned_empty(*args, **kwargs)
        out.fill(np.nan)
        return out

    monkeypatch.setattr(np, "empty", poisoned_empty)
    monkeypatch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", 1)  # one image a chunk
    monkeypatch.setattr(gpucnn.cpu.conv, "SMALL_GEMM_VOLUME", 64)  # GEMMs in column blocks
    monkeypatch.setattr(gpucnn.cpu.conv, "MIN_BLOCK_COLUMNS", 1)
    monkeypatch.setattr(gpucnn.cpu.conv, "ROWS_MAX_CHANNELS", rows_max_channels)
    monkeypatch.setattr(gpucnn.cpu.conv, "GEMM_ROW_BLOCK", 1)  # w's rows split where they can
    monkeypatch.setattr(gpucnn.cpu.conv, "GEMM_COLUMN_ALIGN", 1)
    assert rel_error(ops.conv2d_forward(x, w, b, **geometry), y) < 1e-14
    poisoned = ops.conv2d_backward(dy, x, w, with_bias=b is not None, **geometry)
    for got, expected in zip(poisoned, clean, strict=True):
        assert (got is None and expected is None) or rel_error(got, expected) < 1e-14


@pytest.mark.parametrize("block_columns", [1, 7, 20, 1 << 20])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[6], CASES[9]])
def test_forward_gemm_blocks_of_any_width_match_the_loop_reference(
    case, block_columns, monkeypatch
):
    # The forward multiplies each chunk's lowered operand in blocks of whole images, as many
    # as divide the chunk; with six images a chunk, blocks of 1, 2, 3 and 6 images all occur.
    # Fresh buffers are poisoned, so an output no block wrote shows.
    x, w, b = _inputs((6, *case[1:]), np.float64)
    geometry = _geometry(case)
    expected = conv2d_loop(x, w, b, **geometry)
    unpoisoned_empty = np.empty

    def poisoned_empty(*args, **kwargs):
        return np.full_like(unpoisoned_empty(*args, **kwargs), np.nan)

    monkeypatch.setattr(np, "empty", poisoned_empty)
    monkeypatch.setattr(gpucnn.cpu.conv, "BLOCK_COLUMNS", block_columns)
    monkeypatch.setattr(gpucnn.cpu.conv, "BLOCK_MIN_DEPTH", 0)
    monkeypatch.setattr(gpucnn.cpu.conv, "SMALL_GEMM_VOLUME", 1 << 62)
    assert rel_error(ops.conv2d_forward(x, w, b, **geometry), expected) < 1e-14


@pytest.mark.parametrize(
    "images, depth, out_w, expected",
    [
        (12, 64, 8, 6),  # 64 columns are 8 images: 6 and 12 divide 12, 6 is nearer
        (12, 64, 16, 4),  # 4 images exactly
        (7, 64, 8, 7),  # a prime count: one image (8 columns) or all 7 (56), 7 is nearer
        (12, 64, 200, 1),  # an image wider than the target: one a block
        (12, 8, 8, 12),  # too shallow to gain: one block
        (12, 4096, 8, 12),  # past the small-GEMM volume even 16 columns wide: one block
        # 64 columns past the volume, 16 to 39 within it (16 x 1600 x 39 < 1e6): the widest
        (8, 1600, 16, 2),  # 2 images, 32 columns
        (12, 1600, 8, 4),  # 4 images, 32 columns (6 would be 48)
        (7, 1600, 12, 7),  # 1 image is under 16 columns, 7 over 39: one block
        (6, 1600, 13, 3),  # 3 images are 39 columns: at the volume, still within it
        (5, 1600, 16, 1),  # 1 image is 16 columns: the narrowest block taken
        # within the volume at 64 columns (16 x 900 x 69 < 1e6), but a prime count of images
        # leaves 1 (16 columns) or all 11 (176, past it): the one that fits
        (11, 900, 16, 1),
    ],
)
def test_images_per_block_divides_the_chunk(images, depth, out_w, expected):
    assert gpucnn.cpu.conv.BLOCK_COLUMNS == 64 and gpucnn.cpu.conv.BLOCK_MIN_DEPTH == 64
    assert gpucnn.cpu.conv.SMALL_GEMM_VOLUME == 10**6
    assert gpucnn.cpu.conv.IMAGE_BLOCK_MIN_COLUMNS == 16
    assert gpucnn.cpu.conv._images_per_block(images, 16, depth, out_w) == expected


@pytest.mark.parametrize(
    ("k", "depth", "columns", "expected"),
    [
        (64, 576, 64, 16),  # CIFAR 64->64 at 8x8, 8 images: 16 x 576 x 64 < 1e6
        (64, 576, 32, 48),  # 4 images: 48 rows fit, 64 do not
        (64, 288, 64, 48),  # within the volume at 54 rows: the multiples of 16 below
        (32, 288, 64, 32),  # within the volume whole: one GEMM
        (64, 576, 48, 64),  # 48 columns: the small kernel's slow width, not split
        (64, 1152, 64, 64),  # not even 16 rows fit: not split
        (25, 625, 64, 25),  # exactly at the volume: within it, not split
    ],
)
def test_gemm_rows_split_w_where_a_block_passes_the_volume(k, depth, columns, expected):
    assert gpucnn.cpu.conv.SMALL_GEMM_VOLUME == 10**6
    assert gpucnn.cpu.conv.GEMM_ROW_BLOCK == 16 and gpucnn.cpu.conv.GEMM_COLUMN_ALIGN == 32
    assert gpucnn.cpu.conv._gemm_rows(k, depth, columns) == expected


def test_a_block_past_the_volume_keeps_its_width_where_w_can_be_split():
    # CIFAR 64->64 at 8x8: 8 images (64 columns) in 16-row GEMMs, not 2 images in one GEMM
    assert gpucnn.cpu.conv._images_per_block(32, 64, 576, 8) == 8
    # w cannot be split, and no block of 16 columns or more fits: one block of all 32
    assert gpucnn.cpu.conv._images_per_block(32, 64, 1152, 8) == 32


@pytest.mark.parametrize("rows", [1, 2, 7, 9])
def test_gemm_row_blocks_match_one_gemm(rows):
    a = shuffled_linspace((9, 5), np.float64, seed=0)
    b = shuffled_linspace((2, 3, 5, 17), np.float64, seed=1)
    blocked = gpucnn.cpu.conv._matmul_row_blocks(a, b, rows)
    assert blocked.shape == (2, 3, 9, 17)
    assert rel_error(blocked, np.matmul(a, b)) < 1e-14


@pytest.mark.parametrize("columns", [1, 2, 7])
def test_gemm_column_blocks_match_one_gemm(columns, monkeypatch):
    # Few-channel GEMMs run in column blocks (OpenBLAS's unpacked small-GEMM path); uneven
    # blocks, one column wide at the least, must give what one GEMM gives.
    a = shuffled_linspace((3, 5), np.float64, seed=0)
    b = shuffled_linspace((2, 5, 17), np.float64, seed=1)
    monkeypatch.setattr(gpucnn.cpu.conv, "SMALL_GEMM_VOLUME", 3 * 5 * columns)
    monkeypatch.setattr(gpucnn.cpu.conv, "MIN_BLOCK_COLUMNS", 1)
    blocked = gpucnn.cpu.conv._matmul_small_blocks(a, b)
    assert blocked.shape == (2, 3, 17)
    assert rel_error(blocked, np.matmul(a, b)) < 1e-14


@pytest.mark.parametrize("columns", [1, 2, 7])
def test_gemm_depth_blocks_sum_like_one_gemm(columns, monkeypatch):
    # The filter gradient's GEMMs split their depth the same way and add the blocks.
    a = shuffled_linspace((4, 3, 17), np.float64, seed=2)
    b = shuffled_linspace((4, 17, 5), np.float64, seed=3)
    monkeypatch.setattr(gpucnn.cpu.conv, "SMALL_GEMM_VOLUME", 3 * 5 * columns)
    monkeypatch.setattr(gpucnn.cpu.conv, "MIN_BLOCK_COLUMNS", 1)
    summed = gpucnn.cpu.conv._sum_of_products(a, b)
    assert summed.shape == (3, 5)
    assert rel_error(summed, np.einsum("pmd,pdn->mn", a, b)) < 1e-14


@pytest.mark.parametrize("dy_k_last_min_depth", [1, 1 << 30])
def test_filter_gradient_is_the_same_from_either_dy_layout(dy_k_last_min_depth, monkeypatch):
    x, w, _ = _inputs(CASES[2], np.float64)
    geometry = _geometry(CASES[2])
    dy = shuffled_linspace(ops.conv2d_forward(x, w, **geometry).shape, np.float64, seed=5)
    monkeypatch.setattr(gpucnn.cpu.conv, "DY_K_LAST_MIN_DEPTH", dy_k_last_min_depth)
    _, dw, _ = ops.conv2d_backward(dy, x, w, with_bias=False, **geometry)
    expected = numerical_gradient(lambda w_: ops.conv2d_forward(x, w_, **geometry) * dy, w)
    assert rel_error(dw, expected) < 1e-8


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_geometry_matches_the_loop_reference(data):
    # Every combination the row lowering distinguishes: rows shared between output rows or
    # not (dilation, stride past R), padding, asymmetric pairs, chunk edges anywhere, and dx
    # by the transposed convolution or by input rows.
    draw = data.draw
    x_shape, w_shape, geometry = draw_conv_case(draw)
    chunk_bytes, seed = draw(st.integers(1, 4096)), draw(st.integers(0, 1000))
    gemm_volume = draw(st.integers(1, 4096))  # GEMM column blocks of any width, or none
    dy_k_last_min_depth = draw(st.sampled_from([1, 1 << 30]))  # both layouts of dw's dy
    rows_max_channels = draw(st.sampled_from([0, 1 << 30]))  # both ways of computing dx
    block_columns = draw(st.integers(1, 64))  # the forward's GEMM blocks of whole images
    row_block, column_align = draw(st.integers(1, 3)), draw(st.integers(1, 4))  # w's rows split
    # Positive values: a sum that cancels to rounding noise has no meaningful relative error.
    x = shuffled_linspace(x_shape, np.float64, seed, low=0.1, high=1.1)
    w = shuffled_linspace(w_shape, np.float64, seed + 1, low=0.1, high=1.1)
    b = shuffled_linspace(w_shape[:1], np.float64, seed + 2, low=0.1, high=1.1)
    dy_seed = seed + 3
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpucnn.cpu._windows, "CHUNK_BYTES", chunk_bytes)
        patch.setattr(gpucnn.cpu.conv, "SMALL_GEMM_VOLUME", gemm_volume)
        patch.setattr(gpucnn.cpu.conv, "MIN_BLOCK_COLUMNS", 1)
        patch.setattr(gpucnn.cpu.conv, "DY_K_LAST_MIN_DEPTH", dy_k_last_min_depth)
        patch.setattr(gpucnn.cpu.conv, "ROWS_MAX_CHANNELS", rows_max_channels)
        patch.setattr(gpucnn.cpu.conv, "BLOCK_COLUMNS", block_columns)
        patch.setattr(gpucnn.cpu.conv, "BLOCK_MIN_DEPTH", 0)
        patch.setattr(gpucnn.cpu.conv, "GEMM_ROW_BLOCK", row_block)
        patch.setattr(gpucnn.cpu.conv, "GEMM_COLUMN_ALIGN", column_align)
        y = ops.conv2d_forward(x, w, b, **geometry)
        dy = shuffled_linspace(y.shape, np.float64, dy_seed, low=0.1, high=1.1)
        dx, dw, db = ops.conv2d_backward(dy, x, w, **geometry)
    assert rel_error(y, conv2d_loop(x, w, b, **geometry)) < 1e-12
    # The backward is the forward's adjoint: conv(x, w) is linear in x and in w, so
    # <dy, conv(x, w)> = <dx, x> = <dw, w>.
    total = float((dy * (y - b[:, None, None])).sum())
    assert abs(float((dx * x).sum()) - total) <= 1e-10 * (1 + abs(total))
    assert abs(float((dw * w).sum()) - total) <= 1e-10 * (1 + abs(total))
    assert np.allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_rows_no_window_reaches_get_zero_gradient():
    # H = 8, R = 3, stride 2, no padding: windows cover rows 0..6, so row 7 is never read.
    x = shuffled_linspace((1, 1, 8, 8))
    w = shuffled_linspace((1, 1, 3, 3), seed=1, low=0.5, high=1.5)  # no zero weights
    y = ops.conv2d_forward(x, w, stride=2)
    assert y.shape == (1, 1, 3, 3)
    dx, _, _ = ops.conv2d_backward(np.ones_like(y), x, w, stride=2)
    assert np.all(dx[..., 7, :] == 0) and np.all(dx[..., :, 7] == 0)
    assert np.all(dx[..., :7, :7] != 0)


@pytest.mark.parametrize(
    ("tap", "geometry"),
    [
        ((0, 0), dict(stride=2, padding=1)),
        ((1, 2), dict(stride=2, padding=1)),
        ((2, 0), dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2))),
    ],
)
def test_a_nan_weight_reaches_exactly_the_elements_its_tap_reads(tap, geometry):
    # A strided dx adds w^T dy into the stride's phases at a pitch wider than dy's rows: the
    # extra columns are w^T 0, which is NaN for a NaN weight. They must not reach dx.
    x = shuffled_linspace((2, 3, 9, 8))
    w = shuffled_linspace((4, 3, 3, 3), seed=1)
    y = ops.conv2d_forward(x, w, **geometry)
    dy = shuffled_linspace(y.shape, seed=2)
    clean, _, _ = ops.conv2d_backward(dy, x, w, **geometry)
    w[1, 2, tap[0], tap[1]] = np.nan
    dx, _, _ = ops.conv2d_backward(dy, x, w, **geometry)
    # the elements of channel 2 that tap reads: those where a one-hot x moves y
    reached = np.zeros(x.shape[2:], dtype=bool)
    one_tap = np.zeros((1, 1, 3, 3))
    one_tap[0, 0, tap[0], tap[1]] = 1.0
    for h, col in np.ndindex(*x.shape[2:]):
        one_hot = np.zeros((1, 1, *x.shape[2:]))
        one_hot[0, 0, h, col] = 1.0
        reached[h, col] = ops.conv2d_forward(one_hot, one_tap, **geometry).any()
    assert reached.any() and not reached.all()
    expected_nan = np.zeros(x.shape, dtype=bool)
    expected_nan[:, 2] = reached
    assert np.array_equal(np.isnan(dx), expected_nan)
    assert np.array_equal(dx[~expected_nan], clean[~expected_nan])


def test_float32_in_float32_out_and_deterministic():
    x, w, b = _inputs(CASES[1], np.float32)
    first = ops.conv2d_forward(x, w, b, stride=2, padding=1)
    again = ops.conv2d_forward(x, w, b, stride=2, padding=1)
    assert first.dtype == np.float32 and np.array_equal(first, again)
    grads = ops.conv2d_backward(first, x, w, stride=2, padding=1)
    grads_again = ops.conv2d_backward(first, x, w, stride=2, padding=1)
    assert all(g.dtype == np.float32 for g in grads)
    assert all(np.array_equal(a, b_) for a, b_ in zip(grads, grads_again, strict=True))


def test_non_contiguous_inputs_give_the_same_answer():
    x, w, b = _inputs(CASES[0], np.float64)
    x_strided = np.asfortranarray(x)
    assert rel_error(ops.conv2d_forward(x_strided, w, b), ops.conv2d_forward(x, w, b)) < 1e-15


X = np.zeros((2, 3, 6, 6), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: ops.conv2d_forward(X[0], W), ValueError, "x must be 4-D"),
        (lambda: ops.conv2d_forward(X, W[:, :2]), ValueError, "input channels"),
        (lambda: ops.conv2d_forward(X[:, :0], W[:, :0]), ValueError, "x must have at least one"),
        (
            lambda: ops.conv2d_forward(X[:, :, :0], W, padding=2),
            ValueError,
            "channel, row and column",
        ),
        (lambda: ops.conv2d_forward(X, W[:0]), ValueError, "w must have positive K"),
        (lambda: ops.conv2d_forward(X, np.zeros((1, 3, 9, 9), np.float32)), ValueError, "padded"),
        (lambda: ops.conv2d_forward(X, W, stride=0), ValueError, "stride"),
        (lambda: ops.conv2d_forward(X, W, stride=-1), ValueError, "stride"),
        (lambda: ops.conv2d_forward(X, W, stride=(1, 2, 3)), ValueError, "stride"),
        (lambda: ops.conv2d_forward(X, W, stride=True), TypeError, "stride"),
        (lambda: ops.conv2d_forward(X, W, stride=1.5), TypeError, "stride"),
        (lambda: ops.conv2d_forward(X, W, padding=-1), ValueError, "padding"),
        # past int32, which the kernels index with (it was an OverflowError from NumPy)
        (lambda: ops.conv2d_forward(X, W, stride=2**70), ValueError, "stride must be < 2"),
        (lambda: ops.conv2d_forward(X, W, padding=(0, 2**31)), ValueError, "padding must be <"),
        (lambda: ops.conv2d_forward(X, W, padding=10**9), ValueError, "padding=.*past any memory"),
        (lambda: ops.conv2d_forward(X, W, dilation=0), ValueError, "dilation"),
        (lambda: ops.conv2d_forward(X.astype(np.int32), W), TypeError, "x must be float32"),
        (lambda: ops.conv2d_forward(X, W.astype(np.float64)), TypeError, "w has dtype"),
        (lambda: ops.conv2d_forward(X.tolist(), W), TypeError, "x must be a numpy"),
        (lambda: ops.conv2d_forward(X, W, np.zeros(3, np.float32)), ValueError, "b must have"),
        (lambda: ops.conv2d_forward(X, W, [0.0] * 4), TypeError, "b must be a numpy"),
        (
            lambda: ops.conv2d_backward(np.zeros((2, 4, 3, 3), np.float32), X, W),
            ValueError,
            "dy must have shape",
        ),
        (lambda: ops.conv2d_backward(np.zeros((2, 4, 4, 4)), X, W), TypeError, "dy has dtype"),
        (
            lambda: ops.conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), X, W, with_bias=1),
            TypeError,
            "with_bias",
        ),
        (
            lambda: ops.conv2d_backward(
                np.zeros((2, 4, 4, 4), np.float32), X, W, need_input_grad=np.array([1, 0])
            ),
            TypeError,
            "need_input_grad must be a bool",
        ),
    ],
)
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_gradients_can_be_skipped():
    x, w, _ = _inputs(CASES[0], np.float64)
    dy = shuffled_linspace(ops.conv2d_forward(x, w).shape, np.float64, seed=3)
    full = ops.conv2d_backward(dy, x, w)
    only_dw = ops.conv2d_backward(dy, x, w, with_bias=False, need_input_grad=False)
    only_dx = ops.conv2d_backward(dy, x, w, need_weight_grad=False)
    assert only_dw[0] is None and only_dw[2] is None and np.array_equal(only_dw[1], full[1])
    assert only_dx[1] is None and np.array_equal(only_dx[0], full[0])
    with pytest.raises(TypeError, match="need_input_grad"):
        ops.conv2d_backward(dy, x, w, need_input_grad=0)


def test_window_cache_keeps_bools_out_and_takes_lists():
    # conv_window and pool_window are memoised (every training step asks for the same ones)
    from gpucnn._shapes import conv_window, pool_window

    assert conv_window(3, 1, 0, 1) is conv_window(3, 1, 0, 1)
    with pytest.raises(TypeError, match="stride"):
        conv_window(3, True, 0, 1)  # equal to 1 and hashed alike, yet refused
    assert conv_window([3, 3], [1, 1], 0, 1) == conv_window(3, 1, 0, 1)
    assert pool_window(2, None, 0, False) is pool_window(2, None, 0, False)
    with pytest.raises(TypeError, match="ceil_mode"):
        pool_window(2, None, 0, 0)


def test_numpy_integers_are_window_sizes_like_ints():
    # A size read from an array's shape or computed in NumPy is an np.int64, not an int.
    from gpucnn._shapes import conv_window

    sizes = (np.int64(3), np.int32(2), np.uint8(1), np.int16(2))
    assert conv_window(*sizes) == conv_window(3, 2, 1, 2)
    assert conv_window((np.int64(3), 3), (2, np.int8(2)), 1, 2) == conv_window(3, 2, 1, 2)
    with pytest.raises(TypeError, match="kernel_size"):
        conv_window(np.float64(3), 2, 1, 2)
    with pytest.raises(TypeError, match="stride"):
        conv_window(3, np.bool_(True), 1, 2)
