"""TapSegmenter: TraceNet (traced) == FullNet (same candidate, same mask), caches, sizes and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracenet.model import build_model, preset
from tracenet.predictor import TapSegmenter


def _calibrate(model: torch.nn.Module, seed: int, controller_bias: float = 0.5) -> torch.nn.Module:
    """Random head weights with non-trivial BatchNorm statistics, so candidates and masks differ per tap. The
    controller gets random biases too (std ``controller_bias``): with zero biases (its init) the dynamic head's
    last bias is ~0 and a randomly initialised r50 gives masks covering the whole image at every tap, which would
    compare trivially; lite0 with zero biases gives large partial masks (what the ONNX and refinement tests use)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
        if isinstance(m, torch.nn.Conv2d) and m.out_channels in (1, 4, 169):
            torch.nn.init.normal_(m.weight, std=0.05)
        if isinstance(m, torch.nn.Conv2d) and m.out_channels == 169:
            torch.nn.init.normal_(m.bias, std=controller_bias)
    return model.eval()


@pytest.fixture(scope="module", params=["lite0", "r50"])
def segmenter(request) -> TapSegmenter:
    if request.param == "lite0":
        cfg = preset("lite0")
    else:
        cfg = preset("r50", fpn_channels=32, mask_branch_channels=16, pretrained_backbone=False)
    torch.manual_seed(6)  # build_model's random layers too, so the fixture's masks do not depend on test order
    model = _calibrate(build_model(cfg), seed=6)
    return TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False)


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    img[h // 4: 3 * h // 4, w // 5: w // 2] = (220, 40, 40)  # a red block
    img += rng.integers(0, 30, img.shape, dtype=np.uint8)
    return img


@pytest.mark.parametrize("hw", [(161, 227), (97, 130)])
def test_traced_equals_fullnet_on_several_taps(segmenter: TapSegmenter, hw) -> None:
    """Same candidate, score, box and mask with and without the tracer, for both backbones. Guards e.g. traced
    mask features shifted by one cell: the fixture's masks are partial (not all-True / all-False), so comparing
    them has teeth for both lite0 and r50."""
    h, w = hw
    segmenter.set_image(_photo(h, w))
    taps = [(0, 0), (w - 1, h - 1), (w - 1, 0), (0, h - 1), (w // 3, h // 2), (w // 2 + 7, h // 3)]
    partial = sum(0.02 < segmenter.predict(tap, use_rft=False).mask.mean() < 0.98 for tap in taps)
    assert partial >= len(taps) // 2, f"only {partial} of {len(taps)} FullNet masks are partial: weak fixture"
    for tap in taps:
        traced = segmenter.predict(tap)
        full = segmenter.predict(tap, use_rft=False)
        assert traced.found == full.found
        assert traced.score == pytest.approx(full.score, abs=1e-6)
        assert (traced.level, traced.class_id) == (full.level, full.class_id)
        assert traced.box == pytest.approx(full.box, abs=1e-3)
        assert traced.mask.shape == (h, w)
        assert np.array_equal(traced.mask, full.mask), f"tap {tap}: masks differ"
        assert traced.macs <= traced.full_macs  # small images: every map is small and runs whole


def test_second_tap_reuses_the_first(segmenter: TapSegmenter) -> None:
    segmenter.set_image(_photo(150, 200, seed=1))
    first = segmenter.predict((60, 70))
    second = segmenter.predict((140, 30))
    assert second.macs < 0.5 * first.macs
    assert np.array_equal(second.mask, segmenter.predict((140, 30), use_rft=False).mask)


def test_box_limited_mask_branch_matches_fullnet_and_saves_work() -> None:
    cfg = preset("lite0")
    model = _calibrate(build_model(cfg), seed=5)
    image_wide = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False)
    boxed = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False, mask_region="box", box_margin=1)
    img = _photo(190, 250, seed=2)
    for seg in (image_wide, boxed):
        seg.set_image(img)
    tap = (70, 90)
    a, b = boxed.predict(tap), boxed.predict(tap, use_rft=False)
    assert np.array_equal(a.mask, b.mask)
    # the box-limited mask is empty outside the box window and equals the image-wide mask well inside it
    whole = image_wide.predict(tap)
    assert whole.extras["candidate"].row_col == a.extras["candidate"].row_col
    r0, r1, c0, c1 = (8 * v for v in boxed._box_window(a.extras["candidate"]))
    outside = np.ones_like(a.mask)
    outside[r0:r1, c0:c1] = False
    assert not (a.mask & outside).any()
    inner = (slice(r0 + 16, max(r0 + 16, r1 - 16)), slice(c0 + 16, max(c0 + 16, c1 - 16)))
    assert np.array_equal(a.mask[inner], whole.mask[inner])
    boxed.set_image(img)
    image_wide.set_image(img)
    assert boxed.predict(tap).macs <= image_wide.predict(tap).macs


def test_large_images_are_resized_internally_and_masks_come_back_full_size() -> None:
    cfg = preset("lite0")
    seg = TapSegmenter(_calibrate(build_model(cfg), seed=1), cfg, max_side=128, min_score=0.0,
                       require_tap_inside=False)
    seg.set_image(_photo(300, 400))
    assert seg.net_hw == (96, 128)
    res = seg.predict((399, 299))
    assert res.mask.shape == (300, 400)
    assert 0 <= res.box[0] <= res.box[2] <= 400 and 0 <= res.box[1] <= res.box[3] <= 300


def test_bad_taps_and_missing_image_give_clear_errors() -> None:
    cfg = preset("lite0")
    seg = TapSegmenter(build_model(cfg), cfg)
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict((1, 1))
    seg.set_image(_photo(40, 60))
    with pytest.raises(ValueError, match="outside the 60x40 image"):
        seg.predict((60, 10))
    with pytest.raises(ValueError, match="outside"):
        seg.predict((-1, 10))
    with pytest.raises(ValueError, match=r"\(x, y\) pair"):
        seg.predict("here")


def test_nothing_here_below_threshold() -> None:
    cfg = preset("lite0")
    seg = TapSegmenter(build_model(cfg), cfg, min_score=0.99)
    seg.set_image(_photo(64, 64))
    res = seg.predict((10, 10))
    assert not res.found and not res.mask.any() and "nothing here" in res.reason and res.score < 0.99


def test_tap_key_groups_taps_in_one_p3_cell(segmenter: TapSegmenter) -> None:
    segmenter.set_image(_photo(120, 150))
    assert segmenter.tap_key((8, 16)) == segmenter.tap_key((15, 23))
    assert segmenter.tap_key((8, 16)) != segmenter.tap_key((16, 16))
    a, b = segmenter.predict((8, 16)), segmenter.predict((15, 23))
    assert np.array_equal(a.mask, b.mask) and a.score == b.score


def test_every_pixel_of_a_key_gets_the_same_answer_with_resizing_and_the_covering_check() -> None:
    """Brute force over whole cells: ``require_tap_inside`` and a resized photo must not break ``tap_key``."""
    cfg = preset("lite0")
    seg = TapSegmenter(_calibrate(build_model(cfg), seed=5), cfg, max_side=96, min_score=0.0)
    seg.set_image(_photo(90, 130))  # resized by 96 / 130
    answers: dict = {}
    for y in range(0, 90, 3):
        for x in range(0, 130, 2):
            res = seg.predict((x, y), use_rft=False)
            key = seg.tap_key((x, y))
            got = (res.found, res.score, res.mask.tobytes())
            assert answers.setdefault(key, got) == got, f"tap {(x, y)} differs from another tap of key {key}"
    assert len(answers) > 10
