"""Stand-ins for the edit tests: synthetic images and a colour flood-fill segmenter with TraceNet's interface."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest


@dataclass
class FakeResult:
    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]


class FloodFillSegmenter:
    """Segments the uniformly coloured region under the tap, like a model would segment an object.

    Taps are snapped to the centre of their ``cell x cell`` cell first, so equal ``tap_key`` -> equal
    prediction, as the real TapSegmenter promises. ``calls`` counts ``predict`` calls.
    """

    def __init__(self, cell: int = 8, tolerance: int = 12) -> None:
        self.cell = cell
        self.tolerance = tolerance
        self.image: np.ndarray | None = None
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        self.image = np.ascontiguousarray(image)

    def _snap(self, tap: tuple[int, int]) -> tuple[int, int]:
        assert self.image is not None, "set_image first"
        h, w = self.image.shape[:2]
        x, y = (
            min(v // self.cell * self.cell + self.cell // 2, lim - 1)
            for v, lim in zip(tap, (w, h), strict=True)
        )
        return int(x), int(y)

    def tap_key(self, tap: tuple[int, int]) -> tuple[int, int]:
        return self._snap(tap)

    def predict(self, tap: tuple[int, int]) -> FakeResult:
        self.calls += 1
        x, y = self._snap(tap)
        h, w = self.image.shape[:2]
        ff = np.zeros((h + 2, w + 2), np.uint8)
        t = (self.tolerance,) * 3
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
        cv2.floodFill(self.image.copy(), ff, (x, y), (0, 0, 0), t, t, flags)
        mask = ff[1:-1, 1:-1] > 0
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return FakeResult(mask, float(mask.mean() < 0.5), box)


def scene(h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a solid red rectangle (the subject); returns (image, subject mask)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    image[..., 0] //= 2  # background red <= 127: never within flood-fill tolerance of the subject
    mask = np.zeros((h, w), dtype=bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    image[mask] = (200, 30, 40)
    return image, mask


@pytest.fixture
def subject_scene() -> tuple[np.ndarray, np.ndarray]:
    return scene()


@pytest.fixture
def flood_segmenter() -> FloodFillSegmenter:
    return FloodFillSegmenter()


@pytest.fixture
def segmenter_cls() -> type[FloodFillSegmenter]:
    """The stand-in class itself (a fixture, so tests need no import of this conftest)."""
    return FloodFillSegmenter


@pytest.fixture
def make_scene():
    """The :func:`scene` builder."""
    return scene
