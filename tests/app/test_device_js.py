"""The page's on-device pre- and post-processing (tracenet/app/static/device/*.js) against the Python code it
mirrors, run under Node (the modules are pure functions on typed arrays): the photo the network sees (Pillow's
resize, byte for byte, incl. its reduce step and vertical-first pass), alpha compositing and normalisation (bit for
bit), the mask upsampling and the candidate choice of the onnx engine (same masks), the feathered alpha of the
edits (within 1/255).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js (apt-get install -y nodejs)")
DEVICE = Path(__file__).resolve().parents[2] / "tracenet" / "app" / "static" / "device"
CALL = Path(__file__).with_name("js") / "call.mjs"
_TAGS = {np.dtype(np.uint8): "u8", np.dtype(np.int32): "i32", np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_DTYPES = {"u8": np.uint8, "u8c": np.uint8, "i32": np.int32, "f32": np.float32, "f64": np.float64}


def _enc(v):
    if isinstance(v, np.ndarray):
        return {_TAGS[v.dtype]: base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()}
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    return v


def _dec(v):
    if isinstance(v, dict):
        if len(v) == 1 and next(iter(v)) in _DTYPES:
            tag, data = next(iter(v.items()))
            return np.frombuffer(base64.b64decode(data), dtype=_DTYPES[tag])
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def js(module: str, fn: str, *args):
    """``fn(*args)`` of the device module under Node."""
    return _run({"module": str(DEVICE / module), "fn": fn, "args": _enc(list(args))})


def js_each(module: str, fn: str, calls: list[tuple]) -> list:
    """``[fn(*args) for args in calls]`` under Node, in one process."""
    return _run({"module": str(DEVICE / module), "fn": fn, "each": [_enc(list(a)) for a in calls]})


def _run(request: dict):
    job = json.dumps(request)
    out = subprocess.run([NODE, str(CALL)], input=job, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return _dec(json.loads(out.stdout))


@pytest.mark.parametrize("hw", [(300, 451), (1201, 3001), (5000, 700), (777, 1153), (100, 90), (2400, 1600)])
def test_network_image_is_pillows_byte_for_byte(hw):
    from tracenet.io import fit_long_side

    h, w = hw
    rng = np.random.default_rng(h * w)
    rgb = (rng.integers(0, 128, (h, w, 3)) + np.linspace(0, 127, w)[None, :, None]).astype(np.uint8)
    out = js("pixels.js", "fitLongSide", {"data": rgb.reshape(-1), "width": w, "height": h}, 384)
    ref, scale = fit_long_side(rgb, 384)
    got = out["image"]["data"].reshape(out["image"]["height"], out["image"]["width"], 3)
    assert out["scale"] == scale and got.shape == ref.shape
    assert np.array_equal(got, ref)


def test_alpha_compositing_and_normalisation_are_bit_exact():
    from tracenet.io.images import _composite_on_white
    from tracenet.tap.masks import IMAGENET_MEAN, IMAGENET_STD, normalize_image

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    rgba[..., 3][::3] = 255
    out = js("pixels.js", "compositeOnWhite", rgba.reshape(-1), 53, 37)
    rgb = _composite_on_white(rgba)
    assert np.array_equal(out["data"].reshape(37, 53, 3), rgb)
    norm = js("pixels.js", "normalize", {"data": rgb.reshape(-1), "width": 53, "height": 37},
              list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert np.array_equal(norm, normalize_image(rgb).reshape(-1))


def test_mask_upsampling_matches_the_python_core():
    from tracenet.tap.masks import resize_bilinear, upsample_mask_probs

    rng = np.random.default_rng(2)
    net_h, net_w, photo_h, photo_w = 255, 384, 300, 451
    logits = (rng.normal(0, 3, (32, 48))).astype(np.float32)
    probs = js("masks.js", "upsampleMaskProbs", logits.reshape(-1), net_h, net_w)
    ref = upsample_mask_probs(logits, (net_h, net_w))
    assert np.abs(probs.reshape(net_h, net_w) - ref).max() < 1e-6
    mask = js("masks.js", "photoMask", ref.reshape(-1), net_h, net_w, photo_h, photo_w)
    assert np.array_equal(mask.reshape(photo_h, photo_w).astype(bool), resize_bilinear(ref, (photo_h, photo_w)) > 0.5)


def _decoder_outputs(rng: np.random.Generator, rows: int, cols: int) -> dict[str, np.ndarray]:
    """Five candidates with blob-shaped masks at different places, as decoder.onnx returns them."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    centres = [(rows * 0.5, cols * 0.5), (rows * 0.2, cols * 0.2), (rows * 0.8, cols * 0.7), (2, 2), (rows - 3, 4)]
    logits = np.stack([8 - ((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0 for cy, cx in centres]).astype(np.float32)
    boxes = rng.uniform(0, 200, (5, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]
    return {"scores": np.array([0.6, 0.9, 0.3, 0.04, 0.5], np.float32), "boxes": boxes,
            "class_ids": np.zeros(5, np.int64), "levels": np.arange(3, 8, dtype=np.int64),
            "nms_order": np.array([1, 0, 4, 2, 3], np.int64), "nms_keep": np.array([True, True, False, True, True]),
            "ranker_scores": np.array([2.0, 1.0, 2.0, -np.inf, 0.5], np.float32), "mask_logits": logits}


@pytest.mark.parametrize("selection", ["ranker", "paper"])
def test_candidate_choice_matches_the_onnx_engine(selection):
    from tracenet.deploy.engine import OnnxTapSegmenter
    from tracenet.tap.core import TapCore
    from tracenet.tap.geometry import STRIDES

    class Replay(OnnxTapSegmenter):  # the onnx engine's choice on given decoder outputs
        def __init__(self, outputs):
            TapCore.__init__(self, max_side=384, min_score=0.05, require_tap_inside=True, class_names=["object"])
            self.selection, self.outputs = selection, outputs

        def _set_network_image(self, rgb):
            pass

        def decode(self, rows_cols):
            return self.outputs

    rng = np.random.default_rng(3)
    photo_h, photo_w = 300, 451
    seg = Replay(_decoder_outputs(rng, 32, 48))
    seg.set_image(np.zeros((photo_h, photo_w, 3), np.uint8))
    net_h, net_w = seg.net_hw
    outs = {k: (v.astype(np.int32) if v.dtype in (np.int64, np.bool_) else v) for k, v in seg.outputs.items()}
    for x, y in [(225, 150), (40, 30), (330, 240), (5, 5), (440, 290)]:
        ref = seg.predict((x, y))
        cells = [(int(y * seg._scale) // s, int(x * seg._scale) // s) for s in STRIDES]
        cells = [(min(r, -(-net_h // s) - 1), min(c, -(-net_w // s) - 1)) for (r, c), s in zip(cells, STRIDES)]
        got = js("masks.js", "chooseMask", outs, {
            "selection": selection, "minScore": 0.05, "requireTapInside": True, "netH": net_h, "netW": net_w,
            "photoH": photo_h, "photoW": photo_w, "scale": seg._scale, "p3Cell": list(cells[0])})
        assert got["found"] == ref.found and got["reason"] == ref.reason, (x, y)
        assert np.array_equal(got["mask"].reshape(photo_h, photo_w).astype(bool), ref.mask), (x, y)
        if ref.found:
            assert np.allclose(got["box"], ref.box, atol=1e-3) and got["score"] == pytest.approx(ref.score)


def test_feathered_alpha_matches_the_python_edit():
    from tracenet.edit.effects import cutout_rgba

    mask = np.zeros((90, 120), np.uint8)
    mask[20:70, 30:100] = 1
    mask[40:45, 0:30] = 1  # a thin arm reaching the border (edge pixels replicated)
    rgb = np.random.default_rng(4).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    for feather in (0.0, 1.5, 3.0):
        out = js("effects.js", "cutout", rgb.reshape(-1), mask.reshape(-1), 90, 120, {"feather": feather})
        got = out.reshape(90, 120, 4)
        ref = cutout_rgba(rgb, mask.astype(bool), feather=feather)
        assert np.array_equal(got[..., :3], ref[..., :3])
        assert np.abs(got[..., 3].astype(int) - ref[..., 3]).max() <= 1, feather


def test_page_accepts_exactly_the_export_format_python_writes():
    """device.js refuses a model.json of another format version; it must be the one the exporter writes (a
    format bump that forgets the page would break the on-device mode for every user)."""
    from tracenet.deploy.contract import FORMAT_VERSION

    source = (Path(__file__).resolve().parents[2] / "tracenet/app/static/device/device.js").read_text()
    assert f"contract.format_version !== {FORMAT_VERSION})" in source
