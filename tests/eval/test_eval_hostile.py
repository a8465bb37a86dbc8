"""`tracenet eval` on crafted annotation files and arguments: a clear error and exit 2 before any work, nothing
written, and nothing crafted ever reaches pycocotools (which segfaults or allocates without bound on it)."""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.eval.test_eval_end_to_end import write_dataset
from tracenet.eval.__main__ import main as eval_main
from tracenet.eval.coco_checks import rle_string_counts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, dict]:
    ann = write_dataset(tmp_path / "data")
    return ann, json.loads(ann.read_text())


def _crafted(dataset, tmp_path, change) -> Path:
    """A copy of the good annotation file with ``change(data)`` applied (or replaced by its return value)."""
    ann, data = dataset
    data = copy.deepcopy(data)
    replaced = change(data)
    path = tmp_path / "data" / "crafted.json"
    path.write_text(json.dumps(data if replaced is None else replaced))
    return path


def _argv(ann: Path, out: Path, *extra: str) -> list[str]:
    return ["--method", "grabcut", "--ann", str(ann), "--images", str(ann.parent / "images"), "--out", str(out),
            "--mta-stride", "0", "--no-plots", "--quiet", "--check-group-key", "0", *extra]


def _seg(index: int, value):
    def change(data):
        data["annotations"][index]["segmentation"] = value
    return change


CASES = {
    "top-level list": (lambda d: [], "the top level must be a JSON object"),
    "top-level null": (None, "the top level must be a JSON object"),  # the file is the JSON text `null`
    "top-level empty object": (lambda d: {}, "'images' must be a list"),
    "no segmentation": (lambda d: d["annotations"][0].pop("segmentation") and None, "has no segmentation"),
    "4-number polygon": (_seg(0, [[10, 10, 50, 60]]), "polygon 0 has 4 numbers"),
    "string segmentation": (_seg(1, "10,10,50,60"), "segmentation must be a list of polygons or an RLE"),
    "null segmentation": (_seg(1, None), "segmentation must be a list of polygons or an RLE"),
    "empty polygon list": (_seg(0, []), "segmentation is an empty list"),
    "NaN coordinate": (_seg(0, [[10, 10, 50, 10, 50, float("nan")]]), "finite numbers"),
    "string coordinate": (_seg(0, [[10, 10, 50, 10, 50, "60"]]), "finite numbers"),
    "image id missing": (lambda d: d["annotations"][0].update(image_id=77), "image_id 77 is not in 'images'"),
    "string height": (lambda d: d["images"][0].update(height="96"), "height and width must be positive ints"),
    "absolute file_name": (lambda d: d["images"][0].update(file_name="/etc/passwd"), "must be a path relative"),
    "file_name outside": (lambda d: d["images"][0].update(file_name="../outside.png"), "without '..'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_annotations_are_a_clear_error_and_write_nothing(dataset, tmp_path, capsys, case) -> None:
    change, words = CASES[case]
    if case == "top-level null":
        path = tmp_path / "data" / "crafted.json"
        path.write_text("null")
    else:
        path = _crafted(dataset, tmp_path, change)
    (tmp_path / "data" / "outside.png").write_bytes((tmp_path / "data" / "images" / "000001.png").read_bytes())
    out = tmp_path / "out"
    assert eval_main(_argv(path, out)) == 2
    err = capsys.readouterr().err
    assert words in err and "crafted.json" in err, err
    assert not out.exists()


def _run_limited(argv: list[str]) -> subprocess.CompletedProcess:
    """The command in a child process limited to 6 GB of address space: on an unchecked file pycocotools
    segfaults or runs out of memory there instead of taking the test run down."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tracenet.eval", *argv], capture_output=True, text=True,
                          timeout=300, preexec_fn=limit, env=env, cwd=REPO)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([[10, 10, 1e30, 10, 50, 60]], "polygon 0 has points outside the 128x96 image"),
        ([[10, 10, 1e9, 10, 50, 60]], "polygon 0 has points outside the 128x96 image"),
        ({"size": [96, 128], "counts": [0, 96 * 128 * 50]}, "sum to height * width = 12288"),
        ({"size": [96, 128], "counts": "PPPPPPPPPPPP0"}, "RLE counts"),
        ({"size": [9600, 128], "counts": [0, 96 * 128]}, "does not match the image's [height, width]"),
    ],
)
def test_coordinates_that_crash_pycocotools_never_reach_it(dataset, tmp_path, value, words) -> None:
    path = _crafted(dataset, tmp_path, _seg(0, value))
    proc = _run_limited(_argv(path, tmp_path / "out"))
    assert proc.returncode == 2 and words in proc.stderr, (proc.returncode, proc.stderr[-2000:])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("extra", "words"), [(["--max-images", "-1"], "--max-images must be >= 1"),
                                              (["--max-images", "0"], "--max-images must be >= 1"),
                                              (["--max-instances", "0"], "--max-instances must be >= 1")])
def test_count_arguments_are_checked(dataset, tmp_path, capsys, extra, words) -> None:
    assert eval_main(_argv(dataset[0], tmp_path / "out", *extra)) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_pointing_at_a_file_fails_before_the_run(dataset, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "taken"
    out.write_text("keep me")
    import importlib

    evaluate_module = importlib.import_module("tracenet.eval.evaluate")  # the package re-exports evaluate()
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: pytest.fail("the run started"))
    assert eval_main(_argv(dataset[0], out)) == 2
    assert "--out" in capsys.readouterr().err and out.read_text() == "keep me"
    assert eval_main(_argv(dataset[0], out / "sub")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_good_file_still_runs_and_writes_metrics(dataset, tmp_path) -> None:
    out = tmp_path / "out"
    assert eval_main(_argv(dataset[0], out, "--max-images", "1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 1 and metrics["n_instances"] == 3


@pytest.mark.parametrize("seed", range(5))
def test_compressed_rle_counts_decode_like_pycocotools(seed) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, 2)
    mask = np.asfortranarray(rng.random((h, w)) < rng.random())
    counts = rle_string_counts(mask_utils.encode(mask)["counts"].decode())
    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
    assert np.array_equal(flat.reshape(w, h).T, mask)
