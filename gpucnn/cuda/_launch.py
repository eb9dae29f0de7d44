"""The one launch helper: every kernel launch in gpucnn goes through ``launch``.

It checks what CuPy does not: each array argument's device, dtype and C-contiguity against
the kernel's signature; each scalar converted to the exact NumPy type of its parameter (a
value that does not fit, e.g. a size past 2^31 for an ``int``, is an error, not a wrap);
grid and block within CUDA's limits; and no launch at all when the grid is empty.

On a GPU the checked arguments go to ``cuLaunchKernel`` packed by ``DriverLauncher``, not
through CuPy's ``RawKernel`` call, which converted each of them again: on an H100's host a
convolution's launch (21 arguments) took 19.2 us that way and takes 12.2 us now, at LeNet
sizes a third of the whole op.

``GPUCNN_SYNC_LAUNCHES=1`` synchronises after every launch and names the failing kernel;
``GPUCNN_NVTX=1`` wraps every GPU launch in an NVTX range named after the kernel, so Nsight
Systems and Nsight Compute timelines show gpucnn's names. Both are read when this module is
imported (set them before starting Python).
"""

from __future__ import annotations

import contextlib
import numbers
import struct
import threading

import numpy as np

from .._checks import env_flag
from .._device import array_module, is_cupy_array
from ._loader import Kernel
from ._source import Param

MAX_THREADS_PER_BLOCK = 1024
MAX_GRID = (2**31 - 1, 65535, 65535)
# Grid-stride kernels launch at most this many blocks; tests shrink it to prove the loops.
_grid_stride_blocks = 65535
# Every (source, name expression) launched on the emulator in this process: the test suite
# checks that each kernel in cuda/ was.
emulator_launches: set[tuple[str, str]] = set()
# Tests fill every output with garbage before the kernel runs, so an unwritten element fails.
_poison_outputs = False
# While an emulator graph captures (gpucnn.cuda.graph): the launches, recorded instead of run.
_recorded: list | None = None


class KernelError(RuntimeError):
    """A kernel failed on the device (seen at the next synchronisation)."""


@contextlib.contextmanager
def limit_grid_stride_blocks(blocks: int):
    """Launch grid-stride kernels with at most ``blocks`` blocks (Caffe's test trick: a tiny
    grid makes every thread loop, which proves the loops right)."""
    global _grid_stride_blocks
    saved, _grid_stride_blocks = _grid_stride_blocks, blocks
    try:
        yield
    finally:
        _grid_stride_blocks = saved


@contextlib.contextmanager
def poison_outputs():
    """Within this block, ``empty`` fills new arrays with NaN (floats) or the most negative
    integer, so that a kernel that skips an element is caught by the comparison."""
    global _poison_outputs
    saved, _poison_outputs = _poison_outputs, True
    try:
        yield
    finally:
        _poison_outputs = saved


@contextlib.contextmanager
def recording():
    """Within this block, emulator launches are recorded, not run: yields the list they go
    to, as (kernel, grid, block, converted arguments, shared memory), for ``run_recorded``.
    (An emulator graph's capture; on a GPU, CuPy's stream capture records them.)"""
    global _recorded
    if _recorded is not None:
        raise RuntimeError("an emulator graph is already capturing")
    _recorded = []
    try:
        yield _recorded
    finally:
        _recorded = None


def run_recorded(launches: list) -> None:
    """Run launches recorded by ``recording``, in order, with the arguments they had."""
    for kernel, grid, block, args, shared_mem in launches:
        kernel.function(grid, block, args, shared_mem=shared_mem)


def empty(like, shape, dtype):
    """An uninitialised output array on ``like``'s device (poisoned under ``poison_outputs``)."""
    xp = array_module(like)
    out = xp.empty(shape, dtype)
    if _poison_outputs:
        dtype = np.dtype(dtype)
        out.fill(np.nan if dtype.kind == "f" else np.iinfo(dtype).min)
    return out


# Kernels read rows as 16-byte vectors where sizes allow: arrays must start on that boundary.
ALIGNMENT = 16


def address(x) -> int:
    """The address of ``x``'s first element (device or host)."""
    return x.data.ptr if is_cupy_array(x) else x.ctypes.data


