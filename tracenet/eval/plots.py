"""PNG figures (matplotlib, Agg backend, no display needed).

- :func:`plot_band_curves`: mIoU-T and mTA vs band 1..5, one line per run (paper fig. 5).
- :func:`plot_qualitative`: per instance, the image, its ground truth and the predictions at a few taps
  (first click, bands 1 / 3 / 5), tap marked, IoU in the title (paper fig. 6).
- :func:`plot_clickable`: per instance, every tapped pixel painted by whether a tap there gives IoU >= beta
  (blue) or not (red) (paper fig. 1(b)); with an mTA stride S each sampled pixel paints its S x S cell.
- :func:`plot_first_click`: the share of instances whose first-click IoU reaches each threshold (0.85 and 0.90
  marked), one line per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tracenet.eval.evaluate import Showcase

__all__ = ["plot_band_curves", "plot_clickable", "plot_first_click", "plot_qualitative"]

_GT = np.array([0.1, 0.9, 0.2])
_PRED = np.array([0.0, 0.85, 1.0])  # cyan: stands out on the warm colours common in photos
_GOOD = np.array([0.1, 0.35, 1.0])
_BAD = np.array([1.0, 0.15, 0.1])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _overlay(image: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``h x w x 3`` float RGB in [0, 1]: ``image`` with ``mask`` (``h x w`` bool) tinted by ``color``."""
    out = image.astype(np.float32) / 255.0
    out[mask] = (1 - alpha) * out[mask] + alpha * color
    return out


def plot_band_curves(runs: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Two panels, mIoU-T and mTA vs band; one line per ``metrics.json`` dict in ``runs`` (label: method,
    plus ``label`` when a run dict has one). Approximate mTA runs are marked "(approx.)" in the legend."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for run in runs:
        bands = [b["band"] for b in run["per_band"]]
        label = run.get("label") or run.get("method", "?")
        approx = run.get("approximate", {}).get("mta", False)
        for ax, key in zip(axes, ("miou_t", "mta"), strict=True):
            ys = [np.nan if b[key] is None else b[key] for b in run["per_band"]]
            text = f"{label} (approx.)" if key == "mta" and approx else label
            ax.plot(bands, ys, marker="o", label=text)
    for ax, title in zip(axes, ("mIoU-T", "mTA"), strict=True):
        ax.set_title(f"{title} per band")
        ax.set_xlabel("band (1 = instance centre)")
        ax.set_xticks(range(1, 6))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _empty_figure(path: Path, text: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_qualitative(showcases: Sequence[Showcase], path: str | Path) -> Path:
    """Grid: one row per instance; columns image, ground truth, prediction at each showcased tap (prediction
    tinted cyan, the ground truth's outline in white, the tap as a red star)."""
    path = Path(path)
    if not showcases:
        return _empty_figure(path, "no instance with area >= 32^2 to show")
    plt = _pyplot()
    ncols = 2 + max(len(s.taps) for s in showcases)
    fig, axes = plt.subplots(
        len(showcases), ncols, figsize=(2.2 * ncols, 2.2 * len(showcases)), squeeze=False
    )
    for row, sc in zip(axes, showcases, strict=True):
        for ax in row:
            ax.axis("off")
        row[0].imshow(sc.image)
        row[0].set_title(sc.title, fontsize=8)
        row[1].imshow(_overlay(sc.image, sc.gt, _GT))
        row[1].set_title("ground truth", fontsize=8)
        for ax, (label, (x, y), pred, iou) in zip(row[2:], sc.taps, strict=False):
            ax.imshow(_overlay(sc.image, pred, _PRED))
            if sc.gt.any():
                ax.contour(sc.gt.astype(np.float32), levels=[0.5], colors="white", linewidths=0.8)
            ax.plot([x], [y], marker="*", color="red", markersize=10, markeredgecolor="white")
            ax.set_title(f"{label}: IoU {iou:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _paint_cells(good_map: np.ndarray, stride: int) -> np.ndarray:
    """``good_map`` (-1/0/1) with each sampled pixel grown to its ``stride x stride`` cell."""
    if stride <= 1:
        return good_map
    out = np.full_like(good_map, -1)
    rows, cols = np.nonzero(good_map >= 0)
    half = stride // 2
    for r, c in zip(rows, cols, strict=True):
        out[max(0, r - half) : r - half + stride, max(0, c - half) : c - half + stride] = good_map[r, c]
    return out


def plot_clickable(showcases: Sequence[Showcase], path: str | Path, beta: float) -> Path:
    """Clickable-region maps: instance pixels whose tap gives IoU >= ``beta`` in blue, the others in red."""
    path = Path(path)
    if not showcases:
        return _empty_figure(path, "no instance with area >= 32^2 to show")
    plt = _pyplot()
    n = len(showcases)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.2), squeeze=False)
    for ax, sc in zip(axes[0], showcases, strict=True):
        painted = _paint_cells(sc.good_map, sc.stride) if sc.stride else sc.good_map
        inside = sc.gt
        img = _overlay(sc.image, inside & (painted == 1), _GOOD, alpha=0.6)
        bad = inside & (painted == 0)
        img[bad] = 0.4 * img[bad] + 0.6 * _BAD
        ax.imshow(img)
        ax.contour(sc.gt.astype(np.float32), levels=[0.5], colors="white", linewidths=0.8)
        mta = "n/a" if sc.mta is None else f"{sc.mta:.2f}"
        approx = f", stride {sc.stride}" if sc.stride > 1 else ""
        ax.set_title(f"{sc.title}\nmTA {mta} (IoU >= {beta}{approx})", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_first_click(runs: Sequence[tuple[str, Sequence[float]]], path: str | Path) -> Path:
    """Share of instances with first-click IoU >= t against t in [0, 1], one line per ``(label, IoUs)`` in
    ``runs``; dotted lines at 0.85 and 0.90 (NoC@85 / NoC@90 thresholds), each run's shares there in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ts = np.linspace(0, 1, 201)
    for label, ious in runs:
        v = np.asarray(ious, np.float64)
        if v.size == 0:
            continue
        shares = [(v >= t).mean() for t in ts]
        at = ", ".join(f">={t:.2f}: {(v >= t).mean():.2f}" for t in (0.85, 0.90))
        ax.plot(ts, shares, label=f"{label} (mean {v.mean():.3f}; {at})")
    for t in (0.85, 0.90):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("first-click IoU threshold t")
    ax.set_ylabel("share of objects with IoU >= t")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("first click (object pixel farthest from the boundary)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
