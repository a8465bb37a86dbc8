"""Fitting the tap ranker: the soft objective and choice metrics by hand, and a fit that finds the right rule."""

from __future__ import annotations

import pytest
import torch

from tracenet.model.tap_ranker import FEATURE_NAMES, mlp_scores
from tracenet.train.tap_ranker import (
    TapExamples,
    choice_metrics,
    fit_ranker_layers,
    fit_tap_ranker,
    held_out_from,
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


def _mixed(first_click) -> TapExamples:
    """Tap 0: a band tap (candidates IoU 9/10 and 1/40, area 10); taps 1-2: first clicks on a large instance
    (area 1000; candidate IoUs 0.5 and 0.1) and a small one (area 10; IoUs 0.2 and 1.0)."""
    f = torch.zeros(3, 2, len(FEATURE_NAMES))
    ex = _examples(f, [[9, 1], [500, 100], [2, 10]], [[10, 40], [1000, 1000], [10, 10]],
                   torch.ones(3, 2, dtype=torch.bool), [10, 1000, 10])
    ex.first_click = torch.as_tensor(first_click)
    return ex


def test_first_clicks_are_scored_apart_from_band_taps() -> None:
    ex = _mixed([False, True, True])
    m = choice_metrics(torch.tensor([0, 0, 1]), ex)
    # band metrics from tap 0 alone; the first clicks' IoU is a plain mean (0.5 + 1.0) / 2, not area-weighted
    assert m == pytest.approx({"miou_t": 0.9, "mta_taps": 1.0, "first_click_iou": 0.75})
    assert choice_metrics(torch.tensor([0, 1, 0]), ex)["first_click_iou"] == pytest.approx((0.1 + 0.2) / 2)
    # without first clicks the key is absent and every tap counts as a band tap
    plain = choice_metrics(torch.tensor([0, 0, 1]), _mixed([False, False, False]))
    assert "first_click_iou" not in plain and plain["miou_t"] == pytest.approx((9 + 500 + 10) / (10 + 1000 + 10))


def test_soft_objective_adds_the_weighted_first_click_mean() -> None:
    ex = _mixed([False, True, True])
    sharp = torch.tensor([[50.0, -50.0], [50.0, -50.0], [-50.0, 50.0]])
    assert float(soft_objective(sharp, ex, first_click_weight=1.0)) == pytest.approx(0.9 + 1.0 + 0.75, abs=1e-3)
    assert float(soft_objective(sharp, ex)) == pytest.approx(0.9 + 1.0, abs=1e-3)  # default: band taps alone
    assert float(soft_objective(sharp, ex, first_click_weight=2.0)) == pytest.approx(0.9 + 1.0 + 1.5, abs=1e-3)
    assert float(soft_objective(sharp, ex, first_click_weight=0.0)) == pytest.approx(0.9 + 1.0, abs=1e-3)
    even = torch.zeros(3, 2)  # p = 1/2 each: expected IoUs 0.3 and 0.6
    assert float(soft_objective(even, ex, first_click_weight=1.0) - soft_objective(even, ex, first_click_weight=0.0)) \
        == pytest.approx((0.3 + 0.6) / 2, abs=1e-9)


def test_fit_on_first_clicks_alone_and_refusal_without_weight() -> None:
    """The covering candidate is right on every first click; the fit must find it from first clicks only."""
    gen = torch.Generator().manual_seed(1)
    n, k = 120, 3
    f = torch.randn(n, k, len(FEATURE_NAMES), generator=gen) * 0.1
    right = torch.randint(0, k, (n,), generator=gen)
    f[torch.arange(n), right, FEATURE_NAMES.index("covers_tap")] = 1.0
    f[:, 0, FEATURE_NAMES.index("logit_score")] = 3.0
    inter = torch.full((n, k), 1.0)
    inter[torch.arange(n), right] = 80.0
    ex = _examples(f, inter, torch.full((n, k), 100.0), torch.ones(n, k, dtype=torch.bool),
                   torch.rand(n, generator=gen) * 1000 + 1)
    ex.first_click = torch.ones(n, dtype=torch.bool)
    ranker = fit_tap_ranker(ex, hidden=0, iters=300, first_click_weight=1.0)
    assert torch.equal(ranker_choice(ranker, ex), right)
    assert choice_metrics(ranker_choice(ranker, ex), ex) == pytest.approx({"first_click_iou": 0.8})
    with pytest.raises(ValueError, match="only first clicks"):
        fit_tap_ranker(ex)


def test_weight_zero_fits_exactly_as_without_first_clicks() -> None:
    """First clicks collected beside the band taps change nothing at weight 0 (the shipped rankers' objective)."""
    gen = torch.Generator().manual_seed(2)
    n, k = 60, 3
    f = torch.randn(n, k, len(FEATURE_NAMES), generator=gen)
    inter = torch.rand(n, k, generator=gen, dtype=torch.float64) * 50
    ex = _examples(f, inter, inter + 50, torch.ones(n, k, dtype=torch.bool), torch.full((n,), 60.0))
    first = torch.arange(n) % 4 == 0
    ex.first_click = first
    band_only = ex.subset(~first)
    band_only.first_click = torch.zeros(int((~first).sum()), dtype=torch.bool)
    a, b = fit_tap_ranker(ex, iters=50), fit_tap_ranker(band_only, iters=50)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    # equal up to float summation order (the batch differs); the output bias is free (softmax ignores a shift)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-5) for x, y in [*zip(a.layers[0], b.layers[0]),
                                                                     (a.layers[1][0], b.layers[1][0])])
    assert torch.equal(ranker_choice(a, ex), ranker_choice(b, ex))
    assert not torch.equal(fit_tap_ranker(ex, iters=50, first_click_weight=1.0).layers[0][0], a.layers[0][0])


