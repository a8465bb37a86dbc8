"""The zoom-in pass (tracenet.tap.zoom): its crop window by hand, and the core's second pass on a hand-made engine
that can only see an object as sharply as its network resolution allows."""

from __future__ import annotations

import numpy as np
import pytest

from tracenet.tap import TapCandidate, TapCore, TapOutputs
from tracenet.tap.zoom import GRID, ZoomConfig, enlarge_crop, share_inside, zoom_window


def test_zoom_window_by_hand() -> None:
    cfg = ZoomConfig(min_gain=1.75)  # expand 1.25, min_side 48 (the defaults)
    # box 40 x 30: side max(48, 50) = 50 -> ceil(50 / 16) + 1 = 5 grid cells = 80 px; centre (120, 115):
    # corner round((120 - 40) / 16) * 16 = 80, round((115 - 40) / 16) * 16 = round(4.69) * 16 = 80
    assert zoom_window((100, 100, 140, 130), (480, 640), 384, 0.6, cfg) == (80, 80, 160, 160)
    # min_side wins (48 -> 64 px) and the window is shifted inside the photo at its corner
    assert zoom_window((0, 0, 20, 10), (480, 640), 384, 0.6, cfg) == (0, 0, 64, 64)
    # a photo narrower than the window: cut to the photo's height; side 1.25 * 100 -> 144
    assert zoom_window((100, 10, 200, 40), (50, 640), 384, 0.6, cfg) == (80, 0, 224, 50)
    # too large to gain: 384 / 400 / 0.6 = 1.6 < 1.75
    assert zoom_window((100, 100, 400, 300), (480, 640), 384, 0.6, cfg) is None
    # the same window at a photo that reached the network whole (scale 1) gains only 384 / 80 = 4.8
    assert zoom_window((100, 100, 140, 130), (480, 640), 384, 1.0, cfg) == (80, 80, 160, 160)
    assert zoom_window((100, 100, 140, 130), (480, 640), 384, 1.0, ZoomConfig(min_gain=5.0)) is None


def test_zoom_window_keeps_the_box_inside_with_its_margin() -> None:
    rng = np.random.default_rng(0)
    cfg = ZoomConfig()
    for _ in range(500):
        h, w = rng.integers(100, 900, 2)
        x0, y0 = rng.uniform(0, w - 5), rng.uniform(0, h - 5)
        x1, y1 = rng.uniform(x0 + 1, min(w, x0 + 200)), rng.uniform(y0 + 1, min(h, y0 + 200))
        win = zoom_window((x0, y0, x1, y1), (int(h), int(w)), 384, 0.5, cfg)
        if win is None:
            continue
        a, b, c, d = win
        assert 0 <= a < c <= w and 0 <= b < d <= h and (a % GRID == 0 or c == w) and (b % GRID == 0 or d == h)
        side = max(cfg.min_side, cfg.expand * max(x1 - x0, y1 - y0))
        margin = (side - max(x1 - x0, y1 - y0)) / 2
        # inside the window with the unrounded margin, unless the photo's edge is nearer
        assert a <= max(0, x0 - margin) + 1e-9 and c >= min(w, x1 + margin) - 1e-9
        assert b <= max(0, y0 - margin) + 1e-9 and d >= min(h, y1 + margin) - 1e-9


def test_zoom_config_rejects_nonsense() -> None:
    for bad in (dict(expand=0.5), dict(min_side=2), dict(min_gain=1.0), dict(cache=0), dict(min_inside=1.5),
                dict(min_inside=-0.1)):
        with pytest.raises(ValueError, match="zoom"):
            ZoomConfig(**bad)


def test_enlarge_crop_scales_the_long_side() -> None:
    img = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    out = enlarge_crop(img, (10, 20, 42, 36), 96)  # 32 x 16 crop -> 96 x 48
    assert out.shape == (48, 96, 3) and out.dtype == np.uint8


