"""The planner (``rft/plan.py``) on tiny hand-made graphs: windows, MACs and the text table computed by hand, the
"half the map runs whole" threshold, reuse of cached values, requests wholly inside padding, and memoisation.

Each graph is a few small convolutions on an 8 x 8 map, so every expected window and MAC count below is worked
out in the docstring; the traced values are also compared with the full run where a plan is executed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, TraceCache
from tracenet.rft.context import Computed
from tracenet.rft.plan import back_trace
from tracenet.rft.regions import Rect


class TwoConvs(nn.Module):
    """conv1 (1 -> 2, 3x3, pad 1), ReLU, conv2 (2 -> 1, 3x3, pad 1) on 8 x 8: each conv 2 * 64 * 9 = 1152 MACs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def test_format_table_by_hand() -> None:
    """Guards ``Plan.node_table`` / ``format_table``: query (0, 0): conv2 computes 1 position (1 * 2 * 9 = 18
    MACs), relu and conv1 rows / cols -1..1 clipped to 0..1 (4 positions, 4 * 2 * 9 = 72 MACs); with
    ``min_macs=1`` the MAC-free ReLU row is left out."""
    plan = ReceptiveFieldTracer(TwoConvs().eval()).plan((1, 1, 8, 8), {0: [(0, 0)]})
    assert plan.node_table() == [
        {"node": "conv1", "rule": "conv", "rect": (0, 2, 0, 2), "macs": 72, "full_macs": 1152},
        {"node": "relu", "rule": "pointwise", "rect": (0, 2, 0, 2), "macs": 0, "full_macs": 0},
        {"node": "conv2", "rule": "conv", "rect": (0, 1, 0, 1), "macs": 18, "full_macs": 1152},
    ]
    header = (f"{'node':40s} {'rule':12s} {'window (r0,r1,c0,c1)':26s} {'traced MACs':>14s} "
              f"{'full MACs':>14s}")
    conv1 = "conv1" + " " * 36 + "conv" + " " * 9 + "(0, 2, 0, 2)" + " " * 15 + " " * 12 + "72" + " " * 10 + "1,152"
    relu = "relu" + " " * 37 + "pointwise" + " " * 4 + "(0, 2, 0, 2)" + " " * 15 + " " * 13 + "0" + " " * 14 + "0"
    conv2 = "conv2" + " " * 36 + "conv" + " " * 9 + "(0, 1, 0, 1)" + " " * 15 + " " * 12 + "18" + " " * 10 + "1,152"
    total = "total" + " " * 36 + " " * 13 + " " * 27 + " " * 12 + "90" + " " * 10 + "2,304"
    assert plan.format_table() == "\n".join([header, conv1, relu, conv2, total])
    assert plan.format_table(min_macs=1) == "\n".join([header, conv1, conv2, total])
    # a row stays when its full MACs reach the threshold, even if its traced MACs do not
    assert plan.format_table(min_macs=1152) == "\n".join([header, conv1, conv2, total])
    assert plan.format_table(min_macs=1153) == "\n".join([header, total])
    assert (plan.macs, plan.full_macs) == (90, 2304)


