"""Hopfield capacity: how many random patterns a network of n neurons keeps.

    python benchmarks/hopfield_capacity.py [--quick] [--device cpu|gpu] [--out DIR]

For n in {100, 200, 500, 1000} (and 2000, 4000 on a GPU) and load p/n from 0.02 to 0.30, it
stores p random patterns with Hebb's and with Storkey's rule and measures
- stable: the fraction of stored patterns that are fixed points (one synchronous step, i.e.
  every neuron's field agrees with its state);
- recalled: the fraction recovered exactly by asynchronous recall from copies with 10% of
  their neurons flipped.
The plot marks n / (4 ln n) (all patterns recalled with probability -> 1 below it) and
0.138 n (Hebb's capacity for recall with a few errors allowed). Writes
hopfield_capacity.json, .md and .png (with matplotlib) under --out.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

import gpucnn  # noqa: E402
from benchmarks.harness import markdown_table, write_results  # noqa: E402
from gpucnn._checks import cli_int_at_least  # noqa: E402
from gpucnn.hopfield import HopfieldNetwork, random_patterns  # noqa: E402

LOADS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.20, 0.25, 0.30)
NOISE = 0.10


def measure(n: int, load: float, rule: str, trials: int, seed: int) -> dict:
    p = max(1, round(load * n))
    stable = recalled = 0
    for trial in range(trials):
        rng_seed = seed + 1000 * trial
        patterns = random_patterns(p, n, seed=rng_seed)
        net = HopfieldNetwork(n, dtype=np.float64)
        device_patterns = gpucnn.to_device(patterns)
        net.store(device_patterns, rule=rule)
        stable += int(
            gpucnn.to_numpy((net.step_sync(device_patterns) == device_patterns).all(axis=1)).sum()
        )
        noisy = patterns.copy()
        noisy[np.random.default_rng(rng_seed + 1).random(noisy.shape) < NOISE] *= -1
        result = net.recall(gpucnn.to_device(noisy), max_sweeps=50)
        recalled += int((gpucnn.to_numpy(result.states) == patterns).all(axis=1).sum())
    return {
        "n": n,
        "p": p,
        "load": p / n,
        "rule": rule,
        "trials": trials,
        "stable": stable / (p * trials),
        "recalled": recalled / (p * trials),
    }


def plot(records, sizes, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(
        2, len(sizes), figsize=(3.2 * len(sizes), 5.6), sharey=True, squeeze=False
    )
    for column, n in enumerate(sizes):
        for row, measure_name in enumerate(("stable", "recalled")):
            ax = axes[row][column]
            for rule, style in (("hebb", "o-"), ("storkey", "s--")):
                points = [r for r in records if r["n"] == n and r["rule"] == rule]
                ax.plot(
                    [r["load"] for r in points],
                    [r[measure_name] for r in points],
                    style,
                    label=rule,
                    markersize=3,
                )
            ax.axvline(1 / (4 * math.log(n)), color="grey", linestyle=":", label="n / (4 ln n)")
            ax.axvline(0.138, color="black", linestyle="-.", linewidth=0.8, label="0.138 n")
            ax.set_title(f"n = {n}: {measure_name}", fontsize=9)
            ax.set_xlabel("p / n")
            if column == 0:
                ax.set_ylabel("fraction of patterns")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 100, 200 and one trial")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--trials", type=cli_int_at_least(1), default=None)
    parser.add_argument("--seed", type=cli_int_at_least(0), default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    gpucnn.set_device(args.device)
    sizes = [100, 200] if args.quick else [100, 200, 500, 1000]
    if args.device == "gpu" and not args.quick:
        sizes += [2000, 4000]
    records, rows = [], []
    started = time.perf_counter()
    for n in sizes:
        trials = (
            args.trials if args.trials is not None else (1 if args.quick else max(2, 2000 // n))
        )
        for load in LOADS:
            for rule in ("hebb", "storkey"):
                record = measure(n, load, rule, trials, args.seed)
                records.append(record)
                rows.append(
                    [
                        n,
                        record["p"],
                        f"{record['load']:.2f}",
                        rule,
                        f"{record['stable']:.3f}",
                        f"{record['recalled']:.3f}",
                    ]
                )
                print(" | ".join(map(str, rows[-1])), flush=True)
    table = markdown_table(["n", "p", "p/n", "rule", "stable", "recalled (10% noise)"], rows)
    stem = "hopfield_capacity" + ("_quick" if args.quick else "")
    payload = {
        "device": args.device,
        "noise": NOISE,
        "seconds": time.perf_counter() - started,
        "marks": {
            str(n): {"n_over_4_ln_n": n / (4 * math.log(n)), "0.138n": 0.138 * n} for n in sizes
        },
        "records": records,
    }
    path = write_results(stem, payload, table, args.out)
    if plot(records, sizes, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
