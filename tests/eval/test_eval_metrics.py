"""mIoU-T (eq. 6) and mTA (eq. 7) on a hand-computed case; grouped mTA equals brute force."""

from __future__ import annotations

import numpy as np
import pytest

from tracenet.eval.instance import evaluate_instance, mta_pixels
from tracenet.eval.methods import from_callable
from tracenet.eval.metrics import aggregate, miou_t, mta, size_of
from tracenet.eval.taps import Bands, BandTaps, TapSet, simulate_taps

H, W = 8, 8


def rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# Instance A: x in [0, 4), y in [0, 2): 8 px.   Instance B: x in [4, 8), y in [4, 8): 16 px.
GT_A, GT_B = rect(0, 0, 4, 2), rect(4, 4, 8, 8)


def hand_method(image: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """Taps on A: x < 2 -> exactly A (IoU 8/8); x >= 2 -> its right half (I 4, U 8: IoU 0.5).
    Taps on B: y < 6 -> B's top half (I 8, U 16: 0.5); y >= 6 -> B plus the row above (I 16, U 20: 0.8)."""
    x, y = xy
    if y < 4:
        return GT_A.copy() if x < 2 else rect(2, 0, 4, 2)
    return rect(4, 4, 8, 6) if y < 6 else rect(4, 3, 8, 8)


def tapset(gt: np.ndarray, band1: list, band2: list, taps1: tuple, taps2: tuple, fc: tuple) -> TapSet:
    """A hand-made TapSet: bands 1 and 2 given as pixel lists, bands 3-5 empty."""
    band_map = np.zeros((H, W), np.uint8)
    for x, y in band1:
        band_map[y, x] = 1
    for x, y in band2:
        band_map[y, x] = 2
    assert np.array_equal(band_map > 0, gt)
    bands = Bands(band_map=band_map, origin=(0, 0), centroid=(0, 0), kernel=(1, 1))
    return TapSet(
        bands=bands,
        band_taps=BandTaps(taps=(taps1, taps2, (), (), ()), empty_bands=(3, 4, 5)),
        first_click=fc,
    )


def pixels(m: np.ndarray) -> list[tuple[int, int]]:
    return [(int(x), int(y)) for y, x in zip(*np.nonzero(m), strict=True)]


# A: band 1 = x < 2 (4 px, all IoU 1), band 2 = x >= 2 (4 px, IoU 0.5). Taps (0, 0) b1, (3, 1) b2.
TAPS_A = tapset(GT_A, pixels(rect(0, 0, 2, 2)), pixels(rect(2, 0, 4, 2)), ((0, 0),), ((3, 1),), (1, 0))
# B: band 1 = y >= 6 (8 px, IoU 0.8), band 2 = y < 6 (8 px, IoU 0.5). Taps (5, 5) b1, (6, 7) b1, (7, 4) b2.
TAPS_B = tapset(GT_B, pixels(rect(4, 6, 8, 8)), pixels(rect(4, 4, 8, 6)), ((5, 5), (6, 7)), ((7, 4),), (5, 5))


def run_hand_case(beta: float = 0.7, with_key: bool = False):
    key = (lambda xy: (xy[0] < 2, xy[1] < 4, xy[1] < 6)) if with_key else None
    method = from_callable(hand_method, "hand", group_key=key)
    method.set_image(np.zeros((H, W, 3), np.uint8))
    a = evaluate_instance(
        method, GT_A, TAPS_A, beta=beta, meta={"category": "cat", "area": 8.0, "size": "small"}
    )
    b = evaluate_instance(
        method, GT_B, TAPS_B, beta=beta, meta={"category": "dog", "area": 16.0, "size": "small"}
    )
    return a, b


def test_hand_computed_intersections_and_unions():
    a, b = run_hand_case()
    assert [t[3:] for t in a.taps] == [(8, 8), (4, 8)]
    assert [t[3:] for t in b.taps] == [(8, 16), (16, 20), (8, 16)]
    assert a.first_click_iou == 1.0 and b.first_click_iou == 0.5


def test_hand_computed_aggregate():
    m = aggregate(run_hand_case())
    # eq. 6: (8 + 4 + 8 + 16 + 8) / (8 + 8 + 16 + 20 + 16) = 44 / 68
    assert m["miou_t"] == pytest.approx(44 / 68)
    # eq. 7, beta 0.7: A has 4 good pixels (x < 2), B has 8 (y >= 6): (4 + 8) / (8 + 16) = 0.5
    assert m["mta"] == pytest.approx(0.5)
    band1, band2 = m["per_band"][0], m["per_band"][1]
    assert band1["miou_t"] == pytest.approx((8 + 8 + 16) / (8 + 16 + 20))  # 32 / 44
    assert band2["miou_t"] == pytest.approx((4 + 8) / (8 + 16))  # 12 / 24
    assert band1["mta"] == pytest.approx(12 / 12) and band2["mta"] == pytest.approx(0 / 16)
    assert [b["n_taps"] for b in m["per_band"]] == [3, 2, 0, 0, 0]
    assert [b["empty_bands"] for b in m["per_band"]] == [0, 0, 2, 2, 2]
    assert m["per_band"][2]["miou_t"] is None and m["per_band"][2]["mta"] is None
    assert m["per_category"]["cat"] == {"miou_t": pytest.approx(12 / 16), "mta": pytest.approx(4 / 8), "n": 1}
    assert m["per_category"]["dog"] == {
        "miou_t": pytest.approx(32 / 52),
        "mta": pytest.approx(8 / 16),
        "n": 1,
    }
    assert m["per_size"]["small"]["n"] == 2 and m["per_size"]["large"]["miou_t"] is None
    assert m["first_click_iou"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["empty_bands"] == 6 and m["n_taps"] == 5


def test_beta_changes_mta():
    m = aggregate(run_hand_case(beta=0.9))  # B's 0.8 taps no longer count: 4 / 24
    assert m["mta"] == pytest.approx(4 / 24)


def test_grouped_hand_case_same_numbers_fewer_predictions():
    plain, keyed = aggregate(run_hand_case()), aggregate(run_hand_case(with_key=True))
    assert keyed["miou_t"] == plain["miou_t"] and keyed["mta"] == plain["mta"]
    assert keyed["n_predictions"] == 4 < plain["n_predictions"]  # 2 groups per instance


def test_formulas_pool_rather_than_average():
    assert miou_t([1, 90], [10, 100]) == pytest.approx(91 / 110)  # not (0.1 + 0.9) / 2
    assert mta([1, 0], [1, 99]) == pytest.approx(1 / 100)
    assert miou_t([], []) is None and mta([], []) is None
    assert [size_of(a) for a in (1023.9, 1024, 9215.9, 9216)] == ["small", "medium", "medium", "large"]


# --- grouped mTA == brute force on a small case ------------------------------------------------------------


def cell_fn(image: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """A mask that only depends on the 4 x 4 cell of the tap: a box around the ellipse, shifted by the cell."""
    cx, cy = xy[0] // 4, xy[1] // 4
    m = np.zeros(image.shape[:2], bool)
    m[10 + cy % 3 : 30 + cy % 3, 8 + cx % 5 * 2 : 40 + cx % 5] = True
    return m


def ellipse(h: int = 40, w: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((xx - 24) / 15) ** 2 + ((yy - 20) / 10) ** 2 <= 1


def test_grouped_mta_equals_brute_force():
    gt = ellipse()
    tapset = simulate_taps(gt, seed=0, instance_id=1)
    image = np.zeros((*gt.shape, 3), np.uint8)
    calls = {"n": 0}

    def counted(image, xy):
        calls["n"] += 1
        return cell_fn(image, xy)

    brute = from_callable(counted, "brute")
    grouped = from_callable(counted, "grouped", group_key=lambda xy: (xy[0] // 4, xy[1] // 4))
    results = []
    for method in (brute, grouped):
        method.set_image(image)
        calls["n"] = 0
        results.append(evaluate_instance(method, gt, tapset, beta=0.7))
        assert calls["n"] == results[-1].n_predictions
    b, g = results
    assert int(b.mta_count.sum()) == int(gt.sum())
    assert 0 < int(b.mta_good.sum()) < int(gt.sum())  # a non-trivial case
    assert np.array_equal(b.mta_good, g.mta_good) and np.array_equal(b.mta_count, g.mta_count)
    assert b.taps == g.taps and b.first_click_iou == g.first_click_iou
    n_cells = len({(x // 4, y // 4) for y, x in zip(*np.nonzero(gt), strict=True)})
    assert g.n_predictions == n_cells < b.n_predictions

    # a key that lies (8 x 8 cells, but masks change every 4 px) gives another number: the check can fail
    liar = from_callable(cell_fn, "liar", group_key=lambda xy: (xy[0] // 8, xy[1] // 8))
    liar.set_image(image)
    assert not np.array_equal(evaluate_instance(liar, gt, tapset).mta_good, b.mta_good)


def test_stride_samples_the_image_grid():
    gt = ellipse()
    tapset = simulate_taps(gt, seed=0, instance_id=1)
    xy, band = mta_pixels(tapset, 4)
    expect = {(x, y) for y, x in zip(*np.nonzero(gt), strict=True) if x % 4 == 2 and y % 4 == 2}
    assert {(int(x), int(y)) for x, y in xy} == expect
    assert np.all(band >= 1) and np.all(band <= 5)
    method = from_callable(cell_fn, "cells")
    method.set_image(np.zeros((*gt.shape, 3), np.uint8))
    res = evaluate_instance(method, gt, tapset, mta_stride=4)
    assert int(res.mta_count.sum()) == len(expect)
    skipped = evaluate_instance(method, gt, tapset, mta_stride=None)
    assert int(skipped.mta_count.sum()) == 0 and skipped.n_predictions <= 26
    with pytest.raises(ValueError, match="stride"):
        mta_pixels(tapset, 0)
