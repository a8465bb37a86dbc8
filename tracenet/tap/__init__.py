"""The predictor core, free of torch: pre-processing, tap alignment, candidate choice with its fallbacks,
resizing masks back to the photo. Every engine (traced PyTorch, FullNet, onnxruntime) plugs into
:class:`~tracenet.tap.core.TapCore` and only computes tensors.

Importing this package (and ``tracenet.io``) needs numpy and Pillow only.
"""

from tracenet.tap.core import ConcurrentUseError, TapCandidate, TapCore, TapOutputs, TapResult
from tracenet.tap.geometry import LEVELS, SIZES_OF_INTEREST, STRIDES, align_tap, grid_hw
from tracenet.tap.masks import normalize_image, resize_bilinear, upsample_mask_probs

__all__ = [
    "ConcurrentUseError", "LEVELS", "SIZES_OF_INTEREST", "STRIDES", "TapCandidate", "TapCore", "TapOutputs", "TapResult", "align_tap",
    "grid_hw", "normalize_image", "resize_bilinear", "upsample_mask_probs",
]
