"""TapSegmenter with a tap ranker: it picks what the ranker prefers, stays exact (TraceNet == FullNet), keeps
``tap_key`` exact, and loads from / refuses checkpoint metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_predictor import _calibrate, _photo
from tracenet.model import build_model, preset, save_checkpoint
from tracenet.model.tap_ranker import FEATURE_NAMES, TapRanker
from tracenet.predictor import TapSegmenter


def _linear(weights: dict[str, float]) -> TapRanker:
    n = len(FEATURE_NAMES)
    w = torch.zeros(1, n)
    for name, value in weights.items():
        w[0, FEATURE_NAMES.index(name)] = value
    return TapRanker(torch.zeros(n), torch.ones(n), [(w, torch.zeros(1))], {})


@pytest.fixture(scope="module")
def model_cfg():
    cfg = preset("lite0")
    return _calibrate(build_model(cfg), seed=3), cfg


def test_the_ranker_decides_the_level(model_cfg) -> None:
    model, cfg = model_cfg
    seg = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False, ranker=_linear({"level_3": 10.0}))
    assert seg.selection == "ranker"
    seg.set_image(_photo(150, 200))
    for level in (3, 5, 7):
        seg.ranker = _linear({f"level_{level}": 10.0})
        res = seg.predict((60, 70))
        assert res.found and res.level == level
    paper = TapSegmenter(model, cfg, selection="paper", ranker=_linear({"level_3": 10.0}))
    assert paper.selection == "paper" and paper.ranker is None


def test_ranked_traced_equals_fullnet_and_keys_stay_exact(model_cfg) -> None:
    model, cfg = model_cfg
    torch.manual_seed(1)
    n = len(FEATURE_NAMES)
    ranker = TapRanker(torch.zeros(n), torch.ones(n), [(torch.randn(4, n), torch.randn(4)),
                                                      (torch.randn(1, 4), torch.zeros(1))], {})
    seg = TapSegmenter(model, cfg, min_score=0.0, max_side=160, ranker=ranker)
    seg.set_image(_photo(150, 230, seed=2))  # resized to 160 wide: tap cells are not 8x8 photo pixels
    for tap in [(3, 4), (100, 70), (229, 149), (57, 120)]:
        traced, full = seg.predict(tap), seg.predict(tap, use_rft=False)
        assert (traced.found, traced.level) == (full.found, full.level)
        assert np.array_equal(traced.mask, full.mask)
    key = seg.tap_key((100, 70))
    same = [(x, y) for y in range(150) for x in range(230) if seg.tap_key((x, y)) == key]
    ref = seg.predict(same[0], use_rft=False).mask
    for xy in same[1::7]:
        assert np.array_equal(seg.predict(xy, use_rft=False).mask, ref), f"tap {xy} differs within one key"


def test_checkpoint_carries_the_ranker(tmp_path, model_cfg) -> None:
    model, cfg = model_cfg
    ranker = _linear({"covers_tap": 2.0, "level_4": 1.0})
    path = save_checkpoint(tmp_path / "m.safetensors", model, cfg, {"tap_ranker": ranker.to_dict(), "max_side": 96})
    seg = TapSegmenter.from_checkpoint(path)
    assert seg.selection == "ranker" and seg.max_side == 96
    x = torch.randn(3, len(FEATURE_NAMES))
    assert torch.equal(seg.ranker(x), ranker(x))
    assert TapSegmenter.from_checkpoint(path, selection="paper").selection == "paper"
    plain = save_checkpoint(tmp_path / "plain.safetensors", model, cfg, {})
    assert TapSegmenter.from_checkpoint(plain).selection == "paper"
    with pytest.raises(ValueError, match="needs a tap ranker"):
        TapSegmenter.from_checkpoint(plain, selection="ranker")
    bad = save_checkpoint(tmp_path / "bad.safetensors", model, cfg, {"tap_ranker": {"features": ["x"]}})
    with pytest.raises(ValueError, match="bad.safetensors"):
        TapSegmenter.from_checkpoint(bad)
    with pytest.raises(ValueError, match="selection"):
        TapSegmenter(model, cfg, selection="best")
