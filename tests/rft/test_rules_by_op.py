"""One supported op at a time, traced at its output's corners, edges and centre: the tracer's values equal the
full run's.

The op under test reads the input directly (so a mutant of one rule only runs the cases of that rule); each case
is traced at the first two, middle and last two rows x columns of its output (25 locations), one query per run (so
each run crops its own window and meets the map's edges where that location does), some also through a cache, and
at two far corners in one run. Small maps (seconds in all), so mutation testing (``scripts/mutation_test.py``) can
run the file once per mutant of the tracer's rules; the reference is PyTorch's own full-size run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, Rect, TraceCache

C = 4


class OneOp(nn.Module):
    """``op(x)``; ``op`` may use the modules and tensors given to it through ``self``."""

    def __init__(self, op: Callable, **parts) -> None:
        super().__init__()
        self.op = op
        for name, part in parts.items():
            if isinstance(part, nn.Module):
                self.add_module(name, part)
            else:
                self.register_buffer(name, part)

    def forward(self, x):
        return self.op(self, x)


def _w(*shape) -> torch.Tensor:
    return torch.randn(*shape) / 3


CASES: dict[str, Callable[[], OneOp]] = {
    # convolution: padding, stride, dilation, groups, rectangular kernels, string padding, functional form
    "conv3_p1": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, padding=1)),
    "conv3_s2_p1": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, stride=2, padding=1)),
    "conv3_s2_p0_nobias": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, stride=2, bias=False)),
    "conv3_d2_p2": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, padding=2, dilation=2)),
    "conv3x5_s21_p12": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, (3, 5), stride=(2, 1), padding=(1, 2))),
    "conv5x3_s12_d21": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, (5, 3), stride=(1, 2), dilation=(2, 1))),
    "conv3_groups2": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, padding=1, groups=2)),
    "conv3_depthwise_s2": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, 2, 1, groups=C)),
    "conv4_same": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 4, padding="same")),
    "conv3_valid": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, padding="valid")),
    "conv1_s2": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 1, stride=2)),
    "conv2_s2": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 2, stride=2)),
    "f_conv2d_args": lambda: OneOp(lambda s, x: F.conv2d(x, s.w, s.b, 2, 1), w=_w(C, C, 3, 3), b=_w(C)),
    "f_conv2d_kwargs": lambda: OneOp(lambda s, x: F.conv2d(x, s.w, stride=(1, 2), padding=(2, 0), dilation=2),
                                     w=_w(C, C, 3, 3)),
    "f_conv2d_groups": lambda: OneOp(lambda s, x: F.conv2d(x, s.w, None, 1, 1, 1, 2), w=_w(C, C // 2, 3, 3)),
    # pooling: max / avg, module / functional, padding, ceil mode, dilation, count_include_pad, divisor
    "maxpool3_s2_p1": lambda: OneOp(lambda s, x: s.m(x), m=nn.MaxPool2d(3, 2, 1)),
    "maxpool2_ceil": lambda: OneOp(lambda s, x: s.m(x), m=nn.MaxPool2d(2, ceil_mode=True)),
    "maxpool3_s1_p1_d2": lambda: OneOp(lambda s, x: s.m(x), m=nn.MaxPool2d(3, 1, 1, dilation=2)),
    "maxpool_rect": lambda: OneOp(lambda s, x: s.m(x), m=nn.MaxPool2d((2, 3), (1, 2), (1, 1), ceil_mode=True)),
    "f_max_pool2d": lambda: OneOp(lambda s, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    "f_max_pool2d_default_stride": lambda: OneOp(lambda s, x: F.max_pool2d(x, 2)),
    "avgpool3_s2_p1": lambda: OneOp(lambda s, x: s.m(x), m=nn.AvgPool2d(3, 2, 1)),
    "avgpool3_s2_p1_nopad": lambda: OneOp(lambda s, x: s.m(x), m=nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
    "avgpool2_ceil": lambda: OneOp(lambda s, x: s.m(x), m=nn.AvgPool2d(2, ceil_mode=True)),
    "avgpool3_s2_p1_ceil_nopad": lambda: OneOp(lambda s, x: s.m(x),
                                               m=nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
    "avgpool_divisor": lambda: OneOp(lambda s, x: s.m(x), m=nn.AvgPool2d(3, 1, 1, divisor_override=2)),
    "f_avg_pool2d": lambda: OneOp(lambda s, x: F.avg_pool2d(x, (3, 2), (2, 1), (1, 0), True, False)),
    "f_avg_pool2d_defaults": lambda: OneOp(lambda s, x: F.avg_pool2d(x, 3, 2, 1)),  # count_include_pad default
    "f_avg_pool2d_no_padding": lambda: OneOp(lambda s, x: F.avg_pool2d(x, 3)),
    "f_max_pool2d_kwargs": lambda: OneOp(lambda s, x: F.max_pool2d(x, kernel_size=3, stride=2, padding=1,
                                                                     dilation=2, ceil_mode=True)),
    "f_avg_pool2d_kwargs": lambda: OneOp(lambda s, x: F.avg_pool2d(x, kernel_size=3, stride=3, padding=1,
                                                                     ceil_mode=True, count_include_pad=True)),
    # interpolation: nearest / nearest-exact / bilinear, size or scale, align_corners, down-sampling
    "nearest_x2": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=2)),
    "nearest_x1_5": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=1.5, mode="nearest")),
    "nearest_exact_x1_5": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=1.5, mode="nearest-exact")),
    "nearest_size": lambda: OneOp(lambda s, x: F.interpolate(x, size=(17, 9))),
    "nearest_size_int": lambda: OneOp(lambda s, x: F.interpolate(x, 20)),
    "bilinear_x2": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
    "bilinear_x2_corners": lambda: OneOp(lambda s, x: F.interpolate(x, None, 2, "bilinear", True)),
    "bilinear_size": lambda: OneOp(lambda s, x: F.interpolate(x, size=(7, 23), mode="bilinear", align_corners=False)),
    "bilinear_down": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=0.5, mode="bilinear")),
    "bilinear_aniso_recompute": lambda: OneOp(lambda s, x: F.interpolate(
        x, scale_factor=(2.0, 0.75), mode="bilinear", align_corners=False, recompute_scale_factor=True)),
    "upsample_module_bilinear": lambda: OneOp(lambda s, x: s.m(x), m=nn.Upsample(scale_factor=2, mode="bilinear")),
    "upsample_module_nearest": lambda: OneOp(lambda s, x: s.m(x), m=nn.Upsample(size=(15, 14))),
    # padding: constant, value, negative (crop), module forms, last dim only
    "f_pad": lambda: OneOp(lambda s, x: F.pad(x, (1, 2, 0, 3))),
    "f_pad_value": lambda: OneOp(lambda s, x: F.pad(x, (1, 1, 2, 0), value=0.5)),
    "f_pad_mode_value": lambda: OneOp(lambda s, x: F.pad(x, (0, 2, 1, 1), "constant", -1.0)),
    "f_pad_negative": lambda: OneOp(lambda s, x: F.pad(x, (-1, 2, 1, -2))),
    "f_pad_last_dim": lambda: OneOp(lambda s, x: F.pad(x, (2, 1))),
    "zeropad_module": lambda: OneOp(lambda s, x: s.m(x), m=nn.ZeroPad2d((2, 0, 1, 1))),
    "constpad_module": lambda: OneOp(lambda s, x: s.m(x), m=nn.ConstantPad2d(1, 0.3)),
    "pad_then_conv": lambda: OneOp(lambda s, x: s.m(F.pad(x, (1, 0, 0, 1), value=2.0)), m=nn.Conv2d(C, C, 3)),
    # pointwise: full-size constants, broadcasting, activations, methods
    "times_full_map": lambda: OneOp(lambda s, x: x * s.k, k=torch.randn(1, C, 13, 11)),
    "plus_row_and_col": lambda: OneOp(lambda s, x: x + s.r - s.c, r=torch.randn(1, 1, 13, 1), c=torch.randn(1, 11)),
    "full_map_on_the_left": lambda: OneOp(lambda s, x: torch.sub(s.k, x), k=torch.randn(C, 13, 11)),
    "affine_per_channel": lambda: OneOp(lambda s, x: x * s.a + s.b, a=torch.randn(C, 1, 1), b=torch.randn(C, 1, 1)),
    "activations": lambda: OneOp(lambda s, x: F.silu(torch.sigmoid(x) * x.relu() - x.clamp(-0.5, 0.5))),
    "where_full_map": lambda: OneOp(lambda s, x: torch.where(s.k > 0, x, -x), k=torch.randn(1, C, 13, 11)),
    "batchnorm": lambda: OneOp(lambda s, x: s.m(x), m=_bn()),
    # pass-through and global ops
    "chunk_getitem": lambda: OneOp(lambda s, x: x.chunk(2, dim=1)[1] * 2),
    "groupnorm": lambda: OneOp(lambda s, x: s.m(x), m=nn.GroupNorm(2, C)),
    "squeeze_excite": lambda: OneOp(lambda s, x: x * torch.sigmoid(s.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)))
                                    [:, :, None, None], fc=nn.Linear(C, C)),
    "mean_over_space": lambda: OneOp(lambda s, x: x - x.mean(dim=(2, 3), keepdim=True)),
    # call forms torch.fx records as written: one-element tuples, sizes read from the input's shape, keywords
    "conv3_p3": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 3, padding=3)),  # corners: all padding
    "conv5_d2_same": lambda: OneOp(lambda s, x: s.m(x), m=nn.Conv2d(C, C, 5, padding="same", dilation=2)),
    "f_conv2d_padding_from_shape": lambda: OneOp(lambda s, x: F.conv2d(x, s.w, None, 1, x.shape[1] // 4),
                                                 w=_w(C, C, 3, 3)),
    "f_conv2d_dynamic_weight": lambda: OneOp(
        lambda s, x: F.conv2d(x, x.mean(dim=(2, 3)).reshape(C, 1, 1, 1), None, 1, 0, 1, C)),
    "f_max_pool2d_one_element_tuples": lambda: OneOp(lambda s, x: F.max_pool2d(x, (3,), (2,), (1,))),
    "f_max_pool2d_kernel_from_shape": lambda: OneOp(lambda s, x: F.max_pool2d(x, x.shape[2] // 6, 1)),
    "f_avg_pool2d_divisor_keyword": lambda: OneOp(lambda s, x: F.avg_pool2d(x, kernel_size=3, stride=1, padding=1,
                                                                              divisor_override=4)),
    "bilinear_scale_from_shape": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=x.shape[-1] / 5.5,
                                                                            mode="bilinear")),
    "bilinear_antialias_down": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=0.5, mode="bilinear",
                                                                          antialias=True)),  # global: run whole
    "bicubic_x2": lambda: OneOp(lambda s, x: F.interpolate(x, scale_factor=2, mode="bicubic")),  # global
    "module_called_by_keyword": lambda: OneOp(lambda s, x: s.m(input=x), m=nn.SiLU()),
    "add_by_keyword": lambda: OneOp(lambda s, x: torch.add(torch.add(x, other=s.k, alpha=0.5), other=torch.tanh(x)),
                                    k=torch.randn(1, C, 13, 11)),
    "leaky_relu_keyword": lambda: OneOp(lambda s, x: F.leaky_relu(x, negative_slope=0.3)),
    "cat_with_constant_map": lambda: OneOp(lambda s, x: torch.cat([x, s.k], dim=1), k=torch.randn(1, 2, 13, 11)),
    "scalar_constants": lambda: OneOp(lambda s, x: x * s.k.shape[1] * s.scalar - s.one,
                                      k=torch.zeros(2, 3), scalar=torch.tensor(0.5), one=torch.ones(1)),
    "column_gate_first": lambda: OneOp(lambda s, x: torch.sigmoid(x.mean(dim=(0, 1, 2))) * x),
    "times_full_map_2x2": lambda: OneOp(lambda s, x: F.pad(x, (0, -9, 0, -11)) * s.k * s.v,
                                        k=torch.randn(1, C, 2, 2), v=torch.randn(2)),
    "conv_then_pad": lambda: OneOp(lambda s, x: F.pad(s.m(x), (2, 1, 3, 0), value=0.5), m=nn.Conv2d(C, C, 1)),
    # a crop of a partly computed map, then a whole-map op on it: the rules' whole-map branches
    "crop_conv_same_groupnorm": lambda: OneOp(lambda s, x: s.n(s.m2(F.pad(s.m1(x), (-4, -4, -5, -5)))),
                                              m1=nn.Conv2d(C, C, 1), m2=nn.Conv2d(C, C, 3, padding="same"),
                                              n=nn.GroupNorm(2, C)),
    "crop_conv_d2_groups2_groupnorm": lambda: OneOp(
        lambda s, x: s.n(s.m2(F.pad(s.m1(x), (-4, -4, -5, -5)))), m1=nn.Conv2d(C, C, 1),
        m2=nn.Conv2d(C, C, 3, padding=2, dilation=2, groups=2), n=nn.GroupNorm(2, C)),
    "crop_f_max_pool2d_shape_kw_groupnorm": lambda: OneOp(
        lambda s, x: F.group_norm(F.max_pool2d(F.pad(s.m1(x), (-4, -4, -5, -5)), 3, stride=1,
                                               padding=x.shape[1] // 4), 2), m1=nn.Conv2d(C, C, 1)),
    "crop_maxpool_groupnorm": lambda: OneOp(lambda s, x: s.n(s.p(F.pad(s.m1(x), (-4, -4, -5, -5)))),
                                            m1=nn.Conv2d(C, C, 1), p=nn.MaxPool2d(3, 1, 1), n=nn.GroupNorm(2, C)),
    "crop_adaptive_pool": lambda: OneOp(lambda s, x: F.adaptive_avg_pool2d(F.pad(s.m1(x), (-4, -4, -5, -5)), 2),
                                        m1=nn.Conv2d(C, C, 1)),
    "crop_f_group_norm_weight_kw": lambda: OneOp(
        lambda s, x: F.group_norm(F.pad(s.m1(x), (-4, -4, -5, -5)), 2, weight=s.g, bias=s.b),
        m1=nn.Conv2d(C, C, 1), g=torch.rand(C) + 0.5, b=torch.randn(C)),
    # an input-dependent keyword of a whole op after a crop: its value must be materialised whole too
    "crop_f_group_norm_dynamic_weight_kw": lambda: OneOp(
        lambda s, x: F.group_norm(F.pad(s.m1(x), (-4, -4, -5, -5)), 2, weight=x.mean(dim=(0, 2, 3)) + 1.0),
        m1=nn.Conv2d(C, C, 1)),
    "plus_2d_slice": lambda: OneOp(lambda s, x: x + x[0, 0]),
    "cat_of_chunks": lambda: OneOp(lambda s, x: torch.cat(x.chunk(2, dim=1), dim=1) * 2),
    "crop_f_avg_pool2d_groupnorm": lambda: OneOp(
        lambda s, x: F.group_norm(F.avg_pool2d(F.pad(s.m1(x), (-4, -4, -5, -5)), 3, 1, 1), 2),
        m1=nn.Conv2d(C, C, 1)),
}

WHOLE_OUTPUT = {"groupnorm", "bilinear_antialias_down", "bicubic_x2", "crop_conv_same_groupnorm",
                "crop_maxpool_groupnorm", "crop_f_avg_pool2d_groupnorm", "crop_adaptive_pool",
                "crop_f_group_norm_weight_kw", "crop_conv_d2_groups2_groupnorm", "crop_f_max_pool2d_shape_kw_groupnorm",
                "crop_f_group_norm_dynamic_weight_kw"}
"""Cases whose op is global: its output is computed whole (every other op computes the queried cell only)."""


def _bn() -> nn.BatchNorm2d:
    m = nn.BatchNorm2d(C)
    m.running_mean.normal_(0, 0.5)
    m.running_var.uniform_(0.5, 2.0)
    m.weight.data.uniform_(0.5, 1.5)
    m.bias.data.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("name", list(CASES))
def test_every_output_location_equals_the_full_run(name: str) -> None:
    """Guards each rule's window arithmetic and cropped execution at the map's edges and inside."""
    torch.manual_seed(0)
    net = CASES[name]().eval()
    x = torch.randn(1, C, 13, 11)
    with torch.no_grad():
        full = net(x)
    h, w = full.shape[-2:]
    tracer = ReceptiveFieldTracer(net)
    cache = TraceCache()
    rows = sorted({0, 1, h // 2, h - 2, h - 1} & set(range(h)))
    cols = sorted({0, 1, w // 2, w - 2, w - 1} & set(range(w)))
    for r in rows:
        for c in cols:
            for use_cache in (None, cache) if r == c else (None,):
                got = tracer.gather(x, {0: [(r, c)]}, use_cache)[0]
                torch.testing.assert_close(got[..., 0], full[..., r, c], atol=1e-5, rtol=1e-4,
                                           msg=lambda m, r=r, c=c: f"{name} at ({r}, {c}): {m}")
    pair = [(0, w - 1), (h - 1, 0)]  # two far corners in one run: one window each, not their bounding box
    got = tracer.gather(x, {0: pair})[0]
    torch.testing.assert_close(got, full[..., [0, h - 1], [w - 1, 0]], atol=1e-5, rtol=1e-4)
    block = [(r, c) for r in (h // 2 - 1, h // 2) for c in (w // 2 - 1, w // 2)]  # one 2 x 2 window
    got = tracer.gather(x, {0: block})[0]
    torch.testing.assert_close(got, full[..., [p[0] for p in block], [p[1] for p in block]], atol=1e-5, rtol=1e-4)
    steps = tracer.plan(tuple(x.shape), {0: [(0, 0)]}).steps
    if name not in WHOLE_OUTPUT:  # the op ran on the queried cell, not whole (nor fell back to a whole-map rule)
        assert steps[-1].rule.name != "whole" and steps[-1].rect == Rect(0, 1, 0, 1)
        # and every local step computed a window (a map operand is not made whole)
        assert all(s.rect is not None and s.rect != Rect(0, h, 0, w) for s in steps if s.rule.name != "whole")


class _Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.avgpool = nn.AvgPool2d((2, 3))

    def forward(self, x):
        return self.avgpool(self.maxpool(x))


class _Dense(nn.Module):
    """Three global products on pooled features: a Linear module, ``F.linear`` and ``torch.matmul``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(C, 6)
        self.w2 = nn.Parameter(torch.randn(3, 6))
        self.w3 = nn.Parameter(torch.randn(3, C))
        self.conv = nn.Conv2d(C, 6, 3, padding=1, groups=2)

    def forward(self, x):
        v = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # [B, 6]: B * 6 * 4 MACs
        v = F.linear(v, self.w2)  # [B, 3]: B * 3 * 6
        v = torch.matmul(v[:, None, :], self.w3)[:, 0]  # [B, 1, C]: B * C * 3
        u = torch.matmul(self.w3, v[:, :, None])  # [B, 3, 1], constant first operand: B * 3 * C
        return self.conv(x) * (v.mean(dim=1) + u.mean(dim=(1, 2)))[:, None, None, None]


