"""torchvision ResNet + FeaturePyramidNetwork + LastLevelP6P7 + four 3x3 conv towers per level (random weights).

Shared by the tracer tests and the benchmark. BatchNorm statistics are calibrated on random data once so that
activations stay O(1) through 50+ layers (with identity statistics they grow to 1e4 and an absolute tolerance
would test float rounding rather than the tracer).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


class Tower(nn.Sequential):
    def __init__(self, channels: int, convs: int = 4) -> None:
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]
        super().__init__(*layers)


class ResNetFPNTowers(nn.Module):
    """Outputs ``p3 .. p7``: a shared 4-conv tower applied to every FPN level (``towers=2``: a second tower, as
    FCOS/CondInst have for classification and box regression, whose output is added)."""

    def __init__(self, depth: int = 50, channels: int = 256, towers: int = 1) -> None:
        super().__init__()
        resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.body = IntermediateLayerGetter(resnet, {"layer2": "c3", "layer3": "c4", "layer4": "c5"})
        widths = [128, 256, 512] if depth in (18, 34) else [512, 1024, 2048]
        self.fpn = FeaturePyramidNetwork(widths, channels, extra_blocks=LastLevelP6P7(channels, channels))
        self.tower = Tower(channels)
        self.box_tower = Tower(channels) if towers == 2 else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.fpn(self.body(x))
        names = ["p3", "p4", "p5", "p6", "p7"]
        if self.box_tower is None:
            return OrderedDict((n, self.tower(f)) for n, f in zip(names, feats.values()))
        return OrderedDict((n, self.tower(f) + self.box_tower(f)) for n, f in zip(names, feats.values()))


def calibrated(model: nn.Module, shape: tuple[int, ...] = (2, 3, 96, 128), seed: int = 0) -> nn.Module:
    """Set BatchNorm running statistics from one pass over random data, then switch to eval mode."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.randn(shape))
    return model.eval()
