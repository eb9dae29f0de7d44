"""NVRTC without a GPU: compile gpucnn's kernels for a chosen architecture, the way CuPy does
at run time, to check them on machines that have no GPU (CI) and to read ptxas's report.

NVRTC is loaded with ctypes from the ``nvidia-cuda-nvrtc`` wheels (CUDA 12 and 13 can both be
present; CUDA 13 dropped sm_70, so sm_70 is checked with 12), from ``$GPUCNN_NVRTC`` (paths
separated by ``os.pathsep``), or from a CUDA toolkit.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# NVRTC's own notices that are about the toolchain, not our code.
_TOOLCHAIN_NOTICES = ("Architectures prior to '<compute/sm>_75' are deprecated",)


@dataclass(frozen=True)
class Nvrtc:
    path: str
    version: tuple[int, int]

    @property
    def library(self) -> ctypes.CDLL:
        return ctypes.CDLL(self.path)

    def supports(self, arch: int) -> bool:
        return arch >= 75 if self.version[0] >= 13 else arch >= 50


@dataclass(frozen=True)
class CompileResult:
    ok: bool
    log: str
    lowered_names: dict[str, str]

    @property
    def warnings(self) -> list[str]:
        """Warning lines of the log, minus NVRTC's notices about the toolchain itself."""
        return [
            line
            for line in self.log.splitlines()
            if "warning" in line and not any(n in line for n in _TOOLCHAIN_NOTICES)
        ]


def _candidates() -> list[str]:
    paths = [p for p in os.environ.get("GPUCNN_NVRTC", "").split(os.pathsep) if p]
    for site in sys.path:
        paths += glob.glob(os.path.join(site, "nvidia", "cu*", "lib", "libnvrtc.so.*"))
        paths += glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*"))
    for root in ("/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"))):
        paths += glob.glob(os.path.join(root, "lib64", "libnvrtc.so.*"))
    return paths


def find_nvrtc() -> list[Nvrtc]:
    """Every loadable NVRTC, newest version first, one per major version."""
    found: dict[int, Nvrtc] = {}
    for path in _candidates():
        try:
            nvrtc_version = ctypes.CDLL(path).nvrtcVersion
        except (OSError, AttributeError):  # not loadable, or not NVRTC (its -builtins library)
            continue
        major, minor = ctypes.c_int(), ctypes.c_int()
        if nvrtc_version(ctypes.byref(major), ctypes.byref(minor)) != 0:
            continue
        version = (major.value, minor.value)
        if version[0] not in found or version > found[version[0]].version:
            found[version[0]] = Nvrtc(str(Path(path).resolve()), version)
    return sorted(found.values(), key=lambda n: n.version, reverse=True)


def compile_source(
    nvrtc: Nvrtc,
    source: str,
    filename: str,
    arch: int,
    name_expressions=(),
    options=(),
    cubin: bool = False,
) -> CompileResult:
    """Compile ``source`` for ``sm_<arch>`` (to PTX, or to CUBIN when ``cubin``)."""
    lib = nvrtc.library
    program = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(
            ctypes.byref(program), source.encode(), filename.encode(), 0, None, None
        ),
        "create",
    )
    try:
        for expression in name_expressions:
            _check(lib, lib.nvrtcAddNameExpression(program, expression.encode()), expression)
        target = f"--gpu-architecture={'sm' if cubin else 'compute'}_{arch}"
        flags = [target.encode(), *(o.encode() for o in options)]
        status = lib.nvrtcCompileProgram(
            program, len(flags), (ctypes.c_char_p * len(flags))(*flags)
        )
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log)
        lowered = {}
        if status == 0:
            for expression in name_expressions:
                name = ctypes.c_char_p()
                _check(
                    lib,
                    lib.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)),
                    expression,
                )
                lowered[expression] = name.value.decode()
        return CompileResult(status == 0, log.value.decode(errors="replace"), lowered)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def _check(lib, status: int, what: str) -> None:
    if status != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise RuntimeError(f"NVRTC failed ({what}): {lib.nvrtcGetErrorString(status).decode()}")
