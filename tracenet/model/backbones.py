"""Backbones returning ``[C3, C4, C5]`` (strides 8, 16, 32) and the factory that picks one from a config.

Every backbone exposes ``out_channels: tuple[int, int, int]`` and maps ``[B, 3, H, W]`` to
``[B, c_i, ceil(H / s), ceil(W / s)]`` for ``s = 8, 16, 32`` with any ``H, W``.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from tracenet.model.config import TraceNetConfig
from tracenet.model.efficientnet_lite import EfficientNetLite, load_lite_pretrained, read_state_dict

_RESNETS = {
    "resnet50": (models.resnet50, models.ResNet50_Weights),
    "resnet101": (models.resnet101, models.ResNet101_Weights),
}


class ResNetTrunk(nn.Module):
    """torchvision ResNet without ``avgpool`` / ``fc`` (not local), returning ``[C3, C4, C5]``.

    C3, C4, C5 are the outputs of ``layer2``, ``layer3``, ``layer4`` (512, 1024, 2048 channels for R50/R101).
    """

    def __init__(self, net: models.ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        widths = [layer[-1].conv3.out_channels for layer in (self.layer2, self.layer3, self.layer4)]
        self.out_channels: tuple[int, int, int] = (widths[0], widths[1], widths[2])

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def _wants_pretrained(cfg: TraceNetConfig) -> bool:
    return cfg.pretrained_backbone or cfg.backbone_weights is not None


def _build_resnet(cfg: TraceNetConfig) -> ResNetTrunk:
    builder, weights_enum = _RESNETS[cfg.backbone]
    norm = FrozenBatchNorm2d if cfg.freeze_backbone_bn else nn.BatchNorm2d
    source = cfg.backbone_weights
    if not _wants_pretrained(cfg):
        return ResNetTrunk(builder(weights=None, norm_layer=norm))
    if source is None:
        raise ValueError(
            f"pretrained_backbone=True for {cfg.backbone}, but ResNet ImageNet weights are not bundled. Set "
            f"backbone_weights to a torchvision weights name such as 'IMAGENET1K_V2' (downloads once, needs "
            f"internet) or to a local .pth/.safetensors state dict, or set pretrained_backbone=False."
        )
    if Path(source).suffix in (".pth", ".pt", ".safetensors") or Path(source).exists():
        net = builder(weights=None, norm_layer=norm)
        state = read_state_dict(source)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
            raise RuntimeError(
                f"{source} does not match torchvision {cfg.backbone}: missing keys {missing[:5]}, unexpected "
                f"keys {unexpected[:5]}"
            )
        return ResNetTrunk(net)
    if source not in weights_enum.__members__:
        raise ValueError(
            f"backbone_weights={source!r} is neither an existing file nor a torchvision weights name for "
            f"{cfg.backbone}; choose one of {list(weights_enum.__members__)}"
        )
    try:
        net = builder(weights=weights_enum[source], norm_layer=norm)
    except Exception as err:  # network errors come in many types (URLError, OSError, HTTPError...)
        raise RuntimeError(
            f"could not fetch torchvision {cfg.backbone} weights {source!r}: {err}. They cannot be downloaded "
            f"offline; download them on a machine with internet (they land in ~/.cache/torch/hub/checkpoints), "
            f"pass the .pth path as backbone_weights, or set pretrained_backbone=False."
        ) from err
    return ResNetTrunk(net)


def build_backbone(cfg: TraceNetConfig) -> nn.Module:
    """The backbone named by ``cfg.backbone``, with ImageNet weights when the config asks for them."""
    if cfg.backbone.startswith("lite"):
        net = EfficientNetLite(cfg.backbone, frozen_bn=cfg.freeze_backbone_bn)
        if _wants_pretrained(cfg):
            load_lite_pretrained(net, cfg.backbone_weights)
        return net
    return _build_resnet(cfg)
