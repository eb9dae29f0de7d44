"""The one timing and reporting helper every benchmark script uses.

Timing: warm-up runs first (compilation, caches, allocator), then at least 20 timed runs;
the median is the headline, the 10th-90th percentile spread is reported beside it. On a GPU
each run is bracketed by CUDA events; ``inputs`` rotates among several input sets so that
nothing stays resident in L2 between runs.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def __str__(self) -> str:
        return f"{self.median_ms:9.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f})"


def _summarise(samples_ms: list[float]) -> Timing:
    ordered = sorted(samples_ms)
    return Timing(
        median_ms=statistics.median(ordered),
        p10_ms=ordered[int(0.1 * (len(ordered) - 1))],
        p90_ms=ordered[int(0.9 * (len(ordered) - 1))],
        runs=len(ordered),
    )


def time_cpu(
    fn, inputs=None, warmup: int = 2, repeat: int = 20, min_seconds: float = 0.0
) -> Timing:
    """Median wall time of ``fn(*inputs[i % len(inputs)])`` on the host; ``inputs`` is a
    list of argument tuples (default: one call with no arguments)."""
    inputs = list(inputs) if inputs else [()]
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    samples, started = [], time.perf_counter()
    while len(samples) < repeat or time.perf_counter() - started < min_seconds:
        args = inputs[len(samples) % len(inputs)]
        begin = time.perf_counter()
        fn(*args)
        samples.append((time.perf_counter() - begin) * 1e3)
    return _summarise(samples)


def time_gpu(fn, inputs=None, warmup: int = 3, repeat: int = 30) -> Timing:
    """Median device time of ``fn(*inputs[i % len(inputs)])``, bracketed by CUDA events."""
    import cupy

    inputs = list(inputs) if inputs else [()]
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    cupy.cuda.get_current_stream().synchronize()
    samples = []
    for i in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn(*inputs[i % len(inputs)])
        stop.record()
        stop.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, stop))
    return _summarise(samples)


def host_facts() -> dict:
    facts = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "numpy": np.__version__,
    }
    try:
        import os

        facts["cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:
        facts["torch"] = None
    return facts


def write_results(stem: str, payload: dict, table: str, out: Path = RESULTS) -> Path:
    """``<out>/<stem>.json`` (everything) and ``<stem>.md`` (the table); returns the json path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
    (out / f"{stem}.md").write_text(table + "\n")
    return path


def _jsonable(value):
    if isinstance(value, Timing):
        return asdict(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
