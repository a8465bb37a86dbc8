"""``tracenet export --format onnx``: write ``encoder.onnx``, ``decoder.onnx`` and ``model.json`` for a checkpoint.

The graphs come from :mod:`tracenet.deploy.graphs` through ``torch.onnx.export`` (the TorchScript-based exporter,
``dynamo=False``: 5x faster than the dynamo exporter here and its graphs run as fast). BatchNorm and the frozen
backbone norms are exported as they are, not folded, so every weight of the graph is one of the checkpoint's own
tensors; those that are exactly representable in float16 (all of them for an fp16 checkpoint such as the bundled
one) are stored as float16 initializers followed by a ``Cast`` to float32, which halves the files and loses
nothing. onnxruntime folds the casts and the norms when it loads the graph.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tracenet.deploy.contract import (
    DECODER_FILE,
    ENCODER_FILE,
    MODEL_FILE,
    build_contract,
    file_sha256,
    write_contract,
)
from tracenet.deploy.graphs import PYRAMID, TapDecoder, TapEncoder
from tracenet.model import load_checkpoint, normalize
from tracenet.model.tap_ranker import TapRanker
from tracenet.tap.geometry import align_tap

OPSET = 17
SAMPLE_HW = (200, 264)  # any size works (axes are dynamic); an odd-ish one keeps every ceil() honest


def export_onnx(checkpoint: str | Path, out_dir: str | Path, *, max_side: int | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out_dir`` (created; files are written to a temporary folder first and moved in
    only when all three exist). Returns the contract written to ``model.json``."""
    import onnx

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a folder")
    model, cfg, meta = load_checkpoint(checkpoint)
    ranker = TapRanker.from_dict(meta["tap_ranker"]) if "tap_ranker" in meta else None
    decoder = TapDecoder(model.head, channels=cfg.fpn_channels, num_classes=cfg.num_classes, ranker=ranker).eval()
    encoder = TapEncoder(model, pad=decoder.window // 2).eval()
    image = normalize(torch.from_numpy(_sample_image(SAMPLE_HW)).permute(2, 0, 1)[None])
    with torch.no_grad():
        feats = encoder(image)
    cells = torch.tensor(align_tap((SAMPLE_HW[1] / 2, SAMPLE_HW[0] / 2), SAMPLE_HW), dtype=torch.int64)
    # min_score 0 while tracing: every candidate takes the ranker's mask path, so it is recorded with real shapes
    dec_args = (*feats, cells, torch.tensor(SAMPLE_HW, dtype=torch.int64), torch.tensor(0.0))
    enc_outputs = [*PYRAMID, "mask_feats"]
    dec_inputs = [*enc_outputs, "cells", "net_hw", "min_score"]
    dec_outputs = ["scores", "boxes", "class_ids", "levels", "nms_order", "nms_keep"]
    dec_outputs += (["ranker_scores"] if ranker is not None else []) + ["mask_logits", "chosen", "chosen_mask_logits"]
    grid_axes = {name: {2: f"{name}_h", 3: f"{name}_w"} for name in enc_outputs}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder, (image,), tmp / ENCODER_FILE, dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=enc_outputs,
                              dynamic_axes={"image": {2: "H", 3: "W"}, **grid_axes},
                              do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
            torch.onnx.export(decoder, dec_args, tmp / DECODER_FILE, dynamo=False, opset_version=OPSET,
                              input_names=dec_inputs, output_names=dec_outputs,
                              dynamic_axes={**grid_axes, "mask_logits": {1: "mask_h", 2: "mask_w"},
                                            "chosen_mask_logits": {0: "mask_h", 1: "mask_w"}},
                              do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
        stored = {}
        for name in (ENCODER_FILE, DECODER_FILE):
            graph = onnx.load(tmp / name)
            stored[name] = store_float16(graph)
            onnx.save(graph, tmp / name)
        contract = build_contract(
            cfg=cfg, meta=meta, checkpoint_sha256=file_sha256(checkpoint), checkpoint_name=checkpoint.name,
            max_side=int(max_side if max_side is not None else meta.get("max_side", 1024)),
            head_windows=decoder.windows, has_ranker=ranker is not None,
            files={name: file_sha256(tmp / name) for name in (ENCODER_FILE, DECODER_FILE)},
            graphs={name: onnx.load(tmp / name) for name in (ENCODER_FILE, DECODER_FILE)}, weights=stored)
        write_contract(tmp / MODEL_FILE, contract)
        out_dir.mkdir(exist_ok=True)
        for name in (ENCODER_FILE, DECODER_FILE, MODEL_FILE):
            shutil.move(str(tmp / name), out_dir / name)
    return contract


def store_float16(graph: Any) -> dict[str, int]:
    """Rewrite ``graph``'s float32 initializers that float16 holds exactly as float16 + ``Cast`` to float32
    (in place). Returns how many tensors / values were stored each way."""
    from onnx import helper, numpy_helper

    g = graph.graph
    kept, casts, counts = [], [], {"float16_tensors": 0, "float16_values": 0, "float32_tensors": 0,
                                   "float32_values": 0}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1 and np.array_equal(arr.astype(np.float16).astype(np.float32),
                                                                        arr):
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__f16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx_float(), name=init.name + "__cast"))
            counts["float16_tensors"] += 1
            counts["float16_values"] += int(arr.size)
        else:
            kept.append(init)
            if arr.dtype == np.float32:
                counts["float32_tensors"] += 1
                counts["float32_values"] += int(arr.size)
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    return counts


def onnx_float() -> int:
    from onnx import TensorProto

    return TensorProto.FLOAT


def _sample_image(hw: tuple[int, int]) -> np.ndarray:
    """A fixed ``HxWx3 uint8`` image to trace with (values do not matter; a smooth ramp keeps them finite)."""
    h, w = hw
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 255 // max(1, w - 1), ys * 255 // max(1, h - 1), (xs + ys) % 256], axis=-1).astype(np.uint8)

