"""cuda/conv2d_direct.cu (GPUCNN_CONV_ALGORITHM=direct, and "auto"'s backward-data of strided
layers of few channels): forward, backward-filter and backward-data (at a stride by phases),
against the NumPy path in float64, on the emulator (and on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpucnn import ops
from gpucnn._shapes import conv_window
from gpucnn.cuda import conv as cuda_conv
from tests.helpers import (
    check_drawn_conv_case,
    conv_case_geometry,
    conv_case_inputs,
    record_launches,
    rel_error,
)

# (N, C, H, W, K, R, S, stride, padding, dilation), with the plan each gets (groups of 8
# output channels, warps of pixels, bands of output rows, input channels staged at a time):
# K under one group and K = 70 past a block's 64 channels (a second, mostly empty, column of
# blocks); C past the 8 staged at a time; one to four warps of pixels a group; outputs of
# several bands, the last one short; 5x5 and 1x1 kernels and an asymmetric one; stride 2
# (backward-data by phases, below); dilation, alone and with a stride (backward-data by the
# GEMM); padding past the kernel's reach, so backward-data's transposed padding is negative;
# a single image.
CASES = [
    (2, 3, 7, 9, 5, 3, 3, 1, 1, 1),
    (2, 6, 14, 14, 16, 5, 5, 1, 0, 1),  # LeNet's conv2
    (1, 10, 6, 5, 70, 3, 3, 1, 1, 1),
    (1, 3, 17, 16, 64, 3, 3, 1, 1, 1),  # 128 pixels a block: bands of 8, 8 and 1 rows
    (2, 3, 9, 8, 4, 3, 3, 2, 1, 1),
    (2, 2, 9, 9, 3, 3, 3, 1, 2, 2),
    (1, 2, 5, 5, 3, 1, 1, 1, 1, 1),
    (2, 3, 8, 7, 9, 3, 2, (1, 2), (1, 0), (1, 2)),
    (1, 2, 20, 20, 8, 3, 3, 1, 1, 1),  # four warps of pixels, one band
    (1, 2, 40, 30, 12, 3, 3, 1, 1, 1),  # four warps a group, bands of 17, 17 and 6 rows
    # backward-data by phases: 3x3 at stride 2 (phases of 2x2, 2x1, 1x2 and 1x1 taps), odd
    # sizes (phases of unequal sizes); 5x5 at stride 3 with padding 2; a 1x1 filter at
    # stride 2 (three phases without taps: zeros); padding past the kernel's reach; strides
    # (1, 2) and (3, 1)
    (2, 3, 11, 9, 10, 3, 3, 2, 1, 1),
    (1, 4, 13, 14, 6, 5, 5, 3, 2, 1),
    (2, 3, 7, 6, 5, 1, 1, 2, 0, 1),
    (1, 2, 8, 9, 3, 2, 2, 2, 2, 1),
    (1, 3, 9, 10, 4, 3, 3, (1, 2), 1, 1),
    (1, 3, 10, 5, 4, 3, 2, (3, 1), (2, 1), 1),
]
TOLERANCE = {np.float32: 1e-6, np.float64: 1e-13}


@pytest.fixture
def direct(monkeypatch):
    """The direct kernel on, and the names of the kernels launched, in order."""
    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, "direct")
    return record_launches(monkeypatch, cuda_conv)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_direction_matches_numpy(backend, direct, case, dtype):
    x, w, b = conv_case_inputs(case)
    geometry = conv_case_geometry(case)
    y = ops.conv2d_forward(x, w, b, **geometry)  # float64 NumPy reference
    dy = np.random.default_rng(1).standard_normal(y.shape)
    expected = ops.conv2d_backward(dy, x, w, **geometry)
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    got_y = backend.run(ops.conv2d_forward, x, w, b, **geometry)
    assert got_y.dtype == dtype and rel_error(got_y, y) < TOLERANCE[dtype]
    assert direct == ["conv2d_direct"]
    got = backend.run(ops.conv2d_backward, dy, x, w, **geometry)
    for name, value, reference in zip(("dx", "dw", "db"), got, expected, strict=True):
        assert value.dtype == dtype and rel_error(value, reference) < TOLERANCE[dtype], name
    # dx: at stride 1 the kernel itself; at a stride, one launch per phase; with a stride
    # and dilation both, the implicit GEMM's gather
    strided, dilated = geometry["stride"] != 1, geometry["dilation"] != 1
    assert direct.count("conv2d_direct") == 1 + (not strided)
    assert ("conv2d_direct_phase" in direct) == (strided and not dilated)
    assert any(name.startswith("conv2d_backward_data") for name in direct) == (strided and dilated)
    # filters of few taps keep their own reduction (conv2d.cu); the others take this one
    few_taps = w.size <= cuda_conv.PER_TAP_FILTER_TAPS
    assert ("conv2d_backward_filter_per_tap" in direct) == few_taps
    assert ("conv2d_direct_backward_filter" in direct) == (not few_taps)


def test_a_strided_backward_data_is_one_launch_planned_for_its_largest_phase(backend, direct):
    # 3x3 at stride 2, padding 1, on 9 x 8 inputs: planned for 5 x 4 pixels (phase (0, 0)'s)
    # and 2 x 2 taps (phase (1, 1)'s); a single input row (column) leaves phases (1, *)
    # ((*, 1)) without pixels
    cases = (
        ((2, 3, 9, 8), (3, 3), 1),
        ((1, 3, 1, 5), (1, 3), (0, 1)),
        ((1, 3, 5, 1), (3, 1), (1, 0)),
    )
    for x_shape, kernel, padding in cases:
        x, w = np.random.default_rng(0).standard_normal(x_shape), np.ones((4, 3, *kernel))
        stride = 2
        dy = np.random.default_rng(1).standard_normal(
            ops.conv2d_forward(x, w, stride=stride, padding=padding).shape
        )
        expected = ops.conv2d_backward(dy, x, w, stride=stride, padding=padding)[0]
        got = backend.run(ops.conv2d_backward, dy, x, w, stride=stride, padding=padding)[0]
        assert rel_error(got, expected) < 1e-13
    assert direct.count("conv2d_direct_phase") == 3
    window = conv_window(3, 2, 1, 1)
    plan = cuda_conv.direct_phase_plan((4, 3, 3, 3), (9, 8), window, 8)
    assert plan == cuda_conv.direct_plan(4, 3, (5, 4), (2, 2), (1, 1), (1, 1), 8)


# (C, K, stride, dilation, whether "auto" runs backward-data by phases): ResNet-20's 16 -> 32
# at stride 2 and ResNet-50's widest strided layer, where the rule was measured, and each
# bound crossed by one step.
AUTO_PHASE_CASES = [
    (16, 32, 2, 1, True),
    (256, 256, 2, 1, True),
    (257, 256, 2, 1, False),  # one input channel past the bound
    (16, 257, 2, 1, False),  # one output channel past it
    (3, 8, (1, 2), 1, True),  # strided along one axis
    (16, 32, 1, 1, False),  # stride 1: the GEMM (or Winograd)
    (16, 32, 2, 2, False),  # strided and dilated: no phases
]


@pytest.mark.parametrize(("c", "k", "stride", "dilation", "expected"), AUTO_PHASE_CASES)
def test_auto_runs_strided_backward_data_of_few_channels_by_phases(
    c, k, stride, dilation, expected
):
    window = conv_window(3, stride, 1, dilation)
    w_shape = (k, c, 3, 3)
    assert cuda_conv.takes_direct_phases(w_shape, window, "auto") == expected
    phased = window.stride != (1, 1) and window.dilation == (1, 1)
    assert cuda_conv.takes_direct_phases(w_shape, window, "direct") == phased
    for other in ("gemm", "winograd", "winograd4"):
        assert not cuda_conv.takes_direct_phases(w_shape, window, other)


@pytest.mark.parametrize(("c", "k", "phases"), [(4, 6, True), (257, 6, False)])
def test_auto_strided_backward_data_launches_what_the_rule_says(backend, monkeypatch, c, k, phases):
    monkeypatch.delenv(cuda_conv.ALGORITHM_VARIABLE, raising=False)
    launched = record_launches(monkeypatch, cuda_conv)
    x, w, _ = conv_case_inputs((2, c, 9, 8, k, 3, 3))
    dy = np.random.default_rng(1).standard_normal(
        ops.conv2d_forward(x, w, stride=2, padding=1).shape
    )
    expected = ops.conv2d_backward(dy, x, w, stride=2, padding=1, with_bias=False)
    x, w, dy = (a.astype(np.float32) for a in (x, w, dy))
    got = backend.run(ops.conv2d_backward, dy, x, w, stride=2, padding=1, with_bias=False)
    assert rel_error(got[0], expected[0]) < 1e-6 and rel_error(got[1], expected[1]) < 1e-6
    assert ("conv2d_direct_phase" in launched) == phases
    assert any(name.startswith("conv2d_backward_data") for name in launched) == (not phases)
    assert "conv2d_direct" not in launched  # forward and filter gradient keep the GEMM
    assert not any(name.startswith("conv2d_direct_backward_filter") for name in launched)


# (N, C, H, W, K, stride, shared memory in elements, TARGET_BLOCKS): 3x3 filters, padding
# 1, outputs of 9 rows. Two groups of channels and threads past them idle (C = 20: 45
# column threads of 4 taps), one split per image; 64 channels, whose 8 groups cover 14 input
# channels a block (C = 21: blocks of 11 and 10), their dy filling shared memory at bands of 7
# rows (then 2), all six units in one split; K = 70: two blocks of output channels, bands of
# 2 rows (then 1), ten splits; stride 2 with bands of 4, 4 and 1 rows, splits of 3 units.
FILTER_CASES = [
    (3, 20, 9, 10, 12, 1, None, None),
    (3, 21, 9, 10, 64, 1, None, 2),
    (2, 6, 9, 10, 70, 1, 2300, None),
    (3, 5, 18, 9, 9, 2, 950, 3),
]


@pytest.mark.parametrize("case", FILTER_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_weight_gradient_reduces_over_blocks_bands_and_splits(
    backend, direct, monkeypatch, case, dtype
):
    n, c, h, w_, k, stride, shared_bytes, target_blocks = case
    if shared_bytes:
        monkeypatch.setattr(cuda_conv, "DIRECT_SHARED_BYTES", shared_bytes * dtype().itemsize)
    if target_blocks:
        monkeypatch.setattr(cuda_conv, "TARGET_BLOCKS", target_blocks)
    x, w, _ = conv_case_inputs((n, c, h, w_, k, 3, 3))
    dy = np.random.default_rng(1).standard_normal(
        ops.conv2d_forward(x, w, stride=stride, padding=1).shape
    )
    expected = ops.conv2d_backward(dy, x, w, stride=stride, padding=1)[1]
    x, w, dy = (a.astype(dtype) for a in (x, w, dy))
    got = backend.run(ops.conv2d_backward, dy, x, w, stride=stride, padding=1)[1]
    assert rel_error(got, expected) < TOLERANCE[dtype]
    again = backend.run(ops.conv2d_backward, dy, x, w, stride=stride, padding=1)[1]
    assert np.array_equal(got, again)
    window = conv_window(3, stride, 1, 1)
    out_hw = window.output_shape(h, w_)
    plan = cuda_conv.direct_filter_plan(
        n, c, k, out_hw, (3, 3), window.stride, (1, 1), dtype().itemsize
    )
    assert direct.count("conv2d_direct_backward_filter") == 2
    assert direct.count("conv2d_sum_splits_by_warp") == 2 * (plan.splits > 1)


def test_the_filter_plans_cover_the_cases_as_described(monkeypatch):
    def plan(case):
        n, c, h, w, k, stride, shared_bytes, target_blocks = case
        monkeypatch.setattr(
            cuda_conv, "DIRECT_SHARED_BYTES", 8 * shared_bytes if shared_bytes else 48 << 10
        )
        monkeypatch.setattr(cuda_conv, "TARGET_BLOCKS", target_blocks or 528)
        window = conv_window(3, stride, 1, 1)
        out_hw = window.output_shape(h, w)
        return cuda_conv.direct_filter_plan(n, c, k, out_hw, (3, 3), window.stride, (1, 1), 8)

    plans = [plan(case) for case in FILTER_CASES]
    assert (plans[0].groups, plans[0].column_threads, plans[0].threads) == (2, 45, 96)
    assert (plans[0].band_rows, plans[0].splits, plans[0].units) == (9, 3, 1)
    assert (plans[1].groups, plans[1].chunk, plans[1].column_threads) == (8, 11, 25)
    assert (plans[1].band_rows, plans[1].splits, plans[1].units) == (7, 1, 6)
    assert (plans[2].band_rows, plans[2].splits, plans[2].units) == (2, 10, 1)
    assert (plans[3].band_rows, plans[3].splits, plans[3].units) == (4, 3, 3)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_geometry_matches_numpy(backend, direct, monkeypatch, data):
    # every filter through the staged weight-gradient kernel, however few its taps
    monkeypatch.setattr(cuda_conv, "PER_TAP_FILTER_TAPS", 0)
    check_drawn_conv_case(data.draw, backend)


def _plan(case, itemsize=4):
    _, c, h, w, k, r, s, stride, padding, dilation = case
    window = conv_window((r, s), stride, padding, dilation)
    out_hw = window.output_shape(h, w)
    return cuda_conv.direct_plan(c, k, out_hw, (r, s), window.stride, window.dilation, itemsize)


def test_the_plans_cover_the_cases_as_described():
    plans = [_plan(case) for case in CASES]
    assert [plan.groups for plan in plans[:4]] == [1, 2, 8, 8]
    # as many warps of pixels as the image fills: 63 pixels one, LeNet's 100 one
    assert [plan.pixel_threads for plan in plans[:2]] == [32, 32]
    assert plans[3].pixel_threads == 32 and plans[3].band_rows == 8  # 17 rows: 3 bands
    assert plans[2].chunk == 8  # C = 10: two stages
    assert [(plan.pixel_threads, plan.band_rows) for plan in plans[8:10]] == [(128, 20), (128, 17)]
    assert all(plan.shared_bytes <= cuda_conv.DIRECT_SHARED_BYTES for plan in plans)


def test_layers_the_kernel_cannot_cover_keep_the_implicit_gemm(backend, direct, monkeypatch):
    # Rows wider than a block's pixels (64 channels: 32 threads of 4 pixels), and staging
    # that does not fit in shared memory.
    x, w = np.random.default_rng(0).standard_normal((1, 2, 1, 130)), np.ones((64, 2, 1, 1))
    assert cuda_conv.direct_plan(2, 64, (1, 130), (1, 1), (1, 1), (1, 1), 8) is None
    assert rel_error(backend.run(ops.conv2d_forward, x, w), ops.conv2d_forward(x, w)) < 1e-13
    assert direct == ["conv2d_forward_narrow"]
    monkeypatch.setattr(cuda_conv, "DIRECT_SHARED_BYTES", 64)
    assert cuda_conv.direct_plan(2, 4, (3, 3), (3, 3), (1, 1), (1, 1), 4) is None
    x, w = x[..., :5], np.ones((4, 2, 3, 3))
    got = backend.run(ops.conv2d_forward, x, w, padding=1)
    assert rel_error(got, ops.conv2d_forward(x, w, padding=1)) < 1e-13
    assert direct[-1] == "conv2d_forward_narrow"


# (x shape, K, kernel side, padding, stride, dilation, whether "auto" takes the direct
# kernel for the forward, for the backward-data): the layers the rule was measured on, then
# each bound crossed by one step (float32). ResNet-20 16@32 and LeNet conv1's backward-data
# won on the H100, LeNet conv1's forward (1 input channel), LeNet conv2 (2 warps) and the
# 32-channel layers lost.
AUTO_DIRECT_CASES = [
    ((128, 16, 32, 32), 16, 3, 1, 1, 1, True, True),  # ResNet-20 16@32
    ((256, 1, 28, 28), 6, 5, 2, 1, 1, False, True),  # LeNet conv1: 1 -> 6, 6 -> 1
    ((256, 6, 14, 14), 16, 5, 0, 1, 1, False, False),  # LeNet conv2: 10x10, 14x14 outputs
    ((128, 32, 16, 16), 32, 3, 1, 1, 1, False, False),  # ResNet-20 32@16
    ((128, 16, 32, 32), 17, 3, 1, 1, 1, False, True),  # 17 output channels
    ((128, 5, 32, 32), 16, 3, 1, 1, 1, False, True),  # 5 input channels (5 rows from 16)
    ((128, 6, 32, 32), 16, 3, 1, 1, 1, True, True),  # 6 input channels
    ((128, 8, 24, 32), 8, 3, 1, 1, 1, False, False),  # 768 pixels: 6 warps of 128
    ((128, 8, 27, 29), 8, 3, 1, 1, 1, True, True),  # 783: 7
    ((128, 16, 16, 24), 16, 3, 1, 1, 1, False, False),  # two groups of 3 warps (384 pixels)
    ((128, 16, 16, 25), 16, 3, 1, 1, 1, True, True),  # two of 4 (400 pixels)
    ((128, 16, 32, 32), 16, 3, 1, 2, 1, False, False),  # strided: the phases' rule instead
    ((128, 16, 32, 32), 16, 3, 2, 1, 2, False, False),  # dilated
]


@pytest.mark.parametrize(
    ("x_shape", "k", "side", "padding", "stride", "dilation", "forward", "backward_data"),
    AUTO_DIRECT_CASES,
)
def test_auto_takes_the_direct_kernel_where_it_was_measured_faster(
    x_shape, k, side, padding, stride, dilation, forward, backward_data
):
    n, c, height, width = x_shape
    window = conv_window(side, stride, padding, dilation)
    out_hw = window.output_shape(height, width)
    args = ((side, side), window, 4)
    assert bool(cuda_conv.chosen_direct_plan("auto", c, k, out_hw, *args)) == forward
    assert bool(cuda_conv.chosen_direct_plan("auto", k, c, (height, width), *args)) == (
        backward_data
    )
    # "direct" takes it wherever it applies, the other algorithms never
    assert cuda_conv.chosen_direct_plan("direct", c, k, out_hw, *args) == cuda_conv.direct_plan(
        c, k, out_hw, (side, side), window.stride, window.dilation, 4
    )
    for other in ("gemm", "winograd", "winograd4"):
        assert cuda_conv.chosen_direct_plan(other, c, k, out_hw, *args) is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # 8 -> 8 at 28x28: 7 warps each way, so every direction is direct
        (
            (1, 8, 28, 28, 8, 3, 3, 1, 1, 1),
            ["conv2d_direct", "conv2d_direct", "conv2d_direct_backward_filter"],
        ),
        # LeNet's conv1: only the backward-data (the filter gradient is per tap anyway)
        (
            (2, 1, 28, 28, 6, 5, 5, 1, 2, 1),
            ["conv2d_forward_narrow", "conv2d_direct", "conv2d_backward_filter_per_tap"],
        ),
        # LeNet's conv2: the GEMM throughout
        (
            CASES[1],
            [
                "conv2d_forward_narrow",
                "conv2d_backward_data_narrow",
                "conv2d_backward_filter_narrow",
            ],
        ),
    ],
)
def test_auto_launches_what_the_rule_says(backend, monkeypatch, case, expected):
    monkeypatch.delenv(cuda_conv.ALGORITHM_VARIABLE, raising=False)
    launched = record_launches(monkeypatch, cuda_conv)
    geometry = conv_case_geometry(case)
    x, w, b = conv_case_inputs(case)
    y = ops.conv2d_forward(x, w, b, **geometry)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    reference = ops.conv2d_backward(dy, x, w, **geometry)
    x, w, b, dy = (a.astype(np.float32) for a in (x, w, b, dy))
    assert rel_error(backend.run(ops.conv2d_forward, x, w, b, **geometry), y) < 1e-6
    got = backend.run(ops.conv2d_backward, dy, x, w, with_bias=False, **geometry)
    assert all(rel_error(a, e) < 1e-6 for a, e in zip(got[:2], reference[:2], strict=True))
    kernels = [
        name for name in launched if not name.startswith(("conv2d_sum", "conv2d_backward_bias"))
    ]
    assert kernels == expected


def test_same_bits_on_every_run(backend, direct):
    x, w, b = (a.astype(np.float32) for a in conv_case_inputs(CASES[3]))
    first = backend.run(ops.conv2d_forward, x, w, b, padding=1)
    assert np.array_equal(first, backend.run(ops.conv2d_forward, x, w, b, padding=1))


def test_an_empty_batch_launches_nothing(backend, direct):
    x, w = np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3))
    assert backend.run(ops.conv2d_forward, x, w, padding=1).shape == (0, 3, 5, 5)
    dx, dw, db = backend.run(ops.conv2d_backward, np.zeros((0, 3, 5, 5)), x, w, padding=1)
    assert dx.shape == (0, 2, 5, 5) and np.array_equal(dw, np.zeros_like(w))


@pytest.mark.gpu
@pytest.mark.parametrize(
    "case",
    [
        (256, 1, 28, 28, 6, 5, 5, 1, 2, 1),  # LeNet-5
        (256, 6, 14, 14, 16, 5, 5, 1, 0, 1),
        (128, 16, 32, 32, 16, 3, 3, 1, 1, 1),  # ResNet-20
        (128, 16, 32, 32, 32, 3, 3, 2, 1, 1),
        (128, 64, 8, 8, 64, 3, 3, 1, 1, 1),
        (128, 32, 32, 32, 32, 3, 3, 1, 1, 1),  # the training-step benchmark's CIFAR CNN
    ],
)
def test_realistic_sizes_on_the_gpu(gpu_backend, direct, case):
    x, w, _ = (a.astype(np.float32).astype(np.float64) for a in conv_case_inputs(case))
    y = ops.conv2d_forward(x, w, **conv_case_geometry(case))
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx, dw, _ = ops.conv2d_backward(dy.astype(np.float64), x, w, **conv_case_geometry(case))
    f32 = [a.astype(np.float32) for a in (x, w)]
    got_y = gpu_backend.run(ops.conv2d_forward, *f32, **conv_case_geometry(case))
    got_dx, got_dw, _ = gpu_backend.run(ops.conv2d_backward, dy, *f32, **conv_case_geometry(case))
    for name, value, reference in (("y", got_y, y), ("dx", got_dx, dx), ("dw", got_dw, dw)):
        assert rel_error(value, reference) < 1e-5, name
    assert "conv2d_direct" in direct
    assert ("conv2d_direct_backward_filter" in direct) == (w.size > cuda_conv.PER_TAP_FILTER_TAPS)
    again = gpu_backend.run(ops.conv2d_backward, dy, *f32, **conv_case_geometry(case))
    assert np.array_equal(got_dx, again[0]) and np.array_equal(got_dw, again[1])
    assert np.array_equal(
        got_y, gpu_backend.run(ops.conv2d_forward, *f32, **conv_case_geometry(case))
    )
