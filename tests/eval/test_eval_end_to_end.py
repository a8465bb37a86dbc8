"""The evaluator end to end on a tiny COCO JSON written here, the command, compare, and (if present) real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from tracenet.eval.__main__ import main as eval_main
from tracenet.eval.compare import compare
from tracenet.eval.evaluate import EvalConfig, evaluate_coco
from tracenet.eval.methods import from_callable
from tracenet.eval.report import write_outputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

# image id -> [(category id, (x0, y0, x1, y1), colour)]; image 3 has no annotation at all
SCENES = {
    1: [
        (1, (10, 10, 50, 60), (220, 30, 30)),
        (2, (70, 40, 120, 90), (30, 200, 40)),
        (1, (60, 5, 80, 25), (240, 240, 0)),
    ],
    2: [(2, (20, 20, 100, 80), (40, 60, 230))],
    3: [],
}
H, W = 96, 128


def write_dataset(root: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "slab"}],
    }
    ann_id = 100
    for img_id, objects in SCENES.items():
        pix = np.full((H, W, 3), 90, np.uint8)
        for _, (x0, y0, x1, y1), colour in objects:
            pix[y0:y1, x0:x1] = colour
        Image.fromarray(pix).save(images / f"{img_id:06d}.png")
        coco["images"].append({"id": img_id, "file_name": f"{img_id:06d}.png", "height": H, "width": W})
        for cat, (x0, y0, x1, y1), _ in objects:
            ann_id += 1
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": cat,
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                }
            )
    crowd = np.zeros((H, W), np.uint8, order="F")
    crowd[0:10, 0:10] = 1
    rle = mask_utils.encode(crowd)
    rle["counts"] = rle["counts"].decode()
    coco["annotations"].append(
        {
            "id": 999,
            "image_id": 2,
            "category_id": 1,
            "segmentation": rle,
            "area": 100.0,
            "bbox": [0, 0, 10, 10],
            "iscrowd": 1,
        }
    )
    path = root / "ann.json"
    path.write_text(json.dumps(coco))
    return path


_COLOUR_MASKS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def same_colour(image: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """The GT-ish answer: every pixel of the tapped pixel's colour (cached: brute-force mTA calls it per pixel;
    the cache holds the image itself, so a key can never point at another image)."""
    key = (id(image), tuple(image[xy[1], xy[0]].tolist()))
    hit = _COLOUR_MASKS.get(key)
    if hit is None or hit[0] is not image:
        hit = _COLOUR_MASKS[key] = (image, np.all(image == image[xy[1], xy[0]], axis=-1))
    return hit[1].copy()


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    with Image.open(path) as im:
        im.verify()


def test_evaluator_end_to_end(tmp_path):
    ann = write_dataset(tmp_path / "data")
    method = from_callable(same_colour, "colour")
    run = evaluate_coco(
        method, ann, tmp_path / "data" / "images", EvalConfig(mta_stride=1, progress=False, n_showcase=2)
    )
    m = run.metrics
    for key in (
        "miou_t",
        "mta",
        "per_band",
        "per_category",
        "per_size",
        "first_click_iou",
        "method",
        "dataset",
        "n_instances",
        "n_images",
        "beta",
        "seed",
        "approximate",
        "seconds",
    ):
        assert key in m, key
    assert (m["method"], m["n_images"], m["n_instances"], m["beta"], m["seed"]) == ("colour", 2, 4, 0.7, 0)
    assert m["skipped"] == {"crowd": 1, "empty_mask": 0}
    assert m["approximate"] == {"mta": False, "mta_stride": 1, "mta_skipped": False}
    assert len(m["per_band"]) == 5
    assert all(set(b) == {"band", "miou_t", "mta", "n_taps", "empty_bands"} for b in m["per_band"])
    assert sum(b["n_taps"] for b in m["per_band"]) == m["n_taps"] == 4 * 25
    assert set(m["per_category"]) == {"box", "slab"} and m["per_category"]["box"]["n"] == 2
    assert set(m["per_size"]) == {"small", "medium", "large"} and m["per_size"]["small"]["n"] == 1
    assert m["miou_t"] > 0.9 and m["mta"] > 0.9 and m["first_click_iou"] > 0.9  # polygon edges cost a little
    assert m["mta_pixels"] == m["mask_pixels"]
    assert len(run.showcases) == 2

    write_outputs(run, tmp_path / "out")
    out = tmp_path / "out"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["miou_t"] == pytest.approx(m["miou_t"]) and saved["plots"]["bands"] == "bands.png"
    for name in ("bands.png", "qualitative.png", "clickable.png"):
        assert_png(out / name)
    assert len((out / "instances.jsonl").read_text().splitlines()) == 4
    report = (out / "report.md").read_text()
    assert "## Per band" in report and "approximate" not in report


def test_limits_and_approximate_flag(tmp_path):
    ann = write_dataset(tmp_path / "data")
    method = from_callable(same_colour, "colour")  # no group key: default stride 16, flagged approximate
    cfg = EvalConfig(max_instances=2, progress=False, n_showcase=1)
    run = evaluate_coco(method, ann, tmp_path / "data" / "images", cfg)
    assert run.metrics["n_instances"] == 2
    assert run.metrics["approximate"]["mta"] is True and run.metrics["approximate"]["mta_stride"] == 16
    assert run.metrics["mta_pixels"] < run.metrics["mask_pixels"]
    write_outputs(run, tmp_path / "out")
    assert "mTA is approximate" in (tmp_path / "out" / "report.md").read_text()
    one = evaluate_coco(method, ann, tmp_path / "data" / "images", EvalConfig(max_images=1, progress=False))
    assert (one.metrics["n_images"], one.metrics["n_instances"]) == (1, 3)


def test_command_with_grabcut_and_compare(tmp_path, capsys):
    ann = write_dataset(tmp_path / "data")
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    # --images omitted: taken from images/ next to the JSON
    args = ["--method", "grabcut", "--ann", str(ann), "--out", str(out_a), "--max-instances", "1", "--quiet"]
    assert eval_main(args + ["--mta-stride", "8"]) == 0
    assert "grabcut: mIoU-T" in capsys.readouterr().out
    m = json.loads((out_a / "metrics.json").read_text())
    assert m["method"] == "grabcut" and m["n_instances"] == 1 and m["approximate"]["mta_stride"] == 8
    assert (
        eval_main(
            args[:-5]
            + ["--out", str(out_b), "--max-instances", "1", "--quiet", "--mta-stride", "0", "--no-plots"]
        )
        == 0
    )
    mb = json.loads((out_b / "metrics.json").read_text())
    assert mb["mta"] is None and mb["approximate"]["mta_skipped"] is True

    md = compare([out_a / "metrics.json", out_b], tmp_path / "cmp").read_text()
    assert "grabcut (a)" in md and "grabcut (b)" in md and "~" in md and "IoU@1 >= 0.85" in md
    assert_png(tmp_path / "cmp" / "bands.png")
    assert_png(tmp_path / "cmp" / "first_click.png")  # both folders hold instances.jsonl


def test_command_user_errors(tmp_path, capsys):
    assert (
        eval_main(["--method", "grabcut", "--ann", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    )
    assert "--ann file not found" in capsys.readouterr().err
    ann = write_dataset(tmp_path / "data")
    bad = [
        "--method",
        "grabcut",
        "--ann",
        str(ann),
        "--images",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    assert eval_main(bad) == 2
    assert "is not in" in capsys.readouterr().err


@pytest.mark.skipif(
    not (SHARED / "coco-mini" / "val.json").is_file(),
    reason=f"shared COCO data not found at {SHARED}/coco-mini",
)
def test_real_coco_mini_one_instance(tmp_path):
    """GrabCut on the first instance of the real COCO subset: the run's mIoU-T and first-click IoU equal those
    computed here with numpy from GrabCut called directly on the same 25 taps (the first annotated image by id,
    its first non-crowd annotation by id, pycocotools' mask, taps simulated with seed 0)."""
    from pycocotools.coco import COCO

    from tracenet.eval.baselines import GrabCutMethod
    from tracenet.eval.taps import simulate_taps

    ann_path, images = SHARED / "coco-mini" / "val.json", SHARED / "coco-mini" / "images"
    cfg = EvalConfig(max_instances=1, mta_stride=0, progress=False, n_showcase=0)
    m = evaluate_coco(GrabCutMethod(), ann_path, images, cfg).metrics
    assert m["n_instances"] == 1 and m["n_images"] == 1 and m["mta"] is None
    coco = COCO(str(ann_path))
    img_id = min(a["image_id"] for a in coco.dataset["annotations"] if not a.get("iscrowd", 0))
    ann = min((a for a in coco.imgToAnns[img_id] if not a.get("iscrowd", 0)), key=lambda a: a["id"])
    gt = coco.annToMask(ann).astype(bool)
    taps = simulate_taps(gt, seed=0, instance_id=ann["id"])
    method = GrabCutMethod()
    with Image.open(images / coco.imgs[img_id]["file_name"]) as im:
        method.set_image(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))

    def counts(xy):
        pred = method.predict(xy)
        return int((pred & gt).sum()), int((pred | gt).sum())

    band = [counts(xy) for _, xy in taps.band_taps.flat()]
    fc_inter, fc_union = counts(taps.first_click)
    assert m["n_taps"] == len(band) and m["n_taps"] + 5 * m["empty_bands"] == 25
    assert m["miou_t"] == pytest.approx(sum(i for i, _ in band) / sum(u for _, u in band), rel=1e-12)
    assert m["first_click_iou"] == pytest.approx(fc_inter / fc_union, rel=1e-12)
    assert 0 < m["miou_t"] < 1  # GrabCut neither misses the instance nor matches it exactly: the check can tell


