"""Optimizer and learning-rate schedule (detectron2 ``WarmupMultiStepLR`` semantics)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchvision.ops import FrozenBatchNorm2d

from tracenet.train.config import TrainConfig

__all__ = ["WarmupMultiStep", "build_optimizer", "build_scheduler"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)


@dataclass
class WarmupMultiStep:
    """LR factor at iteration ``it``: ``gamma ** (number of steps <= it)``, times a linear warmup from
    ``warmup_factor`` to 1 over the first ``warmup_iters`` iterations. A callable object (not a lambda) so
    ``LambdaLR.state_dict`` stores it."""

    warmup_iters: int
    warmup_factor: float
    steps: tuple[int, ...]
    gamma: float

    def __call__(self, it: int) -> float:
        factor = self.gamma ** bisect.bisect_right(sorted(self.steps), it)
        if it < self.warmup_iters:
            alpha = it / self.warmup_iters
            factor *= self.warmup_factor * (1.0 - alpha) + alpha
        return factor


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; weight decay on everything except normalisation-layer parameters."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, _NORMS) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, last_step: int = 0) -> LambdaLR:
    """Per-iteration ``LambdaLR`` with :class:`WarmupMultiStep` (call ``step()`` after every optimizer step).

    ``last_step > 0`` starts the schedule at that many completed iterations (the optimizer's param groups
    need ``initial_lr``)."""
    return LambdaLR(
        optimizer,
        WarmupMultiStep(cfg.warmup_iters, cfg.warmup_factor, tuple(cfg.steps), cfg.gamma),
        last_epoch=last_step - 1,
    )
