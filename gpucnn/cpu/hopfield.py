"""Hopfield network updates in NumPy: the reference the CUDA kernels are judged against.

W (n, n) symmetric with a zero diagonal; states Y (batch, n) in {-1, +1}, one per row.
Arguments arrive validated (gpucnn.hopfield). Energies are summed in float64.
"""

from __future__ import annotations

import numpy as np

from .._device import array_module


def invalid_states(y) -> FinishedCheck:
    """Whether some value of ``y`` is not exactly +1 or -1 (NaN is not), asked as the CUDA
    path's launched check is: ``invalid_states(y).found()``."""
    return FinishedCheck(not np.all((y == 1) | (y == -1)))


class FinishedCheck:
    """A state check done already (see ``invalid_states``)."""

    __slots__ = ("_found",)

    def __init__(self, found: bool):
        self._found = bool(found)

    def found(self) -> bool:
        return self._found


def prepare_weights(w, largest_weight, kept: dict):
    """W as this path's products take it: W itself. (The CUDA path may use W in float16,
    made once per W into ``kept``; ``largest_weight`` is max|W| where W holds float32
    integers, else None.)"""
    return w


def fields(w, y):
    """F[b, j] = sum_i W[j, i] Y[b, i] (W is symmetric)."""
    return y @ w


def next_states(f, y):
    """The update rule: +1 where the field is positive, -1 where negative, kept where 0.
    Elementwise and written against the array API NumPy and CuPy share: the CUDA path uses
    it too."""
    xp = array_module(y)
    return xp.where(f > 0, 1, xp.where(f < 0, -1, y)).astype(y.dtype, copy=False)


def step_sync(w, y):
    return next_states(fields(w, y), y)


def energy_from_fields(y, f):
    """E[b] = -1/2 sum_j Y[b, j] F[b, j], in float64."""
    return -0.5 * np.einsum("bj,bj->b", y, f, dtype=np.float64)


def recall_async(w, y, max_sweeps: int, orders):
    """Sequential sweeps (neurons one at a time, in ``orders[sweep]`` or 0..n-1) until a sweep
    changes nothing or ``max_sweeps`` ran. The fields are kept exact incrementally: when
    neuron j flips to y_j', h += 2 y_j' W[j, :]. Returns (states, sweeps, converged,
    energies) with energies (sweeps run + 1, batch): before the first sweep and after each.
    """
    y = y.copy()
    batch, n = y.shape
    h = fields(w, y)
    sweeps = np.zeros(batch, np.int32)
    converged = np.zeros(batch, bool)
    active = np.ones(batch, bool)
    energies = [energy_from_fields(y, h)]
    for sweep in range(max_sweeps):
        if not active.any():
            break
        rows = np.flatnonzero(active)
        changed = np.zeros(batch, bool)
        for j in range(n) if orders is None else orders[sweep]:
            current = y[rows, j]
            new = next_states(h[rows, j], current)
            flips = new != current
            if flips.any():
                flipped = rows[flips]
                y[flipped, j] = new[flips]
                h[flipped] += (2 * new[flips])[:, None] * w[j]  # W[j, j] = 0: h[j] stays
                changed[flipped] = True
        sweeps[rows] += 1
        converged |= active & ~changed
        active &= changed
        energies.append(energy_from_fields(y, h))
    return y, sweeps, converged, np.stack(energies)
