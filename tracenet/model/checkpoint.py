"""Checkpoints: a safetensors file whose metadata carries the config, so the model rebuilds from the file alone.

Metadata (all strings): ``format = "tracenet/1"``, ``config`` (JSON of :meth:`TraceNetConfig.to_dict`),
``meta`` (JSON of the caller's ``extra_meta``), ``dtype`` (storage dtype of floating tensors). Loading never
unpickles anything and never downloads backbone weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from tracenet.model.config import TraceNetConfig
from tracenet.model.dense import TraceNetDense, build_model
from tracenet.tap.core import MIN_MAX_SIDE  # one bound for checkpoints and predictors

FORMAT = "tracenet/1"
_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, foreign, or does not match its own config."""


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    cfg: TraceNetConfig,
    extra_meta: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model``'s state dict and ``cfg`` to a ``.safetensors`` file.

    Args:
        path: destination; parent folders are created.
        model: the :class:`TraceNetDense` built from ``cfg`` (not a fused copy).
        cfg: its config (stored as JSON in the metadata).
        extra_meta: JSON-serialisable extras (e.g. ``{"step": 1000, "dataset": "coco"}``).
        dtype: storage dtype of floating-point tensors (``torch.float16`` halves the file); loading always
            gives float32.

    Returns:
        The path written.
    """
    storage = {v: k for k, v in _STORAGE_DTYPES.items()}.get(dtype)
    if storage is None:
        raise ValueError(f"checkpoint dtype must be one of {list(_STORAGE_DTYPES)}, got {dtype}")
    try:
        meta_json = json.dumps(extra_meta or {})
    except TypeError as err:
        raise ValueError(f"extra_meta must be JSON-serialisable: {err}") from err
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "config": json.dumps(cfg.to_dict()), "meta": meta_json, "dtype": storage}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _not_safetensors_reason(path: Path) -> str:
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return "it looks like a zip-based PyTorch .pth/.pt file (never unpickled here)"
    if head[:1] == b"\x80":
        return "it looks like a pickle (PyTorch .pth/.pkl; never unpickled here)"
    return "its header is not a safetensors header"


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], TraceNetConfig, dict[str, Any]]:
    """Read tensors (as stored), config and extra metadata without building a model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is not a TraceNet checkpoint: {_not_safetensors_reason(path)}. TraceNet checkpoints are "
            f".safetensors files written by tracenet.model.save_checkpoint ({err})"
        ) from err
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file but not a TraceNet checkpoint (metadata format="
            f"{metadata.get('format')!r}, expected {FORMAT!r} plus a config); write it with "
            f"tracenet.model.save_checkpoint"
        )
    try:
        cfg = TraceNetConfig.from_dict(json.loads(metadata["config"]))
        meta = json.loads(metadata.get("meta", "{}"))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: the stored config is invalid: {err}") from err
    _check_meta(meta, path)
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{path}: tensor {key} contains NaN or infinite values; the checkpoint is corrupt (a diverged "
                "training run or a damaged file) and would give 'best score nan' on every tap"
            )
    return tensors, cfg, meta




def _check_meta(meta: Any, path: Path) -> None:
    """The keys of ``meta`` the predictor reads must have the right types (a crafted file gets a clear error)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata 'meta' must be a JSON object, got {type(meta).__name__}")
    side = meta.get("max_side", MIN_MAX_SIDE)
    if isinstance(side, bool) or not isinstance(side, int) or side < MIN_MAX_SIDE:
        raise CheckpointError(f"{path}: meta max_side must be an int >= {MIN_MAX_SIDE}, got {side!r}")
    if "tap_ranker" in meta and not isinstance(meta["tap_ranker"], dict):
        raise CheckpointError(f"{path}: meta tap_ranker must be a JSON object, got {meta['tap_ranker']!r}")


def load_checkpoint(
    path: str | Path, *, device: torch.device | str = "cpu"
) -> tuple[TraceNetDense, TraceNetConfig, dict[str, Any]]:
    """Rebuild the model stored at ``path``.

    Returns:
        ``(model, cfg, meta)``: a float32 :class:`TraceNetDense` in eval mode on ``device`` with the weights
        loaded strictly, its config, and the ``extra_meta`` given to :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing file, not a safetensors file (pickles are refused, never unpickled), a
            safetensors file without TraceNet metadata, or weights that do not fit the stored config.
    """
    tensors, cfg, meta = read_checkpoint(path)
    cfg = cfg.replace(pretrained_backbone=False, backbone_weights=None)
    with torch.device("meta"):  # shapes only: a config that does not fit the file is refused before any memory
        expected = build_model(cfg).state_dict()
    _check_shapes(path, cfg, expected, tensors)
    model = build_model(cfg)
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg, meta


def _check_shapes(
    path: str | Path, cfg: TraceNetConfig, expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]
) -> None:
    """Raise :class:`CheckpointError` unless ``tensors`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            details.append(
                f"{len(wrong)} with wrong shapes (e.g. {k}: file {tuple(tensors[k].shape)}, "
                f"config {tuple(expected[k].shape)})"
            )
        raise CheckpointError(
            f"{path}: weights do not match the stored config (backbone={cfg.backbone}, "
            f"fpn_channels={cfg.fpn_channels}): " + "; ".join(details)
        )
