"""``TraceNetTrainModel``: the dense network plus CondInst losses; ``forward`` returns a dict of losses.

Mask loss resolution: the dynamic head's stride-8 logits are upsampled 2x (bilinear, ``align_corners=False``,
the same interpolation inference uses) to **stride 4** and compared with the ground-truth masks
area-downsampled to stride 4 (4x4 average pooling: soft targets, so thin / small objects are not lost). This is
CondInst's choice (it compares at stride 4 as well, but samples GT pixels instead of averaging).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tracenet.model.dense import normalize
from tracenet.model.dynamic_head import dynamic_mask_logits
from tracenet.model.geometry import LEVELS
from tracenet.train.losses import LossConfig, centerness_loss, dice_loss, focal_loss, giou_loss, reduce_mean
from tracenet.train.targets import IGNORE, FcosTargets, TargetConfig, assign_targets

__all__ = ["TraceNetTrainModel", "compute_losses", "flatten_outputs"]


def flatten_outputs(outputs: dict[str, Tensor], kind: str) -> Tensor:
    """Concatenate ``{kind}_p3 .. {kind}_p7`` (each ``[B, K, H_l, W_l]``) into ``[B, L, K]``, level by level,
    row-major inside a level (the order of :func:`tracenet.train.targets.assign_targets`)."""
    parts = []
    for level in LEVELS:
        t = outputs[f"{kind}_p{level}"]
        parts.append(t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, t.shape[1]))
    return torch.cat(parts, dim=1)


def _sample_positives(
    pos: Tensor, max_per_image: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(image_index [P], location_index [P])`` of positives, at most ``max_per_image`` per image (uniform)."""
    b_idx, l_idx = pos.nonzero(as_tuple=True)
    if max_per_image <= 0:
        return b_idx, l_idx
    keep = []
    for b in range(pos.shape[0]):
        sel = (b_idx == b).nonzero(as_tuple=True)[0]
        if sel.numel() > max_per_image:
            perm = torch.randperm(sel.numel(), generator=generator)[:max_per_image].sort().values
            sel = sel[perm.to(sel.device)]
        keep.append(sel)
    keep_t = torch.cat(keep) if keep else b_idx
    return b_idx[keep_t], l_idx[keep_t]


