"""Image input and mask output: robust loading (EXIF, grayscale, RGBA, 16-bit, huge) and mask/overlay writing."""

from tracenet.io.images import MAX_PIXELS, ImageLoadError, fit_long_side, load_image
from tracenet.io.masks import overlay, save_mask_png, save_overlay

__all__ = [
    "MAX_PIXELS",
    "ImageLoadError",
    "fit_long_side",
    "load_image",
    "overlay",
    "save_mask_png",
    "save_overlay",
]
