"""Saving and loading weights: round trip, atomic writes, and untrusted files."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from gpucnn.checkpoint import load_arrays, load_weights, save_weights
from gpucnn.models import digits_cnn
from tests.helpers import count_refusals


def test_round_trip(tmp_path):
    model, other = digits_cnn(seed=1), digits_cnn(seed=2)
    path = tmp_path / "weights.npz"
    save_weights(model, path)
    arrays = {name: array.copy() for name, array in other.params.items()}
    load_weights(other, path)
    assert all(np.array_equal(model.params[k], other.params[k]) for k in model.params)
    assert any(not np.array_equal(arrays[k], other.params[k]) for k in arrays)
    assert sorted(os.listdir(tmp_path)) == ["weights.npz"]  # no temp file left behind


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.npz"
    save_weights(digits_cnn(seed=1), path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_weights(digits_cnn(seed=2), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["weights.npz"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_files_get_the_permissions_a_plain_write_would(tmp_path):
    old_umask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.npz"
        save_weights(digits_cnn(), fresh)
        assert fresh.stat().st_mode & 0o777 == 0o640  # 0o666 less the umask, not 0o600
        shared = tmp_path / "shared.npz"
        shared.write_bytes(b"")
        shared.chmod(0o664)
        save_weights(digits_cnn(), shared)
        assert shared.stat().st_mode & 0o777 == 0o664  # an overwritten file keeps its mode
    finally:
        os.umask(old_umask)


def test_bad_paths_and_models_are_named(tmp_path):
    model = digits_cnn()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="a_file is a file, not a folder"):
        save_weights(model, tmp_path / "a_file" / "w.npz")
    for call in (save_weights, load_weights):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike, got NoneType"):
            call(model, None)
        with pytest.raises(TypeError, match="model must be a gpucnn layer"):
            call("digits", tmp_path / "w.npz")


def test_save_into_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_weights(digits_cnn(), tmp_path / "nope" / "w.npz")


def test_save_over_a_folder_is_an_error_and_keeps_the_folder(tmp_path):
    (tmp_path / "w.npz").mkdir()
    (tmp_path / "w.npz" / "kept").write_text("x")
    with pytest.raises(IsADirectoryError, match="w.npz: it is a folder"):
        save_weights(digits_cnn(), tmp_path / "w.npz")
    assert (tmp_path / "w.npz" / "kept").read_text() == "x"


def test_save_into_a_read_only_folder_is_an_error(tmp_path, monkeypatch):
    # as root every folder is writable, so the check's answer is set here
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    with pytest.raises(PermissionError, match="is not writable"):
        save_weights(digits_cnn(), tmp_path / "w.npz")
    assert not list(tmp_path.iterdir())


def _write_npz(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def test_mismatched_files_are_refused_and_change_nothing(tmp_path):
    model = digits_cnn(seed=1)
    before = {k: v.copy() for k, v in model.params.items()}
    good = {k: v.copy() for k, v in model.params.items()}

    wrong_shape = dict(good, **{"0.weight": np.zeros((16, 1, 5, 5), np.float32)})
    _write_npz(tmp_path / "shape.npz", **wrong_shape)
    with pytest.raises(ValueError, match=r"0\.weight has shape \(16, 1, 5, 5\)"):
        load_weights(model, tmp_path / "shape.npz")

    missing = {k: v for k, v in good.items() if k != "9.bias"}
    _write_npz(tmp_path / "missing.npz", **missing, extra=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"missing \['9.bias'\], unexpected \['extra'\]"):
        load_weights(model, tmp_path / "missing.npz")
    _write_npz(tmp_path / "only_missing.npz", **missing)
    with pytest.raises(ValueError, match=r"missing \['9.bias'\], unexpected nothing"):
        load_weights(model, tmp_path / "only_missing.npz")
    _write_npz(tmp_path / "only_extra.npz", **good, extra=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"missing nothing, unexpected \['extra'\]"):
        load_weights(model, tmp_path / "only_extra.npz")

    ints = dict(good, **{"9.bias": np.zeros(10, np.int64)})
    _write_npz(tmp_path / "ints.npz", **ints)
    with pytest.raises(ValueError, match="expected floats"):
        load_weights(model, tmp_path / "ints.npz")

    nan = dict(good, **{"9.bias": np.full(10, np.nan, np.float32)})
    _write_npz(tmp_path / "nan.npz", **nan)
    with pytest.raises(ValueError, match="NaN"):
        load_weights(model, tmp_path / "nan.npz")

    assert all(np.array_equal(before[k], model.params[k]) for k in before)


def test_malformed_files(tmp_path):
    model = digits_cnn()
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a valid .npz"):
        load_weights(model, garbage)

    pickled = tmp_path / "pickled.npz"
    _write_npz(pickled, **{"0.weight": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="pickle"):
        load_weights(model, pickled)

    # a header that claims far more data than the member holds: refused before allocating
    liar = tmp_path / "liar.npz"
    header = np.lib.format
    with zipfile.ZipFile(liar, "w") as archive, archive.open("0.weight.npy", "w") as member:
        header.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
        )
        member.write(b"\x00" * 16)
    with pytest.raises(ValueError, match="header promises"):
        load_arrays(liar)
    with pytest.raises(ValueError, match="does not match the model"):  # by the headers alone
        load_weights(model, liar)

    truncated = tmp_path / "truncated.npz"
    save_weights(model, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(ValueError, match="not a valid .npz"):
        load_weights(model, truncated)

    with pytest.raises(FileNotFoundError, match="no such file"):
        load_weights(model, tmp_path / "absent.npz")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        load_weights(model, tmp_path)


def test_weights_are_checked_by_their_headers_before_any_array_is_read(tmp_path, monkeypatch):
    # A compressed member can expand a thousandfold: a file whose names or shapes are not
    # the model's is refused before a byte of its data is decompressed.
    from gpucnn import checkpoint

    model = digits_cnn()
    arrays = {name: np.zeros(value.shape, np.float32) for name, value in model.params.items()}
    arrays["0.weight"] = np.zeros((4000, 1000), np.float32)  # 16 MB of zeros, 16 KB deflated
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **arrays)
    assert bomb.stat().st_size < 200_000

    def no_reading(*args):
        raise AssertionError("an array was read before the headers were checked")

    monkeypatch.setattr(checkpoint, "_read_member", no_reading)
    with pytest.raises(ValueError, match=r"0.weight has shape \(4000, 1000\), the model expects"):
        load_weights(model, bomb)
    arrays["0.weight"] = np.zeros(model.params["0.weight"].shape, np.int32)
    np.savez_compressed(bomb, **arrays)
    with pytest.raises(ValueError, match="0.weight has dtype int32, expected floats"):
        load_weights(model, bomb)
    monkeypatch.undo()
    before = {name: value.copy() for name, value in model.params.items()}
    arrays["0.weight"] = np.ones(model.params["0.weight"].shape, np.float32)
    np.savez_compressed(bomb, **arrays)  # compressed files of the right shapes do load
    load_weights(model, bomb)
    assert np.all(model.params["0.weight"] == 1) and not np.all(before["0.weight"] == 1)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_damaged_files_raise_value_error_and_nothing_else(tmp_path, save):
    # Never zipfile's NotImplementedError / RuntimeError, zlib.error or a tokenizer error.
    good = tmp_path / "good.npz"
    save(good, a=np.arange(1000, dtype=np.float32).reshape(10, 100), b=np.ones(37))
    refused = count_refusals(load_arrays, good.read_bytes(), tmp_path / "bad.npz", 300, seed=1)
    assert refused > 250  # most damage is caught (the CRC covers the data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weights_that_are_not_finite_are_not_saved_over_good_ones(tmp_path, bad):
    # load_weights refuses them, so saving them would lose the file's good weights.
    path = tmp_path / "weights.npz"
    save_weights(digits_cnn(seed=1), path)
    before = path.read_bytes()
    model = digits_cnn(seed=2)
    model.params["9.bias"][3] = bad
    with pytest.raises(ValueError, match=r"9\.bias holds NaN or infinite values"):
        save_weights(model, path)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_weights(model, tmp_path / "new.npz")
    assert sorted(os.listdir(tmp_path)) == ["weights.npz"]
