"""tracenet: one-tap instance segmentation with a Receptive Field Tracer.

Quick use::

    import tracenet
    seg = tracenet.load()              # bundled default model
    seg.set_image("photo.jpg")         # path, PIL image or HxWx3 uint8 RGB array
    res = seg.predict((x, y))          # tap in image pixels; res.mask HxW bool, res.score, res.box
    seg = tracenet.load(refine="none") # the network's own mask, without GrabCut boundary refinement
    seg = tracenet.load(zoom=False)    # one pass, without zooming in on small objects
    seg = tracenet.load(engine="onnx") # the same model on onnxruntime (numpy + Pillow, no torch needed)

Importing ``tracenet`` loads neither torch nor onnxruntime; each engine imports what it needs.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


ENGINES = ("torch", "onnx")


def load(checkpoint: str | None = None, *, engine: str = "torch", **kwargs):
    """Load a tap segmenter (``set_image`` / ``predict``; the bundled default model when ``checkpoint`` is None).

    ``engine="torch"``: :class:`tracenet.predictor.TapSegmenter` from a ``.safetensors`` checkpoint (traced and
    FullNet paths). ``engine="onnx"``: :class:`tracenet.deploy.engine.OnnxTapSegmenter` from an export folder made
    by ``tracenet export --format onnx`` (onnxruntime, numpy and Pillow only). ``kwargs`` go to the engine;
    ``refine`` defaults to :data:`tracenet.refine.DEFAULT_REFINE` (GrabCut boundary refinement, OpenCV), pass
    ``refine="none"`` for the network's own mask; ``zoom`` to :data:`tracenet.tap.zoom.DEFAULT_ZOOM` (the zoom-in
    pass for small objects), pass ``zoom=False`` for one pass.
    """
    if "refine" not in kwargs:
        from tracenet.refine import DEFAULT_REFINE

        kwargs["refine"] = DEFAULT_REFINE
    if "zoom" not in kwargs:
        from tracenet.tap.zoom import DEFAULT_ZOOM

        kwargs["zoom"] = DEFAULT_ZOOM
    if engine == "onnx":
        from tracenet.deploy.engine import OnnxTapSegmenter

        return OnnxTapSegmenter(checkpoint, **kwargs)
    if engine != "torch":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    from tracenet.predictor import TapSegmenter

    return TapSegmenter.from_checkpoint(checkpoint, **kwargs)
