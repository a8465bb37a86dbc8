"""What the page's "on this device" mode needs from the server: the ONNX export as static files, and the headers
that make the page cross-origin isolated (so onnxruntime-web may run WebAssembly threads).

In device mode the server only hands out files: the page, onnxruntime-web (vendored under
``static/vendor/onnxruntime-web``), ``model.json``, ``encoder.onnx`` and ``decoder.onnx``. Photos, taps and edits
stay in the browser.

Headers the page needs (:class:`IsolationHeaders` sets them on every response):

- ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``: together they make
  ``crossOriginIsolated`` true, which browsers require before they give a page ``SharedArrayBuffer`` (WebAssembly
  threads). Everything the page loads is same-origin, so ``require-corp`` blocks nothing of ours;
  ``Cross-Origin-Resource-Policy: same-origin`` says so for every response.
- A Content-Security-Policy compatible with the page (:data:`DEVICE_CSP`, the same as tracenet.app.security's), added
  only when no other layer set one.
  What the page needs beyond "only this origin": WebAssembly compilation needs ``script-src 'wasm-unsafe-eval'``
  (without it the page falls back to server mode); the engine's worker and onnxruntime-web's thread workers are
  module scripts from this origin (``worker-src`` falling back to ``script-src 'self'`` is enough); decoded
  photos and results are shown from ``blob:`` / ``data:`` URLs (``img-src``). Nothing comes from another origin.
"""

from __future__ import annotations

import mimetypes
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from tracenet.app.guard import add_missing_headers
from tracenet.app.security import CSP
from tracenet.deploy.contract import DECODER_FILE, ENCODER_FILE, MODEL_FILE, ContractError, read_contract
from tracenet.tap.zoom import GRID, ZoomConfig

__all__ = ["ContractError", "DEVICE_CSP", "ISOLATION_HEADERS", "IsolationHeaders", "add_device_routes", "default_export",
           "zoom_settings"]

mimetypes.add_type("text/javascript", ".mjs")  # module scripts are refused under any other type
mimetypes.add_type("application/wasm", ".wasm")  # streaming compilation needs it

ISOLATION_HEADERS: dict[str, str] = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
DEVICE_CSP = CSP  # the hardening CSP (tracenet.app.security) already allows WebAssembly, nothing more
_FILES = {ENCODER_FILE: "application/octet-stream", DECODER_FILE: "application/octet-stream",
          MODEL_FILE: "application/json"}


def default_export() -> Path:
    """The bundled default model's export (``tracenet/weights/default-onnx``)."""
    return Path(__file__).resolve().parent.parent / "weights" / "default-onnx"


class IsolationHeaders:
    """ASGI middleware: adds :data:`ISOLATION_HEADERS` to every HTTP response, and :data:`DEVICE_CSP` when the
    response carries no ``Content-Security-Policy`` of its own. Headers already set are left as they are."""

    def __init__(self, app: Any, *, csp: str | None = DEVICE_CSP) -> None:
        self.app = app
        extra = {**ISOLATION_HEADERS, **({"Content-Security-Policy": csp} if csp else {})}
        self.headers = [(name.lower().encode(), value.encode()) for name, value in extra.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            await send(add_missing_headers(message, self.headers))

        await self.app(scope, receive, send_with_headers)


def zoom_settings(cfg: ZoomConfig | None = None) -> dict[str, Any]:
    """The zoom-in pass's settings as the page's zoom.js reads them: the fields of
    :class:`~tracenet.tap.zoom.ZoomConfig` (default settings when ``cfg`` is None) and ``grid``
    (:data:`~tracenet.tap.zoom.GRID`)."""
    return {**asdict(cfg or ZoomConfig()), "grid": GRID}


def add_device_routes(app: FastAPI, folder: Path | None, *, zoom: bool = False) -> None:
    """``GET /api/device/model.json`` (the export's contract, with ``encoder_url`` / ``decoder_url`` added, and
    ``zoom``: the zoom-in pass's settings (:func:`zoom_settings`) when ``zoom``, else ``null``) and
    ``GET /api/device/{encoder,decoder}.onnx``. With ``folder=None`` (no export for this server's model) the
    contract route answers 404 with the reason, and the page stays in server mode.

    Raises:
        ContractError: ``folder`` is not a usable export (checked once, here, so a broken export fails at start).
    """
    contract = None if folder is None else read_contract(folder)

    def require() -> dict[str, Any]:
        if contract is None:
            raise HTTPException(404, "this server has no ONNX export of its model, so on-device mode is off; "
                                     "start it with `tracenet app --onnx DIR` (DIR from `tracenet export "
                                     "--format onnx`) or without --checkpoint for the bundled model")
        return contract

    @app.get("/api/device/model.json", summary="The ONNX export's contract, for the page's on-device mode")
    def device_contract() -> dict[str, Any]:
        return require() | {"encoder_url": f"/api/device/{ENCODER_FILE}", "decoder_url": f"/api/device/{DECODER_FILE}",
                            "zoom": zoom_settings() if zoom else None}

    @app.get("/api/device/{name}", summary="One file of the ONNX export", response_class=FileResponse)
    def device_file(name: str) -> FileResponse:
        require()
        if name not in _FILES or name == MODEL_FILE:
            raise HTTPException(404, f"no file {name!r}; the export serves {ENCODER_FILE} and {DECODER_FILE}")
        assert folder is not None
        return FileResponse(folder / name, media_type=_FILES[name],
                            headers={"Cache-Control": "public, max-age=86400"})

