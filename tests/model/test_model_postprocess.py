"""Tap alignment, candidate selection (scores, box decoding, NMS), gathering from the full output."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tracenet.model.postprocess as post
from tracenet.model import (
    PRESETS,
    align_tap,
    build_model,
    candidate_mask_probs,
    full_gather,
    normalize,
    select_candidate,
)


def test_align_tap_hand_computed_interior():
    # H = 100, W = 130: grids P3 13x17, P4 7x9, P5 4x5, P6 2x3, P7 1x2.
    assert align_tap((50, 40), (100, 130)) == [(5, 6), (2, 3), (1, 1), (0, 0), (0, 0)]
    assert align_tap((15.9, 8.0), (100, 130))[0] == (1, 1)  # floor, cell containing the pixel


def test_align_tap_corners_and_odd_sizes():
    hw = (100, 130)
    assert align_tap((0, 0), hw) == [(0, 0)] * 5
    # Bottom-right pixel: P3 (99 // 8, 129 // 8) = (12, 16); P6 clamps the column 129 // 64 = 2 -> W_6 - 1 = 2;
    # P7 (0, 129 // 128 = 1).
    assert align_tap((129, 99), hw) == [(12, 16), (6, 8), (3, 4), (1, 2), (0, 1)]
    # 97 x 131: the last P3 row (12) holds only pixel row 96.
    assert align_tap((130, 96), (97, 131)) == [(12, 16), (6, 8), (3, 4), (1, 2), (0, 1)]
    # Taps outside the image are clamped into it.
    assert align_tap((500, -3), hw) == [(0, 16), (0, 8), (0, 4), (0, 2), (0, 1)]
    with pytest.raises(ValueError, match="finite"):
        align_tap((math.nan, 3), hw)


@settings(max_examples=50, deadline=None)
@given(h=st.integers(1, 400), w=st.integers(1, 400), data=st.data())
def test_all_taps_in_one_p3_cell_align_identically(h, w, data):
    x = data.draw(st.integers(0, w - 1))
    y = data.draw(st.integers(0, h - 1))
    x0, y0 = (x // 8) * 8, (y // 8) * 8
    assert align_tap((x, y), (h, w)) == align_tap((x0, y0), (h, w))
    for (row, col), s in zip(align_tap((x, y), (h, w)), (8, 16, 32, 64, 128), strict=True):
        assert row == min(y // s, -(-h // s) - 1) and col == min(x // s, -(-w // s) - 1)


def _gathered(num_classes=2):
    cls = torch.full((num_classes, 5), -6.0)
    ctr = torch.zeros(1, 5)
    box = torch.tensor([[10.0, 20, 30, 40, 50]] * 4)  # l = t = r = b per level
    ctrl = torch.arange(169 * 5, dtype=torch.float32).reshape(169, 5)
    return {"cls": cls, "box": box, "ctr": ctr, "ctrl": ctrl}


def test_select_candidate_known_winner():
    g = _gathered()
    g["cls"][1, 2] = 3.0  # class 1 on P5
    g["cls"][0, 0] = 2.0  # runner-up: class 0 on P3
    g["ctr"][0, 2] = 1.0
    rows_cols = [(5, 6), (2, 3), (1, 1), (0, 0), (0, 0)]
    cand = select_candidate(g, rows_cols)
    assert cand.class_id == 1 and cand.level == 5
    assert cand.score == pytest.approx(
        torch.sigmoid(torch.tensor(3.0)).item() * torch.sigmoid(torch.tensor(1.0)).item()
    )
    assert cand.location_xy == (1 * 32 + 16, 1 * 32 + 16)
    assert cand.row_col == (1, 1)
    assert cand.box == (48 - 30, 48 - 30, 48 + 30, 48 + 30)
    assert torch.equal(cand.params, g["ctrl"][:, 2])


def test_select_candidate_runs_nms_over_5xC_boxes(monkeypatch):
    calls = []
    real_nms = post.nms

    def spy(boxes, scores, iou):
        calls.append((boxes.shape, scores.shape, iou))
        return real_nms(boxes, scores, iou)

    monkeypatch.setattr(post, "nms", spy)
    select_candidate(_gathered(num_classes=3), [(0, 0)] * 5)
    assert calls == [(torch.Size([15, 4]), torch.Size([15]), 0.6)]


def test_select_candidate_min_score_and_bad_input():
    assert select_candidate(_gathered(), [(0, 0)] * 5, min_score=0.5) is None
    bad = _gathered()
    bad["ctrl"] = bad["ctrl"][:168]
    with pytest.raises(ValueError, match="169"):
        select_candidate(bad, [(0, 0)] * 5)
    with pytest.raises(ValueError, match="lack 'box'"):
        select_candidate({k: v for k, v in _gathered().items() if k != "box"}, [(0, 0)] * 5)


def test_full_gather_and_mask_on_a_real_forward():
    torch.manual_seed(0)
    small = {"fpn_channels": 16, "mask_branch_channels": 16, "mask_branch_convs": 1, "head_convs": 1}
    model = build_model(PRESETS["lite0"].replace(pretrained_backbone=False, num_classes=2, **small)).eval()
    h, w = 70, 90
    images = torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8)
    with torch.no_grad():
        out = model(normalize(images))
    rows_cols = align_tap((60, 33), (h, w))
    gathered = full_gather(out, rows_cols, image_index=1)
    assert gathered["cls"].shape == (2, 5) and gathered["ctrl"].shape == (169, 5)
    for j, (level, (r, c)) in enumerate(zip(range(3, 8), rows_cols, strict=True)):
        assert torch.equal(gathered["box"][:, j], out[f"box_p{level}"][1, :, r, c])
        assert torch.equal(gathered["ctrl"][:, j], out[f"ctrl_p{level}"][1, :, r, c])
    cand = select_candidate(gathered, rows_cols)
    assert cand is not None and 3 <= cand.level <= 7
    probs = candidate_mask_probs(out["mask_feats"][1:2], cand, (h, w))
    assert probs.shape == (h, w) and 0 <= float(probs.min()) <= float(probs.max()) <= 1
