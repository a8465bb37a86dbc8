"""Candidate selection of a real model (the previous bundled one, :data:`tests.models.PREVIOUS_DEFAULT`, where the
taps below were chosen), through ``tracenet.load`` / ``TapSegmenter.predict`` only.

The taps are on ``tracenet/examples/astronaut.png`` (512x512, run at 384 px: scale 0.75), chosen where each rule
changes the answer. Expected values come from the network's raw outputs computed here (sigmoids, argmax, the
tap's cell by hand) or from the same photo pre-resized, never from the predictor's own selection.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import tracenet
from tests.models import PREVIOUS_DEFAULT
from tracenet.io import fit_long_side, load_image
from tracenet.model import normalize

PHOTO = Path(tracenet.__file__).parent / "examples" / "astronaut.png"
SCALE = 384 / 512


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(PHOTO)


@pytest.fixture(scope="module")
def paper(photo):
    seg = tracenet.load(str(PREVIOUS_DEFAULT), selection="paper", require_tap_inside=True, refine="none",
                        zoom=False)
    seg.set_image(photo)
    return seg


@pytest.fixture(scope="module")
def paper_no_fallback(photo):
    seg = tracenet.load(str(PREVIOUS_DEFAULT), selection="paper", require_tap_inside=False, refine="none",
                        zoom=False)
    seg.set_image(photo)
    return seg


def _own_cell(tap: tuple[int, int], drow: int = 0, dcol: int = 0) -> tuple[slice, slice]:
    """Photo pixels of the tap's 8x8 P3 cell on the 384-px network input (shifted by ``drow, dcol`` cells)."""
    row, col = int(tap[1] * SCALE) // 8 + drow, int(tap[0] * SCALE) // 8 + dcol
    return (slice(math.floor(row * 8 / SCALE), math.ceil((row + 1) * 8 / SCALE)),
            slice(math.floor(col * 8 / SCALE), math.ceil((col + 1) * 8 / SCALE)))


def test_paper_rule_takes_the_best_class_times_centerness(paper_no_fallback, photo):
    """Guards "NMS ranked by class probability instead of class x centerness" end to end: at this tap the five
    levels' best ``sigmoid(cls) * sigmoid(ctr)`` is on one level and the best ``sigmoid(cls)`` on another. The
    reference runs the network on the photo resized here and reads the five aligned cells by hand."""
    tap = (412, 244)
    small, scale = fit_long_side(photo, 384)
    assert scale == SCALE
    x = normalize(torch.from_numpy(np.array(small)).permute(2, 0, 1)[None])
    with torch.no_grad():
        out = paper_no_fallback.model(x)
    score, cls = {}, {}
    for level in range(3, 8):
        s = 2**level
        rows, cols = out[f"cls_p{level}"].shape[-2:]
        r, c = min(int(tap[1] * SCALE) // s, rows - 1), min(int(tap[0] * SCALE) // s, cols - 1)
        cls[level] = float(torch.sigmoid(out[f"cls_p{level}"][0, 0, r, c]))
        score[level] = cls[level] * float(torch.sigmoid(out[f"ctr_p{level}"][0, 0, r, c]))
    best = max(score, key=score.get)
    assert max(cls, key=cls.get) != best, "this tap no longer tells the two rules apart"
    res = paper_no_fallback.predict(tap, use_rft=False)
    assert res.level == best and res.score == pytest.approx(score[best], rel=1e-5)
    traced = paper_no_fallback.predict(tap)
    assert (traced.level, traced.score) == (res.level, pytest.approx(res.score, rel=1e-6))


def test_require_tap_inside_falls_back_to_a_candidate_whose_mask_reaches_the_tap(paper, paper_no_fallback):
    """Guards "the ``require_tap_inside`` fallback disabled": here the top candidate's mask misses the tap's cell,
    so with the check on the answer is a lower-scoring candidate whose mask covers that cell."""
    tap = (100, 124)
    cell = _own_cell(tap)
    top = paper_no_fallback.predict(tap, use_rft=False)
    assert top.found and not top.mask[cell].any()
    res = paper.predict(tap, use_rft=False)
    assert res.found and res.mask[cell].any()
    assert res.score < top.score


def test_no_covering_candidate_is_nothing_here(paper, paper_no_fallback):
    """With the check on and no candidate's mask reaching the tap, the answer is "nothing here" (not a mask
    elsewhere); without the check the top candidate's mask (away from the tap) comes back."""
    tap = (292, 148)
    res = paper.predict(tap, use_rft=False)
    assert not res.found and not res.mask.any() and "covers the tap" in res.reason
    top = paper_no_fallback.predict(tap, use_rft=False)
    assert top.found and top.mask.any() and not top.mask[_own_cell(tap)].any()


@pytest.mark.parametrize("tap,falls_back", [((76, 100), True), ((364, 100), True), ((148, 52), False),
                                             ((364, 76), False)])
def test_covering_is_checked_on_the_taps_own_cell(paper, paper_no_fallback, tap, falls_back):
    """Guards "the covering check on the neighbouring P3 cell": at these taps the top candidate's mask misses the
    tap's own cell but covers the cell below it (and at some the cell to its right), so a check one cell off
    would accept it. The right answer is a lower candidate covering the own cell, or "nothing here"."""
    top = paper_no_fallback.predict(tap, use_rft=False)
    assert not top.mask[_own_cell(tap)].any() and top.mask[_own_cell(tap, drow=1)].any()
    res = paper.predict(tap, use_rft=False)
    assert res.found == falls_back
    if falls_back:
        assert res.mask[_own_cell(tap)].any() and res.score < top.score
    else:
        assert not res.mask.any()


def test_boxes_are_in_the_photos_pixels(paper, photo):
    """Guards "boxes not divided by the resize scale": the 512-px photo runs at 384 px; the same photo resized to
    384 px beforehand runs unscaled and gives the same candidate, so its box times 512 / 384 is the box here."""
    small, _ = fit_long_side(photo, 384)
    unscaled = tracenet.load(str(PREVIOUS_DEFAULT), selection="paper", require_tap_inside=True, refine="none",
                        zoom=False)
    unscaled.set_image(small)
    for tap in [(256, 200), (100, 400), (412, 244)]:
        big = paper.predict(tap, use_rft=False)
        ref = unscaled.predict((tap[0] * SCALE, tap[1] * SCALE), use_rft=False)
        assert (big.found, big.level) == (ref.found, ref.level) and big.found
        expected = [min(max(v / SCALE, 0.0), 512.0) for v in ref.box]
        assert big.box == pytest.approx(expected, abs=1e-3)
        assert big.box[2] > big.box[0] and big.box[3] > big.box[1]
