"""Fixtures for the app tests: a stand-in segmenter, images as file bytes, a TestClient and a live server."""

from __future__ import annotations

import io
import socket
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the app needs FastAPI: pip install 'tracenet[app]'")
pytest.importorskip("multipart", reason="FastAPI forms need python-multipart: pip install 'tracenet[app]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install httpx")


@dataclass
class FakeResult:
    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]


class FloodFillSegmenter:
    """Segments the uniformly coloured region under the tap (snapped to its 8 px cell, like TraceNet's P3).

    Deliberately *not* thread-safe, like a real stateful predictor: ``set_image`` and ``predict`` sleep a little
    so that two unsynchronised clients would see each other's image. ``boom_at`` makes a tap raise.
    """

    cell = 8

    def __init__(self, delay_s: float = 0.002, boom_at: tuple[int, int] | None = None) -> None:
        self.image: np.ndarray | None = None
        self.delay_s = delay_s
        self.boom_at = boom_at
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        self.image = None
        time.sleep(self.delay_s)
        self.image = np.ascontiguousarray(image)

    def tap_key(self, tap: tuple[int, int]) -> tuple[int, int]:
        return self._snap(tap)

    def _snap(self, tap: tuple[int, int]) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        c = self.cell
        return min(tap[0] // c * c + c // 2, w - 1), min(tap[1] // c * c + c // 2, h - 1)

    def predict(self, tap: tuple[int, int]) -> FakeResult:
        if self.boom_at is not None and tuple(tap) == self.boom_at:
            raise RuntimeError("simulated model failure")
        self.calls += 1
        image = self.image
        time.sleep(self.delay_s)
        if image is not self.image:
            raise AssertionError("the image changed during predict: the server did not serialise the model")
        x, y = self._snap(tap)
        h, w = image.shape[:2]
        ff = np.zeros((h + 2, w + 2), np.uint8)
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
        cv2.floodFill(image.copy(), ff, (int(x), int(y)), (0, 0, 0), (8, 8, 8), (8, 8, 8), flags)
        mask = ff[1:-1, 1:-1] > 0
        ys, xs = np.nonzero(mask)
        return FakeResult(
            mask, 0.9, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        )


def rect_image(
    w: int = 96,
    h: int = 64,
    box: tuple[int, int, int, int] = (20, 10, 60, 40),
    color: tuple[int, int, int] = (220, 40, 40),
) -> np.ndarray:
    """Grey ``h x w`` RGB image with one solid rectangle ``box = (x0, y0, x1, y1)`` (exclusive ends)."""
    image = np.full((h, w, 3), 90, np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = color
    return image


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def helpers():
    """Builders shared by the tests (a fixture, so no test imports this conftest)."""

    class H:
        FloodFillSegmenter = FloodFillSegmenter
        rect_image = staticmethod(rect_image)
        png_bytes = staticmethod(png_bytes)

    return H


@pytest.fixture
def segmenter() -> FloodFillSegmenter:
    return FloodFillSegmenter()


@pytest.fixture
def client(segmenter):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    app = create_app(lambda: segmenter, max_upload_bytes=200_000, max_pixels=1_000_000)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; ``url`` is its base URL."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server_cls():
    pytest.importorskip("uvicorn", reason="the live-server tests need uvicorn: pip install 'tracenet[app]'")
    return LiveServer
