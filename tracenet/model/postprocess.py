"""Tap logic shared by the traced (RFT) path and the full-network path.

A tap ``(x, y)`` in image pixels is aligned to one cell ``(row, col)`` per level P3..P7; the head outputs at
those 5 cells are *gathered* into ``dict[kind -> Tensor[C_kind, 5]]`` (column ``j`` is level ``3 + j``);
:func:`select_candidate` scores the ``5 x C`` candidates, runs NMS and keeps the best one, whose 169 dynamic
parameters then drive the mask head (:func:`candidate_mask_probs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import nms

from tracenet.model.dynamic_head import DYNAMIC_PARAM_COUNT, dynamic_mask_logits, upsample_mask_probs
from tracenet.model.geometry import LEVELS, STRIDES
from tracenet.tap.geometry import align_tap  # noqa: F401  (re-exported: tap alignment is torch-free)

NMS_IOU = 0.6
GATHER_KINDS = ("cls", "box", "ctr", "ctrl")


@dataclass
class Candidate:
    """The instance chosen for a tap.

    Attributes:
        score: ``sigmoid(cls) * sigmoid(ctr)`` in [0, 1].
        class_id: index into the config's class names.
        level: pyramid level 3..7 the candidate was predicted on.
        box: ``(x0, y0, x1, y1)`` in image pixels (may extend past the image border).
        params: ``float32 Tensor[169]`` dynamic mask-head parameters.
        location_xy: ``(x, y)`` image pixel of the grid cell that predicted it.
        row_col: ``(row, col)`` of that cell in the level's grid.
        cls_prob, ctr_prob: ``sigmoid(cls)`` and ``sigmoid(ctr)``, the two factors of ``score``.
    """

    score: float
    class_id: int
    level: int
    box: tuple[float, float, float, float]
    params: Tensor
    location_xy: tuple[float, float]
    row_col: tuple[int, int]
    cls_prob: float = 0.0
    ctr_prob: float = 0.0


def full_gather(
    dense_out: dict[str, Tensor], rows_cols: list[tuple[int, int]], image_index: int = 0
) -> dict[str, Tensor]:
    """Pick the 5 aligned cells' vectors from a full ``TraceNetDense`` output.

    Args:
        dense_out: ``TraceNetDense.forward`` output (``cls_p3`` ... ``ctrl_p7``).
        rows_cols: 5 ``(row, col)`` cells, one per level 3..7 (from :func:`align_tap`).
        image_index: which image of the batch.

    Returns:
        ``{"cls": [C, 5], "box": [4, 5], "ctr": [1, 5], "ctrl": [169, 5]}``; column ``j`` is level ``3 + j``.
    """
    if len(rows_cols) != len(LEVELS):
        raise ValueError(f"need one (row, col) per level {LEVELS}, got {len(rows_cols)}")
    return {
        kind: torch.stack(
            [
                dense_out[f"{kind}_p{level}"][image_index, :, r, c]
                for level, (r, c) in zip(LEVELS, rows_cols, strict=True)
            ],
            dim=1,
        )
        for kind in GATHER_KINDS
    }


def _check_gathered(gathered: dict[str, Tensor]) -> None:
    expected_rows = {"box": 4, "ctr": 1, "ctrl": DYNAMIC_PARAM_COUNT}
    for kind in GATHER_KINDS:
        if kind not in gathered:
            raise ValueError(f"gathered outputs lack {kind!r}; expected keys {GATHER_KINDS}")
        t = gathered[kind]
        if (
            t.dim() != 2
            or t.shape[1] != len(LEVELS)
            or (kind in expected_rows and t.shape[0] != expected_rows[kind])
        ):
            rows = expected_rows.get(kind, "C")
            raise ValueError(f"gathered[{kind!r}] must be [{rows}, {len(LEVELS)}], got {tuple(t.shape)}")


def all_candidates(gathered: dict[str, Tensor], rows_cols: list[tuple[int, int]]) -> list[Candidate]:
    """Every one of the tap's ``5 x C`` candidates, in index order ``class * 5 + level - 3`` (no NMS).

    Args:
        gathered: ``{"cls": [C, 5], "box": [4, 5], "ctr": [1, 5], "ctrl": [169, 5]}`` for one image, column
            ``j`` = level ``3 + j`` (see :func:`full_gather`); ``box`` holds (l, t, r, b) pixel distances.
        rows_cols: the 5 aligned ``(row, col)`` cells the columns came from (to place boxes in the image).
    """
    _check_gathered(gathered)
    if len(rows_cols) != len(LEVELS):
        raise ValueError(f"need one (row, col) per level {LEVELS}, got {len(rows_cols)}")
    cls = gathered["cls"].float().sigmoid()  # [C, 5]
    ctr = gathered["ctr"].float().sigmoid()[0]  # [5]
    loc = [(c * s + s // 2, r * s + s // 2) for (r, c), s in zip(rows_cols, STRIDES, strict=True)]  # (x, y)
    ltrb = gathered["box"].float().t().tolist()  # [5][4]
    out = []
    for class_id in range(cls.shape[0]):
        for j, level in enumerate(LEVELS):
            (x, y), (left, top, right, bottom) = loc[j], ltrb[j]
            out.append(Candidate(
                score=float(cls[class_id, j] * ctr[j]),
                class_id=class_id,
                level=level,
                box=(x - left, y - top, x + right, y + bottom),
                params=gathered["ctrl"][:, j].float(),
                location_xy=(float(x), float(y)),
                row_col=tuple(rows_cols[j]),
                cls_prob=float(cls[class_id, j]),
                ctr_prob=float(ctr[j]),
            ))
    return out


def rank_candidates(
    gathered: dict[str, Tensor],
    rows_cols: list[tuple[int, int]],
    *,
    iou_threshold: float = NMS_IOU,
) -> list[Candidate]:
    """All candidates that survive NMS, best first (the paper keeps the first; the predictor may fall back to
    the next ones when the best mask does not cover the tap).

    Args:
        gathered: ``{"cls": [C, 5], "box": [4, 5], "ctr": [1, 5], "ctrl": [169, 5]}`` for one image, column
            ``j`` = level ``3 + j`` (see :func:`full_gather`); ``box`` holds (l, t, r, b) pixel distances.
        rows_cols: the 5 aligned ``(row, col)`` cells the columns came from (to place boxes in the image).
        iou_threshold: NMS IoU threshold (paper: 0.6).
    """
    cands = all_candidates(gathered, rows_cols)
    if not cands:
        return []
    scores = torch.tensor([c.score for c in cands], dtype=torch.float32)
    boxes = torch.tensor([c.box for c in cands], dtype=torch.float32)
    return [cands[i] for i in nms(boxes, scores, iou_threshold).tolist()]


def select_candidate(
    gathered: dict[str, Tensor],
    rows_cols: list[tuple[int, int]],
    *,
    iou_threshold: float = NMS_IOU,
    min_score: float = 0.0,
) -> Candidate | None:
    """Choose the instance for a tap from its ``5 x C`` candidates: the top-1 of :func:`rank_candidates`
    (``torchvision.ops.nms`` at ``iou_threshold``), or ``None`` if it scores below ``min_score``."""
    ranked = rank_candidates(gathered, rows_cols, iou_threshold=iou_threshold)
    if not ranked or ranked[0].score < min_score:
        return None
    return ranked[0]


def candidate_mask_logits(mask_feats: Tensor, candidate: Candidate) -> Tensor:
    """Run the candidate's dynamic mask head: ``mask_feats [1, 8, H_3, W_3]`` (or ``[8, H_3, W_3]``) ->
    ``float32 [1, H_3, W_3]`` stride-8 mask logits."""
    if mask_feats.dim() == 3:
        mask_feats = mask_feats[None]
    device = mask_feats.device
    return dynamic_mask_logits(
        mask_feats,
        candidate.params.to(device)[None],
        torch.zeros(1, dtype=torch.long, device=device),
        torch.tensor([candidate.location_xy], dtype=mask_feats.dtype, device=device),
        torch.tensor([candidate.level - LEVELS[0]], dtype=torch.long, device=device),
    )


def candidate_mask_probs(mask_feats: Tensor, candidate: Candidate, image_hw: tuple[int, int]) -> Tensor:
    """Run the candidate's dynamic mask head.

    Args:
        mask_feats: ``[1, 8, H_3, W_3]`` (or ``[8, H_3, W_3]``) mask-branch output of the tapped image.
        candidate: from :func:`select_candidate`.
        image_hw: ``(H, W)`` of the network input.

    Returns:
        ``float32 [H, W]`` mask probabilities; ``> 0.5`` is the mask.
    """
    return upsample_mask_probs(candidate_mask_logits(mask_feats, candidate), image_hw)[0]
