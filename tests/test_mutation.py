"""tests/mutation.py, the kernels' mutation testing (run by hand: it takes minutes a source):
what it mutates, and that it knows the tests of every kernel source."""

from __future__ import annotations

from pathlib import Path

from tests import mutation

CUDA = Path(__file__).resolve().parent.parent / "cuda"


def test_every_kernel_source_has_its_tests():
    sources = {path.name for path in CUDA.iterdir() if path.suffix in (".cu", ".cuh")}
    assert sources == set(mutation.KERNEL_TESTS)
    root = CUDA.parent
    assert all(
        (root / test).is_file() for tests in mutation.KERNEL_TESTS.values() for test in tests
    )


def test_each_mutant_changes_one_operator_of_code_only():
    source = (
        "#if A < B\n"  # preprocessor: left alone
        "// i < n in a comment\n"
        "    if (i < n && j >= 0) x = y + 1;  // keep i < n here\n"
        "    for (int k = 0; k != m; ++k) a<T>(b >> 1);\n"
    )
    found = mutation.mutants(source)
    assert [index for index, _ in found] == [2, 2, 2, 2, 3]
    changed = [line for _, line in found]
    assert changed[0] == "    if (i <= n && j >= 0) x = y + 1;  // keep i < n here\n"
    assert changed[1] == "    if (i < n && j > 0) x = y + 1;  // keep i < n here\n"
    assert changed[2] == "    if (i < n || j >= 0) x = y + 1;  // keep i < n here\n"
    assert changed[3] == "    if (i < n && j >= 0) x = y;  // keep i < n here\n"
    assert changed[4] == "    for (int k = 0; k == m; ++k) a<T>(b >> 1);\n"
