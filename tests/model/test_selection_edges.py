"""Edges of tap post-processing that mutation testing found unguarded (docs/MUTATION.md): the ``min_score``
boundary, the shape checks of gathered outputs, the level that scales the mask head's relative coordinates, the
3-D ``mask_feats`` path, taps below the image, and ``full_gather``'s default image. Every expected value is
worked out by hand in the test."""

from __future__ import annotations

import pytest
import torch

from tracenet.model.postprocess import (
    Candidate,
    all_candidates,
    candidate_mask_probs,
    full_gather,
    select_candidate,
)
from tracenet.tap.geometry import align_tap

ROWS_COLS = [(0, 0)] * 5


def _gathered(cls_logits: list[float]) -> dict[str, torch.Tensor]:
    """One class; every level's box is (l, t, r, b) = (2, 2, 2, 2) around its own location, so boxes of different
    levels barely overlap and NMS keeps all five; centerness logit 0 (probability 0.5)."""
    return {
        "cls": torch.tensor([cls_logits]),
        "ctr": torch.zeros(1, 5),
        "box": torch.full((4, 5), 2.0),
        "ctrl": torch.zeros(169, 5),
    }


def test_min_score_keeps_a_candidate_scoring_exactly_the_threshold():
    """Guards ``score <= min_score`` for ``score < min_score`` and the runner-up (``ranked[1]``) being tested
    instead of the best. Best: cls logit 0 and ctr logit 0 give 0.5 x 0.5 = 0.25 exactly (P3); runner-up: cls
    logit -4 (P4), score sigmoid(-4) / 2 = 0.009; the other levels lower still."""
    g = _gathered([0.0, -4.0, -6.0, -6.0, -6.0])
    best = select_candidate(g, ROWS_COLS, min_score=0.25)
    assert best is not None and best.level == 3 and best.score == 0.25
    assert select_candidate(g, ROWS_COLS, min_score=0.2).level == 3  # the runner-up (0.009) is below 0.2
    assert select_candidate(g, ROWS_COLS, min_score=0.2500001) is None


@pytest.mark.parametrize(
    ("kind", "shape", "expected"),
    [
        ("box", (1, 5), r"gathered\['box'\] must be \[4, 5\], got \(1, 5\)"),
        ("ctr", (2, 5), r"gathered\['ctr'\] must be \[1, 5\], got \(2, 5\)"),
        ("ctrl", (168, 5), r"gathered\['ctrl'\] must be \[169, 5\], got \(168, 5\)"),
        ("cls", (1, 3), r"gathered\['cls'\] must be \[C, 5\], got \(1, 3\)"),  # 2-D, wrong number of levels
        ("box", (4, 5, 1), r"gathered\['box'\] must be \[4, 5\], got \(4, 5, 1\)"),  # 3-D
    ],
)
def test_gathered_outputs_of_the_wrong_shape_are_refused_by_name(kind, shape, expected):
    """Guards the shape check of :func:`all_candidates` (``and`` for ``or``; a kind's row count not checked):
    each tensor of the wrong shape is refused with its name and expected shape (C = number of classes)."""
    g = _gathered([0.0] * 5)
    g[kind] = torch.zeros(shape)
    with pytest.raises(ValueError, match=expected):
        all_candidates(g, ROWS_COLS)


def test_wrong_number_of_cells_is_refused_with_a_message():
    """Guards the messages of the one-(row, col)-per-level checks (``ValueError(None)``)."""
    with pytest.raises(ValueError, match=r"need one \(row, col\) per level \(3, 4, 5, 6, 7\), got 4"):
        all_candidates(_gathered([0.0] * 5), ROWS_COLS[:4])
    dense = {f"{k}_p{level}": torch.zeros(1, 1, 1, 1) for k in ("cls", "box", "ctr", "ctrl") for level in range(3, 8)}
    with pytest.raises(ValueError, match=r"need one \(row, col\) per level \(3, 4, 5, 6, 7\), got 6"):
        full_gather(dense, ROWS_COLS + [(0, 0)])


def test_full_gather_reads_image_0_by_default():
    """Guards ``full_gather``'s default ``image_index``: batch of two images whose outputs are 0 and 1."""
    dense = {
        f"{k}_p{level}": torch.stack([torch.zeros(rows, 2, 2), torch.ones(rows, 2, 2)])
        for k, rows in (("cls", 1), ("box", 4), ("ctr", 1), ("ctrl", 169))
        for level in range(3, 8)
    }
    gathered = full_gather(dense, ROWS_COLS)
    assert all(float(t.abs().sum()) == 0.0 for t in gathered.values())
    assert all(bool((t == 1).all()) for t in full_gather(dense, ROWS_COLS, image_index=1).values())


