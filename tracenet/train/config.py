"""``TrainConfig``: one dataclass for a training run, with named presets (``paper``, ``cpu``, ``smoke``)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tracenet.data.transforms import AugmentConfig
from tracenet.train.losses import LossConfig
from tracenet.train.targets import TargetConfig

ARGS_FILE = "train_args.json"
"""File in a run folder with the command-line arguments that define the run (written by
:func:`tracenet.train.train`, read back by ``python -m tracenet.train --resume RUN``)."""

__all__ = ["ARGS_FILE", "TRAIN_PRESETS", "TrainConfig", "train_preset"]


@dataclass
class TrainConfig:
    """Everything a run needs besides the data paths.

    Schedule: SGD with momentum; the learning rate ramps linearly from ``lr * warmup_factor`` to ``lr`` over
    ``warmup_iters`` and is multiplied by ``gamma`` at each of ``steps``. ``batch_size`` is the *global* batch
    (split evenly over DDP ranks). Weight decay is not applied to normalisation layers (detectron2 default).
    """

    model: str = "r50"  # a tracenet.model.config.PRESETS name
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"fpn_channels": 32}
    class_agnostic: bool = False  # True: one "object" class; False: one class per dataset category
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    losses: LossConfig = field(default_factory=LossConfig)

    batch_size: int = 16
    max_iters: int = 90_000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: tuple[int, ...] = (60_000, 80_000)
    gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    clip_grad_norm: float | None = None  # max global gradient L2 norm; None = no clipping (the paper)
    freeze_backbone_stride: int = (
        4  # backbone layers at stride <= this are not trained (CondInst: stem + res2)
    )

    seed: int = 0
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2  # periodic checkpoints kept on disk (the newest ones); 0 keeps all
    log_every: int = 20  # metrics.jsonl / progress-bar refresh period, in iterations
    num_workers: int = 4  # data-loader worker processes per rank on CPU
    num_workers_cuda: int | None = None  # on CUDA; None: the machine's cores less two, at most 16, per rank
    channels_last: bool = True  # NHWC convolutions: 1.44x faster forward + backward of lite0 on CPU
    amp: str = "auto"  # autocast: "auto" (bf16 on CUDA, off on CPU), "bf16" or "off"; losses stay float32
    export_fp16: bool = False  # store the exported final model in float16

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"TrainConfig.amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")

    def model_config(self, num_classes: int, class_names: list[str] | None = None):
        """The :class:`tracenet.model.config.TraceNetConfig` of this run."""
        from tracenet.model.config import preset

        overrides = dict(self.model_overrides)
        overrides["num_classes"] = num_classes
        if class_names is not None:
            overrides["class_names"] = list(class_names) if num_classes > 1 else None
        return preset(self.model, **overrides)

    def scaled_to_batch(self, batch_size: int) -> TrainConfig:
        """The same schedule in image presentations at another global batch (linear learning-rate rule,
        Goyal et al. 2017): ``lr * k`` and ``max_iters``, ``steps``, ``warmup_iters``, ``checkpoint_every``,
        ``log_every`` divided by ``k = batch_size / self.batch_size`` (rounded, at least 1)."""
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        k = batch_size / self.batch_size

        def iters(n: int) -> int:
            return max(1, round(n / k))

        return self.replace(
            batch_size=int(batch_size),
            lr=self.lr * k,
            max_iters=iters(self.max_iters),
            steps=tuple(iters(s) for s in self.steps),
            warmup_iters=iters(self.warmup_iters) if self.warmup_iters else 0,
            checkpoint_every=iters(self.checkpoint_every),
            log_every=iters(self.log_every),
        )

    def with_iters(self, max_iters: int) -> TrainConfig:
        """The same schedule shape over ``max_iters`` iterations: LR steps scale with the iteration count, the
        warmup is kept but at most a tenth of the run (``tracenet train --iters``)."""
        if max_iters <= 0:
            raise ValueError(f"max_iters must be positive, got {max_iters}")
        return self.replace(
            max_iters=int(max_iters),
            steps=tuple(int(s * max_iters / self.max_iters) for s in self.steps),
            warmup_iters=min(self.warmup_iters, max_iters // 10),
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (stored in checkpoints for reference)."""
        return dataclasses.asdict(self)


def _cpu_augment() -> AugmentConfig:
    # LSJ from 0.3 (not 0.1): at 384 px a 0.1 image is a 38 px island in a padded canvas, wasted compute.
    return AugmentConfig(
        resize="lsj", lsj_size=384, lsj_scale=(0.3, 2.0), hflip_prob=0.5, copy_paste_prob=0.5
    )


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # TraceNet section 3.2 / CondInst R50 1x: 8 GPUs x 2 images.
    "paper": TrainConfig(
        model="r50",
        augment=AugmentConfig(resize="shortest_edge", min_size=(640, 800), max_size=1333, hflip_prob=0.5),
    ),
    # Lite0, class-agnostic, LSJ + copy-paste at 384 px, batch 8 (lr scaled linearly from 0.01 @ 16):
    # ~3 s/iteration on 2 idle CPU cores, so 3000 iterations take ~2.5-3 h (much longer on a busy machine).
    "cpu": TrainConfig(
        model="lite0",
        class_agnostic=True,
        augment=_cpu_augment(),
        batch_size=8,
        max_iters=3000,
        lr=0.005,
        steps=(2200, 2700),
        warmup_iters=200,
        clip_grad_norm=10.0,
        checkpoint_every=200,
        log_every=5,
        num_workers=1,
    ),
    # Tiny, for tests: a narrow lite0 without ImageNet weights, no augmentation.
    "smoke": TrainConfig(
        model="lite0",
        model_overrides={
            "fpn_channels": 16,
            "head_convs": 1,
            "mask_branch_channels": 8,
            "mask_branch_convs": 1,
            "pretrained_backbone": False,
        },
        class_agnostic=True,
        augment=AugmentConfig(resize="none", hflip_prob=0.0),
        batch_size=2,
        max_iters=20,
        lr=0.01,
        steps=(),
        warmup_iters=0,
        checkpoint_every=10,
        keep_checkpoints=0,
        log_every=1,
        num_workers=0,
    ),
}


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """A copy of ``TRAIN_PRESETS[name]`` with ``overrides`` applied."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
    return dataclasses.replace(copy.deepcopy(TRAIN_PRESETS[name]), **overrides)
