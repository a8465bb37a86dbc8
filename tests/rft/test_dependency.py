"""The exact dependency sets the benchmark compares the planner's rectangles with (``rft/dependency.py``):
against autograd (a position contributes to an output iff the output's gradient there is non-zero) and, for the
rectangle-vs-exact counts, by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, TraceCache
from tracenet.rft.dependency import exact_masks, rect_vs_exact


class Chain(nn.Module):
    """Dilated conv, avg pooling, bilinear resizing, padding with a crop, strided conv, smooth activations: every
    position a query depends on gets a non-zero gradient (random weights, no max / ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=2, dilation=2)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2)

    def forward(self, x):
        y = torch.tanh(self.conv1(x))
        y = F.avg_pool2d(y, 3, 2, 1)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = F.pad(y, (-1, 2, 1, 0))
        return torch.sigmoid(self.conv2(y)) * 2


def _autograd_and_exact(net: nn.Module, shape: tuple[int, ...], points: list[tuple[int, int]]):
    """(input positions with a non-zero gradient of the queried outputs, summed over batch and channels; the tracer;
    ``exact_masks``' masks; the input node)."""
    net = net.eval()
    x = torch.randn(*shape, requires_grad=True)
    out = net(x)
    sum(out[..., r, c].sum() for r, c in points).backward()
    tracer = ReceptiveFieldTracer(net)
    masks = exact_masks(tracer.layout(shape), tracer.output_nodes(), {0: points})
    (x_node,) = [n for n in masks if n.op == "placeholder"]
    return x.grad.abs().sum(dim=(0, 1)) > 0, tracer, masks, x_node


@pytest.mark.parametrize("points", [[(0, 0)], [(3, 4)], [(5, 1), (0, 6)]])
def test_exact_input_set_equals_autograds(points):
    """Guards ``exact_masks``: the input positions it marks are exactly those with a non-zero gradient of the
    queried outputs (summed over batch and channels)."""
    torch.manual_seed(0)
    expected, _tracer, masks, x_node = _autograd_and_exact(Chain(), (1, 3, 23, 19), points)
    assert torch.equal(masks[x_node], expected)


def test_rectangles_vs_exact_set_by_hand():
    """Guards ``rect_vs_exact``: two dilated 3x3 convs (3 -> 4 -> 4 channels, dilation 2, padding 2) on 15 x 15,
    query (7, 7). conv2 computes 1 position (144 MACs); conv1's exact set is rows x cols {5, 7, 9} (9 positions),
    its rectangle rows / cols 5..9 (25, under half the map, so not run whole), at 4 * 3 * 9 = 108 MACs each:
    rectangles 26 positions, 144 + 25 * 108 = 2844 MACs; exact 10 positions, 144 + 9 * 108 = 1116 MACs."""

    class TwoDilated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=2, dilation=2)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2)

        def forward(self, x):
            return self.conv2(self.conv1(x))

    tracer = ReceptiveFieldTracer(TwoDilated().eval())
    layout = tracer.layout((1, 3, 15, 15))
    plan = tracer.plan((1, 3, 15, 15), {0: [(7, 7)]})
    masks = exact_masks(layout, tracer.output_nodes(), {0: [(7, 7)]})
    conv1 = next(n for n in masks if n.name == "conv1")
    assert masks[conv1].nonzero().tolist() == [[r, c] for r in (5, 7, 9) for c in (5, 7, 9)]
    counts = rect_vs_exact(layout, plan, masks)
    assert counts == {"rect_positions": 26, "exact_positions": 10, "rect_macs": 2844, "exact_macs": 1116}


