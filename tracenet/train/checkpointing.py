"""Training checkpoints: one folder per checkpoint, written atomically, enough for a bit-exact resume.

Layout of ``<run>/checkpoints/step_0001000/``:

- ``model.safetensors``: the weights as a plain tracenet checkpoint (``tracenet.load`` reads it directly);
- ``state.pt``: optimizer, LR scheduler, step, data-order state, train config (tensors / dicts / lists only,
  loaded with ``torch.load(weights_only=True)``);
- ``rng_rank{r}.pt``: python / numpy / torch (+ CUDA) RNG states of rank ``r``.

The folder is written under a temporary name and renamed; ``<run>/last_checkpoint`` (a one-line text file,
also replaced atomically) names the newest one.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tracenet.model.checkpoint import read_checkpoint, save_checkpoint
from tracenet.model.config import TraceNetConfig

__all__ = [
    "capture_rng",
    "checkpoint_dir",
    "find_checkpoint",
    "load_training_checkpoint",
    "restore_rng",
    "write_training_checkpoint",
]

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
LAST = "last_checkpoint"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}"


def capture_rng() -> dict[str, Any]:
    """RNG states of this process as tensors / plain Python values (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tmp_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp"


def write_rank_rng(final: Path, rank: int) -> None:
    """Every rank calls this (before :func:`write_training_checkpoint`) to store its own RNG state."""
    tmp = _tmp_dir(final)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(capture_rng(), tmp / f"rng_rank{rank}.pt")


def write_training_checkpoint(
    final: Path,
    *,
    model: nn.Module,
    model_cfg: TraceNetConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    data_state: dict[str, int],
    train_cfg: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Rank 0 only: write ``final`` (a ``step_XXXXXXX`` folder) atomically and point ``last_checkpoint`` at it.

    ``step`` is the number of completed iterations. ``keep > 0`` deletes older periodic checkpoints beyond the
    newest ``keep``.
    """
    tmp = _tmp_dir(final)
    tmp.mkdir(parents=True, exist_ok=True)
    save_checkpoint(tmp / MODEL_FILE, model, model_cfg, {"step": step, "source": "tracenet.train"})
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data": dict(data_state),
        "train_config": train_cfg,
    }
    torch.save(state, tmp / STATE_FILE)
    if final.exists():  # re-saving the same step (e.g. the final step was also periodic)
        trash = final.parent / f".{final.name}.old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    run_dir = final.parent.parent
    pointer = run_dir / f".{LAST}.tmp"
    pointer.write_text(str(final.relative_to(run_dir)) + "\n")
    os.replace(pointer, run_dir / LAST)
    if keep > 0:
        old = sorted(p for p in final.parent.glob("step_*") if p.is_dir())
        for p in old[:-keep]:
            if p != final:
                shutil.rmtree(p, ignore_errors=True)
    return final


def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve ``--resume PATH``: a checkpoint folder, its ``model.safetensors``/``state.pt``, or a run folder
    (then its ``last_checkpoint``)."""
    p = Path(path)
    if p.is_file() and p.name in (MODEL_FILE, STATE_FILE):
        p = p.parent
    if (p / STATE_FILE).is_file() and (p / MODEL_FILE).is_file():
        return p
    if (p / LAST).is_file():
        target = p / (p / LAST).read_text().strip()
        if (target / STATE_FILE).is_file():
            return target
        raise FileNotFoundError(f"{p / LAST} points to {target}, which is not a complete checkpoint")
    raise FileNotFoundError(
        f"--resume {path}: not a training checkpoint (expected a folder with {MODEL_FILE} and {STATE_FILE}, "
        f"or a run folder with a {LAST} file)"
    )


def load_training_checkpoint(ckpt: Path, rank: int = 0) -> tuple[dict, TraceNetConfig, dict, dict | None]:
    """Read a checkpoint folder.

    Returns:
        ``(model_state, model_cfg, state, rng)``: float32 tensors as saved, the stored model config, the
        ``state.pt`` dict, and this rank's RNG state (None if the folder has none for ``rank``).
    """
    tensors, model_cfg, _ = read_checkpoint(ckpt / MODEL_FILE)
    state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    rng_file = ckpt / f"rng_rank{rank}.pt"
    rng = torch.load(rng_file, map_location="cpu", weights_only=True) if rng_file.is_file() else None
    return tensors, model_cfg, state, rng
