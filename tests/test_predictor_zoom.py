"""The zoom-in pass on the bundled model: a photo's small object (the example cat shrunk to a fifth on a grey
canvas) gets a mask much closer to the one the model gives the cat at full size, TraceNet and FullNet still give
the same mask, and the whole-cat answer is left alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import tracenet
from tracenet.predictor import DEFAULT_CHECKPOINT

CAT = DEFAULT_CHECKPOINT.parent.parent / "examples" / "cat.png"
TAP = (220, 150)  # on the cat, in cat.png pixels


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def small_cat() -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """A 900 x 600 grey photo with cat.png shrunk 5x at (500, 250); the reference mask is the model's own mask of
    the full-size cat, shrunk the same way; and the tap, moved with the cat."""
    cat = Image.open(CAT).convert("RGB")
    seg = tracenet.load(refine="none")
    seg.set_image(np.asarray(cat))
    full = seg.predict(TAP).mask
    w, h = round(cat.width / 5), round(cat.height / 5)
    photo = np.full((600, 900, 3), 120, np.uint8)
    photo[250:250 + h, 500:500 + w] = np.asarray(cat.resize((w, h), Image.Resampling.BILINEAR))
    ref = np.zeros((600, 900), bool)
    ref[250:250 + h, 500:500 + w] = np.asarray(Image.fromarray(full).resize((w, h), Image.Resampling.NEAREST))
    return photo, ref, (500 + round(TAP[0] / 5), 250 + round(TAP[1] / 5))


def test_zoom_sharpens_a_small_object_and_tracenet_equals_fullnet(small_cat) -> None:
    photo, ref, tap = small_cat
    plain = tracenet.load(refine="none", zoom=False)
    plain.set_image(photo)
    one = plain.predict(tap)
    zoomer = tracenet.load(refine="none", zoom=True)
    zoomer.set_image(photo)
    traced, full = zoomer.predict(tap), zoomer.predict(tap, use_rft=False)
    assert "zoom_window" in traced.extras and traced.extras["zoom_window"] == full.extras["zoom_window"]
    assert np.array_equal(traced.mask, full.mask)
    assert _iou(traced.mask, ref) > _iou(one.mask, ref) + 0.1  # measured: 0.73 -> 0.92
    assert traced.macs < traced.full_macs  # both passes' work is counted, and the trace still saves


def test_zoom_leaves_a_large_object_alone() -> None:
    photo = np.asarray(Image.open(CAT).convert("RGB"))
    plain, zoomer = tracenet.load(refine="none", zoom=False), tracenet.load(refine="none", zoom=True)
    plain.set_image(photo)
    zoomer.set_image(photo)
    a, b = plain.predict(TAP), zoomer.predict(TAP)
    assert "zoom_window" not in b.extras and np.array_equal(a.mask, b.mask)


def test_onnx_engine_zooms_like_pytorch(small_cat) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'tracenet[onnx]')")
    photo, _, tap = small_cat
    torch_seg = tracenet.load(refine="none", zoom=True)
    onnx_seg = tracenet.load(engine="onnx", refine="none", zoom=True, threads=1)
    torch_seg.set_image(photo)
    onnx_seg.set_image(photo)
    a, b = torch_seg.predict(tap, use_rft=False), onnx_seg.predict(tap)
    assert a.extras["zoom_window"] == b.extras["zoom_window"]
    assert _iou(a.mask, b.mask) >= 0.995
