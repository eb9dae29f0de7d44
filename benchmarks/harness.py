"""The one timing, ceiling and reporting helper every benchmark script uses.

Timing: warm-up runs first (kernel compilation, caches, allocator), then at least 20 timed
runs; the median is the headline, the 10th-90th percentile spread is reported beside it. On
a GPU each run is bracketed by CUDA events, every run issued before waiting on any (so the
host's launch path hides behind queued device work where it can); ``inputs`` rotates among
several input sets so that nothing stays resident in L2 between runs. The first call is
timed on its own: it holds the kernels' compilation, which is reported apart from the run
time.

Ceilings, measured in the same run: device-to-device copy bandwidth (bytes read + written
per second) and float32 matrix-product throughput; every result is given as a fraction of
the ceiling that bounds it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import threading
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
    first_call_ms: float | None = None  # compile + run, for the first call of a kernel

    def __str__(self) -> str:
        return f"{self.median_ms:9.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f})"


def _summarise(samples_ms: list[float], first_call_ms=None) -> Timing:
    ordered = sorted(samples_ms)
    return Timing(
        median_ms=statistics.median(ordered),
        p10_ms=ordered[int(0.1 * (len(ordered) - 1))],
        p90_ms=ordered[int(0.9 * (len(ordered) - 1))],
        runs=len(ordered),
        first_call_ms=first_call_ms,
    )


def time_cpu(fn, inputs=None, warmup: int = 2, repeat: int = 20) -> Timing:
    """Median wall time of ``fn(*inputs[i % len(inputs)])`` on the host; ``inputs`` is a
    list of argument tuples (default: one call with no arguments)."""
    return time_cpu_alternating({"fn": fn}, inputs, warmup, repeat, block=repeat)["fn"]


def time_cpu_alternating(
    fns: dict,
    inputs=None,
    warmup: int = 2,
    repeat: int = 30,
    block: int = 5,
    pause_s: float = 0.25,
    settle_s: float = 0.15,
) -> dict:
    """Median wall times of several host functions (each called as ``time_cpu`` calls its
    one), timed in alternating blocks of ``block`` runs until each has ``repeat``. The first
    call of each is timed apart, then ``warmup`` - 1 more; with several contenders every
    block starts with ``settle_s`` of untimed runs (one at least) and ends with a pause.

    Why blocks and pauses: a shared host's speed drifts over seconds (measured here: the same
    NumPy convolution at 10.6 and 27.7 ms in two runs a minute apart), so contenders timed
    one after the other see different machines, and alternating blocks share the drift. But
    OpenBLAS's idle threads spin after each call (measured: 0.1 CPU-seconds burnt during a
    2 s sleep after one NumPy matmul), which would slow whatever runs next; the pause lets
    them stop.

    Why the settling runs: after the pause the 2-core VM runs multi-threaded code slowly for
    tens of milliseconds (LeNet conv2's NumPy backward, medians of 8 rounds: 7-10 ms for each
    of the first 8 calls after a 0.25 s sleep, 4.6-5.1 ms without the sleep; PyTorch's 3.7
    against 3.1 ms; one-thread runs barely move), a state no training loop, which calls its
    ops back to back, is in. One untimed run did not span it; 0.15 s does."""
    inputs = list(inputs) if inputs else [()]
    alternating = len(fns) > 1
    first, samples = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        begin = time.perf_counter()
        fn(*inputs[0])
        first[name] = (time.perf_counter() - begin) * 1e3
        for i in range(1, warmup):
            fn(*inputs[i % len(inputs)])
    while any(len(times) < repeat for times in samples.values()):
        for name, fn in fns.items():
            times = samples[name]
            if alternating:  # after the other's block and the pause: settle again
                settled = time.perf_counter() + settle_s
                fn(*inputs[len(times) % len(inputs)])
                while time.perf_counter() < settled:
                    fn(*inputs[len(times) % len(inputs)])
            for _ in range(min(block, repeat - len(times))):
                args = inputs[len(times) % len(inputs)]
                begin = time.perf_counter()
                fn(*args)
                times.append((time.perf_counter() - begin) * 1e3)
            if alternating:
                time.sleep(pause_s)
    return {name: _summarise(samples[name], first[name]) for name in fns}


@contextlib.contextmanager
def conv_algorithm(name: str | None):
    """GPUCNN_CONV_ALGORITHM set to ``name`` for the duration (None: left as it is)."""
    from gpucnn.cuda.conv import ALGORITHM_VARIABLE

    saved = os.environ.get(ALGORITHM_VARIABLE)
    if name is not None:
        os.environ[ALGORITHM_VARIABLE] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ALGORITHM_VARIABLE, None)
        else:
            os.environ[ALGORITHM_VARIABLE] = saved


def time_gpu(fn, inputs=None, warmup: int = 3, repeat: int = 30) -> Timing:
    """Median device time of ``fn(*inputs[i % len(inputs)])``, bracketed by CUDA events on
    the current stream (``_time_queued``)."""
    import cupy

    stream = cupy.cuda.get_current_stream()
    return _time_queued(
        fn, inputs, warmup, repeat, cupy.cuda.Event, cupy.cuda.get_elapsed_time, stream.synchronize
    )


def _time_queued(fn, inputs, warmup, repeat, new_event, elapsed_ms, synchronize) -> Timing:
    """Time each run between two events, issuing every run before waiting for any (as
    triton's do_bench does), so that a run's host work overlaps the device work queued
    before it. A run whose kernels outlast the host's launch path is timed by its kernels
    alone; one that the host cannot keep fed (LeNet sizes, eager training steps) still shows
    the host's gaps, as a training loop would see them. Waiting after each run instead added
    the whole host path to every sample: max pooling at 64x256x56x56 read 0.170 ms where
    ncu's duration of its kernel is 0.108 ms (H100, session 10)."""
    inputs = list(inputs) if inputs else [()]
    synchronize()
    begin = time.perf_counter()
    fn(*inputs[0])
    synchronize()
    first = (time.perf_counter() - begin) * 1e3
    for i in range(1, warmup):
        fn(*inputs[i % len(inputs)])
    events = [(new_event(), new_event()) for _ in range(repeat)]
    for i, (start, stop) in enumerate(events):
        start.record()
        fn(*inputs[i % len(inputs)])
        stop.record()
    synchronize()
    return _summarise([elapsed_ms(start, stop) for start, stop in events], first)


class Target:
    """Where a benchmark runs: ``"gpu"`` (CuPy arrays, CUDA events) or ``"cpu"`` (NumPy arrays,
    wall clock); also which torch device the comparison uses."""

    def __init__(self, name: str, quick: bool = False):
        if name not in ("gpu", "cpu"):
            raise ValueError(f"device must be 'gpu' or 'cpu', got {name!r}")
        import gpucnn

        gpucnn.set_device(name)
        self.name, self.quick = name, quick
        self.repeat = 10 if quick else 30

    @property
    def xp(self):
        if self.name == "gpu":
            import cupy

            return cupy
        return np

    def put(self, array):
        return self.xp.asarray(array)

    def time(self, fn, inputs=None) -> Timing:
        timer = time_gpu if self.name == "gpu" else time_cpu
        return timer(fn, inputs, repeat=self.repeat)

    def random(self, shape, dtype=np.float32, seed=0):
        return self.put(np.random.default_rng(seed).standard_normal(shape).astype(dtype))

    def torch(self):
        """(torch, device string) when PyTorch can run here, else None."""
        try:
            import torch
        except ImportError:
            return None
        if self.name == "gpu":
            if not torch.cuda.is_available():
                return None
            torch.backends.cudnn.allow_tf32 = False  # float32 against float32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
            return torch, "cuda"
        return torch, "cpu"

    def torch_time(self, fn, inputs=None) -> Timing:
        found = self.torch()
        if found is not None and self.name == "gpu":
            torch, _ = found
            return _torch_time_gpu(torch, fn, inputs, self.repeat)
        return time_cpu(fn, inputs, repeat=self.repeat)

    def ceilings(self) -> dict:
        """Copy bandwidth (GB/s, bytes read + written) and float32 matmul (TFLOP/s)."""
        xp = self.xp
        size = (256 if self.quick else 1024) * 2**20 if self.name == "gpu" else 128 * 2**20
        sources = [xp.ones(size // 4, np.float32) + i for i in range(2)]
        target = xp.empty_like(sources[0])
        copy = self.time(lambda s: xp.copyto(target, s), [(s,) for s in sources])
        m = 8192 if self.name == "gpu" else 1024
        a, b = self.random((m, m), seed=1), self.random((m, m), seed=2)
        matmul = self.time(lambda: xp.matmul(a, b))
        return {
            "copy_gbs": 2 * size / copy.median_ms / 1e6,
            "matmul_tflops": 2 * m**3 / matmul.median_ms / 1e9,
            "copy": copy,
            "matmul": matmul,
        }


def _torch_time_gpu(torch, fn, inputs, repeat) -> Timing:
    def new_event():
        return torch.cuda.Event(enable_timing=True)

    return _time_queued(
        fn, inputs, 3, repeat, new_event, lambda a, b: a.elapsed_time(b), torch.cuda.synchronize
    )


class PowerSampler:
    """Samples the GPU's power and temperature through NVML in a background thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        try:
            import pynvml

            from gpucnn.gpuinfo import nvml_handle

            pynvml.nvmlInit()
            self._handle, _ = nvml_handle(pynvml)
            self._pynvml = pynvml
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return self
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        nvml = self._pynvml
        while not self._stop.is_set():
            sample = {"t": time.time()}
            for key, query in (
                ("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000),
                (
                    "temperature_c",
                    lambda: nvml.nvmlDeviceGetTemperature(self._handle, nvml.NVML_TEMPERATURE_GPU),
                ),
                (
                    "sm_clock_mhz",
                    lambda: nvml.nvmlDeviceGetClockInfo(self._handle, nvml.NVML_CLOCK_SM),
                ),
            ):
                try:
                    sample[key] = query()
                except Exception:
                    pass  # NotSupported on this GPU: the summary says what is missing
            self.samples.append(sample)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._pynvml.nvmlShutdown()
        return False

    def summary(self) -> dict:
        if not self.samples:
            return {"unavailable": getattr(self, "error", "no samples")}
        out = {}
        for key in ("power_w", "temperature_c", "sm_clock_mhz"):
            values = [s[key] for s in self.samples if key in s]
            if values:
                out[key] = {
                    "min": min(values),
                    "mean": statistics.fmean(values),
                    "max": max(values),
                }
            else:
                out[key] = "unavailable (not supported on this GPU or driver)"
        out["samples"] = len(self.samples)
        return out


def _cpu_model() -> str | None:
    """The CPU's model name on Linux (platform.processor() says only "x86_64" there), with
    its family and model numbers where a VM hides the name: "AMD EPYC" was a Zen 4 (family
    25) in one session and a Zen 5 (26) in another."""
    from gpucnn.cpu._parallel import cpu_info

    fields = cpu_info()
    name = fields.get("model name") or None
    if name and fields.get("cpu family") and fields.get("model"):
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


# Settings that change which BLAS kernels run, or on how many threads: a CPU table records them.
BLAS_ENVIRONMENT = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def host_facts() -> dict:
    """The host's facts for a result file. The CPU's model and the BLAS kernels NumPy runs
    are recorded because CPU ratios depend on them: the same code measured 1.76-1.99x
    PyTorch on one development VM (AMD EPYC) and 2.4-2.6x on the next (an Intel Xeon)."""
    facts = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "numpy": np.__version__,
    }
    try:
        facts["cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        from gpucnn.cpu._parallel import blas_kernel_advice, blas_libraries

        facts["blas"] = blas_libraries()
        facts["blas_advice"] = blas_kernel_advice(facts["blas"])
    except Exception:  # a fact for the record, never a reason to fail a benchmark
        facts["blas"] = None
    facts["environment"] = {
        name: os.environ[name] for name in BLAS_ENVIRONMENT if os.environ.get(name) is not None
    }
    for module in ("cupy", "torch"):
        try:
            facts[module] = __import__(module).__version__
        except Exception:
            facts[module] = None
    return facts


def host_summary(facts: dict) -> str:
    """One line naming the host of a CPU result table (``host_facts``)."""
    blas = ", ".join(
        f"{pool['internal_api']} {pool['version']} ({pool['architecture']} kernels)"
        for pool in facts.get("blas") or []
    )
    return (
        f"Host: {facts['processor']}, {facts.get('cpus', '?')} CPUs; NumPy {facts['numpy']}"
        + (f" with {blas}" if blas else "")
        + (f"; PyTorch {facts['torch']}" if facts.get("torch") else "")
        + "".join(f"; {name}={value}" for name, value in (facts.get("environment") or {}).items())
        + "."
        + (f" Note: {facts['blas_advice']}." if facts.get("blas_advice") else "")
    )


# The families the runner knows, in its order; a run of some of them only names them in its
# result files (see result_stem), which benchmarks/compare.py reads back.
FAMILY_NAMES = ("conv2d", "pool2d", "hopfield", "train_step")


def result_stem(target: Target, gpu_name: str | None) -> str:
    """``<date>_<gpu or cpu>``: e.g. 2026-11-22_nvidia-h100-80gb-hbm3."""
    stamp = datetime.date.today().isoformat()
    label = gpu_name if target.name == "gpu" and gpu_name else f"cpu-{platform.machine()}"
    return f"{stamp}_{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}"


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
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def record(
    family: str,
    name: str,
    direction: str,
    timing: Timing,
    *,
    flops=None,
    bytes_moved=None,
    ceilings=None,
    torch_timing: Timing | None = None,
    **extra,
) -> dict:
    """One result row: time, throughput, fraction of the ceiling that bounds it, and the
    ratio against PyTorch (torch time / our time: above 1 means faster than PyTorch)."""
    row = {"family": family, "name": name, "direction": direction, "ours": timing, **extra}
    seconds = timing.median_ms / 1e3
    if flops is not None:
        row["tflops"] = flops / seconds / 1e12
        if ceilings:
            row["fraction_of_ceiling"] = row["tflops"] / ceilings["matmul_tflops"]
            row["bound"] = "flops"
    if bytes_moved is not None:
        row["gbs"] = bytes_moved / seconds / 1e9
        if ceilings and flops is None:
            row["fraction_of_ceiling"] = row["gbs"] / ceilings["copy_gbs"]
            row["bound"] = "bytes"
    if torch_timing is not None:
        row["torch"] = torch_timing
        row["speedup_vs_torch"] = torch_timing.median_ms / timing.median_ms
    return row


# A row whose p90 passes its p10 by more than this shows its spread beside the median: a run
# disturbed mid-row (an unchanged H100 kernel once read 0.185 ms, p10 0.162 and p90 0.244,
# against 0.111 in four other runs) is then visible in the table, not only in the JSON.
WIDE_SPREAD = 1.25


def _milliseconds(timing: Timing) -> str:
    if timing.p90_ms > WIDE_SPREAD * timing.p10_ms:
        return f"{timing.median_ms:.3f} (p10-p90 {timing.p10_ms:.3f}-{timing.p90_ms:.3f})"
    return f"{timing.median_ms:.3f}"


def table_rows(records: list[dict]) -> list[list]:
    rows = []
    for r in records:
        throughput = (
            f"{r['tflops']:.2f} TFLOP/s"
            if "tflops" in r
            else f"{r['gbs']:.1f} GB/s"
            if "gbs" in r
            else "-"
        )
        ceiling = f"{r['fraction_of_ceiling']:.0%}" if "fraction_of_ceiling" in r else "-"
        torch_ms = _milliseconds(r["torch"]) if "torch" in r else "-"
        speedup = f"{r['speedup_vs_torch']:.2f}x" if "speedup_vs_torch" in r else "-"
        rows.append(
            [
                r["family"],
                r["name"],
                r["direction"],
                _milliseconds(r["ours"]),
                throughput,
                ceiling,
                torch_ms,
                speedup,
            ]
        )
    return rows


TABLE_HEADER = [
    "family",
    "case",
    "direction",
    "ms",
    "throughput",
    "of ceiling",
    "torch ms",
    "vs torch",
]
