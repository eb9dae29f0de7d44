"""Pooling: max-pool forward (y and argmax) and backward, average pooling, at N=64, C=256,
56x56 (3x3 stride 2 and 2x2) and a LeNet size; memory-bound, so the result is in GB/s as a
fraction of the device-to-device copy bandwidth measured in the same run, and against
PyTorch's max_pool2d_with_indices and its backward. Targets (issue #5): at least 85% of the
copy bandwidth and at least 1.2x PyTorch at the large size.

Bytes counted: forward reads x once and writes y (and argmax); max backward reads dy and
argmax and writes dx; average pooling reads x and writes y.
"""

from __future__ import annotations

import numpy as np

from gpucnn import ops

from .conv2d import _to_torch
from .harness import Target, record

# name, x shape, (kernel, stride, padding)
CASES = [
    ("64x256x56x56 3x3/2", (64, 256, 56, 56), (3, 2, 1)),
    ("64x256x56x56 2x2/2", (64, 256, 56, 56), (2, 2, 0)),
    ("lenet 256x6x28x28 2x2/2", (256, 6, 28, 28), (2, 2, 0)),
]
INPUT_SETS = 3


def cases(target: Target):
    if target.name == "cpu":
        return [("cifar 128x64x32x32 3x3/2", (128, 64, 32, 32), (3, 2, 1)), CASES[2]]
    return CASES[:2] if target.quick else CASES  # quick: the two at the target's size


def run(target: Target, ceilings: dict) -> list[dict]:
    return [row for case in cases(target) for row in _case(target, ceilings, *case)]


def _case(target: Target, ceilings: dict, name, shape, geometry) -> list[dict]:
    results = []
    xs = [target.random(shape, seed=i) for i in range(INPUT_SETS)]
    y, argmax = ops.max_pool2d_forward(xs[0], *geometry)
    dys = [target.random(y.shape, seed=10 + i) for i in range(INPUT_SETS)]
    item = np.dtype(np.float32).itemsize
    x_bytes, y_bytes = xs[0].size * item, y.size * item
    timings = {
        ("max", "forward"): (
            target.time(lambda x: ops.max_pool2d_forward(x, *geometry), [(x,) for x in xs]),
            x_bytes + 2 * y_bytes,
        ),
        ("max", "backward"): (
            target.time(
                lambda dy: ops.max_pool2d_backward(dy, argmax, shape, *geometry),
                [(dy,) for dy in dys],
            ),
            2 * y_bytes + x_bytes,
        ),
        ("avg", "forward"): (
            target.time(lambda x: ops.avg_pool2d_forward(x, *geometry), [(x,) for x in xs]),
            x_bytes + y_bytes,
        ),
    }
    theirs = _torch(target, xs, dys, geometry)
    for (kind, direction), (timing, moved) in timings.items():
        results.append(
            record(
                "pool2d",
                f"{kind} {name}",
                direction,
                timing,
                bytes_moved=moved,
                ceilings=ceilings,
                torch_timing=theirs.get((kind, direction)),
            )
        )
    return results


def _torch(target: Target, xs, dys, geometry) -> dict:
    found = target.torch()
    if found is None:
        return {}
    torch, device = found
    txs, tdys = _to_torch(torch, device, xs), _to_torch(torch, device, dys)
    kernel, stride, padding = geometry
    pool = torch.nn.functional.max_pool2d_with_indices
    with torch.no_grad():
        _, indices = pool(txs[0], kernel, stride, padding)
        return {
            ("max", "forward"): target.torch_time(
                lambda x: pool(x, kernel, stride, padding), [(x,) for x in txs]
            ),
            ("max", "backward"): target.torch_time(
                lambda dy: torch.ops.aten.max_pool2d_with_indices_backward(
                    dy, txs[0], [kernel] * 2, [stride] * 2, [padding] * 2, [1, 1], False, indices
                ),
                [(dy,) for dy in tdys],
            ),
            ("avg", "forward"): target.torch_time(
                lambda x: torch.nn.functional.avg_pool2d(x, kernel, stride, padding),
                [(x,) for x in txs],
            ),
        }
