"""The ``tracenet segment`` command on a real bundled photo, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tracenet
from tests.models import PREVIOUS_DEFAULT

EXAMPLES = Path(tracenet.__file__).resolve().parent / "examples"


def _tracenet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracenet.cli", *args], capture_output=True, text=True, timeout=300)


def test_segment_writes_a_mask_and_overlay_for_the_bundled_cat(tmp_path: Path) -> None:
    out, over = tmp_path / "mask.png", tmp_path / "overlay.jpg"
    proc = _tracenet("segment", str(EXAMPLES / "cat.png"), "--tap", "220,150", "--tap", "40,250", "--out", str(out),
                     "--overlay", str(over), "--min-score", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["tap"] for line in lines] == [[220, 150], [40, 250]]
    mask = np.array(Image.open(out))
    assert mask.shape == (300, 451) and set(np.unique(mask)) <= {0, 255}
    found_pixels = sum(line["mask_pixels"] for line in lines if line["found"])
    assert (mask > 0).sum() <= found_pixels and ((mask > 0).sum() > 0) == (found_pixels > 0)
    assert Image.open(over).size == (451, 300)
    for line in lines:
        assert line["macs"] <= line["full_macs"]


def test_fullnet_flag_gives_the_same_mask(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    common = ["--tap", "300,120", "--min-score", "0"]
    assert _tracenet("segment", str(EXAMPLES / "coffee.png"), *common, "--out", str(a)).returncode == 0
    assert _tracenet("segment", str(EXAMPLES / "coffee.png"), *common, "--out", str(b), "--fullnet").returncode == 0
    assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(b)))


@pytest.mark.parametrize(("args", "message"), [
    (["--tap", "999,10"], "outside the 451x300 image"),
    (["--tap", "1;2"], "tap must be X,Y"),
])
def test_bad_taps_are_reported(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _tracenet("segment", str(EXAMPLES / "cat.png"), *args, "--out", str(tmp_path / "m.png"))
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "m.png").exists()


def test_unreadable_image_and_wrong_checkpoint_are_reported(tmp_path: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a photo")
    proc = _tracenet("segment", str(fake), "--tap", "1,1", "--out", str(tmp_path / "m.png"))
    assert proc.returncode == 2 and "photo.jpg" in proc.stderr and "Traceback" not in proc.stderr
    pickle_file = tmp_path / "model.pth"
    pickle_file.write_bytes(b"\x80\x04\x95 not a safetensors file")
    proc = _tracenet("segment", str(EXAMPLES / "cat.png"), "--tap", "1,1", "--out", str(tmp_path / "m.png"),
                     "--checkpoint", str(pickle_file))
    assert proc.returncode == 2 and "not a TraceNet checkpoint" in proc.stderr


def test_selection_flag_switches_between_the_ranker_and_the_papers_rule(tmp_path: Path) -> None:
    """On this tap of coffee.png the previous bundled model's ranker and the paper's NMS top-1 pick different
    candidates; each CLI choice must match the library's answer for it."""
    tap = (320, 140)
    for selection in ("ranker", "paper"):
        out = tmp_path / f"{selection}.png"
        proc = _tracenet("segment", str(EXAMPLES / "coffee.png"), "--tap", f"{tap[0]},{tap[1]}", "--out", str(out),
                         "--selection", selection, "--json", "--checkpoint", str(PREVIOUS_DEFAULT), "--no-zoom")
        assert proc.returncode == 0, proc.stderr
        seg = tracenet.load(str(PREVIOUS_DEFAULT), selection=selection, zoom=False)
        seg.set_image(EXAMPLES / "coffee.png")
        expected = seg.predict(tap).mask
        assert np.array_equal(np.array(Image.open(out)) > 0, expected)
        assert json.loads(proc.stdout)["level"] == seg.predict(tap).level
    assert not np.array_equal(np.array(Image.open(tmp_path / "ranker.png")), np.array(Image.open(tmp_path / "paper.png")))


def test_zoom_flag_zooms_in_on_a_small_object_and_no_zoom_does_not(tmp_path: Path) -> None:
    cat = Image.open(EXAMPLES / "cat.png").convert("RGB")
    photo = Image.new("RGB", (900, 600), (120, 120, 120))
    photo.paste(cat.resize((90, 60), Image.Resampling.BILINEAR), (500, 250))  # the cat, 5x smaller
    photo.save(tmp_path / "small_cat.png")
    runs = {}
    for flag in ("--zoom", "--no-zoom"):
        out = tmp_path / f"{flag}.png"
        proc = _tracenet("segment", str(tmp_path / "small_cat.png"), "--tap", "544,280", "--out", str(out),
                         "--refine", "none", flag, "--json")
        assert proc.returncode == 0, proc.stderr
        runs[flag] = json.loads(proc.stdout), np.array(Image.open(out)) > 0
    (zoomed, zmask), (plain, pmask) = runs["--zoom"], runs["--no-zoom"]
    assert plain["zoom_window"] is None and zoomed["zoom_window"] is not None
    x0, y0, x1, y1 = zoomed["zoom_window"]
    assert x0 <= 500 and y0 <= 250 and x1 >= 590 and y1 >= 310  # the window holds the cat
    assert not zmask[:y0].any() and not zmask[y1:].any() and not zmask[:, :x0].any() and not zmask[:, x1:].any()
    assert zmask.sum() == zoomed["mask_pixels"] and not np.array_equal(zmask, pmask)
