"""Registers, shared memory, stack and spills of every kernel, per architecture, from ptxas's
report (NVRTC runs ptxas when it compiles to a cubin; no GPU and no CUDA toolkit needed).

    python benchmarks/kernel_resources.py [--arch 80 90] [--out benchmarks/results]

Writes kernel_resources.json (read by the benchmark report) and prints a table. A spill in a
hot kernel is a bug to explain.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from gpucnn.cuda._loader import NVRTC_OPTIONS  # noqa: E402
from gpucnn.cuda._source import kernel_files, kernel_source, name_expressions  # noqa: E402
from gpucnn.cuda.nvrtc import compile_source, find_nvrtc  # noqa: E402

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for 'sm_(\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
# (newer ptxas puts "N bytes cumulative stack size" between the barriers and the smem)
_USED = re.compile(
    r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, \d+ bytes cumulative stack size)?"
    r"(?:, (\d+) bytes smem)?"
)


def parse_ptxas_log(log: str, lowered: dict[str, str]) -> dict[str, dict]:
    """{name expression: resources} from an NVRTC log compiled with ptxas -v."""
    by_mangled = {mangled: expression for expression, mangled in lowered.items()}
    report, current = {}, None
    for line in log.splitlines():
        if match := _ENTRY.search(line):
            current = report.setdefault(by_mangled.get(match.group(1), match.group(1)), {})
        elif current is not None and (match := _FRAME.search(line)):
            current.update(
                stack_bytes=int(match.group(1)),
                spill_store_bytes=int(match.group(2)),
                spill_load_bytes=int(match.group(3)),
            )
        elif current is not None and (match := _USED.search(line)):
            current.update(
                registers=int(match.group(1)),
                barriers=int(match.group(2) or 0),
                static_smem_bytes=int(match.group(3) or 0),
            )
    return report


def collect(archs) -> dict:
    nvrtcs = find_nvrtc()
    if not nvrtcs:
        raise SystemExit("no NVRTC found: pip install -e '.[test]'")
    results = {"nvrtc": {}, "kernels": {}}
    for arch in archs:
        nvrtc = next((n for n in nvrtcs if n.supports(arch)), None)
        if nvrtc is None:
            continue
        results["nvrtc"][f"sm_{arch}"] = ".".join(map(str, nvrtc.version))
        for filename in kernel_files():
            source = kernel_source(filename)
            compiled = compile_source(
                nvrtc,
                source,
                filename,
                arch,
                name_expressions(source),
                (*NVRTC_OPTIONS, "--ptxas-options=-v"),
                cubin=True,
            )
            if not compiled.ok:
                raise SystemExit(compiled.log)
            for expression, resources in parse_ptxas_log(
                compiled.log, compiled.lowered_names
            ).items():
                results["kernels"].setdefault(f"{filename}:{expression}", {})[f"sm_{arch}"] = (
                    resources
                )
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[70, 80, 90])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    results = collect(args.arch)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel_resources.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'kernel':58} {'arch':6} {'regs':>4} {'smem':>6} {'stack':>5} {'spills':>6}")
    for kernel, per_arch in sorted(results["kernels"].items()):
        for arch, r in sorted(per_arch.items()):
            spills = r.get("spill_store_bytes", 0) + r.get("spill_load_bytes", 0)
            print(
                f"{kernel:58} {arch:6} {r.get('registers', 0):4d} "
                f"{r.get('static_smem_bytes', 0):6d} {r.get('stack_bytes', 0):5d} {spills:6d}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
