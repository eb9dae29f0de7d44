"""The dense layer in NumPy: the reference ``cuda/dense.cu`` is judged against. Arguments
arrive validated (gpucnn.ops.dense).

The GEMMs run with BLAS at one thread (``one_thread_blas``): a threaded OpenBLAS call leaves
its helper threads spinning for ~0.1 s in case more work comes, on the cores the
convolution's and pooling's workers need next; in a training step that made every
convolution twice as slow (benchmarks/NOTES.md, "The NumPy path on the CPU", session 19).
"""

from __future__ import annotations

from ._parallel import one_thread_blas


def dense_forward(x, w, b):
    with one_thread_blas():
        y = x @ w.T
    if b is not None:
        y += b
    return y


def dense_backward(dy, x, w, with_bias: bool, need_dx: bool):
    db = dy.sum(axis=0) if with_bias else None
    with one_thread_blas():
        return dy @ w if need_dx else None, dy.T @ x, db