def test_concat_pads_candidates_and_keeps_every_collections_images_apart() -> None:
    """Two collections (``--also``): 2 taps with 1 candidate on images 0, 1, and 1 tap with 3 candidates on image
    0 of the second. The result pads the first to 3 invalid-padded candidates, offsets the second's image index
    past the first's, and gives the same metrics as each part alone for the same choices."""
    f = len(FEATURE_NAMES)
    a = _examples(torch.ones(2, 1, f), [[4], [6]], [[10], [12]], [[True], [True]], [5, 6])
    b = _examples(torch.full((1, 3, f), 2.0), [[1, 7, 0]], [[9, 8, 30]], [[True, True, True]], [7])
    both = TapExamples.concat([a, b])
    assert both.features.shape == (3, 3, f) and both.image_index.tolist() == [0, 1, 2]
    assert both.valid.tolist() == [[True, False, False], [True, False, False], [True, True, True]]
    assert both.union[:2, 1:].eq(1).all() and both.inter[:2, 1:].eq(0).all() and both.features[:2, 1:].eq(0).all()
    assert both.first_click.tolist() == [False, False, False]
    m = choice_metrics(torch.tensor([0, 0, 1]), both)
    assert m["miou_t"] == pytest.approx((4 + 6 + 7) / (10 + 12 + 8))
    # the last fifth of each collection is held out: image 1 of the first (of 2, rounded), none of the second
    assert held_out_from(a, 0.5) == 1 and held_out_from(b, 0.2) == 1 and held_out_from(a, 0.0) == 2


def test_fit_ranker_layers_uses_a_column_beyond_the_shipped_features() -> None:
    """A probe's added column (``F = len(FEATURE_NAMES) + 1``) is the only one that tells the right candidate:
    the fit over all columns must pick it for every tap, the fit over the shipped columns cannot."""
    gen = torch.Generator().manual_seed(1)
    n, k = 200, 3
    f = torch.zeros(n, k, len(FEATURE_NAMES) + 1)
    right = torch.randint(0, k, (n,), generator=gen)
    f[torch.arange(n), right, -1] = 1.0
    inter = torch.full((n, k), 1.0)
    inter[torch.arange(n), right] = 90.0
    union = torch.full((n, k), 200.0)
    union[torch.arange(n), right] = 100.0
    ex = _examples(f, inter, union, torch.ones(n, k, dtype=torch.bool), torch.full((n,), 100.0))
    mean, std, layers = fit_ranker_layers(ex, hidden=0, iters=300)
    assert len(mean) == len(FEATURE_NAMES) + 1 and layers[0][0].shape == (1, len(FEATURE_NAMES) + 1)
    assert torch.equal(mlp_scores(ex.features, mean, std, layers).argmax(1), right)
    shipped = _examples(f[..., :-1], inter, union, torch.ones(n, k, dtype=torch.bool), torch.full((n,), 100.0))
    ranker = fit_tap_ranker(shipped, hidden=0, iters=300)
    assert not torch.equal(ranker_choice(ranker, shipped), right)
