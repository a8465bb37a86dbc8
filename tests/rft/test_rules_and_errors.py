"""Hand-checked tracer behaviour: global ops stay exact, unknown ops refuse by name, costs add up, bad queries fail."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import (
    CaptureError,
    QueryError,
    ReceptiveFieldTracer,
    Rect,
    TraceCache,
    TracerError,
    UnsupportedOpError,
)


def _assert_points_equal(model: nn.Module, x: torch.Tensor, queries: dict) -> ReceptiveFieldTracer:
    with torch.no_grad():
        full = model(x)
    items = {0: full} if isinstance(full, torch.Tensor) else full
    tracer = ReceptiveFieldTracer(model)
    got = tracer.gather(x, queries)
    for key, pts in queries.items():
        ref = items[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        torch.testing.assert_close(got[key], ref, atol=1e-5, rtol=1e-4)
    return tracer


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 8)
        self.out = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        y = F.relu(self.conv(x))
        gate = torch.sigmoid(self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)))
        return self.out(y * gate[:, :, None, None])


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.out = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.out(self.norm(self.conv(x)))


class AttentionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        tokens = y.flatten(2).transpose(1, 2)
        mixed, _ = self.attn(tokens, tokens, tokens)
        return self.out(y + mixed.transpose(1, 2).reshape(b, c, h, w))


class MeanOverSpace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y - y.mean(dim=(2, 3), keepdim=True)


@pytest.mark.parametrize("model_cls", [SqueezeExcite, GroupNormNet, AttentionNet, MeanOverSpace])
def test_global_ops_make_their_input_whole_and_stay_exact(model_cls) -> None:
    torch.manual_seed(0)
    model = model_cls().eval()
    x = torch.randn(2, 3, 23, 17)
    with torch.no_grad():
        h, w = model(x).shape[-2:]
    tracer = _assert_points_equal(model, x, {0: [(0, 0), (h - 1, w - 1), (h // 2, 3)]})
    plan = tracer.plan(tuple(x.shape), {0: [(0, 0)]})
    first_conv = next(s for s in plan.steps if s.node.target == "conv")
    h1, w1 = tracer.layout(tuple(x.shape)).info.shapes[first_conv.node][-2:]
    assert first_conv.rect == Rect.full(h1, w1)  # the global op needs all of it


def test_unknown_op_raises_an_error_naming_node_and_target() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.cumsum(self.conv(x), dim=-1)

    tracer = ReceptiveFieldTracer(Odd().eval())
    with pytest.raises(UnsupportedOpError) as err:
        tracer.gather(torch.randn(1, 3, 8, 8), {0: [(1, 1)]})
    msg = str(err.value)
    assert "'cumsum'" in msg and "torch.cumsum" in msg and err.value.node_name == "cumsum"


def test_unknown_module_raises_with_its_type() -> None:
    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)

        def forward(self, x):
            return self.up(x)

    with pytest.raises(UnsupportedOpError, match=r"'up' \(call_module up: ConvTranspose2d\)"):
        ReceptiveFieldTracer(Up().eval()).gather(torch.randn(1, 3, 8, 8), {0: [(1, 1)]})


def test_training_mode_is_refused() -> None:
    model = GroupNormNet().train()
    with pytest.raises(TracerError, match="eval"):
        ReceptiveFieldTracer(model).gather(torch.randn(1, 3, 8, 8), {0: [(0, 0)]})


def test_data_dependent_control_flow_cannot_be_captured() -> None:
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(CaptureError, match="Branchy"):
        ReceptiveFieldTracer(Branchy())


def test_bad_queries_are_refused() -> None:
    tracer = ReceptiveFieldTracer(GroupNormNet().eval())
    x = torch.randn(1, 3, 8, 9)
    with pytest.raises(QueryError, match="no output 'p3'"):
        tracer.gather(x, {"p3": [(0, 0)]})
    with pytest.raises(QueryError, match="outside its 8x9 grid"):
        tracer.gather(x, {0: [(8, 0)]})
    with pytest.raises(QueryError, match="pairs"):
        tracer.gather(x, {0: [5]})


def test_macs_hand_computed() -> None:
    """Two 3x3 convs (2->3->5 channels, padding 1) on 10x10; query (0, 0) of the output.

    conv2 computes one position: 5 * 3 * 9 = 135 MACs. conv2 needs conv1 rows/cols [-1, 2), clipped to [0, 2):
    4 positions * 3 * 2 * 9 = 216 MACs. Full: conv1 100 * 54 = 5400, conv2 100 * 135 = 13500.
    """

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
            self.conv2 = nn.Conv2d(3, 5, 3, padding=1)

        def forward(self, x):
            return self.conv2(torch.relu(self.conv1(x)))

    tracer = ReceptiveFieldTracer(Two().eval())
    rules = tracer.layout((1, 2, 10, 10))
    plan = tracer.plan((1, 2, 10, 10), {0: [(0, 0)]})
    table = {row["node"]: row for row in plan.node_table()}
    assert table["conv1"]["rect"] == (0, 2, 0, 2)
    assert table["conv2"]["rect"] == (0, 1, 0, 1)
    assert plan.full_macs == 5400 + 13500
    # maps this small take PyTorch's native kernel and run on a full-size canvas (bit-exactness): full MACs
    backends = {s.node.name: s.rule.full_run_backend(rules.op(s.node)) for s in plan.steps if s.rule and
                s.rule.name == "conv"}
    expected = sum({"conv1": 216, "conv2": 135}[n] if b != "canvas" else {"conv1": 5400, "conv2": 13500}[n]
                   for n, b in backends.items())
    assert plan.macs == expected


def test_shape_reads_see_the_full_map() -> None:
    class UsesWidth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            h, w = y.shape[-2:]
            return y * w + h + y.size(1)

    _assert_points_equal(UsesWidth().eval(), torch.randn(1, 3, 11, 13), {0: [(0, 0), (5, 12)]})


def test_inplace_ops_match_the_full_run_and_never_touch_the_cache() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.conv(x)
            z = y * 2
            y.mul_(3)          # later readers of y see the scaled values
            y = self.act(y)
            return {"a": y + z, "b": z}

    torch.manual_seed(0)
    model = InPlace().eval()
    x = torch.randn(1, 3, 9, 10)
    tracer = _assert_points_equal(model, x, {"a": [(0, 0), (4, 7)], "b": [(8, 9)]})
    cache = TraceCache()
    with torch.no_grad():
        full = model(x)
    for _ in range(3):  # repeated runs on the same cache: in-place ops must not compound
        got = tracer.gather(x, {"a": [(4, 7)], "b": [(8, 9)]}, cache=cache)
        torch.testing.assert_close(got["a"], full["a"][..., [4], [7]], atol=1e-5, rtol=1e-4)
