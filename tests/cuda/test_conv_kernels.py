"""cuda/conv2d.cu against the NumPy path in float64, on the emulator (and on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpucnn
from gpucnn import ops
from gpucnn._shapes import conv_window
from gpucnn.cuda import _gemm as cuda_gemm
from gpucnn.cuda import conv as cuda_conv
from tests.helpers import (
    check_drawn_conv_case,
    conv_case_geometry,
    conv_case_inputs,
    misaligned,
    record_launches,
    rel_error,
)

# (N, C, H, W, K, R, S, stride, padding, dilation): no dimension a multiple of the tiles (128
# columns by 128 rows, or 32 rows for the _narrow kernels, chosen up to 64 channels and 32 for
# backward-filter) or the 8-deep reduction step, so every edge is crossed; strides with a
# remainder, asymmetric pairs, dilation, 1x1 and 5x5 kernels, a single image; C*R*S a
# multiple of 4 or not and P*Q likewise (the vector loads of w and dy); K and C past the
# narrow tiles' range, K past the wide tile.
CASES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 0, 1),
    (1, 2, 8, 6, 3, 3, 3, 2, 1, 1),
    (2, 3, 10, 7, 70, 3, 2, (2, 3), (1, 0), (2, 1)),
    (3, 5, 9, 9, 5, 1, 1, 1, 0, 1),
    (1, 4, 11, 11, 9, 5, 5, 2, 2, 1),
    (2, 7, 6, 5, 3, 3, 3, 3, 2, 2),
    (1, 1, 4, 4, 1, 5, 5, 1, 1, 1),
    (1, 70, 5, 6, 130, 3, 3, 1, 1, 1),
    # one column at stride 2: the last kernel column's tap lies just right of the row, which
    # the few-tap filter gradient must skip
    (2, 2, 5, 1, 3, 3, 3, 2, 1, 1),
]
TOLERANCE = {np.float32: 1e-6, np.float64: 1e-13}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_matches_numpy(backend, case, dtype, with_bias):
    x, w, b = conv_case_inputs(case)
    b = b if with_bias else None
    expected = ops.conv2d_forward(x, w, b, **conv_case_geometry(case))  # float64 reference
    cast = [None if a is None else a.astype(dtype) for a in (x, w, b)]
    y = backend.run(ops.conv2d_forward, *cast, **conv_case_geometry(case))
    assert y.dtype == dtype and rel_error(y, expected) < TOLERANCE[dtype]


@pytest.fixture(params=["direct", "gemm"])
def filter_path(request, monkeypatch):
    """Backward-filter of few taps through its direct kernel (the default) or, with the
    threshold at 0, through the implicit GEMM every larger filter takes."""
    if request.param == "gemm":
        monkeypatch.setattr(cuda_conv, "PER_TAP_FILTER_TAPS", 0)
    return request.param


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_matches_numpy(backend, case, dtype, filter_path):
    x, w, _ = conv_case_inputs(case)
    y = ops.conv2d_forward(x, w, **conv_case_geometry(case))
    dy = np.random.default_rng(1).standard_normal(y.shape)
    expected = ops.conv2d_backward(dy, x, w, **conv_case_geometry(case))
    got = backend.run(
        ops.conv2d_backward,
        dy.astype(dtype),
        x.astype(dtype),
        w.astype(dtype),
        **conv_case_geometry(case),
    )
    for name, value, reference in zip(("dx", "dw", "db"), got, expected, strict=True):
        assert value.dtype == dtype, name
        assert rel_error(value, reference) < TOLERANCE[dtype], name
    assert (
        backend.run(ops.conv2d_backward, dy, x, w, with_bias=False, **conv_case_geometry(case))[2]
        is None
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_filter_split_reduction_is_exact_and_deterministic(
    backend, monkeypatch, dtype, filter_path
):
    # N*P*Q = 4 * 32 * 32 = 4096 = 4 * MIN_SPLIT: the reduction is split in four (the direct
    # kernel's four splits are summed by a warp per tap)
    monkeypatch.setattr(cuda_gemm, "MIN_SPLIT", 1024)
    x, w, _ = conv_case_inputs((4, 2, 32, 32, 3, 3, 3, 1, 1, 1))
    dy = np.random.default_rng(2).standard_normal((4, 3, 32, 32))
    expected = ops.conv2d_backward(dy, x, w, padding=1)[1]
    x, w, dy = x.astype(dtype), w.astype(dtype), dy.astype(dtype)
    first = backend.run(ops.conv2d_backward, dy, x, w, padding=1)[1]
    again = backend.run(ops.conv2d_backward, dy, x, w, padding=1)[1]
    assert rel_error(first, expected) < TOLERANCE[dtype] and np.array_equal(first, again)


@pytest.mark.parametrize("min_split, splits, summed_by", [(8, 64, "warp"), (128, 4, "thread")])
def test_many_filter_splits_of_few_elements_are_summed_by_a_warp_each(
    backend, monkeypatch, min_split, splits, summed_by
):
    # 2 images of 16 x 16: 512 reduction indices, one GEMM tile of 3 x 18 taps. With 8 a
    # split the reduction is split in 64, summed a warp an element (54 elements); with 128,
    # in 4, a thread an element in split order.
    monkeypatch.setattr(cuda_conv, "PER_TAP_FILTER_TAPS", 0)  # the implicit GEMM's filter
    monkeypatch.setattr(cuda_gemm, "MIN_SPLIT", min_split)
    assert cuda_gemm.split_reduction(512, 1)[0] == splits
    launched = record_launches(monkeypatch, cuda_conv)
    x, w, _ = conv_case_inputs((2, 2, 16, 16, 3, 3, 3, 1, 1, 1))
    dy = np.random.default_rng(3).standard_normal((2, 3, 16, 16))
    expected = ops.conv2d_backward(dy, x, w, padding=1)[1]
    x, w, dy = (a.astype(np.float32) for a in (x, w, dy))
    first = backend.run(ops.conv2d_backward, dy, x, w, padding=1)[1]
    again = backend.run(ops.conv2d_backward, dy, x, w, padding=1)[1]
    assert rel_error(first, expected) < TOLERANCE[np.float32] and np.array_equal(first, again)
    by_warp = "conv2d_sum_splits_by_warp" in launched
    assert by_warp == (summed_by == "warp") and by_warp != ("conv2d_sum_splits" in launched)


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, sum_kernel",
    [
        ((256, 6, 14, 14), (16, 6, 5, 5), 1, 0, "conv2d_sum_splits_by_warp"),  # LeNet conv2
        ((128, 16, 32, 32), (32, 16, 3, 3), 2, 1, "conv2d_sum_splits_by_warp"),  # ResNet-20
        ((128, 3, 32, 32), (16, 3, 3, 3), 1, 1, "conv2d_sum_splits_by_warp"),  # 3 -> 16
        ((128, 32, 16, 16), (64, 32, 3, 3), 2, 1, "conv2d_sum_splits"),  # 18,432 elements
    ],
)
def test_the_benchmark_layers_sum_their_filter_splits_as_the_model_says(
    monkeypatch, x_shape, w_shape, stride, padding, sum_kernel
):
    # Planning only: kernels are named and launches recorded, not run. The splits: 200 of
    # 2,400 elements, 256 of 4,608, 528 of 432, 64 of 18,432.
    launched = []
    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, "gemm")
    monkeypatch.setattr(cuda_conv, "get_kernel", lambda source, name, like: name)
    monkeypatch.setattr(cuda_conv, "launch", lambda kernel, *rest, **kw: launched.append(kernel))
    window = conv_window(w_shape[2:], stride, padding, 1)
    out_hw = window.output_shape(*x_shape[2:])
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    dy = np.zeros((x_shape[0], w_shape[0], *out_hw), np.float32)
    cuda_conv.conv2d_backward(dy, x, w, window, False, False, True)
    assert launched[-1] == sum_kernel


@pytest.mark.parametrize("shape", [(5, 2, 13, 11), (2, 1, 20, 20), (300, 1, 3, 3)])
def test_bias_gradient_walks_many_images_and_planes(backend, shape):
    # N*P*Q past the block's 256 threads, so each thread steps through (image, position):
    # planes of 99 (not dividing 256), of 324 (larger than the block) and of 1.
    x = np.random.default_rng(4).standard_normal(shape)
    w = np.random.default_rng(5).standard_normal((3, shape[1], 3, 3))
    dy = np.random.default_rng(6).standard_normal(ops.conv2d_forward(x, w).shape)
    expected = ops.conv2d_backward(dy, x, w)[2]
    got = backend.run(ops.conv2d_backward, dy, x, w, need_input_grad=False)[2]
    assert rel_error(got, expected) < 1e-13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_off_the_vector_boundary_give_the_same_result(backend, dtype):
    # C*R*S = 8 and P*Q = 16: w and dy qualify for vector loads, but these views start one
    # element into their allocations, so the launch path must copy them first.
    # (The emulator hands kernels its own aligned copies: the GPU run is the real test here;
    # tests/emulator/test_launch.py checks the copy itself.)
    x, w, b = (a.astype(dtype) for a in conv_case_inputs((2, 2, 5, 5, 3, 2, 2, 1, 0, 1)))
    dy = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(dtype)
    expected = (ops.conv2d_forward(x, w, b), *ops.conv2d_backward(dy, x, w))

    def shifted(x, w, b, dy):
        x, w, b, dy = (misaligned(a) for a in (x, w, b, dy))
        return (ops.conv2d_forward(x, w, b), *ops.conv2d_backward(dy, x, w))

    got = backend.run(shifted, x, w, b, dy)
    for value, reference in zip(got, expected, strict=True):
        assert rel_error(value, reference) < TOLERANCE[dtype]


def test_empty_batch_gives_zero_filter_gradient(backend):
    x, w = np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3))
    dx, dw, db = backend.run(ops.conv2d_backward, np.zeros((0, 3, 3, 3)), x, w)
    assert dx.shape == (0, 2, 5, 5) and np.array_equal(dw, np.zeros_like(w))
    assert np.array_equal(db, np.zeros(3))


@pytest.mark.parametrize("algorithm", ["auto", "direct"])
def test_layers_train_through_the_cuda_path(backend, monkeypatch, algorithm):
    """Training steps of a small CNN on the CUDA path follow the NumPy path, with the
    default kernels and with the direct ones (its second layer's 288 filter taps take the
    direct weight gradient, the first's 36 the few-tap one)."""
    from gpucnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential
    from gpucnn.losses import SoftmaxCrossEntropyLoss
    from gpucnn.optim import SGD

    monkeypatch.setenv(cuda_conv.ALGORITHM_VARIABLE, algorithm)
    launched = record_launches(monkeypatch, cuda_conv)

    def build():
        return Sequential(
            [
                Conv2D(1, 4, 3, padding=1, seed=0, dtype=np.float64),
                ReLU(),
                MaxPool2D(2),
                Conv2D(4, 8, 3, padding=1, seed=2, dtype=np.float64),
                ReLU(),
                Flatten(),
                Dense(8 * 4 * 4, 3, seed=1, dtype=np.float64),
            ]
        )

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 1, 8, 8)), rng.integers(0, 3, 5)

    def on_device():
        return steps(build(), gpucnn.to_device(x), gpucnn.to_device(y))

    def steps(model, x, y):
        optimizer, loss = SGD(model, 0.1, momentum=0.9), SoftmaxCrossEntropyLoss()
        values = []
        for _ in range(3):
            values.append(float(loss.forward(model.forward(x), y)))
            model.backward(loss.backward())
            optimizer.step()
        return values, {name: gpucnn.to_numpy(p) for name, p in model.params.items()}

    reference_losses, reference_params = steps(build(), x, y)
    losses, params = backend.run(on_device)
    assert np.allclose(losses, reference_losses, rtol=1e-12)
    for name, value in reference_params.items():
        assert rel_error(params[name], value) < 1e-12, name
    direct = {"conv2d_direct", "conv2d_direct_backward_filter", "conv2d_backward_filter_per_tap"}
    assert (direct <= set(launched)) == (algorithm == "direct")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "case",
    [
        (32, 64, 56, 56, 64, 3, 3, 1, 1, 1),
        (32, 128, 28, 28, 256, 3, 3, 2, 1, 1),
        (256, 6, 14, 14, 16, 5, 5, 1, 0, 1),
        (256, 1, 28, 28, 6, 5, 5, 1, 2, 1),  # LeNet conv1: the direct backward-filter
    ],
)
def test_realistic_sizes_on_the_gpu(gpu_backend, case):
    rng = np.random.default_rng(0)
    x, w, _ = conv_case_inputs(case)
    x = x.astype(np.float32).astype(np.float64)
    w = w.astype(np.float32).astype(np.float64)
    y = ops.conv2d_forward(x, w, **conv_case_geometry(case))
    dy = rng.standard_normal(y.shape).astype(np.float32).astype(np.float64)
    expected = (y, *ops.conv2d_backward(dy, x, w, **conv_case_geometry(case)))
    f32 = [a.astype(np.float32) for a in (x, w, dy)]
    got = (
        gpu_backend.run(ops.conv2d_forward, f32[0], f32[1], **conv_case_geometry(case)),
        *gpu_backend.run(ops.conv2d_backward, f32[2], f32[0], f32[1], **conv_case_geometry(case)),
    )
    for name, value, reference in zip(("y", "dx", "dw", "db"), got, expected, strict=True):
        assert rel_error(value, reference) < 1e-5, name
    again = gpu_backend.run(ops.conv2d_backward, f32[2], f32[0], f32[1], **conv_case_geometry(case))
    assert all(np.array_equal(a, b_) for a, b_ in zip(got[1:], again, strict=True))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_geometry_matches_numpy(backend, data):
    # The fixed cases above, generalised: random kernel, stride, padding, dilation and sizes,
    # forward and all three gradients in float64.
    check_drawn_conv_case(data.draw, backend)


