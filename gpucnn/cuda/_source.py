"""Reading kernel sources: where ``cuda/`` is, header inlining, and kernel signatures.

Conventions for ``cuda/*.cu`` (checked by the tests):
- a kernel is ``__global__ void name(params)``, either ``extern "C"`` or a template whose
  parameters are ``typename``s; a template kernel is instantiated for every float dtype
  (``name<float>``, ``name<double>``);
- parameters are pointers to, or values of, the scalar types in ``SCALAR_TYPES`` (or a
  template parameter), written out (no macros: signatures are read from the source text), so
  the launch helper knows each argument's exact NumPy type;
- the project's own headers are included with quotes and are inlined here, so that CuPy's
  cache key (the source text) changes whenever a header does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# C/C++ scalar types a kernel parameter may use, and their NumPy equivalents.
SCALAR_TYPES = {
    "float": np.float32,
    "double": np.float64,
    "int": np.int32,
    "int32_t": np.int32,
    "unsigned int": np.uint32,
    "unsigned": np.uint32,
    "uint32_t": np.uint32,
    "long long": np.int64,
    "long long int": np.int64,
    "int64_t": np.int64,
    "unsigned long long": np.uint64,
    "uint64_t": np.uint64,
    "size_t": np.uint64,
    "bool": np.bool_,
    "signed char": np.int8,
    "int8_t": np.int8,
    "unsigned char": np.uint8,
    "uint8_t": np.uint8,
    "short": np.int16,
    "int16_t": np.int16,
    "unsigned short": np.uint16,
    "uint16_t": np.uint16,
}

# Template kernels are instantiated for these (C++ name, NumPy dtype) pairs.
FLOAT_TYPES = (("float", np.dtype(np.float32)), ("double", np.dtype(np.float64)))
CPP_NAME_OF_DTYPE = {dtype: name for name, dtype in FLOAT_TYPES}


def kernel_dir() -> Path:
    """The folder holding the .cu files: inside an installed wheel (``gpucnn/kernels``) or,
    in a source checkout, the repository's ``cuda/``."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "kernels", package.parent / "cuda"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"gpucnn's CUDA sources are missing: neither {package / 'kernels'} nor "
        f"{package.parent / 'cuda'} exists (a broken install?)"
    )


def kernel_files() -> list[str]:
    """Names of every .cu file gpucnn ships."""
    return sorted(path.name for path in kernel_dir().glob("*.cu"))


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)


def read_source(filename: str, folder: Path | None = None) -> str:
    """The text of ``filename`` with the project's quoted includes inlined (each once), and
    ``#line`` directives so that compiler messages name the real file and line."""
    folder = kernel_dir() if folder is None else folder
    return _inline(folder, filename, seen=set())


def _inline(folder: Path, filename: str, seen: set[str]) -> str:
    path = folder / filename
    if not path.is_file():
        raise FileNotFoundError(f"kernel source not found: {path}")
    text = path.read_text()
    parts, position = [f'#line 1 "{filename}"\n'], 0
    for match in _INCLUDE.finditer(text):
        parts.append(text[position : match.start()])
        include_line = text.count("\n", 0, match.start()) + 1
        included = match.group(1)
        if included not in seen:  # every header has #pragma once semantics
            seen.add(included)
            parts.append(_inline(folder, included, seen))
        parts.append(f'\n#line {include_line + 1} "{filename}"\n')
        position = match.end() + 1  # past the include line's newline
    parts.append(text[position:])
    return "".join(parts)


# ------------------------------------------------------------------------ kernel signatures


@dataclass(frozen=True)
class Param:
    """One kernel parameter, in terms the launch helper can check."""

    name: str
    dtype: np.dtype  # the scalar's type, or what the pointer points at
    pointer: bool
    const: bool  # for pointers: the kernel only reads through it


