"""The recipe ablation scores an arm on the network's own mask with the paper's rule: exactly what the evaluator
gives for that model with ``refine="none"`` (it once went through ``tracenet.load``'s default GrabCut refinement,
which made scoring ~5x slower and measured the refiner along with the recipe)."""

from __future__ import annotations

import shutil

import torch

from tests.data.synth import make_shapes_dataset
from tests.scripts import load_script
from tests.test_predictor import _calibrate
from tracenet.model import build_model, preset, save_checkpoint


def test_arm_score_is_the_unrefined_paper_rule_evaluation(tmp_path) -> None:
    import tracenet
    from tracenet.eval.evaluate import EvalConfig, evaluate_coco
    from tracenet.eval.methods import TraceNetMethod

    ann, images = make_shapes_dataset(tmp_path / "shapes", n_images=2, size=64, crowd=False)
    val = tmp_path / "root" / "coco-mini"
    val.mkdir(parents=True)
    shutil.copy(ann, val / "val.json")
    shutil.copytree(images, val / "images")
    cfg = preset("lite0", head_convs=1, fpn_channels=16, mask_branch_channels=8, pretrained_backbone=False)
    torch.manual_seed(3)
    model = _calibrate(build_model(cfg), seed=3, controller_bias=0.0)
    with torch.no_grad():  # confident everywhere, so every tap has candidates above min_score and a mask
        model.head.cls_logits.bias.fill_(4.0)
        model.head.ctrness.bias.fill_(4.0)
    model_file = tmp_path / "arm.safetensors"
    save_checkpoint(model_file, model, cfg)

    got = load_script("benchmarks/recipe_ablation.py").score(model_file, 64, tmp_path / "root", 2)
    seg = tracenet.load(model_file, max_side=64, selection="paper", refine="none")
    want = evaluate_coco(TraceNetMethod(segmenter=seg, use_rft=False), val / "val.json", val / "images",
                         EvalConfig(max_images=2, progress=False, check_group_key=0, n_showcase=0)).metrics
    assert got == {k: want[k] for k in ("miou_t", "mta", "first_click_iou", "n_instances", "n_images")}
    assert got["n_images"] == 2 and got["n_instances"] >= 2
