"""Shape propagation passes an activation's input shape through (instead of PyTorch's slow meta path): every
node's recorded shape must equal the shape a real run gives, also where activations change nothing but memory
format or run in place, and the static values read from shapes must be the real ones."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tracenet.rft.capture import _elementwise_result, capture, propagate_shapes
from tracenet.rft.errors import TracerError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act6 = nn.ReLU6()
        self.relu_ = nn.ReLU(inplace=True)
        self.silu = nn.SiLU()
        self.down = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.relu_(self.act6(self.conv(x)))
        b = F.relu(self.silu(a)) + torch.sigmoid(a)
        h, w = b.shape[-2:]
        c = F.interpolate(self.down(b), size=(h * 2, w * 2), mode="nearest")
        return {"b": b, "c": torch.tanh(c)}


def _real_shapes(cap, x: torch.Tensor) -> dict[str, tuple]:
    """Node name -> shape of every tensor a real run of the captured graph on ``x`` produces."""
    real: dict[str, tuple] = {}

    class Record(fx.Interpreter):
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                real[n.name] = tuple(out.shape)
            return out

    with torch.no_grad():
        Record(cap.gm).run(x)
    return real


def _recorded_shapes(info) -> dict[str, tuple]:
    """Node name -> the shape propagation's shape, for single-tensor nodes."""
    return {n.name: tuple(s) for n, s in info.shapes.items() if not isinstance(s, list)}


def test_shapes_equal_a_real_run() -> None:
    net = Net().eval()
    cap = capture(net)
    x = torch.randn(1, 3, 37, 52)
    info = propagate_shapes(cap, tuple(x.shape))
    assert _recorded_shapes(info) == _real_shapes(cap, x)
    static = {n.name: v for n, v in info.static.items()}
    assert (static["getitem_1"], static["getitem_2"]) == (19, 26)  # h, w = b.shape[-2:] at stride 2


class Convs(nn.Module):
    """Every kind of Conv2d the arithmetic covers: strided, dilated, grouped, asymmetric, 'same' and 'valid'."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2))
        self.b = nn.Conv2d(8, 8, 3, dilation=2, padding=2, groups=8)
        self.c = nn.Conv2d(8, 6, (2, 4), padding="same", padding_mode="reflect")
        self.d = nn.Conv2d(6, 4, 3, stride=3, padding="valid")
        self.e = nn.Conv2d(4, 4, 7, stride=2, padding=3, dilation=(1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.e(self.d(self.c(self.b(self.a(x)))))


def test_convolution_arithmetic_equals_a_real_run() -> None:
    """Shapes of Conv2d calls come from the arithmetic, not PyTorch's meta kernel: each one equals the real run's."""
    net = Convs().eval()
    cap = capture(net)
    for hw in [(37, 52), (64, 64), (20, 71)]:
        x = torch.randn(2, 3, *hw)
        info = propagate_shapes(cap, tuple(x.shape))
        real = []
        with torch.no_grad():
            for layer in (net.a, net.b, net.c, net.d, net.e):
                x = layer(x)
                real.append(tuple(x.shape))
        got = [info.shapes[n] for n in cap.gm.graph.nodes if n.op == "call_module"]
        assert got == real, hw


def test_a_convolution_too_large_for_its_input_still_raises() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 9))
    with pytest.raises(TracerError, match="shape propagation failed"):
        propagate_shapes(capture(net), (1, 3, 5, 5))


class Arithmetic(nn.Module):
    """Binary arithmetic the shape pass computes by broadcasting: tensor with tensor, parameter, 0-dim tensor,
    Python number, and shape arithmetic on ints (which must stay ints)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.scale = nn.Parameter(torch.ones(1, 4, 1, 1))
        self.bias = nn.Parameter(torch.zeros(4, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.conv(x)
        b = a * self.scale + self.bias  # broadcast against parameters
        c = b - a.mean(dim=1, keepdim=True)  # [N, 1, H, W] broadcast
        d = 2.0 * c / torch.tensor(3.0) + 1  # numbers and a 0-dim tensor on either side
        e = torch.add(d, a) - torch.mul(a, 0.5)
        h, w = e.shape[-2:]
        rows = torch.arange(h).view(1, 1, h, 1) * 8 + w // 2  # int64 tensor arithmetic
        return {"e": e, "f": e + rows, "g": rows / 2}


def test_arithmetic_shapes_equal_a_real_run() -> None:
    net = Arithmetic().eval()
    cap = capture(net)
    for hw in [(37, 52), (9, 16)]:
        x = torch.randn(2, 3, *hw)
        info = propagate_shapes(cap, tuple(x.shape))
        assert _recorded_shapes(info) == _real_shapes(cap, x), hw


@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.sub, operator.truediv, torch.add, torch.mul,
                                torch.sub])
def test_arithmetic_result_dtype_and_shape_equal_the_real_ops(op) -> None:
    graph = fx.Graph()
    a, b = graph.placeholder("a"), graph.placeholder("b")
    node = graph.call_function(op, (a, b))
    operands = [torch.ones(2, 3, 1, 5), torch.ones(3, 4, 1, dtype=torch.int64), torch.tensor(2.0),
                torch.tensor(3), torch.ones(1, dtype=torch.float16), 2, 1.5, True]
    for x in operands:
        for y in operands:
            if not (isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor)):
                continue
            env = {a: x.to("meta") if isinstance(x, torch.Tensor) else x,
                   b: y.to("meta") if isinstance(y, torch.Tensor) else y}
            try:
                want = op(x, y)
            except RuntimeError:
                continue
            got = _elementwise_result(node, env)
            assert got is not None and (tuple(got.shape), got.dtype) == (tuple(want.shape), want.dtype), (x, y)
