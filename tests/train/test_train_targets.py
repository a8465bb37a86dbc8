"""FCOS assignment on hand-made cases (positions (col*s + s//2, row*s + s//2), docs/ARCHITECTURE.md)."""

from __future__ import annotations

import math

import pytest
import torch

from tracenet.model.geometry import pyramid_hw
from tracenet.train.targets import BACKGROUND, IGNORE, TargetConfig, assign_targets, centerness


def _assign(boxes, hw=(256, 256), image_hw=None, masks=None, ignore=None, **cfg):
    t = {"boxes": torch.tensor(boxes, dtype=torch.float32), "classes": torch.arange(len(boxes))}
    if masks is not None:
        t["masks"] = masks
    if ignore is not None:
        t["ignore"] = ignore
    sizes = torch.tensor([image_hw or hw])
    return assign_targets(pyramid_hw(hw), sizes, [t], TargetConfig(**cfg))


def _positives(tg):
    pos = tg.labels[0] >= 0
    return {(tuple(tg.locations[i].int().tolist()), int(tg.level[i])) for i in pos.nonzero()[:, 0].tolist()}


def test_small_box_on_p3_only_with_centre_sampling():
    tg = _assign([[80, 80, 120, 120]])
    # radius 1.5 * 8 = 12 around (100, 100): P3 locations 92, 100, 108 in x and y; nothing on other levels
    expected = {((x, y), 0) for x in (92, 100, 108) for y in (92, 100, 108)}
    assert _positives(tg) == expected
    i = [j for j in range(len(tg.level)) if tg.locations[j].tolist() == [92.0, 100.0] and tg.level[j] == 0][0]
    assert tg.reg[0, i].tolist() == [12.0, 20.0, 28.0, 20.0]
    assert tg.ctr[0, i].item() == pytest.approx(math.sqrt(12 / 28 * 20 / 20), rel=1e-6)
    assert tg.gt_index[0, i].item() == 0


def test_without_centre_sampling_the_whole_box_is_positive():
    tg = _assign([[80, 80, 120, 120]], center_sampling_radius=0)
    assert _positives(tg) == {((x, y), 0) for x in range(84, 120, 8) for y in range(84, 120, 8)}


def test_large_box_lands_on_p5_only():
    tg = _assign([[100, 100, 400, 400]], hw=(512, 512))
    # P5 (stride 32, radius 48 around 250): 208, 240, 272; max distance in [128, 256]
    assert _positives(tg) == {((x, y), 2) for x in (208, 240, 272) for y in (208, 240, 272)}


def test_smallest_area_wins():
    big, small = [60, 60, 140, 140], [80, 80, 120, 120]
    for boxes, small_idx in (([big, small], 1), ([small, big], 0)):
        tg = _assign(boxes)
        i = [
            j for j in range(len(tg.level)) if tg.locations[j].tolist() == [100.0, 100.0] and tg.level[j] == 0
        ][0]
        assert tg.gt_index[0, i].item() == small_idx and tg.labels[0, i].item() == small_idx


def test_mask_centre_of_mass_moves_the_centre_region():
    masks = torch.zeros((1, 256, 256), dtype=torch.bool)
    masks[0, 80:120, 80:100] = True  # left half of the box: centre of mass x = 90
    with_mask = _positives(_assign([[80, 80, 120, 120]], masks=masks))
    box_only = _positives(_assign([[80, 80, 120, 120]], masks=masks, center_from_masks=False))
    assert {x for (x, _), _ in with_mask} == {84, 92, 100}
    assert {x for (x, _), _ in box_only} == {92, 100, 108}


def test_padding_and_crowd_are_ignored():
    ignore = torch.zeros((256, 256), dtype=torch.bool)
    ignore[200:, 200:] = True
    tg = _assign([[80, 80, 120, 120]], image_hw=(256, 160), ignore=ignore)
    xs, ys = tg.locations[:, 0], tg.locations[:, 1]
    lab = tg.labels[0]
    assert (lab[xs >= 160] == IGNORE).all()
    assert (lab[(xs < 160) & (lab < 0)] == BACKGROUND).all()
    tg = _assign([[80, 80, 120, 120]], ignore=ignore)
    p3 = tg.level == 0
    crowd = p3 & (xs >= 200) & (ys >= 200)
    assert crowd.sum() == 7 * 7 and (tg.labels[0][crowd] == IGNORE).all()
    assert (tg.labels[0][p3 & (xs < 200) & (tg.labels[0] < 0)] == BACKGROUND).all()


def test_no_instances_means_all_background():
    tg = _assign(torch.zeros((0, 4)).tolist())
    assert (tg.labels == BACKGROUND).all() and (tg.gt_index == -1).all()


def test_centerness_formula():
    ltrb = torch.tensor([[10.0, 10.0, 10.0, 10.0], [5.0, 2.0, 20.0, 8.0]])
    assert centerness(ltrb).tolist() == pytest.approx([1.0, math.sqrt(5 / 20 * 2 / 8)], rel=1e-6)
