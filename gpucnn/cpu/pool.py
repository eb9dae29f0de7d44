"""2-D pooling in NumPy: the reference the CUDA kernels are judged against.

x (N, C, H, W), window (R, S), y (N, C, P, Q). Arguments arrive validated (gpucnn.ops.pool).

Max pooling semantics (PyTorch's, made exact where PyTorch leaves it open):
- padding counts as -inf; argmax is h*W + w inside the (n, c) plane, unpadded coordinates;
- ties go to the first element in row-major window order;
- a window holding NaN outputs NaN and points at its first NaN;
- a window whose in-bounds elements are all -inf points at its first in-bounds element.

Max, average and L2 pooling run on chunks of planes near the L2 cache size, spread over the
worker threads (``_parallel``); each chunk writes its own slice of the output, so the
results do not depend on the chunking or the worker count.
"""

from __future__ import annotations

import numpy as np

from .._shapes import Window
from ._parallel import blas_threads_controlled, one_thread_blas, parallel_map
from ._windows import chunks, copy_rows, crop, pad, padded_plane, window_view

# The max-pool backward scatters on the workers from this size of dx up. Two workers,
# tight loops (AMD EPYC, 1 MB L2 a core): CIFAR's 3x3/2 (dx 33.5 MB) 11.3 -> 7.2 ms; LeNet's
# pool1 (4.8 MB) 0.82 -> 1.05 ms and pool2 (1.6 MB) 0.29 -> 0.33, where waking the workers
# costs more than the scatter's second core gains.
SCATTER_ON_WORKERS_BYTES = 16 << 20


def _window_starts(window: Window, axis: int, count: int) -> np.ndarray:
    """Unpadded coordinate of the first row (axis 0) or column (axis 1) of each window."""
    return np.arange(count) * window.stride[axis] - window.padding[axis]


def max_pool2d_forward(x, window: Window):
    """Plane chunks of about L2 size: every pass below then stays in cache (measured on
    N=128, C=64, 32x32, 3x3/2: 2x faster than one batch-sized pass)."""
    n, c, height, width = x.shape
    out_h, out_w = window.output_shape(height, width)
    planes = x.reshape(n * c, 1, height, width)
    y = np.empty((n * c, 1, out_h, out_w), x.dtype)
    argmax = np.empty(y.shape, np.int32)

    def pool_chunk(part: slice) -> None:
        y[part], argmax[part] = _max_pool_planes(planes[part], window)

    parallel_map(pool_chunk, chunks(n * c, height * width * x.itemsize))
    return y.reshape(n, c, out_h, out_w), argmax.reshape(n, c, out_h, out_w)


def _max_pool_planes(x, window: Window):
    n, c, height, width = x.shape
    out_h, out_w = window.output_shape(height, width)
    r, s = window.size
    padded = pad(x, window, -np.inf)
    view = window_view(padded, window, (out_h, out_w))
    # Offset-major copy (R*S, N*C*P*Q): every step below is a contiguous elementwise pass.
    # (Measured on N=128, C=64, 32x32, 3x3/2: 2.1x faster than argmax along a window axis.)
    windows = np.ascontiguousarray(view.transpose(2, 3, 0, 1, 4, 5)).reshape(r * s, -1)
    y = windows.max(axis=0)  # propagates NaN
    has_nan = bool(np.isnan(y).any())
    # choice = index of the first element equal to the maximum (or the first NaN): count
    # the offsets before the first hit. Counted in int8 where R*S allows: the adds and the
    # gather below then take 0.22 against 0.29 ms for 4 offsets (102400 windows) and 1.1
    # against 1.9 for 9 (262144), the int32 adds of a bool being the slow part; whole
    # forwards (two workers, A/B medians) 0.91-0.98x the time on the benchmarks' pools.
    choice = np.zeros(y.shape, np.int8 if r * s <= np.iinfo(np.int8).max else np.int32)
    found = np.zeros(y.shape, bool)
    hit = np.empty(y.shape, bool)
    for offset in range(r * s):
        np.equal(windows[offset], y, out=hit)
        if has_nan:
            hit |= np.isnan(windows[offset])
        found |= hit
        choice += ~found
    # argmax = the index of the window's first element plus the chosen offset's step from
    # it: one gather from R*S steps (measured on LeNet's 2x2/2 pool of 4096 10x10 planes:
    # 0.11-0.22 ms, against 0.9-1.1 for rows and columns computed from the choice).
    down, right = np.divmod(np.arange(r * s), s)
    steps = (down * window.dilation[0] * width + right * window.dilation[1]).astype(np.int32)
    row_starts, col_starts = _window_starts(window, 0, out_h), _window_starts(window, 1, out_w)
    argmax = steps.take(choice).reshape(n * c, out_h * out_w)
    argmax += _plane_index(row_starts, col_starts, width)
    # A window picks padding only when its maximum is -inf: every in-bounds element is -inf
    # too, so it points at its first in-bounds element instead.
    if padded is not x:
        all_neg_inf = np.equal(y, -np.inf).reshape(argmax.shape)
        if all_neg_inf.any():
            first_in_bounds = _plane_index(
                np.maximum(row_starts, 0), np.maximum(col_starts, 0), width
            )
            np.copyto(argmax, first_in_bounds, where=all_neg_inf)
    argmax = argmax.reshape(n, c, out_h, out_w)
    return y.reshape(n, c, out_h, out_w), argmax


