"""``model.json``: the contract between an ONNX export and whoever runs it (this package's onnxruntime engine,
a browser, a phone). Everything a runtime needs besides the two graphs: pre-processing, strides, tap alignment,
selection, the mask rule, and the graphs' inputs and outputs with dtypes and shapes. docs/ONNX.md explains it.

Reading and checking it needs only the standard library (and onnxruntime for the graph check).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tracenet import __version__
from tracenet.tap.geometry import LEVELS, SIZES_OF_INTEREST, STRIDES
from tracenet.tap.masks import IMAGENET_MEAN, IMAGENET_STD, MASK_STRIDE

FORMAT = "tracenet-onnx"
FORMAT_VERSION = 2  # 2: encoder levels carry the decoder's zero padding
ENCODER_FILE, DECODER_FILE, MODEL_FILE = "encoder.onnx", "decoder.onnx", "model.json"
NMS_IOU = 0.6
DEFAULT_MIN_SCORE = 0.05
_ONNX_DTYPES = {1: "float32", 7: "int64", 9: "bool", 10: "float16"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool",
               "tensor(float16)": "float16"}


class ContractError(ValueError):
    """An export folder that cannot be used; the message names the file and what is wrong."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _io(values: Any) -> list[dict[str, Any]]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        out.append({"name": v.name, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims})
    return out


def build_contract(*, cfg: Any, meta: dict[str, Any], checkpoint_sha256: str, checkpoint_name: str, max_side: int,
                   head_windows: list[int], has_ranker: bool, files: dict[str, str], graphs: dict[str, Any],
                   weights: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The ``model.json`` content for an export (``graphs``: the loaded ``onnx.ModelProto`` per file)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tracenet_version": __version__,
        "checkpoint": {"file": checkpoint_name, "sha256": checkpoint_sha256, "step": meta.get("step")},
        "config": cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg)),
        "class_names": list(cfg.names),
        "preprocess": {
            "color": "RGB, 8 bits per channel (grayscale replicated, alpha composited on white, EXIF rotation "
                     "applied)",
            "max_side": max_side,
            "resize": "if max(H, W) > max_side: scale = max_side / max(H, W), new size (floor(W * scale + 0.5), "
                      "floor(H * scale + 0.5)), Pillow BILINEAR with reducing_gap=3.0; else unchanged (scale 1)",
            "tensor": "float32 [1, 3, H, W] = (rgb / 255 - mean) / std",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "geometry": {
            "levels": list(LEVELS),
            "strides": list(STRIDES),
            "sizes_of_interest": list(SIZES_OF_INTEREST),
            "grid": "level l has ceil(H / s) x ceil(W / s) cells, s = 2**l; cell (row, col) is centred at pixel "
                    "(x, y) = (col * s + s // 2, row * s + s // 2)",
            "tap_alignment": "tap (x, y) in network pixels (photo pixels * scale) -> per level (row, col) = "
                             "(min(floor(y) // s, rows - 1), min(floor(x) // s, cols - 1)); decoder input 'cells'",
            "head_windows": list(head_windows),
            "level_padding": max(head_windows) // 2,
            "encoder_levels": "encoder outputs p3..p7 are the level maps with level_padding zero cells on every "
                              "side: [1, ch, ceil(H / s) + 2 * pad, ceil(W / s) + 2 * pad]; cell (row, col) of the "
                              "map is at (row + pad, col + pad)",
        },
        "selection": {
            "default": "ranker" if has_ranker else "paper",
            "has_ranker": has_ranker,
            "min_score": DEFAULT_MIN_SCORE,
            "nms_iou": NMS_IOU,
            "paper": "candidates in nms_order where nms_keep, scores >= min_score, best first",
            "ranker": "candidates with ranker_scores > -inf (score >= min_score), by descending ranker score, "
                      "ties by lower index",
            "require_tap_inside": "take the first candidate in that order whose photo-size mask has a pixel "
                                  "inside the photo pixels of the tap's P3 cell (row, col): rows "
                                  "[floor(8 * row / scale), ceil(8 * (row + 1) / scale)), cols likewise, clipped "
                                  "to the photo; none -> 'nothing here'",
            "chosen": "decoder output 'chosen' is the first of that order without the require_tap_inside check "
                      "(and without the min_score check for the paper's rule: compare scores[chosen] to "
                      "min_score)",
        },
        "mask": {
            "stride": MASK_STRIDE,
            "logits": "mask_logits[k] / chosen_mask_logits: float32 [ceil(H / 8), ceil(W / 8)]; computed only for "
                      "levels with a candidate scoring >= min_score (the others are -1e4, i.e. empty: such "
                      "candidates are never chosen)",
            "upsample": "p = sigmoid(logits); bilinear x4 then x2 (align_corners=False, half-pixel centres, "
                        "edge-clamped); keep the top-left H x W (crop, never stretch); then bilinear "
                        "(align_corners=False) to the photo's size",
            "threshold": 0.5,
            "box": "boxes are (x0, y0, x1, y1) in network pixels; divide by scale for the photo, clip to it",
        },
        "files": {
            name: {"sha256": files[name], "inputs": _io(graphs[name].graph.input),
                   "outputs": _io(graphs[name].graph.output), "weights": weights[name]}
            for name in (ENCODER_FILE, DECODER_FILE)
        },
    }


