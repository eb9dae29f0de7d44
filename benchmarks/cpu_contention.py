"""Where the NumPy path's workers get in each other's way on a many-core host.

    python benchmarks/cpu_contention.py [--repeats N] [--workers W] [--layers NAME ...]

On the H100 machine's 16-core host (session 29) a convolution ran fastest on 4 workers and
slower on 8 and 16, although its GEMMs and copies alone scaled 14x and 7.5x there, and
cutting the work as finely as 16 workers do costs nothing on one core (session 30,
benchmarks/NOTES.md). What is left is contention between the workers: for the GIL, or
for the cores' shared memory system. This tells the two apart in one run. For each layer,
forward + backward, median of ``repeats`` (ms), and the process's context switches per op
(voluntary ones are mostly waits for the GIL or a lock):

- alone on 1, 2, 4, 8 ... workers up to every core;
- on ``--workers`` workers (4, the default cap) beside the other cores' worth of threads
  that pass the GIL around as workers do (NumPy copies of ~10-30 us, each releasing it and
  taking it back): the cores taken, and the GIL's handoffs multiplied;
- the same beside threads that keep those cores busy without the GIL (``hashlib`` hashes
  an L2-sized buffer with the GIL released): the cores taken, the GIL not.

If the first slows the op far more than the second, workers lose on the GIL's handoffs
(each costs a wake-up on another core: cheap on the 2-vCPU VM, where 200 of them per op
cost 2-4%, session 30); if both slow it alike, on the cores' shared memory system.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from gpucnn import ops  # noqa: E402
from gpucnn.cpu._parallel import THREADS_VARIABLE, allowed_cores  # noqa: E402

# name: (batch, (C, H, W), K), 3x3, stride 1, padding 1, as in cpu_ops.py's CIFAR rows
LAYERS = {
    "cifar-16": (128, (16, 32, 32), 16),  # CIFAR 16->16 at 32x32
    "cifar-64": (128, (64, 16, 16), 64),  # CIFAR 64->64 at 16x16
    "tiny": (4, (4, 8, 8), 4),  # for the test
}
HASHED_BYTES = 1 << 20  # each GIL-free thread's buffer: within a core's L2 on both hosts
COPIED_BYTES = 256 << 10  # each copying thread's buffers: a copy of ~10-30 us


def _pass_the_gil_around(stop: threading.Event) -> None:
    # as a worker does: NumPy calls of tens of microseconds, each released and taken back
    source = np.ones(COPIED_BYTES // 4, np.float32)
    target = np.empty_like(source)
    while not stop.is_set():
        np.copyto(target, source)


def _hash_without_the_gil(stop: threading.Event) -> None:
    data = bytes(HASHED_BYTES)
    while not stop.is_set():
        hashlib.sha256(data).digest()  # releases the GIL for buffers over 2 KB


BUSY = {"gil traffic": _pass_the_gil_around, "no gil": _hash_without_the_gil}


def _op(layer: str):
    batch, (c, h, w), k = LAYERS[layer]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((batch, k, h, w)).astype(np.float32)

    def forward_and_backward():
        ops.conv2d_forward(x, weight, None, 1, 1)
        ops.conv2d_backward(dy, x, weight, 1, 1)

    return forward_and_backward


def _switches() -> tuple[int, int]:
    """The process's (voluntary, involuntary) context switches so far; zeros where the
    platform does not count them (no ``resource`` module: Windows)."""
    try:
        import resource
    except ImportError:
        return 0, 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw, usage.ru_nivcsw


def measure(op, workers: int, repeats: int, busy: str | None = None, threads: int = 0):
    """(median ms, voluntary and involuntary context switches per op) of ``op`` on
    ``workers`` workers, beside ``threads`` threads of kind ``busy`` (a key of BUSY)."""
    os.environ[THREADS_VARIABLE] = str(workers)
    stop = threading.Event()
    others = [threading.Thread(target=BUSY[busy], args=(stop,)) for _ in range(threads)]
    for thread in others:
        thread.start()
    try:
        op()  # the pool of this size, and the busy threads running
        times = []
        before = _switches()
        for _ in range(repeats):
            started = time.perf_counter()
            op()
            times.append(time.perf_counter() - started)
        after = _switches()
    finally:
        stop.set()
        for thread in others:
            thread.join()
    voluntary, involuntary = ((b - a) / repeats for a, b in zip(before, after, strict=True))
    return 1e3 * float(np.median(times)), voluntary, involuntary


def worker_counts(cores: int) -> list[int]:
    """1, 2, 4, ... up to ``cores``, and ``cores`` itself."""
    counts = [1]
    while counts[-1] * 2 < cores:
        counts.append(counts[-1] * 2)
    return counts + [cores] if cores > 1 else counts


def report(layers, repeats: int, workers: int, cores: int) -> str:
    lines = [
        f"{cores} cores; forward + backward, median of {repeats} (ms), context switches per op",
        "",
        "| layer | workers | beside | ms | voluntary | involuntary |",
        "|---|---|---|---|---|---|",
    ]
    for layer in layers:
        op = _op(layer)
        rows = [(count, None, 0) for count in worker_counts(cores)]
        others = max(0, cores - workers)
        if others:
            rows += [(workers, busy, others) for busy in BUSY]
        for count, busy, threads in rows:
            ms, voluntary, involuntary = measure(op, count, repeats, busy, threads)
            beside = f"{threads} threads, {busy}" if busy else "-"
            lines.append(
                f"| {layer} | {count} | {beside} | {ms:.2f} | {voluntary:.0f} | {involuntary:.0f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--layers", nargs="+", choices=sorted(LAYERS), default=["cifar-16", "cifar-64"]
    )
    parser.add_argument("--cores", type=int, default=allowed_cores(), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.workers < 1 or args.cores < 1:
        parser.error("--repeats, --workers and --cores must be positive")
    saved = os.environ.get(THREADS_VARIABLE)
    try:
        print(report(args.layers, args.repeats, args.workers, args.cores))
    finally:
        if saved is None:
            os.environ.pop(THREADS_VARIABLE, None)
        else:
            os.environ[THREADS_VARIABLE] = saved


if __name__ == "__main__":
    main()
