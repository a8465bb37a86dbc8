"""Folder benchmarks (images/ + 0/128/255 masks): the loader, the ignore band, the first click, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tracenet.eval.__main__ import main as eval_main
from tracenet.eval.evaluate import EvalConfig, evaluate, evaluate_folder
from tracenet.eval.folder import BenchmarkError, load_folder_benchmark, read_mask
from tracenet.eval.instance import InstanceResult
from tracenet.eval.methods import from_callable
from tracenet.eval.metrics import aggregate
from tracenet.eval.taps import first_click

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "interactive"

# stem -> (H, W, object box (x0, y0, x1, y1), band width of 128 around it, image suffix); odd sizes on purpose
OBJECTS = {
    "b_cup": (37, 53, (10, 8, 30, 25), 2, ".png"),
    "a_dog": (61, 45, (5, 20, 40, 55), 0, ".jpg"),
    "c_sun": (50, 50, (0, 0, 17, 13), 1, ".png"),  # touches the image border
}


def object_masks(h: int, w: int, box: tuple[int, int, int, int], band: int) -> tuple[np.ndarray, np.ndarray]:
    """``(object, ignore)`` ``H x W`` bool: a box, and a ``band``-pixel ring of "unknown" just outside it."""
    x0, y0, x1, y1 = box
    obj = np.zeros((h, w), bool)
    obj[y0:y1, x0:x1] = True
    grown = np.zeros((h, w), bool)
    grown[max(0, y0 - band) : y1 + band, max(0, x0 - band) : x1 + band] = True
    return obj, grown & ~obj


def write_folder(root: Path, objects: dict = OBJECTS) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for stem, (h, w, box, band, suffix) in objects.items():
        obj, ignore = object_masks(h, w, box, band)
        pix = np.full((h, w, 3), 70, np.uint8)
        pix[obj] = (230, 40, 40)
        Image.fromarray(pix).save(images / f"{stem}{suffix}", quality=100)
        Image.fromarray((obj * 255 + ignore * 128).astype(np.uint8)).save(masks / f"{stem}.png")
    (images / ".DS_Store").write_bytes(b"junk")  # hidden and unrelated files are ignored
    (masks / "notes.txt").write_text("not a mask")
    return images, masks


def test_loader_reads_records_sorted_with_ignore_band(tmp_path):
    images, masks = write_folder(tmp_path)
    bench = load_folder_benchmark(images, masks)
    assert bench.kind == "folder" and bench.dataset == str(masks)
    assert [(r.image_id, r.file) for r in bench.images] == [
        (1, "a_dog.jpg"),
        (2, "b_cup.png"),
        (3, "c_sun.png"),
    ]
    for record, stem in zip(bench.images, sorted(OBJECTS), strict=True):
        h, w, box, band, _ = OBJECTS[stem]
        obj, ignore = object_masks(h, w, box, band)
        assert record.load().shape == (h, w, 3)
        (inst,) = record.instances()
        assert inst.ann_id == record.image_id and inst.category == "object"
        assert np.array_equal(inst.gt, obj) and inst.area == obj.sum()
        if band:
            assert np.array_equal(inst.ignore, ignore)
        else:
            assert inst.ignore is None


def test_ignore_band_is_left_out_of_every_iou(tmp_path):
    """Predict object + its whole 128 band + 7 background pixels: IoU = |obj| / (|obj| + 7) exactly, on the band
    taps and the first click alike (without the band rule it would be |obj| / (|obj| + |band| + 7))."""
    images, masks = write_folder(tmp_path)
    truth = {(h, w): object_masks(h, w, box, band) for h, w, box, band, _ in OBJECTS.values()}
    assert len(truth) == len(OBJECTS)  # sizes differ, so the image size names the object

    def sloppy(image, xy):
        obj, ignore = truth[image.shape[:2]]
        pred = obj | ignore
        pred[-1, -7:] = True  # 7 background pixels, away from every object
        return pred

    run = evaluate_folder(
        from_callable(sloppy, "sloppy"), images, masks, EvalConfig(mta_stride=1, progress=False, n_showcase=1)
    )
    for row in run.instances:
        obj, ignore = object_masks(*OBJECTS[row.file.rsplit(".", 1)[0]][:4])
        expect = obj.sum() / (obj.sum() + 7)
        assert row.first_click_iou == pytest.approx(expect, abs=0)
        assert all(t[3] == obj.sum() and t[4] == obj.sum() + 7 for t in row.taps)
        assert row.ignore_pixels == ignore.sum()
    m = run.metrics
    assert m["benchmark"] == "folder" and m["n_images"] == 3 and m["n_instances"] == 3
    assert m["mta"] == 1.0  # IoU >= 0.7 from every pixel
    assert run.showcases[0].title == "a_dog.jpg"


def test_first_click_hand_made_masks():
    # 5 x 7 block: distance 3 only on the middle row, cols 2..4 -> ties go to the first in raster order
    mask = np.zeros((9, 11), bool)
    mask[2:7, 2:9] = True
    assert first_click(mask) == (4, 4)
    # L shape: the thick vertical bar (6 wide) beats the thin foot (3 high); first such pixel in raster order
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:8] = True
    mask[15:18, 2:18] = True
    x, y = first_click(mask)
    assert (x, y) == (4, 4)
    # the image border is boundary: a block flush with the top-left corner clicks 2 px in, not at (0, 0)
    mask = np.zeros((10, 10), bool)
    mask[0:5, 0:5] = True
    assert first_click(mask) == (2, 2)


def test_first_click_treats_the_unknown_band_as_boundary(tmp_path):
    """A 9 x 9 object with a 128 band eating its left 4 columns: the click moves right of the band's edge."""
    h = w = 21
    arr = np.zeros((h, w), np.uint8)
    arr[6:15, 6:15] = 255
    arr[6:15, 6:10] = 128  # the left part is "unknown"
    path = tmp_path / "m.png"
    Image.fromarray(arr).save(path)
    obj, ignore = read_mask(path)
    assert obj.sum() == 9 * 5 and ignore.sum() == 9 * 4
    # col 12 is 3 px from the band (col 9) and from the background (col 15); rows 8..12 tie at distance 3
    # (3 px from row 5 or row 15 at their ends), and raster order takes the top one
    assert first_click(obj) == (12, 8)
    assert first_click(obj | ignore) == (10, 10)  # without the band rule: the centre of the whole 9 x 9


