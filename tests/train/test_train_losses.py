"""Each loss against a hand-computed value; the combined loss on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from tracenet.model import build_model
from tracenet.train import train_preset
from tracenet.train.losses import centerness_loss, dice_loss, focal_loss, giou_loss
from tracenet.train.train_model import TraceNetTrainModel


def test_dice_of_two_known_masks():
    p = torch.zeros((1, 4, 4))
    p[0, :2, :2] = 1.0  # 4 pixels
    t = torch.zeros((1, 4, 4))
    t[0, 0, :2] = 1.0  # 2 of them
    # 1 - 2 * 2 / (4 + 2)
    assert dice_loss(p, t, eps=0.0).item() == pytest.approx(1 / 3)
    assert dice_loss(t, t, eps=0.0).item() == pytest.approx(0.0)
    w = torch.ones((4, 4))
    w[1] = 0  # drop the row where p and t disagree -> perfect
    assert dice_loss(p, t, w, eps=0.0).item() == pytest.approx(0.0)


def test_focal_is_normalised_by_num_foreground():
    logits = torch.zeros((4, 1))
    targets = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    # p = 0.5: positive 0.25 * 0.5^2 * ln2, each negative 0.75 * 0.5^2 * ln2
    total = (0.25 * 0.25 + 3 * 0.75 * 0.25) * math.log(2)
    assert focal_loss(logits, targets, 1).item() == pytest.approx(total)
    assert focal_loss(logits, targets, 2).item() == pytest.approx(total / 2)
    assert focal_loss(logits, targets, 0).item() == pytest.approx(total)  # max(1, num_fg)


def test_giou_of_known_boxes_weighted_by_centerness():
    loc = torch.zeros((2, 2))
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 0.0, 1.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 1.0], [0.0, 1.0, 2.0, 1.0]])
    # box 0: (-1,-1,1,1) vs (-1,-1,3,1): IoU 4/8, hull = union -> GIoU 0.5, loss 0.5
    # box 1: (-2,-1,0,1) vs (0,-1,2,1): touching, IoU 0, hull 8 = union -> loss 1
    w = torch.tensor([0.5, 1.0])
    assert giou_loss(pred, target, loc, w, 1.5).item() == pytest.approx((0.5 * 0.5 + 1.0) / 1.5)
    apart = giou_loss(
        torch.tensor([[2.0, 1.0, -1.0, 1.0]]), torch.tensor([[-1.0, 1.0, 2.0, 1.0]]), loc[:1], w[:1], 1.0
    )
    # (-2,-1,-1,1) vs (1,-1,2,1): IoU 0, union 4, hull (-2,-1,2,1) = 8 -> GIoU -0.5, loss 1.5 (times weight 0.5)
    assert apart.item() == pytest.approx(0.75)


def test_centerness_bce():
    assert centerness_loss(torch.zeros(3), torch.full((3,), 0.5), 3).item() == pytest.approx(math.log(2))


def _tiny_model():
    torch.manual_seed(0)
    return TraceNetTrainModel(build_model(train_preset("smoke").model_config(1)))


def test_combined_losses_and_gradients_reach_every_head():
    model = _tiny_model()
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    masks = torch.zeros((1, 64, 64), dtype=torch.bool)
    masks[0, 10:40, 20:44] = True
    targets = [
        {
            "boxes": torch.tensor([[20.0, 10.0, 44.0, 40.0]]),
            "classes": torch.tensor([0]),
            "masks": masks,
            "ignore": torch.zeros((64, 64), dtype=torch.bool),
        },
        {
            "boxes": torch.zeros((0, 4)),
            "classes": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros((0, 64, 64), dtype=torch.bool),
            "ignore": torch.zeros((64, 64), dtype=torch.bool),
        },
    ]
    losses = model(images, torch.tensor([[64, 64], [64, 64]]), targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr", "loss_mask"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    head = model.dense.head
    for mod in (
        head.cls_logits,
        head.bbox_pred,
        head.ctrness,
        head.controller,
        model.dense.mask_branch.out_conv,
    ):
        assert mod.weight.grad is not None and mod.weight.grad.abs().sum() > 0


def test_batch_without_instances_keeps_every_parameter_in_the_graph():
    model = _tiny_model()
    empty = {
        "boxes": torch.zeros((0, 4)),
        "classes": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros((0, 64, 64), dtype=torch.bool),
        "ignore": torch.zeros((64, 64), dtype=torch.bool),
    }
    sizes = torch.tensor([[64, 64], [64, 64]])
    losses = model(torch.zeros((2, 3, 64, 64), dtype=torch.uint8), sizes, [empty, empty])
    assert (
        losses["loss_mask"].item() == 0 and losses["loss_box"].item() == 0 and losses["loss_cls"].item() > 0
    )
    sum(losses.values()).backward()
    # DDP without find_unused_parameters needs a gradient (possibly zero) for every parameter
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_mask_targets_are_aligned_with_the_stride_8_grid(monkeypatch):
    """A dynamic head that is exactly right on the stride-8 grid gives ~0 dice; a 4 px shift does not."""
    import tracenet.train.train_model as tm

    def perfect(mask_feats, params, image_index, locations_xy, levels):
        cells = torch.full((params.shape[0], 8, 8), -20.0)
        cells[:, 2:6, 2:4] = 20.0  # rows 16..48, cols 16..32 in pixels
        return cells

    monkeypatch.setattr(tm, "dynamic_mask_logits", perfect)
    model = _tiny_model()
    out = model.dense(torch.zeros((2, 3, 64, 64)))
    losses = []
    for dy in (0, 4):
        masks = torch.zeros((1, 64, 64), dtype=torch.bool)
        masks[0, 16 + dy : 48 + dy, 16:32] = True
        t = {
            "boxes": torch.tensor([[16.0, 16.0 + dy, 32.0, 48.0 + dy]]),
            "classes": torch.tensor([0]),
            "masks": masks,
            "ignore": torch.zeros((64, 64), dtype=torch.bool),
        }
        losses.append(tm.compute_losses(out, torch.tensor([[64, 64]] * 2), [t, t])["loss_mask"].item())
    assert losses[0] < 1e-3 and losses[1] > 0.05
