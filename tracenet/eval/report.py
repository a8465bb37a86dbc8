"""Write an evaluation run to a folder: ``metrics.json``, ``instances.jsonl``, ``report.md`` and PNG plots.

Files in ``OUT/``:

- ``metrics.json``: the numbers (keys documented in :func:`tracenet.eval.metrics.aggregate`, plus method,
  dataset, images, n_images, beta, seed, approximate, skipped, seconds, seconds_per_image, plots);
- ``instances.jsonl``: one JSON line per instance (its taps, IoUs, first click, mTA counts);
- ``report.md``: the same numbers as Markdown tables, linking the plots;
- ``bands.png``, ``qualitative.png``, ``clickable.png`` (see :mod:`tracenet.eval.plots`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tracenet.eval.evaluate import EvalRun

__all__ = ["fmt", "render_report", "write_outputs"]

PLOTS = {"bands": "bands.png", "qualitative": "qualitative.png", "clickable": "clickable.png"}


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


def render_report(m: dict[str, Any], max_categories: int = 40) -> str:
    """Markdown report of a ``metrics.json`` dict."""
    approx = m.get("approximate", {})
    selection = f" (candidate choice: {m['selection']})" if m.get("selection") else ""
    lines = [f"# Tap evaluation: {m['method']}{selection}", ""]
    lines += [
        f"Dataset `{m['dataset']}`, {m['n_images']} images, {m['n_instances']} instances "
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
    lines += _table(
        ["mIoU-T", "mTA", "first-click IoU", "predictions"],
        [[m["miou_t"], m["mta"], m["first_click_iou"], m["n_predictions"]]],
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
    plots = m.get("plots", {})
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"


def write_outputs(run: EvalRun, out_dir: str | Path, *, plots: bool = True) -> Path:
    """Write all files of ``run`` into ``out_dir`` (created); returns the ``metrics.json`` path."""
    from tracenet.eval.plots import plot_band_curves, plot_clickable, plot_qualitative

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = run.metrics
    if plots:
        plot_band_curves([m], out / PLOTS["bands"])
        plot_qualitative(run.showcases, out / PLOTS["qualitative"])
        plot_clickable(run.showcases, out / PLOTS["clickable"], beta=m["beta"])
        m["plots"] = dict(PLOTS)
    with open(out / "instances.jsonl", "w") as f:
        for r in run.instances:
            f.write(json.dumps(r.to_json()) + "\n")
    path = out / "metrics.json"
    path.write_text(json.dumps(m, indent=2) + "\n")
    (out / "report.md").write_text(render_report(m))
    return path
