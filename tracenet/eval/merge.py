"""Combine the output folders of a sharded evaluation into the output of one run.

    tracenet eval --masks DIR --shard 1/3 --out runs/s1     # ... 2/3, 3/3, on any machines
    python -m tracenet.eval.merge runs/s1 runs/s2 runs/s3 --out runs/all

The metrics are recomputed from the shards' per-instance rows (``instances.jsonl``: integer intersections and
unions per tap, mTA counts per band, first-click IoUs as exact JSON floats), in the single run's order
(``(image_id, ann_id)``), so ``metrics.json`` and ``instances.jsonl`` are identical to a single run's; only the
timings differ (``seconds`` is the shards' sum). The qualitative and clickable plots are redrawn from the shards'
``showcases.npz``. Shards must come from the same evaluation (method, candidate choice, data set, beta, seed,
mTA stride, image limit) and be complete (each of ``1/N`` ... ``N/N`` exactly once); anything else is an error
naming the folder, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tracenet.eval.evaluate import EvalRun
from tracenet.eval.instance import InstanceResult
from tracenet.eval.metrics import aggregate

__all__ = ["main", "merge_runs", "read_shard"]

# keys that must agree between shards (they describe what was evaluated, not how long it took)
_SAME = (
    "method",
    "selection",
    "refine",
    "zoom",
    "zoom_cfg",
    "benchmark",
    "dataset",
    "images",
    "beta",
    "seed",
    "n_bands",
    "taps_per_band",
    "approximate",
    "max_images",
    "n_showcase",
)


def read_shard(folder: str | Path) -> tuple[dict[str, Any], list[InstanceResult]]:
    """``(metrics, instances)`` of one shard's output folder; ValueError / FileNotFoundError naming it."""
    folder = Path(folder)
    metrics_path, rows_path = folder / "metrics.json", folder / "instances.jsonl"
    for path in (metrics_path, rows_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: give the --out folders of `tracenet eval --shard I/N`"
            )
    try:
        metrics = json.loads(metrics_path.read_text())
        rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder}: unreadable metrics.json / instances.jsonl ({exc})") from None
    if not isinstance(metrics, dict) or not metrics.get("shard"):
        raise ValueError(f"{folder} is not a shard (its metrics.json has no 'shard'; run with --shard I/N)")
    try:
        return metrics, [InstanceResult.from_json(r) for r in rows]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(
            f"{rows_path}: a row lacks or mangles {exc} (written by another tracenet version?)"
        ) from None


def _check_shards(shards: list[tuple[Path, dict[str, Any]]]) -> None:
    first_path, first = shards[0]
    count = first["shard"]["count"]
    seen: dict[int, Path] = {}
    for path, m in shards:
        for key in _SAME:
            if m.get(key) != first.get(key):
                raise ValueError(
                    f"{path}: {key} = {m.get(key)!r} but {first_path} has {first.get(key)!r}; "
                    "shards of one evaluation must agree"
                )
        index, n = m["shard"]["index"], m["shard"]["count"]
        if n != count:
            raise ValueError(f"{path} is shard {index + 1}/{n} but {first_path} is one of {count}")
        if index in seen:
            raise ValueError(f"{path} and {seen[index]} are both shard {index + 1}/{count}")
        seen[index] = path
    missing = [str(i + 1) for i in range(count) if i not in seen]
    if missing:
        raise ValueError(f"shard(s) {', '.join(missing)} of {count} missing; give all {count} shard folders")


def merge_runs(folders: list[str | Path]) -> EvalRun:
    """The :class:`~tracenet.eval.evaluate.EvalRun` a single run would have produced (module docstring)."""
    from tracenet.eval.report import SHOWCASES_FILE
    from tracenet.eval.showcases import load_showcases

    if not folders:
        raise ValueError("give at least one shard folder")
    shards, results = [], []
    for folder in folders:
        m, r = read_shard(folder)
        shards.append((Path(folder), m))
        results += r
    _check_shards(shards)
    results.sort(key=lambda r: (r.image_id, r.ann_id))
    keys = {(r.image_id, r.ann_id) for r in results}
    if len(keys) != len(results):
        raise ValueError("an instance (image_id, ann_id) appears in two shards: are these shards of one run?")
    ms = [m for _, m in shards]
    first = ms[0]

    def total(key: str) -> Any:
        return sum(m[key] for m in ms)

    def summed(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in ms:
            for k, v in m[key].items():
                out[k] = out.get(k, 0) + v
        return out

    metrics: dict[str, Any] = {k: first[k] for k in ("method", "benchmark", "dataset", "images")}
    if first.get("selection"):
        metrics["selection"] = first["selection"]
    if first.get("refine"):
        metrics["refine"] = first["refine"]
    if first.get("zoom"):
        metrics["zoom"] = True
        if first.get("zoom_cfg"):
            metrics["zoom_cfg"] = first["zoom_cfg"]
    metrics.update(aggregate(results))
    n_images = total("n_images")
    metrics["n_images"] = n_images
    metrics.update({k: first[k] for k in ("beta", "seed", "n_bands", "taps_per_band", "approximate")})
    metrics.update(
        {
            "skipped": summed("skipped"),
            "group_key_check": summed("group_key_check"),
            "max_images": first["max_images"],
            "max_instances": None,
            "shard": None,
            "n_showcase": first["n_showcase"],
            "seconds": total("seconds"),
            "seconds_in_method": total("seconds_in_method"),
            "seconds_per_image": total("seconds") / n_images if n_images else None,
            "merged_from": [str(p) for p, _ in shards],
        }
    )

    showcases = []
    for path, _ in shards:
        if (path / SHOWCASES_FILE).is_file():
            showcases += load_showcases(path / SHOWCASES_FILE)
    showcases.sort(key=lambda s: s.order)
    return EvalRun(metrics=metrics, instances=results, showcases=showcases[: first["n_showcase"]])


def main(argv: list[str] | None = None) -> int:
    """``python -m tracenet.eval.merge SHARD_DIR ... --out DIR``; 0 on success, 2 on bad shards."""
    from tracenet.eval.command import summary_line
    from tracenet.eval.report import write_outputs

    parser = argparse.ArgumentParser(
        prog="python -m tracenet.eval.merge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("shards", nargs="+", help="output folders of `tracenet eval --shard I/N` (all N)")
    parser.add_argument("--out", required=True, help="folder for the merged metrics.json, report.md, plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if any(Path(s).resolve() == out for s in args.shards):
        print(f"error: --out {args.out} is one of the shard folders; choose a new folder", file=sys.stderr)
        return 2
    try:
        run = merge_runs(args.shards)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write_outputs(run, args.out, plots=not args.no_plots)
    print(summary_line(run.metrics) + f" -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
