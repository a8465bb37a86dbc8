"""Fixtures for the app tests: a stand-in segmenter, images as file bytes, a TestClient and a live server."""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.standins import FloodFillSegmenter

pytest.importorskip("fastapi", reason="the app needs FastAPI: pip install 'tracenet[app]'")
pytest.importorskip("multipart", reason="FastAPI forms need python-multipart: pip install 'tracenet[app]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install httpx")


def app_segmenter(delay_s: float = 0.002, boom_at: tuple[int, int] | None = None) -> FloodFillSegmenter:
    """The flood-fill stand-in as the app tests use it: tolerance 8, score 0.9, and not thread-safe
    (``set_image`` / ``predict`` sleep ``delay_s``) so a server that does not serialise the model fails."""
    return FloodFillSegmenter(tolerance=8, score=0.9, delay_s=delay_s, boom_at=boom_at)


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
        FloodFillSegmenter = staticmethod(app_segmenter)
        rect_image = staticmethod(rect_image)
        png_bytes = staticmethod(png_bytes)

    return H


@pytest.fixture
def segmenter() -> FloodFillSegmenter:
    return app_segmenter()


@pytest.fixture
def client(segmenter):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    app = create_app(lambda: segmenter, max_upload_bytes=200_000, max_pixels=1_000_000)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
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
