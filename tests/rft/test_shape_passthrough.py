"""Shape propagation passes an activation's input shape through (instead of PyTorch's slow meta path): every
node's recorded shape must equal the shape a real run gives, also where activations change nothing but memory
format or run in place, and the static values read from shapes must be the real ones."""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tracenet.rft.capture import capture, propagate_shapes


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
