"""The tracer's promise at realistic sizes (>= 512 px): values at the queried locations equal the full run's up to
float32 summation order, for interior, edge and corner queries, at the thread counts the benchmarks use (1, 2).

For a trained network that means ``allclose(rtol=1e-4, atol=1e-5)``. The random ResNet-50 test net amplifies
rounding (running its *full* forward in channels-last instead of contiguous memory changes its outputs by ~65x
that tolerance at 1024x768), and oneDNN's 1x1 kernels sum in an order that depends on the map size, so for it the
absolute part of the tolerance is scaled by the size of the output's values (``atol = 1e-5 * max |full output|``).
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.rft.detection_nets import ResNetFPNTowers, calibrated
from tracenet.predictor import DEFAULT_CHECKPOINT, TapSegmenter
from tracenet.rft import ReceptiveFieldTracer, TraceCache

ATOL, RTOL = 1e-5, 1e-4


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _queries(full: dict, keys=None) -> dict:
    """Per output: both corners, a top-edge and a left-edge point, and two interior points (``(row, col)``)."""
    queries = {}
    for key in keys or full:
        h, w = full[key].shape[-2:]
        queries[key] = [(0, 0), (h - 1, w - 1), (0, w // 2), (h // 2, 0), (h // 2, w // 2), (h // 3, 2 * w // 3)]
    return queries


def _check(got: dict, full: dict, queries: dict, scaled: bool) -> None:
    for key, pts in queries.items():
        ref = full[key][..., [p[0] for p in pts], [p[1] for p in pts]]
        atol = ATOL * max(1.0, float(full[key].abs().max())) if scaled else ATOL
        torch.testing.assert_close(got[key], ref, atol=atol, rtol=RTOL, msg=lambda m, k=key: f"{k}: {m}")


@pytest.fixture(scope="module")
def lite0():
    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip("the bundled checkpoint is not in this checkout")
    return TapSegmenter.from_checkpoint().model  # BatchNorm folded, as the predictor runs it


@pytest.mark.parametrize(("threads", "size"), [(1, (512, 683)), (2, (512, 683)), (2, (768, 1024))],
                         indirect=["threads"])
def test_trained_lite0_allclose_at_realistic_sizes(lite0, threads, size) -> None:
    torch.manual_seed(sum(size))
    x = torch.randn(1, 3, *size).clamp(-2, 2)
    with torch.no_grad():
        full = lite0(x)
    tracer = ReceptiveFieldTracer(lite0)
    keys = [k for k in full if k.endswith(("_p3", "_p5", "_p7"))]
    queries = _queries(full, keys)
    _check(tracer.gather(x, queries), full, queries, scaled=False)
    for point in queries["cls_p3"][3:]:  # one tap at a time: the traced predictor's request shape
        one = {f"{kind}_p{lvl}": [(min(point[0] >> (lvl - 3), full[f"{kind}_p{lvl}"].shape[-2] - 1),
                                   min(point[1] >> (lvl - 3), full[f"{kind}_p{lvl}"].shape[-1] - 1))]
               for kind in ("cls", "ctrl") for lvl in (3, 4, 5, 6, 7)}
        _check(tracer.gather(x, one), full, one, scaled=False)


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(50)
    return calibrated(ResNetFPNTowers(depth=50, channels=64, towers=2), shape=(1, 3, 160, 192))


@pytest.mark.parametrize(("threads", "size"), [(1, (512, 640)), (2, (512, 640)), (2, (600, 515))],
                         indirect=["threads"])
def test_r50_fpn_at_realistic_sizes(r50, threads, size) -> None:
    torch.manual_seed(sum(size))
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        full = r50(x)
    tracer = ReceptiveFieldTracer(r50)
    queries = _queries(full)
    _check(tracer.gather(x, queries), full, queries, scaled=True)
    for key in ("p3", "p5"):  # single corner / edge / interior queries crop the backbone too
        for point in _queries(full, [key])[key][1:5:2]:
            _check(tracer.gather(x, {key: [point]}), full, {key: [point]}, scaled=True)
    cache = TraceCache()  # a second query reusing the frontier of a whole-map request
    tracer.run(x, {"p3": None}, cache=cache)
    h, w = full["p4"].shape[-2:]
    _check(tracer.gather(x, {"p4": [(h // 2 + 1, w // 4)]}, cache=cache), full, {"p4": [(h // 2 + 1, w // 4)]},
           scaled=True)


def test_channels_last_input_matches_the_channels_last_full_run(r50) -> None:
    """A channels-last model and input: crops keep the format, so they match that full run."""
    model = copy.deepcopy(r50).to(memory_format=torch.channels_last)
    torch.manual_seed(3)
    x = torch.randn(1, 3, 520, 704).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        full = model(x)
    queries = _queries(full)
    _check(ReceptiveFieldTracer(model).gather(x, queries), full, queries, scaled=True)
    one = {"p3": [(full["p3"].shape[-2] // 2, 5)]}
    _check(ReceptiveFieldTracer(model).gather(x, one), full, one, scaled=True)
