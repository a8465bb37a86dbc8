"""The predictor core every engine shares: set an image once, then tap as often as you like.

:class:`TapCore` owns everything that is not the network: loading and resizing the photo, checking and aligning
taps, ``tap_key``, choosing among the engine's candidates (score threshold, "the mask must reach the tap"
fallback), resizing masks back to the photo and the result. An engine subclasses it and implements two hooks:

- ``_set_network_image(rgb)``: the photo at network size, ``HxWx3 uint8`` RGB;
- ``_compute_tap(rows_cols, **options) -> TapOutputs``: the tap's candidates in the engine's order of preference
  and a way to get each one's mask probabilities.

Threads: a predictor holds one image, so it serves one thread at a time. The image belongs to the thread that
called ``set_image``; ``predict`` / ``tap_key`` / ``image`` from another thread raise :class:`ConcurrentUseError`
instead of answering about someone else's photo, and so does any call made while another thread is inside
``set_image`` / ``predict``. Give each thread its own predictor, or serialise ``set_image`` + ``predict`` under your
own lock and call :meth:`TapCore.claim` when the thread changes (what the web app does).

Nothing here imports torch.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracenet.io import fit_long_side, load_image
from tracenet.tap.geometry import STRIDES, align_tap
from tracenet.tap.masks import DeferredMaskProbs, dense_probs, resize_bilinear
from tracenet.tap.zoom import ZoomConfig, enlarge_crop, share_inside, zoom_window

MIN_MAX_SIDE = 32  # the smallest network input side a predictor accepts (P7 needs a few pixels to exist)


class ConcurrentUseError(RuntimeError):
    """A predictor was used from a thread that does not own its image, or by two threads at once."""


@dataclass
class TapResult:
    """What one tap gives.

    ``mask`` is ``HxW bool`` at the size of the image given to ``set_image``; ``box`` is ``(x0, y0, x1, y1)`` in
    its pixels; ``found`` is False when nothing scores above the threshold or no candidate's mask covers the tap
    (then ``mask`` is empty and ``reason`` says why). ``macs`` / ``full_macs`` count the network work of this tap
    and of a full run (0 where an engine does not count); ``latency_ms`` is wall time.
    """

    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]
    found: bool = True
    class_id: int = 0
    class_name: str = "object"
    level: int = 0
    reason: str = ""
    macs: int = 0
    full_macs: int = 0
    latency_ms: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class TapCandidate:
    """One candidate as the core reads it (``tracenet.model.postprocess.Candidate`` has the same fields).

    ``box`` is ``(x0, y0, x1, y1)`` in network-input pixels; ``level`` is 3..7."""

    score: float
    class_id: int
    level: int
    box: tuple[float, float, float, float]


@dataclass
class TapOutputs:
    """What an engine computes for one tap.

    Attributes:
        candidates: objects with ``score``, ``class_id``, ``level``, ``box`` (see :class:`TapCandidate`).
        order: indices into ``candidates``, most preferred first (the paper's NMS survivors by score, or the
            ranker's order); the core skips those scoring below ``min_score``.
        mask_probs: ``k -> (probs, macs)``: candidate ``k``'s mask probabilities at network-input size
            (``[H, W]`` float, numpy or torch, or a :class:`~tracenet.tap.masks.DeferredMaskProbs` that upsamples
            when asked) and the MACs spent computing them.
        best_score: the highest score of all candidates (for the "nothing here" message).
        macs, full_macs: network work of this tap and of a full run.
        rank_scores: the ranker's score per candidate, when a ranker chose the order.
    """

    candidates: Sequence[Any]
    order: list[int]
    mask_probs: Callable[[int], tuple[Any, int]]
    best_score: float
    macs: int = 0
    full_macs: int = 0
    rank_scores: Sequence[float] | None = None


class TapCore:
    """Engine-independent half of a tap predictor (see the module docstring for the two engine hooks).

    Args:
        max_side: photos whose long side exceeds this are resized for the network; masks come back at full size.
        min_score: candidates scoring below this are never chosen; none left gives ``found=False``.
        require_tap_inside: fall back to the next candidate when the chosen mask does not reach the tap (any
            pixel of the tap's 8x8 P3 cell, so equal ``tap_key`` -> equal answer).
        class_names: names of the class ids.
        refine: boundary refinement of the chosen mask (:mod:`tracenet.refine`: ``"none"``, ``"guided"``,
            ``"grabcut"``), with settings ``refine_cfg``; candidate choice and the "covers the tap" test use the
            unrefined mask.
        zoom: segment small objects again on a crop around the first answer, enlarged to the network's size
            (:mod:`tracenet.tap.zoom`), with settings ``zoom_cfg``; refinement applies to the zoomed answer.
    """

    def __init__(self, *, max_side: int, min_score: float, require_tap_inside: bool,
                 class_names: Sequence[str], refine: str = "none", refine_cfg: Any = None, zoom: bool = False,
                 zoom_cfg: ZoomConfig | None = None) -> None:
        if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < MIN_MAX_SIDE:
            raise ValueError(f"max_side must be an int >= {MIN_MAX_SIDE} (pixels), got {max_side!r}")
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 <= min_score <= 1:
            raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
        self.max_side = int(max_side)
        self.min_score = float(min_score)
        self.require_tap_inside = require_tap_inside
        self.class_names = list(class_names)
        if refine != "none":  # OpenCV is needed only to refine
            from tracenet.refine import REFINERS, RefineConfig

            if refine not in REFINERS:
                raise ValueError(f"refine must be one of {REFINERS}, got {refine!r}")
            refine_cfg = refine_cfg or RefineConfig()
        self.refine = refine
        self.refine_cfg = refine_cfg
        if not isinstance(zoom, bool):
            raise ValueError(f"zoom must be True or False, got {zoom!r}")
        self.zoom = zoom
        self.zoom_cfg = zoom_cfg or ZoomConfig()
        self._zoomed: OrderedDict[tuple[int, int, int, int], TapCore] = OrderedDict()  # crop window -> predictor
        self._image: np.ndarray | None = None
        self._net_hw: tuple[int, int] = (0, 0)
        self._scale = 1.0
        self._busy = threading.Lock()  # held by set_image / predict; a second thread is refused, never queued
        self._owner: int | None = None  # thread id that called set_image

    # ------------------------------------------------------------------------------------------------ threads
    @contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUseError(
                f"{type(self).__name__}.{what}() was called while another thread is inside set_image() or "
                "predict(); a predictor serves one thread at a time: give each thread its own (tracenet.load()) "
                "or serialise set_image + predict under a lock")
        try:
            yield
        finally:
            self._busy.release()

    def claim(self) -> None:
        """Make the calling thread the owner of the current image (for callers that serialise set_image +
        predict under their own lock across threads, like the web app)."""
        with self._exclusive("claim"):
            self._owner = threading.get_ident()

    # ------------------------------------------------------------------------------------------- engine hooks
    def _set_network_image(self, rgb: np.ndarray) -> None:
        """Take the photo at network size (``HxWx3 uint8`` RGB) and drop what the previous image computed."""
        raise NotImplementedError

    def _compute_tap(self, rows_cols: list[tuple[int, int]], **options: Any) -> TapOutputs:
        """The tap's candidates; ``rows_cols`` are its aligned ``(row, col)`` cells on P3..P7."""
        raise NotImplementedError

    def _resize_probs(self, probs: Any, hw: tuple[int, int]) -> Any:
        """Bilinear resize (``align_corners=False``) of ``[h, w]`` probabilities to ``hw``; engines may use
        their own kernel of the same formula."""
        return resize_bilinear(np.asarray(probs, dtype=np.float32), hw)

    # -------------------------------------------------------------------------------------------------- image
    def set_image(self, image: Any) -> None:
        """Prepare an image (``HxWx3 uint8`` RGB array, path or PIL image); clears the per-image caches.
        The calling thread becomes the image's owner (see the module docstring); if loading fails, no image is
        left set (a later ``predict`` says so rather than answering about the previous photo)."""
        with self._exclusive("set_image"):
            self._owner = threading.get_ident()
            self._image = None
            self._set_image(image)

    def _set_image(self, image: Any) -> None:
        rgb = load_image(image)
        net_rgb, scale = fit_long_side(rgb, self.max_side)
        net_rgb = np.array(net_rgb, copy=True)
        self._zoomed = OrderedDict()
        self._set_network_image(net_rgb)
        self._image, self._scale = rgb, scale
        self._net_hw = (net_rgb.shape[0], net_rgb.shape[1])

    @property
    def image(self) -> np.ndarray:
        """The current photo as ``HxWx3 uint8`` RGB (EXIF rotation applied), at its original size."""
        self._require_image()
        return self._image

    @property
    def image_hw(self) -> tuple[int, int]:
        self._require_image()
        return self._image.shape[0], self._image.shape[1]

    @property
    def net_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the network input (the photo resized to ``max_side``)."""
        self._require_image()
        return self._net_hw

    def tap_key(self, xy: tuple[float, float]) -> Hashable:
        """Taps with equal keys give identical predictions: the aligned cells on all five levels."""
        return tuple(align_tap(self._to_net(xy), self.net_hw))

    def tap_groups(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`tap_key`: ``int64`` per tap ``(xs[i], ys[i])`` (image pixels), equal exactly where
        the keys are equal. The tap's P3 cell decides its key (every coarser cell contains it), so the group is
        that cell's index ``row * W_3 + col``."""
        self._require_image()
        s = STRIDES[0]
        net_h, net_w = self.net_hw
        rows = np.clip(np.floor(np.asarray(ys, dtype=np.float64) * self._scale).astype(np.int64) // s, 0,
                       -(-net_h // s) - 1)
        cols = np.clip(np.floor(np.asarray(xs, dtype=np.float64) * self._scale).astype(np.int64) // s, 0,
                       -(-net_w // s) - 1)
        return rows * (-(-net_w // s)) + cols

    @contextmanager
    def refinement(self, method: str, zoom: bool | None = None) -> Iterator[None]:
        """Within the block, refine with ``method`` (e.g. ``"none"``: the network's own masks, as the clickable
        region uses them) and, unless ``zoom`` is None, zoom or not; the previous settings are restored
        afterwards."""
        if method != "none":
            from tracenet.refine import REFINERS, RefineConfig

            if method not in REFINERS:
                raise ValueError(f"refine must be one of {REFINERS}, got {method!r}")
            if self.refine_cfg is None:
                self.refine_cfg = RefineConfig()
        before = self.refine, self.zoom
        self.refine = method
        if zoom is not None:
            self.zoom = bool(zoom)
        try:
            yield
        finally:
            self.refine, self.zoom = before

    # --------------------------------------------------------------------------------------------------- taps
    def predict(self, xy: tuple[float, float], **options: Any) -> TapResult:
        """Segment the object under the tap ``(x, y)`` (image pixels; fractions are floored to the pixel that
        contains them); ``options`` go to the engine."""
        with self._exclusive("predict"):
            return self._predict(xy, **options)

    def _predict(self, xy: tuple[float, float], **options: Any) -> TapResult:
        start = time.perf_counter()
        result, probs, cell = self._answer(self._to_net(xy), options)
        if result.found and self.zoom:
            zoomed = self._zoom_answer(result, options)
            if zoomed is not None:
                result, probs, cell = zoomed
        if result.found:
            result.mask = self._refined(probs, result.mask, cell)
        result.latency_ms = (time.perf_counter() - start) * 1e3
        return result

    def _answer(self, net_xy: tuple[float, float], options: dict[str, Any]) -> tuple[TapResult, Any, float]:
        """The unrefined answer at the network-input point ``net_xy``, its mask probabilities (network-input or
        photo size, possibly :class:`~tracenet.tap.masks.DeferredMaskProbs`; None when nothing was found) and the
        mask head's cell in photo pixels."""
        rows_cols = align_tap(net_xy, self.net_hw)
        out = self._compute_tap(rows_cols, **options)
        result, probs = self._choose(out, rows_cols[0])
        result.macs = out.macs + result.extras.pop("mask_macs", 0)
        result.full_macs = out.full_macs
        result.extras["p3_cell"] = rows_cols[0]
        return result, probs, STRIDES[0] / self._scale

    def _choose(self, out: TapOutputs, p3_cell: tuple[int, int]) -> tuple[TapResult, Any]:
        """The first candidate in the engine's order that scores at least ``min_score`` and (with
        ``require_tap_inside``) whose photo-size mask reaches the tap's P3 cell, unrefined, with its network-size
        probabilities as the engine gave them (None when there is none)."""
        order = [k for k in out.order if out.candidates[k].score >= self.min_score]
        if not order:
            return self._below_threshold(out.best_score), None
        cell = self._cell_pixels(p3_cell)
        for k in order:
            probs, mask_macs = out.mask_probs(k)
            mask = self._image_mask(probs)
            if not self.require_tap_inside or mask[cell].any():
                result = self._result(out.candidates[k], mask, mask_macs)
                if out.rank_scores is not None:
                    result.extras["ranker_score"] = float(out.rank_scores[k])
                return result, probs
        return self._uncovered(out.candidates[order[0]]), None

    def _zoom_answer(self, first: TapResult, options: dict[str, Any]) -> tuple[TapResult, Any, float] | None:
        """The answer of the zoom-in pass (:mod:`tracenet.tap.zoom`) after the first answer ``first``, or None
        (the first answer stands) when the object is too large to gain from it, or the crop's answer is nothing,
        does not reach the tap's P3 cell (with ``require_tap_inside``) or lies mostly outside the first answer's
        mask (``zoom_cfg.min_inside``). The crop is tapped at the centre of the
        tap's P3 cell (measured on coco-mini val: better than the first mask's pixel nearest it), so every tap of
        one :meth:`tap_key` zooms alike."""
        window = zoom_window(first.box, self.image_hw, self.max_side, self._scale, self.zoom_cfg)
        if window is None:
            return None
        x0, y0, x1, y1 = window
        inner = self._zoom_predictor(window)
        fy, fx = inner.net_hw[0] / (y1 - y0), inner.net_hw[1] / (x1 - x0)  # enlarged crop px per photo px
        row, col = first.extras["p3_cell"]
        s = STRIDES[0]
        tap_x = min(max(((col + 0.5) * s / self._scale - x0) * fx, 0.0), inner.net_hw[1] - 1.0)
        tap_y = min(max(((row + 0.5) * s / self._scale - y0) * fy, 0.0), inner.net_hw[0] - 1.0)
        result, probs, _ = inner._answer((tap_x, tap_y), options)
        if not result.found:
            return None
        photo_probs = np.zeros(self.image_hw, dtype=np.float32)
        photo_probs[y0:y1, x0:x1] = np.asarray(inner._resize_probs(dense_probs(probs), (y1 - y0, x1 - x0)),
                                               dtype=np.float32)
        mask = photo_probs > 0.5
        if self.require_tap_inside and not mask[self._cell_pixels((row, col))].any():
            return None
        if share_inside(mask, first.mask) < self.zoom_cfg.min_inside:
            return None  # mostly outside the first answer: the neighbour, not a closer look at the same object
        bx0, by0, bx1, by1 = result.box
        result.box = (x0 + bx0 / fx, y0 + by0 / fy, x0 + bx1 / fx, y0 + by1 / fy)
        result.mask = mask
        result.macs += first.macs
        result.full_macs += first.full_macs
        result.extras.update(zoom_window=window, first_box=first.box, p3_cell=(row, col))
        return result, photo_probs, STRIDES[0] / fx

    def _zoom_predictor(self, window: tuple[int, int, int, int]) -> TapCore:
        """A predictor for the crop ``window`` enlarged to the network's size: a shallow copy of this one
        (same network and settings, no zoom, no refinement) with its own image state, kept for further taps."""
        inner = self._zoomed.get(window)
        if inner is None:
            inner = copy.copy(self)
            inner.zoom, inner.refine, inner._zoomed = False, "none", OrderedDict()
            inner._set_image(enlarge_crop(self._image, window, self.max_side))
            self._zoomed[window] = inner
            while len(self._zoomed) > self.zoom_cfg.cache:
                self._zoomed.popitem(last=False)
        self._zoomed.move_to_end(window)
        inner._owner = self._owner  # the thread that owns the photo owns its crops
        return inner

    def _below_threshold(self, score: float) -> TapResult:
        return TapResult(mask=np.zeros(self.image_hw, dtype=bool), score=score, box=(0.0, 0.0, 0.0, 0.0),
                         found=False, reason=f"nothing here: best score {score:.3f} < threshold {self.min_score}")

    def _uncovered(self, best: Any) -> TapResult:
        return TapResult(mask=np.zeros(self.image_hw, dtype=bool), score=best.score, box=self._box(best),
                         found=False, reason="nothing here: no candidate's mask covers the tap")

    def _result(self, cand: Any, mask: np.ndarray, mask_macs: int) -> TapResult:
        names = self.class_names
        return TapResult(mask=mask, score=cand.score, box=self._box(cand), class_id=cand.class_id,
                         class_name=names[cand.class_id] if cand.class_id < len(names) else str(cand.class_id),
                         level=cand.level, extras={"mask_macs": mask_macs, "candidate": cand})

    def _cell_pixels(self, p3_cell: tuple[int, int]) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the image pixels in the P3 cell ``(row, col)`` the tap aligned to (8x8 on
        the network input, mapped back to the photo). "The mask covers the tap" is tested on this cell rather than
        on the tapped pixel, so the answer depends on the tap only through :meth:`tap_key` (exact mTA grouping)."""
        h, w = self.image_hw
        row, col = p3_cell
        s = STRIDES[0]
        y0, y1 = math.floor(row * s / self._scale), math.ceil((row + 1) * s / self._scale)
        x0, x1 = math.floor(col * s / self._scale), math.ceil((col + 1) * s / self._scale)
        return slice(max(0, y0), max(1, min(h, y1))), slice(max(0, x0), max(1, min(w, x1)))

    def _photo_probs(self, probs: Any) -> Any:
        """Mask probabilities (network or photo size, or deferred) as the photo's ``[H, W]`` map (bilinear)."""
        probs = dense_probs(probs)
        if tuple(probs.shape) != tuple(self.image_hw):
            probs = self._resize_probs(probs, self.image_hw)
        return probs

    def _image_mask(self, probs: Any) -> np.ndarray:
        """``HxW bool`` mask at the photo's size from network-size probabilities (a deferred map of the photo's
        size gives its mask without upsampling the pixels that cannot pass 0.5)."""
        if isinstance(probs, DeferredMaskProbs) and tuple(probs.hw) == tuple(self.image_hw):
            return probs.above_half()
        return np.asarray(self._photo_probs(probs) > 0.5)

    def _refined(self, probs: Any, mask: np.ndarray, cell: float) -> np.ndarray:
        """The chosen candidate's photo-size ``mask`` after :attr:`refine` (from its mask probabilities at network
        or photo size; ``cell``: the mask head's cell in photo pixels)."""
        if self.refine == "none":
            return mask
        from tracenet.refine import refine_mask

        return refine_mask(self._image, np.asarray(self._photo_probs(probs), dtype=np.float32), self.refine,
                           self.refine_cfg, cell=cell)

    def _box(self, cand: Any) -> tuple[float, float, float, float]:
        h, w = self.image_hw
        x0, y0, x1, y1 = (v / self._scale for v in cand.box)
        return (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))

    # ---------------------------------------------------------------------------------------------- coordinates
    def _require_image(self) -> None:
        if self._image is None:
            raise RuntimeError("no image set: call set_image(image) before predict() / tap_key()")
        if self._owner != threading.get_ident():
            raise ConcurrentUseError(
                "this predictor's image was set by another thread; a predictor serves one thread at a time: "
                "give each thread its own (tracenet.load()), or serialise set_image + predict under a lock and "
                "call claim() after the thread changes")

    def _to_net(self, xy: tuple[float, float]) -> tuple[float, float]:
        self._require_image()
        try:
            x, y = float(xy[0]), float(xy[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"a tap is an (x, y) pair of pixel coordinates, got {xy!r}") from exc
        h, w = self.image_hw
        if not (np.isfinite(x) and np.isfinite(y)) or not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"tap ({xy[0]}, {xy[1]}) is outside the {w}x{h} image (x in [0, {w}), y in [0, {h}))")
        return x * self._scale, y * self._scale

    def _from_net(self, xy: tuple[float, float]) -> tuple[float, float]:
        return xy[0] / self._scale, xy[1] / self._scale
