"""The whole-map segment's rewrites (tracenet.rft.fusion): oneDNN convolution + activation in one call, activations
and additions in place where nothing else reads. The rewritten segment must give the model's own values, never
overwrite what it hands out, and fall back to eager code where oneDNN does not serve the dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer
from tracenet.rft.fusion import conv_act, hardtanh_, silu_
from tracenet.rft.segment import WholeSegment


class Block(nn.Module):
    """conv+ReLU, conv+BN+ReLU6 (BN stays: nothing is folded), conv+SiLU, a residual addition, an in-place ReLU,
    a conv whose output is both an output and read by an activation, and a strided conv."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, padding=1)
        self.relu = nn.ReLU()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.act6 = nn.ReLU6()
        self.c2 = nn.Conv2d(ch, ch, 1)
        self.silu = nn.SiLU()
        self.c3 = nn.Conv2d(ch, ch, 3, padding=1)
        self.relu_inplace = nn.ReLU(inplace=True)
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.relu(self.stem(x))
        b = self.act6(self.bn1(self.c1(a)))
        c = self.silu(self.c2(b))
        d = self.relu_inplace(self.c3(c) + a)  # residual: add in place, then ReLU in place
        e = self.down(d)
        return {"d": d, "e": e, "f": F.relu(e)}


@pytest.fixture(scope="module")
def block() -> nn.Module:
    torch.manual_seed(0)
    net = Block()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _segment(tracer: ReceptiveFieldTracer) -> WholeSegment:
    (seg,) = tracer.captured.segments.values()
    return seg


def test_rewritten_segment_equals_the_full_run_and_fuses(block) -> None:
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        full = block(x)
    tracer = ReceptiveFieldTracer(block)
    out = tracer.run(x, {"d": None, "e": None, "f": None})
    for key in full:
        torch.testing.assert_close(out[key][0], full[key], rtol=1e-4, atol=1e-5)
    seg = _segment(tracer)
    assert seg.optimised
    calls = [n for n in seg.module.graph.nodes if n.op == "call_function"]
    fused = {n.args[7] for n in calls if n.target is conv_act}
    if torch.backends.mkldnn.is_available():
        # every convolution runs through conv_act; ReLU, ReLU6 and SiLU went into the convolution before them
        # (c1's ReLU6 reads the BatchNorm, not the convolution: that one stays a separate in-place activation)
        assert sum(n.target is conv_act for n in calls) == 5
        assert fused == {"relu", "swish", "none"}
        assert any(n.target is hardtanh_ for n in calls)
        assert any(n.op == "call_method" and n.target == "add_" for n in seg.module.graph.nodes)
    assert not any(n.op == "call_module" and isinstance(seg.module.get_submodule(str(n.target)), nn.Conv2d)
                   for n in seg.module.graph.nodes) or not torch.backends.mkldnn.is_available()
    # "e" is handed out and read by F.relu: the ReLU must not overwrite it (nor be fused into "down")
    assert not any(n.target is torch.relu_ and n.args[0].name.startswith("conv_act") and
                   any(u.op == "output" for u in n.args[0].users) for n in calls)
    torch.testing.assert_close(out["e"][0], full["e"], rtol=1e-4, atol=1e-5)
    assert (out["e"][0] < 0).any(), "e must keep its negative values (not ReLU'd in place)"


def test_in_place_rewrites_alone_are_bit_identical(block, monkeypatch) -> None:
    import tracenet.rft.fusion as fusion

    monkeypatch.setattr(fusion, "_fuse_conv_activation", lambda *a, **k: None)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        full = block(x)
    out = ReceptiveFieldTracer(block).run(x, {"d": None, "e": None, "f": None})
    for key in full:
        assert torch.equal(out[key][0], full[key]), key


def test_cropped_queries_after_the_rewritten_segment(block) -> None:
    """Corner, edge and interior queries on the outputs (the cropped steps read the segment's handed-out maps)."""
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        full = block(x)
    tracer = ReceptiveFieldTracer(block)
    queries = {"f": [(0, 0), (47, 63), (0, 30), (20, 40)], "d": [(95, 0), (50, 60)]}
    got = tracer.gather(x, queries)
    for key, pts in queries.items():
        ref = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        torch.testing.assert_close(got[key], ref, rtol=1e-4, atol=1e-5)


def test_without_onednn_the_fused_segment_runs_eager_kernels(block) -> None:
    """The same compiled segment, called with oneDNN switched off: conv_act falls back to F.conv2d + activation."""
    x = torch.randn(1, 3, 96, 128)
    tracer = ReceptiveFieldTracer(block)
    out = tracer.run(x, {"d": None, "e": None, "f": None})
    seg = _segment(tracer)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        again = dict(zip((n.name for n in seg.outputs), seg.module(x)))
        full = block(x)
    assert again, "the segment hands out its outputs"
    for key in full:
        torch.testing.assert_close(out[key][0], full[key], rtol=1e-4, atol=1e-5)
    for value in again.values():
        assert torch.isfinite(value).all()
    torch.testing.assert_close(again[tracer.output_nodes()["d"].name], full["d"], rtol=1e-4, atol=1e-5)


def test_conv_act_matches_conv_then_activation() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 16, 40, 48)
    w, b = torch.randn(16, 16, 3, 3) * 0.1, torch.randn(16)
    ref = F.conv2d(x, w, b, 1, 1)
    for attr, scalars, act in (("none", [], lambda y: y), ("relu", [], F.relu), ("hardtanh", [0.0, 6.0], F.relu6),
                               ("swish", [], F.silu), ("hardswish", [], F.hardswish),
                               ("leaky_relu", [0.1], lambda y: F.leaky_relu(y, 0.1))):
        got = conv_act(x, w, b, [1, 1], [1, 1], [1, 1], 1, attr, scalars, "")
        torch.testing.assert_close(got, act(ref), rtol=1e-4, atol=1e-5, msg=attr)
    assert torch.equal(silu_(ref.clone()), F.silu(ref))
