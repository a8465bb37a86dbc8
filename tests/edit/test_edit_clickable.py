"""clickable_region: one model call per tap_key group, and the right pixels."""

from __future__ import annotations

import numpy as np
import pytest

from tracenet.edit import clickable_region, clickable_region_details


@pytest.fixture
def spot_scene(make_scene) -> tuple[np.ndarray, np.ndarray]:
    """Red rectangle x 24..71, y 16..47 with a blue spot at x 42..46, y 26..30 (not cell-aligned)."""
    image, _ = make_scene()
    image[26:31, 42:47] = (20, 40, 230)
    return image, (image == (200, 30, 40)).all(axis=2)


def test_whole_uniform_object_is_clickable(subject_scene, flood_segmenter):
    image, mask = subject_scene
    flood_segmenter.set_image(image)
    region = clickable_region(flood_segmenter, mask)
    assert region.dtype == bool and region.shape == mask.shape
    np.testing.assert_array_equal(region, mask)


def test_cells_whose_tap_lands_on_another_object_are_not_clickable(spot_scene, segmenter_cls):
    image, red = spot_scene
    seg = segmenter_cls(cell=8)
    seg.set_image(image)
    mask = seg.predict((30, 20)).mask
    np.testing.assert_array_equal(mask, red)
    info = clickable_region_details(seg, mask)
    # cell x 40..47, y 24..31 snaps to (44, 28): the blue spot, so its red pixels are not clickable
    expected = red.copy()
    expected[24:32, 40:48] = False
    np.testing.assert_array_equal(info.region, expected)
    assert info.exact and info.n_predictions == info.n_groups
    assert info.tolerance == pytest.approx(expected.sum() / red.sum())


def test_one_prediction_per_tap_key_group(subject_scene, segmenter_cls):
    image, mask = subject_scene  # subject x 24..71, y 16..47: 6 x 4 cells of 8 px
    seg = segmenter_cls(cell=8)
    seg.set_image(image)
    info = clickable_region_details(seg, mask)
    assert info.n_groups == 24 and seg.calls == 24


def test_iou_threshold_is_applied(spot_scene, segmenter_cls):
    image, red = spot_scene
    seg = segmenter_cls(cell=8)
    seg.set_image(image)
    shrunk = red.copy()
    shrunk[16:30, 24:72] = False  # reference mask much smaller than what any red tap gives
    assert not clickable_region(seg, shrunk, iou_threshold=0.9).any()
    assert clickable_region(seg, shrunk, iou_threshold=0.1).sum() > 0


def test_max_taps_bounds_model_calls_and_approximates(spot_scene, segmenter_cls):
    image, red = spot_scene
    seg = segmenter_cls(cell=4)
    seg.set_image(image)
    exact = clickable_region_details(seg, red)
    seg.calls = 0
    approx = clickable_region_details(seg, red, max_taps=20)
    assert not approx.exact and approx.n_predictions <= 20 and seg.calls == approx.n_predictions
    assert (approx.region & ~red).sum() == 0
    assert (approx.region == exact.region)[red].mean() > 0.8


def test_segmenter_without_tap_key_falls_back_to_8px_cells(subject_scene, segmenter_cls):
    image, mask = subject_scene

    class NoKey:
        def __init__(self) -> None:
            self.inner = segmenter_cls(cell=8)
            self.inner.set_image(image)

        def predict(self, tap):
            return self.inner.predict(tap)

    seg = NoKey()
    np.testing.assert_array_equal(clickable_region(seg, mask), mask)
    assert seg.inner.calls == 24


def test_empty_mask_and_bad_arguments(subject_scene, flood_segmenter):
    image, mask = subject_scene
    flood_segmenter.set_image(image)
    info = clickable_region_details(flood_segmenter, np.zeros_like(mask))
    assert not info.region.any() and info.n_predictions == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        clickable_region(flood_segmenter, mask, iou_threshold=0)
    with pytest.raises(ValueError, match="candidates shape"):
        clickable_region(flood_segmenter, mask, candidates=mask[:, :-1])


def _slow_segmenter(segmenter_cls, image, seconds: float):
    """A test segmenter on ``image`` whose every ``predict`` takes at least ``seconds`` longer."""
    import time

    seg = segmenter_cls(cell=4)
    seg.set_image(image)
    fast_predict = seg.predict

    def predict(tap):
        time.sleep(seconds)
        return fast_predict(tap)

    seg.predict = predict
    return seg


def test_time_budget_stops_early_but_makes_at_least_one_call(spot_scene, segmenter_cls):
    image, red = spot_scene
    seg = _slow_segmenter(segmenter_cls, image, 0.01)
    info = clickable_region_details(seg, red, time_budget_s=0.05)
    assert 1 <= info.n_predictions < info.n_groups and not info.exact
    assert info.region.sum() > 0.5 * red.sum()  # the even first taps already cover the object
    zero = clickable_region_details(seg, red, time_budget_s=0.0)
    assert zero.n_predictions == 1


def test_time_budget_starts_no_call_that_would_end_after_it(spot_scene, segmenter_cls):
    """Calls of >= 20 ms with a 50 ms budget: a third call would end at >= 60 ms, so at most two are made (stopping
    only once the budget has passed would make three)."""
    image, red = spot_scene
    seg = _slow_segmenter(segmenter_cls, image, 0.02)
    info = clickable_region_details(seg, red, time_budget_s=0.05)
    assert 1 <= info.n_predictions <= 2 < info.n_groups


def test_time_budget_counts_from_the_given_start(spot_scene, segmenter_cls):
    """A 100 ms budget counted from 90 ms ago (a server passes when the request came in): after the one call always
    made (>= 20 ms) it has passed; counted from the first call, calls of 20 ms fit it more than once."""
    import time

    image, red = spot_scene
    seg = _slow_segmenter(segmenter_cls, image, 0.02)
    fresh = clickable_region_details(seg, red, time_budget_s=0.1)
    late = clickable_region_details(seg, red, time_budget_s=0.1, started_at=time.perf_counter() - 0.09)
    assert fresh.n_predictions >= 2 and late.n_predictions == 1


def test_progressive_order_is_a_permutation_spread_over_the_object():
    from tracenet.edit.clickable import _progressive_order

    ys, xs = np.mgrid[0:40:4, 0:80:4]
    order = _progressive_order(xs.ravel(), ys.ravel())
    assert sorted(order.tolist()) == list(range(xs.size))
    first4 = order[:4]
    # the first picks are far apart: they span most of the object in x
    assert np.ptp(xs.ravel()[order[:8]]) >= 40 and len(set(first4.tolist())) == 4
