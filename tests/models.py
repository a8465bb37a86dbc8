"""Model files the tests name.

``PREVIOUS_DEFAULT``: the bundled model of sessions 5-15 (lite0, 3000 iterations on coco-mini, with its tap ranker),
kept at ``training/lite0-cpu/final.safetensors``. Tests whose taps were hand-picked where that model shows a case
(a tap where the ranker and the paper's rule disagree, a candidate whose mask misses the tap, a small box) load it,
single-pass (``zoom=False``), so the case they check stays in front of them whatever model ships next.
"""

from pathlib import Path

PREVIOUS_DEFAULT = Path(__file__).resolve().parents[1] / "training" / "lite0-cpu" / "final.safetensors"
