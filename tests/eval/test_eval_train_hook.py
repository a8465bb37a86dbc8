"""The evaluation hook the trainer calls with ``--eval-every``: real model, tiny generated COCO set."""

from __future__ import annotations

import math

import torch

from tests.eval.test_eval_end_to_end import write_dataset
from tracenet.eval import make_train_eval_hook
from tracenet.model import build_model, preset


def test_train_eval_hook_scores_a_model_and_restores_its_mode(tmp_path) -> None:
    ann = write_dataset(tmp_path)
    cfg = preset("lite0", fpn_channels=16, mask_branch_channels=8, pretrained_backbone=False)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    hook = make_train_eval_hook(ann, tmp_path / "images", max_images=2)
    metrics = hook(model, cfg, 10)
    assert set(metrics) == {"miou_t", "mta", "first_click_iou"}
    assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in metrics.values())
    assert model.training  # handed back in training mode
