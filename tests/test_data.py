"""Data loading: the bundled digits, and IDX files as untrusted input."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from gpucnn.data import load_digits, load_mnist, read_idx, train_test_split
from tests.helpers import count_refusals


def write_idx(path, array, type_code=0x08, compress=False):
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def test_digits_are_real_and_scaled():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    assert x.min() == 0.0 and x.max() == 1.0


def test_split_is_seeded_and_disjoint():
    x, y = np.arange(100)[:, None], np.arange(100)
    a = train_test_split(x, y, 0.25, seed=1)
    b = train_test_split(x, y, 0.25, seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert len(a[2]) == 25 and not set(a[1]) & set(a[3])
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, y, 1.0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        train_test_split(x, y, seed=-1)
    with pytest.raises(TypeError, match="test_fraction must be a number"):
        train_test_split(x, y, "0.2")
    with pytest.raises(ValueError, match="x has 100 examples but y has 99"):
        train_test_split(x, y[:99])
    # every example in the test set leaves none to train on: refused, down to one example
    for count, fraction in ((10, 0.96), (1, 0.2)):
        with pytest.raises(ValueError, match=f"cannot split {count} examples"):
            train_test_split(x[:count], y[:count], fraction)
    assert [len(part) for part in train_test_split(x[:10], y[:10], 0.94)] == [1, 1, 9, 9]
    lists = train_test_split(x.tolist(), y.tolist(), 0.25, seed=1)  # sequences become arrays
    assert all(np.array_equal(u, v) for u, v in zip(lists, a, strict=True))
    for bad in (None, 3.0, "digits", [[1, 2], [3]]):  # was len()'s "unsized object"
        with pytest.raises(TypeError, match="x must be an array of examples"):
            train_test_split(bad, y)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "dtype, code",
    [
        (np.uint8, 0x08),
        (np.int8, 0x09),
        (np.int16, 0x0B),
        (np.int32, 0x0C),
        (np.float32, 0x0D),
        (np.float64, 0x0E),
    ],
)
def test_read_idx_round_trips(tmp_path, compress, dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    loaded = read_idx(write_idx(tmp_path / "a.idx", array, code, compress))
    assert np.array_equal(loaded, array) and loaded.dtype == np.dtype(dtype).newbyteorder("=")


def _mnist_folder(tmp_path, compress=False, n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte{'.gz' if compress else ''}",
            rng.integers(0, 256, (n, 28, 28)).astype(np.uint8),
            compress=compress,
        )
        write_idx(
            tmp_path / f"{prefix}-labels-idx1-ubyte{'.gz' if compress else ''}",
            rng.integers(0, 10, n).astype(np.uint8),
            compress=compress,
        )
    return tmp_path


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist(tmp_path, compress):
    (x_train, y_train), (x_test, y_test) = load_mnist(_mnist_folder(tmp_path, compress))
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    assert y_train.dtype == np.int64 and y_test.shape == (3,)


def test_mnist_count_mismatch(tmp_path):
    folder = _mnist_folder(tmp_path)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="has 3 images but .* has 4 labels"):
        load_mnist(folder)


def test_mnist_images_without_pixels_are_refused(tmp_path):
    folder = _mnist_folder(tmp_path)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((3, 0, 28), np.uint8))
    with pytest.raises(ValueError, match="at least one pixel"):
        load_mnist(folder)


@pytest.mark.parametrize(
    ("stem", "array", "type_code", "words"),
    [
        ("t10k-images-idx3-ubyte", np.zeros((3, 784), np.uint8), 0x08, "uint8 images"),
        ("t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.int32), 0x0C, "uint8 images"),
        ("t10k-labels-idx1-ubyte", np.zeros((3, 1), np.uint8), 0x08, "uint8 labels"),
        ("t10k-labels-idx1-ubyte", np.zeros(3, np.int16), 0x0B, "uint8 labels"),
    ],
)
def test_mnist_files_of_the_wrong_shape_or_type_are_refused(
    tmp_path, stem, array, type_code, words
):
    # each wrong in one way only: the shape right and the type wrong, or the other way round
    folder = _mnist_folder(tmp_path)
    write_idx(folder / stem, array, type_code)
    with pytest.raises(ValueError, match=f"{stem}: expected {words}"):
        load_mnist(folder)


def test_a_path_that_is_not_one_is_named():
    for call in (read_idx, load_mnist):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
            call(3)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_idx(tmp_path / "x.idx")


def test_corrupt_idx_files(tmp_path):
    good = write_idx(tmp_path / "good.idx", np.zeros((4, 5), np.uint8))
    data = good.read_bytes()
    cases = {
        "magic": b"\x01\x00" + data[2:],
        "type": data[:2] + b"\x07" + data[3:],
        "truncated header": data[:6],
        "no dimensions": data[:3] + b"\x00",
        "truncated": data[:-1],
        "trailing": data + b"\x00",
        "huge": data[:4] + struct.pack(">II", 2**31, 2**31) + data[12:],
        "gz huge": gzip.compress(data[:4] + struct.pack(">II", 2**31, 2**31)),
        "bad gz": b"\x1f\x8b" + b"\x00" * 30,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.idx"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=str(path.name)):
            read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_damaged_idx_files_raise_value_error_and_nothing_else(tmp_path, compress):
    # Never zlib.error from a damaged deflate stream.
    array = np.arange(120, dtype=np.uint8).reshape(4, 5, 6)
    original = write_idx(tmp_path / "good.idx", array, compress=compress).read_bytes()
    refused = count_refusals(read_idx, original, tmp_path / "bad.idx", 400, seed=2, cut=0.3)
    assert refused > 100
