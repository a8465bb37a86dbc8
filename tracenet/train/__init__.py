"""Training layer: FCOS/CondInst targets and losses, schedule presets, a resumable (DDP-ready) trainer.

Typical use::

    from tracenet.train import train, train_preset
    train(train_preset("cpu"), ann_file="coco-mini/train.json", images_dir="coco-mini/images",
          out_dir="runs/lite0-cpu")

or ``python -m tracenet.train --preset cpu --data ../shared/data/coco-mini --out runs/lite0-cpu``.
"""

from tracenet.train.config import TRAIN_PRESETS, TrainConfig, train_preset
from tracenet.train.export import export_model
from tracenet.train.losses import LossConfig, centerness_loss, dice_loss, focal_loss, giou_loss
from tracenet.train.targets import FcosTargets, TargetConfig, assign_targets, centerness
from tracenet.train.train_model import TraceNetTrainModel, compute_losses
from tracenet.train.trainer import EvalHook, NonFiniteLossError, train

__all__ = [
    "TRAIN_PRESETS",
    "EvalHook",
    "FcosTargets",
    "LossConfig",
    "NonFiniteLossError",
    "TargetConfig",
    "TraceNetTrainModel",
    "TrainConfig",
    "assign_targets",
    "centerness",
    "centerness_loss",
    "compute_losses",
    "dice_loss",
    "export_model",
    "focal_loss",
    "giou_loss",
    "train",
    "train_preset",
]
