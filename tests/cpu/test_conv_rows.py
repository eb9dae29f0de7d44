"""gpucnn.cpu.conv's row lowering: which padded input rows it copies (``_RowLayout``)."""

from __future__ import annotations

import itertools

import pytest

from gpucnn._shapes import Window
from gpucnn.cpu.conv import _row_layout


@pytest.mark.parametrize(
    ("stride", "dilation", "r"), list(itertools.product((1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 5)))
)
def test_each_row_a_window_reads_is_lowered_once(stride, dilation, r):
    # What the layout is for: with dilation, output rows p and p + dh (stride 1) read the
    # same rows, so copying them per (p, r) would copy each row up to R times.
    window = Window(size=(r, 1), stride=(stride, 1), padding=(0, 0), dilation=(dilation, 1))
    for out_h in range(1, 10):
        layout = _row_layout(window, out_h)
        read = {p * stride + tap * dilation for p in range(out_h) for tap in range(r)}
        if not layout.shared:  # a stride past R: each (p, r) its own row, never read twice
            assert layout.step == r and layout.lowered_rows == out_h * r == len(read)
            continue
        # Every phase's run is as long as the longest (one buffer); a shorter phase has one
        # output row fewer, so it leaves `step` rows of its run unused.
        short_phases = sum(
            len(range(phase, out_h, layout.period)) < -(-out_h // layout.period)
            for phase in range(layout.phases)
        )
        assert layout.lowered_rows == len(read) + short_phases * layout.step
        assert layout.step <= r