class Branches(nn.Module):
    """The dependency rules' other branches, on a 4 x 15 x 13 input, smooth ops only (a position contributes iff
    its gradient is non-zero): a channel chunk (pass-through), a rectangular strided dilated conv, operands
    broadcast along rows ([H, 1], a (1, 13) average) and columns ([1, W], a (15, 1) average), padding that adds
    rows / cols on one side (a non-zero value) and crops on the other, nearest 2x upsampling (two outputs read one input), a second
    read of ``x`` by an elementwise product, a dynamic 1x1 conv weight from a global mean, a 1-D per-column gate
    and 3-D / 2-D slices of ``x`` as operands."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, (3, 5), stride=(2, 1), padding=(1, 3), dilation=(1, 2))
        self.rows = nn.AvgPool2d((1, 13))
        self.cols = nn.AvgPool2d((15, 1))

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        y = torch.tanh(self.conv(a))  # [1, 2, 8, 11]
        y = F.interpolate(y, scale_factor=2, mode="nearest")  # [1, 2, 16, 22]
        y = F.pad(y, (2, -11, -1, 0), value=0.5)  # [1, 2, 15, 13]: cols 0-1 padding, then cols 0-10 of y; rows 1-15
        y = y * self.rows(b) + self.cols(b)
        w = x.mean(dim=(2, 3)).reshape(1, 4, 1, 1)
        gate = torch.sigmoid(x.mean(dim=(0, 1, 2)))  # 1-D, one value per column, first operand of its product
        return gate * torch.sigmoid(y) * torch.cat([a, b], 1)[:, :2] + F.conv2d(x, w) + x[0, :2] - x[0, 0]


@pytest.mark.parametrize("points", [[(0, 0)], [(14, 12)], [(6, 0), (13, 12)], [(8, 6)]])
def test_exact_input_set_of_every_branch_equals_autograds(points):
    """Guards ``_input_masks``'s pass-through, broadcast, padding, interpolation (duplicate reads), dynamic-weight
    and global branches and the union of masks of a node read twice: against autograd, at corners, the last row /
    col and inside. The dynamic 1x1 weight is a mean of all of ``x``, so autograd marks every input position."""
    torch.manual_seed(0)
    expected, tracer, masks, x_node = _autograd_and_exact(Branches(), (1, 4, 15, 13), points)
    assert bool(expected.all())
    assert torch.equal(masks[x_node], expected)
    layout = tracer.layout((1, 4, 15, 13))
    for node, mask in masks.items():  # one [H, W] map per node, on every node the planner computes with a window
        assert tuple(mask.shape) == layout.op(node).hw(), node.name
    planned = {s.node for s in tracer.plan((1, 4, 15, 13), {0: points}).steps if s.rect is not None}
    assert set(masks) == planned | {x_node}
    by_name = {n.name: m for n, m in masks.items()}
    want = torch.zeros(15, 13, dtype=torch.bool)  # the 3-D and 2-D slices of x are operands of the output's size
    want[[p[0] for p in points], [p[1] for p in points]] = True
    assert torch.equal(by_name["getitem_3"], want) and torch.equal(by_name["getitem_4"], want)


class NoGlobal(Branches):
    """The same branches without the global ops, plus a map padded on every side: the exact set is sparse."""

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        y = torch.tanh(self.conv(a))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = F.pad(y, (2, -11, -1, 0), value=0.5)
        y = y * self.rows(b) + self.cols(b)
        ring = F.pad(F.avg_pool2d(b, 3, 1, 0), (1, 1, 1, 1), value=0.5)  # 13 x 11 padded back to 15 x 13
        return torch.sigmoid(y) * torch.cat([a, b], 1)[:, :2] + ring


@pytest.mark.parametrize("points", [[(0, 0)], [(14, 12)], [(6, 0), (13, 12)], [(8, 6)], [(2, 4)], [(1, 1)],
                                    [(13, 11), (14, 5)]])
def test_exact_input_set_without_a_global_op_equals_autograds(points):
    """Guards the same branches where the answer is sparse (each of rows, cols, conv window and the pointwise
    second read visible): against autograd."""
    torch.manual_seed(0)
    expected, _tracer, masks, x_node = _autograd_and_exact(NoGlobal(), (1, 4, 15, 13), points)
    assert not bool(expected.all())
    assert torch.equal(masks[x_node], expected)


class SameTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y


def test_two_requests_on_one_node_mark_both():
    """Guards ``exact_masks`` for two requests on one node (both outputs are the same conv): its mask holds both
    points, the input mask both 3x3 windows (clipped at the corner)."""
    tracer = ReceptiveFieldTracer(SameTwice().eval())
    masks = exact_masks(tracer.layout((1, 1, 9, 9)), tracer.output_nodes(), {0: [(0, 0)], 1: [(5, 5)]})
    conv = next(n for n in masks if n.name == "conv")
    x_node = next(n for n in masks if n.op == "placeholder")
    assert masks[conv].nonzero().tolist() == [[0, 0], [5, 5]]
    want = torch.zeros(9, 9, dtype=torch.bool)
    want[0:2, 0:2] = True
    want[4:7, 4:7] = True
    assert torch.equal(masks[x_node], want)


class ExciteConvs(nn.Module):
    """conv (3 -> 4, 3x3, pad 1) on 9 x 9; squeeze-excite with a 1x1 conv (4 -> 4) on the 1 x 1 pooled map; conv2
    (4 -> 2, 3x3, pad 1) of the gated features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.excite = nn.Conv2d(4, 4, 1)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        gate = torch.sigmoid(self.excite(F.adaptive_avg_pool2d(y, 1)))
        return self.conv2(y * gate)


