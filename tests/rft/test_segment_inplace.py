"""The whole-map segment's rewrite (tracenet.rft.inplace): activations and additions in place where nothing else
reads. The rewritten segment must give the model's own values bit for bit and never overwrite what it hands out
or what it is given."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, TraceCache
from tracenet.rft.inplace import batch_norm_, hardtanh_, silu_
from tracenet.rft.segment import WholeSegment


class Block(nn.Module):
    """conv+ReLU, conv+BN+ReLU6, conv+SiLU, a residual addition followed by an in-place ReLU, a strided conv whose
    output is both handed out and read by an activation, and a BatchNorm whose input is read again afterwards."""

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
        self.c4 = nn.Conv2d(ch, ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.relu(self.stem(x))
        b = self.act6(self.bn1(self.c1(a)))
        c = self.silu(self.c2(b))
        d = self.relu_inplace(self.c3(c) + a)  # residual: the addition in place, then the ReLU in place
        e = self.down(d)
        g = self.c4(e)
        return {"d": d, "e": e, "f": F.relu(e), "h": self.bn2(g) - g}  # bn2 must not overwrite g


@pytest.fixture(scope="module")
def block() -> nn.Module:
    torch.manual_seed(0)
    net = Block()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn2.running_mean.uniform_(-0.2, 0.2)
        net.bn2.running_var.uniform_(0.5, 2.0)
        net.bn2.weight.uniform_(0.5, 1.5)
    return net.eval()


def _segment(tracer: ReceptiveFieldTracer) -> WholeSegment:
    (seg,) = tracer.captured.segments.values()
    return seg


def test_rewritten_segment_is_bit_identical_and_in_place(block) -> None:
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        full = block(x)
    tracer = ReceptiveFieldTracer(block)
    out = tracer.run(x, {"d": None, "e": None, "f": None, "h": None})
    for key in full:
        assert torch.equal(out[key][0], full[key]), key
    seg = _segment(tracer)
    assert seg.optimised
    nodes = list(seg.module.graph.nodes)
    targets = [n.target for n in nodes if n.op in ("call_function", "call_method")]
    # ReLU (stem), ReLU6 (after BN), SiLU in place; the residual addition as add_ on the convolution's output
    assert torch.relu_ in targets and hardtanh_ in targets and silu_ in targets and "add_" in targets
    # BatchNorm after c1 over the convolution's output (its out= kernel); bn2's input is read again: left alone
    assert targets.count(batch_norm_) == 1
    left = [seg.module.get_submodule(str(n.target)) for n in nodes if n.op == "call_module"]
    assert [type(m) for m in left if isinstance(m, nn.BatchNorm2d)] == [nn.BatchNorm2d]
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU)) and not m.inplace for m in left)  # all in place now
    # "e" is handed out and read by F.relu: that ReLU stays out of place (e keeps its negative values)
    (relu_e,) = [n for n in nodes if n.op == "call_function" and n.target is F.relu]
    assert relu_e.args[0].op == "call_module" and relu_e.args[0].target == "down"
    assert (out["e"][0] < 0).any()


def test_cached_inputs_are_not_overwritten(block) -> None:
    """A second run whose segment reads cached values (its inputs) must leave them as they were."""
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        full = block(x)
    tracer = ReceptiveFieldTracer(block)
    cache = TraceCache()
    tracer.run(x, {"d": [(3, 4)]}, cache)
    before = {n: c.value.clone() for n, c in cache.values.items() if isinstance(c.value, torch.Tensor)}
    out = tracer.run(x, {"d": None, "e": None, "f": None, "h": None}, cache)
    for node, value in before.items():
        assert torch.equal(cache.values[node].value, value), node.name
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


def test_a_failing_rewritten_segment_falls_back_to_the_plain_one(block, monkeypatch) -> None:
    """If a rewritten segment raises (here: its in-place addition refuses to run), the model's own code runs."""
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        full = block(x)
    tracer = ReceptiveFieldTracer(block)
    tracer.run(x, {"d": None})
    seg = _segment(tracer)

    def refuse(*_args):
        raise RuntimeError("refused")

    monkeypatch.setattr(seg.module, "forward", refuse)
    out = tracer.run(x, {"d": None})
    assert torch.equal(out["d"][0], full["d"])
    assert any(not s.optimised for s in tracer.captured.segments.values())


class FoldedBlock(nn.Module):
    """What BatchNorm folding leaves: conv -> Identity -> ReLU6, and an Identity whose value is handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.Identity()
        self.act = nn.ReLU6()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.act(self.bn1(self.c1(x)))
        b = self.bn2(self.c2(a))
        return {"a": a, "b": b, "c": F.relu(b)}


def test_identities_left_by_folding_do_not_stop_the_rewrite() -> None:
    torch.manual_seed(0)
    net = FoldedBlock().eval()
    x = torch.randn(1, 3, 40, 56) * 3
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    out = tracer.run(x, {"a": None, "b": None, "c": None})
    for key in full:
        assert torch.equal(out[key][0], full[key]), key
    nodes = list(_segment(tracer).module.graph.nodes)
    targets = [n.target for n in nodes if n.op == "call_function"]
    assert hardtanh_ in targets  # the ReLU6 behind the Identity now overwrites the convolution's map
    # "b" (the second Identity's value) is handed out: F.relu must not overwrite it, and it keeps negatives
    assert torch.relu_ not in targets and (out["b"][0] < 0).any()
