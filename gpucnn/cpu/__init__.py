"""NumPy implementations of the ops that have CUDA kernels: the reference semantics."""

from . import conv, pool

__all__ = ["conv", "pool"]
