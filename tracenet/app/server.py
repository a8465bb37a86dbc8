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
from tracenet.app.forms import human_bytes, image_http_error, parse_color, parse_tap, parse_taps, safe_stem
from tracenet.app.guard import GuardMiddleware
from tracenet.app.state import ImageEntry, ImageStore, ModelRunner, ModelUnavailable, Prediction, UnknownImage
from tracenet.edit.clickable import clickable_region_details
from tracenet.edit.effects import EFFECTS, apply_effect
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
    clickable_max_taps: int | None = 400,
    clickable_time_budget_s: float | None = 8.0,
    examples_dir: Path = EXAMPLES_DIR,
    warm_up: bool = False,
    device_model: Path | None | str = "auto",
) -> FastAPI:
    """Build the tap-to-segment web app.

    Args:
        segmenter_factory: ``() -> segmenter`` with ``set_image`` / ``predict`` / ``tap_key`` (default
            ``tracenet.load()``, the bundled model); called once, on the first request (or at start-up
            with ``warm_up``).
        max_upload_bytes: largest accepted image file; bigger requests get 413.
        max_pixels: largest accepted image in pixels (W * H); bigger images get 413.
        max_images: how many opened images the server remembers (least recently used are forgotten).
        clickable_max_taps: model calls allowed for one clickable-region request (None: exact, unbounded).
        clickable_time_budget_s: seconds one clickable-region request may keep the model busy (None: no limit);
            past either bound the region is interpolated from the taps run so far (``exact: false``).
        examples_dir: folder of ``*.png`` example images offered on the page.
        warm_up: load the model in a background thread as soon as the server starts.
        device_model: the ONNX export the page runs in its on-device mode (:mod:`tracenet.app.device`);
            ``"auto"``: the bundled model's export when ``segmenter_factory`` is the default, else none;
            ``None``: no on-device mode (the page uses the server).
    """
    store = ImageStore(max_images=max_images)
    runner = ModelRunner(segmenter_factory or _default_factory)
    examples = {p.name: p for p in sorted(Path(examples_dir).glob("*.png"))}
    index_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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
    app.add_middleware(GuardMiddleware, max_body_bytes=2 * max_upload_bytes + _FORM_SLACK)
    app.add_middleware(IsolationHeaders)
    if device_model == "auto":
        device_model = default_export() if segmenter_factory is None else None
    add_device_routes(app, None if device_model is None else Path(device_model))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.store, app.state.runner = store, runner

    def read_upload(upload: UploadFile, what: str = "image") -> np.ndarray:
        data = upload.file.read(max_upload_bytes + 1)
        name = f"{what} {upload.filename!r}" if upload.filename else f"the {what}"
        if len(data) > max_upload_bytes:
            raise HTTPException(
                413,
                f"{name} is larger than {human_bytes(max_upload_bytes)}; downscale or re-encode it as JPEG",
            )
        try:
            return load_rgb(data, max_pixels=max_pixels, name=name)
        except ImageError as exc:
            raise image_http_error(exc) from None

    def resolve(image: UploadFile | None, image_id: str | None, *, keep: bool) -> ImageEntry:
        if (image is None) == (not image_id):
            raise HTTPException(
                422, "give either an image file (field 'image') or an image_id from POST /api/images"
            )
        if image is not None:
            array = read_upload(image)
            name = image.filename or "upload.png"
            return store.add(array, name) if keep else ImageEntry(f"tmp-{uuid.uuid4().hex}", array, name)
        try:
            return store.get(image_id or "")
        except UnknownImage:
            raise HTTPException(
                404,
                f"image_id {image_id!r} is unknown or expired (the server keeps the {store.max_images} most "
                "recently used images); open the image again",
            ) from None

    def predict(entry: ImageEntry, tap: tuple[int, int]) -> tuple[Prediction, float]:
        try:
            return runner.predict(entry, tap)
        except ModelUnavailable as exc:
            raise HTTPException(503, str(exc)) from None

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
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_loaded": runner.loaded,
            "model_error": runner.error,
            "images": len(store),
            "max_upload_bytes": max_upload_bytes,
            "max_pixels": max_pixels,
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
            array = read_upload(file)
            return describe(store.add(array, file.filename or "upload.png"))
        if example not in examples:
            raise HTTPException(404, f"no example called {example!r}; choose one of {', '.join(examples)}")
        return describe(store.add(load_rgb(examples[example]), example or ""))

    @app.get(
        "/api/images/{image_id}", summary="The opened image as the model sees it (EXIF-rotated RGB JPEG)"
    )
    def get_image(image_id: str) -> Response:
        entry = resolve(None, image_id, keep=True)
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
        entry = resolve(image, image_id, keep=True)
        tap = parse_tap(x, y, entry)
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
        entry = resolve(None, image_id, keep=True)
        tap = parse_tap(x, y, entry)
        try:
            with runner.session(entry) as seg:
                mask = seg.predict_cached(tap).mask
                info = clickable_region_details(
                    seg,
                    mask,
                    iou_threshold=iou_threshold,
                    max_taps=clickable_max_taps,
                    time_budget_s=clickable_time_budget_s,
                )
        except ModelUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
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
        feather: Annotated[float, Form(ge=0, le=50, description="edge softness, pixels")] = 1.5,
        output: Annotated[str, Form(description="png or jpeg (cutout is always png)")] = "png",
    ) -> Response:
        if effect not in EFFECTS:
            raise HTTPException(422, f"unknown effect {effect!r}; choose one of {', '.join(EFFECTS)}")
        if output not in ("png", "jpeg"):
            raise HTTPException(422, f"output must be png or jpeg, got {output!r}")
        entry = resolve(image, image_id, keep=False)
        mask = np.zeros(entry.image.shape[:2], dtype=bool)
        parsed = parse_taps(taps, entry)
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
            if color is not None and background is not None:
                raise HTTPException(422, "give either color or background, not both")
            options["color"] = None if color is None else parse_color(color)
            options["background"] = None if background is None else read_upload(background, "background")
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
