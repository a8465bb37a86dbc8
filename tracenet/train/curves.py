"""Training curves from a run's ``metrics.jsonl``: window means, the learning-rate steps, a table and a plot.

``metrics.jsonl`` (written by the trainer) has one JSON object per logging interval: ``step`` (int, the
iteration count at the end of the interval), ``lr``, ``loss`` and its parts ``loss_cls``, ``loss_box``,
``loss_ctr``, ``loss_mask`` (means over the interval), ``s_per_iter``; a run trained with an evaluation hook also
has ``{"step": ..., "eval": {...}}`` rows (see ``Trainer.evaluate``), which are not training curves.

    python -m tracenet.train.curves training/long-lite0 training/lite0-cpu --out loss.png --window 500 --table

plots the total loss and each part against the iteration (one line per run, window means, the learning-rate
steps as dotted lines) and with ``--table`` prints the window means as Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOSS_KEYS", "WindowMeans", "lr_steps", "main", "markdown_table", "plot_curves", "read_metrics",
           "window_means"]

LOSS_KEYS: tuple[str, ...] = ("loss", "loss_cls", "loss_box", "loss_ctr", "loss_mask")


def read_metrics(path: str | Path) -> list[dict]:
    """The training rows of a ``metrics.jsonl`` (or of ``RUN/metrics.jsonl`` for a run folder), in file order.

    Blank lines and evaluation rows (those with an ``"eval"`` key) are skipped; a line that is not a JSON object with an integer ``step`` is a ``ValueError`` naming
    the file and line number."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{path}, line {number}: expected an object with an integer 'step'")
        if "eval" not in row:
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no metric rows")
    return rows


@dataclass(frozen=True)
class WindowMeans:
    """Means of ``keys`` over consecutive windows of ``window`` iterations: window ``i`` holds the rows with
    ``i * window < step <= (i + 1) * window``; ``ends[i]`` is ``(i + 1) * window`` (the window's last iteration),
    ``values[key][i]`` the mean of that key over the window's rows. Windows without rows are left out."""

    window: int
    ends: tuple[int, ...]
    values: dict[str, tuple[float, ...]]


def window_means(rows: list[dict], window: int, keys: tuple[str, ...] = LOSS_KEYS) -> WindowMeans:
    """Window means of ``keys`` (every row must have them) over ``window`` iterations; see :class:`WindowMeans`."""
    if window < 1:
        raise ValueError(f"window must be >= 1 iteration, got {window}")
    sums: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for row in rows:
        index = (row["step"] - 1) // window
        acc = sums.setdefault(index, [0.0] * len(keys))
        for j, key in enumerate(keys):
            if key not in row:
                raise ValueError(f"the row of step {row['step']} has no {key!r}")
            acc[j] += float(row[key])
        counts[index] = counts.get(index, 0) + 1
    order = sorted(sums)
    return WindowMeans(
        window=window,
        ends=tuple((i + 1) * window for i in order),
        values={key: tuple(sums[i][j] / counts[i] for i in order) for j, key in enumerate(keys)},
    )


def lr_steps(rows: list[dict], factor: float = 0.5) -> list[int]:
    """Steps of the rows whose ``lr`` is at most ``factor`` times the previous row's (the schedule's decays;
    warm-up, which raises the rate, and small cosine-like changes are not steps)."""
    found = []
    for before, after in zip(rows, rows[1:]):
        if after["lr"] <= factor * before["lr"]:
            found.append(after["step"])
    return found


def markdown_table(means: WindowMeans, keys: tuple[str, ...] = LOSS_KEYS) -> str:
    """One row per window: its iteration range and the mean of each key (3 decimals)."""
    lines = ["| iterations | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for i, end in enumerate(means.ends):
        cells = " | ".join(f"{means.values[key][i]:.3f}" for key in keys)
        lines.append(f"| {end - means.window + 1}-{end} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: dict[str, list[dict]], path: str | Path, window: int = 250) -> Path:
    """A PNG with one panel per loss key (total, then its parts): window means against the iteration, one line per
    run (``runs``: label -> rows), each run's learning-rate steps as dotted vertical lines of its colour."""
    from tracenet.eval.plots import _pyplot

    plt = _pyplot()
    cols = 3
    rows_n = math.ceil(len(LOSS_KEYS) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for (label, rows), colour in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        means = window_means(rows, window)
        drops = lr_steps(rows)
        for ax, key in zip(axes.flat, LOSS_KEYS):
            ax.plot(means.ends, means.values[key], marker=".", color=colour, label=label)
            for step in drops:
                ax.axvline(step, color=colour, linestyle=":", linewidth=1)
    for ax, key in zip(axes.flat, LOSS_KEYS):
        ax.set_title(f"{key} (mean over {window} iterations)", fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(LOSS_KEYS):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m tracenet.train.curves RUN [RUN ...] --out PNG [--window N] [--table]``; exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m tracenet.train.curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (or metrics.jsonl files); the label is the folder name")
    parser.add_argument("--out", help="PNG to write")
    parser.add_argument("--window", type=int, default=250, help="iterations per mean (default 250)")
    parser.add_argument("--table", action="store_true", help="print each run's window means as Markdown")
    args = parser.parse_args(argv)
    try:
        runs = {}
        for run in args.runs:
            path = Path(run)
            label = (path if path.is_dir() else path.parent).resolve().name
            runs[label] = read_metrics(path)
        if args.table:
            for label, rows in runs.items():
                print(f"{label} (learning-rate steps at {lr_steps(rows) or 'none'}):\n")
                print(markdown_table(window_means(rows, args.window)))
        if args.out:
            print(f"wrote {plot_curves(runs, args.out, args.window)}")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
