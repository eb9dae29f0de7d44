"""The host side of ``cuda/gemm_tile.cuh``: its tile sizes, grids, and the split-K rule, for
every kernel built on it (convolution, Winograd, the Hopfield product)."""

from __future__ import annotations

THREADS = 256  # gemm::kThreads
TILE_COLUMNS = 128  # columns of C each block computes (gemm::kCols)
WIDE_ROWS, NARROW_ROWS = 128, 32  # its rows: gemm::Wide and gemm::Narrow
STEP = 8  # the reduction step (gemm::kStep): a split starts on one
# A GEMM with too few tiles to fill the GPU splits its reduction until the grid has at most
# TARGET_BLOCKS blocks (four per SM on the largest GPUs we target: two waves of two resident
# 256-thread blocks on an H100's 132 SMs), keeping at least MIN_SPLIT reduction indices per
# split; the splits are summed in a fixed order. Swept on an H100 over the convolution
# benchmark's 15 layers' backward-filter (benchmarks/NOTES.md): against 264 / 2048, these
# cut its time by a third (geometric mean), up to 2.9x on LeNet/CIFAR. "At most", not "at
# least": a grid just past two waves runs a third, nearly empty one (Hopfield n = 4096,
# batch 256: 9 splits, 576 blocks, 0.311 ms; 8 splits, 512 blocks, 0.279 ms). The splits'
# workspace holds at most TARGET_BLOCKS tiles of C: ~35 MB in float32.
TARGET_BLOCKS = 528
# Products whose blocks all carry the same work (the Hopfield network's) split only as far as
# one wave: there a second wave buys no balance and doubles the splits' workspace. Measured
# on an H100 (session 29, against two waves): Hopfield n = 4096 batch 256 0.280 -> 0.270 ms
# (4 splits, not 8), batch 1024 0.997 -> 0.966 (1, not 2), n = 16384 batch 8 0.478 -> 0.462
# (33, not 66); n = 16384 batch 64 and 256 level.
ONE_WAVE = TARGET_BLOCKS // 2
MIN_SPLIT = 128


def grid(columns: int, rows: int, tile_rows: int, splits: int = 1) -> tuple[int, int, int]:
    """The launch grid of a (rows x columns) C in tiles of ``tile_rows`` rows."""
    return (-(-columns // TILE_COLUMNS), -(-rows // tile_rows), splits)


def split_reduction(
    reduction: int, blocks: int, target_blocks: int = TARGET_BLOCKS, step: int = STEP
) -> tuple[int, int]:
    """(splits, indices per split) for a GEMM of ``blocks`` tiles reducing over ``reduction``
    indices: as many splits as keep the grid within ``target_blocks`` blocks and each split
    at least MIN_SPLIT indices long, each a whole number of reduction steps of ``step``
    (a divisor of MIN_SPLIT)."""
    splits = max(1, min(target_blocks // blocks, reduction // MIN_SPLIT))
    chunk = max(1, -(-reduction // splits))
    chunk = -(-chunk // step) * step  # whole steps: each split starts on a vector boundary
    return max(1, -(-reduction // chunk)), chunk
