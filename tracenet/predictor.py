"""``TapSegmenter``: set an image once, then tap as often as you like.

>>> seg = tracenet.load()                 # bundled default model
>>> seg.set_image("photo.jpg")            # path, PIL image or HxWx3 uint8 RGB array
>>> res = seg.predict((x, y))             # tap in image pixels
>>> res.mask, res.score, res.box          # HxW bool, float, (x0, y0, x1, y1)

The traced path (default) runs the network only where the tap needs it (Receptive Field Tracer) and keeps what
it computed for the next tap on the same image; ``use_rft=False`` is FullNet, the same network run whole, which
gives the same candidate and mask.

Threads: see :class:`~tracenet.tap.core.TapCore` (one thread at a time; :class:`ConcurrentUseError` otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tracenet.deploy.mask_stats import cell_pixel_weights, mask_area_and_cover
from tracenet.model import (
    TraceNetConfig,
    TraceNetDense,
    full_gather,
    fuse_conv_bn,
    load_checkpoint,
    normalize,
)
from tracenet.model.geometry import LEVELS
from tracenet.model.mask_probs import TensorMaskProbs
from tracenet.model.postprocess import (
    GATHER_KINDS,
    Candidate,
    all_candidates,
    candidate_mask_logits,
    rank_candidates,
)
from tracenet.model.tap_ranker import TapRanker, candidate_features
from tracenet.refine import RefineConfig
from tracenet.rft import ReceptiveFieldTracer, Rect, TraceCache
from tracenet.rft.allocator import reuse_freed_memory
from tracenet.tap.core import ConcurrentUseError, TapCore, TapOutputs, TapResult
from tracenet.tap.zoom import ZoomConfig

__all__ = ["DEFAULT_CHECKPOINT", "ConcurrentUseError", "TapResult", "TapSegmenter"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "default.safetensors"
MASK_STRIDE = 8


class TapSegmenter(TapCore):
    """Tap-to-mask predictor around a :class:`~tracenet.model.TraceNetDense`: the PyTorch engines (traced and
    FullNet) plugged into the shared :class:`~tracenet.tap.core.TapCore`.

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
        channels_last: keep weights and the network input in channels-last memory (oneDNN's native layout on
            CPU: about a quarter less time for EfficientNet-Lite's depthwise layers). TraceNet and FullNet both
            run it, so they still agree; values equal the contiguous-memory run's up to float32 summation order.
        refine: boundary refinement of the chosen mask (:mod:`tracenet.refine`): ``"none"``, ``"guided"``
            (guided filter of the mask probabilities with the photo) or ``"grabcut"``; ``refine_cfg`` its
            settings. Applied by the predictor core, so every engine refines alike; candidate choice and the
            "covers the tap" test use the unrefined mask.
        zoom: segment small objects again on a crop around the first answer, enlarged to the network's size
            (:mod:`tracenet.tap.zoom`; ``zoom_cfg`` its settings). Applied by the predictor core (both engines).
    """

    def __init__(self, model: TraceNetDense, cfg: TraceNetConfig, *, max_side: int = 1024, min_score: float = 0.05,
                 mask_region: str = "image", box_margin: int = 2, require_tap_inside: bool = True,
                 fuse_bn: bool = True, meta: dict[str, Any] | None = None, ranker: TapRanker | None = None,
                 selection: str = "auto", channels_last: bool = True, refine: str = "none",
                 refine_cfg: RefineConfig | None = None, zoom: bool = False, zoom_cfg: ZoomConfig | None = None) -> None:
        if mask_region not in ("image", "box"):
            raise ValueError(f"mask_region must be 'image' or 'box', got {mask_region!r}")
        if selection not in ("auto", "paper", "ranker"):
            raise ValueError(f"selection must be 'auto', 'paper' or 'ranker', got {selection!r}")
        if selection == "ranker" and ranker is None:
            raise ValueError("selection='ranker' needs a tap ranker; this checkpoint has none (fit one with "
                             "`python -m tracenet.train.tap_ranker`, or use selection='paper')")
        super().__init__(max_side=max_side, min_score=min_score, require_tap_inside=require_tap_inside,
                         class_names=cfg.names, refine=refine, refine_cfg=refine_cfg, zoom=zoom, zoom_cfg=zoom_cfg)
        self.ranker = ranker if selection != "paper" else None
        self.selection = "ranker" if self.ranker is not None else "paper"
        # inference only: BatchNorm folded into the preceding convolutions (a copy; TraceNet and FullNet both
        # run this same folded network, so they still agree exactly)
        self.model = (fuse_conv_bn(model) if fuse_bn else model).eval()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.cfg = cfg
        self.meta = dict(meta or {})
        self.mask_region = mask_region
        self.box_margin = int(box_margin)
        self.tracer = ReceptiveFieldTracer(self.model)
        self._cell_weights = cell_pixel_weights()  # for the ranker's mask area / cover features
        reuse_freed_memory()  # large feature maps reuse freed memory instead of fresh pages (tracenet.rft.allocator)
        self._x: torch.Tensor | None = None
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

    # ------------------------------------------------------------------------------------------- engine hooks
    def _set_network_image(self, rgb: np.ndarray) -> None:
        x = normalize(torch.from_numpy(rgb).permute(2, 0, 1)[None])
        self._x = x.contiguous(memory_format=self.memory_format)
        self._cache = TraceCache()
        self._full_out = None

    def predict(self, xy: tuple[float, float], *, use_rft: bool = True) -> TapResult:
        """Segment the object under the tap ``(x, y)`` (image pixels; fractions are floored to the pixel that
        contains them, as the command line does). ``use_rft=False`` runs FullNet."""
        return super().predict(xy, use_rft=use_rft)

    def _compute_tap(self, rows_cols: list[tuple[int, int]], *, use_rft: bool = True) -> TapOutputs:
        """The tap's candidates from the traced network (or FullNet), ordered by the ranker or by the paper's
        NMS; masks are computed when the core asks (paper) or up front for the ranker's features."""
        gathered, mask_feats, macs = (self._traced if use_rft else self._full)(rows_cols)
        full_macs = self._full_macs()
        if self.ranker is None:
            cands = rank_candidates(gathered, rows_cols)
            return TapOutputs(candidates=cands, order=list(range(len(cands))),
                              mask_probs=lambda k: self._mask_probs(cands[k], mask_feats, use_rft),
                              best_score=cands[0].score if cands else 0.0, macs=macs, full_macs=full_macs)
        cands, mask_probs, feats, mask_macs, best_score = self.ranker_inputs(gathered, rows_cols, mask_feats, use_rft)
        ranks: list[float] = []
        if cands:
            with torch.no_grad():
                ranks = [float(r) for r in self.ranker(feats)]
        order = sorted(range(len(cands)), key=lambda k: (-ranks[k], k))
        return TapOutputs(candidates=cands, order=order, mask_probs=lambda k: (mask_probs(k), 0), best_score=best_score,
                          macs=macs + mask_macs, full_macs=full_macs, rank_scores=ranks)

    def _resize_probs(self, probs: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(probs[None, None], size=hw, mode="bilinear", align_corners=False)[0, 0]

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
        return self.tracer.full_macs(tuple(self._x.shape))

    def ranker_inputs(self, gathered, rows_cols, mask_feats, use_rft: bool):
        """What the ranker sees at a tap: the candidates scoring at least ``min_score`` (all ``5 x C`` from
        :func:`~tracenet.model.postprocess.all_candidates`), ``mask_probs``: ``k ->`` candidate
        ``k``'s mask probabilities at network-input size (a :class:`~tracenet.model.mask_probs.TensorMaskProbs`, one
        per level), their ``[K, F]`` features, the MACs spent on mask features, and the best score of all
        candidates. Shared with ranker fitting (``tracenet.train.tap_ranker``) so both see the same inputs.

        The mask head runs once per level (every class of a level shares its location and controller output), and
        the features' mask area and "covers the tap" come from the stride-8 logits
        (:func:`~tracenet.deploy.mask_stats.mask_area_and_cover`, what the ONNX decoder computes) rather than from
        every candidate's full-size mask: only the mask a caller asks for is upsampled."""
        every = all_candidates(gathered, rows_cols)
        cands = [c for c in every if c.score >= self.min_score]
        macs = 0
        box_feats = None
        if self.mask_region == "box" and use_rft and cands:
            # one traced run over the union of the candidates' windows instead of one run per candidate
            union = self._box_window(cands[0])
            for cand in cands[1:]:
                union = union.union(self._box_window(cand))
            box_feats = (union, self.tracer.run(self._x, {"mask_feats": union}, self._cache)["mask_feats"][0])
            macs += self.tracer.last_plan.macs
        levels: dict[int, tuple[torch.Tensor, Rect | None]] = {}  # level -> (logits [H_3, W_3], box window)
        for cand in cands:
            if cand.level not in levels:
                logits, rect, m = self._mask_logits(cand, mask_feats, use_rft, box_feats)
                levels[cand.level] = (logits, rect)
                macs += m
        probs: dict[int, torch.Tensor] = {}

        def mask_probs(k: int) -> torch.Tensor:
            level = cands[k].level
            if level not in probs:
                probs[level] = self._probs_from_logits(*levels[level])
            return probs[level]

        feats = self.candidate_features(cands, levels, rows_cols[0]) if cands else None
        return cands, mask_probs, feats, macs, max((c.score for c in every), default=0.0)

    def candidate_features(self, cands: list[Candidate], levels: dict[int, tuple[torch.Tensor, Rect | None]],
                           p3_cell: tuple[int, int]):
        """:func:`~tracenet.model.tap_ranker.candidate_features` of ``cands``; ``levels``: level -> (its stride-8
        mask logits ``[H_3, W_3]``, the box window the mask is kept in or ``None``); ``p3_cell`` is the tap's
        ``(row, col)`` on P3. Mask area and cover are counted on the logits (equal to counting the upsampled
        mask's pixels up to float32 summation order: a pixel within ~1e-7 of 0.5 may flip)."""
        order = sorted(levels)
        logits = torch.stack([levels[lvl][0] for lvl in order])  # [E, H_3, W_3]
        inside = None
        if any(levels[lvl][1] is not None for lvl in order):
            inside = torch.zeros(logits.shape, dtype=torch.bool)
            for i, lvl in enumerate(order):
                rect = levels[lvl][1]
                inside[i, rect.r0:rect.r1, rect.c0:rect.c1] = True
        areas, covers = mask_area_and_cover(logits, torch.tensor(self.net_hw), torch.tensor(p3_cell),
                                            self._cell_weights, inside)
        at = {lvl: i for i, lvl in enumerate(order)}
        return candidate_features(
            scores=torch.tensor([x.score for x in cands]),
            cls_probs=torch.tensor([x.cls_prob for x in cands]),
            ctr_probs=torch.tensor([x.ctr_prob for x in cands]),
            boxes=torch.tensor([x.box for x in cands]),
            levels=[x.level for x in cands],
            mask_areas=torch.stack([areas[at[x.level]] for x in cands]).long(),
            covers=torch.stack([covers[at[x.level]] for x in cands]),
        )

    def _mask_probs(self, cand: Candidate, mask_feats, use_rft: bool) -> tuple[TensorMaskProbs, int]:
        """Mask probabilities at network-input size (upsampled when asked), and the MACs spent on mask features."""
        logits, rect, macs = self._mask_logits(cand, mask_feats, use_rft)
        return self._probs_from_logits(logits, rect), macs

    def _mask_logits(self, cand: Candidate, mask_feats, use_rft: bool,
                     box_feats: tuple[Rect, torch.Tensor] | None = None) -> tuple[torch.Tensor, Rect | None, int]:
        """The candidate's stride-8 mask logits ``float32 [H_3, W_3]``, the box window its mask is kept in
        (``None`` with ``mask_region="image"``) and the MACs spent on mask features. ``box_feats``: ``(rect,
        mask_feats window)`` already traced, covering this candidate's box window."""
        macs = 0
        rect = None
        if self.mask_region == "box":
            rect = self._box_window(cand)
            if box_feats is not None and box_feats[0].contains(rect):
                have, values = box_feats
                window = values[..., rect.r0 - have.r0:rect.r1 - have.r0, rect.c0 - have.c0:rect.c1 - have.c0]
            elif use_rft:
                window = self.tracer.run(self._x, {"mask_feats": rect}, self._cache)["mask_feats"][0]
                macs = self.tracer.last_plan.macs
            else:
                window = self._full_out["mask_feats"][..., rect.r0:rect.r1, rect.c0:rect.c1]
            feats = window.new_zeros((*window.shape[:2], *self._full_grid()))
            feats[..., rect.r0:rect.r1, rect.c0:rect.c1] = window
        else:
            feats = mask_feats
        with torch.no_grad():
            logits = candidate_mask_logits(feats, cand)[0]
        return logits, rect, macs

    def _probs_from_logits(self, logits: torch.Tensor, rect: Rect | None) -> TensorMaskProbs:
        """Probabilities at network-input size from ``[H_3, W_3]`` logits, upsampled when a caller asks
        (:class:`~tracenet.model.mask_probs.TensorMaskProbs`: ``dense()`` the ``float32 [H, W]`` map, ``above_half()``
        its mask without the pixels that cannot pass 0.5); zero outside the box window ``rect`` (whole cells)."""
        keep = None if rect is None else (rect.r0, rect.r1, rect.c0, rect.c1)
        return TensorMaskProbs(logits, self.net_hw, keep)

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
