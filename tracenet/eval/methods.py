"""The tap-to-mask interface the evaluator measures, and adapters onto it.

A *method* answers one tap with one mask. Conventions (see ``docs/ARCHITECTURE.md``):

- images are ``H x W x 3`` ``uint8`` RGB arrays;
- taps are ``(x, y)`` in image pixels, x to the right, y down, integers with ``0 <= x < W``, ``0 <= y < H``;
- masks are ``H x W`` ``bool`` arrays.

Required members: ``name``, ``set_image(image)``, ``predict((x, y))``. Optional members, found with ``getattr``:

- ``group_key((x, y)) -> Hashable``: a promise that two taps with equal keys on the current image give identical
  masks. The evaluator then predicts once per key (exact, fast mTA). For TraceNet the key is the P3 cell.
- ``predict_many(taps) -> list[mask]``: batched prediction of a list of ``(x, y)`` taps (same order).
- ``default_mta_stride: int``: the mTA pixel-grid stride to use when the user gives none (> 1 means the
  evaluator samples pixels and marks mTA as approximate).

Any function ``fn(image, (x, y)) -> mask`` becomes a method with :func:`from_callable`::

    import numpy as np
    from tracenet.eval.methods import from_callable

    def square(image: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
        '''A 41 x 41 square centred on the 8 x 8 cell that holds the tap (x, y).'''
        mask = np.zeros(image.shape[:2], bool)
        x, y = xy[0] // 8 * 8 + 4, xy[1] // 8 * 8 + 4
        mask[max(0, y - 20) : y + 21, max(0, x - 20) : x + 21] = True
        return mask

    method = from_callable(square, name="square")  # mTA: one call per pixel (or --mta-stride)
    # the mask only depends on the tap's 8 x 8 cell; saying so gives exact mTA with ~64x fewer calls
    method = from_callable(square, name="square", group_key=lambda xy: (xy[0] // 8, xy[1] // 8))
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

Tap = tuple[int, int]
MaskFn = Callable[[np.ndarray, Tap], np.ndarray]

__all__ = [
    "METHOD_NAMES",
    "CallableMethod",
    "TapMethod",
    "TraceNetMethod",
    "check_mask",
    "from_callable",
    "group_key_of",
    "make_method",
    "predict_taps",
]


@runtime_checkable
class TapMethod(Protocol):
    """A one-tap segmenter: ``set_image`` once per image, then any number of ``predict`` calls."""

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Cache per-image work. ``image``: ``H x W x 3`` uint8 RGB."""
        ...

    def predict(self, xy: Tap) -> np.ndarray:
        """Mask (``H x W`` bool) of the instance under the tap ``(x, y)`` in image pixels."""
        ...


class CallableMethod:
    """Adapter: ``fn(image, (x, y)) -> H x W mask`` as a :class:`TapMethod` (see :func:`from_callable`)."""

    def __init__(self, fn: MaskFn, *, name: str, group_key: Callable[[Tap], Hashable] | None = None) -> None:
        self.name = name
        self._fn = fn
        self._image: np.ndarray | None = None
        if group_key is not None:
            self.group_key = group_key

    def set_image(self, image: np.ndarray) -> None:
        """Remember ``image`` (``H x W x 3`` uint8 RGB) for the following ``predict`` calls."""
        self._image = image

    def predict(self, xy: Tap) -> np.ndarray:
        """``fn(image, (x, y))`` as an ``H x W`` bool mask."""
        if self._image is None:
            raise RuntimeError(f"method {self.name!r}: call set_image(image) before predict((x, y))")
        return check_mask(self._fn(self._image, xy), self._image.shape[:2], self.name)


def from_callable(
    fn: MaskFn, name: str = "callable", *, group_key: Callable[[Tap], Hashable] | None = None
) -> CallableMethod:
    """Wrap ``fn(image: HxWx3 uint8 RGB, (x, y)) -> HxW bool`` as a method (example in the module docstring).

    ``group_key`` (optional) must only map taps to equal keys when ``fn`` gives them identical masks on every
    image; the evaluator trusts it for exact mTA.
    """
    return CallableMethod(fn, name=name, group_key=group_key)


