"""Tap ranker: features by hand, the MLP's arithmetic, the JSON round trip and refusal of malformed entries."""

from __future__ import annotations

import math

import pytest
import torch

from tracenet.model.tap_ranker import FEATURE_NAMES, TapRanker, candidate_features, logit


def _linear(weights: dict[str, float], bias: float = 0.0) -> TapRanker:
    w = torch.zeros(1, len(FEATURE_NAMES))
    for name, value in weights.items():
        w[0, FEATURE_NAMES.index(name)] = value
    n = len(FEATURE_NAMES)
    return TapRanker(torch.zeros(n), torch.ones(n), [(w, torch.tensor([bias]))], {"note": "hand-made"})


def test_candidate_features_by_hand() -> None:
    f = candidate_features(
        scores=torch.tensor([0.5, 0.2]),
        cls_probs=torch.tensor([0.8, 0.25]),
        ctr_probs=torch.tensor([0.625, 0.8]),
        boxes=torch.tensor([[10.0, 20.0, 30.0, 60.0], [5.0, 5.0, 5.5, 300.0]]),
        levels=[3, 6],
        mask_areas=torch.tensor([99, 0]),
        covers=torch.tensor([True, False]),
    )
    assert f.shape == (2, len(FEATURE_NAMES))
    row = dict(zip(FEATURE_NAMES, f[0].tolist()))
    assert row["logit_score"] == pytest.approx(0.0)
    assert row["logit_cls"] == pytest.approx(math.log(4.0))
    assert row["logit_ctr"] == pytest.approx(math.log(0.625 / 0.375))
    assert row["log_box_w"] == pytest.approx(math.log(20.0))
    assert row["log_box_h"] == pytest.approx(math.log(40.0))
    assert row["log1p_mask_area"] == pytest.approx(math.log(100.0))
    assert row["covers_tap"] == 1.0 and row["logit_score_gap"] == pytest.approx(0.0)
    assert [row[f"level_{k}"] for k in range(3, 8)] == [1, 0, 0, 0, 0]
    row = dict(zip(FEATURE_NAMES, f[1].tolist()))
    assert row["log_box_w"] == pytest.approx(0.0)  # width 0.5 is clamped to 1 pixel
    assert row["logit_score_gap"] == pytest.approx(math.log(0.25))  # logit(0.2) - logit(0.5)
    assert row["covers_tap"] == 0.0 and row["log1p_mask_area"] == 0.0
    assert [row[f"level_{k}"] for k in range(3, 8)] == [0, 0, 0, 1, 0]


def test_logit_clamps_to_finite() -> None:
    assert torch.isfinite(logit(torch.tensor([0.0, 1.0]))).all()


def test_mlp_arithmetic_and_round_trip() -> None:
    n = len(FEATURE_NAMES)
    torch.manual_seed(0)
    w1, b1, w2, b2 = torch.randn(3, n), torch.randn(3), torch.randn(1, 3), torch.randn(1)
    mean, std = torch.randn(n), torch.rand(n) + 0.5
    ranker = TapRanker(mean, std, [(w1, b1), (w2, b2)], {"images": 3})
    x = torch.randn(4, n)
    expected = (torch.relu(((x - mean) / std) @ w1.t() + b1) @ w2.t() + b2)[:, 0]
    assert torch.allclose(ranker(x), expected, atol=1e-6)
    again = TapRanker.from_dict(ranker.to_dict())
    assert torch.equal(again(x), ranker(x)) and again.hidden == 3 and again.info == {"images": 3}


def test_malformed_entries_are_refused() -> None:
    good = _linear({"covers_tap": 1.0}).to_dict()
    with pytest.raises(ValueError, match="features"):
        TapRanker.from_dict({**good, "features": ["something_else"]})
    with pytest.raises(ValueError, match="malformed"):
        TapRanker.from_dict({k: v for k, v in good.items() if k != "layers"})
    with pytest.raises(ValueError, match="map"):
        TapRanker.from_dict({**good, "layers": [{"weight": [[1.0, 2.0]], "bias": [0.0]}]})
    bad = dict(good, mean=[float("nan")] * len(FEATURE_NAMES))
    with pytest.raises(ValueError, match="NaN"):
        TapRanker.from_dict(bad)
