"""Several runs side by side: one Markdown table and one combined per-band plot from ``metrics.json`` files.

``python -m tracenet.eval.compare runs/tracenet/metrics.json runs/grabcut/metrics.json --out runs/compare``
writes ``compare.md`` and ``bands.png`` there, and ``first_click.png`` when every run folder has its
``instances.jsonl``. Runs on different datasets, betas or seeds are compared anyway
but the table says so; approximate mTA values carry a ``~`` mark.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracenet.eval.report import fmt

__all__ = ["compare", "compare_markdown", "load_metrics", "main"]


def load_metrics(path: str | Path) -> dict[str, Any]:
    """A ``metrics.json`` (or the folder holding it) as a dict, with ``label`` (default: the method name;
    :func:`compare` appends the folder name when two runs share a method) and ``_path``."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"no metrics.json at {path} (give a file written by `tracenet eval` or its folder)"
        )
    m = json.loads(p.read_text())
    m.setdefault("label", m.get("method", p.parent.name))
    m["_path"] = str(p)
    return m


def _mta_cell(m: dict[str, Any], value: Any) -> str:
    return ("~" if m.get("approximate", {}).get("mta") else "") + fmt(value)


def compare_markdown(runs: Sequence[dict[str, Any]], max_categories: int = 15) -> str:
    """Markdown: overall table (mIoU-T, mTA, first-click IoU, per-band mIoU-T, speed), per-band mTA table,
    and per-category mIoU-T for the categories most frequent in the first run."""
    labels = [r["label"] for r in runs]
    lines = ["# Comparison", ""]
    for key in ("dataset", "beta", "seed", "n_instances"):
        values = {str(r.get(key)) for r in runs}
        if len(values) > 1:
            lines += [
                f"> **Warning**: runs differ in `{key}`: "
                + ", ".join(f"{r['label']}={r.get(key)}" for r in runs),
                "",
            ]
    if any(r.get("approximate", {}).get("mta") for r in runs):
        lines += ["`~` marks an approximate mTA (pixels sampled on a grid, see each run's `mta_stride`).", ""]
    head = (
        ["method", "mIoU-T", "mTA", "first-click IoU", "IoU@1 >= 0.85", "IoU@1 >= 0.90"]
        + [f"mIoU-T b{k}" for k in range(1, 6)]
        + ["s / image"]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        share = r.get("first_click_share", {})
        cells = [r["label"], fmt(r["miou_t"]), _mta_cell(r, r["mta"]), fmt(r["first_click_iou"])]
        cells += [fmt(share.get("0.85")), fmt(share.get("0.90"))]
        cells += [fmt(b["miou_t"]) for b in r["per_band"]] + [fmt(r.get("seconds_per_image"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## mTA per band", ""]
    head = ["method"] + [f"band {k}" for k in range(1, 6)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        lines.append("| " + " | ".join([r["label"]] + [_mta_cell(r, b["mta"]) for b in r["per_band"]]) + " |")
    cats = sorted(runs[0]["per_category"].items(), key=lambda kv: (-kv[1]["n"], kv[0]))[:max_categories]
    if cats:
        lines += ["", "## mIoU-T per category", ""]
        head = ["category", "n"] + labels
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, v in cats:
            row = [name, str(v["n"])] + [fmt(r["per_category"].get(name, {}).get("miou_t")) for r in runs]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def compare(paths: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write ``compare.md`` and ``bands.png`` for the runs at ``paths`` into ``out_dir``; returns the md path."""
    from tracenet.eval.plots import plot_band_curves, plot_first_click

    runs = [load_metrics(p) for p in paths]
    if not runs:
        raise ValueError("compare needs at least one metrics.json")
    if len({r["label"] for r in runs}) < len(runs):  # same method twice: tell the runs apart by folder
        for r in runs:
            r["label"] = f"{r['label']} ({Path(r['_path']).parent.name})"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_band_curves(runs, out / "bands.png")
    md = compare_markdown(runs) + "\n![bands](bands.png)\n"
    rows = [Path(r["_path"]).parent / "instances.jsonl" for r in runs]
    if all(p.is_file() for p in rows):
        ious = [[json.loads(line)["first_click_iou"] for line in p.read_text().splitlines()] for p in rows]
        plot_first_click([(r["label"], v) for r, v in zip(runs, ious, strict=True)], out / "first_click.png")
        md += "![first click](first_click.png)\n"
    path = out / "compare.md"
    path.write_text(md)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m tracenet.eval.compare METRICS.json ... --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m tracenet.eval.compare", description=__doc__)
    parser.add_argument("metrics", nargs="+", help="metrics.json files (or their folders)")
    parser.add_argument("--out", required=True, help="folder for compare.md and bands.png")
    args = parser.parse_args(argv)
    try:
        path = compare(args.metrics, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
