"""Simulated taps: the paper's five bands (sec. 4.3) and a first click (RITM's clicker).

Bands of an instance mask (``H x W`` bool image; its tight bounding box is ``h`` rows x ``w`` cols):

1. ``I`` is a one-pixel image at the instance centroid (mean ``(x, y)`` of the mask pixels, rounded half up to
   a pixel; it may fall outside the mask, e.g. for a ring).
2. The kernel is a rectangle of ``kernel_size(h)`` rows x ``kernel_size(w)`` cols: ``extent / 5`` rounded half
   up, at least 1, then bumped to the next odd number when even. Odd, because cv2 anchors an even kernel one
   pixel off-centre, which would shift every band towards the bottom-right. Each dilation grows the box by
   ``(k - 1) / 2`` pixels on each side (a 1 x 1 kernel never grows, so bands 2-4 are then empty).
3. ``D_k`` = ``I`` dilated ``k`` times (``cv2.dilate``). Band ``k`` = ``(D_k - D_{k-1}) & mask`` for k = 1..4
   (``D_0`` = empty) and band 5 = ``mask - D_4``: band 5 also takes every mask pixel outside the 4th ring,
   so the five bands partition the mask.
4. Five taps per band, drawn uniformly from the band's pixels with a ``numpy`` Generator seeded by
   ``(seed, instance_id)`` (reproducible per instance, independent of evaluation order); without replacement,
   except with replacement when the band has 1-4 pixels. An empty band gets no taps and is reported in
   :attr:`BandTaps.empty_bands` (the metrics count it), never dropped silently.

The first click is the mask pixel farthest from the boundary (Euclidean distance transform of the mask padded
with background, so the image border counts as boundary; ties go to the first pixel in raster order), as RITM's
clicker places its first click.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

N_BANDS = 5
TAPS_PER_BAND = 5

Tap = tuple[int, int]

__all__ = [
    "N_BANDS",
    "TAPS_PER_BAND",
    "BandTaps",
    "Bands",
    "TapSet",
    "first_click",
    "instance_bands",
    "instance_rng",
    "kernel_size",
    "sample_band_taps",
    "simulate_taps",
]


@dataclass(frozen=True)
class Bands:
    """Band labels of one instance, stored over its bounding box.

    ``band_map``: ``h x w`` uint8 over the bbox crop; 0 outside the mask, ``k`` (1..5) for band ``k``.
    ``origin``: ``(x0, y0)`` image pixel of ``band_map[0, 0]``. ``centroid``: ``(x, y)`` image pixels.
    ``kernel``: ``(rows, cols)`` of the dilation kernel.
    """

    band_map: np.ndarray
    origin: Tap
    centroid: Tap
    kernel: tuple[int, int]

    def pixels(self, band: int) -> np.ndarray:
        """``N x 2`` int array of ``(x, y)`` image pixels in ``band`` (1..5), raster order."""
        rows, cols = np.nonzero(self.band_map == band)
        return np.stack([cols + self.origin[0], rows + self.origin[1]], axis=1).astype(np.int64)

    def counts(self) -> list[int]:
        """Pixel count of bands 1..5."""
        return [int(c) for c in np.bincount(self.band_map.ravel(), minlength=N_BANDS + 1)[1:]]

    def full_map(self, shape: tuple[int, int]) -> np.ndarray:
        """Band labels as an ``H x W`` uint8 image of the given ``(H, W)``."""
        out = np.zeros(shape, np.uint8)
        h, w = self.band_map.shape
        x0, y0 = self.origin
        out[y0 : y0 + h, x0 : x0 + w] = self.band_map
        return out


@dataclass(frozen=True)
class BandTaps:
    """``taps[k - 1]``: the ``(x, y)`` taps of band ``k`` (5, or 0 when empty). ``empty_bands``: 1-based."""

    taps: tuple[tuple[Tap, ...], ...]
    empty_bands: tuple[int, ...]

    def flat(self) -> list[tuple[int, Tap]]:
        """All taps as ``(band, (x, y))``, band 1 first."""
        return [(k + 1, t) for k, taps in enumerate(self.taps) for t in taps]


@dataclass(frozen=True)
class TapSet:
    """Everything the evaluator taps on one instance."""

    bands: Bands
    band_taps: BandTaps
    first_click: Tap


def kernel_size(extent: int) -> int:
    """Side of the dilation kernel for a bbox side of ``extent`` pixels: ``extent / 5`` rounded half up,
    at least 1, then made odd (+1 when even). E.g. 3 -> 1, 8 -> 3, 50 -> 11, 60 -> 13."""
    k = max(1, int(np.floor(extent / 5 + 0.5)))
    return k if k % 2 == 1 else k + 1


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("instance mask is empty (no True pixel): nothing to tap")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def instance_bands(mask: np.ndarray) -> Bands:
    """The five bands of an instance (module docstring). ``mask``: ``H x W`` bool, at least one pixel."""
    mask = np.asarray(mask, bool)
    x0, y0, x1, y1 = _bbox(mask)
    crop = mask[y0:y1, x0:x1]
    rows, cols = np.nonzero(crop)
    cx = int(np.floor(cols.mean() + 0.5))
    cy = int(np.floor(rows.mean() + 0.5))
    kh, kw = kernel_size(y1 - y0), kernel_size(x1 - x0)
    kernel = np.ones((kh, kw), np.uint8)
    # Dilating on the bbox crop is exact: the rings are boxes around a centroid inside the crop, and
    # clipping a box to the crop commutes with dilating it (cv2 pads dilation with the minimum value).
    canvas = np.zeros(crop.shape, np.uint8)
    canvas[cy, cx] = 1
    band_map = np.zeros(crop.shape, np.uint8)
    band_map[crop] = N_BANDS
    done = np.zeros(crop.shape, bool)
    for k in range(1, N_BANDS):
        canvas = cv2.dilate(canvas, kernel)
        ring = (canvas > 0) & crop & ~done
        band_map[ring] = k
        done |= ring
    return Bands(band_map=band_map, origin=(x0, y0), centroid=(cx + x0, cy + y0), kernel=(kh, kw))


def instance_rng(seed: int, instance_id: int) -> np.random.Generator:
    """Generator seeded by ``(seed, instance_id)`` (both >= 0): same taps for an instance in every run."""
    return np.random.default_rng([int(seed), int(instance_id)])


def sample_band_taps(bands: Bands, rng: np.random.Generator, per_band: int = TAPS_PER_BAND) -> BandTaps:
    """``per_band`` taps in each band (module docstring for the replacement rule and empty bands)."""
    taps: list[tuple[Tap, ...]] = []
    empty: list[int] = []
    for band in range(1, N_BANDS + 1):
        pix = bands.pixels(band)
        if len(pix) == 0:
            empty.append(band)
            taps.append(())
            continue
        idx = rng.choice(len(pix), size=per_band, replace=len(pix) < per_band)
        taps.append(tuple((int(pix[i, 0]), int(pix[i, 1])) for i in idx))
    return BandTaps(taps=tuple(taps), empty_bands=tuple(empty))


def first_click(mask: np.ndarray) -> Tap:
    """``(x, y)`` of the mask pixel farthest from the background or image border (exact Euclidean distance
    transform; first in raster order on ties). ``mask``: ``H x W`` bool, at least one pixel."""
    mask = np.asarray(mask, bool)
    x0, y0, x1, y1 = _bbox(mask)
    padded = np.pad(mask[y0:y1, x0:x1], 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(col) + x0, int(row) + y0


def simulate_taps(mask: np.ndarray, *, seed: int, instance_id: int) -> TapSet:
    """Bands, 25 band taps and the first click of one instance (``mask``: ``H x W`` bool)."""
    bands = instance_bands(mask)
    band_taps = sample_band_taps(bands, instance_rng(seed, instance_id))
    return TapSet(bands=bands, band_taps=band_taps, first_click=first_click(mask))
