"""The Hopfield demonstration: the classic experiment of 8 figures of 12x10 pixels, stored in a
network of 120 neurons and recalled from copies with 25% of their pixels flipped.

The figures are the bundled handwritten digits 0-7 (the mean image of each class, resized to
12x10). Digits look alike, and Hebb's rule degrades quickly with correlated patterns, so each
figure is binarised after subtracting the pixel-wise mean of the eight: this keeps what tells
them apart (measured: the largest overlap between two figures drops from 0.70 to 0.57).
"""

from __future__ import annotations

import numpy as np

from ._checks import make_rng
from ._device import get_device, to_device, to_numpy
from .hopfield import HopfieldNetwork

ROWS, COLS = 12, 10


def _resize(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resize of a 2-D image."""
    row_points = np.linspace(0, image.shape[0] - 1, rows)
    col_points = np.linspace(0, image.shape[1] - 1, cols)
    across = np.array([np.interp(col_points, np.arange(image.shape[1]), row) for row in image])
    return np.array(
        [np.interp(row_points, np.arange(image.shape[0]), column) for column in across.T]
    ).T


def digit_figures(count: int = 8, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """(count, rows * cols) figures of +1 (ink) / -1 from the digits 0..count-1."""
    from .data import load_digits

    images, labels = load_digits()
    means = np.array(
        [_resize(images[labels == digit, 0].mean(axis=0), rows, cols) for digit in range(count)]
    )
    centred = means - means.mean(axis=0)
    return np.where(centred > 0, 1.0, -1.0).reshape(count, rows * cols).astype(np.float32)


def flip_pixels(figures: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Copies of ``figures`` with exactly round(fraction * n) pixels flipped in each."""
    noisy = figures.copy()
    flips = round(fraction * figures.shape[1])
    for row in noisy:
        row[rng.choice(len(row), flips, replace=False)] *= -1
    return noisy


def render_text(rows_of_figures, titles, rows: int = ROWS, cols: int = COLS) -> str:
    """Figures side by side as text: '#' for +1, '.' for -1; one line of figures per entry."""
    lines = []
    for title, figures in zip(titles, rows_of_figures, strict=True):
        lines.append(title)
        grids = [np.asarray(f).reshape(rows, cols) for f in figures]
        for r in range(rows):
            lines.append("  ".join("".join("#" if v > 0 else "." for v in g[r]) for g in grids))
        lines.append("")
    return "\n".join(lines)


def save_png(path, rows_of_figures, titles, rows: int = ROWS, cols: int = COLS) -> bool:
    """Draw the figures with matplotlib (if installed) into ``path``; False without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    count = len(rows_of_figures[0])
    fig, axes = plt.subplots(
        len(rows_of_figures),
        count,
        figsize=(1.2 * count, 1.6 * len(rows_of_figures)),
        squeeze=False,
    )
    for r, (title, figures) in enumerate(zip(titles, rows_of_figures, strict=True)):
        for c, figure in enumerate(figures):
            ax = axes[r][c]
            ax.imshow(np.asarray(figure).reshape(rows, cols), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def hopfield_demo(
    rule: str = "hebb", noise: float = 0.25, trials: int = 50, seed: int = 0, png=None
) -> dict:
    """Store the 8 figures with ``rule``, recall each from ``trials`` noisy copies (async,
    cyclic), print the first trial as text (and as a PNG when ``png`` is a path and matplotlib
    is installed) and the fraction recalled exactly. Returns the numbers."""
    figures = digit_figures()
    net = HopfieldNetwork(figures.shape[1])
    net.store(to_device(figures, net.device), rule=rule)
    stable = to_numpy(
        net.step_sync(to_device(figures, net.device)) == to_device(figures, net.device)
    )
    rng = make_rng(seed)
    noisy = np.concatenate([flip_pixels(figures, noise, rng) for _ in range(trials)])
    result = net.recall(to_device(noisy, net.device))
    recalled = to_numpy(result.states)
    exact = (recalled == np.tile(figures, (trials, 1))).all(axis=1)
    shown = [figures, noisy[: len(figures)], recalled[: len(figures)]]
    titles = ["stored", f"{noise:.0%} flipped", "recalled"]
    print(
        f"Hopfield network: {figures.shape[1]} neurons, 8 figures of {ROWS}x{COLS}, "
        f"{rule} rule, device {get_device()}"
    )
    print(f"{int(stable.all(axis=1).sum())} of 8 stored figures are stable states\n")
    print(render_text(shown, titles))
    print(
        f"recalled exactly: {exact.mean():.1%} of {len(exact)} noisy copies "
        f"({trials} trials x 8 figures); converged {float(to_numpy(result.converged).mean()):.0%}"
    )
    drawn = bool(png) and save_png(png, shown, titles)
    if png and drawn:
        print(f"picture written to {png}")
    elif png:
        print("no picture: matplotlib is not installed (pip install 'gpucnn[plot]')")
    return {
        "stable": int(stable.all(axis=1).sum()),
        "recalled": float(exact.mean()),
        "picture": str(png) if drawn else None,
    }
