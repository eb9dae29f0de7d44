"""Hopfield network updates on the CUDA path: sizes, checks, launches of ``cuda/hopfield.cu``.

Same functions and semantics as ``gpucnn.cpu.hopfield``; arguments arrive validated by
``gpucnn.hopfield``. Arrays are CuPy arrays on a GPU or NumPy arrays on the emulator.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import numpy as np

from .._checks import env_flag
from .._device import array_module, is_cupy_array
from ..cpu.hopfield import next_states as next_states  # elementwise: one version for both
from ._gemm import ONE_WAVE, WIDE_ROWS, grid, split_reduction
from ._launch import contiguous, empty, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "hopfield.cu"
THREADS = 256
# 2 to 64 states: the skinny product (W read once), instantiated for these many states; a
# thread holds SKINNY_ACCUMULATORS fields (hopfield::kSkinnyAccumulators). More: the GEMM tile.
SKINNY_BUCKETS = (8, 16, 32, 64)
SKINNY_BATCH = SKINNY_BUCKETS[-1]
SKINNY_ACCUMULATORS = 64
SHARED_BYTES = 48 * 1024  # dynamic shared memory available without an opt-in
# The tensor-core product (hopfield_product_mma) for float32 networks whose weights are
# integers of at most EXACT_FLOAT16 in magnitude (float16 holds those exactly): on with
# TENSOR_CORES_VARIABLE=1, on GPUs of compute capability 8.0 and later (and the emulator).
# Off by default until a GPU has checked its bits and timed it (benchmarks/NOTES.md).
TENSOR_CORES_VARIABLE = "GPUCNN_HOPFIELD_TENSOR_CORES"
EXACT_FLOAT16 = 2048
MMA_STEP = 16  # hopfield::kMmaStep: W16's pitch and every split are multiples of it
MMA_STATES = 32  # a block's states (hopfield::kMmaStates)
MMA_NEURONS = 8 * 64  # a block's neurons (hopfield::kMmaWarps * kMmaNeurons)


@dataclass(frozen=True)
class TensorCoreWeights:
    """W as the products take it where the tensor cores may multiply it: ``half``, W in
    float16 as uint16 bits, (n, pitch), rows padded with zeros to a multiple of MMA_STEP."""

    half: object


def prepare_weights(w, largest_weight, kept: dict):
    """W as this path's products take it: TensorCoreWeights where the tensor-core product is
    asked for (TENSOR_CORES_VARIABLE, read on every call), can run here, and is exact for W
    (float32 integers, ``largest_weight`` = max|W| at most EXACT_FLOAT16); else W itself.
    W16 is made once per W, into ``kept`` (the caller's, emptied when W changes)."""
    exact = largest_weight is not None and largest_weight <= EXACT_FLOAT16
    if not (exact and w.dtype == np.float32 and _tensor_cores_here(w)):
        return w
    prepared = kept.get(TensorCoreWeights)
    if prepared is None:
        n = w.shape[0]
        pitch = -(-n // MMA_STEP) * MMA_STEP
        half = array_module(w).zeros((n, pitch), np.float16)
        half[:, :n] = w  # exact: integers of at most 2048
        prepared = kept[TensorCoreWeights] = TensorCoreWeights(half.view(np.uint16))
    return prepared


def _tensor_cores_here(like) -> bool:
    if not env_flag(TENSOR_CORES_VARIABLE):
        return False
    if not is_cupy_array(like):
        return True  # the emulator: the kernel's portable product
    import cupy

    return int(cupy.cuda.Device().compute_capability) >= 80  # mma.m16n8k16 with float16


def skinny_columns(batch: int) -> int:
    """Columns of the output one block of ``hopfield_product_skinny`` computes for ``batch``
    states: a column per thread for each of SKINNY_ACCUMULATORS / bucket accumulators, the
    bucket the smallest of SKINNY_BUCKETS that holds ``batch``."""
    bucket = next(size for size in SKINNY_BUCKETS if batch <= size)
    return THREADS * (SKINNY_ACCUMULATORS // bucket)


def _product(w, y, sync: bool):
    y = contiguous(y)
    batch, n = y.shape
    out = empty(y, y.shape, y.dtype)
    if isinstance(w, TensorCoreWeights):
        return _product_mma(w.half, y, out, sync)
    if batch == 1:
        launch(
            get_kernel(SOURCE, "hopfield_product_vector", y),
            grid_stride_blocks(n, THREADS // 32),
            THREADS,
            (w, y, out, n, int(sync)),
        )
        return out
    if batch <= SKINNY_BATCH:
        kernel = get_kernel(SOURCE, "hopfield_product_skinny", y)
        column_blocks, row_blocks = -(-n // skinny_columns(batch)), 1
    else:
        kernel = get_kernel(SOURCE, "hopfield_product_gemm", y)
        column_blocks, row_blocks, _ = grid(n, batch, WIDE_ROWS)
    # too few blocks to fill the GPU (n = 4096, batch 256: 64 tiles; batch 8: 2 blocks): split
    # the reduction over neurons, up to one wave (every block has the same work)
    splits, chunk = split_reduction(n, column_blocks * row_blocks, ONE_WAVE)
    partial = out if splits == 1 else empty(y, (splits, batch, n), y.dtype)
    launch(
        kernel,
        (column_blocks, row_blocks, splits),
        THREADS,
        (w, y, partial, n, batch, int(sync), chunk),
    )
    return _finish_splits(partial, y, out, splits, sync)


def _product_mma(half, y, out, sync: bool):
    """The product on the tensor cores (hopfield_product_mma), split as the others."""
    batch, n = y.shape
    column_blocks, row_blocks = -(-n // MMA_NEURONS), -(-batch // MMA_STATES)
    splits, chunk = split_reduction(n, column_blocks * row_blocks, ONE_WAVE, MMA_STEP)
    partial = out if splits == 1 else empty(y, (splits, batch, n), y.dtype)
    launch(
        get_kernel(SOURCE, "hopfield_product_mma", y),
        (column_blocks, row_blocks, splits),
        THREADS,
        (half, y, partial, n, half.shape[1], batch, int(sync), chunk),
    )
    return _finish_splits(partial, y, out, splits, sync)


def _finish_splits(partial, y, out, splits: int, sync: bool):
    """out from the splits' partial fields (hopfield_finish_splits), where there are several."""
    if splits > 1:
        launch(
            get_kernel(SOURCE, "hopfield_finish_splits", y),
            grid_stride_blocks(out.size, THREADS),
            THREADS,
            (partial, y, out, splits, out.size, int(sync)),
        )
    return out


# The state check's flags: per thread and device, a ring of CHECK_SLOTS slots, and each check
# a token of its own, which the kernel stores in the check's slot where it finds a bad value.
# A slot still holding an older check's token says nothing about this one, so no flag is
# allocated or cleared per call; on a GPU the slots' pinned host copies and one event a slot
# are made once too. Those per-call steps (an allocation and a memset, pinned memory, an
# event) cost ~15 us of host time, which at n = 4096 is most of a batch-1 product's floor.
CHECK_SLOTS = 16
_check_rings = threading.local()


class _CheckRing:
    """One thread's flags on one device (see CHECK_SLOTS): on a GPU, in device memory with
    pinned host copies and an event a slot; on the emulator, a NumPy array."""

    def __init__(self, on_gpu: bool):
        self.tokens = itertools.count(1)
        self.owners = [0] * CHECK_SLOTS  # the token of the check that last took each slot
        if on_gpu:
            import cupy
            import cupyx

            self.flags = cupy.zeros(CHECK_SLOTS, np.int64)
            self.host = cupyx.empty_pinned(CHECK_SLOTS, np.int64)  # (async copies need pinned)
            self.events = [cupy.cuda.Event(disable_timing=True) for _ in range(CHECK_SLOTS)]
        else:
            self.flags = self.host = np.zeros(CHECK_SLOTS, np.int64)
            self.events = None


def _check_ring(on_gpu: bool) -> _CheckRing:
    rings = getattr(_check_rings, "by_device", None)
    if rings is None:
        rings = _check_rings.by_device = {}
    if on_gpu:
        import cupy

        key = cupy.cuda.Device().id
    else:
        key = "emulator"
    ring = rings.get(key)
    if ring is None:
        ring = rings[key] = _CheckRing(on_gpu)
    return ring


def invalid_states(y) -> PendingCheck:
    """Launch the check that every value of ``y`` is exactly +1 or -1 (the NumPy path's four
    array operations cost about 0.1 ms of host time per call on a GPU, more than a batch-1
    product at n = 4096 takes). Not waited for here: the caller may launch its own work
    first, then ask the returned check."""
    y = contiguous(y)
    ring = _check_ring(is_cupy_array(y))
    token = next(ring.tokens)
    slot = token % CHECK_SLOTS
    ring.owners[slot] = token
    launch(
        get_kernel(SOURCE, "hopfield_check_states", y),
        grid_stride_blocks(y.size, THREADS),
        THREADS,
        (y, y.size, ring.flags, slot, np.int64(token)),  # (not an int: tokens are never reused)
    )
    if ring.events is not None:
        import cupy

        # the slot's copy right behind the check, and an event after it: found() waits for
        # the check alone, not for the product the caller launches next (reading the device
        # array would wait for the whole stream, with the GPU idle while the host works)
        stream = cupy.cuda.get_current_stream()
        cupy.cuda.runtime.memcpyAsync(
            ring.host.ctypes.data + 8 * slot,
            ring.flags.data.ptr + 8 * slot,
            8,
            cupy.cuda.runtime.memcpyDeviceToHost,
            stream.ptr,
        )
        ring.events[slot].record(stream)
    return PendingCheck(ring, slot, token)


class PendingCheck:
    """A launched state check: ``found()`` waits for it and says whether it found a value
    other than +1 or -1. Ask before CHECK_SLOTS more checks are launched in the thread (the
    callers ask within the same call): after that its slot holds another check's answer."""

    __slots__ = ("_ring", "_slot", "_token")

    def __init__(self, ring: _CheckRing, slot: int, token: int):
        self._ring, self._slot, self._token = ring, slot, token

    def found(self) -> bool:
        ring = self._ring
        if ring.owners[self._slot] != self._token:
            raise RuntimeError(
                f"a state check was asked after {CHECK_SLOTS} later ones in its thread: its "
                "flag is gone"
            )
        if ring.events is not None:
            ring.events[self._slot].synchronize()
        return int(ring.host[self._slot]) == self._token


def fields(w, y):
    return _product(w, y, sync=False)


def step_sync(w, y):
    return _product(w, y, sync=True)


def energy_from_fields(y, f):
    y, f = contiguous(y), contiguous(f)
    batch, n = y.shape
    energy = empty(y, (batch,), np.float64)
    launch(
        get_kernel(SOURCE, "hopfield_energy", y),
        min(batch, 65535),
        THREADS,
        (y, f, energy, n, batch),
    )
    return energy


def recall_async(w, y, max_sweeps: int, orders):
    batch, n = y.shape
    xp = array_module(y)
    states = xp.array(y, order="C")  # updated in place by the kernel
    # every state's first fields at once, at the products' rate (exact for Hebbian weights)
    first_fields = _product(w, states, sync=False)
    energies = empty(y, (max_sweeps + 1, batch), np.float64)
    sweeps = empty(y, (batch,), np.int32)
    converged = empty(y, (batch,), np.int32)
    shared = 2 * n * y.itemsize  # the fields and the state
    in_shared = shared <= SHARED_BYTES
    workspace = None if in_shared else empty(y, (min(batch, 65535), 2 * n), y.dtype)
    launch(
        get_kernel(SOURCE, "hopfield_recall_async", y),
        min(batch, 65535),
        THREADS,
        (
            w,
            first_fields,
            states,
            None if orders is None else contiguous(orders),
            energies,
            sweeps,
            converged,
            workspace,
            n,
            batch,
            max_sweeps,
            int(in_shared),
        ),
        shared_mem=shared if in_shared else 0,
    )
    ran = int(sweeps.max()) if batch else 0  # the one read-back, after all sweeps
    return states, sweeps, converged.astype(bool), energies[: ran + 1]


def sweep_recompute(w, y, order):
    """One asynchronous sweep recomputing every field as a full dot product (O(n^2)): the
    baseline the incremental kernel is measured against. ``order``: None or n int32."""
    batch, n = y.shape
    states = array_module(y).array(y, order="C")
    launch(
        get_kernel(SOURCE, "hopfield_sweep_recompute", y),
        min(batch, 65535),
        THREADS,
        (w, states, order, n, batch),
    )
    return states
