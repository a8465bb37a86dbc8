"""Cropped convolutions that call one module on parallel branches (a head shared by pyramid levels) run as one
batch (``tracenet.rft.execute.cropped_order`` + ``ConvRule.run_batch``): the values stay the full run's, the
grouping follows data flow, and an in-place op keeps the graph order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.predictor import DEFAULT_CHECKPOINT, TapSegmenter
from tracenet.rft import ReceptiveFieldTracer, TraceCache, execute

ATOL, RTOL = 1e-5, 1e-4  # the tracer's promise


class SharedHead(nn.Module):
    """Two pyramid levels (strides 2 and 4) and one head (conv, ReLU, conv) applied to both; one level's head
    input has one conv more in front of it (the depths differ from the start, not from the end)."""

    def __init__(self, ch: int = 16, inplace: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, stride=2, padding=1)
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.extra = nn.Conv2d(ch, ch, 3, padding=1)
        self.h1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.ReLU(inplace=inplace)
        self.h2 = nn.Conv2d(ch, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p1 = F.relu(self.stem(x))
        p2 = self.extra(F.relu(self.down(p1)))
        heads = {f"out{i}": self.h2(self.act(self.h1(p))) for i, p in enumerate((p1, p2))}
        return {"p1": p1, "p2": p2, **heads}


def _net(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return SharedHead(inplace=inplace).eval()


def test_same_module_on_parallel_branches_forms_groups() -> None:
    net = _net()
    x = torch.randn(1, 3, 96, 128)
    tracer, cache = ReceptiveFieldTracer(net), TraceCache()
    queries = {"out0": [(20, 30)], "out1": [(10, 15)]}
    tracer.run(x, {"p1": None, "p2": None}, cache)  # the levels are cached whole; the taps crop the heads
    layout = tracer.layout(tuple(x.shape))
    plan = tracer.plan(tuple(x.shape), queries, cache)
    cropped = [s for s in plan.steps if s.kind == "compute"]
    groups = execute.cropped_order(layout, cropped)
    assert sorted(s.node for g in groups for s in g) == sorted(s.node for s in cropped)  # each step once
    batched = [sorted(str(s.node.target) for s in g) for g in groups if len(g) > 1]
    assert batched == [["h1", "h1"], ["h2", "h2"]]
    done = set()
    for group in groups:  # every step runs after the steps it reads
        for s in group:
            assert all(a in done for a in s.node.all_input_nodes if a in {c.node for c in cropped})
        done.update(s.node for s in group)


@pytest.mark.parametrize("inplace", [False, True])
def test_batched_heads_equal_the_full_run(inplace: bool) -> None:
    net = _net(inplace)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        full = net(x)
    tracer, cache = ReceptiveFieldTracer(net), TraceCache()
    tracer.run(x, {"p1": None, "p2": None}, cache)
    for r, c in [(0, 0), (23, 31), (11, 17), (47, 63)]:
        queries = {"out0": [(r, c)], "out1": [(r // 2, c // 2)]}
        got = tracer.gather(x, queries, cache)
        for key, pts in queries.items():
            want = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
            torch.testing.assert_close(got[key], want, atol=ATOL, rtol=RTOL)
    if inplace:  # an in-place op among the cropped steps: graph order, one step per group
        plan = tracer.plan(tuple(x.shape), {"out0": [(5, 5)], "out1": [(2, 2)]}, cache)
        cropped = [s for s in plan.steps if s.kind == "compute"]
        assert all(len(g) == 1 for g in execute.cropped_order(tracer.layout(tuple(x.shape)), cropped))


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="the bundled checkpoint is not in this checkout")
def test_bundled_model_batched_repeat_taps_equal_one_by_one() -> None:
    seg = TapSegmenter.from_checkpoint(max_side=512)
    torch.manual_seed(4)
    x = torch.randn(1, 3, 384, 512).clamp(-2, 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        full = seg.model(x)
    tracer, cache = ReceptiveFieldTracer(seg.model), TraceCache()
    tracer.run(x, {"mask_feats": None, "cls_p3": [(10, 10)]}, cache)
    for r, c in [(0, 0), (24, 32), (47, 63), (30, 5)]:
        queries = {f"{kind}_p{lvl}": [(min(r >> (lvl - 3), full[f"{kind}_p{lvl}"].shape[-2] - 1),
                                       min(c >> (lvl - 3), full[f"{kind}_p{lvl}"].shape[-1] - 1))]
                   for kind in ("cls", "ctrl", "box") for lvl in (3, 4, 5, 6, 7)}
        runs = {}
        for batch in (True, False):
            execute.BATCH = batch
            try:
                runs[batch] = tracer.gather(x, queries, cache)
            finally:
                execute.BATCH = True
        for key, pts in queries.items():
            want = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
            torch.testing.assert_close(runs[True][key], want, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(runs[True][key], runs[False][key], atol=ATOL, rtol=RTOL)


def test_crops_of_different_sizes_share_one_kernel_call(monkeypatch) -> None:
    """A window clipped by its map's corner on one level and a whole window on the other go through the kernel as
    one batch (the smaller zero-filled at the bottom / right), and each level keeps exactly its own window."""
    from tracenet.rft import sliding

    net = _net()
    x = torch.randn(1, 3, 192, 256)  # large enough that both levels' full runs take oneDNN (one kernel to share)
    with torch.no_grad():
        full = net(x)
    tracer, cache = ReceptiveFieldTracer(net), TraceCache()
    tracer.run(x, {"p1": None, "p2": None}, cache)
    queries = {"out0": [(0, 0)], "out1": [(10, 15)]}  # level 0's window clipped at the corner, level 1's whole
    calls: list[tuple[str, tuple[int, ...]]] = []
    convolve = sliding.ConvRule._convolve

    def counting(self, op, prepared):
        calls.append((str(op.node.target), tuple(prepared[0].shape)))
        return convolve(self, op, prepared)

    monkeypatch.setattr(sliding.ConvRule, "_convolve", counting)
    got = {}
    for pad in (True, False):
        monkeypatch.setattr(sliding, "PAD_BATCH", pad)
        calls.clear()
        got[pad] = tracer.gather(x, queries, cache)
        h1 = [shape for target, shape in calls if target == "h1"]
        assert len(h1) == (1 if pad else 2), calls
        if pad:
            assert h1[0][0] == 2  # both levels in one batch
    for key, pts in queries.items():
        want = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        for pad in (True, False):
            torch.testing.assert_close(got[pad][key], want, atol=ATOL, rtol=RTOL)
