"""2-D convolution in NumPy: the reference the CUDA kernels are judged against.

x (N, C, H, W), w (K, C, R, S), y (N, K, P, Q). Cross-correlation, as in every framework:
y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xpad[n, c, p*sh + r*dh, q*sw + s*dw].

The GEMM operand is lowered row by row (MEC, Cho & Brand 2017) instead of as a full im2col
matrix: each padded input row is copied once per kernel column s into
L[h, c, s, n, q] = xpad[n, c, h, q*sw + s*dw], and because consecutive rows h sit one block
apart, output row p's operand B_p[(r, c, s), (n, q)] is a plain strided view of L starting at
row p*sh. That copies S*H instead of R*S*P elements per (n, c) and makes y[:, :, p] one GEMM
(K, R*C*S) @ B_p over every image of a chunk. The forward lays L out in blocks of a few
images, L[block, h, c, s, i, q], so that each GEMM's operand is contiguous (BLOCK_COLUMNS).
Chunks keep L near the L2 cache size (``_windows.chunks``). With dilation, output rows p
and p + dh (at stride 1) share rows instead, so L holds one run of rows per phase p mod dh
(``_RowLayout``); where a stride past R would leave rows unused, each (p, r) gets its own
lowered row. The input gradient of a few-channel layer at stride 1 needs no lowering at all
(``_backward_data_by_rows``): the dy rows an input row reads are consecutive, so its GEMM
operand is a view of dy. Nor do windows that share no input element (``_is_disjoint``: any
1x1 filter, a patch embedding, a 2x2 filter at stride 2): their im2col holds each element
once at most, so each image is one GEMM on it (``_disjoint``). A host with more workers than
an op has chunks gets pieces of whole GEMM blocks (``_windows.pieces``) or bands of output
rows (``_row_bands``) on its idle workers, cut so as to keep the bits.

Measured on 2 cores against the per-image im2col this replaced (best of 30, benchmarks'
LeNet and CIFAR layers): forward + backward 1.3-1.6x faster, except CIFAR's 3->16 layer
(unchanged). Arguments arrive validated (gpucnn.ops.conv).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._shapes import Window
from ._parallel import parallel_map, worker_count
from ._windows import (
    CHUNK_MIN_FLOPS,
    CHUNK_MULTIPLE,
    ZeroPadding,
    add_windows,
    chunks,
    copy_rows,
    crop,
    pad,
    padded_plane,
    pieces,
    window_view,
)

# OpenBLAS (0.3.x, x86-64) multiplies a GEMM of M*N*D <= 1e6 without packing its operands.
# On the narrow GEMMs of few-channel layers that is the faster path (one thread, this VM's
# SkylakeX kernels): 16x150 by 150x416 at 109 GFLOP/s, by 150x417 at 78; 32x288 by 288x104
# at 105, by 288x256 at 85. Whole forwards: LeNet conv2 1.61 -> 1.35 ms, CIFAR 32->32
# 5.47 -> 4.82 ms (and its backward-data 5.15 -> 4.56); the other benchmark layers within
# 3%. Other BLAS libraries see a few more calls of a few hundred columns each.
SMALL_GEMM_VOLUME = 1_000_000
# The forward lowers a chunk as contiguous blocks of whole images, about BLOCK_COLUMNS
# columns each, where a block's GEMM stays within SMALL_GEMM_VOLUME and is at least
# BLOCK_MIN_DEPTH deep. The unpacked small-GEMM path streams its operand, and a contiguous
# block of 64 columns stays in L1 where a strided one hundreds of columns wide does not.
# Session 13 (Intel Xeon, AVX-512, 2 cores), one thread, per chunk: CIFAR 32->32's GEMMs
# 1.14 -> 0.85 ms, 16->16's 0.50 -> 0.37; two workers, same-process A/B, medians of 8
# rounds: CIFAR 32->32 forward 0.80-0.82x the time, its backward-data 0.77-0.79x, 16->16
# 0.96-1.00x, LeNet conv2 0.97-1.03x. Shallower GEMMs (LeNet conv1, CIFAR 3->16: depth
# 25-27) lose to the per-call cost; CIFAR 64->64 (64x576 by 576x64) is past the volume.
# Where that block would pass the volume (a wide layer, or a chunk of a prime number of
# images), the widest block within it, if at least IMAGE_BLOCK_MIN_COLUMNS wide: one
# thread, 32x800 (5x5, 32 channels) by 800x32 at 115 GFLOP/s, by 800x128 at 78; 64x800 by
# 800x16 at 110, by 800x128 at 92.
BLOCK_COLUMNS = 64
BLOCK_MIN_DEPTH = 64
IMAGE_BLOCK_MIN_COLUMNS = 16
# Narrower blocks gain nothing: 64x576 by 576x24 at 100 GFLOP/s against 96 in one call.
MIN_BLOCK_COLUMNS = 32
# Where the BLOCK_COLUMNS block passes the volume but a few rows of w would not, the forward
# splits w's rows into GEMMs of GEMM_ROW_BLOCK rows (a multiple) instead of narrowing the
# block, if the block is a multiple of GEMM_COLUMN_ALIGN columns wide. OpenBLAS's small
# kernel (SkylakeX, one thread, Zen 5, session 27) runs 32 and 64 columns far faster than
# 16, 48 or 56: 16x576 by 576x64 at 237-246 GFLOP/s, 32x576 by 576x32 at 222-235, but
# 64x576 by 576x16 (the block CIFAR 64->64 took) at 146-166 and 64x576 by 576x64 packed at
# 172-188. Depth 1152 gains nothing (16 rows by 32 columns 200, packed 205); 56 columns lose.
GEMM_ROW_BLOCK = 16
GEMM_COLUMN_ALIGN = 32
# The filter gradient's dy operand is copied K-last, (P, nQ, K), where R*C*S reaches this:
# the GEMM then takes it untransposed, which the small-GEMM path requires, but the copy
# gathers K values PQ apart. Medians of 15 runs, four alternating rounds, both sides on
# the same machine state: LeNet conv2 (R*C*S = 150) 2.73-3.19 -> 2.21-2.52 ms, CIFAR 16->16
# (144) 9.9-11.3 -> 7.8-9.7, 32->32 (288) 7.6-10.0 -> 6.2-9.2, 64->64 (576) 8.0-8.8 ->
# 6.2-8.2; slower below it: LeNet conv1 (25) 2.0-2.5 -> 2.0-2.8, CIFAR 3->16 (27) 2.6-3.7
# -> 3.4-4.4 (its chunks, sized by three input channels, hold 16 channels of dy each).
DY_K_LAST_MIN_DEPTH = 128
# Backward-data at stride 1 runs by input rows (``_backward_data_by_rows``) where the input
# has at most this many channels; the transposed convolution's GEMM would have only C rows
# and, for a small image, mostly zero padding to multiply. Two workers, same-process A/B,
# medians of 12 rounds: LeNet conv2 (6 channels, dy padded by 4 on 10 rows) 1.39x faster,
# LeNet conv1 (1) 1.19x, CIFAR 3->16 (3) 1.11x; with 16 channels and more the transposed
# convolution wins (CIFAR 16->16 0.73x, 32->32 0.80x, 64->64 0.92x by rows).
ROWS_MAX_CHANNELS = 8


def _lowered_bytes(c: int, window: Window, out_hw: tuple[int, int], itemsize: int) -> int:
    """Bytes of the lowered operand for one image (see ``_lower``)."""
    (out_h, out_w), s = out_hw, window.size[1]
    return _row_layout(window, out_h).lowered_rows * c * s * out_w * itemsize


class _RowLayout(NamedTuple):
    """Which padded input rows the lowering copies, and in what order (see ``_lower``).

    Output row p reads input rows p*sh + r*dh. With g = gcd(sh, dh), rows p and p + period
    (period = dh / g) read the same rows shifted by ``step`` = sh / g taps, so the output
    rows of one phase (p = phase + period * t) share one run of lowered rows, input rows
    phase*sh + u*dh, and output row t's operand is the R of them from u = t * step. Without
    dilation period is 1: one run, consecutive rows at stride 1. Where step > R (a stride
    past the kernel) that run would copy rows no window reads, so each (p, r) gets its own
    lowered row instead (``shared`` False: one phase, ``step`` R)."""

    shared: bool
    period: int  # output rows p and p + period are read by the same lowered rows
    phases: int  # runs of lowered rows: min(period, P)
    step: int  # lowered rows between consecutive output rows of a phase
    run: int  # lowered rows of the longest phase

    @property
    def lowered_rows(self) -> int:
        return self.phases * self.run


def _row_layout(window: Window, out_h: int) -> _RowLayout:
    (stride, dilation), r = (window.stride[0], window.dilation[0]), window.size[0]
    common = math.gcd(stride, dilation)
    period, step = dilation // common, stride // common
    if step > r:
        return _RowLayout(False, 1, 1, r, out_h * r)
    longest = -(-out_h // period)  # output rows of phase 0, the longest
    return _RowLayout(True, period, min(period, out_h), step, (longest - 1) * step + r)


def _lower(padded: np.ndarray, window: Window, out_hw: tuple[int, int], per_block: int):
    """The GEMM operands of a padded chunk of blocks * per_block images, as views of one
    lowered copy in which every operand[t, block] is a contiguous (R*C*S, per_block*Q)
    matrix. A list of (rows, operand) pairs, one per phase of output rows (``_RowLayout``):
    ``rows`` a slice of the output rows, ``operand`` (len(rows), blocks, R*C*S, per_block*Q)
    with operand[t, block, (r, c, s), (i, q)] =
    padded[block*per_block + i, c, p*sh + r*dh, q*sw + s*dw] for p the t-th of ``rows``.
    """
    n, c = padded.shape[:2]
    (r, s), (out_h, out_w) = window.size, out_hw
    (stride_h, stride_w), (dil_h, dil_w) = window.stride, window.dilation
    sn, sc, sh, sw = padded.strides
    blocks = n // per_block
    layout = _row_layout(window, out_h)
    lowered = np.empty(
        (blocks, layout.phases, layout.run, c, s, per_block, out_w), dtype=padded.dtype
    )
    item = lowered.itemsize
    columns = per_block * out_w
    row_bytes = c * s * columns * item
    operands = []
    for phase in range(layout.phases):
        rows = slice(phase, out_h, layout.period)
        count = len(range(out_h)[rows])
        target = lowered[:, phase]
        if layout.shared:  # input rows phase*sh + u*dh, as far as this phase's windows read
            run = (count - 1) * layout.step + r
            source = as_strided(
                padded[:, :, phase * stride_h :],
                (blocks, run, c, s, per_block, out_w),
                (sn * per_block, sh * dil_h, sc, sw * dil_w, sn, sw * stride_w),
            )
            copy_rows(target[:, :run], source)
        else:  # input rows p*sh + r*dh, every (p, r) its own lowered row
            source = as_strided(
                padded,
                (blocks, out_h, r, c, s, per_block, out_w),
                (sn * per_block, sh * stride_h, sh * dil_h, sc, sw * dil_w, sn, sw * stride_w),
            )
            copy_rows(target.reshape(source.shape), source)
        operand = as_strided(
            target,
            (count, blocks, r * c * s, columns),
            (layout.step * row_bytes, layout.phases * layout.run * row_bytes, columns * item, item),
            writeable=False,
        )
        operands.append((rows, operand))
    return operands


def _images_per_block(images: int, k: int, depth: int, out_w: int) -> int:
    """Images in one GEMM block of a chunk's lowered operand (see BLOCK_COLUMNS): the divisor
    of ``images`` nearest BLOCK_COLUMNS / Q, so every block of the chunk has the same width;
    where that block would pass SMALL_GEMM_VOLUME (a wide layer, or a chunk of a prime number
    of images) and w's rows cannot be split for it (``_gemm_rows``), the widest divisor that
    stays within it and at least IMAGE_BLOCK_MIN_COLUMNS wide; all of them where blocks would
    not help."""
    if depth < BLOCK_MIN_DEPTH:
        return images
    divisors = [d for d in range(1, images + 1) if images % d == 0]
    target = BLOCK_COLUMNS / max(1, out_w)
    nearest = min(divisors, key=lambda d: abs(math.log(d / target)))
    widest = SMALL_GEMM_VOLUME // (k * depth)
    if nearest * out_w <= widest or _gemm_rows(k, depth, nearest * out_w) < k:
        return nearest
    fitting = [d for d in divisors if IMAGE_BLOCK_MIN_COLUMNS <= d * out_w <= widest]
    return max(fitting) if fitting else images


def _gemm_rows(k: int, depth: int, columns: int) -> int:
    """Rows of w in each of the forward's GEMMs with a block ``columns`` wide: all K, or where
    that GEMM passes SMALL_GEMM_VOLUME and the block is a multiple of GEMM_COLUMN_ALIGN
    columns, the most GEMM_ROW_BLOCK multiples that stay within it (see GEMM_ROW_BLOCK)."""
    if k * depth * columns <= SMALL_GEMM_VOLUME or columns % GEMM_COLUMN_ALIGN:
        return k
    fitting = SMALL_GEMM_VOLUME // (depth * columns) // GEMM_ROW_BLOCK * GEMM_ROW_BLOCK
    return fitting if fitting else k


def _matmul_row_blocks(a: np.ndarray, b: np.ndarray, rows: int) -> np.ndarray:
    """``np.matmul(a, b)`` for an (M, D) matrix ``a`` and a stack ``b`` of (D, N) operands,
    as GEMMs of ``rows`` rows of ``a`` each (the last may have fewer). Each output element is
    one GEMM's dot product either way."""
    m = a.shape[0]
    if rows >= m:
        return np.matmul(a, b)
    out = np.empty(b.shape[:-2] + (m, b.shape[-1]), dtype=np.result_type(a, b))
    for first in range(0, m, rows):
        np.matmul(a[first : first + rows], b, out=out[..., first : first + rows, :])
    return out


