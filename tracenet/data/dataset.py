"""``InstanceDataset``: COCO / LVIS images with instance masks, augmented reproducibly."""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tracenet.data.annotations import ImageRecord, InstanceIndex, load_instances
from tracenet.data.copy_paste import copy_paste
from tracenet.data.masks import decode_segmentation, masks_to_boxes
from tracenet.data.transforms import AugmentConfig, Sample, augment, drop_small

__all__ = ["InstanceDataset", "read_image", "sample_to_tensors"]

Key = int | tuple[int, int]


def read_image(path: os.PathLike | str, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB (grayscale expanded, alpha dropped).

    EXIF orientation is deliberately NOT applied: COCO / LVIS annotations refer to the stored pixel grid.
    """
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise FileNotFoundError(
            f"cannot read image {path} (missing or not an image); check --images / --data"
        )
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if expected_hw is not None and image.shape[:2] != tuple(expected_hw):
        raise ValueError(
            f"image {path} is {image.shape[0]}x{image.shape[1]} (HxW) but its annotation says "
            f"{expected_hw[0]}x{expected_hw[1]}; wrong image folder for this JSON?"
        )
    return image


def sample_to_tensors(sample: Sample) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Sample`` -> (image ``[H, W, 3]`` uint8, target dict).

    Target keys: ``boxes [N, 4]`` float32 (x0, y0, x1, y1) in pixel edges, tight around the masks;
    ``classes [N]`` int64; ``masks [N, H, W]`` bool; ``ignore [H, W]`` bool (crowd regions);
    ``valid_size [2]`` int64 (h, w) of the real content at the top-left; ``image_id`` int64 scalar;
    ``exhaustive`` bool scalar (False: partial annotations, see :mod:`tracenet.train.targets`).
    """
    target = {
        "boxes": torch.from_numpy(masks_to_boxes(sample.masks)),
        "classes": torch.from_numpy(sample.classes.astype(np.int64)),
        "masks": torch.from_numpy(np.ascontiguousarray(sample.masks)),
        "ignore": torch.from_numpy(np.ascontiguousarray(sample.ignore)),
        "valid_size": torch.tensor(sample.valid_hw, dtype=torch.int64),
        "image_id": torch.tensor(sample.image_id, dtype=torch.int64),
        "exhaustive": torch.tensor(sample.exhaustive, dtype=torch.bool),
    }
    return torch.from_numpy(np.ascontiguousarray(sample.image)), target


class InstanceDataset(Dataset):
    """Map-style dataset over an :class:`InstanceIndex`.

    ``dataset[i]`` returns the un-augmented image ``i`` (no randomness); ``dataset[(i, key)]`` returns image
    ``i`` augmented with a generator seeded from ``(seed, key)`` — :class:`tracenet.data.ResumableBatchSampler`
    yields such pairs, so every sample (copy-paste partner included) is a pure function of (seed, position in
    the data stream), independent of workers and of resuming.

    Items: ``(image [H, W, 3] uint8, target)`` as :func:`sample_to_tensors`.
    """

    def __init__(self, index: InstanceIndex, *, augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.index = index
        self.augment = augment
        self.seed = int(seed)

    @classmethod
    def from_files(
        cls,
        ann_file: str | os.PathLike,
        images_dir: str | os.PathLike,
        *,
        format: str = "auto",
        class_agnostic: bool = False,
        filter_empty: bool = True,
        exhaustive: bool = True,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> InstanceDataset:
        """Shortcut for :func:`load_instances` + constructor."""
        index = load_instances(
            ann_file,
            images_dir,
            format=format,
            class_agnostic=class_agnostic,
            filter_empty=filter_empty,
            exhaustive=exhaustive,
        )
        return cls(index, augment=augment, seed=seed)

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def __len__(self) -> int:
        return len(self.index)

    def load(self, i: int) -> Sample:
        """Image ``i`` at its stored size: non-crowd masks as targets, crowd masks merged into ``ignore``."""
        rec: ImageRecord = self.index.images[i]
        image = read_image(rec.path, (rec.height, rec.width))
        h, w = rec.height, rec.width
        masks, classes = [], []
        ignore = np.zeros((h, w), dtype=bool)
        for ann in rec.annotations:
            m = decode_segmentation(ann.segmentation, h, w)
            if ann.iscrowd:
                ignore |= m
            else:
                masks.append(m)
                classes.append(self.index.class_of(ann.category_id))
        sample = Sample(
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            classes=np.asarray(classes, dtype=np.int64),
            ignore=ignore,
            valid_hw=(h, w),
            image_id=rec.image_id,
            exhaustive=rec.exhaustive,
        )
        return drop_small(sample, 1)

    def augmented(self, i: int, key: int) -> Sample:
        """Image ``i`` after the configured augmentations, randomness seeded by ``(self.seed, key)``."""
        sample = self.load(i)
        cfg = self.augment
        if cfg is None:
            return sample
        rng = np.random.default_rng([self.seed, int(key) & 0xFFFFFFFFFFFF, i])
        sample = augment(sample, rng, cfg)
        if cfg.copy_paste_prob > 0 and len(self) > 1 and rng.random() < cfg.copy_paste_prob:
            j = int(rng.integers(0, len(self) - 1))
            j = j + 1 if j >= i else j  # any other image
            src = augment(self.load(j), rng, cfg)
            sample = copy_paste(sample, src, rng, cfg)
        return drop_small(sample, cfg.min_mask_area)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if isinstance(key, tuple):
            i, seed_key = key
            sample = self.augmented(int(i), int(seed_key))
        else:
            sample = self.load(int(key))
        return sample_to_tensors(sample)
