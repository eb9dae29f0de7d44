"""The dense (fully connected) layer's op: NumPy's matmul (``gpucnn.cpu.dense``), or on the
CUDA path cuBLAS and, inside a CUDA graph and on the emulator, ``cuda/dense.cu``
(``gpucnn.cuda.dense``)."""

from __future__ import annotations

from .._checks import check_flag, check_float_array, check_same_kind, check_shape
from ._dispatch import backend


def _check_features(x, w) -> None:
    check_float_array(x, "x", ndim=2)
    check_float_array(w, "w", ndim=2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[1]}")


def dense_forward(x, w, b=None):
    """y = x w^T + b: x (N, in), w (out, in), b (out,) -> y (N, out)."""
    _check_features(x, w)
    check_same_kind(x, "x", w=w, b=b)
    if b is not None:
        check_shape(b, "b", (w.shape[0],))
    return backend(x).dense.dense_forward(x, w, b)


def dense_backward(dy, x, w, with_bias=True, need_input_grad=True):
    """Gradients of ``dense_forward``: (dx, dw, db); db is None unless with_bias, dx None
    unless need_input_grad."""
    _check_features(x, w)
    check_float_array(dy, "dy", ndim=2)
    check_same_kind(x, "x", w=w, dy=dy)
    check_shape(dy, "dy", (x.shape[0], w.shape[0]))
    with_bias = check_flag(with_bias, "with_bias")
    need_input_grad = check_flag(need_input_grad, "need_input_grad")
    return backend(x).dense.dense_backward(dy, x, w, with_bias, need_input_grad)
