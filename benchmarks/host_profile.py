"""Where a training step's host time goes: the floor the small models' steps stand on.

    python benchmarks/host_profile.py [--device gpu|emulator] [--steps N] [--top K]
                                      [--batch-divisor D] [--cuda-graph] [--stub-kernels]

At LeNet / CIFAR sizes a step is ~40 launches of kernels that take a few microseconds each,
so on a GPU the step costs what the host spends issuing them (benchmarks/NOTES.md). For each
of the training-step benchmark's models this prints: the step's wall time with one
synchronisation after N steps (what a training loop sees); the time to issue those N steps
(the host's share: when it is close to the wall time, the step is host-bound); then a
cProfile of N steps, the functions with the most time of their own, which names the Python
(ours or CuPy's) to cut next. ``--device emulator`` runs the same Python with the kernels
on the CPU (slow, but the profile of our own code is the same); with ``--stub-kernels`` its
launches run nothing, so the times are our own Python alone (what a GPU's host adds to it:
CuPy's driver call and allocations, ~10 and 2-4.5 us, benchmarks/NOTES.md), with the launches
each step makes. The step is fit's (``gpucnn.train.TrainStep``); ``--cuda-graph`` records it
once and replays it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

import gpucnn  # noqa: E402
from benchmarks.train_step import CASES  # noqa: E402
from gpucnn.losses import SoftmaxCrossEntropyLoss  # noqa: E402
from gpucnn.models import cifar_cnn, lenet5  # noqa: E402
from gpucnn.optim import SGD  # noqa: E402
from gpucnn.train import TrainStep  # noqa: E402

# Launches made while the kernels are stubbed (--stub-kernels).
_stubbed_launches = 0


def _stub_kernels() -> None:
    """Emulator launches are checked by the launch helper as ever, then run nothing."""
    from gpucnn import emulator

    def count(kernel, grid, block, args, shared_mem=0):
        global _stubbed_launches
        _stubbed_launches += 1

    emulator.EmulatedKernel.__call__ = count


def _synchronize(device: str) -> None:
    if device == "gpu":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def profile_case(
    name: str, batch: int, shape, device: str, steps: int, top: int, cuda_graph: bool
) -> str:
    """The report for one model (see the module docstring)."""
    model = lenet5(shape[0], 10, shape[1]) if name == "lenet5" else cifar_cnn(shape[0])
    model.to(device)
    optimizer, loss = SGD(model, 0.01, momentum=0.9), SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = gpucnn.to_device(rng.standard_normal((batch, *shape)).astype(np.float32), device)
    y = gpucnn.to_device(rng.integers(0, 10, batch), device)
    # fit's step: no input gradient (as PyTorch), the running scores, optionally replayed
    train_step = TrainStep(model, loss, optimizer, cuda_graph=cuda_graph, check_targets=False)
    with train_step.ordered():  # (synchronising the stream a graph replays on)
        return _report(name, batch, device, steps, top, lambda: train_step(x, y), cuda_graph)


def _report(name, batch, device, steps, top, step, cuda_graph) -> str:
    for _ in range(3):  # compile and warm the allocator (and record the graph)
        step()
    _synchronize(device)
    launches_before = _stubbed_launches
    begin = time.perf_counter()
    for _ in range(steps):
        step()
    issued = time.perf_counter() - begin
    launches = (_stubbed_launches - launches_before) / steps
    _synchronize(device)
    wall = time.perf_counter() - begin
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    _synchronize(device)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    lines = [line for line in text.getvalue().splitlines() if line.strip()]
    return "\n".join(
        [
            f"== {name} batch={batch} on {device}{' (CUDA graph)' if cuda_graph else ''}: "
            f"{wall / steps * 1e3:.3f} ms per step, "
            f"issued in {issued / steps * 1e3:.3f} ms per step ({issued / wall:.0%} of it)"
            + (f", {launches:.0f} launches per step (kernels stubbed)" if launches else ""),
            *lines[lines.index(next(line for line in lines if "ncalls" in line)) :],
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["gpu", "emulator"], default="gpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--top", type=int, default=25, help="functions listed per model")
    parser.add_argument(
        "--batch-divisor", type=int, default=1, help="divide the batch sizes (a quick run)"
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="the step recorded once and replayed"
    )
    parser.add_argument(
        "--stub-kernels",
        action="store_true",
        help="(emulator) launches are checked, then run nothing: our own Python alone",
    )
    args = parser.parse_args(argv)
    if args.stub_kernels:
        if args.device != "emulator":
            parser.error("--stub-kernels needs --device emulator")
        _stub_kernels()
    if args.steps < 1 or args.top < 1 or args.batch_divisor < 1:
        parser.error("--steps, --top and --batch-divisor must be positive")
    gpucnn.set_device(args.device)
    for name, batch, shape in CASES:
        print(
            profile_case(
                name,
                batch // args.batch_divisor,
                shape,
                args.device,
                args.steps,
                args.top,
                args.cuda_graph,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
