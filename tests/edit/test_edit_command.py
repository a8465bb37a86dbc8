"""`tracenet edit` end to end on real files, with the flood-fill stand-in for the model."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from tracenet.edit.command import add_arguments, run


@pytest.fixture
def edit(segmenter_cls):
    """Run `tracenet edit ARGV` with the stand-in segmenter; returns the exit code."""

    def _run(argv: list[str], segmenter=None) -> int:
        parser = argparse.ArgumentParser(prog="tracenet edit")
        add_arguments(parser)
        return run(parser.parse_args(argv), load_segmenter=lambda checkpoint: segmenter or segmenter_cls())

    return _run


@pytest.fixture
def photo(tmp_path, make_scene):
    image, mask = make_scene()
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    return path, image, mask


@pytest.mark.parametrize("effect", ["blur", "replace", "splash", "cutout"])
def test_each_effect_writes_an_image(edit, effect, photo, tmp_path, capsys):
    path, image, mask = photo
    out = tmp_path / f"out-{effect}.png"
    assert edit([str(path), "--tap", "40,30", "--effect", effect, "--out", str(out)]) == 0
    result = np.asarray(Image.open(out))
    assert result.shape == ((*mask.shape, 4) if effect == "cutout" else image.shape)
    assert "wrote" in capsys.readouterr().out


def test_replace_with_colour_and_mask_out(edit, photo, tmp_path):
    path, image, mask = photo
    out, mask_out = tmp_path / "o.png", tmp_path / "m.png"
    code = edit(
        [
            str(path),
            "--tap",
            "40,30",
            "--effect",
            "replace",
            "--color",
            "0,0,255",
            "--feather",
            "0",
            "--out",
            str(out),
            "--mask-out",
            str(mask_out),
        ]
    )
    assert code == 0
    result = np.asarray(Image.open(out))
    assert (result[~mask] == (0, 0, 255)).all()
    np.testing.assert_array_equal(np.asarray(Image.open(mask_out)) > 0, mask)


def test_replace_with_background_picture(edit, photo, tmp_path):
    path, image, mask = photo
    back = tmp_path / "back.jpg"
    Image.new("RGB", (20, 20), (0, 200, 0)).save(back)
    out = tmp_path / "o.png"
    assert (
        edit(
            [
                str(path),
                "--tap",
                "40,30",
                "--effect",
                "replace",
                "--background",
                str(back),
                "--feather",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = np.asarray(Image.open(out)).astype(int)
    assert np.abs(result[~mask] - (0, 200, 0)).max() <= 3  # JPEG background


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tap", "500,30", "--effect", "blur"], "outside"),
        (["--tap", "40,30", "--effect", "blur", "--color", "1,2,3"], "only apply to --effect replace"),
        (["--tap", "2,2", "--effect", "blur"], "no object"),
    ],
)
def test_user_errors_exit_2_with_message(edit, segmenter_cls, argv, message, photo, tmp_path, capsys):
    path, _, _ = photo
    segmenter = None
    if message == "no object":  # a segmenter that finds nothing
        segmenter = segmenter_cls()
        real_predict = segmenter.predict

        def predict_nothing(tap):
            res = real_predict(tap)
            res.mask[:] = False
            return res

        segmenter.predict = predict_nothing
    assert edit([str(path), *argv, "--out", str(tmp_path / "o.png")], segmenter) == 2
    assert message in capsys.readouterr().err


def test_cutout_refuses_jpeg_and_bad_image(edit, photo, tmp_path, capsys):
    path, _, _ = photo
    assert edit([str(path), "--tap", "40,30", "--effect", "cutout", "--out", str(tmp_path / "o.jpg")]) == 2
    assert "transparent" in capsys.readouterr().err
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert edit([str(text), "--tap", "1,1", "--effect", "blur", "--out", str(tmp_path / "o.png")]) == 2
    assert "not an image" in capsys.readouterr().err


def test_bad_tap_syntax_is_an_argparse_error(edit, photo, capsys):
    path, _, _ = photo
    with pytest.raises(SystemExit):
        edit([str(path), "--tap", "forty", "--effect", "blur", "--out", "x.png"])
    assert "X,Y in image pixels" in capsys.readouterr().err
