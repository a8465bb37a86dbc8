"""The server's memory and time are bounded by its configuration, and other web sites cannot drive it."""

from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

LOCAL = "http://127.0.0.1"


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


def _bomb_png(w: int = 6000, h: int = 6000) -> bytes:
    """A 1-bit PNG of a few kB that decodes to w x h pixels (36 MP: ~100 MB as RGB, ~1.4 GB to edit)."""
    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_a_tiny_file_declaring_many_pixels_is_refused_before_decoding(helpers) -> None:
    from tracenet.app import create_app

    seg = helpers.FloodFillSegmenter()
    app = create_app(lambda: seg, max_request_bytes=256 << 20)
    png = _bomb_png()
    assert len(png) < 50_000
    with _client(app) as c:
        for route, data in (("/api/edit", {"taps": "5,5", "effect": "blur"}), ("/api/images", {})):
            field = "file" if route == "/api/images" else "image"
            r = c.post(route, data=data, files={field: ("bomb.png", png, "image/png")})
            assert r.status_code == 413, r.text
            assert "more than this server allows one request (256 MB)" in r.json()["detail"]
        assert seg.image is None  # the model never saw it
        health = c.get("/api/health").json()
        assert health["work_bytes"] == 0 and health["max_request_bytes"] == 256 << 20


def test_the_store_is_bounded_in_bytes_including_cached_masks(helpers) -> None:
    from tracenet.app import create_app

    image = helpers.rect_image()  # 96 x 64: 18,432 bytes of pixels, 6,144 per cached mask
    app = create_app(lambda: helpers.FloodFillSegmenter(), max_store_bytes=45_000)
    with _client(app) as c:
        ids = [c.post("/api/images", files={"file": ("a.png", helpers.png_bytes(image), "image/png")}).json()["image_id"]
               for _ in range(3)]
        assert c.get(f"/api/images/{ids[0]}").status_code == 404  # 3 x 18 kB > 45 kB: the oldest went
        assert c.get(f"/api/images/{ids[1]}").status_code == 200
        assert c.get("/api/health").json()["store_bytes"] == 2 * image.nbytes
        for x in (30, 2):  # two cached masks on the newest image: 18,432 + 12,288 + 18,432 > 45,000
            assert c.post("/api/segment", data={"image_id": ids[2], "x": x, "y": 20}).status_code == 200
        assert c.get(f"/api/images/{ids[1]}").status_code == 404
        assert c.get("/api/health").json()["store_bytes"] == image.nbytes + 2 * 64 * 96


def test_requests_share_a_byte_budget_and_wait_for_it_then_get_busy() -> None:
    from tracenet.app.limits import Busy, ByteBudget, TooBig

    budget = ByteBudget(1000, per_request=800, wait_s=0.3)
    with budget.hold() as a:
        a.add(700, "first")
        with pytest.raises(TooBig, match="more than this server allows one request"):
            a.add(200, "first, more")
        with budget.hold() as b:
            with pytest.raises(Busy, match="busy"):
                b.add(400, "second")  # 700 + 400 > 1000 for longer than wait_s
        assert budget.in_use == 700
    assert budget.in_use == 0
    with budget.hold() as c:
        c.add(800, "third")  # room again once the first request ended


def test_too_many_taps_in_one_edit_is_refused_before_any_model_run(helpers) -> None:
    from tracenet.app import create_app

    seg = helpers.FloodFillSegmenter()
    png = helpers.png_bytes(helpers.rect_image())
    with _client(create_app(lambda: seg, max_taps=4)) as c:
        taps = ";".join(f"{22 + 8 * i},20" for i in range(5))  # five different 8 px cells: five model runs
        r = c.post("/api/edit", data={"taps": taps, "effect": "blur"}, files={"image": ("a.png", png, "image/png")})
        assert r.status_code == 422 and "5 taps in one request; the limit is 4" in r.json()["detail"]
        assert seg.calls == 0
        r = c.post("/api/edit", data={"taps": taps.rsplit(";", 1)[0], "effect": "blur"},
                   files={"image": ("a.png", png, "image/png")})
        assert r.status_code == 200 and seg.calls == 4


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:7860"}, 403),  # DNS rebinding: a foreign name pointing at 127.0.0.1
        ({"Origin": "http://evil.example"}, 403),  # a cross-site form post
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://127.0.0.1"}, 200),  # the app's own page
        ({"Host": "localhost:7860", "Origin": "http://localhost:7860"}, 200),
        ({}, 200),  # curl, scripts
    ],
)
def test_host_and_origin_checks(helpers, headers, status) -> None:
    from tracenet.app import create_app

    with _client(create_app(lambda: helpers.FloodFillSegmenter())) as c:
        r = c.post("/api/images", data={"example": "cat.png"}, headers=headers)
        assert r.status_code == status, r.text
        if status == 403:
            assert "refused" in r.json()["detail"] or "answers only to" in r.json()["detail"]