def test_macs_of_pools_and_global_products_by_hand() -> None:
    """Guards the MACs the plan reports for pooling and for global products (Linear, ``F.linear``, ``matmul``),
    with a batch of 2. Pools on 4 x 17 x 17: max 3x3 / 2 (pad 1) -> 9 x 9: 2 * 4 * 81 * 9 = 5832; avg (2, 3) ->
    4 x 3: 2 * 4 * 12 * 6 = 576; output location (0, 0) needs one avg output (2 * 4 * 6 = 48) over max outputs
    rows 0-1, cols 0-2 (2 * 4 * 6 * 9 = 432). Dense on 4 x 5 x 5: Linear 2 * 6 * 4 = 48, F.linear 2 * 3 * 6 = 36,
    matmul 2 * 4 * 3 = 24, matmul with a constant first operand 2 * 3 * 4 = 24 (counted 0 before: its inner
    size is read off the second operand), all run whole for any query; the grouped conv (4 -> 6, 3x3, 2 groups)
    2 * 6 * 25 * 2 * 9 = 5400 in full."""
    pools = ReceptiveFieldTracer(_Pools().eval())
    plan = pools.plan((2, C, 17, 17), {0: [(0, 0)]})
    assert plan.full_macs == 5832 + 576
    assert plan.macs == 432 + 48
    dense = ReceptiveFieldTracer(_Dense().eval())
    plan = dense.plan((2, C, 5, 5), {0: [(0, 0)]})
    assert plan.full_macs == 48 + 36 + 24 + 24 + 5400
    table = {row["node"]: row for row in plan.node_table()}
    assert (table["fc"]["macs"], table["linear"]["macs"], table["matmul"]["macs"], table["matmul_1"]["macs"]) == (
        48, 36, 24, 24)
