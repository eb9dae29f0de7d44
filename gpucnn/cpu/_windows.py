"""Sliding-window views (im2col without copying) and their adjoint (col2im), shared by the
NumPy convolution and pooling code.

A window view of a padded (N, C, Hp, Wp) array has shape (N, C, R, S, P, Q):
view[n, c, r, s, p, q] = padded[n, c, p*stride_h + r*dil_h, q*stride_w + s*dil_w].
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._shapes import Window
from ._parallel import worker_count

# Bytes of working set per chunk of a batch: near the L2 cache size, every NumPy pass over a
# chunk stays in cache. Measured on the LeNet/CIFAR layers (2-core AMD EPYC, 1 MB L2 each):
# 1.1-2x faster than one batch-sized pass, for the lowered convolution operand and for max
# pooling. Against 1 MB chunks (session 14, same host, conv forward + backward, A/B medians
# of 6 rounds): 0.97-1.08x, within the noise; 0.5 MB chunks 1.06-1.27x slower.
CHUNK_BYTES = 2 << 20
# Measured on 2 cores (LeNet conv2, CIFAR 3->16: three 2 MB chunks before): forward +
# backward 10-25% faster with four balanced chunks than with three.
CHUNK_MULTIPLE = 4
# Chunks of this many flops (a convolution forward's) are worth the hand-over to a worker
# even where the batch fits one CHUNK_BYTES. 2-core AMD EPYC VM, CIFAR 64 channels at 8x8,
# N=32 (151 MFLOP, one chunk by bytes, 1.90 ms on one thread), four chunks instead, separate
# processes alternated: 1.43-1.46 ms in four rounds of five (2.17 in the fifth), 0.76x, in
# a quiet period; 1.96-2.05 ms, 1.05x, in a series while the VM's other core was busy (the
# one-thread times did not move). Two chunks of 38 MFLOP (16 images) were 1.12-1.17x slower
# in both series, so a split takes four chunks of at least this size.
CHUNK_MIN_FLOPS = 32_000_000


def chunks(count: int, bytes_per_item: int, flops_per_item: int = 0):
    """Slices splitting ``range(count)`` into runs of at most about CHUNK_BYTES, of equal
    length to within one item. Their number is a multiple of CHUNK_MULTIPLE (where ``count``
    allows), so 1, 2 or 4 worker threads (``_parallel``) finish together; it does not depend
    on the worker count, so neither do the results. Work that fits one chunk but would hold
    one thread long (CHUNK_MULTIPLE * CHUNK_MIN_FLOPS of ``flops_per_item`` and more) is
    split as well."""
    parts = -(-count * max(1, bytes_per_item) // CHUNK_BYTES)
    if parts > 1 or count * flops_per_item >= CHUNK_MULTIPLE * CHUNK_MIN_FLOPS:
        parts = min(count, max(CHUNK_MULTIPLE, -(-parts // CHUNK_MULTIPLE) * CHUNK_MULTIPLE))
    parts = max(1, parts) if count else 0
    for index in range(parts):
        yield slice(count * index // parts, count * (index + 1) // parts)


def pieces(parts, flops_per_item: int, unit: Callable[[int], int] = lambda items: 1):
    """The tasks for ``parallel_map``: (piece, unit) pairs, the chunks ``parts`` as they are,
    or, on a host with more workers than an op of CHUNK_MULTIPLE chunks or more has chunks,
    each chunk cut into up to ceil(workers / chunks) pieces for the idle workers. A piece
    is a whole number of the chunk's units, ``unit(items in the chunk)`` items each, and
    holds at least CHUNK_MIN_FLOPS of work. For an op that computes each unit on its own (a
    GEMM per image or per block of images, elementwise passes) the pieces give the bits
    their chunk gives, so the results still do not depend on the worker count.

    Why: the chunks are cut by size only, so a 4-chunk op (LeNet conv2 at N = 256, CIFAR
    64->64 at N = 128) would use 4 cores of 16. Hosts with at most CHUNK_MULTIPLE workers
    keep the measured behaviour exactly: a one-chunk op is one the split rule judged too
    small for four (two chunks of 38 MFLOP measured 1.12-1.17x slower than one on the
    2-core VM)."""
    parts = list(parts)
    # an op the split rule left in fewer chunks is not cut (1: the chunks as they are)
    per_chunk = -(-worker_count() // len(parts)) if len(parts) >= CHUNK_MULTIPLE else 1
    tasks = []
    for part in parts:
        items = part.stop - part.start
        size = unit(items)
        if items % size:
            raise ValueError(f"unit {size} does not divide a chunk of {items} items")
        units = items // size
        cuts = max(1, min(per_chunk, units, items * flops_per_item // CHUNK_MIN_FLOPS))
        for index in range(cuts):
            first = part.start + size * (units * index // cuts)
            last = part.start + size * (units * (index + 1) // cuts)
            tasks.append((slice(first, last), size))
    return tasks


def copy_rows(dst: np.ndarray, src: np.ndarray) -> None:
    """``np.copyto(dst, src)``, moving each last-axis row as one opaque element (a void view)
    where both have one shape and dtype and the rows of both are contiguous. NumPy's
    strided copy pays a loop call for every row, and a lowered convolution operand's rows
    are Q = 8-32 values: one thread, a chunk of 32 images, CIFAR 64 channels at 8x8 307 ->
    173 us, 32 at 16x16 348 -> 205, 16 at 32x32 178 -> 135."""
    same_layout = dst.shape == src.shape and dst.dtype == src.dtype and dst.ndim > 0
    if same_layout and dst.size and dst.strides[-1] == src.strides[-1] == dst.itemsize:
        row_type = np.dtype((np.void, dst.shape[-1] * dst.itemsize))
        dst, src = dst.view(row_type), src.view(row_type)
    np.copyto(dst, src)


def pad(x: np.ndarray, window: Window, value: float) -> np.ndarray:
    """``x`` padded by ``window.padding`` on every side, plus any ceil_mode overhang at the
    bottom/right, filled with ``value``. Returns ``x`` itself when nothing is padded."""
    shape = _padded_shape(x.shape, window)
    if shape == x.shape:
        return x
    out = np.full(shape, value, x.dtype)
    _copy_inside(out, x, window)
    return out


def padded_plane(height: int, width: int, window: Window) -> tuple[int, int]:
    """The padded plane's size (as ``pad`` makes it): the padding on both sides, plus any
    ceil_mode overhang at the bottom/right."""
    return (
        height + 2 * window.padding[0] + window.overhang(height, 0),
        width + 2 * window.padding[1] + window.overhang(width, 1),
    )


def _padded_shape(shape: tuple[int, ...], window: Window) -> tuple[int, ...]:
    return (*shape[:2], *padded_plane(*shape[2:], window))


def _copy_inside(padded: np.ndarray, x: np.ndarray, window: Window) -> None:
    (ph, pw), (height, width) = window.padding, x.shape[2:]
    copy_rows(padded[:, :, ph : ph + height, pw : pw + width], x)


class ZeroPadding:
    """``pad(x, window, 0.0)`` for the chunks of one op, each thread's in one buffer per
    shape that its next chunk reuses: only the inside is copied again, the zeros around it
    stay (nothing writes there), where ``pad`` fills a whole fresh array first, one more
    pass over every chunk. Same-process A/B, forward + backward on two workers, two rounds
    (session 28, SkylakeX kernels): CIFAR's 3x3 layers at 16, 32 and 64 channels 0.97-0.99x
    the time, at stride 2 0.96-0.98x, dilated 2 0.97-0.99x; LeNet conv1 and CIFAR 3->16
    level. A result is valid until the same thread pads its next chunk; the buffers go with
    the op."""

    def __init__(self, window: Window):
        self.window = window
        self._buffers: dict[tuple, np.ndarray] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = _padded_shape(x.shape, self.window)
        if shape == x.shape:
            return x
        key = (threading.get_ident(), shape, x.dtype.str)
        padded = self._buffers.get(key)
        if padded is None:  # each thread adds its own keys: no two write one entry
            padded = self._buffers[key] = np.zeros(shape, x.dtype)
        _copy_inside(padded, x, self.window)
        return padded


def window_view(
    padded: np.ndarray, window: Window, out_hw: tuple[int, int], writeable: bool = False
) -> np.ndarray:
    """(N, C, R, S, P, Q) view of ``padded``'s windows; no copy. Read-only unless asked:
    writing through it is safe only where no two windows share an element."""
    n, c = padded.shape[:2]
    sn, sc, sh, sw = padded.strides
    (r, s), (p, q) = window.size, out_hw
    (stride_h, stride_w), (dil_h, dil_w) = window.stride, window.dilation
    return as_strided(
        padded,
        shape=(n, c, r, s, p, q),
        strides=(sn, sc, sh * dil_h, sw * dil_w, sh * stride_h, sw * stride_w),
        writeable=writeable,
    )


def add_windows(padded_grad: np.ndarray, windows: np.ndarray, window: Window) -> None:
    """The adjoint of ``window_view``: add each window's (N, C, R, S, P, Q) values back into
    the padded (N, C, Hp, Wp) array, summing where windows overlap.

    One vectorised add per kernel offset (r, s): R*S adds, each over the whole batch.
    """
    out_h, out_w = windows.shape[4:]
    (stride_h, stride_w), (dil_h, dil_w) = window.stride, window.dilation
    for r in range(window.size[0]):
        h0 = r * dil_h
        for s in range(window.size[1]):
            w0 = s * dil_w
            padded_grad[
                :,
                :,
                h0 : h0 + stride_h * (out_h - 1) + 1 : stride_h,
                w0 : w0 + stride_w * (out_w - 1) + 1 : stride_w,
            ] += windows[:, :, r, s]


def crop(padded: np.ndarray, window: Window, height: int, width: int) -> np.ndarray:
    """The (N, C, height, width) interior of a padded array, as a contiguous copy."""
    ph, pw = window.padding
    return np.ascontiguousarray(padded[:, :, ph : ph + height, pw : pw + width])
