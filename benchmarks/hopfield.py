"""Hopfield networks: energy and the synchronous step for n in {4096, 16384, 32768} and batch
1 to 1024, and asynchronous sweeps per second.

Energy and the synchronous step cost 2 n^2 batch flops and must read W (n^2 floats) at least
once: batch 1 is bound by bytes (GB/s as a fraction of the copy bandwidth), large batches by
flops (TFLOP/s as a fraction of cupy.matmul). Asynchronous recall (incremental fields, one
block per state) is compared with the NumPy path and with the plain GPU sweep that
recomputes every field as a full dot product. Targets (issue #6): at least 85% of copy
bandwidth at batch 1, at least 70% of cuBLAS at batch >= 256: the "library matmul" rows time
cuBLAS (through cupy.matmul; BLAS on the CPU) on the same product Y W, for that comparison.
"""

from __future__ import annotations

import numpy as np

import gpucnn
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


def run(target: Target, ceilings: dict) -> list[dict]:
    results = []
    ns, batches = sizes(target)
    for n in ns:
        net = _network(target, n)
        for batch in batches:
            states = [target.put(random_patterns(batch, n, seed=i)) for i in range(3)]
            flops = 2 * n * n * batch
            moved = 4 * (n * n + 2 * batch * n)
            for name, op in (("energy", net.energy), ("step_sync", net.step_sync)):
                timing = target.time(op, [(s,) for s in states])
                results.append(
                    record(
                        "hopfield",
                        f"n={n} batch={batch}",
                        name,
                        timing,
                        flops=flops if batch >= 64 else None,
                        bytes_moved=moved,
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
        host._w = gpucnn.to_numpy(net._w)
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
