"""Rectangles on a feature grid.

A :class:`Rect` is a half-open window ``rows [r0, r1) x cols [c0, c1)`` over the last two dimensions of a tensor
(``(row, col)`` order, as everywhere inside feature grids). A window may overhang the map (negative start or end past
the size): that overhang is exactly the part a layer's zero padding supplies in the full run.
"""

from __future__ import annotations

from typing import NamedTuple


class Rect(NamedTuple):
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        return self.r1 - self.r0

    @property
    def width(self) -> int:
        return self.c1 - self.c0

    @property
    def area(self) -> int:
        return max(0, self.height) * max(0, self.width)

    def is_empty(self) -> bool:
        return self.r1 <= self.r0 or self.c1 <= self.c0

    def union(self, other: Rect | None) -> Rect:
        """Smallest rectangle covering both (the paper's bounding-box approximation of eq. 4)."""
        if other is None:
            return self
        return Rect(min(self.r0, other.r0), max(self.r1, other.r1), min(self.c0, other.c0), max(self.c1, other.c1))

    def clip(self, height: int, width: int) -> Rect:
        """The part of this window inside a ``height x width`` map."""
        return Rect(max(0, self.r0), min(height, self.r1), max(0, self.c0), min(width, self.c1))

    def contains(self, other: Rect) -> bool:
        return self.r0 <= other.r0 and other.r1 <= self.r1 and self.c0 <= other.c0 and other.c1 <= self.c1

    def overhang(self, height: int, width: int) -> tuple[int, int, int, int]:
        """How far the window sticks out of the map: ``(left, right, top, bottom)`` (``F.pad`` order)."""
        return (max(0, -self.c0), max(0, self.c1 - width), max(0, -self.r0), max(0, self.r1 - height))

    @staticmethod
    def full(height: int, width: int) -> Rect:
        return Rect(0, height, 0, width)

    @staticmethod
    def around_points(points: list[tuple[int, int]]) -> Rect:
        """Bounding rectangle of ``(row, col)`` points."""
        rows = [p[0] for p in points]
        cols = [p[1] for p in points]
        return Rect(min(rows), max(rows) + 1, min(cols), max(cols) + 1)