def test_rectangles_vs_exact_with_a_one_by_one_map_and_cached_steps():
    """Guards ``rect_vs_exact`` on a 1 x 1 map and on a plan with cached steps. Query (4, 4): conv runs whole (read
    whole by the pooling) 81 positions * 108 MACs = 8748; pool, excite (16 MACs at its single position), sigmoid:
    1 position each; the product rows / cols 3-5 (9); conv2 1 position (72 MACs). Exact sets are the same: 94
    positions, 8748 + 16 + 72 = 8836 MACs. A second query (2, 2) through the cache reuses conv and the gate (whole,
    read by partial steps) and counts only the product (9) and conv2 (1, 72 MACs)."""
    tracer = ReceptiveFieldTracer(ExciteConvs().eval())
    layout = tracer.layout((1, 3, 9, 9))
    plan = tracer.plan((1, 3, 9, 9), {0: [(4, 4)]})
    masks = exact_masks(layout, tracer.output_nodes(), {0: [(4, 4)]})
    assert rect_vs_exact(layout, plan, masks) == {"rect_positions": 94, "exact_positions": 94,
                                                   "rect_macs": 8836, "exact_macs": 8836}
    cache = TraceCache()
    tracer.gather(torch.randn(1, 3, 9, 9), {0: [(4, 4)]}, cache)
    again = tracer.plan((1, 3, 9, 9), {0: [(2, 2)]}, cache)
    assert [s.node.name for s in again.steps if s.kind == "cached"] == ["conv", "sigmoid"]
    masks = exact_masks(layout, tracer.output_nodes(), {0: [(2, 2)]})
    assert rect_vs_exact(layout, again, masks) == {"rect_positions": 10, "exact_positions": 10,
                                                    "rect_macs": 72, "exact_macs": 72}


class GateFirst(nn.Module):
    """A 1-D gate (one value per column) computed first, so the plan's first step has no window."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        gate = torch.sigmoid(x.mean(dim=(0, 1, 2)))
        return self.conv(x) * gate


def test_rectangles_vs_exact_skip_steps_without_a_window():
    """Guards ``rect_vs_exact`` skipping (not stopping at) steps without a window: the gate's mean and sigmoid come
    first; then conv (1 position, 9 MACs) and the product (1 position) at query (3, 3) of 8 x 8."""
    tracer = ReceptiveFieldTracer(GateFirst().eval())
    layout = tracer.layout((1, 1, 8, 8))
    plan = tracer.plan((1, 1, 8, 8), {0: [(3, 3)]})
    assert plan.steps[0].rect is None
    masks = exact_masks(layout, tracer.output_nodes(), {0: [(3, 3)]})
    assert rect_vs_exact(layout, plan, masks) == {"rect_positions": 2, "exact_positions": 2,
                                                   "rect_macs": 9, "exact_macs": 9}


class DynamicWeight(nn.Module):
    """conv (1 -> 2, 3x3, pad 1) on 8 x 8, then a depthwise 1x1 conv whose weights are the sigmoid of the conv's
    per-channel means (computed without a window: a pointwise op on a [2, 1, 1, 1] tensor needed whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return F.conv2d(y, torch.sigmoid(y.mean(dim=(2, 3)).reshape(2, 1, 1, 1)), None, 1, 0, 1, 2)


def test_rectangles_vs_exact_skip_a_dynamic_weight_without_a_window():
    """Guards ``rect_vs_exact`` skipping a step without a window that has an exact mask (the sigmoid making the
    weights). Query (3, 3): conv whole (read whole by the mean), 64 positions * 18 MACs = 1152; the mean's [1, 2]
    (a 1 x 2 map, 2 positions) and the reshape's [2, 1, 1, 1] (1 position) cost nothing; the dynamic conv 1
    position * 2 MACs. Exact sets are the same: 68 positions, 1154 MACs."""
    tracer = ReceptiveFieldTracer(DynamicWeight().eval())
    layout = tracer.layout((1, 1, 8, 8))
    plan = tracer.plan((1, 1, 8, 8), {0: [(3, 3)]})
    masks = exact_masks(layout, tracer.output_nodes(), {0: [(3, 3)]})
    sigmoid = next(s for s in plan.steps if s.node.name == "sigmoid")
    assert sigmoid.rect is None and sigmoid.node in masks
    assert rect_vs_exact(layout, plan, masks) == {"rect_positions": 68, "exact_positions": 68,
                                                   "rect_macs": 1154, "exact_macs": 1154}
