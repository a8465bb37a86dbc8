"""Plans that reuse a cache are put together from per-group plans (remembered, translated or back-traced on their
own, :meth:`ReceptiveFieldTracer._plan_with_cache`): they must equal back-tracing the whole request, step by step
(node, kind, window, MACs), for taps all over the map (corners, borders, interior) and repeated ones; and the
values of a run with them must equal the full run's."""

from __future__ import annotations

import torch

import tracenet.rft.tracer as tracer_module
from tests.rft.detection_nets import ResNetFPNTowers, calibrated
from tracenet.model.geometry import LEVELS
from tracenet.model.postprocess import GATHER_KINDS
from tracenet.predictor import DEFAULT_CHECKPOINT, TapSegmenter
from tracenet.rft import ReceptiveFieldTracer, TraceCache
from tracenet.rft.plan import Plan
from tracenet.tap.geometry import align_tap


def _grid_taps(w: int, h: int, n: int = 7) -> list[tuple[float, float]]:
    xs = [round(i * (w - 1) / (n - 1)) for i in range(n)]
    ys = [round(i * (h - 1) / (n - 1)) for i in range(n)]
    taps = [(x, y) for y in ys for x in xs]
    return taps + [(w * 0.37, h * 0.41), (w * 0.37 + 8, h * 0.41 + 16), (w * 0.52, h * 0.58)] + taps[:5]


def _steps(plan: Plan) -> list[tuple]:
    return [(s.node.name, s.kind, s.rect, s.macs) for s in plan.steps]


def _check_against_back_trace(tracer: ReceptiveFieldTracer, x: torch.Tensor, queries: list[dict],
                              monkeypatch) -> dict[str, int]:
    """Run every query set through ``tracer`` with one cache; each plan must equal a fresh back-trace."""
    counts = {"back_trace": 0, "translated": 0}
    real_back_trace, real_translated = tracer_module.back_trace, Plan.translated

    def counting_back_trace(*args, **kwargs):
        counts["back_trace"] += 1
        return real_back_trace(*args, **kwargs)

    def counting_translated(self, *args, **kwargs):
        plan = real_translated(self, *args, **kwargs)
        counts["translated"] += plan is not None
        return plan

    monkeypatch.setattr(tracer_module, "back_trace", counting_back_trace)
    monkeypatch.setattr(Plan, "translated", counting_translated)
    cache = TraceCache()
    shape = tuple(x.shape)
    for q in queries:
        cache.bind(x)
        if cache.values:
            plan = tracer.plan(shape, q, cache)
            reference = real_back_trace(tracer.layout(shape), tracer.output_nodes(), tracer._requests(shape, q),
                                        cache.values)
            assert _steps(plan) == _steps(reference), q
            assert plan.requests == reference.requests and plan.macs == reference.macs
        tracer.run(x, q, cache)
    return counts


def _assert_values_equal_the_full_run(net, tracer: ReceptiveFieldTracer, x: torch.Tensor, queries: list[dict]
                                      ) -> None:
    """Run every query set through ``tracer`` with one cache; the values at the queried points must equal ``net``'s
    full run on ``x`` (the tracer's promise: allclose with atol 1e-5, rtol 1e-4)."""
    with torch.no_grad():
        full = net(x)
    cache = TraceCache()
    for q in queries:
        got = tracer.gather(x, q, cache)
        for key, pts in q.items():
            ref = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
            torch.testing.assert_close(got[key], ref, atol=1e-5, rtol=1e-4)


def test_bundled_model_taps_plan_as_back_tracing(monkeypatch) -> None:
    torch.manual_seed(0)
    seg = TapSegmenter.from_checkpoint(DEFAULT_CHECKPOINT, max_side=1024)
    seg.set_image((torch.rand(600, 1000, 3) * 255).to(torch.uint8).numpy())
    h, w = seg.net_hw
    queries = []
    for xy in _grid_taps(w, h):
        rows_cols = align_tap(xy, seg.net_hw)
        q = {f"{kind}_p{lvl}": [rc] for kind in GATHER_KINDS for lvl, rc in zip(LEVELS, rows_cols)}
        q["mask_feats"] = None
        queries.append(q)
    counts = _check_against_back_trace(seg.tracer, seg._x, queries, monkeypatch)
    assert counts["translated"] > 30  # interior taps' P3-P5 plans were translated, not back-traced
    assert counts["back_trace"] < 0.7 * 10 * len(queries)  # 10 groups (two per level and the mask branch)


def test_detection_net_taps_plan_as_back_tracing_and_values_equal_the_full_run(monkeypatch) -> None:
    torch.manual_seed(0)
    net = calibrated(ResNetFPNTowers(depth=18, channels=32, towers=2), shape=(1, 3, 128, 160))
    x = torch.randn(1, 3, 256, 320)
    tracer = ReceptiveFieldTracer(net)
    queries = []
    for xy in _grid_taps(320, 256):
        rows_cols = align_tap(xy, (256, 320))
        queries.append({f"p{lvl}": [rc] for lvl, rc in zip(LEVELS, rows_cols)})
    counts = _check_against_back_trace(tracer, x, queries, monkeypatch)
    assert counts["translated"] > 0
    _assert_values_equal_the_full_run(net, tracer, x, queries)


def test_switched_off_every_plan_is_back_traced(monkeypatch) -> None:
    monkeypatch.setattr(tracer_module, "TRANSLATE", False)
    torch.manual_seed(0)
    net = calibrated(ResNetFPNTowers(depth=18, channels=16, towers=1), shape=(1, 3, 128, 160))
    tracer = ReceptiveFieldTracer(net)
    x = torch.randn(1, 3, 128, 160)
    queries = [{f"p{lvl}": [rc] for lvl, rc in zip(LEVELS, align_tap(xy, (128, 160)))} for xy in _grid_taps(160, 128, 3)]
    counts = _check_against_back_trace(tracer, x, queries, monkeypatch)
    # each query is planned twice (the check, then the run) and the first without a cache once
    assert counts["translated"] == 0 and counts["back_trace"] == 2 * (len(queries) - 1) + 1


def test_a_second_photo_of_the_same_size_reuses_the_first_photos_plans(monkeypatch) -> None:
    """A plan depends on which windows the cache holds, not on their values (:attr:`TraceCache.signature`): the
    same taps on another photo of the same size plan nothing anew, and the values still equal its full run."""
    torch.manual_seed(0)
    net = calibrated(ResNetFPNTowers(depth=18, channels=16, towers=1), shape=(1, 3, 128, 160))
    tracer = ReceptiveFieldTracer(net)
    queries = [{f"p{lvl}": [rc] for lvl, rc in zip(LEVELS, align_tap(xy, (128, 160)))} for xy in _grid_taps(160, 128, 4)]
    first_photo, second_photo = torch.randn(1, 3, 128, 160), torch.randn(1, 3, 128, 160)
    first = _check_against_back_trace(tracer, first_photo, queries, monkeypatch)
    second = _check_against_back_trace(tracer, second_photo, queries, monkeypatch)
    assert first["back_trace"] > 0 and second["back_trace"] == 0
    _assert_values_equal_the_full_run(net, tracer, second_photo, queries)
