"""Benchmark runner: ``python -m benchmarks [--quick] [--only conv2d,pool2d,hopfield,train_step]
[--device gpu|cpu] [--out DIR]``.

Measures the ceilings first (copy bandwidth, float32 matmul), then each family, with the GPU's
facts from NVML (looked up by the UUID of the device CuPy uses; clocks before and after; power,
temperature and SM clock sampled during the run) and PyTorch side by side where it is
installed. Prints a table; writes ``<out>/<date>_<gpu>.json`` and ``.md`` and, with matplotlib,
a plot of each kernel's fraction of its ceiling. ``--device cpu`` runs the NumPy path against
PyTorch's CPU ops. Set ``GPUCNN_NVTX=1`` to name every kernel launch in Nsight timelines.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # python benchmarks/__main__.py

from benchmarks import conv2d, hopfield, pool2d, train_step  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    FAMILY_NAMES,
    RESULTS,
    TABLE_HEADER,
    PowerSampler,
    Target,
    host_facts,
    markdown_table,
    result_stem,
    table_rows,
    write_results,
)

FAMILIES = dict(zip(FAMILY_NAMES, (conv2d, pool2d, hopfield, train_step), strict=True))


def _gpu_facts(target: Target) -> dict:
    if target.name != "gpu":
        return {}
    from gpucnn.gpuinfo import nvml_facts

    return nvml_facts()


def _resources(target: Target) -> tuple[dict, str]:
    """ptxas's registers, shared memory and spills per kernel, for this GPU's architecture
    (sm_90 on the CPU), as a payload entry and a Markdown table."""
    from benchmarks.kernel_resources import collect

    arch = 90
    if target.name == "gpu":
        import cupy

        arch = int(cupy.cuda.Device().compute_capability)
    try:
        report = collect([arch])
    except (SystemExit, Exception) as exc:  # no NVRTC here: say so, keep the timings
        return {"unavailable": str(exc)}, ""
    rows = []
    for kernel, per_arch in sorted(report["kernels"].items()):
        r = per_arch.get(f"sm_{arch}", {})
        spills = r.get("spill_store_bytes", 0) + r.get("spill_load_bytes", 0)
        rows.append(
            [
                kernel,
                r.get("registers", "?"),
                r.get("static_smem_bytes", 0),
                r.get("stack_bytes", 0),
                spills,
            ]
        )
    header = ["kernel", f"registers (sm_{arch})", "static smem", "stack", "spill bytes"]
    return report, markdown_table(header, rows)


def plot(records, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in records if "fraction_of_ceiling" in r]
    if not rows:
        return False
    labels = [f"{r['family']}: {r['name']} {r['direction']}" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 1.2))
    colours = ["tab:blue" if r.get("bound") == "flops" else "tab:orange" for r in rows]
    ax.barh(range(len(rows)), [r["fraction_of_ceiling"] for r in rows], color=colours)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(
        "fraction of the ceiling measured in the same run "
        "(blue: matmul flops, orange: copy bandwidth)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few shapes per family")
    parser.add_argument(
        "--only",
        default=",".join(FAMILIES),
        help=f"comma-separated families out of {','.join(FAMILIES)}",
    )
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    families = list(dict.fromkeys(f.strip() for f in args.only.split(",") if f.strip()))
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error(f"--only: unknown families {sorted(unknown)}")

    target = Target(args.device, quick=args.quick)
    facts_before = _gpu_facts(target)
    started = time.perf_counter()
    records = []
    with PowerSampler() as sampler:
        ceilings = target.ceilings()
        print(
            f"ceilings: copy {ceilings['copy_gbs']:.0f} GB/s, float32 matmul "
            f"{ceilings['matmul_tflops']:.2f} TFLOP/s",
            flush=True,
        )
        for family in families:
            begin = time.perf_counter()
            found = FAMILIES[family].run(target, ceilings)
            records += found
            print(
                f"{family}: {len(found)} results in {time.perf_counter() - begin:.0f} s", flush=True
            )
    facts_after = _gpu_facts(target)
    resources, resources_table = _resources(target)

    table = markdown_table(TABLE_HEADER, table_rows(records))
    # A run of some families only is named after them, so that runs of different families
    # on one day (e.g. --only conv2d, then --only hopfield) keep each other's files.
    subset = "" if families == list(FAMILIES) else "_" + "-".join(families)
    stem = result_stem(target, facts_before.get("name")) + subset + ("_quick" * args.quick)
    payload = {
        # orders runs of one day (benchmarks/compare.py): their names carry only the date
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "quick": args.quick,
        "seconds": time.perf_counter() - started,
        "host": host_facts(),
        "gpu_before": facts_before,
        "gpu_after": facts_after,
        "gpu_during": sampler.summary() if args.device == "gpu" else {},
        "ceilings": ceilings,
        "records": records,
        "kernel_resources": resources,
    }
    path = write_results(stem, payload, table + "\n\n" + resources_table, args.out)
    print(table)
    if plot(records, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