def contiguous(x):
    """``x`` itself when C-contiguous and 16-byte aligned (fresh arrays always are), else a
    fresh C-contiguous copy: kernels take flat arrays and may read them as vectors. (A view
    that starts mid-array, e.g. ``a.ravel()[1:]``, is contiguous but not aligned.)"""
    if x.flags.c_contiguous and address(x) % ALIGNMENT == 0:
        return x
    return array_module(x).array(x, order="C", copy=True)


def grid_stride_blocks(work_items: int, threads_per_block: int) -> int:
    """Blocks for a 1-D grid-stride loop over ``work_items`` (0 when there is no work)."""
    return min(-(-work_items // threads_per_block), _grid_stride_blocks)


def _dims(value, what: str, kernel: Kernel) -> tuple[int, int, int]:
    # the usual launches, without the slow ABC checks below
    if type(value) is int:
        return (value, 1, 1)
    if type(value) is tuple and len(value) == 3 and all(type(d) is int for d in value):
        return value
    if isinstance(value, numbers.Integral):
        dims = (value,)
    elif isinstance(value, (tuple, list)):
        dims = tuple(value)
    else:
        dims = ()
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, numbers.Integral) for d in dims):
        raise TypeError(f"{kernel.name}: {what} must be an int or 1 to 3 ints, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _scalar(value, dtype: np.dtype, bounds, name: str, kernel: Kernel):
    """``value`` as the exact NumPy type of its parameter, or a clear error; ``bounds`` is
    the parameter's (min, max) for integers (``Kernel.int_bounds``). (``launch`` converts
    floats and cached ints itself: this is the slow, general path.)"""
    if bounds is not None:
        if type(value) is not int and (
            isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
        ):
            raise TypeError(f"{kernel.name}: {name} is {dtype}, got {value!r}")
        value = int(value)
        if not bounds[0] <= value <= bounds[1]:
            raise ValueError(
                f"{kernel.name}: {name} = {value} does not fit {dtype}"
                + (" (a size this large needs 64-bit offsets)" if dtype.itemsize == 4 else "")
            )
        return dtype.type(value)
    if isinstance(value, (bool, np.bool_)) and dtype != np.bool_:
        raise TypeError(f"{kernel.name}: {name} is {dtype}, got a bool")
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{kernel.name}: {name} is {dtype}, got {value!r}")
    return dtype.type(value)


# Entries per integer type in the launch's scalar cache (the values are the caller's).
_CACHED_INTS_PER_TYPE = 4096


def launch(kernel: Kernel, grid, block, args, shared_mem: int = 0) -> None:
    """Check and launch ``kernel`` with ``grid`` x ``block`` threads on ``args``; ``None``
    passes a null pointer."""
    grid, block = _dims(grid, "grid", kernel), _dims(block, "block", kernel)
    if 0 in grid:
        return  # no work: launching an empty grid is an error in CUDA
    if min(block) < 1 or block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"{kernel.name}: block {block} must have 1 to 1024 threads")
    if grid[0] > MAX_GRID[0] or grid[1] > MAX_GRID[1] or grid[2] > MAX_GRID[2]:
        raise ValueError(f"{kernel.name}: grid {grid} exceeds CUDA's limits {MAX_GRID}")
    if len(args) != len(kernel.params):
        raise TypeError(f"{kernel.name} takes {len(kernel.params)} arguments, got {len(args)}")
    converted = []
    append = converted.append  # (this loop runs for every argument of every launch)
    largest_array = 0
    for value, param, pointer, scalar_type, bounds, cache in zip(
        args,
        kernel.params,
        kernel.pointers,
        kernel.scalar_types,
        kernel.int_bounds,
        kernel.int_caches,
        strict=True,
    ):
        if not pointer:
            if type(value) is int and cache is not None:
                scalar = cache.get(value)  # converted and range-checked before
                if scalar is None:
                    scalar = _scalar(value, param.dtype, bounds, param.name, kernel)
                    if len(cache) < _CACHED_INTS_PER_TYPE:
                        cache[value] = scalar
                append(scalar)
            elif type(value) is float and bounds is None and scalar_type is not np.bool_:
                append(scalar_type(value))  # a float to a float parameter (SGD's rates)
            else:
                append(_scalar(value, param.dtype, bounds, param.name, kernel))
            continue
        if value is None:  # a null pointer, for an argument the kernel is told to ignore
            append(0 if kernel.on_gpu else None)
            continue
        if not (is_cupy_array(value) if kernel.on_gpu else isinstance(value, np.ndarray)):
            where = "a cupy.ndarray" if kernel.on_gpu else "a numpy.ndarray (emulator)"
            raise TypeError(
                f"{kernel.name}: {param.name} must be {where}, got "
                f"{type(value).__module__}.{type(value).__name__}"
            )
        if value.dtype != param.dtype:
            raise TypeError(f"{kernel.name}: {param.name} must be {param.dtype}, got {value.dtype}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: {param.name} must be C-contiguous")
        if value.size > largest_array:
            largest_array = value.size
        append(value.data.ptr if kernel.on_gpu else value)  # the driver takes the address
    if largest_array > kernel.max_array_size:
        raise ValueError(
            f"{kernel.name}: an argument has {largest_array} elements but the "
            "kernel takes only 32-bit sizes (it needs 64-bit offsets)"
        )
    if not kernel.on_gpu:
        emulator_launches.add((kernel.source, kernel.name))
        if _recorded is not None:
            _recorded.append((kernel, grid, block, tuple(converted), shared_mem))
            return
        kernel.function(grid, block, tuple(converted), shared_mem=shared_mem)
        return
    import cupy

    if _NVTX:
        cupy.cuda.nvtx.RangePush(f"gpucnn {kernel.name}")
    try:
        launcher = kernel.launcher
        if launcher is None:
            launcher = DriverLauncher(kernel.function, kernel.params)
            object.__setattr__(kernel, "launcher", launcher)
        launcher(grid, block, converted, shared_mem)
    finally:
        if _NVTX:
            cupy.cuda.nvtx.RangePop()
    if _SYNC_LAUNCHES and not cupy.cuda.get_current_stream().is_capturing():
        try:
            cupy.cuda.get_current_stream().synchronize()
        except Exception as exc:
            raise KernelError(f"kernel {kernel.name} failed: {exc}") from exc


