"""Write an evaluation run to a folder: ``metrics.json``, ``instances.jsonl``, ``report.md`` and PNG plots.

Files in ``OUT/``:

- ``metrics.json``: the numbers (keys documented in :func:`tracenet.eval.metrics.aggregate`, plus method,
  dataset, images, n_images, beta, seed, approximate, skipped, seconds, seconds_per_image, plots);
- ``instances.jsonl``: one JSON line per instance (its image file, taps, IoUs, first click, mTA counts per band);
- ``report.md``: the same numbers as Markdown tables, linking the plots, and a per-object table (every object
  when there are at most :data:`MAX_OBJECT_ROWS`, else the lowest first-click IoUs);
- ``bands.png``, ``first_click.png``, ``qualitative.png``, ``clickable.png`` (see :mod:`tracenet.eval.plots`);
- ``showcases.npz`` for a sharded run (the plots' crops, for :mod:`tracenet.eval.merge`).

Files are written to a temporary folder next to ``OUT`` and moved into place at the end, so a failure leaves
no half-written output folder.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tracenet.eval.evaluate import EvalRun

__all__ = ["fmt", "render_report", "write_outputs"]

PLOTS = {
    "bands": "bands.png",
    "first_click": "first_click.png",
    "qualitative": "qualitative.png",
    "clickable": "clickable.png",
}
MAX_OBJECT_ROWS = 200
SHOWCASES_FILE = "showcases.npz"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals, None / NaN as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def _object_rows(rows: list[dict[str, Any]]) -> list[str]:
    shown = rows
    lines = ["", "## Per object", ""]
    if len(rows) > MAX_OBJECT_ROWS:
        shown = sorted(rows, key=lambda r: r["first_click_iou"])[:25]
        lines += [f"The 25 lowest first-click IoUs of {len(rows)} (all in `instances.jsonl`).", ""]
    lines += _table(
        ["file", "id", "first click (x, y)", "first-click IoU", "mIoU-T", "mTA", "ignored px"],
        [
            [
                r["file"],
                r["ann_id"],
                f"({r['first_click'][0]}, {r['first_click'][1]})",
                r["first_click_iou"],
                r["miou_t"],
                r["mta"],
                r.get("ignore_pixels", 0),
            ]
            for r in shown
        ],
    )
    return lines


def render_report(
    m: dict[str, Any], max_categories: int = 40, rows: list[dict[str, Any]] | None = None
) -> str:
    """Markdown report of a ``metrics.json`` dict (and of its ``instances.jsonl`` rows, when given)."""
    approx = m.get("approximate", {})
    selection = f" (candidate choice: {m['selection']})" if m.get("selection") else ""
    if m.get("refine") and m["refine"] != "none":
        selection += f" (boundary refinement: {m['refine']})"
    if m.get("zoom"):
        settings = ", ".join(f"{k} {v}" for k, v in m.get("zoom_cfg", {}).items())
        selection += f" (zoom-in pass for small objects{': ' + settings if settings else ''})"
    lines = [f"# Tap evaluation: {m['method']}{selection}", ""]
    shard = m.get("shard")
    if shard:
        lines += [
            f"> Shard {shard['index'] + 1} of {shard['count']} (every {shard['count']}-th image); "
            "combine the shards with `python -m tracenet.eval.merge`.",
            "",
        ]
    if m.get("merged_from"):
        lines += [
            f"Merged from {len(m['merged_from'])} shards: numbers identical to a single run; `seconds` is "
            "their sum.",
            "",
        ]
    images = f" (images `{m['images']}`)" if m.get("benchmark") == "folder" else ""
    lines += [
        f"Dataset `{m['dataset']}`{images}, {m['n_images']} images, {m['n_instances']} instances "
        f"({m['n_taps']} band taps), beta = {m['beta']}, seed = {m['seed']}, {fmt(m['seconds'], 1)} s "
        f"({fmt(m.get('seconds_per_image'), 2)} s / image).",
        "",
    ]
    if approx.get("mta_skipped"):
        lines += ["> **mTA was skipped** (`--mta-stride 0`).", ""]
    elif approx.get("mta"):
        lines += [
            f"> **mTA is approximate**: tapped only the pixels on a {approx['mta_stride']}-pixel grid "
            f"({m['mta_pixels']} of {m['mask_pixels']} instance pixels). Use `--mta-stride 1` for the exact value.",
            "",
        ]
    if m.get("empty_bands"):
        lines += [f"{m['empty_bands']} (instance, band) pairs had no pixel and no taps (per band below).", ""]
    check = m.get("group_key_check", {})
    if check.get("mismatches"):
        lines += [
            f"> **Warning**: {check['mismatches']} of {check['checked']} tap pairs with the same group key gave "
            "different masks: the grouped (fast) mTA is not exact for this method.",
            "",
        ]
    skipped = m.get("skipped", {})
    if any(skipped.values()):
        lines += [f"Skipped annotations: {', '.join(f'{k} {v}' for k, v in skipped.items())}.", ""]
    share = m.get("first_click_share", {})
    lines += _table(
        ["mIoU-T", "mTA", "first-click IoU (mIoU@1)", "IoU@1 >= 0.85", "IoU@1 >= 0.90", "predictions"],
        [
            [
                m["miou_t"],
                m["mta"],
                m["first_click_iou"],
                share.get("0.85"),
                share.get("0.90"),
                m["n_predictions"],
            ]
        ],
    )
    lines += ["", "## Per band", ""]
    lines += _table(
        ["band", "mIoU-T", "mTA", "taps", "empty bands"],
        [[b["band"], b["miou_t"], b["mta"], b["n_taps"], b["empty_bands"]] for b in m["per_band"]],
    )
    lines += ["", "## Per object size (COCO areas)", ""]
    lines += _table(
        ["size", "mIoU-T", "mTA", "instances"],
        [[k, v["miou_t"], v["mta"], v["n"]] for k, v in m["per_size"].items()],
    )
    cats = sorted(m["per_category"].items(), key=lambda kv: (-kv[1]["n"], kv[0]))
    lines += ["", f"## Per category ({len(cats)}; most frequent first)", ""]
    lines += _table(
        ["category", "mIoU-T", "mTA", "instances"],
        [[k, v["miou_t"], v["mta"], v["n"]] for k, v in cats[:max_categories]],
    )
    if len(cats) > max_categories:
        lines += ["", f"({len(cats) - max_categories} more categories in metrics.json)"]
    if rows:
        lines += _object_rows(rows)
    plots = m.get("plots", {})
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"


def write_outputs(run: EvalRun, out_dir: str | Path, *, plots: bool = True) -> Path:
    """Write all files of ``run`` into ``out_dir`` (created; files already there with the same names are
    replaced, others kept); returns the ``metrics.json`` path. Nothing appears in ``out_dir`` unless every file
    was written."""
    from tracenet.eval.plots import plot_band_curves, plot_clickable, plot_first_click, plot_qualitative
    from tracenet.eval.showcases import save_showcases

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    m = run.metrics
    rows = [r.to_json() for r in run.instances]
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp_name:
        tmp = Path(tmp_name)
        if plots:
            plot_band_curves([m], tmp / PLOTS["bands"])
            plot_first_click(
                [(m["method"], [r["first_click_iou"] for r in rows])], tmp / PLOTS["first_click"]
            )
            plot_qualitative(run.showcases, tmp / PLOTS["qualitative"])
            plot_clickable(run.showcases, tmp / PLOTS["clickable"], beta=m["beta"])
            m["plots"] = dict(PLOTS)
            if m.get("shard"):
                save_showcases(run.showcases, tmp / SHOWCASES_FILE)
        with open(tmp / "instances.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
        (tmp / "report.md").write_text(render_report(m, rows=rows))
        out.mkdir(exist_ok=True)
        for path in sorted(tmp.iterdir()):
            shutil.move(str(path), out / path.name)
    return out / "metrics.json"
