"""Per-instance evaluation edges that mutation testing found unguarded (docs/MUTATION.md): a band map stored over
a bounding box that does not start at (0, 0), ignored pixels, the ``instances.jsonl`` record and its reading back,
and the ``group_key`` spot check. Expected values by hand, on the 8 x 8 hand case of ``test_eval_metrics``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.test_eval_metrics import GT_A, GT_B, hand_method, rect
from tracenet.eval.instance import InstanceResult, check_group_key, evaluate_instance, iou_counts
from tracenet.eval.methods import from_callable
from tracenet.eval.metrics import aggregate
from tracenet.eval.taps import Bands, BandTaps, TapSet

# Instance B (x, y in [4, 8)) with its band map stored over its bbox only: origin (4, 4), 4 x 4 cells. Band 1 =
# rows y >= 6 (the hand method gives IoU 0.8 there), band 2 = y < 6 (IoU 0.5). Taps (6, 7) in band 1, (7, 4) in
# band 2, first click (5, 6) (IoU 0.8).
_B_MAP = np.array([[2] * 4, [2] * 4, [1] * 4, [1] * 4], np.uint8)
TAPS_B_CROP = TapSet(
    bands=Bands(band_map=_B_MAP, origin=(4, 4), centroid=(5, 5), kernel=(1, 1)),
    band_taps=BandTaps(taps=(((6, 7),), ((7, 4),), (), (), ()), empty_bands=(3, 4, 5)),
    first_click=(5, 6),
)


def _hand():
    method = from_callable(hand_method, "hand")
    method.set_image(np.zeros((8, 8, 3), np.uint8))
    return method


def test_band_map_over_a_bbox_away_from_the_origin():
    """Guards the good-pixel map and the mTA pixels of a band map whose ``origin`` is not (0, 0) (``+ y0`` for
    ``- y0``, the origin dropped): B's 16 pixels are tapped at their image coordinates, rows y >= 6 are good
    (IoU 0.8 >= 0.7), rows y < 6 are not (0.5); the map is stored over the bbox like the band map."""
    res = evaluate_instance(_hand(), GT_B, TAPS_B_CROP, beta=0.7, keep_good_map=True, meta={"file": "b/c.png"})
    assert res.taps == [(1, 6, 7, 16, 20), (2, 7, 4, 8, 16)] and res.file == "b/c.png"
    assert res.mta_good.tolist() == [8, 0, 0, 0, 0] and res.mta_count.tolist() == [8, 8, 0, 0, 0]
    assert res.first_click_iou == pytest.approx(0.8) and res.origin == (4, 4)
    assert res.good_map.tolist() == [[0] * 4, [0] * 4, [1] * 4, [1] * 4] and res.good_map.dtype == np.int8
    sampled = evaluate_instance(_hand(), GT_B, TAPS_B_CROP, beta=0.7, mta_stride=2, keep_good_map=True)
    assert sampled.file == ""
    # stride 2: image pixels with x % 2 == y % 2 == 1: (5, 5), (7, 5) in band 2; (5, 7), (7, 7) in band 1
    assert sampled.mta_count.tolist() == [2, 2, 0, 0, 0] and sampled.mta_good.tolist() == [2, 0, 0, 0, 0]
    assert sampled.good_map.tolist() == [[-1] * 4, [-1, 0, -1, 0], [-1] * 4, [-1, 1, -1, 1]]


def test_ignored_pixels_leave_every_iou():
    """Guards ``ignore``: a prediction's pixels on ignored ground cost nothing. ``iou_counts``: B's top half
    (x 4-7, y 4-5) against A counts 0 / 16, with those 8 pixels ignored 0 / 8. ``evaluate_instance`` on B: taps
    with y >= 6 predict B plus the row above (I 16, U 20); with that row (y = 3, x 4-7, outside B) ignored the
    union is 16, so at beta 0.9 band 1's 8 pixels become good (IoU 1); the same with both masks given as float
    0 / 1 arrays. An ignore mask touching the ground truth or of another shape is refused."""
    assert iou_counts(rect(4, 4, 8, 6), GT_A) == (0, 16)
    assert iou_counts(rect(4, 4, 8, 6), GT_A, ignore=rect(4, 4, 8, 6)) == (0, 8)
    plain = evaluate_instance(_hand(), GT_B, TAPS_B_CROP, beta=0.9)
    assert plain.taps == [(1, 6, 7, 16, 20), (2, 7, 4, 8, 16)] and plain.ignore_pixels == 0
    assert plain.mta_good.tolist() == [0] * 5
    res = evaluate_instance(_hand(), GT_B, TAPS_B_CROP, beta=0.9, ignore=rect(4, 3, 8, 4))
    assert res.taps == [(1, 6, 7, 16, 16), (2, 7, 4, 8, 16)] and res.ignore_pixels == 4
    assert res.first_click_iou == 1.0 and res.mta_good.tolist() == [8, 0, 0, 0, 0]
    as_float = evaluate_instance(_hand(), GT_B.astype(np.float32), TAPS_B_CROP, beta=0.9,
                                 ignore=rect(4, 3, 8, 4).astype(np.float64))  # 0 / 1 masks of another dtype
    assert as_float.taps == res.taps and as_float.ignore_pixels == 4
    with pytest.raises(ValueError, match="must have the ground truth's shape .* and no pixel in common with it$"):
        evaluate_instance(_hand(), GT_B, TAPS_B_CROP, ignore=rect(4, 3, 8, 5))
    with pytest.raises(ValueError, match=r"ignore mask \(8, 7\) must have the ground truth's shape \(8, 8\)"):
        evaluate_instance(_hand(), GT_B, TAPS_B_CROP, ignore=np.zeros((8, 7), bool))


def _result() -> InstanceResult:
    return InstanceResult(
        ann_id=5, image_id=7, category="cat", size="small", area=8.5, mask_area=8,
        taps=[(1, 0, 0, 8, 8), (2, 3, 1, 4, 8)], empty_bands=(3, 4, 5), first_click=(1, 0), first_click_iou=1.0,
        mta_good=np.array([4, 0, 0, 0, 0]), mta_count=np.array([4, 4, 0, 0, 0]), n_predictions=8,
        file="a/b.jpg", ignore_pixels=3,
    )


EXPECTED_ROW = {
    "ann_id": 5, "image_id": 7, "file": "a/b.jpg", "category": "cat", "size": "small", "area": 8.5,
    "mask_area": 8, "miou_t": 12 / 16, "mta": 4 / 8, "mta_pixels": 8, "mta_good": [4, 0, 0, 0, 0],
    "mta_count": [4, 4, 0, 0, 0], "ignore_pixels": 3, "first_click": [1, 0], "first_click_iou": 1.0,
    "empty_bands": [3, 4, 5], "n_predictions": 8, "taps": [[1, 0, 0, 8, 8], [2, 3, 1, 4, 8]],
}


def test_instance_record_by_hand_and_read_back():
    """Guards ``InstanceResult.to_json`` / ``from_json`` (the lines of ``instances.jsonl`` that ``--resume`` and
    ``eval merge`` read): every field by hand, mIoU-T (8 + 4) / (8 + 8), mTA 4 / 8; the row read back has the
    same fields with their types; rows of older runs without ``file`` / ``ignore_pixels`` read as "" / 0; an
    instance without taps or mTA pixels has None ratios."""
    row = _result().to_json()
    assert row == EXPECTED_ROW and list(row) == list(EXPECTED_ROW)
    back = InstanceResult.from_json(EXPECTED_ROW)
    for name in ("ann_id", "image_id", "category", "size", "area", "mask_area", "empty_bands", "first_click",
                 "first_click_iou", "n_predictions", "file", "ignore_pixels"):
        assert getattr(back, name) == getattr(_result(), name), name
    assert back.taps == [(1, 0, 0, 8, 8), (2, 3, 1, 4, 8)] and isinstance(back.taps[0], tuple)
    assert back.mta_good.tolist() == [4, 0, 0, 0, 0] and back.mta_good.dtype == np.int64
    assert back.mta_count.tolist() == [4, 4, 0, 0, 0] and back.mta_count.dtype == np.int64
    assert back.good_map is None and back.origin == (0, 0)
    old = {k: v for k, v in EXPECTED_ROW.items() if k not in ("file", "ignore_pixels")}
    assert (InstanceResult.from_json(old).file, InstanceResult.from_json(old).ignore_pixels) == ("", 0)
    empty = _result()
    empty.taps, empty.mta_count = [], np.zeros(5, np.int64)
    assert empty.to_json()["miou_t"] is None and empty.to_json()["mta"] is None


def _pixel_mask(image: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """A mask of the tapped pixel only: any two taps give different masks."""
    m = np.zeros(image.shape[:2], bool)
    m[xy[1], xy[0]] = True
    return m


# a 10 x 3 instance (x in [0, 10), y in [0, 3)) on a 16 x 16 image, one band over the whole bbox
_WIDE = TapSet(
    bands=Bands(band_map=np.ones((3, 10), np.uint8), origin=(0, 0), centroid=(5, 1), kernel=(1, 1)),
    band_taps=BandTaps(taps=(((5, 1),), (), (), (), ()), empty_bands=(2, 3, 4, 5)),
    first_click=(5, 1),
)


def _check(group_key, n=3, seed=0, tapset=_WIDE, shape=(16, 16)):
    """``check_group_key`` with a pixel-mask method (``n=None``: the default n); also the taps it predicted."""
    taps = []

    def fn(image, xy):
        taps.append(xy)
        return _pixel_mask(image, xy)

    method = from_callable(fn, "pixel", group_key=group_key)
    method.set_image(np.zeros((*shape, 3), np.uint8))
    kwargs = {} if n is None else {"n": n}
    return check_group_key(method, tapset, shape, np.random.default_rng(seed), **kwargs), taps


def test_group_key_check_finds_a_lying_key_and_passes_an_honest_one():
    """Guards ``check_group_key``: a key that puts every pixel in one group is wrong for a method whose mask is
    the tapped pixel (all n pairs differ); the tap itself as key has no partner (0 pairs); ``n = 0`` and a
    method without a key check nothing; n larger than the 30 pixels checks each pixel once. Partners are drawn
    inside the bbox and within 7 px: under the key ``x % 8`` (partners 8 apart) no pair is formed."""
    (checked, mismatched), taps = _check(lambda xy: 0, n=3)
    assert (checked, mismatched) == (3, 3) and len(taps) == 6
    for (x, y), (mx, my) in zip(taps[0::2], taps[1::2], strict=True):
        assert 0 <= mx < 10 and 0 <= my < 3 and max(abs(mx - x), abs(my - y)) <= 7 and (mx, my) != (x, y)
    assert _check(lambda xy: xy, n=3) == ((0, 0), [])
    assert _check(lambda xy: (xy[0] % 8, xy[1]), n=30) == ((0, 0), [])
    assert _check(lambda xy: 0, n=0) == ((0, 0), [])
    assert _check(None, n=3) == ((0, 0), [])
    (checked, mismatched), taps = _check(lambda xy: 0, n=100)
    assert (checked, mismatched) == (30, 30) and len({t for t in taps[0::2]}) == 30


def test_first_click_share_counts_ious_at_the_threshold():
    """Guards ``first_click_share`` of ``metrics.json``: the share of instances whose first-click IoU is >= 0.85 /
    0.90. First-click IoUs 0.85, 0.9, 0.5, 0.95 by hand: 3 / 4 and 2 / 4 (with > instead of >=: 2 / 4, 1 / 4)."""
    results = []
    for iou in (0.85, 0.9, 0.5, 0.95):
        r = _result()
        r.first_click_iou = iou
        results.append(r)
    assert aggregate(results)["first_click_share"] == {"0.85": 3 / 4, "0.90": 2 / 4}
    assert aggregate([])["first_click_share"] == {"0.85": None, "0.90": None}


# A 14 x 12 (W x H) instance at origin (20, 30) on a 48 x 48 image, one band: the windows of check_group_key
# by hand. ``cx, ry``: column / row inside the bbox.
_BOX = TapSet(
    bands=Bands(band_map=np.ones((12, 14), np.uint8), origin=(20, 30), centroid=(27, 36), kernel=(1, 1)),
    band_taps=BandTaps(taps=(((27, 36),), (), (), (), ()), empty_bands=(2, 3, 4, 5)),
    first_click=(27, 36),
)


def _local(xy):
    return xy[0] - 20, xy[1] - 30


@pytest.mark.parametrize(
    ("key", "checked"),
    [
        (lambda xy: (_local(xy)[0] % 7, xy[1]), 168),  # mate 7 columns away: every pixel has one
        (lambda xy: (xy[0], _local(xy)[1] % 7), 140),  # 7 rows away: rows 5, 6 have none (rows 12, 13 are out)
        (lambda xy: (_local(xy)[0] % 8, xy[1]), 0),  # 8 away: outside the 7-px window
        (lambda xy: (xy[0], _local(xy)[1] % 8), 0),
        (lambda xy: (min(_local(xy)[0], 13 - _local(xy)[0]), xy[1]), 96),  # mirror: |13 - 2 cx| <= 7 -> cx 3..10
        (lambda xy: (xy[0], min(_local(xy)[1], 11 - _local(xy)[1])), 112),  # |11 - 2 ry| <= 7 -> ry 2..9
    ],
)
def test_group_key_check_pairs_each_pixel_with_a_mate_in_its_window(key, checked):
    """Guards the partner search of ``check_group_key``: offsets -7..7 in x and y (not both 0), partners inside the
    bbox (which does not start at (0, 0)), equal keys. Every pixel is checked (n = all 168) with a key whose
    partners are known by hand, under a method whose mask is the tapped pixel (every pair differs)."""
    (got, mismatched), taps = _check(key, n=1000, tapset=_BOX, shape=(48, 48))
    assert (got, mismatched) == (checked, checked)
    for (x, y), (mx, my) in zip(taps[0::2], taps[1::2], strict=True):
        assert key((mx, my)) == key((x, y)) and 20 <= mx < 34 and 30 <= my < 42 and max(abs(mx - x), abs(my - y)) <= 7


def test_group_key_check_default_n_and_equal_masks():
    """Guards the default ``n = 2``, ``n = 1`` still checking a pair, and the mask comparison itself: a method
    whose mask depends only on the key (the pixel (x0 + cx % 7, y)) gives no mismatch."""
    key = lambda xy: (_local(xy)[0] % 7, xy[1])  # noqa: E731
    assert _check(key, n=None, tapset=_BOX, shape=(48, 48))[0] == (2, 2)
    assert _check(key, n=1, tapset=_BOX, shape=(48, 48))[0] == (1, 1)

    def by_key(image, xy):
        return _pixel_mask(image, (20 + _local(xy)[0] % 7, xy[1]))

    method = from_callable(by_key, "by key", group_key=key)
    method.set_image(np.zeros((48, 48, 3), np.uint8))
    assert check_group_key(method, _BOX, (48, 48), np.random.default_rng(0), n=5) == (5, 0)
