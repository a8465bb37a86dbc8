"""Augmentations: shortest-edge resize, flip, LSJ, copy-paste, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.synth import make_shapes_dataset
from tracenet.data import AugmentConfig, InstanceDataset, Sample, copy_paste
from tracenet.data.transforms import PAD_VALUE, hflip, large_scale_jitter, resize_shortest_edge


def _sample(h=48, w=64) -> Sample:
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 0] = np.arange(w, dtype=np.uint8)[None]
    masks = np.zeros((1, h, w), dtype=bool)
    masks[0, 10:20, 5:15] = True
    return Sample(
        image=image, masks=masks, classes=np.array([0]), ignore=np.zeros((h, w), bool), valid_hw=(h, w)
    )


def test_resize_shortest_edge_and_cap():
    rng = np.random.default_rng(0)
    out = resize_shortest_edge(_sample(), rng, AugmentConfig(min_size=(96, 96), max_size=1000))
    assert out.image.shape == (96, 128, 3) and out.masks.shape == (1, 96, 128) and out.valid_hw == (96, 128)
    assert out.masks[0].sum() == pytest.approx(4 * 100, rel=0.1)
    capped = resize_shortest_edge(_sample(), rng, AugmentConfig(min_size=(300, 300), max_size=100))
    assert capped.image.shape[:2] == (75, 100)
    sizes = {
        min(resize_shortest_edge(_sample(), rng, AugmentConfig(min_size=(50, 60))).image.shape[:2])
        for _ in range(40)
    }
    assert sizes <= set(range(50, 61)) and len(sizes) > 3


def test_hflip_mirrors_image_and_masks():
    s = _sample()
    f = hflip(s)
    assert np.array_equal(f.image[:, ::-1], s.image)
    ys, xs = np.nonzero(f.masks[0])
    assert xs.min() == 64 - 15 and xs.max() == 64 - 6


def test_lsj_fixed_size_padding_and_crop():
    cfg = AugmentConfig(resize="lsj", lsj_size=128, lsj_scale=(0.5, 0.5))
    out = large_scale_jitter(_sample(), np.random.default_rng(0), cfg)
    # 64 x 48 scaled to fit 128 (x2) then x0.5 -> 64 x 48 content, padded to 128 x 128
    assert out.image.shape == (128, 128, 3) and out.valid_hw == (48, 64)
    assert (out.image[60:, :] == np.array(PAD_VALUE, np.uint8)).all()
    assert not out.masks[:, 48:].any() and out.masks[0].sum() == 100
    big = large_scale_jitter(
        _sample(), np.random.default_rng(1), AugmentConfig(resize="lsj", lsj_size=64, lsj_scale=(2.0, 2.0))
    )
    assert big.image.shape == (64, 64, 3) and big.valid_hw == (64, 64)


def test_copy_paste_occludes_and_appends():
    cfg = AugmentConfig(copy_paste_max_fraction=(1.0, 1.0))
    dst = _sample()
    src = _sample()
    src.image[:] = 255
    src.masks[:] = False
    src.masks[0, 10:20, 5:10] = True  # covers the left half of dst's object
    src.classes = np.array([3])
    out = copy_paste(dst, src, np.random.default_rng(0), cfg)
    assert out.classes.tolist() == [0, 3]
    assert out.masks[0].sum() == 50 and out.masks[1].sum() == 50
    assert not (out.masks[0] & out.masks[1]).any()
    assert (out.image[10:20, 5:10] == 255).all() and (out.image[30:, 30:] != 255).all()
    src.masks[0, 10:20, 5:15] = True  # now fully occludes -> dst's instance is dropped
    out = copy_paste(dst, src, np.random.default_rng(0), cfg)
    assert out.classes.tolist() == [3]


def test_dataset_augmentation_is_reproducible_from_key(tmp_path):
    ann, images = make_shapes_dataset(tmp_path, n_images=4)
    cfg = AugmentConfig(resize="lsj", lsj_size=96, copy_paste_prob=1.0)
    ds = InstanceDataset.from_files(ann, images, augment=cfg, seed=3)
    a, b, c = ds[(1, 7)], ds[(1, 7)], ds[(1, 8)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["masks"], b[1]["masks"])
    assert not torch.equal(a[0], c[0])
    assert tuple(a[0].shape) == (96, 96, 3)
    h, w = a[1]["valid_size"].tolist()
    assert not a[1]["masks"][:, h:].any() and not a[1]["masks"][:, :, w:].any()
    # boxes are tight around the (possibly occluded) masks
    for box, m in zip(a[1]["boxes"], a[1]["masks"], strict=True):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
