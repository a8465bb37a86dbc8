"""Photo edits driven by a one-tap mask: blurred / replaced background, colour splash, cut-out, and the
clickable region of a mask (where a tap gives the same mask).

Quick use::

    import tracenet
    from tracenet.edit import blur_background, load_rgb

    image = load_rgb("photo.jpg")                  # H x W x 3 uint8 RGB
    seg = tracenet.load(); seg.set_image(image)
    mask = seg.predict((x, y)).mask                # H x W bool, tap (x, y) in image pixels
    out = blur_background(image, mask, strength=0.5)
"""

from tracenet.edit.clickable import ClickableRegion, clickable_region, clickable_region_details
from tracenet.edit.effects import (
    EFFECTS,
    apply_effect,
    blur_background,
    color_splash,
    cutout_rgba,
    replace_background,
    soft_alpha,
)
from tracenet.edit.images import ImageError, encode_png, load_rgb

__all__ = [
    "EFFECTS",
    "ClickableRegion",
    "ImageError",
    "apply_effect",
    "blur_background",
    "clickable_region",
    "clickable_region_details",
    "color_splash",
    "cutout_rgba",
    "encode_png",
    "load_rgb",
    "replace_background",
    "soft_alpha",
]
