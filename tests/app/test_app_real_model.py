"""The HTTP API with the bundled model (not the stand-in): the box and the clickable region it reports.

Expected values come from the library itself called directly (``tracenet.load().predict``), i.e. from outside
the app, and the clickable region from its definition (IoU of each tap's own mask with the tapped mask >= 0.9,
on the network's masks: the server refines the mask it returns, GrabCut by default, but not the many taps of the
clickable view).
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

import tracenet

CAT = (451, 300)
TAP = (40, 250)  # the cat photo's bottom-left corner: a small object for this model (134 tap cells), so the region is exact


def _mask_of(png_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_b64)))) > 127


@pytest.fixture(scope="module")
def direct():
    seg = tracenet.load()
    seg.set_image(tracenet.predictor.Path(tracenet.__file__).parent / "examples" / "cat.png")
    return seg


@pytest.fixture(scope="module")
def api():
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    with TestClient(create_app(clickable_max_taps=None, clickable_time_budget_s=None), base_url="http://127.0.0.1") as client:
        info = client.post("/api/images", data={"example": "cat.png"}).json()
        assert (info["width"], info["height"]) == CAT
        yield client, info["image_id"]


def test_segment_reports_the_models_box_and_mask_in_photo_pixels(api, direct):
    """Guards a box or mask in network-input pixels (the photo runs at 384 px, scale 384 / 451) or with x and y
    swapped: the reply equals the library's own answer for the same tap on the same photo."""
    client, image_id = api
    reply = client.post("/api/segment", data={"image_id": image_id, "x": TAP[0], "y": TAP[1]}).json()
    ref = direct.predict(TAP)
    assert reply["found"] and ref.found
    assert reply["box"] == pytest.approx(list(ref.box), abs=1e-4)
    mask = _mask_of(reply["mask_png"])
    assert mask.shape == (CAT[1], CAT[0]) and np.array_equal(mask, ref.mask)
    assert reply["area"] == int(ref.mask.sum())
    # the box is in the photo's pixels: it holds most of the mask and stays inside the photo
    x0, y0, x1, y1 = reply["box"]
    assert 0 <= x0 < x1 <= CAT[0] and 0 <= y0 < y1 <= CAT[1]
    inside = mask[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))].sum()
    assert inside >= 0.9 * mask.sum()


def test_clickable_region_is_where_a_tap_gives_the_same_mask(api, direct):
    """The region the API returns equals its definition evaluated here: the mask pixels whose own tap gives a
    mask with IoU >= the threshold with the tapped mask (each pixel's prediction made directly, once per tap
    cell), at the default 0.9 and at 0.3 (this model's answers here have IoU 1, 0.44, 0.21, 0.10 or 0 with the
    tapped mask, so the two regions differ)."""
    client, image_id = api
    # the region is defined on the network's single-pass masks (refinement and the zoom pass follow them)
    with direct.refinement("none", zoom=False):
        ref = direct.predict(TAP).mask
        ious: dict = {}
        key_of = np.empty(ref.shape, dtype=object)
        for y, x in zip(*np.nonzero(ref)):
            key = key_of[y, x] = direct.tap_key((int(x), int(y)))
            if key not in ious:
                m = direct.predict((int(x), int(y))).mask
                ious[key] = (m & ref).sum() / (m | ref).sum()
    regions = []
    for threshold in (None, 0.3):
        form = {"image_id": image_id, "x": TAP[0], "y": TAP[1]}
        if threshold is not None:
            form["iou_threshold"] = threshold
        reply = client.post("/api/clickable", data=form).json()
        assert reply["exact"] and reply["n_groups"] == len(ious)
        expected = np.zeros_like(ref)
        for y, x in zip(*np.nonzero(ref)):
            expected[y, x] = ious[key_of[y, x]] >= (threshold or 0.9)
        assert 0 < expected.sum() < ref.sum(), "a trivial region: the tap cannot tell a wrong region apart"
        region = _mask_of(reply["mask_png"])
        assert np.array_equal(region, expected) and reply["area"] == int(expected.sum())
        regions.append(region)
    assert regions[1].sum() > regions[0].sum()
