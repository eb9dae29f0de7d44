"""cuda/conv2d_winograd.cu, F(2x2, 3x3) (GPUCNN_CONV_ALGORITHM=winograd) and F(4x4, 3x3)
(winograd4; "auto" takes one of them on large layers), against the NumPy path in float64,
on the emulator (and on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn import ops
from gpucnn._shapes import conv_window
from gpucnn.cuda import conv as cuda_conv
from gpucnn.cuda._gemm import split_reduction
from tests.helpers import record_launches, rel_error

# (N, C, H, W, K, padding): output sizes odd and even (partial 2x2 tiles at the bottom and
# right), padding 0, 1, 2 and an asymmetric pair, C a multiple of 4 or not (U's vector loads),
# K and C on both sides of the narrow tile (64 rows) and past the wide one (128), a single
# image, and more tiles than one 128-column GEMM tile.
CASES = [
    (2, 3, 7, 7, 4, 1),
    (1, 4, 6, 5, 3, 0),
    (2, 5, 9, 8, 6, 2),
    (1, 8, 5, 6, 70, (2, 0)),
    (1, 70, 5, 6, 130, 1),
    (3, 2, 17, 13, 5, 1),
]
# Winograd's transforms round a little more than a direct sum, F(4x4, 3x3)'s larger
# coefficients more than F(2x2, 3x3)'s (measured on these cases, float32: up to 4e-7 and
# 2e-6 relative; float64: 1e-15 and 4e-15).
TOLERANCE = {2: {np.float32: 2e-6, np.float64: 1e-13}, 4: {np.float32: 1e-5, np.float64: 1e-13}}


@pytest.fixture(params=[2, 4], ids=["F2x2", "F4x4"])
def tile(request):
    """The output tile side m of F(m x m, 3x3)."""
    return request.param


@pytest.fixture
def winograd(monkeypatch, tile):
    """Winograd F(tile x tile, 3x3) on, and the names of the kernels launched (without their
    template arguments), in order."""
    algorithm = {m: name for name, m in cuda_conv.WINOGRAD_TILES.items()}[tile]
    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, algorithm)
    return record_launches(monkeypatch, cuda_conv)


def _transform(kind: str, tile: int) -> str:
    """The name of F(tile x tile, 3x3)'s transform kernel ``kind``."""
    return f"winograd{'' if tile == 2 else tile}_{kind}"


def _inputs(case, seed=0):
    n, c, h, w, k, _ = case
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, c, h, w)),
        rng.standard_normal((k, c, 3, 3)),
        rng.standard_normal(k),
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_backward_data_match_numpy(backend, winograd, tile, case, dtype):
    x, w, b = _inputs(case)
    padding = case[-1]
    y = ops.conv2d_forward(x, w, b, padding=padding)  # float64 NumPy reference
    dy = np.random.default_rng(1).standard_normal(y.shape)
    expected = ops.conv2d_backward(dy, x, w, padding=padding)
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    got_y = backend.run(ops.conv2d_forward, x, w, b, padding=padding)
    got = backend.run(ops.conv2d_backward, dy, x, w, padding=padding)
    assert got_y.dtype == dtype and rel_error(got_y, y) < TOLERANCE[tile][dtype]
    for name, value, reference in zip(("dx", "dw", "db"), got, expected, strict=True):
        assert value.dtype == dtype and rel_error(value, reference) < TOLERANCE[tile][dtype], name
    # all three directions went through F(tile x tile, 3x3)'s own transforms
    assert winograd.count(_transform("output_transform", tile)) == 2  # forward, backward-data
    assert winograd.count(_transform("filter_gradient", tile)) == 1
    assert not [name for name in winograd if name.startswith("conv2d_") and "bias" not in name]


