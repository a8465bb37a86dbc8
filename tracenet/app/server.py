"""The FastAPI application: routes of the HTTP API documented in :mod:`tracenet.app`."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from tracenet.app.device import IsolationHeaders, add_device_routes, default_export
from tracenet.app.encoding import encode_mask, parse_formats
from tracenet.app.forms import (
    human_bytes,
    image_http_error,
    parse_color,
    parse_tap,
    parse_taps,
    safe_stem,
    tap_parts,
)
from tracenet.app.guard import GuardMiddleware
from tracenet.app.limits import (
    DECODE_BYTES_PER_PIXEL,
    EDIT_BYTES_PER_PIXEL,
    SEGMENT_BYTES_PER_PIXEL,
    Busy,
    ByteBudget,
    Hold,
    TooBig,
)
from tracenet.app.security import LOOPBACK_HOSTS, SecurityMiddleware
from tracenet.app.state import ImageEntry, ImageStore, ModelRunner, ModelUnavailable, Prediction, UnknownImage
from tracenet.edit.clickable import clickable_region_details
from tracenet.edit.effects import EFFECTS, MAX_FEATHER, apply_effect
from tracenet.edit.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    encode_png,
    load_rgb,
)

__all__ = ["EXAMPLES_DIR", "create_app"]

log = logging.getLogger("tracenet.app")

STATIC_DIR = Path(__file__).with_name("static")
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
_FORM_SLACK = 64 << 10  # room for the form fields around an upload of max_upload_bytes


def _default_factory() -> Any:
    import tracenet

    return tracenet.load()


def _warm_up(runner: ModelRunner) -> None:
    try:
        runner.warm_up()
        log.info("model loaded in %.0f ms", runner.load_ms or 0.0)
    except ModelUnavailable as exc:
        log.error("%s", exc)


def create_app(
    segmenter_factory: Callable[[], Any] | None = None,
    *,
    max_upload_bytes: int = 20 << 20,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_images: int = 32,
    max_store_bytes: int = 512 << 20,
    max_request_bytes: int = 768 << 20,
    max_work_bytes: int = 1 << 30,
    max_jobs: int = 2,
    max_taps: int = 16,
    max_threads: int = 4,
    wait_s: float = 30.0,
    body_timeout_s: float = 30.0,
    allowed_hosts: frozenset[str] | set[str] | None = LOOPBACK_HOSTS,
    clickable_max_taps: int | None = 400,
    clickable_time_budget_s: float | None = 0.75,
    examples_dir: Path = EXAMPLES_DIR,
    warm_up: bool = False,
    device_model: Path | None | str = "auto",
    device_zoom: bool | None = None,
) -> FastAPI:
    """Build the tap-to-segment web app.

    Args:
        segmenter_factory: ``() -> segmenter`` with ``set_image`` / ``predict`` / ``tap_key`` (default
            ``tracenet.load()``, the bundled model); called once, on the first request (or at start-up
            with ``warm_up``).
        max_upload_bytes: largest accepted image file; bigger requests get 413.
        max_pixels: largest accepted image in pixels (W * H); bigger images get 413.
        max_images: how many opened images the server remembers (least recently used are forgotten).
        max_store_bytes: bytes of decoded images (3 per pixel) and cached masks the server remembers; least
            recently used images are forgotten past it.
        max_request_bytes: memory one request may need for decoded pixels and their processing, estimated before
            decoding from the file header (8 bytes per pixel to decode an upload, 8 more to segment, 40 more to
            edit); past it 413. The default lets a 40 MP photo be segmented and a 16 MP photo be edited.
        max_work_bytes: the same, summed over all requests in progress; a request waits up to ``wait_s`` for
            room, then gets 503.
        max_jobs: request threads at the model at once (running or waiting for it); more wait up to ``wait_s``
            (503 after that). Below ``max_threads``, so pages and images always find a free thread.
        max_taps: taps one ``/api/edit`` request may send (each is a model run); more is 422.
        max_threads: worker threads for request handlers (each thread can hold a malloc arena); ``/api/health``
            needs none.
        wait_s: how long a request waits for the model or for memory before 503.
        body_timeout_s: a client that sends no part of its request body for this long gets 408.
        allowed_hosts: host names the server answers to (``Host`` header, and ``Origin`` of cross-origin
            requests): loopback names by default; None accepts any (a deliberate public bind).
        clickable_max_taps: model calls allowed for one clickable-region request (None: exact, unbounded).
        clickable_time_budget_s: seconds, counted from a clickable-region request's arrival, within which its
            model calls must end (None: no limit; default 0.75 s, so that the view answers within a second even
            when one call takes ~0.15 s longer than the rest, as a tap that meets new crop shapes can); past
            either bound the region is interpolated from the taps run so far, an even coarse-to-fine spread
            (``exact: false``).
        examples_dir: folder of ``*.png`` example images offered on the page.
        warm_up: load the model in a background thread as soon as the server starts.
        device_model: the ONNX export the page runs in its on-device mode (:mod:`tracenet.app.device`);
            ``"auto"``: the bundled model's export when ``segmenter_factory`` is the default, else none;
            ``None``: no on-device mode (the page uses the server).
        device_zoom: whether the on-device mode runs the zoom-in pass for small objects (``model.json`` then
            carries its settings, :class:`tracenet.tap.zoom.ZoomConfig`); default ``None``: as ``tracenet.load()``
            does (:data:`tracenet.tap.zoom.DEFAULT_ZOOM`), so both modes give the same masks with the default model.
    """
    store = ImageStore(max_images=max_images, max_bytes=max_store_bytes)
    runner = ModelRunner(segmenter_factory or _default_factory, max_jobs=max_jobs, wait_s=wait_s)
    budget = ByteBudget(max_work_bytes, per_request=max_request_bytes, wait_s=wait_s)
    if max_taps < 1 or max_threads <= max_jobs:
        raise ValueError(f"need max_taps >= 1 and max_threads > max_jobs, got {max_taps}, {max_threads}, {max_jobs}")
    examples = {p.name: p for p in sorted(Path(examples_dir).glob("*.png"))}
    index_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = max_threads
        if warm_up:
            threading.Thread(target=_warm_up, args=(runner,), name="tracenet-warm-up", daemon=True).start()
        yield

    import tracenet
    import tracenet.app

    app = FastAPI(
        title="TraceNet tap-to-segment",
        description=tracenet.app.__doc__ or "",
        version=tracenet.__version__,
        lifespan=lifespan,
        docs_url=None,  # Swagger UI / ReDoc load their scripts from a CDN; /docs is our own offline page
        redoc_url=None,
    )
    app.add_middleware(
        GuardMiddleware, max_body_bytes=2 * max_upload_bytes + _FORM_SLACK, body_timeout_s=body_timeout_s
    )
    app.add_middleware(IsolationHeaders, csp=None)  # COOP / COEP for the on-device page; the CSP comes next
    app.add_middleware(SecurityMiddleware, allowed_hosts=allowed_hosts)  # outermost: runs first
    if device_model == "auto":
        device_model = default_export() if segmenter_factory is None else None
    if device_zoom is None:
        from tracenet.tap.zoom import DEFAULT_ZOOM

        device_zoom = DEFAULT_ZOOM
    add_device_routes(app, None if device_model is None else Path(device_model), zoom=device_zoom)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.store, app.state.runner, app.state.budget = store, runner, budget

    def read_upload(upload: UploadFile, hold: Hold, per_pixel: int, what: str = "image") -> np.ndarray:
        """Decode an upload after reserving ``per_pixel`` bytes per pixel (read from its header) in ``hold``."""
        data = upload.file.read(max_upload_bytes + 1)
        name = f"{what} {upload.filename!r}" if upload.filename else f"the {what}"
        if len(data) > max_upload_bytes:
            raise HTTPException(
                413,
                f"{name} is larger than {human_bytes(max_upload_bytes)}; downscale or re-encode it as JPEG",
            )
        try:
            return load_rgb(
                data, max_pixels=max_pixels, name=name, before_decode=lambda w, h: reserve(hold, w * h * per_pixel, name)
            )
        except ImageError as exc:
            raise image_http_error(exc) from None

    def reserve(hold: Hold, nbytes: int, what: str) -> None:
        try:
            hold.add(nbytes, what)
        except TooBig as exc:
            raise HTTPException(413, str(exc)) from None
        except Busy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None

    def resolve(
        image: UploadFile | None, image_id: str | None, *, keep: bool, hold: Hold, per_pixel: int
    ) -> ImageEntry:
        """The request's image (an upload, decoded, or a stored one), with ``per_pixel`` bytes per pixel reserved
        in ``hold`` for decoding and processing it."""
        if (image is None) == (not image_id):
            raise HTTPException(
                422, "give either an image file (field 'image') or an image_id from POST /api/images"
            )
        if image is not None:
            array = read_upload(image, hold, DECODE_BYTES_PER_PIXEL + per_pixel)
            name = image.filename or "upload.png"
            return store.add(array, name) if keep else ImageEntry(f"tmp-{uuid.uuid4().hex}", array, name)
        try:
            entry = store.get(image_id or "")
        except UnknownImage:
            raise HTTPException(
                404,
                f"image_id {image_id!r} is unknown or expired (the server keeps the {store.max_images} most "
                "recently used images); open the image again",
            ) from None
        w, h = entry.size
        reserve(hold, w * h * per_pixel, f"image {entry.name!r}")
        return entry

    def predict(entry: ImageEntry, tap: tuple[int, int]) -> tuple[Prediction, float]:
        try:
            return runner.predict(entry, tap)
        except ModelUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        except Busy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        finally:
            store.trim()  # cached masks count against max_store_bytes

    def describe(entry: ImageEntry) -> dict[str, Any]:
        w, h = entry.size
        return {
            "image_id": entry.image_id,
            "name": entry.name,
            "width": w,
            "height": h,
            "url": f"/api/images/{entry.image_id}",
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index_html, headers={"Cache-Control": "no-cache"})

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "api.html").read_text(encoding="utf-8"))

    @app.get("/api/health", summary="Server and model status")
    async def health() -> dict[str, Any]:  # async: answered on the event loop, never behind busy worker threads
        return {
            "status": "ok",
            "model_loaded": runner.loaded,
            "model_error": runner.error,
            "images": len(store),
            "store_bytes": store.nbytes,
            "work_bytes": budget.in_use,
            "max_upload_bytes": max_upload_bytes,
            "max_pixels": max_pixels,
            "max_store_bytes": max_store_bytes,
            "max_request_bytes": budget.per_request,
            "max_work_bytes": max_work_bytes,
            "max_jobs": max_jobs,
            "max_taps": max_taps,
            "effects": list(EFFECTS),
        }

    @app.get("/api/examples", summary="Bundled example images")
    def list_examples() -> dict[str, Any]:
        return {"examples": [{"name": n, "url": f"/api/examples/{n}"} for n in examples]}

    @app.get("/api/examples/{name}", summary="One example image file", response_class=FileResponse)
    def example_file(name: str) -> FileResponse:
        if name not in examples:
            raise HTTPException(404, f"no example called {name!r}; GET /api/examples lists them")
        return FileResponse(examples[name], media_type="image/png")

    @app.post("/api/images", summary="Open an image (upload or example); returns its image_id")
    def open_image(
        file: Annotated[UploadFile | None, File(description="image file (PNG, JPEG, WebP, ...)")] = None,
        example: Annotated[str | None, Form(description="name of a bundled example, e.g. cat.png")] = None,
    ) -> dict[str, Any]:
        if (file is None) == (not example):
            raise HTTPException(
                422, "give either a file (field 'file') or the name of an example (field 'example')"
            )
        if file is not None:
            with budget.hold() as hold:
                array = read_upload(file, hold, DECODE_BYTES_PER_PIXEL)
                return describe(store.add(array, file.filename or "upload.png"))
        if example not in examples:
            raise HTTPException(404, f"no example called {example!r}; choose one of {', '.join(examples)}")
        return describe(store.add(load_rgb(examples[example]), example or ""))

    @app.get(
        "/api/images/{image_id}", summary="The opened image as the model sees it (EXIF-rotated RGB JPEG)"
    )
    def get_image(image_id: str) -> Response:
        with budget.hold() as hold:
            entry = resolve(None, image_id, keep=True, hold=hold, per_pixel=SEGMENT_BYTES_PER_PIXEL)
            buf = io.BytesIO()
            Image.fromarray(entry.image).save(buf, format="JPEG", quality=92)
        return Response(
            buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    @app.post("/api/segment", summary="Segment the object under a tap")
    def segment(
        x: Annotated[float, Form(description="tap x in image pixels (0 = left edge)")],
        y: Annotated[float, Form(description="tap y in image pixels (0 = top edge)")],
        image_id: Annotated[str | None, Form(description="id from POST /api/images")] = None,
        image: Annotated[
            UploadFile | None, File(description="or an image file (it is then opened too)")
        ] = None,
        format: Annotated[str, Form(description="png, polygon, rle (comma-separated) or all")] = "png",
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            formats = parse_formats(format)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        with budget.hold() as hold:
            entry = resolve(image, image_id, keep=True, hold=hold, per_pixel=SEGMENT_BYTES_PER_PIXEL)
            return segment_reply(entry, parse_tap(x, y, entry), formats, t0)

    def segment_reply(entry: ImageEntry, tap: tuple[int, int], formats: list[str], t0: float) -> dict[str, Any]:
        pred, set_ms = predict(entry, tap)
        reply = describe(entry) | {
            "tap": list(tap),
            "score": pred.score,
            "box": list(pred.box),
            "area": int(pred.mask.sum()),
            "latency_ms": round(pred.latency_ms, 2),
            "set_image_ms": round(set_ms, 2),
            "cached": pred.cached,
            "found": pred.found,
            "reason": pred.reason,
        }
        reply |= encode_mask(pred.mask, formats)
        reply["server_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
        return reply

    @app.post("/api/clickable", summary="Where on the tapped object a tap gives (nearly) the same mask")
    def clickable(
        image_id: Annotated[str, Form()],
        x: Annotated[float, Form()],
        y: Annotated[float, Form()],
        iou_threshold: Annotated[float, Form(gt=0, le=1)] = 0.9,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        with budget.hold() as hold:
            entry = resolve(None, image_id, keep=True, hold=hold, per_pixel=SEGMENT_BYTES_PER_PIXEL)
            return clickable_reply(entry, parse_tap(x, y, entry), iou_threshold, t0)

    def clickable_reply(entry: ImageEntry, tap: tuple[int, int], iou_threshold: float, t0: float) -> dict[str, Any]:
        try:
            # on the network's masks: refinement is a function of the chosen candidate alone, so taps that give
            # the same network mask give the same refined one, and the view stays within its time budget
            with runner.session(entry) as seg, seg.unrefined():
                mask = seg.predict_cached(tap).mask
                info = clickable_region_details(
                    seg,
                    mask,
                    iou_threshold=iou_threshold,
                    max_taps=clickable_max_taps,
                    time_budget_s=clickable_time_budget_s,
                    started_at=t0,
                )
        except ModelUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        except Busy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        finally:
            store.trim()
        return {
            "image_id": entry.image_id,
            "tap": list(tap),
            "tolerance": info.tolerance,
            "n_groups": info.n_groups,
            "n_predictions": info.n_predictions,
            "exact": info.exact,
            "area": int(info.region.sum()),
            **encode_mask(info.region, ["png"]),
            "server_ms": round((time.perf_counter() - t0) * 1e3, 2),
        }

    @app.post(
        "/api/edit",
        summary="Apply a photo edit to the tapped object(s); returns the image file",
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
    )
    def edit(
        effect: Annotated[str, Form(description=f"one of {', '.join(EFFECTS)}")],
        taps: Annotated[str, Form(description="'x1,y1;x2,y2': taps on the subject(s), masks are united")],
        image_id: Annotated[str | None, Form()] = None,
        image: Annotated[UploadFile | None, File()] = None,
        color: Annotated[str | None, Form(description="replace: #rrggbb or r,g,b (default white)")] = None,
        background: Annotated[UploadFile | None, File(description="replace: background picture")] = None,
        strength: Annotated[float, Form(ge=0, le=1, description="blur: 0..1")] = 0.5,
        feather: Annotated[float, Form(ge=0, le=MAX_FEATHER, description="edge softness, pixels")] = 1.5,
        output: Annotated[str, Form(description="png or jpeg (cutout is always png)")] = "png",
    ) -> Response:
        if effect not in EFFECTS:
            raise HTTPException(422, f"unknown effect {effect!r}; choose one of {', '.join(EFFECTS)}")
        if output not in ("png", "jpeg"):
            raise HTTPException(422, f"output must be png or jpeg, got {output!r}")
        tap_parts(taps, max_taps)  # before decoding anything
        with budget.hold() as hold:
            entry = resolve(image, image_id, keep=False, hold=hold, per_pixel=EDIT_BYTES_PER_PIXEL)
            parsed = parse_taps(taps, entry, max_taps)
            if color is not None and background is not None:
                raise HTTPException(422, "give either color or background, not both")
            back = None if background is None else read_upload(background, hold, DECODE_BYTES_PER_PIXEL, "background")
            return edit_reply(entry, parsed, effect, output, strength, feather, color, back)

    def edit_reply(entry: ImageEntry, parsed: list[tuple[int, int]], effect: str, output: str, strength: float,
                   feather: float, color: str | None, background: np.ndarray | None) -> Response:
        mask = np.zeros(entry.image.shape[:2], dtype=bool)
        for tap in parsed:
            mask |= predict(entry, tap)[0].mask
        if not mask.any():
            where = "; ".join(f"{x},{y}" for x, y in parsed)
            raise HTTPException(
                422, f"the model found no object at the tap(s) {where}; tap on the subject itself"
            )
        options: dict[str, Any] = {"feather": feather}
        if effect == "blur":
            options["strength"] = strength
        elif effect == "replace":
            options["color"] = None if color is None else parse_color(color)
            options["background"] = background
        result = apply_effect(effect, entry.image, mask, **options)
        fmt = "png" if effect == "cutout" else output
        if fmt == "png":
            data = encode_png(result, compress_level=6)
        else:
            buf = io.BytesIO()
            Image.fromarray(result).save(buf, format="JPEG", quality=93)
            data = buf.getvalue()
        filename = f"{safe_stem(entry.name)}-{effect}.{'png' if fmt == 'png' else 'jpg'}"
        return Response(
            data,
            media_type=f"image/{fmt}",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    return app
