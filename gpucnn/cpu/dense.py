"""The dense layer in NumPy: the reference ``cuda/dense.cu`` is judged against. Arguments
arrive validated (gpucnn.ops.dense).

The GEMMs run with BLAS at one thread (``one_thread_blas``). A threaded OpenBLAS call leaves
its helper threads spinning for about 0.1 s (THREAD_TIMEOUT, 2^28 cycles) in case more work
comes: on every core but one, for the rest of a training step, where they took the cores
from the convolution's and pooling's workers. Measured on the 2-core dev VM (AMD EPYC), the
CIFAR CNN's step at batch 32 took 78-85 ms with threaded dense GEMMs and 50-53 ms without
(its convolutions ran 2x slower behind the spinning threads); the GEMMs alone cost 2x on one
thread (32x4096 by 4096x256: 0.66 -> 1.28 ms), LeNet-5's step 5% more. Splitting them over
the workers instead was slower than one thread below ~40 MFLOP and saved under 2% of the
step above it: not worth its code (benchmarks/NOTES.md, session 19).
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
