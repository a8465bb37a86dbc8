"""Prepacked oneDNN weights for cropped convolutions (``tracenet.rft.sliding.packed_weight``): the same values as
the per-call ``torch.mkldnn_convolution`` they replace, bit for bit, so the tracer's results do not move."""

from __future__ import annotations

import itertools

import pytest
import torch

from tracenet.predictor import DEFAULT_CHECKPOINT, TapSegmenter
from tracenet.rft import ReceptiveFieldTracer, TraceCache, sliding

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs PyTorch's oneDNN backend")


def _pointwise(x: torch.Tensor, cache, weight: torch.Tensor, bias, stride, dilation, groups) -> torch.Tensor:
    packed = cache.get(weight, tuple(x.shape), stride, dilation, groups)
    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, [0, 0], list(stride), list(dilation), groups,
                                                   "none", [], "")


@pytest.mark.parametrize("threads", [1, 2])
def test_prepacked_equals_mkldnn_convolution_on_channels_last_crops(threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(threads)
        cases = list(itertools.product((96,), (96, 169), (1, 3), (1, 2), (1, 2), (False,), (3, 9), (7,)))
        cases += list(itertools.product((8,), (8, 16), (3,), (1, 2), (1,), (False, True), (5, 12), (3, 9)))
        for cin, cout, k, s, d, depthwise, h, w in cases:
            groups = cin if depthwise else 1
            if (depthwise and cout % cin) or h < d * (k - 1) + 1 or w < d * (k - 1) + 1:
                continue
            weight = torch.randn(cout, cin // groups, k, k).contiguous(memory_format=torch.channels_last)
            bias = torch.randn(cout)
            x = torch.randn(1, cin, h, w).contiguous(memory_format=torch.channels_last)
            ref = torch.mkldnn_convolution(x, weight, bias, (0, 0), (s, s), (d, d), groups)
            got = _pointwise(x, sliding.PackedWeights(), weight, bias, (s, s), (d, d), groups)
            assert torch.equal(got, ref), (cin, cout, k, s, d, groups, h, w)
            assert got.stride() == ref.stride()
    finally:
        torch.set_num_threads(before)


def test_packed_weight_is_kept_per_shape_and_repacked_after_an_in_place_change() -> None:
    torch.manual_seed(0)
    weight = torch.randn(16, 16, 3, 3).contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    cache = sliding.PackedWeights()
    first = _pointwise(x, cache, weight, None, (1, 1), (1, 1), 1)
    _pointwise(x, cache, weight, None, (1, 1), (1, 1), 1)
    assert len(cache) == 1  # reused
    _pointwise(x[..., :5, :5].contiguous(memory_format=torch.channels_last), cache, weight, None, (1, 1), (1, 1), 1)
    assert len(cache) == 2  # one per crop shape
    with torch.no_grad():
        weight.mul_(2.0)
    again = _pointwise(x, cache, weight, None, (1, 1), (1, 1), 1)
    assert torch.equal(again, torch.mkldnn_convolution(x, weight, None, (0, 0), (1, 1), (1, 1), 1))
    assert not torch.equal(again, first)


def test_packed_weights_are_bounded_in_bytes(monkeypatch) -> None:
    weight = torch.randn(8, 8, 1, 1).contiguous(memory_format=torch.channels_last)
    per_entry = weight.numel() * weight.element_size()
    monkeypatch.setattr(sliding, "MAX_PACKED_BYTES", 10 * per_entry)
    cache = sliding.PackedWeights()
    for side in range(1, 16):
        x = torch.randn(1, 8, side, 2).contiguous(memory_format=torch.channels_last)
        y = _pointwise(x, cache, weight, None, (1, 1), (1, 1), 1)
        assert torch.equal(y, torch.mkldnn_convolution(x, weight, None, (0, 0), (1, 1), (1, 1), 1))
    assert len(cache) == 10 and cache.nbytes == 10 * per_entry


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="the bundled checkpoint is not in this checkout")
def test_traced_taps_bit_identical_with_and_without_prepacking() -> None:
    """The bundled model (channels-last, as the predictor runs it): a first and a repeat tap's head outputs equal
    the unpacked run's exactly (both runs trace the same plan)."""
    model = TapSegmenter.from_checkpoint().model
    torch.manual_seed(3)
    x = torch.randn(1, 3, 384, 512).clamp(-2, 2).contiguous(memory_format=torch.channels_last)
    taps = [(20, 30), (47, 0), (5, 63)]
    results = {}
    for prepack in (True, False):
        sliding.PREPACK = prepack
        sliding.PACKED.clear()
        try:
            tracer, cache = ReceptiveFieldTracer(model), TraceCache()
            results[prepack] = [tracer.gather(x, {f"{kind}_p{lvl}": [(r >> (lvl - 3), c >> (lvl - 3))]
                                                  for kind in ("cls", "ctrl") for lvl in (3, 4, 5, 6, 7)}, cache)
                                for r, c in taps]
            assert (len(sliding.PACKED) > 0) == prepack  # the packed path did run (the heads' crops go to oneDNN)
        finally:
            sliding.PREPACK = True
    for packed, plain in zip(results[True], results[False]):
        for key in packed:
            assert torch.equal(packed[key], plain[key]), key
