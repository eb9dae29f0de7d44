"""The benchmark runner's plumbing, run on the CPU (the GPU numbers come from a GPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness import (
    Timing,
    _time_queued,
    record,
    table_rows,
    time_cpu,
    time_cpu_alternating,
)
from tests.helpers import rel_error

ROOT = Path(__file__).resolve().parent.parent


def test_record_fractions_and_ratios():
    timing = Timing(median_ms=2.0, p10_ms=1.9, p90_ms=2.2, runs=20)
    ceilings = {"copy_gbs": 2000.0, "matmul_tflops": 50.0}
    flop_bound = record(
        "conv2d",
        "x",
        "forward",
        timing,
        flops=4e10,
        ceilings=ceilings,
        torch_timing=Timing(3.0, 2.9, 3.1, 20),
    )
    assert flop_bound["tflops"] == 20.0 and flop_bound["fraction_of_ceiling"] == 0.4
    assert flop_bound["bound"] == "flops" and flop_bound["speedup_vs_torch"] == 1.5
    byte_bound = record("pool2d", "x", "forward", timing, bytes_moved=2e9, ceilings=ceilings)
    assert byte_bound["gbs"] == 1000.0 and byte_bound["fraction_of_ceiling"] == 0.5
    row = table_rows([flop_bound, byte_bound])
    assert row[0][4] == "20.00 TFLOP/s" and row[0][5] == "40%" and row[0][7] == "1.50x"
    assert row[1][4] == "1000.0 GB/s" and row[1][6] == "-"
    # a tight run shows its median; a disturbed one (p90 > 1.25 p10) its spread beside it
    assert row[0][3] == "2.000" and row[0][6] == "3.000"
    disturbed = record("pool2d", "x", "forward", Timing(0.185, 0.162, 0.244, 30))
    assert table_rows([disturbed])[0][3] == "0.185 (p10-p90 0.162-0.244)"


def _two_contenders(settle_s: float):
    """The sequence of calls of two contenders alternating in blocks of 2 (each timed 5
    times, which it checks)."""
    calls = []
    timings = time_cpu_alternating(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeat=5,
        block=2,
        pause_s=0.0,
        settle_s=settle_s,
    )
    assert timings["a"].runs == timings["b"].runs == 5
    return "".join(calls)


def test_alternating_timer_runs_blocks_in_turn_with_a_warm_up_each():
    # First call and one more warm-up each; then per block one untimed call (no settling
    # time asked) and up to `block` timed ones, the last block cut short so that each gets
    # exactly `repeat`.
    assert _two_contenders(settle_s=0.0) == "aabb" + "aaabbbaaabbbaabb"
    calls = []
    assert time_cpu(lambda: calls.append("c"), repeat=4).runs == 4
    assert "".join(calls) == "cc" + "cccc"  # one contender: no extra warm-up, no pause


def test_alternating_timer_settles_each_block_for_the_time_asked():
    # 20 ms of untimed calls before each of the three blocks: far more than one call each.
    calls = _two_contenders(settle_s=0.02)
    assert calls.count("a") > 2 + 5 + 3 * 10 and calls.count("b") > 2 + 5 + 3 * 10


def test_the_device_timer_issues_every_run_before_it_waits():
    # Fake events: each records its place in the call sequence, and an event pair's "time"
    # is how many calls lie between its two records.
    calls = []

    class Event:
        def record(self):
            calls.append("e")
            self.at = len(calls)

    timing = _time_queued(
        lambda x: calls.append(x),
        [("p",), ("q",)],
        warmup=2,
        repeat=4,
        new_event=Event,
        elapsed_ms=lambda start, stop: stop.at - start.at,
        synchronize=lambda: calls.append("|"),
    )
    # The first call alone between waits, one more warm-up, then four runs rotating their
    # inputs, each between its events, and a single wait at the end.
    assert "".join(calls) == "|p|q" + "epe" + "eqe" + "epe" + "eqe" + "|"
    assert timing.runs == 4 and timing.median_ms == 2 and timing.first_call_ms >= 0


def _runner(*args):
    """``python -m benchmarks --device cpu ARGS`` from the project's root."""
    command = [sys.executable, "-m", "benchmarks", "--device", "cpu", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_the_runner_on_the_cpu(tmp_path):
    result = _runner("--quick", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.glob("*_cpu-*_quick.json")
    payload = json.loads(path.read_text())
    families = {r["family"] for r in payload["records"]}
    assert families == {"conv2d", "pool2d", "hopfield", "train_step"}
    assert payload["ceilings"]["copy_gbs"] > 0 and payload["ceilings"]["matmul_tflops"] > 0
    directions = {r["direction"] for r in payload["records"] if r["family"] == "conv2d"}
    assert directions == {"forward", "backward-data", "backward-filter"}
    assert all(r["ours"]["median_ms"] > 0 and r["ours"]["runs"] >= 10 for r in payload["records"])
    markdown = (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert markdown.startswith("| family") and "| pool2d.cu:maxpool2d_forward<float> |" in markdown
    assert payload["kernel_resources"]["kernels"]
    assert "| conv2d |" in result.stdout


def test_a_run_of_some_families_is_named_after_them(tmp_path):
    result = _runner("--quick", "--only", "pool2d", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.glob("*.json")
    assert path.name.endswith("_pool2d_quick.json")
    assert {r["family"] for r in json.loads(path.read_text())["records"]} == {"pool2d"}


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        # auto takes the direct kernel for its backward-data; 150 taps: their own dw
        ("lenet5 conv1", ["gemm backward-data", "direct forward"]),
        ("lenet5 conv2", ["direct forward backward-data backward-filter"]),
        # "auto" runs their backward-data by the direct kernel's phases: the GEMM beside it
        ("resnet20 32@16 s2", ["gemm backward-data", "direct forward backward-filter"]),
        ("resnet20 64@8 s2", ["gemm backward-data", "direct forward backward-filter"]),
        (
            "resnet20 16@32",
            [
                "gemm forward backward-data backward-filter",  # auto: direct throughout
                "winograd forward backward-data backward-filter",
                "winograd4 forward backward-data backward-filter",
            ],
        ),
        (
            "resnet20 3->16@32",
            [
                "gemm backward-data",  # auto: direct for the backward-data alone
                "winograd forward backward-data backward-filter",
                "winograd4 forward backward-data backward-filter",
                "direct forward backward-filter",
            ],
        ),
        (
            "vgg16 64@224",
            [
                "gemm forward backward-data backward-filter",
                "winograd forward backward-data backward-filter",
            ],
        ),  # auto: F(4x4); rows too wide for direct
        (
            "resnet50 512@7",
            [
                "gemm forward backward-data backward-filter",
                "winograd4 forward backward-data backward-filter",
                "direct forward backward-data backward-filter",
            ],
        ),  # auto: F(2x2)
    ],
)
def test_the_conv_runner_times_the_algorithms_auto_did_not_pick(layer, expected, monkeypatch):
    from types import SimpleNamespace

    from benchmarks import conv2d
    from gpucnn.cuda.conv import ALGORITHM_VARIABLE

    monkeypatch.delenv(ALGORITHM_VARIABLE, raising=False)

    _, batch, chw, (k, r, s, stride, padding) = next(
        entry for entry in conv2d.LAYERS if entry[0] == layer
    )
    gpu, cpu = SimpleNamespace(name="gpu"), SimpleNamespace(name="cpu")
    shapes = ((batch, *chw), (k, chw[0], r, s), stride, padding)
    found = conv2d._alternatives(gpu, *shapes)
    assert [" ".join((name, *directions)) for name, directions in found] == expected
    assert conv2d._alternatives(cpu, *shapes) == []


def test_the_runner_refuses_unknown_families(tmp_path):
    result = _runner("--only", "fft", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown families" in result.stderr


def test_the_gpu_check_cannot_pass_by_skipping():
    # gpu_check.sh sets GPUCNN_REQUIRE_GPU=1: the GPU tests then fail where no GPU is usable
    # instead of skipping into a green run (and run where one is).
    from gpucnn._device import probe_gpu

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/cuda/test_training.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "GPUCNN_REQUIRE_GPU": "1"},
        timeout=600,
    )
    usable, why = probe_gpu()
    if usable:
        assert result.returncode == 0, result.stdout[-2000:]
    else:
        assert result.returncode != 0
        assert f"GPUCNN_REQUIRE_GPU=1 but no GPU is usable: {why}" in result.stdout + result.stderr


def test_ptxas_reports_are_read_in_both_layouts():
    from benchmarks.kernel_resources import parse_ptxas_log

    log = "\n".join(
        [
            "ptxas info    : Compiling entry function '_Z1aIfEvv' for 'sm_90'",
            "ptxas         .     8 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads",
            "ptxas info    : Used 128 registers, used 1 barriers, 8 bytes cumulative stack "
            "size, 16640 bytes smem",
            "ptxas info    : Compiling entry function '_Z1bIfEvv' for 'sm_80'",
            "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
            "ptxas info    : Used 26 registers, used 0 barriers, 1024 bytes smem",
        ]
    )
    report = parse_ptxas_log(log, {"a<float>": "_Z1aIfEvv", "b<float>": "_Z1bIfEvv"})
    assert report["a<float>"] == dict(
        registers=128,
        barriers=1,
        static_smem_bytes=16640,
        stack_bytes=8,
        spill_store_bytes=8,
        spill_load_bytes=12,
    )
    assert report["b<float>"]["registers"] == 26 and report["b<float>"]["static_smem_bytes"] == 1024


def _run(records, **extra):
    """A result payload of (family, name, direction, median, p10, p90) records."""
    return {
        "records": [
            {
                "family": family,
                "name": name,
                "direction": direction,
                "ours": {"median_ms": median, "p10_ms": p10, "p90_ms": p90},
            }
            for family, name, direction, median, p10, p90 in records
        ],
        **extra,
    }


def test_compare_calls_a_change_only_where_the_spreads_part():
    from benchmarks.compare import compare

    before = _run(
        [
            ("pool2d", "big", "forward", 1.0, 0.95, 1.05),
            ("pool2d", "big", "backward", 1.0, 0.95, 1.05),
            ("pool2d", "big", "avg", 1.0, 0.95, 1.05),
        ]
    )
    older = _run([("hopfield", "n=4096", "sync", 2.0, 1.9, 2.1)])
    after = _run(
        [
            ("pool2d", "big", "forward", 0.5, 0.48, 0.52),
            ("pool2d", "big", "backward", 1.5, 1.4, 1.6),
            ("pool2d", "big", "avg", 1.02, 0.97, 1.07),
            ("hopfield", "n=4096", "sync", 1.0, 0.99, 1.01),
            ("conv2d", "vgg", "forward", 4.0, 3.9, 4.1),
            ("conv2d", "vgg", "forward (winograd)", 2.0, 1.9, 2.1),
        ]
    )
    rows, variants = compare(after, [before, older])
    verdicts = {(row[0], row[2]): (row[5], row[6]) for row in rows}
    assert verdicts[("pool2d", "forward")] == ("2.00x", "faster")
    assert verdicts[("pool2d", "backward")] == ("0.67x", "slower")
    assert verdicts[("pool2d", "avg")][1] == "within noise"
    assert verdicts[("hopfield", "sync")] == ("2.00x", "faster")  # from the older run
    assert verdicts[("conv2d", "forward")] == ("-", "new")
    assert variants == [
        ["conv2d", "vgg", "forward (winograd)", "2.000", "forward", "4.000", "2.00x", "faster"]
    ]


def test_compare_finds_the_newest_run_and_the_committed_ones_of_its_device(tmp_path):
    from benchmarks.compare import latest, main

    out, committed = tmp_path / "out", tmp_path / "committed"
    out.mkdir(), committed.mkdir()
    run = json.dumps(_run([("pool2d", "big", "forward", 1.0, 0.9, 1.1)]))
    for name in (
        "2026-11-20_gpu-a.json",
        "2026-11-21_gpu-a_quick.json",
        "2026-11-21_gpu-b.json",
        "kernel_resources.json",
    ):
        (committed / name).write_text(run)
    (out / "2026-11-23_gpu-a_quick.json").write_text(run)
    after, befores = latest(out, committed)
    assert after.name == "2026-11-23_gpu-a_quick.json"
    assert [p.name for p in befores] == ["2026-11-21_gpu-a_quick.json", "2026-11-20_gpu-a.json"]
    assert main([str(after), str(befores[0])]) == 0
    with pytest.raises(SystemExit, match="not a benchmark result"):
        main([str(after), str(committed / "missing.json")])
    with pytest.raises(SystemExit, match="no benchmark results"):
        latest(tmp_path / "committed" / "..", tmp_path / "none")


def test_compare_orders_runs_of_one_day_by_when_they_finished(tmp_path):
    from benchmarks.compare import latest

    out, committed = tmp_path / "out", tmp_path / "committed"
    out.mkdir(), committed.mkdir()
    records = [("pool2d", "big", "forward", 1.0, 0.9, 1.1)]
    for name, finished in (
        ("2026-11-22_gpu-a.json", "2026-11-22T19:40:00+00:00"),  # the newest, first by name
        ("2026-11-22_gpu-a_conv2d-pool2d-train_step.json", "2026-11-22T19:05:00+00:00"),
        ("2026-11-22_gpu-a_hopfield_quick.json", "2026-11-22T19:20:00+00:00"),
        ("2026-11-22_gpu-a_quick.json", None),  # from before runs recorded the time
        ("2026-11-22_gpu-ab.json", "2026-11-22T19:50:00+00:00"),  # another device
        ("2026-11-22_gpu-a_session7_pool2d.json", "2026-11-22T19:30:00+00:00"),  # a session's
        ("2026-11-22_gpu-a_session7_start.json", "2026-11-22T19:45:00+00:00"),  # not a baseline
    ):
        extra = {"finished_utc": finished} if finished else {}
        (committed / name).write_text(json.dumps(_run(records, **extra)))
    (out / "2026-11-23_gpu-a_pool2d.json").write_text(json.dumps(_run(records)))
    after, befores = latest(out, committed)
    assert [p.name for p in befores] == [
        "2026-11-22_gpu-a.json",
        "2026-11-22_gpu-a_session7_pool2d.json",
        "2026-11-22_gpu-a_hopfield_quick.json",
        "2026-11-22_gpu-a_conv2d-pool2d-train_step.json",
        "2026-11-22_gpu-a_quick.json",
    ]


@pytest.mark.parametrize("graph", [False, True])
def test_host_profile_reports_step_time_and_the_profile(capsys, graph):
    from benchmarks import host_profile

    host_profile.main(
        ["--device", "emulator", "--steps", "1", "--top", "3", "--batch-divisor", "64"]
        + ["--cuda-graph"] * graph
    )
    report = capsys.readouterr().out
    for model in ("lenet5 batch=4", "cifar-cnn batch=2"):
        assert f"== {model} on emulator{' (CUDA graph)' * graph}:" in report
    assert report.count("ms per step, issued in") == 2 and report.count("ncalls") == 2


def test_host_profile_with_stubbed_kernels_counts_the_launches(capsys, monkeypatch):
    from benchmarks import host_profile
    from gpucnn import emulator

    # the stub replaces the emulator's launch for the rest of the process: undone at teardown
    monkeypatch.setattr(emulator.EmulatedKernel, "__call__", emulator.EmulatedKernel.__call__)
    monkeypatch.setattr(host_profile, "_stubbed_launches", 0)
    host_profile.main(["--device", "emulator", "--stub-kernels", "--steps", "2", "--top", "3"])
    report = capsys.readouterr().out
    counts = [
        int(count) for count in re.findall(r"(\d+) launches per step \(kernels stubbed\)", report)
    ]
    assert len(counts) == 2 and all(count > 10 for count in counts)  # (full batches: nothing ran)
    with pytest.raises(SystemExit):
        host_profile.main(["--device", "gpu", "--stub-kernels"])
    assert "--stub-kernels needs --device emulator" in capsys.readouterr().err


def test_the_step_runner_times_each_gpu_variant_on_the_emulator(capsys, monkeypatch):
    # _gpu_variants is only reached on a GPU: here it runs on the emulator with a timer that
    # calls each step once, so a variant that raises is seen (it would be printed and its
    # row dropped) and the conv algorithm is checked inside each and restored after.
    from types import SimpleNamespace

    import gpucnn
    from benchmarks import train_step
    from benchmarks.harness import Timing
    from gpucnn.cuda.conv import ALGORITHM_VARIABLE, conv_algorithm
    from gpucnn.losses import SoftmaxCrossEntropyLoss
    from gpucnn.models import lenet5
    from gpucnn.optim import SGD

    monkeypatch.delenv(ALGORITHM_VARIABLE, raising=False)
    seen = []

    def time(fn, inputs):
        seen.append(conv_algorithm())
        fn(*inputs[0])
        return Timing(1.0, 1.0, 1.0, 1)

    gpucnn.set_device("emulator")
    model = lenet5(1, 10, 28)
    optimizer, loss = SGD(model, 0.01, momentum=0.9), SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(0)
    inputs = [(rng.standard_normal((2, 1, 28, 28)).astype(np.float32), np.arange(2))]

    def step(x, y):
        loss.forward(model.forward(x), y, check_targets=False)
        model.backward(loss.backward(), need_input_grad=False)
        optimizer.step()

    target = SimpleNamespace(name="gpu", time=time)
    rows = train_step._gpu_variants(target, "lenet5", model, loss, optimizer, step, inputs)
    assert list(rows) == [
        "step (CUDA graph)",
        "step (direct conv)",
        "step (CUDA graph, direct conv)",
    ]
    assert seen == ["auto", "direct", "direct"] and ALGORITHM_VARIABLE not in os.environ
    assert "failed" not in capsys.readouterr().err


# Each family of benchmarks/cpu_ops.py at a small size: (calls, shape, spec).
CPU_OPS_FAMILIES = [
    ("conv_calls", (2, 3, 9, 9), (4, 3, 3, 1, 1)),
    ("conv_calls", (2, 3, 9, 9), (4, 3, 3, 2, 2, 2)),  # with a dilation (and a stride)
    ("pool_calls", (2, 3, 9, 9), (3, 2, 1)),
    ("avg_pool_calls", (2, 3, 9, 9), (3, 2, 1)),
    ("l2_pool_calls", (2, 3, 8, 8), (2, 2, 0)),
    ("global_pool_calls", (2, 3, 5, 5), None),
]


@pytest.mark.parametrize("family, shape, spec", CPU_OPS_FAMILIES)
def test_cpu_ops_times_a_forward_and_a_backward_of_each_family(family, shape, spec):
    from benchmarks import cpu_ops

    ours, _ = getattr(cpu_ops, family)(shape, spec)
    assert set(ours) == {"forward", "backward"}
    for call in ours.values():
        out = call()
        first = out[0] if isinstance(out, tuple) else out
        assert np.all(np.isfinite(first))


@pytest.mark.parametrize("family, shape, spec", CPU_OPS_FAMILIES)
def test_cpu_ops_times_what_pytorch_computes(family, shape, spec):
    # A ratio means something only if both sides compute the same thing.
    pytest.importorskip("torch", reason="compares with PyTorch's CPU ops")
    from benchmarks import cpu_ops

    ours, theirs = getattr(cpu_ops, family)(shape, spec)
    for direction in ("forward", "backward"):
        mine, other = ours[direction](), theirs[direction]()
        mine = mine[0] if isinstance(mine, tuple) else mine
        other = other[0] if isinstance(other, tuple) else other
        assert rel_error(mine, other.detach().numpy()) < 1e-5, direction


def test_cpu_ops_threads_set_both_sides(monkeypatch):
    # --threads compares the two at one thread count: gpucnn's workers and PyTorch's pool.
    from benchmarks import cpu_ops
    from gpucnn.cpu._parallel import THREADS_VARIABLE, worker_count

    monkeypatch.setenv(THREADS_VARIABLE, "2")  # restored after the test, as use_threads is not

    class FakeTorch:
        threads = None

        def set_num_threads(self, count):
            self.threads = count

        def get_num_threads(self):
            return self.threads

    torch = FakeTorch()
    cpu_ops.use_threads(torch, 3)
    assert worker_count() == 3 and cpu_ops._threads(torch) == {"numpy": 3, "torch": 3}
    cpu_ops.use_threads(None, 1)  # without PyTorch, gpucnn's side only
    assert worker_count() == 1


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["--threads", "0"], "--threads must be at least 1"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--only", "resnet-50"], "--only 'resnet-50' matches no layer"),
    ],
)
def test_cpu_ops_rejects_bad_arguments(arguments, words, capsys):
    from benchmarks import cpu_ops

    with pytest.raises(SystemExit):
        cpu_ops.main(arguments)
    assert words in capsys.readouterr().err


