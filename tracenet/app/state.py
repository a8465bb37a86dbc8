"""Server-side state of the app: an LRU store of opened images and one model shared behind a lock.

Each opened image gets an unguessable id (``uuid4().hex``); everything a client does afterwards names that id,
so concurrent clients never see each other's images or masks. The segmenter is stateful (``set_image`` then
``predict``) and not assumed thread-safe: :class:`ModelRunner` makes "switch to this image, then predict" one
atomic step under a lock, and caches predictions per image by ``tap_key``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tracenet.app.limits import Busy, JobGate

__all__ = ["ImageEntry", "ImageStore", "ModelRunner", "ModelUnavailable", "Prediction", "UnknownImage"]


class UnknownImage(KeyError):
    """An image id that was never issued or was evicted from the LRU store."""


class ModelUnavailable(RuntimeError):
    """The segmenter factory failed; the message says why."""


@dataclass
class Prediction:
    """One tap's result, as the app keeps it.

    Attributes:
        mask: ``H x W`` bool.
        score: model confidence in [0, 1].
        box: ``(x0, y0, x1, y1)`` in image pixels.
        latency_ms: time of ``seg.predict`` alone (0 when served from the cache).
        cached: True when an earlier tap with the same ``tap_key`` answered.
        found: False when the model found no object at the tap (``mask`` is then empty).
        reason: the model's explanation when ``found`` is False.
    """

    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]
    latency_ms: float
    cached: bool = False
    found: bool = True
    reason: str = ""


@dataclass
class ImageEntry:
    """An opened image: ``image`` is ``H x W x 3`` uint8 RGB; ``name`` the file name shown to the user."""

    image_id: str
    image: np.ndarray
    name: str
    predictions: OrderedDict[Any, Prediction] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held: the pixels plus the cached masks."""
        with self.lock:
            return self.image.nbytes + sum(p.mask.nbytes for p in self.predictions.values())


class ImageStore:
    """Thread-safe LRU of :class:`ImageEntry`, bounded by count and by total bytes (pixels + cached masks); the
    most recently used image is always kept."""

    def __init__(self, *, max_images: int = 32, max_bytes: int = 512 << 20) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, ImageEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image: np.ndarray, name: str) -> ImageEntry:
        """Store ``image`` (``H x W x 3`` uint8) under a new id, evicting the least recently used if full."""
        entry = ImageEntry(uuid.uuid4().hex, image, name)
        with self._lock:
            self._entries[entry.image_id] = entry
        self.trim()
        return entry

    def trim(self) -> None:
        """Forget least recently used images until within ``max_images`` and ``max_bytes`` (called after each
        add and after masks were cached)."""
        with self._lock:
            total = sum(e.nbytes for e in self._entries.values())
            while len(self._entries) > 1 and (len(self._entries) > self.max_images or total > self.max_bytes):
                _, old = self._entries.popitem(last=False)
                total -= old.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes held by all stored images and their cached masks."""
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def get(self, image_id: str) -> ImageEntry:
        """The entry for ``image_id`` (marked recently used); :class:`UnknownImage` if absent."""
        with self._lock:
            try:
                self._entries.move_to_end(image_id)
                return self._entries[image_id]
            except KeyError:
                raise UnknownImage(image_id) from None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _as_prediction(res: Any, shape: tuple[int, int], latency_ms: float) -> Prediction:
    mask = np.asarray(res.mask)
    if hasattr(mask, "numpy") and not isinstance(mask, np.ndarray):  # a torch tensor
        mask = mask.numpy()
    mask = mask.astype(bool, copy=False)
    if mask.shape != shape:
        raise RuntimeError(f"segmenter returned a mask of shape {mask.shape} for an image of H x W {shape}")
    box = tuple(float(v) for v in np.asarray(getattr(res, "box", (0, 0, 0, 0)), dtype=float).reshape(-1)[:4])
    found = bool(getattr(res, "found", True)) and bool(mask.any())
    reason = str(getattr(res, "reason", "") or ("" if found else "the model found no object at this tap"))
    return Prediction(mask, float(getattr(res, "score", 0.0)), box, latency_ms, found=found, reason=reason)  # type: ignore[arg-type]


class ModelRunner:
    """One segmenter, built lazily by ``factory()``, used by one request at a time.

    Args:
        factory: builds the segmenter (``tracenet.load`` in the shipped app).
        max_cached_bytes: per image, at most this many bytes of cached masks (oldest dropped first).
        max_jobs: request threads at the model at once (running, or waiting for its lock); one more waits for a
            place. Few threads at the model keep memory low: each thread that runs PyTorch gets its own OpenMP
            team and allocates from its own malloc arena.
        wait_s: how long a request waits for a place, then for the model, before it gets :class:`Busy`.
    """

    def __init__(self, factory: Callable[[], Any], *, max_cached_bytes: int = 64 << 20, max_jobs: int = 2,
                 wait_s: float = 30.0) -> None:
        self._gate = JobGate(max_jobs, wait_s=wait_s)
        self._factory = factory
        self._seg: Any = None
        self._error: str | None = None
        self._current: str | None = None
        self._lock = threading.Lock()
        self.max_cached_bytes = max_cached_bytes
        self.load_ms: float | None = None

    @property
    def loaded(self) -> bool:
        """True once the segmenter has been built."""
        return self._seg is not None

    @property
    def error(self) -> str | None:
        """Why the last attempt to build the segmenter failed (None if it did not fail)."""
        return self._error

    def warm_up(self) -> None:
        """Build the segmenter now (the server calls this in a background thread at start-up)."""
        with self._lock:
            self._ensure_model()

    def _ensure_model(self) -> Any:
        if self._seg is None:
            t0 = time.perf_counter()
            try:
                self._seg = self._factory()
            except Exception as exc:  # noqa: BLE001 - reported to the client as 503
                self._error = f"{exc.__class__.__name__}: {exc}"
                raise ModelUnavailable(
                    f"the segmentation model could not be loaded ({self._error}); check the checkpoint path "
                    "given to `tracenet app --checkpoint` and the server log"
                ) from exc
            self.load_ms = (time.perf_counter() - t0) * 1e3
        return self._seg

    @contextmanager
    def session(self, entry: ImageEntry) -> Iterator[CachedSegmenter]:
        """Hold the model with ``entry``'s image set; yields a segmenter view whose predictions are cached.
        Raises :class:`Busy` when the wait for a place or for the model exceeds ``wait_s``."""
        with self._gate.enter(), self._held():
            seg = self._ensure_model()
            set_ms = 0.0
            if self._current != entry.image_id:
                self._current = None
                t0 = time.perf_counter()
                seg.set_image(entry.image)
                set_ms = (time.perf_counter() - t0) * 1e3
                self._current = entry.image_id
            claim = getattr(seg, "claim", None)  # TapSegmenter: this thread now owns the image (we hold the lock)
            if callable(claim):
                claim()
            yield CachedSegmenter(seg, entry, self.max_cached_bytes, set_ms)

    @contextmanager
    def _held(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=self._gate.wait_s):
            raise Busy(f"the model was busy for more than {self._gate.wait_s:g} s; try again in a moment")
        try:
            yield
        finally:
            self._lock.release()

    def predict(self, entry: ImageEntry, tap: tuple[int, int]) -> tuple[Prediction, float]:
        """Predict for ``tap`` ``(x, y)`` on ``entry``'s image; returns ``(prediction, set_image_ms)``."""
        with self.session(entry) as seg:
            return seg.predict_cached(tap), seg.set_image_ms


