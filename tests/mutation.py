"""Mutation testing of the CUDA kernels: would the emulator tests notice a broken kernel?

    python -m tests.mutation cuda/pool2d.cu --list          the mutants, numbered
    python -m tests.mutation cuda/pool2d.cu [--only 3,7]    run them (a JSON line each)
        [--fast] [--timeout SECONDS]

Each mutant changes one operator on one line of a kernel source (< and <=, > and >=, == and
!=, && and ||, or drops a `+ 1` / `- 1`) in a copy of the tracked tree, and runs that
source's kernel tests (KERNEL_TESTS) against it on the emulator, stopping at the first
failure. A mutant the tests pass SURVIVED: either a missing test, or an equivalent mutant
(one that cannot change any result, such as a tightened bound on an optional fast path);
tests/MUTATION.md has the last results and the mutants judged equivalent, and why.

--fast runs the emulator unsanitized (GPUCNN_TEST_SANITIZE=0), several times faster; a
mutant that reads or writes out of bounds may then survive, corrupt the test process
(reported as "crashed" when pytest ends without its summary line) or hang ("timeout"), so
run the survivors of a fast pass again without it. Not part of `make test`: a source's
mutants take minutes to an hour. The tree is copied from the working tree's tracked files,
so uncommitted changes to them count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_TESTS = {
    "activation.cu": ["tests/cuda/test_activation_kernels.py"],
    "common.cuh": ["tests/cuda/test_pool_kernels.py", "tests/cuda/test_conv_kernels.py"],
    "conv2d.cu": ["tests/cuda/test_conv_kernels.py"],
    "conv2d_direct.cu": ["tests/cuda/test_conv_direct.py"],
    "conv2d_winograd.cu": ["tests/cuda/test_conv_winograd.py"],
    "dense.cu": ["tests/cuda/test_dense_kernels.py"],
    "gemm_tile.cuh": [
        "tests/cuda/test_conv_kernels.py",
        "tests/cuda/test_dense_kernels.py",
        "tests/cuda/test_hopfield_kernels.py",
    ],
    "hopfield.cu": ["tests/cuda/test_hopfield_kernels.py"],
    "loss.cu": ["tests/cuda/test_loss_kernels.py"],
    "optim.cu": ["tests/cuda/test_optim_kernels.py"],
    "pool2d.cu": ["tests/cuda/test_pool_kernels.py"],
}
# (pattern, replacement). clang-format spaces every binary operator, so " < " is a
# comparison and never a template's bracket or a shift. A loop's ++ is left alone: a loop
# that stops counting only hangs.
OPERATORS = [
    (r" <= ", " < "),
    (r" < ", " <= "),
    (r" >= ", " > "),
    (r" > ", " >= "),
    (r" && ", " || "),
    (r" \|\| ", " && "),
    (r" == ", " != "),
    (r" != ", " == "),
    (r" \+ 1\b", ""),
    (r" - 1\b", ""),
]


def mutants(source: str) -> list[tuple[int, str]]:
    """(line index, mutated line) for every operator match on a code line of ``source``
    (comments and preprocessor lines left alone), in order."""
    found = []
    for index, line in enumerate(source.splitlines(keepends=True)):
        code, slashes, comment = line.partition("//")
        if not code.strip() or code.lstrip().startswith(("#", "*", "/*")):
            continue
        for pattern, replacement in OPERATORS:
            for match in re.finditer(pattern, code):
                changed = code[: match.start()] + replacement + code[match.end() :]
                found.append((index, changed + slashes + comment))
    return found


def _copy_tree(destination: Path) -> None:
    """The working tree's tracked files (as they are now) into ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def _run_tests(tests: list[str], tree: Path, env: dict, timeout: int):
    """(pytest's exit status, its last line of output), or (None, "") past ``timeout``.
    pytest runs in a session of its own, killed whole on a timeout: a mutant's endless loop
    would otherwise keep spinning in the emulator's sanitizer runner, a child of pytest."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    process = subprocess.Popen(
        command,
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, ""
    return process.returncode, (output.strip().splitlines() or [""])[-1]


def run(name: str, only: list[int] | None, fast: bool, timeout: int) -> int:
    """Run the mutants of cuda/``name`` (all, or those numbered in ``only``); the number
    that survived."""
    survived = 0
    with tempfile.TemporaryDirectory(prefix="gpucnn-mutation-") as folder:
        tree = Path(folder)
        _copy_tree(tree)
        path = tree / "cuda" / name
        original = path.read_text()
        lines = original.splitlines(keepends=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "GPUCNN_EMULATOR_CACHE": str(tree / ".emulator-cache"),
            "GPUCNN_TEST_SANITIZE": "0" if fast else "1",
        }
        for number, (index, changed) in enumerate(mutants(original)):
            if only is not None and number not in only:
                continue
            path.write_text("".join(lines[:index] + [changed] + lines[index + 1 :]))
            started = time.monotonic()
            try:
                returncode, last = _run_tests(KERNEL_TESTS[name], tree, env, timeout)
                if returncode is None:
                    verdict = "timeout"
                elif returncode:
                    verdict = "killed"
                else:  # a zero exit without the summary line: the process was corrupted
                    verdict = "SURVIVED" if " passed" in last else "crashed"
            finally:
                path.write_text(original)
            survived += verdict == "SURVIVED"
            record = {
                "mutant": number,
                "line": index + 1,
                "before": lines[index].strip(),
                "after": changed.strip(),
                "verdict": verdict,
                "seconds": round(time.monotonic() - started),
                "pytest": last,
            }
            print(json.dumps(record), flush=True)
    return survived


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", help="a source in cuda/, e.g. cuda/pool2d.cu")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--only", help="comma-separated mutant numbers to run")
    parser.add_argument("--fast", action="store_true", help="the emulator unsanitized")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per mutant")
    args = parser.parse_args(argv)
    name = Path(args.kernel).name
    if name not in KERNEL_TESTS:
        parser.error(f"no kernel tests known for {args.kernel} (known: {sorted(KERNEL_TESTS)})")
    if args.list:
        source = (ROOT / "cuda" / name).read_text()
        lines = source.splitlines()
        for number, (index, changed) in enumerate(mutants(source)):
            print(f"{number:4d}  line {index + 1}: {lines[index].strip()}  =>  {changed.strip()}")
        return 0
    try:
        only = None if args.only is None else [int(n) for n in args.only.split(",")]
    except ValueError:
        parser.error(f"--only must be comma-separated mutant numbers, got {args.only!r}")
    return 1 if run(name, only, args.fast, args.timeout) else 0


if __name__ == "__main__":
    sys.exit(main())
