"""FCOS / CondInst heads with BatchNorm, and the CondInst mask branch on P3.

All ops are local (conv, BatchNorm, ReLU, scalar multiply), so the Receptive Field Tracer can crop them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tracenet.model.dynamic_head import DYNAMIC_PARAM_COUNT
from tracenet.model.geometry import STRIDES


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level for the box regression, as in FCOS)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """conv3x3 (stride 1, pad 1, no bias) + BatchNorm2d + ReLU; ``[B, in, H, W] -> [B, out, H, W]``."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=False)
    )


class TraceNetHead(nn.Module):
    """Shared cls / box towers and the four predictors, applied to every pyramid level.

    Per level ``l`` (input ``[B, ch, H_l, W_l]``) it predicts class logits ``[B, C, H_l, W_l]``,
    (left, top, right, bottom) box distances in input pixels ``relu(scale_l * x) * stride_l`` ``[B, 4, H_l, W_l]``,
    centerness logits ``[B, 1, H_l, W_l]`` and dynamic mask-head parameters ``[B, 169, H_l, W_l]``. Centerness and
    controller sit on the box tower (CondInst).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        prior_prob: float = 0.01,
        strides: tuple[int, ...] = STRIDES,
    ) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.cls_tower = nn.Sequential(*[conv_bn_relu(in_channels, in_channels) for _ in range(num_convs)])
        self.box_tower = nn.Sequential(*[conv_bn_relu(in_channels, in_channels) for _ in range(num_convs)])
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.controller = nn.Conv2d(in_channels, DYNAMIC_PARAM_COUNT, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1.0 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor]) -> dict[str, list[Tensor]]:
        """``features``: P3..P7. Returns lists (one tensor per level) under ``cls``, ``box``, ``ctr``, ``ctrl``."""
        out: dict[str, list[Tensor]] = {"cls": [], "box": [], "ctr": [], "ctrl": []}
        for i, feat in enumerate(features):
            for kind, tensor in self.level(feat, i).items():
                out[kind].append(tensor)
        return out

    def level(self, feat: Tensor, index: int) -> dict[str, Tensor]:
        """The heads on one level: ``feat [B, ch, H_l, W_l]`` of level ``3 + index`` -> ``cls``, ``box``,
        ``ctr``, ``ctrl`` maps of the same grid."""
        cls_feat = self.cls_tower(feat)
        box_feat = self.box_tower(feat)
        return {
            "cls": self.cls_logits(cls_feat),
            "box": F.relu(self.scales[index](self.bbox_pred(box_feat))) * self.strides[index],
            "ctr": self.ctrness(box_feat),
            "ctrl": self.controller(box_feat),
        }


class MaskBranch(nn.Module):
    """CondInst mask branch on P3: ``num_convs`` x (conv3x3 + BN + ReLU), then conv1x1 to ``out_channels``.

    ``[B, in, H_3, W_3] -> [B, 8, H_3, W_3]`` (stride 8). Kaiming-uniform init as in CondInst.
    """

    def __init__(self, *, in_channels: int, channels: int, num_convs: int = 4, out_channels: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(num_convs):
            layers.append(conv_bn_relu(ch, channels))
            ch = channels
        self.tower = nn.Sequential(*layers)
        self.out_conv = nn.Conv2d(ch, out_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, p3: Tensor) -> Tensor:
        return self.out_conv(self.tower(p3))
