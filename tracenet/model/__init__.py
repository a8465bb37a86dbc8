"""TraceNet model: configs and presets, backbones, FPN, heads, dynamic mask head, checkpoints, tap logic.

Typical use::

    from tracenet.model import PRESETS, build_model, normalize
    model = build_model(PRESETS["lite0"]).eval()
    out = model(normalize(images_uint8))          # images [B, 3, H, W]; dict, see docs/ARCHITECTURE.md
"""

from tracenet.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from tracenet.model.config import BACKBONES, PRESETS, TraceNetConfig, preset
from tracenet.model.dense import TraceNetDense, build_model, normalize, output_keys
from tracenet.model.dynamic_head import (
    DYNAMIC_PARAM_COUNT,
    dynamic_mask_logits,
    relative_coords,
    split_dynamic_params,
    upsample_mask_probs,
)
from tracenet.model.fuse import fuse_conv_bn
from tracenet.model.geometry import LEVELS, SIZES_OF_INTEREST, STRIDES, grid_hw, locations, pyramid_hw
from tracenet.model.postprocess import (
    Candidate,
    align_tap,
    candidate_mask_probs,
    full_gather,
    rank_candidates,
    select_candidate,
)

__all__ = [
    "BACKBONES",
    "DYNAMIC_PARAM_COUNT",
    "LEVELS",
    "PRESETS",
    "SIZES_OF_INTEREST",
    "STRIDES",
    "Candidate",
    "CheckpointError",
    "TraceNetConfig",
    "TraceNetDense",
    "align_tap",
    "build_model",
    "candidate_mask_probs",
    "dynamic_mask_logits",
    "full_gather",
    "fuse_conv_bn",
    "grid_hw",
    "load_checkpoint",
    "locations",
    "normalize",
    "output_keys",
    "preset",
    "pyramid_hw",
    "read_checkpoint",
    "relative_coords",
    "save_checkpoint",
    "rank_candidates",
    "select_candidate",
    "split_dynamic_params",
    "upsample_mask_probs",
]
