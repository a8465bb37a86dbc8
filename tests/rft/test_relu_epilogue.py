"""A cropped convolution whose only reader is a ReLU (directly or through the ``nn.Identity`` that BatchNorm folding
leaves) applies the ReLU to its own output (``tracenet.rft.execute.relu_epilogues``): the ReLU steps are skipped,
the values stay bit for bit those of the unfused run, and a convolution whose value is read elsewhere is left
alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, TraceCache, execute

ATOL, RTOL = 1e-5, 1e-4  # the tracer's promise


class FoldedHead(nn.Module):
    """Two levels and one shared head: conv -> Identity -> ReLU -> conv -> ReLU -> conv. ``leak`` also returns
    twice the first head convolution's value on level 1 (a second reader: no epilogue may touch that value)."""

    def __init__(self, ch: int = 8, leak: bool = False) -> None:
        super().__init__()
        self.leak = leak
        self.stem = nn.Conv2d(3, ch, 3, stride=2, padding=1)
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.h1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn = nn.Identity()
        self.act = nn.ReLU()
        self.h2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.h3 = nn.Conv2d(ch, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p1 = F.relu(self.stem(x))
        p2 = F.relu(self.down(p1))
        out = {"p1": p1, "p2": p2}
        for i, p in enumerate((p1, p2)):
            a = self.h1(p)
            out[f"out{i}"] = self.h3(torch.relu(self.h2(self.act(self.bn(a)))))
            if self.leak and i == 1:  # after the head, so the Identity is h1's first reader
                out["leak"] = a * 2.0  # a second reader of h1's value (not itself an output)
        return out


def _setup(leak: bool):
    torch.manual_seed(0)
    net = FoldedHead(leak=leak).eval()
    x = torch.randn(1, 3, 64, 96)
    tracer, cache = ReceptiveFieldTracer(net), TraceCache()
    tracer.run(x, {"p1": None, "p2": None}, cache)  # the levels whole; the queries crop the head
    return net, x, tracer, cache


def _fused(tracer, x, cache, queries):
    plan = tracer.plan(tuple(x.shape), queries, cache)
    cropped = [s for s in plan.steps if s.kind == "compute"]
    relu_of, applied = execute.relu_epilogues(tracer.layout(tuple(x.shape)), cropped, plan)
    return ({str(c.target) for c in relu_of}, {str(r.target) for r in relu_of.values()},
            sorted(str(n.target) for n in applied))


def test_convolutions_followed_by_a_relu_take_it_as_epilogue() -> None:
    _, x, tracer, cache = _setup(leak=False)
    convs, relus, applied = _fused(tracer, x, cache, {"out0": [(5, 7)], "out1": [(2, 3)]})
    assert convs == {"h1", "h2"}
    assert "act" in relus and len(relus) == 2  # the module ReLU after h1, torch.relu after h2
    # per level: the Identity and ReLU after h1, the ReLU after h2; h3's value is an output, not fused
    assert applied.count("act") == 2 and applied.count("bn") == 2 and len(applied) == 6


def test_a_convolution_read_elsewhere_keeps_its_own_value() -> None:
    """Guards "the epilogue overwrote a value another node reads": with level 1's h1 also an output, h1 is not
    fused on either level (one batched group, one epilogue), h2 still is, and ``leak`` is 2 x h1 before the ReLU."""
    net, x, tracer, cache = _setup(leak=True)
    queries = {"out0": [(5, 7)], "out1": [(2, 3)], "leak": [(2, 3)]}
    convs, _, _ = _fused(tracer, x, cache, queries)
    assert convs == {"h2"}
    with torch.no_grad():
        full = net(x)
    got = tracer.gather(x, queries, cache)
    torch.testing.assert_close(got["leak"], full["leak"][..., [2], [3]], atol=ATOL, rtol=RTOL)
    assert (full["leak"][..., 2, 3] < 0).any()  # a ReLU applied to it would show


@pytest.mark.parametrize("leak", [False, True])
def test_fused_and_unfused_runs_are_bit_identical_and_exact(leak: bool, monkeypatch) -> None:
    net, x, tracer, cache = _setup(leak)
    with torch.no_grad():
        full = net(x)
    for r, c in [(0, 0), (15, 23), (31, 47), (8, 40)]:
        queries = {"out0": [(r, c)], "out1": [(r // 2, c // 2)]}
        runs = {}
        for fuse in (True, False):
            monkeypatch.setattr(execute, "FUSE", fuse)
            runs[fuse] = tracer.gather(x, queries, cache)
        for key, pts in queries.items():
            assert torch.equal(runs[True][key], runs[False][key]), key
            want = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
            torch.testing.assert_close(runs[True][key], want, atol=ATOL, rtol=RTOL)
