"""Shape propagation passes an activation's input shape through (instead of PyTorch's slow meta path): every
node's recorded shape must equal the shape a real run gives, also where activations change nothing but memory
format or run in place, and the static values read from shapes must be the real ones."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tracenet.rft.capture import capture, propagate_shapes
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


def test_shapes_equal_a_real_run() -> None:
    net = Net().eval()
    cap = capture(net)
    x = torch.randn(1, 3, 37, 52)
    info = propagate_shapes(cap, tuple(x.shape))
    real: dict[str, tuple] = {}

    class Record(fx.Interpreter):
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                real[n.name] = tuple(out.shape)
            return out

    with torch.no_grad():
        Record(cap.gm).run(x)
    got = {n.name: tuple(s) for n, s in info.shapes.items() if not isinstance(s, list)}
    assert got == real
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