@dataclass(frozen=True)
class KernelDecl:
    name: str
    template_params: tuple[str, ...]  # names of `typename` template parameters
    params: tuple[tuple[str, str], ...]  # (type text, parameter name)


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_KERNEL = re.compile(
    r"(?:template\s*<(?P<tparams>[^<>]*)>\s*)?"
    r'(?:extern\s+"C"\s+)?__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(?P<name>\w+)\s*\((?P<params>[^)]*)\)"
)


def parse_kernels(source: str) -> dict[str, KernelDecl]:
    """Every ``__global__`` kernel declared in ``source``, by name."""
    kernels = {}
    for match in _KERNEL.finditer(_COMMENTS.sub(" ", source)):
        template_params = ()
        if match.group("tparams") is not None:
            template_params = tuple(
                _template_param(item) for item in match.group("tparams").split(",")
            )
        params = []
        for item in match.group("params").split(","):
            item = " ".join(item.split())
            if not item or item == "void":
                continue
            name = re.search(r"(\w+)\s*$", item).group(1)
            params.append((item[: -len(name)].strip(), name))
        kernels[match.group("name")] = KernelDecl(
            match.group("name"), template_params, tuple(params)
        )
    return kernels


def _template_param(text: str) -> str:
    words = text.split()
    if len(words) != 2 or words[0] not in ("typename", "class"):
        raise ValueError(
            f"kernel template parameter {text.strip()!r}: only `typename T` parameters are "
            "supported (the launch helper must know every argument's type)"
        )
    return words[1]


def split_name_expression(expression: str) -> tuple[str, tuple[str, ...]]:
    """``"k<float, double>"`` -> ``("k", ("float", "double"))``; ``"k"`` -> ``("k", ())``."""
    expression = expression.strip()
    if "<" not in expression:
        return expression, ()
    name, _, rest = expression.partition("<")
    if not rest.endswith(">"):
        raise ValueError(f"malformed name expression {expression!r}")
    return name.strip(), tuple(arg.strip() for arg in rest[:-1].split(","))


def resolve_params(decl: KernelDecl, template_args: tuple[str, ...]) -> tuple[Param, ...]:
    """The parameters of ``decl`` instantiated with ``template_args``."""
    if len(template_args) != len(decl.template_params):
        raise ValueError(
            f"kernel {decl.name} takes {len(decl.template_params)} template arguments, got "
            f"{len(template_args)}"
        )
    bindings = dict(zip(decl.template_params, template_args, strict=True))
    params = []
    for type_text, name in decl.params:
        words = type_text.replace("*", " * ").split()
        pointer = words.count("*")
        if pointer > 1:
            raise ValueError(f"kernel {decl.name} parameter {name}: pointers to pointers")
        const = "const" in words[: words.index("*")] if pointer else False
        base = " ".join(
            bindings.get(word, word)
            for word in words
            if word not in ("const", "*", "__restrict__", "__restrict", "volatile")
        )
        if base not in SCALAR_TYPES:
            raise ValueError(
                f"kernel {decl.name} parameter {name}: type {type_text!r} is not one of the "
                "supported scalar types (or a pointer to one)"
            )
        params.append(Param(name, np.dtype(SCALAR_TYPES[base]), bool(pointer), const))
    return tuple(params)


def name_expressions(source: str) -> list[str]:
    """What a module compiled from ``source`` exports: each extern "C" kernel by name, each
    template kernel once per float dtype."""
    expressions = []
    for decl in parse_kernels(source).values():
        if not decl.template_params:
            expressions.append(decl.name)
        elif len(decl.template_params) == 1:
            expressions.extend(f"{decl.name}<{cpp}>" for cpp, _ in FLOAT_TYPES)
        else:
            raise ValueError(f"kernel {decl.name}: one template parameter (the dtype) at most")
    return expressions


@functools.cache
def kernel_source(filename: str) -> str:
    """``read_source`` for the shipped files, read once per process."""
    return read_source(filename)
