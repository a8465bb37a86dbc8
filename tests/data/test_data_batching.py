"""Collation (padding to 32, image sizes) and the resumable sampler; the real COCO-mini data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tracenet.data import AUGMENT_PRESETS, AugmentConfig, InstanceDataset, ResumableBatchSampler, collate
from tracenet.data.transforms import PAD_VALUE

COCO_MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-mini"


def _item(h, w, n):
    img = torch.full((h, w, 3), 7, dtype=torch.uint8)
    t = {
        "boxes": torch.zeros((n, 4)),
        "classes": torch.zeros(n, dtype=torch.int64),
        "masks": torch.ones((n, h, w), dtype=torch.bool),
        "ignore": torch.zeros((h, w), dtype=torch.bool),
        "valid_size": torch.tensor([h, w - 5]),
        "image_id": torch.tensor(1),
    }
    return img, t


def test_collate_pads_to_multiple_of_32():
    batch = collate([_item(40, 70, 2), _item(33, 20, 0)])
    assert batch.images.shape == (2, 3, 64, 96) and batch.images.dtype == torch.uint8
    assert batch.image_sizes.tolist() == [[40, 65], [33, 15]]
    assert (batch.images[0, :, :40, :70] == 7).all()
    assert batch.images[0, :, 40:, :].eq(torch.tensor(PAD_VALUE, dtype=torch.uint8).view(3, 1, 1)).all()
    assert batch.targets[0]["masks"].shape == (2, 64, 96) and batch.targets[0]["masks"].sum() == 2 * 40 * 70
    assert batch.targets[1]["masks"].shape == (0, 64, 96) and batch.targets[1]["ignore"].shape == (64, 96)


def test_sampler_order_is_a_function_of_seed_and_step():
    s = ResumableBatchSampler(10, 3, seed=5)
    it = iter(s)
    first = [next(it) for _ in range(8)]
    resumed = iter(ResumableBatchSampler(10, 3, seed=5, start_step=4))
    assert [next(resumed) for _ in range(4)] == first[4:]
    stream = [i for b in first for i, _ in b]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]  # reshuffled each epoch
    assert [p for b in first for _, p in b] == list(range(24))  # positions seed the augmentation
    other = iter(ResumableBatchSampler(10, 3, seed=6))
    assert [next(other) for _ in range(8)] != first


def test_sampler_ranks_split_the_global_batch():
    single = ResumableBatchSampler(12, 4, seed=1)
    ranks = [ResumableBatchSampler(12, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    for step in range(5):
        assert ranks[0].batch(step) + ranks[1].batch(step) == single.batch(step)


def test_coco_mini_item_with_cpu_augmentation():
    if not (COCO_MINI / "train.json").is_file():
        pytest.skip("needs ../shared/data/coco-mini (not present)")
    cfg = AugmentConfig(resize="lsj", lsj_size=256, copy_paste_prob=1.0)
    ds = InstanceDataset.from_files(
        COCO_MINI / "train.json", COCO_MINI / "images", augment=cfg, class_agnostic=True
    )
    assert len(ds) > 300 and ds.num_classes == 1
    img, t = ds[(0, 0)]
    assert tuple(img.shape) == (256, 256, 3) and t["masks"].shape[1:] == (256, 256)
    plain = InstanceDataset.from_files(
        COCO_MINI / "train.json", COCO_MINI / "images", augment=AUGMENT_PRESETS["paper"]
    )
    img, t = plain[(0, 0)]
    assert 640 <= min(img.shape[:2]) <= 800 and max(img.shape[:2]) <= 1333
    assert plain.num_classes == 80 and t["classes"].max() < 80
    crowd = [i for i, r in enumerate(plain.index.images) if any(a.iscrowd for a in r.annotations)]
    assert crowd and plain[crowd[0]][1]["ignore"].any()
    assert np.isfinite(t["boxes"].numpy()).all()
