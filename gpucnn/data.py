"""Data sets: the bundled handwritten digits (the offline default) and MNIST-style IDX files.

Images come back as float32 (N, 1, H, W) scaled to [0, 1], labels as int64 (N,).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ._checks import check_examples, check_number, check_path, make_rng

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Deflate expands at most ~1032:1, which bounds what an honest .gz can decompress to.
_DEFLATE_MAX_RATIO = 1032


def load_digits():
    """scikit-learn's bundled 1,797 handwritten 8x8 digits (no download): (x, y), x float32
    (1797, 1, 8, 8) in [0, 1], y int64 in 0..9."""
    from sklearn.datasets import load_digits as sklearn_digits

    images, labels = sklearn_digits(return_X_y=True)
    x = (images.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return x, labels.astype(np.int64)


def train_test_split(x, y, test_fraction=0.2, seed=0):
    """Shuffle with ``seed`` and split: (x_train, y_train, x_test, y_test). Arrays (NumPy or
    CuPy) are indexed as they are; lists and other sequences become NumPy arrays."""
    x, y = check_examples(x, "x"), check_examples(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    test_fraction = check_number(test_fraction, "test_fraction", 0.0, 1.0, low_open=True)
    order = make_rng(seed).permutation(len(x))
    n_test = max(1, round(len(x) * test_fraction))
    if n_test >= len(x):
        raise ValueError(f"cannot split {len(x)} examples with test_fraction={test_fraction}")
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed, by content) into a NumPy array.

    The header's sizes are checked against the file's length before anything is allocated;
    a missing, truncated, oversized or malformed file raises a clear error naming it.
    """
    path = check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    file_size = path.stat().st_size
    with path.open("rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(4)
            if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_DTYPES:
                raise ValueError("not an IDX file (bad magic number)")
            dtype, ndim = _IDX_DTYPES[header[2]], header[3]
            if ndim < 1:
                raise ValueError("IDX header declares 0 dimensions")
            dims_raw = handle.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise ValueError("truncated IDX header")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            payload = math.prod(dims) * dtype.itemsize
            limit = file_size * _DEFLATE_MAX_RATIO if compressed else file_size - 4 - 4 * ndim
            if payload > limit:
                raise ValueError(
                    f"IDX header declares shape {dims} ({payload} bytes) but the file can hold "
                    f"at most {limit} bytes"
                )
            data = _read_up_to(handle, payload + 1)  # one byte more reveals trailing garbage
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt IDX file: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if len(data) != payload:
        what = "truncated" if len(data) < payload else "longer than its header declares"
        raise ValueError(f"{path}: IDX data is {what} ({len(data)} bytes, expected {payload})")
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _read_up_to(handle, size: int, chunk: int = 1 << 20) -> bytes:
    """Read at most ``size`` bytes in chunks, so memory follows what the file really holds,
    not what its header claims."""
    parts, remaining = [], size
    while remaining > 0:
        part = handle.read(min(chunk, remaining))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folder: Path, stem: str) -> Path:
    for candidate in (
        stem,
        f"{stem}.gz",
        stem.replace("-idx", ".idx"),
        f"{stem.replace('-idx', '.idx')}.gz",
    ):
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"{folder} has no {stem} (or {stem}.gz): is it an MNIST folder?")


def load_mnist(path):
    """MNIST (or Fashion-MNIST, or any set in the same layout) from a folder holding the four
    standard IDX files, gzipped or not. Returns ((x_train, y_train), (x_test, y_test))."""
    folder = check_path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    splits = []
    for images_stem, labels_stem in _MNIST_FILES.values():
        images = read_idx(_find(folder, images_stem))
        labels = read_idx(_find(folder, labels_stem))
        if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape[1:]:
            raise ValueError(
                f"{images_stem}: expected uint8 images (N, H, W) of at least one pixel, got "
                f"{images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise ValueError(
                f"{labels_stem}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{images_stem} has {len(images)} images but {labels_stem} has {len(labels)} labels"
            )
        x = (images[:, None, :, :] / np.float32(255.0)).astype(np.float32)
        splits.append((x, labels.astype(np.int64)))
    return tuple(splits)
