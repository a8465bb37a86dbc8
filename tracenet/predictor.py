"""``TapSegmenter``: set an image once, then tap as often as you like.

>>> seg = tracenet.load()                 # bundled default model
>>> seg.set_image("photo.jpg")            # path, PIL image or HxWx3 uint8 RGB array
>>> res = seg.predict((x, y))             # tap in image pixels
>>> res.mask, res.score, res.box          # HxW bool, float, (x0, y0, x1, y1)

The traced path (default) runs the network only where the tap needs it (Receptive Field Tracer) and keeps what
it computed for the next tap on the same image; ``use_rft=False`` is FullNet, the same network run whole, which
gives the same candidate and mask.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tracenet.io import fit_long_side, load_image
from tracenet.model import (
    TraceNetConfig,
    TraceNetDense,
    align_tap,
    full_gather,
    fuse_conv_bn,
    load_checkpoint,
    normalize,
)
from tracenet.model.geometry import LEVELS, STRIDES
from tracenet.model.postprocess import (
    GATHER_KINDS,
    Candidate,
    all_candidates,
    candidate_mask_probs,
    rank_candidates,
)
from tracenet.model.tap_ranker import TapRanker, candidate_features
from tracenet.refine import REFINERS, RefineConfig, refine_mask
from tracenet.rft import ReceptiveFieldTracer, Rect, TraceCache

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "default.safetensors"
MASK_STRIDE = 8


@dataclass
class TapResult:
    """What one tap gives.

    ``mask`` is ``HxW bool`` at the size of the image given to ``set_image``; ``box`` is ``(x0, y0, x1, y1)`` in
    its pixels; ``found`` is False when nothing scores above the threshold or no candidate's mask covers the tap
    (then ``mask`` is empty and ``reason`` says why). ``macs`` / ``full_macs`` count the network work of this tap
    and of a full run; ``latency_ms`` is wall time.
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