class CachedSegmenter:
    """The model with one image set, caching predictions by ``tap_key`` (valid only inside ``session``)."""

    def __init__(self, seg: Any, entry: ImageEntry, max_cached_bytes: int, set_image_ms: float) -> None:
        self._seg = seg
        self._entry = entry
        self._max_bytes = max_cached_bytes
        self.set_image_ms = set_image_ms
        key_fn = getattr(seg, "tap_key", None)
        # Exposed as ``tap_key`` only when the model has one: clickable_region then groups by it; without it,
        # it falls back to 8 px cells while the cache below stays exact (keyed by the pixel).
        self.tap_key: Callable[[tuple[int, int]], Any] | None = key_fn if callable(key_fn) else None
        groups_fn = getattr(seg, "tap_groups", None)  # vectorised tap_key, when the model has one
        if callable(groups_fn) and self.tap_key is not None:
            self.tap_groups = groups_fn

    def _cache_key(self, tap: tuple[int, int]) -> Any:
        key = self.tap_key(tap) if self.tap_key is not None else ("px", int(tap[0]), int(tap[1]))
        # refined / zoomed and network masks are cached apart
        return (getattr(self._seg, "refine", None), getattr(self._seg, "zoom", None), key)

    @contextmanager
    def unrefined(self) -> Iterator[None]:
        """Within the block, predictions are the network's own single-pass masks (no boundary refinement, no
        zoom-in pass): what decides which object a tap selects (the zoom pass never changes whether one is found),
        and about 80 ms per tap cheaper (the clickable region runs many taps)."""
        refinement = getattr(self._seg, "refinement", None)
        if not callable(refinement):
            yield
            return
        with refinement("none", zoom=False):
            yield

    def predict(self, tap: tuple[int, int]) -> Prediction:
        """Same as :meth:`predict_cached` (the name :func:`~tracenet.edit.clickable_region` calls)."""
        return self.predict_cached(tap)

    def predict_cached(self, tap: tuple[int, int]) -> Prediction:
        key = self._cache_key(tap)
        cache = self._entry.predictions
        with self._entry.lock:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return replace(hit, latency_ms=0.0, cached=True)
        t0 = time.perf_counter()
        res = self._seg.predict((int(tap[0]), int(tap[1])))
        ms = (time.perf_counter() - t0) * 1e3
        h, w = self._entry.image.shape[:2]
        pred = _as_prediction(res, (h, w), ms)
        with self._entry.lock:
            cache[key] = pred
            limit = max(1, self._max_bytes // max(1, h * w))
            while len(cache) > limit:
                cache.popitem(last=False)
        return pred
