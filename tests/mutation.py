"""Mutation testing: would the tests notice a broken kernel, or a broken NumPy reference?

    python -m tests.mutation cuda/pool2d.cu --list          the mutants, numbered
    python -m tests.mutation cuda/pool2d.cu [--only 3,7]    run them (a JSON line each)
        [--fast] [--timeout SECONDS]
    python -m tests.mutation gpucnn/cpu/pool.py             the same for a NumPy source

Each mutant changes one operator on one line of a source (< and <=, > and >=, == and !=,
&& and || (and and or in Python), or drops a `+ 1` / `- 1`) in a copy of the tracked tree,
and runs that source's tests (SOURCE_TESTS) against it, stopping at the first failure: the
emulator's kernel tests for a kernel, the op's own tests (loop references, finite
differences, the spec's examples) for the NumPy path, which every kernel is judged against.
A mutant the tests pass SURVIVED: either a missing test, or an equivalent mutant (one that
cannot change any result, such as a tightened bound on an optional fast path);
tests/MUTATION.md has the last results and the mutants judged equivalent, and why.
Hypothesis runs with a fixed seed, so a verdict is the same on every run.

--fast runs the emulator unsanitized (GPUCNN_TEST_SANITIZE=0), several times faster; a
mutant that reads or writes out of bounds may then survive, corrupt the test process
(reported as "crashed" when pytest ends without its summary line) or hang ("timeout"), so
run the survivors of a fast pass again without it. Not part of `make test`: a kernel's
mutants take minutes to an hour. The tree is copied from the working tree's tracked files,
so uncommitted changes to them count.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_WINDOW_TESTS = [
    "tests/ops/test_pool.py",
    "tests/ops/test_conv.py",
    "tests/cpu/test_windows.py",
    "tests/cpu/test_parallel.py",  # the pieces' bits on any worker count
]
SOURCE_TESTS = {
    "cuda/activation.cu": ["tests/cuda/test_activation_kernels.py"],
    "cuda/common.cuh": ["tests/cuda/test_pool_kernels.py", "tests/cuda/test_conv_kernels.py"],
    "cuda/conv2d.cu": ["tests/cuda/test_conv_kernels.py"],
    "cuda/conv2d_direct.cu": ["tests/cuda/test_conv_direct.py"],
    "cuda/conv2d_winograd.cu": ["tests/cuda/test_conv_winograd.py"],
    "cuda/dense.cu": ["tests/cuda/test_dense_kernels.py"],
    "cuda/gemm_tile.cuh": [
        "tests/cuda/test_conv_kernels.py",
        "tests/cuda/test_dense_kernels.py",
        "tests/cuda/test_hopfield_kernels.py",
    ],
    "cuda/hopfield.cu": ["tests/cuda/test_hopfield_kernels.py"],
    "cuda/loss.cu": ["tests/cuda/test_loss_kernels.py"],
    "cuda/optim.cu": ["tests/cuda/test_optim_kernels.py"],
    "cuda/pool2d.cu": ["tests/cuda/test_pool_kernels.py"],
    # the NumPy reference path: its own tests only, never the kernel tests that compare a
    # kernel against it (a reference checked only by agreeing with a kernel is unchecked)
    "gpucnn/_shapes.py": _WINDOW_TESTS,
    "gpucnn/cpu/_windows.py": _WINDOW_TESTS,
    "gpucnn/cpu/activation.py": ["tests/ops/test_activation.py"],
    "gpucnn/cpu/conv.py": [
        "tests/ops/test_conv.py",
        "tests/cpu/test_windows.py",
        "tests/cpu/test_conv_rows.py",
        "tests/cpu/test_conv_paths.py",
        "tests/cpu/test_parallel.py",  # pieces and bands: the same bits on any worker count
    ],
    "gpucnn/cpu/hopfield.py": ["tests/test_hopfield.py"],
    "gpucnn/cpu/loss.py": ["tests/ops/test_loss.py"],
    "gpucnn/cpu/pool.py": [
        "tests/ops/test_pool.py",
        "tests/cpu/test_windows.py",
        "tests/cpu/test_blas_threads.py",
    ],
    # the network's API, in front of both paths: the emulator's tests too
    "gpucnn/hopfield.py": ["tests/test_hopfield.py", "tests/cuda/test_hopfield_kernels.py"],
    # the ops' validation and dispatch, and the untrusted files a user loads
    "gpucnn/_checks.py": [
        "tests/ops",
        "tests/layers",
        "tests/test_hopfield.py",
        "tests/test_optim.py",
        "tests/test_device.py",
        "tests/test_data.py",
        "tests/test_checkpoint.py",
        "tests/test_train.py",
        "tests/test_cli.py",
    ],
    "gpucnn/ops/activation.py": ["tests/ops/test_activation.py"],
    "gpucnn/ops/conv.py": ["tests/ops/test_conv.py"],
    "gpucnn/ops/dense.py": ["tests/ops/test_activation.py"],
    "gpucnn/ops/loss.py": ["tests/ops/test_loss.py"],
    "gpucnn/ops/optim.py": ["tests/ops/test_optim.py", "tests/test_optim.py"],
    "gpucnn/ops/pool.py": ["tests/ops/test_pool.py"],
    "gpucnn/checkpoint.py": ["tests/test_checkpoint.py"],
    "gpucnn/data.py": ["tests/test_data.py"],
    # the worker threads and the device dispatch
    "gpucnn/cpu/_parallel.py": ["tests/cpu/test_parallel.py"],
    "gpucnn/_device.py": ["tests/test_device.py"],
    # the layers, the optimizer and the training loop above the ops
    "gpucnn/layers/base.py": ["tests/layers/test_layers.py"],
    "gpucnn/layers/conv.py": ["tests/layers/test_layers.py"],
    "gpucnn/layers/core.py": ["tests/layers/test_layers.py"],
    "gpucnn/layers/sequential.py": ["tests/layers/test_layers.py"],
    "gpucnn/optim.py": ["tests/test_optim.py"],
    "gpucnn/losses.py": [
        "tests/ops/test_loss.py",
        "tests/layers/test_layers.py",
        "tests/test_train.py",
        "tests/cuda/test_training.py",
    ],
    "gpucnn/models.py": ["tests/test_train.py"],
    "gpucnn/train.py": ["tests/test_train.py", "tests/cuda/test_training.py"],
    # the kernels' Python side: sources, launches, and the wrappers that size each launch
    "gpucnn/cuda/_source.py": ["tests/cuda/test_source.py"],
    "gpucnn/cuda/_launch.py": ["tests/emulator/test_launch.py"],
    "gpucnn/cuda/_loader.py": [
        "tests/emulator/test_launch.py",
        "tests/cuda/test_source.py",
        "tests/cuda/test_activation_kernels.py",
    ],
    "gpucnn/emulator/__init__.py": ["tests/emulator/test_emulator.py"],
    "gpucnn/cuda/graph.py": ["tests/cuda/test_graph.py"],
    "gpucnn/cuda/nvrtc.py": ["tests/cuda/test_compile.py"],
    "gpucnn/cuda/conv.py": [
        "tests/cuda/test_conv_kernels.py",
        "tests/cuda/test_conv_direct.py",
        "tests/cuda/test_conv_winograd.py",
    ],
    "gpucnn/cuda/dense.py": ["tests/cuda/test_dense_kernels.py"],
    "gpucnn/cuda/hopfield.py": ["tests/cuda/test_hopfield_kernels.py"],
    "gpucnn/cuda/optim.py": ["tests/cuda/test_optim_kernels.py"],
    "gpucnn/cuda/pool.py": ["tests/cuda/test_pool_kernels.py"],
    # the command line, its demonstration and the GPU facts it prints
    "gpucnn/__main__.py": ["tests/test_cli.py"],
    "gpucnn/demos.py": ["tests/test_hopfield.py", "tests/test_cli.py"],
    "gpucnn/gpuinfo.py": ["tests/test_gpuinfo.py"],
}
# (pattern, replacement). clang-format and ruff format space every binary operator, so
# " < " is a comparison and never a template's bracket, a shift or a unary minus. A loop's
# ++ is left alone: a loop that stops counting only hangs. "1" must end the number (not
# 1.5, 1e-3, 10).
_ONE = r"1(?![\w.])"
OPERATORS = [
    (r" <= ", " < "),
    (r" < ", " <= "),
    (r" >= ", " > "),
    (r" > ", " >= "),
    (r" == ", " != "),
    (r" != ", " == "),
    (r" \+ " + _ONE, ""),
    (r" - " + _ONE, ""),
]
LOGICAL = {
    ".py": [(r" and ", " or "), (r" or ", " and ")],
    ".cu": [(r" && ", " || "), (r" \|\| ", " && ")],
}


def _c_code(source: str) -> list[str]:
    """Each line of a CUDA source as the part a mutant may change: the code before a //
    comment, "" for comment and preprocessor lines."""
    kept = []
    for line in source.splitlines(keepends=True):
        code = line.partition("//")[0]
        kept.append("" if code.lstrip().startswith(("#", "*", "/*")) else code)
    return kept


def _python_code(source: str) -> list[str]:
    """Each line of a Python source with its strings (f-strings whole, with the expressions
    in them: Python 3.12 tokenizes those as code, 3.11 not), docstrings and comments blanked
    to spaces, the same length, so match positions hold."""
    blanked = [list(line) for line in source.splitlines(keepends=True)]
    # FSTRING_START and FSTRING_END exist from Python 3.12 on
    fstring_start = getattr(tokenize, "FSTRING_START", None)
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    open_fstrings = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == fstring_start:
            open_fstrings.append(token.start)
            continue
        if token.type == fstring_end:
            start = open_fstrings.pop()
        elif token.type in (tokenize.STRING, tokenize.COMMENT) and not open_fstrings:
            start = token.start
        else:
            continue
        (row, column), (end_row, end_column) = start, token.end
        for line in range(row - 1, end_row):
            first = column if line == row - 1 else 0
            last = end_column if line == end_row - 1 else len(blanked[line])
            for position in range(first, last):
                if blanked[line][position] != "\n":
                    blanked[line][position] = " "
    return ["".join(line) for line in blanked]


def mutants(source: str, suffix: str = ".cu") -> list[tuple[int, str]]:
    """(line index, mutated line) for every operator match in the code of ``source`` (a
    file ending in ``suffix``: comments, strings and preprocessor lines left alone), in
    order."""
    python = suffix == ".py"
    codes = _python_code(source) if python else _c_code(source)
    operators = OPERATORS[:4] + LOGICAL[".py" if python else ".cu"] + OPERATORS[4:]
    found = []
    for index, (line, code) in enumerate(zip(source.splitlines(keepends=True), codes, strict=True)):
        for pattern, replacement in operators:
            for match in re.finditer(pattern, code):
                changed = line[: match.start()] + replacement + line[match.end() :]
                found.append((index, changed))
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
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--hypothesis-seed=0", *tests]
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


def run(source: str, only: list[int] | None, fast: bool, timeout: int) -> int:
    """Run the mutants of ``source`` (a key of SOURCE_TESTS; all of them, or those numbered
    in ``only``); the number that survived."""
    survived = 0
    with tempfile.TemporaryDirectory(prefix="gpucnn-mutation-") as folder:
        tree = Path(folder)
        _copy_tree(tree)
        path = tree / source
        original = path.read_text()
        lines = original.splitlines(keepends=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "GPUCNN_EMULATOR_CACHE": str(tree / ".emulator-cache"),
            "GPUCNN_TEST_SANITIZE": "0" if fast else "1",
        }
        for number, (index, changed) in enumerate(mutants(original, path.suffix)):
            if only is not None and number not in only:
                continue
            path.write_text("".join(lines[:index] + [changed] + lines[index + 1 :]))
            started = time.monotonic()
            try:
                returncode, last = _run_tests(SOURCE_TESTS[source], tree, env, timeout)
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
    parser.add_argument("source", help="a kernel or NumPy source, e.g. cuda/pool2d.cu")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--only", help="comma-separated mutant numbers to run")
    parser.add_argument("--fast", action="store_true", help="the emulator unsanitized")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per mutant")
    args = parser.parse_args(argv)
    source = Path(os.path.relpath(Path(args.source).resolve(), ROOT)).as_posix()
    if source not in SOURCE_TESTS:
        parser.error(f"no tests known for {args.source} (known: {sorted(SOURCE_TESTS)})")
    if args.list:
        text = (ROOT / source).read_text()
        lines = text.splitlines()
        for number, (index, changed) in enumerate(mutants(text, Path(source).suffix)):
            print(f"{number:4d}  line {index + 1}: {lines[index].strip()}  =>  {changed.strip()}")
        return 0
    try:
        only = None if args.only is None else [int(n) for n in args.only.split(",")]
    except ValueError:
        parser.error(f"--only must be comma-separated mutant numbers, got {args.only!r}")
    return 1 if run(source, only, args.fast, args.timeout) else 0


if __name__ == "__main__":
    sys.exit(main())