class LongName(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a_convolution_whose_name_is_longer_than_forty = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return self.a_convolution_whose_name_is_longer_than_forty(x)


def test_format_table_cuts_node_names_at_forty_characters() -> None:
    """Guards the table's name column: a 46-character node name is cut to its first 40 characters."""
    plan = ReceptiveFieldTracer(LongName().eval()).plan((1, 1, 4, 4), {0: [(0, 0)]})
    row = plan.format_table().splitlines()[1]
    assert row.startswith("a_convolution_whose_name_is_longer_than_ conv ")


def test_a_window_of_exactly_half_the_map_runs_whole() -> None:
    """Guards the "half the map or more runs whole" threshold (``_mostly_whole``, ``>=``): output rows 0-2 (all
    cols) need conv1 rows 0-3 = 32 of 64 positions, exactly half: conv1 runs whole (1152 MACs) and conv2 computes
    24 positions (24 * 18 = 432). Output rows 0-1 need conv1 rows 0-2 (24 positions, under half): 24 * 18 = 432
    plus conv2's 16 * 18 = 288."""
    tracer = ReceptiveFieldTracer(TwoConvs().eval())
    half = tracer.plan((1, 1, 8, 8), {0: [(r, c) for r in range(3) for c in range(8)]})
    assert [s.rect for s in half.steps] == [Rect(0, 8, 0, 8), Rect(0, 8, 0, 8), Rect(0, 3, 0, 8)]
    assert half.macs == 1152 + 432
    under = tracer.plan((1, 1, 8, 8), {0: [(r, c) for r in range(2) for c in range(8)]})
    assert [s.rect for s in under.steps] == [Rect(0, 3, 0, 8), Rect(0, 3, 0, 8), Rect(0, 2, 0, 8)]
    assert under.macs == 432 + 288
    assert [s.kind for s in half.steps + under.steps] == ["compute"] * 6


class GatedConvs(nn.Module):
    """conv1 (1 -> 2, 5x5, pad 2), conv2 (2 -> 2, 5x5, pad 2), conv3 (2 -> 1, 3x3, pad 1) on 8 x 8, times a gate
    of one value per column (a 1-D tensor of width 8 from a mean over everything else)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 5, padding=2)
        self.conv2 = nn.Conv2d(2, 2, 5, padding=2)
        self.conv3 = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        gate = torch.sigmoid(x.mean(dim=(0, 1, 2)))
        return self.conv3(self.conv2(self.conv1(x))) * gate


def test_a_second_request_reuses_the_cached_whole_maps() -> None:
    """Guards the cache path of ``back_trace``: query (3, 3) needs conv3 at (3, 3), conv2 rows / cols 2-4 (9 of 64),
    conv1 rows / cols 0-6 (49 of 64: runs whole), so conv1 (whole, read by a partial conv2) and the gate (1-D, read
    by the partial product) are cached. Query (4, 4) then needs conv1 rows / cols 1-7, inside the cached whole map:
    conv1 and the gate are reused (MACs 0), mean and x are not visited, conv2 computes rows / cols 3-5 (9 * 100 =
    900 MACs) and conv3 one position (18). Values equal the full run."""
    torch.manual_seed(0)
    net = GatedConvs().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    cache = TraceCache()
    first = tracer.gather(x, {0: [(3, 3)]}, cache)[0]
    assert {n.name: v.rect for n, v in cache.values.items()} == {"sigmoid": None, "conv1": Rect(0, 8, 0, 8)}
    plan = tracer.plan((1, 1, 8, 8), {0: [(4, 4)]}, cache)
    assert [(s.node.name, s.kind, s.rect) for s in plan.steps] == [
        ("sigmoid", "cached", None), ("conv1", "cached", Rect(0, 8, 0, 8)),
        ("conv2", "compute", Rect(3, 6, 3, 6)), ("conv3", "compute", Rect(4, 5, 4, 5)),
        ("mul", "compute", Rect(4, 5, 4, 5))]
    table = {row["node"]: row for row in plan.node_table()}
    assert (table["conv1"]["rule"], table["conv1"]["rect"], table["conv1"]["macs"]) == ("cached", (0, 8, 0, 8), 0)
    assert (table["conv2"]["rule"], table["conv2"]["macs"], table["conv2"]["full_macs"]) == ("conv", 900, 6400)
    assert plan.macs == 900 + 18
    assert table["mean"] == {"node": "mean", "rule": "-", "rect": None, "macs": 0, "full_macs": 0}
    second = tracer.gather(x, {0: [(4, 4)]}, cache)[0]
    torch.testing.assert_close(torch.cat([first, second], -1), full[..., [3, 4], [3, 4]], atol=1e-5, rtol=1e-4)


def test_a_cached_window_is_reused_only_where_it_holds_the_need() -> None:
    """Guards ``back_trace``'s containment check with a hand-made partial cached window of conv1: rows / cols 0-3
    holds query (0, 0)'s need (rows / cols 0-1 of conv1) but not query (5, 5)'s (rows / cols 4-6)."""
    tracer = ReceptiveFieldTracer(TwoConvs().eval())
    layout = tracer.layout((1, 1, 8, 8))
    conv1 = next(n for n in layout.cap.gm.graph.nodes if n.name == "conv1")
    cached = {conv1: Computed(torch.zeros(1, 2, 4, 4), Rect(0, 4, 0, 4))}
    inside = back_trace(layout, tracer.output_nodes(), {0: Rect(0, 1, 0, 1)}, cached)
    assert [(s.node.name, s.kind, s.rect) for s in inside.steps] == [
        ("conv1", "cached", Rect(0, 4, 0, 4)), ("relu", "compute", Rect(0, 2, 0, 2)),
        ("conv2", "compute", Rect(0, 1, 0, 1))]
    outside = back_trace(layout, tracer.output_nodes(), {0: Rect(5, 6, 5, 6)}, cached)
    assert [(s.node.name, s.kind, s.rect) for s in outside.steps] == [
        ("conv1", "compute", Rect(4, 7, 4, 7)), ("relu", "compute", Rect(4, 7, 4, 7)),
        ("conv2", "compute", Rect(5, 6, 5, 6))]


class PadAround(nn.Module):
    """conv (1 -> 2, 3x3, pad 1) on 8 x 8, then 3 rows / cols of constant padding on every side (14 x 14)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return F.pad(self.conv(x), (3, 3, 3, 3), value=0.25)


def test_requests_wholly_inside_padding_keep_one_real_pixel() -> None:
    """Guards the all-padding clip of ``back_trace``: output (0, 0) reads conv rows / cols -3 (all padding), so
    conv computes one real pixel, the nearest: (0, 0); output (13, 13) reads conv (10, 10): (7, 7); output (0, 13)
    reads (-3, 10): (0, 7); output (2, 5) reads (-1, 2): (0, 2), and (5, 2) reads (2, -1): (2, 0). Values are the
    padding value there."""
    torch.manual_seed(0)
    tracer = ReceptiveFieldTracer(PadAround().eval())
    x = torch.randn(1, 1, 8, 8)
    cases = (((0, 0), Rect(0, 1, 0, 1)), ((13, 13), Rect(7, 8, 7, 8)), ((0, 13), Rect(0, 1, 7, 8)),
             ((2, 5), Rect(0, 1, 2, 3)), ((5, 2), Rect(2, 3, 0, 1)))  # row / col -1 only: a window of height 0
    for (r, c), kept in cases:
        plan = tracer.plan((1, 1, 8, 8), {0: [(r, c)]})
        assert [(s.node.name, s.rect) for s in plan.steps] == [("conv", kept), ("pad", Rect(r, r + 1, c, c + 1))]
        assert plan.macs == 2 * 9
        assert torch.equal(tracer.gather(x, {0: [(r, c)]})[0], torch.full((1, 2, 1), 0.25))


class SameTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y


def test_two_requests_on_one_node_get_the_union_of_their_windows() -> None:
    """Guards the union of requests on one output node: both outputs are the same conv, queried at (0, 0) and
    (7, 7): the conv computes rows / cols 0-7 (their bounding box, under the whole-map rule it is the whole map)."""
    torch.manual_seed(0)
    net = SameTwice().eval()
    x = torch.randn(1, 1, 8, 8)
    tracer = ReceptiveFieldTracer(net)
    plan = tracer.plan((1, 1, 8, 8), {0: [(0, 0)], 1: [(7, 7)]})
    assert [(s.node.name, s.rect) for s in plan.steps] == [("conv", Rect(0, 8, 0, 8))]
    got = tracer.gather(x, {0: [(0, 0)], 1: [(7, 7)]})
    with torch.no_grad():
        full = net(x)[0]
    torch.testing.assert_close(got[0][..., 0], full[..., 0, 0])
    torch.testing.assert_close(got[1][..., 0], full[..., 7, 7])


class ColumnGate(nn.Module):
    """Two outputs that multiply by a 1-D gate of one value per column (width 8): ``gate * conv(x) + gate`` and
    ``gate * tanh(x)`` (gate first in both products, and the conv read by the first product only)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        gate = torch.sigmoid(x.mean(dim=(0, 1, 2)))
        first = gate * self.conv(x) + gate
        second = gate * torch.tanh(x)
        return first, second


def test_one_d_operands_are_needed_whole_and_the_others_still_traced() -> None:
    """Guards ``back_trace`` for nodes with a 1-D operand (needed whole) before a spatial one, and the pointwise
    rule's slicing of a 1-D operand to the output's columns: both outputs at (2, 5) and (6, 1) equal the full run.
    """
    torch.manual_seed(0)
    net = ColumnGate().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    for point in ((2, 5), (6, 1)):
        plan = tracer.plan((1, 1, 8, 8), {0: [point], 1: [point]})
        conv = next(s for s in plan.steps if s.node.name == "conv")
        assert conv.rect == Rect(point[0], point[0] + 1, point[1], point[1] + 1)
        got = tracer.gather(x, {0: [point], 1: [point]})
        for key in (0, 1):
            torch.testing.assert_close(got[key][..., 0], full[key][..., point[0], point[1]])


class WithUnsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x), torch.roll(x, 1, 2)


def test_layout_memoises_contexts_rules_and_full_macs() -> None:
    """Guards the layout's memoisation (one context, one rule per node; full MACs computed once) and that an op
    with no rule (``torch.roll``, not requested) counts 0 full MACs: the conv's 2 * 64 * 9 = 1152 only. A 2-D
    value (the linear layer's [1, 6] output of the MACs test elsewhere) is a 1 x 6 map here: 1 x C."""
    tracer = ReceptiveFieldTracer(WithUnsupported().eval())
    layout = tracer.layout((1, 1, 8, 8))
    conv = next(n for n in layout.cap.gm.graph.nodes if n.name == "conv")
    assert layout.op(conv) is layout.op(conv)
    assert layout.rule(conv) is layout.rule(conv)
    assert layout.full_macs() is layout.full_macs()
    assert layout.full_macs() == {"conv": 1152, "roll": 0}
    assert tracer.full_macs((1, 1, 8, 8)) == 1152  # without planning
    assert tracer.plan((1, 1, 8, 8), {0: [(0, 0)]}).full_macs == 1152


class DynamicWeight(nn.Module):
    """A depthwise 1x1 convolution whose weights are computed from the input (as a dynamic mask head's are):
    sigmoid of the per-channel means, [2, 1, 1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        weight = torch.sigmoid(y.mean(dim=(2, 3)).reshape(2, 1, 1, 1))
        return F.conv2d(y, weight, None, 1, 0, 1, 2)


def test_a_dynamic_weight_made_by_a_pointwise_op_is_computed_whole() -> None:
    """Guards ``back_trace`` for a node needed whole (no window) whose rule is not the whole-map rule: the sigmoid
    making the weights runs without a window and the traced values equal the full run."""
    torch.manual_seed(0)
    net = DynamicWeight().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    plan = tracer.plan((1, 1, 8, 8), {0: [(2, 3)]})
    steps = {s.node.name: s for s in plan.steps}
    assert (steps["sigmoid"].rule.name, steps["sigmoid"].rect) == ("pointwise", None)
    got = tracer.gather(x, {0: [(2, 3), (7, 0)]})[0]
    torch.testing.assert_close(got, full[..., [2, 7], [3, 0]])


class SplitRows(nn.Module):
    """A split along rows (a whole-map op with a tuple result of 5 and 3 rows), then the second part."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        top, bottom = self.conv(x).split([5, 3], dim=2)
        return bottom * 2


def test_a_tuple_result_has_the_window_of_its_first_element() -> None:
    """Guards ``Layout.full_rect`` for tuple results: the split's planned window is its first part's (5 x 8) and
    the values of the second part equal the full run."""
    torch.manual_seed(0)
    net = SplitRows().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    layout = tracer.layout((1, 1, 8, 8))
    split = next(n for n in layout.cap.gm.graph.nodes if n.name == "split")
    assert layout.full_rect(split) == Rect(0, 5, 0, 8)
    got = tracer.gather(x, {0: [(0, 0), (2, 7)]})[0]
    torch.testing.assert_close(got, full[..., [0, 2], [0, 7]])


class InPlaceOnCached(nn.Module):
    """A one-channel conv map read whole (by a mean over space) before an in-place doubling, which a 3x3 conv
    reads: after one query the conv map is cached (whole, read by a partial step), and the doubling of a later
    query's full-width window of rows is a contiguous view of that cached map."""

    def __init__(self, module: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.conv2 = nn.Conv2d(1, 1, 3, padding=1)
        self.act = nn.LeakyReLU(0.5, inplace=True) if module else None

    def forward(self, x):
        y = self.conv(x)
        m = y.mean(dim=(2, 3), keepdim=True)
        y = self.act(y) if self.act is not None else y.mul_(2)
        return self.conv2(y) + m


@pytest.mark.parametrize("module", [False, True], ids=["method_mul_", "module_leaky_relu_inplace"])
def test_an_in_place_op_never_overwrites_a_cached_map(module: bool) -> None:
    """Guards the copy the pointwise rule makes before an in-place op (a tensor method or a module with
    ``inplace=True``) on a cached value: three queries of whole rows through one cache (the last repeats the second)
    all equal the full run; without the copy the cached conv map is doubled (or leaky-ReLU'd) again at every query."""
    torch.manual_seed(0)
    net = InPlaceOnCached(module).eval()
    x = torch.randn(1, 1, 12, 8)
    with torch.no_grad():
        full = net(x.clone())
    tracer = ReceptiveFieldTracer(net)
    cache = TraceCache()
    for row in (0, 6, 6):
        points = [(row, c) for c in range(8)]
        got = tracer.gather(x, {0: points}, cache)[0]
        torch.testing.assert_close(got, full[..., row, :])
    assert {n.name for n in cache.values} >= {"conv"}