def test_first_click_share_metric():
    def res(i: int, iou: float) -> InstanceResult:
        return InstanceResult(
            ann_id=i,
            image_id=i,
            category="object",
            size="large",
            area=1.0,
            mask_area=1,
            taps=[],
            empty_bands=(),
            first_click=(0, 0),
            first_click_iou=iou,
            mta_good=np.zeros(5, np.int64),
            mta_count=np.zeros(5, np.int64),
            n_predictions=1,
        )

    m = aggregate([res(i, v) for i, v in enumerate([0.5, 0.84, 0.85, 0.899, 0.9, 0.97])])
    assert m["first_click_share"] == {"0.85": 4 / 6, "0.90": 2 / 6}
    assert m["first_click_iou"] == pytest.approx((0.5 + 0.84 + 0.85 + 0.899 + 0.9 + 0.97) / 6)


def _write_mask(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("image_without_mask", "a_dog.jpg has no mask"),
        ("mask_without_image", "x_lost.png has no image"),
        ("values", "values 1, 200 are not allowed"),
        ("rgb", "mode 'RGB'"),
        ("size", "b_cup.png is 54x37 (W x H) but its image"),
        ("jpeg_mask", "JPEG masks are lossy"),
        ("no_object", "no object pixel"),
        ("two_images_one_stem", "share the stem 'b_cup'"),
        ("empty_images", "no images"),
        ("empty_masks", "no mask PNGs"),
    ],
)
def test_bad_folders_exit_2_naming_the_file_and_write_nothing(tmp_path, capsys, breakage, message):
    images, masks = write_folder(tmp_path / "data")
    h, w = OBJECTS["b_cup"][:2]
    if breakage == "image_without_mask":
        (masks / "a_dog.png").unlink()
    elif breakage == "mask_without_image":
        _write_mask(masks / "x_lost.png", np.full((5, 5), 255, np.uint8))
    elif breakage == "values":
        arr = np.zeros((h, w), np.uint8)
        arr[3, 3], arr[4, 4], arr[5, 5] = 1, 200, 255
        _write_mask(masks / "b_cup.png", arr)
    elif breakage == "rgb":
        _write_mask(masks / "b_cup.png", np.full((h, w, 3), 255, np.uint8))
    elif breakage == "size":
        _write_mask(masks / "b_cup.png", np.full((h, w + 1), 255, np.uint8))
    elif breakage == "jpeg_mask":
        _write_mask(masks / "d_extra.jpg", np.full((h, w), 255, np.uint8))
    elif breakage == "no_object":
        _write_mask(masks / "b_cup.png", np.full((h, w), 128, np.uint8))
    elif breakage == "two_images_one_stem":
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / "b_cup.jpg")
    elif breakage in ("empty_images", "empty_masks"):
        for path in (images if breakage == "empty_images" else masks).iterdir():
            path.unlink()
    out = tmp_path / "out"
    args = [
        "--method",
        "grabcut",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--out",
        str(out),
        "--quiet",
    ]
    assert eval_main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["data"]


