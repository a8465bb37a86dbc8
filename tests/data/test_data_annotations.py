"""COCO / LVIS loading: polygons, compressed and uncompressed RLE, crowd regions, class maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.synth import make_shapes_dataset
from tracenet.data import InstanceDataset, decode_segmentation, load_instances, masks_to_boxes


def test_polygon_and_uncompressed_rle_decode_by_hand():
    square = decode_segmentation([[2, 2, 6, 2, 6, 6, 2, 6]], 10, 10)
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:6, 2:6] = True
    assert np.array_equal(square, expected)
    # column-major runs: 1 off, 2 on (col 0 rows 1-2), 5 off, 4 on (col 2)
    rle = decode_segmentation({"size": [4, 3], "counts": [1, 2, 5, 4]}, 4, 3)
    assert rle.astype(int).tolist() == [[0, 0, 1], [1, 0, 1], [1, 0, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="RLE size"):
        decode_segmentation({"size": [5, 3], "counts": [15]}, 4, 3)


def test_masks_to_boxes_uses_pixel_edges():
    m = np.zeros((2, 10, 12), dtype=bool)
    m[0, 2:6, 3:5] = True
    boxes = masks_to_boxes(m)
    assert boxes.tolist() == [[3, 2, 5, 6], [0, 0, 0, 0]]


def _truth(json_path):
    return json.loads(json_path.read_text())


def test_coco_loads_polygons_rle_crowd_and_class_map(tmp_path):
    ann, images = make_shapes_dataset(tmp_path, n_images=4, crowd=True)
    data = _truth(ann)
    index = load_instances(ann, images)
    assert index.format == "coco"
    assert index.category_ids == (1, 2, 3) and index.num_classes == 3
    assert [index.class_of(c) for c in (1, 2, 3)] == [0, 1, 2]
    ds = InstanceDataset(index)
    assert len(ds) == 4
    for i in range(4):
        image, target = ds[i]
        assert image.dtype == torch.uint8 and tuple(image.shape) == (64, 64, 3)
        anns = [a for a in data["annotations"] if a["image_id"] == i + 1]
        plain = [a for a in anns if not a["iscrowd"]]
        crowd = [a for a in anns if a["iscrowd"]]
        assert target["masks"].shape == (len(plain), 64, 64)
        expected_classes = [{1: 0, 3: 2}[a["category_id"]] for a in plain]
        assert target["classes"].tolist() == expected_classes
        for k, a in enumerate(plain):
            x, y, w, h = a["bbox"]
            m = target["masks"][k].numpy()
            # rectangles are polygons, ellipses compressed RLE: both must be the drawn shape, tight in the box
            assert m.sum() > 0.7 * w * h
            assert target["boxes"][k].tolist() == pytest.approx([x, y, x + w, y + h], abs=1)
            # the image really shows the object there (coloured, not the grey background)
            pix = image.numpy()[m].astype(int)
            assert (pix.max(axis=1) - pix.min(axis=1)).mean() > 60
        if crowd:
            assert target["ignore"][-12:, -12:].all() and target["ignore"].sum() == 144
        else:
            assert not target["ignore"].any()
    assert any(a["iscrowd"] for a in data["annotations"])


def test_class_agnostic_maps_everything_to_zero(tmp_path):
    ann, images = make_shapes_dataset(tmp_path, n_images=3)
    ds = InstanceDataset.from_files(ann, images, class_agnostic=True)
    assert ds.num_classes == 1
    assert all(ds[i][1]["classes"].eq(0).all() for i in range(len(ds)))


def test_lvis_json_loads_through_lvis_package(tmp_path):
    ann, images = make_shapes_dataset(tmp_path, n_images=3, lvis=True)
    data = _truth(ann)
    assert "file_name" not in data["images"][0] and "iscrowd" not in data["annotations"][0]
    index = load_instances(ann, images)
    assert index.format == "lvis"
    assert index.images[0].path == images / "000000000001.png"
    ds = InstanceDataset(index)
    _, target = ds[0]
    n0 = sum(a["image_id"] == 1 for a in data["annotations"])
    assert target["masks"].shape[0] == n0 and not target["ignore"].any()
    # the COCO reader copes with LVIS's layout too (image paths come from coco_url either way)
    assert len(load_instances(ann, images, format="coco")) == 3
    with pytest.raises(ValueError, match="format must be"):
        load_instances(ann, images, format="voc")


def test_lvis_nested_split_folder(tmp_path):
    ann, images = make_shapes_dataset(tmp_path, n_images=2, lvis=True)
    nested = images / "train2017"
    nested.mkdir()
    for p in images.glob("*.png"):
        p.rename(nested / p.name)
    index = load_instances(ann, images)
    assert index.images[0].path == nested / "000000000001.png"
    assert InstanceDataset(index)[0][0].shape == (64, 64, 3)


def test_filter_empty_and_clear_errors(tmp_path):
    ann, images = make_shapes_dataset(tmp_path, n_images=3)
    data = _truth(ann)
    data["images"].append({"id": 99, "file_name": "empty.png", "height": 64, "width": 64})
    Image.new("RGB", (64, 64)).save(images / "empty.png")
    ann.write_text(json.dumps(data))
    assert len(load_instances(ann, images)) == 3
    assert len(load_instances(ann, images, filter_empty=False)) == 4
    (images / "000000000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="000000000001.png"):
        InstanceDataset.from_files(ann, images)[0]
    Image.new("RGB", (32, 64)).save(images / "000000000001.png")
    with pytest.raises(ValueError, match="annotation says 64x64"):
        InstanceDataset.from_files(ann, images)[0]
