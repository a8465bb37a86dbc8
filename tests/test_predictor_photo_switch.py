"""Switching photos of the same size: nothing computed for the first photo may leak into the second's answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_predictor import _calibrate, _photo
from tracenet.model import build_model, preset
from tracenet.predictor import TapSegmenter

TAPS = [(20, 30), (90, 60), (50, 5)]


@pytest.fixture(scope="module")
def model_cfg():
    cfg = preset("lite0")
    torch.manual_seed(6)
    return _calibrate(build_model(cfg), seed=6), cfg


def _answers(seg: TapSegmenter, use_rft: bool) -> list[tuple]:
    return [(r.found, r.score, r.box, r.mask.tobytes()) for r in (seg.predict(t, use_rft=use_rft) for t in TAPS)]


@pytest.mark.parametrize("use_rft", [True, False], ids=["traced", "fullnet"])
def test_second_photo_of_the_same_size_answers_as_if_it_came_first(model_cfg, use_rft) -> None:
    """Guards stale per-image caches: a ``set_image`` that kept the tracer's frontier (``TraceCache``, keyed by the
    input's shape) or FullNet's whole dense output would answer the second photo's taps from the first photo.
    Reference: a fresh segmenter that only ever saw the second photo."""
    model, cfg = model_cfg
    first = _photo(72, 104, seed=0)
    second = np.ascontiguousarray(first[::-1, ::-1])  # same size, the red block elsewhere
    seg = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False)
    seg.set_image(first)
    on_first = _answers(seg, use_rft)
    seg.set_image(second)
    after_switch = _answers(seg, use_rft)

    fresh = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False)
    fresh.set_image(second)
    expected = _answers(fresh, use_rft)
    assert after_switch == expected
    assert on_first != expected, "the two photos give the same answers: the test could not see a stale cache"
    # and back again: the first photo's answers return
    seg.set_image(first)
    assert _answers(seg, use_rft) == on_first
