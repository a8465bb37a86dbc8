"""Export a trained model as a plain tracenet checkpoint (what ``tracenet.load(path)`` reads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tracenet.model.checkpoint import load_checkpoint, save_checkpoint
from tracenet.model.config import TraceNetConfig

__all__ = ["export_model", "inference_max_side"]


def export_model(
    model: nn.Module | str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    cfg: TraceNetConfig | None = None,
    fp16: bool = False,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``out_path`` with :func:`tracenet.model.save_checkpoint` (atomically).

    Args:
        model: a :class:`tracenet.model.TraceNetDense` (then ``cfg`` is required), or a training checkpoint
            folder / run folder (its newest checkpoint) / ``.safetensors`` file.
        out_path: destination ``.safetensors``.
        fp16: store floating-point tensors as float16 (half the size; loading gives float32 again).
        meta: extra metadata (merged over the source checkpoint's). When it has no ``max_side`` and the source
            is a run folder whose ``train_config.json`` says the model trained on LSJ crops, ``max_side`` is set
            to the LSJ canvas (see :func:`inference_max_side`); ``tracenet.load`` then resizes photos to it.

    Returns:
        ``out_path``.
    """
    extra: dict[str, Any] = {}
    if not isinstance(model, nn.Module):
        from tracenet.train.checkpointing import MODEL_FILE, find_checkpoint

        src = Path(model)
        if not (src.is_file() and src.suffix == ".safetensors"):
            src = find_checkpoint(src) / MODEL_FILE
        model, cfg, extra = load_checkpoint(src)
        extra = {**extra, "exported_from": str(src)}
        side = _run_max_side(src)
        if side is not None:
            extra["max_side"] = side
    if cfg is None:
        raise ValueError("export_model needs cfg (the model's TraceNetConfig) when given a module")
    extra.update(meta or {})
    extra["source"] = "tracenet.train.export"
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    save_checkpoint(tmp, model, cfg, extra, dtype=torch.float16 if fp16 else torch.float32)
    os.chmod(
        tmp, 0o644
    )  # safetensors creates files 0600; the exported model is meant to be shared / packaged
    os.replace(tmp, out)
    return out


def inference_max_side(augment: dict[str, Any] | Any) -> int | None:
    """The long side (pixels) photos should have at inference for a model trained with ``augment``.

    LSJ training resizes each image so its long side is ``lsj_size x scale`` on an ``lsj_size`` square canvas:
    scale 1 is the photo fit to the canvas, the middle of what the model saw. Measured on the first 10 val
    images with the cpu preset (LSJ 384), inference at 384 px gave mTA 0.136 against 0.044 at the photos' own
    640 px. For other resize modes this returns None (the predictor's default applies).
    ``augment``: an :class:`tracenet.data.AugmentConfig` or its ``train_config.json`` dict.
    """
    get = augment.get if isinstance(augment, dict) else lambda k, d=None: getattr(augment, k, d)
    if get("resize") == "lsj" and get("lsj_size"):
        return int(get("lsj_size"))
    return None


def _run_max_side(model_file: Path) -> int | None:
    """``inference_max_side`` from the ``train_config.json`` of the run that wrote ``model_file``, if any."""
    import json

    for folder in model_file.parents[:3]:  # the checkpoint folder, checkpoints/, the run folder
        cfg_file = folder / "train_config.json"
        if cfg_file.is_file():
            return inference_max_side(json.loads(cfg_file.read_text()).get("augment", {}))
    return None
