"""Fitting the tap ranker: the soft objective and choice metrics by hand, and a fit that finds the right rule."""

from __future__ import annotations

import pytest
import torch

from tracenet.model.tap_ranker import FEATURE_NAMES
from tracenet.train.tap_ranker import (
    TapExamples,
    choice_metrics,
    fit_tap_ranker,
    ranker_choice,
    soft_objective,
)


def _examples(features, inter, union, valid, gt_area) -> TapExamples:
    return TapExamples(
        features=torch.as_tensor(features, dtype=torch.float32),
        inter=torch.as_tensor(inter, dtype=torch.float64),
        union=torch.as_tensor(union, dtype=torch.float64),
        valid=torch.as_tensor(valid, dtype=torch.bool),
        gt_area=torch.as_tensor(gt_area, dtype=torch.float64),
        image_index=torch.arange(len(gt_area)),
    )


def test_choice_metrics_by_hand() -> None:
    f = torch.zeros(2, 2, len(FEATURE_NAMES))
    ex = _examples(f, [[8, 2], [0, 0]], [[10, 50], [20, 20]], [[True, True], [False, False]], [10, 20])
    # tap 0 takes candidate 0 (IoU 0.8), tap 1 has no candidate (empty mask: 0 / 20)
    m = choice_metrics(torch.tensor([0, -1]), ex)
    assert m["miou_t"] == pytest.approx(8 / 30)
    assert m["mta_taps"] == pytest.approx(10 / 30)  # only tap 0 (area 10) reaches IoU 0.7
    m = choice_metrics(torch.tensor([1, -1]), ex)
    assert m["miou_t"] == pytest.approx(2 / 70) and m["mta_taps"] == 0.0


def test_soft_objective_equals_hard_metrics_for_sharp_logits() -> None:
    f = torch.zeros(1, 2, len(FEATURE_NAMES))
    ex = _examples(f, [[9, 1]], [[10, 40]], [[True, True]], [10])
    value = soft_objective(torch.tensor([[50.0, -50.0]]), ex)
    assert float(value) == pytest.approx(0.9 + 1.0, abs=1e-3)  # mIoU-T 0.9 + every tap good
    half = soft_objective(torch.tensor([[0.0, 0.0]]), ex)
    assert float(half) == pytest.approx((5 / 25) + 0.5, abs=1e-3)


def test_fit_learns_to_prefer_the_covering_small_candidate() -> None:
    """Candidate 0 is confident but wrong; the covering one (feature covers_tap) is right: the fit must find it."""
    gen = torch.Generator().manual_seed(0)
    n, k = 200, 3
    f = torch.randn(n, k, len(FEATURE_NAMES), generator=gen) * 0.1
    cov = FEATURE_NAMES.index("covers_tap")
    sc = FEATURE_NAMES.index("logit_score")
    right = torch.randint(0, k, (n,), generator=gen)
    f[..., sc] += 2.0
    f[torch.arange(n), :, sc] = 0.0
    f[:, 0, sc] = 3.0  # the paper's rule would always take candidate 0
    f[torch.arange(n), right, cov] = 1.0
    inter = torch.full((n, k), 1.0)
    inter[torch.arange(n), right] = 90.0
    union = torch.full((n, k), 200.0)
    union[torch.arange(n), right] = 100.0
    ex = _examples(f, inter, union, torch.ones(n, k, dtype=torch.bool), torch.full((n,), 100.0))
    ranker = fit_tap_ranker(ex, hidden=0, iters=300)
    assert torch.equal(ranker_choice(ranker, ex), right)
    assert choice_metrics(ranker_choice(ranker, ex), ex)["miou_t"] == pytest.approx(0.9)


def test_fit_refuses_empty_examples() -> None:
    ex = _examples(torch.zeros(1, 1, len(FEATURE_NAMES)), [[0]], [[1]], [[False]], [5])
    with pytest.raises(ValueError, match="no tap has a candidate"):
        fit_tap_ranker(ex)