def test_group_key_spot_check_catches_a_lying_key(tmp_path, capsys):
    ann = write_dataset(tmp_path / "data")
    images = tmp_path / "data" / "images"

    def by_cell(image, xy):  # the mask also depends on the tap's 4-px row band: that row is cut out
        m = same_colour(image, xy)
        m[xy[1] // 4 * 4, :] = False
        return m

    cfg = EvalConfig(mta_stride=0, progress=False, n_showcase=0, check_group_key=3)
    honest = from_callable(by_cell, "honest", group_key=lambda xy: (xy[0] // 4, xy[1] // 4))
    m = evaluate_coco(honest, ann, images, cfg).metrics
    assert m["group_key_check"]["checked"] == 6 and m["group_key_check"]["mismatches"] == 0
    liar = from_callable(by_cell, "liar", group_key=lambda xy: (xy[0] // 16, xy[1] // 16))
    run = evaluate_coco(
        liar, ann, images, EvalConfig(mta_stride=0, progress=False, n_showcase=0, check_group_key=10)
    )
    assert run.metrics["group_key_check"]["mismatches"] > 0
    assert "not exact" in capsys.readouterr().err
    write_outputs(run, tmp_path / "out", plots=False)
    assert "Warning" in (tmp_path / "out" / "report.md").read_text()
