"""Hopfield networks: energy and the synchronous step for n in {4096, 16384, 32768} and batch
1 to 1024, and asynchronous sweeps per second.

Energy and the synchronous step cost 2 n^2 batch flops and must read W (n^2 floats) at least
once: batch 1 is bound by bytes (GB/s as a fraction of the copy bandwidth), large batches by
flops (TFLOP/s as a fraction of cupy.matmul). Asynchronous recall (incremental fields, one
block per state) is compared with the NumPy path and with the plain GPU sweep that
recomputes every field as a full dot product. Targets (issue #6): at least 85% of copy
bandwidth at batch 1, at least 70% of cuBLAS at batch >= 256: the "library matmul" rows time
cuBLAS (through cupy.matmul; BLAS on the CPU) on the same product Y W, for that comparison.
On a GPU of compute capability 8.0 or later, the "(tensor cores)" rows time the same network
with GPUCNN_HOPFIELD_TENSOR_CORES=1 (W in float16, exact for its integer weights; their
bytes count W16's two bytes a weight).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

import gpucnn
from gpucnn.cuda import hopfield as cuda_hopfield
from gpucnn.hopfield import HopfieldNetwork, random_patterns

from .harness import Target, record, time_cpu


def sizes(target: Target):
    if target.name == "cpu":
        return [1024], [1, 64]
    # batch 8, 32 and 64: the skinny product's buckets of 8 (bound by reading W), 32 (as
    # many shared-memory wavefronts as multiply-adds) and 64 (twice as many; session 29)
    if target.quick:
        return [4096, 16384], [1, 8, 32, 64, 256]
    return [4096, 16384, 32768], [1, 8, 32, 64, 256, 1024]


def _network(target: Target, n: int):
    net = HopfieldNetwork(n)
    net.store(target.put(random_patterns(max(2, n // 200), n, seed=n)))
    return net


@contextlib.contextmanager
def _tensor_cores(on: bool = True):
    """GPUCNN_HOPFIELD_TENSOR_CORES=1 (or 0) inside the block, as it was after."""
    variable = cuda_hopfield.TENSOR_CORES_VARIABLE
    saved = os.environ.get(variable)
    os.environ[variable] = "1" if on else "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[variable]
        else:
            os.environ[variable] = saved


def _on_tensor_cores(target: Target, net) -> bool:
    """Whether ``net``'s products run on the tensor cores here when asked to."""
    if target.name != "gpu":
        return False
    with _tensor_cores():
        prepared = net._weights_for(cuda_hopfield)
    return isinstance(prepared, cuda_hopfield.TensorCoreWeights)


def _timed(target: Target, op, states, tensor_cores: bool):
    """``op``'s timing with the tensor cores asked for or not (whatever the environment
    says), so that each row is what its name says."""
    with _tensor_cores(tensor_cores):
        return target.time(op, states)


def run(target: Target, ceilings: dict) -> list[dict]:
    results = []
    ns, batches = sizes(target)
    for n in ns:
        net = _network(target, n)
        tensor_cores = _on_tensor_cores(target, net)
        pitch = -(-n // cuda_hopfield.MMA_STEP) * cuda_hopfield.MMA_STEP
        for batch in batches:
            states = [target.put(random_patterns(batch, n, seed=i)) for i in range(3)]
            flops = 2 * n * n * batch
            moved = 4 * (n * n + 2 * batch * n)
            half = 2 * n * pitch + 4 * 2 * batch * n  # W16, and the states in and out
            products = [("energy", False, moved), ("step_sync", False, moved)]
            if tensor_cores:
                products += [("energy", True, half), ("step_sync", True, half)]
            for name, on_tensor_cores, bytes_moved in products:
                op = getattr(net, name)
                timing = _timed(target, op, [(s,) for s in states], on_tensor_cores)
                if on_tensor_cores:
                    name += " (tensor cores)"
                results.append(
                    record(
                        "hopfield",
                        f"n={n} batch={batch}",
                        name,
                        timing,
                        flops=flops if batch >= 64 else None,
                        bytes_moved=bytes_moved,
                        ceilings=ceilings,
                    )
                )
            if batch >= 32:  # the yardstick: cuBLAS (BLAS on the CPU), same product
                w = net.weights
                timing = target.time(target.xp.matmul, [(s, w) for s in states])
                results.append(
                    record(
                        "hopfield",
                        f"n={n} batch={batch}",
                        "library matmul",
                        timing,
                        flops=flops,
                        bytes_moved=moved,
                        ceilings=ceilings,
                    )
                )
    results += _async(target)
    return results


def _async(target: Target) -> list[dict]:
    """Sweeps per second: incremental kernel, the plain recomputing kernel, NumPy."""
    n, batch = (4096, 64) if target.name == "gpu" else (512, 8)
    net = _network(target, n)
    patterns = random_patterns(batch, n, seed=1)
    noisy = patterns.copy()
    noisy[np.random.default_rng(2).random(noisy.shape) < 0.1] *= -1
    states = target.put(noisy)
    results = []
    timing = target.time(lambda: net.recall(states, max_sweeps=1))
    results.append(
        record(
            "hopfield",
            f"async n={n} batch={batch}",
            "incremental sweep",
            timing,
            sweeps_per_second=batch / (timing.median_ms / 1e3),
        )
    )
    if target.name == "gpu":
        from gpucnn.cuda.hopfield import sweep_recompute

        plain = target.time(lambda: sweep_recompute(net._w, states, None))
        results.append(
            record(
                "hopfield",
                f"async n={n} batch={batch}",
                "plain sweep",
                plain,
                sweeps_per_second=batch / (plain.median_ms / 1e3),
            )
        )
        gpucnn.set_device("cpu")
        host = HopfieldNetwork(n)
        host._set_weights(gpucnn.to_numpy(net._w), net.rule)
        numpy_timing = time_cpu(lambda: host.recall(noisy, max_sweeps=1), repeat=3)
        gpucnn.set_device("gpu")
        results.append(
            record(
                "hopfield",
                f"async n={n} batch={batch}",
                "numpy sweep",
                numpy_timing,
                sweeps_per_second=batch / (numpy_timing.median_ms / 1e3),
            )
        )
    return results
