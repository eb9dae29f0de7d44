"""Convolution on the CUDA path: sizes, checks, launches of ``cuda/conv2d.cu``.

Same functions and semantics as ``gpucnn.cpu.conv``; arguments arrive validated by
``gpucnn.ops.conv``. Arrays are CuPy arrays on a GPU or NumPy arrays on the emulator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .._shapes import Window
from ._gemm import NARROW_ROWS, TARGET_BLOCKS, THREADS, WIDE_ROWS, grid, split_reduction
from ._launch import contiguous, empty, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "conv2d.cu"
# GEMMs of at most this many rows (channels) use the narrow tile. Measured on an H100
# (benchmarks/NOTES.md): at 64 channels the narrow tile wins forward and backward-data, but
# backward-filter, whose few columns (C*R*S) leave it few tiles, is faster wide.
NARROW_UP_TO = 64
NARROW_UP_TO_FILTER = 32
# The implicit GEMM's filter-gradient splits are summed a thread an element in split order
# (conv2d_sum_splits: coalesced, but each thread a chain of `splits` loads with a few in
# flight: ~0.3 us a group of four from L2, so LeNet conv2's 200 splits of 2400 elements take
# ~15 us on the ten SMs that 2400 threads fill, ResNet-20 3->16's 528 splits of 432 about
# 40), or a warp an element (conv2d_sum_splits_by_warp: 32 times shorter chains, every SM
# busy, but a lane's 4-byte load pulls a whole 32-byte sector, 8x the bytes). At ~5 TB/s of
# L2 that traffic stays under the chains' time below about 10,000 elements, so: a warp an
# element from SUM_BY_WARP_MIN_SPLITS splits up to SUM_BY_WARP_MAX_ELEMENTS elements. A
# model, not yet timed (benchmarks/NOTES.md, session 30).
SUM_BY_WARP_MIN_SPLITS = 32
SUM_BY_WARP_MAX_ELEMENTS = 8192
# Backward-filter of at most this many filter taps (K*C*R*S) reduces directly, a thread per
# tap (conv2d_backward_filter_per_tap): LeNet's first layer, 6 x 1 x 5 x 5, used 6 of the
# narrow tile's 32 rows and 25 of its 128 columns, and 0.187 ms on an H100 against cuDNN's
# 0.075 (not yet measured with the per-tap kernel).
PER_TAP_FILTER_TAPS = THREADS

# Winograd F(m x m, 3x3) (cuda/conv2d_winograd.cu) for all three directions of 3x3, stride-1,
# undilated layers: m = 2 does 2.25x fewer multiplications than the implicit GEMM, m = 4 4x
# fewer, for a workspace and three to five launches in place of one. GPUCNN_CONV_ALGORITHM:
# "gemm", "winograd" (F(2x2, 3x3) wherever it applies), "winograd4" (F(4x4, 3x3) likewise),
# "direct" (below) or "auto" (the default), which takes Winograd where an H100 measured it
# faster (benchmarks/NOTES.md, session 10, device time): F(4x4) 1.7-7.4x the implicit GEMM
# in every direction on the ResNet-50 / VGG-16 layers (batch 32, 64-512 channels) and
# 1.4-1.7x on the CIFAR CNN's 32 -> 32 at 32x32 (batch 128, 2.4 GFLOP); against F(2x2)
# 1.06-1.7x, but 0.93-0.94x on ResNet-50's 7x7 layer, where F(4x4)'s 4 tiles an image leave
# its GEMMs too few columns (and on 128@28's backward-data). Neither pays on ResNet-20's
# layers (16-64 channels, 0.6 GFLOP: 0.4-0.8x the GEMM), whose extra launches and transform
# traffic cost more than the multiplications saved. Float32 error of F(4x4) on those layers
# against float64: 1-8e-6 (F(2x2) 2-10e-7, the GEMM 2-20e-7). The same rule holds for all
# three directions, so a layer runs one algorithm throughout.
WINOGRAD_SOURCE = "conv2d_winograd.cu"
ALGORITHM_VARIABLE = "GPUCNN_CONV_ALGORITHM"
ALGORITHMS = ("auto", "gemm", "winograd", "winograd4", "direct")
WINOGRAD_TILES = {"winograd": 2, "winograd4": 4}  # output tile side m of each algorithm
AUTO_WINOGRAD_MIN_CHANNELS = 32  # input and output channels both
AUTO_WINOGRAD_MIN_FLOPS = 2e9  # of the direct convolution, 2 N K C R S P Q
AUTO_WINOGRAD4_MIN_SIDE = 8  # output rows and columns both; below it "auto" takes F(2x2)
# Images per Winograd pass are limited so that its transformed input and product ((m + 2)^2
# values per m x m tile and channel each) stay under this many bytes; at least one image.
WINOGRAD_WORKSPACE_BYTES = 256 << 20

# Direct convolution (cuda/conv2d_direct.cu), all three directions (backward-data of a
# strided layer one phase of dx at a time; with a stride and dilation both, the GEMM's), for
# layers with few channels and small images, where the implicit GEMM's tiles mostly multiply
# zeros: GPUCNN_CONV_ALGORITHM=direct. A layer whose output rows are wider than a block's
# pixels, whose filter has more taps than a block's threads cover, or whose staged input does
# not fit in shared memory, keeps the GEMM. "auto" takes it only for the backward-data of
# strided, undilated layers of at most AUTO_DIRECT_PHASES_MAX_CHANNELS input and output
# channels: the GEMM's gather multiplies every filter tap, three in four of them zeros at
# stride 2. On an H100 (session 20, benchmarks/NOTES.md) the phases beat the GEMM on every
# strided 3x3 layer measured, 1.3-3.0x: ResNet-20's 16 -> 32 and 32 -> 64 (batch 128), 48,
# 64 and 64 -> 128 channels at 16x16, ResNet-18's 64 -> 128 at 56x56 and ResNet-50's 128 and
# 256 channels (batch 32). The bound is the widest measured.
# "auto" also takes it for the forward and the stride-1 backward-data of a stride-1,
# undilated layer whose direction computes at most AUTO_DIRECT_MAX_ROWS channels from at
# least AUTO_DIRECT_MIN_CHANNELS, with outputs that give a block at least
# AUTO_DIRECT_MIN_WARPS of its 8 warps; its backward-filter follows its forward. Where the
# implicit GEMM's narrow tile (32 rows) is at least half zeros and each image fills a
# block, staging beats gathering. The three H100 runs since the direct kernel's last change
# (sessions 11 and 20, three machines; direct / GEMM, ms): ResNet-20 16@32 (batch 128)
# forward 0.078 / 0.086, 0.068 / 0.086, 0.053 / 0.086; backward-data 0.090 / 0.094, 0.080 /
# 0.093, 0.062 / 0.094; backward-filter 0.119 / 0.174, 0.109 / 0.174, 0.109 / 0.173; LeNet
# conv1's backward-data (6 -> 1 channel at 28x28: 7 warps) 0.049 / 0.133, 0.100 / 0.163,
# 0.068 / 0.133. Each bound is the widest measured to win: the GEMM won 2 of 3 runs on
# LeNet conv1's forward (1 input channel), LeNet conv2 (10x10 and 14x14 outputs: 2 warps)
# and ResNet-20's 32- and 64-channel layers.
DIRECT_SOURCE = "conv2d_direct.cu"
DIRECT_PIXELS, DIRECT_CHANNELS = 4, 8  # per thread: direct::kPixels, direct::kChannels
DIRECT_COLUMNS = 4  # filter taps per thread in backward-filter: direct::kColumns
DIRECT_MAX_GROUPS = 8  # groups of DIRECT_CHANNELS output channels a block: 64 in 256 threads
DIRECT_MAX_CHUNK = 8  # input channels staged in shared memory at a time
DIRECT_SHARED_BYTES = 48 << 10  # the most a launch may ask for without opting in
AUTO_DIRECT_PHASES_MAX_CHANNELS = 256
AUTO_DIRECT_MAX_ROWS = 16
AUTO_DIRECT_MIN_CHANNELS = 6
AUTO_DIRECT_MIN_WARPS = 7


@dataclass(frozen=True)
class DirectPlan:
    """How ``conv2d_direct`` covers a layer: ``groups`` of DIRECT_CHANNELS output channels a
    block, ``pixel_threads`` threads each (a multiple of 32) owning DIRECT_PIXELS output
    pixels of a band of ``band_rows`` rows, ``chunk`` input channels staged at a time in
    ``shared_bytes`` of shared memory."""

    groups: int
    pixel_threads: int
    band_rows: int
    chunk: int
    shared_bytes: int


def direct_plan(
    in_channels: int, out_channels: int, out_hw, kernel_hw, stride, dilation, itemsize: int
) -> DirectPlan | None:
    """The direct kernel's plan for a convolution of ``in_channels`` into ``out_channels`` with
    outputs of ``out_hw``, or None where it does not apply (a row wider than a block's pixels,
    staging past DIRECT_SHARED_BYTES, or no work)."""
    (p, q), (r, s) = out_hw, kernel_hw
    if min(in_channels, out_channels, p, q) < 1:
        return None
    groups = min(-(-out_channels // DIRECT_CHANNELS), DIRECT_MAX_GROUPS)
    # Up to 256 threads a block, but no more warps of pixels than an image fills (LeNet's
    # 10 x 10 outputs: one warp a group, not four mostly idle ones).
    warps_per_image = -(-p * q // (DIRECT_PIXELS * 32))
    pixel_threads = 32 * min(max(1, DIRECT_MAX_GROUPS // groups), warps_per_image)
    band_rows = min(p, DIRECT_PIXELS * pixel_threads // q)
    if band_rows < 1:
        return None
    in_rows = (band_rows - 1) * stride[0] + (r - 1) * dilation[0] + 1
    span = (q - 1) * stride[1] + (s - 1) * dilation[1] + 1
    per_channel = (r * s * groups * DIRECT_CHANNELS + in_rows * span) * itemsize
    chunk = min(DIRECT_MAX_CHUNK, in_channels, DIRECT_SHARED_BYTES // per_channel)
    if chunk < 1:
        return None
    return DirectPlan(groups, pixel_threads, band_rows, chunk, chunk * per_channel)


@dataclass(frozen=True)
class DirectFilterPlan:
    """How ``conv2d_direct_backward_filter`` covers a layer: blocks of ``groups`` of
    DIRECT_CHANNELS output channels by ``chunk`` input channels, ``column_threads`` threads a
    group (DIRECT_COLUMNS filter taps each), ``threads`` in all; each block reduces over
    ``units`` (image, band of ``band_rows`` output rows) units, one of ``splits`` splits of
    the batch, staging them in ``shared_bytes`` of shared memory."""

    groups: int
    column_threads: int
    chunk: int
    band_rows: int
    units: int
    splits: int
    threads: int
    shared_bytes: int


def direct_filter_plan(
    n: int, in_channels: int, out_channels: int, out_hw, kernel_hw, stride, dilation, itemsize
) -> DirectFilterPlan | None:
    """The direct weight-gradient kernel's plan, or None where it does not apply (a filter
    with more taps than a block's threads cover, staging past DIRECT_SHARED_BYTES, no work)."""
    (p, q), (r, s) = out_hw, kernel_hw
    if min(n, in_channels, out_channels, p, q) < 1:
        return None
    taps = r * s
    groups = min(-(-out_channels // DIRECT_CHANNELS), DIRECT_MAX_GROUPS)
    # input channels a block: as many as its threads cover, the layer's split evenly
    most = max(1, THREADS // groups * DIRECT_COLUMNS // taps)
    chunk = -(-in_channels // -(-in_channels // most))
    column_threads = -(-chunk * taps // DIRECT_COLUMNS)
    if groups * column_threads > THREADS:
        return None
    # the most output rows a band may have for its dy and input rows to fit in shared memory
    block_channels = groups * DIRECT_CHANNELS
    span = (q - 1) * stride[1] + (s - 1) * dilation[1] + 1
    room = DIRECT_SHARED_BYTES // itemsize - chunk * ((r - 1) * dilation[0] + 1) * span
    band_rows = min(p, room // (q * block_channels + chunk * stride[0] * span))
    if band_rows < 1:
        return None
    in_rows = (band_rows - 1) * stride[0] + (r - 1) * dilation[0] + 1
    shared = (band_rows * q * block_channels + chunk * in_rows * span) * itemsize
    blocks = -(-out_channels // block_channels) * -(-in_channels // chunk)
    total_units = n * -(-p // band_rows)
    units = -(-total_units // max(1, min(total_units, -(-TARGET_BLOCKS // blocks))))
    threads = -(-groups * column_threads // 32) * 32
    return DirectFilterPlan(
        groups, column_threads, chunk, band_rows, units, -(-total_units // units), threads, shared
    )


def chosen_direct_plan(
    algorithm: str, in_channels: int, out_channels: int, out_hw, kernel_hw, window: Window, itemsize
) -> DirectPlan | None:
    """The direct kernel's plan for the forward of ``window`` (or, with the channels swapped
    and stride 1, its backward-data) where ``algorithm`` takes the direct kernel, else None:
    "direct" wherever the plan applies, "auto" within the bounds measured to win (see
    AUTO_DIRECT_MAX_ROWS)."""
    geometry = (window.stride, window.dilation, itemsize)
    if algorithm == "direct":
        return direct_plan(in_channels, out_channels, out_hw, kernel_hw, *geometry)
    if algorithm != "auto" or not (  # the cheap tests before the plan: this runs every call
        window.stride == window.dilation == (1, 1)
        and out_channels <= AUTO_DIRECT_MAX_ROWS
        and in_channels >= AUTO_DIRECT_MIN_CHANNELS
    ):
        return None
    plan = direct_plan(in_channels, out_channels, out_hw, kernel_hw, *geometry)
    if plan and plan.groups * plan.pixel_threads >= 32 * AUTO_DIRECT_MIN_WARPS:
        return plan
    return None


def takes_direct_phases(w_shape, window: Window, algorithm: str) -> bool:
    """Whether backward-data runs by phases of dx (conv2d_direct_phase, where its plan fits):
    a strided, undilated layer under "direct", or under "auto" with few channels."""
    if window.stride == (1, 1) or window.dilation != (1, 1):
        return False
    k, c = w_shape[:2]
    return algorithm == "direct" or (
        algorithm == "auto" and max(k, c) <= AUTO_DIRECT_PHASES_MAX_CHANNELS
    )


def direct_phase_plan(w_shape, x_hw, window: Window, itemsize: int) -> DirectPlan | None:
    """The plan of a strided, undilated layer's backward-data through conv2d_direct_phase,
    made for the most pixels a phase has (phase (0, 0)'s) and the most taps (ceil(R / sh) by
    ceil(S / sw)), which then covers every phase; None where it does not fit."""
    k, c, r, s = w_shape
    (sh, sw), (height, width) = window.stride, x_hw
    largest = (-(-height // sh), -(-width // sw))
    return direct_plan(k, c, largest, (-(-r // sh), -(-s // sw)), (1, 1), (1, 1), itemsize)


def _direct_phases(dy, w, dx, window: Window, plan: DirectPlan):
    """dx of a strided layer, every phase in one launch (conv2d_direct_phase)."""
    n, k, out_h, out_w = dy.shape
    _, c, height, width = dx.shape
    sh, sw = window.stride
    largest_rows = -(-height // sh)  # phase (0, 0)'s, which the grid is for
    bands = -(-largest_rows // plan.band_rows)
    launch(
        get_kernel(DIRECT_SOURCE, "conv2d_direct_phase", dy),
        (n * bands, -(-c // (plan.groups * DIRECT_CHANNELS)), sh * sw),
        plan.pixel_threads * plan.groups,
        (
            dy,
            w,
            dx,
            n,
            k,
            out_h,
            out_w,
            c,
            *w.shape[2:],
            height,
            width,
            sh,
            sw,
            *window.padding,
            plan.band_rows,
            plan.pixel_threads,
            plan.chunk,
        ),
        shared_mem=plan.shared_bytes,
    )
    return dx


def _direct(inp, w, b, out, stride, padding, dilation, flip: bool, plan: DirectPlan):
    """out (N, rows, P, Q) = the convolution of inp (N, red, Hi, Wi) with w, plus b: the
    forward (w as given) or, at stride 1, backward-data (inp = dy, w flipped and transposed
    in the kernel, padding (R-1)*d - p)."""
    n, red, in_h, in_w = inp.shape
    rows, out_h, out_w = out.shape[1:]
    launch(
        get_kernel(DIRECT_SOURCE, "conv2d_direct", inp),
        (n * -(-out_h // plan.band_rows), -(-rows // (plan.groups * DIRECT_CHANNELS))),
        plan.pixel_threads * plan.groups,
        (
            inp,
            w,
            b,
            out,
            n,
            red,
            in_h,
            in_w,
            rows,
            *w.shape[2:],
            out_h,
            out_w,
            *stride,
            *padding,
            *dilation,
            int(flip),
            int(b is not None),
            plan.band_rows,
            plan.pixel_threads,
            plan.chunk,
        ),
        shared_mem=plan.shared_bytes,
    )
    return out


def _shape(x_shape, w_shape, window: Window, out_hw):
    n, c, height, width = x_shape
    k, _, r, s = w_shape
    if max(c, k) * r * s > 2**31 - 1:  # the kernels index filter taps with int
        raise ValueError(
            f"w of shape {tuple(w_shape)} is too large: C*R*S and K*R*S must stay below 2^31"
        )
    return (
        n,
        c,
        height,
        width,
        k,
        r,
        s,
        *out_hw,
        *window.stride,
        *window.padding,
        *window.dilation,
    )


def _tiled(name: str, rows: int, like, narrow_up_to: int = NARROW_UP_TO, source: str = SOURCE):
    """The kernel ``name`` (or its ``_narrow`` twin for GEMMs of few rows, where a 128-row
    tile would mostly multiply zeros) and its tile's row count."""
    if rows <= narrow_up_to:
        return get_kernel(source, f"{name}_narrow", like), NARROW_ROWS
    return get_kernel(source, name, like), WIDE_ROWS


def conv_algorithm() -> str:
    """``GPUCNN_CONV_ALGORITHM``: "auto" (the default), "gemm", "winograd", "winograd4" or
    "direct"."""
    value = os.environ.get(ALGORITHM_VARIABLE, "auto").strip().lower() or "auto"
    if value not in ALGORITHMS:
        raise ValueError(f"{ALGORITHM_VARIABLE} must be one of {ALGORITHMS}, got {value!r}")
    return value


def winograd_tile(x_shape, w_shape, window: Window, out_hw, algorithm: str | None = None) -> int:
    """The output tile side m of the Winograd F(m x m, 3x3) this layer runs through, or 0 for
    another algorithm. Winograd covers 3x3 kernels at stride 1 without dilation, padding up
    to 2 (so that backward-data's transposed padding, 2 - p, is one too); "auto" also asks
    for the channels and work where Winograd was measured faster, and takes F(4x4) unless
    the output is under AUTO_WINOGRAD4_MIN_SIDE a side. ``algorithm``: the caller's
    ``conv_algorithm()``, else read here."""
    if algorithm is None:
        algorithm = conv_algorithm()  # checked on every layer, so a misspelling never hides
    n, c = x_shape[:2]
    k, _, r, s = w_shape
    if (
        algorithm in ("gemm", "direct")
        or (r, s) != (3, 3)
        or window.stride != (1, 1)
        or window.dilation != (1, 1)
        or max(window.padding) > 2
    ):
        return 0
    if algorithm != "auto":
        return WINOGRAD_TILES[algorithm]
    flops = 2 * n * k * c * r * s * out_hw[0] * out_hw[1]
    if min(c, k) < AUTO_WINOGRAD_MIN_CHANNELS or flops < AUTO_WINOGRAD_MIN_FLOPS:
        return 0
    large = min(out_hw) >= AUTO_WINOGRAD4_MIN_SIDE
    return WINOGRAD_TILES["winograd4" if large else "winograd"]


def _winograd_passes(n: int, channels: int, out_hw, itemsize: int, m: int):
    """(tile rows, tile columns, images per pass): the m x m output tiles of one image, and
    as many images as keep the two ((m + 2)^2, channels, tiles) workspaces, ``channels``
    being the input's plus the output's, within WINOGRAD_WORKSPACE_BYTES (at least one)."""
    tiles_h, tiles_w = -(-out_hw[0] // m), -(-out_hw[1] // m)
    per_image = max(1, (m + 2) ** 2 * channels * tiles_h * tiles_w * itemsize)
    return tiles_h, tiles_w, max(1, min(n, WINOGRAD_WORKSPACE_BYTES // per_image))


def _transform(name: str, m: int, like):
    """The F(m x m, 3x3) transform kernel ``name``: winograd_* for m = 2, winograd4_* for 4
    (one kernel per tile size, each with the registers its own transform needs)."""
    return get_kernel(WINOGRAD_SOURCE, f"winograd{'' if m == 2 else m}_{name}", like)


def _winograd(inp, w, b, out, padding, flip: bool, m: int):
    """out (N, rows, P, Q) = the 3x3 stride-1 convolution of inp (N, red, Hi, Wi) padded by
    ``padding``, plus b, through F(m x m, 3x3): the forward (w as given, rows = K) or
    backward-data (inp = dy, w flipped and transposed by the filter transform, rows = C). In
    passes of as many images as the workspace allows."""
    n, red, in_h, in_w = inp.shape
    rows, out_h, out_w = out.shape[1:]
    points = (m + 2) ** 2
    tiles_h, tiles_w, images = _winograd_passes(
        n, red + rows, (out_h, out_w), inp.dtype.itemsize, m
    )
    u = empty(inp, (points, rows, red), inp.dtype)
    v = empty(inp, (points, red, images * tiles_h * tiles_w), inp.dtype)
    z = empty(inp, (points, rows, images * tiles_h * tiles_w), inp.dtype)
    launch(
        _transform("filter_transform", m, inp),
        grid_stride_blocks(rows * red, THREADS),
        THREADS,
        (w, u, rows, red, int(flip)),
    )
    gemm, tile_rows = _tiled("winograd_gemm", rows, inp, source=WINOGRAD_SOURCE)
    transform_in = _transform("input_transform", m, inp)
    transform_out = _transform("output_transform", m, inp)
    for first in range(0, n, images):
        count = min(images, n - first)
        tiles = count * tiles_h * tiles_w
        launch(
            transform_in,
            grid_stride_blocks(red * tiles, THREADS),
            THREADS,
            (inp, v, first, count, red, in_h, in_w, *padding, tiles_h, tiles_w),
        )
        # U's rows hold red elements: four are one aligned vector when 4 divides red
        launch(
            gemm,
            grid(tiles, rows, tile_rows, points),
            THREADS,
            (u, v, z, rows, red, tiles, red, points, int(red % 4 == 0)),
        )
        launch(
            transform_out,
            grid_stride_blocks(rows * tiles, THREADS),
            THREADS,
            (z, b, out, first, count, rows, out_h, out_w, tiles_h, tiles_w, int(b is not None)),
        )
    return out


def conv2d_forward(x, w, b, window: Window):
    x, w = contiguous(x), contiguous(w)
    n, c, height, width = x.shape
    k, _, r, s = w.shape
    out_hw = window.output_shape(height, width)
    y = empty(x, (n, k, *out_hw), x.dtype)
    algorithm = conv_algorithm()
    tile = winograd_tile(x.shape, w.shape, window, out_hw, algorithm)
    bias = None if b is None else contiguous(b)
    if tile:
        return _winograd(x, w, bias, y, window.padding, False, tile)
    plan = chosen_direct_plan(algorithm, c, k, out_hw, (r, s), window, x.itemsize)
    if plan:
        return _direct(x, w, bias, y, window.stride, window.padding, window.dilation, False, plan)
    # w's rows hold C*R*S elements: four along a row are one aligned vector when 4 divides it
    vector_loads = int((c * r * s) % 4 == 0)
    kernel, tile_rows = _tiled("conv2d_forward", k, x)
    launch(
        kernel,
        grid(n * out_hw[0] * out_hw[1], k, tile_rows),
        THREADS,
        (
            x,
            w,
            bias,
            y,
            *_shape(x.shape, w.shape, window, out_hw),
            int(b is not None),
            vector_loads,
        ),
    )
    return y


def conv2d_backward(dy, x, w, window: Window, with_bias: bool, need_dx: bool, need_dw: bool):
    dy, x, w = contiguous(dy), contiguous(x), contiguous(w)
    shape = _shape(x.shape, w.shape, window, dy.shape[2:])
    algorithm = conv_algorithm()
    tile = winograd_tile(x.shape, w.shape, window, dy.shape[2:], algorithm)
    dx = None
    if need_dx:
        dx = _backward_data(dy, w, empty(x, x.shape, x.dtype), window, shape, tile, algorithm)
    dw = None
    if need_dw and tile:
        dw = _winograd_backward_filter(dy, x, w, window, tile)
    elif need_dw:  # the direct kernel under "direct", and under "auto" where the forward takes it
        k, c, r, s = w.shape
        direct = algorithm == "direct" or (
            chosen_direct_plan(algorithm, c, k, dy.shape[2:], (r, s), window, x.itemsize)
            is not None
        )
        dw = _backward_filter(dy, x, w, window, shape, direct)
    db = backward_bias(dy) if with_bias else None
    return dx, dw, db


def _backward_data(dy, w, dx, window: Window, shape, tile: int, algorithm: str):
    """dx through Winograd (tile > 0), the direct kernel (where it applies: at stride 1 where
    chosen_direct_plan takes it; at a stride by phases of dx, see takes_direct_phases) or the
    implicit GEMM's gather."""
    n, c, height, width = dx.shape
    k, _, r, s = w.shape
    (ph, pw), (dh, dw) = window.padding, window.dilation
    if tile:
        return _winograd(dy, w, None, dx, (2 - ph, 2 - pw), True, tile)
    if window.stride == (1, 1):
        plan = chosen_direct_plan(algorithm, k, c, (height, width), (r, s), window, dx.itemsize)
        if plan:
            padding = ((r - 1) * dh - ph, (s - 1) * dw - pw)
            return _direct(dy, w, None, dx, (1, 1), padding, window.dilation, True, plan)
    elif takes_direct_phases(w.shape, window, algorithm):
        plan = direct_phase_plan(w.shape, (height, width), window, dx.itemsize)
        if plan:
            return _direct_phases(dy, w, dx, window, plan)
    kernel, tile_rows = _tiled("conv2d_backward_data", c, dx)
    launch(kernel, grid(n * height * width, c, tile_rows), THREADS, (dy, w, dx, *shape))
    return dx


def backward_bias(dy):
    """db[k] = the sum of dy (N, K, P, Q) over n, p and q, a fixed-order reduction per channel
    (also the dense layer's, on dy as (N, K, 1, 1))."""
    n, k, out_h, out_w = dy.shape
    db = empty(dy, (k,), dy.dtype)
    launch(
        get_kernel(SOURCE, "conv2d_backward_bias", dy),
        min(k, 65535),
        THREADS,
        (dy, db, n, k, out_h * out_w),
    )
    return db


def _backward_filter(dy, x, w, window: Window, shape, direct: bool):
    """dw through the split-K implicit GEMM: the reduction over N*P*Q is split only as far as
    the tiles alone cannot fill the GPU, and the splits are summed in a fixed order. Filters
    of at most PER_TAP_FILTER_TAPS taps take a thread per tap instead, and with ``direct``
    others take the direct kernel where it applies."""
    n, c = x.shape[:2]
    k, _, r, s = w.shape
    dw = empty(x, w.shape, x.dtype)
    plane = dy.shape[2] * dy.shape[3]
    reduction, taps = n * plane, c * r * s
    if k * taps <= PER_TAP_FILTER_TAPS:
        return _backward_filter_per_tap(dy, x, dw, shape)
    if direct:
        plan = direct_filter_plan(
            n, c, k, dy.shape[2:], (r, s), window.stride, window.dilation, x.itemsize
        )
        if plan:
            return _direct_backward_filter(dy, x, dw, shape, plan)
    kernel, tile_rows = _tiled("conv2d_backward_filter", k, x, NARROW_UP_TO_FILTER)
    column_tiles, row_tiles, _ = grid(taps, k, tile_rows)
    splits, chunk = split_reduction(reduction, column_tiles * row_tiles)
    out = dw if splits == 1 else empty(x, (splits, k, taps), x.dtype)
    # dy's rows are images of P*Q: four along one are an aligned vector when 4 divides P*Q
    launch(
        kernel,
        grid(taps, k, tile_rows, splits),
        THREADS,
        (dy, x, out, *shape, chunk, int(plane % 4 == 0)),
    )
    if splits > 1:
        _sum_filter_splits(out, dw, splits)
    return dw


def _sum_filter_splits(partial, dw, splits: int):
    """dw = the sum of the implicit GEMM's ``splits`` slices of partial: by a warp an element
    where there are many splits and few elements (see SUM_BY_WARP_MAX_ELEMENTS), else by a
    thread an element in split order."""
    if splits >= SUM_BY_WARP_MIN_SPLITS and dw.size <= SUM_BY_WARP_MAX_ELEMENTS:
        _sum_splits_by_warp(partial, dw, splits)
        return
    launch(
        get_kernel(SOURCE, "conv2d_sum_splits", dw),
        grid_stride_blocks(dw.size, THREADS),
        THREADS,
        (partial, dw, splits, dw.size),
    )


def _direct_backward_filter(dy, x, dw, shape, plan: DirectFilterPlan):
    """dw through cuda/conv2d_direct.cu's staged reduction, the batch's splits summed in
    order."""
    k, c = dw.shape[:2]
    block_channels = plan.groups * DIRECT_CHANNELS
    out = dw if plan.splits == 1 else empty(x, (plan.splits, dw.size), x.dtype)
    launch(
        get_kernel(DIRECT_SOURCE, "conv2d_direct_backward_filter", x),
        (plan.splits, -(-k // block_channels), -(-c // plan.chunk)),
        plan.threads,
        (
            dy,
            x,
            out,
            *shape,
            plan.band_rows,
            plan.groups,
            plan.column_threads,
            plan.chunk,
            plan.units,
        ),
        shared_mem=plan.shared_bytes,
    )
    if plan.splits > 1:
        _sum_splits_by_warp(out, dw, plan.splits)
    return dw


def _sum_splits_by_warp(partial, dw, splits: int):
    """dw = the sum of partial's ``splits`` slices, in order (a warp per element)."""
    launch(
        get_kernel(SOURCE, "conv2d_sum_splits_by_warp", dw),
        grid_stride_blocks(dw.size * 32, THREADS),
        THREADS,
        (partial, dw, splits, dw.size),
    )


def _backward_filter_per_tap(dy, x, dw, shape):
    """dw of a filter with few taps: one thread per tap, the N*P output rows split over up to
    TARGET_BLOCKS blocks, the splits summed by a warp per tap."""
    rows = x.shape[0] * dy.shape[2]
    splits = max(1, min(TARGET_BLOCKS, rows))
    rows_per_split = max(1, -(-rows // splits))
    splits = max(1, -(-rows // rows_per_split))
    out = dw if splits == 1 else empty(x, (splits, dw.size), x.dtype)
    launch(
        get_kernel(SOURCE, "conv2d_backward_filter_per_tap", x),
        splits,
        THREADS,
        (dy, x, out, *shape, rows_per_split),
    )
    if splits > 1:
        _sum_splits_by_warp(out, dw, splits)
    return dw


def _winograd_backward_filter(dy, x, w, window: Window, m: int):
    """dw of a 3x3 stride-1 layer through Winograd F(m x m, 3x3): per pass over the batch,
    the input and output-gradient transforms, then (m + 2)^2 GEMMs whose reduction over the
    tiles is split as in ``_backward_filter``; the splits are summed in split and pass order,
    the last pass's by the filter transform's adjoint as it reads them."""
    n, c, height, width = x.shape
    k = w.shape[0]
    dw = empty(x, w.shape, x.dtype)
    if n == 0:  # no pass: nothing to sum
        dw.fill(0)
        return dw
    out_hw = dy.shape[2:]
    points = (m + 2) ** 2
    tiles_h, tiles_w, images = _winograd_passes(n, c + k, out_hw, x.dtype.itemsize, m)
    per_image = tiles_h * tiles_w
    v = empty(x, (points, c, images * per_image), x.dtype)
    d = empty(x, (points, images * per_image, k), x.dtype)
    # E, the sum of the passes before the last: only where there are several
    e = empty(x, (points, c, k), x.dtype) if images < n else None
    gemm, tile_rows = _tiled("winograd_gemm", c, x, NARROW_UP_TO_FILTER, WINOGRAD_SOURCE)
    column_tiles, row_tiles, _ = grid(k, c, tile_rows)
    transform_in = _transform("input_transform", m, x)
    transform_dy = _transform("output_gradient_transform", m, x)
    sum_splits = get_kernel(WINOGRAD_SOURCE, "winograd_sum_splits", x)
    partial = None
    for first in range(0, n, images):
        count = min(images, n - first)
        tiles = count * per_image
        splits, chunk = split_reduction(tiles, points * column_tiles * row_tiles)
        if partial is None:  # the first pass is the largest
            partial = empty(x, (splits, points, c, k), x.dtype)
        launch(
            transform_in,
            grid_stride_blocks(c * tiles, THREADS),
            THREADS,
            (x, v, first, count, c, height, width, *window.padding, tiles_h, tiles_w),
        )
        launch(
            transform_dy,
            grid_stride_blocks(k * tiles, THREADS),
            THREADS,
            (dy, d, first, count, k, *out_hw, tiles_h, tiles_w),
        )
        # V's rows hold `tiles` elements: four are one aligned vector when 4 divides it
        launch(
            gemm,
            (column_tiles, row_tiles, points * splits),
            THREADS,
            (v, d, partial, c, tiles, k, chunk, points, int(tiles % 4 == 0)),
        )
        if first + count < n:  # E += this pass's splits, before the next pass's overwrite them
            launch(
                sum_splits,
                grid_stride_blocks(points * c * k, THREADS),
                THREADS,
                (partial, e, splits, points * c * k, int(first > 0)),
            )
    launch(
        _transform("filter_gradient", m, x),
        grid_stride_blocks(k * c, THREADS),
        THREADS,
        (partial, e, dw, k, c, splits, int(e is not None)),
    )
    return dw
