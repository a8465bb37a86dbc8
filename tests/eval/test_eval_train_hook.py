"""The evaluation hook the trainer calls with ``--eval-every``: real model, tiny generated COCO set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from tests.eval.test_eval_end_to_end import H, W, write_dataset
from tracenet.eval import make_train_eval_hook
from tracenet.eval.taps import simulate_taps
from tracenet.model import build_model, preset


def _whole_image_model():
    """A random lite0 whose controller predicts dynamic parameters all 0 but the last layer's bias (+10): every
    candidate's mask logit is 10 everywhere, so every tap's mask is the whole image."""
    cfg = preset("lite0", fpn_channels=16, mask_branch_channels=8, pretrained_backbone=False)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with torch.no_grad():
        model.head.controller.weight.zero_()
        model.head.controller.bias.zero_()
        model.head.controller.bias[168] = 10.0
    return model, cfg


def test_train_eval_hook_scores_a_model_and_restores_its_mode(tmp_path) -> None:
    """The hook's numbers by hand: with whole-image masks every tap of an instance has IoU ``|gt| / (H W)``, so
    mIoU-T (eq. 6) is the instances' areas summed over their band taps over ``n_taps H W`` and the first-click IoU
    the mean of ``|gt| / (H W)``, over the first 2 annotated images (4 boxes; areas from pycocotools' masks, tap
    counts from the tap simulation with seed 0); mTA is skipped (stride 0) and reads 0. The model is handed
    back in training mode."""
    ann = write_dataset(tmp_path)
    model, cfg = _whole_image_model()
    metrics = make_train_eval_hook(ann, tmp_path / "images", max_images=2)(model, cfg, 10)
    assert model.training
    coco, api = json.loads(ann.read_text()), COCO(str(ann))
    anns = [a for a in coco["annotations"] if a["image_id"] in (1, 2) and not a["iscrowd"]]  # crowds: not scored
    assert len(anns) == 4
    areas = [int(api.annToMask(a).sum()) for a in anns]
    n_taps = [len(simulate_taps(api.annToMask(a).astype(bool), seed=0, instance_id=a["id"]).band_taps.flat())
              for a in anns]
    expected_miou = sum(n * a for n, a in zip(n_taps, areas, strict=True)) / (sum(n_taps) * H * W)
    assert metrics == {"miou_t": pytest.approx(expected_miou, rel=1e-12), "mta": 0.0,
                       "first_click_iou": pytest.approx(np.mean(areas) / (H * W), rel=1e-12)}
