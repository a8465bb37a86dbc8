"""Tap simulation: bands (paper sec. 4.3), 5 taps per band, first click."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracenet.eval.taps import (
    first_click,
    instance_bands,
    instance_rng,
    kernel_size,
    sample_band_taps,
    simulate_taps,
)


def reference_bands(mask: np.ndarray, centroid: tuple[int, int], kernel: tuple[int, int]) -> np.ndarray:
    """Independent band labels (no cv2): k dilations of a point by an odd (2r+1) box reach the pixels with
    |dx| <= k * rx and |dy| <= k * ry; band = the first such k (1..4), else 5. ``H x W`` uint8."""
    cx, cy = centroid
    ry, rx = (kernel[0] - 1) // 2, (kernel[1] - 1) // 2
    out = np.zeros(mask.shape, np.uint8)
    for y, x in zip(*np.nonzero(mask), strict=True):
        need = 1
        for d, r in ((abs(x - cx), rx), (abs(y - cy), ry)):
            if d > 0:
                need = max(need, math.ceil(d / r) if r > 0 else 99)
        out[y, x] = min(need, 5)
    return out


def test_kernel_size_rounds_half_up_then_odd():
    assert [kernel_size(n) for n in (1, 2, 3, 5, 7, 8, 12, 13, 40, 50, 60, 63)] == [
        1,
        1,
        1,
        1,
        1,
        3,
        3,
        3,
        9,
        11,
        13,
        13,
    ]


def test_square_bands_hand_counts():
    mask = np.zeros((80, 100), bool)
    mask[10:60, 20:70] = (
        True  # 50 x 50, centroid (44.5, 34.5) -> (45, 35), kernel 11 x 11 (grows 5 px a side)
    )
    bands = instance_bands(mask)
    assert bands.centroid == (45, 35)
    assert bands.kernel == (11, 11)
    # boxes 11^2, 21^2, 31^2, 41^2 around the centroid, all inside the square; band 5 = the rest of 2500
    assert bands.counts() == [121, 441 - 121, 961 - 441, 1681 - 961, 2500 - 1681]
    full = bands.full_map(mask.shape)
    assert np.array_equal(full > 0, mask)
    assert np.all(full[30:41, 40:51] == 1)


def test_l_shape_matches_reference():
    mask = np.zeros((60, 60), bool)
    mask[5:45, 5:25] = True  # vertical bar 40 x 20 = 800 px, centre (14.5, 24.5)
    mask[25:45, 25:55] = True  # foot 20 x 30 = 600 px, centre (39.5, 34.5)
    bands = instance_bands(mask)
    # x = (800 * 14.5 + 600 * 39.5) / 1400 = 25.21 -> 25; y = (800 * 24.5 + 600 * 34.5) / 1400 = 28.79 -> 29
    assert bands.centroid == (25, 29)
    assert bands.kernel == (9, 11)  # bbox 40 rows -> 8 -> 9; 50 cols -> 10 -> 11
    ref = reference_bands(mask, bands.centroid, bands.kernel)
    assert np.array_equal(bands.full_map(mask.shape), ref)
    assert sum(bands.counts()) == 1400
    assert all(c > 0 for c in bands.counts())


def test_ring_has_empty_inner_bands_and_reports_them():
    mask = np.zeros((60, 60), bool)
    mask[5:55, 5:55] = True
    mask[10:50, 10:50] = False  # 5-pixel frame: the centroid (30, 30) is in the hole
    bands = instance_bands(mask)
    ref = reference_bands(mask, bands.centroid, bands.kernel)
    assert np.array_equal(bands.full_map(mask.shape), ref)
    counts = bands.counts()
    assert counts[:3] == [0, 0, 0]
    taps = sample_band_taps(bands, instance_rng(0, 7))
    assert taps.empty_bands == (1, 2, 3)
    assert [len(t) for t in taps.taps] == [0, 0, 0, 5, 5]


def test_taps_inside_mask_five_per_band_reproducible():
    mask = np.zeros((80, 100), bool)
    mask[10:60, 20:70] = True
    a = simulate_taps(mask, seed=0, instance_id=42)
    b = simulate_taps(mask, seed=0, instance_id=42)
    c = simulate_taps(mask, seed=1, instance_id=42)
    d = simulate_taps(mask, seed=0, instance_id=43)
    flat = a.band_taps.flat()
    assert len(flat) == 25
    full = a.bands.full_map(mask.shape)
    for band, (x, y) in flat:
        assert mask[y, x]
        assert full[y, x] == band
    for taps in a.band_taps.taps:  # bands have >= 5 pixels: drawn without replacement
        assert len(set(taps)) == 5
    assert a.band_taps == b.band_taps
    assert a.band_taps != c.band_taps
    assert a.band_taps != d.band_taps


def test_tiny_band_drawn_with_replacement():
    mask = np.zeros((10, 10), bool)
    mask[3:6, 3:6] = True  # 3 x 3: kernel 1 x 1, band 1 = the centroid pixel, bands 2-4 empty, band 5 = 8 px
    bands = instance_bands(mask)
    assert bands.counts() == [1, 0, 0, 0, 8]
    taps = sample_band_taps(bands, instance_rng(0, 1))
    assert taps.taps[0] == ((4, 4),) * 5
    assert taps.empty_bands == (2, 3, 4)


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        instance_bands(np.zeros((5, 5), bool))


def brute_force_first_click(mask: np.ndarray) -> tuple[int, int]:
    """Pixel with the largest Euclidean distance to a background pixel of the 1-pixel padded mask."""
    padded = np.pad(mask, 1)
    by, bx = np.nonzero(~padded)
    best, arg = -1.0, (0, 0)
    for y, x in zip(*np.nonzero(mask), strict=True):  # raster order: the first maximum wins
        d = float(np.min((by - (y + 1)) ** 2 + (bx - (x + 1)) ** 2))
        if d > best + 1e-9:
            best, arg = d, (int(x), int(y))
    return arg


def test_first_click_is_distance_transform_maximum():
    mask = np.zeros((20, 30), bool)
    mask[2:11, 2:11] = True  # 9 x 9 square, centre (6, 6), distance 5 to the background rows 1 / 11, cols 1
    mask[5:8, 11:26] = True  # a 3-pixel-wide tail to the right
    assert first_click(mask) == (6, 6)
    assert brute_force_first_click(mask) == (6, 6)


def test_first_click_counts_image_border_as_boundary():
    mask = np.zeros((12, 12), bool)
    mask[0:12, 0:5] = True  # touches the top, bottom and left border: the centre column x = 2 is farthest
    x, y = first_click(mask)
    assert x == 2
    assert (x, y) == brute_force_first_click(mask)


@settings(max_examples=40, deadline=None)
@given(
    rects=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 20), st.integers(1, 20)),
        min_size=1,
        max_size=3,
    ),
    seed=st.integers(0, 1000),
)
def test_bands_partition_random_masks(rects, seed):
    mask = np.zeros((50, 50), bool)
    for x, y, w, h in rects:
        mask[y : y + h, x : x + w] = True
    t = simulate_taps(mask, seed=seed, instance_id=3)
    full = t.bands.full_map(mask.shape)
    assert np.array_equal(full > 0, mask)
    assert np.array_equal(full, reference_bands(mask, t.bands.centroid, t.bands.kernel))
    assert mask[t.first_click[1], t.first_click[0]]
    for k, taps in enumerate(t.band_taps.taps, start=1):
        assert len(taps) == (0 if k in t.band_taps.empty_bands else 5)
        assert all(full[y, x] == k for x, y in taps)
    assert set(t.band_taps.empty_bands) == {k for k, c in enumerate(t.bands.counts(), start=1) if c == 0}
