"""Resume continues the learning-rate schedule (warmup and steps), and a missing data folder is a usage error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.synth import make_shapes_dataset
from tracenet.cli import main as cli_main
from tracenet.train import train, train_preset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=6, size=48, seed=2)


def _lrs(run_dir: Path) -> list[float]:
    return [json.loads(ln)["lr"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if "lr" in ln]


def test_resume_restores_the_scheduler_mid_warmup_and_across_a_step(shapes, tmp_path):
    """Guards "resume skips the scheduler state": the smoke preset has no warmup and no steps, so a resume that
    rebuilt the schedule from scratch would look right there. Here warmup 4 iterations from factor 0.1 and one
    step at iteration 5 (gamma 0.1), base LR 0.01; stopped after 2 iterations and resumed. The LR of iteration
    ``it`` (0-based) by hand: ``0.01 * 0.1 ** (it >= 5) * (0.1 * (1 - it / 4) + it / 4 if it < 4 else 1)``."""
    ann, images = shapes
    cfg = train_preset("smoke", max_iters=7, checkpoint_every=2, warmup_iters=4, warmup_factor=0.1, steps=(5,),
                       gamma=0.1)
    train(cfg, ann_file=ann, images_dir=images, out_dir=tmp_path, progress=False, stop_at=2)
    assert _lrs(tmp_path) == pytest.approx([0.001, 0.00325])
    train(cfg, ann_file=ann, images_dir=images, out_dir=tmp_path, progress=False, resume=tmp_path)
    expected = [0.001, 0.00325, 0.0055, 0.00775, 0.01, 0.001, 0.001]
    assert _lrs(tmp_path) == pytest.approx(expected, rel=1e-6)


def test_train_with_a_missing_data_folder_exits_2_and_writes_nothing(tmp_path, capsys):
    """Guards "``tracenet train --data <missing>`` exits 1" (a bare SystemExit with a message): bad input is exit
    code 2 with a message naming the missing path, and ``--out`` is not created."""
    missing, out = tmp_path / "nowhere", tmp_path / "run"
    assert cli_main(["train", "--preset", "smoke", "--data", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(missing / "train.json") in err and "not found" in err
    assert not out.exists()
    # the real process exit code, through the module entry point too
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "tracenet.train", "--preset", "smoke", "--data", str(missing),
                           "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert str(missing / "train.json") in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
