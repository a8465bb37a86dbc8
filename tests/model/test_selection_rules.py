"""The paper's candidate rule on hand-made head outputs: NMS ranks by class probability x centerness."""

from __future__ import annotations

import math

import pytest
import torch

from tracenet.model.postprocess import all_candidates, rank_candidates, select_candidate


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# one class, the tap aligned to cell (0, 0) on every level: locations (x, y) = (4, 4), (8, 8), (16, 16), (32, 32),
# (64, 64). Boxes (x0, y0, x1, y1) chosen by hand:
#   P3 (0, 0, 100, 100)  cls 0.90  ctr 0.10  score 0.090
#   P4 (0, 0, 100, 100)  cls 0.60  ctr 0.90  score 0.540  (same box as P3: IoU 1)
#   P5 (10, 10, 20, 20)  cls 0.30  ctr 0.50  score 0.150  (IoU with the big box 0.01)
#   P6 (30, 30, 34, 34)  cls 0.40  ctr 0.50  score 0.200
#   P7 (60, 60, 70, 70)  cls 0.80  ctr 0.05  score 0.040
CLS = [0.90, 0.60, 0.30, 0.40, 0.80]
CTR = [0.10, 0.90, 0.50, 0.50, 0.05]
BOXES = [(0, 0, 100, 100), (0, 0, 100, 100), (10, 10, 20, 20), (30, 30, 34, 34), (60, 60, 70, 70)]
LOCS = [4, 8, 16, 32, 64]
ROWS_COLS = [(0, 0)] * 5


def _gathered() -> dict[str, torch.Tensor]:
    ltrb = [[loc - x0, loc - y0, x1 - loc, y1 - loc] for loc, (x0, y0, x1, y1) in zip(LOCS, BOXES)]
    return {
        "cls": torch.tensor([[_logit(p) for p in CLS]]),
        "ctr": torch.tensor([[_logit(p) for p in CTR]]),
        "box": torch.tensor(ltrb, dtype=torch.float32).t().contiguous(),
        "ctrl": torch.zeros(169, 5),
    }


def test_nms_ranks_by_class_times_centerness():
    """Guards "NMS ranked by class probability alone": by cls x ctr P4 (0.54) beats P3 (0.09) and suppresses it
    (same box); ranked by cls alone P3 (0.90) would win and suppress P4. Survivors by hand, best first:
    P4 0.54, P6 0.20, P5 0.15, P7 0.04."""
    ranked = rank_candidates(_gathered(), ROWS_COLS)
    assert [c.level for c in ranked] == [4, 6, 5, 7]
    assert [c.score for c in ranked] == pytest.approx([0.54, 0.20, 0.15, 0.04], abs=1e-6)
    assert [c.box for c in ranked] == [pytest.approx(BOXES[lvl - 3]) for lvl in (4, 6, 5, 7)]
    top = select_candidate(_gathered(), ROWS_COLS)
    assert top.level == 4 and top.cls_prob == pytest.approx(0.6) and top.ctr_prob == pytest.approx(0.9)


def test_all_candidates_scores_and_boxes_by_hand():
    """Every candidate's score is cls x ctr and its box the location minus / plus (l, t, r, b)."""
    cands = all_candidates(_gathered(), ROWS_COLS)
    assert [c.level for c in cands] == [3, 4, 5, 6, 7]
    assert [c.score for c in cands] == pytest.approx([p * q for p, q in zip(CLS, CTR)], abs=1e-6)
    assert [c.location_xy for c in cands] == [(loc, loc) for loc in LOCS]
    for cand, box in zip(cands, BOXES):
        assert cand.box == pytest.approx(box)


def test_nms_threshold_keeps_boxes_overlapping_less_than_0_6():
    """P3's box shrunk to (0, 0, 100, 55) has IoU 0.55 with P4's (0, 0, 100, 100): below NMS 0.6, it survives
    (ranked after P4 by score); at (0, 0, 100, 65), IoU 0.65, it is suppressed."""
    g = _gathered()
    g["box"][3, 0] = 55 - 4  # bottom distance from y = 4
    assert [c.level for c in rank_candidates(g, ROWS_COLS)] == [4, 6, 5, 3, 7]
    g["box"][3, 0] = 65 - 4
    assert [c.level for c in rank_candidates(g, ROWS_COLS)] == [4, 6, 5, 7]
