"""The exact dependency sets the benchmark compares the planner's rectangles with (``rft/dependency.py``):
against autograd (a position contributes to an output iff the output's gradient there is non-zero) and, for the
rectangle-vs-exact counts, by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer
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


@pytest.mark.parametrize("points", [[(0, 0)], [(3, 4)], [(5, 1), (0, 6)]])
def test_exact_input_set_equals_autograds(points):
    """Guards ``exact_masks``: the input positions it marks are exactly those with a non-zero gradient of the
    queried outputs (summed over batch and channels)."""
    torch.manual_seed(0)
    net = Chain().eval()
    x = torch.randn(1, 3, 23, 19, requires_grad=True)
    out = net(x)
    sum(out[..., r, c].sum() for r, c in points).backward()
    expected = x.grad.abs().sum(dim=(0, 1)) > 0
    tracer = ReceptiveFieldTracer(net)
    layout = tracer.layout(tuple(x.shape))
    masks = exact_masks(layout, tracer.output_nodes(), {0: points})
    (x_node,) = [n for n in masks if n.op == "placeholder"]
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