def test_any_host_only_when_asked_for(helpers) -> None:
    from tracenet.app import create_app

    with _client(create_app(lambda: helpers.FloodFillSegmenter(), allowed_hosts=None)) as c:
        assert c.get("/api/health", headers={"Host": "my-box.lan:7860"}).status_code == 200
        assert c.post("/api/images", data={"example": "cat.png"},
                      headers={"Host": "my-box.lan:7860", "Origin": "http://evil.example"}).status_code == 403


def test_every_response_carries_hardening_headers(client) -> None:
    for r in (client.get("/"), client.get("/api/health"), client.get("/api/images/nope"),
              client.get("/", headers={"Host": "evil.example"})):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'self'" in csp


class BlockingSegmenter:
    """A stand-in whose predict waits until ``release`` is set, counting the threads it ran on."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: set[int] = set()
        self.image = None

    def set_image(self, image):
        self.image = image

    def predict(self, tap):
        self.threads.add(threading.get_ident())
        self.release.wait(30)
        from tests.standins import FakeResult

        mask = np.zeros(self.image.shape[:2], bool)
        mask[:4, :4] = True
        return FakeResult(mask, 0.9, (0.0, 0.0, 4.0, 4.0))


def test_health_answers_while_the_model_is_swamped_and_threads_are_bounded(helpers, live_server_cls) -> None:
    """45 segment requests wait for a blocked model (more than anyio's default 40 worker threads): health still
    answers at once, and the model saw at most max_jobs threads."""
    import httpx

    from tracenet.app import create_app

    seg = BlockingSegmenter()
    app = create_app(lambda: seg, max_jobs=3, max_threads=5)
    with live_server_cls(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        image_id = http.post("/api/images", data={"example": "cat.png"}).json()["image_id"]

        def tap(k: int) -> int:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                return own.post("/api/segment", data={"image_id": image_id, "x": 8 * k % 400, "y": 50}).status_code

        with ThreadPoolExecutor(45) as pool:
            futures = [pool.submit(tap, k) for k in range(45)]
            time.sleep(1.0)
            answer: list = []
            asker = threading.Thread(target=lambda: answer.append(http.get("/api/health", timeout=20)))
            t0 = time.monotonic()
            asker.start()
            asker.join(10)
            waited = time.monotonic() - t0
            seg.release.set()
            codes = [f.result() for f in futures]
        assert answer and answer[0].status_code == 200 and waited < 10, f"health took {waited:.1f} s"
        assert codes.count(200) == 45
        assert len(seg.threads) <= 5


def test_a_client_that_stalls_its_body_is_timed_out(helpers, live_server_cls) -> None:
    from tracenet.app import create_app

    app = create_app(lambda: helpers.FloodFillSegmenter(), body_timeout_s=1.0)
    with live_server_cls(app) as server, socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
        s.sendall(b"POST /api/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                  b"boundary=xx\r\nContent-Length: 100000\r\n\r\n--xx\r\n")
        t0 = time.monotonic()
        reply = s.recv(4096)  # raises socket.timeout if the server never answers
        assert b" 408 " in reply.split(b"\r\n")[0], reply[:200]
        assert time.monotonic() - t0 < 10


def test_a_shared_tapsegmenter_behind_the_app_answers_every_thread(helpers, live_server_cls) -> None:
    """The real TapSegmenter refuses use from a thread that did not set its image; the app hands it over
    (claim) under its lock, so concurrent requests on two images all succeed with the right image's mask."""
    import httpx
    import torch

    from tracenet.app import create_app
    from tracenet.model import build_model, preset
    from tracenet.predictor import TapSegmenter

    torch.manual_seed(0)
    cfg = preset("lite0", pretrained_backbone=False)
    seg = TapSegmenter(build_model(cfg), cfg, min_score=0.0, require_tap_inside=False)
    with live_server_cls(create_app(lambda: seg)) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        sizes = [(96, 64), (64, 80)]
        ids = [http.post("/api/images", files={"file": ("a.png", helpers.png_bytes(
            helpers.rect_image(w=w, h=h, box=(8, 8, 40, 40))), "image/png")}).json()["image_id"] for w, h in sizes]

        def tap(k: int):
            with httpx.Client(base_url=server.url, timeout=60) as own:
                r = own.post("/api/segment", data={"image_id": ids[k % 2], "x": 5 + k, "y": 7})
                return r.status_code, r.json().get("width"), r.json().get("detail")

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(tap, range(16)))
    assert all(code == 200 for code, _, _ in results), results
    assert [w for _, w, _ in results] == [sizes[k % 2][0] for k in range(16)]
