"""CondInst / FCOS losses: focal classification, GIoU box regression weighted by centerness, centerness BCE,
dice on dynamic masks.

Normalisation (AdelaiDet, so that DistributedDataParallel's gradient averaging gives global means):
``num_pos_avg = max(1, all_reduce_sum(num_pos) / world_size)`` for classification and centerness,
``all_reduce_sum(sum of centerness targets) / world_size`` for the box loss. Single process: plain counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

__all__ = [
    "LossConfig",
    "centerness_loss",
    "dice_loss",
    "focal_loss",
    "giou_loss",
    "reduce_mean",
]


@dataclass
class LossConfig:
    """Loss settings. ``L = cls_weight * L_cls + mask_weight * L_mask + box_weight * L_box + ctr_weight * L_ctr``
    (the paper: lambda_1 = lambda_2 = 1; the centerness term is FCOS's, weight 1)."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cls_weight: float = 1.0
    box_weight: float = 1.0
    ctr_weight: float = 1.0
    mask_weight: float = 1.0
    max_masks_per_image: int = 64  # positive locations sampled per image for the mask loss (CondInst: 64)
    dice_eps: float = 1e-5


def reduce_mean(value: Tensor) -> Tensor:
    """Mean of a scalar over the distributed ranks (identity in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value


def focal_loss(
    logits: Tensor, targets: Tensor, num_pos: Tensor | float, *, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Sigmoid focal loss summed over ``logits [M, C]`` / ``targets [M, C]`` (one-hot floats), divided by
    ``max(1, num_pos)``."""
    num_pos = torch.as_tensor(num_pos, dtype=logits.dtype, device=logits.device).clamp(min=1.0)
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum") / num_pos


def giou_loss(
    pred_ltrb: Tensor, target_ltrb: Tensor, locations: Tensor, weight: Tensor, denom: Tensor | float
) -> Tensor:
    """GIoU loss of boxes decoded around ``locations [P, 2]`` (x, y) px from ``pred_ltrb`` / ``target_ltrb``
    ``[P, 4]`` (left, top, right, bottom) px; ``sum(weight * loss) / max(denom, 1e-6)`` (FCOS weights by the
    centerness targets and divides by their sum)."""
    if pred_ltrb.numel() == 0:
        return pred_ltrb.sum() * 0.0
    x, y = locations[:, 0], locations[:, 1]

    def decode(d: Tensor) -> Tensor:
        return torch.stack([x - d[:, 0], y - d[:, 1], x + d[:, 2], y + d[:, 3]], dim=1)

    loss = generalized_box_iou_loss(decode(pred_ltrb), decode(target_ltrb), reduction="none")
    denom = torch.as_tensor(denom, dtype=loss.dtype, device=loss.device).clamp(min=1e-6)
    return (loss * weight).sum() / denom


def centerness_loss(logits: Tensor, targets: Tensor, num_pos: Tensor | float) -> Tensor:
    """Binary cross-entropy of centerness ``logits [P]`` against ``targets [P]`` in [0, 1], summed, divided by
    ``max(1, num_pos)``."""
    num_pos = torch.as_tensor(num_pos, dtype=logits.dtype, device=logits.device).clamp(min=1.0)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / num_pos


def dice_loss(probs: Tensor, targets: Tensor, weight: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Per-instance dice loss ``1 - 2 sum(p t) / (sum(p^2) + sum(t^2) + eps)`` (CondInst / V-Net form).

    Args:
        probs: ``[N, H, W]`` predicted probabilities.
        targets: ``[N, H, W]`` targets in [0, 1] (soft targets allowed, e.g. area-downsampled masks).
        weight: optional ``[N, H, W]`` or ``[H, W]`` pixel weights (0 excludes a pixel, e.g. crowd regions).

    Returns:
        ``[N]`` losses.
    """
    p, t = probs.flatten(1), targets.flatten(1).to(probs.dtype)
    if weight is not None:
        wgt = weight.to(probs.dtype).expand_as(probs).flatten(1)
        p, t = p * wgt, t * wgt
    inter = (p * t).sum(dim=1)
    union = (p * p).sum(dim=1) + (t * t).sum(dim=1) + eps
    return 1.0 - 2.0 * inter / union
