"""Does a candidate model replace the bundled default? Issue 14's rule, from ``metrics.json`` files.

``python -m tracenet.eval.candidate OUT [--reference results/eval] [--reference-name NAME]`` reads the evaluations that
``scripts/score_candidate.sh`` wrote under ``OUT`` (one folder per stage) and the bundled default's committed
evaluations of the same settings, and prints one Markdown table: per set and metric the default's value, the
candidate's, the difference, the goal of issue 14 and whether the candidate wins. The candidate replaces the default
only if it beats it on every row (coco-mini val: mIoU-T, mTA and first click; GrabCut and Berkeley: mIoU@1); a stage
not yet scored leaves the verdict open ("incomplete"), never a yes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_EVALS", "STAGES", "Row", "decide", "decision_markdown", "main"]


@dataclass(frozen=True)
class Stage:
    """One scored setting: the candidate's folder under OUT (the reference's is ``f"{name}-{folder}"`` under the
    reference root), the metrics that must improve and issue 14's goal for each (None: no goal, only "beat the
    default")."""

    folder: str
    title: str
    metrics: tuple[tuple[str, float | None], ...]

    def reference(self, name: str | None = None) -> str:
        """The reference evaluation's folder name: ``f"{name}-{folder}"`` (default name: :data:`DEFAULT_EVALS`)."""
        return f"{name or DEFAULT_EVALS}-{self.folder}"


DEFAULT_EVALS = "long-lite1"
"""Prefix of the bundled default's evaluations under ``results/eval`` (``long-lite1-val``, ``-val-refined``,
``-grabcut``, ``-berkeley``): long-lite1 with its tap ranker, the zoom pass and its ``min_inside`` rule, shipped
since session 22 (before: ``min-inside``, long-lite0, sessions 17-21). A model that replaces the default brings
its own four folders, and this prefix moves to them; ``--reference-name`` judges against other folders."""

STAGES: tuple[Stage, ...] = (
    Stage("val", "coco-mini val, network mask (exact mTA)",
          (("miou_t", None), ("mta", None), ("first_click_iou", None))),
    Stage("val-refined", "coco-mini val, as shipped (GrabCut refinement, mTA ~)",
          (("miou_t", 0.28), ("mta", 0.25), ("first_click_iou", None))),
    Stage("grabcut", "GrabCut (50), as shipped",
          (("first_click_iou", 0.78),)),
    Stage("berkeley", "Berkeley (100), as shipped",
          (("first_click_iou", 0.75),)),
)

_NAMES = {"miou_t": "mIoU-T", "mta": "mTA", "first_click_iou": "mIoU@1 (first click)"}


@dataclass(frozen=True)
class Row:
    """One (set, metric) comparison; ``candidate`` is None when that stage has not been scored."""

    title: str
    metric: str
    default: float
    candidate: float | None
    goal: float | None

    @property
    def wins(self) -> bool | None:
        return None if self.candidate is None else self.candidate > self.default

    @property
    def meets_goal(self) -> bool | None:
        if self.goal is None or self.candidate is None:
            return None
        return self.candidate >= self.goal


def _metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def decide(out: str | Path, reference: str | Path = "results/eval",
           name: str = DEFAULT_EVALS) -> tuple[list[Row], str]:
    """Rows for every stage and metric, and the verdict: ``"yes"`` (wins every row), ``"no"`` (loses or ties
    at least one scored row) or ``"incomplete"`` (no lost row yet, but a stage is unscored). The reference of a
    stage is ``reference / f"{name}-{stage.folder}"``; a missing one is an error naming the folder."""
    rows: list[Row] = []
    for stage in STAGES:
        folder = Path(reference) / stage.reference(name)
        ref = _metrics(folder)
        if ref is None:
            raise FileNotFoundError(f"no reference evaluation at {folder}")
        cand = _metrics(Path(out) / stage.folder)
        for key, goal in stage.metrics:
            rows.append(Row(stage.title, key, float(ref[key]), None if cand is None else float(cand[key]), goal))
    if any(r.wins is False for r in rows):
        verdict = "no"
    elif any(r.wins is None for r in rows):
        verdict = "incomplete"
    else:
        verdict = "yes"
    return rows, verdict


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _flag(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[value]


def decision_markdown(rows: list[Row], verdict: str) -> str:
    """The table and the verdict as Markdown."""
    lines = [
        "| set | metric | bundled default | candidate | difference | beats default | issue-14 goal | goal met |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        diff = None if r.candidate is None else r.candidate - r.default
        lines.append(
            f"| {r.title} | {_NAMES[r.metric]} | {_cell(r.default)} | {_cell(r.candidate)} | "
            f"{_cell(diff, signed=True)} | {_flag(r.wins)} | {_cell(r.goal)} | {_flag(r.meets_goal)} |"
        )
    say = {
        "yes": "**Replaces the default: yes** (it beats the bundled model on every row).",
        "no": "**Replaces the default: no** (it does not beat the bundled model on every row).",
        "incomplete": "**Replaces the default: not decided** (some stages are not scored yet).",
    }[verdict]
    return "\n".join(lines) + "\n\n" + say + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m tracenet.eval.candidate OUT [--reference DIR] [--reference-name NAME]``; exit 0 for yes, 1 for no or incomplete."""
    parser = argparse.ArgumentParser(prog="python -m tracenet.eval.candidate", description=__doc__)
    parser.add_argument("out", help="the candidate's folder written by scripts/score_candidate.sh")
    parser.add_argument("--reference", default="results/eval", help="the bundled default's evaluations")
    parser.add_argument("--reference-name", default=DEFAULT_EVALS,
                        help=f"prefix of the reference folders (default {DEFAULT_EVALS}: the bundled default)")
    args = parser.parse_args(argv)
    try:
        rows, verdict = decide(args.out, args.reference, args.reference_name)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(decision_markdown(rows, verdict), end="")
    return 0 if verdict == "yes" else 1


if __name__ == "__main__":
    sys.exit(main())
