"""Method adapters (callable, TraceNet through the library API) and the GrabCut baseline."""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from tracenet.eval.baselines import GrabCutMethod
from tracenet.eval.instance import iou_counts
from tracenet.eval.methods import TapMethod, TraceNetMethod, from_callable, make_method, predict_taps


def test_from_callable_calls_fn_with_image_and_tap():
    seen = []

    def fn(image, xy):
        seen.append((image.shape, xy))
        m = np.zeros(image.shape[:2], bool)
        m[xy[1], xy[0]] = True
        return m

    method = from_callable(fn, "dot")
    assert isinstance(method, TapMethod)
    assert not hasattr(method, "group_key")
    with pytest.raises(RuntimeError, match="set_image"):
        method.predict((0, 0))
    method.set_image(np.zeros((4, 6, 3), np.uint8))
    mask = method.predict((5, 3))  # (x, y): column 5, row 3
    assert mask.dtype == bool and mask.shape == (4, 6) and mask[3, 5] and mask.sum() == 1
    assert seen == [((4, 6, 3), (5, 3))]


def test_wrong_mask_shape_is_a_clear_error():
    method = from_callable(lambda image, xy: np.zeros((3, 3), bool), "bad")
    method.set_image(np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ValueError, match=r"'bad'.*\(3, 3\).*\(4, 6\)"):
        method.predict((0, 0))


def test_predict_taps_uses_predict_many_in_chunks():
    class Batched:
        name = "batched"
        batches: list[int] = []

        def predict(self, xy):
            raise AssertionError("predict_many should be used")

        def predict_many(self, taps):
            self.batches.append(len(taps))
            return [np.full((2, 2), t[0] % 2 == 0) for t in taps]

    masks = list(predict_taps(Batched(), [(i, 0) for i in range(5)], (2, 2), chunk=2))
    assert Batched.batches == [2, 2, 1]
    assert [bool(m.all()) for m in masks] == [True, False, True, False, True]


class FakeSegmenter:
    """Stands in for ``tracenet.load()``: records calls, returns a box around the tap's 8 x 8 cell."""

    def __init__(self):
        self.calls = []

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(self, xy, use_rft=True):
        self.calls.append((xy, use_rft))
        mask = np.zeros(self.shape, bool)
        mask[xy[1] // 8 * 8 : xy[1] // 8 * 8 + 8, xy[0] // 8 * 8 : xy[0] // 8 * 8 + 8] = True
        return SimpleNamespace(mask=mask, score=0.9, box=(0, 0, 8, 8))

    def tap_key(self, xy):
        return (xy[1] // 8, xy[0] // 8)


def test_tracenet_adapter_maps_modes_and_tap_key():
    seg = FakeSegmenter()
    tn = TraceNetMethod(segmenter=seg)
    full = TraceNetMethod(segmenter=seg, use_rft=False)
    assert (tn.name, full.name) == ("tracenet", "fullnet")
    for method in (tn, full):
        method.set_image(np.zeros((32, 40, 3), np.uint8))
    assert tn.predict((17, 9))[8, 16]
    full.predict((17, 9))
    assert seg.calls == [((17, 9), True), ((17, 9), False)]
    assert tn.group_key((17, 9)) == tn.group_key((23, 15)) != tn.group_key((24, 15))


def test_tracenet_adapter_without_tap_key_has_no_group_key():
    seg = FakeSegmenter()
    seg.tap_key = None
    assert not hasattr(TraceNetMethod(segmenter=seg), "group_key")


def test_make_method_errors():
    with pytest.raises(ValueError, match="unknown method"):
        make_method("sam")
    with pytest.raises(ValueError, match="no weights"):
        make_method("grabcut", "ckpt.pt")
    assert make_method("grabcut").name == "grabcut"


def disk_image(size: int = 160, radius: int = 35, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disk = (xx - 80) ** 2 + (yy - 80) ** 2 <= radius**2
    img = np.where(disk[..., None], 220, 30) + rng.integers(-15, 16, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8), disk


@pytest.mark.parametrize("tap", [(80, 80), (95, 70), (60, 100)])
def test_grabcut_segments_a_bright_disk(tap):
    image, disk = disk_image()
    gc = GrabCutMethod()
    gc.set_image(image)
    inter, union = iou_counts(gc.predict(tap), disk)
    assert inter / union > 0.8


def test_grabcut_is_deterministic_and_its_group_key_is_exact():
    image, _ = disk_image(size=256)  # work scale 0.5: taps (100, 100) and (101, 101) share a work pixel
    gc = GrabCutMethod()
    gc.set_image(image)
    assert gc.group_key((100, 100)) == gc.group_key((101, 101)) == (50, 50)
    assert np.array_equal(gc.predict((100, 100)), gc.predict((101, 101)))
    assert np.array_equal(gc.predict((100, 100)), gc.predict((100, 100)))


def test_grabcut_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 RGB"):
        GrabCutMethod().set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="window"):
        GrabCutMethod(window=0)


def test_module_docstring_example_runs_and_its_key_is_exact():
    import re

    import tracenet.eval.methods as methods_module
    from tracenet.eval.instance import evaluate_instance
    from tracenet.eval.taps import simulate_taps

    code = re.search(r"::\n\n(.*?)(?:\n\S|\Z)", methods_module.__doc__, re.S).group(1)
    scope: dict = {}
    exec(textwrap.dedent(code), scope)  # noqa: S102 - our own docstring
    keyed, brute = scope["method"], from_callable(scope["square"], "square")
    gt = np.zeros((48, 64), bool)
    gt[8:40, 10:50] = True
    taps = simulate_taps(gt, seed=0, instance_id=1)
    results = []
    for method in (keyed, brute):
        method.set_image(np.zeros((48, 64, 3), np.uint8))
        results.append(evaluate_instance(method, gt, taps))
    assert np.array_equal(results[0].mta_good, results[1].mta_good) and results[0].taps == results[1].taps
    assert results[0].n_predictions < results[1].n_predictions
