"""Saving and loading arrays: weights as ``.npz``, written atomically, read without pickle.

A file a user loads is untrusted: no member is unpickled, each member's .npy header is
checked (name, shape, float dtype) before any array is read, and anything malformed raises
ValueError naming the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._checks import check_path
from ._device import to_numpy


def check_save_path(path) -> Path:
    """``path`` as a Path, once it is known that a file can be written there: its folder
    exists and is writable and it is not itself a folder. Callers about to spend a long time
    (a training run) check first, rather than fail when the result is ready."""
    path = check_path(path)
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot save to {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: folder {folder} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a folder")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot save to {path}: folder {folder} is not writable")
    return path


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file object whose content replaces ``path`` only once fully written
    (temp file in the same folder, fsync, rename): a crash never leaves a half-written file."""
    path = check_save_path(path)
    folder = path.parent
    mode = _mode_for(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _mode_for(path: Path) -> int:
    """The permission bits a plain open(path, "w") would leave: an existing file keeps its
    own; a new one gets 0o666 less the umask (mkstemp's temp file is 0o600, private)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read it is to set it
        os.umask(umask)
        return 0o666 & ~umask


def save_arrays(path, arrays: dict) -> None:
    """Write ``arrays`` (name -> array on any device) to ``path`` as an uncompressed .npz."""
    host = {name: to_numpy(value) for name, value in arrays.items()}
    with atomic_write(path) as handle:
        np.savez(handle, **host)


# What reading a damaged .npz raises besides ValueError (found by flipping random bytes of
# saved files, tests/test_checkpoint.py): zipfile's NotImplementedError for a flag or
# method it does not know and RuntimeError for one it takes as encryption; zlib.error from
# a damaged compressed member; tokenize.TokenError from NumPy's parse of a damaged header.
_MALFORMED = (
    zipfile.BadZipFile,
    zlib.error,
    tokenize.TokenError,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
)


class Header(NamedTuple):
    """What an .npz member's .npy header promises: its array's name, shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


def load_arrays(path, check_headers=None) -> dict[str, np.ndarray]:
    """Read every array of an .npz file; ValueError naming the file if anything is off.

    Each member's .npy header is checked against the member's size before any allocation,
    so a crafted header cannot make us allocate more than the file holds; object (pickled)
    arrays are refused. ``check_headers``, if given, is called with every member's
    ``Header`` before any array is read, so a caller that knows what the file must hold
    (``load_weights``: the model's names and shapes) refuses anything else before
    decompressing a byte of it: a compressed member may expand a thousandfold.
    """
    path = check_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot load {path}: it is a folder, not an .npz file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with _reported_as_malformed(path):
        archive = zipfile.ZipFile(path)
    with archive:
        with _reported_as_malformed(path):
            members = archive.infolist()
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not an .npy array")
            headers = [_header_of(archive, info) for info in members] if check_headers else []
        if check_headers is not None:
            check_headers(headers)  # its errors are the caller's, not "malformed"
        with _reported_as_malformed(path):
            return dict(_read_member(archive, info) for info in members)


@contextlib.contextmanager
def _reported_as_malformed(path):
    try:
        yield
    except _MALFORMED as exc:
        raise ValueError(f"{path} is not a valid .npz weights file: {exc}") from exc


def _header_of(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Header:
    with archive.open(info) as member:
        return _read_header(info, member)[0]


def _read_header(info: zipfile.ZipInfo, member) -> tuple[Header, bool]:
    """The member's header and whether its array is in Fortran order; leaves ``member`` at
    the array's first byte."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    elif version in ((2, 0), (3, 0)):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects (pickle), which are refused")
    return Header(info.filename[: -len(".npy")], tuple(shape), dtype), fortran_order


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, np.ndarray]:
    with archive.open(info) as member:
        header, fortran_order = _read_header(info, member)
        expected = math.prod(header.shape) * header.dtype.itemsize
        available = info.file_size - member.tell()
        if expected != available:
            raise ValueError(
                f"{info.filename}: header promises {expected} bytes, member holds {available}"
            )
        data = member.read(expected)
    if len(data) != expected:
        raise ValueError(f"{info.filename} is truncated")
    array = np.frombuffer(bytearray(data), dtype=header.dtype)  # bytearray: a writable copy
    array = array.reshape(header.shape, order="F" if fortran_order else "C")
    return header.name, array


def _params(model) -> dict:
    params = getattr(model, "params", None)
    if not isinstance(params, dict):
        raise TypeError(f"model must be a gpucnn layer or Sequential, got {type(model).__name__}")
    return params


def save_weights(model, path) -> None:
    """Save ``model.params`` to ``path`` (.npz), atomically. Weights holding NaN or inf (a
    diverged training run) are refused and the file is left as it was: ``load_weights`` would
    refuse them, and the save must not replace good weights with ones that cannot load."""
    params = _params(model)
    host = {name: to_numpy(value) for name, value in params.items()}
    for name, value in host.items():
        if not np.isfinite(value).all():
            raise ValueError(f"cannot save to {path}: {name} holds NaN or infinite values")
    save_arrays(path, host)


def load_weights(model, path) -> None:
    """Load weights saved by ``save_weights`` into ``model``, in place.

    Names and shapes must match the model exactly; the values are converted to each
    parameter's dtype and device. Nothing changes unless the whole file checks out.
    """
    params = _params(model)

    def check_headers(headers: list[Header]) -> None:  # before any array is read
        names = {header.name for header in headers}
        missing, unexpected = sorted(set(params) - names), sorted(names - set(params))
        if missing or unexpected:
            raise ValueError(
                f"{path} does not match the model: missing {missing or 'nothing'}, "
                f"unexpected {unexpected or 'nothing'}"
            )
        for name, shape, dtype in headers:
            if dtype.kind != "f":
                raise ValueError(f"{path}: {name} has dtype {dtype}, expected floats")
            if shape != tuple(params[name].shape):
                raise ValueError(
                    f"{path}: {name} has shape {shape}, the model expects "
                    f"{tuple(params[name].shape)}"
                )

    loaded = load_arrays(path, check_headers)
    for name, value in loaded.items():
        if not np.isfinite(value).all():
            raise ValueError(f"{path}: {name} holds NaN or infinite values")
    for name, value in loaded.items():
        target = params[name]
        if isinstance(target, np.ndarray):
            target[...] = value
        else:
            target.set(np.ascontiguousarray(value, dtype=target.dtype))
