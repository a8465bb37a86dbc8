"""The torch-free predictor core: its numpy pre/post-processing equals the PyTorch model's, and its candidate
choice (threshold, "the mask must reach the tap" fallback, resizing back to the photo) on hand-made engine
outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tracenet.model import normalize
from tracenet.model import upsample_mask_probs as torch_upsample
from tracenet.tap import TapCandidate, TapCore, TapOutputs, align_tap, normalize_image, resize_bilinear
from tracenet.tap import upsample_mask_probs as numpy_upsample


def test_normalize_image_equals_torch_bit_for_bit() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    ref = normalize(torch.from_numpy(rgb).permute(2, 0, 1)[None]).numpy()
    assert np.array_equal(normalize_image(rgb), ref)


@pytest.mark.parametrize("src, dst", [((7, 9), (20, 31)), ((48, 64), (300, 401)), ((50, 33), (17, 12))])
def test_resize_bilinear_equals_torch(src, dst) -> None:
    x = np.random.default_rng(1).random(src, dtype=np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None, None], size=dst, mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(resize_bilinear(x, dst), ref.numpy(), atol=5e-6, rtol=0)


@pytest.mark.parametrize("hw", [(40, 56), (37, 61), (1, 9)])
def test_upsample_mask_probs_equals_torch(hw) -> None:
    grid = (-(-hw[0] // 8), -(-hw[1] // 8))
    logits = np.random.default_rng(2).normal(0, 4, (3, *grid)).astype(np.float32)
    ref = torch_upsample(torch.from_numpy(logits), hw).numpy()
    got = numpy_upsample(logits, hw)
    assert got.shape == (3, *hw)
    np.testing.assert_allclose(got, ref, atol=5e-6, rtol=0)
    with pytest.raises(ValueError, match="does not belong"):
        numpy_upsample(logits, (hw[0] + 8, hw[1]))


def test_align_tap_by_hand() -> None:
    # 100 x 300 network input: P3 grid 13 x 38, P7 grid 1 x 3
    cells = align_tap((299.9, 99.2), (100, 300))
    assert cells == [(12, 37), (6, 18), (3, 9), (1, 4), (0, 2)]
    assert align_tap((0, 0), (100, 300)) == [(0, 0)] * 5


class _HandEngine(TapCore):
    """An engine whose tap outputs are written by hand: candidate 0 masks the left half of the network image,
    candidate 1 the right half; scores as given."""

    def __init__(self, scores: list[float], **kwargs) -> None:
        super().__init__(class_names=["thing"], **kwargs)
        self.scores = scores
        self.seen_rgb: np.ndarray | None = None

    def _set_network_image(self, rgb: np.ndarray) -> None:
        self.seen_rgb = rgb

    def _compute_tap(self, rows_cols):
        h, w = self.net_hw
        left = np.zeros((h, w), np.float32)
        left[:, : w // 2] = 0.9
        right = 0.9 - left
        cands = [TapCandidate(score=s, class_id=0, level=3 + k, box=(k * 10.0, 0.0, 40.0, 50.0))
                 for k, s in enumerate(self.scores)]
        order = sorted(range(len(cands)), key=lambda k: -cands[k].score)
        return TapOutputs(candidates=cands, order=order, mask_probs=lambda k: ((left, right)[k], 7),
                          best_score=max(self.scores))


def test_core_falls_back_to_the_candidate_that_reaches_the_tap() -> None:
    core = _HandEngine([0.8, 0.3], max_side=30, min_score=0.05, require_tap_inside=True)
    core.set_image(np.zeros((40, 60, 3), np.uint8))  # scale 0.5: network image 20 x 30
    assert core.seen_rgb.shape == (20, 30, 3) and core.net_hw == (20, 30)
    res = core.predict((50, 10))  # right half: candidate 0 (best score) masks the left half only
    assert res.found and res.level == 4 and res.score == pytest.approx(0.3)
    assert res.mask.shape == (40, 60) and res.mask[:, 32:].all() and not res.mask[:, :28].any()
    assert res.box == (20.0, 0.0, 60.0, 40.0)  # (10, 0, 40, 50) / 0.5, clipped to the 60 x 40 photo
    assert res.macs == 7
    left = core.predict((5, 10))
    assert left.level == 3 and left.mask[:, :28].all()
    anywhere = _HandEngine([0.8, 0.3], max_side=30, min_score=0.05, require_tap_inside=False)
    anywhere.set_image(np.zeros((40, 60, 3), np.uint8))
    assert anywhere.predict((50, 10)).level == 3


def test_core_says_nothing_here() -> None:
    core = _HandEngine([0.04, 0.01], max_side=64, min_score=0.05, require_tap_inside=True)
    core.set_image(np.zeros((20, 30, 3), np.uint8))
    res = core.predict((3, 3))
    assert not res.found and not res.mask.any() and "0.040 < threshold 0.05" in res.reason
    with pytest.raises(ValueError, match="outside"):
        core.predict((30, 3))
