"""Failed commands write nothing (every output checked first, all written at the end through temp files) and
numbers on the command line are checked: `tracenet segment` on the bundled cat, `tracenet edit` with a stand-in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tracenet
from tests.standins import FloodFillSegmenter
from tracenet.cli import main
from tracenet.edit.command import add_arguments as add_edit_arguments
from tracenet.edit.command import parse_tap
from tracenet.edit.command import run as run_edit

CAT = Path(tracenet.__file__).resolve().parent / "examples" / "cat.png"
OLD = b"old contents, must survive a failed command"


def _segment(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(["segment", str(CAT), *args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    return code, capsys.readouterr().err


def _untouched(folder: Path, *keep: Path) -> None:
    for path in keep:
        assert path.read_bytes() == OLD, f"{path} was overwritten"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in keep), "a file was left behind"


def test_segment_with_a_bad_overlay_suffix_writes_nothing_and_names_the_overlay(tmp_path, capsys) -> None:
    out = tmp_path / "m.png"
    out.write_bytes(OLD)
    code, err = _segment(capsys, "--tap", "220,150", "--out", str(out), "--overlay", str(tmp_path / "o.bmpx"))
    assert code == 2 and "--overlay" in err and "o.bmpx" in err and "unknown image type" in err
    _untouched(tmp_path, out)


def test_segment_writes_no_mask_when_a_later_tap_fails(tmp_path, capsys) -> None:
    out, over = tmp_path / "m.png", tmp_path / "o.jpg"
    out.write_bytes(OLD)
    over.write_bytes(OLD)
    code, err = _segment(capsys, "--tap", "220,150", "--tap", "999,10", "--out", str(out), "--overlay", str(over))
    assert code == 2 and "outside the 451x300 image" in err
    _untouched(tmp_path, out, over)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--out", "{d}/m.jpg"], "--out"),
        (["--out", "{d}/blocker/m.png"], "is a file, not a folder"),
        (["--out", "{d}/m.png", "--overlay", "{d}/m.png"], "same file"),
        (["--out", "{d}/m.png", "--min-score", "nan"], "--min-score must be a number in [0, 1]"),
    ],
)
def test_segment_checks_outputs_and_numbers_before_running(tmp_path, capsys, args, words) -> None:
    (tmp_path / "blocker").write_bytes(OLD)
    code, err = _segment(capsys, "--tap", "220,150", *(a.format(d=tmp_path) for a in args))
    assert code == 2 and words in err and "Traceback" not in err
    _untouched(tmp_path, tmp_path / "blocker")


@pytest.mark.parametrize("tap", ["inf,5", "1e400,5", "nan,3", "5,-inf"])
def test_non_finite_taps_are_a_usage_error(tmp_path, capsys, tap) -> None:
    code, err = _segment(capsys, "--tap", tap, "--out", str(tmp_path / "m.png"))
    assert code == 2 and "finite" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_fractional_taps_are_floored_like_the_library(tmp_path, capsys) -> None:
    """Decision: a tap at x = 220.9 is in pixel 220 (pixel i covers [i, i + 1)), in the CLI, the app and
    TapSegmenter.predict alike; the CLI used to round it to 221."""
    assert parse_tap("220.9,150.6") == (220, 150)
    assert parse_tap("-0.5,3") == (-1, 3)  # then reported as outside the image
    out = tmp_path / "m.png"
    assert main(["segment", str(CAT), "--tap", "215.9,148.99", "--out", str(out), "--min-score", "0", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["tap"] == [215, 148]
    seg = tracenet.load(min_score=0.0)
    seg.set_image(CAT)
    assert np.array_equal(np.array(Image.open(out)) > 0, seg.predict((215.9, 148.99)).mask)


# ------------------------------------------------------------------------------------------------ tracenet edit
@pytest.fixture
def photo(tmp_path) -> Path:
    image = np.full((64, 96, 3), 60, np.uint8)
    image[16:48, 24:72] = (200, 30, 40)
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(image).save(path)
    return path


def _edit(argv: list[str], segmenter=None) -> int:
    parser = argparse.ArgumentParser(prog="tracenet edit")
    add_edit_arguments(parser)
    return run_edit(parser.parse_args(argv), load_segmenter=lambda _: segmenter or FloodFillSegmenter())


def test_edit_with_a_bad_mask_out_writes_nothing_and_blames_the_mask_out(photo, tmp_path, capsys) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "e.png"
    out.write_bytes(OLD)
    code = _edit([str(photo), "--tap", "30,30", "--effect", "blur", "--out", str(out),
                  "--mask-out", str(out_dir / "x.xyz")])
    err = capsys.readouterr().err
    assert code == 2 and "--mask-out" in err and "x.xyz" in err and "e.png" not in err
    _untouched(out_dir, out)


def test_edit_writes_nothing_when_a_later_tap_fails(photo, tmp_path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out, mask_out = out_dir / "e.png", out_dir / "m.png"
    out.write_bytes(OLD)
    boom = FloodFillSegmenter(boom_at=(40, 20))
    with pytest.raises(RuntimeError, match="simulated model failure"):
        _edit([str(photo), "--tap", "30,30", "--tap", "40,20", "--effect", "cutout", "--out", str(out),
               "--mask-out", str(mask_out)], boom)
    _untouched(out_dir, out)


def test_edit_checks_out_before_loading_the_model(photo, tmp_path, capsys) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(OLD)
    loaded = []
    parser = argparse.ArgumentParser()
    add_edit_arguments(parser)
    args = parser.parse_args([str(photo), "--tap", "30,30", "--effect", "blur", "--out", str(blocker / "e.png")])
    assert run_edit(args, load_segmenter=lambda _: loaded.append(1)) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and not loaded
    assert blocker.read_bytes() == OLD


@pytest.mark.parametrize("feather", ["inf", "1e9", "nan", "-1"])
def test_edit_refuses_unbounded_feather(photo, tmp_path, capsys, feather) -> None:
    out = tmp_path / "e.png"
    assert _edit([str(photo), "--tap", "30,30", "--effect", "blur", "--feather", feather, "--out", str(out)]) == 2
    assert "--feather must be in [0, 50]" in capsys.readouterr().err
    assert not out.exists()


def test_edit_writes_both_files_when_everything_succeeds(photo, tmp_path) -> None:
    out, mask_out = tmp_path / "sub" / "e.png", tmp_path / "sub" / "m.png"
    assert _edit([str(photo), "--tap", "30,30", "--effect", "cutout", "--feather", "0", "--out", str(out),
                  "--mask-out", str(mask_out)]) == 0
    assert np.array(Image.open(out))[..., 3].astype(bool).sum() == 32 * 48
    assert (np.array(Image.open(mask_out)) > 0).sum() == 32 * 48
    assert sorted(p.name for p in out.parent.iterdir()) == ["e.png", "m.png"]  # no temp files left
