"""The page's on-device zoom-in pass (tracenet/app/static/device/zoom.js) against the Python it mirrors
(:mod:`tracenet.tap.zoom`, ``TapCore._zoom_answer``), under Node: the crop window (exactly, incl. Python's
round-half-to-even), the enlarged crop (Pillow's resize, byte for byte), and the zoomed answer of the onnx engine
(same mask, same box, the same refusals of a crop's answer that misses the tap or lies mostly outside the first
answer) on decoder outputs replayed at both the photo's and the crop's network size. The app serves
the zoom's settings in ``model.json``.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.app.test_device_js import NODE, js, js_each

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js (apt-get install -y nodejs)")


def _settings():
    from tracenet.app.device import zoom_settings

    return zoom_settings()


def test_zoom_window_matches_python_on_random_and_half_way_boxes():
    from tracenet.tap.zoom import GRID, ZoomConfig, zoom_window

    rng = np.random.default_rng(0)
    cases = []
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(20, 3000, 2))
        scale = min(1.0, 384 / max(h, w))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        bw, bh = rng.uniform(0, w - x0) * rng.uniform(0, 1) ** 2, rng.uniform(0, h - y0) * rng.uniform(0, 1) ** 2
        cases.append(((x0, y0, x0 + bw, y0 + bh), h, w, scale))
    # centres whose corner lands half-way between two grid lines: Python's round() goes to the even one
    for k in range(8):
        side = 64  # a 20x20 box gives max(48, 25) -> (3 + 1) * 16
        cx = (k + 0.5) * GRID + side / 2
        cases.append(((cx - 10, cx - 10, cx + 10, cx + 10), 2000, 2000, 384 / 2000))
    cases.append(((0.0, 0.0, 10.0, 10.0), 40, 900, 384 / 900))  # photo narrower than the crop
    cases.append(((100.0, 100.0, 300.0, 300.0), 400, 400, 0.96))  # too large to gain: null
    got = js_each("zoom.js", "zoomWindow", [(list(b), h, w, 384, s, _settings()) for b, h, w, s in cases])
    want = [zoom_window(b, (h, w), 384, s, ZoomConfig()) for b, h, w, s in cases]
    assert [None if g is None else tuple(g) for g in got] == want
    assert sum(v is None for v in want) >= 1 and sum(v is not None for v in want) >= 100


@pytest.mark.parametrize("window", [(40, 32, 104, 96), (0, 0, 48, 48), (387, 100, 451, 164), (0, 252, 451, 300),
                                    (200, 0, 248, 300)])
def test_enlarged_crop_is_pillows_byte_for_byte(window):
    from tracenet.tap.zoom import enlarge_crop

    rng = np.random.default_rng(sum(window))
    rgb = (rng.integers(0, 128, (300, 451, 3)) + np.linspace(0, 127, 451)[None, :, None]).astype(np.uint8)
    out = js("zoom.js", "enlargeCrop", {"data": rgb.reshape(-1), "width": 451, "height": 300}, list(window), 384)
    ref = enlarge_crop(rgb, window, 384)
    assert (out["height"], out["width"]) == ref.shape[:2] and max(ref.shape[:2]) == 384
    assert np.array_equal(out["data"].reshape(ref.shape), ref)


def _outputs_at(net_hw: tuple[int, int], cell: tuple[int, int]) -> dict[str, np.ndarray]:
    """Decoder outputs for a tap at P3 ``cell`` on a ``net_hw`` input: five candidates with small boxes (so the
    first answer zooms) and blob masks near the tap; on a crop (a square 384x384 input) taps on every third column
    get blobs that miss the tap, and on the next column one that covers it but lies mostly outside the first
    answer (the first answer must stand both times)."""
    h, w = net_hw
    rows, cols = -(-h // 8), -(-w // 8)
    r, c = cell
    crop = (h, w) == (384, 384)
    miss = crop and c % 3 == 0
    offsets = [(9, 9), (0, 0), (1, -1), (-1, 2), (0, 1)] if not miss else [(12, 12), (-12, 10), (14, -13), (9, 9),
                                                                           (-10, -11)]
    radii = [2.0, 3.0, 1.5, 4.0, 2.5]
    if crop and c % 3 == 1:  # a crop's answer that covers the tap but reaches far outside the first answer
        offsets[1], radii[1] = (0, 29), 30.0
    yy, xx = np.mgrid[0:rows, 0:cols]
    logits = np.stack([rad ** 2 - ((yy - r - dr) ** 2 + (xx - c - dc) ** 2) for (dr, dc), rad in zip(offsets, radii)])
    centres = np.array([((c + dc + 0.5) * 8, (r + dr + 0.5) * 8) for dr, dc in offsets], np.float32)
    half = np.array(radii, np.float32)[:, None] * 8
    boxes = np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)
    return {"scores": np.array([0.9, 0.8, 0.3, 0.04, 0.5], np.float32), "boxes": boxes,
            "class_ids": np.zeros(5, np.int64), "levels": np.array([3, 3, 4, 5, 3], np.int64),
            "nms_order": np.array([0, 1, 4, 2, 3], np.int64), "nms_keep": np.array([True, True, True, False, True]),
            "ranker_scores": np.array([3.0, 2.0, 0.5, -np.inf, 1.0], np.float32),
            "mask_logits": logits.astype(np.float32)}


def _int32(outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: (v.astype(np.int32) if v.dtype in (np.int64, np.bool_) else v) for k, v in outs.items()}


def test_zoomed_answer_matches_the_onnx_engine():
    from tracenet.deploy.engine import OnnxTapSegmenter
    from tracenet.tap.core import TapCore
    from tracenet.tap.geometry import STRIDES, align_tap

    class Replay(OnnxTapSegmenter):  # the onnx engine's zoom on replayed decoder outputs
        def __init__(self):
            TapCore.__init__(self, max_side=384, min_score=0.05, require_tap_inside=True, class_names=["object"],
                             zoom=True)
            self.selection = "ranker"

        def _set_network_image(self, rgb):
            pass

        def decode(self, rows_cols):
            return _outputs_at(self.net_hw, rows_cols[0])

    photo_h, photo_w = 300, 451
    seg = Replay()
    seg.set_image(np.zeros((photo_h, photo_w, 3), np.uint8))
    net_h, net_w = seg.net_hw
    common = {"selection": "ranker", "minScore": 0.05, "requireTapInside": True}
    zoomed = stood = refused = 0
    for x, y in [(225, 150), (40, 30), (330, 240), (100, 200), (440, 290), (60, 280), (300, 20), (250, 180), (120, 60),
                 (200, 100), (380, 150), (150, 250), (20, 150), (410, 90), (270, 70), (170, 200)]:
        ref = seg.predict((x, y))
        cells = align_tap((x * seg._scale, y * seg._scale), (net_h, net_w))
        first = js("masks.js", "chooseMask", _int32(seg.decode(cells)), {
            **common, "netH": net_h, "netW": net_w, "photoH": photo_h, "photoW": photo_w, "scale": seg._scale,
            "p3Cell": list(cells[0])})
        assert first["found"], (x, y)
        window = js("zoom.js", "zoomWindow", first["box"], photo_h, photo_w, 384, seg._scale, _settings())
        assert window is not None, (x, y)  # every first answer here is small enough to zoom
        inner = seg._zoomed[tuple(window)]  # the crop's predictor in Python, same window
        inner_h, inner_w = inner.net_hw
        tx, ty = js("zoom.js", "zoomTapPoint", list(cells[0]), seg._scale, window, inner_w, inner_h, STRIDES[0])
        inner_cells = js("masks.js", "alignTap", tx, ty, inner_h, inner_w, list(STRIDES))
        inner_out = _int32(inner.decode([tuple(c) for c in inner_cells]))
        args = {**common, "innerH": inner_h, "innerW": inner_w, "innerCell": inner_cells[0], "window": window,
                "photoH": photo_h, "photoW": photo_w, "scale": seg._scale, "p3Cell": list(cells[0]),
                "firstMask": first["mask"], "minInside": _settings()["min_inside"]}
        got, loose = js_each("zoom.js", "zoomedChoice", [(inner_out, args), (inner_out, {**args, "minInside": 0})])
        if got is None:  # the first answer stands, in Python too
            stood += 1
            refused += loose is not None  # it covered the tap but lay mostly outside the first answer
            assert "zoom_window" not in ref.extras, (x, y)
            assert np.array_equal(first["mask"].reshape(photo_h, photo_w).astype(bool), ref.mask), (x, y)
            continue
        zoomed += 1
        assert ref.extras["zoom_window"] == tuple(window), (x, y)
        assert np.array_equal(got["mask"].reshape(photo_h, photo_w).astype(bool), ref.mask), (x, y)
        assert np.allclose(got["box"], ref.box, atol=1e-3) and got["score"] == pytest.approx(ref.score)
        outside = np.ones((photo_h, photo_w), bool)
        outside[window[1]:window[3], window[0]:window[2]] = False
        assert not ref.mask[outside].any()
    assert zoomed >= 3 and stood - refused >= 1 and refused >= 1, (zoomed, stood, refused)


def test_the_app_serves_the_zoom_settings_with_the_contract(tmp_path):
    """The page zooms exactly when the server's default predictor does, with the same settings."""
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    from tracenet.app import create_app
    from tracenet.app.device import default_export
    from tracenet.tap.zoom import DEFAULT_ZOOM, GRID, ZoomConfig

    for device_zoom, want in ((None, DEFAULT_ZOOM), (False, False), (True, True)):
        app = create_app(lambda: None, device_model=default_export(), device_zoom=device_zoom)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            reply = client.get("/api/device/model.json")
            assert reply.status_code == 200, reply.text
            served = reply.json()["zoom"]
        cfg = ZoomConfig()
        assert served == ({"expand": cfg.expand, "min_side": cfg.min_side, "min_gain": cfg.min_gain,
                           "cache": cfg.cache, "min_inside": cfg.min_inside, "grid": GRID} if want else None)
