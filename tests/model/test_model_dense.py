"""TraceNetDense: output contract, fx traceability, locality, normalisation, BN folding."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

from tracenet.model import (
    PRESETS,
    TraceNetDense,
    build_model,
    fuse_conv_bn,
    locations,
    normalize,
    output_keys,
)

SMALL = {"fpn_channels": 16, "mask_branch_channels": 16, "mask_branch_convs": 2, "head_convs": 2}


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every norm non-trivial statistics so BN-related mistakes change outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "running_var") and m.running_var is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def lite_small() -> TraceNetDense:
    torch.manual_seed(0)
    model = build_model(PRESETS["lite0"].replace(pretrained_backbone=False, **SMALL)).eval()
    with torch.no_grad():
        _randomise_bn(model)
    return model


@pytest.fixture(scope="module")
def r50_small() -> TraceNetDense:
    torch.manual_seed(0)
    return build_model(PRESETS["r50"].replace(num_classes=3, **SMALL)).eval()


def _check_contract(out: dict, b: int, h: int, w: int, c: int) -> None:
    assert list(out) == output_keys()
    for level in range(3, 8):
        s = 2**level
        hl, wl = -(-h // s), -(-w // s)
        assert out[f"cls_p{level}"].shape == (b, c, hl, wl)
        assert out[f"box_p{level}"].shape == (b, 4, hl, wl)
        assert out[f"ctr_p{level}"].shape == (b, 1, hl, wl)
        assert out[f"ctrl_p{level}"].shape == (b, 169, hl, wl)
    assert out["mask_feats"].shape == (b, 8, -(-h // 8), -(-w // 8))


@pytest.mark.parametrize("hw", [(97, 131), (64, 96), (130, 97)])
def test_output_contract_on_odd_sizes(lite_small, hw):
    with torch.no_grad():
        out = lite_small(torch.randn(2, 3, *hw))
    _check_contract(out, 2, *hw, c=1)


@settings(max_examples=6, deadline=None)
@given(h=st.integers(9, 80), w=st.integers(9, 80))
def test_any_size_works(lite_small, h, w):
    with torch.no_grad():
        out = lite_small(torch.randn(1, 3, h, w))
    _check_contract(out, 1, h, w, c=1)


def test_boxes_are_non_negative_pixel_distances(lite_small):
    model = lite_small
    with torch.no_grad():
        old = model.head.bbox_pred.bias.clone()
        model.head.bbox_pred.bias.copy_(
            torch.tensor([-1.0, 1.0, -1.0, 1.0])
        )  # force negative pre-activations
        try:
            out = model(torch.randn(1, 3, 64, 96))
        finally:
            model.head.bbox_pred.bias.copy_(old)
    for level in range(3, 8):
        box = out[f"box_p{level}"]
        assert (box >= 0).all()
        assert (box[:, 0] == 0).any()  # the ReLU really clamps
        # distances are scaled by the stride: (1 * scale) * stride for the positive-bias channels
        assert box[:, 1].max() > 0.5 * 2**level


def test_num_classes_and_resnet(r50_small):
    with torch.no_grad():
        out = r50_small(torch.randn(1, 3, 67, 45))
    _check_contract(out, 1, 67, 45, c=3)


def test_cls_bias_is_prior_prob(lite_small):
    assert torch.sigmoid(lite_small.head.cls_logits.bias).item() == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("which", ["lite_small", "r50_small"])
def test_symbolic_trace_matches_module(request, which):
    model = request.getfixturevalue(which)
    graph_module = fx.symbolic_trace(model)
    x = torch.randn(1, 3, 71, 53)
    with torch.no_grad():
        want = model(x)
        got = graph_module(x)
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    # A different size through the same graph: no shape was baked in.
    with torch.no_grad():
        _check_contract(
            graph_module(torch.randn(1, 3, 40, 90)), 1, 40, 90, c=model.head.cls_logits.out_channels
        )


@pytest.mark.parametrize("which", ["lite_small", "r50_small"])
def test_only_local_ops(request, which):
    model = request.getfixturevalue(which)
    banned = (nn.GroupNorm, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.LayerNorm)
    assert not [n for n, m in model.named_modules() if isinstance(m, banned)]
    graph = fx.symbolic_trace(model).graph
    names = " ".join(str(n.target) for n in graph.nodes)
    for bad in ("adaptive", "group_norm", "mean", "sigmoid"):
        assert bad not in names


def test_locations_hand_computed():
    loc3, loc7 = locations([(2, 3), (1, 1)], (8, 128))
    assert loc3.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert loc7.tolist() == [[64, 64]]
    assert loc3.dtype == torch.float32


def test_normalize_ranges():
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    a = normalize(u8)
    b = normalize(u8.float() / 255)
    torch.testing.assert_close(a, b)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(a, (u8.float() / 255 - mean) / std)
    with pytest.raises(ValueError, match="divide by 255"):
        normalize(u8.float())
    with pytest.raises(ValueError, match="3, H, W"):
        normalize(torch.zeros(2, 4, 4, 3))


@pytest.mark.parametrize("which", ["lite_small", "r50_small"])
def test_fuse_conv_bn_keeps_outputs_and_removes_norms(request, which):
    from torchvision.ops import FrozenBatchNorm2d

    model = request.getfixturevalue(which)
    if which == "r50_small":
        with torch.no_grad():
            _randomise_bn(model, seed=1)
    fused = fuse_conv_bn(model)
    assert isinstance(fused, TraceNetDense)
    assert not [n for n, m in fused.named_modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())  # original intact
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        want, got = model(x), fused(x)
    for k in want:  # folding reorders float ops: compare relative to each output's scale
        torch.testing.assert_close(got[k], want[k], rtol=1e-3, atol=1e-4 * float(want[k].abs().max()) + 1e-6)
    fx.symbolic_trace(fused)  # still traceable
