"""gpucnn.cpu._windows: how a batch is split for the workers, and that no strided view the
NumPy path takes reaches outside its array."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import gpucnn.cpu._windows
import gpucnn.cpu.conv
from gpucnn import ops
from gpucnn._shapes import Window
from gpucnn.cpu._windows import (
    CHUNK_BYTES,
    CHUNK_MIN_FLOPS,
    CHUNK_MULTIPLE,
    ZeroPadding,
    chunks,
    copy_rows,
    pad,
    pieces,
)
from tests.helpers import conv_case_geometry, conv_case_inputs, shuffled_linspace
from tests.ops import test_conv, test_pool


def _lengths(count, bytes_per_item, flops_per_item=0):
    runs = list(chunks(count, bytes_per_item, flops_per_item))
    assert [run.step for run in runs] == [None] * len(runs)
    starts = [run.start for run in runs] + [count]
    assert starts[0] == 0 and [run.stop for run in runs] == starts[1:]  # covers, in order
    return [run.stop - run.start for run in runs]


@pytest.mark.parametrize("count", [1, 2, 5, 64, 1000])
def test_a_batch_that_fits_is_one_chunk(count):
    assert _lengths(count, CHUNK_BYTES // count) == [count]
    assert _lengths(count, 0) == [count]


def test_an_empty_batch_has_no_chunks():
    assert _lengths(0, 100) == []
    assert _lengths(0, 100, CHUNK_MIN_FLOPS) == []


@pytest.mark.parametrize("count", [4, 32, 33, 1000])
def test_work_that_fits_one_chunk_splits_in_four_from_four_times_the_minimum(count):
    least = -(-CHUNK_MULTIPLE * CHUNK_MIN_FLOPS // count)  # per item, for the total to reach it
    assert _lengths(count, 1, least - 1) == [count]
    lengths = _lengths(count, 1, least)
    assert len(lengths) == CHUNK_MULTIPLE and max(lengths) - min(lengths) <= 1


def test_work_splits_into_no_more_chunks_than_items():
    assert _lengths(3, 1, CHUNK_MIN_FLOPS * 10) == [1, 1, 1]


def test_work_keeps_the_byte_chunks_where_they_are_more():
    assert len(_lengths(64, CHUNK_BYTES // 4, CHUNK_MIN_FLOPS)) == 16


@pytest.mark.parametrize(
    ("count", "bytes_per_item"),
    [
        (7, CHUNK_BYTES // 3),
        (64, CHUNK_BYTES // 16 + 1),
        (1000, 9 * CHUNK_BYTES // 1000),
        (3, 1 << 30),
    ],
)
def test_a_larger_batch_splits_into_even_chunks_a_multiple_of_four_where_it_can(
    count, bytes_per_item
):
    lengths = _lengths(count, bytes_per_item)
    assert max(lengths) - min(lengths) <= 1
    assert len(lengths) % CHUNK_MULTIPLE == 0 or len(lengths) == count
    # at most about CHUNK_BYTES a chunk: never more items than one over the bound
    assert (min(lengths) - 1) * bytes_per_item <= CHUNK_BYTES


def _pieces(parts, flops_per_item, workers, monkeypatch, unit=lambda items: 1):
    """pieces() as a host with ``workers`` workers cuts ``parts`` (lengths): (start, stop,
    unit) triples, checked to cover every chunk in order with whole units of that chunk."""
    monkeypatch.setattr(gpucnn.cpu._windows, "worker_count", lambda: workers)
    starts = np.cumsum([0, *parts])
    chunks_ = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    tasks = pieces(chunks_, flops_per_item, unit)
    assert [piece.start for piece, _ in tasks][0] == 0 and tasks[-1][0].stop == starts[-1]
    for (piece, size), (after, _) in zip(tasks, [*tasks[1:], (None, None)], strict=True):
        assert after is None or after.start == piece.stop  # in order, nothing left out
        chunk = next(c for c in chunks_ if c.start <= piece.start < c.stop)
        assert piece.stop <= chunk.stop and size == unit(chunk.stop - chunk.start)
        assert (piece.start - chunk.start) % size == 0 and (piece.stop - piece.start) % size == 0
    return [(piece.start, piece.stop, size) for piece, size in tasks]


@pytest.mark.parametrize("workers", [1, 2, 4, 16])
def test_no_more_workers_than_chunks_leaves_the_chunks_as_they_are(workers, monkeypatch):
    parts = [8] * max(CHUNK_MULTIPLE, workers)
    tasks = _pieces(parts, CHUNK_MIN_FLOPS, workers, monkeypatch, unit=lambda items: 2)
    assert tasks == [(8 * i, 8 * i + 8, 2) for i in range(len(parts))]


def test_more_workers_cut_each_chunk_into_even_pieces_of_whole_units(monkeypatch):
    # 4 chunks of 12 items, units of 3 (4 a chunk), 16 workers: 4 pieces a chunk, one unit
    # each; 8 workers: 2 pieces a chunk, two units each.
    parts, unit = [12] * 4, lambda items: 3
    assert _pieces(parts, CHUNK_MIN_FLOPS, 16, monkeypatch, unit) == [
        (3 * i, 3 * i + 3, 3) for i in range(16)
    ]
    assert _pieces(parts, CHUNK_MIN_FLOPS, 8, monkeypatch, unit) == [
        (6 * i, 6 * i + 6, 3) for i in range(8)
    ]
    # 5 workers for 4 chunks: 2 pieces a chunk (ceil), the units split as evenly as they go
    assert [b - a for a, b, _ in _pieces([9] * 4, CHUNK_MIN_FLOPS, 5, monkeypatch)] == [4, 5] * 4


def test_each_chunk_keeps_its_own_unit(monkeypatch):
    # Chunks of 6 and 5 items (a batch of 22 in four): a chunk's unit comes from its length.
    unit = {6: 2, 5: 5}.get
    tasks = _pieces([6, 6, 5, 5], CHUNK_MIN_FLOPS, 16, monkeypatch, unit)
    assert tasks == [(0, 2, 2), (2, 4, 2), (4, 6, 2), (6, 8, 2), (8, 10, 2), (10, 12, 2)] + [
        (12, 17, 5),
        (17, 22, 5),
    ]


def test_a_piece_keeps_the_minimum_work(monkeypatch):
    # 8 items a chunk at half the minimum each: four minimums a chunk, so 4 pieces at most
    half = CHUNK_MIN_FLOPS // 2
    assert len(_pieces([8] * 4, half, 64, monkeypatch)) == 16
    assert len(_pieces([8] * 4, half - 1, 64, monkeypatch)) == 12  # just under four: three
    assert len(_pieces([8] * 4, 1, 64, monkeypatch)) == 4  # never cut below the minimum


def test_an_op_of_fewer_than_four_chunks_is_never_cut(monkeypatch):
    # The split rule judged it too small for four chunks; fewer pieces measured slower.
    for parts in ([64], [1, 1], [3, 3, 3]):
        tasks = _pieces(parts, CHUNK_MIN_FLOPS, 16, monkeypatch)
        assert [(b - a) for a, b, _ in tasks] == parts


def test_a_unit_must_divide_its_chunk(monkeypatch):
    with pytest.raises(ValueError, match="unit 3 does not divide a chunk of 8"):
        _pieces([8] * 4, CHUNK_MIN_FLOPS, 16, monkeypatch, unit=lambda items: 3)


def _checked_as_strided(x, shape=None, strides=None, **kwargs):
    """as_strided that fails a test when the view reaches a byte outside the bytes ``x``
    spans (for a view such as ``padded[:, :, 3:]``, its first to its last element): NumPy
    does not check, and a view one row too tall reads whatever lies past the array."""
    view = as_strided(x, shape, strides, **kwargs)
    if view.size:
        first, last = _span(view)
        x_first, x_last = _span(x)
        assert x_first <= first and last <= x_last, (
            f"a strided view of {x.shape} reaches bytes [{first - x_first}, "
            f"{last - x_first}) outside its [0, {x_last - x_first})"
        )
    return view


def _span(a):
    """[first, last) byte addresses that ``a``'s elements occupy, whatever its strides."""
    extents = [(n - 1) * step for n, step in zip(a.shape, a.strides, strict=True)]
    first = _address(a) + sum(e for e in extents if e < 0)
    return first, _address(a) + sum(e for e in extents if e > 0) + a.itemsize


