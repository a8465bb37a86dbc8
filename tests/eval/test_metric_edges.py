"""Metric edges the hand case of ``test_eval_metrics`` does not reach: IoU exactly at beta, the first click's own
IoU, and mTA (exact and sampled) against a plain numpy count."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.test_eval_metrics import GT_A, GT_B, TAPS_A, TAPS_B, cell_fn, ellipse, hand_method, tapset
from tracenet.eval.instance import evaluate_instance
from tracenet.eval.methods import from_callable
from tracenet.eval.metrics import aggregate, miou_t, mta
from tracenet.eval.taps import simulate_taps


def _run(beta: float, taps_a=TAPS_A, taps_b=TAPS_B):
    method = from_callable(hand_method, "hand")
    method.set_image(np.zeros((8, 8, 3), np.uint8))
    return [evaluate_instance(method, GT_A, taps_a, beta=beta), evaluate_instance(method, GT_B, taps_b, beta=beta)]


@pytest.mark.parametrize("beta,expected", [(0.5, 24 / 24), (0.8, 12 / 24)])
def test_mta_counts_a_tap_whose_iou_equals_beta(beta, expected):
    """Guards "mTA counts IoU > beta instead of >= beta" (eq. 7 counts IoU >= beta). Hand case IoUs: A x < 2 ->
    1.0 (4 px), x >= 2 -> 0.5 (4 px); B y >= 6 -> 16 / 20 = 0.8 (8 px), y < 6 -> 0.5 (8 px). At beta 0.5 every
    pixel counts (24 / 24; with > only 12 / 24); at beta 0.8 A's 4 + B's 8 (12 / 24; with > only 4 / 24)."""
    m = aggregate(_run(beta))
    assert m["mta"] == pytest.approx(expected)


def test_first_click_iou_comes_from_the_first_click():
    """Guards "first-click IoU taken from the first band tap": A's first click is moved to (3, 0), where the hand
    method gives IoU 0.5, while A's first band tap (0, 0) gives 1.0; B's first click (4, 7) gives 0.8 while its
    first band tap (5, 5) gives 0.5. Mean first-click IoU (0.5 + 0.8) / 2 = 0.65."""
    taps_a = tapset(GT_A, [(0, 0), (1, 0), (0, 1), (1, 1)], [(2, 0), (3, 0), (2, 1), (3, 1)], ((0, 0),), ((3, 1),),
                    (3, 0))
    taps_b = tapset(GT_B, [(x, y) for y in (6, 7) for x in range(4, 8)], [(x, y) for y in (4, 5) for x in range(4, 8)],
                    ((5, 5), (6, 7)), ((7, 4),), (4, 7))
    a, b = _run(0.7, taps_a, taps_b)
    assert a.first_click_iou == pytest.approx(0.5) and b.first_click_iou == pytest.approx(0.8)
    assert aggregate([a, b])["first_click_iou"] == pytest.approx(0.65)


def _numpy_mta(gt: np.ndarray, stride: int, beta: float = 0.7) -> float:
    """mTA by brute force, written independently: every gt pixel (or those with x % S == y % S == S // 2) is
    tapped, its mask's IoU with gt computed with numpy."""
    good = total = 0
    for y, x in zip(*np.nonzero(gt)):
        if stride > 1 and not (x % stride == stride // 2 and y % stride == stride // 2):
            continue
        pred = cell_fn(np.zeros((*gt.shape, 3), np.uint8), (int(x), int(y)))
        iou = np.logical_and(pred, gt).sum() / np.logical_or(pred, gt).sum()
        good += bool(iou >= beta)
        total += 1
    return good / total


@pytest.mark.parametrize("stride", [1, 3, 4])
def test_exact_and_sampled_mta_equal_a_numpy_count(stride):
    """Guards a wrong approximate (sampled-pixel) mTA value as well as the exact one: the metric's mTA equals a
    brute-force numpy count over the same pixels, and the sampled values differ from the exact one (so the test
    can tell the two apart)."""
    gt = ellipse()
    taps = simulate_taps(gt, seed=0, instance_id=1)
    method = from_callable(cell_fn, "cells", group_key=lambda xy: (xy[0] // 4, xy[1] // 4))
    method.set_image(np.zeros((*gt.shape, 3), np.uint8))
    res = evaluate_instance(method, gt, taps, beta=0.7, mta_stride=stride)
    expected = _numpy_mta(gt, stride)
    assert aggregate([res])["mta"] == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1
    if stride > 1:
        assert expected != pytest.approx(_numpy_mta(gt, 1), abs=1e-3)


def test_single_pixel_totals_and_empty_input():
    """One pixel of union / area is already a defined ratio (a ``> 1`` guard would say None); no results at all
    give None everywhere, not NaN."""
    assert miou_t([1], [1]) == 1.0 and mta([1], [1]) == 1.0 and mta([0], [1]) == 0.0
    empty = aggregate([])
    assert empty["miou_t"] is None and empty["mta"] is None and empty["first_click_iou"] is None
    assert empty["n_instances"] == 0 and empty["per_category"] == {}


def test_aggregate_counts_and_keys_by_hand():
    """The bookkeeping fields of ``metrics.json`` on the hand case: 2 instances, 24 mask pixels all tapped for
    mTA, per-band entries numbered 1..5; an instance of unknown size gets its own group."""
    a, b = _run(0.7)
    m = aggregate([a, b])
    assert (m["n_instances"], m["mta_pixels"], m["mask_pixels"], m["n_taps"]) == (2, 24, 24, 5)
    assert [band["band"] for band in m["per_band"]] == [1, 2, 3, 4, 5]
    a.size = "unknown"
    m = aggregate([a, b])
    assert m["per_size"]["unknown"]["n"] == 1 and m["per_size"]["small"]["n"] == 0


def test_instance_result_fields_by_hand():
    """Instance A of the hand case with the defaults (beta 0.7, no meta) and with meta and the good-pixel map:
    taps are recorded as (band, x, y, |I|, |U|), per-band mTA counts, first click and origin are kept, the map
    is -1 off the mask, 1 where the tap is good (x < 2), 0 where it is not."""
    method = from_callable(hand_method, "hand")
    method.set_image(np.zeros((8, 8, 3), np.uint8))
    plain = evaluate_instance(method, GT_A, TAPS_A)
    assert plain.taps == [(1, 0, 0, 8, 8), (2, 3, 1, 4, 8)]
    assert plain.mta_good.tolist() == [4, 0, 0, 0, 0] and plain.mta_count.tolist() == [4, 4, 0, 0, 0]
    assert plain.mta_good.dtype == np.int64 and plain.mta_count.dtype == np.int64
    assert (plain.ann_id, plain.image_id, plain.category, plain.size) == (-1, -1, "", "")
    assert plain.area == 8.0 and plain.mask_area == 8 and plain.good_map is None
    assert plain.first_click == (1, 0) and plain.origin == (0, 0) and plain.n_predictions == 8  # its 8 pixels
    meta = {"ann_id": 5, "image_id": 7, "category": "cat", "size": "small", "area": 8.5}
    full = evaluate_instance(method, GT_A.astype(np.uint8), TAPS_A, meta=meta, keep_good_map=True)
    assert (full.ann_id, full.image_id, full.category, full.size, full.area) == (5, 7, "cat", "small", 8.5)
    expected_map = np.full((8, 8), -1, np.int8)
    expected_map[0:2, 0:2], expected_map[0:2, 2:4] = 1, 0
    assert np.array_equal(full.good_map, expected_map)
    skipped = evaluate_instance(method, GT_A, TAPS_A, mta_stride=None, keep_good_map=True)
    assert skipped.mta_count.tolist() == [0] * 5 and (skipped.good_map == -1).all()