_NVTX = env_flag("GPUCNN_NVTX")
_SYNC_LAUNCHES = env_flag("GPUCNN_SYNC_LAUNCHES")

# struct formats of one 8-byte parameter slot, by the scalar's NumPy kind and size
_SLOT_FORMATS = {
    ("i", 1): "b7x", ("i", 2): "h6x", ("i", 4): "i4x", ("i", 8): "q",
    ("u", 1): "B7x", ("u", 2): "H6x", ("u", 4): "I4x", ("u", 8): "Q",
    ("f", 4): "f4x", ("f", 8): "d", ("b", 1): "?7x",
}  # fmt: skip


def _slot_format(param: Param) -> str:
    if param.pointer:
        return "Q"
    try:
        return _SLOT_FORMATS[param.dtype.kind, param.dtype.itemsize]
    except KeyError:
        raise TypeError(
            f"parameter {param.name}: gpucnn's launcher cannot pass a {param.dtype} scalar "
            "(add its struct format to _SLOT_FORMATS)"
        ) from None


class DriverLauncher:
    """Launches one compiled kernel through ``cuLaunchKernel`` on the current stream.

    The launch helper has already checked and converted every argument; here each value goes
    into an 8-byte slot of a host buffer (a device pointer as its address, a scalar as the
    parameter's C type: one ``struct.pack_into``), and the driver is handed the slots'
    addresses. It copies the values during the call, so each thread reuses its own buffer.
    """

    def __init__(self, raw_kernel, params: tuple[Param, ...]):
        self._function = raw_kernel.kernel.ptr  # the CUfunction on the current device
        self._pack = struct.Struct("<" + "".join(_slot_format(p) for p in params))
        self._local = threading.local()

    def _slots(self):
        """This thread's (slots, their addresses, the address of that array)."""
        slots = getattr(self._local, "slots", None)
        if slots is None:
            values = np.zeros(max(1, self._pack.size // 8), np.uint64)
            addresses = values.ctypes.data + 8 * np.arange(values.size, dtype=np.uint64)
            slots = self._local.slots = (values, addresses, addresses.ctypes.data)
        return slots

    def __call__(self, grid, block, args, shared_mem: int) -> None:
        """Launch on ``args`` as the launch helper converted them: device addresses (0 for
        a null pointer) and scalars of their parameters' types."""
        import cupy

        values, _, addresses = self._slots()
        self._pack.pack_into(values, 0, *args)
        cupy.cuda.driver.launchKernel(
            self._function,
            *grid,
            *block,
            shared_mem,
            cupy.cuda.get_current_stream().ptr,
            addresses,
            0,
        )
