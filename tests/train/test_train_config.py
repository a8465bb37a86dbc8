"""Presets hold the paper's numbers; the schedule and the optimizer groups do what the config says."""

from __future__ import annotations

import pytest
import torch

from tracenet.model import build_model
from tracenet.train import TRAIN_PRESETS, train_preset
from tracenet.train.freeze import freeze_early_backbone
from tracenet.train.schedule import build_optimizer, build_scheduler


def test_paper_preset_matches_section_3_2():
    p = TRAIN_PRESETS["paper"]
    assert (p.lr, p.momentum, p.weight_decay, p.batch_size, p.max_iters) == (0.01, 0.9, 1e-4, 16, 90_000)
    assert tuple(p.steps) == (60_000, 80_000) and p.gamma == 0.1
    assert (p.warmup_iters, p.warmup_factor) == (1000, 0.001)
    a = p.augment
    assert (a.resize, tuple(a.min_size), a.max_size, a.hflip_prob) == ("shortest_edge", (640, 800), 1333, 0.5)
    assert (p.losses.focal_alpha, p.losses.focal_gamma) == (0.25, 2.0)
    assert p.losses.mask_weight == p.losses.box_weight == 1.0
    assert p.model == "r50" and not p.class_agnostic
    cpu = TRAIN_PRESETS["cpu"]
    assert cpu.model == "lite0" and cpu.class_agnostic


def test_presets_are_not_shared():
    a = train_preset("cpu")
    a.augment.lsj_size = 1
    assert TRAIN_PRESETS["cpu"].augment.lsj_size != 1
    with pytest.raises(ValueError, match="unknown training preset"):
        train_preset("nope")


def test_warmup_multistep_schedule():
    cfg = train_preset("paper")
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(1001):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[500] == pytest.approx(0.01 * (0.001 * 0.5 + 0.5))
    assert lrs[1000] == pytest.approx(0.01)
    fn = sched.lr_lambdas[0]
    assert [fn(i) for i in (59_999, 60_000, 79_999, 80_000)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    for group in opt.param_groups:  # starting mid-way (resume with a changed schedule)
        group["initial_lr"] = cfg.lr
    assert build_scheduler(opt, cfg, last_step=60_000).get_last_lr()[0] == pytest.approx(0.001)


def test_no_weight_decay_on_norm_layers_and_early_backbone_frozen():
    cfg = train_preset("smoke")
    model = build_model(cfg.model_config(1))
    n = freeze_early_backbone(model, 4)
    assert n > 0 and not model.backbone._conv_stem.weight.requires_grad
    assert model.head.cls_logits.weight.requires_grad
    opt = build_optimizer(model, cfg)
    decay, no_decay = opt.param_groups
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == cfg.weight_decay
    bn = model.head.cls_tower[0][1]
    assert any(p is bn.weight for p in no_decay["params"])
    assert not any(p is model.backbone._conv_stem.weight for g in opt.param_groups for p in g["params"])