def test_cpu_ops_rounds_give_each_layers_median_and_range():
    # Two rounds of one layer: forward 3 and 4 ms against 2 (ratios 1.5x and 2x), backward
    # 1 and 1 ms against 1 and 2: forward + backward 4/3 and 5/4 per round.
    from benchmarks import cpu_ops
    from benchmarks.harness import Timing

    def timing(ms):
        return Timing(ms, ms, ms, 1)

    records = [
        {"layer": "l", "direction": direction, "numpy": timing(a), "torch": timing(b)}
        for direction, a, b in [
            ("forward", 3, 2),
            ("backward", 1, 1),
            ("forward", 4, 2),
            ("backward", 1, 2),
        ]
    ]
    forward, backward, both = cpu_ops._rows(records, "conv2d", "l")
    assert forward[3:] == ["3.50 (3.00-4.00)", "2.00 (2.00-2.00)", "1.75x (1.50-2.00x)"]
    assert backward[5] == "0.75x (0.50-1.00x)"
    assert both[2:] == ["forward + backward", "4.50", "3.50", "**1.29x** (1.25-1.33x)"]
    # one round: its own spread and ratio, as a single pass has always shown them
    forward, _, both = cpu_ops._rows(records[:2], "conv2d", "l")
    assert forward[3] == "3.00 (3.00-3.00)" and both[5] == "**1.33x**"
    # without PyTorch: NumPy's times only
    alone = [dict(record, torch=None) for record in records]
    assert [row[4:] for row in cpu_ops._rows(alone, "conv2d", "l")] == [["-", "-"]] * 3


