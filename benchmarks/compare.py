"""Two benchmark runs side by side: what a change made faster, slower, or left within noise.

    python -m benchmarks.compare AFTER.json BEFORE.json [OLDER.json ...]
    python -m benchmarks.compare --latest OUT_DIR

Rows are matched by (family, case, direction); each AFTER row takes the first BEFORE file
that has it (list them newest first). ``--latest DIR`` compares the newest result in DIR
with every committed result in ``benchmarks/results`` for the same device, newest first
(by the time each run finished where its file records it).
A row is "faster" or "slower" only when the two runs' p10-p90 spreads do not overlap.
A direction "X (variant)", such as "forward (winograd)", is also set against "X" of the
same run: which algorithm wins, measured in one sitting.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from benchmarks.harness import FAMILY_NAMES

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = ["family", "case", "direction", "before ms", "after ms", "speed-up", "verdict"]
VARIANT_HEADER = ["family", "case", "direction", "ms", "against", "its ms", "speed-up", "verdict"]


def _key(record) -> tuple[str, str, str]:
    return record["family"], record["name"], record["direction"]


def verdict(after: dict, before: dict) -> str:
    """ "faster" / "slower" when the p10-p90 spreads are apart, else "within noise"."""
    if after["p90_ms"] < before["p10_ms"]:
        return "faster"
    if after["p10_ms"] > before["p90_ms"]:
        return "slower"
    return "within noise"


def _row(family, name, direction, after: dict, before: dict) -> list[str]:
    return [
        family,
        name,
        direction,
        f"{before['median_ms']:.3f}",
        f"{after['median_ms']:.3f}",
        f"{before['median_ms'] / after['median_ms']:.2f}x",
        verdict(after, before),
    ]


def compare(after: dict, befores: list[dict]) -> tuple[list[list[str]], list[list[str]]]:
    """(rows against the earlier runs, rows of variants against their base direction)."""
    earlier = {}
    for payload in befores:
        for record in payload["records"]:
            earlier.setdefault(_key(record), record["ours"])
    current = {_key(record): record["ours"] for record in after["records"]}
    rows, variants = [], []
    for (family, name, direction), timing in current.items():
        if (family, name, direction) in earlier:
            rows.append(_row(family, name, direction, timing, earlier[family, name, direction]))
        else:
            rows.append([family, name, direction, "-", f"{timing['median_ms']:.3f}", "-", "new"])
        base = re.sub(r" \(.*\)$", "", direction)
        if base != direction and (family, name, base) in current:
            compared = _row(family, name, direction, timing, current[family, name, base])
            variants.append([*compared[:3], compared[4], base, compared[3], *compared[5:]])
    return rows, variants


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _load(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not a benchmark result ({error})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise SystemExit(f"{path}: not a benchmark result (no records)")
    return payload


_FAMILY = "|".join(FAMILY_NAMES)
# A committed run may carry its session's tag ahead of those: _session29_hopfield_quick. Other
# labels (_start, _before-...) mark runs that are no baseline and keep them out.
_SUFFIXES = re.compile(rf"(_session\d+)?(_({_FAMILY})(-({_FAMILY}))*)?(_quick)?$")


def _device_of(path: Path) -> str:
    """The device part of a result's name, without the session tag, families and ``_quick``
    it may carry: 2026-11-22_nvidia-h100_session29_hopfield_quick -> nvidia-h100."""
    return _SUFFIXES.sub("", path.stem.split("_", 1)[-1])


def _finished(path: Path) -> str:
    """When the run finished, for ordering: the payload's time where it has one (runs of
    one day share a date), else its name's date."""
    try:
        stamp = json.loads(path.read_text()).get("finished_utc")
    except (OSError, ValueError, AttributeError):
        stamp = None
    return stamp if isinstance(stamp, str) else path.name[:10]


def latest(out: Path, committed: Path = RESULTS) -> tuple[Path, list[Path]]:
    """The newest run in ``out`` and the committed runs of the same device, newest first."""
    runs = _dated(out)
    if not runs:
        raise SystemExit(f"{out}: no benchmark results (YYYY-MM-DD_<device>.json)")
    after = runs[-1]
    device = _device_of(after)
    befores = [
        p
        for p in reversed(_dated(committed))
        if _device_of(p) == device and p.resolve() != after.resolve()
    ]
    return after, befores


def _dated(folder: Path) -> list[Path]:
    """The runner's results in ``folder`` (YYYY-MM-DD_<device>[...].json), oldest first."""
    found = [p for p in folder.glob("*.json") if re.match(r"\d{4}-\d\d-\d\d_", p.name)]
    return sorted(found, key=lambda p: (_finished(p), p.name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="AFTER.json BEFORE.json [...]")
    parser.add_argument("--latest", type=Path, metavar="DIR", help="newest run in DIR")
    args = parser.parse_args(argv)
    if args.latest:
        after_path, before_paths = latest(args.latest)
    elif len(args.files) >= 2:
        after_path, before_paths = args.files[0], args.files[1:]
    else:
        parser.error("give AFTER.json and at least one BEFORE.json, or --latest DIR")
    rows, variants = compare(_load(after_path), [_load(p) for p in before_paths])
    print(f"after: {after_path}")
    print("before: " + (", ".join(str(p) for p in before_paths) or "(none)"))
    print(_table(HEADER, rows))
    if variants:
        print("\nvariants against their base direction, same run:")
        print(_table(VARIANT_HEADER, variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