def _plane_index(rows: np.ndarray, cols: np.ndarray, width: int) -> np.ndarray:
    """(P*Q,) int32 h*W + w of each window's element at rows[p], cols[q]."""
    return (rows[:, None] * width + cols[None, :]).astype(np.int32).reshape(-1)


def max_pool2d_backward(dy, argmax, x_shape, window: Window | None):
    """dx[n, c, argmax[n, c, p, q]] += dy[n, c, p, q], summed where windows overlap.

    np.add.at adds in index order: deterministic, and no geometry needed, so ``window`` goes
    unused. (Measured on N=128, C=64, 32x32, 3x3/2: 7.8 ms, against 21 ms for np.bincount.)
    A large dx is zeroed and scattered into by L2-sized chunks of planes on the workers
    (see SCATTER_ON_WORKERS_BYTES); each plane's adds keep their order, so the bits do not
    depend on the chunks.
    """
    n, c, height, width = x_shape
    planes, plane = n * c, height * width
    on_workers = planes * plane * dy.itemsize >= SCATTER_ON_WORKERS_BYTES
    # On the workers each zeroes its own chunk, which then is in its cache, and the fresh
    # pages fault in on both cores: CIFAR 3x3/2 0.74x the time of np.zeros's dx.
    dx = (np.empty if on_workers else np.zeros)((planes, plane), dtype=dy.dtype)
    outputs = dy.shape[2] * dy.shape[3]  # not -1: there may be no planes
    chosen, gradients = argmax.reshape(planes, outputs), dy.reshape(planes, outputs)

    def scatter(part: slice) -> None:
        out = dx[part]
        if on_workers:
            out.fill(0)
        first = np.arange(0, out.size, plane, dtype=np.intp)  # each plane's offset in out
        np.add.at(out.reshape(-1), (first[:, None] + chosen[part]).ravel(), gradients[part].ravel())

    if on_workers:
        parallel_map(scatter, chunks(planes, plane * dy.itemsize))
    else:
        scatter(slice(0, planes))
    return dx.reshape(x_shape)


def _avg_divisors(height: int, width: int, window: Window, count_include_pad: bool):
    """(P, Q) number of elements each window averages over.

    count_include_pad counts padding but never the ceil_mode overhang past it (PyTorch's rule).
    """
    out_h, out_w = window.output_shape(height, width)
    counts = []
    for axis, length, count in ((0, height, out_h), (1, width, out_w)):
        start = _window_starts(window, axis, count)
        end = start + window.size[axis]
        if count_include_pad:
            counts.append(np.minimum(end, length + window.padding[axis]) - start)
        else:
            counts.append(np.minimum(end, length) - np.maximum(start, 0))
    return counts[0][:, None] * counts[1][None, :]


def _window_sums(padded: np.ndarray, window: Window, out_hw: tuple[int, int]) -> np.ndarray:
    """Sum of each window, separably: R strided row slices added (contiguous inner rows), then
    S strided column slices. (Measured on N=128, C=64, 32x32, 3x3/2: 6x faster than summing
    the 6-D window view.)"""
    (r, s), (stride_h, stride_w) = window.size, window.stride
    out_h, out_w = out_hw
    rows = padded[:, :, 0 : stride_h * (out_h - 1) + 1 : stride_h].copy()
    for i in range(1, r):
        rows += padded[:, :, i : i + stride_h * (out_h - 1) + 1 : stride_h]
    sums = rows[:, :, :, 0 : stride_w * (out_w - 1) + 1 : stride_w].copy()
    for j in range(1, s):
        sums += rows[:, :, :, j : j + stride_w * (out_w - 1) + 1 : stride_w]
    return sums


def _spread_window_sums(values: np.ndarray, padded_hw: tuple[int, int], window: Window):
    """The adjoint of ``_window_sums``: each window's value added to every element of its
    window in a zero (N, C, Hp, Wp) array, separably: S strided adds along the rows, then R
    adds of whole rows (measured on N=128, C=64, 32x32, 3x3/2, chunked: 2.6x faster than
    R*S window adds)."""
    (r, s), (stride_h, stride_w) = window.size, window.stride
    out_h, out_w = values.shape[2:]
    rows = np.zeros(values.shape[:3] + (padded_hw[1],), values.dtype)
    for j in range(s):
        rows[..., j : j + stride_w * (out_w - 1) + 1 : stride_w] += values
    spread = np.zeros(values.shape[:2] + padded_hw, values.dtype)
    for i in range(r):
        spread[:, :, i : i + stride_h * (out_h - 1) + 1 : stride_h] += rows
    return spread


