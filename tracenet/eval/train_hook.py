"""Evaluation during training: ``make_train_eval_hook(val_json, images_dir)`` for ``tracenet train --eval-every``.

The hook wraps the model being trained in a :class:`~tracenet.predictor.TapSegmenter` and scores it with the
paper's protocol on a fixed subset of the validation set. It uses FullNet (``use_rft=False``): the same masks as
TraceNet (tested), and faster when a whole grid of taps is evaluated per image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracenet.eval.evaluate import EvalConfig, evaluate_coco
from tracenet.eval.methods import TraceNetMethod


def make_train_eval_hook(ann_file: str | Path, images_dir: str | Path, *, max_images: int = 12,
                         mta_stride: int = 0) -> Callable[[Any, Any, int], dict[str, float]]:
    """A hook ``(model, cfg, step) -> {"miou_t", "mta", "first_click_iou"}`` (mTA skipped unless ``mta_stride``)."""
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    if not ann_file.is_file():
        raise FileNotFoundError(f"validation annotations not found: {ann_file}")

    def hook(model: Any, cfg: Any, step: int) -> dict[str, float]:
        from tracenet.predictor import TapSegmenter

        was_training = model.training
        seg = TapSegmenter(model.eval(), cfg, min_score=0.0)
        try:
            run = evaluate_coco(TraceNetMethod(segmenter=seg, use_rft=False), ann_file, images_dir,
                                EvalConfig(max_images=max_images, mta_stride=mta_stride, progress=False,
                                           n_showcase=0, check_group_key=0))
        finally:
            model.train(was_training)
        m = run.metrics
        return {"miou_t": float(m["miou_t"]), "mta": float(m["mta"] or 0.0),
                "first_click_iou": float(m["first_click_iou"])}

    return hook
