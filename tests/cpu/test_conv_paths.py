"""Which path gpucnn.cpu.conv takes for a window: the values are the loop reference's either
way (tests/ops/test_conv.py), so only these tests notice a path lost to a wrong condition."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn.cpu.conv
from gpucnn import ops
from gpucnn._shapes import Window
from gpucnn.cpu._windows import ZeroPadding, pad
from tests.helpers import shuffled_linspace


def _forward_and_backward(shape, k, size, **geometry):
    x = shuffled_linspace(shape)
    w = shuffled_linspace((k, shape[1], *size), seed=1)
    y = ops.conv2d_forward(x, w, None, **geometry)
    ops.conv2d_backward(np.ones_like(y), x, w, **geometry)


def _refuse(name):
    def refused(*args, **kwargs):
        raise AssertionError(f"{name} called")

    return refused


@pytest.mark.parametrize(
    ("size", "geometry"),
    [
        ((2, 2), dict(stride=2)),  # windows exactly a stride apart
        ((1, 1), dict(stride=1)),
        ((1, 1), dict(stride=1, padding=1)),
        ((3, 3), dict(stride=3, padding=1)),
        ((2, 2), dict(stride=3, dilation=2)),  # extent 3, a stride of 3
    ],
)
def test_disjoint_windows_are_never_lowered_row_by_row(size, geometry, monkeypatch):
    monkeypatch.setattr(gpucnn.cpu.conv, "_lower", _refuse("_lower"))
    _forward_and_backward((2, 3, 9, 9), 4, size, **geometry)


@pytest.mark.parametrize(("size", "stride"), [((2, 2), 1), ((3, 3), 2), ((2, 1), (1, 2))])
def test_overlapping_windows_are_lowered(size, stride, monkeypatch):
    lowered = []
    lower = gpucnn.cpu.conv._lower
    monkeypatch.setattr(gpucnn.cpu.conv, "_lower", lambda *a: lowered.append(1) or lower(*a))
    _forward_and_backward((2, 3, 9, 9), 4, size, stride=stride)
    assert lowered


@pytest.mark.parametrize(("size", "stride"), [((3, 3), 2), ((2, 3), (1, 2)), ((5, 5), 3)])
def test_a_strided_dx_of_overlapping_windows_adds_by_phases(size, stride, monkeypatch):
    # add_windows adds rows of Q values at a stride: a loop call per row, slower
    monkeypatch.setattr(gpucnn.cpu.conv, "add_windows", _refuse("add_windows"))
    _forward_and_backward((2, 3, 11, 11), 4, size, stride=stride, padding=1)


def test_a_strided_dx_with_a_nan_weight_adds_windows(monkeypatch):
    added = []
    add_windows = gpucnn.cpu.conv.add_windows
    monkeypatch.setattr(
        gpucnn.cpu.conv, "add_windows", lambda *a: added.append(1) or add_windows(*a)
    )
    x, w = shuffled_linspace((2, 3, 9, 9)), shuffled_linspace((4, 3, 3, 3), seed=1)
    w[0, 0, 0, 0] = np.inf
    y = ops.conv2d_forward(x, w, stride=2)
    ops.conv2d_backward(np.ones_like(y), x, w, stride=2)
    assert added


def test_a_1x1_filter_at_stride_1_gives_dx_as_its_gemm_writes_it(monkeypatch):
    # every input element is read once, where it lies: nothing to scatter through a view
    monkeypatch.setattr(gpucnn.cpu.conv, "window_view", _refuse("window_view"))
    _forward_and_backward((2, 3, 5, 6), 4, (1, 1))


@pytest.mark.parametrize(
    "window",
    [
        Window(size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1)),  # a remainder
        Window(size=(3, 2), stride=(1, 1), padding=(2, 1), dilation=(2, 1)),
        Window(size=(2, 2), stride=(3, 1), padding=(0, 0), dilation=(1, 1)),  # no padding
    ],
)
def test_a_band_pads_exactly_the_rows_its_output_rows_read(window):
    # Only the rows the band's windows read, not a row more: a band of a large image must
    # not pad (or copy) the whole image again. The whole image pads as the forward always has.
    x = shuffled_linspace((2, 3, 10, 7))
    out_h = window.output_shape(10, 7)[0]
    padded = pad(x, window, 0.0)
    stride = window.stride[0]
    for band in gpucnn.cpu.conv._row_bands(3, out_h) + [slice(0, out_h)]:
        got = gpucnn.cpu.conv._padded_band(x, window, band, out_h, ZeroPadding(window))
        if band == slice(0, out_h):
            expected = padded
        else:
            stop = (band.stop - 1) * stride + window.extent(0)
            expected = padded[:, :, band.start * stride : stop]
        assert got.shape == expected.shape and np.array_equal(got, expected), band
