"""Evaluation of one-tap segmentation: the paper's protocol (sec. 4) with baselines side by side.

| module | what |
|---|---|
| ``methods`` | the ``TapMethod`` interface, ``from_callable`` adapter, TraceNet / FullNet adapter, ``make_method`` |
| ``baselines`` | ``GrabCutMethod``: OpenCV GrabCut seeded from the tap (no weights) |
| ``taps`` | five bands by repeated dilation around the centroid, 5 taps per band, first click |
| ``instance`` | one instance: taps -> masks -> (intersection, union) without ignored pixels, grouped mTA |
| ``metrics`` | mIoU-T (eq. 6), mTA (eq. 7), per band / category / size, first-click IoU and its shares >= 0.85 / 0.90 |
| ``records`` | ``Benchmark`` / ``ImageRecord`` / ``InstanceRecord``: what every loader produces; shards |
| ``folder`` | ``load_folder_benchmark``: ``images/<stem>.jpg|png`` + ``masks/<stem>.png`` (0 / 128 unknown / 255) |
| ``evaluate`` | ``load_coco_benchmark`` (COCO JSON + image folder) and the loop over any benchmark |
| ``report`` / ``plots`` / ``showcases`` | ``metrics.json``, ``instances.jsonl``, ``report.md``, PNG plots |
| ``command`` / ``compare`` / ``merge`` | ``tracenet eval``; runs side by side; shards into one (``merge_runs``) |
| ``candidate`` | does a candidate model replace the bundled default (issue 14's rule, ``scripts/score_candidate.sh``) |

Python use::

    from tracenet.eval import EvalConfig, evaluate, evaluate_coco, load_folder_benchmark, make_method, write_outputs
    run = evaluate_coco(make_method("grabcut"), "val.json", "images/", EvalConfig(max_images=3))
    bench = load_folder_benchmark("GrabCut/images", "GrabCut/masks")   # the same records as a COCO JSON gives
    run = evaluate(make_method("fullnet"), bench, EvalConfig(mta_stride=0, shard=(0, 4)))  # shard 1 of 4
    write_outputs(run, "out/")
"""

from __future__ import annotations

from tracenet.eval.evaluate import (
    EvalConfig,
    EvalRun,
    evaluate,
    evaluate_coco,
    evaluate_folder,
    load_coco_benchmark,
)
from tracenet.eval.folder import BenchmarkError, load_folder_benchmark
from tracenet.eval.instance import InstanceResult, evaluate_instance
from tracenet.eval.methods import TapMethod, TraceNetMethod, from_callable, make_method
from tracenet.eval.metrics import aggregate, miou_t, mta
from tracenet.eval.records import Benchmark, ImageRecord, InstanceRecord
from tracenet.eval.report import write_outputs
from tracenet.eval.taps import first_click, instance_bands, simulate_taps
from tracenet.eval.train_hook import make_train_eval_hook

__all__ = [
    "make_train_eval_hook",
    "Benchmark",
    "BenchmarkError",
    "ImageRecord",
    "InstanceRecord",
    "evaluate",
    "evaluate_folder",
    "load_coco_benchmark",
    "load_folder_benchmark",
    "EvalConfig",
    "EvalRun",
    "InstanceResult",
    "TapMethod",
    "TraceNetMethod",
    "aggregate",
    "evaluate_coco",
    "evaluate_instance",
    "first_click",
    "from_callable",
    "instance_bands",
    "make_method",
    "miou_t",
    "mta",
    "simulate_taps",
    "write_outputs",
]
