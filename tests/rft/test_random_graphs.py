"""The tracer's promise on random graphs: traced values at the queried locations == the full run's (fp32, 1e-5)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rft.random_nets import draw_queries, random_nets
from tracenet.rft import ReceptiveFieldTracer

ATOL, RTOL = 1e-5, 1e-4  # the promise: the full run's values up to float32 summation order


def _check(net, x, queries) -> None:
    with torch.no_grad():
        full = net(x)
    items = {0: full} if isinstance(full, torch.Tensor) else (dict(enumerate(full)) if isinstance(full, tuple)
                                                               else full)
    tracer = ReceptiveFieldTracer(net)
    got = tracer.gather(x, queries)
    for key, pts in queries.items():
        rows = [p[0] for p in pts]
        cols = [p[1] for p in pts]
        ref = items[key][..., rows, cols]
        assert got[key].shape == ref.shape
        torch.testing.assert_close(got[key], ref, atol=ATOL, rtol=RTOL, msg=lambda m, k=key, q=pts: f"{k} {q}: {m}")
    plan = tracer.plan(tuple(x.shape), queries)
    assert 0 <= plan.macs <= plan.full_macs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_local_graphs_traced_equals_full(data) -> None:
    net, x = data.draw(random_nets(max_steps=10))
    with torch.no_grad():
        full = net(x)
    _check(net, x, draw_queries(data.draw, net, full))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_graphs_with_global_ops_stay_exact(data) -> None:
    net, x = data.draw(random_nets(max_steps=8, allow_global=True))
    with torch.no_grad():
        full = net(x)
    _check(net, x, draw_queries(data.draw, net, full))
