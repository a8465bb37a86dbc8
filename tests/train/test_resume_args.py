"""``--resume RUN`` alone continues a run: the recipe comes from the run's ``train_args.json``."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.data.synth import make_shapes_dataset
from tracenet.model import read_checkpoint
from tracenet.train.command import ARGS_FILE, add_arguments, complete_from_run, main


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=6, size=48, seed=3)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def _steps(run_dir) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def test_resume_with_only_the_run_folder_continues_the_recorded_recipe(shapes, tmp_path):
    """Guards "``--resume`` without the original arguments silently trains another recipe (the cpu preset on
    ../shared/data)" or fails: the run stops at 2 of 4 iterations, then ``--resume RUN`` alone finishes it with
    the recorded preset, data, iteration count and learning rate, into the same folder."""
    ann, images = shapes
    run = tmp_path / "run"
    argv = ["--preset", "smoke", "--ann", str(ann), "--images", str(images), "--iters", "4", "--lr", "0.003",
            "--checkpoint-every", "2", "--out", str(run), "--no-progress"]
    assert main(argv + ["--stop-at", "2"]) == 0
    recorded = json.loads((run / ARGS_FILE).read_text())
    assert recorded["preset"] == "smoke" and recorded["iters"] == 4 and recorded["lr"] == 0.003
    assert recorded["ann"] == str(ann) and recorded["images"] == str(images)
    assert _steps(run) == [1, 2]

    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert _steps(run) == [1, 2, 3, 4]
    lrs = [json.loads(ln)["lr"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.003] * 4)
    _, _, meta = read_checkpoint(run / "model_final.safetensors")
    assert meta["step"] == 4


def test_arguments_given_on_the_command_line_win_over_the_recorded_ones(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ARGS_FILE).write_text(json.dumps({"preset": "smoke", "data": "d", "lr": 0.5, "class_agnostic": True,
                                             "partial": ["p1"], "iters": 9}))
    args = complete_from_run(_parse(["--resume", str(run / "checkpoints" / "step_0000002"), "--lr", "0.1",
                                     "--per-category"]))
    assert args.out == run  # the run folder found from a checkpoint folder inside it
    assert args.lr == 0.1 and args.class_agnostic is False  # given
    assert args.preset == "smoke" and args.iters == 9 and str(args.data) == "d" and [str(p) for p in args.partial] == ["p1"]
    assert str(args.data_root) == "../shared/data"  # not recorded: the default


def test_resume_of_a_run_without_arguments_file_needs_out(tmp_path):
    with pytest.raises(ValueError, match="no train_args.json there"):
        complete_from_run(_parse(["--resume", str(tmp_path)]))
    with pytest.raises(ValueError, match="give --out"):
        complete_from_run(_parse(["--preset", "smoke"]))


def test_a_corrupt_arguments_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / ARGS_FILE).write_text("[1, 2")
    assert main(["--resume", str(tmp_path)]) == 2
    assert ARGS_FILE in capsys.readouterr().err