class TraceNetMethod:
    """TraceNet through the library API: ``tracenet.load(path).predict((x, y), use_rft=...)``.

    ``use_rft=True`` is the paper's TraceNet, ``use_rft=False`` the FullNet ablation (dense network on the
    whole image). ``group_key`` is the segmenter's ``tap_key((x, y))`` (the P3 cell), so mTA is exact with
    about 64x fewer predictions than pixels.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        *,
        use_rft: bool = True,
        name: str | None = None,
        segmenter: Any | None = None,
        **load_kwargs: Any,
    ) -> None:
        """``segmenter`` (optional) is an already loaded ``tracenet.load()`` object; else ``checkpoint`` is
        loaded (None = the bundled default model). ``load_kwargs`` go to ``tracenet.load`` (``refine``
        defaults to ``"none"`` and ``zoom`` to False here: evaluation measures the network's single-pass masks
        unless told otherwise)."""
        if segmenter is None:
            import tracenet  # lazy: the model stack (torch) is only needed for this method

            load_kwargs.setdefault("refine", "none")  # the network's own masks unless asked
            load_kwargs.setdefault("zoom", False)  # one pass unless asked
            segmenter = tracenet.load(checkpoint, **load_kwargs)
        self._seg = segmenter
        self.use_rft = use_rft
        self.name = name or ("tracenet" if use_rft else "fullnet")
        self._shape: tuple[int, int] | None = None
        self.selection = getattr(segmenter, "selection", None)  # "paper" / "ranker", recorded in metrics.json
        self.refine = getattr(segmenter, "refine", None)  # boundary refinement, recorded in metrics.json
        self.zoom = getattr(segmenter, "zoom", None)  # zoom-in pass, recorded in metrics.json
        self.zoom_cfg = getattr(segmenter, "zoom_cfg", None)  # its settings, recorded with it
        if callable(getattr(segmenter, "tap_key", None)):
            self.group_key = segmenter.tap_key

    def set_image(self, image: np.ndarray) -> None:
        """Run the per-image part once. ``image``: ``H x W x 3`` uint8 RGB."""
        self._seg.set_image(image)
        self._shape = image.shape[:2]

    def predict(self, xy: Tap) -> np.ndarray:
        """``H x W`` bool mask of the instance under ``(x, y)``."""
        if self._shape is None:
            raise RuntimeError(f"method {self.name!r}: call set_image(image) before predict((x, y))")
        res = self._seg.predict((int(xy[0]), int(xy[1])), use_rft=self.use_rft)
        return check_mask(res.mask, self._shape, self.name)


def check_mask(mask: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    """``mask`` as an ``H x W`` bool array; a clear error when a method returns the wrong shape."""
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"method {name!r} returned a mask of shape {arr.shape}, expected (H, W) = {tuple(shape)} "
            "(one bool per image pixel, same size as the image given to set_image)"
        )
    return arr.astype(bool, copy=False)


def group_key_of(method: Any) -> Callable[[Tap], Hashable] | None:
    """The method's optional ``group_key`` function, or None."""
    fn = getattr(method, "group_key", None)
    return fn if callable(fn) else None


def predict_taps(
    method: Any, taps: Sequence[Tap], shape: tuple[int, int], chunk: int = 16
) -> Iterator[np.ndarray]:
    """Yield masks (``H x W`` bool) for ``taps`` (``(x, y)`` each, same order), batched through
    ``predict_many`` when the method has it.

    A generator holding at most ``chunk`` masks at a time, so memory stays bounded (each mask is
    ``H x W`` bytes) however many taps an instance needs.
    """
    many = getattr(method, "predict_many", None)
    name = getattr(method, "name", type(method).__name__)
    if not callable(many):
        for t in taps:
            yield check_mask(method.predict(t), shape, name)
        return
    for i in range(0, len(taps), chunk):
        part = list(taps[i : i + chunk])
        masks = list(many(part))
        if len(masks) != len(part):
            raise ValueError(
                f"method {name!r}: predict_many got {len(part)} taps, returned {len(masks)} masks"
            )
        for m in masks:
            yield check_mask(m, shape, name)


METHOD_NAMES = ("tracenet", "fullnet", "grabcut")


def make_method(name: str, checkpoint: str | None = None, **load_kwargs: Any) -> Any:
    """Build a method by name: ``tracenet`` (RFT), ``fullnet`` (no RFT) or ``grabcut`` (OpenCV, no weights).
    ``load_kwargs`` (e.g. ``selection="paper"``) go to ``tracenet.load`` for the first two."""
    if name == "tracenet":
        return TraceNetMethod(checkpoint, use_rft=True, **load_kwargs)
    if name == "fullnet":
        return TraceNetMethod(checkpoint, use_rft=False, **load_kwargs)
    if name == "grabcut":
        if checkpoint is not None or load_kwargs:
            raise ValueError("--checkpoint / --selection do not apply to --method grabcut (it has no weights); "
                             "drop them")
        from tracenet.eval.baselines import GrabCutMethod

        return GrabCutMethod()
    raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