def mask_loss(
    outputs: dict[str, Tensor],
    ctrl: Tensor,
    tg: FcosTargets,
    targets: list[dict[str, Tensor]],
    cfg: LossConfig,
    generator: torch.Generator | None,
) -> Tensor | None:
    """Mean dice loss over (sampled) positive locations, at stride 4. ``None`` when there is no positive."""
    b_idx, l_idx = _sample_positives(tg.positive, cfg.max_masks_per_image, generator)
    if b_idx.numel() == 0:
        return None
    mask_feats = outputs["mask_feats"]
    logits = dynamic_mask_logits(mask_feats, ctrl[b_idx, l_idx], b_idx, tg.locations[l_idx], tg.level[l_idx])
    logits = F.interpolate(logits[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0]
    h4, w4 = logits.shape[-2:]
    gt_idx = tg.gt_index[b_idx, l_idx]
    gts, weights = torch.empty_like(logits), torch.ones_like(logits)
    for b in b_idx.unique().tolist():
        sel = (b_idx == b).nonzero(as_tuple=True)[0]
        uniq, inverse = gt_idx[sel].unique(return_inverse=True)  # pool each instance once
        m = targets[b]["masks"][uniq].to(logits.dtype)  # [u, H, W]
        m = F.pad(m, (0, 4 * w4 - m.shape[-1], 0, 4 * h4 - m.shape[-2]))
        gts[sel] = F.avg_pool2d(m[:, None], 4)[:, 0][inverse]
        crowd = targets[b].get("ignore")
        if crowd is not None and bool(crowd.any()):
            c = F.pad(crowd.to(logits.dtype), (0, 4 * w4 - crowd.shape[-1], 0, 4 * h4 - crowd.shape[-2]))
            c = F.avg_pool2d(c[None, None], 4)[0]  # [1, h4, w4]
            weights[sel] = 1.0 - c * (1.0 - gts[sel])  # crowd pixels outside the instance do not count
    return dice_loss(logits.sigmoid(), gts, weights, eps=cfg.dice_eps).mean()


def compute_losses(
    outputs: dict[str, Tensor],
    image_sizes: Tensor,
    targets: list[dict[str, Tensor]],
    *,
    target_cfg: TargetConfig | None = None,
    loss_cfg: LossConfig | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """CondInst losses for one batch.

    Args:
        outputs: :class:`tracenet.model.dense.TraceNetDense` outputs for a padded ``[B, 3, H, W]`` batch.
        image_sizes: ``[B, 2]`` int64 ``(h, w)`` real content per image.
        targets: per image ``boxes [N, 4]`` (x0, y0, x1, y1) px, ``classes [N]``, ``masks [N, H, W]`` bool,
            ``ignore [H, W]`` bool (see :class:`tracenet.data.Batch`).
        generator: CPU generator for the mask-loss location sampling (seed it per step for exact resume).

    Returns:
        ``{"loss_cls", "loss_box", "loss_ctr", "loss_mask"}`` scalars, already weighted; the total is their sum.
    """
    tcfg, lcfg = target_cfg or TargetConfig(), loss_cfg or LossConfig()
    level_hw = [tuple(outputs[f"cls_p{level}"].shape[-2:]) for level in LEVELS]
    tg = assign_targets(level_hw, image_sizes, targets, tcfg)
    cls, box, ctrl = (flatten_outputs(outputs, k) for k in ("cls", "box", "ctrl"))
    ctr = flatten_outputs(outputs, "ctr")[..., 0]
    # keeps every head output in the graph when a batch (or a DDP rank) has no positive: no unused parameters
    zero = (box.sum() + ctr.sum() + ctrl.sum() + outputs["mask_feats"].sum()) * 0.0

    pos, valid = tg.positive, tg.labels != IGNORE
    num_pos = reduce_mean(pos.sum().to(cls.dtype)).clamp(min=1.0)
    onehot = torch.zeros_like(cls)
    onehot[pos, tg.labels[pos]] = 1.0
    loss_cls = focal_loss(cls[valid], onehot[valid], num_pos, alpha=lcfg.focal_alpha, gamma=lcfg.focal_gamma)

    ctr_t = tg.ctr[pos]
    locs = tg.locations[None].expand(pos.shape[0], -1, -1)[pos]
    loss_box = giou_loss(box[pos], tg.reg[pos], locs, ctr_t, reduce_mean(ctr_t.sum()))
    loss_ctr = centerness_loss(ctr[pos], ctr_t, num_pos) if ctr_t.numel() else zero
    loss_mask = mask_loss(outputs, ctrl, tg, targets, lcfg, generator)
    return {
        "loss_cls": lcfg.cls_weight * loss_cls,
        "loss_box": lcfg.box_weight * loss_box + zero,
        "loss_ctr": lcfg.ctr_weight * loss_ctr,
        "loss_mask": lcfg.mask_weight * loss_mask if loss_mask is not None else zero,
    }


class TraceNetTrainModel(nn.Module):
    """Wraps a :class:`tracenet.model.dense.TraceNetDense` for training (the module DDP wraps).

    ``forward(images [B, 3, H, W] uint8, image_sizes [B, 2], targets, generator=None) -> dict of losses``
    (see :func:`compute_losses`); images are normalised here.

    ``channels_last``: the normalised batch is handed to the network in NHWC memory order (the network's
    weights should be too: ``dense.to(memory_format=torch.channels_last)``). ``autocast``: run the network
    under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16`` on CUDA); its outputs are cast back to
    float32 before the targets and losses, which always run in float32.
    """

    def __init__(
        self,
        dense: nn.Module,
        *,
        target_cfg: TargetConfig | None = None,
        loss_cfg: LossConfig | None = None,
        channels_last: bool = False,
        autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dense = dense
        self.target_cfg = target_cfg or TargetConfig()
        self.loss_cfg = loss_cfg or LossConfig()
        self.channels_last = channels_last
        self.autocast = autocast

    def forward(
        self,
        images: Tensor,
        image_sizes: Tensor,
        targets: list[dict[str, Tensor]],
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        x = normalize(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast is None:
            outputs = self.dense(x)
        else:
            with torch.autocast(x.device.type, dtype=self.autocast):
                outputs = self.dense(x)
            outputs = {k: v.float() for k, v in outputs.items()}
        return compute_losses(
            outputs,
            image_sizes,
            targets,
            target_cfg=self.target_cfg,
            loss_cfg=self.loss_cfg,
            generator=generator,
        )
