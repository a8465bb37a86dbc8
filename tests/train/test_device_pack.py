"""The GPU job's data pack: annotations rescaled with their photos (polygons exactly, RLE by resizing), and the
packed copy of a data set loads and trains like the original."""

from __future__ import annotations

import json

import numpy as np
from pycocotools import mask as mask_utils

from tests.data.synth import make_shapes_dataset
from tests.scripts import load_script
from tracenet.data import DataSource, InstanceDataset, load_sources


def _pack_module():
    return load_script("scripts/pack_device_data.py")


def test_polygons_scale_exactly_and_rle_masks_follow_the_resize():
    pack = _pack_module()
    poly = {"segmentation": [[10, 20, 50, 20, 50, 60]], "bbox": [10, 20, 40, 40], "area": 800.0, "iscrowd": 0}
    out = pack.rescale_annotation(poly, (100, 200), (50, 100))
    assert out["segmentation"] == [[5, 10, 25, 10, 25, 30]] and out["bbox"] == [5, 10, 20, 20]
    assert out["area"] == 200.0
    m = np.zeros((100, 200), np.uint8)
    m[20:60, 40:120] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode("ascii")
    out = pack.rescale_annotation({"segmentation": rle, "bbox": [40, 20, 80, 40], "area": 3200.0}, (100, 200), (50, 100))
    small = mask_utils.decode(out["segmentation"]).astype(bool)
    expected = np.zeros((50, 100), bool)
    expected[10:30, 20:60] = True
    assert small.shape == (50, 100) and np.array_equal(small, expected)


def test_packed_copy_loads_with_rescaled_sizes(tmp_path):
    pack = _pack_module()
    ann, images = make_shapes_dataset(tmp_path / "src", n_images=3, size=64, seed=4)
    out = tmp_path / "packed"
    (out / "images").mkdir(parents=True)
    listed = pack.pack_annotations(ann, out / "train.json", long_side=32)
    for src, hw in listed:
        (out / "images" / src.name).write_bytes(pack.encode(src, hw, 80))
    data = json.loads((out / "train.json").read_text())
    assert {(i["height"], i["width"]) for i in data["images"]} == {(32, 32)}
    packed = InstanceDataset(load_sources([DataSource(out / "train.json", out / "images")], class_agnostic=True))
    original = InstanceDataset(load_sources([DataSource(ann, images)], class_agnostic=True))
    for i in range(3):
        img, tgt = packed[i]
        _, ref = original[i]
        assert img.shape == (32, 32, 3) and tgt["masks"].shape[1:] == (32, 32)
        assert len(tgt["boxes"]) == len(ref["boxes"])
        assert np.allclose(tgt["boxes"].numpy(), ref["boxes"].numpy() / 2, atol=1.0)
