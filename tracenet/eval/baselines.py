"""Weight-free baseline: OpenCV GrabCut seeded from one tap.

Seeding, all in a *working copy* of the image whose longer side is at most ``work_size`` pixels (INTER_AREA
downscale; GrabCut's cost grows quickly with pixel count, ~50 ms at 128 px on one CPU core):

- the tap ``(x, y)`` maps to the work pixel ``(int(x * s), int(y * s))`` (``s`` = work scale);
- probable background (``GC_PR_BGD``) everywhere, then
- probable foreground (``GC_PR_FGD``) in a window centred on the tap, ``window`` x the image size in each
  dimension (0.5: half the width and half the height; objects are of unknown size, a fixed fraction of the
  image is the neutral guess, and GrabCut may move probable labels either way),
- sure background (``GC_BGD``) on the one-pixel image border,
- sure foreground (``GC_FGD``): a disk of radius ``max(1, round(disk * min(work H, W)))`` at the tap
  (drawn last, so a tap on the border stays foreground);
- ``iterations`` rounds of ``cv2.grabCut(..., GC_INIT_WITH_MASK)`` with OpenCV's RNG reseeded to a constant
  first (GrabCut's k-means initialisation is otherwise random), so the result is deterministic;
- the foreground (sure + probable) is reduced to its 8-connected component containing the tap, and upsampled
  to the image by bilinear interpolation of that binary map, thresholded at 0.5.

Every step depends on the tap only through its work pixel, so :meth:`GrabCutMethod.group_key` is that pixel:
exact grouping for mTA. If GrabCut fails (e.g. an image too small for its GMMs) the mask is the seed disk.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracenet.eval.methods import Tap, check_mask

__all__ = ["GrabCutMethod"]

_RNG_SEED = 12345


class GrabCutMethod:
    """GrabCut from one tap (seeding in the module docstring); a :class:`~tracenet.eval.methods.TapMethod`."""

    default_mta_stride = 16  # ~50 ms a tap: exact mTA would take hours on COCO; approximate, and flagged

    def __init__(
        self,
        *,
        name: str = "grabcut",
        work_size: int = 128,
        window: float = 0.5,
        disk: float = 0.02,
        iterations: int = 3,
    ) -> None:
        if work_size < 8 or not 0 < window <= 1 or disk <= 0 or iterations < 1:
            raise ValueError(
                f"GrabCutMethod: need work_size >= 8, 0 < window <= 1, disk > 0, iterations >= 1; got "
                f"work_size={work_size}, window={window}, disk={disk}, iterations={iterations}"
            )
        self.name = name
        self.work_size = work_size
        self.window = window
        self.disk = disk
        self.iterations = iterations
        self._shape: tuple[int, int] | None = None
        self._work: np.ndarray | None = None
        self._scale = 1.0

    def set_image(self, image: np.ndarray) -> None:
        """Downscale ``image`` (``H x W x 3`` uint8 RGB) to the working size once."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"GrabCutMethod.set_image: need an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}"
            )
        h, w = image.shape[:2]
        self._shape = (h, w)
        self._scale = min(1.0, self.work_size / max(h, w))
        ww, wh = max(1, round(w * self._scale)), max(1, round(h * self._scale))
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        self._work = bgr if (ww, wh) == (w, h) else cv2.resize(bgr, (ww, wh), interpolation=cv2.INTER_AREA)

    def group_key(self, xy: Tap) -> Tap:
        """The work pixel ``(x, y)`` of the tap: equal keys give identical masks."""
        if self._work is None:
            raise RuntimeError("GrabCutMethod: call set_image(image) before group_key / predict")
        wh, ww = self._work.shape[:2]
        return min(int(xy[0] * self._scale), ww - 1), min(int(xy[1] * self._scale), wh - 1)

    def _seed(self, tx: int, ty: int) -> np.ndarray:
        assert self._work is not None
        wh, ww = self._work.shape[:2]
        seed = np.full((wh, ww), cv2.GC_PR_BGD, np.uint8)
        hw, hh = self.window * ww / 2, self.window * wh / 2
        xa, xb = max(0, int(round(tx - hw))), min(ww, int(round(tx + hw)) + 1)
        ya, yb = max(0, int(round(ty - hh))), min(wh, int(round(ty + hh)) + 1)
        seed[ya:yb, xa:xb] = cv2.GC_PR_FGD
        seed[0, :] = seed[-1, :] = cv2.GC_BGD
        seed[:, 0] = seed[:, -1] = cv2.GC_BGD
        radius = max(1, round(self.disk * min(wh, ww)))
        cv2.circle(seed, (tx, ty), radius, cv2.GC_FGD, thickness=-1)
        return seed

    def _work_mask(self, tx: int, ty: int) -> np.ndarray:
        assert self._work is not None
        seed = self._seed(tx, ty)
        try:
            cv2.setRNGSeed(_RNG_SEED)
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.grabCut(self._work, seed, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
            fg = (seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)
        except cv2.error:
            fg = self._seed(tx, ty) == cv2.GC_FGD
        _, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        lab = labels[ty, tx]
        return (labels == lab) if lab > 0 else fg

    def predict(self, xy: Tap) -> np.ndarray:
        """``H x W`` bool mask for the tap ``(x, y)`` in image pixels."""
        tx, ty = self.group_key(xy)
        assert self._shape is not None
        small = self._work_mask(tx, ty)
        h, w = self._shape
        if small.shape == (h, w):
            return small
        up = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
        return check_mask(up, (h, w), self.name)
