"""Tap-to-segment web app: open a photo, tap an object, see its mask, blur / replace / splash / cut it out.

Run it with ``tracenet app`` (http://127.0.0.1:7860) or build it with
``tracenet.app.create_app(segmenter_factory=...)`` and serve it with any ASGI server. The page is one static
HTML/JS file served by the app itself: no CDN, works offline. API docs: ``/docs`` (rendered offline from the
OpenAPI schema at ``/openapi.json``).

HTTP API (all taps in image pixels, x to the right, y down, of the image as returned by ``GET /api/images/{id}``,
i.e. after EXIF rotation; all errors are JSON ``{"detail": "..."}`` with a 4xx/5xx status)

``POST /api/images`` (multipart: ``file`` = image, or form ``example`` = ``cat.png``)
    Opens an image and returns ``{"image_id", "name", "width", "height", "url"}``. The id is random and
    private to the client; the server keeps the most recently used images (LRU, ``max_images``) and answers
    404 for an id it has forgotten.
``GET /api/images/{image_id}``
    The opened image (JPEG) exactly as the model sees it.
``POST /api/segment`` (form: ``image_id`` or multipart ``image``; ``x``, ``y``; ``format``)
    Segments the object under the tap. ``format`` is ``png`` (default), ``polygon``, ``rle``, a
    comma-separated mix, or ``all``. Reply::

        {"image_id", "width", "height", "tap": [x, y], "score": 0.93, "box": [x0, y0, x1, y1], "area": 1234,
         "latency_ms": 41.2,          # seg.predict only (0 when an equal tap_key was cached)
         "set_image_ms": 0.0,         # > 0 when the model had to switch to this image first
         "cached": false, "server_ms": 55.0,
         "found": true, "reason": "",   # found false: nothing at the tap (empty mask), reason says why
         "mask_png": "<base64 PNG, 8-bit, 0/255, H x W>",               # format png
         "polygons": [[[x, y], ...], ...],                            # format polygon: outer contours
         "rle": {"size": [H, W], "counts": "<COCO compressed RLE>"}}  # format rle (pycocotools)

    A tap outside the image is a 422 that says the valid ranges.
``POST /api/clickable`` (form: ``image_id``, ``x``, ``y``, ``iou_threshold`` = 0.9)
    The clickable region of the tapped object (paper fig. 1b): ``{"tolerance", "n_predictions", "exact",
    "mask_png", ...}``; ``exact`` is false when the region was interpolated from a bounded number of taps. It is
    computed on the network's masks, before boundary refinement (``/api/segment`` and ``/api/edit`` use the
    refined mask of the default model, ``tracenet.load()``'s GrabCut refinement).
``POST /api/edit`` (form: ``image_id`` or multipart ``image``; ``taps`` = ``"x1,y1;x2,y2"``; ``effect`` =
``blur | replace | splash | cutout``; ``strength``, ``color`` = ``#rrggbb``, multipart ``background``,
``feather``, ``output`` = ``png | jpeg``)
    Returns the edited image file (``Content-Disposition: attachment``); ``cutout`` is always an RGBA PNG.
``GET /api/examples``, ``GET /api/examples/{name}``, ``GET /api/health``
    Bundled example images and server status.
``GET /api/device/model.json``, ``GET /api/device/encoder.onnx``, ``GET /api/device/decoder.onnx``
    The ONNX export the page runs in its "on this device" mode (default where the browser has WebAssembly
    SIMD): the page segments and edits in the browser and sends no photo, tap or edit to the server (see
    :mod:`tracenet.app.device` for the headers it needs). 404 with the reason when the server has no export.

Limits (``create_app`` arguments; ``tracenet app`` flags in brackets). Memory is counted in bytes of decoded
pixels, estimated from the file header *before* decoding: 8 bytes per pixel to decode an upload, 8 more to
segment it, 40 more to edit it (measured peaks, see :mod:`tracenet.app.limits`).

- ``max_upload_bytes`` (20 MB, ``--max-upload-mb``): larger files get 413. ``max_pixels`` (40 MP,
  ``--max-megapixels``): larger images get 413. Empty or truncated files get 400, non-images 415.
- ``max_request_bytes`` (768 MB, ``--max-request-mb``): memory one request may need; a 40 MP photo can be
  segmented, a 16 MP photo edited; more is 413 (a 4 kB PNG declaring 36 MP is refused without decoding it).
- ``max_work_bytes`` (1 GB, ``--max-work-mb``): the same summed over all requests in progress; a request waits
  up to ``wait_s`` (30 s) for room, then gets 503 with ``Retry-After``.
- ``max_store_bytes`` (512 MB, ``--max-store-mb``) and ``max_images`` (32): opened images and their cached masks;
  the least recently used are forgotten (their ids then give 404).
- ``max_jobs`` (2, ``--max-jobs``): request threads at the model at once; more wait (503 after ``wait_s``).
  ``max_threads`` (4; ``tracenet app`` uses ``max_jobs + 2``): worker threads, so pages and images always find
  one. ``GET /api/health`` runs on the event loop and never waits for the model or a thread.
- ``max_taps`` (16, ``--max-taps``): taps in one ``/api/edit`` request (each is a model run); more is 422.
- ``body_timeout_s`` (30 s): a client that sends no part of its body for that long (or takes 4x that in all)
  gets 408. ``tracenet app`` also closes idle keep-alive connections after 5 s and serves at most 64 connections
  at once (503 beyond). uvicorn has no timeout for slow request *headers*; the connection cap bounds them.
- ``allowed_hosts`` (loopback names; ``--host`` and ``--allow-host`` add names, a wildcard bind such as
  ``0.0.0.0`` without ``--allow-host`` accepts any): other ``Host`` headers get 403 (DNS rebinding), and so do
  requests whose ``Origin`` is not this server or marked ``Sec-Fetch-Site: cross-site`` (other web pages).
- Every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and a
  Content-Security-Policy allowing only the app's own scripts, styles, images and connections, with
  ``frame-ancestors 'none'`` (:mod:`tracenet.app.security`).

``tracenet app`` caps glibc's malloc arenas at 2 before any thread starts (``MALLOC_ARENA_MAX=2`` does the
same): with one arena per worker thread, RSS grew by more than a gigabyte under load and stayed there.

The segmenter is used by one request at a time behind a lock (it is handed to the request's thread with
``TapSegmenter.claim``); an unexpected error gives a 500 JSON reply and the server keeps running.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # lazy, so `tracenet app --help` works without FastAPI installed
    if name == "create_app":
        from tracenet.app.server import create_app

        return create_app
    raise AttributeError(f"module 'tracenet.app' has no attribute {name!r}")
