"""Compiling a .cu source for the CPU with the host C++ compiler, cached by content hash.

Two products from one translation unit (see cuda_emulator.hpp for its layout):
- a shared library, loaded with ctypes, that runs launches inside this process;
- in sanitizer mode, an executable built with -fsanitize=address,undefined that runs one
  launch per process (AddressSanitizer must own the process it runs in).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = HERE / "cuda_emulator.hpp"
RUNTIME = HERE / "runtime.inc"

# -ffp-contract=off: a * b + c stays two roundings, as the kernels' __fmul_rn / __fadd_rn
# promise (and as on x86-64's baseline, which has no FMA) on any host.
COMMON_FLAGS = ("-std=c++20", "-pthread", "-w", "-ffp-contract=off")
LIBRARY_FLAGS = ("-O2", "-fPIC", "-shared")
SANITIZER_FLAGS = (
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-DGPUCNN_EMULATOR_RUNNER",
)


class EmulatorCompileError(RuntimeError):
    """The host compiler rejected a kernel source; the message holds its diagnostics."""


def compiler() -> str:
    """The host C++ compiler: $CXX, else g++, else clang++."""
    for candidate in (os.environ.get("CXX"), "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return candidate
    raise EmulatorCompileError(
        "the CUDA emulator needs a C++20 compiler (g++ or clang++, or set CXX), none was found"
    )


def cache_dir() -> Path:
    """Where built kernels are kept: $GPUCNN_EMULATOR_CACHE or ~/.cache/gpucnn/emulator."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpucnn"
    folder = Path(os.environ.get("GPUCNN_EMULATOR_CACHE", default / "emulator"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# `extern __shared__ float tile[];` becomes a pointer into the block's dynamic shared memory.
_DYNAMIC_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?"
    r"(?P<type>[\w:<>\s]+?)\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?(?P<name>\w+)\s*\[\s*\]\s*;"
)


def translation_unit(code: str, name_expressions: list[str]) -> str:
    """The C++ the host compiler sees for ``code`` exporting ``name_expressions``."""
    body = _DYNAMIC_SHARED.sub(
        lambda m: (
            f"{m.group('type')}* {m.group('name')} = "
            f"reinterpret_cast<{m.group('type')}*>(::gpucnn_emu::dynamic_shared_memory());"
        ),
        code,
    )
    if not body.lstrip().startswith("#line"):
        body = '#line 1 "<emulated module>"\n' + body
    entries = "\n".join(
        f'    {{"{expression}", &gpucnn_emu::thunk<&{expression}>}},'
        for expression in name_expressions
    )
    return (
        f'#include "{HEADER}"\n{body}\n#include "{RUNTIME}"\n'
        "namespace gpucnn_emu {\n"
        f"static const KernelEntry kernels_of_this_module[] = {{\n{entries}\n}};\n"
        "const KernelEntry* kernel_table(size_t* count) {\n"
        "    *count = sizeof(kernels_of_this_module) / sizeof(kernels_of_this_module[0]);\n"
        "    return kernels_of_this_module;\n"
        "}\n"
        "}  // namespace gpucnn_emu\n"
    )


def build(code: str, name_expressions: list[str], sanitize: bool) -> Path:
    """Path of the compiled library (or sanitizer runner) for ``code``; builds on a miss."""
    if not name_expressions:
        raise ValueError("an emulated module needs at least one kernel (name_expressions)")
    unit = translation_unit(code, name_expressions)
    cxx = compiler()
    flags = COMMON_FLAGS + (SANITIZER_FLAGS if sanitize else LIBRARY_FLAGS)
    key = hashlib.sha256(
        "\0".join(
            [unit, HEADER.read_text(), RUNTIME.read_text(), cxx, *flags, _compiler_version(cxx)]
        ).encode()
    ).hexdigest()[:32]
    target = cache_dir() / (f"{key}-sanitize" if sanitize else f"{key}.so")
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "module.cpp"
        source.write_text(unit)
        output = Path(work) / target.name
        result = subprocess.run(
            [cxx, *flags, str(source), "-o", str(output)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise EmulatorCompileError(
                f"compiling for the CPU emulator failed ({cxx}):\n{result.stderr.strip()}"
            )
        os.replace(output, target)  # atomic: a parallel build of the same key is harmless
    return target


def _compiler_version(cxx: str) -> str:
    result = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return result.stdout.splitlines()[0] if result.stdout else ""
