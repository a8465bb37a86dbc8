"""Evaluation of one-tap segmentation: the paper's protocol (sec. 4) with baselines side by side.

| module | what |
|---|---|
| ``methods`` | the ``TapMethod`` interface, ``from_callable`` adapter, TraceNet / FullNet adapter, ``make_method`` |
| ``baselines`` | ``GrabCutMethod``: OpenCV GrabCut seeded from the tap (no weights) |
| ``taps`` | five bands by repeated dilation around the centroid, 5 taps per band, first click |
| ``instance`` | one instance: taps -> masks -> (intersection, union), mTA grouped by the method's key |
| ``metrics`` | mIoU-T (eq. 6), mTA (eq. 7), per band / category / size, first-click IoU |
| ``evaluate`` | the loop over a COCO JSON + image folder |
| ``report`` / ``plots`` | ``metrics.json``, ``instances.jsonl``, ``report.md``, PNG plots |
| ``command`` / ``compare`` | ``tracenet eval`` arguments and entry point; several runs in one table |

Python use::

    from tracenet.eval import EvalConfig, evaluate_coco, make_method, write_outputs
    run = evaluate_coco(make_method("grabcut"), "val.json", "images/", EvalConfig(max_images=3))
    write_outputs(run, "out/")
"""

from __future__ import annotations

from tracenet.eval.evaluate import EvalConfig, EvalRun, evaluate_coco
from tracenet.eval.instance import InstanceResult, evaluate_instance
from tracenet.eval.methods import TapMethod, TraceNetMethod, from_callable, make_method
from tracenet.eval.metrics import aggregate, miou_t, mta
from tracenet.eval.report import write_outputs
from tracenet.eval.taps import first_click, instance_bands, simulate_taps
from tracenet.eval.train_hook import make_train_eval_hook

__all__ = [
    "make_train_eval_hook",
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