def _address(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("cut", [False, True], ids=["chunks", "pieces and bands"])
@pytest.mark.parametrize("case", test_conv.CASES)
def test_the_convolutions_strided_views_stay_inside_their_arrays(case, cut, monkeypatch):
    for module in (gpucnn.cpu.conv, gpucnn.cpu._windows):
        monkeypatch.setattr(module, "as_strided", _checked_as_strided)
        if cut:  # every op cut for 16 workers: pieces of chunks, bands of output rows
            monkeypatch.setattr(module, "CHUNK_MIN_FLOPS", 1)
            monkeypatch.setenv("GPUCNN_CPU_THREADS", "16")
    x, w, b = conv_case_inputs(case)
    geometry = conv_case_geometry(case)
    ops.conv2d_backward(ops.conv2d_forward(x, w, b, **geometry), x, w, **geometry)


@pytest.mark.parametrize("case", test_pool.CASES)
def test_the_poolings_strided_views_stay_inside_their_arrays(case, monkeypatch):
    monkeypatch.setattr(gpucnn.cpu._windows, "as_strided", _checked_as_strided)
    shape, kernel, stride, padding, ceil_mode = case
    x = shuffled_linspace(shape)
    geometry = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    y, argmax = ops.max_pool2d_forward(x, **geometry)
    ops.max_pool2d_backward(y, argmax, x.shape)
    ops.avg_pool2d_backward(ops.avg_pool2d_forward(x, **geometry), x.shape, **geometry)
    y = ops.l2_pool2d_forward(x, **geometry)
    ops.l2_pool2d_backward(y, x, y, **geometry)


def _copy_rows_sources():
    """(name, source) pairs: rows contiguous in a transposed or offset view (the row path),
    rows strided (the fallback), rows of one value, empty arrays and a 0-d array."""
    base = shuffled_linspace((3, 4, 5, 6)).astype(np.float64)
    return [
        ("transposed planes", base.transpose(2, 1, 0, 3)),
        ("offset rows", base[:, :, 1:, 2:]),
        ("float32", base.astype(np.float32).transpose(1, 0, 2, 3)),
        ("strided rows", base[..., ::2]),
        ("one-value rows", base[:, :, 1:2, 1:2]),
        ("no rows", base[:0]),
        ("empty rows", base[..., :0]),
        ("a single value", np.array(0.5)),
    ]


@pytest.mark.parametrize(("name", "source"), _copy_rows_sources())
def test_copy_rows_copies_what_copyto_copies(name, source):
    into = np.full(source.shape, np.nan, source.dtype)
    copy_rows(into, source)
    np.testing.assert_array_equal(into, source, err_msg=name)


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("another dtype", shuffled_linspace((2, 3, 4)).astype(np.float32)),
        ("broadcast rows", shuffled_linspace((2, 3, 1))),
        ("broadcast planes", shuffled_linspace((3, 4))),
    ],
)
def test_copy_rows_converts_and_broadcasts_as_copyto_does(name, source):
    into = np.full((2, 3, 4), np.nan)
    expected = into.copy()
    np.copyto(expected, source)
    copy_rows(into, source)
    np.testing.assert_array_equal(into, expected, err_msg=name)


