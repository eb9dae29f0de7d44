"""Which path gpucnn.cpu.conv takes for a window: the values are the loop reference's either
way (tests/ops/test_conv.py), so only these tests notice a path lost to a wrong condition."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn.cpu.conv
from gpucnn import ops
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


def test_a_1x1_filter_at_stride_1_gives_dx_as_its_gemm_writes_it(monkeypatch):
    # every input element is read once, where it lies: nothing to scatter through a view
    monkeypatch.setattr(gpucnn.cpu.conv, "window_view", _refuse("window_view"))
    _forward_and_backward((2, 3, 5, 6), 4, (1, 1))
