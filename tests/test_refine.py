"""Boundary refinement: snaps a coarse mask to a photo's edge, changes nothing far from the mask, and gives the
same mask on the traced path and FullNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_predictor import _calibrate, _photo
from tracenet.model import build_model, preset
from tracenet.predictor import TapSegmenter
from tracenet.refine import refine_mask

H, W = 120, 160
SQUARE = (slice(30, 90), slice(40, 110))  # the object: rows 30-89, cols 40-109


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark-blue square on a textured beige background, its true mask, and coarse probabilities: the square
    drawn on an 8-pixel grid, shifted by 7 px and blurred (what a stride-8 mask head upsampled looks like)."""
    rng = np.random.default_rng(seed)
    image = np.full((H, W, 3), (200, 190, 160), np.uint8)
    image[SQUARE] = (30, 40, 120)
    image = np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((H, W), bool)
    truth[SQUARE] = True
    coarse = np.zeros((H // 8, W // 8), np.float32)
    coarse[(30 + 7) // 8: (90 + 7) // 8, (40 + 7) // 8: (110 + 7) // 8] = 1.0
    import cv2

    probs = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR)
    probs = cv2.GaussianBlur(probs, (0, 0), 6)
    probs = probs / probs.max()
    return image, truth, probs.astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("method", ["guided", "grabcut"])
def test_refinement_snaps_a_coarse_mask_to_the_edge(method):
    image, truth, probs = _scene()
    before = _iou(probs > 0.5, truth)
    after = _iou(refine_mask(image, probs, method), truth)
    assert before < 0.87 and after > before + 0.08, (before, after)


def test_refinement_only_changes_the_crop_and_none_is_the_threshold():
    image, _, probs = _scene()
    assert np.array_equal(refine_mask(image, probs, "none"), probs > 0.5)
    for method in ("guided", "grabcut"):  # pixels outside the crop around the mask keep their value
        out = refine_mask(image, probs, method)
        assert not out[:, :20].any() and not out[:, 140:].any() and not out[:12].any()
    empty = np.zeros_like(probs)
    assert not refine_mask(image, empty, "guided").any() and not refine_mask(image, empty, "grabcut").any()
    with pytest.raises(ValueError, match="refine must be one of"):
        refine_mask(image, probs, "sharpen")


@pytest.mark.parametrize("method", ["guided", "grabcut"])
def test_traced_and_fullnet_give_the_same_refined_mask(method):
    cfg = preset("lite0")
    torch.manual_seed(3)  # build_model's random layers: masks independent of test order
    model = _calibrate(build_model(cfg), seed=3, controller_bias=0.0)  # large masks with a boundary to refine
    seg = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False, refine=method)
    plain = TapSegmenter(seg.model, cfg, min_score=0.0, require_tap_inside=False, fuse_bn=False)
    h, w = 161, 227
    seg.set_image(_photo(h, w))
    plain.set_image(_photo(h, w))
    changed = 0
    for tap in [(w // 3, h // 2), (w // 2 + 7, h // 3), (5, 5), (w - 1, h - 1)]:
        traced, full = seg.predict(tap), seg.predict(tap, use_rft=False)
        assert np.array_equal(traced.mask, full.mask), f"tap {tap}: refined masks differ"
        changed += int(not np.array_equal(traced.mask, plain.predict(tap).mask))
    assert changed > 0  # the refinement did something on this photo


def test_grabcut_refinement_is_deterministic():
    """GrabCut seeds its colour models with k-means from OpenCV's global random generator: the same tap on the
    same photo must still give the same mask every time, whatever else used that generator in between (a
    bundled-model tap on the example cat photo gave 79447, 77170, 77224 and 77779 pixels before the seed was
    fixed)."""
    import cv2

    import tracenet

    seg = tracenet.load(refine="grabcut")
    seg.set_image(str(Path(tracenet.__file__).parent / "examples" / "cat.png"))
    first = seg.predict((220, 150)).mask
    for _ in range(3):
        cv2.randu(np.empty((64, 64), np.float32), 0, 1)  # someone else draws from OpenCV's generator
        assert np.array_equal(seg.predict((220, 150)).mask, first)


def test_load_refines_by_default_and_evaluation_measures_the_network():
    """``tracenet.load()`` (and so ``segment``, ``edit`` and the app) refines with GrabCut unless told otherwise;
    evaluation measures the network's own masks unless ``--refine`` asks, and the tap is the same candidate."""
    import tracenet
    from tracenet.eval.methods import TraceNetMethod
    from tracenet.refine import DEFAULT_REFINE

    assert DEFAULT_REFINE == "grabcut"
    seg, raw = tracenet.load(), tracenet.load(refine="none")
    assert (seg.refine, raw.refine, TraceNetMethod().refine) == ("grabcut", "none", "none")
    photo = str(Path(tracenet.__file__).parent / "examples" / "cat.png")
    seg.set_image(photo)
    raw.set_image(photo)
    a, b = seg.predict((220, 150)), raw.predict((220, 150))
    assert (a.level, a.class_id, a.score, a.box) == (b.level, b.class_id, b.score, b.box)
    assert not np.array_equal(a.mask, b.mask)  # the refinement changed the cat's outline


def _square_with_strip(size: int, lo: int, hi: int, p_object: float, p_strip: float, seed: int):
    """A ``size`` x ``size`` beige photo (uint8 RGB, noise +-12) with a blue square at rows and columns
    ``lo:hi``, and mask probabilities ``[size, size]``: ``p_object`` on the square, ``p_strip`` on the 10 beige rows
    above it (background colour the network takes for object), 0 elsewhere."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), (200, 190, 160), np.uint8)
    image[lo:hi, lo:hi] = (30, 40, 120)
    image = np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
    probs = np.zeros((size, size), np.float32)
    probs[lo:hi, lo:hi] = p_object
    probs[lo - 10:lo, lo:hi] = p_strip
    return image, probs


def test_small_masks_get_the_tighter_trimap():
    """A mask under 0.75% of the photo fixes pixels from probability 0.7 up as object (GrabCut may not remove
    them); a large one, or the same one with the rule off, leaves 0.7-0.9 for GrabCut to decide by colour."""
    from tracenet.refine import RefineConfig

    image, probs = _square_with_strip(600, 280, 320, 0.95, 0.8, seed=0)  # rows 270-279: half-believed background
    assert (probs > 0.5).mean() < RefineConfig().small_share
    small = refine_mask(image, probs, "grabcut")
    assert small[270:280, 280:320].all() and small[280:320, 280:320].all()
    loose = refine_mask(image, probs, "grabcut", RefineConfig(small_share=0.0))
    assert not loose[270:280, 280:320].any() and loose[280:320, 280:320].all()
    big = np.kron(probs[200:400, 200:400], np.ones((2, 2), np.float32))  # the same scene at 2x: 5% of the photo
    big_image = np.kron(image[200:400, 200:400], np.ones((2, 2, 1), np.uint8))
    assert (big > 0.5).mean() > RefineConfig().small_share
    assert not refine_mask(big_image, big, "grabcut")[140:160, 160:240].any()


def test_clean_up_keeps_the_pieces_the_network_found_and_fills_small_holes():
    from tracenet.refine import RefineConfig, _clean

    mask = np.zeros((40, 60), bool)
    mask[5:25, 5:32] = True  # the network's mask
    refined = np.zeros_like(mask)
    refined[6:26, 6:26] = True  # 400 px, overlaps it
    refined[12:15, 12:15] = False  # a 9-px hole inside it
    refined[30:38, 40:50] = True  # 80 px far away: not in the network's mask
    refined[8:10, 28:32] = True  # 8 px, apart from the square, inside the network's mask
    kept = _clean(refined, mask, RefineConfig(components="all"))
    assert np.array_equal(kept, refined)
    overlap = _clean(refined, mask, RefineConfig(components="overlap"))
    assert not overlap[30:38, 40:50].any() and overlap[8:10, 28:32].all() and overlap[6:26, 6:26].sum() == 391
    largest = _clean(refined, mask, RefineConfig(components="largest"))
    assert largest.sum() == 391 and not largest[8:10, 28:32].any()
    filled = _clean(refined, mask, RefineConfig(components="largest", fill_holes=0.05))  # 9 < 0.05 * 391
    assert filled.sum() == 400 and filled[12:15, 12:15].all()
    assert _clean(refined, mask, RefineConfig(components="largest", fill_holes=0.02)).sum() == 391  # 9 > 7.8
    border_gap = refined.copy()
    border_gap[:, 0] = False  # background touching the border is never a hole
    assert not _clean(border_gap, mask, RefineConfig(fill_holes=1.0))[:, 0].any()
    far = np.zeros_like(mask)
    far[30:38, 40:50] = True
    assert not _clean(far, mask, RefineConfig(components="overlap")).any()
    with pytest.raises(ValueError, match="components must be"):
        _clean(refined, mask, RefineConfig(components="biggest"))


def test_large_masks_get_the_looser_trimap_only_when_asked():
    """``large_share`` (off by default): a mask covering at least that share of the photo fixes object pixels
    only from probability 0.97 up, so a 0.95 strip of background colour is GrabCut's to remove; with the default
    0.9 / 0.1 trimap it is fixed as object."""
    from tracenet.refine import RefineConfig

    image, probs = _square_with_strip(200, 60, 140, 0.99, 0.95, seed=1)  # rows 50-59: background, fairly sure
    assert (probs > 0.5).mean() == pytest.approx(0.18)
    default = refine_mask(image, probs, "grabcut")
    assert default[50:60, 60:140].all() and default[60:140, 60:140].all()
    loose = refine_mask(image, probs, "grabcut", RefineConfig(large_share=0.1))
    assert not loose[50:60, 60:140].any() and loose[60:140, 60:140].all()
    assert np.array_equal(refine_mask(image, probs, "grabcut", RefineConfig(large_share=0.2)), default)  # 18% < 20%