def test_cpu_ops_writes_every_rounds_records(tmp_path):
    from benchmarks import cpu_ops

    assert (
        cpu_ops.main(["--quick", "--only", "global avg", "--rounds", "2", "--out", str(tmp_path)])
        == 0
    )
    (table,) = tmp_path.glob("*_cpu_ops_2rounds_partial.md")
    assert "min-max of 2 rounds" in table.read_text() and "forward + backward" in table.read_text()
    (results,) = tmp_path.glob("*_cpu_ops_2rounds_partial.json")
    records = json.loads(results.read_text())["records"]
    assert [(r["round"], r["direction"]) for r in records] == [
        (0, "forward"),
        (0, "backward"),
        (1, "forward"),
        (1, "backward"),
    ]


def test_host_facts_name_the_cpu_and_the_blas_for_cpu_results():
    # CPU ratios depend on the CPU and on NumPy's BLAS kernels, so result files say both.
    from benchmarks.harness import host_facts, host_summary

    facts = host_facts()
    assert isinstance(facts["processor"], str) and facts["processor"]
    assert facts["blas"], "NumPy's BLAS should be visible to threadpoolctl"
    assert all(pool["internal_api"] for pool in facts["blas"])
    summary = host_summary(facts)
    assert summary.startswith(f"Host: {facts['processor']}, ")
    assert f"NumPy {facts['numpy']} with {facts['blas'][0]['internal_api']}" in summary


