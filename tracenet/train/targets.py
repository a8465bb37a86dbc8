"""FCOS / CondInst target assignment.

Every location of every level (P3..P7, FCOS positions ``(col * s + s // 2, row * s + s // 2)`` in image
pixels, see docs/ARCHITECTURE.md) is assigned to at most one ground-truth instance:

1. it lies inside the instance's *centre region*: a square of half-side ``radius * stride`` around the
   instance centre (CondInst: the mask's centre of mass; FCOS: the box centre), clipped to the box;
2. the largest of its (left, top, right, bottom) distances to the box lies in the level's size of interest
   ``[lo, hi]`` (both ends inclusive, as AdelaiDet) -- (0, 64), (64, 128), (128, 256), (256, 512), (512, inf);
3. among several candidates the one with the smallest box area wins (first one on exact ties).

Locations outside an image's real (unpadded) content, and negatives inside crowd regions, are ignored.

**Partial annotations** (an image whose target has ``exhaustive`` False, e.g. every coco-single photo): its
listed objects are assigned exactly as above and train classification, box, centerness and mask as positives,
but *every* location of it that is not assigned to a listed object is ``IGNORE`` -- the image contributes no
negative (background) classification loss at all. An unlisted object may be anywhere in such a photo, so no
location of it is known to be background; locations inside a listed object but outside its centre region or
size range are ignored too (in an exhaustive image they are negatives), since they may belong to an unlisted
object at another scale. Box, centerness and mask losses only use positives, so they need no change; the dice
loss of a listed object still counts the pixels outside it as "not this object", which stays true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tracenet.model.geometry import STRIDES, locations

__all__ = ["IGNORE", "BACKGROUND", "FcosTargets", "TargetConfig", "assign_targets", "centerness"]

BACKGROUND = -1
IGNORE = -2


@dataclass
class TargetConfig:
    """FCOS assignment settings (defaults: AdelaiDet CondInst R50)."""

    sizes_of_interest: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)  # boundaries between the 5 levels
    center_sampling_radius: float = 1.5  # in strides; 0 disables centre sampling (whole box is positive)
    center_from_masks: bool = True  # centre region around the mask's centre of mass (CondInst) or box centre
    ignore_crowd: bool = True  # negatives inside crowd regions do not count in the classification loss
    # images with exhaustive=False (partial annotations) give no negatives at all; turning this off treats
    # them as exhaustive (only for ablations: unlisted objects then teach "background")
    ignore_unlisted: bool = True


@dataclass
class FcosTargets:
    """Targets for a batch, locations flattened level by level, row-major within a level.

    labels: ``[B, L]`` int64, class id of positives, ``BACKGROUND`` (-1) or ``IGNORE`` (-2).
    reg: ``[B, L, 4]`` float32 (left, top, right, bottom) distances in input pixels (meaningful at positives).
    ctr: ``[B, L]`` float32 centerness target (meaningful at positives).
    gt_index: ``[B, L]`` int64, index of the assigned instance in that image's target list, -1 if none.
    locations: ``[L, 2]`` float32 (x, y) pixels. level: ``[L]`` int64 level index 0..4 (P3..P7).
    """

    labels: Tensor
    reg: Tensor
    ctr: Tensor
    gt_index: Tensor
    locations: Tensor
    level: Tensor

    @property
    def positive(self) -> Tensor:
        """``[B, L]`` bool."""
        return self.labels >= 0


def centerness(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of ``ltrb [..., 4]`` -> ``[...]``."""
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-12)) * (
        tb.min(-1).values / tb.max(-1).values.clamp(min=1e-12)
    )
    return ratio.clamp(min=0).sqrt()


def _size_ranges(cfg: TargetConfig, num_levels: int) -> list[tuple[float, float]]:
    bounds = [0.0, *cfg.sizes_of_interest, math.inf]
    if len(bounds) - 1 != num_levels:
        raise ValueError(f"{len(cfg.sizes_of_interest)} size-of-interest boundaries for {num_levels} levels")
    return [(bounds[i], bounds[i + 1]) for i in range(num_levels)]


def _centres(boxes: Tensor, masks: Tensor | None) -> Tensor:
    """``[N, 2]`` (x, y) centres: mask centre of mass over pixel centres, or the box centre."""
    box_c = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], dim=1)
    if masks is None or masks.shape[0] == 0:
        return box_c
    cols = masks.sum(dim=1, dtype=torch.float32)  # [N, W]
    rows = masks.sum(dim=2, dtype=torch.float32)  # [N, H]
    area = cols.sum(dim=1)
    ys = torch.arange(rows.shape[1], device=masks.device, dtype=torch.float32) + 0.5
    xs = torch.arange(cols.shape[1], device=masks.device, dtype=torch.float32) + 0.5
    cx = (cols * xs).sum(dim=1) / area.clamp(min=1)
    cy = (rows * ys).sum(dim=1) / area.clamp(min=1)
    return torch.where((area > 0)[:, None], torch.stack([cx, cy], dim=1), box_c)