def _weight_matrix(w: np.ndarray) -> np.ndarray:
    """(K, R*C*S): the weight in the lowered operand's (r, c, s) order. The copy moves each
    kernel row's S values as one opaque element (a void view): NumPy's transposing copy of
    runs of S = 3 floats took 55 us for a 64x64x3x3 weight, this one 30 (128 channels 227
    and 113), a cost every call pays, whatever the batch (a one-image forward: 164 us)."""
    k, c, r, s = w.shape
    rows = np.ascontiguousarray(w).reshape(k, c, r * s).view(np.dtype((np.void, s * w.itemsize)))
    return np.ascontiguousarray(rows.transpose(0, 2, 1)).view(w.dtype).reshape(k, -1)


def _matmul_small_blocks(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None):
    """``np.matmul(a, b, out=out)`` for an (M, D) matrix ``a`` and a stack ``b`` of (D, N)
    operands, in column blocks that keep each GEMM's M*N*D within SMALL_GEMM_VOLUME."""
    m, depth = a.shape
    n = b.shape[-1]
    columns = SMALL_GEMM_VOLUME // max(1, m * depth)  # depth 0: zero input channels
    if columns < MIN_BLOCK_COLUMNS or n <= columns:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty(b.shape[:-2] + (m, n), dtype=np.result_type(a, b))
    blocks = -(-n // columns)
    for index in range(blocks):
        part = slice(n * index // blocks, n * (index + 1) // blocks)
        np.matmul(a, b[..., part], out=out[..., part])
    return out


def _sum_of_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over p of ``a[p] @ b[p]`` for stacks of (M, D) and (D, N) matrices, with D split
    into blocks that keep each GEMM's M*N*D within SMALL_GEMM_VOLUME; the blocks' sums are
    added in order, so the result is the same bits run to run."""
    m, depth = a.shape[1:]
    columns = SMALL_GEMM_VOLUME // max(1, m * b.shape[-1])
    blocks = 1 if columns < MIN_BLOCK_COLUMNS else -(-depth // columns)
    total = None
    for index in range(blocks):
        part = slice(depth * index // blocks, depth * (index + 1) // blocks)
        partial = np.matmul(a[:, :, part], b[:, part]).sum(axis=0)
        total = partial if total is None else np.add(total, partial, out=total)
    return total


def _is_disjoint(window: Window) -> bool:
    """Windows that share no input element: a stride at least the window's extent on both
    axes (any 1x1 filter, a patch embedding, a 2x2 convolution at stride 2). Their im2col
    holds each input element at most once, so each image is one GEMM on its (C*R*S, P*Q)
    columns (``_columns``), with the weight and the output as they lie: nothing is lowered
    row by row, reordered or transposed."""
    return all(window.stride[axis] >= window.extent(axis) for axis in (0, 1))


def _columns(x, window: Window, out_hw: tuple[int, int]) -> np.ndarray:
    """(N, C*R*S, P*Q): the columns of x's disjoint windows. A view of x where it allows
    one (a 1x1 filter at stride 1 without padding), else one copy of at most x's size."""
    padded = pad(x, window, 0.0)
    if window.size == (1, 1):  # a plain slice: 0.5 us to make, the strided view 5 (a chunk)
        windows = padded[:, :, :: window.stride[0], :: window.stride[1]]
    else:
        windows = window_view(padded, window, out_hw)
    return windows.reshape(x.shape[0], -1, out_hw[0] * out_hw[1])


def _disjoint(x, w_matrix, b, window: Window):
    """out[n] = w_matrix (rows, C*R*S) @ _columns(x)[n] (+ b): a forward whose windows are
    disjoint (``_is_disjoint``), or with the weight transposed a 1x1 filter's stride-1
    backward-data. One GEMM stack per chunk of images, each chunk's columns gathered as it
    runs. Against the row lowering (two workers, medians of 15): a 1x1 64 -> 128 at 16x16,
    N=128, forward 6.4 -> 3.5 ms, backward-data 5.0 -> 3.5; 256 -> 64 at 8x8 3.5 -> 2.0 and
    4.9 -> 1.7; 64 -> 64 at 56x56, N=32, 7.4 -> 6.0 and 7.7 -> 6.0. Patches, forward /
    backward, same-process A/B (medians of 5-6 alternating rounds): 2x2 at stride 2, 64 ->
    128 at 32x32, N=32, 0.65x / 0.82-0.89x the time; 16x16 at stride 16, 3 -> 384 at
    224x224, N=8, 0.70x / 0.58x; 3x3 at stride 3 with padding, 32 -> 32 at 16x16, N=128,
    0.87-0.89x / 0.89-0.90x; 4x4 at stride 4, 3 -> 96, 1.02-1.04x / 0.78-0.84x."""
    n = x.shape[0]
    out_hw = window.output_shape(*x.shape[2:])
    rows, depth = w_matrix.shape
    plane = out_hw[0] * out_hw[1]
    out = np.empty((n, rows, plane), dtype=x.dtype)

    def disjoint_piece(task: tuple[slice, int]) -> None:
        part = task[0]
        np.matmul(w_matrix, _columns(x[part], window, out_hw), out=out[part])
        if b is not None:
            out[part] += b[:, None]

    parts = chunks(n, (rows + depth) * plane * x.itemsize)
    parallel_map(disjoint_piece, pieces(parts, 2 * rows * depth * plane))
    return out.reshape(n, rows, *out_hw)


def _disjoint_filter(dy, x, w_shape, window: Window):
    """dw of disjoint windows: sum over images of dy[n] (K, P*Q) @ _columns(x)[n]^T, per
    chunk of images one GEMM stack and its sum, the chunks' sums added in order (the same
    bits every run). Against the lowering's GEMM per output row (two workers, medians of
    15): a 1x1 64 -> 128 at 16x16, N=128, 11.0 -> 4.6 ms; 256 -> 64 at 8x8 5.6 -> 2.4;
    64 -> 64 at 56x56, N=32, 11.4 -> 6.8."""
    n, k, out_h, out_w = dy.shape
    plane, depth = out_h * out_w, math.prod(w_shape[1:])
    dy_flat = dy.reshape(n, k, plane)

    def filter_chunk(part: slice) -> np.ndarray:
        columns = _columns(x[part], window, (out_h, out_w))
        return np.matmul(dy_flat[part], columns.transpose(0, 2, 1)).sum(axis=0)

    dw = np.zeros((k, depth), dtype=x.dtype)
    for partial in parallel_map(filter_chunk, chunks(n, (k + depth) * plane * x.itemsize)):
        dw += partial  # in chunk order
    return dw.reshape(w_shape)


def conv2d_forward(x, w, b, window: Window):
    if _is_disjoint(window):
        return _disjoint(x, np.ascontiguousarray(w).reshape(w.shape[0], -1), b, window)
    n, c, height, width = x.shape
    k = w.shape[0]
    out_h, out_w = window.output_shape(height, width)
    w_mat = _weight_matrix(w)
    y = np.empty((n, k, out_h, out_w), dtype=x.dtype)
    padding = ZeroPadding(window)

    def forward_piece(task: tuple[slice, int, slice]) -> None:
        part, per_block, band = task  # per_block: the piece's chunk's, for the chunk's bits
        blocks = (part.stop - part.start) // per_block
        padded = _padded_band(x[part], window, band, out_h, padding)
        out = y[part].reshape(blocks, per_block, k, out_h, out_w)[:, :, :, band]
        band_hw = (band.stop - band.start, out_w)
        gemm_rows = _gemm_rows(k, w_mat.shape[1], per_block * out_w)
        for rows, operand in _lower(padded, window, band_hw, per_block):
            # (rows, blocks, K, per_block*Q)
            products = _matmul_row_blocks(w_mat, operand, gemm_rows)
            if b is not None:
                products += b[:, None]
            products = products.reshape(-1, blocks, k, per_block, out_w).transpose(1, 3, 2, 0, 4)
            copy_rows(out[:, :, :, rows], products)

    lowered_bytes = _lowered_bytes(c, window, (out_h, out_w), x.itemsize)
    flops = 2 * w.size * out_h * out_w
    parts = chunks(n, lowered_bytes, flops)

    def block_of(images: int) -> int:  # a chunk's images: its pieces keep its blocks
        return _images_per_block(images, k, w_mat.shape[1], out_w)

    tasks = pieces(parts, flops, block_of)
    bands = _row_bands(_idle_worker_bands(len(tasks), n * flops), out_h)
    parallel_map(forward_piece, [(*task, band) for task in tasks for band in bands])
    return y


def _idle_worker_bands(tasks: int, flops: int) -> int:
    """Bands of output rows for each of a forward's ``tasks`` (``flops`` in all): where an
    op worth four chunks has fewer tasks than workers (one to three large images: a chunk
    holds one image at least), enough for the idle workers, each of CHUNK_MIN_FLOPS at
    least; else 1. Each output row's GEMMs are the very ones of the whole, so the bits are
    the same for any count."""
    if flops < CHUNK_MULTIPLE * CHUNK_MIN_FLOPS:
        return 1
    return max(1, min(-(-worker_count() // tasks), flops // tasks // CHUNK_MIN_FLOPS))


def _filter_bands(chunks: int, flops: int) -> int:
    """Bands of output rows for each of a filter gradient's ``chunks`` (``flops`` in all).
    A chunk's GEMMs are as deep as its images, so it cannot be cut between images without
    other bits. Where an op worth four chunks has fewer (one to three large images, or a
    batch whose lowered rows fit one chunk), each chunk is cut into CHUNK_MULTIPLE bands
    instead, by size alone: their partial sums, added in order, are the same bits on any
    number of workers."""
    few_large = chunks < CHUNK_MULTIPLE and flops >= CHUNK_MULTIPLE * CHUNK_MIN_FLOPS
    return CHUNK_MULTIPLE if few_large else 1


def _row_bands(count: int, out_h: int) -> list[slice]:
    """``count`` bands of the ``out_h`` output rows (fewer where there are fewer rows), as
    even as they go. A band lowers only the input rows its output rows read
    (``_padded_band``)."""
    count = max(1, min(count, out_h))
    return [slice(out_h * index // count, out_h * (index + 1) // count) for index in range(count)]


def _padded_band(x, window: Window, band: slice, out_h: int, padding: ZeroPadding):
    """``padding(x)``, x padded (valid until this thread's next chunk: the caller lowers it
    first), or for a band of fewer than all ``out_h`` output rows the padded rows they
    read, from band.start * stride_h on, without padding (or copying) the rest of x."""
    if band.start == 0 and band.stop == out_h:
        return padding(x)
    height, width = x.shape[2:]
    (pad_h, pad_w), stride_h = window.padding, window.stride[0]
    first = band.start * stride_h
    stop = (band.stop - 1) * stride_h + window.extent(0)
    if pad_h == pad_w == 0:
        return x[:, :, first:stop]
    padded = np.zeros((*x.shape[:2], stop - first, width + 2 * pad_w), dtype=x.dtype)
    # the padded rows holding x's (none where the band reads padding only: empty slices)
    top = max(first, pad_h)
    bottom = max(top, min(stop, pad_h + height))
    copy_rows(
        padded[:, :, top - first : bottom - first, pad_w : pad_w + width],
        x[:, :, top - pad_h : bottom - pad_h],
    )
    return padded


def conv2d_backward(dy, x, w, window: Window, with_bias: bool, need_dx: bool, need_dw: bool):
    height, width = x.shape[2:]
    dx = _backward_data(dy, w, window, (height, width)) if need_dx else None
    dw = _backward_filter(dy, x, w, window) if need_dw else None
    db = _backward_bias(dy) if with_bias else None
    return dx, dw, db


def _backward_bias(dy):
    """db[k] = sum of dy[:, k]. einsum's SIMD sum measured 3.3x faster than
    ``dy.sum(axis=(0, 2, 3))`` (LeNet conv2 at N=256: 0.17 -> 0.05 ms; CIFAR 16 channels
    at 32x32, N=128: 0.47 -> 0.13 ms), as accurate against a float64 sum (2e-7)."""
    n, k, out_h, out_w = dy.shape
    return np.einsum("nkp->k", dy.reshape(n, k, out_h * out_w))  # not -1: n may be 0


def _backward_filter(dy, x, w, window: Window):
    """dw[k, c, r, s] = sum over chunks, then output rows p, of (B_p @ dy_p^T)[(r, c, s), k]:
    a fixed order, so the result is the same bits run to run. This orientation of the GEMM
    (M = R*C*S, N = K) measured up to 2x faster than dy_p @ B_p^T (CIFAR 16->16: 5.8 against
    11.3 ms; never slower on the benchmark layers). dy_p^T is a K-last copy or a transposed
    view of a K-first one (see DY_K_LAST_MIN_DEPTH)."""
    if _is_disjoint(window):
        return _disjoint_filter(dy, x, w.shape, window)
    n, c = x.shape[:2]
    k, _, r, s = w.shape
    out_h, out_w = dy.shape[2:]

    dy_k_last = r * c * s >= DY_K_LAST_MIN_DEPTH
    padding = ZeroPadding(window)

    def filter_band(task: tuple[slice, slice]) -> np.ndarray:
        part, band = task
        images, band_h = part.stop - part.start, band.stop - band.start
        dy_band = dy[part][:, :, band]
        if dy_k_last:
            dy_rows = dy_band.transpose(2, 0, 3, 1).reshape(band_h, -1, k)  # (P, nQ, K)
        else:
            dy_rows = np.empty((band_h, k, images, out_w), dtype=dy.dtype)
            copy_rows(dy_rows, dy_band.transpose(2, 1, 0, 3))
            dy_rows = dy_rows.reshape(band_h, k, -1).transpose(0, 2, 1)
        total = None
        padded = _padded_band(x[part], window, band, out_h, padding)
        for rows, operand in _lower(padded, window, (band_h, out_w), images):
            partial = _sum_of_products(operand[:, 0], dy_rows[rows])
            total = partial if total is None else np.add(total, partial, out=total)
        return total

    parts = list(chunks(n, _lowered_bytes(c, window, (out_h, out_w), x.itemsize)))
    bands = _row_bands(_filter_bands(len(parts), n * 2 * w.size * out_h * out_w), out_h)
    dw = np.zeros((r * c * s, k), dtype=x.dtype)
    tasks = [(part, band) for part in parts for band in bands]
    for partial in parallel_map(filter_band, tasks):  # summed in task order: same bits
        dw += partial
    return np.ascontiguousarray(dw.reshape(r, c, s, k).transpose(3, 1, 0, 2))


def _backward_data(dy, w, window: Window, hw: tuple[int, int]):
    """dx: of a 1x1 filter at stride 1 without padding, w^T dy per image (each input element
    is read once, where it lies); with stride 1, by input rows where the input has few
    channels (see ROWS_MAX_CHANNELS), else a forward convolution of dy with the flipped,
    transposed kernel; with a larger stride, col2im (w^T dy, then its columns put back on the
    elements their windows read: one store where windows share no element, else R*S adds
    into the stride's phases, ``_Phases``) in cache-sized chunks of images, so its
    R*S-times-dy columns never exist for the whole batch.

    Measured (2 cores, stride 1): the transposed convolution is 1.3-2.1x faster than col2im on
    the LeNet and CIFAR layers, even where K > C makes its GEMM the larger one (LeNet conv2,
    6->16 5x5: 6.2 against 10.1 ms)."""
    n, k, out_h, out_w = dy.shape
    _, c, r, s = w.shape
    height, width = hw
    if window.size == window.stride == (1, 1) and window.padding == (0, 0):
        return _disjoint(dy, np.ascontiguousarray(w.reshape(k, c).T), None, window)
    if window.stride == window.dilation == (1, 1) and c <= ROWS_MAX_CHANNELS:
        return _backward_data_by_rows(dy, w, window, hw)
    if window.stride == (1, 1):
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        # dy needs d(R-1) - p zeros around it (or that much cropped, for a larger padding).
        edges = [window.dilation[a] * (window.size[a] - 1) - window.padding[a] for a in (0, 1)]
        cropped = dy[
            :,
            :,
            max(0, -edges[0]) : out_h - max(0, -edges[0]),
            max(0, -edges[1]) : out_w - max(0, -edges[1]),
        ]
        transposed = Window(
            size=(r, s),
            stride=(1, 1),
            padding=(max(0, edges[0]), max(0, edges[1])),
            dilation=window.dilation,
        )
        return conv2d_forward(cropped, flipped, None, transposed)  # _lower reads any strides
    w_columns = np.ascontiguousarray(w.reshape(k, -1).T)  # (CRS, K)
    disjoint = _is_disjoint(window)
    dx = np.empty((dy.shape[0], c, height, width), dtype=dy.dtype)
    padded_hw = padded_plane(height, width, window)
    # w^T of the pitch's zero columns must be 0: an inf or NaN weight keeps the strided adds
    phases = None if disjoint or not np.isfinite(w).all() else _Phases(window, (out_h, out_w), hw)

    def col2im_piece(task: tuple[slice, int]) -> None:
        part = task[0]
        images = part.stop - part.start
        if phases is not None:
            phases.col2im(dx[part], w_columns, dy[part])
            return
        columns = np.matmul(w_columns, dy[part].reshape(images, k, out_h * out_w))
        columns = columns.reshape(images, c, r, s, out_h, out_w)
        # without padding, straight into dx (a copy fewer)
        padded = dx[part] if padded_hw == hw else np.empty((images, c, *padded_hw), dy.dtype)
        padded.fill(0)
        if disjoint:  # each element read by one window at most: one store, no sums
            window_view(padded, window, (out_h, out_w), writeable=True)[...] = columns
        else:
            add_windows(padded, columns, window)
        if padded_hw != hw:
            copy_rows(dx[part], crop(padded, window, height, width))

    per_image = (k + c * r * s) * out_h * out_w * dy.itemsize  # a chunk's dy and columns
    parts = chunks(n, per_image)
    parallel_map(col2im_piece, pieces(parts, 2 * w.size * out_h * out_w))
    return dx


class _Phases:
    """col2im of a strided convolution whose windows overlap, by flat adds into the phases of
    the stride.

    A stride (sh, sw) splits the padded dx into sh*sw phases: phase (a, b) holds the
    elements at padded rows a + sh*i and columns b + sw*j. Tap (r, s) adds its P x Q block of
    columns into one phase, (r*dh mod sh, s*dw mod sw), shifted by (r*dh // sh, s*dw // sw).
    With dy copied to rows of ``pitch`` values (its Q, then zeros: Q plus the largest column
    shift at least), w^T dy's rows lie at that pitch too, and so does each phase: the shift
    is one flat offset, and a tap's add is one contiguous run of P*pitch values per (image,
    channel). add_windows instead adds P rows of Q values at a stride of sw, a NumPy loop
    call each. The zero columns (w^T 0 = 0 for finite w) land on phase elements and add
    nothing; each element still sums its taps in (r, s) order. Each phase is then copied
    into its elements of dx.

    Measured (one thread, chunks of 32 images, SkylakeX kernels): ResNet-20's 16->32 3x3 at
    stride 2 on 32x32 1.57 -> 1.02 ms, 32->64 on 16x16 1.21 -> 0.89, 64->128 at 56x56 (8
    images) 8.2 -> 6.4, 5x5 dilated 2 at stride 2 3.4 -> 2.3."""

    def __init__(self, window: Window, out_hw: tuple[int, int], hw: tuple[int, int]):
        (sh, sw), (dh, dw), (ph, pw) = window.stride, window.dilation, window.padding
        (r, s), (out_h, out_w) = window.size, out_hw
        self.window = window
        self.row_phase = [tap * dh % sh for tap in range(r)]
        self.row_shift = [tap * dh // sh for tap in range(r)]
        self.column_phase = [tap * dw % sw for tap in range(s)]
        self.column_shift = [tap * dw // sw for tap in range(s)]
        widest = max(self.column_shift)
        # Every run fits (the last one ends `widest` values into the row after its last),
        # and so does dx's last element (rows and columns no window reads included).
        self.pitch = max(out_w + widest, (hw[1] - 1 + pw) // sw + 1)
        self.rows = max(out_h + max(self.row_shift) + (widest > 0), (hw[0] - 1 + ph) // sh + 1)

    def col2im(self, dx: np.ndarray, w_columns: np.ndarray, dy: np.ndarray) -> None:
        images, k, out_h, out_w = dy.shape
        _, c, height, width = dx.shape
        (sh, sw), (ph, pw), pitch = self.window.stride, self.window.padding, self.pitch
        pitched = np.zeros((images, k, out_h, pitch), dtype=dy.dtype)
        copy_rows(pitched[..., :out_w], dy)
        run = out_h * pitch
        r, s = self.window.size
        columns = np.matmul(w_columns, pitched.reshape(images, k, run))
        columns = columns.reshape(images, c, r, s, run)
        phases = np.zeros((sh, sw, images, c, self.rows * pitch), dtype=dy.dtype)
        for tap_r in range(r):
            for tap_s in range(s):
                start = self.row_shift[tap_r] * pitch + self.column_shift[tap_s]
                phase = phases[self.row_phase[tap_r], self.column_phase[tap_s]]
                phase[..., start : start + run] += columns[:, :, tap_r, tap_s]
        phases = phases.reshape(sh, sw, images, c, self.rows, pitch)
        for a in range(sh):
            first_h = (a - ph) % sh  # dx's first row in phase a
            top = (first_h + ph) // sh  # its row in the phase
            phase_rows = slice(top, top + len(range(first_h, height, sh)))
            for b in range(sw):
                first_w = (b - pw) % sw
                left = (first_w + pw) // sw
                phase_columns = slice(left, left + len(range(first_w, width, sw)))
                dx[:, :, first_h::sh, first_w::sw] = phases[a, b, :, :, phase_rows, phase_columns]


def _backward_data_by_rows(dy, w, window: Window, hw: tuple[int, int]):
    """dx at stride 1 and dilation 1, one GEMM per input row h over the dy rows it feeds:

        G_h[(c, s), (n, q)] = sum over taps r inside dy and k of w[k, c, r, s] dy[n, k, p, q]
        with p = h + ph - r, then dx[n, c, h, w] = sum over s of G_h[(c, s), (n, w + pw - s)].

    The dy rows an input row reads are consecutive, so with the kernel rows flipped the
    GEMM's operand is a view of dy copied once as (P, K, n*pitch): no lowering, and only taps
    that land in dy's rows are multiplied (the transposed convolution pads dy with R - 1 - ph
    zero rows and columns a side). Rows whose taps all lie in dy share one stacked GEMM
    (depth R*K); the others take one each over their taps. The S column shifts are adds of
    whole flat rows in a fixed order (the same bits every run): each image's columns are
    padded with zeros to ``pitch``, so a shift past an image's edge reads zeros. With a
    pitch of Q, S strided adds with inner runs of Q floats cost more than the GEMMs (LeNet
    conv2, one thread, per chunk: 0.52 against 0.34 ms); with the pitch (14 for Q = 10),
    whole backward-data on one thread 0.88x the time, CIFAR 3->16 (33 for 32) 0.90x,
    LeNet conv1 1.01x; on two workers 0.95-0.98x (A/B, medians of 10 rounds)."""
    n, k, out_h, out_w = dy.shape
    _, c, r, s = w.shape
    height, width = hw
    pad_h, pad_w = window.padding
    # w_rows[(c, s), (r', k)] = w[k, c, R - 1 - r', s]: taps in the order of their dy rows
    w_rows = np.ascontiguousarray(w[:, :, ::-1, :].transpose(1, 3, 2, 0)).reshape(c * s, r * k)
    # Input rows whose R taps all read dy: first_full <= h < end_full.
    first_full = min(height, max(0, r - 1 - pad_h))
    end_full = max(first_full, min(height, out_h - pad_h))
    # Each image's columns lie `pitch` apart in dy_rows, G and the rows of dx, zeros after
    # its Q columns of dy: G's column q then lands on dx's w = q - pw + s at the same flat
    # offset for every image, and a shift that runs past an image's edge reads zeros.
    pitch = max(out_w + max(0, s - 1 - pad_w), width + pad_w)
    dx = np.empty((n, c, height, width), dtype=dy.dtype)

    def rows_chunk(part: slice) -> None:
        images = part.stop - part.start
        columns = images * pitch
        dy_rows = np.empty((out_h, k, images, pitch), dtype=dy.dtype)
        copy_rows(dy_rows[..., :out_w], dy[part].transpose(2, 1, 0, 3))
        dy_rows[..., out_w:] = 0  # only the pitch's zero columns: dy overwrites the rest
        dy_rows = dy_rows.reshape(out_h, k, columns)
        grads = np.empty((height, c * s, columns), dtype=dy.dtype)  # G_h for every h
        if end_full > first_full:
            item = dy.itemsize
            stacked = as_strided(
                dy_rows[first_full + pad_h - r + 1 :],
                (end_full - first_full, r * k, columns),
                (k * columns * item, columns * item, item),
                writeable=False,
            )
            _matmul_small_blocks(w_rows, stacked, out=grads[first_full:end_full])
        for h in [*range(first_full), *range(end_full, height)]:
            # at stride 1 every input row has a tap inside dy: first_p <= last_p
            first_p, last_p = max(0, h + pad_h - r + 1), min(out_h - 1, h + pad_h)
            taps = slice((first_p - h - pad_h + r - 1) * k, (last_p - h - pad_h + r) * k)
            operand = dy_rows[first_p : last_p + 1].reshape(-1, columns)
            _matmul_small_blocks(w_rows[:, taps], operand, out=grads[h])
        by_tap = grads.reshape(height, c, s, columns)
        rows = np.zeros((height, c, columns), dtype=dy.dtype)
        for tap in range(s):  # G's column q lands on w = q - pw + tap: one flat shift
            shift = pad_w - tap  # rows[..., j] += G[..., j + shift]
            first, end = max(0, -shift), min(columns, columns - shift)
            if end > first:
                rows[..., first:end] += by_tap[:, :, tap, first + shift : end + shift]
        copy_rows(
            dx[part], rows.reshape(height, c, images, pitch)[..., :width].transpose(2, 1, 0, 3)
        )

    per_image = (height * c * s + out_h * k) * pitch * dy.itemsize
    parallel_map(rows_chunk, chunks(n, per_image))
    return dx
