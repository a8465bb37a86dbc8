"""The page's "on this device" mode in real headless Chromium (Debian's /usr/bin/chromium through Playwright), with a
phone-sized touch viewport (390x844) and the app's own headers (COOP/COEP and its CSP enforced: the page's
scripts, the worker and onnxruntime-web's WebAssembly must run under them).

- Taps on the bundled photos give the same mask as the server's ``/api/segment`` for the same photo and tap
  (IoU >= 0.99; the server here runs without boundary refinement, ``tracenet.load(refine="none")``: the device
  mode has no OpenCV and shows the network's own mask; both zoom in on small objects, and two taps must zoom),
  while no request reaches the segmentation, image or edit endpoints (every request is recorded).
- The photo the network sees in the page equals ``tracenet.io.fit_long_side`` in Python, byte for byte.
- A cut-out downloads with alpha equal to the mask (edge softness 0), and feathered alpha stays inside / outside.
- Bad input: an unreadable file and a photo over the pixel limit get a clear message; a browser without
  WebAssembly falls back to the server with the reason shown.

Needs: ``pip install playwright`` and ``apt-get install -y chromium`` (never ``playwright install``).
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app.test_app_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium: apt-get install -y chromium"),
]
pytest.importorskip("onnxruntime", reason="the server's comparison needs nothing more, the export check needs onnx")

EXAMPLES = Path(__file__).resolve().parents[2] / "tracenet" / "examples"
# (photo, taps as fractions of its displayed size); the cat's second tap finds nothing (the "nothing here" path);
# the astronaut's second and third taps zoom in on a small object (the zoom-in pass, both modes); the coffee's second
# zooms too, but the crop's answer lies mostly outside the first answer, so the first one stands
TAPS = {"cat.png": [(0.55, 0.55), (0.9, 0.1)], "coffee.png": [(0.5, 0.6), (0.35, 0.65)],
        "astronaut.png": [(0.5, 0.3), (0.8, 0.5), (0.35, 0.95)]}
UPLOAD_ENDPOINTS = ("/api/segment", "/api/edit", "/api/images", "/api/clickable")
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


def wait(page, expr: str, timeout_s: float = 120.0) -> None:
    """Poll ``expr`` with page.evaluate (the app's CSP forbids the eval that Playwright's wait_for_function uses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expr):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {expr}; status: "
                                 f"{page.inner_text('[data-testid=status]')!r}")
        time.sleep(0.1)


def idle(page, timeout_s: float = 120.0) -> None:
    wait(page, "document.body.dataset.state === 'idle'", timeout_s)


@pytest.fixture(scope="module")
def server():
    from tests.app.conftest import LiveServer
    from tracenet.app import create_app

    pytest.importorskip("uvicorn")
    import tracenet
    from tracenet.app.device import default_export

    with LiveServer(create_app(lambda: tracenet.load(refine="none"), warm_up=True,
                               device_model=default_export())) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def phone(browser, server):
    """One phone-sized page in device mode, shared by the tests (loading the model is the slow part)."""
    context = browser.new_context(accept_downloads=True, **PHONE)
    page = context.new_page()
    page.requests = []
    page.errors = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url)
    wait(page, "document.body.dataset.ready === '1'", 240)
    assert page.evaluate("document.body.dataset.mode") == "device", page.inner_text("[data-testid=status]")
    assert page.evaluate("crossOriginIsolated"), "the app's COOP/COEP headers should make the page isolated"
    yield page
    context.close()


def server_mask(server, name: str, xy: tuple[int, int]) -> tuple[np.ndarray, dict]:
    import httpx

    with httpx.Client(base_url=server.url, timeout=300) as c:
        image_id = c.post("/api/images", data={"example": name}).json()["image_id"]
        r = c.post("/api/segment", data={"image_id": image_id, "x": xy[0], "y": xy[1], "format": "png"}).json()
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r["mask_png"])))) > 127, r


def page_mask(page, index: int = -1) -> np.ndarray:
    w, h, data = page.evaluate(
        f"""() => {{ const s = window.tracenetPage, e = s.selection.at({index});
        let b = ""; for (const v of e.mask) b += String.fromCharCode(v);
        return [s.image.width, s.image.height, btoa(b)]; }}"""
    )
    return np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(h, w).astype(bool)


def open_example(page, name: str) -> None:
    page.click(f"[data-testid='example-{name}']")
    wait(page, f"!!window.tracenetPage.image && window.tracenetPage.image.name === '{name}'")
    idle(page)