@pytest.mark.gpu
def test_nvtx_ranges_and_synchronised_launches(gpu_backend, monkeypatch):
    # The profiling switches (benchmarks/README.md's nsys and ncu lines) on a real GPU: every
    # launch inside an NVTX range, and a synchronisation after each; same results.
    monkeypatch.setenv("GPUCNN_NVTX", "1")
    monkeypatch.setenv("GPUCNN_SYNC_LAUNCHES", "1")
    x, w, b = conv_case_inputs(CASES[2])
    expected = ops.conv2d_forward(x, w, b, **conv_case_geometry(CASES[2]))
    f32 = (a.astype(np.float32) for a in (x, w, b))
    got = gpu_backend.run(ops.conv2d_forward, *f32, **conv_case_geometry(CASES[2]))
    assert rel_error(got, expected) < TOLERANCE[np.float32]


def test_filters_with_more_taps_than_int_indexes_are_refused_before_launch():
    from gpucnn._shapes import conv_window

    window = conv_window(1, 1, 0, 1)
    with pytest.raises(ValueError, match="C\\*R\\*S and K\\*R\\*S"):
        cuda_conv._shape((1, 2**31, 1, 1), (1, 2**31, 1, 1), window, (1, 1))
    assert cuda_conv._shape((1, 2**30, 1, 1), (1, 2**30, 1, 1), window, (1, 1))[1] == 2**30