def _pool_planes(shape, out_hw, dtype, pool_chunk) -> np.ndarray:
    """Run ``pool_chunk(part, out)`` over L2-sized slices of the N*C planes of an (N, C, H, W)
    ``shape`` on every worker (as max pooling does: 2.6-3.6x faster than one batch-sized
    pass on two cores for the 3x3/2 CIFAR pooling); ``out`` is the (N*C, 1, *out_hw) result
    it fills, returned as (N, C, *out_hw)."""
    n, c, height, width = shape
    out = np.empty((n * c, 1, *out_hw), dtype)
    parallel_map(
        lambda part: pool_chunk(part, out), chunks(n * c, height * width * np.dtype(dtype).itemsize)
    )
    return out.reshape(n, c, *out_hw)


def avg_pool2d_forward(x, window: Window, count_include_pad: bool):
    n, c, height, width = x.shape
    out_hw = window.output_shape(height, width)
    divisors = _avg_divisors(height, width, window, count_include_pad).astype(x.dtype)
    planes = x.reshape(n * c, 1, height, width)

    def pool_chunk(part, y):
        sums = _window_sums(pad(planes[part], window, 0.0), window, out_hw)
        np.divide(sums, divisors, out=y[part])

    return _pool_planes(x.shape, out_hw, x.dtype, pool_chunk)


def avg_pool2d_backward(dy, x_shape, window: Window, count_include_pad: bool):
    n, c, height, width = x_shape
    divisors = _avg_divisors(height, width, window, count_include_pad).astype(dy.dtype)
    shares = (dy / divisors).reshape(n * c, 1, *dy.shape[2:])
    padded_hw = padded_plane(height, width, window)

    def backward_chunk(part, dx):
        copy_rows(
            dx[part],
            crop(_spread_window_sums(shares[part], padded_hw, window), window, height, width),
        )

    return _pool_planes(x_shape, (height, width), dy.dtype, backward_chunk)


def l2_pool2d_forward(x, window: Window):
    """y = sqrt(sum of squares over the window); padding contributes zeros."""
    n, c, height, width = x.shape
    out_hw = window.output_shape(height, width)
    planes = x.reshape(n * c, 1, height, width)

    def pool_chunk(part, y):
        squares = planes[part] * planes[part]
        np.sqrt(_window_sums(pad(squares, window, 0.0), window, out_hw), out=y[part])

    return _pool_planes(x.shape, out_hw, x.dtype, pool_chunk)


def l2_pool2d_backward(dy, x, y, window: Window):
    """dx = x * (the sum of dy / y over the windows holding x), as the kernel computes it; a
    window with y = 0 (all zeros) passes no gradient. The sums spread separably, on chunks of
    planes, as average pooling's do. Against one batch-wide product of the 6-D window view
    with dy / y, two workers, medians of 30: N=128, C=64, 32x32, 3x3/2 131-133 -> 14.0 ms;
    LeNet's 2x2/2 (N=256, C=6, 28x28) 4.5 -> 1.1-1.2 ms."""
    n, c, height, width = x.shape
    planes, padded_hw = x.reshape(n * c, 1, height, width), padded_plane(height, width, window)
    dy_planes, y_planes = (a.reshape(n * c, 1, *y.shape[2:]) for a in (dy, y))

    def backward_chunk(part, dx):
        norms = y_planes[part]
        passing = norms > 0  # (NaN norms pass nothing, as all-zero windows)
        scale = np.where(passing, dy_planes[part] / np.where(passing, norms, 1), 0)
        spread = _spread_window_sums(scale.astype(dy.dtype, copy=False), padded_hw, window)
        np.multiply(planes[part], crop(spread, window, height, width), out=dx[part])

    return _pool_planes(x.shape, (height, width), dy.dtype, backward_chunk)


def global_avg_pool2d_forward(x):
    """(N, C, H, W) -> (N, C): the mean of each plane."""
    n, c, height, width = x.shape
    plane = height * width
    sums = _plane_sums(np.ascontiguousarray(x).reshape(n * c, plane))
    return (sums / x.dtype.type(plane)).reshape(n, c)


def _plane_sums(planes):
    """Each row's sum. Rows of 2 to 255 elements: one GEMV against ones with BLAS held at one
    thread, whose kernel outruns einsum's row-by-row loop (2-core AMD dev VM, float32, 512 K
    elements: 0.12-0.70x einsum's time, N=128, C=64, 8x8 37 us against 54). It is held at one
    thread because OpenBLAS's threaded GEMV groups the dot products by the threads' column
    blocks (N=128, C=64, 8x8 differed in the last bit at 3 threads), so bits would change
    with the thread count, e.g. beside another thread's chunked op. Rows of 1 or of 256 up:
    einsum, where the GEMV took 1.0-1.14x its time (from 256) or 13x (rows of one). Both as
    accurate (~1e-7 against float64) and independent of the data's alignment."""
    if 2 <= planes.shape[1] < 256 and blas_threads_controlled():
        with one_thread_blas():
            return planes @ np.ones(planes.shape[1], planes.dtype)
    return np.einsum("ij->i", planes)


def global_avg_pool2d_backward(dy, x_shape):
    """dy / (H*W) spread over each plane (np.repeat: 1.4x faster than a broadcast copy)."""
    _, _, height, width = x_shape
    share = dy / dy.dtype.type(height * width)
    return np.repeat(share.reshape(-1), height * width).reshape(x_shape)
