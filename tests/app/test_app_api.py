"""HTTP API of the app with FastAPI's TestClient and the flood-fill stand-in segmenter."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

LOCAL = "http://127.0.0.1"  # the app answers only to loopback host names
BOX = (20, 10, 60, 40)  # the red rectangle of helpers.rect_image(), (x0, y0, x1, y1), exclusive ends


def _mask_of(reply: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["mask_png"])))) > 127


def _rect_mask(h: int = 64, w: int = 96, box=BOX) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[box[1] : box[3], box[0] : box[2]] = True
    return m


@pytest.fixture
def opened(client, helpers) -> dict:
    r = client.post(
        "/api/images", files={"file": ("rect.png", helpers.png_bytes(helpers.rect_image()), "image/png")}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_page_and_static_files_are_served_without_external_urls(client):
    page = client.get("/")
    assert page.status_code == 200 and "TraceNet" in page.text
    assert "openapi.json" in client.get("/docs").text
    for path in ("/static/app.js", "/static/app.css", "/static/api.js"):
        r = client.get(path)
        assert r.status_code == 200
        # no CDN: the page must work offline
        assert not re.search(r"https?://|[\"'(]//", r.text), path
    assert not re.search(r"https?://|[\"'(]//", page.text)
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/api/segment", "/api/edit", "/api/images"}


def test_examples_are_listed_and_open(client):
    names = [e["name"] for e in client.get("/api/examples").json()["examples"]]
    assert {"cat.png", "coffee.png", "astronaut.png"} <= set(names)
    assert client.get("/api/examples/cat.png").headers["content-type"] == "image/png"
    info = client.post("/api/images", data={"example": "cat.png"}).json()
    assert (info["width"], info["height"]) == (451, 300)
    shown = Image.open(io.BytesIO(client.get(info["url"]).content))
    assert shown.size == (451, 300)
    assert client.post("/api/images", data={"example": "../pyproject.toml"}).status_code == 404


def test_segment_happy_path_png(client, opened):
    r = client.post("/api/segment", data={"image_id": opened["image_id"], "x": 30, "y": 20})
    assert r.status_code == 200, r.text
    reply = r.json()
    np.testing.assert_array_equal(_mask_of(reply), _rect_mask())
    assert reply["box"] == [20.0, 10.0, 60.0, 40.0] and reply["score"] == pytest.approx(0.9)
    assert reply["tap"] == [30, 20] and reply["area"] == 40 * 30
    assert reply["latency_ms"] >= 0 and reply["server_ms"] >= reply["latency_ms"]
    assert "polygons" not in reply and "rle" not in reply
    again = client.post("/api/segment", data={"image_id": opened["image_id"], "x": 31.7, "y": 22}).json()
    assert again["cached"] and again["latency_ms"] == 0  # same 8 px cell: same tap_key


def test_segment_all_formats(client, opened):
    from pycocotools import mask as mask_utils

    reply = client.post(
        "/api/segment", data={"image_id": opened["image_id"], "x": 30, "y": 20, "format": "all"}
    ).json()
    expected = _rect_mask()
    np.testing.assert_array_equal(_mask_of(reply), expected)
    rle = dict(reply["rle"], counts=reply["rle"]["counts"].encode())
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), expected)
    assert reply["rle"]["size"] == [64, 96]
    (poly,) = reply["polygons"]
    xs, ys = zip(*poly, strict=True)
    assert (min(xs), min(ys), max(xs), max(ys)) == (20, 10, 59, 39)
    only = client.post(
        "/api/segment", data={"image_id": opened["image_id"], "x": 30, "y": 20, "format": "rle"}
    )
    assert set(only.json()) & {"mask_png", "polygons", "rle"} == {"rle"}
    bad = client.post(
        "/api/segment", data={"image_id": opened["image_id"], "x": 30, "y": 20, "format": "svg"}
    )
    assert bad.status_code == 422 and "png, polygon, rle" in bad.json()["detail"]


def test_segment_with_an_uploaded_image_opens_it(client, helpers):
    files = {"image": ("a.jpg", helpers.png_bytes(helpers.rect_image(), "JPEG"), "image/jpeg")}
    reply = client.post("/api/segment", data={"x": 30, "y": 20}, files=files).json()
    assert reply["image_id"] and reply["area"] > 500  # JPEG noise trims the flood fill a little
    assert (
        client.post("/api/segment", data={"image_id": reply["image_id"], "x": 5, "y": 5}).status_code == 200
    )


@pytest.mark.parametrize(("x", "y"), [(96, 10), (-1, 10), (10, 64), (10, -0.5), (1e9, 3), ("nan", 3)])
def test_tap_outside_the_image_is_422_with_ranges(client, opened, x, y):
    r = client.post("/api/segment", data={"image_id": opened["image_id"], "x": x, "y": y})
    assert r.status_code == 422
    assert "96x64" in r.json()["detail"] or "finite" in r.json()["detail"]


def test_image_id_errors(client, helpers):
    r = client.post("/api/segment", data={"image_id": "deadbeef", "x": 1, "y": 1})
    assert r.status_code == 404 and "open the image again" in r.json()["detail"]
    r = client.post("/api/segment", data={"x": 1, "y": 1})
    assert r.status_code == 422 and "either an image file" in r.json()["detail"]


@pytest.mark.parametrize(
    ("name", "make", "status", "words"),
    [
        ("notes.txt", lambda h: b"this is not an image\n" * 10, 415, "not an image"),
        ("empty.png", lambda h: b"", 400, "empty"),
        (
            "cut.png",
            lambda h: h.png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[:900],
            400,
            "truncated",
        ),
        (
            "big.png",
            lambda h: h.png_bytes(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)),
            413,
            "larger than",
        ),
        ("huge.png", lambda h: h.png_bytes(np.zeros((1100, 1000, 3), np.uint8)), 413, "MP"),
        ("tiny.png", lambda h: h.png_bytes(np.zeros((2, 50, 3), np.uint8)), 422, "at least"),
    ],
)
def test_bad_uploads_are_rejected_with_clear_4xx(client, helpers, name, make, status, words):
    r = client.post("/api/images", files={"file": (name, make(helpers), "application/octet-stream")})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and name in r.json()["detail"]
    assert client.get("/api/health").json()["images"] == 0


def test_request_body_limit_also_applies_without_content_length(client):
    def chunks():
        for _ in range(50):
            yield b"x" * 20_000  # 1 MB > 2 * 200 kB + slack, streamed (chunked, no Content-Length)

    r = client.post(
        "/api/images", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_exif_orientation_is_applied(client, helpers):
    image = Image.fromarray(helpers.rect_image())  # 96 x 64
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif)
    info = client.post("/api/images", files={"file": ("rot.jpg", buf.getvalue(), "image/jpeg")}).json()
    assert (info["width"], info["height"]) == (64, 96)


@pytest.mark.parametrize("effect", ["blur", "replace", "splash", "cutout"])
def test_edit_returns_an_image_of_the_right_size(client, opened, effect):
    r = client.post("/api/edit", data={"image_id": opened["image_id"], "taps": "30,20", "effect": effect})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert f'filename="rect-{effect}.png"' in r.headers["content-disposition"]
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (96, 64) and out.mode == ("RGBA" if effect == "cutout" else "RGB")


def test_edit_cutout_alpha_and_union_of_taps(client, helpers):
    image = helpers.rect_image()
    image[45:60, 70:90] = (20, 200, 20)  # a second object
    info = client.post(
        "/api/images", files={"file": ("two.png", helpers.png_bytes(image), "image/png")}
    ).json()
    r = client.post(
        "/api/edit",
        data={"image_id": info["image_id"], "taps": "30,20; 75,50", "effect": "cutout", "feather": 0},
    )
    alpha = np.asarray(Image.open(io.BytesIO(r.content)))[..., 3]
    expected = _rect_mask()
    expected[45:60, 70:90] = True
    np.testing.assert_array_equal(alpha > 0, expected)


def test_edit_replace_colour_jpeg_and_errors(client, opened, helpers):
    data = {
        "image_id": opened["image_id"],
        "taps": "30,20",
        "effect": "replace",
        "color": "#0000ff",
        "feather": 0,
    }
    out = np.asarray(Image.open(io.BytesIO(client.post("/api/edit", data=data).content)))
    assert (out[~_rect_mask()] == (0, 0, 255)).all()
    jpeg = client.post("/api/edit", data=data | {"output": "jpeg"})
    assert (
        jpeg.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    )
    back = {"background": ("b.png", helpers.png_bytes(np.zeros((9, 12, 3), np.uint8)), "image/png")}
    with_back = client.post("/api/edit", data={k: v for k, v in data.items() if k != "color"}, files=back)
    assert (np.asarray(Image.open(io.BytesIO(with_back.content)))[~_rect_mask()] == 0).all()
    for bad, words in [
        ({"effect": "sepia"}, "choose one of"),
        ({"color": "red"}, "#rrggbb"),
        ({"taps": "30;20"}, "x1,y1;x2,y2"),
        ({"taps": "500,20"}, "outside"),
        ({"strength": 5, "effect": "blur"}, "strength"),
    ]:
        r = client.post("/api/edit", data=data | bad)
        assert r.status_code == 422 and words in str(r.json()["detail"]), (bad, r.text)


def test_clickable_region(client, opened):
    reply = client.post("/api/clickable", data={"image_id": opened["image_id"], "x": 30, "y": 20}).json()
    region = _mask_of(reply)
    mask = _rect_mask()
    assert not (region & ~mask).any() and region.sum() > 0.5 * mask.sum()
    # cells x 56..63 snap to x = 60, just right of the rectangle: those taps miss it
    assert not region[10:40, 56:60].any() and region[10:40, 20:56].all()
    assert reply["exact"] and reply["n_predictions"] == reply["n_groups"] == 6 * 4
    assert reply["tolerance"] == pytest.approx(region.sum() / mask.sum())


def test_model_error_is_500_json_and_the_server_stays_up(client, opened, segmenter):
    segmenter.boom_at = (30, 20)
    r = client.post("/api/segment", data={"image_id": opened["image_id"], "x": 30, "y": 20})
    assert r.status_code == 500 and "simulated model failure" in r.json()["detail"]
    assert (
        client.post("/api/segment", data={"image_id": opened["image_id"], "x": 45, "y": 25}).status_code
        == 200
    )


def test_model_that_fails_to_load_is_503(helpers):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    def broken():
        raise FileNotFoundError("no checkpoint at /nowhere.safetensors")

    with TestClient(create_app(broken), base_url=LOCAL, raise_server_exceptions=False) as c:
        info = c.post("/api/images", data={"example": "cat.png"}).json()
        r = c.post("/api/segment", data={"image_id": info["image_id"], "x": 10, "y": 10})
        assert r.status_code == 503 and "/nowhere.safetensors" in r.json()["detail"]


def test_lru_store_forgets_the_oldest_image(segmenter, helpers):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    with TestClient(create_app(lambda: segmenter, max_images=2), base_url=LOCAL) as c:
        ids = [c.post("/api/images", data={"example": "cat.png"}).json()["image_id"] for _ in range(3)]
        assert c.get(f"/api/images/{ids[0]}").status_code == 404
        assert c.get(f"/api/images/{ids[2]}").status_code == 200


def test_segmenter_without_tap_key_is_cached_per_pixel_and_clickable_per_cell(helpers):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    seg = helpers.FloodFillSegmenter()
    seg.tap_key = None  # like a baseline model that gives no grouping key
    with TestClient(create_app(lambda: seg), base_url=LOCAL) as c:
        png = helpers.png_bytes(helpers.rect_image())
        image_id = c.post("/api/images", files={"file": ("r.png", png, "image/png")}).json()["image_id"]
        first = c.post("/api/segment", data={"image_id": image_id, "x": 30, "y": 20}).json()
        other_pixel = c.post("/api/segment", data={"image_id": image_id, "x": 31, "y": 20}).json()
        same_pixel = c.post("/api/segment", data={"image_id": image_id, "x": 30, "y": 20}).json()
        assert not first["cached"] and not other_pixel["cached"] and same_pixel["cached"]
        reply = c.post("/api/clickable", data={"image_id": image_id, "x": 30, "y": 20}).json()
        assert reply["n_predictions"] == reply["n_groups"] <= 6 * 5  # 8 px cells over the 40 x 30 box


def test_edit_of_nothing_is_422(helpers):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    seg = helpers.FloodFillSegmenter()
    real_predict = seg.predict

    def predict_nothing(tap):
        res = real_predict(tap)
        res.mask[:] = False
        return res

    seg.predict = predict_nothing
    with TestClient(create_app(lambda: seg), base_url=LOCAL) as c:
        image_id = c.post("/api/images", data={"example": "cat.png"}).json()["image_id"]
        reply = c.post("/api/segment", data={"image_id": image_id, "x": 200, "y": 150}).json()
        assert reply["found"] is False and reply["area"] == 0 and reply["reason"]
        r = c.post("/api/edit", data={"image_id": image_id, "taps": "200,150", "effect": "blur"})
        assert r.status_code == 422 and "no object" in r.json()["detail"]
