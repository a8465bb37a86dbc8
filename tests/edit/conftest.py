"""Stand-ins for the edit tests: synthetic images and a colour flood-fill segmenter with TraceNet's interface."""

from __future__ import annotations

import numpy as np
import pytest

from tests.standins import FloodFillSegmenter


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
