"""The rule that decides whether a candidate model replaces the bundled default (tracenet.eval.candidate)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tracenet.eval.candidate import DEFAULT_EVALS, STAGES, decide, decision_markdown, main
from tracenet.tap.zoom import ZoomConfig


def _write(folder: Path, **values: float) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(values))


@pytest.fixture()
def reference(tmp_path: Path) -> Path:
    """The default's four evaluations: every metric 0.2."""
    ref = tmp_path / "ref"
    for stage in STAGES:
        _write(ref / stage.reference(), miou_t=0.2, mta=0.2, first_click_iou=0.2)
    return ref


def test_wins_everywhere_is_yes_and_goals_are_checked(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "cand"
    _write(out / "val", miou_t=0.21, mta=0.3, first_click_iou=0.4)
    _write(out / "val-refined", miou_t=0.27, mta=0.25, first_click_iou=0.4)
    _write(out / "grabcut", miou_t=0.0, mta=0.0, first_click_iou=0.79)  # only mIoU@1 counts there
    _write(out / "berkeley", miou_t=0.0, mta=0.0, first_click_iou=0.74)
    rows, verdict = decide(out, reference)
    assert verdict == "yes"
    assert len(rows) == 8
    goals = {(r.title, r.metric): r.meets_goal for r in rows}
    assert goals[(STAGES[1].title, "miou_t")] is False  # 0.27 < 0.28
    assert goals[(STAGES[1].title, "mta")] is True  # 0.25 >= 0.25: the goal is inclusive
    assert goals[(STAGES[2].title, "first_click_iou")] is True
    assert goals[(STAGES[3].title, "first_click_iou")] is False
    assert goals[(STAGES[0].title, "miou_t")] is None  # no goal on the unrefined val row
    md = decision_markdown(rows, verdict)
    assert "Replaces the default: yes" in md
    assert "| Berkeley (100), as shipped | mIoU@1 (first click) | 0.200 | 0.740 | +0.540 | yes | 0.750 | **no** |" in md


def test_one_tie_or_loss_is_no_even_with_stages_missing(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "cand"
    _write(out / "val", miou_t=0.9, mta=0.2, first_click_iou=0.9)  # mTA ties: not a win
    rows, verdict = decide(out, reference)
    assert verdict == "no"
    assert [r.wins for r in rows[:3]] == [True, False, True]
    assert all(r.candidate is None for r in rows[3:])


def test_unscored_stages_leave_it_open(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "cand"
    _write(out / "val", miou_t=0.9, mta=0.9, first_click_iou=0.9)
    _, verdict = decide(out, reference)
    assert verdict == "incomplete"
    assert main([str(out), "--reference", str(reference)]) == 1


def test_missing_reference_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "cand"), "--reference", str(tmp_path / "nowhere")]) == 2
    assert f"{DEFAULT_EVALS}-val" in capsys.readouterr().err
    assert main([str(tmp_path / "cand"), "--reference", str(tmp_path), "--reference-name", "older"]) == 2
    assert "older-val" in capsys.readouterr().err


def test_committed_reference_evaluations_are_the_ones_named() -> None:
    """The stages point at evaluations this repository holds (a renamed results folder would break scoring), made
    as a candidate is scored (ranker, zoom pass with the shipped settings): a reference scored without the zoom
    pass, or before its ``min_inside`` rule, would judge a candidate against a default that does not ship."""
    root = Path(__file__).resolve().parents[2] / "results" / "eval"
    shipped_zoom = dataclasses.asdict(ZoomConfig())
    for stage in STAGES:
        metrics = json.loads((root / stage.reference() / "metrics.json").read_text())
        assert metrics["n_instances"] > 0
        for key, _ in stage.metrics:
            assert 0.0 < metrics[key] < 1.0
        assert metrics["selection"] == "ranker" and metrics["zoom"] is True, stage.reference()
        assert metrics["zoom_cfg"] == shipped_zoom, stage.reference()
        assert metrics["refine"] == ("none" if stage.folder == "val" else "grabcut"), stage.reference()