class _BlurryEngine(TapCore):
    """Sees the photo's white pixels through its network resolution: the mask probability is twice the share of
    white in each 8 x 8 block of the network image (one block = one stride-8 cell; a quarter white is inside),
    upsampled by repetition; one candidate whose box is the bounding box of the cells inside."""

    def __init__(self, **kwargs) -> None:
        super().__init__(class_names=["thing"], min_score=0.05, require_tap_inside=True, **kwargs)
        self.images: list[tuple[int, int]] = []

    def _set_network_image(self, rgb: np.ndarray) -> None:
        self.images.append(rgb.shape[:2])
        h, w = rgb.shape[:2]
        white = np.pad(rgb[..., 0] > 127, ((0, -h % 8), (0, -w % 8)))
        share = white.reshape(white.shape[0] // 8, 8, white.shape[1] // 8, 8).mean(axis=(1, 3))
        self.probs = np.minimum(1.0, 2 * np.repeat(np.repeat(share, 8, 0), 8, 1)[:h, :w]).astype(np.float32)

    def _compute_tap(self, rows_cols):
        ys, xs = np.nonzero(self.probs > 0.5)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        cand = TapCandidate(score=0.9, class_id=0, level=3, box=box)
        return TapOutputs(candidates=[cand], order=[0], mask_probs=lambda k: (self.probs, 0), best_score=0.9)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_zoom_pass_sharpens_a_small_object_and_maps_it_back() -> None:
    photo = np.zeros((480, 640, 3), np.uint8)
    photo[200:232, 300:340] = 255  # a 40 x 32 object: 10 x 8 network pixels at max_side 160 (scale 0.25)
    truth = photo[..., 0] > 0
    plain = _BlurryEngine(max_side=160)
    plain.set_image(photo)
    one = plain.predict((310, 210))
    # one pass: the two cells at least a quarter white, photo x 288-352, y 192-224 (IoU 960 / 2368 = 0.41)
    assert one.box == (288.0, 192.0, 352.0, 224.0) and _iou(one.mask, truth) == pytest.approx(0.4054, abs=0.02)
    zoomer = _BlurryEngine(max_side=160, zoom=True)
    zoomer.set_image(photo)
    two = zoomer.predict((310, 210))
    # box 64 x 32 -> side 80 -> 96 px, centred on (320, 208): corner (272, 160); enlarged 160 / 96 = 1.67x
    assert "zoom_window" not in one.extras and two.extras["zoom_window"] == (272, 160, 368, 256)
    assert zoomer.images == [(120, 160), (160, 160)]  # the photo, then the window enlarged
    assert _iou(two.mask, truth) > 0.85
    assert not two.mask[:160].any() and not two.mask[:, 368:].any()  # nothing outside the window
    x0, y0, x1, y1 = two.box  # the enlarged crop's box mapped back to photo pixels (cells of 4.8 px now)
    assert abs(x0 - 300) <= 5 and abs(y0 - 200) <= 5 and abs(x1 - 340) <= 5 and abs(y1 - 232) <= 5
    # a tap in the next cell finds the same first answer, so the same crop: its network state is reused
    again = zoomer.predict((330, 210))
    assert zoomer.images == [(120, 160), (160, 160)] and np.array_equal(again.mask, two.mask)
    # taps of one key answer alike; a cell whose centre (336, 240) misses the object keeps the first answer
    assert zoomer.tap_key((300, 200)) == zoomer.tap_key((305, 205))
    assert np.array_equal(zoomer.predict((300, 200)).mask, zoomer.predict((305, 205)).mask)
    edge = zoomer.predict((330, 225))
    assert "zoom_window" not in edge.extras and np.array_equal(edge.mask, one.mask)


def test_zoom_pass_leaves_large_objects_and_can_be_paused() -> None:
    photo = np.zeros((480, 640, 3), np.uint8)
    photo[20:470, 40:620] = 255  # a crop around it would be the whole photo: nothing to gain
    zoomer = _BlurryEngine(max_side=160, zoom=True)
    zoomer.set_image(photo)
    res = zoomer.predict((300, 250))
    assert "zoom_window" not in res.extras and zoomer.images == [(120, 160)]
    small = np.zeros((480, 640, 3), np.uint8)
    small[200:232, 300:340] = 255
    zoomer.set_image(small)
    with zoomer.refinement("none", zoom=False):
        assert "zoom_window" not in zoomer.predict((310, 210)).extras
    assert zoomer.zoom and "zoom_window" in zoomer.predict((310, 210)).extras


def test_share_inside_by_hand() -> None:
    first = np.zeros((4, 5), bool)
    first[1:3, 1:4] = True  # 6 pixels
    zoomed = np.zeros((4, 5), bool)
    zoomed[2, 2:5] = True  # 3 pixels, 2 of them in the first mask
    zoomed[3, 0] = True
    assert share_inside(zoomed, first) == 0.5 and share_inside(first, first) == 1.0
    assert share_inside(np.zeros_like(first), first) == 0.0


class _GreedyCropEngine(_BlurryEngine):
    """The photo as :class:`_BlurryEngine` sees it; on a zoomed crop it answers with everything from the tap's
    cell to the crop's right edge (a neighbour that covers the tap but lies mostly outside the first answer)."""

    def _compute_tap(self, rows_cols):
        if self.zoom:  # the photo's own predictor; its crops are copies with zoom off
            return super()._compute_tap(rows_cols)
        row, col = rows_cols[0]
        probs = np.zeros_like(self.probs)
        probs[:, col * 8:] = 1.0
        h, w = probs.shape
        cand = TapCandidate(score=0.9, class_id=0, level=3, box=(col * 8.0, 0.0, float(w), float(h)))
        return TapOutputs(candidates=[cand], order=[0], mask_probs=lambda k: (probs, 0), best_score=0.9)


def test_a_zoomed_answer_mostly_outside_the_first_is_not_taken() -> None:
    photo = np.zeros((480, 640, 3), np.uint8)
    photo[200:232, 300:340] = 255
    plain = _BlurryEngine(max_side=160)
    plain.set_image(photo)
    one = plain.predict((310, 210))
    strict = _GreedyCropEngine(max_side=160, zoom=True)  # min_inside 0.5, the default
    strict.set_image(photo)
    kept = strict.predict((310, 210))
    assert strict.images == [(120, 160), (160, 160)]  # the crop was segmented ...
    assert "zoom_window" not in kept.extras and np.array_equal(kept.mask, one.mask)  # ... and its answer refused
    loose = _GreedyCropEngine(max_side=160, zoom=True, zoom_cfg=ZoomConfig(min_inside=0.0))
    loose.set_image(photo)
    taken = loose.predict((310, 210))
    assert taken.extras["zoom_window"] == (272, 160, 368, 256)
    assert share_inside(taken.mask, one.mask) < 0.5 and taken.mask[160:256, 360:368].all() and taken.mask[210, 310]
