"""The dense layer in NumPy: the reference ``cuda/dense.cu`` is judged against. Arguments
arrive validated (gpucnn.ops.dense)."""

from __future__ import annotations


def dense_forward(x, w, b):
    y = x @ w.T
    if b is not None:
        y += b
    return y


def dense_backward(dy, x, w, with_bias: bool, need_dx: bool):
    db = dy.sum(axis=0) if with_bias else None
    return dy @ w if need_dx else None, dy.T @ x, db