def write_contract(path: Path, contract: dict[str, Any]) -> None:
    path.write_text(json.dumps(contract, indent=1) + "\n")


def read_contract(folder: str | Path, *, check_hashes: bool = True) -> dict[str, Any]:
    """Read and check ``folder/model.json`` and that both graphs are the ones it describes.

    Raises:
        ContractError: a missing folder or file, a ``model.json`` that is not JSON or not a tracenet export,
            one written by another tracenet version, or a graph whose hash differs from the one recorded.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ContractError(f"{folder}: no such export folder (make one with `tracenet export --format onnx "
                            f"--out {folder}`)")
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ContractError(f"{path}: missing; {folder} is not a tracenet ONNX export")
    try:
        contract = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ContractError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(contract, dict) or contract.get("format") != FORMAT:
        raise ContractError(f"{path}: not a tracenet ONNX contract (format is not {FORMAT!r})")
    version = (contract.get("format_version"), contract.get("tracenet_version"))
    if version != (FORMAT_VERSION, __version__):
        raise ContractError(f"{path}: written by tracenet {version[1]} (format {version[0]}); this is tracenet "
                            f"{__version__} (format {FORMAT_VERSION}): re-export with `tracenet export`")
    try:
        files = contract["files"]
        for name in (ENCODER_FILE, DECODER_FILE):
            entry = files[name]
            if not (folder / name).is_file():
                raise ContractError(f"{folder / name}: missing (listed in {path})")
            if check_hashes and file_sha256(folder / name) != entry["sha256"]:
                raise ContractError(f"{folder / name}: does not match {path} (sha256 differs: the file comes "
                                    f"from another export or was changed)")
        for key in ("preprocess", "geometry", "selection", "class_names"):
            contract[key]  # noqa: B018  (presence check)
    except (KeyError, TypeError) as err:
        raise ContractError(f"{path}: incomplete contract, missing {err}") from err
    return contract


def check_session(session: Any, entry: dict[str, Any], path: Path) -> None:
    """Raise :class:`ContractError` naming ``path`` when an onnxruntime session's inputs or outputs differ from
    the contract's (names, dtypes, ranks)."""
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        want = [(v["name"], v["dtype"], len(v["shape"])) for v in entry[kind]]
        got = [(v.name, _ORT_DTYPES.get(v.type, v.type), len(v.shape)) for v in actual]
        if want != got:
            raise ContractError(f"{path}: its {kind} {got} do not match the contract's {want}")
