"""The photo edits on small synthetic images: what changes, what must not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tracenet.edit import (
    EFFECTS,
    apply_effect,
    blur_background,
    color_splash,
    cutout_rgba,
    replace_background,
)
from tracenet.edit.effects import soft_alpha


def _inner(mask: np.ndarray, px: int = 6) -> np.ndarray:
    """Pixels at least ``px`` inside the mask (out of reach of the feathering)."""
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def _outer(mask: np.ndarray, px: int = 6) -> np.ndarray:
    return ~cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def test_blur_changes_background_and_keeps_subject(subject_scene):
    image, mask = subject_scene
    out = blur_background(image, mask, strength=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    inner, outer = _inner(mask), _outer(mask)
    np.testing.assert_array_equal(out[inner], image[inner])
    changed = np.any(out != image, axis=2)
    assert changed[outer].mean() > 0.95  # noise background: practically every pixel changes
    # blurred noise is smoother than the original noise
    assert out[outer].astype(float).std() < 0.6 * image[outer].astype(float).std()


def test_blur_does_not_bleed_subject_colour_into_background(subject_scene):
    """Normalised convolution: the red subject must not halo into a black background."""
    image, mask = subject_scene
    image = np.where(mask[..., None], image, 0).astype(np.uint8)
    out = blur_background(image, mask, strength=1.0, feather=0)
    assert out[~mask].max() == 0


def test_blur_strength_zero_is_identity(subject_scene):
    image, mask = subject_scene
    np.testing.assert_array_equal(blur_background(image, mask, strength=0.0), image)


def test_blur_rejects_bad_strength(subject_scene):
    image, mask = subject_scene
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        blur_background(image, mask, strength=3)


def test_replace_with_colour(subject_scene):
    image, mask = subject_scene
    out = replace_background(image, mask, color=(0, 255, 0))
    inner, outer = _inner(mask), _outer(mask)
    np.testing.assert_array_equal(out[inner], image[inner])
    assert (out[outer] == (0, 255, 0)).all()
    edge = ~inner & ~outer
    assert np.any(out[edge] != image[edge])  # feathered band blends


def test_replace_default_is_white_and_hard_edge_with_feather_zero(subject_scene):
    image, mask = subject_scene
    out = replace_background(image, mask, feather=0)
    np.testing.assert_array_equal(out[mask], image[mask])
    assert (out[~mask] == 255).all()


def test_replace_with_picture_covers_any_size(subject_scene):
    image, mask = subject_scene
    back = np.zeros((10, 300, 3), np.uint8)
    back[..., 2] = 250  # blue, much wider than the image
    out = replace_background(image, mask, background=back, feather=0)
    assert out.shape == image.shape
    assert (out[~mask] == (0, 0, 250)).all()
    np.testing.assert_array_equal(out[mask], image[mask])


def test_replace_rejects_colour_and_picture_together(subject_scene):
    image, mask = subject_scene
    with pytest.raises(ValueError, match="not both"):
        replace_background(image, mask, color=(1, 2, 3), background=image)
    with pytest.raises(ValueError, match="0..255"):
        replace_background(image, mask, color=(1, 2, 300))


def test_splash_background_is_grey_subject_in_colour(subject_scene):
    image, mask = subject_scene
    out = color_splash(image, mask)
    outer, inner = _outer(mask), _inner(mask)
    bg = out[outer].astype(int)
    assert (bg[:, 0] == bg[:, 1]).all() and (bg[:, 1] == bg[:, 2]).all()
    np.testing.assert_array_equal(out[inner], image[inner])
    assert (out[inner][:, 0] == 200).all()  # still red


def test_cutout_alpha_equals_mask(subject_scene):
    image, mask = subject_scene
    hard = cutout_rgba(image, mask, feather=0)
    assert hard.shape == (*mask.shape, 4) and hard.dtype == np.uint8
    np.testing.assert_array_equal(hard[..., 3], mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(hard[..., :3], image)
    soft = cutout_rgba(image, mask)
    assert (soft[..., 3][_inner(mask)] == 255).all() and (soft[..., 3][_outer(mask)] == 0).all()
    # a straight edge keeps its place: alpha >= 50 % exactly on the mask except at the 4 corners
    differ = (soft[..., 3] >= 128) != mask
    assert differ.sum() <= 4


def test_soft_alpha_range_and_hard_mode(subject_scene):
    _, mask = subject_scene
    a = soft_alpha(mask, 3.0)
    assert a.dtype == np.float32 and a.min() == 0.0 and a.max() == 1.0
    np.testing.assert_array_equal(soft_alpha(mask, 0), mask.astype(np.float32))
    with pytest.raises(ValueError, match="feather"):
        soft_alpha(mask, -1)


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_every_effect_handles_empty_and_full_masks(name, subject_scene):
    image, _ = subject_scene
    for mask in (np.zeros(image.shape[:2], bool), np.ones(image.shape[:2], bool)):
        out = apply_effect(name, image, mask)
        assert out.shape[:2] == image.shape[:2] and out.dtype == np.uint8
    full = apply_effect(name, image, np.ones(image.shape[:2], bool), feather=0)
    np.testing.assert_array_equal(full[..., :3], image)  # everything is subject: nothing changes


def test_inputs_are_validated_with_actionable_messages(subject_scene):
    image, mask = subject_scene
    with pytest.raises(ValueError, match="does not match"):
        blur_background(image, mask[:-1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        color_splash(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match="choose one of"):
        apply_effect("sepia", image, mask)


def test_effects_do_not_modify_their_inputs(subject_scene):
    image, mask = subject_scene
    before_i, before_m = image.copy(), mask.copy()
    for name in EFFECTS:
        apply_effect(name, image, mask)
    np.testing.assert_array_equal(image, before_i)
    np.testing.assert_array_equal(mask, before_m)


def test_soft_alpha_crop_equals_blurring_the_whole_image():
    """soft_alpha blurs only around the mask; it must match a full-image Gaussian blur."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((120, 90), bool)
        y, x = rng.integers(0, 120), rng.integers(0, 90)
        mask[y : y + rng.integers(1, 60), x : x + rng.integers(1, 60)] = True
        feather = float(rng.uniform(0.3, 6))
        full = cv2.GaussianBlur(
            mask.astype(np.float32), (0, 0), sigmaX=feather, borderType=cv2.BORDER_REPLICATE
        )
        got = soft_alpha(mask, feather)
        inside = (got > 0) & (got < 1)
        np.testing.assert_allclose(got[inside], full[inside], atol=1e-6)
        assert (full[got == 0] < 1 / 256).all() and (full[got == 1] > 1 - 1 / 256).all()