def touch(page, fx: float, fy: float) -> tuple[int, int]:
    """Tap the photo with a finger at a fraction of its displayed size; returns the tap in image pixels."""
    before = page.evaluate("window.tracenetPage.tapCount")
    box = page.locator("[data-testid=photo]").bounding_box()
    page.touchscreen.tap(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    wait(page, f"window.tracenetPage.tapCount > {before} && document.body.dataset.state === 'idle'")
    return tuple(page.evaluate("(() => { const e = window.tracenetPage.selection.at(-1); return [e.x, e.y]; })()"))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_device_taps_equal_the_server_and_upload_nothing(phone, server, capsys):
    from tracenet.io import fit_long_side, load_image

    rows = []
    zoomed = 0
    for name, taps in TAPS.items():
        phone.requests.clear()
        open_example(phone, name)
        if name == "cat.png":  # the network input in the page is Python's, byte for byte
            net = phone.evaluate("window.tracenetPage.device.networkImage()")
            ref, _ = fit_long_side(load_image(EXAMPLES / name), 384)
            got = np.asarray(net["data"], dtype=np.uint8).reshape(net["height"], net["width"], 3)
            assert np.array_equal(got, ref)
        for fx, fy in taps:
            xy = touch(phone, fx, fy)
            mask = page_mask(phone)
            latency = phone.inner_text("[data-testid=latency]")
            assert "on this device" in latency and "ms" in latency
            sent = [u for u in phone.requests if any(e in u for e in UPLOAD_ENDPOINTS)]
            assert not sent, f"device mode sent requests to the server: {sent}"
            ref, reply = server_mask(server, name, xy)
            found = phone.evaluate("window.tracenetPage.selection.at(-1).found")
            zoomed += bool(phone.evaluate("window.tracenetPage.selection.at(-1).zoomWindow"))
            assert found == reply["found"], (name, xy, reply.get("reason"))
            score = iou(mask, ref)
            rows.append(f"{name} {xy}: IoU {score:.4f}, {int(mask.sum())} vs {int(ref.sum())} px")
            assert score >= 0.99, rows[-1]
    assert any("cat.png" in r for r in rows) and not phone.errors, phone.errors
    assert zoomed >= 2, f"the page zoomed in on {zoomed} taps, expected the two small objects"
    with capsys.disabled():
        print("\n  " + "\n  ".join(rows))


def test_device_cutout_alpha_is_the_mask(phone):
    open_example(phone, "cat.png")
    touch(phone, 0.55, 0.55)
    mask = page_mask(phone)
    assert mask.any()
    for feather in ("0", "1.5"):
        phone.evaluate(f"document.getElementById('feather').value = '{feather}'")
        old = phone.get_attribute("[data-testid=download]", "href") or ""
        phone.requests.clear()
        phone.click("[data-testid=effect-cutout]")
        wait(phone, f"document.querySelector('[data-testid=download]').href.startsWith('blob:') && "
                    f"document.querySelector('[data-testid=download]').href !== '{old}'")
        with phone.expect_download() as info:
            phone.click("[data-testid=download]")
        assert info.value.suggested_filename == "cat-cutout.png"
        cut = Image.open(info.value.path())
        cut.load()
        assert cut.mode == "RGBA" and cut.size == (451, 300)
        alpha = np.asarray(cut)[..., 3]
        if feather == "0":
            assert np.array_equal(alpha, np.where(mask, 255, 0).astype(np.uint8))
        else:  # feathered: opaque only inside the mask, transparent only outside, the edge in between
            assert not (alpha[~mask] == 255).any() and not (alpha[mask] == 0).any()
            assert 0 < ((alpha > 0) & (alpha < 255)).sum() < mask.size
        assert not [u for u in phone.requests if any(e in u for e in UPLOAD_ENDPOINTS)]


def test_device_bad_input_gets_a_clear_message(phone, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a picture at all")
    phone.set_input_files("[data-testid=file-input]", str(bad))
    wait(phone, "document.getElementById('status').classList.contains('error')")
    idle(phone)
    assert "notes.png: not an image this browser can read" in phone.inner_text("[data-testid=status]")
    huge = tmp_path / "huge.png"
    Image.new("L", (4100, 4000), 128).save(huge)  # 16.4 MP, a few kB
    phone.set_input_files("[data-testid=file-input]", str(huge))
    wait(phone, "document.getElementById('status').textContent.includes('MP')")
    idle(phone)
    status = phone.inner_text("[data-testid=status]")
    assert "4100x4000 = 16.4 MP is over the 16 MP" in status and "server mode" in status


def test_the_visible_switch_changes_mode(phone):
    phone.click("[data-testid=mode-server]")
    wait(phone, "document.body.dataset.mode === 'server' && document.body.dataset.state === 'idle'")
    assert "sent to the server" in phone.inner_text("[data-testid=engine-info]")
    assert phone.get_attribute("[data-testid=mode-server]", "aria-pressed") == "true"
    phone.click("[data-testid=mode-device]")
    wait(phone, "document.body.dataset.mode === 'device' && document.body.dataset.state === 'idle'")
    assert "Photos stay on this device" in phone.inner_text("[data-testid=engine-info]")


def test_without_webassembly_the_page_falls_back_to_the_server(browser, server):
    context = browser.new_context(**PHONE)
    context.add_init_script("delete globalThis.WebAssembly;")
    page = context.new_page()
    page.goto(server.url)
    wait(page, "document.body.dataset.ready === '1'", 60)
    assert page.evaluate("document.body.dataset.mode") == "server"
    status = page.inner_text("[data-testid=status]")
    assert "On-device mode is not available (this browser has no WebAssembly)" in status
    assert page.is_disabled("[data-testid=mode-device]")
    page.click("[data-testid='example-coffee.png']")
    wait(page, "!!window.tracenetPage.image")
    idle(page)
    box = page.locator("[data-testid=photo]").bounding_box()
    with page.expect_response("**/api/segment", timeout=300_000) as response:
        page.touchscreen.tap(box["x"] + 0.5 * box["width"], box["y"] + 0.6 * box["height"])
    assert response.value.status == 200
    context.close()
