"""Separable max pooling (tracenet.rft.maxpool) against ``F.max_pool2d``: the same values for every kernel, stride,
padding, dilation and ceil mode PyTorch accepts (NaN and -inf included), and the whole-map segment using it."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, maxpool


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes, NaN where the other has NaN, equal values elsewhere."""
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(7.0),
                                                                                     b.nan_to_num(7.0))


def test_every_accepted_configuration_gives_eager_values() -> None:
    rng = random.Random(0)
    torch.manual_seed(0)
    checked = 0
    for _ in range(1500):
        k = (rng.randint(1, 4), rng.randint(1, 4))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        p = (rng.randint(0, 2), rng.randint(0, 2))
        d = (rng.randint(1, 3), rng.randint(1, 3))
        ceil = rng.random() < 0.5
        x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 12), rng.randint(1, 12))
        x[x > 1.6] = float("nan")
        x[x < -1.6] = float("-inf")
        try:
            ref = F.max_pool2d(x, k, s, p, d, ceil)
        except RuntimeError:
            with pytest.raises(RuntimeError):  # what eager refuses, this refuses too (it is eager's own error)
                maxpool.max_pool2d(x, k, s, p, d, ceil)
            continue
        assert _same(maxpool.max_pool2d(x, k, s, p, d, ceil), ref), (k, s, p, d, ceil, tuple(x.shape))
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("shape", [(1, 64, 384, 512), (2, 8, 33, 17), (5, 2, 3), (3, 2, 2)])
def test_resnet_stem_pooling_and_odd_shapes(shape) -> None:
    x = torch.randn(*shape)
    assert torch.equal(maxpool.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
    assert torch.equal(maxpool.max_pool2d(x, (3, 2), None, (1, 0)), F.max_pool2d(x, (3, 2), None, (1, 0)))


def test_windows_entirely_in_the_padding_give_minus_infinity() -> None:
    """Dilated windows can hold padding only (kernel 2, dilation 2, padding 1 on a one-row map)."""
    x = torch.randn(1, 2, 1, 5)
    ref = F.max_pool2d(x, 2, 1, 1, 2)
    assert torch.isinf(ref).any()
    assert torch.equal(maxpool.max_pool2d(x, 2, 1, 1, 2), ref)


def test_other_layouts_keep_eager_memory_format() -> None:
    x = torch.randn(1, 4, 20, 24).contiguous(memory_format=torch.channels_last)
    out = maxpool.max_pool2d(x, 3, 2, 1)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, F.max_pool2d(x, 3, 2, 1))
    ints = torch.randint(0, 9, (1, 2, 6, 6))
    out = maxpool.max_pool2d(ints, 2)
    assert out.dtype == torch.int64 and torch.equal(out, F.max_pool2d(ints, 2))


class Stem(nn.Module):
    """ResNet-like stem: conv, ReLU, 3x3/s2 max pooling (module) and a functional 2x2 pooling with ceil mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.pool(self.relu(self.conv(x)))
        b = F.max_pool2d(a, kernel_size=2, ceil_mode=True)
        return {"a": self.head(a), "b": self.head(b)}


def test_whole_map_segment_pools_separably_with_the_models_values() -> None:
    torch.manual_seed(0)
    net = Stem().eval()
    x = torch.randn(1, 3, 101, 135)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    out = tracer.run(x, {"a": None, "b": None})
    for key in full:
        assert torch.equal(out[key][0], full[key]), key
    (seg,) = tracer.captured.segments.values()
    pools = [n for n in seg.module.graph.nodes if n.op == "call_function" and n.target is maxpool.max_pool2d]
    assert len(pools) == 2
    assert not any(isinstance(seg.module.get_submodule(str(n.target)), nn.MaxPool2d)
                   for n in seg.module.graph.nodes if n.op == "call_module")
    # cropped queries read the segment's maps: corner, edge, interior
    queries = {"b": [(0, 0), (12, 16), (0, 9), (6, 7)], "a": [(25, 0), (10, 20)]}
    got = tracer.gather(x, queries)
    for key, pts in queries.items():
        ref = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        torch.testing.assert_close(got[key], ref, rtol=1e-4, atol=1e-5)