def test_command_on_a_folder_and_argument_errors(tmp_path, capsys):
    images, masks = write_folder(tmp_path / "data")
    out = tmp_path / "out"
    # --images omitted: images/ next to --masks
    assert eval_main(["--method", "grabcut", "--masks", str(masks), "--out", str(out), "--quiet"]) == 0
    assert ">= 0.85" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_instances"] == 3 and set(m["first_click_share"]) == {"0.85", "0.90"}
    assert m["approximate"]["mta_stride"] == 16  # grabcut's default: approximate, flagged
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == ["a_dog.jpg", "b_cup.png", "c_sun.png"]
    report = (out / "report.md").read_text()
    assert "## Per object" in report and "| b_cup.png | 2 |" in report
    assert (out / "first_click.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".out.*"))  # the temporary folder is gone

    base = ["--method", "grabcut", "--out", str(tmp_path / "o2"), "--quiet"]
    for extra, message in (
        (["--masks", str(masks), "--ann", str(tmp_path / "x.json")], "either --ann"),
        ([], "either --ann"),
        (["--masks", str(tmp_path / "nope")], "--masks folder not found"),
        (["--masks", str(masks), "--shard", "3/2"], "1 <= I <= N"),
        (["--masks", str(masks), "--shard", "two"], "I/N"),
        (["--masks", str(masks), "--shard", "1/2", "--max-instances", "1"], "--max-instances cannot"),
    ):
        assert eval_main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "o2").exists()


def test_one_benchmark_many_methods(tmp_path):
    """The records are plain data: one load serves several evaluations and gives the same numbers."""
    images, masks = write_folder(tmp_path)
    bench = load_folder_benchmark(images, masks)
    method = from_callable(lambda im, xy: np.all(im == im[xy[1], xy[0]], axis=-1), "colour")
    cfg = EvalConfig(mta_stride=0, progress=False, n_showcase=0)
    a, b = evaluate(method, bench, cfg), evaluate(method, bench, cfg)
    assert a.metrics["miou_t"] == b.metrics["miou_t"] and a.metrics["first_click_iou"] > 0.5


def test_read_mask_rejects_palette_and_16_bit(tmp_path):
    pal = Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").convert("P")
    pal.save(tmp_path / "p.png")
    Image.fromarray(np.full((4, 4), 255, np.uint16)).save(tmp_path / "i16.png")
    for name in ("p.png", "i16.png"):
        with pytest.raises(BenchmarkError, match=name):
            read_mask(tmp_path / name)


@pytest.mark.skipif(not (SHARED / "GrabCut" / "masks").is_dir(), reason=f"shared data not found at {SHARED}")
def test_real_grabcut_and_berkeley_load():
    grabcut = load_folder_benchmark(SHARED / "GrabCut" / "images", SHARED / "GrabCut" / "masks")
    berkeley = load_folder_benchmark(SHARED / "Berkeley" / "images", SHARED / "Berkeley" / "masks")
    assert len(grabcut.images) == 50 and len(berkeley.images) == 100
    with_band = sum(r.instances()[0].ignore is not None for r in grabcut.images)
    assert with_band == 42  # 8 GrabCut masks have no 128 band; Berkeley has none
    assert all(r.instances()[0].ignore is None for r in berkeley.images[:10])


def test_tracenet_cli_refuses_a_bad_mask_with_exit_2(tmp_path):
    """The installed command line (not only the module entry point): exit 2, the file named, no output."""
    import os
    import subprocess
    import sys

    images, masks = write_folder(tmp_path / "data")
    h, w = OBJECTS["c_sun"][:2]
    Image.fromarray(np.full((h, w), 254, np.uint8)).save(masks / "c_sun.png")  # anti-aliased edge value
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "tracenet.cli", "eval", "--method", "grabcut", "--masks", str(masks)]
    proc = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"mask {masks / 'c_sun.png'}: values 254 are not allowed" in proc.stderr
    assert not out.exists()
