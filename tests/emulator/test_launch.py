"""The launch helper: what it checks before any kernel runs, on the emulator."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gpucnn.cuda._launch import grid_stride_blocks, launch, limit_grid_stride_blocks
from gpucnn.cuda._loader import Kernel
from gpucnn.cuda._source import (
    name_expressions,
    parse_kernels,
    read_source,
    resolve_params,
    split_name_expression,
)
from gpucnn.emulator import EmulatedModule
from tests.emulator.test_emulator import KERNELS


@pytest.fixture(scope="module")
def kernels():
    source = read_source("checks.cu", KERNELS)
    module = EmulatedModule(source, name_expressions=name_expressions(source))
    decls = parse_kernels(source)

    def get(expression):
        name, args = split_name_expression(expression)
        params = resolve_params(decls[name], args)
        return Kernel(
            "checks.cu", expression, params, module.get_function(expression), on_gpu=False
        )

    return get


def test_scalars_are_converted_to_the_parameter_type(kernels):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = np.zeros_like(x)
    launch(kernels("reverse_rows"), 2, 8, (x, y, 4), shared_mem=16)  # a Python int becomes int32
    assert np.array_equal(y, x[:, ::-1])


def test_cached_scalars_keep_their_type_and_checks(kernels):
    # Converted ints are cached by value: True (== 1) and an out-of-range value must still be
    # refused after 1 and 4 were converted, and a cached value must still be an int32.
    from gpucnn.cuda._loader import int_scalar_cache

    x, y = np.zeros(4, np.float32), np.zeros(4, np.float32)
    for n in (1, 4, 4):
        launch(kernels("reverse_rows"), 1, 4, (x, y, n))
    assert type(int_scalar_cache(np.int32)[4]) is np.int32
    with pytest.raises(TypeError, match="int32, got True"):
        launch(kernels("reverse_rows"), 1, 4, (x, y, True))
    with pytest.raises(ValueError, match="does not fit int32"):
        launch(kernels("reverse_rows"), 1, 4, (x, y, -(2**31) - 1))


@pytest.mark.parametrize(
    "args, error, words",
    [
        (
            (np.zeros(4, np.float32), np.zeros(4, np.float32), 2**31),
            ValueError,
            "n = 2147483648 does not fit int32.*64-bit offsets",
        ),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32), 4.0), TypeError, "n is int32"),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32), True), TypeError, "int32, got True"),
        ((np.zeros(4, np.float64), np.zeros(4, np.float32), 4), TypeError, "x must be float32"),
        (
            (np.zeros((4, 2), np.float32).T, np.zeros(8, np.float32), 4),
            ValueError,
            "x must be C-contiguous",
        ),
        (([0.0] * 4, np.zeros(4, np.float32), 4), TypeError, "x must be a numpy.ndarray"),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32)), TypeError, "takes 3 arguments"),
    ],
)
def test_bad_arguments_never_reach_the_kernel(kernels, args, error, words):
    with pytest.raises(error, match=words):
        launch(kernels("reverse_rows"), 1, 4, args)


def test_grid_and_block_limits(kernels):
    args = (np.zeros(4, np.float32), np.zeros(4, np.float32), 4)
    with pytest.raises(ValueError, match="1 to 1024 threads"):
        launch(kernels("reverse_rows"), 1, (32, 33), args)
    with pytest.raises(ValueError, match="exceeds CUDA's limits"):
        launch(kernels("reverse_rows"), (1, 65536), 32, args)
    with pytest.raises(TypeError, match="grid must be"):
        launch(kernels("reverse_rows"), 1.5, 32, args)


def test_an_empty_grid_launches_nothing(kernels):
    y = np.full(4, 7.0, np.float32)
    launch(kernels("reverse_rows"), 0, 4, (np.zeros(4, np.float32), y, 4))
    assert np.all(y == 7.0)


def test_grid_stride_blocks_can_be_shrunk():
    assert grid_stride_blocks(0, 256) == 0
    assert grid_stride_blocks(1000, 256) == 4
    with limit_grid_stride_blocks(2):
        assert grid_stride_blocks(1000, 256) == 2
    assert grid_stride_blocks(10**9, 256) == 65535


def test_contiguous_copies_views_that_start_off_the_vector_boundary():
    from gpucnn.cuda._launch import contiguous
    from tests.helpers import misaligned

    fresh = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert contiguous(fresh) is fresh
    view = misaligned(fresh)
    assert view.flags.c_contiguous and view.ctypes.data % 16 != 0
    copy = contiguous(view)
    assert copy is not view and copy.ctypes.data % 16 == 0 and np.array_equal(copy, fresh)


def test_only_a_64_bit_scalar_lets_a_kernel_take_arrays_past_2_to_the_31():
    from gpucnn.cuda._source import Param

    def kernel(*params):
        return Kernel("x.cu", "k", tuple(params), function=None, on_gpu=False)

    data = Param("data", np.dtype(np.float32), pointer=True, const=True)
    labels = Param("labels", np.dtype(np.int64), pointer=True, const=True)  # int64 *data*
    n32 = Param("n", np.dtype(np.int32), pointer=False, const=False)
    n64 = Param("n", np.dtype(np.int64), pointer=False, const=False)
    assert kernel(data, labels, n32).max_array_size == 2**31 - 1
    assert kernel(data, labels, n64).max_array_size == 2**63 - 1


def test_the_driver_launcher_hands_cuda_each_argument_in_its_c_type(monkeypatch):
    # On a GPU, launch() packs the converted arguments itself and calls cuLaunchKernel: each
    # kernelParams entry must point at the value in its parameter's C type. A stand-in for
    # CuPy's driver module reads them back the way the driver would.
    import ctypes
    import sys
    import types

    from gpucnn.cuda._launch import DriverLauncher
    from gpucnn.cuda._source import Param

    kinds = [
        ("x", np.float32, True, ctypes.c_uint64, 0xDEAD0000BEEF),
        ("out", np.float64, True, ctypes.c_uint64, 0),  # a null pointer
        ("n", np.int32, False, ctypes.c_int32, -(2**31)),
        ("size", np.int64, False, ctypes.c_int64, 2**40 + 3),
        ("rate", np.float32, False, ctypes.c_float, np.float32(0.1)),
        ("scale", np.float64, False, ctypes.c_double, 1 / 3),
        ("flag", np.bool_, False, ctypes.c_bool, True),
        ("seed", np.uint32, False, ctypes.c_uint32, 2**32 - 1),
    ]
    params = tuple(Param(name, np.dtype(t), pointer, False) for name, t, pointer, _, _ in kinds)
    seen = {}

    def launch_kernel(function, gx, gy, gz, bx, by, bz, shared, stream, kernel_params, extra):
        pointers = (ctypes.c_void_p * len(kinds)).from_address(kernel_params)
        seen["values"] = [
            c_type.from_address(pointers[i]).value for i, (*_, c_type, _) in enumerate(kinds)
        ]
        seen["launch"] = (function, (gx, gy, gz), (bx, by, bz), shared, stream, extra)

    stream = types.SimpleNamespace(ptr=77)
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(
        driver=types.SimpleNamespace(launchKernel=launch_kernel),
        get_current_stream=lambda: stream,
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    raw_kernel = types.SimpleNamespace(kernel=types.SimpleNamespace(ptr=1234))
    launcher = DriverLauncher(raw_kernel, params)
    values = [value for *_, value in kinds]
    for _ in range(2):  # the second launch reuses the thread's buffer
        launcher((3, 2, 1), (128, 1, 1), values, 64)
        assert seen["launch"] == (1234, (3, 2, 1), (128, 1, 1), 64, 77, 0)
        assert seen["values"] == [
            np.float32(0.1) if c_type is ctypes.c_float else value for *_, c_type, value in kinds
        ]
    with pytest.raises(struct.error):  # (launch() refuses such a value before this)
        launcher((1, 1, 1), (1, 1, 1), [*values[:2], 2**31, *values[3:]], 0)
    # a scalar type the launcher has no slot format for is refused by name, not a KeyError
    half = (Param("scale", np.dtype(np.float16), False, False),)
    with pytest.raises(TypeError, match="scale: .* float16"):
        DriverLauncher(raw_kernel, half)


def _recording_kernel(*kinds):
    """A Kernel of parameters (name, dtype, pointer) whose function records what launch()
    hands it instead of running: limits and conversions checked without a kernel to run."""
    from gpucnn.cuda._source import Param

    calls = []
    params = tuple(Param(name, np.dtype(dtype), pointer, False) for name, dtype, pointer in kinds)

    def function(grid, block, args, shared_mem):
        calls.append((grid, block, args))

    return Kernel("x.cu", "k", params, function, on_gpu=False), calls


def test_grid_and_block_limits_are_cudas_to_the_last_block_and_thread():
    from gpucnn.cuda import _launch

    assert _launch.MAX_GRID == (2**31 - 1, 65535, 65535)  # maxGridSize of every CUDA GPU
    kernel, calls = _recording_kernel()
    launch(kernel, (2**31 - 1, 65535, 65535), (32, 32), ())
    launch(kernel, [7], [1024], ())  # lists of one to three ints, too
    launch(kernel, [1, 2, 3], [1, 1, 64], ())
    assert [call[:2] for call in calls] == [
        ((2**31 - 1, 65535, 65535), (32, 32, 1)),
        ((7, 1, 1), (1024, 1, 1)),
        ((1, 2, 3), (1, 1, 64)),
    ]
    for grid in ((2**31, 1, 1), (1, 65536, 1), (1, 1, 65536)):
        with pytest.raises(ValueError, match="exceeds CUDA's limits"):
            launch(kernel, grid, 1, ())
    for block in ((1025,), (32, 33), (0, 4)):
        with pytest.raises(ValueError, match="1 to 1024 threads"):
            launch(kernel, 1, block, ())
    for grid in ([], [1, 1, 1, 1], (1.0,)):
        with pytest.raises(TypeError, match="grid must be an int or 1 to 3 ints"):
            launch(kernel, grid, 1, ())


def test_scalars_take_their_parameters_type_up_to_its_last_value():
    kernel, calls = _recording_kernel(
        ("n", np.int32, False), ("rate", np.float32, False), ("flag", np.bool_, False)
    )
    for n in (2**31 - 1, -(2**31), np.int64(4), np.int16(-3)):  # NumPy ints too
        for rate in (0.5, np.float64(0.25), np.float32(2.0), 3):
            launch(kernel, 1, 1, (n, rate, True))
            converted = calls.pop()[2]
            assert [type(v) for v in converted] == [np.int32, np.float32, np.bool_]
            assert converted == (n, rate, True)
    for n in (2**31, -(2**31) - 1, np.int64(2**31)):
        with pytest.raises(ValueError, match="does not fit int32"):
            launch(kernel, 1, 1, (n, 0.5, True))
    for rate in (True, np.bool_(False), "0.5", None):
        with pytest.raises(TypeError, match="rate is float32"):
            launch(kernel, 1, 1, (1, rate, True))


def test_poisoned_outputs_are_nan_or_the_most_negative_integer():
    from gpucnn.cuda._launch import empty, poison_outputs

    like = np.zeros(1, np.float32)
    with poison_outputs():
        floats, ints = empty(like, (3, 2), np.float64), empty(like, 5, np.int32)
    assert floats.dtype == np.float64 and np.isnan(floats).all()
    assert ints.dtype == np.int32 and (ints == np.iinfo(np.int32).min).all()
