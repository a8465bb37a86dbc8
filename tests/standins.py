"""A stand-in for ``TapSegmenter`` shared by the app and edit tests: flood-fills the colour region under the tap."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class FakeResult:
    """What ``TapSegmenter.predict`` returns, reduced to the fields the app and edits read."""

    mask: np.ndarray  # H x W bool
    score: float
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), exclusive ends


class FloodFillSegmenter:
    """Segments the uniformly coloured region under the tap, like a model would segment an object.

    Taps are snapped to the centre of their ``cell x cell`` cell first (like TraceNet's P3 cell), so equal
    ``tap_key`` -> equal prediction, as the real TapSegmenter promises. ``calls`` counts ``predict`` calls.
    ``score``: a number, or None for 1.0 when the region covers less than half the image, else 0.0.
    ``delay_s`` > 0 makes it deliberately *not* thread-safe, like a real stateful predictor: ``set_image`` and
    ``predict`` sleep, so two unsynchronised clients would see each other's image (``predict`` then raises).
    ``boom_at``: a tap that raises ``RuntimeError``.
    """

    def __init__(
        self,
        cell: int = 8,
        tolerance: int = 12,
        *,
        score: float | None = None,
        delay_s: float = 0.0,
        boom_at: tuple[int, int] | None = None,
    ) -> None:
        self.cell = cell
        self.tolerance = tolerance
        self.score = score
        self.delay_s = delay_s
        self.boom_at = boom_at
        self.image: np.ndarray | None = None
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        self.image = None
        time.sleep(self.delay_s)
        self.image = np.ascontiguousarray(image)

    def _snap(self, tap: tuple[int, int]) -> tuple[int, int]:
        assert self.image is not None, "set_image first"
        h, w = self.image.shape[:2]
        c = self.cell
        return int(min(tap[0] // c * c + c // 2, w - 1)), int(min(tap[1] // c * c + c // 2, h - 1))

    def tap_key(self, tap: tuple[int, int]) -> tuple[int, int]:
        return self._snap(tap)

    def predict(self, tap: tuple[int, int]) -> FakeResult:
        if self.boom_at is not None and tuple(tap) == self.boom_at:
            raise RuntimeError("simulated model failure")
        self.calls += 1
        image = self.image
        time.sleep(self.delay_s)
        if image is not self.image:
            raise AssertionError("the image changed during predict: the caller did not serialise the model")
        x, y = self._snap(tap)
        h, w = image.shape[:2]
        ff = np.zeros((h + 2, w + 2), np.uint8)
        t = (self.tolerance,) * 3
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
        cv2.floodFill(image.copy(), ff, (x, y), (0, 0, 0), t, t, flags)
        mask = ff[1:-1, 1:-1] > 0
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        score = float(mask.mean() < 0.5) if self.score is None else self.score
        return FakeResult(mask, score, box)