def test_taps_below_and_right_of_the_image_clamp_to_the_last_cell():
    """Guards the clamp to the last row (``rows - 1``): H x W = 100 x 130 has P3..P7 grids of 13 x 17, 7 x 9,
    4 x 5, 2 x 3, 1 x 2 cells; a tap at y = 500 lands on the last row of each, x = 1000 on the last column."""
    assert align_tap((5, 500), (100, 130)) == [(12, 0), (6, 0), (3, 0), (1, 0), (0, 0)]
    assert align_tap((1000, 99), (100, 130)) == [(12, 16), (6, 8), (3, 4), (1, 2), (0, 1)]


def _x_ramp_params(bias: float) -> torch.Tensor:
    """Dynamic parameters whose head computes ``logit = rel_x + feat_0 + bias`` on every cell:
    layer 1 ``h0 = relu(rel_x + f0)``, ``h1 = relu(-(rel_x + f0))``; layer 2 copies both; layer 3 ``h0 - h1 + bias``
    (rel_x = input channel 8; weights row-major [out, in], layout in ``dynamic_head``)."""
    p = torch.zeros(169)
    p[0 * 10 + 8], p[0 * 10 + 0] = 1.0, 1.0  # layer 1, out 0
    p[1 * 10 + 8], p[1 * 10 + 0] = -1.0, -1.0  # layer 1, out 1
    p[80 + 0 * 8 + 0], p[80 + 1 * 8 + 1] = 1.0, 1.0  # layer 2: identity on channels 0 and 1
    p[144 + 0], p[144 + 1] = 1.0, -1.0  # layer 3
    p[168] = bias
    return p


@pytest.mark.parametrize(("level", "last_col"), [(3, 163), (4, 131)])
def test_mask_head_scales_relative_coordinates_by_the_candidates_level(level, last_col):
    """Guards ``LEVELS[0]`` in the level index of :func:`candidate_mask_probs` (``LEVELS[1]`` scales P3's
    coordinates by P7's size of interest) and the 3-D ``mask_feats`` path.

    Head: ``logit = (x_loc - x_cell) / soi + 0.5 - 1`` with feature channel 0 = 0.5 everywhere and
    ``x_cell = 8 * col + 4``, so the logit is 0 (probability exactly 0.5) on the cell centre
    ``x_cell = x_loc - soi / 2`` and decreases to the right: P3 (soi 64), x_loc = 196: centre 164; P4 (soi 128):
    centre 132. Both upsampling steps are tents around the pixel's position (``p + 0.5``, away from the borders)
    and sigmoid is antisymmetric about that centre, so pixels left of it (p <= 163, resp. p <= 131) get
    probability > 0.5 and the others < 0.5. 256 x 16 image; the mask is the same on every row."""
    feats = torch.zeros(8, 2, 32)
    feats[0] = 0.5
    cand = Candidate(score=1.0, class_id=0, level=level, box=(0, 0, 1, 1), params=_x_ramp_params(-1.0),
                     location_xy=(196.0, 4.0), row_col=(0, 24))
    expected = torch.zeros(16, 256, dtype=torch.bool)
    expected[:, : last_col + 1] = True
    for mask_feats in (feats, feats[None]):  # [8, H_3, W_3] and [1, 8, H_3, W_3]
        probs = candidate_mask_probs(mask_feats, cand, (16, 256))
        assert probs.shape == (16, 256)
        assert torch.equal(probs > 0.5, expected)


def test_mask_head_runs_on_the_mask_features_device():
    """Guards the ``device`` of the tensors :func:`candidate_mask_probs` builds (a GPU run would fail with them
    on the CPU). PyTorch's "meta" device stands in for a GPU here: the candidate's location must follow the
    features there (mixing meta and CPU tensors in one op is refused), and the result is a meta [H, W] map."""
    feats = torch.zeros(1, 8, 2, 32, device="meta")
    cand = Candidate(score=1.0, class_id=0, level=3, box=(0, 0, 1, 1), params=_x_ramp_params(-1.0),
                     location_xy=(196.0, 4.0), row_col=(0, 24))
    probs = candidate_mask_probs(feats, cand, (16, 256))
    assert probs.device.type == "meta" and probs.shape == (16, 256) and probs.dtype == torch.float32
