"""The counter-based generator behind dropout, one definition for every backend.

Element i of a draw keyed by ``key`` is the uniform (splitmix64(i * GOLDEN + key) >> 11) *
2^-53 in [0, 1): SplitMix64's finaliser over a counter, so any element can be drawn alone
(one GPU thread each) and a draw is a pure function of (seed, step), the same on NumPy and
in ``cuda/activation.cu``.
"""

from __future__ import annotations

GOLDEN = 0x9E3779B97F4A7C15
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64's finaliser multipliers
_MASK64 = 2**64 - 1


def splitmix64(z: int) -> int:
    """SplitMix64's finaliser of one 64-bit value."""
    z = ((z ^ (z >> 30)) * MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * MIX2) & _MASK64
    return z ^ (z >> 31)


def dropout_key(seed: int, step: int) -> int:
    """The key of dropout's draw at training step ``step`` of a layer seeded ``seed``."""
    return splitmix64((seed * GOLDEN + step) & _MASK64)