@pytest.mark.parametrize("images_per_pass", [1, 2])
def test_passes_over_the_batch_match_one_pass(
    backend, winograd, tile, monkeypatch, images_per_pass
):
    # The workspace cap splits the batch into passes (the last one shorter): no seams, and
    # backward-filter sums the passes.
    case = (5, 3, 6, 7, 4, 1)
    x, w, b = _inputs(case)
    expected = ops.conv2d_forward(x, w, b, padding=1)
    dy = np.random.default_rng(1).standard_normal(expected.shape)
    expected_grads = ops.conv2d_backward(dy, x, w, padding=1)
    tiles = -(-6 // tile) * -(-7 // tile)  # per image
    per_image = (tile + 2) ** 2 * (3 + 4) * tiles * 8
    monkeypatch.setattr(cuda_conv, "WINOGRAD_WORKSPACE_BYTES", images_per_pass * per_image)
    assert rel_error(backend.run(ops.conv2d_forward, x, w, b, padding=1), expected) < 1e-13
    grads = backend.run(ops.conv2d_backward, dy, x, w, padding=1)
    for name, value, reference in zip(("dx", "dw", "db"), grads, expected_grads, strict=True):
        assert rel_error(value, reference) < 1e-13, name
    passes = -(-5 // images_per_pass)
    assert winograd.count(_transform("input_transform", tile)) == 3 * passes  # each direction
    assert winograd.count("winograd_gemm_narrow") == 3 * passes
    # E sums every pass but the last, whose splits the filter transform's adjoint sums
    assert winograd.count("winograd_sum_splits") == passes - 1


@pytest.mark.parametrize("accumulate", [False, True])
def test_the_filter_gradient_sums_the_last_splits_as_the_split_sum_would(backend, tile, accumulate):
    # *_filter_gradient adds the last pass's splits to E (the passes before) as it reads
    # them: the bits of winograd_sum_splits storing E and the adjoint reading it alone.
    points, c, k, splits = (tile + 2) ** 2, 3, 5, 3
    rng = np.random.default_rng(3)  # float32 values whose sums round: the order shows
    partial = rng.standard_normal((splits, points, c, k)).astype(np.float32)
    e = rng.standard_normal((points, c, k)).astype(np.float32)

    def filter_gradient(partial, e, splits, accumulate):
        dw = cuda_conv.empty(partial, (k, c, 3, 3), partial.dtype)
        cuda_conv.launch(
            cuda_conv._transform("filter_gradient", tile, partial),
            cuda_conv.grid_stride_blocks(k * c, cuda_conv.THREADS),
            cuda_conv.THREADS,
            (partial, e if accumulate else None, dw, k, c, splits, int(accumulate)),
        )
        return dw

    def summed_first(partial, e):
        cuda_conv.launch(
            cuda_conv.get_kernel(cuda_conv.WINOGRAD_SOURCE, "winograd_sum_splits", partial),
            cuda_conv.grid_stride_blocks(e.size, cuda_conv.THREADS),
            cuda_conv.THREADS,
            (partial, e, splits, e.size, int(accumulate)),
        )
        return filter_gradient(e, None, 1, False)

    fused = backend.run(filter_gradient, partial, e, splits, accumulate)
    assert np.array_equal(fused, backend.run(summed_first, partial, e.copy()))  # (E stored)
    # and it is G^T E G: against the float64 sum through the same adjoint
    total = partial.astype(np.float64).sum(axis=0) + (e if accumulate else 0)
    assert rel_error(fused, backend.run(filter_gradient, total[None], None, 1, False)) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_filter_split_reduction_is_exact_and_deterministic(backend, winograd, tile, dtype):
    # 4 images of 32 x 32 outputs: 1024 tiles of 2x2 (split in eight over MIN_SPLIT = 128)
    # or 256 of 4x4 (split in two), with the GEMM's grid far below TARGET_BLOCKS.
    x, w, _ = _inputs((4, 2, 32, 32, 3, 1))
    dy = np.random.default_rng(2).standard_normal((4, 3, 32, 32))
    expected = ops.conv2d_backward(dy, x, w, padding=1)[1]
    x, w, dy = x.astype(dtype), w.astype(dtype), dy.astype(dtype)
    first = backend.run(ops.conv2d_backward, dy, x, w, padding=1)[1]
    again = backend.run(ops.conv2d_backward, dy, x, w, padding=1)[1]
    assert rel_error(first, expected) < TOLERANCE[tile][dtype] and np.array_equal(first, again)
    assert split_reduction(4 * (32 // tile) ** 2, (tile + 2) ** 2)[0] == {2: 8, 4: 2}[tile]


def test_an_empty_batch_gives_zero_filter_gradient(backend, winograd):
    x, w = np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3))
    dx, dw, db = backend.run(ops.conv2d_backward, np.zeros((0, 3, 5, 5)), x, w, padding=1)
    assert dx.shape == (0, 2, 5, 5) and np.array_equal(dw, np.zeros_like(w))
    assert np.array_equal(db, np.zeros(3))


def test_same_bits_on_every_run(backend, winograd):
    x, w, b = (a.astype(np.float32) for a in _inputs(CASES[2]))
    first = backend.run(ops.conv2d_forward, x, w, b, padding=2)
    assert np.array_equal(first, backend.run(ops.conv2d_forward, x, w, b, padding=2))


@pytest.mark.parametrize(
    "w_shape, geometry",
    [
        ((3, 2, 5, 5), dict(padding=2)),  # not 3x3
        ((3, 2, 3, 3), dict(stride=2, padding=1)),
        ((3, 2, 3, 3), dict(dilation=2, padding=2)),
        ((3, 2, 3, 3), dict(padding=3)),  # backward-data's padding would be negative
        ((3, 2, 3, 2), dict(padding=1)),
    ],
)
def test_other_layers_keep_the_implicit_gemm(backend, winograd, w_shape, geometry):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 2, 9, 9)), rng.standard_normal(w_shape)
    y = ops.conv2d_forward(x, w, **geometry)
    assert rel_error(backend.run(ops.conv2d_forward, x, w, **geometry), y) < 1e-13
    assert not [name for name in winograd if name.startswith("winograd")]
    assert "conv2d_forward" in winograd or "conv2d_forward_narrow" in winograd


