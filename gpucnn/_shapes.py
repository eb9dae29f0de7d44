"""The one place that turns user arguments into window geometry and output sizes.

Names follow the convolution literature: input (N, C, H, W), weight (K, C, R, S),
output (N, K, P, Q); a pool's window is (R, S) too.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass

from ._checks import check_flag

# Window geometry reaches the kernels as int32, and no real layer comes near it.
GEOMETRY_LIMIT = 2**31


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """``value`` (an int or a pair of ints) as ``(vertical, horizontal)``, each >= minimum
    and < GEOMETRY_LIMIT."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        items = tuple(value)
    else:
        items = (value, value)
    for item in items:
        if type(item) is not int and (  # plain ints skip the slow ABC check
            isinstance(item, bool) or not isinstance(item, numbers.Integral)
        ):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if item < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if item >= GEOMETRY_LIMIT:
            raise ValueError(f"{name} must be < 2**31, got {value!r}")
    return int(items[0]), int(items[1])


@dataclass(frozen=True)
class Window:
    """A 2-D sliding window: size (R, S), stride, padding, dilation; all (vertical, horizontal)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False

    def extent(self, axis: int) -> int:
        """Span of the window in input pixels: d * (R - 1) + 1."""
        return self.dilation[axis] * (self.size[axis] - 1) + 1

    def output_size(self, length: int, axis: int) -> int:
        """Number of window positions along ``axis`` of an input ``length`` pixels long.

        floor((L + 2p - d(R-1) - 1) / stride) + 1, or with ceil_mode the ceiling, minus a last
        window that would start inside the right padding (PyTorch's rule).
        """
        stride, pad = self.stride[axis], self.padding[axis]
        span = length + 2 * pad - self.extent(axis)
        if span < 0:
            return 0
        if self.ceil_mode:
            out = -(-span // stride) + 1
            if (out - 1) * stride >= length + pad:
                out -= 1
            return out
        return span // stride + 1

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        return self.output_size(height, 0), self.output_size(width, 1)

    def overhang(self, length: int, axis: int) -> int:
        """Pixels a ceil_mode window reaches past the right/bottom padding (>= 0)."""
        last_end = (self.output_size(length, axis) - 1) * self.stride[axis] + self.extent(axis)
        return max(0, last_end - (length + 2 * self.padding[axis]))


def _cached(build):
    """``build`` memoised on its arguments (by value and type, so True never passes for 1):
    layers ask for the same window every step. Unhashable arguments (lists) skip the cache;
    errors are never cached."""
    cached = functools.lru_cache(maxsize=1024, typed=True)(build)

    @functools.wraps(build)
    def window(*args):
        try:
            hash(args)
        except TypeError:
            return build(*args)
        return cached(*args)

    return window


@_cached
def conv_window(kernel_size, stride, padding, dilation) -> Window:
    """Window of a convolution with an (R, S) kernel (an int means R = S)."""
    return Window(
        size=pair(kernel_size, "kernel_size", 1),
        stride=pair(stride, "stride", 1),
        padding=pair(padding, "padding", 0),
        dilation=pair(dilation, "dilation", 1),
    )


@_cached
def pool_window(kernel_size, stride, padding, ceil_mode) -> Window:
    """Window of a pooling op; ``stride=None`` means the kernel size (non-overlapping)."""
    size = pair(kernel_size, "kernel_size", 1)
    stride = size if stride is None else pair(stride, "stride", 1)
    pad = pair(padding, "padding", 0)
    for axis in (0, 1):
        if pad[axis] > size[axis] // 2:
            raise ValueError(
                f"padding must be at most half the kernel size, got padding={padding!r} "
                f"for kernel_size={kernel_size!r}"
            )
    ceil_mode = check_flag(ceil_mode, "ceil_mode")
    return Window(size=size, stride=stride, padding=pad, ceil_mode=ceil_mode)
