"""gpucnn.cpu._malloc: glibc's thresholds set once, on glibc only, and only when allowed."""

from __future__ import annotations

import pytest

from gpucnn.cpu import _malloc


class FakeLibc:
    """Stands in for the C library: records mallopt calls, answers ``result``."""

    def __init__(self, result=1):
        self.calls, self.result = [], result

        def mallopt(parameter, value):
            self.calls.append((parameter, value))
            return self.result

        self.mallopt = mallopt


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(_malloc.ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(_malloc.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(_malloc, "_applied", None)
    monkeypatch.delenv(_malloc.VARIABLE, raising=False)
    return fake


def test_the_thresholds_are_set_once(libc):
    assert _malloc.tune_malloc() is True
    assert libc.calls == [
        (_malloc.M_MMAP_THRESHOLD, _malloc.MMAP_THRESHOLD),
        (_malloc.M_TRIM_THRESHOLD, _malloc.TRIM_THRESHOLD),
    ]
    assert _malloc.tune_malloc() is True and len(libc.calls) == 2


@pytest.mark.parametrize("value", ["0", "false", "no", " 0 "])
def test_the_variable_turns_it_off(libc, monkeypatch, value):
    monkeypatch.setenv(_malloc.VARIABLE, value)
    assert _malloc.tune_malloc() is False and libc.calls == []


def test_a_bad_value_is_named(libc, monkeypatch):
    monkeypatch.setenv(_malloc.VARIABLE, "maybe")
    with pytest.raises(ValueError, match=_malloc.VARIABLE):
        _malloc.tune_malloc()


def test_other_c_libraries_are_left_alone(libc, monkeypatch):
    monkeypatch.setattr(_malloc.platform, "libc_ver", lambda: ("", ""))  # musl, macOS
    assert _malloc.tune_malloc() is False and libc.calls == []


def test_a_refused_setting_is_reported(libc):
    libc.result = 0
    assert _malloc.tune_malloc() is False


def test_the_numpy_backend_applies_it_on_this_machine():
    import platform

    import gpucnn.cpu  # noqa: F401  (importing the backend tunes malloc)
    from gpucnn._checks import env_flag

    expected = platform.libc_ver()[0] == "glibc" and env_flag(_malloc.VARIABLE, default=True)
    assert _malloc.tune_malloc() is expected
