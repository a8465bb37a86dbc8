"""Export a trained model as a plain tracenet checkpoint (what ``tracenet.load(path)`` reads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tracenet.model.checkpoint import load_checkpoint, save_checkpoint
from tracenet.model.config import TraceNetConfig

__all__ = ["export_model"]


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
        meta: extra metadata (merged over the source checkpoint's).

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