class TapSegmenter:
    """Tap-to-mask predictor around a :class:`~tracenet.model.TraceNetDense`.

    Args:
        model: the dense network (put in eval mode here).
        cfg: its config (class names).
        max_side: images whose long side exceeds this are resized for the network; masks come back at full size.
        min_score: candidates scoring below this give ``found=False`` ("nothing here").
        mask_region: ``"image"`` runs the mask branch over the whole image (paper); ``"box"`` only over the
            predicted box plus ``box_margin`` P3 cells (less work; the mask is empty outside that window).
        require_tap_inside: fall back to the next candidate when the chosen mask does not reach the tap (any
            pixel of the tap's 8x8 P3 cell, so equal ``tap_key`` -> equal answer).
        fuse_bn: fold BatchNorm into the convolutions before them (faster; same values up to float rounding).
        ranker: a fitted :class:`~tracenet.model.tap_ranker.TapRanker` (``from_checkpoint`` takes the one stored
            in the checkpoint, if any).
        selection: ``"paper"``: NMS 0.6 over ``cls * ctr``, top-1 (the paper's rule); ``"ranker"``: every
            candidate above ``min_score`` gets its mask and the ranker picks (needs ``ranker``); ``"auto"``:
            the ranker when there is one, else the paper's rule.
        refine: boundary refinement of the chosen mask (:mod:`tracenet.refine`): ``"none"``, ``"guided"``
            (guided filter of the mask probabilities with the photo) or ``"grabcut"``; ``refine_cfg`` its
            settings. Candidate choice and the "covers the tap" test use the unrefined mask.
    """

    def __init__(self, model: TraceNetDense, cfg: TraceNetConfig, *, max_side: int = 1024, min_score: float = 0.05,
                 mask_region: str = "image", box_margin: int = 2, require_tap_inside: bool = True,
                 fuse_bn: bool = True, meta: dict[str, Any] | None = None, ranker: TapRanker | None = None,
                 selection: str = "auto", refine: str = "none", refine_cfg: RefineConfig | None = None) -> None:
        if mask_region not in ("image", "box"):
            raise ValueError(f"mask_region must be 'image' or 'box', got {mask_region!r}")
        if selection not in ("auto", "paper", "ranker"):
            raise ValueError(f"selection must be 'auto', 'paper' or 'ranker', got {selection!r}")
        if selection == "ranker" and ranker is None:
            raise ValueError("selection='ranker' needs a tap ranker; this checkpoint has none (fit one with "
                             "`python -m tracenet.train.tap_ranker`, or use selection='paper')")
        if refine not in REFINERS:
            raise ValueError(f"refine must be one of {REFINERS}, got {refine!r}")
        self.refine = refine
        self.refine_cfg = refine_cfg or RefineConfig()
        self.ranker = ranker if selection != "paper" else None
        self.selection = "ranker" if self.ranker is not None else "paper"
        # inference only: BatchNorm folded into the preceding convolutions (a copy; TraceNet and FullNet both
        # run this same folded network, so they still agree exactly)
        self.model = (fuse_conv_bn(model) if fuse_bn else model).eval()
        self.cfg = cfg
        self.meta = dict(meta or {})
        self.max_side = int(max_side)
        self.min_score = float(min_score)
        self.mask_region = mask_region
        self.box_margin = int(box_margin)
        self.require_tap_inside = require_tap_inside
        self.tracer = ReceptiveFieldTracer(self.model)
        self._image: np.ndarray | None = None
        self._x: torch.Tensor | None = None
        self._scale = 1.0
        self._cache = TraceCache()
        self._full_out: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None = None, **kwargs: Any) -> TapSegmenter:
        """Load a tracenet ``.safetensors`` checkpoint (the bundled default model when ``checkpoint`` is None)."""
        path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
        model, cfg, meta = load_checkpoint(path)
        if "max_side" in meta and "max_side" not in kwargs:
            kwargs["max_side"] = int(meta["max_side"])
        if "tap_ranker" in meta and "ranker" not in kwargs:
            try:
                kwargs["ranker"] = TapRanker.from_dict(meta["tap_ranker"])
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from err
        return cls(model, cfg, meta=meta, **kwargs)

    # ------------------------------------------------------------------------------------------------- image
    def set_image(self, image: Any) -> None:
        """Prepare an image (``HxWx3 uint8`` RGB array, path or PIL image); clears the per-image caches."""
        rgb = load_image(image)
        net_rgb, self._scale = fit_long_side(rgb, self.max_side)
        self._image = rgb
        self._x = normalize(torch.from_numpy(np.array(net_rgb, copy=True)).permute(2, 0, 1)[None])
        self._cache = TraceCache()
        self._full_out = None

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
        self._require_image()
        return self._x.shape[-2], self._x.shape[-1]

    def tap_key(self, xy: tuple[float, float]) -> Hashable:
        """Taps with equal keys give identical predictions: the aligned cells on all five levels."""
        return tuple(align_tap(self._to_net(xy), self.net_hw))

    # ------------------------------------------------------------------------------------------------- taps
    def predict(self, xy: tuple[float, float], *, use_rft: bool = True) -> TapResult:
        """Segment the object under the tap ``(x, y)`` (image pixels). ``use_rft=False`` runs FullNet."""
        start = time.perf_counter()
        net_xy = self._to_net(xy)
        rows_cols = align_tap(net_xy, self.net_hw)
        gathered, mask_feats, macs = (self._traced if use_rft else self._full)(rows_cols)
        full_macs = self._full_macs()
        if self.ranker is not None:
            result = self._ranked(gathered, rows_cols, mask_feats, use_rft)
        else:
            candidates = rank_candidates(gathered, rows_cols)
            result = self._first_covering(candidates, mask_feats, rows_cols[0], use_rft)
        result.macs = macs + result.extras.pop("mask_macs", 0)
        result.full_macs = full_macs
        result.latency_ms = (time.perf_counter() - start) * 1e3
        return result

    def _traced(self, rows_cols):
        queries: dict[str, Any] = {f"{kind}_p{lvl}": [rc] for kind in GATHER_KINDS for lvl, rc in zip(LEVELS, rows_cols)}
        if self.mask_region == "image":
            queries["mask_feats"] = None
        out = self.tracer.run(self._x, queries, self._cache)
        plan = self.tracer.last_plan
        gathered = {kind: torch.stack([out[f"{kind}_p{lvl}"][0][0, :, 0, 0] for lvl in LEVELS], dim=1)
                    for kind in GATHER_KINDS}
        mask_feats = out["mask_feats"][0] if self.mask_region == "image" else None
        return gathered, mask_feats, plan.macs

    def _full(self, rows_cols):
        macs = 0
        if self._full_out is None:
            with torch.no_grad():
                self._full_out = self.model(self._x)
            macs = self._full_macs()
        mask_feats = self._full_out["mask_feats"]
        if self.mask_region == "box":
            mask_feats = None  # cut from the full output per candidate, for an identical result
        return full_gather(self._full_out, rows_cols), mask_feats, macs

    def _full_macs(self) -> int:
        queries = {"mask_feats": None}
        return self.tracer.plan(tuple(self._x.shape), queries).full_macs

    def _first_covering(self, candidates: list[Candidate], mask_feats, p3_cell: tuple[int, int],
                        use_rft: bool) -> TapResult:
        best = candidates[0] if candidates else None
        if best is None or best.score < self.min_score:
            return self._below_threshold(best.score if best else 0.0)
        cell = self._cell_pixels(p3_cell)
        for cand in candidates:
            if cand.score < self.min_score:
                break
            probs, mask_macs = self._mask_probs(cand, mask_feats, use_rft)
            mask = self._image_mask(probs)
            if not self.require_tap_inside or mask[cell].any():
                return self._result(cand, self._refined(probs, mask), mask_macs)
        return self._uncovered(best)

    def _below_threshold(self, score: float) -> TapResult:
        return TapResult(mask=np.zeros(self.image_hw, dtype=bool), score=score, box=(0.0, 0.0, 0.0, 0.0),
                         found=False, reason=f"nothing here: best score {score:.3f} < threshold {self.min_score}")

    def _uncovered(self, best: Candidate) -> TapResult:
        return TapResult(mask=np.zeros(self.image_hw, dtype=bool), score=best.score, box=self._box(best),
                         found=False, reason="nothing here: no candidate's mask covers the tap")

    def ranker_inputs(self, gathered, rows_cols, mask_feats, use_rft: bool):
        """What the ranker sees at a tap: the candidates scoring at least ``min_score`` (all ``5 x C`` from
        :func:`~tracenet.model.postprocess.all_candidates`), their mask probabilities (``float32 [H, W]`` at
        network-input size), their ``[K, F]`` features, the MACs spent on mask features, and the best score of
        all candidates. Shared with ranker fitting (``tracenet.train.tap_ranker``) so both see the same inputs."""
        every = all_candidates(gathered, rows_cols)
        cands = [c for c in every if c.score >= self.min_score]
        probs, macs = [], 0
        for cand in cands:
            p, m = self._mask_probs(cand, mask_feats, use_rft)
            probs.append(p)
            macs += m
        feats = self.candidate_features(cands, probs, rows_cols[0]) if cands else None
        return cands, probs, feats, macs, max((c.score for c in every), default=0.0)

    def _ranked(self, gathered, rows_cols, mask_feats, use_rft: bool) -> TapResult:
        """The ranker's choice among all candidates scoring at least ``min_score`` (each gets its mask)."""
        cands, probs, feats, macs, best_score = self.ranker_inputs(gathered, rows_cols, mask_feats, use_rft)
        if not cands:
            return self._below_threshold(best_score)
        with torch.no_grad():
            ranks = self.ranker(feats)
        order = sorted(range(len(cands)), key=lambda k: (-float(ranks[k]), k))
        cell = self._cell_pixels(rows_cols[0])
        for k in order:
            mask = self._image_mask(probs[k])
            if not self.require_tap_inside or mask[cell].any():
                result = self._result(cands[k], self._refined(probs[k], mask), macs)
                result.extras["ranker_score"] = float(ranks[k])
                return result
        return self._uncovered(cands[order[0]])

    @staticmethod
    def candidate_features(cands: list[Candidate], probs: list[torch.Tensor], p3_cell: tuple[int, int]):
        """:func:`~tracenet.model.tap_ranker.candidate_features` of ``cands`` whose mask probabilities
        (``[H, W]`` at network-input size) are ``probs``; ``p3_cell`` is the tap's ``(row, col)`` on P3."""
        r, c = p3_cell
        s = STRIDES[0]
        masks = [p > 0.5 for p in probs]
        return candidate_features(
            scores=torch.tensor([x.score for x in cands]),
            cls_probs=torch.tensor([x.cls_prob for x in cands]),
            ctr_probs=torch.tensor([x.ctr_prob for x in cands]),
            boxes=torch.tensor([x.box for x in cands]),
            levels=[x.level for x in cands],
            mask_areas=torch.tensor([int(m.sum()) for m in masks]),
            covers=torch.tensor([bool(m[r * s:(r + 1) * s, c * s:(c + 1) * s].any()) for m in masks]),
        )

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

    def _mask_probs(self, cand: Candidate, mask_feats, use_rft: bool) -> tuple[torch.Tensor, int]:
        """``float32 [H, W]`` mask probabilities at network-input size, and the MACs spent on mask features."""
        net_hw = self.net_hw
        macs = 0
        if self.mask_region == "box":
            rect = self._box_window(cand)
            if use_rft:
                window = self.tracer.run(self._x, {"mask_feats": rect}, self._cache)["mask_feats"][0]
                macs = self.tracer.last_plan.macs
            else:
                window = self._full_out["mask_feats"][..., rect.r0:rect.r1, rect.c0:rect.c1]
            feats = window.new_zeros((*window.shape[:2], *self._full_grid()))
            feats[..., rect.r0:rect.r1, rect.c0:rect.c1] = window
        else:
            feats = mask_feats
        with torch.no_grad():
            probs = candidate_mask_probs(feats, cand, net_hw)
        if self.mask_region == "box":
            keep = torch.zeros_like(probs, dtype=torch.bool)
            keep[rect.r0 * MASK_STRIDE:rect.r1 * MASK_STRIDE, rect.c0 * MASK_STRIDE:rect.c1 * MASK_STRIDE] = True
            probs = torch.where(keep, probs, torch.zeros_like(probs))
        return probs, macs

    def _photo_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Network-size mask probabilities ``[h, w]`` resized (bilinear) to the photo's ``[H, W]``."""
        if tuple(probs.shape) != tuple(self.image_hw):
            probs = F.interpolate(probs[None, None], size=self.image_hw, mode="bilinear", align_corners=False)[0, 0]
        return probs

    def _image_mask(self, probs: torch.Tensor) -> np.ndarray:
        """``HxW bool`` mask at the photo's size from network-size probabilities."""
        return (self._photo_probs(probs) > 0.5).numpy()

    def _refined(self, probs: torch.Tensor, mask: np.ndarray) -> np.ndarray:
        """The chosen candidate's photo-size ``mask`` after :attr:`refine` (from its network-size ``probs``)."""
        if self.refine == "none":
            return mask
        return refine_mask(self._image, self._photo_probs(probs).numpy(), self.refine, self.refine_cfg,
                           cell=MASK_STRIDE / self._scale)

    def _full_grid(self) -> tuple[int, int]:
        h, w = self.net_hw
        return -(-h // MASK_STRIDE), -(-w // MASK_STRIDE)

    def _box_window(self, cand: Candidate) -> Rect:
        rows, cols = self._full_grid()
        x0, y0, x1, y1 = cand.box
        m = self.box_margin
        r0 = max(0, int(np.floor(y0 / MASK_STRIDE)) - m)
        c0 = max(0, int(np.floor(x0 / MASK_STRIDE)) - m)
        r1 = min(rows, int(np.ceil(y1 / MASK_STRIDE)) + m)
        c1 = min(cols, int(np.ceil(x1 / MASK_STRIDE)) + m)
        cr, cc = cand.row_col if cand.level == 3 else (int(cand.location_xy[1]) // MASK_STRIDE,
                                                         int(cand.location_xy[0]) // MASK_STRIDE)
        return Rect(min(r0, cr), max(r1, cr + 1), min(c0, cc), max(c1, cc + 1)).clip(rows, cols)

    def _result(self, cand: Candidate, mask: np.ndarray, mask_macs: int) -> TapResult:
        names = self.cfg.names
        return TapResult(mask=mask, score=cand.score, box=self._box(cand), class_id=cand.class_id,
                         class_name=names[cand.class_id] if cand.class_id < len(names) else str(cand.class_id),
                         level=cand.level, extras={"mask_macs": mask_macs, "candidate": cand})

    def _box(self, cand: Candidate) -> tuple[float, float, float, float]:
        h, w = self.image_hw
        x0, y0, x1, y1 = (v / self._scale for v in cand.box)
        return (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))

    # -------------------------------------------------------------------------------------------- coordinates
    def _require_image(self) -> None:
        if self._image is None:
            raise RuntimeError("no image set: call set_image(image) before predict() / tap_key()")

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