@torch.no_grad()
def assign_targets(
    level_hw: list[tuple[int, int]],
    image_sizes: Tensor,
    targets: list[dict[str, Tensor]],
    cfg: TargetConfig | None = None,
    strides: tuple[int, ...] = STRIDES,
) -> FcosTargets:
    """Assign every location of a padded batch.

    Args:
        level_hw: ``(rows, cols)`` of each level's grid (the model's output shapes).
        image_sizes: ``[B, 2]`` int64 ``(h, w)`` of each image's real content (top-left of the padded batch).
        targets: per image ``boxes [N, 4]`` (x0, y0, x1, y1) px, ``classes [N]`` int64, optionally
            ``masks [N, H, W]`` bool (for mask centres), ``ignore [H, W]`` bool (crowd regions) and
            ``exhaustive`` (bool scalar; False = partial annotations: all its non-positive locations ignored).
        cfg: assignment settings.

    Returns:
        :class:`FcosTargets` on the device of ``image_sizes``.
    """
    cfg = cfg or TargetConfig()
    device = image_sizes.device
    locs_per_level = locations(level_hw, strides, device=device)
    locs = torch.cat(locs_per_level)  # [L, 2]
    level = torch.cat(
        [torch.full((len(p),), i, dtype=torch.int64, device=device) for i, p in enumerate(locs_per_level)]
    )
    lstride = torch.tensor(strides, dtype=torch.float32, device=device)[level]  # [L]
    ranges = torch.tensor(_size_ranges(cfg, len(level_hw)), dtype=torch.float32, device=device)[
        level
    ]  # [L, 2]
    xs, ys = locs[:, 0], locs[:, 1]
    n_loc = locs.shape[0]

    labels, regs, ctrs, gt_idx = [], [], [], []
    for b, tgt in enumerate(targets):
        h, w = int(image_sizes[b, 0]), int(image_sizes[b, 1])
        boxes = tgt["boxes"].to(device=device, dtype=torch.float32)
        classes = tgt["classes"].to(device)
        n = boxes.shape[0]
        lab = torch.full((n_loc,), BACKGROUND, dtype=torch.int64, device=device)
        reg = torch.zeros((n_loc, 4), dtype=torch.float32, device=device)
        idx = torch.full((n_loc,), -1, dtype=torch.int64, device=device)
        if n > 0:
            ltrb = torch.stack(
                [
                    xs[:, None] - boxes[None, :, 0],
                    ys[:, None] - boxes[None, :, 1],
                    boxes[None, :, 2] - xs[:, None],
                    boxes[None, :, 3] - ys[:, None],
                ],
                dim=2,
            )  # [L, N, 4]
            inside = ltrb.min(dim=2).values > 0
            if cfg.center_sampling_radius > 0:
                masks = tgt.get("masks") if cfg.center_from_masks else None
                c = _centres(boxes, masks)  # [N, 2]
                rad = lstride[:, None] * cfg.center_sampling_radius  # [L, 1]
                cx0 = torch.maximum(c[None, :, 0] - rad, boxes[None, :, 0])
                cy0 = torch.maximum(c[None, :, 1] - rad, boxes[None, :, 1])
                cx1 = torch.minimum(c[None, :, 0] + rad, boxes[None, :, 2])
                cy1 = torch.minimum(c[None, :, 1] + rad, boxes[None, :, 3])
                inside = (xs[:, None] > cx0) & (ys[:, None] > cy0) & (xs[:, None] < cx1) & (ys[:, None] < cy1)
            max_reg = ltrb.max(dim=2).values
            in_level = (max_reg >= ranges[:, :1]) & (max_reg <= ranges[:, 1:])
            area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n_loc, n)
            area = torch.where(inside & in_level, area, torch.full_like(area, math.inf))
            min_area, best = area.min(dim=1)
            pos = torch.isfinite(min_area)
            lab = torch.where(pos, classes[best], lab)
            reg = torch.where(pos[:, None], ltrb[torch.arange(n_loc, device=device), best], reg)
            idx = torch.where(pos, best, idx)
        neg = lab < 0
        outside = (xs >= w) | (ys >= h)
        lab[neg & outside] = IGNORE
        crowd = tgt.get("ignore")
        if cfg.ignore_crowd and crowd is not None and bool(crowd.any()):
            r = ys.long().clamp(max=crowd.shape[0] - 1)
            col = xs.long().clamp(max=crowd.shape[1] - 1)
            lab[neg & crowd.to(device)[r, col]] = IGNORE
        if cfg.ignore_unlisted and not bool(tgt.get("exhaustive", True)):
            lab[neg] = IGNORE  # partial annotations: no location is known to be background
        labels.append(lab)
        regs.append(reg)
        gt_idx.append(idx)
        ctrs.append(torch.where(lab >= 0, centerness(reg), torch.zeros_like(reg[:, 0])))
    return FcosTargets(
        labels=torch.stack(labels),
        reg=torch.stack(regs),
        ctr=torch.stack(ctrs),
        gt_index=torch.stack(gt_idx),
        locations=locs,
        level=level,
    )
