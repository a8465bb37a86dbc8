"""The onnxruntime engine: an export folder (``encoder.onnx``, ``decoder.onnx``, ``model.json``) plugged into the
shared predictor core. Needs onnxruntime, numpy and Pillow; never imports torch.

>>> seg = tracenet.load("export/", engine="onnx")      # or tracenet.load(engine="onnx"): the bundled default
>>> seg.set_image("photo.jpg"); res = seg.predict((x, y))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tracenet.deploy.contract import DECODER_FILE, ENCODER_FILE, ContractError, check_session, read_contract
from tracenet.tap.core import TapCandidate, TapCore, TapOutputs, TapResult
from tracenet.tap.masks import ArrayMaskProbs, normalize_image

DEFAULT_EXPORT = Path(__file__).resolve().parent.parent / "weights" / "default-onnx"
ENCODER_OUTPUTS = ("p3", "p4", "p5", "p6", "p7", "mask_feats")


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("the onnx engine needs onnxruntime: pip install 'tracenet[onnx]'") from err
    return onnxruntime


def _options(ort: Any, threads: int | None, *, spinning: bool) -> Any:
    """Session options. The encoder's threads never busy-wait: once it has run they would otherwise spin while
    the decoder (and the Python around it) runs, which on 2 cores cost the decoder about a third of its time.
    The decoder's do: its ~500 small nodes include a dozen convolutions split across threads, and waking a
    sleeping thread for each cost 0.6-1 ms of a 5 ms decoder on 2 cores (measured in session 7);
    its threads spin only briefly after a run, while the core post-processes on the calling thread."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


class OnnxTapSegmenter(TapCore):
    """``set_image`` / ``predict`` over an ONNX export, with the same results as
    :class:`~tracenet.predictor.TapSegmenter` (same core; the engine runs the encoder once per image and the
    decoder once per tap).

    Args:
        folder: the export folder (``None``: the bundled default model's export).
        max_side, min_score: default from ``model.json`` (the checkpoint's training size; 0.05).
        require_tap_inside: as for :class:`~tracenet.predictor.TapSegmenter`.
        selection: ``"auto"`` (the ranker when the export has one), ``"paper"`` or ``"ranker"``.
        threads: onnxruntime intra-op threads (``None``: its default, one per core).
        refine, refine_cfg: boundary refinement of the chosen mask, as for the PyTorch engines (needs OpenCV).
        zoom, zoom_cfg: the zoom-in pass for small objects (:mod:`tracenet.tap.zoom`), as for the PyTorch engines.
    """

    def __init__(self, folder: str | Path | None = None, *, max_side: int | None = None,
                 min_score: float | None = None, require_tap_inside: bool = True, selection: str = "auto",
                 threads: int | None = None, refine: str = "none", refine_cfg: Any = None, zoom: bool = False,
                 zoom_cfg: Any = None) -> None:
        ort = _onnxruntime()
        self.folder = Path(folder) if folder is not None else DEFAULT_EXPORT
        self.contract = read_contract(self.folder)
        sel = self.contract["selection"]
        if selection not in ("auto", "paper", "ranker"):
            raise ValueError(f"selection must be 'auto', 'paper' or 'ranker', got {selection!r}")
        if selection == "ranker" and not sel["has_ranker"]:
            raise ValueError(f"selection='ranker' needs a tap ranker; the export in {self.folder} has none")
        self.selection = "ranker" if sel["has_ranker"] and selection != "paper" else "paper"
        super().__init__(max_side=max_side if max_side is not None else self.contract["preprocess"]["max_side"],
                         min_score=min_score if min_score is not None else sel["min_score"],
                         require_tap_inside=require_tap_inside, class_names=self.contract["class_names"],
                         refine=refine, refine_cfg=refine_cfg, zoom=zoom, zoom_cfg=zoom_cfg)
        self.encoder = self._session(ort, ENCODER_FILE, _options(ort, threads, spinning=False))
        self.decoder = self._session(ort, DECODER_FILE, _options(ort, threads, spinning=True))
        self._decoder_inputs = {v.name for v in self.decoder.get_inputs()}
        self._decoder_outputs = [v.name for v in self.decoder.get_outputs()]
        self._feats: dict[str, np.ndarray] = {}

    def _session(self, ort: Any, name: str, options: Any) -> Any:
        path = self.folder / name
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ContractError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0][:200]})") from err
        check_session(session, self.contract["files"][name], path)
        return session

    # ------------------------------------------------------------------------------------------- engine hooks
    def _set_network_image(self, rgb: np.ndarray) -> None:
        outs = self.encoder.run(list(ENCODER_OUTPUTS), {"image": normalize_image(rgb)})
        self._feats = dict(zip(ENCODER_OUTPUTS, outs))

    def predict(self, xy: tuple[float, float], *, use_rft: bool = True) -> TapResult:
        """Segment the object under the tap ``(x, y)`` (image pixels). ``use_rft`` is accepted for API
        compatibility and ignored: the decoder always reads only the windows the tap needs."""
        return super().predict(xy)

    def decode(self, rows_cols: list[tuple[int, int]]) -> dict[str, np.ndarray]:
        """Run the decoder for the aligned cells ``rows_cols`` (``(row, col)`` on P3..P7); outputs by name."""
        feeds: dict[str, Any] = {**self._feats, "cells": np.asarray(rows_cols, dtype=np.int64),
                                 "net_hw": np.asarray(self.net_hw, dtype=np.int64),
                                 "min_score": np.asarray(self.min_score, dtype=np.float32)}
        feeds = {k: v for k, v in feeds.items() if k in self._decoder_inputs}
        return dict(zip(self._decoder_outputs, self.decoder.run(self._decoder_outputs, feeds)))

    def _compute_tap(self, rows_cols: list[tuple[int, int]]) -> TapOutputs:
        out = self.decode(rows_cols)
        scores = out["scores"]
        cands = [TapCandidate(score=float(scores[k]), class_id=int(out["class_ids"][k]), level=int(out["levels"][k]),
                              box=tuple(float(v) for v in out["boxes"][k])) for k in range(len(scores))]
        rank_scores = None
        if self.selection == "ranker":
            rank_scores = [float(r) for r in out["ranker_scores"]]
            order = sorted((k for k in range(len(cands)) if np.isfinite(rank_scores[k])),
                           key=lambda k: (-rank_scores[k], k))
        else:
            order = [int(k) for k, keep in zip(out["nms_order"], out["nms_keep"]) if keep]
        logits, net_hw = out["mask_logits"], self.net_hw
        return TapOutputs(candidates=cands, order=order, mask_probs=lambda k: (ArrayMaskProbs(logits[k], net_hw), 0),
                          best_score=float(scores.max()) if len(scores) else 0.0, rank_scores=rank_scores)
