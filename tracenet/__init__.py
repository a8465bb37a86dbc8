"""tracenet: one-tap instance segmentation with a Receptive Field Tracer.

Quick use::

    import tracenet
    seg = tracenet.load()              # bundled default model
    seg.set_image("photo.jpg")         # path, PIL image or HxWx3 uint8 RGB array
    res = seg.predict((x, y))          # tap in image pixels; res.mask HxW bool, res.score, res.box
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(checkpoint: str | None = None, **kwargs):
    """Load a :class:`tracenet.predictor.TapSegmenter` (bundled default model when ``checkpoint`` is None)."""
    from tracenet.predictor import TapSegmenter

    return TapSegmenter.from_checkpoint(checkpoint, **kwargs)
