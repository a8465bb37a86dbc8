"""The dense network the Receptive Field Tracer traces: backbone -> FPN P3..P7 -> heads + mask branch.

``TraceNetDense.forward`` is plain static dataflow (no data-dependent Python control flow, shapes only read
via ``tensor.shape``) so ``torch.fx.symbolic_trace`` captures it, and every op in it is local.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from tracenet.model.backbones import build_backbone
from tracenet.model.config import TraceNetConfig
from tracenet.model.geometry import LEVELS
from tracenet.model.heads import MaskBranch, TraceNetHead

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OUTPUT_KINDS = ("cls", "box", "ctr", "ctrl")


def output_keys() -> list[str]:
    """Keys of ``TraceNetDense.forward``'s dict, in order: ``cls_p3..cls_p7, box_p3.., ctr_.., ctrl_.., mask_feats``."""
    return [f"{kind}_p{level}" for kind in OUTPUT_KINDS for level in LEVELS] + ["mask_feats"]


def normalize(images: Tensor) -> Tensor:
    """ImageNet-normalise RGB images for :class:`TraceNetDense`.

    Args:
        images: ``[..., 3, H, W]`` RGB, channels first. ``uint8`` in [0, 255], or floating point in [0, 1]
            (like ``torchvision.transforms.functional.to_tensor``).

    Returns:
        ``float32 [..., 3, H, W]``, ``(images - mean) / std`` with the ImageNet mean and std.
    """
    if images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(
            f"normalize expects [..., 3, H, W] RGB images (channels first), got {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    elif images.is_floating_point():
        if images.numel() and float(images.detach().amax()) > 2.0:
            raise ValueError(
                "normalize got a float tensor with values above 1; float images must be in [0, 1]. "
                "Pass uint8 (0..255) or divide by 255 first."
            )
        x = images.float()
    else:
        raise ValueError(f"normalize expects uint8 or floating point images, got {images.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


class TraceNetDense(nn.Module):
    """Dense TraceNet: ``forward(images [B, 3, H, W]) -> dict`` (see docs/ARCHITECTURE.md).

    Keys, for ``l`` in 3..7 and ``H_l, W_l = ceil(H / 2**l), ceil(W / 2**l)``:

    - ``cls_p{l}``  ``[B, C, H_l, W_l]`` class logits
    - ``box_p{l}``  ``[B, 4, H_l, W_l]`` (left, top, right, bottom) distances in input pixels, >= 0
    - ``ctr_p{l}``  ``[B, 1, H_l, W_l]`` centerness logits
    - ``ctrl_p{l}`` ``[B, 169, H_l, W_l]`` dynamic mask-head parameters
    - ``mask_feats`` ``[B, 8, H_3, W_3]`` mask-branch output at stride 8

    Parts are injected; :func:`build_model` wires them from a :class:`TraceNetConfig`.
    """

    def __init__(
        self, *, backbone: nn.Module, fpn: FeaturePyramidNetwork, head: TraceNetHead, mask_branch: MaskBranch
    ):
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.head = head
        self.mask_branch = mask_branch

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        c3, c4, c5 = self.backbone(images)
        pyramid = self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)]))  # + p6, p7 (from P5)
        levels = list(pyramid.values())
        head_out = self.head(levels)
        out: dict[str, Tensor] = {}
        for kind in OUTPUT_KINDS:
            for level, tensor in zip(LEVELS, head_out[kind], strict=True):
                out[f"{kind}_p{level}"] = tensor
        out["mask_feats"] = self.mask_branch(levels[0])
        return out


def build_model(cfg: TraceNetConfig) -> TraceNetDense:
    """Build a :class:`TraceNetDense` from ``cfg`` (loads ImageNet backbone weights if the config asks)."""
    cfg.validate()
    backbone = build_backbone(cfg)
    ch = cfg.fpn_channels
    fpn = FeaturePyramidNetwork(list(backbone.out_channels), ch, extra_blocks=LastLevelP6P7(ch, ch))
    head = TraceNetHead(
        in_channels=ch, num_classes=cfg.num_classes, num_convs=cfg.head_convs, prior_prob=cfg.prior_prob
    )
    mask_branch = MaskBranch(
        in_channels=ch,
        channels=cfg.mask_branch_channels,
        num_convs=cfg.mask_branch_convs,
        out_channels=cfg.mask_channels,
    )
    return TraceNetDense(backbone=backbone, fpn=fpn, head=head, mask_branch=mask_branch)
