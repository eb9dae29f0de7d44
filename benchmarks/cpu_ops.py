"""The NumPy path against PyTorch's CPU ops on LeNet- and CIFAR-sized layers.

    python benchmarks/cpu_ops.py [--quick] [--out DIR]

Forward and backward of convolution and max pooling, float32, median of 20 runs after
warm-up; PyTorch is timed on the same inputs in the same process when it is installed.
Goal (issue #2): conv2d forward+backward within 2x of PyTorch, pooling within 2x.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from benchmarks.harness import host_facts, markdown_table, time_cpu, write_results  # noqa: E402
from gpucnn import ops  # noqa: E402

# name, x shape (N, C, H, W), conv (K, R, S, stride, padding) or pool (kernel, stride, padding)
CONV_LAYERS = [
    ("lenet conv1", (256, 1, 28, 28), (6, 5, 5, 1, 2)),
    ("lenet conv2", (256, 6, 14, 14), (16, 5, 5, 1, 0)),
    ("cifar conv 3->16", (128, 3, 32, 32), (16, 3, 3, 1, 1)),
    ("cifar conv 16->16", (128, 16, 32, 32), (16, 3, 3, 1, 1)),
    ("cifar conv 32->32", (128, 32, 16, 16), (32, 3, 3, 1, 1)),
    ("cifar conv 64->64", (128, 64, 8, 8), (64, 3, 3, 1, 1)),
]
POOL_LAYERS = [
    ("lenet pool1", (256, 6, 28, 28), (2, 2, 0)),
    ("lenet pool2", (256, 16, 10, 10), (2, 2, 0)),
    ("cifar pool 3x3/2", (128, 64, 32, 32), (3, 2, 1)),
]


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def bench_conv(name, shape, spec, repeat):
    k, r, s, stride, padding = spec
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((k, shape[1], r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    y = ops.conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ours = {
        "forward": time_cpu(lambda: ops.conv2d_forward(x, w, b, stride, padding), repeat=repeat),
        "backward": time_cpu(lambda: ops.conv2d_backward(dy, x, w, stride, padding), repeat=repeat),
    }
    theirs = {}
    torch = _torch()
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        conv = torch.nn.functional.conv2d
        backward = torch.ops.aten.convolution_backward
        with torch.no_grad():
            theirs["forward"] = time_cpu(lambda: conv(tx, tw, tb, stride, padding), repeat=repeat)
            theirs["backward"] = time_cpu(
                lambda: backward(
                    tdy,
                    tx,
                    tw,
                    [k],
                    [stride] * 2,
                    [padding] * 2,
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    [True, True, True],
                ),
                repeat=repeat,
            )
    return ours, theirs


def bench_pool(name, shape, spec, repeat):
    kernel, stride, padding = spec
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y, argmax = ops.max_pool2d_forward(x, kernel, stride, padding)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    ours = {
        "forward": time_cpu(
            lambda: ops.max_pool2d_forward(x, kernel, stride, padding), repeat=repeat
        ),
        "backward": time_cpu(
            lambda: ops.max_pool2d_backward(dy, argmax, x.shape, kernel, stride, padding),
            repeat=repeat,
        ),
    }
    theirs = {}
    torch = _torch()
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        pool = torch.nn.functional.max_pool2d_with_indices
        with torch.no_grad():
            _, indices = pool(tx, kernel, stride, padding)
            theirs["forward"] = time_cpu(lambda: pool(tx, kernel, stride, padding), repeat=repeat)
            theirs["backward"] = time_cpu(
                lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                    tdy, tx, [kernel] * 2, [stride] * 2, [padding] * 2, [1, 1], False, indices
                ),
                repeat=repeat,
            )
    return ours, theirs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    repeat = 5 if args.quick else 20
    records, rows = [], []
    for kind, layers, bench in (
        ("conv2d", CONV_LAYERS, bench_conv),
        ("max_pool2d", POOL_LAYERS, bench_pool),
    ):
        for name, shape, spec in layers:
            ours, theirs = bench(name, shape, spec, repeat)
            for direction in ("forward", "backward"):
                ratio = (
                    ours[direction].median_ms / theirs[direction].median_ms
                    if direction in theirs
                    else None
                )
                records.append(
                    {
                        "op": kind,
                        "layer": name,
                        "shape": shape,
                        "spec": spec,
                        "direction": direction,
                        "numpy": ours[direction],
                        "torch": theirs.get(direction),
                        "ratio": ratio,
                    }
                )
                rows.append(
                    [
                        kind,
                        name,
                        direction,
                        f"{ours[direction].median_ms:.2f}",
                        f"{theirs[direction].median_ms:.2f}" if ratio else "-",
                        f"{ratio:.2f}x" if ratio else "-",
                    ]
                )
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    table = markdown_table(
        ["op", "layer", "direction", "numpy ms", "torch ms", "numpy / torch"], rows
    )
    stamp = datetime.date.today().isoformat()
    path = write_results(
        f"{stamp}_cpu_ops",
        {"date": stamp, "host": host_facts(), "records": records},
        table,
        args.out,
    )
    print(table)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
