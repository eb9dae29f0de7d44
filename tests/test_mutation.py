"""tests/mutation.py, the mutation testing of the kernels and of the NumPy reference (run by
hand: it takes minutes a source): what it mutates, and that it knows every kernel's tests."""

from __future__ import annotations

from pathlib import Path

from tests import mutation

ROOT = Path(__file__).resolve().parent.parent


def test_every_kernel_source_has_its_tests():
    kernels = {f"cuda/{path.name}" for path in (ROOT / "cuda").glob("*.cu*")}
    assert kernels == {source for source in mutation.SOURCE_TESTS if source.startswith("cuda/")}
    for source, tests in mutation.SOURCE_TESTS.items():
        path = ROOT / source
        assert path.is_file() and mutation.mutants(path.read_text(), path.suffix)
        assert tests and all((ROOT / test).exists() for test in tests)


def test_each_mutant_changes_one_operator_of_code_only():
    source = (
        "#if A < B\n"  # preprocessor: left alone
        "// i < n in a comment\n"
        "    if (i < n && j >= 0) x = y + 1;  // keep i < n here\n"
        "    for (int k = 0; k != m; ++k) a<T>(b >> 1);\n"
        "    z = w - 1.5f + v - 10;\n"  # neither 1.5 nor 10 is a 1
    )
    found = mutation.mutants(source, ".cu")
    assert [index for index, _ in found] == [2, 2, 2, 2, 3]
    changed = [line for _, line in found]
    assert changed[0] == "    if (i <= n && j >= 0) x = y + 1;  // keep i < n here\n"
    assert changed[1] == "    if (i < n && j > 0) x = y + 1;  // keep i < n here\n"
    assert changed[2] == "    if (i < n || j >= 0) x = y + 1;  // keep i < n here\n"
    assert changed[3] == "    if (i < n && j >= 0) x = y;  // keep i < n here\n"
    assert changed[4] == "    for (int k = 0; k == m; ++k) a<T>(b >> 1);\n"


def test_python_mutants_leave_strings_and_comments_alone():
    source = (
        "def f(a, b):\n"
        '    """a < b and a - 1 in a docstring."""\n'
        "    if a < b and b != -1:  # a < b or not\n"
        '        raise ValueError(f"a must be < b, got {a - 1}")\n'
        "    return a[-1] + 1.5 - 1\n"
    )
    found = mutation.mutants(source, ".py")
    assert [index for index, _ in found] == [2, 2, 2, 4]  # an f-string is text, whole
    changed = [line for _, line in found]
    assert changed[0] == "    if a <= b and b != -1:  # a < b or not\n"
    assert changed[1] == "    if a < b or b != -1:  # a < b or not\n"
    assert changed[2] == "    if a < b and b == -1:  # a < b or not\n"
    assert changed[3] == "    return a[-1] + 1.5\n"
