"""Tracer exactness on the networks TraceNet is built from: ResNet-18/50 + FPN (P3-P7) + 4-conv towers."""

from __future__ import annotations

import pytest
import torch

from tests.rft.detection_nets import ResNetFPNTowers, calibrated
from tracenet.rft import ReceptiveFieldTracer, TraceCache
from tracenet.rft.plan import WHOLE_FRACTION

ATOL, RTOL = 1e-5, 1e-4  # the promise: the full run's values up to float32 summation order


@pytest.fixture(scope="module", params=[18, 50])
def net(request):
    torch.manual_seed(request.param)
    return calibrated(ResNetFPNTowers(depth=request.param, channels=64 if request.param == 50 else 32))


@pytest.mark.parametrize("size", [(161, 227), (128, 96)])
def test_one_query_per_level_equals_full(net, size) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    gen = torch.Generator().manual_seed(sum(size))
    queries = {}
    for i, key in enumerate(full):
        h, w = full[key].shape[-2:]
        if i == 0:
            queries[key] = [(0, 0)]  # corner
        elif i == 1:
            queries[key] = [(h - 1, w - 1)]  # opposite corner
        else:
            queries[key] = [(int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen)))]
    got = tracer.gather(x, queries)
    for key, pts in queries.items():
        ref = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        torch.testing.assert_close(got[key], ref, atol=ATOL, rtol=RTOL)
    plan = tracer.plan(tuple(x.shape), queries)
    assert plan.macs < plan.full_macs
    # Hand-derived cost of the towers: the j-th of the four 3x3 convs (j = 0 first) must produce a window of
    # radius 3 - j around the query, clipped to the level's map, and cost exactly that window; a window covering at
    # least half its map (WHOLE_FRACTION) is computed whole, and so are the convs before it. (At these small sizes
    # P7 sees the whole image, so the backbone itself runs whole.)
    channels = net.tower[0].out_channels
    convs = [s for s in plan.steps if str(s.node.target) in ("tower.0", "tower.3", "tower.6", "tower.9")]
    assert len(convs) == 4 * len(queries)  # graph order: level by level, four convs each
    expected = 0
    for lvl, (key, [(r, c)]) in enumerate(queries.items()):
        h, w = full[key].shape[-2:]
        whole = False
        for j in reversed(range(4)):
            rad = 3 - j
            window = (max(0, r - rad), min(h, r + rad + 1), max(0, c - rad), min(w, c + rad + 1))
            area = (window[1] - window[0]) * (window[3] - window[2])
            whole = whole or area >= WHOLE_FRACTION * h * w
            if whole:
                window, area = (0, h, 0, w), h * w
            step = convs[4 * lvl + j]
            assert tuple(step.rect) == window
            expected += area * channels * channels * 9
    tower_macs = sum(s.macs for s in plan.steps if str(s.node.target).startswith("tower."))
    assert tower_macs == expected


def test_windows_and_cache_reuse(net) -> None:
    """A whole-map request, then point requests reusing the cache: values still exact, far less work."""
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        full = net(x)
    tracer = ReceptiveFieldTracer(net)
    cache = TraceCache()
    out = tracer.run(x, {"p3": None}, cache=cache)
    torch.testing.assert_close(out["p3"][0], full["p3"], atol=ATOL, rtol=RTOL)
    assert cache.values, "the frontier of the whole-map run should be cached"
    queries = {k: [(v.shape[-2] // 2, v.shape[-1] // 3)] for k, v in full.items()}
    cold = tracer.plan(tuple(x.shape), queries)
    warm = tracer.plan(tuple(x.shape), queries, cache=cache)
    assert warm.macs < cold.macs
    got = tracer.gather(x, queries, cache=cache)
    for key, pts in queries.items():
        ref = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        torch.testing.assert_close(got[key], ref, atol=ATOL, rtol=RTOL)
    # a different input tensor must not see the old cache
    y = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        full_y = net(y)
    got_y = tracer.gather(y, queries, cache=cache)
    for key, pts in queries.items():
        ref = full_y[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        torch.testing.assert_close(got_y[key], ref, atol=ATOL, rtol=RTOL)