def test_the_default_keeps_small_layers_on_the_implicit_gemm(backend, monkeypatch):
    monkeypatch.delenv(cuda_conv.ALGORITHM_VARIABLE, raising=False)
    launched = record_launches(monkeypatch, cuda_conv)
    x, w, b = _inputs(CASES[0])
    y = ops.conv2d_forward(x, w, b, padding=1)
    assert rel_error(backend.run(ops.conv2d_forward, x, w, b, padding=1), y) < 1e-13
    assert launched and not [name for name in launched if name.startswith("winograd")]


# (x shape, K, padding, stride, the tile "auto" picks, 0 for the GEMM): layers the rule was
# measured on (ResNet-20, the CIFAR CNN, ResNet-50 / VGG-16), each bound crossed by one step.
AUTO_CASES = [
    ((128, 16, 32, 32), 16, 1, 1, 0),  # ResNet-20: few channels, 0.6 GFLOP
    ((128, 64, 8, 8), 64, 1, 1, 0),  # enough channels, too little work
    ((128, 32, 32, 32), 32, 1, 1, 4),  # the CIFAR CNN's 32 -> 32: 2.4 GFLOP
    ((32, 64, 56, 56), 64, 1, 1, 4),  # ResNet-50's first 3x3 stage
    ((32, 512, 14, 14), 512, 1, 1, 4),
    ((32, 512, 7, 7), 512, 1, 1, 2),  # 7x7 outputs: F(2x2)
    ((32, 512, 8, 7), 512, 1, 1, 2),  # 7 columns
    ((32, 512, 8, 8), 512, 1, 1, 4),  # 8x8: F(4x4) again
    ((32, 31, 56, 56), 64, 1, 1, 0),  # one input channel short
    ((32, 64, 56, 56), 31, 1, 1, 0),  # one output channel short
    ((32, 64, 56, 56), 64, 1, 2, 0),  # strided: Winograd does not apply
    ((32, 64, 56, 56), 64, 3, 1, 0),  # padding past 2
]


@pytest.mark.parametrize(("x_shape", "k", "padding", "stride", "expected"), AUTO_CASES)
def test_auto_picks_winograd_where_it_was_measured_faster(
    monkeypatch, x_shape, k, padding, stride, expected
):
    monkeypatch.delenv(cuda_conv.ALGORITHM_VARIABLE, raising=False)
    window = conv_window((3, 3), stride, padding, 1)
    out_hw = window.output_shape(*x_shape[2:])
    w_shape = (k, x_shape[1], 3, 3)
    assert cuda_conv.winograd_tile(x_shape, w_shape, window, out_hw) == expected
    applies = stride == 1 and padding <= 2
    for forced, tile in (("gemm", 0), ("winograd", 2 * applies), ("winograd4", 4 * applies)):
        monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, forced)
        assert cuda_conv.winograd_tile(x_shape, w_shape, window, out_hw) == tile


@pytest.mark.parametrize("value", ["fft", "1", "winograd2", "winograd6"])
def test_an_unknown_algorithm_is_named(value, monkeypatch):
    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, value)
    with pytest.raises(ValueError, match=cuda_conv.ALGORITHM_VARIABLE):
        cuda_conv.conv_algorithm()
    # named on every layer, also where Winograd could not apply (5x5)
    with pytest.raises(ValueError, match=cuda_conv.ALGORITHM_VARIABLE):
        cuda_conv.winograd_tile((1, 1, 9, 9), (1, 1, 5, 5), conv_window(5, 1, 0, 1), (5, 5))
    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, " Winograd ")
    assert cuda_conv.conv_algorithm() == "winograd"
    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, "")
    assert cuda_conv.conv_algorithm() == "auto"


@pytest.mark.gpu
@pytest.mark.parametrize(
    "case",
    [
        (32, 64, 56, 56, 64, 1),  # ResNet-50's first 3x3 stage
        (32, 256, 28, 28, 256, 1),
        (8, 512, 14, 14, 512, 1),
        (4, 3, 33, 31, 16, 1),
    ],
)
def test_realistic_sizes_on_the_gpu(gpu_backend, winograd, case):
    x, w, b = (a.astype(np.float32).astype(np.float64) for a in _inputs(case))
    y = ops.conv2d_forward(x, w, b, padding=1)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32).astype(np.float64)
    expected = ops.conv2d_backward(dy, x, w, padding=1, with_bias=False)[:2]
    f32 = [a.astype(np.float32) for a in (x, w, b, dy)]
    got_y = gpu_backend.run(ops.conv2d_forward, *f32[:3], padding=1)
    got = gpu_backend.run(ops.conv2d_backward, f32[3], *f32[:2], padding=1, with_bias=False)[:2]
    assert rel_error(got_y, y) < 1e-5
    for name, value, reference in zip(("dx", "dw"), got, expected, strict=True):
        assert rel_error(value, reference) < 1e-5, name
    again = gpu_backend.run(ops.conv2d_backward, f32[3], *f32[:2], padding=1, with_bias=False)
    assert all(np.array_equal(a, b_) for a, b_ in zip(got, again[:2], strict=True))