def test_host_facts_record_the_blas_settings_of_the_environment(monkeypatch):
    from benchmarks.harness import BLAS_ENVIRONMENT, host_facts, host_summary

    for name in BLAS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    facts = host_facts()
    assert facts["environment"] == {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert "; OPENBLAS_CORETYPE=SkylakeX." in host_summary(facts)


def test_host_summary_passes_on_blas_advice():
    from benchmarks.harness import host_summary

    facts = {"processor": "CPU", "numpy": "2.0.0", "cpus": 2, "blas_advice": "set X=y"}
    assert host_summary(facts) == "Host: CPU, 2 CPUs; NumPy 2.0.0. Note: set X=y."


def test_host_summary_reads_facts_without_blas_or_torch():
    from benchmarks.harness import host_summary

    facts = {"processor": "Some CPU", "numpy": "2.0.0", "cpus": 4, "blas": None, "torch": None}
    assert host_summary(facts) == "Host: Some CPU, 4 CPUs; NumPy 2.0.0."


def test_cpu_contention_times_each_worker_count_and_each_kind_of_busy_thread(capsys, monkeypatch):
    from benchmarks import cpu_contention

    monkeypatch.setenv(cpu_contention.THREADS_VARIABLE, "1")
    cpu_contention.main(["--layers", "tiny", "--repeats", "2", "--workers", "1", "--cores", "3"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[4:]]
    assert [(row[1].strip(), row[2].strip()) for row in rows] == [
        ("1", "-"),
        ("2", "-"),
        ("3", "-"),
        ("1", "2 threads, gil traffic"),
        ("1", "2 threads, no gil"),
    ]
    assert all(float(row[3]) > 0 for row in rows)
    assert os.environ[cpu_contention.THREADS_VARIABLE] == "1"  # the caller's, back