def test_copy_rows_writes_only_the_destination_view():
    padded = np.zeros((2, 3, 6, 7), np.float32)
    x = shuffled_linspace((2, 3, 4, 5)).astype(np.float32)
    copy_rows(padded[:, :, 1:5, 1:6], x)
    expected = np.zeros_like(padded)
    expected[:, :, 1:5, 1:6] = x
    np.testing.assert_array_equal(padded, expected)


@pytest.mark.parametrize(("name", "source"), _copy_rows_sources())
def test_copy_rows_moves_whole_rows_exactly_where_both_sides_rows_are_contiguous(
    name, source, monkeypatch
):
    seen = []
    copyto = np.copyto
    monkeypatch.setattr(np, "copyto", lambda dst, src: seen.append(dst.dtype) or copyto(dst, src))
    copy_rows(np.empty(source.shape, source.dtype), source)
    # (an empty array has nothing to move; NumPy gives a new one zero strides)
    rows_contiguous = source.ndim and source.size and source.strides[-1] == source.itemsize
    if rows_contiguous:
        assert seen == [np.dtype((np.void, source.shape[-1] * source.itemsize))], name
    else:
        assert seen == [source.dtype], name


@pytest.mark.parametrize(("images", "expected_chunks"), [(16, 1), (32, 4)])
def test_a_convolution_forward_passes_its_flops_to_chunks(images, expected_chunks, monkeypatch):
    # 64 -> 64 channels, 3x3 at 8x8: 4.7 MFLOP an image, and under CHUNK_BYTES of lowered
    # rows up to 34 images, so 32 images split by their work alone
    seen = []
    parallel_map = gpucnn.cpu.conv.parallel_map
    monkeypatch.setattr(
        gpucnn.cpu.conv,
        "parallel_map",
        lambda work, items: parallel_map(work, seen.append(list(items)) or seen[-1]),
    )
    x = shuffled_linspace((images, 64, 8, 8)).astype(np.float32)
    w = shuffled_linspace((64, 64, 3, 3), seed=1).astype(np.float32)
    y = ops.conv2d_forward(x, w, None, 1, 1)
    assert [len(items) for items in seen] == [expected_chunks]
    exact = ops.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_padding_reuses_a_threads_buffer_and_keeps_its_zeros(dtype):
    window = Window(size=(3, 3), stride=(1, 1), padding=(2, 1), dilation=(1, 1))
    padding = ZeroPadding(window)
    first, second = (shuffled_linspace((2, 3, 5, 4), dtype, seed=seed) for seed in (0, 1))
    padded = padding(first)
    assert padded.dtype == dtype and np.array_equal(padded, pad(first, window, 0.0))
    # the next chunk of that shape, in the same buffer: only its inside was written again
    again = padding(second)
    assert again is padded and np.array_equal(again, pad(second, window, 0.0))
    other = padding(first[:1])  # another shape (a last, smaller chunk): its own buffer
    assert other is not padded and np.array_equal(other, pad(first[:1], window, 0.0))
    assert np.array_equal(padding(second), pad(second, window, 0.0))
    # another thread: a buffer of its own, so two workers never share one
    found = []
    worker = threading.Thread(target=lambda: found.append(padding(first)))
    worker.start()
    worker.join()
    assert found[0] is not padded and np.array_equal(found[0], pad(first, window, 0.0))
    assert np.array_equal(padded, pad(second, window, 0.0))  # this thread's, untouched


def test_zero_padding_without_padding_returns_the_input():
    x = shuffled_linspace((2, 3, 5, 4))
    window = Window(size=(3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    assert ZeroPadding(window)(x) is x
